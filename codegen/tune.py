"""Tile choices measured on the machine that builds the module (OpenMP ``loops`` style).

The cost models of ``codegen.blocking`` pick each tile from a handful of cycle counts, and
some of what they assume does not carry from one CPU to another. How many lane-vector
multiply-adds a cycle retires: Zen 4 runs a 512-bit one as two halves (one a cycle), a
256-bit one retires two a cycle on Zen 3 and most Xeons, and which tile that favours (more
channels per tile, or more pixels) is then a matter of loads and spills the model does not
see. And which register tile of a matrix product (1x1 layers) is fastest: the model's
choice took 1.15 times as long as two others on a Zen 3. So when a layer is
large enough for it to pay, ``tuned_choices`` builds the module with each candidate
(``codegen.blocking.candidates``: for each pass, the model's choice first), checks each
against the NumPy reference, times every pass whose plans differ, and keeps, pass by pass,
the fastest. Where the model's choice and its closest rival come within ``MODEL_MARGIN`` of
each other, a runoff of paired rounds settles it (``near_tie``, ``_runoff``). The choice is
stored under the module folder's ``.tuning/``, keyed by the request, this CPU (model, flags,
vector unit) and the thread count, so a later load reads it in milliseconds.

Off: ``tune=False`` (``codegen.load``), ``--no-tune`` (CLI), or ``CORRGEN_TUNE=0``.
"""

from __future__ import annotations

import contextlib
import json
import os
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from derive.spec import LayerSpec

from .backends import Backend
from .build import request_key
from .machine import host_machine
from .paths import write_atomic
from .vocabulary import DTYPES, flops

#: Turns tuning off when "0" (or "no", "off", "false").
TUNE_ENV = "CORRGEN_TUNE"
#: Layers of fewer forward floating-point operations per sample are not tuned: their
#: passes take microseconds, and the two builds would cost more than they could save.
TUNE_MIN_FLOPS = 1 << 20
#: Each candidate pass is timed this many times (after one warm-up run), interleaved, and
#: ranked by its fastest run: on a shared machine other work only ever adds time, and a
#: median of 5 once ranked S6's float64 forward tiles the wrong way round (the model's 2x5
#: kept at 7.2 ms where 6x2 ran in 6.3).
RUNS = 7
#: A run calls the pass often enough to take about this long (once for passes that take
#: longer): ranked by its fastest single call (0.4 ms), S4's grad_weight once kept the
#: candidate that took 1.16 times the other's time at the benchmark's batch.
RUN_SECONDS = 0.01
#: The timing batch: enough samples for about this many forward operations, at least 8 per
#: thread, at most 64. Small batches rank tiles differently from the benchmark's: one
#: sample on 2 threads ranked S5's forward tiles the other way round from 16 (4.0 against
#: 4.6 ms, then 31.6 against 27.9), and so did 4 per thread later (2x2x3 kept at 12.3 ms
#: over 1x2x4 at 13.0, which at 16 samples took 26.8 ms against 28.8).
TIMING_FLOPS = 50_000_000
MIN_SAMPLES_PER_THREAD = 8
#: Another candidate replaces the cost model's choice outright only when its fastest run is
#: faster by more than this fraction; closer than that, fastest runs on these shared machines
#: rank two tiles either way. S6's float32 forward kept the model's tile=4x5 in four tunings
#: on a Zen 4, 2-3 % ahead of 8x3, then 8x3 in a fifth, 2.4 % ahead; with it the benchmark's
#: forward took 2014-2167 us in three runs, against 1955 with 4x5 earlier that day
#: (docs/tiles.md).
MODEL_MARGIN = 0.03
#: Within that margin (either way round) the model's choice and its closest rival are timed
#: again in this many paired rounds, each round one run of each, in alternating order, and
#: the rival is kept when the median of its time ÷ the model's, round by round, is under
#: 1 - RUNOFF_MARGIN. A round's two runs share the machine's minute, so the ratio holds
#: where the fastest runs alone drift. Without it, S6's float32 grad_input kept the model's
#: packed 4x5 in 5 of 7 benchmark runs on a Zen 4 (forward in 2), where the transposed 8x3t
#: took 0.962-0.967 of its time (forward 0.981-0.983; three runs of about 1250 interleaved
#: calls each; docs/tiles.md).
RUNOFF_ROUNDS = 21
RUNOFF_MARGIN = 0.01


@dataclass(frozen=True)
class Tuning:
    """A measured choice: per pass (only those whose plans differ), the choice kept
    (``codegen.blocking.candidates``), the fastest run in microseconds of every candidate of
    those passes, and what it was measured on."""

    choices: dict[str, str]
    timings_us: dict[str, dict[str, float]]
    batch: int
    threads: int
    seconds: float
    #: Per pass with a near tie (``near_tie``): its rival and the median of the rival's time
    #: ÷ the model's choice's in the runoff's rounds.
    runoffs: dict[str, dict[str, float]] = field(default_factory=dict)

    def summary(self) -> str:
        """One line per tuned pass: the choice and the times it was chosen by."""
        lines = []
        for name, times in self.timings_us.items():
            chosen = self.choices[name]
            others = ", ".join(f"{us:,.0f} us with {choice}" for choice, us in times.items()
                               if choice != chosen)
            model = next(iter(times))
            why = ""
            if name in self.runoffs:
                ((rival, ratio),) = self.runoffs[name].items()
                why = (f"; a near tie: in {RUNOFF_ROUNDS} paired rounds {rival} took {ratio:.3f}"
                       f" of {model}'s time")
            lines.append(f"{name}: {chosen}, {times[chosen]:,.0f} us (against {others}; "
                         f"batch {self.batch}, {self.threads} threads{why})")
        return "\n".join(lines)


def near_tie(times: dict[str, float]) -> str | None:
    """Of a pass's candidates' fastest runs (µs, the cost model's choice first, as
    ``codegen.blocking.candidates`` orders them), the model's closest rival when the two are
    within ``MODEL_MARGIN`` of each other, either way round (a runoff settles it); None when
    one of them is clearly faster, or there is no rival."""
    model, *others = times
    if not others:
        return None
    rival = min(others, key=times.__getitem__)
    low, high = sorted((times[model], times[rival]))
    return rival if high <= low * (1 + MODEL_MARGIN) else None


def kept_choice(times: dict[str, float], runoff: dict[str, float] | None = None) -> str:
    """The choice kept from a pass's fastest runs (as ``near_tie`` takes them): the fastest,
    unless the model's choice and its rival are a near tie; then the rival if ``runoff``
    (``{rival: median ratio of its time to the model's}``) has it faster by more than
    ``RUNOFF_MARGIN``, else the model's choice."""
    model = next(iter(times))
    rival = near_tie(times)
    if rival is None:
        return min(times, key=times.__getitem__)
    return rival if (runoff or {}).get(rival, 1.0) < 1 - RUNOFF_MARGIN else model


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


def _tuning_file(out: Path, spec: LayerSpec, dtype: str, backend: Backend,
                 threads: int) -> Path:
    key = request_key({"spec": spec.to_dict(), "dtype": dtype, "tuning": "choices",
                       "threads": threads}, backend)
    return out / ".tuning" / f"{key[:24]}.json"


def _time_passes(modules: list[Any], names: list[str], spec: LayerSpec, dtype: str,
                 batch: int) -> dict[str, list[float]]:
    """The fastest run, in microseconds per call, of each pass of every candidate module,
    runs interleaved; every module's run of a pass makes as many calls (``RUN_SECONDS``)."""
    out: dict[str, list[float]] = {}
    for name in names:
        call, number = _pass_calls(modules, name, spec, dtype, batch)
        samples: list[list[float]] = [[] for _ in modules]
        for _ in range(RUNS):
            for i, module in enumerate(modules):
                samples[i].append(_run(call, module, number))
        out[name] = [min(s) * 1e6 for s in samples]
    return out


def _pass_calls(modules: list[Any], name: str, spec: LayerSpec, dtype: str,
                batch: int) -> tuple[Callable[[Any], object], int]:
    """Pass ``name`` as a call of a module on random arrays of ``batch`` samples, and how
    many calls make a run of every module (``RUN_SECONDS``, by the slowest's first call)."""
    from derive import reference

    V, K, b, G = reference.random_inputs(spec, batch, dtype, seed=0)
    call = {"forward": lambda m: m.forward(V, K, b) if spec.bias else m.forward(V, K),
            "grad_input": lambda m: m.grad_input(K, G),
            "grad_weight": lambda m: m.grad_weight(V, G)}[name]
    slowest = 0.0
    for module in modules:
        start = time.perf_counter()
        call(module)
        slowest = max(slowest, time.perf_counter() - start)
    return call, max(1, round(RUN_SECONDS / max(slowest, 1e-9)))


def _run(call: Callable[[Any], object], module: Any, number: int) -> float:
    """Seconds per call of ``number`` calls in a row."""
    start = time.perf_counter()
    for _ in range(number):
        call(module)
    return (time.perf_counter() - start) / number


def _runoff(model: Any, rival: Any, name: str, spec: LayerSpec, dtype: str,
            batch: int) -> float:
    """The median, over ``RUNOFF_ROUNDS`` rounds, of ``rival``'s time ÷ ``model``'s for pass
    ``name``; each round runs both, the first of them alternating from round to round."""
    call, number = _pass_calls([model, rival], name, spec, dtype, batch)
    ratios = []
    for round_ in range(RUNOFF_ROUNDS):
        if round_ % 2:
            rival_s, model_s = _run(call, rival, number), _run(call, model, number)
        else:
            model_s, rival_s = _run(call, model, number), _run(call, rival, number)
        ratios.append(rival_s / model_s)
    return statistics.median(ratios)


def candidate_builds(options: dict[str, tuple[str, ...]]) -> list[dict[str, str]]:
    """The modules tuning builds for ``options``: the i-th takes each pass's i-th option, or
    its last (a module's passes each run their own plan, so one build times an option of
    every pass)."""
    return [{name: o[min(i, len(o) - 1)] for name, o in options.items()}
            for i in range(max(map(len, options.values()), default=0))]


def measure(spec: LayerSpec, dtype: str, options: dict[str, tuple[str, ...]],
            build: Callable[[dict[str, str]], Any]) -> Tuning:
    """Build the candidates (``build(choices) -> module``, one per ``candidate_builds``),
    check them against the reference, time the passes of ``options``,
    run off each near tie (``near_tie``, ``_runoff``) and keep one option of each
    (``kept_choice``)."""
    from .check import check_module

    start = time.perf_counter()
    modules, built = [], []
    for choices in candidate_builds(options):
        module = build(choices)
        failed = [r for r in check_module(module, batch=2, seed=0) if not r.ok]
        if failed:
            raise AssertionError(f"tuning candidate ({', '.join(choices.values())}) of "
                                 f"{spec.describe()} {dtype} does not match the reference: "
                                 f"{failed[0]}")
        modules.append(module)
        built.append(choices)
    threads = int(modules[0].threads())
    batch = min(64, max(MIN_SAMPLES_PER_THREAD * threads,
                        TIMING_FLOPS // max(1, forward_flops(spec))))
    timings = _time_passes(modules, list(options), spec, dtype, batch)
    per_choice = {name: {} for name in options}
    for name, times in timings.items():
        for choices, us in zip(built, times):
            per_choice[name].setdefault(choices[name], us)
    runoffs = {}
    for name, times in per_choice.items():
        rival = near_tie(times)
        if rival is not None:
            # the first module built with each choice: a pass runs only its own plan
            first = {}
            for module, choices in zip(modules, built):
                first.setdefault(choices[name], module)
            runoffs[name] = {rival: _runoff(first[next(iter(times))], first[rival], name,
                                            spec, dtype, batch)}
    kept = {name: kept_choice(times, runoffs.get(name)) for name, times in per_choice.items()}
    return Tuning(kept, per_choice, batch, threads, time.perf_counter() - start, runoffs)


def tuned_choices(spec: LayerSpec, dtype: str, backend: Backend, out: Path,
                  build: Callable[[dict[str, str]], Any], threads: int,
                  progress: Callable[[str], None] | None = None) -> Tuning | None:
    """The stored tuning of ``spec`` on this machine, or a new one measured and stored;
    None when no pass's plan depends on the choice (stored too, as a tuning of no choices).

    A stored tuning is read without the cost models: importing ``codegen.blocking`` took
    a new process's load of S5 from 46-48 to 70-114 ms. Its file's name holds the
    generator's fingerprint, so the candidates it timed are this code's."""
    path = _tuning_file(out, spec, dtype, backend, threads)
    stored = _stored(path)
    if stored is not None:
        return stored if stored.choices else None
    from .blocking import candidates

    options = candidates(spec, DTYPES[dtype].itemsize, host_machine())
    if options:
        note = (" (the stored tuning was unreadable, or did not keep the choice its own "
                "timings give)" if path.is_file() else "")
        (progress or (lambda _: None))(f"tuning {', '.join(options)} on this CPU{note}")
        tuning = measure(spec, dtype, options, build)
    else:
        tuning = Tuning({}, {}, 0, threads, 0.0)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(asdict(tuning), indent=1).encode())
    return tuning if options else None


def _stored(path: Path) -> Tuning | None:
    """The tuning stored at ``path`` when it reads whole and kept, for each pass it timed,
    the choice its timings and runoff give (``kept_choice``), with a runoff exactly where its
    timings were a near tie; else None (it is measured again: a damaged or
    edited file must not pick a plan that was never checked against the reference)."""
    try:
        data = json.loads(path.read_text())
        tuning = Tuning(data["choices"], data["timings_us"], data["batch"], data["threads"],
                        data["seconds"], data["runoffs"])
        timings, runoffs = tuning.timings_us, tuning.runoffs
        if set(tuning.choices) != set(timings) or any(
                set(runoffs.get(name, {})) != ({near_tie(times)} - {None})
                or tuning.choices[name] != kept_choice(times, runoffs.get(name))
                for name, times in timings.items()):
            return None
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return None
    return tuning


def threads_here() -> int:
    """The threads an OpenMP module will run on: ``OMP_NUM_THREADS`` or this process's
    CPUs (part of the tuning's key: a choice measured on 2 threads may not hold on 16)."""
    with contextlib.suppress(ValueError):
        return max(1, int(os.environ.get("OMP_NUM_THREADS", "").split(",")[0]))
    return len(os.sched_getaffinity(0))
