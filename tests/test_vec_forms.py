"""Seed 004's vector form (``derive.vec_forms``): vec, Kronecker products, im2col, pooling.

Oracles: SymPy's own dense products, ``kronecker_product`` and ``Matrix.vec`` for the matrix
helpers; NumPy's ``kron`` for seed 004's identities (6), (7); the explicit derivation
(``derive_layer``, SymPy differentiation) and the NumPy reference (``derive.reference``) for
the layer's forms; an im2col written with NumPy slicing for ``P_phi``; NumPy pooling and
finite differences for ``P_pool``; ``sympy.diff`` for the dense layer's gradients.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view
from sympy import Matrix, S, Symbol, kronecker_product, symbols

import derive.vec_forms as vf
from derive import LayerSpec, derive_layer, reference
from derive.errors import DerivationError, SpecError
from derive.symbols import G, K, V, b
from derive.vec_forms import (
    Dok,
    VecForms,
    add,
    dense_forms,
    kron,
    mat,
    matmul,
    max_switches,
    pool_matrix,
    pool_output_shape,
    transpose,
    vec,
)

#: Layers covering every case of the geometry: stride, padding (numbers, same with an odd
#: total, full), dilation, convolution, no bias, several channels each way, 1-D, cropped.
SPECS = {
    "seed": LayerSpec(input=(1, 3, 3), kernel=(1, 1, 2, 2)),
    "strided-channels": LayerSpec(input=(2, 5, 4), kernel=(3, 2, 3, 2), stride=2, padding=1),
    "same-odd": LayerSpec(input=(1, 4, 5), kernel=(2, 1, 2, 2), padding="same"),
    "full-dilated-conv": LayerSpec(input=(1, 5, 5), kernel=(1, 1, 3, 2), dilation=2,
                                   padding="full", mode="convolution", bias=False),
    "cropped-conv": LayerSpec(input=(1, 3, 3), kernel=(1, 1, 2, 2), padding=(3, 0),
                              stride=(2, 1), mode="convolution"),
    "uncovered": LayerSpec(input=(2, 5, 5), kernel=(1, 2, 2, 2), stride=3),
    "one-d": LayerSpec(input=(1, 1, 6), kernel=(2, 1, 1, 3), dilation=(1, 2)),
}


def numbers(m: Dok | Matrix) -> np.ndarray:
    """A numeric matrix as a float array."""
    return np.array((m.sympy() if isinstance(m, Dok) else m).tolist(), dtype=float)


def symbolic(rows: int, cols: int, name: str, rng: np.random.Generator) -> Matrix:
    """A matrix of symbols with some zeros and ones, as the forms' factors have."""
    def entry(i: int, j: int):
        kind = rng.integers(4)
        return 0 if kind == 0 else 1 if kind == 1 else Symbol(f"{name}{i}_{j}")
    return Matrix(rows, cols, entry)


# -- the matrix helpers against SymPy's dense operations ---------------------------------------


@pytest.mark.parametrize("seed", range(4))
def test_helpers_equal_sympys_dense_operations(seed: int) -> None:
    rng = np.random.default_rng(seed)
    p, q, r = (int(n) for n in rng.integers(1, 5, size=3))
    a, c, d = symbolic(p, q, "a", rng), symbolic(q, r, "c", rng), symbolic(p, q, "d", rng)
    assert matmul(a, c).sympy() == a * c
    assert matmul(a, c, transpose(c)).sympy().expand() == (a * c * c.T).expand()
    assert kron(a, c).sympy() == kronecker_product(a, c)
    assert add(a, d).sympy() == a + d
    assert transpose(a).sympy() == a.T
    assert vec(a).sympy() == a.vec()
    assert mat(vec(a), p, q).sympy() == a


def test_helpers_refuse_shapes_that_do_not_fit() -> None:
    a, c = Matrix(2, 3, symbols("a:6")), Matrix(2, 3, symbols("c:6"))
    with pytest.raises(ValueError, match="matmul: a 2x3 matrix times a 2x3 one"):
        matmul(a, c)
    with pytest.raises(ValueError, match="add: a 3x2 matrix and a 2x3 one"):
        add(a, c.T)
    with pytest.raises(ValueError, match="mat: a 6x1 matrix is not a column of 4\\*2"):
        mat(vec(a), 4, 2)


@pytest.mark.parametrize("seed", range(3))
def test_seed_identities_6_and_7_with_numpys_kron(seed: int) -> None:
    # vec(AB) = (I ⊗ A) vec(B) = (B^T ⊗ I) vec(A), vec column-major: NumPy's ravel("F")
    rng = np.random.default_rng(seed)
    a, c = rng.integers(-3, 4, size=(3, 4)), rng.integers(-3, 4, size=(4, 2))
    want = (a @ c).ravel(order="F")
    eq6 = np.kron(np.eye(2), a) @ c.ravel(order="F")
    eq7 = np.kron(c.T, np.eye(3)) @ a.ravel(order="F")
    assert np.array_equal(eq6, want) and np.array_equal(eq7, want)
    got6 = matmul(kron(vf.identity(2), Matrix(a)), vec(Matrix(c)))
    got7 = matmul(kron(Matrix(c.T), vf.identity(3)), vec(Matrix(a)))
    assert np.array_equal(numbers(got6).ravel(), want)
    assert np.array_equal(numbers(got7).ravel(), want)


# -- a correlation layer ------------------------------------------------------------------------


@pytest.mark.parametrize("name", SPECS)
def test_every_form_equals_the_explicit_derivation(name: str) -> None:
    spec = SPECS[name]
    counts = VecForms(spec).check(derive_layer(spec, max_terms=None))
    o, ho, wo = spec.output_shape
    assert counts == {"forward": o * ho * wo, "grad_weight": int(np.prod(spec.kernel)),
                      "grad_input": int(np.prod(spec.input)),
                      "grad_bias": o if spec.bias else 0}


def _pad_im2col(spec: LayerSpec, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """NumPy's padded input and im2col matrix: column y + HO*x the window of output (y, x),
    raveled channel first, then kernel row, then kernel column (Fortran order)."""
    top, bottom, left, right = spec.pads
    vp = np.pad(v, ((0, 0), (top, bottom), (left, right)))
    _, _, kh, kw = spec.kernel
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    _, ho, wo = spec.output_shape
    cols = [np.ravel(vp[:, y * sh:y * sh + (kh - 1) * dh + 1:dh,
                        x * sw:x * sw + (kw - 1) * dw + 1:dw], order="F")
            for x in range(wo) for y in range(ho)]
    return vp, np.stack(cols, axis=1)


@pytest.mark.parametrize("name", SPECS)
def test_p_pad_and_p_phi_are_numpys_padding_and_im2col(name: str) -> None:
    spec = SPECS[name]
    forms = VecForms(spec)
    v = np.random.default_rng(1).standard_normal(spec.input)
    vp, cols = _pad_im2col(spec, v)
    p_pad, p_phi = numbers(forms.p_pad()), numbers(forms.p_phi())
    assert set(np.unique(p_pad)) <= {0, 1} and set(np.unique(p_phi)) <= {0, 1}
    padded = p_pad @ np.ravel(v, order="F")
    assert np.array_equal(padded, np.ravel(vp, order="F"))
    assert np.array_equal((p_phi @ padded).reshape(cols.shape, order="F"), cols)


@pytest.mark.parametrize("name", SPECS)
def test_forms_evaluate_to_numpys_reference(name: str) -> None:
    spec = SPECS[name]
    forms = VecForms(spec)
    vv, kk, bb, gg = reference.random_inputs(spec, batch=1, seed=3)
    values = {V[i[1:]]: float(vv[i]) for i in np.ndindex(vv.shape)}
    values |= {K[i]: float(kk[i]) for i in np.ndindex(kk.shape)}
    values |= {G[i[1:]]: float(gg[i]) for i in np.ndindex(gg.shape)}
    values |= {b[o]: float(bb[o]) for o in range(spec.kernel[0]) if spec.bias}

    def num(m: Dok) -> np.ndarray:
        return numbers(Matrix(m.sympy()).xreplace(values))

    z = reference.forward(spec, vv, kk, bb)[0]
    dv, dk, db = reference.backward(spec, vv, kk, gg)
    o = spec.kernel[0]
    for form in forms.forward_forms().values():  # S[o, y + HO*x] = Z[o, y, x]
        assert np.allclose(num(form), z.reshape(o, -1, order="F"))
    # dJ/dW[o, tap(c, i, j)] is the gradient of the kernel element tap (i, j) applies
    applied = np.flip(dk, axis=(2, 3)) if spec.mode == "convolution" else dk
    want_w = np.stack([applied[:, c, i, j] for c, i, j in forms.taps()], axis=1)
    for form in forms.grad_weight_forms().values():
        assert np.allclose(num(form), want_w)
    for form in forms.grad_input_forms().values():
        assert np.allclose(num(form).ravel(), np.ravel(dv[0], order="F"))
    for form in forms.grad_bias_forms().values() if spec.bias else ():
        assert np.allclose(num(form).ravel(), db)


def test_a_wrong_kernel_tap_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    spec = LayerSpec(input=(1, 3, 4), kernel=(1, 1, 2, 3))
    real = vf.kernel_element
    monkeypatch.setattr(vf, "kernel_element", lambda s, o, c, i, j: real(s, o, c, 1 - i, j))
    with pytest.raises(DerivationError, match=r"forward\[0, 0, 0\] .* seed 004's form \(3\)"):
        VecForms(spec).check(derive_layer(spec))


def test_padding_on_the_wrong_side_is_refused() -> None:
    # "same" with an even kernel pads one row more below than above: a P_pad with the frame
    # shifted by one row reads the wrong rows
    spec = LayerSpec(input=(1, 3, 3), kernel=(1, 1, 2, 2), padding="same")
    assert spec.pads == (0, 1, 0, 1)

    class Shifted(VecForms):
        def p_pad(self) -> Dok:  # the input placed one row and one column too low
            return Dok(self.n_pad, self.n_in, {
                (c + self.g.c * (y + 1 + self.hp * (x + 1)), c + self.g.c * self.position(y, x)):
                S.One for c, y, x in self.inputs()})

    with pytest.raises(DerivationError, match="seed 004's form"):
        Shifted(spec).check(derive_layer(spec))


def test_the_derivation_of_another_layer_is_refused() -> None:
    with pytest.raises(DerivationError, match="explicit: the derivation of input 1x3x3"):
        VecForms(SPECS["same-odd"]).check(derive_layer(SPECS["seed"]))


# -- the fully connected layer ------------------------------------------------------------------


def test_a_kernel_covering_its_input_is_seed_004s_dense_layer() -> None:
    # phi(pad(z)) = I z: one window reading the whole input in vec order
    spec = LayerSpec(input=(2, 2, 3), kernel=(4, 2, 2, 3))
    forms = VecForms(spec)
    assert forms.covers_input()
    assert numbers(matmul(forms.p_phi(), forms.p_pad())).tolist() == np.eye(12).tolist()
    w, z = forms.weight().sympy(), vec(forms.input_matrix()).sympy()
    dense = Matrix(w) * Matrix(z) + Matrix(forms.bias().sympy())  # SymPy's dense product
    for form in forms.forward_forms().values():
        assert Matrix(form.sympy()) == dense
    assert not VecForms(spec.replace(padding=1, kernel=(4, 2, 4, 5))).covers_input()
    assert not VecForms(SPECS["seed"]).covers_input()


@pytest.mark.parametrize("n_out, n_in, bias", [(1, 1, True), (3, 5, True), (2, 4, False)])
def test_dense_forms_8_and_9_equal_the_dense_product(n_out: int, n_in: int, bias: bool) -> None:
    forms = dense_forms(n_out, n_in, bias)
    # forward twice, then the weight, input and bias gradients (the last with a bias only)
    assert forms.check() == 2 * n_out + n_out * n_in + n_in + (n_out if bias else 0)
    assert (forms.grad_bias is None) == (not bias)
    s = forms.W * forms.z + forms.b
    assert Matrix(forms.forward["(9)"].sympy()) == s


def test_a_wrong_dense_form_is_refused() -> None:
    forms = dense_forms(2, 3)
    wrong = dataclasses.replace(forms, grad_input=matmul(kron(vf.identity(1), forms.W),
                                                         vf.ones(3)))
    with pytest.raises(DerivationError, match="dense layer grad_input"):
        wrong.check()
    with pytest.raises(SpecError, match="n_in=0: expected a positive integer"):
        dense_forms(2, 0)


# -- pooling ------------------------------------------------------------------------------------


def _numpy_pool(values: np.ndarray, kind: str, size: tuple[int, int],
                stride: tuple[int, int]) -> np.ndarray:
    win = sliding_window_view(values, size, axis=(1, 2))[:, ::stride[0], ::stride[1]]
    return win.mean(axis=(3, 4)) if kind == "avg" else win.max(axis=(3, 4))


POOLS = [((2, 4, 4), 2, None), ((3, 5, 6), (2, 3), (1, 2)), ((1, 7, 5), 3, 2),
         ((2, 5, 5), 2, 3)]


@pytest.mark.parametrize("kind", ["avg", "max"])
@pytest.mark.parametrize("shape, size, stride", POOLS)
def test_pool_matrix_is_numpys_pooling(kind: str, shape: tuple[int, int, int], size, stride
                                       ) -> None:
    rng = np.random.default_rng(7)
    values = rng.standard_normal(shape)
    pair = (size, size) if isinstance(size, int) else size
    step = pair if stride is None else (stride, stride) if isinstance(stride, int) else stride
    switches = max_switches(values, size, stride) if kind == "max" else None
    p = numbers(pool_matrix(shape, kind, size, stride, switches))
    want = _numpy_pool(values, kind, pair, step)
    assert want.shape == pool_output_shape(shape, size, stride)
    assert np.allclose(p @ np.ravel(values, order="F"), np.ravel(want, order="F"))
    if kind == "avg":
        assert set(np.unique(p)) == {0, 1 / (pair[0] * pair[1])}
    else:
        assert set(np.unique(p)) == {0, 1} and (p.sum(axis=1) == 1).all()
    # P_pool is the Jacobian of the pooling: central differences (exact for these
    # piecewise-linear maps, away from ties)
    eps, flat = 1e-6, np.ravel(values, order="F")
    jac = np.empty_like(p)
    for k in range(flat.size):
        step_k = np.zeros_like(flat)
        step_k[k] = eps
        up, down = (np.ravel(_numpy_pool(np.reshape(flat + s, shape, order="F"), kind, pair,
                                         step), order="F") for s in (step_k, -step_k))
        jac[:, k] = (up - down) / (2 * eps)
    assert np.allclose(jac, p, atol=1e-6)


def test_max_switches_take_the_first_maximum_on_ties() -> None:
    values = np.random.default_rng(2).integers(0, 2, size=(2, 6, 6)).astype(float)
    switches = max_switches(values, 3, 2)
    for ch, y, x in np.ndindex(switches.shape[:3]):
        first = None  # the first maximum, scanning rows then columns
        for r in range(2 * y, 2 * y + 3):
            for t in range(2 * x, 2 * x + 3):
                if first is None or values[ch, r, t] > values[ch, first[0], first[1]]:
                    first = (r, t)
        assert tuple(switches[ch, y, x]) == first


def test_pooling_refuses_bad_arguments() -> None:
    with pytest.raises(SpecError, match="kind='min': expected one of max, avg"):
        pool_matrix((1, 4, 4), "min", 2)
    with pytest.raises(SpecError, match="size=5: the window 5x5 is larger than the input 4x4"):
        pool_matrix((1, 4, 4), "avg", 5)
    with pytest.raises(SpecError, match="stride=0: expected a positive integer"):
        pool_matrix((1, 4, 4), "avg", 2, 0)
    with pytest.raises(SpecError, match=r"switches: max pooling needs .* \(1, 2, 2, 2\)"):
        pool_matrix((1, 4, 4), "max", 2)
    bad = np.zeros((1, 2, 2, 2), dtype=int)  # every switch at (0, 0): outside later windows
    with pytest.raises(SpecError, match=r"switches\[0, 0, 1\]=\(0, 0\): outside its window, "
                                        r"rows 0..1, columns 2..3"):
        pool_matrix((1, 4, 4), "max", 2, switches=bad)
    with pytest.raises(SpecError, match="values: expected an array"):
        max_switches(np.zeros((4, 4)), 2)
