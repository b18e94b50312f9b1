"""Winograd's minimal filtering F(2x2, 3x3) for a 3x3 layer at stride 1 (forward and
grad_input): each 2x2 block of outputs (a "tile") is computed from its 4x4 input patch ``d``
and the 3x3 kernel ``g`` as ``A^T [(G g G^T) * (B^T d B)] A``, elementwise ``*`` over 16
points. Summed over input channels, the 16 points are 16 independent matrix products
(output channels x input channels times input channels x tiles): 16 multiply-adds per tile
and channel pair where the direct sum takes 36, 2.25 times fewer (Lavin and Gray, "Fast
Algorithms for Convolutional Neural Networks", 2016; the matrices below are theirs).

grad_input at stride 1 is the same correlation: of ``G`` with each kernel plane rotated by
180 degrees, input and output channels swapped, and padding ``2 - p`` on each side.

grad_weight is F(3x3, 2x2): each sample's 2x2 block ``e`` of ``G`` (one output channel) and
its 4x4 input patch ``d`` (one input channel) add ``G^T [(A e A^T) * (B^T d B)] G`` to the 3x3
plane of ``dK``. This is F(2x2, 3x3) transposed (the roles of ``A`` and ``G`` swap): for any
``g``, ``sum(g * that) = sum(A^T [(G g G^T) * (B^T d B)] A * e)``, the forward's result
weighted by ``e``. The patches are the forward's; the 16 points' sums over tiles are 16
matrix products (input channels x tiles times tiles x output channels) of 16 multiply-adds
per tile and channel pair, against 36.

The transforms add and halve (every coefficient is 0, +-1 or +-1/2), so the result differs
from the direct sum by a few roundings per point: about 1.4e-7 relative to the sum of
absolute terms in float32 on S5, within the checks' 1e-5 (``codegen.check``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

from .common import PRODUCT_STEP_UNROLL, Geometry, Machine, _cdiv, skewed
from .defines import Defines
from .pointwise import CHUNK_BYTES, GemmTile, _gemm_costs
from .records import WIDE_VECTORS, Winograd, WinogradGradWeight

#: Outputs per tile side (the ``2`` of F(2x2, 3x3)), kernel side, and patch side (2 + 3 - 1).
M, R = 2, 3
ALPHA = M + R - 1
HALF = Fraction(1, 2)
#: B^T (4x4), G (4x3) and A^T (2x4): d's transform B^T d B, g's G g G^T, and the product's
#: A^T m A.
BT = ((1, 0, -1, 0), (0, 1, 1, 0), (0, -1, 1, 0), (0, 1, 0, -1))
G = ((1, 0, 0), (HALF, HALF, HALF), (HALF, -HALF, HALF), (0, 0, 1))
AT = ((1, 1, 1, 0), (0, 1, -1, -1))
#: grad_weight's F(3x3, 2x2): A (4x2) transforms a 2x2 block of G, G^T (3x4) the summed
#: products back to a 3x3 plane of dK.
A = tuple(zip(*AT))
GT = tuple(zip(*G))
#: Fewer channels than this on either side of the product, and the transforms cost more
#: than the multiply-adds they save.
MIN_CHANNELS = 16


def applies(g: Geometry) -> bool:
    """Whether F(2x2, 3x3) computes ``g``'s forward and grad_input (and F(3x3, 2x2) its
    grad_weight): a 3x3 kernel at stride and dilation 1, padding at most 2 on every side
    (grad_input's ``2 - p`` stays a padding), and at least ``MIN_CHANNELS`` input and output
    channels."""
    return ((g.kh, g.kw, g.sh, g.sw, g.dh, g.dw) == (R, R, 1, 1, 1, 1)
            and max(g.top, g.bottom, g.left, g.right) <= R - 1
            and min(g.c, g.o) >= MIN_CHANNELS)


#: The most bytes of one thread's sums (16 points x C x O reals) at which tuning times the
#: Winograd grad_weight. Every task (a sample's block of tile rows) reads and writes all of
#: them, and each call zeroes and adds up every thread's copy, so past L2 the pass waits on
#: memory. On a Zen 4 (1 MB of L2, 2 threads), against the lane grad_weight at batches
#: 1 / 2 / 16: 64 and 128 channels (0.25-2 MB) took 0.53-0.72 of its time; 256 channels on
#: 14x14 0.96 / 0.76 / 0.63 in float32 (4 MB) and 1.49 / 1.07 / 0.53 in float64 (8 MB);
#: 512 channels in float32 (16 MB) 10.7 / 6.3 / 1.68, slower at every batch, a call spending
#: 60 % of its time in page faults (its 34 MB of sums are mapped afresh by each call). Tuned
#: at a batch of 16, that layer had kept the Winograd pass, 8 % ahead (docs/tiles.md).
GRAD_WEIGHT_SUMS_BYTES = 8 << 20


def grad_weight_pays(g: Geometry, dtype_bytes: int) -> bool:
    """Whether tuning times the Winograd grad_weight of ``g`` (``applies`` too): a thread's
    sums take at most ``GRAD_WEIGHT_SUMS_BYTES``."""
    return ALPHA * ALPHA * g.c * g.o * dtype_bytes <= GRAD_WEIGHT_SUMS_BYTES


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


#: Transformed weights (16 points x in x out reals) beyond this do not stay in a core's L2
#: (1 MB on Zen 4) from one task to the next: each task streams all of them.
DEEP_WEIGHTS_BYTES = 1 << 20
#: The tiles a task of ``winograd=2s`` takes, at least (all of a sample's, if fewer): its
#: products then read each transformed weight for as many tiles.
SAMPLE_TILES = 48


#: A group of ``winograd=2s``'s result channels keeps its products (16 points x channels x
#: tiles) within this, in L2 beside the block's patches: a 512x14x14 -> 512 layer's float32
#: forward at a batch of 1 took 0.81 of ``winograd=2``'s time in groups of 256 channels and
#: 0.67 in groups of 64 (docs/tiles.md).
GROUP_BYTES = CHUNK_BYTES // 2


def sample_tasks_pay(g: Geometry, dtype_bytes: int) -> bool:
    """Whether tuning times forward and grad_input with tasks of ``SAMPLE_TILES`` tiles
    (``winograd=2s``): where the transformed weights exceed ``DEEP_WEIGHTS_BYTES``. A task
    of one tile row of a 512x14x14 -> 512 layer (7 tiles) read 16 MB of them for 7 tiles'
    products; tasks of whole samples, with the model's tile for them (3 rows x 7 vectors),
    took 0.55-0.72 of the time in float32 at batches 1-8. They do not pay everywhere: a
    256x14x14 -> 256 layer's float64 passes took 1.3-1.7 times as long (docs/tiles.md)."""
    return ALPHA * ALPHA * g.c * g.o * dtype_bytes > DEEP_WEIGHTS_BYTES


def _tile_rows(c: Correlation, dtype_bytes: int, samples: bool = False) -> int:
    """Rows of tiles per task: as many as keep a task's transformed patches and the other
    factor's points (products, or transformed gradients) within ``CHUNK_BYTES`` (in L2: S5's
    float32 forward took 10.8 ms with 2 rows, 14.3 with 4), at least one; with
    ``samples`` (``winograd=2s``), enough for ``SAMPLE_TILES`` tiles."""
    th, tw, channels = _cdiv(c.dst[0], M), _cdiv(c.dst[1], M), c.summed[1] + c.computed[1]
    if samples:
        return min(th, _cdiv(SAMPLE_TILES, tw))
    return max(1, min(th, CHUNK_BYTES // (ALPHA * ALPHA * channels * tw * dtype_bytes)))


def _define_patches(d: Defines, p: str, name: str, c: Correlation, rows: int,
                    padded: tuple[tuple[str, int, str], ...]) -> None:
    """The ``#define``s of the tiling and of a task's patches, prefix ``p``, with the
    ``padded`` channel counts (name, value, doc); ``rows``: rows of tiles per task."""
    th, tw = _cdiv(c.dst[0], M), _cdiv(c.dst[1], M)
    for const, value, doc in (
            ("IN", c.summed[1], f"channels summed ({c.summed[0]})"),
            ("OUT", c.computed[1], f"channels computed ({c.computed[0]})"),
            *padded,
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
            ("WP", tw * M + R - 1, "reals per zero-framed source row")):
        d.const(f"{p}_{const}", value, f"{name}: {doc}")


def _define_tile(d: Defines, p: str, name: str, tile: GemmTile, reals: int, rows: str,
                 columns: str) -> None:
    """The product tile's ``#define``s: ``rows`` and ``columns`` say what its rows and
    vectors hold; ``reals``: the reals per vector (VL, or LANES when the tile is wide)."""
    d.const(f"{p}_MR", tile.mr, f"{name}: product tile rows ({rows})")
    d.const(f"{p}_NRV", tile.nrv, f"{name}: product tile vectors of {columns}")
    d.const(f"{p}_NR", tile.nrv * reals,
            f"{name}: product tile columns ({p}_NRV * {'LANES' if tile.wide else 'VL'})")


def _product_tile(vl: int, dtype_bytes: int, rows: int, cols: int, depth: int,
                  machine: Machine, wide: bool, streamed: bool = False) -> tuple[GemmTile, int]:
    """The products' register tile, the model's choice (``pointwise._gemm_costs``; of any
    width where the weights are ``streamed``, as ``winograd=2s``'s are), and the reals per
    vector of its columns: VL, or the machine's widest when ``wide`` (``winograd=2w``).
    A CPU with two full-width 512-bit multiply-add units (Intel's Xeons) reaches at most
    half its peak on 256-bit vectors: on such a Xeon (2 threads, tuner's timings) S5's
    float32 passes took 0.69-0.85 of the time with 512-bit products, and its float64
    grad_input and grad_weight 0.68-0.88; float64's forward kept 256-bit ones, 3 % ahead
    (docs/tiles.md)."""
    reals = machine.lane_bytes // dtype_bytes if wide else vl
    return _gemm_costs(reals, dtype_bytes, rows, cols, depth, machine, wide=wide,
                       panels_in_l1=not streamed)[0], reals


def _define(d: Defines, p: str, name: str, c: Correlation, tile: GemmTile, reals: int,
            rows: int, dtype_bytes: int, samples: bool) -> None:
    """forward's or grad_input's ``#define``s, prefix ``p``; ``rows``: rows of tiles per
    task; ``samples``: whether its tasks take whole samples (``winograd=2s``)."""
    outs, tw, nr = c.computed[1], _cdiv(c.dst[1], M), tile.nrv * reals
    out_pad = _cdiv(outs, tile.mr) * tile.mr
    _define_patches(d, p, name, c, rows, (
        ("OUT_PAD", out_pad, f"{p}_OUT in whole panels of {p}_MR (the rest zero weights)"),
        ("U_POINT", skewed(out_pad * c.summed[1], dtype_bytes),
         f"reals from one point's transformed weights to the next ({p}_OUT_PAD * {p}_IN and "
         "one or two cache lines, skewed)")))
    _define_tile(d, p, name, tile, reals, "output channels", "tiles")
    nb = _cdiv(rows * tw, nr) * nr
    d.const(f"{p}_NB", nb, f"{name}: a task's tiles, padded to whole product tiles")
    if samples:
        group = GROUP_BYTES // (ALPHA * ALPHA * tile.mr * nb * dtype_bytes)
        d.const(f"{p}_GROUP", max(1, min(group, out_pad // tile.mr)),
                f"{name}: panels of {p}_MR result channels computed per block at a time (their "
                f"products within {GROUP_BYTES // 1024} KB)")
    d.const(f"{p}_V_POINT", skewed(c.summed[1] * nb, dtype_bytes),
            f"{name}: reals from one point's transformed patches to the next ({p}_IN * "
            f"{p}_NB and one or two cache lines, skewed)")
    d.const(f"{p}_M_POINT", skewed(out_pad * nb, dtype_bytes),
            f"{name}: reals from one point's products to the next ({p}_OUT_PAD * {p}_NB "
            "and one or two cache lines, skewed)")


def plan_winograd(g: Geometry, name: str, vl: int, dtype_bytes: int, machine: Machine,
                  bias: bool, d: Defines, wide: bool = False, samples: bool = False
                  ) -> Winograd:
    """``name``'s (forward or grad_input) F(2x2, 3x3) plan and constants (``WF_*`` or
    ``WG_*``). A task is a block of rows of tiles of one sample, as many as keep the
    block's transformed inputs and products within ``CHUNK_BYTES``, or with ``samples``
    at least ``SAMPLE_TILES`` tiles (``_tile_rows``), and a group of its result channels
    (as many groups as a small batch needs, chosen per call); its products are tiles of the
    model's choice (``_product_tile``; ``wide``: of the machine's widest vectors) over the
    block's tiles, padded to whole tiles."""
    c = correlation(g, name)
    p = "WF" if name == "forward" else "WG"
    ins, outs = c.summed[1], c.computed[1]
    rows = _tile_rows(c, dtype_bytes, samples)
    tile, reals = _product_tile(vl, dtype_bytes, outs, rows * _cdiv(c.dst[1], M), ins,
                                machine, wide, streamed=samples)
    _define(d, p, name, c, tile, reals, rows, dtype_bytes, samples)
    ragged = c.dst[1] % M

    def store(i: int, j: int, e: str) -> str:
        return f"row{i}[{M} * tx + {j}] = {'bias + ' if bias else ''}{e};"

    def product(k: int, col: int) -> str:
        return f"m[{k * ALPHA + col} * {p}_M_POINT + tx]"
    return Winograd(
        name=name, prefix=p, reason="a 3x3 kernel at stride 1: Winograd F(2x2, 3x3), 16 "
        "multiply-adds per 2x2 outputs and channel pair against 36",
        source=c.source, result=c.result, bias=bias, w_out=c.w_out, w_in=c.w_in, m=M,
        alpha=ALPHA, mr=tile.mr, nrv=tile.nrv,
        a_rows=tuple(tuple(f"acc{r}_{v}" for v in range(tile.nrv)) for r in range(tile.mr)),
        weight_lines=transform(G, lambda k, col: f"g[{c.tap(k, col)}]",
                               lambda i, j, e: f"u[{i * ALPHA + j} * {p}_U_POINT] = {e};"),
        input_lines=_patch_lines(f"{p}_V_POINT"),
        output_lines=transform(AT, product, store),
        edge_output_lines=transform(AT, product, store, {(i, j) for i in range(M)
                                                         for j in range(ragged)}),
        ragged=bool(ragged), unroll=PRODUCT_STEP_UNROLL, samples=samples,
        **(WIDE_VECTORS if wide else {}))


def _patch_lines(point_pitch: str) -> tuple[str, ...]:
    """The C of one patch's transform ``B^T d B``, from the zero-framed source ``rows`` at
    column ``x``, to ``v[xi * point_pitch + tx]``."""
    return transform(BT, lambda k, col: f"rows[{k}][x + {col}]",
                     lambda i, j, e: f"v[{i * ALPHA + j} * {point_pitch} + tx] = {e};")


def plan_winograd_grad_weight(g: Geometry, vl: int, dtype_bytes: int, machine: Machine,
                              d: Defines, wide: bool = False) -> WinogradGradWeight:
    """grad_weight's F(3x3, 2x2) plan and constants (``WW_*``). A task is a block of tile
    rows of one sample (``_tile_rows``): its patches (the forward's, input channels x tiles)
    and its gradients' 2x2 blocks transformed (tiles x output channels, through the block's
    rows of ``G`` transposed to channels-last), then for each point the product of the two,
    added to the thread's own sums (input channels x output channels) by tiles of the
    model's choice (``_product_tile``: rows of input channels, vectors of output channels,
    of the machine's widest when ``wide``; the block's tiles the inner dimension). The
    threads' sums are added and transformed back once per call."""
    c, p = correlation(g, "forward"), "WW"
    rows = _tile_rows(c, dtype_bytes)
    tw = _cdiv(g.wo, M)
    tile, reals = _product_tile(vl, dtype_bytes, g.c, g.o, rows * tw, machine, wide)
    in_pad = _cdiv(g.c, tile.mr) * tile.mr
    out_pad = _cdiv(g.o, tile.nrv * reals) * tile.nrv * reals
    _define_patches(d, p, "grad_weight", c, rows, (
        ("IN_PAD", in_pad, f"{p}_IN in whole panels of {p}_MR (the rest zero patches)"),
        ("OUT_PAD", out_pad, f"{p}_OUT in whole tiles of {p}_NR (the rest zero gradients)")))
    _define_tile(d, p, "grad_weight", tile, reals, "input channels", "output channels")
    for const, value, doc in (
            ("NB", rows * tw, "a task's tiles (the products' inner dimension)"),
            ("PW", tw * M, f"pixels per row of a task's transposed gradients ({p}_DST_W, "
             "then a zero one when it is odd)"),
            ("V_POINT", skewed(in_pad * rows * tw, dtype_bytes), "reals from one point's "
             f"transformed patches to the next ({p}_IN_PAD * {p}_NB and one or two cache "
             "lines, skewed)"),
            ("U_POINT", skewed(rows * tw * out_pad, dtype_bytes), "reals from one point's "
             f"transformed gradients to the next ({p}_NB * {p}_OUT_PAD and one or two cache "
             "lines, skewed)"),
            ("S_POINT", skewed(in_pad * out_pad, dtype_bytes), "reals from one point's sums to "
             f"the next ({p}_IN_PAD * {p}_OUT_PAD and one or two cache lines, skewed)")):
        d.const(f"{p}_{const}", value, f"grad_weight: {doc}")

    def pixel(k: int, col: int) -> str:
        return f"e[({k} * {p}_PW + {col}) * {p}_OUT_PAD + o]"

    def result(i: int, j: int, e: str) -> str:
        return f"dk[{g.weight_index(i, j)}] = {e};"
    return WinogradGradWeight(
        prefix=p, reason="a 3x3 kernel at stride 1: Winograd F(3x3, 2x2), 16 multiply-adds "
        "per 2x2 gradients and channel pair against 36",
        m=M, alpha=ALPHA, mr=tile.mr, nrv=tile.nrv,
        a_rows=tuple(tuple(f"acc{r}_{v}" for v in range(tile.nrv)) for r in range(tile.mr)),
        input_lines=_patch_lines(f"{p}_V_POINT"),
        gradient_lines=transform(A, pixel, lambda i, j, e: (
            f"u[{i * ALPHA + j} * {p}_U_POINT + o] = {e};")),
        output_lines=transform(GT, lambda k, col: f"m[{k * ALPHA + col}]", result),
        unroll=PRODUCT_STEP_UNROLL, **(WIDE_VECTORS if wide else {}))
