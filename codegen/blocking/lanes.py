"""Channels-in-lanes tiles of forward and grad_input.

When the channels a pass writes fill whole lane vectors of ``Machine.lane_bytes`` (and, for
a forward or stride-1 grad_input, each output sums at least ``LANE_MIN_SUMS`` products), the
tile holds ``NV`` vectors of ``LANES`` channels x ``TY`` rows x ``TX`` columns: the weights are
packed once per call with the channels innermost, and per input channel and tap the tile
loads ``NV`` weight vectors and broadcasts ``TY*TX`` single source values (never an unaligned
vector, which the column tiles wait on when it crosses a cache line).

A whole tile spanning at least LANES contiguous columns is stored through in-register
transposes (``transposed``); at column stride 2 the two column phases of a row phase are
swept together and interleaved into vectors of contiguous columns (``paired``).
"""

from __future__ import annotations

from .common import _cdiv
from .records import Driver, LaneRun, LaneSweep, Layout
from .tiles import LaneTile


def pairs_column_phases(sw: int, tx: int, lanes: int, rows: tuple[int, ...],
                        cols: tuple[int, ...], dst: tuple[int, ...]) -> bool:
    """Whether a grad_input lane tile sweeps the two column phases of each row phase
    together: column stride 2, a tile of at least LANES columns, and phases in pairs of one
    row phase, the one holding its first column first (their first elements one column
    apart, the second as wide or one column narrower)."""
    if sw != 2 or tx < lanes:
        return False
    return len(rows) % 2 == 0 and all(
        rows[p] == rows[p + 1] and dst[p + 1] == dst[p] + 1 and cols[p] - cols[p + 1] in (0, 1)
        for p in range(0, len(rows), 2))


def _runs(tile: LaneTile, lanes: int) -> tuple[LaneRun, ...]:
    count_runs = _cdiv(tile.tx, lanes)
    runs = []
    for y in range(tile.ty):
        for v in range(tile.nv):
            for run in range(count_runs):
                count = min(lanes, tile.tx - run * lanes)
                operands = tuple(f"acc{y}_{run * lanes + i}_{v}" if i < count else "zero"
                                 for i in range(lanes))
                runs.append(LaneRun(y, v, run, count, operands, run == count_runs - 1,
                                    count < lanes, run * lanes, 2 * run * lanes, 2 * count))
    return tuple(runs)


def lane_sweep(name: str, prefix: str, reason: str, tile: LaneTile, lanes: int,
               layout: Layout, driver: Driver, bias: bool, transposed: bool, paired: bool,
               uneven: bool, tap_spans: tuple[int, ...] = (),
               column_taps: tuple[tuple[int, int, tuple[int, ...]], ...] = ()) -> LaneSweep:
    """The record of a lane sweep; ``tap_spans`` and ``column_taps``: what
    ``sweeps.tap_spans`` and ``sweeps.column_taps`` returned."""
    half = lanes // 2
    return LaneSweep(
        name=name, prefix=prefix, reason=reason, nv=tile.nv, ty=tile.ty, tx=tile.tx,
        layout=layout, driver=driver, bias=bias, transposed=transposed, paired=paired,
        uneven=uneven, tap_spans=tap_spans, column_taps=column_taps,
        pixels=tuple((y, x, tuple(f"acc{y}_{x}_{v}" for v in range(tile.nv)))
                     for y in range(tile.ty) for x in range(tile.tx)),
        runs=_runs(tile, lanes),
        buffered=tuple((y, x, v, f"acc{y}_{x}_{v}") for y in range(tile.ty)
                       for x in range(tile.tx) for v in range(tile.nv)),
        low=tuple(k for i in range(half) for k in (i, lanes + i)),
        high=tuple(k for i in range(half, lanes) for k in (i, lanes + i)),
        staged_runs=_cdiv(tile.tx, lanes), tile_broadcasts=tile.ty * tile.tx,
        tile_fmas=tile.nv * tile.ty * tile.tx)
