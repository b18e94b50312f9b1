"""Generated networks for the cuda target, without a GPU: the exact ``network_cuda.cu`` that
nvcc compiles, built for the CPU with ``templates/cuda_emulation.h``
(``codegen.backends.CUDA_EMULATION``) and checked against ``derive.reference.network`` on the
grid of ``tests/test_network_module.py`` (predict, loss, gradients and the SGD step, both
dtypes, batch 1 and odd batches, a 50-step trajectory); the refusals (bce's range, class
indices) leaving the parameters alone; results independent of the launch configuration; CUDA
errors raised as CudaError; an nvcc build of the real module (no register spills), whose
calls without a GPU raise CudaError with the no-device hint; the example network's CUDA
source checked in under ``generated/``."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from golden import golden_differences
from test_cuda import _without_nvcc_macros
from test_network_module import BATCHES, EXAMPLE, GRID, _close, _data

import codegen
import codegen.network_lower
from codegen.backends import CUDA, CUDA_EMULATION, gencode_flags
from codegen.cuda import NO_DEVICE_HINT
from codegen.errors import CudaError
from codegen.network_lower import lower_network
from codegen.render import render_network
from derive import Network
from derive.reference import network as reference

NVCC = shutil.which(os.environ.get("NVCC") or "nvcc")
needs_nvcc = pytest.mark.skipif(
    NVCC is None, reason="nvcc is not installed (the CUDA toolkit; or set NVCC): the CUDA "
    "sources cannot be compiled here")
SOURCE = CUDA.network_source
DTYPES = ("float64", "float32")
#: What the grid leaves out, since its strided convolutions are all first (no grad_input):
#: the gather's stride, dilation and full padding tests (also flipped) below another stage;
#: pools whose windows skip elements (stride > window); an L2 pool with an activation fused
#: into it, whose backward needs its output before the activation.
EXTRA = [
    "1x11x10 | sigmoid | conv 3x3x3 stride 2 pad 1 dil 2 | relu "
    "| conv 2x2x3 stride 2x3 pad full convolution untied | tanh | maxpool 1 stride 2 | flatten "
    "| dense 4 | softmax-ce",
    "2x8x9 | conv 3x2x2 | relu | l2pool 2 stride 3 | tanh | avgpool 2 stride 1 | sigmoid "
    "| flatten | dense 2 | sigmoid | bce",
]
NETWORKS = GRID + EXTRA


def _rel(dtype: str) -> float:
    return 1e-12 if dtype == "float64" else 1e-5


def _cuda_sources(text: str, dtype: str, backend=CUDA):
    return render_network(lower_network(Network.parse(text), dtype, backend.name), backend)


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    """Every network of the grid and EXTRA in both dtypes as an emulated cuda module, built
    once, two at a time."""
    out = tmp_path_factory.mktemp("network_cuda")

    def build(case):
        text, dtype = case
        return case, codegen.load_network(text, "cuda", dtype, out, backend=CUDA_EMULATION)

    with ThreadPoolExecutor(2) as pool:
        return dict(pool.map(build, [(text, dtype) for text in NETWORKS for dtype in DTYPES]))


# -- the emulated kernels against the reference -------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("text", NETWORKS)
def test_every_method_matches_the_reference(emulated, text, dtype):
    net = Network.parse(text)
    module, ref = emulated[text, dtype], reference(net)
    assert module.target == "cuda" and module.emulated
    for batch in BATCHES:
        X, T, params = _data(net, batch, dtype, seed=batch)
        _close(module.predict(X, params), ref.predict(X, params), dtype)
        assert module.loss(X, T, params) == pytest.approx(ref.loss(X, T, params),
                                                          rel=_rel(dtype))
        loss, grads = module.grads(X, T, params)
        want_loss, want = ref.grads(X, T, params)
        assert loss == pytest.approx(want_loss, rel=_rel(dtype))
        assert list(grads) == list(want)
        for name in want:
            _close(grads[name], want[name], dtype)
        mine = {name: array.copy() for name, array in params.items()}
        theirs = {name: array.copy() for name, array in params.items()}
        assert module.step(X, T, mine, 0.05) == pytest.approx(ref.step(X, T, theirs, 0.05),
                                                              rel=_rel(dtype))
        for name in params:
            assert not np.array_equal(mine[name], params[name])  # it moved
            _close(mine[name], theirs[name], dtype)


@pytest.mark.parametrize("dtype,tolerance", [("float64", 1e-9), ("float32", 1e-4)])
def test_fifty_steps_follow_the_reference(emulated, dtype, tolerance):
    """Training from the same parameters: the loss of each of 50 steps, relative."""
    text = GRID[1]
    net = Network.parse(text)
    module, ref = emulated[text, dtype], reference(net)
    _, _, params = _data(net, 1, dtype)
    mine = {name: array.copy() for name, array in params.items()}
    theirs = {name: array.copy() for name, array in params.items()}
    for step in range(50):
        X, T, _ = _data(net, 16, dtype, seed=100 + step)
        got, want = module.step(X, T, mine, 0.1), ref.step(X, T, theirs, 0.1)
        assert abs(got - want) <= tolerance * abs(want), (step, got, want)


def test_a_class_index_out_of_range_is_refused_and_changes_nothing(emulated):
    module = emulated[EXAMPLE, "float32"]
    X, T, params = _data(Network.parse(EXAMPLE), 3, "float32")
    before = {name: array.copy() for name, array in params.items()}
    T[1] = 10  # the kernels see it: the fast path hands T over unchecked
    for call in (lambda: module.step(X, T, params, 0.1), lambda: module.grads(X, T, params)):
        with pytest.raises(ValueError, match=r"0\.\.9, got values from \d+ to 10"):
            call()
    for name in params:
        assert np.array_equal(params[name], before[name])


def test_bce_refuses_an_output_outside_zero_one_and_steps_nothing(tmp_path):
    text = "1x3x3 | conv 1x2x2 | flatten | bce"
    module = codegen.load_network(text, "cuda", "float64", tmp_path, backend=CUDA_EMULATION)
    X, T, params = _data(Network.parse(text), 2, "float64")
    params["0.bias"][:] = 5.0  # the raw conv output, far above 1
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        reference(Network.parse(text)).loss(X, T, params)
    before = {name: array.copy() for name, array in params.items()}
    for call in (lambda: module.loss(X, T, params), lambda: module.step(X, T, params, 0.1)):
        with pytest.raises(ValueError, match=r"\[0, 1\]"):
            call()
    for name in params:
        assert np.array_equal(params[name], before[name])


def test_results_do_not_depend_on_the_launch(tmp_path, monkeypatch, emulated):
    """Every element is one thread's fixed-order sum: 32-thread blocks in a one-block grid
    (each thread striding over many elements) give the same bits as the default launch."""
    text = EXTRA[0]
    wide = emulated[text, "float32"]
    monkeypatch.setattr(codegen.network_lower, "CUDA_BLOCK", 32)
    monkeypatch.setattr(codegen.network_lower, "CUDA_GRID_LIMIT", 1)
    narrow = codegen.load_network(text, "cuda", "float32", tmp_path, backend=CUDA_EMULATION)
    assert narrow.key != wide.key
    assert "#define BLOCK 32 " in (Path(narrow.__file__).parent / SOURCE).read_text()
    X, T, params = _data(Network.parse(text), 37, "float32", seed=5)
    np.testing.assert_array_equal(narrow.predict(X, params), wide.predict(X, params))
    (loss, grads), (want_loss, want) = narrow.grads(X, T, params), wide.grads(X, T, params)
    assert loss == want_loss
    for name in want:
        np.testing.assert_array_equal(grads[name], want[name], err_msg=name)


def test_a_failed_cuda_call_raises_cuda_error(tmp_path, monkeypatch):
    """A block CUDA refuses (2048 threads) fails in emulation as on a GPU: network_run returns
    minus the error code, and the module raises CudaError naming the method and the error."""
    monkeypatch.setattr(codegen.network_lower, "CUDA_BLOCK", 2048)
    module = codegen.load_network(EXAMPLE, "cuda", "float64", tmp_path,
                                  backend=CUDA_EMULATION)
    X, T, params = _data(Network.parse(EXAMPLE), 2, "float64")
    before = {name: array.copy() for name, array in params.items()}
    with pytest.raises(CudaError, match=r"^step: CUDA error 9 \(cudaErrorInvalidConfiguration"
                                        r"\): invalid configuration argument$") as caught:
        module.step(X, T, params, 0.1)
    assert caught.value.code == 9 and caught.value.name == "cudaErrorInvalidConfiguration"
    for name in params:
        assert np.array_equal(params[name], before[name])


def test_the_emulated_module_describes_itself(emulated):
    module = emulated[EXAMPLE, "float64"]
    assert module.target == "cuda" and module.emulated is True
    assert module.threads() == 1 and module.device_count() == 1
    assert "emulation" in module.device_name() and "emulation" in module.require_device()
    assert "GPU" in module.__doc__ and "CudaError" in module.__doc__


# -- the source: one text for nvcc and the emulation, checked in -----------------------------


def test_the_emulated_build_compiles_the_cuda_source(emulated):
    module = emulated[GRID[1], "float32"]
    folder = Path(module.__file__).parent
    for_nvcc = _cuda_sources(GRID[1], "float32").keyed(module.key)
    assert (folder / SOURCE).read_text() == for_nvcc.text(SOURCE)
    assert (folder / "network.h").read_text() == for_nvcc.text("network.h")
    assert (folder / "cuda_emulation.h").is_file()
    assert (folder / "cuda_emulation_blocks.h").is_file()
    kernels = json.loads((folder / "build.json").read_text())["commands"][0]
    assert SOURCE in kernels and "cuda_emulation.h" in kernels and "nvcc" not in kernels[0]


def test_the_kernels_share_nothing_between_threads():
    """What makes the emulation faithful, and the launches go through one macro."""
    for text in NETWORKS:
        code = re.sub(r"/\*.*?\*/", "", _cuda_sources(text, "float64").text(SOURCE), flags=re.S)
        kernels = _without_nvcc_macros(code)
        for shared in ("__syncthreads", "__shared__", "CORRGEN_SHARED",
                       "CORRGEN_LAUNCH_COOPERATIVE"):
            assert shared not in kernels, shared
        assert re.search(r"\batomic[A-Z]", code) is None and "__shfl" not in code
        assert code.count("<<<") == 1 and "#define CORRGEN_LAUNCH" in code


def test_the_example_networks_cuda_source_matches_the_checked_in_files(update_golden):
    differences = golden_differences("network_example_cuda_f32",
                                     _cuda_sources(EXAMPLE, "float32"), CUDA, update_golden)
    assert not differences, "\n".join(differences)


# -- nvcc: the real module --------------------------------------------------------------------


@pytest.fixture(scope="module")
def gpu_module(tmp_path_factory):
    """The example network's real cuda module (nvcc, every arch, static cudart): float32."""
    if NVCC is None:
        pytest.skip("nvcc is not installed (the CUDA toolkit; or set NVCC)")
    return codegen.load_network(EXAMPLE, "cuda", "float32", tmp_path_factory.mktemp("gpu"))


@needs_nvcc
def test_nvcc_compiles_the_networks_without_spills(tmp_path):
    """Every network's float64 source (the register-hungrier dtype) through nvcc for one
    architecture, two at a time, ptxas verbose: no warning, no spill."""
    flags = [f for f in CUDA.compile_flags if not (f == "-gencode" or f.startswith("arch="))]

    def compile_one(number: int) -> tuple[str, subprocess.CompletedProcess]:
        folder = tmp_path / f"net{number}"
        folder.mkdir()
        _cuda_sources(NETWORKS[number], "float64").keyed("0" * 64).write(folder)
        return NETWORKS[number], subprocess.run(
            [NVCC, *flags, *gencode_flags(("sm_80",), None), "-Xptxas", "-v", "-c", SOURCE,
             "-o", "kernels.o"], cwd=folder, capture_output=True, text=True)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(compile_one, range(len(NETWORKS))))
    for text, done in results:
        output = done.stdout + done.stderr
        assert done.returncode == 0, f"{text}: nvcc failed:\n{output}"
        assert "warning" not in output.lower(), f"{text}: nvcc warned:\n{output}"
        spills = re.findall(r"(\d+) bytes spill stores, (\d+) bytes spill loads", output)
        assert spills and all(s == ("0", "0") for s in spills), f"{text}: spills:\n{output}"


def _has_gpu(module) -> bool:
    try:
        module.require_device()
    except CudaError:
        return False
    return True


@needs_nvcc
def test_the_real_module_runs_or_raises_cuda_error_without_a_gpu(gpu_module):
    assert gpu_module.target == "cuda" and gpu_module.emulated is False
    net = Network.parse(EXAMPLE)
    X, T, params = _data(net, 3, "float32")
    if _has_gpu(gpu_module):  # a machine with a GPU: the kernels must match instead
        loss, grads = gpu_module.grads(X, T, params)
        want_loss, want = reference(net).grads(X, T, params)
        assert loss == pytest.approx(want_loss, rel=1e-5)
        for name in want:
            _close(grads[name], want[name], "float32")
        return
    before = {name: array.copy() for name, array in params.items()}
    for method, call in (("predict", lambda: gpu_module.predict(X, params)),
                         ("loss", lambda: gpu_module.loss(X, T, params)),
                         ("grads", lambda: gpu_module.grads(X, T, params)),
                         ("step", lambda: gpu_module.step(X, T, params, 0.1))):
        with pytest.raises(CudaError, match=rf"^{method}: CUDA error \d+ \(cudaError\w+\): ") \
                as caught:
            call()
        assert NO_DEVICE_HINT in str(caught.value) and caught.value.code > 0
    for name in params:
        assert np.array_equal(params[name], before[name])
    with pytest.raises(CudaError, match=r"^no CUDA device is available \(CUDA error .*"
                                        r"CUDA_EMULATION"):
        gpu_module.require_device()
