"""The ``#define``s and tables of a module, in printing order."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..ir import Constant, Table


@dataclass
class Defines:
    """Constants and tables collected pass by pass, in the order the C file prints them."""

    constants: list[Constant] = field(default_factory=list)
    tables: list[Table] = field(default_factory=list)

    def const(self, name: str, value: int, doc: str) -> None:
        self.constants.append(Constant(name, value, doc))

    def table(self, name: str, values, doc: str) -> None:
        self.tables.append(Table(name, tuple(values), doc))
