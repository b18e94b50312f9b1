"""Column tiles of forward and grad_input: registers of ``OB`` channels x ``TY`` rows x ``TXV``
vectors of ``VL`` output columns (forward's, when ``wide``, of ``LANES``); per tap ``TY*TXV``
source vectors and ``OB`` weights feed ``OB*TY*TXV`` vector multiply-adds.

**Row reuse.** With one phase (forward, and grad_input at stride 1) the taps are a grid of
row taps x column taps, and the tile's output rows read overlapping source rows: row ``y``
and row tap ``i`` read source row ``y*row_step + tap_rows[i]``. The tile may then loop over
column taps only and load each source row once for every row tap that reaches it
(``ROW_TAPS*OB`` weights held in registers), where one output channel per tile would
otherwise cost a load per multiply-add.

**grad_input in place.** When such a grad_input tile spans whole rows of ``dV``, it reads the
gradient where it lies, without the framed copy: a row above or below the gradient is a row
of zeros, and a vector that crosses a row's first or last column is loaded inside the row
and shifted in registers with zeros (``shuffles.in_place_loads``). The framed copy streams
each sample through a scratch that can be larger than L1.
"""

from __future__ import annotations

from .records import (
    WIDE_VECTORS,
    ColumnSweep,
    Driver,
    FrameTile,
    InPlaceSweep,
    Layout,
    Load,
    RowStore,
    VectorStore,
)
from .shuffles import in_place_loads, row_schedule
from .tiles import SweepTile


def _accumulators(tile: SweepTile) -> tuple[tuple[str, ...], ...]:
    return tuple(tuple(f"acc{p}_{t}" for t in range(tile.ty * tile.txv))
                 for p in range(tile.ob))


def _reused_loads(tile: SweepTile, schedule) -> tuple[Load, ...]:
    """Per source row and vector: the multiply-adds of every (tile row, row tap) it feeds."""
    return tuple(
        Load(row, xv, tile.ob * len(uses) > 1,
             tuple((f"acc{p}_{y * tile.txv + xv}", f"w{p}_{i}")
                   for y, i in uses for p in range(tile.ob)))
        for row, uses in schedule for xv in range(tile.txv))


def _stores(tile: SweepTile, kinds: tuple[str, ...]) -> tuple[RowStore, ...]:
    return tuple(
        RowStore(p, ty, tuple(VectorStore(f"acc{p}_{ty * tile.txv + xv}", xv, kinds[xv], xv + 1)
                              for xv in range(tile.txv)))
        for p in range(tile.ob) for ty in range(tile.ty))


def _frame_tiles(tile: SweepTile, schedule, loads: tuple[Load, ...], rows: int, row_step: int,
                 live: tuple[int, int]) -> tuple[FrameTile, ...]:
    """The rows of a row-reusing tile (first output row ``m0``) whose source rows include
    rows of the zero frame, each with the loads of the others and the row taps those use
    (source row ``row`` of the tile at ``m0`` is scratch row ``m0*row_step + row``; ``live``:
    the first and end scratch rows holding data). A skipped load multiplies zeros only, so
    the bits do not change. None unless some row of tiles reads no frame at all: the
    others' loop then serves it. S3's forward (5x5, padding 2, tiles of 2 rows) multiplies
    the frame in 3.75 % of its multiply-adds along the rows."""
    found = []
    for m0 in range(0, rows, tile.ty):
        kept = [row for row, _ in schedule if live[0] <= m0 * row_step + row < live[1]]
        if len(kept) < len(schedule):
            found.append(FrameTile(
                m0, tuple(row for row, _ in schedule if row not in kept),
                tuple(load for load in loads if load.row in kept),
                tuple(sorted({i for row, uses in schedule if row in kept for _, i in uses}))))
    return tuple(found) if len(found) < -(-rows // tile.ty) else ()


def column_sweep(name: str, prefix: str, reason: str, tile: SweepTile, layout: Layout,
                 driver: Driver, bias: bool, tap_rows: tuple[int, ...], row_step: int,
                 tap_spans: tuple[int, ...] = (), rows: int = 0,
                 live: tuple[int, int] | None = None) -> ColumnSweep:
    """The record of a column sweep; ``tap_rows``/``row_step`` as
    ``tiles.sweep_tile_candidates`` takes them (used with ``tile.reuse``); ``tap_spans``:
    what ``sweeps.tap_spans`` returned (without ``tile.reuse``); ``rows`` and ``live``
    (with ``tile.reuse``, one phase): its output rows and the scratch rows holding data
    (``_frame_tiles``)."""
    frame_tiles = ()
    if tile.reuse:
        schedule = row_schedule(tile.ty, row_step, tap_rows)
        loads = _reused_loads(tile, schedule)
        row_taps, source_rows = len(tap_rows), len(schedule)
        shares = tile.ob > 1 or any(len(uses) > 1 for _, uses in schedule)
        if live is not None:
            frame_tiles = _frame_tiles(tile, schedule, loads, rows, row_step, live)
    else:
        loads = tuple(Load(ty, xv, tile.ob > 1,
                           tuple((f"acc{p}_{ty * tile.txv + xv}", f"w{p}") for p in range(tile.ob)))
                      for ty in range(tile.ty) for xv in range(tile.txv))
        row_taps, source_rows, shares = 1, tile.ty, tile.ob > 1
        schedule = ()
    return ColumnSweep(
        name=name, prefix=prefix, reason=reason, ob=tile.ob, ty=tile.ty, txv=tile.txv,
        reuse=tile.reuse, weight_rows=row_taps if tile.reuse else 0, layout=layout,
        driver=driver, bias=bias, accumulators=_accumulators(tile), loads=loads,
        stores=_stores(tile, ("checked",) * tile.txv), source_rows=source_rows,
        tile_loads=source_rows * tile.txv, tile_weights=tile.ob * row_taps,
        tile_fmas=tile.ob * tile.ty * tile.txv * row_taps, contiguous=layout.dst_col == 1,
        shares_loads=shares, several_rows=tile.ty > 1, row_step=row_step,
        tap_rows=tap_rows if tile.reuse else (), schedule=schedule, tap_spans=tap_spans,
        frame_tiles=frame_tiles, **(WIDE_VECTORS if tile.wide else {}))


def in_place_sweep(reason: str, tile: SweepTile, layout: Layout, driver: Driver,
                   tap_rows: tuple[int, ...], column_starts: tuple[int, ...], vl: int,
                   width: int, out_width: int) -> InPlaceSweep:
    """The record of grad_input read in place: gradient rows of ``width`` reals, column tap
    j's first gradient column ``column_starts[j]``, rows of dV of ``out_width`` reals."""
    schedule = row_schedule(tile.ty, 1, tap_rows)
    plans = in_place_loads(vl, width, column_starts, tile.txv)
    taps = []
    for column, plan in enumerate(plans):
        loads = []
        for row, uses in schedule:
            for xv in range(tile.txv):
                kind, indices = plan[xv]
                if kind == "zero":
                    continue
                loads.append(Load(row, xv, tile.ob * len(uses) > 1,
                                  tuple((f"acc{p}_{y * tile.txv + xv}", f"w{p}_{i}")
                                        for y, i in uses for p in range(tile.ob)),
                                  kind, indices, column))
        taps.append(tuple(loads))
    columns, rows = len(column_starts), len(tap_rows)
    kinds = tuple("whole" if (xv + 1) * vl <= out_width else "partial" if xv * vl < out_width
                  else "none" for xv in range(tile.txv))
    return InPlaceSweep(
        name="grad_input", prefix="GIN", reason=reason, ob=tile.ob, ty=tile.ty, txv=tile.txv,
        row_taps=rows, layout=layout, driver=driver, accumulators=_accumulators(tile),
        rows=tuple(row for row, _ in schedule), taps=tuple(taps),
        weight_taps=tuple(tuple(i * columns + j for i in range(rows)) for j in range(columns)),
        stores=_stores(tile, kinds), tile_loads=len(schedule) * tile.txv,
        tile_weights=tile.ob * rows, tile_fmas=tile.ob * tile.ty * tile.txv * rows,
        shares_loads=tile.ob > 1 or any(len(uses) > 1 for _, uses in schedule),
        several_rows=tile.ty > 1, tap_rows=tap_rows, schedule=schedule)
