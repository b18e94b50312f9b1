"""The symbolic derivation: the seeds' worked examples exactly, finite differences, the proof."""

import importlib
import itertools
import re

import numpy as np
import pytest
from sympy import Add, Indexed, expand

from derive import DerivationError, LayerSpec, derive_layer, index_forms, prove, proxy, seeds
from derive.gradients import chain_rule
from derive.symbols import G, K, V, b

index_forms_module = importlib.import_module("derive.proof")

SEED = LayerSpec(input=(1, 3, 3), kernel=(1, 1, 2, 2))

# Seed notation -> corrgen's 0-based, per-sample arrays of a one-channel layer.
_TOKEN = re.compile(r"([xXVkKwGyd])_?\{?(\d),?(\d)?\}?")


def seed_expr(text: str, base: int = 1):
    """Parse a seed's sum of products, e.g. 'K_{2,2} G_{1,1} + K_{2,1} G_{1,2}' or
    'dy11 x11 + ...' (dy = dJ/dy = G; x = V; k, K, w = K; d without y = delta = G)."""
    terms = []
    for term in text.split("+"):
        factors = []
        for name, a, c in _TOKEN.findall(term):
            idx = [int(a) - base] + ([int(c) - base] if c else [])
            if len(idx) == 1:  # 1-D (seed 003 B.1-B.8): one row
                idx = [0, idx[0]]
            if name in "xXV":
                factors.append(V[0, idx[0], idx[1]])
            elif name in "kKw":
                factors.append(K[0, 0, idx[0], idx[1]])
            else:
                factors.append(G[0, idx[0], idx[1]])
        assert factors, term
        terms.append(np.prod(factors))
    return Add(*terms)


def assert_same(derived, expected, what):
    assert expand(derived - expected) == 0, f"{what}: derived {derived}, expected {expected}"


# -- seed 000 -----------------------------------------------------------------------------------


def test_seed000_worked_example():
    exprs = derive_layer(SEED)
    # Z_{1,1} = K_{1,1} V_{1,1} + K_{1,2} V_{1,2} + K_{2,1} V_{2,1} + K_{2,2} V_{2,2} (+ bias)
    z11 = seed_expr("K_{1,1} V_{1,1} + K_{1,2} V_{1,2} + K_{2,1} V_{2,1} + K_{2,2} V_{2,2}")
    assert_same(exprs.forward[(0, 0, 0)], z11 + b[0], "Z_{1,1}")
    assert_same(exprs.grad_weight[(0, 0, 0, 0)],
                seed_expr("V_{1,1} G_{1,1} + V_{1,2} G_{1,2} + V_{2,1} G_{2,1} + V_{2,2} G_{2,2}"),
                "dJ/dK_{1,1}")
    assert_same(exprs.grad_input[(0, 0, 0)], seed_expr("K_{1,1} G_{1,1}"), "dJ/dV_{1,1}")
    assert_same(exprs.grad_input[(0, 1, 1)],
                seed_expr("K_{2,2} G_{1,1} + K_{2,1} G_{1,2} + K_{1,2} G_{2,1} + K_{1,1} G_{2,2}"),
                "dJ/dV_{2,2}")


def test_seed000_chain_rule_expansion_has_every_output():
    # dJ/dV_{1,1} = sum over the four outputs of dZ/dV_{1,1} dJ/dZ; only Z_{1,1} reads V_{1,1}
    steps = chain_rule(SEED, V[0, 0, 0])
    assert [s.out for s in steps] == [(0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1)]
    assert [s.factor for s in steps] == [K[0, 0, 0, 0], 0, 0, 0]
    steps = chain_rule(SEED, V[0, 1, 1])
    assert [s.factor for s in steps] == [K[0, 0, 1, 1], K[0, 0, 1, 0], K[0, 0, 0, 1], K[0, 0, 0, 0]]


# -- seed 001 -----------------------------------------------------------------------------------

SEED001_DK = {  # dE/dk_ij, with dy_ij = dE/dy_ij
    (1, 1): "dy11 x11 + dy12 x12 + dy21 x21 + dy22 x22",
    (1, 2): "dy11 x12 + dy12 x13 + dy21 x22 + dy22 x23",
    (2, 1): "dy11 x21 + dy12 x22 + dy21 x31 + dy22 x32",
    (2, 2): "dy11 x22 + dy12 x23 + dy21 x32 + dy22 x33",
}
SEED001_DX = {
    (1, 1): "dy11 K11",
    (1, 2): "dy11 K12 + dy12 K11",
    (1, 3): "dy12 K12",
    (2, 1): "dy11 K21 + dy21 K11",
    (2, 2): "dy11 K22 + dy12 K21 + dy21 K12 + dy22 K11",
    (2, 3): "dy12 K22 + dy22 K12",
    (3, 1): "dy21 K21",
    (3, 2): "dy21 K22 + dy22 K21",
    (3, 3): "dy22 K22",
}


def test_seed001_all_gradients():
    exprs = derive_layer(SEED)
    for (r, c), text in SEED001_DK.items():
        assert_same(exprs.grad_weight[(0, 0, r - 1, c - 1)], seed_expr(text), f"dE/dk{r}{c}")
    for (r, c), text in SEED001_DX.items():
        assert_same(exprs.grad_input[(0, r - 1, c - 1)], seed_expr(text), f"dE/dx{r}{c}")
    assert len(exprs.grad_input) == 9 and len(exprs.grad_weight) == 4
    # dE/db: seed 001 gives one bias per output pixel, dE/db_ij = dE/dy_ij; with one bias per
    # channel (corrgen's b[o]) that is the sum of the four.
    assert_same(exprs.grad_bias[(0,)], seed_expr("dy11 + dy12 + dy21 + dy22"), "dE/db")


def test_seed001_numeric_examples_through_the_symbols():
    image = np.array([[1, 6, 2], [5, 3, 1], [7, 0, 4]])
    kernel = np.array([[1, 2], [-1, 0]])
    values = {V[0, i, j]: int(image[i, j]) for i in range(3) for j in range(3)}
    values.update({K[0, 0, i, j]: int(kernel[i, j]) for i in range(2) for j in range(2)})
    values[b[0]] = 0
    cases = [
        (SEED, [[8, 7], [4, 5]]),
        (SEED.replace(mode="convolution"), [[7, 5], [11, 3]]),
        (SEED.replace(padding="full"),
         [[0, -1, -6, -2], [2, 8, 7, 1], [10, 4, 5, -3], [14, 7, 8, 4]]),
    ]
    for spec, expected in cases:
        forward = derive_layer(spec).forward
        got = [[forward[(0, y, x)].xreplace(values) for x in range(spec.out_w)]
               for y in range(spec.out_h)]
        assert got == expected, spec.describe()


# -- seed 003, appendix B -----------------------------------------------------------------------


def test_seed003_appendix_b_one_dimensional():
    spec = LayerSpec(input=(1, 1, 4), kernel=(1, 1, 1, 2))
    exprs = derive_layer(spec)
    # B.4
    assert_same(exprs.grad_weight[(0, 0, 0, 0)], seed_expr("x0 d0 + x1 d1 + x2 d2", 0), "B.4 w0")
    assert_same(exprs.grad_weight[(0, 0, 0, 1)], seed_expr("x1 d0 + x2 d1 + x3 d2", 0), "B.4 w1")
    # B.7
    for k, text in enumerate(["w0 d0", "w1 d0 + w0 d1", "w1 d1 + w0 d2", "w1 d2"]):
        assert_same(exprs.grad_input[(0, 0, k)], seed_expr(text, 0), f"B.7 delta_{k}")
    # B.2: dE/db = sum of delta
    assert_same(exprs.grad_bias[(0,)], seed_expr("d0 + d1 + d2", 0), "B.2")


def test_seed003_appendix_b_two_dimensional():
    spec = LayerSpec(input=(1, 4, 4), kernel=(1, 1, 2, 2))
    exprs = derive_layer(spec)
    for m, n in itertools.product(range(2), range(2)):  # B.17
        expected = Add(*[G[0, i, j] * V[0, i + m, j + n] for i in range(3) for j in range(3)])
        assert_same(exprs.grad_weight[(0, 0, m, n)], expected, f"B.17 w_{m}{n}")
    for m, n in itertools.product(range(4), range(4)):  # B.23, w outside the kernel is zero
        expected = Add(*[G[0, i, j] * K[0, 0, m - i, n - j] for i in range(3) for j in range(3)
                         if 0 <= m - i < 2 and 0 <= n - j < 2])
        assert_same(exprs.grad_input[(0, m, n)], expected, f"B.23 delta_{m}{n}")


# -- seed 002 and the seeds' general formulas ---------------------------------------------------

STRIDED = [
    LayerSpec(input=(2, 7, 7), kernel=(3, 2, 3, 3), stride=2),
    LayerSpec(input=(1, 6, 6), kernel=(1, 1, 2, 2), stride=2),
    LayerSpec(input=(2, 8, 9), kernel=(2, 2, 3, 2), stride=3),
    LayerSpec(input=(1, 5, 4), kernel=(2, 1, 2, 3)),
]


@pytest.mark.parametrize("spec", STRIDED, ids=lambda s: s.describe())
def test_seed_formulas_against_the_derivation(spec):
    exprs = derive_layer(spec)

    def equal(a, b):
        return a.keys() == b.keys() and all(expand(a[k] - b[k]) == 0 for k in a)

    assert equal(seeds.seed000_grad_weight(spec), exprs.grad_weight)
    assert equal(seeds.seed000_grad_input(spec), exprs.grad_input)
    assert equal(seeds.seed002_grad_weight(spec), exprs.grad_weight)
    assert equal(seeds.seed002_grad_input(spec, upper="ceil"), exprs.grad_input)
    # Seed 002 as written (upper limit KH/stride - 1) is right only when the stride divides
    # the kernel's extents.
    kh, kw, s = spec.kernel[2], spec.kernel[3], spec.stride[0]
    assert equal(seeds.seed002_grad_input(spec), exprs.grad_input) == (kh % s == 0 and kw % s == 0)


def test_seed003_full_size_is_off():
    spec = LayerSpec(input=(1, 3, 3), kernel=(1, 1, 2, 2), padding="full")
    assert spec.out_h == 3 + 2 - 1 == 4  # seed 001's full correlation is 4x4
    assert seeds.seed003_full_size(3, 2) == 5


# -- finite differences of the symbolic forward -------------------------------------------------

FD_SPECS = [
    SEED,
    LayerSpec(input=(2, 4, 5), kernel=(2, 2, 2, 3), stride=(2, 1), padding=(1, 0)),
    LayerSpec(input=(1, 5, 5), kernel=(1, 1, 2, 2), dilation=2, padding="same", bias=False),
    LayerSpec(input=(2, 4, 4), kernel=(1, 2, 3, 2), mode="convolution", padding="full"),
]


@pytest.mark.parametrize("spec", FD_SPECS, ids=lambda s: s.describe())
def test_gradients_match_central_differences_of_the_symbolic_forward(spec):
    rng = np.random.default_rng(1)
    exprs = derive_layer(spec)
    variables = set()
    for expr in exprs.forward.values():
        variables |= expr.atoms(Indexed)
    point = {v: float(rng.standard_normal()) for v in variables}
    point.update({G[o]: float(rng.standard_normal()) for o in exprs.forward})

    def loss(at):  # J = sum_z G[z] Z[z], whose gradient is what the derivation claims
        return sum(at[G[z]] * float(e.xreplace(at)) for z, e in exprs.forward.items())

    h = 1e-3
    grads = {**{V[k]: e for k, e in exprs.grad_input.items()},
             **{K[k]: e for k, e in exprs.grad_weight.items()},
             **{b[k]: e for k, e in exprs.grad_bias.items()}}
    for var, grad in grads.items():
        up, down = dict(point), dict(point)
        up[var] = point.get(var, 0.0) + h
        down[var] = point.get(var, 0.0) - h
        numeric = (loss(up) - loss(down)) / (2 * h)
        symbolic = float(grad.xreplace({**point, var: point.get(var, 0.0)}))
        assert numeric == pytest.approx(symbolic, rel=1e-7, abs=1e-9), var


# -- index forms and the proof ------------------------------------------------------------------


def _grid():
    shapes = [((1, 5, 5), (1, 1, 2, 2)), ((2, 6, 7), (3, 2, 3, 2)), ((3, 7, 5), (2, 3, 2, 3)),
              ((1, 4, 9), (2, 1, 1, 3))]
    options = [
        {}, {"stride": 2}, {"stride": 3}, {"stride": (1, 2)}, {"stride": (3, 2)},
        {"padding": 1}, {"padding": (2, 1)}, {"padding": "valid"}, {"padding": "same"},
        {"padding": "full"}, {"dilation": 2}, {"dilation": (2, 1), "padding": "same"},
        {"stride": 2, "padding": 1, "dilation": 2}, {"mode": "convolution", "stride": 2},
        {"bias": False, "padding": "full", "stride": (2, 3)},
        {"mode": "convolution", "dilation": (1, 2), "padding": (1, 2), "bias": False},
    ]
    for (shape, kernel), opts in itertools.product(shapes, options):
        try:
            yield LayerSpec(input=shape, kernel=kernel, **opts)
        except ValueError:
            continue


GRID = list(_grid())


@pytest.mark.parametrize("spec", GRID, ids=lambda s: s.describe())
def test_index_forms_proven_on_grid(spec):
    proof = prove(spec)
    assert proof.proved_on == spec
    assert proof.elements["grad_input"] == spec.input[0] * spec.input[1] * spec.input[2]
    assert ("grad_bias" in proof.elements) == spec.bias
    rows, cols = spec.uncovered
    # inputs no window reads have a gradient of exactly zero
    expected_zeros = spec.input[0] * (len(rows) * spec.input[2] + len(cols) * spec.input[1]
                                      - len(rows) * len(cols))
    assert proof.zero_elements["grad_input"] >= expected_zeros


def test_grid_covers_uncovered_rows():
    assert any(spec.uncovered != ((), ()) for spec in GRID)
    assert len(GRID) > 50


def test_proof_on_a_reduced_proxy_keeps_kernel_stride_padding_dilation():
    spec = LayerSpec(input=(16, 32, 33), kernel=(16, 16, 3, 3), stride=2, padding="same",
                     dilation=(1, 2))
    small = proxy(spec)
    assert small != spec and small.n_terms < spec.n_terms
    assert small.kernel[2:] == spec.kernel[2:] and small.stride == spec.stride
    assert small.pads == spec.pads and small.dilation == spec.dilation
    assert small.input[1] % 2 == spec.input[1] % 2 and small.input[2] % 2 == spec.input[2] % 2
    assert small.uncovered[1] != () or spec.uncovered[1] == ()
    proof = prove(spec)
    assert proof.proved_on == small and "reduced proxy" in str(proof)


def test_proof_fails_on_a_wrong_index_form(monkeypatch):
    spec = LayerSpec(input=(1, 5, 5), kernel=(1, 1, 2, 2), stride=2)
    good = index_forms(spec)

    def wrong(spec_):  # read G one row too far: an off-by-one the proof must catch
        forms = dict(good)
        form = forms["grad_input"]
        g = form.factors[1]
        shifted = type(g)(g.base, (g.indices[0], g.indices[1] + 1, g.indices[2]), g.extents)
        forms["grad_input"] = type(form)(form.name, form.target, form.free, form.sums,
                                         (form.factors[0], shifted), form.constant)
        return forms

    monkeypatch.setattr(index_forms_module, "index_forms", wrong)
    with pytest.raises(DerivationError, match="grad_input"):
        prove(spec)


def test_too_large_spec_is_refused_with_a_way_forward():
    spec = LayerSpec(input=(16, 64, 64), kernel=(16, 16, 3, 3))
    with pytest.raises(DerivationError, match="--max-terms"):
        derive_layer(spec)
