"""``plan``: the plans of one layer's ``loops`` kernels on the OpenMP target, pass by pass."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from derive.spec import LayerSpec

from .common import (
    AVX512,
    GRAD_WEIGHT_PIXELS,
    LANE_MIN_SUMS,
    LINE_BYTES,
    MIN_TASKS,
    VECTOR_BYTES,
    Geometry,
    Machine,
    geometry,
    grad_bias_planes,
    is_pointwise,
)
from .defines import Defines
from .gather import grad_input_sweep_candidates, phases, plan_columns, plan_lanes
from .grad_weight import plan_grad_weight
from .pointwise import (
    TILE_CHOICE,
    TRANSPOSED_SUFFIX,
    WIDE_SUFFIX,
    GemmTile,
    pointwise_candidates,
    pointwise_plan,
    tile_choice,
    window_grad_weight,
    window_grad_weight_candidates,
)
from .records import (
    ColumnSweep,
    GradBias,
    GradWeightLanes,
    Helpers,
    InPlaceSweep,
    LaneSweep,
    ModulePlan,
    Product,
    Unrolled,
    Winograd,
    WinogradGradWeight,
)
from .shuffles import transpose_shuffles
from .sweeps import (
    forward_phases,
    forward_sweep_candidates,
    forward_tile,
    input_scratch,
    plan_forward,
)
from .tiles import LaneTile, SweepTile, lane_tile_candidates
from .winograd import applies as winograd_applies
from .winograd import grad_weight_pays as winograd_grad_weight_pays
from .winograd import plan_winograd, plan_winograd_grad_weight, sample_tasks_pay


def channels_in_lanes(g: Geometry, lanes: int) -> tuple[str, ...]:
    """The passes whose channels fill whole lane vectors and which gain from lane tiles:
    forward and a stride-1 grad_input when each output sums at least ``LANE_MIN_SUMS``
    products, grad_input at a column stride and grad_weight always."""
    return tuple(name for name, channels, pays in (
        ("forward", g.o, g.c * g.kh * g.kw >= LANE_MIN_SUMS),
        ("grad_input", g.c, g.sw > 1 or g.o * g.kh * g.kw >= LANE_MIN_SUMS),
        ("grad_weight", g.o, True)) if channels % lanes == 0 and pays)


def _helpers(passes: tuple, lanes: int, dtype_bytes: int, index_type: str) -> Helpers:
    """The shared C helpers the passes need."""
    lane_sweeps = [p for p in passes if isinstance(p, LaneSweep)]
    wide = [p for p in passes if isinstance(p, ColumnSweep) and p.wide]
    wide_winograd = any(isinstance(p, (Winograd, WinogradGradWeight)) and p.wide
                        for p in passes)
    # a Winograd grad_weight packs its input transposed, and a lane grad_weight may
    # transpose its gradient alike
    pack = any(isinstance(p, (WinogradGradWeight, Product))
               or isinstance(p, GradWeightLanes) and p.register_transpose for p in passes)
    products = [p for p in passes if isinstance(p, Product)]
    transpose = pack or any(p.transposed or p.paired for p in lane_sweeps)
    steps, shuffles, columns = (transpose_shuffles(lanes, dtype_bytes) if transpose
                                else (0, (), ()))
    return Helpers(
        loops=True, pointwise=False,
        zeroed_scratch=any(isinstance(p, (ColumnSweep, InPlaceSweep, LaneSweep, Winograd,
                                          WinogradGradWeight)) for p in passes),
        shuffles=any(isinstance(p, InPlaceSweep) for p in passes),
        in_register=bool(products) or any(getattr(p, "shares_loads", False)
                                          or isinstance(p, (Winograd, WinogradGradWeight))
                                          for p in passes),
        wide_in_register=wide_winograd or any(p.shares_loads for p in wide)
        or any(p.wide for p in products),
        lanes=pack or bool(wide) or wide_winograd or any(p.variant.endswith("lanes")
                                        or p.variant == "lane_sweep" for p in passes),
        hide_pointer=any(p.bias for p in lane_sweeps),
        transpose=transpose, pack_transposed=pack, index_type=index_type, transpose_steps=steps,
        transpose_shuffles=shuffles, transpose_columns=columns,
        waits=any(p.accumulates for p in products),
        kept_scratch=any(isinstance(p, Winograd) for p in passes))


#: The passes ``codegen.tune`` chooses for.
PASSES = ("forward", "grad_input", "grad_weight")


#: A choice of ``codegen.tune``, as stored and printed: ``lane_fmas=1`` or ``lane_fmas=2``
#: (the multiply-adds per cycle the lane tiles' cost model charges), for grad_weight with
#: channels in lanes possibly followed by ``,pixels=2`` (its tile's loop takes two output
#: pixels per pass), ``lane_tile=1x2x4`` (a channels-in-lanes tile: lane vectors x rows x
#: columns), ``column_tile=1x4x4r`` (a column sweep's tile: channels x rows x vectors of
#: columns, ``r`` when it reuses source rows, ``w`` when its vectors are the machine's
#: widest), ``tile=6x2`` (a matrix product's register tile: rows x vectors of columns;
#: ``tile=8x3t`` transposed, pixels x vectors of rows, ``pointwise.GemmTile``), or
#: ``winograd=2`` (Winograd's algorithm on 2x2 tiles of the result plane: forward and
#: grad_input by F(2x2, 3x3), grad_weight by F(3x3, 2x2); ``blocking.winograd``), or
#: ``winograd=2w`` (the same, its products' tiles of the machine's widest vectors), or
#: ``winograd=2s`` (forward and grad_input: tasks of whole samples' tiles,
#: ``winograd.sample_tasks_pay``).
LANE_FMAS_CHOICE, LANE_TILE_CHOICE = "lane_fmas=", "lane_tile="
COLUMN_TILE_CHOICE, REUSE_SUFFIX = "column_tile=", "r"
#: ``WIDE_SUFFIX`` (``pointwise``): a tile of the machine's widest vectors, ``tile=12x2w``,
#: ``column_tile=1x4x2rw``.
WINOGRAD_CHOICE = "winograd=2"
WIDE_WINOGRAD_CHOICE = WINOGRAD_CHOICE + WIDE_SUFFIX
SAMPLE_WINOGRAD_CHOICE = WINOGRAD_CHOICE + "s"
PIXELS_CHOICE = ",pixels="


def _pixels(choice: str) -> tuple[str, int]:
    """``choice`` without its ``,pixels=N`` suffix, and N (1 without one)."""
    base, _, pixels = choice.partition(PIXELS_CHOICE)
    if pixels and not (pixels.isdigit() and int(pixels) >= 1):
        raise ValueError(f"choices: {choice} needs a whole number of pixels of at least 1")
    return base, int(pixels) if pixels else 1


def lane_tile_choice(tile: LaneTile) -> str:
    return f"{LANE_TILE_CHOICE}{tile.nv}x{tile.ty}x{tile.tx}"


def _parse_lane_tile(choice: str | None, channels: int, lanes: int) -> LaneTile | None:
    """The lane tile of ``choice``, for a sweep of ``channels`` channels in vectors of
    ``lanes``: its vectors must cut the channels into whole blocks (a tile that does not
    would compute channels that do not exist)."""
    if not choice or not choice.startswith(LANE_TILE_CHOICE):
        return None
    nv, ty, tx = (int(n) for n in choice.removeprefix(LANE_TILE_CHOICE).split("x"))
    if min(nv, ty, tx) < 1 or channels % (nv * lanes):
        raise ValueError(f"choices: {choice} needs {nv} vectors of {lanes} channels to "
                         f"divide the sweep's {channels} channels")
    return LaneTile(nv, ty, tx)


def column_tile_choice(tile: SweepTile) -> str:
    return (f"{COLUMN_TILE_CHOICE}{tile.ob}x{tile.ty}x{tile.txv}"
            f"{REUSE_SUFFIX if tile.reuse else ''}{WIDE_SUFFIX if tile.wide else ''}")


def _parse_column_tile(choice: str | None, channels: int, wide_allowed: bool
                       ) -> SweepTile | None:
    """The column tile of ``choice``, for a sweep of ``channels`` result channels: its
    channels must divide them (a tile that does not would compute channels that do not
    exist). A wide tile (``w``) only where ``wide_allowed``: forward, on a machine whose
    widest vectors are wider than VL."""
    if not choice or not choice.startswith(COLUMN_TILE_CHOICE):
        return None
    text = choice.removeprefix(COLUMN_TILE_CHOICE)
    wide = text.endswith(WIDE_SUFFIX)
    text = text.removesuffix(WIDE_SUFFIX)
    sizes = text.removesuffix(REUSE_SUFFIX).split("x")
    if len(sizes) != 3 or not all(n.isdigit() and int(n) >= 1 for n in sizes):
        raise ValueError(f"choices: {choice} needs channels x rows x vectors, three whole "
                         f"numbers of at least 1 (then {REUSE_SUFFIX!r} to reuse rows, then "
                         f"{WIDE_SUFFIX!r} for the widest vectors)")
    ob, ty, txv = (int(n) for n in sizes)
    if channels % ob:
        raise ValueError(f"choices: {choice} needs its {ob} channels to divide the sweep's "
                         f"{channels} channels")
    if wide and not wide_allowed:
        raise ValueError(f"choices: {choice}: a column tile of the widest vectors "
                         f"({WIDE_SUFFIX!r}) is for forward, on a machine whose widest "
                         "vectors are wider than VL (AVX-512)")
    return SweepTile(ob, ty, txv, text.endswith(REUSE_SUFFIX), wide)


def _parse_tile(choice: str) -> GemmTile:
    text = choice.removeprefix(TILE_CHOICE)
    wide, transposed = text.endswith(WIDE_SUFFIX), text.endswith(TRANSPOSED_SUFFIX)
    sizes = text.removesuffix(WIDE_SUFFIX).removesuffix(TRANSPOSED_SUFFIX).split("x")
    if len(sizes) != 2 or not all(n.isdigit() and int(n) >= 1 for n in sizes):
        raise ValueError(f"choices: {choice} needs rows x vectors, two whole numbers of at "
                         f"least 1 (then {WIDE_SUFFIX!r} for the widest vectors, or "
                         f"{TRANSPOSED_SUFFIX!r} for a transposed tile)")
    return GemmTile(int(sizes[0]), int(sizes[1]), wide, transposed)


#: A grad_weight's matrix product over the output's pixels (``pointwise.window_grad_weight``)
#: is timed where the layer has at least this many output channels: each input pixel it
#: gathers and transposes feeds that many multiply-adds. On a Zen 4, against the direct
#: grad_weight (float32 / float64, tuning's batch): 0.67 at 512 channels on 14x14 (float32),
#: 0.95 / 0.70 at 256, 1.09-1.19 / 1.22-1.34 at 128, 1.3-3.3 at 16-64 (S3, S4, S5, a 5x5
#: layer, a dilated one, a 7x7 stem); timing it there took S5's tuning from 3.4 to 13.7 s.
WINDOW_MIN_OUTPUTS = 128


def window_products_pay(g: Geometry) -> bool:
    """Whether tuning times ``g``'s grad_weight as a matrix product (``WINDOW_MIN_OUTPUTS``)."""
    return g.o >= WINDOW_MIN_OUTPUTS


def candidates(spec: LayerSpec, dtype_bytes: int, machine: Machine = AVX512
               ) -> dict[str, tuple[str, ...]]:
    """The choices ``codegen.tune`` may time, pass by pass, the cost model's first, for the
    passes whose plans differ between them: a forward or grad_input lane tile
    (``tiles.lane_tile_candidates``) or column tile (``tiles.sweep_tile_candidates``), the
    multiply-adds per cycle grad_weight's lane and column tiles are costed at (1 or 2; in
    lanes, each also with its loop taking ``GRAD_WEIGHT_PIXELS`` output pixels per pass), or
    a matrix product's register tile (``pointwise.gemm_candidates``); and for every pass,
    where it applies, Winograd's algorithm (``winograd.applies``; for grad_weight also
    ``winograd.grad_weight_pays``), and where the machine offers them
    (``Machine.wide_tiles``) also with its products in its widest vectors."""
    vl = min(VECTOR_BYTES, machine.lane_bytes) // dtype_bytes
    if is_pointwise(spec):
        return {name: tuple(tile_choice(t) for t in tiles) for name, tiles in
                pointwise_candidates(spec, vl, dtype_bytes, machine).items() if len(tiles) > 1}
    first = machine.lane_fmas
    options = [f"{LANE_FMAS_CHOICE}{fmas}" for fmas in (first, 3 - first)]
    plans = [plan(spec, dtype_bytes, machine, dict.fromkeys(PASSES, o)).passes for o in options]
    found = {record.name: tuple(options) for record, other in zip(*plans)
             if record.name in PASSES and other != record}
    if any(isinstance(record, GradWeightLanes) for record in plans[0]):
        rates = found.get("grad_weight", tuple(options[:1]))
        found["grad_weight"] = rates + tuple(f"{rate}{PIXELS_CHOICE}{GRAD_WEIGHT_PIXELS}"
                                             for rate in rates)
    g, lanes = geometry(spec), machine.lane_bytes // dtype_bytes
    in_lanes = channels_in_lanes(g, lanes)
    gather = phases(g)
    sweeps = {"forward": (g.o, g.c, forward_phases(g)), "grad_input": (g.c, g.o, gather.sizes)}
    for name, (out_channels, in_channels, sizes) in sweeps.items():
        found.pop(name, None)
        if name in in_lanes:
            labels = tuple(lane_tile_choice(t) for t in
                           lane_tile_candidates(lanes, out_channels, in_channels, sizes, machine))
        elif name == "forward":
            labels = tuple(column_tile_choice(t)
                           for t in forward_sweep_candidates(g, vl, lanes, machine))
        else:
            labels = tuple(column_tile_choice(t)
                           for t in grad_input_sweep_candidates(g, vl, gather, machine))
        if len(labels) > 1:
            found[name] = labels
    if window_products_pay(g):
        found["grad_weight"] = found.get("grad_weight", tuple(options[:1])) + tuple(
            tile_choice(t) for t in window_grad_weight_candidates(spec, vl, dtype_bytes, machine))
    if winograd_applies(g):
        wide = (WIDE_WINOGRAD_CHOICE,) if machine.wide_tiles else ()
        for name in PASSES:
            samples = ((SAMPLE_WINOGRAD_CHOICE,) if name != "grad_weight"
                       and sample_tasks_pay(g, dtype_bytes) else ())
            if name != "grad_weight" or winograd_grad_weight_pays(g, dtype_bytes):
                found[name] = found.get(name, tuple(options[:1])) + (WINOGRAD_CHOICE, *wide,
                                                                     *samples)
    return {name: found[name] for name in PASSES if name in found}


def plan(spec: LayerSpec, dtype_bytes: int, machine: Machine = AVX512,
         choices: Mapping[str, str] | None = None) -> ModulePlan:
    """The plans of the ``loops`` kernels of ``spec`` for ``machine``: the helpers, one
    record per pass, and the blocking constants and tap tables printed from them.

    ``choices`` (pass name -> a choice of ``candidates``) overrides, pass by pass, what the
    cost model would take: the lane tiles' multiply-adds per cycle (``Machine.lane_fmas``)
    or a matrix product's tile; ``codegen.tune`` measures them on the machine that builds
    the module."""
    choices = choices or {}

    def machine_for(name: str) -> Machine:
        return _rated(machine, choices.get(name, ""))
    vl = min(VECTOR_BYTES, machine.lane_bytes) // dtype_bytes
    index_type = "int32_t" if dtype_bytes == 4 else "int64_t"
    g, lanes = geometry(spec), machine.lane_bytes // dtype_bytes
    winograd = _winograd_passes(g, choices, lanes > vl)
    if is_pointwise(spec):
        return pointwise_plan(spec, vl, dtype_bytes, index_type, machine, {
            name: _parse_tile(choice) for name, choice in choices.items()
            if choice.startswith(TILE_CHOICE)})
    window = choices.get("grad_weight", "")
    window = _parse_tile(window) if window.startswith(TILE_CHOICE) else None
    if window is not None and window.transposed:
        raise ValueError(f"choices: grad_weight {tile_choice(window)}: a transposed tile is for "
                         "forward and grad_input of a 1x1 layer at stride 1")
    # passes computed otherwise than by their direct sweeps
    other = {*winograd, *(("grad_weight",) if window else ())}
    in_lanes = channels_in_lanes(g, lanes)
    forward_columns = _parse_column_tile(choices.get("forward"), g.o, lanes > vl)
    d = _layer_constants(g, vl, lanes, machine, _lanes_use(
        any(name not in other for name in in_lanes), "grad_weight" in other,
        forward_columns is not None and forward_columns.wide,
        any(wide for wide, _ in winograd.values())))
    tile, ty, tx = forward_tile(g, vl, lanes, "forward" in in_lanes, machine_for("forward"),
                                _parse_lane_tile(choices.get("forward"), g.o, lanes),
                                forward_columns)
    scratch = input_scratch(g, vl, ty, tx, "grad_weight" in in_lanes and not window, d)
    # a pass computed by Winograd's algorithm or a window product still plans its direct form
    # (grad_weight shares the forward's scratch), but prints none of its constants
    direct = {name: Defines() if name in other else d for name in PASSES}
    forward = plan_forward(g, vl, lanes, tile, tx, scratch, spec.bias, direct["forward"])
    gather = phases(g)
    grad_input = (plan_lanes(g, lanes, gather, direct["grad_input"], machine_for("grad_input"),
                             _parse_lane_tile(choices.get("grad_input"), g.c, lanes))
                  if "grad_input" in in_lanes
                  else plan_columns(g, vl, gather, direct["grad_input"],
                                    machine_for("grad_input"),
                                    _parse_column_tile(choices.get("grad_input"), g.c, False)))
    grad_weight = plan_grad_weight(g, vl, lanes, "grad_weight" in in_lanes,
                                   scratch.tap_offsets, scratch.seg, direct["grad_weight"],
                                   machine_for("grad_weight"),
                                   _pixels(choices.get("grad_weight", ""))[1])
    plans = dict(zip(PASSES, (forward, grad_input, grad_weight)))
    plans.update(_winograd_plans(g, winograd, vl, dtype_bytes, machine, spec.bias, d))
    if window:
        plans["grad_weight"] = window_grad_weight(spec, vl, dtype_bytes, machine, window, d)
    bias = (GradBias(grad_bias_planes(lanes)),) if spec.bias else ()
    passes = tuple(plans.values()) + bias
    return ModulePlan(_helpers(passes, lanes, dtype_bytes, index_type), passes,
                      tuple(d.constants), tuple(d.tables))


def _rated(machine: Machine, choice: str) -> Machine:
    """``machine``, its lane tiles costed at the multiply-adds per cycle ``choice`` names
    (``lane_fmas=N``, possibly with ``,pixels=M``), if it names any."""
    base = _pixels(choice)[0]
    if not base.startswith(LANE_FMAS_CHOICE):
        return machine
    fmas = int(base.removeprefix(LANE_FMAS_CHOICE))
    return machine if fmas == machine.lane_fmas else replace(machine, lane_fmas=fmas)


def _lanes_use(in_lanes: bool, winograd_grad_weight: bool, wide_forward: bool,
               wide_winograd: bool) -> str | None:
    """What the module's ``LANES`` counts, when a pass uses lane vectors: every use, as
    one module can have several (a Winograd grad_weight transposes blocks of LANES reals,
    and wide products multiply vectors of as many)."""
    uses = [use for use, used in (
        ("channels per lane vector", in_lanes),
        ("reals per side of a block transposed in registers", winograd_grad_weight),
        ("reals per vector of the forward tile's columns", wide_forward),
        ("reals per vector of the Winograd products' tiles", wide_winograd)) if used]
    return ", and ".join(uses) or None


def _layer_constants(g: Geometry, vl: int, lanes: int, machine: Machine,
                     lanes_use: str | None) -> Defines:
    """The constants every pass of the layer reads, the first the module prints."""
    d = Defines()
    d.const("VL", vl, f"reals per vector ({VECTOR_BYTES} bytes)")
    d.const("LINE_BYTES", LINE_BYTES, "bytes per cache line: where each block of scratch starts")
    if lanes_use:
        d.const("LANES", lanes, f"{lanes_use} ({machine.lane_bytes} bytes, {machine.isa})")
    d.const("LH", g.h, "rows swept (H)")
    d.const("LW", g.w, "input columns swept (W)")
    d.const("LHO", g.ho, "output rows swept (HO)")
    d.const("LWO", g.wo, "output columns swept (WO)")
    d.const("MIN_TASKS", MIN_TASKS, "forward and grad_input tasks wanted per call")
    return d


def _winograd_plans(g: Geometry, names: Mapping[str, tuple[bool, bool]], vl: int,
                    dtype_bytes: int, machine: Machine, bias: bool, d: Defines) -> dict:
    """The records of the passes ``names`` computed by Winograd's algorithm (each with
    whether its products' tiles are wide and whether its tasks take whole samples), their
    constants printed to ``d`` in pass order."""
    return {name: plan_winograd_grad_weight(g, vl, dtype_bytes, machine, d, names[name][0])
            if name == "grad_weight"
            else plan_winograd(g, name, vl, dtype_bytes, machine, bias and name == "forward", d,
                               *names[name])
            for name in PASSES if name in names}


def _winograd_passes(g: Geometry, choices: Mapping[str, str], wide_allowed: bool
                     ) -> dict[str, tuple[bool, bool]]:
    """The passes ``choices`` computes by Winograd's algorithm, each with whether its
    products' tiles are of the widest vectors and whether its tasks take whole samples; a
    choice of it for a pass or a layer it does not apply to, of wide tiles where the
    machine's vectors are no wider than VL (``wide_allowed`` false), or of whole samples for
    grad_weight, is an error."""
    chosen = {name: (choice == WIDE_WINOGRAD_CHOICE, choice == SAMPLE_WINOGRAD_CHOICE)
              for name, choice in choices.items()
              if choice.partition("=")[0] == WINOGRAD_CHOICE.partition("=")[0]}
    for name in chosen:
        if (choices[name] not in (WINOGRAD_CHOICE, WIDE_WINOGRAD_CHOICE, SAMPLE_WINOGRAD_CHOICE)
                or name not in PASSES or (chosen[name][1] and name == "grad_weight")):
            raise ValueError(f"choices: {name}={choices[name]}: Winograd's algorithm is "
                             f"{WINOGRAD_CHOICE} (2x2 tiles), or {WIDE_WINOGRAD_CHOICE} (its "
                             "products in the widest vectors), for forward, grad_input or "
                             f"grad_weight, or {SAMPLE_WINOGRAD_CHOICE} (tasks of whole "
                             "samples), for forward or grad_input")
        if chosen[name][0] and not wide_allowed:
            raise ValueError(f"choices: {name}={choices[name]}: Winograd's products in the "
                             f"widest vectors ({WIDE_SUFFIX!r}) need a machine whose widest "
                             "vectors are wider than VL (AVX-512)")
        if not winograd_applies(g):
            raise ValueError(f"choices: {name}={choices[name]} needs a 3x3 kernel at stride "
                             "and dilation 1, padding at most 2 and at least 16 input and "
                             f"output channels; this layer has {g.o}x{g.c}x{g.kh}x{g.kw}, "
                             f"stride {g.sh}x{g.sw}, dilation {g.dh}x{g.dw}, padding "
                             f"{(g.top, g.bottom, g.left, g.right)}")
    return chosen


def unrolled(names: tuple[str, ...]) -> ModulePlan:
    """The plans of the ``unrolled`` style: every pass element by element, no helpers."""
    return ModulePlan(Helpers(), tuple(Unrolled(name) for name in names))
