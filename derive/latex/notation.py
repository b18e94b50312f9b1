"""How a document writes its symbols: the notation's letters, the index base, the indices kept.

The derivation works in DESIGN's symbols, 0-based (``V[c, u, v]``, ``K[o, c, i, j]``, ...);
``Letters.show`` rewrites an expression in the document's letters (seed 000's V, K, Z, G, J or
seed 003's x, w, y, delta, E) and index base, leaving out the indices of extent one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sympy import Derivative, Expr, Indexed, IndexedBase, Matrix, Rational, Symbol, together

from ..proof import c as _c
from ..proof import i as _i
from ..proof import j as _j
from ..proof import o as _o
from ..proof import u as _u
from ..proof import v as _v
from ..proof import x as _x
from ..proof import y as _y
from ..spec import LayerSpec
from ..symbols import G, K, V, Z, b
from .printer import tex

#: Matrices with more rows (columns) than this show their first and last ones around dots.
MAX_MATRIX = 8


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


NOTATIONS: dict[str, Notation] = {
    "seed000": Notation(
        "seed000", "V", "K", "b", "Z", "G", "J", r"\star",
        ("y", "x"), ("i", "j"), ("u", "v"), ("l", "m"), ("n", "q"),
    ),
    "seed003": Notation(
        "seed003", "x", "w", "b", "y", "delta", "E", r"\otimes",
        ("i", "j"), ("k", "l"), ("m", "n"), ("i", "k"), ("j", "l"),
    ),
}


class Letters:
    """The written form of one document's symbols.

    Attributes:
        rows_on, cols_on: whether the row (column) index is written; one row everywhere (a
            1-D layer) leaves the row index out, as seed 003's one-dimensional appendix
            writes ``x_i``.
        keep: per array, which of its indices are written (channel axes of extent one are
            left out, as seed 000 does).
        bases: per array, the document's ``IndexedBase``; ``loss`` the loss symbol.
    """

    def __init__(self, spec: LayerSpec, notation: Notation, base: int):
        self.spec, self.nt, self.base = spec, notation, base
        _, h, w = spec.input
        _, _, kh, kw = spec.kernel
        _, ho, wo = spec.output_shape
        multi_c, multi_o = spec.input[0] > 1, spec.kernel[0] > 1
        self.rows_on = not h == kh == ho == 1
        self.cols_on = not w == kw == wo == 1 or not self.rows_on
        r, k = self.rows_on, self.cols_on
        self.keep = {V: (multi_c, r, k), K: (multi_o, multi_c, r, k), b: (multi_o,),
                     Z: (multi_o, r, k), G: (multi_o, r, k)}
        self.names = {V: notation.input, K: notation.kernel, b: notation.bias,
                      Z: notation.output, G: notation.upstream}
        self.bases = {a: IndexedBase(Symbol(n)) for a, n in self.names.items()}
        self.loss = Symbol(notation.loss)

    def el(self, array: IndexedBase, index: Sequence[Any]) -> Expr:
        """The written element of ``array`` at a 0-based index (numbers or index letters), or
        a channel slice (``V_c``, ``K_{o,c}``) when ``index`` holds only the channels."""
        kept = [i + self.base for i, k in zip(index, self.keep[array]) if k]
        return self.bases[array][tuple(kept)] if kept else Symbol(self.names[array])

    def label(self, array: IndexedBase) -> str:
        """The array's letter in LaTeX: ``V``, ``\\delta``."""
        return tex(self.bases[array].label)

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

    def name(self, array: IndexedBase, decoration: str, letters: Sequence[str]) -> str:
        """A channel slice by letters (``\\bar{V}_c``); channel axes of extent 1 left out.
        ``decoration`` is LaTeX around ``@``, the array's letter."""
        name = decoration.replace("@", self.label(array))
        kept = [t for t, k in zip(letters, self.keep[array]) if k]
        return f"{name}_{{{','.join(kept)}}}" if kept else name

    def matrix(self, n_rows: int, n_cols: int, entry: Callable[[int, int], Expr]) -> str:
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

    def full(self, m: Matrix) -> str:
        """A whole matrix of DESIGN's symbols, written."""
        return tex(m.applyfunc(self.show))
