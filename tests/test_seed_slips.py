"""The catalogue of the seeds' slips, each against its oracle, and the seeds' worked examples
that are not a single layer's formulas (seed 001's numbers and derivatives, the update steps
of seeds 000 and 002)."""

from __future__ import annotations

import dataclasses
import re

import numpy as np
import pytest
from scipy.signal import convolve2d, correlate2d
from sympy import Add, Integer, Symbol, oo

from derive import LayerSpec, derive_layer, reference, seeds
from derive.symbols import K, V, b

# -- the catalogue ------------------------------------------------------------------------------


def test_the_catalogue_is_well_formed():
    names = [s.name for s in seeds.SLIPS + seeds.CONFIRMED]
    assert len(names) == len(set(names))
    for slip in seeds.SLIPS:
        assert slip.seed in {"000", "001", "002", "003", "004"}
        assert slip.name.startswith(slip.seed + "-")
        assert all(getattr(slip, f).strip() for f in ("where", "says", "right", "why"))
        assert slip.says != slip.right
    with pytest.raises(dataclasses.FrozenInstanceError):
        seeds.SLIPS[0].says = "something else"  # type: ignore[misc]
    # Every seed was read: each has a slip or a confirmation.
    assert {s.seed for s in seeds.SLIPS + seeds.CONFIRMED} == {"000", "001", "002", "003", "004"}


def test_the_module_docstring_lists_every_slip():
    listed = set(re.findall(r"``(\d{3}-[^`]+)``", seeds.__doc__))
    assert listed == {s.name for s in seeds.SLIPS}


@pytest.mark.parametrize("slip", seeds.SLIPS, ids=lambda s: s.name)
def test_each_slip_against_its_oracle(slip):
    evidence = slip.check()
    assert not evidence.seed_agrees, f"{slip.name}: the seed's version agrees with the oracle"
    assert evidence.right_agrees, f"{slip.name}: the corrected version {evidence.right!r} " \
                                  f"differs from the oracle {evidence.oracle!r}"


@pytest.mark.parametrize("claim", seeds.CONFIRMED, ids=lambda s: s.name)
def test_each_confirmation_against_its_oracle(claim):
    evidence = claim.check()
    assert evidence.seed_agrees, f"{claim.name}: {evidence.seed!r} vs {evidence.oracle!r}"


def test_agree_can_tell_values_apart():
    x = Symbol("x")
    same = [(1, 1.0), (np.array([1.0, 2.0]), (1, 2)), ({0: x + x}, {0: 2 * x}), (oo, oo),
            ((2, 3), (2, 3)), ("a", "a"), (None, None)]
    different = [(1, 2), (np.zeros(2), np.zeros(3)), ({0: x}, {1: x}), ({0: x}, {0: x + 1}),
                 (float("nan"), float("nan")), (1, oo), ((2, 3), (3, 2)), (None, 0), (x, x**2),
                 (True, 1)]
    assert all(seeds.agree(a, c) for a, c in same)
    assert not any(seeds.agree(a, c) for a, c in different)


# -- the transcriptions beyond the slips' own shapes --------------------------------------------

SPECS = [
    LayerSpec(input=(2, 3, 4), kernel=(3, 2, 2, 3)),
    LayerSpec(input=(3, 3, 4), kernel=(2, 3, 2, 2), bias=False),
]


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.describe())
def test_corrected_transcriptions_match_the_derivation(spec):
    exprs = derive_layer(spec)
    assert seeds.agree(seeds.seed002_backward(spec), exprs.grad_input)
    assert seeds.agree(seeds.seed003_pool_delta(spec, "right"), exprs.grad_input)
    pre = seeds.seed003_pre_activation(spec, "right")
    if not spec.bias:
        pre = {z: e - b[z[0]] for z, e in pre.items()}
    assert seeds.agree(pre, exprs.forward)
    assert seeds.agree(seeds.seed000_forward(spec),
                       {z: e - (b[z[0]] if spec.bias else 0) for z, e in exprs.forward.items()})


def test_full_convolution_matches_scipy():
    rng = np.random.default_rng(5)
    plane, kernel = rng.standard_normal((3, 4)), rng.standard_normal((2, 3))
    np.testing.assert_allclose(seeds.full_convolution(plane, kernel),
                               convolve2d(plane, kernel, mode="full"), rtol=1e-12)


def test_the_size_oracles_match_the_reference():
    # the counts behind 003-fits-four, 003-eq1.3 and 003-full-size, against the output shapes
    image, kernel = seeds.seed001_arrays()
    assert seeds.check_003_full_size().oracle == reference.forward(
        seeds.SEED001_SPEC.replace(padding="full"), image, kernel).shape[-1] == 4
    spec = LayerSpec(input=(1, 5, 5), kernel=(1, 1, 2, 2))
    out = reference.forward(spec, *reference.random_inputs(spec)[:3])
    assert seeds.check_003_fits_four().oracle == out[0, 0].size == 16
    spec = LayerSpec(input=(1, 6, 6), kernel=(1, 1, 3, 3), stride=2)
    assert seeds.check_003_eq1_3().oracle == reference.forward(
        spec, *reference.random_inputs(spec)[:3]).shape[-1] == 2


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="order='x'"):
        seeds.seed002_backward(seeds.SEED001_SPEC, order="x")
    with pytest.raises(ValueError, match="interval="):
        seeds.seed002_backward(seeds.SEED001_SPEC, interval="open")
    with pytest.raises(ValueError, match="stride"):
        seeds.seed002_backward(LayerSpec(input=(1, 5, 5), kernel=(1, 1, 2, 2), stride=2))
    with pytest.raises(ValueError, match="upper='round'"):
        seeds.seed002_grad_input(seeds.SEED001_SPEC, upper="round")
    with pytest.raises(ValueError, match="bind=3"):
        seeds.seed001_bce(seeds.BCE_TARGET, seeds.BCE_PRED, bind=3)
    with pytest.raises(ValueError, match="text: .*'k11'"):
        seeds.seed_terms("k11 x11 + k11")


# -- seed 001: the worked numbers ---------------------------------------------------------------

PAGE_IMAGE = np.array(seeds.SEED001_IMAGE)
PAGE_KERNEL = np.array(seeds.SEED001_KERNEL)


def test_seed001_numbers_by_the_reference_and_scipy():
    image, kernel = seeds.seed001_arrays()
    spec = seeds.SEED001_SPEC
    cases = [
        (spec, seeds.SEED001_VALID, correlate2d(PAGE_IMAGE, PAGE_KERNEL, mode="valid")),
        (spec.replace(mode="convolution"), seeds.SEED001_CONVOLUTION,
         convolve2d(PAGE_IMAGE, PAGE_KERNEL, mode="valid")),
        (spec.replace(padding="full"), seeds.SEED001_FULL,
         correlate2d(PAGE_IMAGE, PAGE_KERNEL, mode="full")),
    ]
    for case, page, by_scipy in cases:
        got = reference.forward(case, image, kernel)[0, 0]
        np.testing.assert_array_equal(got, np.array(page), err_msg=case.describe())
        np.testing.assert_array_equal(by_scipy, np.array(page), err_msg=case.describe())
    np.testing.assert_array_equal(np.rot90(PAGE_KERNEL, 2), np.array(seeds.SEED001_ROT180))


def test_seed001_numbers_through_the_symbols():
    values = {V[0, i, j]: int(PAGE_IMAGE[i, j]) for i in range(3) for j in range(3)}
    values.update({K[0, 0, i, j]: int(PAGE_KERNEL[i, j]) for i in range(2) for j in range(2)})
    values[b[0]] = 0
    spec = seeds.SEED001_SPEC
    for case, page in [(spec, seeds.SEED001_VALID),
                       (spec.replace(mode="convolution"), seeds.SEED001_CONVOLUTION),
                       (spec.replace(padding="full"), seeds.SEED001_FULL)]:
        forward = derive_layer(case).forward
        got = tuple(tuple(int(forward[(0, y, x)].xreplace(values)) for x in range(case.out_w))
                    for y in range(case.out_h))
        assert got == page, case.describe()


def test_seed001_hand_sums():
    # "1.1 + 2.6 + -1.5 + 0.3 = 8" and the first row of the full correlation:
    # "-1.1 + 0.6 = -1", "0.1 = 0", "-1.6 + 0.2 = -6"
    assert 1 * 1 + 2 * 6 + -1 * 5 + 0 * 3 == seeds.SEED001_VALID[0][0]
    assert 0 * 1 == seeds.SEED001_FULL[0][0]
    assert -1 * 1 + 0 * 6 == seeds.SEED001_FULL[0][1]
    assert -1 * 6 + 0 * 2 == seeds.SEED001_FULL[0][2]


def test_seed001_rot180_line_needs_its_labels():
    # One operator on both sides of "I * K = I * rot180(K)" would be false on the page's own
    # numbers: the correlation with K is the 'valid' result, with rot180(K) the convolution.
    with_k = correlate2d(PAGE_IMAGE, PAGE_KERNEL, mode="valid")
    with_rot = correlate2d(PAGE_IMAGE, np.rot90(PAGE_KERNEL, 2), mode="valid")
    assert not np.array_equal(with_k, with_rot)
    np.testing.assert_array_equal(with_rot, np.array(seeds.SEED001_CONVOLUTION))


def test_seed001_bce_as_written_is_off_whichever_output_is_bound():
    right = seeds.seed001_bce(seeds.BCE_TARGET, seeds.BCE_PRED)
    t, y = np.array(seeds.BCE_TARGET), np.array(seeds.BCE_PRED)
    by_hand = -sum(ti * np.log(yi) + (1 - ti) * np.log(1 - yi) for ti, yi in zip(t, y)) / 3
    assert right == pytest.approx(by_hand, rel=1e-14)
    for i in range(3):
        assert seeds.seed001_bce(t, y, bind=i) != pytest.approx(right, rel=1e-6)


# -- seeds 000 and 002: the update step K <- K - alpha grad K -----------------------------------

UPDATE_SPECS = [
    seeds.SEED001_SPEC,
    LayerSpec(input=(1, 5, 5), kernel=(2, 1, 3, 3), stride=2),
]


def _loss(spec, V_, K_, b_):
    return 0.5 * float(np.sum(reference.forward(spec, V_, K_, b_) ** 2))


def _sympy_gradients(spec, V_, K_, b_):
    """``dJ/dK`` and ``dJ/db`` of ``J = 1/2 sum Z^2`` by sympy.diff, at the numbers (integers:
    the arithmetic is exact)."""
    # The input is data: its numbers go in first. The parameters become plain symbols, which
    # sympy differentiates faster than array elements.
    data = {V[i]: Integer(int(x)) for i, x in np.ndenumerate(V_[0])}
    names = {K[i]: Symbol(f"K{i}") for i in np.ndindex(*K_.shape)}
    names.update({b[o]: Symbol(f"b{o}") for o in range(len(b_))})
    data.update(names)
    loss = Add(*[e.xreplace(data) ** 2 for e in derive_layer(spec).forward.values()]) / 2
    values = {names[K[i]]: Integer(int(x)) for i, x in np.ndenumerate(K_)}
    values.update({names[b[o]]: Integer(int(x)) for o, x in enumerate(b_)})

    def at(name):
        return float(loss.diff(name).xreplace(values))

    grad_k = np.array([at(names[K[i]]) for i in np.ndindex(*K_.shape)]).reshape(K_.shape)
    return grad_k, np.array([at(names[b[o]]) for o in range(len(b_))])


@pytest.mark.parametrize("spec", UPDATE_SPECS, ids=lambda s: s.describe())
def test_update_step_lowers_the_loss_and_is_k_minus_alpha_grad(spec):
    if spec == seeds.SEED001_SPEC:
        V_, K_ = seeds.seed001_arrays()
        b_ = np.array([1.0])
    else:  # small integers keep sympy's arithmetic exact and quick
        rng = np.random.default_rng(7)
        V_, K_ = (rng.integers(-3, 4, shape).astype(float)
                  for shape in ((1, *spec.input), spec.kernel))
        b_ = rng.integers(-3, 4, spec.kernel[0]).astype(float)
    alpha = 1e-3
    Z = reference.forward(spec, V_, K_, b_)  # dJ/dZ = Z for J = 1/2 sum Z^2
    K1 = K_ - alpha * reference.grad_weight(spec, V_, Z)
    b1 = b_ - alpha * reference.grad_bias(spec, Z)
    assert _loss(spec, V_, K1, b1) < _loss(spec, V_, K_, b_)

    grad_k, grad_b = _sympy_gradients(spec, V_, K_, b_)
    np.testing.assert_allclose(K1, K_ - alpha * grad_k, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(b1, b_ - alpha * grad_b, rtol=1e-12, atol=1e-12)
    # seed 000: K <- K - alpha grad_K J with eq. (2); seed 002: its gradient step, loop by loop
    np.testing.assert_allclose(seeds.seed000_update(spec, V_[0], K_, Z[0], alpha), K1,
                               rtol=1e-12, atol=1e-12)
    w2, b2 = seeds.seed002_update(V_[0], K_, b_, Z[0], alpha, stride=spec.stride[0])
    np.testing.assert_allclose(w2, K1, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(b2, b1, rtol=1e-12, atol=1e-12)


def test_seed001_bce_derivative_numerically():
    # the page's dE/dy_i against central differences of the bracketed cross-entropy
    t, y = np.array(seeds.BCE_TARGET), np.array(seeds.BCE_PRED)
    page = ((1 - t) / (1 - y) - t / y) / len(t)
    h = 1e-6
    for i in range(len(t)):
        up, down = y.copy(), y.copy()
        up[i] += h
        down[i] -= h
        fd = (seeds.seed001_bce(t, up) - seeds.seed001_bce(t, down)) / (2 * h)
        assert fd == pytest.approx(page[i], rel=1e-7)
