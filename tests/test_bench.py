"""How ``corrgen bench`` gathers its timings (codegen.bench._rounds): interleaved rounds,
at least ``runs`` of every contestant, then more of all but NumPy until corrgen's timings
span ``SPAN_S`` seconds, never more than ``MAX_ROUNDS``."""

from __future__ import annotations

import pytest

from codegen import bench
from codegen.cli import main


def _contestants(seconds: dict[str, float], order: list[str]):
    """Timings that report ``seconds[who]`` and append ``who`` to ``order`` when called."""
    def timing(who):
        def call():
            order.append(who)
            return seconds[who]
        return call
    return {who: timing(who) for who in seconds}


def test_rounds_go_on_without_numpy_until_corrgen_spans_the_span():
    order: list[str] = []
    seconds = {"corrgen": 1 / 64, "numpy": 1.0, "torch": 1 / 32}  # exact in binary
    times = bench._rounds(_contestants(seconds, order), runs=7, span_s=0.25)
    # 16 timings of 1/64 s make 0.25 s: rounds 8-16 run corrgen and PyTorch only.
    assert len(times["corrgen"]) == len(times["torch"]) == 16
    assert len(times["numpy"]) == 7
    assert order == ["corrgen", "numpy", "torch"] * 7 + ["corrgen", "torch"] * 9
    assert times == {who: [s] * len(times[who]) for who, s in seconds.items()}


def test_rounds_are_runs_when_the_runs_already_span_it():
    order: list[str] = []
    times = bench._rounds(_contestants({"corrgen": 0.1, "numpy": 0.2}, order), 7, span_s=0.5)
    assert {who: len(t) for who, t in times.items()} == {"corrgen": 7, "numpy": 7}
    times = bench._rounds(_contestants({"corrgen": 1e-3, "numpy": 1e-3}, order), 9, span_s=0)
    assert {who: len(t) for who, t in times.items()} == {"corrgen": 9, "numpy": 9}


def test_rounds_stop_at_max_rounds_unless_runs_asks_for_more():
    times = bench._rounds(_contestants({"corrgen": 1e-9, "torch": 1e-9}, []), 7, span_s=10)
    assert len(times["corrgen"]) == len(times["torch"]) == bench.MAX_ROUNDS
    runs = bench.MAX_ROUNDS + 20
    times = bench._rounds(_contestants({"corrgen": 1e-9, "numpy": 1e-9}, []), runs, span_s=10)
    assert len(times["corrgen"]) == len(times["numpy"]) == runs


def test_help_and_report_state_the_span(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert f"add up to {bench.SPAN_S:g} s" in out
