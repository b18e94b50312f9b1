"""forward and grad_input: one computation, a *correlation sweep* over a zero-framed copy
("scratch") of one sample's planes, so that no inner loop tests a bound.

Each output element of a phase sums, over the input channels of the sweep and the taps of
the phase, ``weight * source[row * ROW_STEP + column + TAP_OFFSET[tap]]``.

- forward: one phase; the source is the input with its zero padding, each row split by
  column stride phase (``x*SW + j*DW = (x + shift)*SW + phase``), so that a tap reads
  contiguous columns whatever the stride;
- grad_input: the gather form, split by stride phase: input row ``u = m*SH + r - PT``
  collects from the taps ``i`` with ``i*DH = a*SH + r`` and output row ``m - a`` (likewise
  columns). Each phase ``(r, s)`` is a stride-1 correlation of the zero-framed gradient
  ``G`` with its own taps, written to every ``SH``-th row and ``SW``-th column of ``dV``;
  phases no tap reaches are written as zeros.

The tiles are column tiles (``columns``) or channels-in-lanes tiles (``lanes``).
"""

from __future__ import annotations

from dataclasses import dataclass

from derive.geometry import tap_index

from .columns import column_sweep
from .common import Geometry, Machine, _cdiv
from .defines import Defines
from .lanes import lane_sweep
from .records import Driver, Layout
from .tiles import LaneTile, SweepTile, _lane_tile, sweep_tile_candidates

FORWARD_LAYOUT = Layout("C", "SRC_PLANE", "(LHO * LWO)", "(C * KH * KW)", "(KH * KW)", "LWO", 1,
                        "SRC_PITCH")


@dataclass(frozen=True)
class InputScratch:
    """The zero-padded copy of a sample's input that forward and grad_weight sweep: rows,
    columns per column phase, and per tap (i, j) its offset from an output's first tap."""

    rows: int
    seg: int
    tap_offsets: tuple[int, ...]


def input_scratch(g: Geometry, vl: int, fwd_ty: int, fwd_tx: int, gw_in_lanes: bool,
                  d: Defines) -> InputScratch:
    """The input scratch, with room for the forward tile's overrun and grad_weight's."""
    shifts = [(j * g.dw) // g.sw for j in range(g.kw)]
    phases_of = [(j * g.dw) % g.sw for j in range(g.kw)]
    fwd_rows = _cdiv(g.ho, fwd_ty) * fwd_ty
    fwd_cols = _cdiv(g.wo, fwd_tx) * fwd_tx
    gw_cols = g.wo if gw_in_lanes else _cdiv(g.wo, vl) * vl
    # scratch rows count from the top of the padding: a tap's row is tap_index with no pad
    src_rows = max(g.top + g.h, tap_index(fwd_rows - 1, g.kh - 1, g.sh, g.dh, 0) + 1,
                   tap_index(g.ho - 1, g.kh - 1, g.sh, g.dh, 0) + 1)
    src_seg = max((g.left + g.w - 1) // g.sw + 1, fwd_cols + max(shifts),
                  gw_cols + max(shifts))
    d.const("SRC_ROWS", src_rows, "rows of a scratch input plane (padding and tile overrun)")
    d.const("SRC_SEG", src_seg, "columns of one column phase of a scratch input row")
    d.const("SRC_PITCH", g.sw * src_seg, "reals per scratch input row: SW phases of SRC_SEG")
    d.const("SRC_PLANE", src_rows * g.sw * src_seg, "reals per scratch input plane")
    offsets = tuple(i * g.dh * g.sw * src_seg + phases_of[j] * src_seg + shifts[j]
                    for i in range(g.kh) for j in range(g.kw))
    return InputScratch(src_rows, src_seg, offsets)


def tap_spans(prefix: str, phase_rows: tuple[int, ...], ty: int, tap_start: tuple[int, ...],
              tap_offsets: tuple[int, ...], pitch: int, row_step: int, live: tuple[int, int],
              d: Defines) -> tuple[int, ...]:
    """Per phase and row of tiles, the taps that read a row of the scratch holding data
    (``live``: its first and end rows); the others read only the zero frame above or below,
    and add nothing (a 5x5 kernel with padding 2 on 16 rows: 7.5 % of the multiply-adds). A
    tap of offset ``t`` reads, for a phase's output row ``m``, scratch row
    ``m * row_step // pitch + t // pitch``. Each phase's taps are in ascending (or descending)
    rows, so a tile's live taps are a run: ``{prefix}_TAPS_FROM[k] .. {prefix}_TAPS_TO[k]-1``
    for tile row ``k - {prefix}_SPANS_FIRST[phase]``. The bits do not change: a skipped tap
    adds exact zeros. Where some row of tiles skips a tap, makes those tables and returns
    ``tap_start`` (which the C then no longer needs as ``{prefix}_PHASE_TAPS``); else makes
    none and returns ``()``."""
    step = row_step // pitch
    first, start, end, skips = [], [], [], False
    for ph, rows in enumerate(phase_rows):
        first.append(len(start))
        taps = range(tap_start[ph], tap_start[ph + 1])
        for m0 in range(0, rows, ty):
            bases = [m * step for m in range(m0, min(m0 + ty, rows))]
            used = [t for t in taps if any(live[0] <= base + tap_offsets[t] // pitch < live[1]
                                           for base in bases)]
            low = used[0] if used else taps.start
            high = used[-1] + 1 if used else low
            assert used == list(range(low, high)), "a tile's live taps are not a run"
            start.append(low)
            end.append(high)
            skips = skips or len(used) < len(taps)
    if not skips:
        return ()
    d.table(f"{prefix}_SPANS_FIRST", first,
            "phase p: its first row of tiles in the two tables below")
    d.table(f"{prefix}_TAPS_FROM", start, "a row of tiles: its first tap that reads a row of data")
    d.table(f"{prefix}_TAPS_TO", end,
            "a row of tiles: one past its last tap that reads a row of data")
    return tap_start


def column_taps(tap_offsets: tuple[int, ...], per_row: int, cols: int, tx: int, pitch: int,
                data) -> tuple[tuple[int, int, tuple[int, ...]], ...]:
    """A lane tile's taps as rows of ``per_row`` column taps, each with the tile's columns
    that read data, where the tile spans its phase's every column (``cols <= tx``: its
    columns are the same in every tile) and some column tap reads the zero frame at some
    column: ``(j, offset from its row's first tap, live columns)`` per column tap j, for the
    template to leave out the multiply-adds by zero; else ``()``. Column ``x`` of the tile
    reads scratch column ``offset % pitch + x``, data where ``data(that)``. The taps must lie
    in rows (``tap_offsets[r*per_row + j] - tap_offsets[r*per_row]`` the same for every
    row r, and the rows whole scratch rows apart) in row order, as forward's and a
    single-phase grad_input's do. A column tap that reads no data has no columns (the
    template leaves it out)."""
    if cols > tx:
        return ()
    rows = len(tap_offsets) // per_row
    deltas = tuple(tap_offsets[j] - tap_offsets[0] for j in range(per_row))
    if rows * per_row != len(tap_offsets) or any(
            tap_offsets[r * per_row + j] - tap_offsets[r * per_row] != deltas[j]
            or (tap_offsets[r * per_row] - tap_offsets[0]) % pitch
            for r in range(rows) for j in range(per_row)):
        return ()
    live = tuple(tuple(x for x in range(tx) if data(tap_offsets[j] % pitch + x))
                 for j in range(per_row))
    if all(len(xs) == tx for xs in live):
        return ()
    return tuple(zip(range(per_row), deltas, live))


def forward_phases(g: Geometry) -> list[tuple[int, int, int]]:
    """forward's one phase: ``(rows, columns, taps)``."""
    return [(g.ho, g.wo, g.kh * g.kw)]


def forward_sweep_candidates(g: Geometry, vl: int, lanes: int, machine: Machine
                             ) -> tuple[SweepTile, ...]:
    """forward's column tiles ``codegen.tune`` may time, the model's choice first, then
    tiles of vectors of ``lanes`` reals where those are wider than ``vl``."""
    return sweep_tile_candidates(vl, g.o, g.c, forward_phases(g), machine,
                                 tuple(i * g.dh for i in range(g.kh)), g.sh, lanes)


def forward_tile(g: Geometry, vl: int, lanes: int, in_lanes: bool, machine: Machine,
                 lane_tile: LaneTile | None = None, sweep_tile: SweepTile | None = None
                 ) -> tuple[LaneTile | SweepTile, int, int]:
    """forward's tile (a LaneTile or a SweepTile) and its rows and columns; ``lane_tile``
    or ``sweep_tile`` in place of the model's (``codegen.tune``)."""
    if in_lanes:
        tile = lane_tile or _lane_tile(lanes, g.o, g.c, forward_phases(g), machine)
        return tile, tile.ty, tile.tx
    tile = sweep_tile or forward_sweep_candidates(g, vl, lanes, machine)[0]
    return tile, tile.ty, tile.txv * (lanes if tile.wide else vl)


def _forward_driver(g: Geometry, in_lanes: bool, bias: bool) -> Driver:
    block = "FWD_LW" if in_lanes else "FWD_OB"
    return Driver("V", "(C * LH * LW)", "Z", "(O * LHO * LWO)", f"O / {block}", block, True,
                  "C, LH, LW, 0, LH", "SRC_PLANE, SRC_PITCH, SRC_SEG, SW, PT, PL", "C * SRC_PLANE",
                  in_lanes, "O * C * FWD_TAPS", "b, " if bias else "")


def plan_forward(g: Geometry, vl: int, lanes: int, tile: LaneTile | SweepTile, tx: int,
                 scratch: InputScratch, bias: bool, d: Defines):
    """forward's record (a LaneSweep or a ColumnSweep), ``#define``s and tables."""
    in_lanes = isinstance(tile, LaneTile)
    driver = _forward_driver(g, in_lanes, bias)
    taps = [(i, j) for i in range(g.kh) for j in range(g.kw)]
    seg, listed = scratch.seg, in_lanes or not tile.reuse  # taps listed one by one
    spans = tap_spans("FWD", (g.ho,), tile.ty, (0, len(taps)), scratch.tap_offsets,
                      g.sw * seg, g.sh * g.sw * seg, (g.top, g.top + g.h), d) if listed else ()
    if in_lanes:
        d.const("FWD_NV", tile.nv, "forward tile: lane vectors of output channels")
        d.const("FWD_LW", tile.nv * lanes, "forward tile: output channels (divides O)")
        d.const("FWD_TY", tile.ty, "forward tile: output rows")
        d.const("FWD_TX", tx, "forward tile: output columns")
        d.const("FWD_TAPS", g.kh * g.kw, "forward: taps over all phases")
        transposed = tx >= lanes
        # scratch column u of column phase q holds input column u*SW + q - PL
        record = lane_sweep(
            "forward", "FWD", "its output channels fill lane vectors and each output sums "
            "enough products", tile, lanes, FORWARD_LAYOUT, driver, bias, transposed, False,
            False, spans, column_taps(
                scratch.tap_offsets, g.kw, g.wo, tx, g.sw * seg,
                lambda c: 0 <= c % seg * g.sw + c // seg - g.left < g.w))
    else:
        d.const("FWD_OB", tile.ob, "forward tile: output channels (divides O)")
        d.const("FWD_TY", tile.ty, "forward tile: output rows")
        d.const("FWD_TXV", tile.txv, "forward tile: vectors of output columns")
        d.const("FWD_TX", tx, f"forward tile: output columns (FWD_TXV * "
                f"{'LANES' if tile.wide else 'VL'})")
        if tile.reuse:
            _reuse_constants(d, "FWD", g.kh, g.kw)
            d.table("FWD_COLUMN_OFFSET", scratch.tap_offsets[:g.kw],
                    "column tap j: scratch offset of its tap in the top row of taps")
        reason = ("the least modelled time: a column tile" +
                  (", each source row loaded once for all its row taps" if tile.reuse else ""))
        record = column_sweep("forward", "FWD", reason, tile, FORWARD_LAYOUT, driver, bias,
                              tuple(i * g.dh for i in range(g.kh)), g.sh, spans, g.ho,
                              (g.top, g.top + g.h))
    d.const("FWD_PHASES", 1, "forward sweeps one phase")
    d.const("FWD_ROW_STEP", g.sh * g.sw * scratch.seg,
            "scratch reals from one output row to the next")
    d.table("FWD_PHASE_ROWS", (g.ho,), "output rows of each phase")
    d.table("FWD_PHASE_COLS", (g.wo,), "output columns of each phase")
    d.table("FWD_PHASE_DST", (0,), "offset in an output plane of the phase's first element")
    if listed:
        if not spans:
            d.table("FWD_PHASE_TAPS", (0, len(taps)),
                    "taps of phase p: FWD_PHASE_TAPS[p] .. FWD_PHASE_TAPS[p+1]-1")
        d.table("FWD_TAP_OFFSET", scratch.tap_offsets,
                "tap (i, j): scratch offset i*DH rows and column phase/shift of j*DW")
    d.table("FWD_TAP_WEIGHT", (g.weight_index(i, j) for i, j in taps),
            "tap (i, j): its offset in a kernel plane K[o, c]")
    return record


def _reuse_constants(d: Defines, prefix: str, row_taps: int, column_taps: int) -> None:
    d.const(f"{prefix}_ROW_TAPS", row_taps, "rows of taps (tap i: row i*COLUMN_TAPS)")
    d.const(f"{prefix}_COLUMN_TAPS", column_taps, "columns of taps")
