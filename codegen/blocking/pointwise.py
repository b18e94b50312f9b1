"""Pointwise layers (1x1 kernel, no padding, any stride and dilation): a matrix product per
sample over its ``P = HO*WO`` output pixels (``FWD_*``, ``GIN_*`` and ``GW_*`` tiles). A
register tile of ``MR`` rows x ``NRV`` vectors of the result sums, over the whole inner
dimension, ``MR`` rows of the left factor times an ``NR``-column panel of the right one,
packed contiguous and zero-padded to a whole panel. At a stride, the products read the input
pixels under the output's (every ``SH``-th row, every ``SW``-th column), gathered as they are
packed, and grad_input scatters its product into them, zeroing the rest of dV."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from derive.geometry import is_flipped
from derive.spec import LayerSpec

from .common import (
    LINE_BYTES,
    MIN_TASKS,
    PRODUCT_STEP_UNROLL,
    TILE_OVERHEAD,
    VECTOR_BYTES,
    Machine,
    _cdiv,
    grad_bias_planes,
    skewed,
)
from .defines import Defines
from .records import WIDE_VECTORS, GradBias, Helpers, ModulePlan, Product
from .shuffles import half_transpose_shuffles, transpose_shuffles

#: The most bytes a matrix product's column panel may take (L1 is 32 KB; a little more
#: is no slower, the prefetchers fetching the rest from L2).
PANEL_BYTES = 40 * 1024
#: A pointwise grad_weight wants at least this many tasks (column panel x row group).
GRAD_WEIGHT_TASKS = 16
#: The most bytes of G_s a grad_weight chunk of pixels may take: the chunk stays in L2 while
#: every column panel of the thread passes over it. 448 KB stays within the smallest L2 of the
#: CPUs measured here (Zen 3's 512 KB, with the thread's panel; Zen 4 has 1 MB, the Xeons
#: 2 MB). Unchunked, float64 S6 once read each sample's 392 KB of G_s from L3 once per panel;
#: later, with that code changed, the 192 KB chunks this limit first had cost S6 float64 up to
#: 16 % against one chunk (Zen 3, AVX2; docs/tiles.md).
CHUNK_BYTES = 448 * 1024
#: Besides the model's choice, ``codegen.tune`` times this many full-register tiles.
FULL_TILES = 2
#: A matrix product's tile choice (``tile=4x5``) and its suffixes (``tile=12x2w``,
#: ``tile=8x3t``): of the machine's widest vectors, transposed (``GemmTile``).
TILE_CHOICE, WIDE_SUFFIX, TRANSPOSED_SUFFIX = "tile=", "w", "t"
#: A last column panel's tile of at most this many sums computes several row panels at once,
#: of at most ``EDGE_ROWS`` rows in all: each row reads through a pointer of its own, and
#: x86-64 has 16 general registers (``_edge_tile``).
EDGE_SUMS, EDGE_ROWS = 4, 12
#: Bytes per cycle the left factor of a matrix product streams in at (from L2).
L2_BYTES_PER_CYCLE = 16


@dataclass(frozen=True)
class GemmTile:
    """A matrix product's register tile: MR rows x NRV vectors of VL columns, or, ``wide``,
    of LANES columns (the machine's widest vectors: 512 bits with AVX-512).

    ``transposed`` (forward and grad_input at stride 1): MR columns (pixels) x NRV vectors of
    VL result rows, the pixels' values broadcast from the sample where it lies, unpacked
    (``transposed_candidates``)."""

    mr: int
    nrv: int
    wide: bool = False
    transposed: bool = False


def _gemm_costs(vl: int, dtype_bytes: int, rows: int, cols: int, depth: int, machine: Machine,
                wide: bool = False, panels_in_l1: bool = True) -> list[GemmTile]:
    """Every tile that fits the machine's registers, by modelled time for a ``rows x cols``
    result with inner dimension ``depth``, least first. Per step a tile takes
    ``max(multiply-adds, loads) / 2`` cycles (MR scalars and NRV vectors loaded); edge tiles
    are charged in full (their panels are zero-padded); the left factor is read again for
    every column panel, at ``L2_BYTES_PER_CYCLE``; a column panel must fit in
    ``PANEL_BYTES`` (it is meant to stay in L1) where one of two vectors does. A deeper
    product's panels outgrow L1 at any width, and its tiles of one vector, a scalar loaded
    per multiply-add, took 1.18-1.40 times as long as 4 x 5 (the grad_input of a
    512x28x28 -> 1024 layer at stride 2, 1024 deep; docs/tiles.md). ``panels_in_l1`` false
    drops that rule, for products whose left factor streams from beyond L2 (Winograd's on
    many channels, ``winograd=2s``)."""
    limited = panels_in_l1 and depth * 2 * vl * dtype_bytes <= PANEL_BYTES
    ranked = []
    for mr in range(1, 17):
        for nrv in range(1, 9):
            acc, nr = mr * nrv, nrv * vl
            if acc > machine.accumulators or acc + nrv + 1 > machine.registers:
                continue
            if limited and depth * nr * dtype_bytes > PANEL_BYTES and nrv > 1:
                continue
            tiles = _cdiv(rows, mr) * _cdiv(cols, nr)
            per_step = max(acc, mr + nrv) / 2 + mr * dtype_bytes / L2_BYTES_PER_CYCLE
            cost = tiles * (depth * per_step + TILE_OVERHEAD + acc)
            ranked.append(((cost, -acc), GemmTile(mr, nrv, wide)))
    return [tile for _, tile in sorted(ranked, key=lambda item: item[0])]


def _gemm_tile(vl: int, dtype_bytes: int, rows: int, cols: int, depth: int, machine: Machine
               ) -> GemmTile:
    """The tile of least modelled time (``_gemm_costs``)."""
    return _gemm_costs(vl, dtype_bytes, rows, cols, depth, machine)[0]


def gemm_candidates(vl: int, dtype_bytes: int, rows: int, cols: int, depth: int,
                    machine: Machine) -> tuple[GemmTile, ...]:
    """The tiles ``codegen.tune`` times: the model's choice, then the ``FULL_TILES`` best
    modelled of those whose sums fill the registers the machine gives them. The model's
    costs do not rank them right on every CPU: on a Zen 3 (AVX2) its choice for S6, 2 rows x
    5 vectors, took 1.15 times as long as the full 6 x 2 and 4 x 3 tiles.

    Where the machine's vectors are wider than VL (AVX-512), also the ``FULL_TILES`` best
    such tiles of the widest vectors: a CPU with two full-width 512-bit multiply-add units
    (Intel's Xeons) reaches at most half its peak on 256-bit vectors. One that splits a
    512-bit multiply-add in two (Zen 4, ``Machine.full_width`` false) gains nothing from
    them, and is not offered them: in two S6 tunings there on 2026-11-27, they were kept
    once, for float64 grad_weight, 0.7 % ahead of a 256-bit tile (docs/tiles.md)."""
    ranked = _gemm_costs(vl, dtype_bytes, rows, cols, depth, machine)
    full = [t for t in ranked if t.mr * t.nrv == machine.accumulators and t != ranked[0]]
    found = [ranked[0], *full[:FULL_TILES]]
    if machine.wide_tiles:
        wide = _gemm_costs(machine.lane_bytes // dtype_bytes, dtype_bytes, rows, cols, depth,
                           machine, wide=True)
        found += [t for t in wide if t.mr * t.nrv == machine.accumulators][:FULL_TILES]
    return tuple(found)


def transposed_candidates(vl: int, rows: int, machine: Machine) -> tuple[GemmTile, ...]:
    """The transposed tiles ``codegen.tune`` times for forward or grad_input at stride 1,
    ``rows`` result rows: the result's rows in vectors (the packed weights), its pixels
    broadcast from the sample in place, MR a multiple of VL so that the tile is stored as
    squares transposed in registers. The sample is not packed, and no panel is padded: S6's
    196 pixels and 256 rows cut into whole tiles but for 4 pixels. On a Zen 4 an 8-pixel x
    3-vector tile took S6's float32 forward and grad_input 0.97-1.00 of the time of the
    packed 4 x 5, the same bits (docs/tiles.md). Those whose sums fill the machine's
    registers, ``FULL_TILES`` of them, the fewest loads per step first; none where the rows
    do not cut into whole vectors. Tiles of VL / 2 pixels (``tile=4x3t``) are not timed: with
    AVX2's float32 they took S6's grad_input 0.95-0.97 of the packed 4 x 3's time where K
    starts on a vector and 1.10-1.15 where it starts 16 bytes off, as NumPy's arrays may
    (docs/tiles.md)."""
    if rows % vl:
        return ()
    found = sorted((GemmTile(mr, machine.accumulators // mr, transposed=True)
                    for mr in range(vl, machine.accumulators + 1, vl)
                    if machine.accumulators % mr == 0
                    and mr + machine.accumulators // mr <= machine.accumulators),
                   key=lambda t: t.mr + t.nrv)
    return tuple(found[:FULL_TILES])


def transposed_applies(spec: LayerSpec, name: str, rows: int, vl: int) -> bool:
    """Whether pass ``name`` of ``spec`` may take a transposed tile: forward or grad_input at
    stride 1, its ``rows`` result rows whole vectors of ``vl``."""
    return name != "grad_weight" and spec.stride == (1, 1) and rows % vl == 0


#: (prefix, pass, what it computes, tile mode, left factor's row and step strides, inner
#: dimension, left factor, across, along, right factor, result rows, result)
PRODUCTS = (
    ("FWD", "forward", "forward: Z_s = K . V_s", "store", "1", "FWD_MR", "C", "K", "C", "1",
     "V", "O", "Z"),
    ("GIN", "grad_input", "grad_input: dV_s = K^T . G_s", "store", "1", "GIN_MR", "O", "K^T",
     "1", "C", "G", "C", "dV"),
    ("GW", "grad_weight", "grad_weight: dK += G_s . V_s^T", "add", "P", "1", "P", "", "", "",
     "", "", ""),
)


def _define_tile(d: Defines, prefix: str, what: str, tile: GemmTile, vl: int, rows: int,
                 cols: int, depth: int, dtype_bytes: int) -> None:
    """The tile's constants; ``vl``: the reals per vector of its columns (VL, or LANES when
    the tile is wide)."""
    d.const(f"{prefix}_MR", tile.mr, f"{what}: tile rows")
    d.const(f"{prefix}_NRV", tile.nrv, f"{what}: tile vectors of columns")
    d.const(f"{prefix}_NR", tile.nrv * vl,
            f"{what}: tile columns ({prefix}_NRV * {'LANES' if tile.wide else 'VL'})")
    d.const(f"{prefix}_ROW_PANELS", _cdiv(rows, tile.mr),
            f"{what}: panels of {prefix}_MR rows (the last zero-padded)")
    col_panels = _cdiv(cols, tile.nrv * vl)
    d.const(f"{prefix}_COL_PANELS", col_panels,
            f"{what}: panels of {prefix}_NR columns (the last zero-padded)")
    if prefix != "GW":
        d.const(f"{prefix}_PANEL", skewed(depth * tile.nrv * vl, dtype_bytes),
                f"{what}: reals from one packed column panel to the next ({depth} x "
                f"{prefix}_NR and one or two cache lines, skewed)")
    if prefix == "GW":
        row_panels = _cdiv(rows, tile.mr)
        groups = min(row_panels, _cdiv(GRAD_WEIGHT_TASKS, col_panels))
        d.const("GW_ROW_GROUPS", groups,
                "grad_weight tasks per column panel (groups of its row panels)")
        d.const("GW_TASKS", col_panels * groups,
                "grad_weight tasks (GW_COL_PANELS * GW_ROW_GROUPS)")
        chunk = chunk_pixels(rows, depth, dtype_bytes)
        d.const("GW_KC", chunk, "grad_weight: pixels per "
                f"chunk (the chunk's rows of G_s: at most {CHUNK_BYTES // 1024} KB)")
        d.const("GW_CHUNKS", _cdiv(depth, chunk), "grad_weight: chunks per sample (a task's "
                "units of work: one chunk of one sample each)")
        d.const("GW_LINE", LINE_BYTES // dtype_bytes, "grad_weight: reals per cache line (the "
                "prefetches of the inputs and of dK)")


def edge_vectors(cols: int, nrv: int, reals: int) -> int:
    """The vectors of the narrower tile that computes the last column panel, or 0 when the
    full tile serves it: ``cols`` columns in panels of ``nrv`` vectors of ``reals`` columns.
    Without it, the last panel is computed whole over its zero padding: S6's 196 pixels in
    16-column panels (float64 with AVX-512) computed 208, and a one-vector tile for the last
    four columns took S6's forward and grad_input 0.96 of the time (docs/tiles.md)."""
    left = cols % (nrv * reals)
    needed = _cdiv(left, reals)
    return needed if 0 < needed < nrv else 0


#: A sample's panels may compute this fraction more columns than its P pixels before forward
#: and grad_input take the batch's columns as one product (``batch_columns``).
BATCH_COLUMNS_WASTE = 0.05


def sample_columns(cols: int, nrv: int, reals: int, edge_nrv: int) -> int:
    """The columns a sample's panels compute for its ``cols``: panels of ``nrv`` vectors of
    ``reals``, the last one ``edge_nrv`` vectors (0: whole)."""
    last = cols % (nrv * reals)
    return cols - last + (0 if not last else (edge_nrv or nrv) * reals)


def batch_columns(cols: int, nrv: int, reals: int, edge_nrv: int) -> bool:
    """Whether forward or grad_input, ``cols`` columns a sample, may also take the batch's
    columns as one product: where a sample's panels compute more than
    ``BATCH_COLUMNS_WASTE`` of padding (``sample_columns``). The call then takes the form that
    pads less for its batch. A 512x7x7 -> 2048 layer's 49 pixels in 16-column panels computed
    56, and its forward and grad_input took 1.14 and 1.07 of PyTorch's time (docs/tiles.md)."""
    return sample_columns(cols, nrv, reals, edge_nrv) > cols * (1 + BATCH_COLUMNS_WASTE)


#: Read in place, a row panel of K^T (grad_input's left factor, a column of K) takes one cache
#: line per step: it stays in L1 up to this many bytes of lines.
IN_PLACE_LINES_BYTES = 32 * 1024


def in_place_pays(along: str, depth: int) -> bool:
    """Whether a small batch's forward or grad_input reads the weights in place (``along``:
    their stride per step in K, C text; ``depth``: the steps): always where the steps are
    contiguous (forward), else while a row panel's ``depth`` lines stay within
    ``IN_PLACE_LINES_BYTES``. grad_input of ``512x7x7 -> 2048`` (2048 steps of lines 2 KB
    apart) took 0.78-0.86 of the time at batches 1-8 with the weights packed; S6's and
    ``1024x14x14 -> 256``'s (256 steps) took 1.00-1.06 and 0.99-1.15 (docs/tiles.md)."""
    return along == "1" or depth * LINE_BYTES <= IN_PLACE_LINES_BYTES


def split_columns(rows: int, cols: int) -> bool:
    """Whether a small batch's tasks of forward or grad_input divide a sample's column panels
    rather than its row panels: a ``rows x cols`` result, whose right factor (the sample,
    ``depth x cols``) is larger than its left (the weights, ``rows x depth``). Each task of a
    row group packs the whole sample, each of a column group reads all the weights: the
    smaller of the two is the one read again."""
    return cols > rows


def chunk_pixels(rows: int, depth: int, dtype_bytes: int) -> int:
    """grad_weight's pixels per chunk (``GW_KC``): ``depth`` pixels of ``rows`` rows of G_s cut
    into the fewest equal chunks of at most ``CHUNK_BYTES``."""
    return _cdiv(depth, _cdiv(rows * depth * dtype_bytes, CHUNK_BYTES))


def modelled_shapes(spec: LayerSpec, dtype_bytes: int) -> dict[str, tuple[int, int, int]]:
    """``pointwise_shapes`` as the tile model sees them: grad_weight's tiles sum one chunk of
    pixels at a time, so its column panel holds ``chunk_pixels`` steps, not all the sample's.
    Modelled over all of them, a layer of 3136 pixels could fit no panel of two vectors in
    ``PANEL_BYTES`` and took a tile of 16 rows x 1 vector."""
    shapes = pointwise_shapes(spec)
    rows, cols, depth = shapes["GW"]
    return {**shapes, "GW": (rows, cols, chunk_pixels(rows, depth, dtype_bytes))}


def pointwise_shapes(spec: LayerSpec) -> dict[str, tuple[int, int, int]]:
    """Each product's result rows, result columns and inner dimension, by prefix."""
    c = spec.input[0]
    o, p = spec.kernel[0], spec.out_h * spec.out_w
    return {"FWD": (o, p, c), "GIN": (c, p, o), "GW": (o, c, p)}


def pointwise_candidates(spec: LayerSpec, vl: int, dtype_bytes: int, machine: Machine
                         ) -> dict[str, tuple[GemmTile, ...]]:
    """``gemm_candidates`` of each pass, by pass name."""
    shapes = modelled_shapes(spec, dtype_bytes)
    return {name: gemm_candidates(vl, dtype_bytes, *shapes[prefix], machine)
            + (transposed_candidates(vl, shapes[prefix][0], machine)
               if transposed_applies(spec, name, shapes[prefix][0], vl) else ())
            for prefix, name, *_ in PRODUCTS}


def window_shape(spec: LayerSpec) -> tuple[int, int, int]:
    """grad_weight of a layer of any kernel as a matrix product: its result rows (O), columns
    (C*KH*KW, dK's (input channel, tap) pairs) and inner dimension (the output's pixels)."""
    c, kh, kw = spec.input[0], spec.kernel[2], spec.kernel[3]
    return spec.kernel[0], c * kh * kw, spec.out_h * spec.out_w


def window_grad_weight_candidates(spec: LayerSpec, vl: int, dtype_bytes: int, machine: Machine
                                  ) -> tuple[GemmTile, ...]:
    """The register tiles ``codegen.tune`` times for ``window_grad_weight``
    (``gemm_candidates`` of its product, one chunk of pixels deep)."""
    rows, cols, depth = window_shape(spec)
    return gemm_candidates(vl, dtype_bytes, rows, cols, chunk_pixels(rows, depth, dtype_bytes),
                           machine)


def window_grad_weight(spec: LayerSpec, vl: int, dtype_bytes: int, machine: Machine,
                       tile: GemmTile, d: Defines) -> Product:
    """grad_weight of a layer of any kernel, stride, dilation and padding as pointwise
    grad_weight's matrix product, ``dK (O x C*KH*KW) += G_s (O x P) . X_s^T``: column
    ``c*KH*KW + i*KW + j`` of ``X_s^T`` holds the input pixels that the tap applying kernel
    row i and column j of channel c reads under the output's pixels, zero where they fall in
    the padding, gathered as the column panels are packed (``gather_window``). A tile's sums
    are then as deep as a chunk of pixels, against the lane and column tiles' output rows;
    for a 512-channel 3x3 layer on 14x14 those took 1.17-1.44 of PyTorch's time
    (docs/tiles.md)."""
    rows, cols, depth = window_shape(spec)
    reals = machine.lane_bytes // dtype_bytes if tile.wide else vl
    d.const("P", depth, "output pixels per channel plane (HO*WO): grad_weight's inner dimension")
    d.const("GW_COLUMNS", cols, "grad_weight: columns of its product, dK's (input channel, tap) "
            "pairs (C*KH*KW)")
    what = "grad_weight: dK += G_s . X_s^T"
    _define_tile(d, "GW", what, tile, reals, rows, cols, depth, dtype_bytes)
    return Product(
        name="grad_weight", prefix="GW", reason="a matrix product over the output's pixels, "
        "its columns the input pixels under each tap", mr=tile.mr, nrv=tile.nrv,
        a_rows=_accumulators(tile.mr, tile.nrv),
        mode="add", row="P", step="1", depth="P", left="", across="", along="", right="",
        rows="", result="", bias=False, accumulates=True, tile_fmas=tile.mr * tile.nrv,
        unroll=PRODUCT_STEP_UNROLL, windows=True, columns="GW_COLUMNS",
        flip=is_flipped(spec.mode),
        **(WIDE_VECTORS if tile.wide else {}))


def _tile_transposes(transposed: list[Product], vl: int, dtype_bytes: int) -> dict:
    """The ``Helpers`` fields the ``transposed`` tiles store themselves through: squares of
    VL pixels (``transpose_vectors``) and halves of one (``transpose_halves``)."""
    halves = any(vl // 2 in (p.mr, p.edge_pixels) for p in transposed)
    return {"transpose_vectors": transpose_shuffles(vl, dtype_bytes)
            if any(p.mr % vl == 0 for p in transposed) else None,
            "transpose_halves": half_transpose_shuffles(vl, dtype_bytes) if halves else None}


def _transposed(spec: LayerSpec, name: str, prefix: str, what: str, tile: GemmTile, vl: int,
                shape: tuple[int, int, int], operands: tuple[str, ...], d: Defines) -> Product:
    """forward or grad_input by a transposed tile (``GemmTile.transposed``): ``shape`` the
    product's result rows, columns (P) and inner dimension; ``operands`` its inner dimension,
    left factor, the weights' strides per row and per step in K, its right factor, its rows
    and its result (C text, as in ``PRODUCTS``)."""
    rows, cols, depth = shape
    if not transposed_applies(spec, name, rows, vl):
        raise ValueError(f"choices: {name} {tile_choice(tile)}: a transposed tile is for forward "
                         f"and grad_input at stride 1, their result rows whole vectors of {vl}; "
                         f"this layer has stride {spec.stride} and {rows} result rows")
    if (tile.mr % vl and tile.mr != vl // 2) or tile.mr > cols:
        raise ValueError(f"choices: {name} {tile_choice(tile)} needs its {tile.mr} pixels to be "
                         f"whole squares of {vl} or half of one (it is stored transposed in "
                         f"registers) and at most the layer's {cols} pixels")
    depth_text, left, across, along, right, result_rows, result = operands
    mr = tile.nrv * vl
    d.const(f"{prefix}_MR", mr, f"{what}: tile rows ({prefix}_MRV vectors of VL)")
    d.const(f"{prefix}_MRV", tile.nrv, f"{what}: tile vectors of rows")
    d.const(f"{prefix}_NR", tile.mr, f"{what}: tile columns (pixels, read in place)")
    d.const(f"{prefix}_ROW_PANELS", _cdiv(rows, mr), f"{what}: panels of {prefix}_MR rows")
    edge_rows, edge_pixels = rows % mr // vl, cols % tile.mr
    if edge_rows:
        d.const(f"{prefix}_EDGE_MR", edge_rows * vl, f"{what}: rows of the last row panel's "
                f"narrower tile ({edge_rows} vector{'s' if edge_rows > 1 else ''})")
    if edge_pixels:
        d.const(f"{prefix}_EDGE_NR", edge_pixels, f"{what}: the last pixels' narrower tile")
    bias = name == "forward" and spec.bias
    # grad_input's left factor, K^T, holds a step's rows contiguous in K: read in place
    in_place = across == "1"
    return Product(
        name=name, prefix=prefix, reason="a 1x1 kernel without padding: a matrix product, "
        "its rows in vectors and its pixels read in place", mr=tile.mr, nrv=tile.nrv,
        a_rows=_accumulators(tile.mr, tile.nrv),
        mode="bias" if bias else "store", row="1",
        step=along if in_place else f"{prefix}_MR", depth=depth_text,
        left=left, across=across, along=along, right=right, rows=result_rows, result=result,
        bias=bias,
        accumulates=False, tile_fmas=tile.mr * tile.nrv, unroll=PRODUCT_STEP_UNROLL,
        edge_nrv=edge_rows, edge_pixels=edge_pixels, in_place=in_place, transposed=True,
        vl=vl, variant="pointwise_transposed")


def _accumulators(rows: int, nrv: int) -> tuple[tuple[str, ...], ...]:
    """A product tile's sums by row: ``acc<row>_<vector>``."""
    return tuple(tuple(f"acc{r}_{v}" for v in range(nrv)) for r in range(rows))


def _edge_tile(d: Defines, prefix: str, what: str, tile: GemmTile, edge_nrv: int, reals: int,
               machine: Machine) -> int:
    """The ``#define``s of the narrower tile of the last column panel (``edge_nrv`` vectors of
    ``reals`` columns, 0: none), and how many row panels it computes at once. A panel's tile
    of at most ``EDGE_SUMS`` sums keeps too few chains of multiply-adds in flight for their
    latency: it takes as many panels as the accumulators hold, up to ``EDGE_ROWS`` rows. With
    AVX2 code, S6's float32 `4x3` spent 7.6 % of its forward there, and 3 panels at once took
    0.972 of the time (forward) and 0.973 (grad_input); `6x2`'s 6 sums in 2 panels, 1.006, and
    float64 `6x4`'s in 4 on a Zen 4, 0.999 and 1.008, gained nothing (docs/tiles.md)."""
    if not edge_nrv:
        return 1
    d.const(f"{prefix}_EDGE_NR", edge_nrv * reals, f"{what}: columns of the last panel's "
            f"narrower tile ({edge_nrv} vector{'s' if edge_nrv > 1 else ''})")
    sums = tile.mr * edge_nrv
    panels = min(machine.accumulators // sums, EDGE_ROWS // tile.mr) if sums <= EDGE_SUMS else 1
    if panels > 1:
        d.const(f"{prefix}_EDGE_PANELS", panels, f"{what}: row panels the last column "
                f"panel's tile computes at once ({panels * tile.mr * edge_nrv} sums)")
    return panels


def tile_choice(tile: GemmTile) -> str:
    """A matrix product's tile as a choice: ``tile=4x5``, ``tile=12x2w``, ``tile=8x3t``."""
    suffix = WIDE_SUFFIX if tile.wide else TRANSPOSED_SUFFIX if tile.transposed else ""
    return f"{TILE_CHOICE}{tile.mr}x{tile.nrv}{suffix}"


def pointwise_plan(spec: LayerSpec, vl: int, dtype_bytes: int, ctype_index: str,
                   machine: Machine, tiles: Mapping[str, GemmTile] | None = None
                   ) -> ModulePlan:
    """The plans and blocking constants of a pointwise layer's matrix products; ``tiles``
    (pass name -> tile) overrides the model's choice pass by pass (``codegen.tune``)."""
    p = spec.out_h * spec.out_w
    strided = spec.stride != (1, 1)
    lanes = machine.lane_bytes // dtype_bytes
    d = Defines()
    d.const("VL", vl, f"reals per vector ({VECTOR_BYTES} bytes)")
    d.const("LINE_BYTES", LINE_BYTES, "bytes per cache line: where each block of scratch starts")
    d.const("P", p, "output pixels per channel plane (HO*WO): the products' column count"
            + (", one input pixel in SH x SW" if strided else ""))
    shapes, modelled = pointwise_shapes(spec), modelled_shapes(spec, dtype_bytes)
    passes = []
    for (prefix, name, what, mode, row, step, depth, left, across, along, right, rows,
         result) in PRODUCTS:
        tile = (tiles or {}).get(name) or _gemm_tile(vl, dtype_bytes, *modelled[prefix], machine)
        if tile.transposed:
            passes.append(_transposed(spec, name, prefix, what, tile, vl, shapes[prefix],
                                      (depth, left, across, along, right, rows, result),
                                      d))
            continue
        reals = lanes if tile.wide else vl
        _define_tile(d, prefix, what, tile, reals, *shapes[prefix], dtype_bytes)
        accumulates = name == "grad_weight"
        edge_nrv = 0 if accumulates else edge_vectors(p, tile.nrv, reals)
        split = "columns" if not accumulates and split_columns(*shapes[prefix][:2]) else "rows"
        # at a stride the columns are gathered or scattered by sample; cut by columns, a
        # small batch's tasks are a sample's panels
        batch = (not accumulates and not strided and split == "rows"
                 and batch_columns(p, tile.nrv, reals, edge_nrv))
        if batch:
            d.const(f"{prefix}_SAMPLE_COLUMNS", sample_columns(p, tile.nrv, reals, edge_nrv),
                    f"{what}: columns a sample's own panels compute (P and their padding); "
                    "the driver compares their padding with the batch's")
        edge_panels = _edge_tile(d, prefix, what, tile, edge_nrv, reals, machine)
        bias = name == "forward" and spec.bias
        scatters = strided and name == "grad_input"
        passes.append(Product(
            name=name, prefix=prefix, reason="a 1x1 kernel without padding: a matrix product"
            + (" over the input pixels under the output's" if strided else ""), mr=tile.mr,
            nrv=tile.nrv,
            a_rows=_accumulators(tile.mr * edge_panels, tile.nrv),
            mode="bias" if bias else mode, row=row, step=step, depth=depth, left=left,
            across=across, along=along, right=right, rows=rows, result=result, bias=bias,
            accumulates=accumulates, tile_fmas=tile.mr * tile.nrv,
            unroll=PRODUCT_STEP_UNROLL, edge_nrv=edge_nrv, edge_panels=edge_panels,
            split=split, gathers=strided and name != "grad_input", scatters=scatters,
            batch_columns=batch,
            in_place=accumulates or in_place_pays(along, shapes[prefix][2]),
            tile_out=(f"block + (int64_t)(first - first_row * {prefix}_MR) * {prefix}_NR, "
                      f"{prefix}_NR" if scatters else "dst + (int64_t)first * P + j0, P"),
            **(WIDE_VECTORS if tile.wide else {})))
    d.const("MIN_TASKS", MIN_TASKS, "forward and grad_input tasks wanted per call")
    transposed = [p for p in passes if isinstance(p, Product) and p.transposed]
    if spec.bias:
        passes.append(GradBias(grad_bias_planes(lanes)))
    # grad_weight transposes the input's rows into its panels in registers, a square of the
    # widest vectors at a time
    d.const("LANES", lanes, f"reals per side of a block transposed in registers "
            f"({machine.lane_bytes} bytes, {machine.isa})")
    steps, shuffles, columns = transpose_shuffles(lanes, dtype_bytes)
    sh, sw = spec.stride
    helpers = Helpers(loops=True, pointwise=True, strided=strided, cells_wide=sw > 1,
                      batch_columns=any(isinstance(p, Product) and p.batch_columns
                                        for p in passes),
                      cells_tall=sh > 1, in_register=True,
                      wide_in_register=any(p.wide for p in passes if isinstance(p, Product)),
                      lanes=True, transpose=True, pack_transposed=True, index_type=ctype_index,
                      transpose_steps=steps, transpose_shuffles=shuffles,
                      transpose_columns=columns, shuffles=bool(transposed),
                      **_tile_transposes(transposed, vl, dtype_bytes),
                      waits=any(isinstance(p, Product) and p.accumulates for p in passes))
    return ModulePlan(helpers, tuple(passes), tuple(d.constants), tuple(d.tables))
