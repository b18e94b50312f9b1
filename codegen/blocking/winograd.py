"""Winograd's minimal filtering F(2x2, 3x3) for a 3x3 layer at stride 1 (forward and
grad_input): each 2x2 block of outputs (a "tile") is computed from its 4x4 input patch ``d``
and the 3x3 kernel ``g`` as ``A^T [(G g G^T) * (B^T d B)] A``, elementwise ``*`` over 16
points. Summed over input channels, the 16 points are 16 independent matrix products
(output channels x input channels times input channels x tiles): 16 multiply-adds per tile
and channel pair where the direct sum takes 36, 2.25 times fewer (Lavin and Gray, "Fast
Algorithms for Convolutional Neural Networks", 2016; the matrices below are theirs).

grad_input at stride 1 is the same correlation: of ``G`` with each kernel plane rotated by
180 degrees, input and output channels swapped, and padding ``2 - p`` on each side.

The transforms add and halve (every coefficient is 0, +-1 or +-1/2), so the result differs
from the direct sum by a few roundings per point: about 1.4e-7 relative to the sum of
absolute terms in float32 on S5, within the checks' 1e-5 (``codegen.check``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from .common import PRODUCT_STEP_UNROLL, Geometry, Machine, _cdiv
from .defines import Defines
from .pointwise import CHUNK_BYTES, GemmTile, _gemm_costs
from .records import Winograd

#: Outputs per tile side (the ``2`` of F(2x2, 3x3)), kernel side, and patch side (2 + 3 - 1).
M, R = 2, 3
ALPHA = M + R - 1
HALF = Fraction(1, 2)
#: B^T (4x4), G (4x3) and A^T (2x4): d's transform B^T d B, g's G g G^T, and the product's
#: A^T m A.
BT = ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1))
G = ((1, 0, 0), (HALF, HALF, HALF), (HALF, -HALF, HALF), (0, 0, 1))
AT = ((1, 1, 1, 0), (0, 1, -1, -1))
#: Fewer channels than this on either side of the product, and the transforms cost more
#: than the multiply-adds they save.
MIN_CHANNELS = 16


def applies(g: Geometry) -> bool:
    """Whether F(2x2, 3x3) computes ``g``'s forward and grad_input: a 3x3 kernel at stride
    and dilation 1, padding at most 2 on every side (grad_input's ``2 - p`` stays a padding),
    and at least ``MIN_CHANNELS`` input and output channels."""
    return ((g.kh, g.kw, g.sh, g.sw, g.dh, g.dw) == (R, R, 1, 1, 1, 1)
            and max(g.top, g.bottom, g.left, g.right) <= R - 1
            and min(g.c, g.o) >= MIN_CHANNELS)


def linear(row: tuple, names: list[str]) -> str:
    """``sum(row[k] * names[k])`` as C, zero terms left out and unit ones unmultiplied."""
    text = ""
    for coefficient, name in zip(row, names):
        c = Fraction(coefficient)
        if c == 0:
            continue
        size = abs(c)
        term = name if size == 1 else f"(real){float(size)!r} * {name}"
        text += (" - " if c < 0 else " + ") + term if text else ("-" if c < 0 else "") + term
    return text


def transform(matrix: tuple, source: Callable[[int, int], str],
              target: Callable[[int, int, str], str], wanted: set[tuple[int, int]] | None = None
              ) -> tuple[str, ...]:
    """C lines computing ``target(i, j, T x T^T [i][j])`` for the square ``x`` read through
    ``source(k, l)``, ``T = matrix``: the rows first (``t<i>_<l>`` = row i of ``T x``), then
    the columns; only the ``wanted`` entries (all by default; none: no lines) and the sums
    they use."""
    rows, inner = len(matrix), len(matrix[0])
    if wanted is None:
        wanted = {(i, j) for i in range(rows) for j in range(rows)}
    used = {(i, c) for i, j in wanted for c in range(inner) if matrix[j][c] != 0}
    lines = [f"const real t{i}_{c} = {linear(matrix[i], [source(k, c) for k in range(inner)])};"
             for i in range(rows) for c in range(inner) if (i, c) in used]
    lines += [target(i, j, linear(matrix[j], [f"t{i}_{c}" for c in range(inner)]))
              for i in range(rows) for j in range(rows) if (i, j) in wanted]
    return tuple(lines)


@dataclass(frozen=True)
class Correlation:
    """The stride-1 correlation a pass computes: the channels it sums and those it computes
    (name, count), the arrays it reads and writes, their planes (rows, columns), the zero
    rows and columns before the source's first, the weights' strides per computed and per
    summed channel (C), and ``tap(i, j)``: the offset in a kernel plane of tap (i, j)."""

    summed: tuple[str, int]
    computed: tuple[str, int]
    source: str
    result: str
    src: tuple[int, int]
    dst: tuple[int, int]
    pad: tuple[int, int]
    w_out: str
    w_in: str
    tap: Callable[[int, int], int]


def correlation(g: Geometry, name: str) -> Correlation:
    """forward's correlation, or grad_input's: ``G`` with each kernel plane rotated, the
    channels swapped, and ``2 - p`` zeros before the first row and column."""
    if name == "forward":
        return Correlation(("C", g.c), ("O", g.o), "V", "Z", (g.h, g.w), (g.ho, g.wo),
                           (g.top, g.left), "C * 9", "9", g.weight_index)
    return Correlation(("O", g.o), ("C", g.c), "G", "dV", (g.ho, g.wo), (g.h, g.w),
                       (R - 1 - g.top, R - 1 - g.left), "9", "C * 9",
                       lambda i, j: g.weight_index(R - 1 - i, R - 1 - j))


def _define(d: Defines, p: str, name: str, c: Correlation, tile: GemmTile, vl: int,
            rows: int) -> None:
    """The plan's ``#define``s, prefix ``p``; ``rows``: rows of tiles per task."""
    (in_name, ins), (out_name, outs) = c.summed, c.computed
    th, tw = _cdiv(c.dst[0], M), _cdiv(c.dst[1], M)
    nr = tile.nrv * vl
    for const, value, doc in (
            ("IN", ins, f"channels summed ({in_name})"),
            ("OUT", outs, f"channels computed ({out_name})"),
            ("OUT_PAD", _cdiv(outs, tile.mr) * tile.mr,
             f"{p}_OUT in whole panels of {p}_MR (the rest zero weights)"),
            ("SRC_H", c.src[0], "rows of a source plane"),
            ("SRC_W", c.src[1], "columns of a source plane"),
            ("DST_H", c.dst[0], "rows of a result plane"),
            ("DST_W", c.dst[1], "columns of a result plane"),
            ("TOP", c.pad[0], "zero rows before the source's first"),
            ("LEFT", c.pad[1], "zero columns before the source's first"),
            ("POINTS", ALPHA * ALPHA, f"points of a transformed {ALPHA}x{ALPHA} patch"),
            ("TH", th, f"rows of {M}x{M} tiles"),
            ("TW", tw, "tiles per row"),
            ("TR", rows, "rows of tiles per task"),
            ("BLOCKS", _cdiv(th, rows), "tasks per sample"),
            ("WP", tw * M + R - 1, "reals per zero-framed source row"),
            ("MR", tile.mr, "product tile rows (output channels)"),
            ("NRV", tile.nrv, "product tile vectors of tiles"),
            ("NR", nr, f"product tile columns ({p}_NRV * VL)"),
            ("NB", _cdiv(rows * tw, nr) * nr, "a task's tiles, padded to whole product tiles")):
        d.const(f"{p}_{const}", value, f"{name}: {doc}")


def plan_winograd(g: Geometry, name: str, vl: int, dtype_bytes: int, machine: Machine,
                  bias: bool, d: Defines) -> Winograd:
    """``name``'s (forward or grad_input) F(2x2, 3x3) plan and constants (``WF_*`` or
    ``WG_*``). A task is a block of rows of tiles of one sample, as many as keep the
    block's transformed inputs and products within ``CHUNK_BYTES`` (in L2: S5's float32
    forward took 10.8 ms with 2 rows, 14.3 with 4); its products are tiles of the model's
    choice (``pointwise._gemm_costs``) over the block's tiles, padded to whole tiles."""
    c = correlation(g, name)
    p = "WF" if name == "forward" else "WG"
    ins, outs = c.summed[1], c.computed[1]
    th, tw = _cdiv(c.dst[0], M), _cdiv(c.dst[1], M)
    rows = max(1, min(th, CHUNK_BYTES // (ALPHA * ALPHA * (ins + outs) * tw * dtype_bytes)))
    tile = _gemm_costs(vl, dtype_bytes, outs, rows * tw, ins, machine)[0]
    _define(d, p, name, c, tile, vl, rows)
    ragged = c.dst[1] % M

    def store(i: int, j: int, e: str) -> str:
        return f"row{i}[{M} * tx + {j}] = {'bias + ' if bias else ''}{e};"

    def product(k: int, col: int) -> str:
        return f"m[{k * ALPHA + col} * {p}_OUT_PAD * {p}_NB + tx]"
    return Winograd(
        name=name, prefix=p, reason="a 3x3 kernel at stride 1: Winograd F(2x2, 3x3), 16 "
        "multiply-adds per 2x2 outputs and channel pair against 36",
        source=c.source, result=c.result, bias=bias, w_out=c.w_out, w_in=c.w_in, m=M,
        alpha=ALPHA, mr=tile.mr, nrv=tile.nrv,
        a_rows=tuple(tuple(f"acc{r}_{v}" for v in range(tile.nrv)) for r in range(tile.mr)),
        weight_lines=transform(G, lambda k, col: f"g[{c.tap(k, col)}]",
                               lambda i, j, e: f"u[{i * ALPHA + j} * {p}_OUT_PAD * {p}_IN] = {e};"),
        input_lines=transform(BT, lambda k, col: f"rows[{k}][x + {col}]",
                              lambda i, j, e: f"v[{i * ALPHA + j} * {p}_IN * {p}_NB + tx] = {e};"),
        output_lines=transform(AT, product, store),
        edge_output_lines=transform(AT, product, store, {(i, j) for i in range(M)
                                                         for j in range(ragged)}),
        ragged=bool(ragged), unroll=PRODUCT_STEP_UNROLL)
