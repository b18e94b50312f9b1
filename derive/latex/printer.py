"""LaTeX printing for the derivation documents: SymPy's printer as the seeds write, and layout.

Every expression is a SymPy object printed by ``sympy.latex``'s printer; ``DerivationPrinter``
only changes how three node types read (``dZ/dK`` as seed 000 writes it, indices in the order
people write them, and one summation sign per index as seed 003 writes it). Layout (splitting
long sums over ``align*`` lines, eliding the middle of very long sums) works on the printed
terms.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sympy import Add, Derivative, Expr, Indexed, Mul, Sum, Symbol
from sympy.printing.latex import LatexPrinter

#: Sums longer than this show their first and last terms around ``\cdots``.
MAX_SUM_TERMS = 24
#: Width of one display line, in characters of visible math (see ``width``).
LINE_WIDTH = 58


class DerivationPrinter(LatexPrinter):
    """``sympy.latex``'s printer, with two nodes written the way the seeds write them.

    ``Derivative(Z[1,1], K[1,1])`` prints as ``\\frac{\\partial Z_{1,1}}{\\partial K_{1,1}}``
    (seed 000) rather than as an operator applied to ``Z``; a ``Sum`` prints one summation
    sign per index, outermost first (seed 003's ``\\sum_{k=0}^{1} \\sum_{l=0}^{1}``).
    """

    def _print_Derivative(self, expr: Derivative) -> str:
        if len(expr.variables) == 1 and isinstance(expr.expr, (Indexed, Symbol)):
            return (rf"\frac{{\partial {self._print(expr.expr)}}}"
                    rf"{{\partial {self._print(expr.variables[0])}}}")
        return super()._print_Derivative(expr)

    def _print_Indexed(self, expr: Indexed) -> str:
        # Indices read best in SymPy's default (lex) order, "y + i - 1", whatever the order
        # setting used for the products and sums around them.
        indices = [self._print(_index_order(i)) for i in expr.indices]
        sep = "," if all(i.is_Atom for i in expr.indices) else r",\,"
        return f"{{{self._print(expr.base)}}}_{{{sep.join(indices)}}}"

    def _print_Sum(self, expr: Sum) -> str:
        signs = [rf"\sum_{{{self._print(s)}={self._print(lo)}}}^{{{self._print(hi)}}}"
                 for s, lo, hi in reversed(expr.limits)]
        body = self._print(expr.function)
        if isinstance(expr.function, Add):
            body = rf"\left({body}\right)"
        return " ".join(signs) + " " + body


def _index_order(expr: Expr) -> Expr:
    """An index written as people write it: ``u - i + 1``, ``i + y - 1`` (positive letters,
    then negative ones, then the number), unevaluated so the printer keeps that order."""
    if isinstance(expr, Add):
        def key(term: Expr) -> tuple[int, str]:
            if term.is_number:
                return 2, ""
            names = ",".join(sorted(str(s) for s in term.free_symbols))
            return (1 if term.could_extract_minus_sign() else 0), names
        return Add(*sorted((_index_order(t) for t in expr.args), key=key), evaluate=False)
    if isinstance(expr, Mul):
        return Mul(*(_index_order(t) for t in expr.args), evaluate=False)
    return expr


def tex(expr: Any, mul: str | None = None) -> str:
    """``expr`` in LaTeX, arguments in the order given (``order='none'``); ``mul``: ``dot``,
    ``times`` or None (juxtaposition)."""
    settings: dict[str, Any] = {"order": "none", "mat_str": "bmatrix", "mat_delim": ""}
    if mul is not None:
        settings["mul_symbol"] = mul
    return DerivationPrinter(settings).doprint(expr)


def product(*factors: Expr) -> Mul:
    """An unevaluated product, printed in the order given (``V_{1,1} G_{1,1}``, as seed 000)."""
    return Mul(*factors, evaluate=False)


_FRAC = re.compile(r"\\frac\{((?:[^{}]|\{[^{}]*\})*)\}\{((?:[^{}]|\{[^{}]*\})*)\}")


def width(text: str) -> float:
    """Rough width of printed math in characters: subscripts count 0.7, a fraction its
    wider part, a command one character."""
    match = _FRAC.search(text)
    while match:
        wide = max(width(match.group(1)), width(match.group(2)))
        text = text[:match.start()] + "~" * math.ceil(wide) + text[match.end():]
        match = _FRAC.search(text)
    subscripts = sum(0.7 * len(s) for s in re.findall(r"_\{([^{}]*)\}", text))
    text = re.sub(r"_\{[^{}]*\}", "", text)
    text = re.sub(r"\\(?:cdot|times)", "##", text)
    text = re.sub(r"\\[a-zA-Z]+", "#", text)
    return subscripts + len(re.sub(r"[{} ]", "", text))


#: How LaTeX's special characters are written as text (in \texttt).
_TYPEWRITER = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&",
               "#": r"\#", "%": r"\%", "_": r"\_", "^": r"\^{}", "~": r"\~{}"}


def typewriter(text: str) -> str:
    """``text`` (a command line, a file's path) as LaTeX text for ``\\texttt``: every special
    character escaped, so that a path such as ``/tmp/my_run/values.json`` compiles, and
    ``--`` kept apart (in the typewriter font it would print as an en dash)."""
    return "".join(_TYPEWRITER.get(char, char) for char in text).replace("--", "-{}-")


@dataclass(frozen=True)
class Row:
    """One line of an ``align*``: ``left &right``, then, for a sum printed elided, its number
    of ``terms`` (0 otherwise), then ``end`` (punctuation after that count)."""

    left: str
    right: str
    terms: int = 0
    end: str = ""


def elide(items: Sequence[Any]) -> list[Any]:
    """At most ``MAX_SUM_TERMS`` items: the first ones, ``None`` for ``\\cdots``, the last two."""
    if len(items) <= MAX_SUM_TERMS:
        return list(items)
    return [*items[:MAX_SUM_TERMS - 8], None, *items[-2:]]


def sum_rows(left: str, items: Sequence[Any], fmt: Callable[[Any], str],
             end: str = "", measure: Callable[[str], float] | None = None,
             join: Callable[[list[str], bool], str] | None = None) -> list[Row]:
    """``left = t1 + t2 + ...`` over as many ``align*`` lines as the widths need.

    Only the items shown are printed (``fmt``): long sums keep their first and last terms
    around ``\\cdots``, and their last row says how many terms there are (``Row.terms``). An
    empty sum is ``0``. ``end`` follows the last term. ``measure`` (default ``width``) and
    ``join`` (default: terms joined by ``+``) are a document's own, where its names print
    wider or narrower or its terms carry signs.
    """
    measure, join = measure or width, join or _join
    shown = [r"\cdots" if item is None else fmt(item) for item in elide(items)] or ["0"]
    rows: list[Row] = []
    line: list[str] = []
    used = measure(left) + 2
    for term in shown:
        w = measure(term) + 3
        if line and used + w > LINE_WIDTH:
            rows.append(Row(left if not rows else "", join(line, not rows)))
            line, used = [], measure(left) + 5
        line.append(term)
        used += w
    rows.append(Row(left if not rows else "", join(line, not rows) + end,
                    len(items) if len(items) > MAX_SUM_TERMS else 0))
    return rows


def _join(terms: list[str], first: bool) -> str:
    return ("= " if first else r"\quad + ") + " + ".join(terms)
