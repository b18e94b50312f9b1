"""The generated network module (``codegen.load_network``) against the NumPy reference
``derive.reference.network``: predict, loss, gradients and the SGD step on a grid of networks
covering every layer kind, loss, pooling mode, stride, padding, dilation, convolution mode,
untied and missing biases; both dtypes; batch 1 and odd batches; and against the symbolic
derivation (``derive_network``) evaluated at the same numbers. Then training trajectories,
determinism across thread counts, the argument checks, the cache, and the checked-in source
of DESIGN.md's example network."""

from __future__ import annotations

import dataclasses
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from golden import golden_differences
from test_network_derive import TINY, _numbers

import codegen
from codegen.backends import OPENMP
from codegen.errors import RenderError
from codegen.network_lower import lower_network, register_rows, stages
from codegen.render import render_network
from derive import Network
from derive.errors import SpecError
from derive.network_derivation import arrays, derive_network, evaluate
from derive.reference import network as reference
from derive.values import substitutions

EXAMPLE = "1x8x8 | conv 6x3x3 pad 1 | relu | maxpool 2 | flatten | dense 10 | softmax-ce"
LENET = ("1x32x32 | conv 6x5x5 | relu | maxpool 2 | conv 16x5x5 | relu | maxpool 2 | flatten "
         "| dense 120 | relu | dense 84 | relu | dense 10 | softmax-ce")

#: Every layer kind, loss and pooling mode, and the conv options, across a few networks.
GRID = [
    EXAMPLE,
    # strides, dilation, asymmetric "same" padding, convolution mode, untied bias, avgpool
    # with overlapping windows, tanh and sigmoid, a bias-less dense layer, bce
    "2x9x7 | conv 3x3x2 stride 2 pad 1 dil 2 | tanh | avgpool 2 stride 1 "
    "| conv 4x2x2 pad same convolution untied | sigmoid | flatten | dense 5 nobias | sigmoid | bce",
    # activations first and twice in a row (stages of their own), l2pool, l2 loss
    "1x6x6 | tanh | relu | conv 2x3x3 nobias | l2pool 2 | flatten | dense 3 | l2",
    # a 1x1 conv, an activation after flatten, two dense layers
    "3x5x5 | conv 4x1x1 | flatten | relu | dense 7 | tanh | dense 2 | softmax-ce",
    # full padding, stride larger than the kernel, maxpool with stride, l2 on an image
    "2x7x8 | conv 5x2x3 pad full stride 3x2 | relu | maxpool 2 stride 1 | sigmoid | l2",
    # a dense-only network (flatten first: the whole input as one column)
    "1x3x4 | flatten | dense 9 | sigmoid | dense 4 | softmax-ce",
]
BATCHES = (1, 3, 5)


def _data(net: Network, batch: int, dtype: str, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((batch, *net.input)).astype(dtype)
    if net.loss == "softmax-ce":
        T = rng.integers(0, net.output_shape[0], batch)
    else:
        T = rng.uniform(0.05, 0.95, (batch, *net.output_shape)).astype(dtype)
    params = {name: array.astype(dtype) for name, array in net.init_params(seed).items()}
    return X, T, params


def _close(got, want, dtype: str) -> None:
    """Within the dtype's rounding, relative to the largest element of the reference."""
    scale = max(float(np.abs(want).max()), 1e-30)
    tolerance = 1e-12 if dtype == "float64" else 2e-5
    assert got.shape == want.shape and got.dtype == np.dtype(dtype)
    assert float(np.abs(got - want).max()) <= tolerance * scale


@pytest.fixture(scope="module")
def modules():
    """The grid's modules and LeNet-5's, both dtypes, built two at a time (a build is mostly
    the compiler's time), then any other on first use."""
    wanted = [(text, dtype) for text in (*GRID, LENET) for dtype in ("float64", "float32")]
    with ThreadPoolExecutor(2) as pool:
        built = dict(zip(wanted, pool.map(
            lambda case: codegen.load_network(Network.parse(case[0]), dtype=case[1]), wanted)))

    def get(text: str, dtype: str):
        if (text, dtype) not in built:
            built[text, dtype] = codegen.load_network(Network.parse(text), dtype=dtype)
        return built[text, dtype]
    return get


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("text", GRID)
def test_every_method_matches_the_reference(modules, text, dtype):
    net = Network.parse(text)
    module, ref = modules(text, dtype), reference(net)
    for batch in BATCHES:
        X, T, params = _data(net, batch, dtype, seed=batch)
        _close(module.predict(X, params), ref.predict(X, params), dtype)
        assert module.loss(X, T, params) == pytest.approx(
            ref.loss(X, T, params), rel=1e-12 if dtype == "float64" else 1e-5)
        loss, grads = module.grads(X, T, params)
        want_loss, want = ref.grads(X, T, params)
        assert loss == pytest.approx(want_loss, rel=1e-12 if dtype == "float64" else 1e-5)
        assert list(grads) == list(want)
        for name in want:
            _close(grads[name], want[name], dtype)


@pytest.mark.parametrize("text", GRID[:3])
def test_step_updates_the_parameters_as_the_reference_does(modules, text):
    net = Network.parse(text)
    module, ref = modules(text, "float64"), reference(net)
    X, T, params = _data(net, 3, "float64")
    mine = {name: array.copy() for name, array in params.items()}
    theirs = {name: array.copy() for name, array in params.items()}
    assert module.step(X, T, mine, 0.05) == pytest.approx(ref.step(X, T, theirs, 0.05),
                                                           rel=1e-12)
    for name in params:
        assert not np.array_equal(mine[name], params[name])  # it moved
        _close(mine[name], theirs[name], "float64")


def test_step_writes_back_into_arrays_it_cannot_use_directly(modules):
    net = Network.parse(EXAMPLE)
    module = modules(EXAMPLE, "float32")
    X, T, params = _data(net, 4, "float32")
    direct = {name: array.copy() for name, array in params.items()}
    # float64 arrays and a transposed (non-contiguous) view: copied in, written back
    other = {name: array.astype(np.float64) for name, array in params.items()}
    other["4.weight"] = np.asfortranarray(other["4.weight"])
    module.step(X, T, direct, 0.1)
    module.step(X, T, other, 0.1)
    for name in params:
        assert other[name].dtype == np.float64
        np.testing.assert_allclose(other[name], direct[name], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("dtype,tolerance", [("float64", 1e-9), ("float32", 1e-4)])
@pytest.mark.parametrize("text", [EXAMPLE, GRID[1]])
def test_fifty_steps_follow_the_reference(modules, text, dtype, tolerance):
    """Training from the same parameters: the loss of each of 50 steps, relative."""
    net = Network.parse(text)
    module, ref = modules(text, dtype), reference(net)
    _, _, params = _data(net, 1, dtype)
    mine = {name: array.copy() for name, array in params.items()}
    theirs = {name: array.copy() for name, array in params.items()}
    for step in range(50):
        X, T, _ = _data(net, 16, dtype, seed=100 + step)
        got, want = module.step(X, T, mine, 0.1), ref.step(X, T, theirs, 0.1)
        assert abs(got - want) <= tolerance * abs(want), (step, got, want)


def test_results_do_not_depend_on_the_thread_count_or_the_run(modules):
    net = Network.parse(LENET)
    module = modules(LENET, "float32")
    X, T, params = _data(net, 13, "float32")
    runs = []
    try:
        for threads in (1, 2, 3, 2):
            module.set_threads(threads)
            runs.append(module.grads(X, T, params))
    finally:
        module.set_threads(None)
    for loss, grads in runs[1:]:
        assert loss == runs[0][0]
        for name in grads:
            assert np.array_equal(grads[name], runs[0][1][name]), name


def test_lenet_matches_the_reference(modules):
    net = Network.parse(LENET)
    module, ref = modules(LENET, "float64"), reference(net)
    X, T, params = _data(net, 7, "float64")
    loss, grads = module.grads(X, T, params)
    want_loss, want = ref.grads(X, T, params)
    assert loss == pytest.approx(want_loss, rel=1e-12)
    for name in want:
        _close(grads[name], want[name], "float64")


@pytest.mark.parametrize("call,error,words", [
    (lambda m, X, T, P: m.loss(X.astype(np.float64), T, P), TypeError, ["X", "float32"]),
    (lambda m, X, T, P: m.loss(list(X), T, P), TypeError, ["X", "NumPy array"]),
    (lambda m, X, T, P: m.loss(X[:, 0], T, P), ValueError, ["X", "X[:, None]"]),
    (lambda m, X, T, P: m.loss(X, T.astype(float), P), TypeError, ["T", "int64"]),
    (lambda m, X, T, P: m.loss(X, T + 10, P), ValueError, ["T", "0..9"]),
    (lambda m, X, T, P: m.loss(X, T, {k: v for k, v in P.items() if k != "0.bias"}),
     ValueError, ["params", "0.bias"]),
    (lambda m, X, T, P: m.loss(X, T, {**P, "0.bias": P["0.bias"][:2]}), ValueError,
     ["0.bias", "(6,)"]),
    (lambda m, X, T, P: m.step(X, T, P, float("nan")), ValueError, ["lr"]),
    (lambda m, X, T, P: m.step(X, T, {**P, "0.bias": [0.0] * 6}, 0.1), TypeError,
     ["0.bias", "in place"]),
])
def test_bad_arguments_are_named(modules, call, error, words):
    module = modules(EXAMPLE, "float32")
    X, T, params = _data(Network.parse(EXAMPLE), 2, "float32")
    with pytest.raises(error) as caught:
        call(module, X, T, params)
    for word in words:
        assert word in str(caught.value)


def test_an_l2_pool_with_a_fused_activation_matches_the_reference():
    """The L2 pool's backward divides by its output before the activation fused into it (the
    outputs kept hold it after); the grid's L2 pool has no activation."""
    text = ("2x8x9 | conv 3x2x2 | relu | l2pool 2 stride 3 | tanh | avgpool 2 stride 1 "
            "| flatten | dense 2 | l2")
    module, ref = codegen.load_network(text, dtype="float64"), reference(Network.parse(text))
    X, T, params = _data(Network.parse(text), 3, "float64", seed=1)
    loss, grads = module.grads(X, T, params)
    want_loss, want = ref.grads(X, T, params)
    assert loss == pytest.approx(want_loss, rel=1e-12)
    for name in want:
        _close(grads[name], want[name], "float64")


def test_bce_refuses_an_output_outside_zero_one():
    text = "1x3x3 | conv 1x2x2 | flatten | bce"
    module = codegen.load_network(text, dtype="float64")
    X, T, params = _data(Network.parse(text), 2, "float64")
    params["0.bias"][:] = 5.0  # the raw conv output, far above 1
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        module.loss(X, T, params)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reference(Network.parse(text)).loss(X, T, params)
    before = {name: array.copy() for name, array in params.items()}
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        module.step(X, T, params, 0.1)
    for name in params:  # a refused batch changes nothing
        assert np.array_equal(params[name], before[name])


def test_load_network_reuses_the_built_module(tmp_path):
    stages_seen = []
    first = codegen.load_network(EXAMPLE, dtype="float64", out=tmp_path / "nets",
                                 progress=stages_seen.append)
    assert "compiling kernels" in stages_seen
    stages_seen.clear()
    again = codegen.load_network(EXAMPLE, dtype="float64", out=tmp_path / "nets",
                                 progress=stages_seen.append)
    assert stages_seen == [] and again.key == first.key
    assert first.net == Network.parse(EXAMPLE) and first.dtype == "float64"


def test_load_network_refuses_what_it_cannot_build():
    # Both targets generate networks (tests/test_network_cuda.py builds the cuda one); a
    # backend without a network template is refused before anything is compiled.
    with pytest.raises(RenderError, match="no generated networks"):
        codegen.load_network(EXAMPLE, backend=dataclasses.replace(OPENMP, network_template=""))
    with pytest.raises(ValueError, match="target"):
        codegen.load_network(EXAMPLE, target="opencl")
    with pytest.raises(ValueError, match="dtype"):
        codegen.load_network(EXAMPLE, dtype="float16")
    with pytest.raises(SpecError):
        codegen.load_network("1x8x8 | conv 6x3x3 | softmax-ce")
    with pytest.raises(TypeError, match="net"):
        codegen.load_network(42)


def test_stages_fuse_each_activation_into_the_layer_before_it():
    found = [(s.kind, s.activation, s.input_activation) for s in stages(Network.parse(GRID[2]))]
    assert found == [("identity", "tanh", ""), ("identity", "relu", "tanh"),
                     ("conv", "", "relu"), ("l2pool", "", ""), ("dense", "", "")]
    lenet = [(s.kind, s.activation) for s in stages(Network.parse(LENET))]
    assert lenet == [("conv", "relu"), ("maxpool", ""), ("conv", "relu"), ("maxpool", ""),
                     ("dense", "relu"), ("dense", "relu"), ("dense", "")]


@pytest.mark.parametrize("rows,tile", [(6, 6), (16, 4), (25, 5), (9, 3), (1, 1), (2, 2),
                                       (7, 6), (150, 6)])
def test_register_rows_divide_the_rows_when_they_can(rows, tile):
    assert register_rows(rows) == tile


def test_the_example_networks_source_matches_the_checked_in_files(update_golden):
    sources = render_network(lower_network(Network.parse(EXAMPLE), "float32"), OPENMP)
    differences = golden_differences("network_example_f32", sources, OPENMP, update_golden)
    assert not differences, "\n".join(differences)


def test_a_class_index_out_of_range_is_refused_and_changes_nothing(modules):
    module = modules(EXAMPLE, "float32")
    X, T, params = _data(Network.parse(EXAMPLE), 3, "float32")
    before = {name: array.copy() for name, array in params.items()}
    T[1] = 10  # the kernel sees it: the fast path hands T over unchecked
    with pytest.raises(ValueError, match=r"0\.\.9, got values from \d+ to 10"):
        module.step(X, T, params, 0.1)
    for name in params:
        assert np.array_equal(params[name], before[name])


@pytest.mark.parametrize("text", TINY)
def test_gradients_equal_the_symbolic_derivation_at_the_same_numbers(text):
    """The other oracle: derive_network's per-element chain rule, evaluated exactly (or to
    15 digits) at one sample's numbers, against the generated module in float64."""
    net = Network.parse(text)
    exprs = derive_network(net)
    x, t, params, data = _numbers(net, seed=3)
    example = evaluate(exprs, substitutions(data, arrays(net)))
    module = codegen.load_network(net, dtype="float64")
    loss, grads = module.grads(x, t, params)
    assert loss == pytest.approx(float(example.loss), rel=1e-12)
    for name, grad in grads.items():
        base = exprs.param_symbol(name)
        symbolic = np.array([float(example.grads[base[i]]) for i in np.ndindex(grad.shape)])
        np.testing.assert_allclose(grad, symbolic.reshape(grad.shape), rtol=1e-10, atol=1e-13)


def test_small_steps_run_on_the_calling_thread(modules):
    """A batch whose step is under SERIAL_STEP_FLOPS runs serially, unless set_threads says
    otherwise; the count comes from the generated module's own FLOP count."""
    from codegen.bench_network import network_flops
    from codegen.network_runtime import SERIAL_STEP_FLOPS

    module = modules(EXAMPLE, "float32")
    per_sample = network_flops(Network.parse(EXAMPLE), 1)
    assert per_sample < SERIAL_STEP_FLOPS // 4
    small = max(1, SERIAL_STEP_FLOPS // per_sample - 1)
    large = SERIAL_STEP_FLOPS // per_sample + 1
    assert module._module._threads_for(small) == 1
    assert module._module._threads_for(large) == module.threads()
    try:
        module.set_threads(3)
        assert module._module._threads_for(small) == 3
    finally:
        module.set_threads(None)
