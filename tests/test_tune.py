"""codegen.tune: tile choices measured on the machine that builds the module."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from test_kernels import GRID

import codegen
import codegen.tune as tune
from codegen.backends import CUDA, OPENMP
from codegen.bench import LAYERS
from codegen.blocking import AVX2, plan
from codegen.blocking.common import ISA_ENV
from codegen.check import check_module
from codegen.cli import main
from codegen.lower import lower
from codegen.render import render

#: A lane layer whose grad_input and grad_weight plans depend on the lane cost (float32, AVX2).
LAYER = GRID["lanes_p1"]


@pytest.fixture
def tuning_on(monkeypatch):
    """Tuning on, the AVX2 machine (so the candidates differ on any CPU), and the size
    threshold lowered to the small test layer."""
    monkeypatch.setenv(tune.TUNE_ENV, "1")
    monkeypatch.setenv(ISA_ENV, "avx2")
    monkeypatch.setattr(tune, "TUNE_MIN_FLOPS", 1)


def test_when_tuning_applies(monkeypatch):
    big = LAYERS["S4"][0]
    monkeypatch.setenv(tune.TUNE_ENV, "1")
    assert tune.applies(big, "loops", OPENMP, None)
    assert not tune.applies(big, "loops", OPENMP, False)
    assert not tune.applies(big, "tiled", CUDA, True)
    assert not tune.applies(big, "unrolled", OPENMP, True)
    assert not tune.applies(GRID["seed"], "loops", OPENMP, True)  # too small to pay
    for off in ("0", "off", "No"):
        monkeypatch.setenv(tune.TUNE_ENV, off)
        assert not tune.applies(big, "loops", OPENMP, None)
    assert tune.applies(big, "loops", OPENMP, True)


def test_the_candidates_are_the_passes_whose_plans_differ():
    names = tune.differing_passes(LAYERS["S4"][0], "float32", AVX2)
    assert names == ["forward", "grad_input", "grad_weight"]
    for name in names:
        one = plan(LAYERS["S4"][0], 4, AVX2, {name: 1})
        two = plan(LAYERS["S4"][0], 4, AVX2, {name: 2})
        assert [p for p in one.passes if p.name == name] != \
               [p for p in two.passes if p.name == name]
    # a 1x1 layer's matrix products have no lane tiles: nothing to tune
    assert tune.differing_passes(LAYERS["S6"][0], "float32", AVX2) == []


def test_the_faster_candidate_of_each_pass_is_kept(monkeypatch):
    """With the timings given, the choice follows them pass by pass."""
    reference_module = codegen.load(GRID["seed"], dtype="float64", style="loops")
    built = []

    def build(lane_fmas):
        built.append(lane_fmas)
        return reference_module

    times = {"forward": {"1": 5.0, "2": 9.0}, "grad_weight": {"1": 7.0, "2": 3.0}}
    monkeypatch.setattr(tune, "_time_passes", lambda modules, names, *a: times)
    tuning = tune.measure(GRID["seed"], "float64", ["forward", "grad_weight"], build)
    assert tuning.lane_fmas == {"forward": 1, "grad_weight": 2}
    assert built == [{"forward": 1, "grad_weight": 1}, {"forward": 2, "grad_weight": 2}]
    assert "forward: lane tiles costed at 1 multiply-adds per cycle, 5 us (against 9 us at 2" \
        in tuning.summary()


def test_a_candidate_that_fails_the_reference_stops_the_tuning(monkeypatch):
    module = codegen.load(GRID["seed"], dtype="float64", style="loops")
    monkeypatch.setattr(module, "forward", lambda V, K, b=None, out=None: V[:, :1, :2, :2] * 0)
    with pytest.raises(AssertionError, match="does not match the reference"):
        tune.measure(GRID["seed"], "float64", ["forward"], lambda fmas: module)


def test_tuned_load_checks_stores_and_reuses_its_choice(tuning_on, tmp_path, monkeypatch):
    module = codegen.load(LAYER, dtype="float32", out=tmp_path, style="loops")
    tuning = module.tuning
    assert tuning is not None and set(tuning.lane_fmas) == {"grad_input", "grad_weight"}
    assert set(tuning.lane_fmas.values()) <= {1, 2}
    for name, times in tuning.timings_us.items():
        assert times[str(tuning.lane_fmas[name])] == min(times.values())
    for result in check_module(module, batch=3, seed=1):
        assert result.ok, result
    stored = list((tmp_path / ".tuning").glob("*.json"))
    assert len(stored) == 1 and json.loads(stored[0].read_text())["lane_fmas"] == \
        tuning.lane_fmas
    # the module's kernels are the chosen plans, and print(ir) says so
    ir = lower(LAYER, OPENMP, "float32", "loops", machine=AVX2, lane_fmas=tuning.lane_fmas)
    source = Path(module.__file__).parent / "conv2d_openmp.c"
    assert source.read_text() == render(ir, OPENMP).keyed(module.key).text("conv2d_openmp.c")
    assert "lane tiles costed at " + ", ".join(
        f"{k} {v}" for k, v in tuning.lane_fmas.items()) in str(ir)
    # a second load reads the choice: no candidate is measured again
    monkeypatch.setattr(tune, "measure", lambda *a: pytest.fail("tuned again"))
    again = codegen.load(LAYER, dtype="float32", out=tmp_path, style="loops")
    assert again.tuning.lane_fmas == tuning.lane_fmas and again.key == module.key


def test_build_reports_the_tuning_and_no_tune_skips_it(tuning_on, tmp_path, capsys):
    args = ["build", "--input", "16x9x11", "--kernel", "32x16x3x3", "--padding", "1",
            "--dtype", "float32", "--style", "loops", "--out", str(tmp_path / "a"), "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["tuning"]["lane_fmas"]) == {"grad_input", "grad_weight"}
    assert main([*args[:-3], "--out", str(tmp_path / "b"), "--json", "--no-tune"]) == 0
    assert json.loads(capsys.readouterr().out)["tuning"] is None
