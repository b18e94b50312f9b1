"""grad_weight (``GW_*``) of the sweeps: a valid correlation of the input with the gradient.

Column tiles: a register tile holds ``OB`` output channels x ``CB`` input channels x ``TT``
taps of partial sums, one vector lane per output column; per vector of output columns it
loads ``OB`` vectors of ``G`` and ``CB*TT`` of the input. The lanes are added in a fixed
order at the end of each sample, so results do not depend on threads. ``TT`` is a block
size whose blocks all have their taps at the same distances from the first
(``GW_TAP_DELTA``, ``_tap_blocks``): a block reads its taps from one pointer at offsets fixed
at compile time. (With offsets read from the tap table at run time, GCC kept one index
register per tap and input channel and spilled most of them.)

Lane tiles (output channels filling lane vectors): each sample's gradient is transposed to
pixel-major order, and a tile of ``NV`` vectors x ``CB`` input channels x ``TT`` taps sums,
pixel by pixel, ``NV`` gradient vectors times ``CB*TT`` broadcast inputs.
"""

from __future__ import annotations

from .common import (
    GRAD_WEIGHT_BAND_BYTES,
    GRAD_WEIGHT_CHUNKS,
    GRAD_WEIGHT_PART_FLOPS,
    GRAD_WEIGHT_SLOT_PIXELS,
    GRAD_WEIGHT_TASKS,
    LINE_BYTES,
    REGISTER_TRANSPOSE_LANES,
    Geometry,
    Machine,
    _tap_blocks,
    skewed,
)
from .defines import Defines
from .records import GradWeightColumns, GradWeightLanes, Load
from .tiles import _grad_weight_tile, _lane_grad_weight_tile


def _band(g: Geometry, nv: int, machine: Machine) -> int:
    """A lane tile's output rows per pass: their transposed gradient fills half of L1."""
    return max(1, GRAD_WEIGHT_BAND_BYTES // (g.wo * nv * machine.lane_bytes))


def _border(g: Geometry, tt: int, tap_offsets: tuple[int, ...], seg: int
            ) -> tuple[tuple[tuple[int, tuple[int, ...]], ...], tuple[int, int]]:
    """The first and last output columns at which some tap of a block reads the zero frame,
    each with the taps (of ``tt``) that read data there, and the columns between, where
    every tap does: for blocks of whole kernel rows (a tap's column is then ``tt % KW`` in
    every block). Output column x under tap t reads scratch column ``offset % pitch + x``,
    which holds input column ``u*SW + q - PL`` (u its place in column phase q's ``seg``).
    ``((), (0, WO))`` where no block can leave anything out."""
    whole = ((), (0, g.wo))
    if tt % g.kw:
        return whole

    def data(column: int) -> bool:
        return 0 <= column % seg * g.sw + column // seg - g.left < g.w

    live = [tuple(t for t in range(tt) if data(tap_offsets[t] % (g.sw * seg) + x))
            for x in range(g.wo)]
    return _peeled(live, tt) or whole


def _border_rows(g: Geometry, tt: int
                 ) -> tuple[tuple[tuple[int, tuple[int, ...]], ...], tuple[int, int]]:
    """For one block of every tap (where ``_row_spans`` can leave no row out): the first and
    last output rows at which some kernel row reads the zero frame, each with the taps that
    read data there, and the rows between, where every tap does. Output row y under tap t
    (kernel row ``t // KW``) reads input row ``y*SH + (t // KW)*DH - PT``. ``((), (0, HO))``
    where nothing can be left out. A 5x5 layer with padding 2 (S3) multiplies the frame in
    3.75 % of its pixel-taps along the rows."""
    whole = ((), (0, g.ho))
    if tt != g.kh * g.kw:
        return whole
    live = [tuple(t for t in range(tt) if 0 <= y * g.sh + t // g.kw * g.dh - g.top < g.h)
            for y in range(g.ho)]
    return _peeled(live, tt) or whole


def _peeled(live: list[tuple[int, ...]], tt: int
            ) -> tuple[tuple[tuple[int, tuple[int, ...]], ...], tuple[int, int]] | None:
    """Of output columns or rows with the taps (of ``tt``) that read data at each, ``live``:
    those at either end where some tap reads the zero frame, each with its taps, and the run
    between, where every tap reads data; None where that run is empty, everything, or
    broken."""
    inner = [x for x, taps in enumerate(live) if len(taps) == tt]
    if not inner or len(inner) == len(live) or inner != list(range(inner[0], inner[-1] + 1)):
        return None
    border = tuple((x, taps) for x, taps in enumerate(live) if not inner[0] <= x <= inner[-1])
    return border, (inner[0], inner[-1] + 1)


def _lanes(g: Geometry, lanes: int, tap_blocks: list[int], d: Defines, machine: Machine,
           pixels: int, tap_offsets: tuple[int, ...], seg: int) -> GradWeightLanes:
    tile = _lane_grad_weight_tile(g, lanes, tap_blocks, machine)
    row_spans = _row_spans(g, tile.tt, d)
    border, inner = _border(g, tile.tt, tap_offsets, seg)
    border_rows, inner_rows = _border_rows(g, tile.tt)
    d.const("GW_NV", tile.nv, "grad_weight tile: lane vectors of output channels")
    d.const("GW_LW", tile.nv * lanes, "grad_weight tile: output channels (divides O)")
    d.const("GW_CB", tile.cb, "grad_weight tile: input channels (divides C)")
    d.const("GW_TT", tile.tt, "grad_weight tile: taps (divides KH*KW)")
    d.const("GW_BAND", _band(g, tile.nv, machine),
            "grad_weight: output rows summed per pass over the tiles")
    return GradWeightLanes(
        "grad_weight", "its output channels fill lane vectors", tile.nv, tile.cb, tile.tt,
        tuple((cb, tt, tuple(f"acc{cb}_{tt}_{v}" for v in range(tile.nv)))
              for cb in range(tile.cb) for tt in range(tile.tt)),
        tile.cb * tile.tt, tile.nv * tile.cb * tile.tt, pixels,
        lanes >= REGISTER_TRANSPOSE_LANES or g.o == lanes, row_spans, border, inner,
        border_rows, inner_rows)


def _columns(g: Geometry, vl: int, tap_blocks: list[int], d: Defines, machine: Machine
             ) -> GradWeightColumns:
    tile = _grad_weight_tile(g, vl, tap_blocks, machine)
    row_spans = _row_spans(g, tile.tt, d)
    d.const("GW_OB", tile.ob, "grad_weight tile: output channels (divides O)")
    d.const("GW_CB", tile.cb, "grad_weight tile: input channels (divides C)")
    d.const("GW_TT", tile.tt, "grad_weight tile: taps (divides KH*KW)")
    full = g.wo // vl * vl
    d.const("GW_FULL_COLS", full, "grad_weight: output columns in whole vectors, read "
            "from G in place")
    d.const("GW_TAIL_COLS", g.wo - full, "grad_weight: the other columns, copied into a "
            "vector per row with zeros after them")
    ob, tt = tile.ob, tile.tt
    return GradWeightColumns(
        "grad_weight", "its output channels do not fill lane vectors: the column tile of "
        "least modelled time", ob, tile.cb, tt, full > 0, g.wo > full,
        tuple(tuple(f"acc{p}_{u}" for u in range(tile.cb * tt)) for p in range(ob)),
        tuple(Load(cb, t, ob > 1, tuple((f"acc{p}_{cb * tt + t}", f"g{p}") for p in range(ob)))
              for cb in range(tile.cb) for t in range(tt)),
        tuple((p, cb, t, f"acc{p}_{cb * tt + t}")
              for p in range(ob) for cb in range(tile.cb) for t in range(tt)),
        ob > 1, tile.cb * tt, ob * tile.cb * tt, row_spans)


def _row_spans(g: Geometry, tt: int, d: Defines) -> bool:
    """Per block of ``tt`` taps, the output rows at which some tap of the block reads an input
    row (output row y and kernel row i read input row ``y*SH + i*DH - PT``): the rows before
    and after read only the zero frame under every tap of the block, and add nothing (their
    sums would be exact zeros, so the bits do not change). Makes the tables and returns True
    where some block skips a row; blocks of whole kernel rows gain, one of every tap never."""
    first, end = [], []
    for t0 in range(0, g.kh * g.kw, tt):
        kernel_rows = {t // g.kw for t in range(t0, t0 + tt)}
        live = [y for y in range(g.ho)
                if any(0 <= y * g.sh + i * g.dh - g.top < g.h for i in kernel_rows)]
        first.append(live[0] if live else 0)
        end.append(live[-1] + 1 if live else 0)
    if all(lo == 0 and hi == g.ho for lo, hi in zip(first, end)):
        return False
    d.table("GW_ROWS_FROM", first, "block t0 / GW_TT of taps: its first output row whose "
            "inputs under those taps hold data")
    d.table("GW_ROWS_TO", end, "block t0 / GW_TT of taps: one past its last such output row")
    return True


def _part_rows(g: Geometry, band: int) -> int:
    """The fewest output rows of a grad_weight row part: a lane tile's band of rows, and as
    many rows as the part's inputs reach past them (a part packs at most twice its own rows)."""
    return max(band, -(-(g.kh - 1) * g.dh // g.sh), 1)


def plan_grad_weight(g: Geometry, vl: int, lanes: int, in_lanes: bool,
                     tap_offsets: tuple[int, ...], src_seg: int, d: Defines, machine: Machine,
                     pixels: int = 1):
    """grad_weight's record, ``#define``s and tables (and its chunk constant);
    ``pixels``: the output pixels a lane tile's loop takes per pass."""
    tap_blocks = _tap_blocks(list(tap_offsets))
    record = (_lanes(g, lanes, tap_blocks, d, machine, pixels, tap_offsets, src_seg) if in_lanes
              else _columns(g, vl, tap_blocks, d, machine))
    d.const("GW_ROW_STEP", g.sh * g.sw * src_seg, "scratch reals from one output row to the next")
    d.const("GRAD_WEIGHT_CHUNKS", GRAD_WEIGHT_CHUNKS,
            "grad_weight sums the batch in at most this many chunks")
    d.const("GRAD_WEIGHT_TASKS", GRAD_WEIGHT_TASKS,
            "grad_weight cuts a sample's rows into parts until its tasks are this many")
    dtype_bytes = machine.lane_bytes // lanes
    d.const("GW_LINE", LINE_BYTES // dtype_bytes, "grad_weight: reals per cache line, between "
            "the calling thread's scratch and the first slot of partial sums")
    d.const("GW_SLOT", skewed(g.o * g.c * g.kh * g.kw, dtype_bytes), "grad_weight: reals from "
            "one slot of partial sums to the next (O * C * KH * KW and one or two cache lines: "
            "no line is written by two threads)")
    d.const("GRAD_WEIGHT_PART_FLOPS", GRAD_WEIGHT_PART_FLOPS,
            "grad_weight: the fewest flops of a task of several parts")
    d.const("GRAD_WEIGHT_SLOT_PIXELS", GRAD_WEIGHT_SLOT_PIXELS,
            "grad_weight: the fewest output pixels a slot of several parts sums")
    part_rows = _part_rows(g, _band(g, record.nv, machine) if in_lanes else 1)
    d.const("GW_MOST_PARTS", max(1, g.ho // part_rows),
            f"grad_weight: most parts of a sample's output rows (each at least {part_rows})")
    d.table("GW_TAP_OFFSET", tap_offsets, "tap (i, j): scratch offset (as FWD_TAP_OFFSET)")
    d.table("GW_TAP_DELTA", (o - tap_offsets[0] for o in tap_offsets[:record.tt]),
            "tap t0 + k of every block of GW_TT taps: its scratch offset past tap t0's")
    d.table("GW_TAP_WEIGHT", (g.weight_index(i, j) for i in range(g.kh) for j in range(g.kw)),
            "tap (i, j): its offset in K[o, c] (as FWD_TAP_WEIGHT)")
    return record
