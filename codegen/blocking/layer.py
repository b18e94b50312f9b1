"""``plan``: the plans of one layer's ``loops`` kernels on the OpenMP target, pass by pass."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from derive.spec import LayerSpec

from .common import (
    AVX512,
    LANE_MIN_SUMS,
    VECTOR_BYTES,
    Geometry,
    Machine,
    geometry,
    is_pointwise,
)
from .defines import Defines
from .gather import phases, plan_columns, plan_lanes
from .grad_weight import plan_grad_weight
from .pointwise import pointwise_plan
from .records import GradBias, Helpers, InPlaceSweep, LaneSweep, ModulePlan, Unrolled
from .shuffles import transpose_shuffles
from .sweeps import forward_tile, input_scratch, plan_forward


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
    transpose = any(p.transposed or p.paired for p in lane_sweeps)
    steps, shuffles, columns = (transpose_shuffles(lanes, dtype_bytes) if transpose
                                else (0, (), ()))
    return Helpers(
        loops=True, pointwise=False,
        shuffles=any(isinstance(p, InPlaceSweep) for p in passes),
        in_register=any(getattr(p, "shares_loads", False) for p in passes),
        lanes=any(p.variant.endswith("lanes") or p.variant == "lane_sweep" for p in passes),
        transpose=transpose, index_type=index_type, transpose_steps=steps,
        transpose_shuffles=shuffles, transpose_columns=columns)


def plan(spec: LayerSpec, dtype_bytes: int, machine: Machine = AVX512,
         lane_fmas: Mapping[str, int] | None = None) -> ModulePlan:
    """The plans of the ``loops`` kernels of ``spec`` for ``machine``: the helpers, one
    record per pass, and the blocking constants and tap tables printed from them.

    ``lane_fmas`` (pass name -> 1 or 2) overrides, pass by pass, the multiply-adds per cycle
    the lane tiles' cost model charges (``Machine.lane_fmas``): the knob ``codegen.tune``
    measures on the machine that builds the module."""
    lane_fmas = lane_fmas or {}

    def machine_for(name: str) -> Machine:
        fmas = lane_fmas.get(name, machine.lane_fmas)
        return machine if fmas == machine.lane_fmas else replace(machine, lane_fmas=fmas)
    vl = min(VECTOR_BYTES, machine.lane_bytes) // dtype_bytes
    index_type = "int32_t" if dtype_bytes == 4 else "int64_t"
    if is_pointwise(spec):
        return pointwise_plan(spec, vl, dtype_bytes, index_type, machine)
    g = geometry(spec)
    lanes = machine.lane_bytes // dtype_bytes
    in_lanes = channels_in_lanes(g, lanes)
    d = Defines()
    d.const("VL", vl, f"reals per vector ({VECTOR_BYTES} bytes)")
    if in_lanes:
        d.const("LANES", lanes, f"channels per lane vector ({machine.lane_bytes} bytes, "
                f"{machine.isa})")
    d.const("LH", g.h, "rows swept (H)")
    d.const("LW", g.w, "input columns swept (W)")
    d.const("LHO", g.ho, "output rows swept (HO)")
    d.const("LWO", g.wo, "output columns swept (WO)")
    tile, ty, tx = forward_tile(g, vl, lanes, "forward" in in_lanes, machine_for("forward"))
    scratch = input_scratch(g, vl, ty, tx, "grad_weight" in in_lanes, d)
    forward = plan_forward(g, vl, lanes, tile, tx, scratch, spec.bias, d)
    gather = phases(g)
    grad_input = (plan_lanes(g, lanes, gather, d, machine_for("grad_input"))
                  if "grad_input" in in_lanes
                  else plan_columns(g, vl, gather, d, machine_for("grad_input")))
    grad_weight = plan_grad_weight(g, vl, lanes, "grad_weight" in in_lanes,
                                   scratch.tap_offsets, scratch.seg, d,
                                   machine_for("grad_weight"))
    passes = (forward, grad_input, grad_weight) + ((GradBias(),) if spec.bias else ())
    return ModulePlan(_helpers(passes, lanes, dtype_bytes, index_type), passes,
                      tuple(d.constants), tuple(d.tables))


def unrolled(names: tuple[str, ...]) -> ModulePlan:
    """The plans of the ``unrolled`` style: every pass element by element, no helpers."""
    return ModulePlan(Helpers(), tuple(Unrolled(name) for name in names))
