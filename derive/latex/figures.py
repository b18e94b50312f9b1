"""The figures of a derivation document, drawn from the layer's geometry.

Three pictures, each computed with the rules the derivation uses (``derive.geometry``,
``derive.forward.window``), never drawn by hand:

(a) ``window``: the input cells one output position reads, one per kernel tap, on the
    zero-padded input (the padding cells included), each with the kernel element it meets
    (rotated by 180 degrees in convolution mode);
(b) ``weight_reads``: the input cells a kernel-gradient element ``dK[o,c,i,j]`` multiplies by
    ``G``, one per output position; ``input_gathers``: the cells of ``G`` an input-gradient
    element ``dV[c,u,v]`` gathers, the taps whose quotients ``(u + p - i d)/s`` are whole
    numbers inside the output;
(c) ``jacobian``: the nonzero pattern of ``dZ/dV``, one row per output element and one column
    per input element, both in row-major order.

Those functions return cell lists (``content.Cell``, 0-based; a padding cell has a negative
index, or one past the array's end), which the tests compare with NumPy's reference.
``figures(spec, letters)`` lays them out as ``content.Figure`` records whose ``Picture`` the
template draws with LaTeX's own picture environment (lines, rules and boxes: no package but
``color``, which every LaTeX has).

Bounds: a grid draws at most ``MAX_CELLS`` rows and columns, a crop around the cells of
interest otherwise (the caption says which); a window spanning more is not drawn; the
Jacobian is drawn whole up to ``MAX_JACOBIAN`` rows and columns, else only its first channel
pair's block when that fits, else not at all (the document says why).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from sympy import Expr, Indexed, Sum, Symbol

from ..forward import window as forward_window
from ..geometry import Geometry
from ..proof import c as _c
from ..proof import i as _i
from ..proof import j as _j
from ..proof import o as _o
from ..proof import x as _x
from ..proof import y as _y
from ..spec import LayerSpec
from ..symbols import G, K, V, Z, b
from .content import Cell, Crop, Figure, Fill, Frame, Panel, Picture, Text
from .notation import Letters
from .printer import product, tex

#: The most rows (columns) of an array a figure draws; larger arrays are cropped.
MAX_CELLS = 16
#: The most rows (columns) of a Jacobian drawn.
MAX_JACOBIAN = 256
#: The width a picture may take, and the largest cell, in millimetres.
WIDTH_MM = 150.0
MAX_UNIT_MM = 5.0
#: Cells smaller than this carry no label; a Jacobian's cells this large get grid lines.
LABEL_UNIT_MM = 3.5
LINED_UNIT_MM = 2.0
#: The kernel element whose gradient figure (b) shows: the first.
WEIGHT_ELEMENT = (0, 0, 0, 0)


# -- the cells: what each figure shows -------------------------------------------------------


def window(spec: LayerSpec, out: tuple[int, int, int]) -> list[Cell]:
    """The input cells output ``out = (o, y, x)`` reads, one per kernel tap (padding cells
    included), each paired with the kernel element ``(row, column)`` its tap applies."""
    g = Geometry.of(spec)
    _, y, x = out
    return [Cell(g.input_row(y, i), g.input_col(x, j), (g.kernel_row(i), g.kernel_col(j)))
            for i in range(g.kh) for j in range(g.kw)]


def weight_reads(spec: LayerSpec, element: tuple[int, int, int, int]) -> list[Cell]:
    """The input cells ``dK[o, c, i, j]`` multiplies by ``G``, one per output position
    ``(y, x)`` (the cell's pair): the cells the tap applying kernel element ``(i, j)`` reads."""
    g = Geometry.of(spec)
    _, _, i, j = element
    ti, tj = g.kernel_row(i), g.kernel_col(j)  # an involution: the tap that applies (i, j)
    return [Cell(g.input_row(y, ti), g.input_col(x, tj), (y, x))
            for y in range(g.ho) for x in range(g.wo)]


def input_gathers(spec: LayerSpec, element: tuple[int, int, int]) -> list[Cell]:
    """The cells ``(y, x)`` of ``G[o]`` that ``dV[c, u, v]`` gathers (the same in every output
    channel ``o``): one per tap whose quotients ``(u + p - i d)/s`` are whole numbers inside
    the output, paired with the kernel element that tap applies."""
    g = Geometry.of(spec)
    _, u, v = element
    cells = []
    for i, j in itertools.product(range(g.kh), range(g.kw)):
        y, x = g.output_row(u, i), g.output_col(v, j)
        if y is not None and x is not None and 0 <= y < g.ho and 0 <= x < g.wo:
            cells.append(Cell(y, x, (g.kernel_row(i), g.kernel_col(j))))
    return cells


def jacobian(spec: LayerSpec, block: bool = False) -> list[Cell]:
    """The nonzeros of ``dZ/dV``: row ``(o*HO + y)*WO + x``, column ``(c*H + u)*W + v``, one
    per product of the forward sums; with ``block``, only the first channel pair's block (rows
    ``y*WO + x``, columns ``u*W + v``; every block has the same pattern)."""
    c_in, h, w = spec.input
    n_out, ho, wo = spec.output_shape
    one = [(y * wo + x, u * w + v) for y in range(ho) for x in range(wo)
           for _, _, u, v in forward_window(spec, y, x)]
    pairs = [(0, 0)] if block else list(itertools.product(range(n_out), range(c_in)))
    return [Cell(r, q) for r, q in sorted((o * ho * wo + r, c * h * w + q)
                                          for o, c in pairs for r, q in one)]


def window_output(spec: LayerSpec) -> tuple[int, int, int]:
    """The output figure (a) shows: the second row and column (where the stride shows), or
    when the layer is padded and that window reads no padding, a corner whose window does."""
    _, ho, wo = spec.output_shape
    _, h, w = spec.input
    candidates = [(0, min(1, ho - 1), min(1, wo - 1)), (0, 0, 0), (0, ho - 1, wo - 1)]
    for out in candidates if any(spec.pads) else ():
        if any(not (0 <= t.row < h and 0 <= t.col < w) for t in window(spec, out)):
            return out
    return candidates[0]


def input_element(spec: LayerSpec) -> tuple[int, int, int]:
    """The input element figure (b) shows: one that gathers the most cells of ``G``, the
    nearest to the centre among those. Only rows and columns within a window's span and a
    stride of the centre are searched: further in, the counts repeat with the stride."""
    _, h, w = spec.input
    (sh, sw), (span_h, span_w) = spec.stride, spec.dilated_kernel
    rows = range(max(0, h // 2 - span_h - sh), min(h, h // 2 + span_h + sh + 1))
    cols = range(max(0, w // 2 - span_w - sw), min(w, w // 2 + span_w + sw + 1))
    return min(((0, u, v) for u in rows for v in cols),
               key=lambda e: (-len(input_gathers(spec, e)), abs(2 * e[1] - h + 1)
                              + abs(2 * e[2] - w + 1), e))


# -- layout: grids of cells as a picture -----------------------------------------------------


class Written(NamedTuple):
    """How a document writes indices: from ``base``, and whether the row and the column
    index are written (a one-dimensional layer leaves its rows out)."""

    base: int = 1
    axes: tuple[bool, bool] = (True, True)


@dataclass
class Grid:
    """One array to draw: its ``name`` (LaTeX), its own ``shape`` (rows, columns) and the
    padding around it ``(top, bottom, left, right)``, the style and label of each cell that
    has one (0-based keys), and how its indices are written."""

    name: str
    shape: tuple[int, int]
    pads: tuple[int, int, int, int]
    styles: dict[tuple[int, int], str]
    labels: dict[tuple[int, int], str] = field(default_factory=dict)
    written: Written = Written()

    def drawn(self) -> tuple[range, range]:
        """The rows and columns drawn: all, or ``MAX_CELLS`` around the styled cells."""
        (h, w), (top, bottom, left, right) = self.shape, self.pads
        return (_crop(-top, h + bottom, [r for r, _ in self.styles], MAX_CELLS),
                _crop(-left, w + right, [c for _, c in self.styles], MAX_CELLS))

    def crop(self) -> Crop | None:
        """What a cropped grid shows of the array itself, in the index base; else None."""
        (h, w), (top, bottom, left, right) = self.shape, self.pads
        rows, cols = self.drawn()
        if len(rows) == h + top + bottom and len(cols) == w + left + right:
            return None
        r0, r1 = max(rows.start, 0), min(rows.stop, h) - 1
        c0, c1 = max(cols.start, 0), min(cols.stop, w) - 1
        base = self.written.base
        return Crop(self.name, (r0 + base, r1 + base, h), (c0 + base, c1 + base, w))


def _crop(lo: int, hi: int, marked: Sequence[int], limit: int) -> range:
    """``lo .. hi-1`` when it has at most ``limit`` entries; else ``limit`` of them centred on
    ``marked`` when those fit, or from ``lo``."""
    if hi - lo <= limit:
        return range(lo, hi)
    first, last = min(marked, default=lo), max(marked, default=lo)
    start = first - (limit - (last - first + 1)) // 2 if last - first < limit else lo
    start = max(lo, min(start, hi - limit))
    return range(start, start + limit)


def _runs(styles: list[str | None]) -> list[tuple[int, int, str]]:
    """``(start, length, style)`` of each run of equal styles (None: nothing filled)."""
    runs, start = [], 0
    for style, group in itertools.groupby(styles):
        n = len(list(group))
        if style is not None:
            runs.append((start, n, style))
        start += n
    return runs


@dataclass
class _Canvas:
    """A picture being drawn."""

    fills: list[Fill] = field(default_factory=list)
    panels: list[Panel] = field(default_factory=list)
    frames: list[Frame] = field(default_factory=list)
    texts: list[Text] = field(default_factory=list)

    def picture(self, width: int, height: int, unit: float) -> Picture:
        return Picture(width, height, f"{math.floor(unit * 100) / 100:.2f}", self.fills,
                       self.panels, self.frames, self.texts)


def _draw_grid(canvas: _Canvas, grid: Grid, x0: int, top: int, labelled: bool) -> None:
    """Draw ``grid`` with its top left cell at ``(x0, top - 1)``: fills, lines, the border
    of the array inside its padding, row and column numbers, its name above."""
    (h, w), rows, cols = grid.shape, *grid.drawn()
    inside = range(h), range(w)
    for k, r in enumerate(rows):
        styles = [grid.styles.get((r, c), None if r in inside[0] and c in inside[1] else "pad")
                  for c in cols]
        canvas.fills += [Fill(x0 + s, top - 1 - k, n, st) for s, n, st in _runs(styles)]
    canvas.panels.append(Panel(x0, top - len(rows), len(rows), len(cols), rows.start,
                               cols.start, len(rows) + 1, len(cols) + 1))
    padded = any(grid.pads)
    if padded and grid.crop() is None:
        canvas.frames.append(Frame(x0 - cols.start, top - h + rows.start, w, h))
    base, (rows_on, cols_on) = grid.written
    if rows_on:
        canvas.texts += [Text(x0 - 1, top - 1 - k, 1, str(r + base), "index")
                         for k, r in enumerate(rows) if r in inside[0]]
    if cols_on:
        canvas.texts += [Text(x0 + k, top, 1, str(c + base), "index")
                         for k, c in enumerate(cols) if c in inside[1]]
    canvas.texts.append(Text(x0, top + 1, len(cols), grid.name, "title"))
    if labelled:
        canvas.texts += [Text(x0 + c - cols.start, top - 1 - (r - rows.start), 1, text, "tiny")
                         for (r, c), text in grid.labels.items() if r in rows and c in cols]


def draw(grids: list[Grid]) -> tuple[Picture, bool]:
    """The grids side by side, top-aligned, each with a column of row numbers on its left and
    a row of column numbers and its name above; and whether the cells carry their labels
    (when the cells are large enough and every label short)."""
    shapes = [g.drawn() for g in grids]
    height = max(len(rows) for rows, _ in shapes)
    width = sum(len(cols) + 1 for _, cols in shapes) + len(grids) - 1
    unit = min(MAX_UNIT_MM, WIDTH_MM / width)
    labels = [t for g in grids for t in g.labels.values()]
    labelled = bool(labels) and unit >= LABEL_UNIT_MM and all(
        len(t.replace("{,}", ",")) <= 3 for t in labels)
    canvas, x0 = _Canvas(), 1
    for grid, (_, cols) in zip(grids, shapes):
        _draw_grid(canvas, grid, x0, height, labelled)
        x0 += len(cols) + 2
    return canvas.picture(width, height + 2, unit), labelled


def _jacobian_picture(cells: list[Cell], rows: int, cols: int, blocks: tuple[int, int],
                      ) -> Picture:
    """The nonzeros as filled squares (runs along a row), in a frame per channel pair."""
    unit = min(MAX_UNIT_MM, WIDTH_MM / cols, 1.2 * WIDTH_MM / rows)
    canvas = _Canvas()
    for r, group in itertools.groupby(cells, key=lambda t: t.row):
        styles: list[str | None] = [None] * cols
        for t in group:
            styles[t.col] = "nonzero"
        canvas.fills += [Fill(s, rows - 1 - r, n, st) for s, n, st in _runs(styles)]
    if unit >= LINED_UNIT_MM:
        canvas.panels.append(Panel(0, 0, rows, cols, 0, 0, rows + 1, cols + 1))
    n_o, n_c = blocks
    bh, bw = rows // n_o, cols // n_c
    canvas.frames += [Frame(c * bw, rows - (o + 1) * bh, bw, bh)
                      for o in range(n_o) for c in range(n_c)]
    return canvas.picture(cols, rows, unit)


# -- the figures, with their names and formulas ---------------------------------------------


def _indices(written: Written, index: tuple[int, ...]) -> str:
    """A row and column index pair as a cell label, in the index base, the written ones."""
    return "{,}".join(str(t + written.base) for t, k in zip(index[-2:], written.axes) if k)


def written_by(lt: Letters) -> Written:
    """How the document of ``lt`` writes indices."""
    return Written(lt.base, (lt.rows_on, lt.cols_on))


def _summed(lt: Letters, body: Expr, sums: Sequence[tuple[Symbol, int]]) -> Expr:
    """``body`` summed over the index letters of ``sums`` (each with its extent; those of
    extent one are left out)."""
    letters = lt.letters()
    for s, n in reversed(sums):
        if n > 1:
            body = Sum(body, (letters[s], lt.base, n - 1 + lt.base))
    return body


def _written(lt: Letters, sums: Sequence[tuple[Symbol, int]],
             *factors: Indexed) -> Expr:
    """The product of ``factors`` (0-based, DESIGN's symbols, affine in the letters of
    ``sums``) in the document's letters, summed over ``sums``."""
    singles = {s: 0 for s, n in sums if n == 1}
    return _summed(lt, product(*(lt.letter_el(f.base, f.indices, singles) for f in factors)),
                   sums)


def _grid(spec: LayerSpec, written: Written, name: str, shape: tuple[int, int],
          padded: bool, styles: dict[tuple[int, int], str], cells: Sequence[Cell] = ()) -> Grid:
    """A grid of ``spec``'s document: with ``padded``, the input's zero padding around it;
    ``cells`` labelled with what they meet."""
    return Grid(name, shape, spec.pads if padded else (0, 0, 0, 0), styles,
                {(t.row, t.col): _indices(written, t.pair or ()) for t in cells}, written)


def _reads(spec: LayerSpec, cells: Sequence[Cell]) -> tuple[dict[tuple[int, int], str], bool]:
    """Input cells read: ``tap``, or ``padtap`` on the padding; and whether any is."""
    _, h, w = spec.input
    styles = {(t.row, t.col): "tap" if 0 <= t.row < h and 0 <= t.col < w else "padtap"
              for t in cells}
    return styles, "padtap" in styles.values()


def _drawn(grids: list[Grid]) -> dict[str, Any]:
    """The picture of ``grids``, whether its cells are labelled, and the grids cropped, as
    ``Figure``'s fields."""
    picture, labelled = draw(grids)
    return {"picture": picture, "labelled": labelled, "limit": MAX_CELLS,
            "crops": [c for c in (grid.crop() for grid in grids) if c is not None]}


def plain_window_figure(spec: LayerSpec, out: tuple[int, int, int], element: str,
                        names: list[str], written: Written, formula: str = "") -> Figure:
    """Figure (a) for output ``out`` (``element`` in LaTeX) on the padded input of channel 0:
    the input and output ``names`` (LaTeX), ``formula`` the element's (or none)."""
    if max(spec.dilated_kernel) > MAX_CELLS:
        return Figure("window", element=element, skipped="span", limit=MAX_CELLS,
                      span=spec.dilated_kernel)
    g = Geometry.of(spec)
    _, y, x = out
    cells = window(spec, out)
    styles, pad_taps = _reads(spec, cells)
    grids = [_grid(spec, written, names[0], (g.h, g.w), True, styles, cells),
             _grid(spec, written, names[1], (g.ho, g.wo), False, {(y, x): "mark"})]
    return Figure("window", element=element, formula=formula, names=names, cells=cells,
                  marked=Cell(y, x), flipped=g.flip, channels=g.c > 1,
                  padded=any(spec.pads), pad_taps=pad_taps, **_drawn(grids))


def window_figure(spec: LayerSpec, lt: Letters) -> Figure:
    """Figure (a): the window of ``window_output(spec)``, with its formula."""
    g = Geometry.of(spec)
    o, y, x = out = window_output(spec)
    element = tex(lt.el(Z, out))
    body = _written(lt, ((_c, g.c), (_i, g.kh), (_j, g.kw)),
                    K[o, _c, g.kernel_row(_i), g.kernel_col(_j)],
                    V[_c, g.input_row(y, _i), g.input_col(x, _j)])
    bias = f"{tex(lt.el(b, (o,)))} + " if spec.bias else ""
    return plain_window_figure(spec, out, element,
                               [tex(lt.el(V, (0,))), tex(lt.el(Z, (o,)))], written_by(lt),
                               f"{element} = {bias}{tex(body)}")


def weight_figure(spec: LayerSpec, lt: Letters) -> Figure:
    """Figure (b), the kernel gradient: the input cells ``dK[WEIGHT_ELEMENT]`` reads, each
    with the output position whose ``G`` it meets, and ``G``, every cell of which is read."""
    g, written = Geometry.of(spec), written_by(lt)
    o, c, i, j = WEIGHT_ELEMENT
    cells = weight_reads(spec, WEIGHT_ELEMENT)
    styles, pad_taps = _reads(spec, cells)
    names = [tex(lt.el(V, (c,))), tex(lt.el(G, (o,)))]
    every = {(yy, xx): "tap" for yy in range(g.ho) for xx in range(g.wo)}
    grids = [_grid(spec, written, names[0], (g.h, g.w), True, styles, cells),
             _grid(spec, written, names[1], (g.ho, g.wo), False, every)]
    ti, tj = g.kernel_row(i), g.kernel_col(j)
    body = _written(lt, ((_y, g.ho), (_x, g.wo)), G[o, _y, _x],
                    V[c, g.input_row(_y, ti), g.input_col(_x, tj)])
    element = lt.dj(lt.el(K, WEIGHT_ELEMENT))
    return Figure("grad_weight", element=element, formula=f"{element} = {tex(body)}",
                  names=names, cells=cells, flipped=g.flip, channels=g.c > 1,
                  padded=any(spec.pads), pad_taps=pad_taps, **_drawn(grids))


def input_figure(spec: LayerSpec, lt: Letters) -> Figure:
    """Figure (b), the input gradient: the cells of ``G`` that ``dV[input_element(spec)]``
    gathers, each with the kernel element it meets, and that element on the input."""
    g, written = Geometry.of(spec), written_by(lt)
    c, u, v = index = input_element(spec)
    cells = input_gathers(spec, index)
    names = [tex(lt.el(G, (0,))), tex(lt.el(V, (c,)))]
    grids = [_grid(spec, written, names[0], (g.ho, g.wo), False,
                   {(t.row, t.col): "tap" for t in cells}, cells),
             _grid(spec, written, names[1], (g.h, g.w), False, {(u, v): "mark"})]
    body = _written(lt, ((_o, g.o), (_i, g.kh), (_j, g.kw)),
                    K[_o, c, g.kernel_row(_i), g.kernel_col(_j)],
                    G[_o, g.output_row(u, _i), g.output_col(v, _j)])
    element = lt.dj(lt.el(V, index))
    return Figure("grad_input", element=element, formula=f"{element} = {tex(body)}",
                  names=names, cells=cells, marked=Cell(u, v), flipped=g.flip,
                  channels=g.o > 1, **_drawn(grids))


def jacobian_figure(spec: LayerSpec, lt: Letters) -> Figure:
    """Figure (c): the nonzeros of ``dZ/dV``, whole, or the first channel pair's block."""
    c_in, h, w = spec.input
    n_out, ho, wo = spec.output_shape
    rows, cols = n_out * ho * wo, c_in * h * w
    element = rf"\frac{{\partial {lt.label(Z)}}}{{\partial {lt.label(V)}}}"
    names = [tex(lt.el(Z, (0,))), tex(lt.el(V, (0,)))]
    common = {"element": element, "names": names, "rows": rows, "cols": cols,
              "block_rows": ho * wo, "block_cols": h * w, "limit": MAX_JACOBIAN,
              "channels": n_out * c_in > 1}
    if max(rows, cols) <= MAX_JACOBIAN:
        cells = jacobian(spec)
        picture = _jacobian_picture(cells, rows, cols, (n_out, c_in))
        return Figure("jacobian", picture, cells=cells, **common)
    if max(ho * wo, h * w) <= MAX_JACOBIAN:
        cells = jacobian(spec, block=True)
        picture = _jacobian_picture(cells, ho * wo, h * w, (1, 1))
        return Figure("jacobian", picture, cells=cells, block=True, **common)
    return Figure("jacobian", skipped="size", **common)


#: The figures of each section of a derivation document.
FIGURES: dict[str, list[Callable[[LayerSpec, Letters], Figure]]] = {
    "forward": [window_figure],
    "grad_weight": [weight_figure],
    "grad_input": [input_figure, jacobian_figure],
}


def figures(spec: LayerSpec, lt: Letters) -> dict[str, list[Figure]]:
    """Every figure of the document of ``spec``, by section name."""
    return {name: [make(spec, lt) for make in makers] for name, makers in FIGURES.items()}
