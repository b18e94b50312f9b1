"""Index bases and element names for text output (0-based inside, 1-based by default outside)."""

from __future__ import annotations

from sympy import Expr, Indexed, Max, Piecewise

from .passes import GRAD_NAMES

__all__ = ["GRAD_NAMES", "index_text", "shift_indices"]



def shift_indices(expr: Expr, base: int) -> Expr:
    """``expr`` with every ``Indexed`` element's indices moved from 0-based to ``base``."""
    if base == 0:
        return expr
    mapping = {e: e.base[tuple(i + base for i in e.indices)] for e in expr.atoms(Indexed)}
    if expr.has(Max, Piecewise):
        return _rebuilt(expr, mapping)
    return expr.xreplace(mapping)


def _rebuilt(expr: Expr, mapping: dict[Expr, Expr]) -> Expr:
    """``expr.xreplace(mapping)`` without evaluating anything again: the expression is final,
    and re-evaluating a ``Max`` or a relation of symbols asks SymPy's assumptions (several ms
    each; a network's max-pool and ReLU elements have hundreds)."""
    if expr in mapping:
        return mapping[expr]
    if not expr.args or isinstance(expr, Indexed):
        return expr
    args = [_rebuilt(arg, mapping) for arg in expr.args]
    try:
        return expr.func(*args, evaluate=False)
    except TypeError:  # ExprCondPair, BooleanTrue, ...: constructors without evaluate
        return expr.func(*args)


def index_text(index: tuple[int, ...], base: int, sep: str = ", ") -> str:
    """``(0, 1, 1)`` with base 1 -> ``"1, 2, 2"``."""
    return sep.join(str(i + base) for i in index)
