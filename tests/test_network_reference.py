"""derive.reference.network against central finite differences, loop-by-loop oracles and
PyTorch (the same network built from torch.nn layers by codegen.torch_network, when torch is
installed)."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from codegen.torch_network import torch_grads
from derive import Network, reference
from derive.network_reference import NetworkReference

#: Small networks whose every parameter element is checked; between them every layer kind,
#: loss and pooling mode, strides, paddings (numbers, uneven same, full), dilation,
#: convolution mode, nobias, untied, overlapping and uneven pool windows, dense after dense,
#: and a first layer that is not a conv.
SMALL = [
    "1x6x6 | conv 2x3x3 pad 1 | relu | maxpool 2 | flatten | dense 3 | softmax-ce",
    "2x7x6 | conv 3x3x2 stride 2x1 pad 1x0 dil 1x2 | tanh | avgpool 2 stride 1 | flatten "
    "| dense 2 | sigmoid | bce",
    "3x6x6 | conv 2x2x2 pad same | sigmoid | l2pool 2 | conv 2x2x2 convolution nobias | l2",
    "1x7x7 | conv 2x3x3 dil 2 pad full | tanh | maxpool 3 stride 2 | flatten | dense 2 nobias "
    "| l2",
    "2x5x5 | conv 3x3x3 untied | relu | flatten | dense 2 | softmax-ce",
    "2x8x7 | conv 2x2x3 stride 2 pad same | relu | l2pool 2 stride 1 | flatten | sigmoid | bce",
    "1x7x7 | conv 2x3x3 stride 2 pad 2 convolution | sigmoid | maxpool 2x3 stride 1x2 "
    "| avgpool 1x2 | flatten | dense 2 | l2",
    "2x6x6 | maxpool 2 stride 1 | conv 2x2x2 dil 2 stride 2 | tanh | flatten | dense 3 | tanh "
    "| dense 2 | softmax-ce",
    "1x6x5 | l2pool 3x2 stride 1 | conv 1x2x2 nobias convolution pad 1x0 | relu | avgpool 2 "
    "stride 1 | l2",
]
#: Larger networks: a random subset of each parameter's elements.
LARGE = [
    "3x12x12 | conv 8x3x3 pad 1 | relu | maxpool 2 | conv 8x3x3 | tanh | flatten | dense 10 "
    "| softmax-ce",
    "2x10x10 | conv 6x3x3 untied stride 2 pad same | sigmoid | l2pool 2 stride 1 | flatten "
    "| dense 8 | sigmoid | bce",
]
#: The networks also built from torch.nn layers (no relu before an l2pool: PyTorch's LPPool2d
#: has no gradient on an all-zero window). tests/test_bench_network.py adds the twin's own
#: modules: an uneven 'same' padding at a stride, untied biases, float32.
TORCH = [SMALL[i] for i in (0, 1, 2, 3, 4, 6, 7, 8)] + [
    LARGE[0],
    "1x8x8 | conv 2x4x3 pad same dil 2x1 | relu | avgpool 3 stride 2 | flatten | dense 3 | l2",
]
RTOL = 1e-7


def _data(net: Network, batch: int, seed: int = 0, dtype="float64"):
    """Random ``X``, targets of the loss's kind, and PyTorch's default initialisation."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch, *net.input)).astype(dtype)
    if net.loss == "softmax-ce":
        T = rng.integers(0, net.output_shape[0], size=batch)
    elif net.loss == "bce":
        T = rng.uniform(0, 1, size=(batch, *net.output_shape))
    else:
        T = rng.standard_normal((batch, *net.output_shape))
    params = net.init_params(seed=seed + 1)
    # Larger parameters than the default keep activations away from their flat tails, so
    # every gradient element carries weight against the finite differences' rounding.
    return X, T, {name: 2 * value for name, value in params.items()}


def _central(ref, X, T, params, name, index, h=1e-6):
    """``dloss/dparams[name][index]`` by the central difference: its truncation error
    (``h**2/6`` times the third derivative) and its rounding (``eps * loss / h``) both stay
    near 1e-10, under the tolerance."""
    def at(offset):
        moved = dict(params)
        moved[name] = params[name].copy()
        moved[name][index] += offset
        return ref.loss(X, T, moved)
    return (at(h) - at(-h)) / (2 * h)


def _check_against_differences(text, batch, per_param=None):
    net = Network.parse(text)
    ref = reference.network(net)
    X, T, params = _data(net, batch, seed=batch)
    loss, grads = ref.grads(X, T, params)
    assert loss == ref.loss(X, T, params)
    assert list(grads) == [name for name, _ in net.params()]
    scale = max(np.abs(g).max() for g in grads.values())
    assert scale > 0
    rng = np.random.default_rng(7)
    for name, shape in net.params():
        assert grads[name].shape == shape and grads[name].dtype == np.float64
        indices = list(np.ndindex(*shape))
        if per_param is not None and len(indices) > per_param:
            indices = [indices[i] for i in rng.choice(len(indices), per_param, replace=False)]
        for index in indices:
            expected = _central(ref, X, T, params, name, index)
            np.testing.assert_allclose(grads[name][index], expected, rtol=RTOL,
                                       atol=RTOL * scale, err_msg=f"{text}: {name}{index}")


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("text", SMALL)
def test_every_gradient_element_matches_central_differences(text, batch):
    _check_against_differences(text, batch)


@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("text", LARGE)
def test_sampled_gradient_elements_match_central_differences(text, batch):
    _check_against_differences(text, batch, per_param=12)


def test_the_difference_check_catches_a_wrong_gradient(monkeypatch):
    """The check above can fail: a relu whose derivative is off at one point fails it."""
    from derive import network_reference as module

    wrong = dict(module._ACTIVATIONS)
    f, df = wrong["relu"]
    wrong["relu"] = (f, lambda x, y: df(x, y) * 1.001)
    monkeypatch.setattr(module, "_ACTIVATIONS", wrong)
    with pytest.raises(AssertionError):
        _check_against_differences(SMALL[0], 1)


# -- ties, zeros and kinks: crafted inputs -------------------------------------------------

#: Two channels reduced by a 1x1 conv of weight (1, 1): every Z is X0 + X1, so a window holds
#: equal maxima made of different X0 values, and the weight's gradient tells which one the
#: backward pass picked.
TIE_NET = "2x4x4 | conv 1x1x1 nobias | maxpool 2 stride 1 | flatten | l2"


def _tie_data():
    X0 = np.array([[1, 2, 0, 1], [2, 1, 3, 0], [0, 3, 1, 2], [1, 2, 2, 1]], dtype=np.float64)
    X1 = np.array([[2, 1, 3, 2], [1, 2, 0, 3], [3, 0, 2, 1], [2, 1, 1, 2]], dtype=np.float64)
    X = np.stack([X0, X1])[None]  # Z = X0 + X1 = 3 everywhere: every window is one tie
    T = np.arange(9, dtype=np.float64).reshape(1, 9) / 4
    return X, T, {"0.weight": np.ones((1, 2, 1, 1))}


def _tie_oracle(X, T, weight, first=True):
    """The gradient of TIE_NET's weight by plain loops: each window scanned row by row,
    column by column, keeping a new maximum only when strictly larger (the first one), or
    also when equal (the last one, with ``first=False``)."""
    Z = np.einsum("c,ncyx->nyx", weight.reshape(-1), X)
    n, h, w = Z.shape
    grad = np.zeros(X.shape[1])
    for s in range(n):
        outputs = []
        for y, x in itertools.product(range(h - 1), range(w - 1)):
            best = None
            for u, v in itertools.product(range(y, y + 2), range(x, x + 2)):
                if best is None or Z[s, u, v] > Z[s, best[0], best[1]] or (
                        not first and Z[s, u, v] == Z[s, best[0], best[1]]):
                    best = (u, v)
            outputs.append(best)
        for k, (u, v) in enumerate(outputs):
            dloss = (Z[s, u, v] - T[s, k]) / n
            grad += dloss * X[s, :, u, v]
    return grad.reshape(1, -1, 1, 1)


def test_maxpool_sends_a_tie_to_the_first_maximum():
    ref = reference.network(TIE_NET)
    X, T, params = _tie_data()
    _, grads = ref.grads(X, T, params)
    np.testing.assert_allclose(grads["0.weight"], _tie_oracle(X, T, params["0.weight"]),
                               rtol=1e-14)
    # Routing to the last maximum instead gives another gradient: the test can fail.
    assert not np.allclose(_tie_oracle(X, T, params["0.weight"], first=False),
                           grads["0.weight"])


def test_maxpool_ties_match_torch():
    pytest.importorskip("torch")
    net = Network.parse(TIE_NET)
    X, T, params = _tie_data()
    loss, grads = reference.network(net).grads(X, T, params)
    want_loss, want, _ = torch_grads(net, X, T, params)
    assert loss == pytest.approx(want_loss, rel=1e-14)
    np.testing.assert_allclose(grads["0.weight"], want["0.weight"], rtol=1e-14)


def test_relu_derivative_at_zero_is_zero():
    """Z = w*X + b is exactly 0 everywhere: relu'(0) = 0 leaves the bias no gradient (1
    would give it the sum of the upstream gradient)."""
    net = Network.parse("1x2x2 | conv 1x1x1 | relu | flatten | l2")
    X, T = np.zeros((2, 1, 2, 2)), np.ones((2, 4))
    params = {"0.weight": np.ones((1, 1, 1, 1)), "0.bias": np.zeros(1)}
    _, grads = reference.network(net).grads(X, T, params)
    assert grads["0.bias"][0] == 0.0
    # Just above zero the bias's gradient is the upstream gradient's sum, -1 per sample.
    _, above = reference.network(net).grads(X, T, {**params, "0.bias": np.full(1, 1e-9)})
    assert above["0.bias"][0] == pytest.approx(-4.0)


def test_l2pool_all_zero_window_has_zero_gradient():
    """A relu before the l2pool zeroes the top-left window: its gradient is 0 (not NaN), the
    value the loss has around it since the relu stays off for small changes."""
    net = Network.parse("1x4x4 | conv 1x1x1 | relu | l2pool 2 | flatten | l2")
    rng = np.random.default_rng(0)
    X = rng.uniform(0.5, 1.5, size=(1, 1, 4, 4))
    X[0, 0, :2, :2] *= -1
    T = rng.standard_normal((1, 4))
    params = {"0.weight": np.ones((1, 1, 1, 1)), "0.bias": np.zeros(1)}
    ref = reference.network(net)
    _, grads = ref.grads(X, T, params)
    for name, grad in grads.items():
        assert np.all(np.isfinite(grad))
        expected = [_central(ref, X, T, params, name, i) for i in np.ndindex(*grad.shape)]
        np.testing.assert_allclose(grad.reshape(-1), expected, rtol=RTOL, atol=1e-12)


# -- predict, step, dtypes -------------------------------------------------------------------


def test_predict_is_the_output_before_the_loss():
    """l2 of a zero target is half the output's per-sample squared norm, averaged."""
    net = Network.parse(SMALL[3])
    X, _, params = _data(net, 3)
    ref = reference.network(net)
    Y = ref.predict(X, params)
    assert Y.shape == (3, *net.output_shape)
    assert ref.loss(X, np.zeros_like(Y), params) == pytest.approx(
        (Y ** 2).reshape(3, -1).sum(axis=1).mean() / 2, rel=1e-14)


def test_step_moves_every_parameter_against_its_gradient_in_place():
    net = Network.parse(SMALL[1])
    X, T, params = _data(net, 3)
    ref = reference.network(net)
    before = {name: value.copy() for name, value in params.items()}
    arrays = dict(params)
    loss, grads = ref.grads(X, T, params)
    assert ref.step(X, T, params, lr=0.25) == loss
    for name, value in params.items():
        assert value is arrays[name]
        np.testing.assert_array_equal(value, before[name] - 0.25 * grads[name])
    assert ref.loss(X, T, params) < loss


@pytest.mark.parametrize("text", [SMALL[0], SMALL[2], SMALL[5]])
def test_float32_computes_in_float32(text):
    net = Network.parse(text)
    X, T, params = _data(net, 3)
    ref = reference.network(net)
    loss64, grads64 = ref.grads(X, T, params)
    loss32, grads32 = ref.grads(X.astype(np.float32), T, params)
    assert isinstance(loss32, float) and loss32 != loss64
    assert loss32 == pytest.approx(loss64, rel=1e-5)
    assert ref.predict(X.astype(np.float32), params).dtype == np.float32
    for name, grad in grads32.items():
        assert grad.dtype == np.float32
        np.testing.assert_allclose(grad, grads64[name], rtol=1e-4, atol=1e-5)


def test_softmax_ce_is_stable_for_large_logits():
    """Logits of 1e4: a naive exp overflows; the log-sum-exp gives the finite answer."""
    net = Network.parse("1x1x3 | flatten | dense 3 | softmax-ce")
    ref = reference.network(net)
    params = {"1.weight": np.diag([1e4, 0.0, -1e4]), "1.bias": np.zeros(3)}
    X, T = np.ones((1, 1, 1, 3)), np.array([1])
    loss, grads = ref.grads(X, T, params)
    assert loss == pytest.approx(1e4)  # -log softmax(y)[1] with y = (1e4, 0, -1e4)
    assert all(np.all(np.isfinite(g)) for g in grads.values())


# -- validation -------------------------------------------------------------------------------


def _bad_call(text="1x4x4 | conv 2x3x3 | flatten | dense 3 | softmax-ce", **changes):
    net = Network.parse(text)
    X, T, params = _data(net, 2)
    args = {"X": X, "T": T, "params": params, **changes}
    return lambda: reference.network(net).grads(args["X"], args["T"], args["params"])


@pytest.mark.parametrize("changes, error, words", [
    ({"X": np.zeros((2, 4, 4))}, ValueError, ["X", "(N, 1, 4, 4)", "(2, 4, 4)", "X[:, None]"]),
    ({"X": np.zeros((2, 1, 4, 5))}, ValueError, ["X", "(N, 1, 4, 4)", "(2, 1, 4, 5)"]),
    ({"X": np.zeros((2, 1, 4, 4), dtype=np.int64)}, TypeError, ["X", "float32", "int64"]),
    ({"T": np.zeros(2)}, TypeError, ["T", "int64", "float64"]),
    ({"T": np.zeros((2, 1), dtype=np.int64)}, ValueError, ["T", "(2,)", "(2, 1)"]),
    ({"T": np.array([0, 3])}, ValueError, ["T", "0..2", "3"]),
    ({"params": {}}, ValueError, ["params", "missing", "0.weight"]),
    ({"params": "weights"}, TypeError, ["params", "str"]),
])
def test_bad_inputs_are_named(changes, error, words):
    with pytest.raises(error) as caught:
        _bad_call(**changes)()
    for word in words:
        assert word in str(caught.value)


def test_bad_params_are_named():
    net = Network.parse("1x4x4 | conv 2x3x3 | flatten | dense 3 | l2")
    X, T, params = _data(net, 2)
    ref = reference.network(net)
    with pytest.raises(ValueError, match=r"params\['2.weight'\]: expected shape \(3, 8\), "
                                         r"got \(8, 3\)"):
        ref.grads(X, T, {**params, "2.weight": params["2.weight"].T})
    with pytest.raises(ValueError, match=r"unexpected \['2.extra'\]"):
        ref.loss(X, T, {**params, "2.extra": np.zeros(1)})
    with pytest.raises(TypeError, match=r"params\['0.bias'\]: expected a float array"):
        ref.loss(X, T, {**params, "0.bias": np.zeros(2, dtype=int)})
    with pytest.raises(ValueError, match=r"T: l2 expects the output's shape \(2, 3\)"):
        ref.loss(X, T[:, :2], params)
    with pytest.raises(TypeError, match=r"T: l2 expects float targets"):
        ref.loss(X, T.astype(int), params)
    with pytest.raises(TypeError, match=r"params\['0.bias'\]: step updates it in place"):
        ref.step(X, T, {**params, "0.bias": [0.0, 0.0]}, lr=0.1)
    with pytest.raises(ValueError, match="lr: expected a finite real number"):
        ref.step(X, T, params, lr=float("nan"))
    with pytest.raises(ValueError, match=r"bce: the network's output must lie in \[0, 1\]"):
        reference.network("1x4x4 | flatten | dense 2 | bce").loss(
            X, np.zeros((2, 2)), {"1.weight": np.ones((2, 16)), "1.bias": np.zeros(2)})
    with pytest.raises(TypeError, match="net: expected a derive.Network"):
        NetworkReference(3)


# -- PyTorch: the same network from torch.nn layers ------------------------------------------


@pytest.mark.filterwarnings("ignore:Using padding='same':UserWarning")
@pytest.mark.parametrize("batch", [1, 3])
@pytest.mark.parametrize("text", TORCH)
def test_matches_torch_nn(text, batch):
    pytest.importorskip("torch")
    net = Network.parse(text)
    X, T, params = _data(net, batch, seed=10 + batch)
    ref = reference.network(net)
    loss, grads = ref.grads(X, T, params)
    want_loss, want, want_Y = torch_grads(net, X, T, params)
    np.testing.assert_allclose(ref.predict(X, params), want_Y, rtol=1e-10, atol=1e-12)
    assert loss == pytest.approx(want_loss, rel=1e-10)
    scale = max(np.abs(g).max() for g in want.values())
    for name, grad in grads.items():
        np.testing.assert_allclose(grad, want[name], rtol=1e-10, atol=1e-10 * scale,
                                   err_msg=name)


def test_docstring_example():
    import doctest

    from derive import network_reference

    result = doctest.testmod(network_reference)
    assert result.attempted > 0 and result.failed == 0
