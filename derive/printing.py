"""Index bases and element names for text output (0-based inside, 1-based by default outside)."""

from __future__ import annotations

from sympy import Expr, Indexed

from .passes import GRAD_NAMES

__all__ = ["GRAD_NAMES", "index_text", "shift_indices"]



def shift_indices(expr: Expr, base: int) -> Expr:
    """``expr`` with every ``Indexed`` element's indices moved from 0-based to ``base``."""
    if base == 0:
        return expr
    return expr.xreplace({
        e: e.base[tuple(i + base for i in e.indices)] for e in expr.atoms(Indexed)
    })


def index_text(index: tuple[int, ...], base: int, sep: str = ", ") -> str:
    """``(0, 1, 1)`` with base 1 -> ``"1, 2, 2"``."""
    return sep.join(str(i + base) for i in index)
