"""codegen.torch_network (the twin's own modules and its SGD step), codegen.bench_network and
``corrgen bench --network``. The generated network module is stood in for by the NumPy
reference (a module with the same four methods), so the timings' plumbing is what is tested;
tests/test_network_reference.py checks the twin's layers on many more networks."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import codegen
from codegen import bench_network as bn
from codegen.cli import main
from derive import Network, reference

DIGITS = "1x8x8 | conv 6x3x3 pad 1 | relu | maxpool 2 | flatten | dense 10 | softmax-ce"
SMALL = "1x6x6 | conv 2x3x3 pad 1 | relu | maxpool 2 | flatten | dense 3 | softmax-ce"
#: Conv layers the twin builds from its own module, not a bare Conv2d: an uneven 'same'
#: padding at a stride above 1 (Conv2d refuses padding='same' with a stride), with an untied
#: bias, and with convolution mode (the flip goes through the wrapper's conv).
TWIN_OWN = [
    "2x8x7 | conv 2x2x3 stride 2 pad same untied | tanh | l2pool 2 stride 1 | flatten "
    "| dense 2 | sigmoid | bce",
    "1x7x6 | conv 3x3x2 stride 2x1 pad same convolution | relu | maxpool 2 | flatten | dense 3 "
    "| softmax-ce",
]


def _data(net: Network, batch: int, dtype: str = "float64", seed: int = 3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch, *net.input)).astype(dtype)
    if net.loss == "softmax-ce":
        T = rng.integers(0, net.output_shape[0], size=batch)
    elif net.loss == "bce":
        T = rng.uniform(0, 1, size=(batch, *net.output_shape)).astype(dtype)
    else:
        T = rng.standard_normal((batch, *net.output_shape)).astype(dtype)
    params = {k: (2 * v).astype(dtype) for k, v in net.init_params(seed=seed).items()}
    return X, T, params


# -- the PyTorch twin ---------------------------------------------------------------------------


@pytest.mark.parametrize("text", TWIN_OWN)
def test_twin_own_conv_modules_match_the_reference(text):
    torch = pytest.importorskip("torch")
    from codegen.torch_network import torch_grads, torch_model

    net = Network.parse(text)
    assert not isinstance(torch_model(net)[0], torch.nn.Conv2d)  # the wrapper is tested
    X, T, params = _data(net, 3)
    loss, grads = reference.network(net).grads(X, T, params)
    want_loss, want, want_Y = torch_grads(net, X, T, params)
    np.testing.assert_allclose(reference.network(net).predict(X, params), want_Y, rtol=1e-10)
    assert loss == pytest.approx(want_loss, rel=1e-10)
    assert list(want) == list(grads)
    for name, grad in grads.items():
        np.testing.assert_allclose(grad, want[name], rtol=1e-9, atol=1e-12, err_msg=name)


def test_twin_computes_in_float32():
    torch = pytest.importorskip("torch")
    from codegen.torch_network import torch_grads, torch_model

    net = Network.parse(DIGITS)
    X, T, params = _data(net, 4, "float32")
    assert all(p.dtype == torch.float32 for p in torch_model(net, "float32").parameters())
    loss64, grads64 = reference.network(net).grads(X.astype(np.float64), T, params)
    loss, grads, Y = torch_grads(net, X, T, params)
    assert Y.dtype == np.float32 and loss != loss64
    assert loss == pytest.approx(loss64, rel=1e-5)
    for name, grad in grads.items():
        assert grad.dtype == np.float32
        np.testing.assert_allclose(grad, grads64[name], rtol=1e-4, atol=1e-5, err_msg=name)


@pytest.mark.parametrize("text", [SMALL, TWIN_OWN[1]])
def test_twin_sgd_step_is_the_reference_step(text):
    pytest.importorskip("torch")
    from codegen.torch_network import load_params, read_params, sgd_step, torch_model

    net = Network.parse(text)
    X, T, params = _data(net, 3)
    model = torch_model(net)
    load_params(model, params)
    np.testing.assert_array_equal(read_params(model)["0.weight"], params["0.weight"])
    loss = sgd_step(model, X, T, lr=0.5)().item()
    ref = reference.network(net)
    mine = {k: v.copy() for k, v in params.items()}
    assert loss == pytest.approx(ref.step(X, T, mine, lr=0.5), rel=1e-12)
    after = read_params(model)
    for name, value in mine.items():
        assert not np.allclose(value, params[name])  # the step moved it
        np.testing.assert_allclose(after[name], value, rtol=1e-10, atol=1e-12, err_msg=name)


def test_twin_refuses_bad_arguments():
    pytest.importorskip("torch")
    from codegen.torch_network import load_params, torch_model

    with pytest.raises(ValueError, match=r"dtype='float16': expected one of float32, float64"):
        torch_model(SMALL, "float16")
    model = torch_model(SMALL)
    with pytest.raises(ValueError, match=r"params: missing '0.bias'"):
        load_params(model, {"0.weight": np.zeros((2, 1, 3, 3))})
    params = Network.parse(SMALL).init_params()
    with pytest.raises(ValueError, match=r"params\['4.weight'\]: expected shape \(3, 18\)"):
        load_params(model, {**params, "4.weight": params["4.weight"].T})


# -- FLOPs --------------------------------------------------------------------------------------


def _conv_pass(n, c, h, w, o, k, stride=1, pad=0):
    """BENCH.md's 2*N*O*HO*WO*C*KH*KW of one pass, with HO and WO from the output formula."""
    ho, wo = (h + 2 * pad - k) // stride + 1, (w + 2 * pad - k) // stride + 1
    return 2 * n * o * ho * wo * c * k * k


def test_flops_of_a_single_conv_layer_are_bench_md_twice():
    """Forward and weight gradient; the first layer's input needs no gradient."""
    net = "3x9x9 | conv 4x3x3 stride 2 pad 1 | flatten | l2"
    assert bn.network_flops(net, 5) == 2 * _conv_pass(5, 3, 9, 9, 4, 3, stride=2, pad=1)


def test_flops_count_the_input_gradient_only_below_parameters():
    # maxpool 8x8 -> 4x4; conv 2x3x3 -> 2x2x2: the dense layer sees D = 8 and needs dX.
    net = "1x8x8 | maxpool 2 | conv 2x3x3 | flatten | dense 5 | l2"
    conv, dense = _conv_pass(7, 1, 4, 4, 2, 3), 2 * 7 * 5 * 8
    assert bn.network_flops(net, 7) == 2 * conv + 3 * dense
    # LeNet-5: the second conv and every dense layer need their input's gradient.
    lenet = ("1x32x32 | conv 6x5x5 | relu | maxpool 2 | conv 16x5x5 | relu | maxpool 2 | "
             "flatten | dense 120 | relu | dense 84 | relu | dense 10 | softmax-ce")
    convs = 2 * _conv_pass(1, 1, 32, 32, 6, 5) + 3 * _conv_pass(1, 6, 14, 14, 16, 5)
    denses = 3 * 2 * (400 * 120 + 120 * 84 + 84 * 10)
    assert bn.network_flops(lenet, 1) == convs + denses


# -- bench_network ------------------------------------------------------------------------------


class _Recording:
    """The reference as the module under test, recording what its ``step`` is given and the
    threads PyTorch is set to while it runs."""

    def __init__(self, net: Network) -> None:
        self.ref, self.calls = reference.network(net), []

    def step(self, X, T, params, lr):
        torch = sys.modules.get("torch")
        threads = torch.get_num_threads() if torch is not None else None
        self.calls.append((X, T, params, {k: v.copy() for k, v in params.items()}, lr, threads))
        return self.ref.step(X, T, params, lr)


def test_bench_network_times_every_contestant_from_the_same_start():
    torch = pytest.importorskip("torch")
    asked, made = [], []

    def load(net, target, dtype):
        asked.append((net.text(), target, dtype))
        made.append(_Recording(net))
        return made[-1]

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        rows = bn.bench_network(SMALL, 3, "float32", repeats=2, load=load, seed=5)
        assert torch.get_num_threads() == 1  # restored
    finally:
        torch.set_num_threads(previous)
    net = Network.parse(SMALL)
    assert asked == [(net.text(), "openmp", "float32")]
    calls = made[0].calls
    assert len(calls) >= 4  # warm-up, sizing, and per round an untimed and a timed call
    X, T, params, first, lr, threads = calls[0]
    assert X.dtype == np.float32 and X.shape == (3, 1, 6, 6) and T.dtype == np.int64
    assert lr == 1e-3 and threads == 2  # PyTorch on 2 threads while the contestants ran
    for name, value in net.init_params(seed=6).items():  # seed + 1: bench_network's draw
        np.testing.assert_array_equal(first[name], value.astype(np.float32))
        assert not np.array_equal(params[name], first[name])  # updated in place, step by step
    # Only its own steps move the module's parameters: its peers step on copies.
    ref = reference.network(net)
    for (_, _, same, before, _, _), (_, _, _, after, _, _) in zip(calls, calls[1:]):
        assert same is params
        ref.step(X, T, before, lr)
        for name, value in before.items():
            np.testing.assert_array_equal(value, after[name])
    assert [r.contestant for r in rows] == ["corrgen", "numpy", "torch"]
    us = {r.contestant: r.us for r in rows}
    for r in rows:
        assert (r.network, r.dtype, r.batch, r.note) == (net.text(), "float32", 3, "")
        assert r.us > 0 and r.flops == bn.network_flops(net, 3)
        assert r.vs_torch == pytest.approx(r.us / us["torch"])
        assert r.vs_numpy == pytest.approx(r.us / us["numpy"])
        assert r.gflops == pytest.approx(r.flops / r.us / 1e3)
    assert rows[2].threads == 2


def test_bench_network_without_torch_says_not_installed(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch raises ImportError
    rows = bn.bench_network(SMALL, 2, "float64", repeats=1,
                            load=lambda net, target, dtype: reference.network(net))
    ours, numpy, torch = rows
    assert torch.us is None and torch.note == "not installed" and torch.gflops is None
    assert ours.vs_torch is None and ours.us > 0 and numpy.vs_numpy == 1
    assert "| not installed |" in bn.table(rows)


@pytest.mark.parametrize("change, error", [
    ({"batch": 0}, "batch: expected an integer >= 1, got 0"),
    ({"dtype": "float16"}, "dtype: expected one of float32, float64, got 'float16'"),
    ({"repeats": 0}, "repeats: expected an integer >= 1, got 0"),
    ({"lr": float("nan")}, "lr: expected a positive finite number, got nan"),
    ({"threads": 0}, "threads: expected an integer >= 1, got 0"),
    ({"net": "1x4x4 | flatten | sigmoid | bce"}, "has no parameters"),
])
def test_bench_network_refuses_bad_arguments(change, error):
    args = {"net": SMALL, "batch": 2, "dtype": "float64", "repeats": 1,
            "load": lambda net, target, dtype: pytest.fail("loaded"), **change}
    with pytest.raises(ValueError, match=error.replace("(", r"\(").replace(")", r"\)")):
        bn.bench_network(**args)


# -- corrgen bench --network ----------------------------------------------------------------------


@pytest.fixture
def fake_modules(monkeypatch):
    """codegen.load_network answered by the reference; the peak a fixed figure."""
    loaded = []

    def load_network(net, target="openmp", dtype="float32", out=None, *, progress=None):
        loaded.append((net.text(), target, dtype, out))
        return reference.network(net)

    monkeypatch.setattr(codegen, "load_network", load_network, raising=False)
    monkeypatch.setattr("codegen.peak.fma_peak", lambda dtypes: {d: 50.0 for d in dtypes})
    return loaded


def test_cli_bench_network_end_to_end(capsys, tmp_path, fake_modules):
    report, doc = tmp_path / "bench.json", tmp_path / "bench.md"
    status = main(["bench", "--network", SMALL, "--batch", "4", "--dtype", "both",
                   "--json", str(report), "--markdown", str(doc)])
    out, err = capsys.readouterr()
    assert status == 0, err
    net = Network.parse(SMALL)
    assert fake_modules == [(net.text(), "openmp", d, None) for d in ("float32", "float64")]
    lines = out.splitlines()
    assert lines[0].startswith(f"network {net.text()}; {bn._cpu_name()}, 2 threads")
    header = [c.strip() for c in lines[2].strip("|").split("|")]
    assert header[:8] == ["dtype", "N", "corrgen µs", "NumPy µs", "PyTorch µs",
                          "corrgen/PyTorch", "corrgen/NumPy", "GFLOP/s"]
    rows = [[c.strip() for c in line.strip("|").split("|")] for line in lines[4:]]
    assert [r[:2] for r in rows] == [["float32", "4"], ["float64", "4"]]
    timings = json.loads(report.read_text())["timings"]
    assert len(timings) == 6
    for t in timings:
        assert t["flops"] == bn.network_flops(net, 4) and t["peak_gflops"] == 50.0
        if t["us"] is not None:
            assert t["percent_of_peak"] == pytest.approx(100 * t["gflops"] / 50.0)
    ours = [t for t in timings if t["contestant"] == "corrgen"]
    for row, t in zip(rows, ours):
        assert float(row[2]) == pytest.approx(t["us"], abs=0.05)
        assert float(row[7]) == pytest.approx(t["gflops"], abs=0.005)
    assert "# corrgen bench --network" in doc.read_text() and lines[2] in doc.read_text()


def test_cli_bench_network_leaves_torch_out_on_request(capsys, fake_modules):
    status = main(["bench", "--network", SMALL, "--batch", "2", "--dtype", "float64",
                   "--no-torch"])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert "| left out |" in out and out.count("| float64 |") == 1


@pytest.mark.parametrize("argv, words", [
    (["--input", "3x8x8"], ["--input", "--network describes every layer"]),
    (["--layers", "S2"], ["--layers 'S2'", "give one or the other"]),
    (["--style", "loops"], ["--style loops"]),
    (["--dtype", "float16"], ["--dtype 'float16'", "float16"]),
    (["--runs", "3"], ["--runs 3", "at least 7"]),
    (["--batch", "-1"], ["--batch -1", ">= 1"]),
])
def test_cli_bench_network_refusals_name_the_option(capsys, fake_modules, argv, words):
    status = main(["bench", "--network", SMALL, *argv])
    _, err = capsys.readouterr()
    assert status == 2 and fake_modules == []
    assert err.startswith("corrgen bench: error: ") and len(err.splitlines()) == 1
    for word in words:
        assert word in err


def test_cli_bench_network_refuses_a_bad_network(capsys, fake_modules):
    status = main(["bench", "--network", "1x8x8 | conv 6x3x3 | pool 2 | l2"])
    _, err = capsys.readouterr()
    assert status == 2 and "pool 2" in err and fake_modules == []


def test_bench_help_has_a_network_example(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    out = capsys.readouterr().out
    assert 'corrgen bench --network "1x8x8 | conv 6x3x3 pad 1' in out
    assert "--dtype both" in out and "--network 'INPUT | LAYER | ... | LOSS'" in out
