"""The fast paths of the derivation against SymPy's own: ``sympy.diff``, ``Add``/``Mul`` and
the string printers.

``derive_layer`` differentiates each forward term by its structure and builds sums and
products with ``_from_args`` over arguments it orders itself; ``ElementPrinter`` writes the
text itself. Each must give exactly what SymPy gives: the same objects (``==`` compares the
argument tuples, so the order of the arguments counts) and the same strings.
"""

from __future__ import annotations

import gc
import itertools
import random
from functools import cmp_to_key

import pytest
from sympy import Add, Basic, Expr, IndexedBase, Mul, Symbol, diff, sstr

from derive import LayerSpec, derive_layer
from derive.fastprint import ElementPrinter
from derive.forward import forward_exprs, keyed, product, total
from derive.gradients import without_gc
from derive.printing import shift_indices
from derive.symbols import G, K, V, Z, b

#: Small layers covering each rule of the geometry: stride (with rows no window covers),
#: padding (by amount, uneven "same", "full"), dilation, convolution, no bias, channels.
GRID = {
    "seed": LayerSpec(input=(1, 3, 3), kernel=(1, 1, 2, 2)),
    "stride2-pad1": LayerSpec(input=(2, 4, 4), kernel=(2, 2, 2, 2), stride=2, padding=1),
    "same-uneven-dilated": LayerSpec(input=(1, 5, 4), kernel=(2, 1, 3, 2), padding="same",
                                     dilation=(1, 2)),
    "full-convolution": LayerSpec(input=(2, 3, 4), kernel=(1, 2, 2, 3), padding="full",
                                  mode="convolution"),
    "stride3-gaps": LayerSpec(input=(1, 7, 6), kernel=(1, 1, 2, 2), stride=3),
    "dilated-no-bias": LayerSpec(input=(2, 5, 5), kernel=(1, 2, 2, 2), dilation=2, bias=False),
    "mixed": LayerSpec(input=(1, 4, 5), kernel=(2, 1, 3, 3), stride=(2, 1), padding=(1, 0),
                       mode="convolution", bias=False),
}
WRTS = [("input", "weight", "bias"), ("input",), ("weight", "bias")]


def oracle(spec: LayerSpec) -> tuple[dict, dict, dict, dict]:
    """DESIGN.md's forward sum written with SymPy's operators, and every gradient by
    ``sympy.diff`` through the chain rule over every output (zeros included)."""
    c_in, h, w = spec.input
    o_count, _, kh, kw = spec.kernel
    _, ho, wo = spec.output_shape
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    top, left = spec.pads[0], spec.pads[2]
    flip = spec.mode == "convolution"
    forward = {}
    for o, y, x in itertools.product(range(o_count), range(ho), range(wo)):
        z = b[o] if spec.bias else 0
        for c, i, j in itertools.product(range(c_in), range(kh), range(kw)):
            u, v = y * sh + i * dh - top, x * sw + j * dw - left
            if 0 <= u < h and 0 <= v < w:
                ki, kj = (kh - 1 - i, kw - 1 - j) if flip else (i, j)
                z = z + K[o, c, ki, kj] * V[c, u, v]
        forward[o, y, x] = z

    def grad(var: Expr) -> Expr:
        return Add(*[G[out] * diff(z, var) for out, z in forward.items()])

    grad_input = {i: grad(V[i]) for i in itertools.product(*map(range, spec.input))}
    grad_weight = {i: grad(K[i]) for i in itertools.product(*map(range, spec.kernel))}
    grad_bias = {(o,): grad(b[o]) for o in range(o_count)} if spec.bias else {}
    return forward, grad_input, grad_weight, grad_bias


@pytest.mark.parametrize("name", GRID)
def test_derive_layer_is_sympy_diff_of_the_forward_pass(name):
    spec = GRID[name]
    forward, grad_input, grad_weight, grad_bias = oracle(spec)
    got = derive_layer(spec, max_terms=None)
    for mine, theirs in [(got.forward, forward), (got.grad_input, grad_input),
                         (got.grad_weight, grad_weight), (got.grad_bias, grad_bias)]:
        assert list(mine) == list(theirs)  # the same elements, in the same order
        for index, expr in theirs.items():
            assert mine[index] == expr, index
    assert forward_exprs(spec) == forward


@pytest.mark.parametrize("wrt", WRTS, ids=",".join)
def test_only_the_requested_gradients_and_the_same_ones(wrt):
    spec = GRID["stride2-pad1"]
    full = derive_layer(spec, max_terms=None)
    part = derive_layer(spec, wrt, max_terms=None)
    assert part.forward == full.forward
    for name, pass_name in [("input", "grad_input"), ("weight", "grad_weight"),
                            ("bias", "grad_bias")]:
        assert getattr(part, pass_name) == (getattr(full, pass_name) if name in wrt else {})


def test_the_comparison_sees_the_order_of_the_arguments():
    """``==`` is what the tests above rely on to catch a sum built in a wrong order."""
    expr = derive_layer(GRID["seed"], max_terms=None).grad_weight[0, 0, 0, 0]
    assert isinstance(expr, Add) and len(expr.args) > 1
    shuffled = Add._from_args(tuple(reversed(expr.args)), True)
    assert shuffled != expr and sstr(shuffled, order="none") != sstr(expr, order="none")


# -- the sort keys and the builders ----------------------------------------------------------

INDICES = (0, 1, 2, 3, 9, 10, 11, 99, 100, 101)  # Zero, One and Integer; one, two, three digits
SHAPES = {V: 3, K: 4, b: 1, Z: 3, G: 3}


def random_elements(rng: random.Random, n: int) -> list[tuple]:
    bases = list(SHAPES)
    out = {}
    while len(out) < n:
        base = rng.choice(bases)
        index = tuple(rng.choice(INDICES) for _ in range(SHAPES[base]))
        out[base, index] = keyed(base, index)
    return list(out.values())


def test_keys_sort_as_basic_compare():
    rng = random.Random(7)
    elements = random_elements(rng, 300)
    products = [product(p, q) for p, q in (rng.sample(elements, 2) for _ in range(300))]
    mixed = elements + products
    rng.shuffle(mixed)
    by_key = [e for _, e in sorted(mixed, key=lambda t: t[0])]
    assert by_key == sorted((e for _, e in mixed), key=cmp_to_key(Basic.compare))


def test_products_and_sums_are_the_objects_sympy_builds():
    rng = random.Random(11)
    elements = random_elements(rng, 60)
    for _ in range(200):
        p, q = rng.sample(elements, 2)
        assert product(p, q)[1] == Mul(p[1], q[1]) == q[1] * p[1]
    for n in (0, 1, 2, 5, 40):
        terms = rng.sample(elements, n // 2)
        terms += [product(p, q) for p, q in (rng.sample(elements, 2) for _ in range(n - n // 2))]
        exprs = [e for _, e in terms]
        rng.shuffle(terms)
        assert total(terms) == Add(*exprs)


def test_a_repeated_term_is_left_to_sympy_to_collect():
    p, q = keyed(V, (0, 1, 2)), keyed(K, (0, 0, 1, 1))
    pq = product(p, q)
    assert total([pq, p, pq]) == 2 * p[1] * q[1] + p[1]


@pytest.mark.parametrize("base, index, message", [
    (V, (0, -1, 2), "indices >= 0"),
    (IndexedBase("W"), (0, 0, 0), "V, K, b, Z or G"),
])
def test_keyed_refuses_what_its_order_does_not_cover(base, index, message):
    with pytest.raises(ValueError, match=message):
        keyed(base, index)


def test_product_refuses_a_square_and_a_product_of_products():
    p, q = keyed(V, (0, 0, 0)), keyed(K, (0, 0, 0, 0))
    with pytest.raises(ValueError, match="two different elements"):
        product(p, p)
    with pytest.raises(ValueError, match="two different elements"):
        product(product(p, q), keyed(G, (0, 0, 0)))


@pytest.mark.parametrize("enabled", [True, False])
def test_the_collector_is_left_as_it_was(enabled):
    was = gc.isenabled()
    try:
        (gc.enable if enabled else gc.disable)()
        with without_gc():
            assert not gc.isenabled()
        assert gc.isenabled() == enabled
        derive_layer(GRID["mixed"], ("input",), max_terms=None)
        assert gc.isenabled() == enabled
    finally:
        (gc.enable if was else gc.disable)()


# -- the printer ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*GRID, "brief"])
def test_printer_writes_what_sympy_writes(name):
    spec = GRID.get(name) or LayerSpec(input=(3, 8, 8), kernel=(4, 3, 3, 3), stride=2,
                                       padding=1)
    exprs = derive_layer(spec, max_terms=None)
    plain, zero, one = ElementPrinter(), ElementPrinter(0), ElementPrinter(1)
    for elements in exprs.passes().values():
        for expr in elements.values():
            assert plain.plain(expr) == sstr(expr, order="none")
            assert zero.text(expr) == str(expr)
            assert one.text(expr) == str(shift_indices(expr, 1))


i = Symbol("i")
OTHER = {
    # a product before its first factor alone; three factors; indices of 1, 2 and 3 digits
    "prefix": G[0, 0, 0] + G[0, 0, 0] * K[0, 0, 0, 0] + K[0, 0, 0, 0],
    "three": G[1, 2, 3] * K[0, 1, 2, 10] * V[0, 9, 100] + G[1, 2, 3] * K[0, 1, 2, 10] + b[2],
    "digits": V[0, 0, 9] * K[0, 0, 0, 10] + V[0, 0, 10] * K[0, 0, 0, 9] + V[0, 0, 99],
    # what the printer leaves to SymPy
    "zero": Add(),
    "coefficient": 2 * V[0, 0, 0] * K[0, 0, 0, 0] + G[0, 0, 0],
    "negative": G[0, 0, 0] - V[0, 1, 0],
    "power": V[0, 0, 0] ** 2 + K[0, 0, 0, 0],
    "square unevaluated": Mul(V[0, 0, 0], V[0, 0, 0], evaluate=False) + G[0, 0, 0],
    "symbolic index": V[0, i, 0] * K[0, 0, 0, 0] + G[0, 0, 0],
    "symbol": Symbol("x") * V[0, 0, 0],
}


@pytest.mark.parametrize("name", OTHER)
def test_printer_on_other_expressions(name):
    expr = OTHER[name]
    assert ElementPrinter().plain(expr) == sstr(expr, order="none")
    for base in (0, 1):
        assert ElementPrinter(base).text(expr) == str(shift_indices(expr, base))


def test_plain_text_is_only_for_base_0():
    with pytest.raises(ValueError, match="base 0"):
        ElementPrinter(1).plain(V[0, 0, 0])


def test_the_walk_makes_only_the_elements_its_terms_read():
    """A kernel of 811 x 811 taps at stride and padding 811 on a 3x3 input reads 9 weights in
    its 4 outputs: the walk makes those 9 (and the 9 inputs, 4 gradients, 1 bias), not all
    657,721 weights (14 s when each was made up front). An index outside its array is a
    KeyError, as in a dict; each element is made once and kept."""
    from derive.gradients import _Walk

    spec = LayerSpec(input=(1, 3, 3), kernel=(1, 1, 811, 811), stride=811, padding=811)
    walk = _Walk(spec, want_v=False, want_k=False, progress=None)
    forward = walk.run()
    assert (len(walk.k), len(walk.v), len(walk.g), len(walk.b)) == (9, 9, 4, 1)
    assert walk.into_v is None and walk.into_k is None
    assert forward == derive_layer(spec, wrt=("bias",)).forward
    with pytest.raises(KeyError):
        walk.k[0, 0, 811, 0]
    with pytest.raises(KeyError):
        walk.k[0, 0, 0]
    assert walk.k[0, 0, 0, 0] is walk.k[0, 0, 0, 0]
    assert sstr(walk.k[0, 0, 5, 7][1]) == "K[0, 0, 5, 7]"
    small = LayerSpec(input=(2, 3, 3), kernel=(2, 2, 2, 2))
    every = _Walk(small, want_v=True, want_k=True, progress=None)
    assert list(every.into_v) == list(itertools.product(range(2), range(3), range(3)))
    assert list(every.into_k) == list(itertools.product(range(2), range(2), range(2), range(2)))
