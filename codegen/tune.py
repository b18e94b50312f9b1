"""Tile choices measured on the machine that builds the module (OpenMP ``loops`` style).

The cost models of ``codegen.blocking`` pick each tile from a handful of cycle counts, and
one of them does not carry from one CPU to another: how many lane-vector multiply-adds a
cycle retires. Zen 4 runs a 512-bit multiply-add as two halves (one a cycle); a 256-bit
one retires two a cycle on Zen 3 and most Xeons; which tile that favours (more channels
per tile, or more pixels) is then a matter of loads and spills the model does not see. So
when a layer is large enough for it to pay, ``tuned_lane_fmas`` builds the module under
each assumption whose plans differ, checks each against the NumPy reference, times every
pass whose plans differ, and keeps, pass by pass, the faster. The choice is stored under
the module folder's ``.tuning/``, keyed by the request, this CPU (model, flags, vector
unit) and the thread count, so a later load reads it in milliseconds.

Off: ``tune=False`` (``codegen.load``), ``--no-tune`` (CLI), or ``CORRGEN_TUNE=0``.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from derive import reference
from derive.spec import LayerSpec

from .backends import Backend
from .bench import flops
from .blocking import Machine, host_machine, plan
from .build import request_key
from .paths import write_atomic
from .vocabulary import DTYPES

#: Turns tuning off when "0" (or "no", "off", "false").
TUNE_ENV = "CORRGEN_TUNE"
#: Layers of fewer forward floating-point operations per sample are not tuned: their
#: passes take microseconds, and the two builds would cost more than they could save.
TUNE_MIN_FLOPS = 1 << 20
#: The lane tiles' multiply-adds per cycle the candidates assume.
LANE_FMAS = (1, 2)
#: Each candidate pass is timed this many times (after one warm-up run), interleaved.
RUNS = 5
#: The timing batch: enough samples for about this many forward operations, at least 4 per
#: thread (a batch of one on 2 threads ranks S5's forward tiles the other way round from a
#: batch of 16, measured: 4.0 against 4.6 ms, then 31.6 against 27.9), at most 64.
TIMING_FLOPS = 50_000_000
MIN_SAMPLES_PER_THREAD = 4
#: The passes whose tiles the lane cost shapes.
PASSES = ("forward", "grad_input", "grad_weight")


@dataclass(frozen=True)
class Tuning:
    """A measured choice: ``lane_fmas`` per pass (only the passes whose plans differ), the
    median microseconds of every candidate of those passes, and what it was measured on."""

    lane_fmas: dict[str, int]
    timings_us: dict[str, dict[str, float]]
    batch: int
    threads: int
    seconds: float

    def summary(self) -> str:
        """One line per tuned pass: the choice and the times it was chosen by."""
        lines = []
        for name, times in self.timings_us.items():
            chosen = self.lane_fmas[name]
            others = ", ".join(f"{us:,.0f} us at {fmas}" for fmas, us in times.items()
                               if int(fmas) != chosen)
            lines.append(f"{name}: lane tiles costed at {chosen} multiply-adds per cycle, "
                         f"{times[str(chosen)]:,.0f} us (against {others}; batch "
                         f"{self.batch}, {self.threads} threads)")
        return "\n".join(lines)


def enabled(tune: bool | None) -> bool:
    """``tune`` if given, else whether ``CORRGEN_TUNE`` leaves tuning on (the default)."""
    if tune is not None:
        return bool(tune)
    return os.environ.get(TUNE_ENV, "1").strip().lower() not in ("0", "no", "off", "false")


def forward_flops(spec: LayerSpec) -> int:
    """Floating-point operations of one sample's forward pass (BENCH.md's count)."""
    return flops(spec, 1, "forward")


def applies(spec: LayerSpec, style: str, backend: Backend, tune: bool | None) -> bool:
    """Whether a load of ``spec`` in ``style`` on ``backend`` is tuned."""
    return (enabled(tune) and style == "loops" and backend.cpu_specific
            and forward_flops(spec) >= TUNE_MIN_FLOPS)


def differing_passes(spec: LayerSpec, dtype: str, machine: Machine) -> list[str]:
    """The passes whose plans differ between the ``LANE_FMAS`` assumptions."""
    plans = [plan(spec, DTYPES[dtype].itemsize, replace(machine, lane_fmas=f)).passes
             for f in LANE_FMAS]
    return [record.name for record, *others in zip(*plans)
            if record.name in PASSES and any(other != record for other in others)]


def _tuning_file(out: Path, spec: LayerSpec, dtype: str, backend: Backend,
                 threads: int) -> Path:
    key = request_key({"spec": spec.to_dict(), "dtype": dtype, "tuning": "lane_fmas",
                       "threads": threads}, backend)
    return out / ".tuning" / f"{key[:24]}.json"


def _time_passes(modules: dict[int, Any], names: list[str], spec: LayerSpec, dtype: str,
                 batch: int) -> dict[str, dict[str, float]]:
    """Median microseconds of pass ``name`` of every candidate module, runs interleaved."""
    V, K, b, G = reference.random_inputs(spec, batch, dtype, seed=0)
    calls = {"forward": lambda m: m.forward(V, K, b) if spec.bias else m.forward(V, K),
             "grad_input": lambda m: m.grad_input(K, G),
             "grad_weight": lambda m: m.grad_weight(V, G)}
    out: dict[str, dict[str, float]] = {}
    for name in names:
        samples: dict[int, list[float]] = {f: [] for f in modules}
        for module in modules.values():
            calls[name](module)
        for _ in range(RUNS):
            for fmas, module in modules.items():
                start = time.perf_counter()
                calls[name](module)
                samples[fmas].append(time.perf_counter() - start)
        out[name] = {str(f): statistics.median(s) * 1e6 for f, s in samples.items()}
    return out


def measure(spec: LayerSpec, dtype: str, names: list[str],
            build: Callable[[dict[str, int]], Any]) -> Tuning:
    """Build the candidates (``build(lane_fmas) -> module``), check them against the
    reference, time the ``names`` passes and keep the faster candidate of each."""
    from .check import check_module

    start = time.perf_counter()
    modules = {}
    for fmas in LANE_FMAS:
        module = build(dict.fromkeys(names, fmas))
        failed = [r for r in check_module(module, batch=2, seed=0) if not r.ok]
        if failed:
            raise AssertionError(f"tuning candidate (lane tiles at {fmas} multiply-adds per "
                                 f"cycle) of {spec.describe()} {dtype} does not match the "
                                 f"reference: {failed[0]}")
        modules[fmas] = module
    threads = int(next(iter(modules.values())).threads())
    batch = min(64, max(MIN_SAMPLES_PER_THREAD * threads,
                        TIMING_FLOPS // max(1, forward_flops(spec))))
    timings = _time_passes(modules, names, spec, dtype, batch)
    choice = {name: int(min(times, key=times.__getitem__)) for name, times in timings.items()}
    return Tuning(choice, timings, batch, threads, time.perf_counter() - start)


def tuned_lane_fmas(spec: LayerSpec, dtype: str, backend: Backend, out: Path,
                    build: Callable[[dict[str, int]], Any], threads: int,
                    progress: Callable[[str], None] | None = None) -> Tuning | None:
    """The stored tuning of ``spec`` on this machine, or a new one measured and stored;
    None when no pass's plan depends on the choice."""
    names = differing_passes(spec, dtype, host_machine())
    if not names:
        return None
    path = _tuning_file(out, spec, dtype, backend, threads)
    if path.is_file():
        data = json.loads(path.read_text())
        return Tuning(data["lane_fmas"], data["timings_us"], data["batch"], data["threads"],
                      data["seconds"])
    (progress or (lambda _: None))(f"tuning {', '.join(names)} on this CPU")
    tuning = measure(spec, dtype, names, build)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(asdict(tuning), indent=1).encode())
    return tuning


def threads_here() -> int:
    """The threads an OpenMP module will run on: ``OMP_NUM_THREADS`` or this process's
    CPUs (part of the tuning's key: a choice measured on 2 threads may not hold on 16)."""
    with contextlib.suppress(ValueError):
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "").split(",")[0]))
    return len(os.sched_getaffinity(0))
