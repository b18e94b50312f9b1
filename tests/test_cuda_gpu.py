"""The CUDA modules on a real GPU, against the NumPy reference: the kernel grid of
test_kernels in every CUDA style and both dtypes, the benchmark layers as a user builds them
(every architecture), the device entry points on PyTorch and CuPy arrays, and the networks'
predict, loss, gradients and SGD step.

Skipped where the CUDA driver reports no device, as on CI, whose machines have none; the same
kernel sources run there in the CPU emulation (test_cuda, test_cuda_tiled, test_network_cuda).
On a machine with a GPU: ``pytest tests/test_cuda_gpu.py -n 0`` (its fixtures build on every
core themselves). The grid is compiled for the present GPU's architecture alone, to keep the
builds short; the benchmark layers with the full architecture list.
"""

from __future__ import annotations

import ctypes
import dataclasses
import os
import shutil
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from test_kernels import GRID, UNROLLED
from test_network_cuda import NETWORKS
from test_network_module import BATCHES, _close, _data

import codegen
from codegen.backends import CUDA, gencode_flags
from codegen.bench import LAYERS
from codegen.check import compare
from codegen.vocabulary import PASS_TABLE
from derive import Network, reference
from derive.reference import network as network_reference


def _device_architecture() -> str | None:
    """``sm_XY`` of CUDA device 0, as the driver reports it; None without a driver or device."""
    try:
        driver = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return None
    count, major, minor = ctypes.c_int(0), ctypes.c_int(0), ctypes.c_int(0)
    if driver.cuInit(0) != 0 or driver.cuDeviceGetCount(ctypes.byref(count)) != 0 \
            or count.value == 0:
        return None
    # CU_DEVICE_ATTRIBUTE_COMPUTE_CAPABILITY_MAJOR (75) and _MINOR (76) of device 0
    if driver.cuDeviceGetAttribute(ctypes.byref(major), 75, 0) != 0 \
            or driver.cuDeviceGetAttribute(ctypes.byref(minor), 76, 0) != 0:
        return None
    return f"sm_{major.value}{minor.value}"


ARCH = _device_architecture()
NVCC = shutil.which(os.environ.get("NVCC") or "nvcc")
pytestmark = pytest.mark.skipif(
    ARCH is None or NVCC is None,
    reason="no CUDA GPU (the driver reports no device)" if ARCH is None else "nvcc is not "
    "installed (the CUDA toolkit; or set NVCC)")

#: The grid's cases: each layer in the loops and tiled styles, both dtypes; unrolled where
#: small (float64, and the seed in float32 too).
GRID_CASES = ([(name, style, dtype) for name in GRID for style in ("loops", "tiled")
               for dtype in ("float64", "float32")]
              + [(name, "unrolled", "float64") for name in UNROLLED]
              + [("seed", "unrolled", "float32")])
#: The benchmark layers in the styles a user can ask for, both dtypes (S1 is small enough to
#: unroll, which auto picks for it).
LAYER_CASES = [(layer, style, dtype) for layer in LAYERS
               for style in ("loops", "tiled", *(("unrolled",) if layer == "S1" else ()))
               for dtype in ("float32", "float64")]


def _build_all(jobs, out, backend=None):
    """``{case: module}``, built on every core (a build is mostly nvcc's time)."""
    def build(job):
        case, spec, kwargs = job
        return case, codegen.load(spec, "cuda", out=out, backend=backend, **kwargs)

    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        return dict(pool.map(build, jobs))


@pytest.fixture(scope="session")
def grid(tmp_path_factory):
    this_gpu = dataclasses.replace(CUDA, compile_flags=(
        *(f for f in CUDA.compile_flags if not (f == "-gencode" or f.startswith("arch="))),
        *gencode_flags((ARCH,), None)))
    jobs = [(case, GRID[case[0]], {"style": case[1], "dtype": case[2]}) for case in GRID_CASES]
    return _build_all(jobs, tmp_path_factory.mktemp("gpu_grid"), this_gpu)


@pytest.fixture(scope="session")
def layers(tmp_path_factory):
    jobs = [(case, LAYERS[case[0]][0], {"style": case[1], "dtype": case[2]})
            for case in LAYER_CASES]
    return _build_all(jobs, tmp_path_factory.mktemp("gpu_layers"))


@pytest.fixture(scope="session")
def networks(tmp_path_factory):
    out = tmp_path_factory.mktemp("gpu_networks")

    def build(case):
        return case, codegen.load_network(case[0], "cuda", case[1], out)

    cases = [(text, dtype) for text in NETWORKS for dtype in ("float64", "float32")]
    with ThreadPoolExecutor(os.cpu_count() or 2) as pool:
        return dict(pool.map(build, cases))


#: The reference's passes on the inputs of (spec, dtype, batch, seed): values and the sums of
#: absolute terms (the tolerance's scale), computed once for every module that shares them.
_oracles: dict = {}


def _oracle(spec, dtype, batch, seed):
    key = (spec, dtype, batch, seed)
    if key not in _oracles:
        arrays = dict(zip("VKbG", reference.random_inputs(spec, batch, dtype, seed)))
        wide = {n: None if a is None else a.astype(np.float64) for n, a in arrays.items()}
        absolute = {n: None if a is None else np.abs(a) for n, a in wide.items()}
        want = {p.name: (getattr(reference, p.name)(spec, *(wide[r] for r in p.reads)),
                         getattr(reference, p.name)(spec, *(absolute[r] for r in p.reads)))
                for p in PASS_TABLE if p.runs(spec.bias)}
        _oracles[key] = (arrays, want)
    return _oracles[key]


def _check(module, batch, seed, results=None):
    """Every pass of ``module`` against the reference; ``results``: the passes' outputs
    (default: the module's NumPy functions, which copy to the GPU and back)."""
    arrays, want = _oracle(module.spec, module.dtype, batch, seed)
    if results is None:
        results = {p.name: getattr(module, p.name)(*(arrays[r] for r in p.reads))
                   for p in PASS_TABLE if p.name in want}
    assert set(results) == set(want)
    for name, got in results.items():
        check = compare(name, np.asarray(got), *want[name], module.dtype)
        assert check.ok, f"{module.spec.describe()} {module.dtype} {module.style}: {check}"


@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("case", GRID_CASES, ids=["-".join(c) for c in GRID_CASES])
def test_grid_kernels_match_the_reference_on_the_gpu(grid, case, batch):
    module = grid[case]
    assert module.target == "cuda" and not module.emulated and module.style == case[1]
    _check(module, batch, seed=batch)


@pytest.mark.parametrize("case", LAYER_CASES, ids=["-".join(c) for c in LAYER_CASES])
def test_benchmark_layers_match_the_reference_at_their_batch(layers, case):
    module = layers[case]
    assert not module.emulated and module.style == case[1]
    _check(module, LAYERS[case[0]][1], seed=1)


@pytest.mark.parametrize("case", LAYER_CASES, ids=["-".join(c) for c in LAYER_CASES])
def test_backward_gives_each_pass_on_the_gpu(layers, case):
    module = layers[case]
    V, K, b, G = _oracle(module.spec, module.dtype, 3, 2)[0].values()
    together = module.backward(V, K, G)
    separate = (module.grad_input(K, G), module.grad_weight(V, G), module.grad_bias(G))
    for got, want in zip(together, separate):
        np.testing.assert_array_equal(got, want)


def _torch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("PyTorch without CUDA")
    return torch


@pytest.mark.parametrize("case", [("S3", "tiled", "float32"), ("S4", "loops", "float64"),
                                  ("S1", "unrolled", "float32")])
def test_device_functions_on_pytorch_tensors_on_another_stream(layers, case):
    """The device entry points on CUDA tensors, queued on a stream of PyTorch's, outputs
    allocated as tensors and into ``out``: the reference's values."""
    torch = _torch_cuda()
    module = layers[case]
    batch = 5
    V, K, b, G = _oracle(module.spec, module.dtype, batch, 4)[0].values()
    Vt, Kt, bt, Gt = (torch.from_numpy(x).cuda() for x in (V, K, b, G))
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        got = {"forward": module.device.forward(Vt, Kt, bt, stream=stream),
               "grad_input": module.device.grad_input(Kt, Gt, stream=stream),
               "grad_weight": module.device.grad_weight(Vt, Gt, stream=stream)}
        out = torch.full_like(bt, float("nan"))
        got["grad_bias"] = module.device.grad_bias(Gt, out=out, stream=stream)
    stream.synchronize()
    assert got["grad_bias"] is out and all(isinstance(t, torch.Tensor) for t in got.values())
    _check(module, batch, 4, {name: t.cpu().numpy() for name, t in got.items()})


def test_device_functions_on_cupy_arrays(layers):
    cupy = pytest.importorskip("cupy")
    try:
        cupy.cuda.runtime.getDeviceCount()
    except cupy.cuda.runtime.CUDARuntimeError:
        pytest.skip("CuPy sees no CUDA device")
    module = layers[("S2", "tiled", "float64")]
    batch = 6
    V, K, b, G = _oracle(module.spec, module.dtype, batch, 5)[0].values()
    Vc, Kc, bc, Gc = (cupy.asarray(x) for x in (V, K, b, G))
    got = {"forward": module.device.forward(Vc, Kc, bc),
           "grad_input": module.device.grad_input(Kc, Gc),
           "grad_weight": module.device.grad_weight(Vc, Gc),
           "grad_bias": module.device.grad_bias(Gc)}
    assert all(isinstance(a, cupy.ndarray) for a in got.values())
    _check(module, batch, 5, {name: cupy.asnumpy(a) for name, a in got.items()})


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("text", NETWORKS)
def test_networks_match_the_reference_on_the_gpu(networks, text, dtype):
    module, net = networks[text, dtype], Network.parse(text)
    ref = network_reference(net)
    assert module.target == "cuda" and not module.emulated
    rel = 1e-12 if dtype == "float64" else 1e-5
    for batch in BATCHES:
        X, T, params = _data(net, batch, dtype, seed=batch)
        _close(module.predict(X, params), ref.predict(X, params), dtype)
        loss, grads = module.grads(X, T, params)
        want_loss, want = ref.grads(X, T, params)
        assert loss == pytest.approx(want_loss, rel=rel)
        for name in want:
            _close(grads[name], want[name], dtype)
        mine = {name: array.copy() for name, array in params.items()}
        theirs = {name: array.copy() for name, array in params.items()}
        assert module.step(X, T, mine, 0.05) == pytest.approx(ref.step(X, T, theirs, 0.05),
                                                              rel=rel)
        for name in params:
            assert not np.array_equal(mine[name], params[name])  # it moved
            _close(mine[name], theirs[name], dtype)
