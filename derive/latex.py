"""LaTeX derivation documents: the backward pass of one layer, derived the way the seeds do it.

``to_latex(spec)`` returns a standalone LaTeX document for exactly that layer:

1. the setup: shapes, stride, padding, dilation, the output-size formula with the numbers
   substituted, and the input rows/columns no window reads (their gradient is zero);
2. ``V``, ``K`` (per channel pair), ``Z`` and ``G = dJ/dZ`` written out as matrices of symbols;
3. the forward equations, one per output element shown;
4. for every gradient element shown, the chain rule ``dJ/dx = sum_z dZ[z]/dx * dJ/dZ[z]``, each
   factor evaluated with ``sympy.diff``, then the simplified result; for ``dJ/dV`` also seed
   000's reading of its constraint sums (which ``(l, m)`` satisfy ``(l-1)s + m = j``);
5. the compact forms, as index formulas and as matrices like seed 003's (B.18) and (B.26):
   ``dJ/dK`` the valid correlation of V with G, ``dJ/dV`` the full correlation of the
   stride-dilated, zero-padded G with the 180-degree-rotated kernel, ``dJ/db`` the sum of G,
   and the sums over channels;
6. what was verified, and a provenance line.

How it is built. Every expression is a SymPy object printed by ``sympy.latex``'s printer; a
``LatexPrinter`` subclass only changes how two node types read (``dZ/dK`` as seed 000 writes
it, and one summation sign per index as seed 003 writes it). Layout (splitting long sums
over lines, eliding the middle of very long ones) works on the printed terms. The document
is the Jinja template ``templates/derivation.tex.jinja`` with LaTeX-safe delimiters
(``\\VAR{...}``, ``\\BLOCK{...}``); every decision is made here, the template only loops.

Large layers. An explicit derivation of the whole layer grows as outputs x kernel, so the
document expands only the selected elements (``elements``), each by walking just the outputs
that read it; the general index formulas stand for the rest.

Nothing is printed unproven. ``prove(spec)`` checks the index forms against the explicit
derivation (on the spec itself, or on its reduced proxy when the spec is large); every
element expanded here is checked against its index form, every constraint-sum reading
against its chain-rule result, and the matrix forms against the index forms (on the spec, or
on the same proxy). A mismatch raises ``DerivationError`` and nothing is written.

Limits: indices with two or more digits make wide lines; long sums and large matrices are
elided in the middle (the count is printed), so a document stays readable and of bounded
size. ``elements="all"`` is refused above ``ALL_LIMIT`` elements.
"""

from __future__ import annotations

import functools
import itertools
import math
import os
import re
import secrets
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
from sympy import (
    Add,
    Derivative,
    Expr,
    Indexed,
    IndexedBase,
    Matrix,
    Mul,
    Rational,
    S,
    Sum,
    Symbol,
    diff,
    expand,
    together,
)
from sympy.printing.latex import LatexPrinter

from .errors import CorrgenError, DerivationError
from .forward import forward_exprs, kernel_element, window
from .gradients import LayerExprs, derive_layer
from .index_forms import Proof, index_forms, prove
from .index_forms import c as _c
from .index_forms import i as _i
from .index_forms import j as _j
from .index_forms import o as _o
from .index_forms import u as _u
from .index_forms import v as _v
from .index_forms import x as _x
from .index_forms import y as _y
from .spec import LayerSpec
from .symbols import G, K, V, Z, b


class LatexError(CorrgenError):
    """The LaTeX document cannot be made, written or compiled as asked."""


# -- notation -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Notation:
    """The letters of one document: array names (SymPy symbol names) and index letters."""

    name: str
    input: str
    kernel: str
    bias: str
    output: str
    upstream: str
    loss: str
    correlate: str  # LaTeX operator of a valid correlation
    out_idx: tuple[str, str]  # output row, column
    tap_idx: tuple[str, str]  # kernel row, column
    in_idx: tuple[str, str]  # input row, column
    row_pair: tuple[str, str]  # constraint reading (seed 000): output row, kernel row
    col_pair: tuple[str, str]  # ... output column, kernel column
    about: str


NOTATIONS: dict[str, Notation] = {
    "seed000": Notation(
        "seed000", "V", "K", "b", "Z", "G", "J", r"\star",
        ("y", "x"), ("i", "j"), ("u", "v"), ("l", "m"), ("n", "q"),
        "the letters of seed 000: input $V$, kernel $K$, bias $b$, output $Z$, loss $J$ and "
        r"the upstream gradient $G = \partial J / \partial Z$",
    ),
    "seed003": Notation(
        "seed003", "x", "w", "b", "y", "delta", "E", r"\otimes",
        ("i", "j"), ("k", "l"), ("m", "n"), ("i", "k"), ("j", "l"),
        "the letters of seed 003: input $x$, weights $w$, bias $b$, output $y$, error $E$ and "
        r"$\delta = \partial E / \partial y$",
    ),
}

#: ``elements`` values besides a count N.
SELECTIONS = ("auto", "all", "corners")
#: ``auto`` expands every element when the layer has at most this many (outputs + gradients).
AUTO_ALL_LIMIT = 150
#: ``all`` refuses layers with more elements than this: the document would not be readable.
ALL_LIMIT = 400
#: A count N expands at most this many elements per array.
N_LIMIT = 100
#: The chain rule lists every output, zero factors included, up to this many outputs.
ALL_OUTPUTS_LIMIT = 9
#: Sums longer than this show their first and last terms around ``\cdots``.
MAX_SUM_TERMS = 24
#: Matrices with more rows (columns) than this show their first and last ones around dots.
MAX_MATRIX = 8
#: The matrix forms are printed when every matrix has at most this many rows and columns.
MAX_COMPACT = 12
#: Channel pairs (or channels) written out in full; beyond, the first and the last.
MAX_PAIRS = 4
#: Width of one display line, in characters of visible math (see ``_width``).
LINE_WIDTH = 58

INSTALL_HINT = ("apt-get install texlive-latex-base texlive-latex-recommended "
                "texlive-fonts-recommended")


def parse_elements(value: Any) -> str | int:
    """``"all"``, ``"corners"``, ``"auto"`` or a count N (an int, or text such as ``"6"``)."""
    if isinstance(value, str) and value.strip().lower() in SELECTIONS:
        return value.strip().lower()
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise LatexError(f"elements={value!r}: expected all, corners, auto or a count N "
                         f"from 1 to {N_LIMIT}")
    if not 1 <= value <= N_LIMIT:
        raise LatexError(f"elements={value!r}: a count N of elements expanded per array "
                         f"must be from 1 to {N_LIMIT}")
    return value


# -- printing -------------------------------------------------------------------------------------


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


def _width(text: str) -> float:
    """Rough width of printed math in characters: subscripts count 0.7, a fraction its
    wider part, a command one character."""
    match = _FRAC.search(text)
    while match:
        wide = max(_width(match.group(1)), _width(match.group(2)))
        text = text[:match.start()] + "~" * math.ceil(wide) + text[match.end():]
        match = _FRAC.search(text)
    subscripts = sum(0.7 * len(s) for s in re.findall(r"_\{([^{}]*)\}", text))
    text = re.sub(r"_\{[^{}]*\}", "", text)
    text = re.sub(r"\\(?:cdot|times)", "##", text)
    text = re.sub(r"\\[a-zA-Z]+", "#", text)
    return subscripts + len(re.sub(r"[{} ]", "", text))


@dataclass(frozen=True)
class Row:
    """One line of an ``align*``: ``left &right``."""

    left: str
    right: str


def elide(items: Sequence[Any]) -> list[Any]:
    """At most ``MAX_SUM_TERMS`` items: the first ones, ``None`` for ``\\cdots``, the last two."""
    if len(items) <= MAX_SUM_TERMS:
        return list(items)
    return [*items[:MAX_SUM_TERMS - 8], None, *items[-2:]]


def sum_rows(left: str, items: Sequence[Any], fmt: Callable[[Any], str],
             end: str = "") -> list[Row]:
    """``left = t1 + t2 + ...`` over as many ``align*`` lines as the widths need.

    Only the items shown are printed (``fmt``): long sums keep their first and last terms
    around ``\\cdots`` and say how many terms there are. An empty sum is ``0``.
    """
    shown = [r"\cdots" if item is None else fmt(item) for item in elide(items)] or ["0"]
    rows: list[Row] = []
    line: list[str] = []
    used = _width(left) + 2
    for term in shown:
        w = _width(term) + 3
        if line and used + w > LINE_WIDTH:
            rows.append(Row(left if not rows else "", _join(line, first=not rows)))
            line, used = [], _width(left) + 5
        line.append(term)
        used += w
    rows.append(Row(left if not rows else "", _join(line, first=not rows)))
    note = rf"\quad\text{{({len(items)} terms)}}" if len(items) > MAX_SUM_TERMS else ""
    rows[-1] = Row(rows[-1].left, rows[-1].right + end + note)
    return rows


def _join(terms: list[str], first: bool) -> str:
    return ("= " if first else r"\quad + ") + " + ".join(terms)


# -- what the template receives -------------------------------------------------------------------


@dataclass
class Block:
    """One element expanded: heading, ``align*`` rows, notes, and (for V) the reading."""

    heading: str
    rows: list[Row]
    notes: list[str] = field(default_factory=list)
    reading: list[str] = field(default_factory=list)
    reading_rows: list[Row] = field(default_factory=list)


@dataclass
class Section:
    """One pass: the general formula, a sentence, and the elements expanded."""

    title: str
    intro: str
    general: list[Row]
    rule: str
    blocks: list[Block]
    selection: str


@dataclass
class Compact:
    """One compact form: a sentence, its index formula and its matrix displays (maybe none)."""

    title: str
    text: str
    formula: str
    displays: list[str]
    remark: str = ""
    rows: list[Row] = field(default_factory=list)


# -- element selection ----------------------------------------------------------------------------


def _corners(shape: tuple[int, ...], channel_axes: int) -> list[tuple[int, ...]]:
    """The spatial corners of the first and of the last channel (pair), and the centre of
    the first one, in row-major order."""
    picks: set[tuple[int, ...]] = set()
    for channels in ((0,) * channel_axes, tuple(n - 1 for n in shape[:channel_axes])):
        picks.update(channels + corner for corner in itertools.product(
            *({0, n - 1} for n in shape[channel_axes:])))
    picks.add(tuple([0] * channel_axes + [n // 2 for n in shape[channel_axes:]]))
    return sorted(picks)


def _spread(shape: tuple[int, ...], count: int) -> list[tuple[int, ...]]:
    """``count`` indices evenly spread in row-major order, first and last included."""
    total = math.prod(shape)
    if count >= total:
        return list(itertools.product(*(range(n) for n in shape)))
    flat = [0] if count == 1 else sorted({round(k * (total - 1) / (count - 1))
                                          for k in range(count)})
    picks = []
    for f in flat:
        index = []
        for n in reversed(shape):
            f, r = divmod(f, n)
            index.append(r)
        picks.append(tuple(reversed(index)))
    return picks


def _select(how: str | int, shape: tuple[int, ...], channel_axes: int) -> list[tuple[int, ...]]:
    if how == "all":
        return list(itertools.product(*(range(n) for n in shape)))
    if how == "corners":
        return _corners(shape, channel_axes)
    return _spread(shape, int(how))


def _taps(pos: int, pad: int, stride: int, dil: int, taps: int,
          n_out: int) -> Iterator[tuple[int, int]]:
    """Kernel taps ``t`` and outputs ``y`` (0-based) with ``y*stride + t*dil - pad == pos``."""
    for t in range(taps):
        q, r = divmod(pos + pad - t * dil, stride)
        if r == 0 and 0 <= q < n_out:
            yield t, q


# -- the matrix forms -----------------------------------------------------------------------------


class MatrixForms:
    """The matrices of the compact forms (0-based, DESIGN's symbols), for one spec.

    Per axis (rows shown; columns alike), with ``s`` stride, ``d`` dilation, ``p`` top padding:

    - ``vbar(c)``: ``V[c]`` with ``p`` zero rows above, cut after the last row a window reads
      (``(HO-1)s + (KH-1)d + 1`` rows in all);
    - ``gup(o)``: ``G[o]`` with ``s-1`` zero rows between neighbours (stride-dilated);
    - ``dk(o, c)``: the valid correlation ``vbar(c) * gup(o)``, every ``d``-th row (and rotated
      by 180 degrees in convolution mode);
    - ``ghat(o)``: ``gup(o)`` moved down by ``q = (KH-1)d - p`` rows, zero elsewhere, ``H +
      (KH-1)d`` rows (the zero padding of a full correlation);
    - ``rot(o, c)``: the kernel the windows apply, rotated by 180 degrees, ``d-1`` zero rows
      between taps;
    - ``dv(c)``: ``sum over o`` of the valid correlations ``ghat(o) * rot(o, c)``.
    """

    def __init__(self, spec: LayerSpec):
        self.spec = spec
        self.C, self.H, self.W = spec.input
        self.O, _, self.KH, self.KW = spec.kernel
        _, self.HO, self.WO = spec.output_shape
        (self.sh, self.sw), (self.dh, self.dw) = spec.stride, spec.dilation
        self.top, _, self.left, _ = spec.pads
        self.q_rows = (self.KH - 1) * self.dh - self.top
        self.q_cols = (self.KW - 1) * self.dw - self.left

    def vbar(self, c: int) -> Matrix:
        rows = (self.HO - 1) * self.sh + (self.KH - 1) * self.dh + 1
        cols = (self.WO - 1) * self.sw + (self.KW - 1) * self.dw + 1

        def entry(t: int, s: int) -> Expr:
            u, v = t - self.top, s - self.left
            return V[c, u, v] if 0 <= u < self.H and 0 <= v < self.W else S.Zero

        return Matrix(rows, cols, entry)

    def gup(self, o: int) -> Matrix:
        def entry(t: int, s: int) -> Expr:
            if t % self.sh or s % self.sw:
                return S.Zero
            return G[o, t // self.sh, s // self.sw]

        return Matrix((self.HO - 1) * self.sh + 1, (self.WO - 1) * self.sw + 1, entry)

    def ghat(self, o: int) -> Matrix:
        up = self.gup(o)

        def entry(t: int, s: int) -> Expr:
            r, k = t - self.q_rows, s - self.q_cols
            return up[r, k] if 0 <= r < up.rows and 0 <= k < up.cols else S.Zero

        return Matrix(self.H + (self.KH - 1) * self.dh, self.W + (self.KW - 1) * self.dw, entry)

    def applied(self, o: int, c: int) -> Matrix:
        """The kernel the windows apply, ``K~[o, c]`` (rotated by 180 degrees in convolution)."""
        return Matrix(self.KH, self.KW,
                      lambda i, j: kernel_element(self.spec, o, c, i, j))

    def rot(self, o: int, c: int) -> Matrix:
        """The applied kernel rotated by 180 degrees, then dilated."""
        applied = self.applied(o, c)
        return self.dilate(Matrix(self.KH, self.KW,
                                  lambda i, j: applied[self.KH - 1 - i, self.KW - 1 - j]))

    @staticmethod
    def correlate(a: Matrix, k: Matrix) -> Matrix:
        """Valid correlation (no flip): ``out[t, s] = sum k[r, q] * a[t + r, s + q]``."""

        def entry(t: int, s: int) -> Expr:
            terms = [k[r, q] * a[t + r, s + q] for r in range(k.rows) for q in range(k.cols)
                     if k[r, q] != 0 and a[t + r, s + q] != 0]
            return Add(*terms)

        return Matrix(a.rows - k.rows + 1, a.cols - k.cols + 1, entry)

    def dilate(self, m: Matrix) -> Matrix:
        """``m`` with ``d-1`` zero rows (columns) between its rows (columns)."""
        return Matrix((m.rows - 1) * self.dh + 1, (m.cols - 1) * self.dw + 1,
                      lambda r, s: S.Zero if r % self.dh or s % self.dw
                      else m[r // self.dh, s // self.dw])

    def z(self, o: int) -> Matrix:
        """``Z[o]``: ``b[o]`` plus the sum over ``c`` of ``vbar(c)`` correlated with the
        dilated kernel, every ``s``-th row and column."""
        total = Matrix.zeros((self.HO - 1) * self.sh + 1, (self.WO - 1) * self.sw + 1)
        for c in range(self.C):
            total += self.correlate(self.vbar(c), self.dilate(self.applied(o, c)))
        bias = b[o] if self.spec.bias else S.Zero
        return Matrix(self.HO, self.WO, lambda y, x: bias + total[y * self.sh, x * self.sw])

    def dk(self, o: int, c: int) -> Matrix:
        full = self.correlate(self.vbar(c), self.gup(o))
        picked = Matrix(self.KH, self.KW, lambda i, j: full[i * self.dh, j * self.dw])
        if self.spec.mode == "convolution":
            picked = Matrix(self.KH, self.KW,
                            lambda i, j: picked[self.KH - 1 - i, self.KW - 1 - j])
        return picked

    def dv(self, c: int) -> Matrix:
        total = Matrix.zeros(self.H, self.W)
        for o in range(self.O):
            total += self.correlate(self.ghat(o), self.rot(o, c))
        return total

    def printable(self) -> bool:
        """Whether the matrices are small enough to print (and to check on this spec)."""
        sizes = self.vbar(0).shape + self.ghat(0).shape
        return max(sizes) <= MAX_COMPACT and self.O * self.C <= 64

    def check(self, explicit: LayerExprs | None = None) -> dict[str, int]:
        """Every element of every matrix form against the index forms, or against
        ``explicit``, the derivation ``prove`` showed equal to them; counts per pass."""
        if explicit is not None:
            passes = explicit.passes()
            ev = {name: passes[name].__getitem__ for name in passes}
        else:
            ev = {name: form.evaluator() for name, form in index_forms(self.spec).items()}
        counts = {"forward": 0, "grad_weight": 0, "grad_input": 0, "grad_bias": 0}

        def same(name: str, index: tuple[int, ...], got: Expr) -> None:
            want = ev[name](index)
            if got != want and expand(got - want) != 0:
                raise DerivationError(
                    f"{name}{list(index)} of {self.spec.describe()}: the matrix form gives "
                    f"{got} but the proven index form gives {want}")
            counts[name] += 1

        for o in range(self.O):
            m = self.z(o)
            for y in range(self.HO):
                for x in range(self.WO):
                    same("forward", (o, y, x), m[y, x])
        for o in range(self.O):
            for c in range(self.C):
                m = self.dk(o, c)
                for i in range(self.KH):
                    for j in range(self.KW):
                        same("grad_weight", (o, c, i, j), m[i, j])
        for c in range(self.C):
            m = self.dv(c)
            for u in range(self.H):
                for v in range(self.W):
                    same("grad_input", (c, u, v), m[u, v])
        if self.spec.bias:
            for o in range(self.O):
                same("grad_bias", (o,), Add(*[G[o, y, x] for y in range(self.HO)
                                              for x in range(self.WO)]))
        return counts


# -- the document ---------------------------------------------------------------------------------


class _Document:
    """Builds the template context for one spec; every decision is made here."""

    def __init__(self, spec: LayerSpec, notation: Notation, base: int, elements: str | int):
        self.spec, self.nt, self.base = spec, notation, base
        self.C, self.H, self.W = spec.input
        self.O, _, self.KH, self.KW = spec.kernel
        _, self.HO, self.WO = spec.output_shape
        (self.sh, self.sw), (self.dh, self.dw) = spec.stride, spec.dilation
        self.top, self.bottom, self.left, self.right = spec.pads
        multi_c, multi_o = self.C > 1, self.O > 1
        # One row everywhere (a 1-D layer): the row index is left out too, as seed 003's
        # one-dimensional appendix writes x_i.
        self.rows_on = not self.H == self.KH == self.HO == 1
        self.cols_on = not self.W == self.KW == self.WO == 1 or not self.rows_on
        r, k = self.rows_on, self.cols_on
        #: which indices of each array are written (singleton channel axes are left out)
        self.keep = {V: (multi_c, r, k), K: (multi_o, multi_c, r, k), b: (multi_o,),
                     Z: (multi_o, r, k), G: (multi_o, r, k)}
        self.names = {V: notation.input, K: notation.kernel, b: notation.bias,
                      Z: notation.output, G: notation.upstream}
        self.bases = {a: IndexedBase(Symbol(n)) for a, n in self.names.items()}
        self.loss = Symbol(notation.loss)
        self.outputs = self.O * self.HO * self.WO
        self.how = self._resolve(elements)
        self.forms = index_forms(spec)
        self.eval = {name: form.evaluator() for name, form in self.forms.items()}
        self.checked = dict.fromkeys(("forward", "grad_input", "grad_weight", "grad_bias",
                                      "reading"), 0)
        small = self.outputs <= ALL_OUTPUTS_LIMIT
        self.forward = forward_exprs(spec) if small else None

    # -- selection ---------------------------------------------------------------------------

    def counts(self) -> dict[str, int]:
        counts = {"outputs": self.outputs, "grad_input": math.prod(self.spec.input),
                  "grad_weight": math.prod(self.spec.kernel)}
        if self.spec.bias:
            counts["grad_bias"] = self.O
        return counts

    def _resolve(self, elements: str | int) -> str | int:
        how = parse_elements(elements)
        total = sum(self.counts().values())
        if how == "auto":
            return "all" if total <= AUTO_ALL_LIMIT else "corners"
        if how == "all" and total > ALL_LIMIT:
            parts = ", ".join(f"{n:,} {k}" for k, n in self.counts().items())
            raise LatexError(
                f"elements='all': {self.spec.describe()} has {total:,} elements ({parts}); "
                f"more than {ALL_LIMIT} make a document too long to read: use corners, or a "
                f"count N (at most {N_LIMIT} per array)")
        return how

    def selection(self, array: str) -> list[tuple[int, ...]]:
        """0-based indices expanded, for ``outputs`` or one gradient."""
        if array == "outputs":
            return _select(self.how, self.spec.output_shape, 1)
        if array == "grad_input":
            picks = _select(self.how, self.spec.input, 1)
            rows, cols = self.spec.uncovered
            if self.how != "all" and (rows or cols):  # show one exactly-zero gradient
                extra = (0, rows[0] if rows else 0, cols[0] if cols else 0)
                picks = sorted({*picks, extra})
            return picks
        if array == "grad_weight":
            return _select(self.how, self.spec.kernel, 2)
        return _select(self.how, (self.O,), 1)

    def selection_text(self, array: str, what: str) -> str:
        chosen, total = len(self.selection(array)), self.counts()[array]
        if total == 1:
            return f"Its one {what[:-1]} is expanded."
        if chosen == total:
            return f"All {total} {what} are expanded."
        how = ("the corners of the first and of the last channel, and a central element"
               if self.how == "corners"
               else "evenly spread in row-major order")
        return (f"{chosen} of the {total:,} {what} are expanded ({how}); the general formula "
                "above gives every other one.")

    # -- symbols ---------------------------------------------------------------------------

    def el(self, array: IndexedBase, index: Sequence[Any]) -> Expr:
        """The written element of ``array`` at a 0-based index (numbers or index letters)."""
        kept = [i + self.base for i, k in zip(index, self.keep[array]) if k]
        return self.bases[array][tuple(kept)] if kept else Symbol(self.names[array])

    def part(self, array: IndexedBase, channels: Sequence[int]) -> Expr:
        """A channel slice (``V_c``, ``K_{o,c}``) by its kept channel indices."""
        kept = [i + self.base for i, k in zip(channels, self.keep[array]) if k]
        return self.bases[array][tuple(kept)] if kept else Symbol(self.names[array])

    def show(self, expr: Expr) -> Expr:
        """``expr`` (0-based, DESIGN's symbols) in the document's letters and index base."""
        return expr.xreplace({e: self.el(e.base, e.indices)
                              for e in expr.atoms(Indexed) if e.base in self.keep})

    def dj(self, element: Expr) -> str:
        """``\\frac{\\partial J}{\\partial element}``."""
        return tex(Derivative(self.loss, element))

    def letters(self) -> dict[Symbol, Symbol]:
        """Index-form symbols (0-based) -> the document's index letters."""
        nt = self.nt
        pairs = {_o: "o", _c: "c", _y: nt.out_idx[0], _x: nt.out_idx[1],
                 _i: nt.tap_idx[0], _j: nt.tap_idx[1], _u: nt.in_idx[0], _v: nt.in_idx[1]}
        return {s: Symbol(n, integer=True) for s, n in pairs.items()}

    def letter_el(self, array: IndexedBase, indices: Sequence[Expr],
                  singles: dict[Symbol, int]) -> Expr:
        """An element with affine 0-based indices, written with letters in the index base."""
        shift = {s: t - self.base for s, t in self.letters().items()}
        written = []
        for index in indices:
            e = index.subs(singles).subs(shift, simultaneous=True) + self.base
            if any(r.q != 1 for r in e.atoms(Rational)):
                e = together(e)
            written.append(e - self.base)  # el() adds the base back
        return self.el(array, written)

    # -- general formulas ------------------------------------------------------------------

    def general(self, name: str) -> Row:
        """The proven index form of one pass, written with the document's letters."""
        form = self.forms[name]
        letters = self.letters()
        singles = {s: 0 for s, n in (*form.free, *form.sums) if n == 1}
        body: Expr = product(*[self.letter_el(f.base, f.indices, singles)
                               for f in form.factors])
        for s, n in reversed(form.sums):
            if n > 1:
                body = Sum(body, (letters[s], self.base, n - 1 + self.base))
        target = {"forward": Z, "grad_input": V, "grad_weight": K, "grad_bias": b}[name]
        lhs = self.letter_el(target, [s for s, _ in form.free], singles)
        right = tex(body)
        if form.constant is not None:
            right = tex(self.letter_el(b, form.constant.indices, singles)) + " + " + right
        return Row(tex(lhs) if name == "forward" else self.dj(lhs), "= " + right)

    def constraint(self, out_l: str, tap_l: str, stride: int, dil: int, pad: int) -> str:
        """Left side of seed 000's constraint ``(l-1) s + m = j`` with this axis' numbers:
        ``(l-1) s + (m-1) d + 1 - p`` (1-based) or ``l s + m d - p`` (0-based), the dilation
        and padding parts written only when they are not 1 and 0."""
        if self.base == 1:
            text = f"({out_l} - 1) \\cdot {stride} + "
            text += f"({tap_l} - 1) \\cdot {dil} + 1" if dil != 1 else tap_l
        else:
            text = f"{out_l} \\cdot {stride} + " + (f"{tap_l} \\cdot {dil}" if dil != 1
                                                     else tap_l)
        return text + (f" - {pad}" if pad else "")

    def constraint_sum(self) -> str:
        """Seed 000's equation (3) for this layer: dJ/dV as sums under constraints."""
        nt, B = self.nt, self.base
        c, o = Symbol("c", integer=True), Symbol("o", integer=True)
        u, v = (Symbol(n, integer=True) for n in nt.in_idx)
        (l_, m_), (n_, q_) = ((Symbol(a, integer=True), Symbol(t, integer=True))
                              for a, t in (nt.row_pair, nt.col_pair))
        tap_r = m_ - B if self.spec.mode == "correlation" else self.KH - 1 - (m_ - B)
        tap_c = q_ - B if self.spec.mode == "correlation" else self.KW - 1 - (q_ - B)
        kern = self.el(K, (o - B, c - B, tap_r, tap_c))
        grad = self.el(G, (o - B, l_ - B, n_ - B))
        lhs = self.dj(self.el(V, (c - B, u - B, v - B)))
        sums = []
        for on, (a, t), pos, stride, dil, pad in (
            (self.rows_on, nt.row_pair, u, self.sh, self.dh, self.top),
            (self.cols_on, nt.col_pair, v, self.sw, self.dw, self.left),
        ):
            if on:
                cond = self.constraint(a, t, stride, dil, pad)
                sums.append(rf"\sum_{{\substack{{{a},\,{t} \\ \text{{s.t.}} \\ "
                            rf"{cond} = {tex(pos)}}}}}")
        if self.O > 1:
            sums.append(rf"\sum_{{o={B}}}^{{{self.O - 1 + B}}}")
        return f"{lhs} = {' '.join(sums)} {tex(product(kern, grad))}"

    # -- per-element expansions ------------------------------------------------------------

    def reads(self, var: Indexed) -> list[tuple[tuple[int, int, int], Expr]]:
        """The outputs whose forward sum holds ``var``, each with that one product term."""
        spec, out = self.spec, []
        if var.base == V:
            cc, uu, vv = (int(t) for t in var.indices)
            for o in range(self.O):
                for ti, y in _taps(uu, self.top, self.sh, self.dh, self.KH, self.HO):
                    for tj, x in _taps(vv, self.left, self.sw, self.dw, self.KW, self.WO):
                        out.append(((o, y, x), kernel_element(spec, o, cc, ti, tj) * var))
        elif var.base == K:
            o, cc, i, j = (int(t) for t in var.indices)
            flip = spec.mode == "convolution"
            ti, tj = (self.KH - 1 - i, self.KW - 1 - j) if flip else (i, j)
            for y in range(self.HO):
                uu = y * self.sh + ti * self.dh - self.top
                for x in range(self.WO):
                    vv = x * self.sw + tj * self.dw - self.left
                    if 0 <= uu < self.H and 0 <= vv < self.W:
                        out.append(((o, y, x), var * V[cc, uu, vv]))
        else:
            o = int(var.indices[0])
            out = [((o, y, x), var) for y in range(self.HO) for x in range(self.WO)]
        return sorted(out, key=lambda t: t[0])

    def _check(self, name: str, index: tuple[int, ...], expr: Expr) -> None:
        want = self.eval[name](index)
        if expr != want and expand(expr - want) != 0:
            raise DerivationError(
                f"{name}{list(index)} of {self.spec.describe()}: the expansion gives {expr} "
                f"but the proven index form gives {want}")
        self.checked[name] += 1

    def _check_steps(self, name: str, index: tuple[int, ...],
                     steps: list[tuple[tuple[int, int, int], Expr | None]]) -> Expr:
        """Check a chain rule against the proven index form; return the index form's value.

        Complete (no ``None`` factor): its sum must equal the form. Elided (factors only for
        the terms printed): the form must have as many terms as there are steps, and every
        printed ``factor * G`` must be one of them.
        """
        if all(f is not None for _, f in steps):
            result = Add(*[f * G[out] for out, f in steps])
            self._check(name, index, result)
            return result
        want = self.eval[name](index)
        terms = set(Add.make_args(want))
        wrong = [f * G[out] for out, f in steps if f is not None and f * G[out] not in terms]
        if len(terms) != len(steps) or wrong:
            raise DerivationError(
                f"{name}{list(index)} of {self.spec.describe()}: the chain rule has "
                f"{len(steps)} terms (printed terms not in the index form: {wrong}) but the "
                f"proven index form has {len(terms)}")
        self.checked[name] += 1
        return want

    def forward_rows(self, out: tuple[int, int, int], last: bool) -> list[Row]:
        o, y, x = out
        products = [(kernel_element(self.spec, o, cc, i, j), V[cc, uu, vv])
                    for i, j, uu, vv in window(self.spec, y, x) for cc in range(self.C)]
        expr = Add(*[k * v for k, v in products], *([b[o]] if self.spec.bias else []))
        self._check("forward", out, expr)
        items: list[Any] = list(products) + ([b[o]] if self.spec.bias else [])

        def fmt(item: Any) -> str:
            if isinstance(item, tuple):
                return tex(product(self.show(item[0]), self.show(item[1])), "times")
            return tex(self.show(item))

        return sum_rows(tex(self.el(Z, out)), items, fmt, end="." if last else ",")

    def gradient_block(self, name: str, var: Indexed) -> Block:
        """Seed 000's expansion of ``dJ/dvar``: chain rule, each factor evaluated, result."""
        index = tuple(int(t) for t in var.indices)
        shown_var = self.show(var)
        left = self.dj(shown_var)
        if self.forward is not None:  # few outputs: all of them, dZ/dvar = diff of Z
            steps = [(out, diff(z, var)) for out, z in self.forward.items()]
        else:
            # Only the outputs that read var, dZ/dvar = diff of the one term holding var.
            # A long sum is printed elided: only the terms printed are differentiated.
            reads = self.reads(var)
            printed = {out for out, _ in (t for t in elide(reads) if t is not None)}
            steps = [(out, diff(term, var) if out in printed else None)
                     for out, term in reads]
        result = self._check_steps(name, index, steps)

        out_syms = [Symbol("o", integer=True), *(Symbol(n, integer=True)
                                                 for n in self.nt.out_idx)]
        on = self.keep[Z]
        zsym = self.bases[Z][tuple(s for s, k in zip(out_syms, on) if k)]
        chain: Expr = product(Derivative(zsym, shown_var), Derivative(self.loss, zsym))
        for s, n, k in reversed(list(zip(out_syms, (self.O, self.HO, self.WO), on))):
            if k:
                chain = Sum(chain, (s, self.base, n - 1 + self.base))
        rows = [Row(left, "= " + tex(chain))]
        nonzero = [(out, f) for out, f in steps if f != 0]

        def derivative(step: tuple[Any, Expr]) -> str:
            z = self.el(Z, step[0])
            return tex(product(Derivative(z, shown_var), Derivative(self.loss, z)))

        def evaluated(step: tuple[Any, Expr]) -> str:
            return tex(product(self.show(step[1]), self.el(G, step[0])), "dot")

        def simplified(step: tuple[Any, Expr]) -> str:
            if step[1] == 1:
                return tex(self.el(G, step[0]))
            return evaluated(step)

        if steps:
            rows += sum_rows("", steps, derivative)
            rows += sum_rows("", steps, evaluated)
        if len(nonzero) != len(steps) or any(f == 1 for _, f in nonzero) or not steps:
            rows += sum_rows("", nonzero, simplified)
        rows[-1] = Row(rows[-1].left, rows[-1].right + ".")
        notes = []
        if self.forward is None:
            other = self.outputs - len(steps)
            if not steps:
                notes.append(f"No output reads ${tex(shown_var)}$: every factor is $0$.")
            elif other:
                notes.append(
                    f"Only the {len(steps)} outputs that read ${tex(shown_var)}$ are written; "
                    f"for the other {other:,} the factor "
                    f"${tex(Derivative(zsym, shown_var))}$ is $0$.")
        block = Block(f"Partial derivative with respect to ${tex(shown_var)}$", rows, notes)
        if name == "grad_input":
            self.reading(block, var, result)
        return block

    def reading(self, block: Block, var: Indexed, result: Expr) -> None:
        """Seed 000's reading of the constraint sums of ``dJ/dV[c, u, v]``, checked against
        ``result``: the chain rule's sum, or for an elided sum the proven index form that
        every printed chain-rule term belongs to."""
        cc, uu, vv = (int(t) for t in var.indices)
        B = self.base
        rows = list(_taps(uu, self.top, self.sh, self.dh, self.KH, self.HO))
        cols = list(_taps(vv, self.left, self.sw, self.dw, self.KW, self.WO))
        terms = [(kernel_element(self.spec, o, cc, m, q), G[o, row, n])
                 for o in range(self.O) for m, row in rows for q, n in cols]
        check = Add(*[k * g for k, g in terms])
        if check != result and expand(check - result) != 0:
            raise DerivationError(
                f"grad_input{[cc, uu, vv]} of {self.spec.describe()}: the constraint sums "
                f"give {check} but the chain rule gives {result}")
        self.checked["reading"] += 1
        for on, (out_l, tap_l), pos, pad, stride, dil, taps, found in (
            (self.rows_on, self.nt.row_pair, uu, self.top, self.sh, self.dh, self.KH, rows),
            (self.cols_on, self.nt.col_pair, vv, self.left, self.sw, self.dw, self.KW, cols),
        ):
            if not on:
                continue
            which = dict(found)
            said = [f"${tap_l} = {t + B} \\Rightarrow {out_l} = {which[t] + B}$" if t in which
                    else f"${tap_l} = {t + B}$: no ${out_l}$" for t in range(taps)]
            cond = self.constraint(out_l, tap_l, stride, dil, pad)
            block.reading.append(f"${cond} = {pos + B}$: " + ", ".join(said))
        block.reading_rows = sum_rows(
            self.dj(self.show(var)), terms,
            lambda t: tex(product(self.show(t[0]), self.show(t[1])), "dot"), end=".")

    # -- sections --------------------------------------------------------------------------

    def setup(self) -> dict[str, Any]:
        spec, nt = self.spec, self.nt

        def dims(*pairs: tuple[bool, int]) -> str:
            kept = r" \times ".join(str(n) for on, n in pairs if on)
            return r"\mathbb{R}" + (f"^{{{kept}}}" if kept else "")

        r, k = self.rows_on, self.cols_on
        shapes = [
            f"${tex(self.bases[V].label)} \\in "
            f"{dims((self.C > 1, self.C), (r, self.H), (k, self.W))}$",
            f"${tex(self.bases[K].label)} \\in "
            f"{dims((self.O > 1, self.O), (self.C > 1, self.C), (r, self.KH), (k, self.KW))}$",
        ]
        if spec.bias:
            shapes.append(f"${tex(self.bases[b].label)} \\in {dims((self.O > 1, self.O))}$")
        shapes += [
            f"${tex(self.bases[Z].label)} \\in "
            f"{dims((self.O > 1, self.O), (r, self.HO), (k, self.WO))}$",
            f"${tex(self.bases[G].label)} \\in "
            f"{dims((self.O > 1, self.O), (r, self.HO), (k, self.WO))}$",
        ]
        axes = []
        for on, label, n, kk, pt, pb, s, d, out, letter in (
            (r, "rows", self.H, self.KH, self.top, self.bottom, self.sh, self.dh, self.HO, "H"),
            (k, "columns", self.W, self.KW, self.left, self.right, self.sw, self.dw, self.WO,
             "W"),
        ):
            formula = (
                rf"{letter}_O = \left\lfloor \frac{{{letter} + p_{{{letter},1}} + "
                rf"p_{{{letter},2}} - d_{letter}\,(K_{letter} - 1) - 1}}{{s_{letter}}}"
                rf"\right\rfloor + 1 = \left\lfloor \frac{{{n} + {pt} + {pb} - {d} \cdot "
                rf"({kk} - 1) - 1}}{{{s}}} \right\rfloor + 1 = {out}"
            )
            axes.append({"label": label, "formula": formula, "shown": on})
        rows_u, cols_u = spec.uncovered
        if rows_u or cols_u:
            parts = []
            if rows_u:
                parts.append("rows " + ", ".join(str(t + self.base) for t in rows_u))
            if cols_u:
                parts.append("columns " + ", ".join(str(t + self.base) for t in cols_u))
            uncovered = (f"The stride is larger than the dilated kernel, so no window reads "
                         f"input {' and '.join(parts)}: the gradient "
                         f"${self.dj(self.bases[V].label)}$ is exactly $0$ there.")
        else:
            uncovered = "Every input row and column is read by at least one window."
        padding = spec.padding
        pad_name = (f"``{padding}'': " if isinstance(padding, str) else "")
        return {
            "shapes": shapes,
            "channels": f"$C = {self.C}$ input and $O = {self.O}$ output channels",
            "kernel": f"${self.KH} \\times {self.KW}$",
            "stride": f"$s_H = {self.sh}$, $s_W = {self.sw}$",
            "dilation": f"$d_H = {self.dh}$, $d_W = {self.dw}$",
            "padding": (f"{pad_name}$p_{{H,1}} = {self.top}$ rows above, "
                        f"$p_{{H,2}} = {self.bottom}$ below, $p_{{W,1}} = {self.left}$ columns "
                        f"left, $p_{{W,2}} = {self.right}$ right"),
            "mode": ("correlation: the kernel is not flipped, as in every seed"
                     if spec.mode == "correlation" else
                     "convolution: each window applies the kernel rotated by $180^\\circ$"),
            "bias": "with a bias" if spec.bias else "without a bias",
            "axes": axes,
            "uncovered": uncovered,
            "base": self.base,
            "dropped": self._dropped(),
            "notation": nt.about,
        }

    def _dropped(self) -> str:
        gone, kept = [], []
        for on, name in ((self.C > 1, "input channel"), (self.O > 1, "output channel"),
                         (self.rows_on, "row"), (self.cols_on, "column")):
            (kept if on else gone).append(name)
        if not gone:
            return "Every index is written: channel first, then row, then column."
        said = ", ".join(gone[:-1]) + (" and " if len(gone) > 1 else "") + gone[-1]
        return (f"Indices of extent one (the {said}) are left out, as seed 000 does; "
                + ("the others are written in the order " + ", ".join(kept) + "."
                   if len(kept) > 1 else f"only the {kept[0]} index is written."))

    def _matrix(self, n_rows: int, n_cols: int, entry: Callable[[int, int], Expr]) -> str:
        """A matrix of written symbols; large ones keep their first and last rows/columns."""
        def axis(n: int) -> list[int | None]:
            return list(range(n)) if n <= MAX_MATRIX else [0, 1, 2, None, n - 1]

        rows, cols = axis(n_rows), axis(n_cols)

        def cell(r: int | None, c: int | None) -> Expr:
            if r is None:
                return Symbol(r"\ddots") if c is None else Symbol(r"\vdots")
            if c is None:
                return Symbol(r"\cdots")
            return self.show(entry(r, c))

        return tex(Matrix([[cell(r, c) for c in cols] for r in rows]))

    def _pairs(self) -> list[tuple[int, int]]:
        pairs = list(itertools.product(range(self.O), range(self.C)))
        return pairs if len(pairs) <= MAX_PAIRS else [pairs[0], pairs[-1]]

    def _channels(self, n: int) -> list[int]:
        return list(range(n)) if n <= MAX_PAIRS else [0, n - 1]

    def arrays(self) -> list[dict[str, str]]:
        """Display lines of ``name = matrix``: one line per array, or, for one channel each
        way, all four on one line as seed 000 writes them."""
        groups: list[dict[str, Any]] = []

        def add(equations: list[str], skipped: int, what: str) -> None:
            caption = f"(the other {skipped} {what} are written alike)" if skipped else ""
            groups.append({"equations": equations, "caption": caption})

        def eq(name: Expr, n_rows: int, n_cols: int, entry: Callable[[int, int], Expr]) -> str:
            return f"{tex(name)} = {self._matrix(n_rows, n_cols, entry)}"

        channels = self._channels(self.C)
        add([eq(self.part(V, (c,)), self.H, self.W, lambda r, s, c=c: V[c, r, s])
             for c in channels], self.C - len(channels), "input channels")
        pairs = self._pairs()
        add([eq(self.part(K, (o, c)), self.KH, self.KW, lambda r, s, o=o, c=c: K[o, c, r, s])
             for o, c in pairs], self.O * self.C - len(pairs), "channel pairs")
        channels = self._channels(self.O)
        for array in (Z, G):
            add([eq(self.part(array, (o,)), self.HO, self.WO,
                    lambda r, s, o=o, a=array: a[o, r, s]) for o in channels],
                self.O - len(channels), "output channels")
        if self.O == self.C == 1 and max(self.H, self.W) <= MAX_MATRIX:
            groups = [{"equations": [g["equations"][0] for g in groups], "caption": ""}]
            return [{"equation": r",\quad ".join(groups[0]["equations"]), "caption": ""}]
        lines = []
        for group in groups:  # at most two matrices a line, so that they stay legible
            eqs = group["equations"]
            for n in range(0, len(eqs), 2):
                last = n + 2 >= len(eqs)
                lines.append({"equation": r",\quad ".join(eqs[n:n + 2]),
                              "caption": group["caption"] if last else ""})
        return lines

    def forward_section(self) -> Section:
        outs = self.selection("outputs")
        rows: list[Row] = []
        for n, out in enumerate(outs):
            rows += self.forward_rows(out, n == len(outs) - 1)
        padded = any(self.spec.pads)
        rule = (f"where ${tex(self.bases[V].label)}$ is read as $0$ outside its "
                f"{'rows and columns' if self.rows_on else 'columns'} (the zero padding)."
                if padded else "")
        return Section("Forward pass", "", [self.general("forward")], rule,
                       [Block("", rows)], self.selection_text("outputs", "outputs"))

    def gradient_section(self, name: str) -> Section:
        array = {"grad_weight": K, "grad_input": V, "grad_bias": b}[name]
        blocks = [self.gradient_block(name, array[index]) for index in self.selection(name)]
        title = {"grad_weight": "Gradient with respect to the kernel",
                 "grad_input": "Gradient with respect to the input",
                 "grad_bias": "Gradient with respect to the bias"}[name]
        rule = {
            "grad_weight": (f"where ${tex(self.bases[V].label)}$ is read as $0$ outside its "
                            "rows and columns (the zero padding)." if any(self.spec.pads)
                            else ""),
            "grad_input": ("where a term is $0$ unless every index of "
                           f"${tex(self.bases[G].label)}$ is an integer inside its range "
                           "(the stride and the borders)."),
            "grad_bias": "",
        }[name]
        what = {"grad_weight": "kernel elements", "grad_input": "input elements",
                "grad_bias": "bias elements"}[name]
        intro = ""
        if name == "grad_input":
            intro = self.constraint_sum()
        return Section(title, intro, [self.general(name)], rule, blocks,
                       self.selection_text(name, what))

    def _name(self, array: IndexedBase, decoration: str, letters: Sequence[str]) -> str:
        """A channel slice by letters (``\\bar{V}_c``); channel axes of extent 1 left out."""
        name = decoration.replace("@", tex(self.bases[array].label))
        kept = [t for t, k in zip(letters, self.keep[array]) if k]
        return f"{name}_{{{','.join(kept)}}}" if kept else name

    def compact(self, forms: MatrixForms, checked_on: LayerSpec) -> list[Compact]:
        """The compact forms, with this layer's matrices when they are small enough."""
        op, B = self.nt.correlate, self.base
        conv = self.spec.mode == "convolution"
        dilated = self.dh > 1 or self.dw > 1
        printable = forms.printable()
        plain_v = self.top == self.left == 0 and forms.vbar(0).shape == (self.H, self.W)
        plain_g = self.sh == self.sw == 1
        vbar = self._name(V, "@" if plain_v else r"\bar{@}", ["c"])
        gup = self._name(G, "@" if plain_g else r"@^{\uparrow}", ["o"])
        ghat = self._name(G, r"\hat{@}", ["o"])
        g_o = self._name(G, "@", ["o"])
        kern = self._name(K, r"\tilde{@}" if conv else "@", ["o", "c"])
        sum_o = r"\sum_{o} " if self.O > 1 else ""
        sum_c = r"\sum_{c} " if self.C > 1 else ""
        out: list[Compact] = []

        def lhs(array: IndexedBase, letters: Sequence[str]) -> str:
            name = self._name(array, "@", letters)
            return rf"\frac{{\partial {tex(self.loss)}}}{{\partial {name}}}"

        # Forward: the sum over input channels of valid correlations, every s-th position.
        strided = r"\big\rvert_{\text{every } s\text{-th}}" if not plain_g else ""
        bias = f"{self._name(b, '@', ['o'])} + " if self.spec.bias else ""
        words = [f"a sum over the input channels $c$ of valid correlations of ${vbar}$ with "
                 f"the kernel ${kern}$" if self.C > 1 else
                 f"the valid correlation of ${vbar}$ with the kernel ${kern}$"]
        if self.spec.bias:
            words[0] += ", plus the bias"
        if not plain_v:
            words.append(f"${vbar}$ is ${self._name(V, '@', ['c'])}$ with its zero padding, "
                         "cut after the last row and column a window reads")
        if not plain_g:
            words.append("with stride $s$ only every $s$-th row and column of the "
                         "correlation is an output")
        if dilated:
            words.append("with dilation $d$ the kernel carries $d-1$ zero rows (columns) "
                         "between its taps")
        if conv:
            words.append(f"${kern} = \\operatorname{{rot180}}({self._name(K, '@', ['o', 'c'])})$"
                         ", the kernel the windows apply in convolution mode")
        out.append(Compact(
            "The forward pass",
            "; ".join(words) + ".",
            f"{self._name(Z, '@', ['o'])} = {bias}{sum_c}\\left({vbar} {op} {kern}\\right)"
            f"{strided}", []))

        # dJ/dK: valid correlation of V with G, per channel pair.
        body = f"{vbar} {op} {gup}"
        if dilated:
            body = rf"\left({body}\right)\big\rvert_{{\text{{every }} d\text{{-th}}}}"
        if conv:
            body = rf"\operatorname{{rot180}}\left({body}\right)"
        words = [f"the valid correlation (no flip) of the input ${vbar}$ with the upstream "
                 f"gradient ${gup}$" + (", for every channel pair: no sum over channels"
                                        if self.O * self.C > 1 else "")]
        if not plain_v:
            words.append(f"${vbar}$ is the input with its zero padding, cut after the last "
                         "row and column a window reads")
        if not plain_g:
            words.append(f"${gup}$ is ${g_o}$ stride-dilated: $s-1$ zero rows (columns) "
                         "between neighbours")
        if dilated:
            words.append(f"with dilation $d$ the rows and columns ${B}, {B}+d, {B}+2d, \\ldots$ "
                         "of the correlation are kept")
        if conv:
            words.append("in convolution mode the windows apply the rotated kernel, so the "
                         "result is rotated back by $180^\\circ$")
        displays = []
        if printable:
            for o, c in self._pairs():
                body_m = f"{self._full(forms.vbar(c))} {op} {self._full(forms.gup(o))}"
                if dilated:
                    body_m = (rf"\left({body_m}\right)\big\rvert_{{\text{{rows, columns }} "
                              rf"{B}, {B}+{self.dh}, \ldots}}")
                if conv:
                    body_m = rf"\operatorname{{rot180}}\left({body_m}\right)"
                displays.append(f"{self.dj(self.part(K, (o, c)))} = {body_m}")
        out.append(Compact("The kernel gradient", "; ".join(words) + ".",
                           f"{lhs(K, ['o', 'c'])} = {body}", displays))

        # dJ/dV: full correlation of the stride-dilated, zero-padded G with rot180(K).
        q_r, q_c = forms.q_rows, forms.q_cols
        below = self.H + (self.KH - 1) * self.dh - q_r - ((self.HO - 1) * self.sh + 1)
        right = self.W + (self.KW - 1) * self.dw - q_c - ((self.WO - 1) * self.sw + 1)
        words = [
            "the full correlation of the upstream gradient with the kernel rotated by "
            "$180^\\circ$" + (", summed over the output channels $o$" if self.O > 1 else ""),
            f"${ghat}$ is ${g_o}$"
            + (" stride-dilated ($s-1$ zero rows and columns between neighbours)"
               if not plain_g else "")
            + f" with {_edges(q_r, below, 'rows', 'above', 'below')}, and "
            f"{_edges(q_c, right, 'columns', 'on the left', 'on the right')}",
        ]
        if dilated:
            words.append("with dilation $d$ the rotated kernel carries $d-1$ zero rows "
                         "(columns) between its taps")
        if conv:
            words.append(f"${kern}$ is the kernel the windows apply, so "
                         f"$\\operatorname{{rot180}}({kern}) = "
                         f"{self._name(K, '@', ['o', 'c'])}$")
        displays = []
        if printable and self.O <= 2:
            for c in self._channels(self.C):
                parts = [f"{self._full(forms.ghat(o))} {op} {self._full(forms.rot(o, c))}"
                         for o in range(self.O)]
                displays.append(f"{self.dj(self.part(V, (c,)))} = " + " + ".join(parts))
        remark = ""
        if plain_g and not dilated and not any(self.spec.pads):
            remark = (f"The full correlation of the ${self.HO} \\times {self.WO}$ "
                      f"${g_o}$ with the ${self.KH} \\times {self.KW}$ kernel has "
                      f"${self.HO} + {self.KH} - 1 = {self.H}$ rows and "
                      f"${self.WO} + {self.KW} - 1 = {self.W}$ columns: the input's size. ")
        out.append(Compact(
            "The input gradient", "; ".join(words) + ".",
            rf"{lhs(V, ['c'])} = {sum_o}{ghat} {op} \operatorname{{rot180}}({kern})",
            displays, remark.strip()))

        if self.spec.bias:
            rows: list[Row] = []
            for o in self._channels(self.O):
                items = [(o, y, x) for y in range(self.HO) for x in range(self.WO)]
                rows += sum_rows(self.dj(self.el(b, (o,))), items,
                                 lambda t: tex(self.el(G, t)), end=".")
            y_, x_ = self.nt.out_idx
            out.append(Compact(
                "The bias gradient",
                f"the sum of the upstream gradient ${g_o}$ over every output position.",
                f"{lhs(b, ['o'])} = \\sum_{{{y_},{x_}}} "
                f"{self._name(G, '@', ['o', y_, x_])}", [],
                rows=rows if printable else []))
        return out

    def _full(self, m: Matrix) -> str:
        return tex(m.applyfunc(self.show))

    def compact_note(self, forms: MatrixForms, checked_on: LayerSpec) -> str:
        """Why no matrices are printed, when they are not."""
        if forms.printable():
            return ""
        return ("The matrices of this layer are too large to print; each form below is "
                "checked element by element " + _on(self.spec, checked_on) + ".")

    def g_definition(self) -> str:
        """``G_{o,y,x} = dJ/dZ_{o,y,x}`` in the document's letters."""
        free = [_o, _y, _x]
        singles = {s: 0 for s, n in zip(free, self.spec.output_shape) if n == 1}
        g = self.letter_el(G, free, singles)
        return f"{tex(g)} = {self.dj(self.letter_el(Z, free, singles))}"


def _edges(before: int, after: int, what: str, first: str, second: str) -> str:
    """``1 zero row above and 1 below``; a negative count: that many rows dropped."""
    def one(n: int, where: str) -> str:
        unit = what[:-1] if abs(n) == 1 else what
        return f"{n} zero {unit} {where}" if n >= 0 else f"its first {-n} {unit} {where} dropped"
    return f"{one(before, first)} and {one(after, second)}"


# -- rendering ------------------------------------------------------------------------------------


@functools.cache
def environment() -> jinja2.Environment:
    """The Jinja environment of the LaTeX templates: ``\\VAR{x}``, ``\\BLOCK{for ...}``,
    ``\\#{comment}``; strict, quiet whitespace; templates from the ``templates`` package."""
    import templates

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(Path(templates.__file__).parent)),
        block_start_string=r"\BLOCK{", block_end_string="}",
        variable_start_string=r"\VAR{", variable_end_string="}",
        comment_start_string=r"\#{", comment_end_string="}",
        line_comment_prefix="%#",
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True, autoescape=False,
    )


def command_line(spec: LayerSpec, notation: str, base: int, elements: str | int) -> str:
    """The ``corrgen latex`` command that regenerates a document."""
    parts = ["corrgen latex", spec.cli_options()]
    if base != 1:
        parts.append(f"--index-base {base}")
    if elements != "auto":
        parts.append(f"--elements {elements}")
    if notation != "seed000":
        parts.append(f"--notation {notation}")
    return " ".join(parts)


def to_latex(spec: LayerSpec, index_base: int = 1, elements: str | int = "auto",
             notation: str = "seed000") -> str:
    """A standalone LaTeX document deriving the backward pass of ``spec``.

    Args:
        spec: the layer.
        index_base: first index written, 1 (as the seeds) or 0.
        elements: which elements are expanded: ``"all"``, ``"corners"`` (first and last
            along each axis, and a central one), a count N per array (evenly spread), or
            ``"auto"``: all when the layer has at most ``AUTO_ALL_LIMIT`` elements, else
            corners.
        notation: ``"seed000"`` (V, K, Z, G, J) or ``"seed003"`` (x, w, y, delta, E).

    Returns:
        The document's text.

    Raises:
        LatexError: a bad option (naming it, the rule and the value).
        DerivationError: a check failed (nothing is to be written then).
    """
    from . import __version__

    if index_base not in (0, 1):
        raise LatexError(f"index_base={index_base!r}: expected 0 or 1")
    if notation not in NOTATIONS:
        raise LatexError(f"notation={notation!r}: expected one of {', '.join(NOTATIONS)}")
    doc = _Document(spec, NOTATIONS[notation], index_base, elements)
    proof = prove(spec)
    own = MatrixForms(spec)
    # The matrices printed are this layer's: check them on it; otherwise on the proxy.
    checked_on = spec if own.printable() else proof.proved_on
    explicit = (derive_layer(checked_on, max_terms=None)  # cached by prove
                if checked_on == proof.proved_on else None)
    matrix_counts = (own if checked_on == spec else MatrixForms(checked_on)).check(explicit)
    sections = [doc.forward_section(), doc.gradient_section("grad_weight"),
                doc.gradient_section("grad_input")]
    if spec.bias:
        sections.append(doc.gradient_section("grad_bias"))
    context = {
        "title": _title(spec),
        "describe": spec.describe(),
        "describe_tex": describe_tex(spec),
        "command": command_line(spec, notation, index_base, elements),
        # "--" must not become an en dash in the typewriter font
        "command_tex": command_line(spec, notation, index_base, elements).replace("--", "-{}-"),
        "version": __version__,
        "nt": doc.nt,
        "loss": tex(doc.loss),
        "setup": doc.setup(),
        "arrays": doc.arrays(),
        "g_def": doc.g_definition(),
        "sections": sections,
        "compact": doc.compact(own, checked_on),
        "compact_note": doc.compact_note(own, checked_on),
        "verified": _verified(doc, proof, matrix_counts, checked_on),
        "corr": doc.nt.correlate,
    }
    return environment().get_template("derivation.tex.jinja").render(context)


def _title(spec: LayerSpec) -> str:
    c, h, w = spec.input
    o, _, kh, kw = spec.kernel
    inp = f"{c} \\times {h} \\times {w}" if c > 1 else f"{h} \\times {w}"
    ker = f"{o} \\times {c} \\times {kh} \\times {kw}" if (o, c) != (1, 1) else f"{kh} \\times {kw}"
    return f"input ${inp}$, kernel ${ker}$"


def describe_tex(spec: LayerSpec) -> str:
    """``spec.describe()`` for LaTeX text (the arrow as ``$\\to$``)."""
    return spec.describe().replace(" -> ", r" $\to$ ")


def _on(spec: LayerSpec, target: LayerSpec) -> str:
    if spec == target:
        return "on this layer itself"
    return (f"on a reduced proxy with the same kernel, stride, padding, dilation and mode "
            f"({describe_tex(target)}), since the explicit derivation of this layer has "
            f"{spec.n_terms:,} terms")


def _verified(doc: _Document, proof: Proof, matrix_counts: dict[str, int],
              matrices_on: LayerSpec) -> list[str]:
    """The "what was verified" items, from the counts the checks made."""
    names = {"forward": "forward", "grad_input": "input-gradient",
             "grad_weight": "kernel-gradient", "grad_bias": "bias-gradient"}
    per_pass = ", ".join(
        f"{k} {names[n]}" + (f" ({proof.zero_elements[n]} of them exactly zero)"
                             if proof.zero_elements[n] else "")
        for n, k in proof.elements.items())
    how = ("each factor of a chain rule is \\texttt{sympy.diff} of the output's forward sum"
           if doc.forward is not None else
           "each factor is \\texttt{sympy.diff} of the one forward term that holds the "
           "element, no other term depending on it")
    items = [
        f"The index forms (the general formula of every section) equal the explicit "
        f"derivation {_on(proof.spec, proof.proved_on)}: SymPy differentiates the forward "
        f"pass through the chain rule, and every element of every form is expanded and "
        f"compared with it: {per_pass} elements.",
        "Every element expanded in this document equals its index form: "
        + ", ".join(f"{doc.checked[n]} {names[n]}" for n in names if doc.checked[n])
        + f" elements; {how}.",
    ]
    if doc.checked["reading"]:
        items.append(f"The constraint-sum reading of each of the {doc.checked['reading']} "
                     "input-gradient elements expanded gives the same terms as its chain rule"
                     + ("." if doc.forward is not None else
                        " (for a sum printed elided: as the index form it was checked "
                        "against)."))
    counted = ", ".join(f"{k} {names[n]}" for n, k in matrix_counts.items() if k)
    items.append(
        "The compact forms (the sum over input channels of correlations for the forward pass, "
        "the valid correlation for the kernel, the full correlation of the stride-dilated, "
        "zero-padded upstream gradient with the rotated kernel for the input, the sum for the "
        f"bias) equal the index forms {_on(proof.spec, matrices_on)}, "
        f"element by element: {counted} elements.")
    return items


# -- files ----------------------------------------------------------------------------------------


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``path`` whole or not at all: a temporary file beside it, then a rename.

    The file gets the mode a plain ``open(path, "w")`` gives (0666 less the umask): the
    temporary file is created with ``os.open(..., 0o666)``, so the kernel applies the umask
    (``tempfile.mkstemp`` would leave it private, 0600). OSError propagates; see
    ``write_file`` for the one-line error.
    """
    path = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, flags, 0o666)
            break
        except FileExistsError:
            continue
    else:
        raise FileExistsError(f"no free temporary name next to {path}")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _write_error(path: Path, error: OSError) -> str:
    """What went wrong writing ``path``, and the rule, in one line."""
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        why = "it is a folder; name a file"
    elif not folder.exists():
        why = f"folder {str(folder)!r} does not exist"
    elif not folder.is_dir():
        why = f"{str(folder)!r} is not a folder"
    elif isinstance(error, PermissionError):
        why = f"no permission to write in folder {str(folder)!r}"
    else:
        why = error.strerror or str(error)
    return f"cannot write {str(path)!r}: {why}"


def write_file(path: Path, data: str | bytes) -> None:
    """``write_atomic``, with any OSError as a one-line ``LatexError`` naming the path."""
    try:
        write_atomic(path, data)
    except OSError as error:
        raise LatexError(_write_error(path, error)) from None


def find_engine() -> str | None:
    """Path of ``pdflatex``, or None when no LaTeX engine is installed."""
    return shutil.which("pdflatex")


def _missing_file(log_text: str) -> str | None:
    """The file named by ``! LaTeX Error: File `X' not found.`` in a pdflatex log, or None.

    TeX breaks log lines at 79 characters, so the name may run over a line break.
    """
    start = log_text.find("! LaTeX Error: File `")
    if start < 0:
        return None
    text = log_text[start:start + 400].replace("\n", "")
    match = re.match(r"! LaTeX Error: File `([^']+)' not found", text)
    return match.group(1) if match else None


def _missing_file_hint(name: str) -> str:
    """How to get the LaTeX file ``name`` (``lmodern.sty``): Debian's and TeX Live's way."""
    stem = name.rsplit(".", 1)[0]
    return (f"the LaTeX file {name} is not installed (Debian/Ubuntu: apt-get install the "
            f"package that 'apt-file search {name}' names, usually texlive-latex-recommended "
            f"or texlive-latex-extra; TeX Live: tlmgr install {stem})")


def compile_pdf(tex_path: Path, engine: str | None = None,
                timeout: float = 300) -> tuple[Path, int]:
    """Compile ``tex_path`` with ``pdflatex -halt-on-error`` in a temporary folder and put the
    PDF next to it (atomically). Returns the PDF's path and its page count.

    Raises:
        LatexError: no engine, or the run failed (its first error and the log's path, the log
            being copied next to the .tex; a missing package is named, with how to get it),
            or a file could not be read or written. Always one line.
    """
    tex_path = Path(tex_path)
    engine = engine or find_engine()
    if engine is None:
        raise LatexError(f"--pdf: no LaTeX engine is installed (pdflatex not found on PATH); "
                         f"install one with '{INSTALL_HINT}'")
    pdf_path = tex_path.with_suffix(".pdf")
    with tempfile.TemporaryDirectory(prefix="corrgen-latex-") as tmp:
        work = Path(tmp) / tex_path.name
        try:
            shutil.copyfile(tex_path, work)
        except OSError as error:
            raise LatexError(f"cannot read {str(tex_path)!r}: {error.strerror or error}") \
                from None
        cmd = [engine, "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape",
               work.name]
        try:
            run = subprocess.run(cmd, cwd=tmp, capture_output=True, timeout=timeout,
                                 stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise LatexError(f"{engine} on {tex_path}: no result after {timeout:.0f} s") from None
        log = work.with_suffix(".log")
        log_text = log.read_text(errors="replace") if log.exists() else ""
        built = work.with_suffix(".pdf")
        if run.returncode != 0 or not built.exists():
            kept = tex_path.with_suffix(".log")
            if log_text:
                write_file(kept, log_text)
            missing = _missing_file(log_text)
            if missing is not None:
                first = _missing_file_hint(missing)
            else:
                errors = [line for line in log_text.splitlines() if line.startswith("!")]
                first = errors[0] if errors else f"exit status {run.returncode}"
            raise LatexError(f"{Path(engine).name} -halt-on-error failed on {tex_path}: "
                             f"{first} (log: {kept})")
        match = re.search(r"Output written on .*?\((\d+) pages?", log_text, re.S)
        pages = int(match.group(1)) if match else 0
        write_file(pdf_path, built.read_bytes())
    return pdf_path, pages


def write_document(path: Path, text: str, pdf: bool = False) -> tuple[Path | None, int]:
    """Write the .tex atomically and, with ``pdf``, compile it; returns (PDF path, pages).

    Raises:
        LatexError: the file cannot be written, or compiled (one line).
    """
    write_file(path, text)
    if not pdf:
        return None, 0
    return compile_pdf(path)


__all__ = [
    "NOTATIONS",
    "DerivationPrinter",
    "LatexError",
    "MatrixForms",
    "Notation",
    "compile_pdf",
    "find_engine",
    "parse_elements",
    "tex",
    "to_latex",
    "write_atomic",
    "write_document",
    "write_file",
]
