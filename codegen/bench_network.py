"""Timing a network's training step: the generated module against NumPy and PyTorch.

``bench_network`` times one SGD step (forward, loss, backward, update) three ways on the same
batch from the same starting parameters: the generated network module's ``step``, the NumPy
reference's ``step`` (``derive.reference.network``), and the network's PyTorch twin
(``codegen.torch_network``) stepped as PyTorch users write it, ``zero_grad``, forward, loss,
``backward``, ``torch.optim.SGD.step``. Each contestant owns a copy of the parameters, which
drift with every step (a small learning rate keeps them sane); that is work of the same size
every time.

The timing is ``codegen.bench``'s: a warm-up, then rounds in which every contestant runs once
in turn (so a slow spell of the shared machine hits all alike), and the median of the rounds
(with their quartiles, for the spread).
The work of a step is counted as in BENCH.md, ``2*N*O*HO*WO*C*KH*KW`` per pass of each conv
and dense layer (a dense layer being the correlation of its ``(D, 1, 1)`` input with an
``(N, D, 1, 1)`` kernel): the forward pass, the weight gradient, and the input gradient where
the step needs it, below a layer with parameters (never for the first one). Bias sums,
activations, pools, the loss and the update are left out: they are a small share and no
peak to compare with.
"""

from __future__ import annotations

import importlib
import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from typing import Any

import numpy as np

from derive import reference
from derive.network import Network

from .bench import (
    QUIET_PEERS_ENV,
    QUIET_PEERS_NOTE,
    SPAN_S,
    _cpu_name,
    _fmt,
    _number,
    _rounds,
    _time,
    describe_machine,
    flops,
    summarize,
    unsteady_peaks_note,
)
from .vocabulary import DTYPE_NAMES

__all__ = ["CONTESTANTS", "NETWORK_ENV", "NetworkTiming", "bench_network", "document",
           "markdown", "network_flops", "table", "to_json"]

#: The contestants, in the order they run in every round.
CONTESTANTS = ("corrgen", "numpy", "torch")
#: Threads for PyTorch when the module does not say how many it runs on.
DEFAULT_THREADS = 2
#: The environment ``corrgen bench --network`` runs under, where the user has not set it:
#: OpenBLAS quiet between calls (``codegen.bench``), and every contestant on 2 threads (the
#: OpenMP kernels and NumPy's OpenBLAS read OMP_NUM_THREADS; PyTorch is told the same).
NETWORK_ENV = {**QUIET_PEERS_ENV, "OMP_NUM_THREADS": str(DEFAULT_THREADS)}
#: What the PyTorch column says when PyTorch did not run.
NOT_INSTALLED = "not installed"
LEFT_OUT = "left out"


@dataclass(frozen=True)
class NetworkTiming:
    """One contestant's step on one network, dtype and batch.

    Attributes:
        contestant: ``"corrgen"``, ``"numpy"`` or ``"torch"``.
        threads: the threads it ran on (corrgen: the module's; NumPy: the module's count,
            which OMP_NUM_THREADS gives OpenBLAS too; PyTorch: ``torch.get_num_threads()``).
        flops: floating-point operations of one step (``network_flops``).
        us: the median µs of one step; None when it did not run (``note`` says why).
        vs_torch, vs_numpy: ``us`` divided by PyTorch's and NumPy's (below 1: faster).
        peak_gflops: the machine's multiply-add peak for this dtype, when measured.
        peaks_gflops: that peak measured before and after the timings (``peak_gflops`` is
            the higher), when measured.
        target: the generated module's backend.
        quartiles_us: the first and third quartile of the rounds (µs); None when it did not
            run.
    """

    network: str
    dtype: str
    batch: int
    contestant: str
    threads: int
    flops: int
    us: float | None
    vs_torch: float | None
    vs_numpy: float | None
    note: str = ""
    peak_gflops: float | None = None
    target: str = "openmp"
    quartiles_us: tuple[float, float] | None = None
    peaks_gflops: tuple[float, float] | None = None

    @property
    def gflops(self) -> float | None:
        return None if self.us is None else self.flops / self.us / 1e3

    @property
    def percent_of_peak(self) -> float | None:
        if self.peak_gflops is None or self.gflops is None:
            return None
        return 100 * self.gflops / self.peak_gflops


def network_flops(net: Network | str, batch: int) -> int:
    """Floating-point operations of one training step of ``net`` on ``batch`` samples
    (the module docstring says what is counted)."""
    net = Network.parse(net) if isinstance(net, str) else net
    total, below_params = 0, False
    for layer in net.layers:
        if layer.spec is None:
            continue
        passes = ["forward", "grad_weight"] + (["grad_input"] if below_params else [])
        total += sum(flops(layer.spec, batch, name) for name in passes)
        below_params = True
    return total


def _data(net: Network, batch: int, dtype: str, seed: int
          ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """A batch, targets of the loss's kind, and PyTorch-style initial parameters, all from
    one seeded generator, in ``dtype`` (class indices: int64)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch, *net.input)).astype(dtype)
    if net.loss == "softmax-ce":
        T = rng.integers(0, net.output_shape[0], size=batch, dtype=np.int64)
    elif net.loss == "bce":
        T = rng.uniform(0, 1, size=(batch, *net.output_shape)).astype(dtype)
    else:
        T = rng.standard_normal((batch, *net.output_shape)).astype(dtype)
    params = {name: value.astype(dtype) for name, value in net.init_params(seed + 1).items()}
    return X, T, params


def _copy(params: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    return {name: value.copy() for name, value in params.items()}


def _torch_or_none() -> Any:
    try:
        import torch
    except ImportError:
        return None
    return torch


def _default_load(net: Network, target: str, dtype: str) -> Any:
    # Resolved at call time: the network module may be installed (or replaced) after import.
    return importlib.import_module("codegen").load_network(net, target, dtype)


def _check_arguments(net: Any, batch: Any, dtype: Any, repeats: Any, lr: Any, threads: Any
                     ) -> Network:
    if isinstance(net, str):
        net = Network.parse(net)
    if not isinstance(net, Network):
        raise TypeError(f"net: expected a derive.Network or its text form, got "
                        f"{type(net).__name__}")
    if not net.params():
        raise ValueError(f"net: {net.text()!r} has no parameters, so a step has nothing to "
                         f"train (add a conv or dense layer)")
    given = {"batch": batch, "repeats": repeats}
    if threads is not None:
        given["threads"] = threads
    for name, value in given.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name}: expected an integer >= 1, got {value!r}")
    if dtype not in DTYPE_NAMES:
        raise ValueError(f"dtype: expected one of {', '.join(DTYPE_NAMES)}, got {dtype!r}")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < float("inf"):
        raise ValueError(f"lr: expected a positive finite number, got {lr!r}")
    return net


def _round_robin(contestants: dict[str, Callable[[], Any]], repeats: int
                 ) -> tuple[dict[str, float], dict[str, tuple[float, float]]]:
    """The median µs per call of each contestant over at least ``repeats`` rounds, one timing
    of each per round, after a warm-up call of each (``codegen.bench._rounds``: NumPy stops
    after ``repeats``, the others go on until corrgen's timings span ``SPAN_S``); and their
    quartiles (``codegen.bench.summarize``)."""
    for call in contestants.values():
        call()
    timings = {who: partial(_time, call, _number(call)) for who, call in contestants.items()}
    return summarize(_rounds(timings, repeats, SPAN_S))


def _torch_step(torch: Any, net: Network, dtype: str, X: np.ndarray, T: np.ndarray,
                params: dict[str, np.ndarray], lr: float) -> Callable[[], Any]:
    from .torch_network import load_params, sgd_step, torch_model

    model = torch_model(net, dtype)
    load_params(model, params)
    return sgd_step(model, X, T, lr)


def bench_network(net: Network | str, batch: int, dtype: str, target: str = "openmp",
                  repeats: int = 7, load: Callable[[Network, str, str], Any] | None = None,
                  seed: int = 0, *, lr: float = 1e-3, threads: int | None = None,
                  with_torch: bool = True, peak_gflops: float | None = None
                  ) -> list[NetworkTiming]:
    """Time one training step of ``net`` three ways; one ``NetworkTiming`` per contestant
    (``CONTESTANTS`` order).

    ``load(net, target, dtype)`` gives the generated module (default:
    ``codegen.load_network``). PyTorch runs on ``threads`` threads (default: the module's
    ``threads()``, else 2), restored afterwards; without PyTorch (or with ``with_torch``
    False) its timing has ``us`` None and a ``note``. ``repeats``: timed rounds at least (the
    median needs 7 to mean much; fewer are accepted for quick checks), then more without
    NumPy until corrgen's timings add up to ``SPAN_S`` (``_round_robin``).
    """
    net = _check_arguments(net, batch, dtype, repeats, lr, threads)
    module = (load or _default_load)(net, target, dtype)
    if getattr(module, "dtype", dtype) != dtype:
        raise ValueError(f"load: asked for a {dtype} module of {net.text()!r}, got "
                         f"{module.dtype}")
    ours = int(module.threads()) if callable(getattr(module, "threads", None)) else None
    threads = threads or ours or DEFAULT_THREADS
    X, T, params = _data(net, batch, dtype, seed)
    numpy_module = reference.network(net)
    mine, theirs = _copy(params), _copy(params)
    contestants: dict[str, Callable[[], Any]] = {
        "corrgen": lambda: module.step(X, T, mine, lr),
        "numpy": lambda: numpy_module.step(X, T, theirs, lr)}
    torch = _torch_or_none() if with_torch else None
    note = "" if torch is not None else (NOT_INSTALLED if with_torch else LEFT_OUT)
    previous = torch.get_num_threads() if torch is not None else None
    try:
        if torch is not None:
            torch.set_num_threads(threads)
            contestants["torch"] = _torch_step(torch, net, dtype, X, T, _copy(params), lr)
        median, quartiles = _round_robin(contestants, repeats)
    finally:
        if previous is not None:
            torch.set_num_threads(previous)
    work = network_flops(net, batch)
    found = {"corrgen": ours or threads, "numpy": ours or threads, "torch": threads}
    return [NetworkTiming(
        net.text(), dtype, batch, who, found[who], work, median.get(who),
        _ratio(median.get(who), median.get("torch")), _ratio(median.get(who), median["numpy"]),
        note if who == "torch" else "", peak_gflops, target, quartiles.get(who))
        for who in CONTESTANTS]


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a / b


# -- reports ----------------------------------------------------------------------------------


def _by_dtype(timings: list[NetworkTiming]) -> dict[tuple[str, str, int], dict[str, Any]]:
    rows: dict[tuple[str, str, int], dict[str, Any]] = {}
    for t in timings:
        rows.setdefault((t.network, t.dtype, t.batch), {})[t.contestant] = t
    return rows


def table(timings: list[NetworkTiming]) -> str:
    """The timings as a markdown table, one row per network, dtype and batch."""
    lines = ["| dtype | N | corrgen µs | NumPy µs | PyTorch µs | corrgen/PyTorch | "
             "corrgen/NumPy | GFLOP/s | % peak | threads |",
             "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for (_, dtype, batch), row in _by_dtype(timings).items():
        ours, numpy, torch = row["corrgen"], row["numpy"], row["torch"]
        torch_us = torch.note if torch.us is None else f"{torch.us:.1f}"
        threads = f"{ours.threads}" + (f" (PyTorch {torch.threads})"
                                       if torch.threads != ours.threads else "")
        lines.append(
            f"| {dtype} | {batch} | {ours.us:.1f} | {numpy.us:.1f} | {torch_us} | "
            f"{_fmt(ours.vs_torch, '.3f')} | {ours.vs_numpy:.3f} | {ours.gflops:.2f} | "
            f"{_fmt(ours.percent_of_peak, '.1f')} | {threads} |")
    return "\n".join(lines)


def heading(timings: list[NetworkTiming]) -> str:
    """What was timed and on what: the network, the CPU model, the threads, the work."""
    first = timings[0]
    threads = sorted({t.threads for t in timings})
    return (f"network {first.network}; {_cpu_name()}, "
            f"{'/'.join(map(str, threads))} thread{'s' if threads != [1] else ''}; "
            f"{first.flops / first.batch / 1e6:.3f} MFLOP per sample and step")


def markdown(timings: list[NetworkTiming]) -> str:
    """A markdown report: the machine, how the numbers were taken, then the table."""
    info = describe_machine()
    machine = ", ".join(f"{k} {v}" for k, v in info.items() if v is not None)
    return (f"# corrgen bench --network\n\n{heading(timings)}.\n\n{machine}; "
            f"{time.strftime('%Y-%m-%d %H:%M')}.\n\n"
            "One SGD step (forward, loss, backward, update) from the same parameters on the "
            "same batch; median of interleaved runs after a warm-up; the ratio columns divide "
            "corrgen's time by its peer's (below 1: corrgen is faster); GFLOP/s counts the "
            "conv and dense layers' multiply-adds of the step (forward, weight gradient, "
            f"input gradient where needed). {QUIET_PEERS_NOTE} "
            f"{unsteady_peaks_note({t.dtype: t.peaks_gflops for t in timings if t.peaks_gflops})}"
            f"\n\n{table(timings)}\n")


def document(timings: list[NetworkTiming]) -> dict[str, Any]:
    """The machine description and the timings, as JSON-ready data: what ``to_json`` writes
    and ``codegen.bench_plot`` draws."""
    return {"machine": describe_machine(), "timings": [
        {**asdict(t), "gflops": t.gflops, "percent_of_peak": t.percent_of_peak}
        for t in timings]}


def to_json(timings: list[NetworkTiming]) -> str:
    """The timings and the machine description as JSON (``document``)."""
    return json.dumps(document(timings), indent=1)
