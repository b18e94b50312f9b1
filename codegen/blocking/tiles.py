"""The register tiles of the ``loops`` kernels and the cost models that pick them."""

from __future__ import annotations

from dataclasses import dataclass, replace

from .common import (
    CHANNEL_OVERHEAD,
    ROW_OVERHEAD,
    TILE_OVERHEAD,
    VECTOR_LOAD_SLOTS,
    Geometry,
    Machine,
    _cdiv,
    _divisors,
)


@dataclass(frozen=True)
class SweepTile:
    """A correlation sweep's register tile: OB channels x TY rows x TXV vectors; with
    ``reuse``, each source row loaded once per column tap feeds every row tap reaching it.
    Its vectors are of VL reals, or, ``wide``, of LANES (the machine's widest)."""

    ob: int
    ty: int
    txv: int
    reuse: bool = False
    wide: bool = False


def _source_rows(ty: int, row_step: int, tap_rows: tuple[int, ...]) -> int:
    """Distinct source rows a tile of ``ty`` output rows reads for one column tap."""
    return len({y * row_step + r for y in range(ty) for r in tap_rows})


def _sweep_costs(vl: int, out_channels: int, in_channels: int,
                 phases: list[tuple[int, int, int]], machine: Machine,
                 tap_rows: tuple[int, ...] = (), row_step: int = 1, wide: bool = False
                 ) -> list[SweepTile]:
    """Every tile that fits the machine's registers, by modelled time over ``phases`` of
    ``(rows, columns, taps)``, least first (ties: more sums first, then in the order the
    loops below meet them).

    Per tap and channel a tile takes ``max(multiply-adds, load slots) / 2`` cycles (two of
    each per cycle; ``VECTOR_LOAD_SLOTS`` per vector load, one per weight); per tile,
    ``TILE_OVERHEAD`` plus ``ROW_OVERHEAD`` per row and channel; partial tiles at the edges
    are charged in full.

    ``tap_rows`` (one phase whose taps are a grid of row taps x column taps) also offers
    row reuse: the source rows, ``row_step`` apart from one output row to the next and
    ``tap_rows`` below the top row of taps, are loaded once per column tap and multiplied
    by every row tap's weights (``OB`` per row tap, held in registers).

    ``wide``: ``vl`` is the reals per vector of the machine's widest, and the tiles say so.
    """
    rows = max(r for r, _, _ in phases)
    vectors = max(_cdiv(x, vl) for _, x, _ in phases)
    modes = [False, True] if tap_rows and len(phases) == 1 and len(tap_rows) > 1 else [False]
    ranked = []
    for reuse in modes:
        row_taps = len(tap_rows) if reuse else 1
        for ob in _divisors(out_channels, 16):
            for ty in range(1, min(rows, 8) + 1):
                loaded_rows = _source_rows(ty, row_step, tap_rows) if reuse else ty
                for txv in range(1, min(vectors, 8) + 1):
                    acc = ob * ty * txv
                    if acc > machine.accumulators \
                            or acc + ob * row_taps + 1 > machine.registers:
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
                    ranked.append(((cost, -acc, reuse), SweepTile(ob, ty, txv, reuse, wide)))
    assert ranked
    return [tile for _, tile in sorted(ranked, key=lambda item: item[0])]


#: ``codegen.tune`` times this many of a column sweep's best modelled tiles. The model ranks
#: many alike: on S3's forward (Zen 4, float32) four tied first, and the third of them, one
#: channel x 4 rows x 4 vectors reusing rows, took 0.94 of the time of the first, 2 x 2 x 4
#: (docs/tiles.md).
SWEEP_CANDIDATES = 4
#: Where the machine's vectors are wider than VL (AVX-512), ``codegen.tune`` also times this
#: many tiles of its widest vectors (``wide``).
WIDE_SWEEP_CANDIDATES = 4


def sweep_tile_candidates(vl: int, out_channels: int, in_channels: int,
                          phases: list[tuple[int, int, int]], machine: Machine,
                          tap_rows: tuple[int, ...] = (), row_step: int = 1,
                          lanes: int = 0) -> tuple[SweepTile, ...]:
    """The column tiles ``codegen.tune`` times: the ``SWEEP_CANDIDATES`` best modelled, the
    model's choice first; with ``lanes`` (reals per vector of the machine's widest), where
    the machine offers such tiles, then ``WIDE_SWEEP_CANDIDATES`` of them: each of the first ones'
    twin (the same channels, rows and columns in half as many vectors) where
    its columns fill whole wide vectors, then the best modelled wide tiles.

    A CPU with two full-width 512-bit multiply-add units (Intel's Xeons) reaches at most
    half its peak on vectors of VL (256 bits); one that splits a 512-bit multiply-add in two
    (Zen 4) gains nothing from wider ones, and is not offered them
    (``Machine.wide_tiles``)."""
    found = _sweep_costs(vl, out_channels, in_channels, phases, machine, tap_rows,
                         row_step)[:SWEEP_CANDIDATES]
    if not lanes or not machine.wide_tiles:
        return tuple(found)
    per_wide = lanes // vl
    twins = [SweepTile(t.ob, t.ty, t.txv // per_wide, t.reuse, True)
             for t in found if t.txv % per_wide == 0]
    modelled = _sweep_costs(lanes, out_channels, in_channels, phases, machine, tap_rows,
                            row_step, wide=True)
    wide = list(dict.fromkeys(twins + modelled))[:WIDE_SWEEP_CANDIDATES]
    return tuple(found + wide)


@dataclass(frozen=True)
class LaneTile:
    """A channels-in-lanes tile: NV vectors of channels x TY rows x TX columns."""

    nv: int
    ty: int
    tx: int


def _lane_tile(lanes: int, out_channels: int, in_channels: int,
               phases: list[tuple[int, int, int]], machine: Machine,
               tile_rows: int | None = None) -> LaneTile:
    """The channels-in-lanes tile of least modelled time over ``phases`` of ``(rows,
    columns, taps)``. Per tap and input channel a tile takes ``max(multiply-adds,
    loads / 2)`` cycles (one vector multiply-add per cycle; ``NV`` vector loads and
    ``TY*TX`` broadcasts, two per cycle); partial tiles at the edges are charged in full,
    and so is storing the tile, element by element. ``tile_rows``: only tiles of that many
    rows."""
    rows = max(r for r, _, _ in phases)
    cols = max(x for _, x, _ in phases)
    best = None
    for nv in _divisors(out_channels // lanes, 4):
        for ty in range(1, min(rows, 8) + 1):
            if tile_rows is not None and ty != tile_rows:
                continue
            for tx in range(1, min(cols, machine.lane_accumulators) + 1):
                acc = nv * ty * tx
                if acc > machine.lane_accumulators:
                    continue
                per_tap = max(acc / machine.lane_fmas, (nv + ty * tx) / 2)
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


def lane_tile_candidates(lanes: int, out_channels: int, in_channels: int,
                         phases: list[tuple[int, int, int]], machine: Machine
                         ) -> tuple[LaneTile, ...]:
    """The lane tiles ``codegen.tune`` times, the model's choice first: the least modelled
    time at either multiply-add rate (``Machine.lane_fmas`` and the other), and at each the
    least of the tiles of two rows. The model charges the tiles' loads but not where they
    come from: two output rows read four rows of a 3x3 layer's input where one reads three,
    and many tiles tie. On a Zen 3 (AVX2), S5's float32 forward took 1.13-1.21 times as long
    with the model's 1 x 1 x 8 as with 1 x 2 x 4, which it ranks the same; once
    the forward read its bias where it stores a tile (1 x 1 x 8's sums had spilled), 1 x 1 x 8
    took 0.85 of 1 x 2 x 4's time (docs/tiles.md)."""
    found: list[LaneTile] = []
    for fmas in (machine.lane_fmas, 3 - machine.lane_fmas):
        rate = machine if fmas == machine.lane_fmas else replace(machine, lane_fmas=fmas)
        for tile_rows in (None, 2):
            if tile_rows is not None and max(r for r, _, _ in phases) < tile_rows:
                continue
            tile = _lane_tile(lanes, out_channels, in_channels, phases, rate, tile_rows)
            if tile not in found:
                found.append(tile)
    return tuple(found)


@dataclass(frozen=True)
class LaneGradWeightTile:
    """grad_weight's channels-in-lanes tile: NV vectors of output channels x CB input
    channels x TT taps."""

    nv: int
    cb: int
    tt: int


def _lane_grad_weight_tile(g: Geometry, lanes: int, tap_blocks: list[int], machine: Machine
                           ) -> LaneGradWeightTile:
    taps = g.kh * g.kw
    pixels = g.ho * g.wo
    best = None
    for nv in _divisors(g.o // lanes, 4):
        for cb in _divisors(g.c, 16):
            for tt in tap_blocks:
                acc = nv * cb * tt
                if acc > machine.lane_accumulators:
                    continue
                tiles = g.o // (nv * lanes) * (g.c // cb) * (taps // tt)
                per_pixel = max(acc / machine.lane_fmas, (nv + cb * tt) / 2)
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


def _grad_weight_tile(g: Geometry, vl: int, tap_blocks: list[int], machine: Machine
                      ) -> GradWeightTile:
    taps = g.kh * g.kw
    vectors = g.ho * _cdiv(g.wo, vl)
    best = None
    for ob in _divisors(g.o, 16):
        for cb in _divisors(g.c, 16):
            for tt in tap_blocks:
                acc = ob * cb * tt
                if acc > machine.accumulators or acc + ob + 1 > machine.registers:
                    continue
                tiles = (g.o // ob) * (g.c // cb) * (taps // tt)
                per_vector = max(acc, ob + cb * tt) / 2
                cost = tiles * (vectors * per_vector + TILE_OVERHEAD + 4 * acc)
                key = (cost, -acc)
                if best is None or key < best[0]:
                    best = (key, GradWeightTile(ob, cb, tt))
    assert best is not None
    return best[1]
