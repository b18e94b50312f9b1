"""derive/reference.py against SciPy, finite differences, the symbolic gradients and adjoints."""

import itertools

import numpy as np
import pytest
from scipy.signal import correlate2d

from derive import LayerSpec, derive_layer, reference
from derive.symbols import G, K, V, b

SPECS = [
    LayerSpec(input=(1, 3, 3), kernel=(1, 1, 2, 2)),
    LayerSpec(input=(3, 11, 28), kernel=(4, 3, 3, 5), stride=(2, 1), padding=(2, 1)),
    LayerSpec(input=(2, 9, 8), kernel=(3, 2, 2, 3), padding="same", dilation=(2, 1)),
    LayerSpec(input=(2, 8, 7), kernel=(2, 2, 2, 2), stride=3, bias=False),
    LayerSpec(input=(3, 6, 7), kernel=(2, 3, 3, 2), padding="full", mode="convolution"),
    LayerSpec(input=(1, 10, 10), kernel=(2, 1, 3, 3), stride=2, padding=1, dilation=2),
]
IDS = [s.describe() for s in SPECS]


def scipy_forward(spec, V, K, b):
    """Forward pass from scipy.signal.correlate2d on explicitly padded, dilated planes."""
    top, bottom, left, right = spec.pads
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    n, o = V.shape[0], K.shape[0]
    Kt = K[:, :, ::-1, ::-1] if spec.mode == "convolution" else K
    out = np.zeros((n, o, spec.out_h, spec.out_w))
    for ni, oi, ci in itertools.product(range(n), range(o), range(V.shape[1])):
        plane = np.pad(V[ni, ci], ((top, bottom), (left, right)))
        taps = np.zeros(((Kt.shape[2] - 1) * dh + 1, (Kt.shape[3] - 1) * dw + 1))
        taps[::dh, ::dw] = Kt[oi, ci]
        full = correlate2d(plane, taps, mode="valid")
        out[ni, oi] += full[::sh, ::sw][: spec.out_h, : spec.out_w]
    if b is not None:
        out += b.reshape(1, -1, 1, 1)
    return out


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_forward_matches_scipy(spec):
    V_, K_, b_, _ = reference.random_inputs(spec, batch=3)
    np.testing.assert_allclose(reference.forward(spec, V_, K_, b_), scipy_forward(spec, V_, K_, b_),
                               rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_gradients_match_central_differences(spec):
    V_, K_, b_, G_ = reference.random_inputs(spec, batch=2, seed=3)

    def loss(v, k, bb):
        return float(np.sum(G_ * reference.forward(spec, v, k, bb)))

    dV, dK, db = reference.backward(spec, V_, K_, G_)
    h = 1e-6
    rng = np.random.default_rng(0)
    checked = [("V", V_, dV), ("K", K_, dK)] + ([("b", b_, db)] if spec.bias else [])
    for name, array, grad in checked:
        for flat in rng.choice(array.size, size=min(array.size, 25), replace=False):
            idx = np.unravel_index(flat, array.shape)
            args = {"V": V_, "K": K_, "b": b_}
            up, down = array.copy(), array.copy()
            up[idx] += h
            down[idx] -= h
            numeric = (loss(**{**_rename(args), _key(name): up})
                       - loss(**{**_rename(args), _key(name): down})) / (2 * h)
            assert grad[idx] == pytest.approx(numeric, rel=1e-6, abs=1e-8), (name, idx)


def _rename(args):
    return {"v": args["V"], "k": args["K"], "bb": args["b"]}


def _key(name):
    return {"V": "v", "K": "k", "b": "bb"}[name]


SYMBOLIC = [spec for spec in SPECS if spec.n_terms <= 3000]


@pytest.mark.parametrize("spec", SYMBOLIC, ids=lambda s: s.describe())
def test_gradients_match_the_symbolic_derivation_evaluated(spec):
    exprs = derive_layer(spec)
    V_, K_, b_, G_ = reference.random_inputs(spec, batch=1, seed=5)
    dV, dK, db = reference.backward(spec, V_, K_, G_)
    Z = reference.forward(spec, V_, K_, b_)
    values = {V[i]: V_[(0, *i)] for i in np.ndindex(*spec.input)}
    values.update({K[i]: K_[i] for i in np.ndindex(*spec.kernel)})
    values.update({G[i]: G_[(0, *i)] for i in np.ndindex(*spec.output_shape)})
    if spec.bias:
        values.update({b[(o,)]: b_[o] for o in range(spec.kernel[0])})
    for name, elements, expected in [("forward", exprs.forward, Z[0]),
                                     ("grad_input", exprs.grad_input, dV[0]),
                                     ("grad_weight", exprs.grad_weight, dK),
                                     ("grad_bias", exprs.grad_bias, db)]:
        for index, expr in elements.items():
            got = float(expr.xreplace(values))
            assert got == pytest.approx(expected[index], rel=1e-12, abs=1e-12), (name, index)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-12), ("float32", 1e-5)])
def test_adjoint_identity(spec, dtype, rtol):
    V_, K_, b_, G_ = reference.random_inputs(spec, batch=3, dtype=dtype, seed=7)
    Z = reference.forward(spec, V_, K_, b_)
    assert Z.dtype == np.dtype(dtype)
    dV, dK, _ = reference.backward(spec, V_, K_, G_)
    assert dV.dtype == dK.dtype == np.dtype(dtype)
    unbiased = Z - (b_.reshape(1, -1, 1, 1) if spec.bias else 0)
    lhs = np.vdot(unbiased.astype(float), G_.astype(float))
    assert lhs == pytest.approx(np.vdot(V_.astype(float), dV.astype(float)), rel=rtol)
    assert lhs == pytest.approx(np.vdot(K_.astype(float), dK.astype(float)), rel=rtol)


def test_uncovered_inputs_get_exactly_zero_gradient():
    spec = LayerSpec(input=(2, 8, 7), kernel=(2, 2, 2, 2), stride=3)
    _, K_, _, G_ = reference.random_inputs(spec, batch=2)
    dV = reference.grad_input(spec, K_, G_)
    rows, cols = spec.uncovered
    assert rows and cols
    assert np.all(dV[:, :, list(rows), :] == 0) and np.all(dV[:, :, :, list(cols)] == 0)
    covered = np.delete(np.delete(dV, list(rows), axis=2), list(cols), axis=3)
    assert np.all(covered != 0)


def test_seed001_numbers():
    spec = LayerSpec(input=(1, 3, 3), kernel=(1, 1, 2, 2), bias=False)
    V_ = np.array([[[[1, 6, 2], [5, 3, 1], [7, 0, 4]]]], float)
    K_ = np.array([[[[1, 2], [-1, 0]]]], float)
    assert reference.forward(spec, V_, K_).tolist() == [[[[8, 7], [4, 5]]]]
    flipped = spec.replace(mode="convolution")
    assert reference.forward(flipped, V_, K_).tolist() == [[[[7, 5], [11, 3]]]]
    assert reference.forward(spec.replace(padding="full"), V_, K_)[0, 0].tolist() == [
        [0, -1, -6, -2], [2, 8, 7, 1], [10, 4, 5, -3], [14, 7, 8, 4]]
