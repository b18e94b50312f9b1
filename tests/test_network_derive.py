"""derive.Network and derive.network_derivation: the text form, shapes, parameters, and every
layer's per-element forward and δ recursion, held against independent oracles: the NumPy
reference network (separately written), SymPy's derivative of the fully composed loss, and
the seeds' own formulas."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sympy import (
    Heaviside,
    IndexedBase,
    Max,
    Rational,
    diff,
    exp,
    simplify,
    symbols,
    sympify,
)
from sympy.core.relational import Relational

from codegen.cli import main
from derive import Network, SpecError, values
from derive import network_derivation as nd
from derive.errors import DerivationError
from derive.reference import network as reference_network


@pytest.fixture
def run_cli(capsys):
    """``corrgen ARGS`` in process: its stdout and stderr, after checking the exit status."""

    class Result:
        def __init__(self, stdout: str, stderr: str) -> None:
            self.stdout, self.stderr = stdout, stderr

    def run(*argv: str, expect: int = 0) -> Result:
        status = main(list(argv))
        out, err = capsys.readouterr()
        assert status == expect, (status, err)
        return Result(out, err)

    return run

EXAMPLE = "1x8x8 | conv 6x3x3 pad 1 | relu | maxpool 2 | flatten | dense 10 | softmax-ce"

# -- the text form ----------------------------------------------------------------------------


def test_example_shapes_and_params_follow_design():
    net = Network.parse(EXAMPLE)
    assert [layer.kind for layer in net.layers] == ["conv", "relu", "maxpool", "flatten", "dense"]
    assert [layer.out_shape for layer in net.layers] == [
        (6, 8, 8), (6, 8, 8), (6, 4, 4), (96,), (10,)]
    assert net.params() == [("0.weight", (6, 1, 3, 3)), ("0.bias", (6,)),
                            ("4.weight", (10, 96)), ("4.bias", (10,))]
    assert Network.parse(net.text()) == net


def test_options_of_each_kind():
    net = Network.parse("3x9x9 | conv 4x3x3 stride 2 pad same dil 1 nobias | tanh "
                        "| conv 2x2x2 untied convolution | l2pool 2 stride 1 | sigmoid | bce")
    conv, _, second, pool, _ = net.layers
    assert conv.spec.stride == (2, 2) and not conv.spec.bias and conv.out_shape == (4, 5, 5)
    assert second.untied and second.spec.mode == "convolution"
    assert net.params() == [("0.weight", (4, 3, 3, 3)), ("2.weight", (2, 4, 2, 2)),
                            ("2.bias", (2, 4, 4))]
    assert pool.out_shape == (2, 3, 3)
    assert Network.parse("5x7 | avgpool 2x3 | l2").layers[0].out_shape == (1, 2, 2)


@pytest.mark.parametrize("text, words", [
    ("1x8x8 | dense 3 | l2", ["layer 0", "flatten"]),
    ("1x8x8 | conv 2x9x9 | l2", ["layer 0", "padded input"]),
    ("1x8x8 | relu | mse", ["loss", "mse", "softmax-ce"]),
    ("1x8x8 | conv 2x3x3 stride | l2", ["stride", "needs a value"]),
    ("1x8x8 | maxpool 2 stride 0 | l2", ["stride", ">= 1"]),
    ("1x8x8 | maxpool 9 | l2", ["larger than", "8x8"]),
    ("1x8x8 | conv 2x3x3 | relu | softmax-ce", ["softmax-ce", "vector"]),
    ("1x8x8 | pool 2 | l2", ["unknown layer kind", "maxpool"]),
    ("1x8x8 | conv 2x3x3 nobias untied | l2", ["untied", "nobias"]),
    ("1x8x8 | l2", ["at least one layer"]),
    ("1x8x8x2 | relu | l2", ["input", "CxHxW"]),
    ("1x8x8 | flatten | maxpool 2 | l2", ["layer 1", "image input"]),
])
def test_bad_networks_name_the_layer_and_the_rule(text, words):
    with pytest.raises(SpecError) as error:
        Network.parse(text)
    for word in words:
        assert word in str(error.value), (word, str(error.value))


def test_init_params_are_seeded_and_scaled_like_torch():
    net = Network.parse(EXAMPLE)
    a, b = net.init_params(seed=3), net.init_params(seed=3)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["0.weight"], net.init_params(seed=4)["0.weight"])
    assert np.abs(a["0.weight"]).max() <= 1 / 3 and np.abs(a["4.weight"]).max() <= 96 ** -0.5
    assert {k: v.shape for k, v in a.items()} == dict(net.params())


# -- the derivation against the NumPy reference ------------------------------------------------

NETWORKS = [
    "1x5x5 | conv 2x2x2 pad 1 stride 2 | tanh | avgpool 2 stride 1 | flatten | dense 3 "
    "| softmax-ce",
    "2x6x6 | conv 2x3x3 pad same | relu | maxpool 2 | flatten | dense 2 | sigmoid | bce",
    "1x5x5 | conv 1x2x2 untied dil 2 | sigmoid | l2pool 2 | flatten | dense 2 nobias | l2",
    "1x4x4 | conv 2x2x2 convolution nobias | maxpool 2 stride 1 | tanh | flatten | dense 2 | l2",
]


def _numbers(net: Network, seed: int):
    rng = np.random.default_rng(seed)
    params = net.init_params(seed)
    x = rng.standard_normal((1, *net.input))
    if net.loss == "softmax-ce":
        t = np.array([seed % net.output_shape[0]])
        onehot = np.eye(net.output_shape[0])[t[0]]
    else:
        t = rng.uniform(0.1, 0.9, size=(1, *net.output_shape))
        onehot = t[0]
    data = {"X": x[0].tolist(), "T": onehot.tolist(), **{k: v.tolist() for k, v in params.items()}}
    return x, t, params, data


@pytest.mark.parametrize("text", NETWORKS)
def test_recursion_at_numbers_equals_the_reference(text):
    net = Network.parse(text)
    exprs = nd.derive_network(net)
    x, t, params, data = _numbers(net, seed=1)
    example = nd.evaluate(exprs, values.substitutions(data, nd.arrays(net)))
    loss, grads = reference_network(net).grads(x, t, params)
    assert float(example.loss) == pytest.approx(loss, rel=1e-12)
    for name, grad in grads.items():
        base = exprs.param_symbol(name)
        ours = np.array([float(example.grads[base[i]]) for i in np.ndindex(grad.shape)])
        np.testing.assert_allclose(ours.reshape(grad.shape), grad, rtol=1e-10, atol=1e-13)
    y = reference_network(net).predict(x, params)[0]
    last = nd.output(net.layers[-1].index)
    ours = np.array([float(example.values[last[i]]) for i in np.ndindex(y.shape)])
    np.testing.assert_allclose(ours.reshape(y.shape), y, rtol=1e-12)


# -- the recursion against the composed loss ---------------------------------------------------

TINY = [
    "1x3x3 | conv 1x2x2 | flatten | dense 2 | l2",  # polynomial: proven by expansion
    "1x3x3 | conv 1x2x2 | sigmoid | flatten | dense 2 | sigmoid | bce",
    "1x3x3 | conv 2x2x2 | relu | maxpool 2 stride 1 | flatten | dense 2 | softmax-ce",
    "1x4x4 | conv 1x2x2 stride 2 untied | tanh | l2pool 2 | flatten | dense 1 | l2",
    "1x3x3 | conv 1x2x2 nobias | avgpool 2 stride 1 | flatten | dense 2 nobias | l2",
    # ReLU can zero a whole L2 window, where sqrt's derivative is 0/0: points avoid it
    "1x4x4 | conv 1x3x3 | relu | l2pool 2 | flatten | dense 2 | softmax-ce",
]


@pytest.mark.parametrize("text", TINY)
def test_recursion_equals_the_composed_loss_derivative(text):
    exprs = nd.derive_network(Network.parse(text))
    check = nd.check_composition(exprs, points=2)
    assert check.elements == sum(int(np.prod(s)) for _, s in exprs.net.params())
    smooth = not any(word in text for word in ("sigmoid", "relu", "tanh", "maxpool", "l2pool",
                                               "bce", "ce"))
    assert check.proved == (check.elements if smooth else 0)


def test_composition_check_catches_a_wrong_recursion():
    exprs = nd.derive_network(Network.parse(TINY[2]))
    relu = exprs.layers[1]
    assert relu.layer.kind == "relu"
    wrong = {u: e * Rational(101, 100) for u, e in relu.backward.items()}
    broken = nd.NetworkExprs(exprs.net, (exprs.layers[0],
                                         nd.LayerDerivation(relu.layer, relu.forward, wrong),
                                         *exprs.layers[2:]), exprs.loss, exprs.loss_delta)
    with pytest.raises(DerivationError, match=r"W0\[0, 0, 0, 0\]"):
        nd.check_composition(broken, points=1)


# -- the pieces written out in the seeds' terms ------------------------------------------------


def test_max_switch_is_the_derivative_of_max_off_ties_and_first_index_on_ties():
    a = symbols("a:4", real=True)
    rng = np.random.default_rng(0)
    for _ in range(20):
        point = dict(zip(a, [Rational(int(v), 7) for v in rng.integers(-50, 50, 4)]))
        if len(set(point.values())) < 4:
            continue
        for p in range(4):
            assert nd.max_switch(list(a), p).subs(point) == diff(Max(*a), a[p]).subs(point)
    tie = dict(zip(a, [1, 3, 3, 2]))
    assert [nd.max_switch(list(a), p).subs(tie) for p in range(4)] == [0, 1, 0, 0]
    assert diff(Max(*a), a[1]).subs(tie) == Heaviside(0)  # SymPy leaves the tie undecided


def test_activation_derivatives_in_the_seeds_terms():
    x = symbols("x", real=True)
    h, h_prime = nd.activation_derivative("sigmoid")
    sigma = 1 / (1 + exp(-x))
    assert simplify(diff(sigma, x) - h_prime(sigma)) == 0  # seed 001: σ' = σ(1 - σ)
    h, h_prime = nd.activation_derivative("relu")
    assert h_prime(0) == 0 and h_prime(Rational(1, 3)) == 1 and h(-1) == 0  # seed 003: relu'(0)=0
    h, h_prime = nd.activation_derivative("tanh")
    assert simplify(diff(h(x), x) - h_prime(h(x))) == 0


def test_seed003_output_delta_and_fc_formulas():
    """003 (2.10) δ = y - t for ½Σ(y-t)²; (2.8) dE/dw_ki = δ_k y_i; (2.13)
    δ_i = h'(a_i) Σ_k w_ki δ_k, with h' on the pre-activation, for a dense-sigmoid-dense chain."""
    net = Network.parse("1x1x3 | flatten | dense 2 | sigmoid | dense 2 | l2")
    exprs = nd.derive_network(net)
    y3, t, d3 = nd.output(3), nd.T, nd.delta(3)
    assert exprs.loss_delta == {(k,): y3[k] - t[k] for k in range(2)}
    w, y2 = nd.weight(3), nd.output(2)
    assert exprs.layers[3].grads["3.weight"] == {(k, i): d3[k] * y2[i]
                                                 for k in range(2) for i in range(2)}
    d2, d1 = nd.delta(2), nd.delta(1)
    # δ of the pre-activation Y1 of unit i: h'(a_i) Σ_k w_ki δ_k with h' = σ(1-σ) = y2(1 - y2)
    for i in range(2):
        composed = exprs.layers[2].backward[(i,)].xreplace(
            {d2[i]: exprs.layers[3].backward[(i,)]})
        seed = y2[i] * (1 - y2[i]) * sum(w[k, i] * d3[k] for k in range(2))
        assert simplify(composed - seed) == 0
    assert exprs.layers[1].grads["1.weight"][(0, 2)] == d1[0] * nd.output(0)[2]


def test_seed002_delta_through_an_activation():
    """002 §1: δ^l[i,j] = h'(y^l[i,j]) Σ_{i',j'} w^{l+1}[i',j'] δ^{l+1}[i-i', j-j'], zero
    outside."""
    net = Network.parse("1x4x4 | conv 1x2x2 | tanh | conv 1x2x2 nobias | l2")
    exprs = nd.derive_network(net)
    w, d2, y1 = nd.weight(2), nd.delta(2), nd.output(1)
    for i in range(3):
        for j in range(3):
            through = exprs.layers[1].backward[(0, i, j)].xreplace(
                {nd.delta(1)[0, i, j]: exprs.layers[2].backward[(0, i, j)]})
            seed = (1 - y1[0, i, j] ** 2) * sum(
                w[0, 0, a, c] * d2[0, i - a, j - c]
                for a in range(2) for c in range(2) if 0 <= i - a < 2 and 0 <= j - c < 2)
            assert simplify(through - seed) == 0


def test_seed001_bce_derivative():
    """001: ∂E/∂y_i = (1/n)((1 - y*_i)/(1 - y_i) - y*_i/y_i); per sample n = 1."""
    exprs = nd.derive_network(Network.parse("1x1x2 | flatten | sigmoid | bce"))
    y, t = nd.output(1), nd.T
    for i in range(2):
        assert simplify(exprs.loss_delta[(i,)] - ((1 - t[i]) / (1 - y[i]) - t[i] / y[i])) == 0


def test_softmax_ce_delta_is_softmax_minus_target():
    exprs = nd.derive_network(Network.parse("1x1x3 | flatten | softmax-ce"))
    y = nd.output(0)
    total = sum(exp(y[j]) for j in range(3))
    assert exprs.loss_delta[(1,)] == exp(y[1]) / total - nd.T[1]


# -- the command line ----------------------------------------------------------------------


def test_cli_network_text_shows_every_layer(run_cli):
    out = run_cli("derive", "--network", EXAMPLE).stdout
    for layer in range(5):
        assert f"## layer {layer}:" in out and f"## backward through layer {layer}:" in out
    assert "Y2[6, 4, 4] = Max(Y1[6, 7, 7], Y1[6, 7, 8], Y1[6, 8, 7], Y1[6, 8, 8])" in out
    assert "dJ/dW4[10, 96] = Y3[96]*dY4[10]" in out


def _canonical(expr):
    """``expr`` with each relation in SymPy's canonical order: the parser reads ``a > b`` as
    ``b < a``, the same relation."""
    return expr.replace(lambda e: isinstance(e, Relational), lambda e: e.canonical)


def test_cli_network_json_reads_back_with_sympify(run_cli):
    body = json.loads(run_cli("derive", "--network", TINY[2], "--format", "json").stdout)
    bases = {name: IndexedBase(name) for name in body["symbols"]}
    exprs = nd.derive_network(Network.parse(TINY[2]))
    for entry, derived in zip(body["layers"], exprs.layers):
        for key, text in entry["backward"].items():
            index = tuple(int(i) for i in key.split(","))
            assert _canonical(sympify(text, locals=bases)) == _canonical(derived.backward[index])
        for name, elements in entry["grads"].items():
            assert set(elements) == {",".join(map(str, i)) for i in derived.grads[name]}
    assert body["network"]["params"] == {"0.weight": [2, 1, 2, 2], "0.bias": [2],
                                         "4.weight": [2, 2], "4.bias": [2]}


def test_cli_values_show_seed001s_numbers(run_cli, tmp_path):
    path = tmp_path / "seed001.json"
    path.write_text(json.dumps({"V": [[1, 6, 2], [5, 3, 1], [7, 0, 4]], "K": [[1, 2], [-1, 0]],
                                "b": [0]}))
    out = run_cli("derive", "--values", str(path), "--wrt", "weight").stdout
    forward = [line.rsplit(" = ", 1)[1] for line in out.splitlines() if line.startswith("Z[")]
    assert forward == ["8", "7", "4", "5"]  # the page's valid correlation [[8, 7], [4, 5]]


def test_cli_refuses_spec_options_with_a_network(run_cli):
    result = run_cli("derive", "--network", EXAMPLE, "--stride", "2", expect=2)
    assert "--stride" in result.stderr and "conv" in result.stderr


def test_values_errors_name_the_array_and_shape(tmp_path):
    arrays = nd.arrays(Network.parse(TINY[0]))
    with pytest.raises(SpecError, match=r"X has shape \(1, 3, 3\)"):
        values.substitutions({"X": [1, 2]}, arrays)
    with pytest.raises(SpecError, match="unknown array 'Q'"):
        values.substitutions({"Q": 1}, arrays)
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    with pytest.raises(SpecError, match="not valid JSON"):
        values.read(bad)


def test_cli_latex_values_prints_seed001s_output(run_cli, tmp_path):
    import re
    from pathlib import Path

    example = Path(__file__).resolve().parents[1] / "examples" / "seed001.json"
    out = tmp_path / "seed.tex"
    run_cli("latex", "--values", str(example), "-o", str(out))
    matrices = re.findall(r"Z = \\begin\{bmatrix\}(.*?)\\end\{bmatrix\}", out.read_text())
    rows = [[int(v) for v in row.split("&")] for row in matrices[-1].split(r"\\")]
    assert rows == [[8, 7], [4, 5]]  # seed 001's valid correlation of its 3x3 image


def test_cli_latex_network_writes_the_document_with_numbers(run_cli, tmp_path):
    data = {"X": [[1, 6, 2], [5, 3, 1], [7, 0, 4]], "0.weight": [[1, 2], [-1, 0]],
            "0.bias": [0], "3.weight": [[1, 0, 0, 0], [0, 0, 0, 1]], "3.bias": [0, 0],
            "T": [1, 0], "lr": 0.5}
    path = tmp_path / "values.json"
    path.write_text(json.dumps(data))
    out = tmp_path / "net.tex"
    text = "1x3x3 | conv 1x2x2 | relu | flatten | dense 2 | l2"
    run_cli("latex", "--network", text, "--values", str(path), "-o", str(out))
    net = Network.parse(text)
    x = np.array(data["X"], dtype=float)[None, None]
    params = {k: np.array(v, dtype=float) for k, v in data.items() if "." in k}
    params["0.weight"] = params["0.weight"][None, None]
    loss = reference_network(net).loss(x, np.array([data["T"]], dtype=float), params)
    assert loss == 37.0  # Y = (8, 5) from seed 001's Z = [[8, 7], [4, 5]]: ((8-1)^2 + 5^2)/2
    assert r"\documentclass" in out.read_text() and "37" in out.read_text()


def test_cli_latex_network_refuses_layer_options(run_cli, tmp_path):
    result = run_cli("latex", "--network", TINY[0], "--kernel", "3x3", "-o",
                     str(tmp_path / "n.tex"), expect=2)
    assert "--kernel" in result.stderr
