"""grad_input: the gather, one phase per (row phase r, column phase s) of the strides (see
``sweeps``), as a column tile, a column tile reading the gradient in place, or a lane tile."""

from __future__ import annotations

from dataclasses import dataclass

from .columns import column_sweep, in_place_sweep
from .common import Geometry, Machine, _cdiv
from .defines import Defines
from .lanes import lane_sweep, pairs_column_phases
from .records import Driver, Layout
from .sweeps import _reuse_constants, column_taps, tap_spans
from .tiles import LaneTile, SweepTile, _lane_tile, sweep_tile_candidates

LAYOUT = Layout("O", "G_PLANE", "(LH * LW)", "(KH * KW)", "(C * KH * KW)", "(SH * LW)", 1,
                "G_PITCH")
IN_PLACE_LAYOUT = Layout("O", "", "(LH * LW)", "(KH * KW)", "(C * KH * KW)", "LW", 1, "")
IN_PLACE_DRIVER = Driver("G", "(O * LHO * LWO)", "dV", "(C * LH * LW)", "C / GIN_OB", "GIN_OB",
                         False)


@dataclass(frozen=True)
class Phases:
    """The stride phases of grad_input holding input elements, and their taps."""

    row_taps: list
    row_spans: list
    col_taps: list
    col_spans: list
    top: int
    left: int
    phases: list
    sizes: list
    tap_rows: tuple[int, ...]


def phases(g: Geometry) -> Phases:
    row_taps, row_spans, gt = g.row_phases()
    col_taps, col_spans, gl = g.col_phases()
    # the column phases of a row phase in the order of their first columns (so that the
    # lane tile at column stride 2 can interleave each pair)
    column_order = sorted(range(g.sw), key=lambda s: col_spans[s][0] * g.sw + s - g.left)
    covered = [(r, s) for r in range(g.sh) for s in column_order
               if row_spans[r][1] and col_spans[s][1]]
    sizes = [(row_spans[r][1], col_spans[s][1], len(row_taps[r]) * len(col_taps[s]))
             for r, s in covered]
    # one phase (stride 1 or a single covered phase): its row taps, each a rows above the
    # output row, lie a_max - a rows below the top row of taps (the one of the largest a)
    first_rows = row_taps[covered[0][0]] if len(covered) == 1 else []
    tap_rows = tuple(max(a for _, a in first_rows) - a for _, a in first_rows
                     ) if first_rows and sizes[0][2] else ()
    return Phases(row_taps, row_spans, col_taps, col_spans, gt, gl, covered, sizes, tap_rows)


def _taps(g: Geometry, p: Phases, g_cols: int):
    tap_start, tap_offset, tap_weight = [0], [], []
    for r, s in p.phases:
        for i, a in p.row_taps[r]:
            for j, b in p.col_taps[s]:
                tap_offset.append((p.row_spans[r][0] - a + p.top) * g_cols
                                  + p.col_spans[s][0] - b + p.left)
                tap_weight.append(g.weight_index(i, j))
        tap_start.append(len(tap_offset))
    return tap_start, tap_offset, tap_weight


def _ascending(taps: tuple[list[int], list[int], list[int]]
               ) -> tuple[list[int], list[int], list[int]]:
    """``_taps`` with each phase's taps in ascending scratch offset, as forward's are. In
    kernel order (descending offsets), GCC unrolled the taps of S5's float32 grad_input with a
    1 x 2 x 4 lane tile and spilled its sums: 1.9 times as long as ascending."""
    tap_start, tap_offset, tap_weight = taps
    offsets, weights = [], []
    for first, end in zip(tap_start, tap_start[1:]):
        order = sorted(range(first, end), key=tap_offset.__getitem__)
        offsets += [tap_offset[t] for t in order]
        weights += [tap_weight[t] for t in order]
    return tap_start, offsets, weights


def _frame(g: Geometry, p: Phases, ty: int, tx: int) -> tuple[int, int]:
    """Rows and columns of the framed gradient copy (frame and tile overrun)."""
    g_rows, g_cols = p.top + g.ho, p.left + g.wo
    for r, s in p.phases:
        if p.row_taps[r] and p.col_taps[s]:
            g_rows = max(g_rows, p.row_spans[r][0] + _cdiv(p.row_spans[r][1], ty) * ty
                         + p.top - min(a for _, a in p.row_taps[r]))
            g_cols = max(g_cols, p.col_spans[s][0] + _cdiv(p.col_spans[s][1], tx) * tx
                         + p.left - min(b for _, b in p.col_taps[s]))
    return g_rows, g_cols


def _destinations(g: Geometry, p: Phases) -> tuple[int, ...]:
    """Per phase, the offset in an input plane of its first element."""
    return tuple((p.row_spans[r][0] * g.sh + r - g.top) * g.w + p.col_spans[s][0] * g.sw + s
                 - g.left for r, s in p.phases)


def _phase_tables(g: Geometry, p: Phases, in_place: bool, reuse: bool, taps, d: Defines,
                  spans: tuple[int, ...] = ()):
    tap_start, tap_offset, tap_weight = taps
    d.table("GIN_PHASE_ROWS", (p.row_spans[r][1] for r, _ in p.phases),
            "rows u = m*SH + r - PT of each phase (r, s)")
    if not in_place:  # whole rows of LW columns
        d.table("GIN_PHASE_COLS", (p.col_spans[s][1] for _, s in p.phases),
                "columns v = m*SW + s - PL of each phase")
    d.table("GIN_PHASE_DST", _destinations(g, p),
            "offset in an input plane of the phase's first element")
    if not reuse:
        if not spans:  # else each row of tiles has its own (sweeps.tap_spans)
            d.table("GIN_PHASE_TAPS", tap_start,
                    "taps of phase p: GIN_PHASE_TAPS[p] .. GIN_PHASE_TAPS[p+1]-1 (none: zeros)")
        d.table("GIN_TAP_OFFSET", tap_offset,
                "tap (i, j) of its phase: scratch offset of output row m - a, column n - b")
    d.table("GIN_TAP_WEIGHT", tap_weight, "tap (i, j): its offset in K[o, c]")


def _spans(g: Geometry, p: Phases, ty: int, taps, g_cols: int, d: Defines) -> tuple[int, ...]:
    """``sweeps.tap_spans`` of the framed gradient (its data rows: G_TOP .. G_TOP + HO - 1)."""
    return tap_spans("GIN", tuple(r for r, _, _ in p.sizes), ty, tuple(taps[0]), tuple(taps[1]),
                     g_cols, g_cols, (p.top, p.top + g.ho), d)


def _framed_constants(p: Phases, g_rows: int, g_cols: int, d: Defines) -> None:
    d.const("G_TOP", p.top, "zero rows above a scratch gradient plane")
    d.const("G_LEFT", p.left, "zero columns left of a scratch gradient plane")
    d.const("G_ROWS", g_rows, "rows of a scratch gradient plane (frame and tile overrun)")
    d.const("G_PITCH", g_cols, "reals per scratch gradient row")
    d.const("G_PLANE", g_rows * g_cols, "reals per scratch gradient plane")


def _framed_driver(in_lanes: bool) -> Driver:
    block = "GIN_LW" if in_lanes else "GIN_OB"
    return Driver("G", "(O * LHO * LWO)", "dV", "(C * LH * LW)", f"C / {block}", block, True,
                  "O, LHO, LWO, 0, LHO", "G_PLANE, G_PITCH, G_PITCH, 1, G_TOP, G_LEFT",
                  "O * G_PLANE", in_lanes, "C * O * GIN_TAPS")


def plan_lanes(g: Geometry, lanes: int, p: Phases, d: Defines, machine: Machine,
               tile: LaneTile | None = None):
    """grad_input as a lane tile (``tile``, or the model's)."""
    tile = tile or _lane_tile(lanes, g.c, g.o, p.sizes, machine)
    g_rows, g_cols = _frame(g, p, tile.ty, tile.tx)
    taps = _ascending(_taps(g, p, g_cols))
    _framed_constants(p, g_rows, g_cols, d)
    d.const("GIN_NV", tile.nv, "grad_input tile: lane vectors of input channels")
    d.const("GIN_LW", tile.nv * lanes, "grad_input tile: input channels (divides C)")
    d.const("GIN_TY", tile.ty, "grad_input tile: rows of a phase")
    d.const("GIN_TX", tile.tx, "grad_input tile: columns of a phase")
    d.const("GIN_TAPS", taps[0][-1], "grad_input: taps over all phases")
    _common_constants(p, False, g_cols, d)
    rows = tuple(r for r, _, _ in p.sizes)
    spans = _spans(g, p, tile.ty, taps, g_cols, d)
    _phase_tables(g, p, False, False, taps, d, spans)
    cols = tuple(x for _, x, _ in p.sizes)
    dst = _destinations(g, p)
    paired = pairs_column_phases(g.sw, tile.tx, lanes, rows, cols, dst)
    layout = Layout(LAYOUT.in_channels, LAYOUT.in_plane, LAYOUT.out_plane, LAYOUT.w_out,
                    LAYOUT.w_in, LAYOUT.dst_row, g.sw, "")
    reason = ("its input channels fill lane vectors" + (
        ", and at a column stride each output would be stored alone" if g.sw > 1 else
        " and each output sums enough products"))
    # one phase (stride 1): its taps lie in rows of one tap per column tap
    columns = column_taps(tuple(taps[1]), len(p.col_taps[p.phases[0][1]]), cols[0], tile.tx,
                          g_cols, lambda c: p.left <= c < p.left + g.wo
                          ) if len(p.phases) == 1 else ()
    return lane_sweep("grad_input", "GIN", reason, tile, lanes, layout, _framed_driver(True),
                      False, tile.tx >= lanes and g.sw == 1, paired,
                      paired and cols[0::2] != cols[1::2], spans, columns)


def _common_constants(p: Phases, in_place: bool, g_cols: int, d: Defines) -> None:
    d.const("GIN_PHASES", len(p.phases), "stride phases (r, s) holding input elements")
    if not in_place:
        d.const("GIN_ROW_STEP", g_cols, "scratch reals from one row of a phase to the next")


def grad_input_sweep_candidates(g: Geometry, vl: int, p: Phases, machine: Machine
                                ) -> tuple[SweepTile, ...]:
    """grad_input's column tiles ``codegen.tune`` may time, the model's choice first."""
    return sweep_tile_candidates(vl, g.c, g.o, p.sizes, machine, p.tap_rows, 1)


def plan_columns(g: Geometry, vl: int, p: Phases, d: Defines, machine: Machine,
                 tile: SweepTile | None = None):
    """grad_input as a column tile (``tile``, or the model's), reading the gradient in place
    when the tile reuses rows and spans whole rows of dV at stride 1."""
    tile = tile or grad_input_sweep_candidates(g, vl, p, machine)[0]
    tx = tile.txv * vl
    g_rows, g_cols = _frame(g, p, tile.ty, tx)
    taps = _taps(g, p, g_cols)
    in_place = (tile.reuse and g.sh == g.sw == 1 and tx >= p.col_spans[0][1] and g.wo >= vl)
    if not in_place:
        _framed_constants(p, g_rows, g_cols, d)
    d.const("GIN_OB", tile.ob, "grad_input tile: input channels (divides C)")
    d.const("GIN_TY", tile.ty, "grad_input tile: rows of a phase")
    d.const("GIN_TXV", tile.txv, "grad_input tile: vectors of columns of a phase")
    d.const("GIN_TX", tx, "grad_input tile: columns (GIN_TXV * VL)")
    columns = len(p.col_taps[p.phases[0][1]])
    if tile.reuse:
        _reuse_constants(d, "GIN", len(p.tap_rows), columns)
    if in_place:
        d.const("GIN_FRAME_ROW", p.row_spans[0][0] - max(a for _, a in p.row_taps[0]),
                "gradient row of the top row of taps of output row 0")
        starts = tuple(p.col_spans[0][0] - b for _, b in p.col_taps[0])
        d.table("GIN_COLUMN_START", starts, "column tap j: gradient column of output column 0")
    elif tile.reuse:
        top = p.tap_rows.index(0)
        d.table("GIN_COLUMN_OFFSET", taps[1][top * columns:(top + 1) * columns],
                "column tap j: scratch offset of its tap in the top row of taps")
    _common_constants(p, in_place, g_cols, d)
    spans = () if tile.reuse else _spans(g, p, tile.ty, taps, g_cols, d)
    _phase_tables(g, p, in_place, tile.reuse, taps, d, spans)
    if in_place:
        return in_place_sweep(
            "a column tile reusing gradient rows, as wide as dV's rows: no framed copy",
            tile, IN_PLACE_LAYOUT, IN_PLACE_DRIVER, p.tap_rows, starts, vl, g.wo, g.w)
    layout = Layout(LAYOUT.in_channels, LAYOUT.in_plane, LAYOUT.out_plane, LAYOUT.w_out,
                    LAYOUT.w_in, LAYOUT.dst_row, g.sw, LAYOUT.pitch)
    reason = ("the least modelled time: a column tile" +
              (", each gradient row loaded once for all its row taps" if tile.reuse else ""))
    return column_sweep("grad_input", "GIN", reason, tile, layout, _framed_driver(False), False,
                        p.tap_rows, 1, spans)
