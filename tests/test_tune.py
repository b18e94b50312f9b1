"""codegen.tune: tile choices measured on the machine that builds the module."""

from __future__ import annotations

import json
import re
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from test_kernels import GRID

import codegen
import codegen.tune as tune
from codegen.backends import CUDA, OPENMP, backend_for
from codegen.bench import LAYERS
from codegen.blocking import AVX2, AVX512, candidates, columns, grad_weight, plan
from codegen.blocking.layer import column_tile_choice
from codegen.blocking.pointwise import edge_vectors
from codegen.blocking.records import InPlaceSweep
from codegen.blocking.tiles import SWEEP_CANDIDATES, WIDE_SWEEP_CANDIDATES, SweepTile
from codegen.check import check_module
from codegen.cli import main
from codegen.lower import lower
from codegen.machine import AVX512_HALVES, ISA_ENV, host_machine
from codegen.render import render
from derive import LayerSpec, reference

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
    """The model's own choice first; each candidate plans what it names, and differs."""
    spec = LAYERS["S4"][0]
    options = candidates(spec, 4, AVX2)
    assert list(options) == ["forward", "grad_input", "grad_weight"]
    model = {p.name: p for p in plan(spec, 4, AVX2).passes}
    assert options["grad_weight"] == ("lane_fmas=2", "lane_fmas=1", "lane_fmas=2,pixels=2",
                                      "lane_fmas=1,pixels=2")
    weights = [next(p for p in plan(spec, 4, AVX2, {"grad_weight": c}).passes
                    if p.name == "grad_weight") for c in options["grad_weight"]]
    assert weights[0] == model["grad_weight"] and weights[1] != weights[0]
    # the pixel pairs change the loop only: the tiles are those of the same rate
    assert [w.pixels for w in weights] == [1, 1, 2, 2]
    assert weights[2] == replace(weights[0], pixels=2) and weights[3] == replace(weights[1],
                                                                                pixels=2)
    for name in ("forward", "grad_input"):
        choices = options[name]
        assert choices[0] == f"lane_tile={model[name].nv}x{model[name].ty}x{model[name].tx}"
        assert len(set(choices)) == len(choices) > 1
        assert any(c.split("x")[1] == "2" for c in choices)  # a tile of two rows
        for choice in choices:
            record = next(p for p in plan(spec, 4, AVX2, {name: choice}).passes
                          if p.name == name)
            assert f"lane_tile={record.nv}x{record.ty}x{record.tx}" == choice
            assert record.nv * record.ty * record.tx <= AVX2.lane_accumulators


def test_a_matrix_products_candidates_are_its_tiles():
    """A 1x1 layer's candidates: the model's tile, then full-register tiles; each plan has
    the tile it names, and the module built with each matches the reference."""
    options = candidates(LAYERS["S6"][0], 4, AVX2)
    assert list(options) == ["forward", "grad_input", "grad_weight"]
    for name, choices in options.items():
        model = next(p for p in plan(LAYERS["S6"][0], 4, AVX2).passes if p.name == name)
        assert choices[0] == f"tile={model.mr}x{model.nrv}" and len(set(choices)) == 3
        for choice in choices[1:]:
            record = next(p for p in plan(LAYERS["S6"][0], 4, AVX2, {name: choice}).passes
                          if p.name == name)
            assert f"tile={record.mr}x{record.nrv}" == choice
            assert record.mr * record.nrv == AVX2.accumulators
    assert candidates(GRID["pointwise_parallel"], 8, AVX2)


@pytest.mark.parametrize("dtype_bytes", [4, 8])
@pytest.mark.parametrize("spec", [
    LayerSpec(input=(64, 56, 56), kernel=(256, 64, 1, 1)),
    LayerSpec(input=(256, 56, 56), kernel=(512, 256, 1, 1), stride=2),
], ids=["expand_3136_pixels", "projection_s2_784_pixels"])
def test_grad_weight_tiles_are_modelled_over_a_chunk_of_pixels(spec, dtype_bytes):
    """A 1x1 layer's grad_weight tile sums one chunk of pixels (GW_KC) at a time, so the
    model fits its column panel to PANEL_BYTES over a chunk: over all of a sample's pixels it
    fit no panel of two vectors and every such layer got one vector of 16 rows, with nothing
    else to time."""
    from codegen.blocking.pointwise import PANEL_BYTES

    for machine in (AVX2, AVX512):
        k = {c.name: c.value for c in plan(spec, dtype_bytes, machine).constants}
        assert k["GW_NRV"] >= 2 and k["GW_KC"] < spec.out_h * spec.out_w
        assert k["GW_KC"] * k["GW_NR"] * dtype_bytes <= PANEL_BYTES
        assert len(candidates(spec, dtype_bytes, machine)["grad_weight"]) >= 2


def test_a_deep_products_tiles_are_not_held_to_one_vector():
    """A column panel is held to PANEL_BYTES only where a panel of two vectors fits in it: a
    product 1024 deep (a 1024 -> 256 layer's forward) took one-vector tiles, a scalar loaded
    per multiply-add, and every candidate was one. S6 (256 deep) keeps its panels in the
    limit."""
    from codegen.blocking.pointwise import PANEL_BYTES

    deep = LayerSpec(input=(1024, 14, 14), kernel=(256, 1024, 1, 1))
    for machine in (AVX2, AVX512):
        for dtype_bytes in (4, 8):
            k = {c.name: c.value for c in plan(deep, dtype_bytes, machine).constants}
            assert k["FWD_NRV"] >= 2
            assert {choice.split("=")[1].split("x")[1]
                    for choice in candidates(deep, dtype_bytes, machine)["forward"]} != {"1"}
            k = {c.name: c.value for c in plan(LAYERS["S6"][0], dtype_bytes, machine).constants}
            for prefix in ("FWD", "GIN"):
                assert k[f"{prefix}_NR"] * 256 * dtype_bytes <= PANEL_BYTES


def test_a_lane_grad_weight_transposes_in_registers_with_16_lanes_or_one_vector():
    """S2's and S3's grad_weight hold output channels in lanes. The gradient is transposed in
    registers (pack_transposed, which the module then has) with 16 lanes (float32 on
    AVX-512) or where the channels fill one lane vector (S2's 8 in float64 on AVX-512 and in
    float32 on AVX2), and element by element elsewhere, where that measured as fast or
    faster."""
    from codegen.blocking.records import GradWeightLanes

    for layer, machine, dtype_bytes, expected in (
            ("S3", AVX512, 4, True), ("S3", AVX512, 8, False), ("S3", AVX2, 4, False),
            ("S3", AVX2, 8, False), ("S2", AVX512, 8, True), ("S2", AVX2, 4, True),
            ("S2", AVX2, 8, False)):
        module = plan(LAYERS[layer][0], dtype_bytes, machine)
        (lanes,) = [p for p in module.passes if isinstance(p, GradWeightLanes)]
        assert lanes.register_transpose is expected
        assert module.helpers.pack_transposed is expected


def test_a_tuned_matrix_product_checks_every_candidate(tuning_on, tmp_path):
    """Tuning a 1x1 layer builds every tile candidate and checks it against the reference
    (tune.measure); the choice is one of them, and the module built with it matches too."""
    layer = GRID["pointwise_parallel"]
    module = codegen.load(layer, dtype="float64", out=tmp_path, style="loops")
    options = candidates(layer, 8, AVX2)
    assert set(module.tuning.choices) == set(options)
    for name, choice in module.tuning.choices.items():
        assert choice in options[name]
        assert set(module.tuning.timings_us[name]) == set(options[name])
    for result in check_module(module, batch=3, seed=2):
        assert result.ok, result


def test_avx512_also_times_matrix_product_tiles_of_its_widest_vectors():
    """With 512-bit vectors, a 1x1 layer's candidates end with full-register tiles of
    LANES columns per vector (``w``), whose plans say so; AVX2 has none."""
    spec = LAYERS["S6"][0]
    for dtype_bytes, lanes in ((4, 16), (8, 8)):
        for name, choices in candidates(spec, dtype_bytes, AVX512).items():
            wide = [c for c in choices if c.endswith("w")]
            assert wide and choices[0] == choices[0].removesuffix("w"), (name, choices)
            for choice in wide:
                ir = plan(spec, dtype_bytes, AVX512, {name: choice})
                record = next(p for p in ir.passes if p.name == name)
                assert record.wide and f"tile={record.mr}x{record.nrv}w" == choice
                assert record.mr * record.nrv == AVX512.accumulators
                nr = dict((c.name, c.value) for c in ir.constants)[f"{record.prefix}_NR"]
                assert nr == record.nrv * lanes
    assert not any(c.endswith("w") for choices in candidates(spec, 4, AVX2).values()
                   for c in choices)


def test_winograd_grad_weight_is_timed_only_where_a_threads_sums_stay_small():
    """Winograd's grad_weight keeps 16 x C x O sums per thread, which every task reads and
    writes: tuning times it up to 8 MB of them (S5, 256 channels), not past (512 channels),
    while forward and grad_input stay offered."""
    def layer(channels):
        return LayerSpec(input=(channels, 14, 14), kernel=(channels, channels, 3, 3), padding=1)

    for spec, dtype_bytes, offered in ((LAYERS["S5"][0], 4, True), (LAYERS["S5"][0], 8, True),
                                       (layer(256), 4, True), (layer(256), 8, True),
                                       (layer(384), 4, False), (layer(512), 4, False)):
        for machine in (AVX2, AVX512):
            options = candidates(spec, dtype_bytes, machine)
            assert "winograd=2" in options["forward"] and "winograd=2" in options["grad_input"]
            assert ("winograd=2" in options["grad_weight"]) is offered, (spec, dtype_bytes)
            assert any(c.startswith("lane_fmas=") for c in options["grad_weight"])


def test_winograd_is_offered_where_a_pass_has_one_direct_candidate():
    """A many-channel 3x3 layer on a small plane whose forward has a single direct tile on
    AVX2 (no list of its own to extend) still gets Winograd's candidates; it raised a
    TypeError (a list added to a tuple) instead, so no such layer could be tuned there."""
    spec = LayerSpec(input=(256, 14, 14), kernel=(256, 256, 3, 3), padding=1)
    for dtype_bytes in (4, 8):
        for machine in (AVX2, AVX512):
            options = candidates(spec, dtype_bytes, machine)
            for name in ("forward", "grad_input"):
                assert "winograd=2" in options[name] and len(options[name]) >= 2, options


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layer", ["pointwise_parallel", "pointwise_chunks"])
def test_wide_tiles_match_the_reference(tuning_on, tmp_path, monkeypatch, layer, dtype):
    """Every candidate of an AVX-512 1x1 layer, the wide tiles among them (rows and columns
    that fill no whole tile, grad_weight in pixel chunks), is checked against the reference
    while tuning; on a CPU without AVX-512 the compiler splits the 512-bit vectors."""
    monkeypatch.setenv(ISA_ENV, "avx512")
    module = codegen.load(GRID[layer], dtype=dtype, out=tmp_path, style="loops")
    timed = {c for times in module.tuning.timings_us.values() for c in times}
    assert any(c.endswith("w") for c in timed), timed
    for result in check_module(module, batch=3, seed=4):
        assert result.ok, result


def test_the_faster_candidate_of_each_pass_is_kept(monkeypatch):
    """With the timings given, the choice follows them pass by pass."""
    reference_module = codegen.load(GRID["seed"], dtype="float64", style="loops")
    built = []

    def build(choices):
        built.append(choices)
        return reference_module

    times = {"forward": [5.0, 9.0, 4.0], "grad_weight": [7.0, 3.0, 8.0]}
    monkeypatch.setattr(tune, "_time_passes", lambda modules, names, *a: times)
    options = {"forward": ("tile=2x5", "tile=4x3", "tile=6x2"),
               "grad_weight": ("lane_fmas=1", "lane_fmas=2")}
    tuning = tune.measure(GRID["seed"], "float64", options, build)
    assert tuning.choices == {"forward": "tile=6x2", "grad_weight": "lane_fmas=2"}
    assert built == [{"forward": "tile=2x5", "grad_weight": "lane_fmas=1"},
                     {"forward": "tile=4x3", "grad_weight": "lane_fmas=2"},
                     {"forward": "tile=6x2", "grad_weight": "lane_fmas=2"}]
    # the third build repeats grad_weight's last option: its time is not counted twice
    assert tuning.timings_us["grad_weight"] == {"lane_fmas=1": 7.0, "lane_fmas=2": 3.0}
    assert "forward: tile=6x2, 4 us (against 5 us with tile=2x5, 9 us with tile=4x3" \
        in tuning.summary()


@pytest.mark.parametrize("times, runoff, kept", [
    ({"tile=4x5": 2067.0, "tile=8x3": 2019.0, "tile=6x4": 2043.0}, None, "tile=4x5"),
    ({"tile=4x5": 2067.0, "tile=8x3": 2019.0, "tile=6x4": 2043.0}, {"tile=8x3": 0.995},
     "tile=4x5"),
    ({"tile=4x5": 2067.0, "tile=8x3": 2019.0, "tile=6x4": 2043.0}, {"tile=8x3": 0.98},
     "tile=8x3"),
    ({"tile=4x5": 1966.0, "tile=8x3": 2019.0}, {"tile=8x3": 0.97}, "tile=8x3"),
    ({"tile=4x5": 2100.0, "tile=8x3": 2019.0}, None, "tile=8x3"),
    ({"tile=4x5": 1905.0, "tile=8x3": 1966.0, "tile=6x4": 2043.0}, None, "tile=4x5"),
    ({"tile=4x5": 1905.0, "tile=8x3": 1966.0}, {"tile=8x3": 1 - tune.RUNOFF_MARGIN},
     "tile=4x5"),
    ({"lane_fmas=1": 300.0, "lane_fmas=2": 300.0 / (1 + tune.MODEL_MARGIN)}, None,
     "lane_fmas=1"),
], ids=["tie_no_runoff", "tie_rival_not_clearly_faster", "tie_rival_wins",
        "tie_rival_slower_in_fastest_runs_wins", "beyond_the_margin", "model_fastest",
        "at_the_runoff_margin", "at_the_margin"])
def test_the_models_choice_is_kept_unless_another_is_clearly_faster(times, runoff, kept):
    """The first timing is the cost model's choice. Another replaces it outright when its
    fastest run is faster by more than MODEL_MARGIN (2100 against 2019 us is 4.0 %); within
    that margin either way (2067 against 2019 is 2.4 %, 1966 against 2019 2.7 %), only by
    beating it by more than RUNOFF_MARGIN in the runoff."""
    assert tune.kept_choice(times, runoff) == kept


@pytest.mark.parametrize("times, rival", [
    ({"tile=4x5": 2067.0, "tile=8x3": 2019.0, "tile=6x4": 2043.0}, "tile=8x3"),
    ({"tile=4x5": 1966.0, "tile=8x3": 2019.0, "tile=6x4": 2100.0}, "tile=8x3"),
    ({"tile=4x5": 2100.0, "tile=8x3": 2019.0}, None),
    ({"tile=4x5": 1905.0, "tile=8x3": 1966.0 * 1.01}, None),
    ({"winograd=2": 1000.0}, None),
], ids=["rival_faster", "rival_slower", "rival_clearly_faster", "model_clearly_faster",
        "no_rival"])
def test_a_near_tie_is_the_model_and_its_closest_rival_within_the_margin(times, rival):
    assert tune.near_tie(times) == rival


def test_a_near_tie_is_settled_by_a_runoff_of_the_two(monkeypatch):
    """measure() runs the model's choice against its closest rival, each as built in the
    first module that took it, keeps what the runoff gives, and its summary says so; a pass
    without a near tie has no runoff."""
    import codegen.check

    class Candidate:
        def threads(self):
            return 2

    modules = [Candidate(), Candidate(), Candidate()]
    built = iter(modules)
    monkeypatch.setattr(codegen.check, "check_module", lambda *a, **k: [])
    monkeypatch.setattr(tune, "_time_passes", lambda mods, names, *a: {
        "forward": [100.0, 99.0, 101.0], "grad_input": [100.0, 90.0, 90.0]})
    raced = []

    def runoff(model, rival, name, *a):
        raced.append((modules.index(model), modules.index(rival), name))
        return 0.97

    monkeypatch.setattr(tune, "_runoff", runoff)
    tuning = tune.measure(GRID["seed"], "float64",
                          {"forward": ("tile=4x5", "tile=8x3t", "tile=6x4"),
                           "grad_input": ("tile=4x5", "tile=8x3t")},
                          lambda choices: next(built))
    assert raced == [(0, 1, "forward")]
    assert tuning.runoffs == {"forward": {"tile=8x3t": 0.97}}
    assert tuning.choices == {"forward": "tile=8x3t", "grad_input": "tile=8x3t"}
    assert (f"a near tie: in {tune.RUNOFF_ROUNDS} paired rounds tile=8x3t took 0.970 of "
            "tile=4x5's time" in tuning.summary())


def test_a_runoff_pairs_its_rounds_and_gives_the_rivals_median_ratio(monkeypatch):
    """Each round runs both modules as many calls, the first alternating; the ratio is the
    rival's time over the model's."""
    import time

    order = []

    class Fake:
        def __init__(self, name, seconds):
            self.name, self.seconds, self.calls = name, seconds, 0

        def forward(self, V, K, b=None):
            self.calls += 1
            order.append(self.name)
            time.sleep(self.seconds)

    monkeypatch.setattr(tune, "RUN_SECONDS", 0.006)
    monkeypatch.setattr(tune, "RUNOFF_ROUNDS", 5)
    model, rival = Fake("model", 0.002), Fake("rival", 0.001)
    ratio = tune._runoff(model, rival, "forward", GRID["seed"], "float64", 1)
    assert 0.3 < ratio < 0.8
    assert model.calls == rival.calls
    number = (model.calls - 1) // 5
    runs = [order[2 + i * number] for i in range(10)]
    assert runs == ["model", "rival", "rival", "model", "model", "rival", "rival", "model",
                    "model", "rival"]


def test_each_run_times_the_same_number_of_calls_per_candidate(monkeypatch):
    """A pass much shorter than ``RUN_SECONDS`` is called several times per run, as often
    for every candidate, and its time is reported per call."""
    import time

    class Fake:
        def __init__(self, seconds):
            self.seconds, self.calls = seconds, 0

        def forward(self, V, K, b=None):
            self.calls += 1
            time.sleep(self.seconds)

    monkeypatch.setattr(tune, "RUN_SECONDS", 0.012)
    fast, slow = Fake(0.001), Fake(0.002)
    times = tune._time_passes([fast, slow], ["forward"], GRID["seed"], "float64", 1)
    assert fast.calls == slow.calls
    number = (fast.calls - 1) // tune.RUNS
    assert fast.calls == 1 + tune.RUNS * number and 2 <= number <= 6
    fast_us, slow_us = times["forward"]
    assert 1000 <= fast_us < 2000 <= slow_us < 4000


def test_a_candidate_that_fails_the_reference_stops_the_tuning(monkeypatch):
    module = codegen.load(GRID["seed"], dtype="float64", style="loops")
    monkeypatch.setattr(module, "forward", lambda V, K, b=None, out=None: V[:, :1, :2, :2] * 0)
    with pytest.raises(AssertionError, match="does not match the reference"):
        tune.measure(GRID["seed"], "float64", {"forward": ("tile=1x1", "tile=2x1")},
                     lambda choices: module)


def test_tuned_load_checks_stores_and_reuses_its_choice(tuning_on, tmp_path, monkeypatch):
    module = codegen.load(LAYER, dtype="float32", out=tmp_path, style="loops")
    tuning = module.tuning
    options = candidates(LAYER, 4, AVX2)
    assert tuning is not None and set(tuning.choices) == set(options)
    for name, choice in tuning.choices.items():
        assert choice in options[name] and set(tuning.timings_us[name]) == set(options[name])
    for name, times in tuning.timings_us.items():
        assert tuning.choices[name] == tune.kept_choice(times, tuning.runoffs.get(name))
        assert (name in tuning.runoffs) == (tune.near_tie(times) is not None)
    for result in check_module(module, batch=3, seed=1):
        assert result.ok, result
    stored = list((tmp_path / ".tuning").glob("*.json"))
    assert len(stored) == 1 and json.loads(stored[0].read_text())["choices"] == \
        tuning.choices
    # the module's kernels are the chosen plans, and print(ir) says so
    ir = lower(LAYER, OPENMP, "float32", "loops", machine=AVX2, choices=tuning.choices)
    source = Path(module.__file__).parent / "conv2d_openmp.c"
    assert source.read_text() == render(ir, OPENMP).keyed(module.key).text("conv2d_openmp.c")
    assert "measured here (codegen.tune): " + ", ".join(
        f"{k} {v}" for k, v in tuning.choices.items()) in str(ir)
    # a second load reads the choice: no candidate is measured again
    monkeypatch.setattr(tune, "measure", lambda *a: pytest.fail("tuned again"))
    again = codegen.load(LAYER, dtype="float32", out=tmp_path, style="loops")
    assert again.tuning.choices == tuning.choices and again.key == module.key


@pytest.mark.parametrize("damage", ["truncated", "not a candidate", "a pass missing",
                                    "a runoff that does not give its choice"])
def test_a_damaged_stored_tuning_is_measured_again(tuning_on, tmp_path, monkeypatch, damage):
    """A stored tuning that does not read whole, or whose choice is not one of this layer's
    candidates, is not used: its plan was never checked against the reference."""
    first = codegen.load(LAYER, dtype="float32", out=tmp_path, style="loops")
    (path,) = (tmp_path / ".tuning").glob("*.json")
    text = path.read_text()
    data = json.loads(text)
    if damage == "truncated":
        path.write_text(text[: len(text) // 2])
    elif damage == "not a candidate":
        data["choices"]["grad_input"] = "lane_tile=3x1x4"
        path.write_text(json.dumps(data))
    elif damage == "a runoff that does not give its choice":
        # where the timings were a near tie, the runoff turned the other way; elsewhere, a
        # runoff where there was none to run
        name, times = next(iter(data["timings_us"].items()))
        model, other = list(times)[:2]
        rival = tune.near_tie(times)
        if rival is not None:
            data["runoffs"][name] = {rival: 0.5 if data["choices"][name] == model else 1.5}
        else:
            data["runoffs"][name] = {other: 0.5}
        path.write_text(json.dumps(data))
    else:
        del data["choices"]["grad_input"]
        path.write_text(json.dumps(data))
    measured = []
    real_measure = tune.measure
    monkeypatch.setattr(tune, "measure", lambda *a: measured.append(1) or real_measure(*a))
    notes = []
    again = codegen.load(LAYER, dtype="float32", out=tmp_path, style="loops",
                         progress=notes.append)
    assert measured == [1]
    assert any("the stored tuning was unreadable, or did not keep the choice its own "
               "timings give" in n for n in notes)
    assert set(again.tuning.choices) == set(first.tuning.choices)
    for result in check_module(again, batch=3, seed=2):
        assert result.ok, result
    assert json.loads(path.read_text())["choices"] == again.tuning.choices


def test_a_stored_tuning_loads_in_a_new_process_without_the_cost_models(tuning_on, tmp_path):
    """A later process reads the stored choice without importing ``codegen.blocking``
    (a tenth of a second of a load), and a layer with nothing to tune is remembered so."""
    from test_build import run_python

    first = codegen.load(LAYER, dtype="float32", out=tmp_path, style="loops")
    untuned = LayerSpec(input=(1, 1, 2), kernel=(1, 1, 1, 2))  # one tile fits it
    assert codegen.load(untuned, out=tmp_path, style="loops").tuning is None
    done = run_python(f"""
        import sys
        import codegen
        import codegen.tune as tune
        from derive import LayerSpec
        tune.TUNE_MIN_FLOPS = 1
        tune.measure = None  # measuring again would fail
        module = codegen.load({LAYER!r}, dtype="float32", out={str(tmp_path)!r}, style="loops")
        nothing = codegen.load({untuned!r}, out={str(tmp_path)!r}, style="loops")
        print(module.tuning.choices, nothing.tuning, "codegen.blocking" in sys.modules)
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"{first.tuning.choices} None False"


def test_a_lane_tile_that_does_not_divide_the_channels_is_refused():
    """Forced, a tile of 3 vectors of 8 channels would cut S5's 64 output channels into
    blocks of 24, the third sweeping channels 48-71."""
    spec, _ = LAYERS["S5"]
    with pytest.raises(ValueError, match=r"^choices: lane_tile=3x1x4 needs 3 vectors of 8 "
                                         r"channels to divide the sweep's 64 channels$"):
        plan(spec, 4, AVX2, {"forward": "lane_tile=3x1x4"})


@pytest.mark.parametrize("choice", ["lane_fmas=2,pixels=0", "lane_fmas=2,pixels=two"])
def test_a_pixel_count_that_is_not_a_positive_whole_number_is_refused(choice):
    with pytest.raises(ValueError, match=rf"^choices: {choice} needs a whole number of pixels "
                                         r"of at least 1$"):
        plan(LAYERS["S5"][0], 4, AVX2, {"grad_weight": choice})


def _build_with(spec, dtype: str, choices: dict[str, str], out: Path):
    """The OpenMP loops module of ``spec`` with ``choices``, as tuning builds a candidate
    (sanitized under ``CORRGEN_SANITIZE=1``, as ``codegen.load``'s would be)."""
    from codegen.loader import _build_or_reuse, _sources

    backend = backend_for("openmp")
    request = {"spec": spec.to_dict(), "style": "loops", "dtype": dtype, "choices": choices}
    return _build_or_reuse(request, lambda: _sources(spec, backend, dtype, "loops", choices),
                           backend, out, None, None)


#: Row-reusing forward tiles over the rows of the zero frame: a 5x5 layer with padding 2, one
#: at a stride, one dilated (choices that AVX2 and AVX-512 both take).
FRAMED = [
    (LayerSpec(input=(3, 12, 10), kernel=(16, 3, 5, 5), padding=2), "column_tile=1x4x2r"),
    (LayerSpec(input=(4, 17, 12), kernel=(8, 4, 3, 3), stride=2, padding=1),
     "column_tile=2x3x1r"),
    (LayerSpec(input=(4, 14, 12), kernel=(8, 4, 3, 3), padding=2, dilation=2),
     "column_tile=2x2x2r"),
]


@pytest.mark.parametrize("spec, choice", [*FRAMED, (FRAMED[2][0], "column_tile=4x2x1rw")])
def test_row_reusing_tiles_leave_out_the_rows_of_the_frame(spec, choice):
    """A row-reusing forward tile loads each source row once for the (tile row y, row tap i)
    pairs it serves; in the tiles from output row m0 those pairs read input row
    (m0 + y)*SH + i*DH - PT. A row of tiles where some of them lie outside the input leaves
    out exactly their loads, in the order of the others, and loads the weights of only the
    row taps it still uses; the rows of tiles not listed read the input alone."""
    record = next(p for p in plan(spec, 4, AVX512, {"forward": choice}).passes
                  if p.name == "forward")
    (sh, _), (dh, _), top = spec.stride, spec.dilation, spec.pads[0]
    uses = dict(record.schedule)
    listed = {tile.m0: tile for tile in record.frame_tiles}
    assert listed and len(listed) < -(-spec.out_h // record.ty)
    for m0 in range(0, spec.out_h, record.ty):
        reads = {row: {(m0 + y) * sh + i * dh - top for y, i in pairs}
                 for row, pairs in uses.items()}
        assert all(len(rows) == 1 for rows in reads.values())
        data = {row for row, rows in reads.items() if 0 <= min(rows) < spec.input[1]}
        if m0 not in listed:
            assert data == set(uses), m0
            continue
        tile = listed[m0]
        assert data < set(uses), m0
        assert tile.loads == tuple(load for load in record.loads if load.row in data)
        assert tile.row_taps == tuple(sorted({i for row in data for _, i in uses[row]}))


@pytest.mark.parametrize("spec, choice", FRAMED)
def test_row_reusing_tiles_without_the_frame_keep_the_bits(tmp_path, monkeypatch, spec, choice):
    """The loads of the frame's rows left out drop exact zeros only, and the other
    multiply-adds keep their order: the forward's bits are those of the same tile loading
    every row, and match the reference."""
    monkeypatch.setenv(ISA_ENV, "avx2")
    framed = _build_with(spec, "float32", {"forward": choice}, tmp_path / "framed")
    text = "leave out those loads"
    assert text in (Path(framed.__file__).parent / "conv2d_openmp.c").read_text()
    monkeypatch.setattr(columns, "_frame_tiles", lambda *args: ())
    every = _build_with(spec, "float32", {"forward": choice}, tmp_path / "every")
    assert text not in (Path(every.__file__).parent / "conv2d_openmp.c").read_text()
    for result in check_module(framed, batch=3, seed=4):
        assert result.ok, result
    V, K, b, _ = reference.random_inputs(spec, 3, "float32", 6)
    assert np.array_equal(framed.forward(V, K, b), every.forward(V, K, b))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_grad_weight_border_rows_keep_the_bits(tmp_path, monkeypatch, dtype):
    """The lane grad_weight of one block of all 25 taps (``lane_fmas=1``) on a 5x5 layer with
    padding 2 sums its first and last two output rows apart, without the taps whose kernel
    row reads the zero frame. Those products are exact zeros and the rows keep their order,
    so the bits are those of the same module summing every tap over every row."""
    spec = LayerSpec(input=(3, 12, 9), kernel=(16, 3, 5, 5), padding=2)
    choices = {"grad_weight": "lane_fmas=1"}
    apart = _build_with(spec, dtype, choices, tmp_path / "apart")
    source = (Path(apart.__file__).parent / "conv2d_openmp.c").read_text()
    assert "#define GW_TT 25 " in source
    assert [y for y in range(12) if f"/* output row {y}: only the taps" in source] == [0, 1, 10, 11]
    monkeypatch.setattr(grad_weight, "_border_rows", lambda g, tt: ((), (0, g.ho)))
    every = _build_with(spec, dtype, choices, tmp_path / "every")
    assert "only the taps whose kernel row" not in (Path(every.__file__).parent
                                                    / "conv2d_openmp.c").read_text()
    for batch in (1, 5):
        for result in check_module(apart, batch=batch, seed=5):
            assert result.ok, result
        V, _, _, G = reference.random_inputs(spec, batch, dtype, 2)
        assert np.array_equal(apart.grad_weight(V, G), every.grad_weight(V, G))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_grad_weight_in_pixel_pairs_matches_the_reference(tmp_path, dtype):
    """The lane grad_weight whose loop takes two pixels per pass, on rows of an odd number
    of output pixels (11), against the reference; its generated loop says so."""
    spec = GRID["lanes_p1"]
    module = codegen.load(spec, dtype=dtype, out=tmp_path, style="loops", tune=False)
    pairs = _build_with(spec, dtype, {"grad_weight": "lane_fmas=2,pixels=2"}, tmp_path)
    source = (Path(pairs.__file__).parent / "conv2d_openmp.c").read_text()
    assert "#pragma GCC unroll 2" in source
    assert "#pragma GCC unroll" not in (Path(module.__file__).parent
                                        / "conv2d_openmp.c").read_text()
    for result in check_module(pairs, batch=3, seed=5):
        assert result.ok, result


def _pass(ir, name: str):
    return next(p for p in ir.passes if p.name == name)


def test_a_column_sweeps_candidates_are_its_best_modelled_tiles():
    """S3's forward and grad_input: SWEEP_CANDIDATES column tiles, the model's first; each
    plan has the tile it names (a grad_input read in place always reuses rows) and fits the
    registers. On a Zen 4, the third of the forward's, 1 x 4 x 4 reusing rows, ran fastest.
    With AVX-512, forward's then end with WIDE_SWEEP_CANDIDATES tiles of the widest vectors;
    grad_input's and AVX2's have none."""
    spec = LAYERS["S3"][0]
    for dtype_bytes, machine in ((4, AVX512), (8, AVX512), (4, AVX2)):
        options = candidates(spec, dtype_bytes, machine)
        for name in ("forward", "grad_input"):
            choices = options[name]
            wide = name == "forward" and machine is AVX512
            assert len(set(choices)) == len(choices) == SWEEP_CANDIDATES + (
                WIDE_SWEEP_CANDIDATES if wide else 0)
            assert all(c.endswith("w") == (i >= SWEEP_CANDIDATES) for i, c in enumerate(choices))
            for i, choice in enumerate(choices):
                record = _pass(plan(spec, dtype_bytes, machine, {name: choice}), name)
                reuse = isinstance(record, InPlaceSweep) or record.reuse
                tile = SweepTile(record.ob, record.ty, record.txv, reuse,
                                 getattr(record, "wide", False))
                assert column_tile_choice(tile) == choice
                assert record.ob * record.ty * record.txv <= machine.accumulators
                if i == 0:
                    assert record == _pass(plan(spec, dtype_bytes, machine), name)
    assert "column_tile=1x4x4r" in candidates(spec, 4, AVX512)["forward"]


def test_forwards_wide_column_tiles_are_the_narrow_ones_twins_then_the_models():
    """With AVX-512, each of forward's narrow column tiles whose vectors pair up has a twin
    among the wide ones (the same channels, rows and columns in half as many vectors of
    LANES reals: S3's 1 x 4 x 4 reusing rows, 1 x 4 x 2); a wide plan says so in its record,
    its constants and its helpers."""
    spec = LAYERS["S3"][0]
    for dtype_bytes, lanes in ((4, 16), (8, 8)):
        choices = candidates(spec, dtype_bytes, AVX512)["forward"]
        narrow, wide = choices[:SWEEP_CANDIDATES], choices[SWEEP_CANDIDATES:]
        for choice in narrow:
            ob, ty, txv = choice.removeprefix("column_tile=").removesuffix("r").split("x")
            twin = f"column_tile={ob}x{ty}x{int(txv) // 2}{'r' if choice.endswith('r') else ''}w"
            assert int(txv) % 2 or twin in wide, (choice, wide)
        for choice in wide:
            ir = plan(spec, dtype_bytes, AVX512, {"forward": choice})
            record = _pass(ir, "forward")
            constants = {c.name: c.value for c in ir.constants}
            assert record.wide and record.load == "LOAD_LANES" and ir.helpers.lanes
            assert constants["LANES"] == lanes
            assert constants["FWD_TX"] == record.txv * lanes
    assert "column_tile=1x4x2rw" in candidates(spec, 4, AVX512)["forward"]


@pytest.mark.parametrize("layer, dtype", [
    ("s2x1_p2x1_d1x2", "float64"), ("s3_same_d2_conv", "float32"),
    ("s1x3_p3x0_c5", "float64"), ("in_place_d1x2_conv", "float32"),
    ("parallel_s2_same", "float64"), ("lanes_parallel_5x5", "float32"),
])
def test_every_column_tile_candidate_matches_the_reference(tmp_path, layer, dtype):
    """Each column tile tuning may choose, built into a module as tuning builds it, matches
    the reference on layers with strides, dilations, padding, a grad_input read in place and
    S3's shape (tuning checks the candidates too, but only on the layers it is asked for)."""
    spec = GRID[layer]
    options = {name: choices for name, choices in
               candidates(spec, int(dtype[-2:]) // 8, host_machine()).items()
               if choices[0].startswith("column_tile=")}
    assert options
    for choices in tune.candidate_builds(options):
        module = _build_with(spec, dtype, choices, tmp_path)
        for result in check_module(module, batch=3, seed=4):
            assert result.ok, (choices, result)


@pytest.mark.parametrize("choice, message", [
    ("column_tile=3x1x4", "needs its 3 channels to divide the sweep's 16 channels"),
    ("column_tile=2x1", "needs channels x rows x vectors, three whole numbers of at least 1 "
                        "(then 'r' to reuse rows, then 'w' for the widest vectors)"),
    ("column_tile=2x0x4r", "needs channels x rows x vectors"),
    ("column_tile=2x1x2wr", "needs channels x rows x vectors"),
])
def test_a_column_tile_it_cannot_take_is_refused(choice, message):
    with pytest.raises(ValueError, match="^" + re.escape(f"choices: {choice} {message}")):
        plan(LAYERS["S3"][0], 4, AVX512, {"forward": choice})


def test_a_cpu_that_splits_512_bit_multiply_adds_is_offered_no_wide_tiles():
    """On Zen 4 (AVX512_HALVES) a tile of 512-bit vectors holds no more multiply-adds per
    cycle than one of 256: neither forward's column tiles nor S6's matrix products offer one;
    the same layers on a full-width AVX-512 CPU do, and the 256-bit ones are the same."""
    for layer in ("S3", "S6"):
        for dtype_bytes in (4, 8):
            halves = candidates(LAYERS[layer][0], dtype_bytes, AVX512_HALVES)
            full = candidates(LAYERS[layer][0], dtype_bytes, AVX512)
            assert not any(c.endswith("w") for choices in halves.values() for c in choices)
            assert any(c.endswith("w") for c in full["forward"])
            assert halves == {name: tuple(c for c in choices if not c.endswith("w"))
                              for name, choices in full.items()}


@pytest.mark.parametrize("name, machine", [("grad_input", AVX512), ("forward", AVX2)])
def test_a_wide_column_tile_is_refused_where_it_does_not_apply(name, machine):
    """Only forward takes a column tile of the widest vectors, and only where they are wider
    than VL: grad_input's read in place shifts vectors of VL, and AVX2's widest are VL."""
    with pytest.raises(ValueError, match=re.escape(
            "choices: column_tile=1x1x2w: a column tile of the widest vectors ('w') is for "
            "forward, on a machine whose widest vectors are wider than VL (AVX-512)")):
        plan(LAYERS["S3"][0], 4, machine, {name: "column_tile=1x1x2w"})


@pytest.mark.parametrize("layer, dtype", [
    ("s2x1_p2x1_d1x2", "float64"), ("s3_same_d2_conv", "float32"),
    ("lanes_parallel_5x5", "float32"), ("parallel_s2_same", "float64"),
])
def test_every_wide_column_tile_matches_the_reference(tmp_path, monkeypatch, layer, dtype):
    """Each wide forward tile tuning may choose with AVX-512 (strides, dilations, padding,
    convolution mode, bias, rows ending in a partial vector) matches the reference; on a CPU
    without AVX-512 the compiler splits the 512-bit vectors."""
    monkeypatch.setenv(ISA_ENV, "avx512")
    wide = [c for c in candidates(GRID[layer], int(dtype[-2:]) // 8, AVX512)["forward"]
            if c.endswith("w")]
    assert len(wide) == WIDE_SWEEP_CANDIDATES
    for choice in wide:
        module = _build_with(GRID[layer], dtype, {"forward": choice}, tmp_path)
        for result in check_module(module, batch=3, seed=4):
            assert result.ok, (choice, result)


@pytest.mark.parametrize("cols, nrv, reals, vectors", [
    (196, 4, 4, 1),   # S6 float64, 6x4 tiles of 4 reals: 12 panels and 4 columns
    (196, 2, 8, 1),   # S6 float64, 12x2w tiles of 8 reals
    (196, 5, 8, 0),   # S6 float32, 4x5 tiles of 8 reals: the last 36 columns need all 5
    (200, 5, 8, 0),   # whole panels
    (49, 5, 8, 2),
    (3, 5, 8, 1),     # one panel, itself narrower than the tile
])
def test_the_last_column_panel_takes_as_few_vectors_as_its_columns_need(cols, nrv, reals,
                                                                        vectors):
    assert edge_vectors(cols, nrv, reals) == vectors


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("width", [7, 8])
def test_matrix_products_with_a_narrower_last_panel_match_the_reference(tmp_path, dtype,
                                                                        width):
    """A 1x1 layer of 7x7 or 7x8 pixels in tiles of 4x5 vectors leaves a last column panel
    that fewer vectors cover: 49 pixels leave 9 columns (stored through the tile's buffer),
    56 leave exactly the narrower tile's (stored whole); 21 output rows leave a last row
    panel of one. forward and grad_input take the narrower tile there, reading the weights
    packed (a batch of 16) or in place (3)."""
    spec = LayerSpec(input=(13, 7, width), kernel=(21, 13, 1, 1))
    module = _build_with(spec, dtype, {"forward": "tile=4x5", "grad_input": "tile=4x5"},
                         tmp_path)
    source = (Path(module.__file__).parent / "conv2d_openmp.c").read_text()
    for name, prefix in (("forward", "FWD"), ("grad_input", "GIN")):
        assert f"(in_place ? {name}_in_place_edge_tile : {name}_edge_tile)(left" in source
        assert f"#define {prefix}_EDGE_NR " in source
    assert "grad_weight_edge_tile" not in source
    for batch in (3, 16):
        for result in check_module(module, batch=batch, seed=7):
            assert result.ok, result


def test_build_reports_the_tuning_and_no_tune_skips_it(tuning_on, tmp_path, capsys):
    args = ["build", "--input", "16x9x11", "--kernel", "32x16x3x3", "--padding", "1",
            "--dtype", "float32", "--style", "loops", "--out", str(tmp_path / "a"), "--json"]
    assert main(args) == 0
    report = json.loads(capsys.readouterr().out)
    assert set(report["tuning"]["choices"]) == set(candidates(LAYER, 4, AVX2))
    assert main([*args[:-3], "--out", str(tmp_path / "b"), "--json", "--no-tune"]) == 0
    assert json.loads(capsys.readouterr().out)["tuning"] is None


@pytest.mark.parametrize("dtype, tile", [("float32", "tile=8x3t"), ("float32", "tile=4x6t"),
                                         ("float64", "tile=4x6t"), ("float64", "tile=8x3t"),
                                         ("float64", "tile=2x6t")])
@pytest.mark.parametrize("width", [7, 13])
def test_transposed_products_give_the_packed_ones_bits(tmp_path, dtype, tile, width):
    """forward and grad_input by a transposed tile (rows in vectors, pixels read in place)
    sum in the packed tile's order, so they give its bits, and match the reference. 40 and
    56 result rows leave a last row panel of fewer vectors; 49 pixels leave one (stored through
    a buffer), 52 leave four to 8-pixel tiles (float32: half a square, stored through
    transpose_halves; float64: a square of 4-real vectors) and none to 4- or 2-pixel ones,
    which are half squares themselves in float32 and float64 respectively; a batch of 3 cuts
    each sample into groups of row panels. grad_input
    reads the weights in place, forward packs them (40 rows: a last panel of fewer rows than
    its width, zero-padded)."""
    spec = LayerSpec(input=(56, 4 if width == 13 else 7, width), kernel=(40, 56, 1, 1))
    choices = {"forward": tile, "grad_input": tile}
    transposed = _build_with(spec, dtype, choices, tmp_path / "t")
    packed = _build_with(spec, dtype, dict.fromkeys(choices, "tile=4x5"), tmp_path / "p")
    source = (Path(transposed.__file__).parent / "conv2d_openmp.c").read_text()
    left_over = spec.out_h * spec.out_w % int(tile.removeprefix("tile=").split("x")[0])
    for name in choices:
        assert f"{name}_edge_tile(left" in source
        assert (f"{name}_edge_last_pixels_tile(left" in source) == bool(left_over)
    # forward packs K^T's rows, transposing K in blocks in registers; grad_input reads K,
    # where a step's rows lie side by side
    assert source.count("left = weights + (int64_t)first * C;") == 1
    assert "pack_transposed(K + first * C, C, count, FWD_MR, C," in source
    assert source.count("left = K + first;") == 1
    _gives_the_packed_bits(transposed, packed, spec, dtype)


def _gives_the_packed_bits(module, packed, spec: LayerSpec, dtype: str) -> None:
    """``module`` matches the reference, and ``packed``'s forward and grad_input bit for bit,
    at a batch that cuts the samples into groups of row panels (3) and one that does not."""
    for batch in (3, 16):
        for result in check_module(module, batch=batch, seed=7):
            assert result.ok, result
        V, K, b, G = reference.random_inputs(spec, batch, dtype, 3)
        assert np.array_equal(module.forward(V, K, b), packed.forward(V, K, b))
        assert np.array_equal(module.grad_input(K, G), packed.grad_input(K, G))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("out_channels", [40, 42])
def test_a_last_column_tile_over_several_row_panels_gives_the_same_bits(tmp_path, dtype,
                                                                        out_channels):
    """52 pixels leave 4 to a last column panel of one vector (`4x3`: 24 float32 columns a
    panel, 12 float64), whose tile of 4 sums computes 3 row panels at once: forward's 40 or
    42 rows (10 panels: 3 groups and one alone; 11, the last of 2 rows, in a group) and
    grad_input's 56 (14 panels). The same bits as the packed 4 x 5 (no such tile), and the
    reference, at batches that cut the samples into groups of row panels (3) and not (16)."""
    spec = LayerSpec(input=(56, 4, 13), kernel=(out_channels, 56, 1, 1))
    choices = {"forward": "tile=4x3", "grad_input": "tile=4x3"}
    grouped = _build_with(spec, dtype, choices, tmp_path / "g")
    packed = _build_with(spec, dtype, dict.fromkeys(choices, "tile=4x5"), tmp_path / "p")
    source = (Path(grouped.__file__).parent / "conv2d_openmp.c").read_text()
    for prefix, name in (("FWD", "forward"), ("GIN", "grad_input")):
        assert f"#define {prefix}_EDGE_PANELS 3 " in source
        assert f"{name}_edge_panels_tile(left, column_panel," in source
    _gives_the_packed_bits(grouped, packed, spec, dtype)


@pytest.mark.parametrize("spec, choices, rule", [
    (LayerSpec(input=(16, 4, 4), kernel=(16, 16, 1, 1)), {"grad_weight": "tile=8x3t"},
     "forward and grad_input"),
    (LayerSpec(input=(16, 3, 3), kernel=(16, 16, 3, 3), padding=1),
     {"grad_weight": "tile=8x3t"}, "forward and grad_input"),
    (LayerSpec(input=(16, 8, 8), kernel=(16, 16, 1, 1), stride=2), {"forward": "tile=8x3t"},
     "this layer has stride (2, 2)"),
    (LayerSpec(input=(12, 4, 4), kernel=(16, 12, 1, 1)), {"grad_input": "tile=8x3t"},
     "stride (1, 1) and 12 result rows"),
    (LayerSpec(input=(16, 4, 4), kernel=(16, 16, 1, 1)), {"forward": "tile=2x12t"},
     "2 pixels to be whole squares of 8 or half of one"),
    (LayerSpec(input=(16, 2, 3), kernel=(16, 16, 1, 1)), {"forward": "tile=8x3t"},
     "the layer's 6 pixels"),
    (LayerSpec(input=(16, 4, 4), kernel=(16, 16, 1, 1)), {"forward": "tile=8x3q"},
     "two whole numbers"),
])
def test_a_transposed_tile_where_it_cannot_serve_is_refused(spec, choices, rule):
    with pytest.raises(ValueError, match=re.escape(rule)):
        plan(spec, 4, AVX512, choices)


def test_transposed_tiles_are_timed_for_forward_and_grad_input_at_stride_1():
    s6 = LAYERS["S6"][0]
    for dtype_bytes, machine, wanted in ((4, AVX512, ("tile=8x3t",)),
                                         (8, AVX512, ("tile=4x6t", "tile=8x3t")),
                                         (8, AVX2, ("tile=4x3t",)), (4, AVX2, ())):
        found = candidates(s6, dtype_bytes, machine)
        for name in ("forward", "grad_input"):
            assert tuple(c for c in found[name] if c.endswith("t")) == wanted
        assert not any(c.endswith("t") for c in found["grad_weight"])
    strided = LayerSpec(input=(64, 8, 8), kernel=(64, 64, 1, 1), stride=2)
    assert not any(c.endswith("t") for cs in candidates(strided, 4, AVX512).values() for c in cs)
