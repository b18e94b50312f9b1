"""Winograd's F(2x2, 3x3) and F(3x3, 2x2) (codegen.blocking.winograd): the transforms
against the direct sums in exact arithmetic, the modules that compute every pass with them
against the NumPy reference, and when tuning offers them."""

from __future__ import annotations

import random
import re
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
from test_tune import _build_with

from codegen.bench import (
    LAYERS,
    WINOGRAD_NOTE,
    bench_module,
    document,
    markdown,
    table,
    tuning_lines,
)
from codegen.blocking import AVX2, AVX512, candidates, plan, winograd
from codegen.blocking.common import LINE_BYTES, SET_SPAN_BYTES, geometry, skewed
from codegen.blocking.layer import (
    PASSES,
    SAMPLE_WINOGRAD_CHOICE,
    WIDE_WINOGRAD_CHOICE,
    WINOGRAD_CHOICE,
)
from codegen.blocking.pointwise import CHUNK_BYTES
from codegen.blocking.records import Winograd, WinogradGradWeight
from codegen.blocking.winograd import (
    AT,
    BT,
    GT,
    A,
    G,
    applies,
    linear,
    sample_tasks_pay,
    transform,
)
from codegen.check import check_module
from codegen.machine import AVX512_HALVES, ISA_ENV
from codegen.tune import Tuning
from derive import LayerSpec


def _product(a, b):
    return [[sum(a[i][k] * b[k][j] for k in range(len(b))) for j in range(len(b[0]))]
            for i in range(len(a))]


def _transposed(a):
    return [list(row) for row in zip(*a)]


def _fractions(rng: random.Random, size: int) -> list[list[Fraction]]:
    return [[Fraction(rng.randint(-50, 50), rng.randint(1, 9)) for _ in range(size)]
            for _ in range(size)]


def _winograd(out, filt, f, d):
    """``out [(filt f filt^T) * (B^T d B)] out^T`` in exact arithmetic."""
    u = _product(_product(filt, f), _transposed(filt))
    v = _product(_product(BT, d), _transposed(BT))
    m = [[u[i][j] * v[i][j] for j in range(4)] for i in range(4)]
    return _product(_product(out, m), _transposed(out))


@pytest.mark.parametrize("seed", range(5))
def test_the_transforms_compute_the_correlation_exactly(seed):
    """A^T [(G g G^T) * (B^T d B)] A is the 2x2 valid correlation of the 4x4 patch d with
    the 3x3 kernel g, in exact rational arithmetic."""
    rng = random.Random(seed)
    d, g = _fractions(rng, 4), _fractions(rng, 3)
    y = _winograd(AT, G, g, d)
    direct = [[sum(d[r + i][c + j] * g[i][j] for i in range(3) for j in range(3))
               for c in range(2)] for r in range(2)]
    assert y == direct


@pytest.mark.parametrize("seed", range(5))
def test_the_grad_weight_transforms_compute_its_correlation_exactly(seed):
    """G^T [(A e A^T) * (B^T d B)] G is the 3x3 correlation of the 4x4 patch d with the 2x2
    block e of gradients (what the block adds to the kernel's gradient), exactly."""
    rng = random.Random(100 + seed)
    d, e = _fractions(rng, 4), _fractions(rng, 2)
    y = _winograd(GT, A, e, d)
    direct = [[sum(e[r][c] * d[r + i][c + j] for r in range(2) for c in range(2))
               for j in range(3)] for i in range(3)]
    assert y == direct


def test_the_printed_transform_is_the_matrix():
    """``transform``'s C, evaluated as Python, gives T x T^T; zero terms are left out and
    only the wanted entries are printed, with the row sums they need."""
    rng = random.Random(3)
    x = [[rng.randint(-9, 9) for _ in range(4)] for _ in range(4)]
    lines = transform(BT, lambda k, c: f"x[{k}][{c}]", lambda i, j, e: f"y[{i}][{j}] = {e};")
    env = {"x": x, "y": [[None] * 4 for _ in range(4)]}
    for line in lines:
        exec(line.removeprefix("const real ").removesuffix(";"), env)  # noqa: S102
    assert env["y"] == _product(_product(BT, x), _transposed(BT))
    assert linear((0, 1, -1, Fraction(1, 2)), ["a", "b", "c", "d"]) == \
        "b - c + (real)0.5 * d"
    assert linear((-1, 0), ["a", "b"]) == "-a"
    edge = transform(AT, lambda k, c: f"m{k}{c}", lambda i, j, e: f"y{i}{j} = {e};",
                     {(0, 0), (1, 0)})
    assert [line.split(" =")[0] for line in edge if line.startswith("y")] == ["y00", "y10"]
    assert not any("t0_3 =" in line for line in edge)  # column 0 of A does not use point 3


#: Layers Winograd applies to, with what each covers: odd result heights and widths (a
#: last tile of one row or one column), result channels not a whole number of product
#: tiles, every padding it allows (0, 2, unequal), no bias, convolution mode, a last task
#: of fewer tile rows than the others.
SPECS = {
    "odd_sizes": LayerSpec(input=(16, 9, 11), kernel=(17, 16, 3, 3), padding=1),
    "valid": LayerSpec(input=(18, 8, 10), kernel=(16, 18, 3, 3), padding=0, bias=False),
    "padding_2": LayerSpec(input=(16, 7, 6), kernel=(24, 16, 3, 3), padding=2),
    "unequal_padding": LayerSpec(input=(20, 10, 7), kernel=(16, 20, 3, 3), padding=(0, 2),
                                 mode="convolution"),
    # 7 rows of tiles in tasks of 5 (float32) or 2 (float64): a last task of fewer rows
    "short_last_block": LayerSpec(input=(16, 14, 80), kernel=(16, 16, 3, 3), padding=1),
}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", list(SPECS))
def test_winograd_modules_match_the_reference(tmp_path: Path, name, dtype):
    spec = SPECS[name]
    module = _build_with(spec, dtype, dict.fromkeys(PASSES, WINOGRAD_CHOICE), tmp_path)
    source = (Path(module.__file__).parent / "conv2d_openmp.c").read_text()
    for pass_name in PASSES:
        assert f"static void {pass_name}_patches(" in source
    assert ("Z + s * (WF_OUT" in source) and ("dV + s * (WG_OUT" in source)
    g = geometry(spec)
    assert ("the last tile of a row stores its first column only" in source) == (
        g.wo % 2 == 1 or g.w % 2 == 1)
    for batch, seed in ((1, 3), (3, 7)):
        for result in check_module(module, batch=batch, seed=seed):
            assert result.ok, result


def test_the_kept_transformed_weights_serve_every_call_and_every_thread(tmp_path: Path):
    """The forward and grad_input blocks of transformed weights are kept between calls
    (take_kept): each call transforms its own weights into them, so calls with other
    weights, one after another and from several Python threads at once (cffi releases the
    GIL), give what the reference gives, and the same bits as one call alone."""
    from concurrent.futures import ThreadPoolExecutor

    from derive import reference

    spec = SPECS["odd_sizes"]
    module = _build_with(spec, "float64", dict.fromkeys(PASSES, WINOGRAD_CHOICE), tmp_path)
    source = (Path(module.__file__).parent / "conv2d_openmp.c").read_text()
    for pass_name in ("forward", "grad_input"):
        assert f"take_kept(&{pass_name}_kept_weights," in source
        assert f"give_kept(&{pass_name}_kept_weights, weights);" in source
    inputs = [reference.random_inputs(spec, 2, "float64", seed) for seed in range(6)]
    alone = [(module.forward(V, K, b), module.grad_input(K, grad))
             for V, K, b, grad in inputs]
    for (V, K, b, grad), (Z, dV) in zip(inputs, alone):
        np.testing.assert_allclose(Z, reference.forward(spec, V, K, b), rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(dV, reference.grad_input(spec, K, grad), rtol=1e-12,
                                   atol=1e-12)

    def calls(i):
        V, K, b, grad = inputs[i % len(inputs)]
        return [(module.forward(V, K, b), module.grad_input(K, grad)) for _ in range(20)]

    with ThreadPoolExecutor(4) as pool:
        for i, results in enumerate(pool.map(calls, range(8))):
            Z, dV = alone[i % len(inputs)]
            for z, dv in results:
                assert np.array_equal(z, Z) and np.array_equal(dv, dV)


def test_a_task_keeps_its_blocks_within_l2():
    """A task takes as many tile rows as keep its transformed patches and products within
    CHUNK_BYTES, at least one: S5 two rows in float32, one in float64."""
    spec = LAYERS["S5"][0]
    for dtype_bytes, rows in ((4, 2), (8, 1)):
        forward = next(p for p in plan(spec, dtype_bytes, AVX512,
                                       {"forward": "winograd=2"}).passes if p.name == "forward")
        assert isinstance(forward, Winograd)
        constants = {c.name: c.value for c in plan(spec, dtype_bytes, AVX512,
                                                   {"forward": "winograd=2"}).constants}
        assert constants["WF_TR"] == rows
        assert 16 * 128 * constants["WF_NB"] * dtype_bytes <= CHUNK_BYTES
        assert constants["WF_NB"] % constants["WF_NR"] == 0
        assert constants["WF_NB"] >= rows * constants["WF_TW"]
        assert not any(name.startswith("FWD_") for name in constants)


def test_grad_weight_tasks_keep_their_blocks_within_l2_and_pad_the_channels():
    """grad_weight by F(3x3, 2x2) takes the forward's tile rows per task (its patches and
    transformed gradients within CHUNK_BYTES), its product's inner dimension is the task's
    tiles, and the channels are padded to whole tiles (17 output channels: one more vector);
    the direct grad_weight's constants are not printed."""
    for spec, dtype_bytes, rows in ((LAYERS["S5"][0], 4, 2), (LAYERS["S5"][0], 8, 1),
                                    (SPECS["odd_sizes"], 4, 5)):
        record = plan(spec, dtype_bytes, AVX512, {"grad_weight": WINOGRAD_CHOICE})
        assert isinstance(record.passes[2], WinogradGradWeight)
        constants = {c.name: c.value for c in record.constants}
        assert constants["WW_TR"] == rows
        assert constants["WW_NB"] == rows * constants["WW_TW"]
        assert 16 * (spec.input[0] + spec.kernel[0]) * constants["WW_NB"] * dtype_bytes \
            <= CHUNK_BYTES
        assert constants["WW_OUT_PAD"] % constants["WW_NR"] == 0
        assert constants["WW_OUT_PAD"] - constants["WW_NR"] < spec.kernel[0]
        assert constants["WW_IN_PAD"] % constants["WW_MR"] == 0
        assert not any(name.startswith("GW_") for name in constants)
        assert constants["MIN_TASKS"] > 0


def test_a_skewed_distance_is_never_a_whole_number_of_4_kb():
    """One cache line more, or two where one would land on a whole number of 4 KB."""
    assert skewed(1024, 4) == 1024 + 16 and skewed(512, 8) == 512 + 8
    assert skewed(1024 - 16, 4) == 1024 + 16 and skewed(512 - 8, 8) == 512 + 8
    for reals in range(1, 3000):
        for dtype_bytes in (4, 8):
            assert skewed(reals, dtype_bytes) * dtype_bytes % SET_SPAN_BYTES
            assert 0 < skewed(reals, dtype_bytes) - reals <= 2 * LINE_BYTES // dtype_bytes


@pytest.mark.parametrize("dtype_bytes", [4, 8])
def test_the_points_of_each_transform_lie_a_cache_line_off_4_kb(dtype_bytes):
    """The 16 points of every operand of Winograd's transforms lie a whole point plus one
    cache line apart: at a whole number of 4 KB apart (a 512-channel layer's transformed
    weights lie 1 MB apart per point), a transform's 16 accesses fell in one cache set.
    Checked on layers whose unskewed strides are such multiples."""
    for spec in (LayerSpec(input=(512, 14, 14), kernel=(512, 512, 3, 3), padding=1),
                 LayerSpec(input=(128, 28, 28), kernel=(128, 128, 3, 3), padding=1)):
        constants = {c.name: c.value for c in plan(spec, dtype_bytes, AVX512, dict.fromkeys(
            PASSES, WINOGRAD_CHOICE)).constants}
        line = LINE_BYTES // dtype_bytes
        expected = {}
        for p in ("WF", "WG"):
            expected |= {f"{p}_U_POINT": constants[f"{p}_OUT_PAD"] * constants[f"{p}_IN"],
                         f"{p}_V_POINT": constants[f"{p}_IN"] * constants[f"{p}_NB"],
                         f"{p}_M_POINT": constants[f"{p}_OUT_PAD"] * constants[f"{p}_NB"]}
        expected |= {"WW_V_POINT": constants["WW_IN_PAD"] * constants["WW_NB"],
                     "WW_U_POINT": constants["WW_NB"] * constants["WW_OUT_PAD"],
                     "WW_S_POINT": constants["WW_IN_PAD"] * constants["WW_OUT_PAD"]}
        assert any(reals * dtype_bytes % SET_SPAN_BYTES == 0 for reals in expected.values())
        for name, reals in expected.items():
            assert constants[name] in (reals + line, reals + 2 * line), name
            assert constants[name] * dtype_bytes % SET_SPAN_BYTES, name


def test_tuning_offers_winograd_where_it_applies():
    """S5 (3x3, stride 1, 64 channels): the model's choice first, Winograd last, for every
    pass, and with full-width AVX-512 then Winograd with its products in 512-bit vectors
    (not where 512-bit multiply-adds run in halves, nor with AVX2); S2 (one input
    channel), S3 (5x5) and S4 (stride 2): never."""
    for machine, last in ((AVX512, (WINOGRAD_CHOICE, WIDE_WINOGRAD_CHOICE)),
                          (AVX512_HALVES, (WINOGRAD_CHOICE,)), (AVX2, (WINOGRAD_CHOICE,))):
        for dtype_bytes in (4, 8):
            options = candidates(LAYERS["S5"][0], dtype_bytes, machine)
            for name in PASSES:
                assert options[name][-len(last):] == last, (machine.isa, options[name])
                assert not options[name][0].startswith("winograd")
                assert WIDE_WINOGRAD_CHOICE not in options[name][:-len(last)]
    for layer in ("S2", "S3", "S4", "S6"):
        spec = LAYERS[layer][0]
        assert not applies(geometry(spec))
        assert not any("winograd" in c for choices in candidates(spec, 4, AVX512).values()
                       for c in choices)


@pytest.mark.parametrize("dtype_bytes, lanes", [(4, 16), (8, 8)])
def test_wide_winograd_products_take_the_widest_vectors(dtype_bytes, lanes):
    """With winograd=2w, every pass's product tile is of LANES reals per vector: its record
    names the lane vectors' type and macros, its columns (and the padding of the tiles and
    channels they cover) are whole tiles of nrv * LANES, and the module's helpers define
    them. winograd=2 keeps vectors of VL."""
    spec = LAYERS["S5"][0]
    wide = plan(spec, dtype_bytes, AVX512, dict.fromkeys(PASSES, WIDE_WINOGRAD_CHOICE))
    narrow = plan(spec, dtype_bytes, AVX512, dict.fromkeys(PASSES, WINOGRAD_CHOICE))
    constants = {c.name: c.value for c in wide.constants}
    for record, other, prefix in zip(wide.passes, narrow.passes, ("WF", "WG", "WW")):
        assert record.wide and not other.wide
        assert (record.vector, record.load, record.reals) == ("lanes", "LOAD_LANES", "LANES")
        assert constants[f"{prefix}_NR"] == record.nrv * lanes
        assert record.mr * record.nrv <= AVX512.accumulators
    assert constants["WF_NB"] % constants["WF_NR"] == constants["WG_NB"] % constants["WG_NR"] == 0
    assert constants["WW_OUT_PAD"] % constants["WW_NR"] == 0
    assert constants["LANES"] == lanes
    assert wide.helpers.lanes and wide.helpers.wide_in_register


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["odd_sizes", "unequal_padding", "short_last_block"])
def test_wide_winograd_modules_match_the_reference(tmp_path: Path, monkeypatch, name, dtype):
    """Every pass by Winograd's algorithm with its products in 512-bit vectors (odd sizes,
    17 channels, unequal padding in convolution mode, a short last task) against the
    reference; on a CPU without AVX-512 the compiler splits the 512-bit vectors."""
    monkeypatch.setenv(ISA_ENV, "avx512")
    module = _build_with(SPECS[name], dtype, dict.fromkeys(PASSES, WIDE_WINOGRAD_CHOICE),
                         tmp_path)
    source = (Path(module.__file__).parent / "conv2d_openmp.c").read_text()
    assert source.count("LOAD_LANES(bk + 0 * LANES)") == 3
    for batch, seed in ((1, 5), (3, 9)):
        for result in check_module(module, batch=batch, seed=seed):
            assert result.ok, result


def test_wide_winograd_is_refused_without_wider_vectors():
    """AVX2's widest vectors are VL: winograd=2w is an error naming the choice and the rule."""
    with pytest.raises(ValueError, match=re.escape(
            "choices: grad_input=winograd=2w: Winograd's products in the widest vectors ('w') "
            "need a machine whose widest vectors are wider than VL (AVX-512)")):
        plan(LAYERS["S5"][0], 4, AVX2, {"grad_input": WIDE_WINOGRAD_CHOICE})


@pytest.mark.parametrize("layer, choices, message", [
    ("S4", {"forward": "winograd=2"}, "stride 2x2"),
    ("S6", {"forward": "winograd=2"}, "a 3x3 kernel"),
    ("S2", {"grad_input": "winograd=2"}, "at least 16 input and output channels"),
    ("S5", {"grad_bias": "winograd=2"}, "for forward, grad_input or grad_weight"),
    ("S5", {"forward": "winograd=4"}, "is winograd=2 (2x2 tiles), or winograd=2w"),
    ("S5", {"forward": "winograd=2r"}, "is winograd=2 (2x2 tiles), or winograd=2w"),
    ("S5", {"grad_weight": "winograd=2s"}, "or winograd=2s (tasks of whole samples), for "
     "forward or grad_input"),
    ("S3", {"grad_weight": "winograd=2"}, "a 3x3 kernel"),
])
def test_a_winograd_choice_it_cannot_take_is_an_error(layer, choices, message):
    with pytest.raises(ValueError, match=r"choices: .*") as error:
        plan(LAYERS[layer][0], 4, AVX512, choices)
    assert message in str(error.value)


def test_the_bench_marks_the_passes_winograd_computes(tmp_path: Path):
    """A pass tuning chose Winograd for is marked in the bench's table, and the report says
    that its GFLOP/s count the direct sum's operations."""
    module = _build_with(SPECS["valid"], "float64", {"forward": "winograd=2"}, tmp_path)
    module.tuning = Tuning({"forward": "winograd=2"}, {"forward": {"winograd=2": 1.0}}, 2, 1,
                           0.0)
    rows = bench_module(module, batch=2, runs=7, with_torch=False)
    assert [(r.name, r.algorithm) for r in rows] == [
        ("forward", "winograd"), ("grad_input", ""), ("grad_weight", "")]
    assert "| forward (W) |" in table(rows) and "| grad_input |" in table(rows)
    assert WINOGRAD_NOTE in markdown(rows)
    assert WINOGRAD_NOTE not in markdown(rows[1:])


def test_the_bench_reports_what_tuning_chose(tmp_path: Path):
    """Each row carries its pass's tuned choice and the tuning's seconds (and so does the
    JSON); the report lists the choices per module, and says nothing of tuning for a module
    that was not tuned."""
    module = _build_with(SPECS["valid"], "float64", {"forward": "winograd=2"}, tmp_path)
    module.tuning = Tuning({"forward": "winograd=2"}, {"forward": {"winograd=2": 1.0}}, 2, 1,
                           4.25)
    rows = bench_module(module, batch=2, layer="L", runs=7, with_torch=False)
    assert [(r.name, r.choice, r.tuning_s) for r in rows] == [
        ("forward", "winograd=2", 4.25), ("grad_input", "", 4.25), ("grad_weight", "", 4.25)]
    line = f"L float64, {rows[0].threads} threads: forward winograd=2 (tuned in 4.2 s)"
    assert tuning_lines(rows) == [line]
    assert f"\n- {line}\n" in markdown(rows)
    assert document(rows)["rows"][0]["choice"] == "winograd=2"
    module.tuning = None
    untuned = bench_module(module, batch=2, layer="L", runs=7, with_torch=False)
    assert all(r.choice == "" and r.tuning_s is None for r in untuned)
    assert tuning_lines(untuned) == [] and "Tuned on this machine" not in markdown(untuned)


_THREADS_SCRIPT = """
import sys
sys.path.insert(0, sys.argv[2])
from pathlib import Path
from test_tune import _build_with
from test_winograd import SAMPLE_SPEC, SPECS
from codegen.blocking import winograd
from codegen.check import check_module
from codegen.machine import AVX512_HALVES, ISA_ENV
module = _build_with(SPECS["odd_sizes"], "float64", {"grad_weight": "winograd=2"},
                     Path(sys.argv[1]))
winograd.GROUP_BYTES = 1
samples = _build_with(SAMPLE_SPEC, "float32", dict.fromkeys(("forward", "grad_input"),
                                                            "winograd=2s"), Path(sys.argv[1]))
for m in (module, samples):
    assert m.threads() == 5, m.threads()
    for batch in (1, 4):
        for result in check_module(m, batch=batch, seed=batch):
            assert result.ok, result
"""


def test_grad_weight_adds_every_threads_sums(tmp_path: Path):
    """On 5 threads (more than this machine's cores), grad_weight by F(3x3, 2x2) adds every
    thread's sums, those of threads that had no task (batch 1: one task) included; and
    winograd=2s shares a batch of one block (one sample) out among them, each thread a run
    of its channel panels, in groups of one panel."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS="5")
    subprocess.run([sys.executable, "-c", _THREADS_SCRIPT, str(tmp_path),
                    str(Path(__file__).parent)], env=env, check=True)


#: A layer whose transformed weights exceed DEEP_WEIGHTS_BYTES in both dtypes (16 x 136 x
#: 136 reals), on a plane of 3 x 5 tiles: a task of winograd=2s is a whole sample.
SAMPLE_SPEC = LayerSpec(input=(136, 6, 10), kernel=(136, 136, 3, 3), padding=1)


def test_tuning_offers_whole_sample_tasks_where_the_weights_outgrow_l2():
    """winograd=2s is offered for forward and grad_input (never grad_weight) where the
    transformed weights exceed DEEP_WEIGHTS_BYTES: a 512- and a 256-channel 14x14 layer,
    SAMPLE_SPEC; not S5 (0.25 MB in float32, 0.5 in float64), nor 128 channels in float32
    (exactly 1 MB), which in float64 (2 MB) it is."""
    big = LayerSpec(input=(512, 14, 14), kernel=(512, 512, 3, 3), padding=1)
    mid = LayerSpec(input=(256, 14, 14), kernel=(256, 256, 3, 3), padding=1)
    r128 = LayerSpec(input=(128, 28, 28), kernel=(128, 128, 3, 3), padding=1)
    for spec, dtype_bytes, offered in ((big, 4, True), (mid, 8, True), (SAMPLE_SPEC, 4, True),
                                       (LAYERS["S5"][0], 4, False),
                                       (LAYERS["S5"][0], 8, False), (r128, 4, False),
                                       (r128, 8, True)):
        assert sample_tasks_pay(geometry(spec), dtype_bytes) == offered
        options = candidates(spec, dtype_bytes, AVX512)
        for name in PASSES:
            assert (SAMPLE_WINOGRAD_CHOICE in options[name]) == (
                offered and name != "grad_weight"), (spec, dtype_bytes, name)


def test_whole_sample_tasks_take_a_sample_and_groups_of_channels():
    """With winograd=2s a task takes at least SAMPLE_TILES tiles, or all of a sample's (the
    512-channel layer: 7 rows of 7, one block per sample), its tile of the model's choice
    among all widths (3 x 7 vectors there), and a group's products stay within GROUP_BYTES;
    winograd=2 keeps one tile row per task there and prints no group."""
    spec = LayerSpec(input=(512, 14, 14), kernel=(512, 512, 3, 3), padding=1)
    for dtype_bytes in (4, 8):
        constants = {c.name: c.value for c in plan(
            spec, dtype_bytes, AVX512, dict.fromkeys(("forward", "grad_input"),
                                                     SAMPLE_WINOGRAD_CHOICE)).constants}
        plain = {c.name: c.value for c in plan(
            spec, dtype_bytes, AVX512, {"forward": WINOGRAD_CHOICE}).constants}
        for p in ("WF", "WG"):
            assert (constants[f"{p}_TR"], constants[f"{p}_BLOCKS"]) == (7, 1)
            assert constants[f"{p}_NB"] >= 49
            group = constants[f"{p}_GROUP"]
            assert 16 * group * constants[f"{p}_MR"] * constants[f"{p}_NB"] * dtype_bytes \
                <= winograd.GROUP_BYTES
            assert 16 * (group + 1) * constants[f"{p}_MR"] * constants[f"{p}_NB"] \
                * dtype_bytes > winograd.GROUP_BYTES
        assert (plain["WF_TR"], "WF_GROUP" in plain) == (1, False)
    records = plan(spec, 4, AVX512, {"forward": SAMPLE_WINOGRAD_CHOICE}).passes
    assert (records[0].samples, records[0].mr, records[0].nrv) == (True, 3, 7)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_whole_sample_tasks_match_the_reference_and_the_bits_of_row_tasks(
        tmp_path: Path, monkeypatch, dtype):
    """SAMPLE_SPEC's forward and grad_input with winograd=2s, in groups of one channel panel
    (GROUP_BYTES forced down), against the reference at batches 1 and 3, and bit for bit
    equal to winograd=2's: every result sums the same products in the same order, however
    the tasks are cut."""
    monkeypatch.setattr(winograd, "GROUP_BYTES", 1)
    choices = dict.fromkeys(("forward", "grad_input"), SAMPLE_WINOGRAD_CHOICE)
    samples = _build_with(SAMPLE_SPEC, dtype, choices, tmp_path)
    source = (Path(samples.__file__).parent / "conv2d_openmp.c").read_text()
    assert "#define WF_GROUP 1 " in source and "#define WG_GROUP 1 " in source
    assert "A block is a whole sample (winograd=2s)" in source
    rows = _build_with(SAMPLE_SPEC, dtype, dict.fromkeys(("forward", "grad_input"),
                                                         WINOGRAD_CHOICE), tmp_path)
    for batch, seed in ((1, 2), (3, 4)):
        for result in check_module(samples, batch=batch, seed=seed):
            assert result.ok, result
    from derive import reference
    V, K, b, G = reference.random_inputs(SAMPLE_SPEC, 3, dtype, 6)
    assert (samples.forward(V, K, b) == rows.forward(V, K, b)).all()
    assert (samples.grad_input(K, G) == rows.grad_input(K, G)).all()
