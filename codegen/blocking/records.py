"""The plan records: what the OpenMP templates print, one frozen record per pass and variant.

Every record names its ``variant`` (the template ``templates/openmp/<variant>.c.jinja`` that
prints it) and ``reason``, one line on why it was chosen. Everything a template needs is a
field: tile sizes, the C expressions of the pass's layout, and the per-register work
(accumulator names, which loads feed which multiply-adds, shuffle indices, store runs),
computed once by the module that owns the decision.
"""

from __future__ import annotations

from dataclasses import dataclass

from ..ir import Constant, Table

#: A multiply-add ``acc += factor * v``: (accumulator, factor), both C names.
Fma = tuple[str, str]


@dataclass(frozen=True)
class Layout:
    """A sweep's arrays as C expressions over the module's ``#define``s.

    Attributes:
        in_channels: channels summed over (``C`` for forward, ``O`` for grad_input).
        in_plane: reals per scratch plane of the source.
        out_plane: reals per plane of the result.
        w_out, w_in: the weights' stride per output and per input channel of the pass.
        dst_row: reals from one result row of a phase to the next.
        dst_col: reals from one result column of a phase to the next (an integer).
        pitch: reals per scratch source row.
    """

    in_channels: str
    in_plane: str
    out_plane: str
    w_out: str
    w_in: str
    dst_row: str
    dst_col: int
    pitch: str


@dataclass(frozen=True)
class Driver:
    """How a sweep's tasks get their samples, as C expressions.

    Attributes:
        sample_in, sample_size: the array read per sample and its reals per sample.
        result, result_size: the array written and its reals per sample.
        blocks: channel blocks per sample.
        block_size: the ``#define`` of a block's channels (``FWD_OB``, ``GIN_LW``, ...).
        packs: whether the sample is copied into a zero-framed scratch (``pack_planes``).
        pack_extents, pack_layout, scratch_size: that copy's arguments and size.
        packs_weights: whether the weights are packed once per call (lane tiles).
        packed_size: the packed weights' reals.
        block_bias: the bias argument of a block (``b, `` or nothing).
    """

    sample_in: str
    sample_size: str
    result: str
    result_size: str
    blocks: str
    block_size: str
    packs: bool
    pack_extents: str = ""
    pack_layout: str = ""
    scratch_size: str = ""
    packs_weights: bool = False
    packed_size: str = ""
    block_bias: str = ""


@dataclass(frozen=True)
class Load:
    """One vector load of a column tile and the multiply-adds it feeds.

    Attributes:
        row: the source row below the tile's pointer (a tile row, or with row reuse a row
            below the top row of taps).
        xv: the vector of columns.
        in_register: whether the vector feeds more than one multiply-add (kept in a register).
        fmas: the multiply-adds, in order.
        kind: in place only: ``load`` (inside the row), ``left``/``right`` (crossing its
            first/last column: loaded inside it and shuffled with zeros by ``indices``).
        indices: the ``VEC_SHUFFLE`` indices of a ``left``/``right`` load.
        column: in place only: the column tap it is loaded for.
    """

    row: int
    xv: int
    in_register: bool
    fmas: tuple[Fma, ...]
    kind: str = "load"
    indices: tuple[int, ...] = ()
    column: int = 0


@dataclass(frozen=True)
class VectorStore:
    """One accumulator of a tile row: the vector ``xv`` of columns, and how it is stored:
    ``whole`` (a vector), ``partial`` (lane by lane, up to the row's end), ``checked``
    (tested against the columns left at run time) or ``none`` (past the row); ``end``: the
    vectors of columns up to its last."""

    acc: str
    xv: int
    kind: str
    end: int


@dataclass(frozen=True)
class RowStore:
    """The stores of one output channel ``p`` and tile row ``ty``."""

    p: int
    ty: int
    vectors: tuple[VectorStore, ...]


#: The vector type, length and macros of a wide tile (``helpers.c.jinja``'s lane vectors),
#: as the records of register tiles name them (``TileVectors``).
WIDE_VECTORS = {"vector": "lanes", "reals": "LANES", "load": "LOAD_LANES",
                "store": "STORE_LANES", "in_register": "IN_REGISTER_LANES"}


@dataclass(frozen=True, kw_only=True)
class TileVectors:
    """What a register tile's vectors are in C: their type, their length in reals and the
    macros that load, store and pin them; VL reals (AVX2's width), or LANES, the machine's
    widest (``WIDE_VECTORS``: ``wide``). The records of the tiles that can be either
    (column sweeps, matrix products, Winograd's products) take these fields from here."""

    vector: str = "vec"
    reals: str = "VL"
    load: str = "LOAD"
    store: str = "STORE"
    in_register: str = "IN_REGISTER"

    @property
    def wide(self) -> bool:
        return self.reals == "LANES"


@dataclass(frozen=True)
class FrameTile:
    """A row of row-reusing column tiles (first output row ``m0``) whose source rows
    ``frame_rows`` are rows of the zero frame: the ``loads`` of the others, and the row taps
    whose weights they use (``columns._frame_tiles``)."""

    m0: int
    frame_rows: tuple[int, ...]
    loads: tuple[Load, ...]
    row_taps: tuple[int, ...]


@dataclass(frozen=True)
class ColumnSweep(TileVectors):
    """forward or grad_input as a column tile over the zero-framed scratch (``sweep``).

    ``accumulators[p]``: channel p's sums in tile order; ``loads``: per tap (or, with
    ``reuse``, per column tap) the vector loads; ``weight_rows``: the row taps whose weights
    each column tap holds (``0`` without reuse). With ``reuse``, row ``y`` and row tap ``i``
    read source row ``y*row_step + tap_rows[i]``, and ``schedule`` lists per source row
    (below the top row of taps) the ``(tile row, row tap)`` pairs it feeds; ``frame_tiles``
    the rows of tiles that leave out their loads of the zero frame's rows. ``tap_spans``
    (without ``reuse``): as ``LaneSweep``'s.
    Its vectors: ``TileVectors``.
    """

    name: str
    prefix: str
    reason: str
    ob: int
    ty: int
    txv: int
    reuse: bool
    weight_rows: int
    layout: Layout
    driver: Driver
    bias: bool
    accumulators: tuple[tuple[str, ...], ...]
    loads: tuple[Load, ...]
    stores: tuple[RowStore, ...]
    source_rows: int
    tile_loads: int
    tile_weights: int
    tile_fmas: int
    contiguous: bool
    shares_loads: bool
    several_rows: bool
    row_step: int
    tap_rows: tuple[int, ...]
    schedule: tuple[tuple[int, tuple[tuple[int, int], ...]], ...]
    tap_spans: tuple[int, ...] = ()
    frame_tiles: tuple[FrameTile, ...] = ()
    variant: str = "column_sweep"


@dataclass(frozen=True)
class InPlaceSweep:
    """grad_input as a row-reusing column tile as wide as dV's rows, reading the gradient
    where it lies: ``rows`` the gradient rows loaded (below the top row of taps),
    ``taps[j]`` column tap j's loads, ``weight_taps[j][i]`` the tap of row tap i."""

    name: str
    prefix: str
    reason: str
    ob: int
    ty: int
    txv: int
    row_taps: int
    layout: Layout
    driver: Driver
    accumulators: tuple[tuple[str, ...], ...]
    rows: tuple[int, ...]
    taps: tuple[tuple[Load, ...], ...]
    weight_taps: tuple[tuple[int, ...], ...]
    stores: tuple[RowStore, ...]
    tile_loads: int
    tile_weights: int
    tile_fmas: int
    shares_loads: bool
    several_rows: bool
    tap_rows: tuple[int, ...]
    schedule: tuple[tuple[int, tuple[tuple[int, int], ...]], ...]
    bias: bool = False
    row_step: int = 1
    variant: str = "in_place_sweep"


@dataclass(frozen=True)
class LaneRun:
    """LANES columns ``run`` of tile row ``y`` and lane vector ``v``, transposed into
    vectors of columns: ``operands`` the accumulators (``zero`` past the tile), ``count``
    the real columns, ``last`` whether it is the tile's last run, ``partial`` whether it has
    fewer than LANES columns; ``column`` its first column in the tile, ``pair_column`` and
    ``pair_count`` its first column and its columns when two phases are interleaved."""

    y: int
    v: int
    run: int
    count: int
    operands: tuple[str, ...]
    last: bool
    partial: bool
    column: int
    pair_column: int
    pair_count: int


@dataclass(frozen=True)
class LaneSweep:
    """forward or grad_input as a channels-in-lanes tile.

    ``sums[(y, x)]`` the accumulators of pixel (y, x), one per lane vector; ``runs`` the
    transposed stores of a whole tile (``transposed``); with ``paired`` the two column
    phases of a row phase are interleaved (``low``/``high``: the shuffles that interleave
    two vectors; ``uneven``: the second phase is a column narrower). ``tap_spans``: where a
    row of tiles runs only its taps ``TAPS_FROM .. TAPS_TO`` (those reading rows of data),
    each phase's first tap and the end (as ``PHASE_TAPS``, which the C then lacks); else
    empty, and each row of tiles runs its phase's all. ``column_taps``: where the tile spans
    whole rows and some of its columns read the zero frame, per column tap its index, its
    offset from its row of taps' first and the tile's columns that read data: the taps run a
    row at a time, their column taps unrolled, each pixel's multiply-add only where it reads
    data.
    """

    name: str
    prefix: str
    reason: str
    nv: int
    ty: int
    tx: int
    layout: Layout
    driver: Driver
    bias: bool
    transposed: bool
    paired: bool
    uneven: bool
    pixels: tuple[tuple[int, int, tuple[str, ...]], ...]
    runs: tuple[LaneRun, ...]
    buffered: tuple[tuple[int, int, int, str], ...]
    low: tuple[int, ...]
    high: tuple[int, ...]
    staged_runs: int
    tile_broadcasts: int
    tile_fmas: int
    tap_spans: tuple[int, ...] = ()
    column_taps: tuple[tuple[int, int, tuple[int, ...]], ...] = ()
    variant: str = "lane_sweep"


@dataclass(frozen=True)
class GradWeightColumns:
    """grad_weight as a column tile: OB output x CB input channels x TT taps of vector sums.

    ``accumulators[p]`` output channel p's sums; ``loads`` the input vectors per vector of
    columns (``row`` the input channel, ``xv`` the tap); ``sums`` (p, cb, tt, accumulator)
    as they are added to dK; ``full``/``tail``: whether columns are read in place / from
    a zero-padded copy; ``row_spans``: as ``GradWeightLanes``'s.
    """

    name: str
    reason: str
    ob: int
    cb: int
    tt: int
    full: bool
    tail: bool
    accumulators: tuple[tuple[str, ...], ...]
    loads: tuple[Load, ...]
    sums: tuple[tuple[int, int, int, str], ...]
    shares_loads: bool
    tile_loads: int
    tile_fmas: int
    row_spans: bool = False
    variant: str = "grad_weight_columns"


@dataclass(frozen=True)
class GradWeightLanes:
    """grad_weight with output channels in lanes: NV vectors x CB input channels x TT taps;
    ``blocks`` (cb, tt, accumulators over the lane vectors); ``pixels`` the output pixels
    its loop takes per pass; ``register_transpose``: whether the gradient is transposed
    LANES x LANES reals at a time in registers (``pack_transposed``) rather than element by
    element (``common.REGISTER_TRANSPOSE_LANES``); ``row_spans``: each block of taps sums
    only the output rows ``GW_ROWS_FROM .. GW_ROWS_TO`` whose inputs under it hold data;
    ``border``: the output columns at which some tap reads the zero frame, each with the taps
    that read data there (their loop peeled, the other taps' multiply-adds left out), and
    ``inner`` the columns between (``grad_weight._border``); ``border_rows`` and
    ``inner_rows`` the same for output rows, for a block of every tap
    (``grad_weight._border_rows``)."""

    name: str
    reason: str
    nv: int
    cb: int
    tt: int
    blocks: tuple[tuple[int, int, tuple[str, ...]], ...]
    tile_broadcasts: int
    tile_fmas: int
    pixels: int
    register_transpose: bool
    row_spans: bool = False
    border: tuple[tuple[int, tuple[int, ...]], ...] = ()
    inner: tuple[int, int] = (0, 0)
    border_rows: tuple[tuple[int, tuple[int, ...]], ...] = ()
    inner_rows: tuple[int, int] = (0, 0)
    variant: str = "grad_weight_lanes"


@dataclass(frozen=True)
class Product(TileVectors):
    """One pass of a pointwise layer: a matrix product of MR x NR register tiles.

    ``a_rows`` the accumulators of each tile row (``edge_panels`` times MR rows of them);
    ``row``/``step`` the left factor's stride per row and per inner step (C text, ``1`` when
    contiguous); ``mode``: ``store``,
    ``bias`` (plus the bias of the row) or ``add`` (summed into the result); ``left``,
    ``right``, ``rows``, ``depth``, ``result``: the driver's operands; ``across``, ``along``:
    the weights' strides in K per row and per step (C text), which the driver packs from and
    the in-place tiles of a small batch read by.
    ``accumulates``: grad_weight's driver (column panels of dK, the batch in order).
    ``unroll``: the steps the tile's loop takes per pass.
    ``edge_nrv``: the vectors of the narrower tile that computes the last column panel (0:
    the full tile computes it).
    ``split``: what a small batch's groups of tasks divide, ``rows`` (the row panels; each
    task packs its whole sample) or ``columns`` (the column panels; each task reads all the
    weights) (``pointwise.split_columns``).
    ``gathers``, ``scatters``: at a stride, the product's columns are the output pixels, and
    the input pixels under them are gathered (forward, grad_weight) or scattered into
    (grad_input).
    ``tile_out``: where forward's and grad_input's tiles store, and its row pitch (C text): the
    result, or at a stride grad_input's block of one column panel, scattered after them.
    ``batch_columns``: forward or grad_input also takes the batch's n*P columns as one
    product, in panels that span samples, where that pads less than the samples' own panels
    (``pointwise.batch_columns``; ``<prefix>_SAMPLE_COLUMNS``: the columns a sample's own
    panels compute).
    ``in_place``: forward or grad_input reads the weights where they lie in K for a small
    batch (``pointwise.in_place_pays``); else it always packs them.
    ``windows``: grad_weight of a layer of any kernel (``pointwise.window_grad_weight``): the
    product's columns are dK's (input channel, tap) pairs, ``columns`` of them (C text), and
    each gathers the input pixels its tap reads under the output's, zero in the padding;
    ``flip``: convolution mode, where kernel row i and column j are applied by tap
    (KH-1-i, KW-1-j).
    ``transposed``: forward or grad_input by ``mr`` pixels x ``nrv`` vectors of ``vl`` result
    rows (``pointwise.GemmTile``), the pixels read from the sample in place; ``edge_nrv`` the
    vectors of the last row panel's narrower tile, ``edge_pixels`` the last pixels' tile (0:
    none); ``in_place`` there: the weights read where they lie in K at every batch
    (grad_input), ``step`` their stride per step. ``edge_panels`` (untransposed, packed): the
    row panels the last column panel's tile computes at once.
    Its vectors: ``TileVectors``.
    """

    name: str
    prefix: str
    reason: str
    mr: int
    nrv: int
    a_rows: tuple[tuple[str, ...], ...]
    mode: str
    row: str
    step: str
    depth: str
    left: str
    across: str
    along: str
    right: str
    rows: str
    result: str
    bias: bool
    accumulates: bool
    tile_fmas: int
    unroll: int
    edge_nrv: int = 0
    split: str = "rows"
    gathers: bool = False
    scatters: bool = False
    tile_out: str = ""
    batch_columns: bool = False
    in_place: bool = True
    windows: bool = False
    columns: str = "C"
    flip: bool = False
    transposed: bool = False
    edge_pixels: int = 0
    edge_panels: int = 1
    vl: int = 0
    variant: str = "pointwise"


@dataclass(frozen=True)
class Winograd(TileVectors):
    """forward or grad_input of a 3x3 layer at stride 1 by Winograd's F(m x m, 3x3)
    (``blocking.winograd``): per task, a block of tile rows of one sample is transformed,
    multiplied point by point as matrix products of ``mr`` x ``nrv`` register tiles, and
    transformed back.

    ``source``, ``result``: the arrays read and written; ``bias``: whether the result adds
    ``b``; ``w_out``, ``w_in``: the weights' strides per result and per summed channel;
    ``m``, ``alpha``: outputs per tile side and patch side; ``a_rows``: the product tile's
    accumulators per row; ``weight_lines``, ``input_lines``, ``output_lines``: the C of the
    three transforms (one kernel plane, one patch, one tile); ``edge_output_lines``: the
    last tile of a row when the result's width is not a multiple of ``m`` (``ragged``);
    ``unroll``: the steps the tile's loop takes per pass; ``samples``: whether its tasks take
    whole samples (``winograd=2s``), a group of their channels at a time.
    """

    name: str
    prefix: str
    reason: str
    source: str
    result: str
    bias: bool
    w_out: str
    w_in: str
    m: int
    alpha: int
    mr: int
    nrv: int
    a_rows: tuple[tuple[str, ...], ...]
    weight_lines: tuple[str, ...]
    input_lines: tuple[str, ...]
    output_lines: tuple[str, ...]
    edge_output_lines: tuple[str, ...]
    ragged: bool
    unroll: int
    samples: bool = False
    variant: str = "winograd"


@dataclass(frozen=True)
class WinogradGradWeight(TileVectors):
    """grad_weight of a 3x3 layer at stride 1 by Winograd's F(3x3, 2x2)
    (``blocking.winograd``): per task, a block of tile rows of one sample has its patches
    and its gradients' 2x2 blocks transformed, and each point's product (input channels x
    output channels, summed over the block's tiles) is added to the thread's sums by
    ``mr`` x ``nrv`` register tiles; the threads' sums are added and transformed back once
    per call.

    ``m``, ``alpha``: gradients per tile side and patch side; ``a_rows``: the product tile's
    accumulators per row; ``input_lines``, ``gradient_lines``, ``output_lines``: the C of
    the three transforms (one patch, one 2x2 block of gradients, one 3x3 plane of dK);
    ``unroll``: the steps the tile's loop takes per pass.
    """

    prefix: str
    reason: str
    m: int
    alpha: int
    mr: int
    nrv: int
    a_rows: tuple[tuple[str, ...], ...]
    input_lines: tuple[str, ...]
    gradient_lines: tuple[str, ...]
    output_lines: tuple[str, ...]
    unroll: int
    name: str = "grad_weight"
    variant: str = "winograd_grad_weight"


@dataclass(frozen=True)
class GradBias:
    """grad_bias: one task per output channel, the batch summed in order, ``planes`` samples'
    planes side by side."""

    planes: int
    name: str = "grad_bias"
    reason: str = "a sum per output channel"
    variant: str = "grad_bias"


@dataclass(frozen=True)
class Unrolled:
    """A pass printed element by element (the ``unrolled`` style)."""

    name: str
    reason: str = "the unrolled style: the derived expressions, element by element"
    variant: str = "unrolled"


@dataclass(frozen=True)
class Shuffle:
    """One step of ``transpose_lanes``: ``target = LANE_SHUFFLE(a, b, indices)``."""

    target: str
    a: str
    b: str
    indices: tuple[int, ...]


@dataclass(frozen=True)
class Helpers:
    """The shared C helpers a module needs.

    Attributes:
        loops: whether the module has loop kernels (vectors, LOAD/STORE, and the scratch's
            ``aligned_malloc``, ``aligned_free``).
        zeroed_scratch: ``aligned_calloc`` (a sweep's or a Winograd pass's scratch starts zero).
        pointwise: matrix products (``pack_panel``) rather than sweeps (``lane_sum``,
            ``pack_planes``).
        batch_columns: a pointwise forward or grad_input whose panels span samples
            (``Product.batch_columns``): ``pack_batch_columns``, ``store_batch_tile``;
        strided: a strided pointwise layer's ``gather_pixels`` and ``scatter_cells``;
            ``cells_wide``, ``cells_tall``: whether its cells have more than one column (SW > 1)
            and more than one row (SH > 1), which ``scatter_cells`` zeroes.
        shuffles: ``VEC_SHUFFLE`` and ``COLUMN_TAP_BOUNDARY`` (grad_input in place).
        in_register: ``IN_REGISTER`` (a loaded vector feeds several multiply-adds).
        wide_in_register: ``IN_REGISTER_LANES``, its form for vectors of LANES reals (the
            wide tiles of a matrix product or a column sweep).
        lanes: the lane vector type (channels in lanes).
        hide_pointer: ``HIDE_POINTER`` (a lane sweep's bias, read where its tiles are
            stored).
        transpose: ``LANE_SHUFFLE`` and ``transpose_lanes`` (whole lane tiles transposed).
        pack_transposed: ``pack_transposed`` (rows of a matrix transposed into a panel
            through ``transpose_lanes``).
        index_type: the C integer type of a shuffle index vector's elements.
        transpose_steps, transpose_shuffles, transpose_columns: ``transpose_lanes``: its
            number of steps, its shuffles in order, and the value of each column.
        transpose_vectors: ``transpose_vectors`` (VL x VL, the transposed matrix products'
            stores), as those three, or None.
        transpose_halves: ``transpose_halves`` (VL / 2 x VL, the stores of a transposed
            tile of VL / 2 pixels), as those three and each column's ``(vector, half)``
            (``shuffles.half_transpose``), or None.
        waits: ``<sched.h>``, for a matrix-product grad_weight's ``spin_wait`` (a thread
            waiting on the unit another thread is running).
        kept_scratch: ``take_kept``, ``give_kept`` (Winograd's transformed weights, kept
            between calls).
    """

    loops: bool = False
    zeroed_scratch: bool = False
    pointwise: bool = False
    batch_columns: bool = False
    strided: bool = False
    cells_wide: bool = False
    cells_tall: bool = False
    shuffles: bool = False
    in_register: bool = False
    wide_in_register: bool = False
    lanes: bool = False
    hide_pointer: bool = False
    transpose: bool = False
    pack_transposed: bool = False
    index_type: str = "int64_t"
    transpose_steps: int = 0
    transpose_shuffles: tuple[Shuffle, ...] = ()
    transpose_columns: tuple[str, ...] = ()
    transpose_vectors: tuple[int, tuple[Shuffle, ...], tuple[str, ...]] | None = None
    transpose_halves: tuple[int, tuple[Shuffle, ...], tuple[str, ...],
                            tuple[tuple[int, int], ...]] | None = None
    waits: bool = False
    kept_scratch: bool = False


@dataclass(frozen=True)
class ModulePlan:
    """The plans of a module: the helpers, one plan per pass (in the kernels' order), and
    the ``#define``s and tables printed from them."""

    helpers: Helpers
    passes: tuple
    constants: tuple[Constant, ...] = ()
    tables: tuple[Table, ...] = ()
