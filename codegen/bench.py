"""Timing generated kernels against the NumPy reference and, when installed, PyTorch.

Each pass is timed side by side with its peers, interleaved run by run, after a warm-up,
for at least ``runs`` rounds and until corrgen's timings span ``SPAN_S`` seconds (NumPy
only in the first ``runs``); the median of the runs is reported (the machines are shared
and noisy: compare ratios), and the runs' quartiles, for the spread.
FLOPs per pass are ``2*N*O*HO*WO*C*KH*KW`` (forward, grad_input, grad_weight; BENCH.md)
and ``N*O*HO*WO`` for grad_bias.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from types import ModuleType
from typing import Any

from derive import __version__, reference
from derive.spec import LayerSpec

from .vocabulary import PASS_TABLE, flops

#: The benchmark layers of BENCH.md: id -> (spec, batch N).
LAYERS: dict[str, tuple[LayerSpec, int]] = {
    "S1": (LayerSpec(input=(1, 3, 3), kernel=(1, 1, 2, 2)), 1),
    "S2": (LayerSpec(input=(1, 28, 28), kernel=(8, 1, 3, 3)), 64),
    "S3": (LayerSpec(input=(3, 32, 32), kernel=(16, 3, 5, 5), padding=2), 64),
    "S4": (LayerSpec(input=(16, 32, 32), kernel=(32, 16, 3, 3), stride=2, padding=1), 32),
    "S5": (LayerSpec(input=(64, 56, 56), kernel=(64, 64, 3, 3), padding=1), 16),
    "S6": (LayerSpec(input=(256, 14, 14), kernel=(256, 256, 1, 1)), 16),
}

#: ``Row.algorithm`` of a pass computed by Winograd's algorithm, and the table's mark.
WINOGRAD, WINOGRAD_MARK = "winograd", " (W)"
WINOGRAD_NOTE = ("(W): Winograd's F(2x2, 3x3) (grad_weight: F(3x3, 2x2)), chosen by tuning; its "
                 "GFLOP/s and % peak count the direct sum's operations (BENCH.md), 2.25 times "
                 "the multiply-adds it computes. ")


@dataclass(frozen=True)
class Row:
    """One pass of one layer: the median times (µs) of corrgen and its peers.

    ``quartiles_us`` holds each contestant's first and third quartile of the runs (µs), by
    name (``corrgen``, ``numpy``, ``torch``); ``target`` the module's backend; ``algorithm``
    ``winograd`` when the pass ran Winograd's algorithm (its ``flops`` still count the
    direct sum's operations, as BENCH.md defines them), else empty. ``choice``: what tuning
    chose for the pass on this machine (``codegen.tune``: ``column_tile=1x4x2rw``,
    ``winograd=2``, ...), empty where the module was not tuned or the pass has one plan;
    ``tuning_s`` the seconds that tuning took when it measured (stored with the choice).
    ``peaks_gflops``: the multiply-add peak measured before and after the timings
    (``peak_gflops`` is the higher), when measured.
    """

    layer: str
    spec: str
    dtype: str
    batch: int
    threads: int
    name: str
    flops: int
    corrgen_us: float
    numpy_us: float
    torch_us: float | None
    peak_gflops: float | None = None
    target: str = "openmp"
    quartiles_us: dict[str, tuple[float, float]] = field(default_factory=dict, hash=False)
    algorithm: str = ""
    choice: str = ""
    tuning_s: float | None = None
    peaks_gflops: tuple[float, float] | None = None

    @property
    def gflops(self) -> float:
        return self.flops / self.corrgen_us / 1e3

    @property
    def percent_of_peak(self) -> float | None:
        """GFLOP/s as a percentage of the measured multiply-add peak (``codegen.peak``)."""
        return None if self.peak_gflops is None else 100 * self.gflops / self.peak_gflops

    @property
    def vs_numpy(self) -> float:
        """corrgen time / NumPy reference time (below 1: corrgen is faster)."""
        return self.corrgen_us / self.numpy_us

    @property
    def vs_torch(self) -> float | None:
        """corrgen time / PyTorch time, when PyTorch was measured."""
        return None if self.torch_us is None else self.corrgen_us / self.torch_us


def _torch_passes(spec: LayerSpec, threads: int, V: Any, K: Any, b: Any, G: Any
                  ) -> dict[str, Callable[[], Any]] | None:
    """PyTorch's CPU conv2d and its autograd backward kernel, per pass; None without torch."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return _torch_conv_passes(spec, torch, torch.from_numpy(V), torch.from_numpy(K),
                              torch.from_numpy(b) if b is not None else None,
                              torch.from_numpy(G))


def _torch_conv_passes(spec: LayerSpec, torch: Any, Vt: Any, Kt: Any, bt: Any, Gt: Any
                       ) -> dict[str, Callable[[], Any]]:
    """PyTorch's conv2d and its backward kernel, per pass, on tensors of any one device
    (oneDNN on the CPU, cuDNN on a GPU)."""
    import torch.nn.functional as F

    top, bottom, left, right = spec.pads
    if (top, left) != (bottom, right):  # uneven "same": pad once, outside the timing
        Vt = F.pad(Vt, (left, right, top, bottom))
        top = left = 0
    if spec.mode == "convolution":
        Kt = torch.flip(Kt, (2, 3)).contiguous()
    stride, padding, dilation = list(spec.stride), [top, left], list(spec.dilation)
    bias_sizes = [spec.kernel[0]] if spec.bias else None

    def backward(mask: list[bool]) -> Callable[[], Any]:
        return lambda: torch.ops.aten.convolution_backward(
            Gt, Vt, Kt, bias_sizes, stride, padding, dilation, False, [0, 0], 1, mask)

    passes = {  # the tensors need no gradient: no autograd graph is recorded
        "forward": lambda: F.conv2d(Vt, Kt, bt, stride, padding, dilation),
        "grad_input": backward([True, False, False]),
        "grad_weight": backward([False, True, False]),
    }
    if spec.bias:
        passes["grad_bias"] = backward([False, False, True])
    return passes


def _calls(owner: Any, arrays: dict[str, Any], bias: bool, *leading: Any
           ) -> dict[str, Callable[[], Any]]:
    """Every pass of ``owner`` (a module, its ``device``, ``derive.reference``) that a layer
    with or without ``bias`` has, as a call on ``arrays`` (after ``leading`` arguments)."""
    return {p.name: partial(getattr(owner, p.name), *leading, *(arrays[r] for r in p.reads))
            for p in PASS_TABLE if p.runs(bias)}


def _number(call: Callable[[], Any], at_least: float = 1e-3) -> int:
    """Calls per timing so that one timing lasts at least ``at_least`` seconds."""
    start = time.perf_counter()
    call()
    once = time.perf_counter() - start
    return max(1, int(at_least / max(once, 1e-9)))


def _time(call: Callable[[], Any], number: int) -> float:
    """Seconds per call over ``number`` calls, after one untimed call (it absorbs the wake-up
    of this contestant's threads after its peers ran)."""
    call()
    start = time.perf_counter()
    for _ in range(number):
        call()
    return (time.perf_counter() - start) / number


#: Seconds of samples the timed contestant gathers at least: the rounds go on past
#: ``runs`` (NumPy, only for scale, stops there) until corrgen's samples add up to this or
#: ``MAX_ROUNDS`` is reached. The shared machines have slow spells of 0.1-0.3 s that slow
#: every contestant 1.2-1.4x; seven rounds of a 1 ms pass span about 30 ms, so one spell
#: could cover most of them and move that pass's median (docs/bench-cpu.md).
SPAN_S = 0.5
MAX_ROUNDS = 101


def _rounds(contestants: dict[str, Callable[[], float]], runs: int, span_s: float
            ) -> dict[str, list[float]]:
    """Timings (s) of each contestant's ``contestants[who]()``, interleaved round by round:
    ``runs`` rounds of all, then rounds without NumPy until corrgen's timings add up to
    ``span_s`` seconds (at most ``MAX_ROUNDS`` rounds in all, unless ``runs`` asks for more)."""
    times: dict[str, list[float]] = {who: [] for who in contestants}
    for round_ in range(max(runs, MAX_ROUNDS)):
        if round_ >= runs and sum(times["corrgen"]) >= span_s:
            break
        for who, timing in contestants.items():
            if round_ < runs or who != "numpy":
                times[who].append(timing())
    return times


def summarize(times: dict[str, list[float]]
              ) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """Each contestant's median and (first, third) quartile of its timings, in µs (from
    seconds); a single timing is its own quartiles."""
    median = {who: statistics.median(t) * 1e6 for who, t in times.items()}
    quartiles = {}
    for who, t in times.items():
        q1, _, q3 = statistics.quantiles(t, n=4, method="inclusive") if len(t) > 1 else t * 3
        quartiles[who] = (q1 * 1e6, q3 * 1e6)
    return median, quartiles


def bench_module(module: ModuleType, batch: int, layer: str = "", runs: int = 7,
                 with_torch: bool = True, seed: int = 0, peak_gflops: float | None = None,
                 span_s: float = SPAN_S) -> list[Row]:
    """Time every pass of ``module`` and its peers, interleaved, at least ``runs`` times
    each and until corrgen's timings span ``span_s`` seconds (``_rounds``);
    ``peak_gflops``, when given, is the machine's peak the rows compare with."""
    spec: LayerSpec = module.spec
    V, K, b, G = reference.random_inputs(spec, batch, module.dtype, seed)
    threads = module.threads()
    arrays = {"V": V, "K": K, "b": b, "G": G}
    ours = _calls(module, arrays, spec.bias)
    numpy = _calls(reference, arrays, spec.bias, spec)
    torch = _torch_passes(spec, threads, V, K, b, G) if with_torch else None
    from .blocking.layer import WINOGRAD_CHOICE

    tuning = getattr(module, "tuning", None)
    choices = getattr(tuning, "choices", None) or {}
    rows = []
    for name in ours:
        contestants = {"corrgen": ours[name], "numpy": numpy[name]}
        if torch is not None:
            contestants["torch"] = torch[name]
        for call in contestants.values():  # warm-up
            call()
        timings = {who: partial(_time, call, _number(call))
                   for who, call in contestants.items()}
        times = _rounds(timings, runs, span_s)
        median, quartiles = summarize(times)
        rows.append(Row(layer, spec.describe(), module.dtype, batch, threads, name,
                        flops(spec, batch, name), median["corrgen"], median["numpy"],
                        median.get("torch"), peak_gflops, "openmp", quartiles,
                        WINOGRAD if choices.get(name, "").startswith(WINOGRAD_CHOICE) else "",
                        choices.get(name, ""), tuning.seconds if choices else None))
    return rows


def _fmt(value: float | None, digits: str = ".2f") -> str:
    return "—" if value is None else format(value, digits)


def table(rows: list[Row]) -> str:
    """The rows as a markdown table."""
    lines = ["| layer | dtype | N | pass | corrgen µs | GFLOP/s | % peak | NumPy µs | ÷ NumPy | "
             "PyTorch µs | ÷ PyTorch | threads |",
             "| --- | --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
        lines.append(
            f"| {r.layer or r.spec} | {r.dtype} | {r.batch} | "
            f"{r.name}{WINOGRAD_MARK if r.algorithm == WINOGRAD else ''} | {r.corrgen_us:.1f} | "
            f"{r.gflops:.2f} | {_fmt(r.percent_of_peak, '.1f')} | {r.numpy_us:.1f} | "
            f"{r.vs_numpy:.3f} | "
            f"{_fmt(r.torch_us, '.1f')} | {_fmt(r.vs_torch, '.3f')} | {r.threads} |")
    return "\n".join(lines)


def tuning_lines(rows: list[Row]) -> list[str]:
    """One line per tuned module of ``rows``: its layer and dtype, each tuned pass's choice,
    and how long tuning took; none where no module was tuned."""
    modules: dict[tuple[str, str, int], list[Row]] = {}
    for r in rows:
        if r.choice:
            modules.setdefault((r.layer or r.spec, r.dtype, r.threads), []).append(r)
    return [f"{layer} {dtype}, {threads} threads: "
            + ", ".join(f"{r.name} {r.choice}" for r in tuned)
            + f" (tuned in {tuned[0].tuning_s:.1f} s)"
            for (layer, dtype, threads), tuned in modules.items()]


def describe_machine() -> dict[str, Any]:
    """What the numbers were taken on."""
    import numpy as np

    info: dict[str, Any] = {"corrgen": __version__, "python": platform.python_version(),
                            "numpy": np.__version__, "machine": platform.machine(),
                            "processor": _cpu_name(), "logical CPUs": os.cpu_count(),
                            "vectors": _vector_isa()}
    try:
        import torch

        info["torch"] = torch.__version__
    except ImportError:
        info["torch"] = None
    return info


def _cpuinfo(field: str) -> str | None:
    """The value of the first ``field`` line of ``/proc/cpuinfo``, if there is one."""
    try:
        with open("/proc/cpuinfo") as fh:
            for line in fh:
                if line.startswith(field):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return None


def _vector_isa() -> str | None:
    """The widest x86 vector extension the CPU reports (``avx512f``, ``avx2``), if any."""
    flags = (_cpuinfo("flags") or "").split()
    return next((isa for isa in ("avx512f", "avx2", "avx", "sse4_2") if isa in flags), None)


def _cpu_name() -> str:
    return _cpuinfo("model name") or platform.processor()


#: Environment under which interleaved timings are fair: NumPy's OpenBLAS worker threads
#: otherwise spin for a while after each call and take a core from whichever contestant
#: runs next (measured: S6 float32 forward 6.0 ms interleaved, 2.0 ms alone).
QUIET_PEERS_ENV = {"OPENBLAS_THREAD_TIMEOUT": "4"}
QUIET_PEERS_NOTE = ("NumPy's OpenBLAS threads stop spinning right after each call "
                    "(OPENBLAS_THREAD_TIMEOUT=4), so that no contestant slows the next.")


#: When the peak measured after the timings and the one measured before differ by more than
#: this fraction of the higher, the reports say so: the Xeon host of a GPU machine measured
#: 244 GFLOP/s in one process and 321 in the next on 2 threads, and a module's times moved
#: 1.9-fold between them (docs/bench-cpu.md).
PEAK_SPREAD = 0.10


def unsteady_peaks_note(peaks: dict[str, tuple[float, float]]) -> str:
    """A sentence for the reports when, for some dtype, the peaks measured before and after
    the timings (``peaks``: dtype -> (before, after) GFLOP/s) differ by more than
    ``PEAK_SPREAD``; else empty."""
    unsteady = {dtype: pair for dtype, pair in peaks.items()
                if max(pair) - min(pair) > PEAK_SPREAD * max(pair)}
    if not unsteady:
        return ""
    return ("The multiply-add peak measured before and after the timings differed by more "
            f"than {100 * PEAK_SPREAD:.0f} % ("
            + ", ".join(f"{dtype}: {before:.0f} then {after:.0f} GFLOP/s"
                        for dtype, (before, after) in unsteady.items())
            + "): this machine's speed changed during the run, so each % of peak may be off "
            "by as much; the ratios, timed side by side in interleaved rounds, hold. ")


def _peaks_line(rows: list[Row]) -> str:
    peaks = {(r.dtype, r.threads): r.peak_gflops for r in rows if r.peak_gflops is not None}
    if not peaks:
        return ""
    return ("% peak divides by the multiply-add peak measured in the same run (codegen.peak; "
            "before and after the timings, the higher kept): "
            + ", ".join(f"{gflops:.0f} GFLOP/s {dtype} on {threads} threads"
                        for (dtype, threads), gflops in sorted(peaks.items())) + ". "
            + unsteady_peaks_note({r.dtype: r.peaks_gflops for r in rows if r.peaks_gflops}))


def markdown(rows: list[Row]) -> str:
    """A markdown report: what it ran on, then the table; ratios below 1 favour corrgen."""
    info = describe_machine()
    head = ", ".join(f"{k} {v}" for k, v in info.items() if v is not None)
    return (f"# corrgen bench\n\n{head}; {time.strftime('%Y-%m-%d %H:%M')}.\n\n"
            f"Median of interleaved runs after a warm-up "
            f"(--runs rounds, then more without NumPy until corrgen's timings add up to "
            f"{SPAN_S:g} s); ÷ columns are time ratios "
            f"(below 1: corrgen is faster). {_peaks_line(rows)}"
            f"{WINOGRAD_NOTE if any(r.algorithm == WINOGRAD for r in rows) else ''}"
            f"{QUIET_PEERS_NOTE}\n\n"
            f"{table(rows)}\n{_tuning_section(rows)}")


def _tuning_section(rows: list[Row]) -> str:
    lines = tuning_lines(rows)
    if not lines:
        return ""
    return ("\nTuned on this machine (codegen.tune; the choices a pass could take are "
            "codegen.blocking.candidates):\n\n" + "".join(f"- {line}\n" for line in lines))


def document(rows: list[Row]) -> dict[str, Any]:
    """The machine description and the rows, as JSON-ready data: what ``to_json`` writes
    and ``codegen.bench_plot`` draws."""
    return {"machine": describe_machine(), "rows": [
        {**asdict(r), "gflops": r.gflops, "percent_of_peak": r.percent_of_peak,
         "vs_numpy": r.vs_numpy, "vs_torch": r.vs_torch}
        for r in rows]}


def to_json(rows: list[Row]) -> str:
    """The rows and the machine description as JSON (``document``)."""
    return json.dumps(document(rows), indent=1)


# -- CUDA modules ---------------------------------------------------------------------------------


def _torch_cuda() -> Any:
    """PyTorch, when it is installed with a usable CUDA device; else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def _time_synchronized(call: Callable[[], Any], number: int, sync: Callable[[], Any]) -> float:
    """Seconds per call over ``number`` calls queued back to back, waiting for the GPU to
    finish before the clock starts and before it stops (one untimed call first)."""
    call()
    sync()
    start = time.perf_counter()
    for _ in range(number):
        call()
    sync()
    return (time.perf_counter() - start) / number


def _then(call: Callable[[], Any], sync: Callable[[], Any]) -> Callable[[], Any]:
    """``call`` followed by ``sync``, as one call."""
    return lambda: (call(), sync())


def bench_cuda_module(module: ModuleType, batch: int, layer: str = "", runs: int = 7,
                      with_torch: bool = True, seed: int = 0, peak_gflops: float | None = None,
                      span_s: float = SPAN_S) -> list[Row]:
    """Time every pass of a CUDA module, interleaved with its peers, as ``bench_module``.

    With PyTorch and a CUDA device, corrgen's ``device`` entry points run on PyTorch CUDA
    tensors (no copies; every timing waits for the GPU) against PyTorch's CUDA convolution
    (cuDNN) on the same tensors. Without PyTorch's CUDA, the module's NumPy functions are
    timed, their copies to the GPU and back included, and PyTorch is left out. The NumPy
    reference on the host is always timed, for scale. The rows' thread count is the
    module's (1: the host side of a call). ``peak_gflops``: the GPU's peak, when known.
    """
    spec: LayerSpec = module.spec
    V, K, b, G = reference.random_inputs(spec, batch, module.dtype, seed)
    torch = _torch_cuda()
    arrays = {"V": V, "K": K, "b": b, "G": G}
    numpy = _calls(reference, arrays, spec.bias, spec)
    theirs: dict[str, Callable[[], Any]] | None = None
    if torch is not None:
        Vt, Kt, Gt = (torch.from_numpy(x).cuda() for x in (V, K, G))
        bt = None if b is None else torch.from_numpy(b).cuda()
        ours = _calls(module.device, {"V": Vt, "K": Kt, "b": bt, "G": Gt}, spec.bias)
        if with_torch:
            theirs = _torch_conv_passes(spec, torch, Vt, Kt, bt, Gt)
        sync: Callable[[], Any] = torch.cuda.synchronize
    else:
        ours = _calls(module, arrays, spec.bias)
        sync = module.synchronize
    rows = []
    for name in numpy:
        contestants = {"corrgen": ours[name], "numpy": numpy[name]}
        if theirs is not None:
            contestants["torch"] = theirs[name]
        for call in contestants.values():  # warm-up
            call()
        sync()
        timings = {who: partial(_time_synchronized, call, _number(_then(call, sync)), sync)
                   for who, call in contestants.items()}
        times = _rounds(timings, runs, span_s)
        median, quartiles = summarize(times)
        rows.append(Row(layer, spec.describe(), module.dtype, batch, module.threads(), name,
                        flops(spec, batch, name), median["corrgen"], median["numpy"],
                        median.get("torch"), peak_gflops, "cuda", quartiles))
    return rows


def bench_for(module: ModuleType) -> Callable[..., list[Row]]:
    """The timing function for a module's target: ``bench_cuda_module`` or ``bench_module``."""
    return bench_cuda_module if getattr(module, "target", "") == "cuda" else bench_module
