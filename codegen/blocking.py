"""Blocking of the ``loops`` kernels of the OpenMP target: tiles, scratch layouts, tap tables.

Every pass is a direct convolution specialised to the layer. The kernels work on private,
zero-framed copies ("scratch") of one sample's planes, so that no inner loop tests a bound:

* **forward** (``FWD_*``) and **grad_input** (``GIN_*``) are one computation, a *correlation
  sweep*: each output element of a phase sums, over the input channels of the sweep and the
  taps of the phase, ``weight * source[row * ROW_STEP + column + TAP_OFFSET[tap]]``. A
  register tile holds ``OB`` output channels x ``TY`` output rows x ``TXV`` vectors of
  ``VL`` output columns: per tap it loads ``TY*TXV`` source vectors and ``OB`` weights and
  does ``OB*TY*TXV`` vector multiply-adds.

  - forward: one phase; the source is the input with its zero padding, each row split by
    column stride phase (``x*SW + j*DW = (x + shift)*SW + phase``), so that a tap reads
    contiguous columns whatever the stride;
  - grad_input: the gather form, split by stride phase: input row ``u = m*SH + r - PT``
    collects from the taps ``i`` with ``i*DH = a*SH + r`` and output row ``m - a``
    (likewise columns). Each phase ``(r, s)`` is a stride-1 correlation of the
    zero-framed gradient ``G`` with its own taps, written to every ``SH``-th row and
    ``SW``-th column of ``dV``; phases no tap reaches are written as zeros.

  **Row reuse.** With one phase (forward, and grad_input at stride 1) the taps are a grid of
  row taps x column taps, and the tile's output rows read overlapping source rows: row ``y``
  and row tap ``i`` read source row ``y*row_step + tap_rows[i]`` (``ir.RowReuse``). The
  tile may then loop over column taps only and load each source row once for every row tap
  that reaches it (``ROW_TAPS*OB`` weights held in registers), where one output channel per
  tile would otherwise cost a load per multiply-add: on the benchmark's 1-channel 3x3 layer
  this took grad_input from 141 to 103 us (float64) and from 81 to 58 us (float32), side by
  side.

  **grad_input in place.** When such a grad_input tile spans whole rows of ``dV``, it reads
  the gradient where it lies, without the framed copy: a row above or below the gradient is
  a row of zeros, and a vector that crosses a row's first or last column is loaded inside
  the row and shifted in registers with zeros (``KernelIR.in_place_loads``). On that layer
  this took grad_input to 0.72x the time (float64) and 0.70x (float32), side by side: the
  copy streamed each sample through a scratch larger than L1 (61 KB in float64).

* **grad_weight** (``GW_*``): a register tile holds ``OB`` output channels x ``CB`` input
  channels x ``TT`` taps of partial sums, one vector lane per output column; per vector
  of output columns it loads ``OB`` vectors of ``G`` and ``CB*TT`` of the input. The lanes
  are added in a fixed order at the end of each sample, so results do not depend on threads.
  ``TT`` is a block size whose blocks all have their taps at the same distances from the
  first (``GW_TAP_DELTA``, ``_tap_blocks``): a block reads its taps from one pointer at
  offsets fixed at compile time. With offsets read from the tap table at run time, GCC kept
  one index register per tap and input channel, spilled most of them, and the float64 S4
  and float32 S5 grad_weight took 1.07x their time now.

**Channels in lanes.** When the channels a pass writes (O for forward and grad_weight, C for
grad_input) fill whole ``LANE_BYTES`` vectors (and, for forward and grad_input, each output
sums at least ``LANE_MIN_SUMS`` products), forward and grad_input instead hold a tile of
``NV`` vectors of ``LANES`` *channels* x ``TY`` rows x ``TX`` columns: the weights are packed
once per call with the channels innermost, and per input channel and tap the tile loads
``NV`` weight vectors and broadcasts ``TY*TX`` single source values (never an unaligned
vector). grad_weight likewise puts output channels in lanes: each sample's gradient is
transposed to pixel-major order, and a tile of ``NV`` vectors x ``CB`` input channels x ``TT``
taps sums, pixel by pixel, ``NV`` gradient vectors times ``CB*TT`` broadcast inputs. On the
benchmark's 64-channel 3x3 layer this took the forward pass from about 113 to about 200
GFLOP/s on 2 cores (Zen 4): the column-vector tiles wait on unaligned loads that cross cache
lines, the lane tiles do not.

A pointwise layer (1x1 kernel, stride 1, no padding, any dilation) is a matrix product per
sample over its ``P = H*W`` pixels instead (``pointwise_plan``: ``FWD_*``, ``GIN_*`` and
``GW_*`` tiles): a register tile of ``MR`` rows x ``NRV`` vectors of the result sums, over
the whole inner dimension, ``MR`` rows of the left factor times an ``NR``-column panel of
the right one, packed contiguous and zero-padded to a whole panel.
"""

from __future__ import annotations

from dataclasses import dataclass

from derive.spec import LayerSpec

from .ir import Constant, RowReuse, Table

#: Bytes per vector of the column tiles: 256 bits. (512-bit vectors of columns give no more
#: multiply-adds per cycle on the Zen 4 machines these kernels were tuned on, and half as
#: many columns per tile; the lane tiles below gain from 512 bits by other means.)
VECTOR_BYTES = 32
#: Bytes per vector of the channels-in-lanes tiles: 512 bits. With AVX-512 each broadcast
#: source value then feeds 16 float32 multiply-adds per instruction; without it the compiler
#: splits every vector in two.
LANE_BYTES = 64
#: Below this many multiply-adds per output element (input channels x taps), a forward or
#: stride-1 grad_input lane tile costs more than the column tile, which stores whole vectors
#: as they are. Measured side by side on the benchmark layers when lane tiles still stored
#: element by element, lane time / column time: 1.27 at 9 (float64, 1 channel, 3x3), 1.13
#: and 1.07 at 75 (3 channels, 5x5), 0.69 and 0.58 at 144 (16 channels, 3x3), 0.65 and
#: 0.39 at 576. A grad_input with a column stride stores its column tiles element by
#: element, so it takes lanes whenever its channels fill them.
LANE_MIN_SUMS = 128
#: Vector registers a lane tile's partial sums may take (of 32 with AVX-512).
LANE_ACCUMULATORS = 28
#: Vector registers a register tile's partial sums may take (of 32 with AVX-512 or 16 with
#: AVX2: the compiler spills a few there).
ACCUMULATORS = 24
#: forward and grad_input split a sample's channel blocks into groups until the batch gives
#: at least this many tasks.
MIN_TASKS = 8
#: grad_weight sums the batch in at most this many chunks (partial sums added in order).
GRAD_WEIGHT_CHUNKS = 8
#: Bytes of transposed gradient a lane grad_weight tile sweeps per pass (half of L1).
GRAD_WEIGHT_BAND_BYTES = 16 * 1024
#: Cycles charged per tile (stores, set-up) and per channel of a tile (loop overhead) by the
#: cost model that picks the tiles.
TILE_OVERHEAD = 24
CHANNEL_OVERHEAD = 3
#: Load slots the cost model charges a column tile's vector load: it starts at any element,
#: so it crosses a cache line (and takes two slots) about 3 times in 8; a weight broadcast
#: is one aligned element (one slot).
VECTOR_LOAD_SLOTS = 1.5
#: Cycles charged per output row and channel of a column tile: its own store stream, with
#: its own edge test. With this and the load slots the model picks, as measured side by side
#: on the 1-channel 3x3 benchmark layer's float64 forward, 2 channels x 1 row x 7 vectors
#: (80-86 us) over 8 channels x 2 rows x 1 vector (111 us); no other benchmark tile changes.
ROW_OVERHEAD = 2


@dataclass(frozen=True)
class Geometry:
    """The layer as the loops see it."""

    c: int
    h: int
    w: int
    o: int
    kh: int
    kw: int
    ho: int
    wo: int
    sh: int
    sw: int
    dh: int
    dw: int
    top: int
    left: int
    flip: bool


def geometry(spec: LayerSpec) -> Geometry:
    c, h, w = spec.input
    o, _, kh, kw = spec.kernel
    _, ho, wo = spec.output_shape
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    top, bottom, left, right = spec.pads
    flip = spec.mode == "convolution"
    return Geometry(c, h, w, o, kh, kw, ho, wo, sh, sw, dh, dw, top, left, flip)


def is_pointwise(spec: LayerSpec) -> bool:
    """A 1x1 kernel at stride 1 without padding (dilation does not matter): per sample, a
    product of the O x C weights with the C x (H*W) input."""
    _, _, kh, kw = spec.kernel
    return (kh, kw, *spec.stride, *spec.pads) == (1, 1, 1, 1, 0, 0, 0, 0)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _divisors(n: int, limit: int) -> list[int]:
    return [d for d in range(1, min(n, limit) + 1) if n % d == 0]


def _tap_blocks(offsets: list[int]) -> list[int]:
    """The tap counts ``tt`` (dividing the number of taps) for which every block of ``tt``
    consecutive taps has its taps at the same distances from its first: a block then reads
    them from one pointer at offsets fixed at compile time. 1 always qualifies."""
    return [tt for tt in _divisors(len(offsets), len(offsets))
            if all(offsets[t0 + k] - offsets[t0] == offsets[k] - offsets[0]
                   for t0 in range(0, len(offsets), tt) for k in range(tt))]


def _weight_index(g: Geometry, i: int, j: int) -> int:
    """Offset of tap (i, j) in a kernel plane ``K[o, c]`` (rotated in convolution mode)."""
    return ((g.kh - 1 - i) * g.kw + (g.kw - 1 - j)) if g.flip else i * g.kw + j


@dataclass(frozen=True)
class SweepTile:
    """A correlation sweep's register tile: OB channels x TY rows x TXV vectors; with
    ``reuse``, each source row loaded once per column tap feeds every row tap reaching it."""

    ob: int
    ty: int
    txv: int
    reuse: bool = False


def _source_rows(ty: int, row_step: int, tap_rows: tuple[int, ...]) -> int:
    """Distinct source rows a tile of ``ty`` output rows reads for one column tap."""
    return len({y * row_step + r for y in range(ty) for r in tap_rows})


def _sweep_tile(vl: int, out_channels: int, in_channels: int, phases: list[tuple[int, int, int]],
                tap_rows: tuple[int, ...] = (), row_step: int = 1) -> SweepTile:
    """The tile of least modelled time over ``phases`` of ``(rows, columns, taps)``.

    Per tap and channel a tile takes ``max(multiply-adds, load slots) / 2`` cycles (two of
    each per cycle; ``VECTOR_LOAD_SLOTS`` per vector load, one per weight); per tile,
    ``TILE_OVERHEAD`` plus ``ROW_OVERHEAD`` per row and channel; partial tiles at the edges
    are charged in full.

    ``tap_rows`` (one phase whose taps are a grid of row taps x column taps) also offers
    row reuse: the source rows, ``row_step`` apart from one output row to the next and
    ``tap_rows`` below the top row of taps, are loaded once per column tap and multiplied
    by every row tap's weights (``OB`` per row tap, held in registers).
    """
    rows = max(r for r, _, _ in phases)
    vectors = max(_cdiv(x, vl) for _, x, _ in phases)
    modes = [False, True] if tap_rows and len(phases) == 1 and len(tap_rows) > 1 else [False]
    best = None
    for reuse in modes:
        row_taps = len(tap_rows) if reuse else 1
        for ob in _divisors(out_channels, 16):
            for ty in range(1, min(rows, 8) + 1):
                loaded_rows = _source_rows(ty, row_step, tap_rows) if reuse else ty
                for txv in range(1, min(vectors, 8) + 1):
                    acc = ob * ty * txv
                    if acc > ACCUMULATORS or acc + ob * row_taps + 1 > 32:
                        continue
                    # cycles per group of row_taps taps (one column tap when reusing rows)
                    per_group = max(acc * row_taps,
                                    ob * row_taps + VECTOR_LOAD_SLOTS * loaded_rows * txv) / 2
                    cost = 0.0
                    for r, x, taps in phases:
                        tiles = out_channels // ob * _cdiv(r, ty) * _cdiv(x, txv * vl)
                        cost += tiles * (in_channels * (taps // row_taps * per_group
                                                        + CHANNEL_OVERHEAD)
                                         + TILE_OVERHEAD + acc + ROW_OVERHEAD * ob * ty)
                    key = (cost, -acc, reuse)
                    if best is None or key < best[0]:
                        best = (key, SweepTile(ob, ty, txv, reuse))
    assert best is not None
    return best[1]


@dataclass(frozen=True)
class LaneTile:
    """A channels-in-lanes tile: NV vectors of channels x TY rows x TX columns."""

    nv: int
    ty: int
    tx: int


def _lane_tile(lanes: int, out_channels: int, in_channels: int,
               phases: list[tuple[int, int, int]]) -> LaneTile:
    """The channels-in-lanes tile of least modelled time over ``phases`` of ``(rows,
    columns, taps)``. Per tap and input channel a tile takes ``max(multiply-adds,
    loads / 2)`` cycles (one vector multiply-add per cycle; ``NV`` vector loads and
    ``TY*TX`` broadcasts, two per cycle); partial tiles at the edges are charged in full,
    and so is storing the tile, element by element."""
    rows = max(r for r, _, _ in phases)
    cols = max(x for _, x, _ in phases)
    best = None
    for nv in _divisors(out_channels // lanes, 4):
        for ty in range(1, min(rows, 8) + 1):
            for tx in range(1, min(cols, LANE_ACCUMULATORS) + 1):
                acc = nv * ty * tx
                if acc > LANE_ACCUMULATORS:
                    continue
                per_tap = max(acc, (nv + ty * tx) / 2)
                cost = 0.0
                for r, x, taps in phases:
                    tiles = out_channels // (nv * lanes) * _cdiv(r, ty) * _cdiv(x, tx)
                    cost += tiles * (in_channels * (taps * per_tap + CHANNEL_OVERHEAD)
                                     + TILE_OVERHEAD + acc * lanes / 4)
                key = (cost, -acc, nv)
                if best is None or key < best[0]:
                    best = (key, LaneTile(nv, ty, tx))
    assert best is not None
    return best[1]


@dataclass(frozen=True)
class LaneGradWeightTile:
    """grad_weight's channels-in-lanes tile: NV vectors of output channels x CB input
    channels x TT taps."""

    nv: int
    cb: int
    tt: int


def _lane_grad_weight_tile(g: Geometry, lanes: int, tap_blocks: list[int]
                           ) -> LaneGradWeightTile:
    taps = g.kh * g.kw
    pixels = g.ho * g.wo
    best = None
    for nv in _divisors(g.o // lanes, 4):
        for cb in _divisors(g.c, 16):
            for tt in tap_blocks:
                acc = nv * cb * tt
                if acc > LANE_ACCUMULATORS:
                    continue
                tiles = g.o // (nv * lanes) * (g.c // cb) * (taps // tt)
                per_pixel = max(acc, (nv + cb * tt) / 2)
                cost = tiles * (pixels * per_pixel + TILE_OVERHEAD + 4 * acc)
                key = (cost, -acc, nv)
                if best is None or key < best[0]:
                    best = (key, LaneGradWeightTile(nv, cb, tt))
    assert best is not None
    return best[1]


@dataclass(frozen=True)
class GradWeightTile:
    """grad_weight's register tile: OB output x CB input channels x TT taps."""

    ob: int
    cb: int
    tt: int


def _grad_weight_tile(g: Geometry, vl: int, tap_blocks: list[int]) -> GradWeightTile:
    taps = g.kh * g.kw
    vectors = g.ho * _cdiv(g.wo, vl)
    best = None
    for ob in _divisors(g.o, 16):
        for cb in _divisors(g.c, 16):
            for tt in tap_blocks:
                acc = ob * cb * tt
                if acc > ACCUMULATORS or acc + ob + 1 > 32:
                    continue
                tiles = (g.o // ob) * (g.c // cb) * (taps // tt)
                per_vector = max(acc, ob + cb * tt) / 2
                cost = tiles * (vectors * per_vector + TILE_OVERHEAD + 4 * acc)
                key = (cost, -acc)
                if best is None or key < best[0]:
                    best = (key, GradWeightTile(ob, cb, tt))
    assert best is not None
    return best[1]


def plan(spec: LayerSpec, dtype_bytes: int
         ) -> tuple[tuple[Constant, ...], tuple[Table, ...], tuple[str, ...],
                    tuple[RowReuse, ...]]:
    """The blocking constants and tap tables of the ``loops`` kernels of ``spec``, the
    passes that put channels in lanes and the passes whose column tiles reuse source rows."""
    vl = VECTOR_BYTES // dtype_bytes
    if is_pointwise(spec):
        return pointwise_plan(spec, vl, dtype_bytes), (), (), ()
    g = geometry(spec)
    lanes = LANE_BYTES // dtype_bytes
    in_lanes = tuple(name for name, channels, pays in (
        ("forward", g.o, g.c * g.kh * g.kw >= LANE_MIN_SUMS),
        ("grad_input", g.c, g.sw > 1 or g.o * g.kh * g.kw >= LANE_MIN_SUMS),
        ("grad_weight", g.o, True)) if channels % lanes == 0 and pays)
    consts: list[Constant] = []
    tables: list[Table] = []
    row_reuse: list[RowReuse] = []

    def const(name: str, value: int, doc: str) -> None:
        consts.append(Constant(name, value, doc))

    def reuses(name: str) -> bool:
        return any(reuse.name == name for reuse in row_reuse)

    def reuse_rows(name: str, prefix: str, row_step: int, tap_rows: tuple[int, ...],
                   column_taps: int) -> None:
        """The record and constants of a sweep whose tile reuses source rows."""
        row_reuse.append(RowReuse(name, prefix, row_step, tap_rows))
        const(f"{prefix}_ROW_TAPS", len(tap_rows), "rows of taps (tap i: row i*COLUMN_TAPS)")
        const(f"{prefix}_COLUMN_TAPS", column_taps, "columns of taps")

    def column_offsets(prefix: str, offsets: list[int]) -> None:
        tables.append(Table(f"{prefix}_COLUMN_OFFSET", tuple(offsets),
                            "column tap j: scratch offset of its tap in the top row of taps"))

    const("VL", vl, f"reals per vector ({VECTOR_BYTES} bytes)")
    if in_lanes:
        const("LANES", lanes, f"channels per lane vector ({LANE_BYTES} bytes)")
    const("LH", g.h, "rows swept (H)")
    const("LW", g.w, "input columns swept (W)")
    const("LHO", g.ho, "output rows swept (HO)")
    const("LWO", g.wo, "output columns swept (WO)")

    # -- forward: one phase over the padded input, columns split by stride phase -----------
    shifts = [(j * g.dw) // g.sw for j in range(g.kw)]
    phases_of = [(j * g.dw) % g.sw for j in range(g.kw)]
    fwd_phases = [(g.ho, g.wo, g.kh * g.kw)]
    fwd_tap_rows = tuple(i * g.dh for i in range(g.kh))
    if "forward" in in_lanes:
        fwd_lanes = _lane_tile(lanes, g.o, g.c, fwd_phases)
        fwd_ty, fwd_tx = fwd_lanes.ty, fwd_lanes.tx
    else:
        fwd = _sweep_tile(vl, g.o, g.c, fwd_phases, fwd_tap_rows, g.sh)
        fwd_ty, fwd_tx = fwd.ty, fwd.txv * vl
    fwd_rows = _cdiv(g.ho, fwd_ty) * fwd_ty
    fwd_cols = _cdiv(g.wo, fwd_tx) * fwd_tx
    gw_cols = g.wo if "grad_weight" in in_lanes else _cdiv(g.wo, vl) * vl
    src_rows = max(g.top + g.h, (fwd_rows - 1) * g.sh + (g.kh - 1) * g.dh + 1,
                   (g.ho - 1) * g.sh + (g.kh - 1) * g.dh + 1)
    src_seg = max((g.left + g.w - 1) // g.sw + 1, fwd_cols + max(shifts),
                  gw_cols + max(shifts))
    const("SRC_ROWS", src_rows, "rows of a scratch input plane (padding and tile overrun)")
    const("SRC_SEG", src_seg, "columns of one column phase of a scratch input row")
    const("SRC_PITCH", g.sw * src_seg, "reals per scratch input row: SW phases of SRC_SEG")
    const("SRC_PLANE", src_rows * g.sw * src_seg, "reals per scratch input plane")
    input_taps = [(i, j) for i in range(g.kh) for j in range(g.kw)]
    input_tap_offsets = [i * g.dh * g.sw * src_seg + phases_of[j] * src_seg + shifts[j]
                         for i, j in input_taps]
    if "forward" in in_lanes:
        const("FWD_NV", fwd_lanes.nv, "forward tile: lane vectors of output channels")
        const("FWD_LW", fwd_lanes.nv * lanes, "forward tile: output channels (divides O)")
        const("FWD_TY", fwd_ty, "forward tile: output rows")
        const("FWD_TX", fwd_tx, "forward tile: output columns")
        const("FWD_TAPS", g.kh * g.kw, "forward: taps over all phases")
    else:
        const("FWD_OB", fwd.ob, "forward tile: output channels (divides O)")
        const("FWD_TY", fwd.ty, "forward tile: output rows")
        const("FWD_TXV", fwd.txv, "forward tile: vectors of output columns")
        const("FWD_TX", fwd_tx, "forward tile: output columns (FWD_TXV * VL)")
        if fwd.reuse:
            reuse_rows("forward", "FWD", g.sh, fwd_tap_rows, g.kw)
            column_offsets("FWD", input_tap_offsets[:g.kw])
    const("FWD_PHASES", 1, "forward sweeps one phase")
    const("FWD_ROW_STEP", g.sh * g.sw * src_seg, "scratch reals from one output row to the next")
    tables += [
        Table("FWD_PHASE_ROWS", (g.ho,), "output rows of each phase"),
        Table("FWD_PHASE_COLS", (g.wo,), "output columns of each phase"),
        Table("FWD_PHASE_DST", (0,), "offset in an output plane of the phase's first element"),
    ]
    if not reuses("forward"):
        tables += [
            Table("FWD_PHASE_TAPS", (0, len(input_taps)),
                  "taps of phase p: FWD_PHASE_TAPS[p] .. FWD_PHASE_TAPS[p+1]-1"),
            Table("FWD_TAP_OFFSET", tuple(input_tap_offsets),
                  "tap (i, j): scratch offset i*DH rows and column phase/shift of j*DW"),
        ]
    tables.append(Table("FWD_TAP_WEIGHT", tuple(_weight_index(g, i, j) for i, j in input_taps),
                        "tap (i, j): its offset in a kernel plane K[o, c]"))

    # -- grad_input: the gather, one phase per (row phase r, column phase s) ---------------
    def split(k: int, d: int, s: int, pad: int, size: int, out: int
              ) -> tuple[list[list[tuple[int, int]]], list[tuple[int, int]], int]:
        """Per phase r: [(tap, a)] with tap*d = a*s + r; (first m, count) of outputs."""
        taps = [[(t, (t * d - r) // s) for t in range(k) if (t * d) % s == r] for r in range(s)]
        frame = max((a for phase in taps for _, a in phase), default=0)
        spans = []
        for r in range(s):
            lo = -((r - pad) // s)
            hi = (size - 1 + pad - r) // s
            spans.append((lo, max(0, hi - lo + 1)))
        return taps, spans, frame

    row_taps, row_spans, gt = split(g.kh, g.dh, g.sh, g.top, g.h, g.ho)
    col_taps, col_spans, gl = split(g.kw, g.dw, g.sw, g.left, g.w, g.wo)
    # the column phases of a row phase in the order of their first columns (at column
    # stride 2, the grad_input lane tile interleaves each pair: ``KernelIR.pairs_column_phases``)
    column_order = sorted(range(g.sw), key=lambda s: col_spans[s][0] * g.sw + s - g.left)
    phases = [(r, s) for r in range(g.sh) for s in column_order
              if row_spans[r][1] and col_spans[s][1]]
    gin_phases = [(row_spans[r][1], col_spans[s][1], len(row_taps[r]) * len(col_taps[s]))
                  for r, s in phases]
    # one phase (stride 1 or a single covered phase): its row taps, each a rows above the
    # output row, lie a_max - a rows below the top row of taps (the one of the largest a)
    gin_row_taps = row_taps[phases[0][0]] if len(phases) == 1 else []
    gin_tap_rows = tuple(max(a for _, a in gin_row_taps) - a for _, a in gin_row_taps
                         ) if gin_row_taps and gin_phases[0][2] else ()
    if "grad_input" in in_lanes:
        gin_lanes = _lane_tile(lanes, g.c, g.o, gin_phases)
        gin_ty, gin_tx = gin_lanes.ty, gin_lanes.tx
    else:
        gin = _sweep_tile(vl, g.c, g.o, gin_phases, gin_tap_rows, 1)
        gin_ty, gin_tx = gin.ty, gin.txv * vl
    g_rows, g_cols = gt + g.ho, gl + g.wo
    for r, s in phases:
        if row_taps[r] and col_taps[s]:
            g_rows = max(g_rows, row_spans[r][0] + _cdiv(row_spans[r][1], gin_ty) * gin_ty
                         + gt - min(a for _, a in row_taps[r]))
            g_cols = max(g_cols, col_spans[s][0] + _cdiv(col_spans[s][1], gin_tx) * gin_tx
                         + gl - min(b for _, b in col_taps[s]))
    tap_start, tap_offset, tap_weight = [0], [], []
    for r, s in phases:
        for i, a in row_taps[r]:
            for j, b in col_taps[s]:
                tap_offset.append((row_spans[r][0] - a + gt) * g_cols
                                  + col_spans[s][0] - b + gl)
                tap_weight.append(_weight_index(g, i, j))
        tap_start.append(len(tap_offset))
    # a row-reusing column tile as wide as the rows of dV reads the gradient in place
    in_place = ("grad_input" not in in_lanes and gin.reuse and g.sh == g.sw == 1
                and gin_tx >= col_spans[0][1] and g.wo >= vl)
    if not in_place:
        const("G_TOP", gt, "zero rows above a scratch gradient plane")
        const("G_LEFT", gl, "zero columns left of a scratch gradient plane")
        const("G_ROWS", g_rows, "rows of a scratch gradient plane (frame and tile overrun)")
        const("G_PITCH", g_cols, "reals per scratch gradient row")
        const("G_PLANE", g_rows * g_cols, "reals per scratch gradient plane")
    if "grad_input" in in_lanes:
        const("GIN_NV", gin_lanes.nv, "grad_input tile: lane vectors of input channels")
        const("GIN_LW", gin_lanes.nv * lanes, "grad_input tile: input channels (divides C)")
        const("GIN_TY", gin_ty, "grad_input tile: rows of a phase")
        const("GIN_TX", gin_tx, "grad_input tile: columns of a phase")
        const("GIN_TAPS", tap_start[-1], "grad_input: taps over all phases")
    else:
        const("GIN_OB", gin.ob, "grad_input tile: input channels (divides C)")
        const("GIN_TY", gin.ty, "grad_input tile: rows of a phase")
        const("GIN_TXV", gin.txv, "grad_input tile: vectors of columns of a phase")
        const("GIN_TX", gin_tx, "grad_input tile: columns (GIN_TXV * VL)")
        columns = len(col_taps[phases[0][1]])
        if in_place:
            reuse_rows("grad_input", "GIN", 1, gin_tap_rows, columns)
            const("GIN_FRAME_ROW", row_spans[0][0] - max(a for _, a in row_taps[0]),
                  "gradient row of the top row of taps of output row 0")
            tables.append(Table("GIN_COLUMN_START", tuple(col_spans[0][0] - b
                                                          for _, b in col_taps[0]),
                                "column tap j: gradient column of output column 0"))
        elif gin.reuse:
            top = gin_tap_rows.index(0)
            reuse_rows("grad_input", "GIN", 1, gin_tap_rows, columns)
            column_offsets("GIN", tap_offset[top * columns:(top + 1) * columns])
    const("GIN_PHASES", len(phases), "stride phases (r, s) holding input elements")
    if not in_place:
        const("GIN_ROW_STEP", g_cols, "scratch reals from one row of a phase to the next")
    tables.append(Table("GIN_PHASE_ROWS", tuple(row_spans[r][1] for r, _ in phases),
                        "rows u = m*SH + r - PT of each phase (r, s)"))
    if not in_place:  # whole rows of LW columns
        tables.append(Table("GIN_PHASE_COLS", tuple(col_spans[s][1] for _, s in phases),
                            "columns v = m*SW + s - PL of each phase"))
    tables.append(Table("GIN_PHASE_DST", tuple((row_spans[r][0] * g.sh + r - g.top) * g.w
                                               + col_spans[s][0] * g.sw + s - g.left
                                               for r, s in phases),
                        "offset in an input plane of the phase's first element"))
    if not reuses("grad_input"):
        tables += [
            Table("GIN_PHASE_TAPS", tuple(tap_start),
                  "taps of phase p: GIN_PHASE_TAPS[p] .. GIN_PHASE_TAPS[p+1]-1 (none: zeros)"),
            Table("GIN_TAP_OFFSET", tuple(tap_offset),
                  "tap (i, j) of its phase: scratch offset of output row m - a, column n - b"),
        ]
    tables.append(Table("GIN_TAP_WEIGHT", tuple(tap_weight), "tap (i, j): its offset in K[o, c]"))

    # -- grad_weight ----------------------------------------------------------------------
    tap_blocks = _tap_blocks(input_tap_offsets)
    if "grad_weight" in in_lanes:
        gwl = _lane_grad_weight_tile(g, lanes, tap_blocks)
        gw_tt = gwl.tt
        const("GW_NV", gwl.nv, "grad_weight tile: lane vectors of output channels")
        const("GW_LW", gwl.nv * lanes, "grad_weight tile: output channels (divides O)")
        const("GW_CB", gwl.cb, "grad_weight tile: input channels (divides C)")
        const("GW_TT", gwl.tt, "grad_weight tile: taps (divides KH*KW)")
        const("GW_BAND", max(1, GRAD_WEIGHT_BAND_BYTES // (g.wo * gwl.nv * LANE_BYTES)),
              "grad_weight: output rows summed per pass over the tiles")
    else:
        gw = _grad_weight_tile(g, vl, tap_blocks)
        gw_tt = gw.tt
        const("GW_OB", gw.ob, "grad_weight tile: output channels (divides O)")
        const("GW_CB", gw.cb, "grad_weight tile: input channels (divides C)")
        const("GW_TT", gw.tt, "grad_weight tile: taps (divides KH*KW)")
        full = g.wo // vl * vl
        const("GW_FULL_COLS", full, "grad_weight: output columns in whole vectors, read "
              "from G in place")
        const("GW_TAIL_COLS", g.wo - full, "grad_weight: the other columns, copied into a "
              "vector per row with zeros after them")
    const("GW_ROW_STEP", g.sh * g.sw * src_seg, "scratch reals from one output row to the next")
    const("MIN_TASKS", MIN_TASKS, "forward and grad_input tasks wanted per call")
    const("GRAD_WEIGHT_CHUNKS", GRAD_WEIGHT_CHUNKS,
          "grad_weight sums the batch in at most this many chunks")
    tables.append(Table("GW_TAP_OFFSET", tuple(input_tap_offsets),
                        "tap (i, j): scratch offset (as FWD_TAP_OFFSET)"))
    tables.append(Table("GW_TAP_DELTA", tuple(o - input_tap_offsets[0]
                                              for o in input_tap_offsets[:gw_tt]),
                        "tap t0 + k of every block of GW_TT taps: its scratch offset past tap "
                        "t0's"))
    tables.append(Table("GW_TAP_WEIGHT", tuple(_weight_index(g, i, j) for i, j in input_taps),
                        "tap (i, j): its offset in K[o, c] (as FWD_TAP_WEIGHT)"))
    return tuple(consts), tuple(tables), in_lanes, tuple(row_reuse)


# -- pointwise layers: matrix products ------------------------------------------------------

#: The most bytes a matrix product's column panel may take (L1 is 32 KB; a little more
#: measured no slower on S6, the prefetchers fetching the rest from L2).
PANEL_BYTES = 40 * 1024
#: A pointwise grad_weight wants at least this many tasks (column panel x row group).
GRAD_WEIGHT_TASKS = 16
#: Bytes per cycle the left factor of a matrix product streams in at (from L2).
L2_BYTES_PER_CYCLE = 16


@dataclass(frozen=True)
class GemmTile:
    """A matrix product's register tile: MR rows x NRV vectors of VL columns."""

    mr: int
    nrv: int


def _gemm_tile(vl: int, dtype_bytes: int, rows: int, cols: int, depth: int) -> GemmTile:
    """The tile of least modelled time for a ``rows x cols`` result with inner dimension
    ``depth``. Per step a tile takes ``max(multiply-adds, loads) / 2`` cycles (MR scalars
    and NRV vectors loaded); edge tiles are charged in full (their panels are zero-padded);
    the left factor is read again for every column panel, at ``L2_BYTES_PER_CYCLE``; a
    column panel must fit in ``PANEL_BYTES`` (it is meant to stay in L1)."""
    best = None
    for mr in range(1, 17):
        for nrv in range(1, 9):
            acc, nr = mr * nrv, nrv * vl
            if acc > ACCUMULATORS or acc + nrv + 1 > 32:
                continue
            if depth * nr * dtype_bytes > PANEL_BYTES and nrv > 1:
                continue
            tiles = _cdiv(rows, mr) * _cdiv(cols, nr)
            per_step = max(acc, mr + nrv) / 2 + mr * dtype_bytes / L2_BYTES_PER_CYCLE
            cost = tiles * (depth * per_step + TILE_OVERHEAD + acc)
            key = (cost, -acc)
            if best is None or key < best[0]:
                best = (key, GemmTile(mr, nrv))
    assert best is not None
    return best[1]


def pointwise_plan(spec: LayerSpec, vl: int, dtype_bytes: int) -> tuple[Constant, ...]:
    """The blocking constants of a pointwise layer's matrix products."""
    c, h, w = spec.input
    o = spec.kernel[0]
    p = h * w
    consts = [Constant("VL", vl, f"reals per vector ({VECTOR_BYTES} bytes)"),
              Constant("P", p, "pixels per channel plane (H*W): the products' column count")]
    # (prefix, result rows, result columns, inner dimension, what it computes)
    products = [("FWD", o, p, c, "forward: Z_s = K . V_s"),
                ("GIN", c, p, o, "grad_input: dV_s = K^T . G_s"),
                ("GW", o, c, p, "grad_weight: dK += G_s . V_s^T")]
    for prefix, rows, cols, depth, what in products:
        tile = _gemm_tile(vl, dtype_bytes, rows, cols, depth)
        consts += [
            Constant(f"{prefix}_MR", tile.mr, f"{what}: tile rows"),
            Constant(f"{prefix}_NRV", tile.nrv, f"{what}: tile vectors of columns"),
            Constant(f"{prefix}_NR", tile.nrv * vl, f"{what}: tile columns ({prefix}_NRV * VL)"),
            Constant(f"{prefix}_ROW_PANELS", _cdiv(rows, tile.mr),
                     f"{what}: panels of {prefix}_MR rows (the last zero-padded)"),
        ]
        if prefix == "GW":
            row_panels, col_panels = _cdiv(rows, tile.mr), _cdiv(cols, tile.nrv * vl)
            consts += [
                Constant("GW_COL_PANELS", col_panels,
                         f"{what}: panels of GW_NR columns (the last zero-padded)"),
                Constant("GW_ROW_GROUPS",
                         min(row_panels, _cdiv(GRAD_WEIGHT_TASKS, col_panels)),
                         "grad_weight tasks per column panel (groups of its row panels)"),
            ]
    consts.append(Constant("MIN_TASKS", MIN_TASKS, "forward and grad_input tasks wanted per call"))
    return tuple(consts)
