"""The text of derived expressions, as SymPy's printer writes it, in a fraction of the time.

``corrgen derive`` prints every element: ``sstr(expr, order="none")`` for JSON, and
``str(shift_indices(expr, base))`` for text. For a large layer that is millions of products
of ``Indexed`` elements, and SymPy's printer spends most of its time deciding what the
derivation never contains (signs, coefficients, powers, denominators, parentheses) and, for
``str``, ordering the terms through ``as_ordered_terms``. ``ElementPrinter`` writes each
element's name once and joins names; any expression that is not a sum of products of
distinct elements with integer indices goes to SymPy's printer instead.

What ``str`` orders, and how this module reproduces it:

* factors: ``Mul.as_ordered_factors`` sorts by ``sort_key``; an ``Indexed`` is an atom,
  whose sort key is its class's (the same for all) and then its text, so the factors come
  in the order of their names (as printed, indices shifted to the base);
* terms: ``Expr.as_ordered_terms`` (order ``lex``) sorts the generators (the elements) the
  same way, writes each term as its vector of exponents over them, and puts the larger
  vector first. With exponents 0 and 1, term A precedes term B when, reading both sorted
  name lists in step, A shows the smaller name first, or B runs out first (a product
  before any of its factors alone).

tests/test_derive_speed_paths.py checks both against SymPy's printers on a grid of layers.
"""

from __future__ import annotations

import re
from operator import eq

from sympy import Add, Expr, Indexed, Integer, Mul, Symbol
from sympy.printing.str import sstr

from .printing import shift_indices

__all__ = ["ElementPrinter"]

#: Base names this printer writes itself: an ASCII letter, then letters, digits or ``_``.
_PLAIN = re.compile(r"[A-Za-z][A-Za-z0-9_]*")

#: Sorts after every name (names start with an ASCII letter): ends a term's key, so that a
#: product precedes its factors alone (see the module docstring).
_END = "\U0010ffff"


class ElementPrinter:
    """Prints derived expressions with indices moved to ``base``; element names are cached,
    so keep one printer for a whole derivation."""

    def __init__(self, base: int = 0) -> None:
        self.base = base
        # Names by id(): a dict lookup in C, where hashing an Indexed calls into Python. An
        # id is an object's only while it lives, so the elements are kept alive here.
        self._names: dict[int, str] = {}
        self._alive: list[Indexed] = []

    def _learn(self, factors: tuple[Expr, ...]) -> bool:
        """Name the elements among ``factors``; False if one of them is not an element with
        integer indices and a plain name (then SymPy's printer does the whole expression)."""
        for factor in factors:
            if id(factor) in self._names:
                continue
            if not isinstance(factor, Indexed):
                return False  # a coefficient, a power, ...
            label = factor.base.label
            if (not isinstance(label, Symbol) or not _PLAIN.fullmatch(label.name)
                    or not all(isinstance(i, Integer) for i in factor.indices)):
                return False
            indices = ", ".join([str(int(i) + self.base) for i in factor.indices])
            self._names[id(factor)] = f"{label.name}[{indices}]"
            self._alive.append(factor)
        return True

    def _terms(self, expr: Expr) -> list[list[str]] | None:
        """Each term's factor names, in argument order; None unless ``expr`` is a sum of
        elements and products of elements (or one of those)."""
        names, out = self._names, []
        for term in expr.args if type(expr) is Add else (expr,):
            factors = term.args if type(term) is Mul else (term,)
            try:
                out.append([names[id(f)] for f in factors])
            except KeyError:
                if not self._learn(factors):
                    return None
                out.append([names[id(f)] for f in factors])
        return out

    def plain(self, expr: Expr) -> str:
        """``sstr(expr, order="none")``: terms and factors in SymPy's internal order (JSON's
        form; indices as they are, so only for base 0)."""
        if self.base != 0:
            raise ValueError(f"ElementPrinter(base={self.base}).plain: the internal order "
                             f"is that of the 0-based expression; use base 0")
        terms = self._terms(expr)
        if terms is None:
            return sstr(expr, order="none")
        return " + ".join(["*".join(names) for names in terms])

    def text(self, expr: Expr) -> str:
        """``str(shift_indices(expr, base))``: the factors and terms in ``str``'s order."""
        terms = self._terms(expr)
        if terms is None:
            return str(shift_indices(expr, self.base))
        for names in terms:
            names.sort()
            if any(map(eq, names, names[1:])):  # a power, written as a product unevaluated
                return str(shift_indices(expr, self.base))
        if len(terms) > 1:
            terms.sort(key=_term_key)
        return " + ".join(["*".join(names) for names in terms])


def _term_key(names: list[str]) -> tuple[str, ...]:
    return (*names, _END)
