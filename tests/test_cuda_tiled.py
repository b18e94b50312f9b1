"""The CUDA ``tiled`` style: shared-memory implicit-GEMM kernels, their tiles and their model.

Without a GPU the kernels run in the cooperative emulation (``templates/cuda_emulation.h``:
the threads of a block as fibers meeting at ``__syncthreads``, every shared-memory access
checked for races, uninitialised reads and bounds), on the kernel grid of test_kernels, both
dtypes, against the NumPy reference; nvcc compiles the same sources, and S5's reports no
spills on any architecture the modules are built for.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from test_kernels import GRID

import codegen
from codegen import cuda_tiles
from codegen.backends import CUDA, CUDA_ARCHS, CUDA_EMULATION, OPENMP, gencode_flags
from codegen.bench import LAYERS
from codegen.build import toolchain
from codegen.check import check_module
from codegen.errors import RenderError
from codegen.lower import lower
from codegen.render import render
from codegen.styles import resolve_style
from derive import reference

NVCC = shutil.which(os.environ.get("NVCC") or "nvcc")
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc is not installed (the CUDA "
                                "toolkit; or set NVCC): the CUDA sources cannot be compiled")
CASES = [(name, dtype) for name in GRID for dtype in ("float64", "float32")]


@pytest.fixture(scope="session")
def tiled(tmp_path_factory):
    """Every grid layer's tiled module, emulated, both dtypes, built two at a time."""
    out = tmp_path_factory.mktemp("cuda_tiled")

    def build(case):
        name, dtype = case
        return case, codegen.load(GRID[name], "cuda", dtype, out, style="tiled",
                                  backend=CUDA_EMULATION)

    with ThreadPoolExecutor(2) as pool:
        return dict(pool.map(build, CASES))


@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_tiled_kernels_match_reference_in_the_cooperative_emulation(tiled, case, batch):
    module = tiled[case]
    assert module.emulated and module.style == "tiled"
    for result in check_module(module, batch=batch, seed=batch):
        assert result.ok, f"{result.name} mismatch for {module.spec.describe()}: {result}"


def test_results_are_deterministic(tiled):
    """The reductions sum fixed chunks in a fixed order: two runs give the same bits."""
    module = tiled[("parallel_p1", "float32")]
    V, K, b, G = reference.random_inputs(module.spec, 9, "float32", seed=3)
    first = [module.grad_weight(V, G), module.forward(V, K, b), module.grad_input(K, G)]
    again = [module.grad_weight(V, G), module.forward(V, K, b), module.grad_input(K, G)]
    for x, y in zip(first, again, strict=True):
        assert np.array_equal(x, y)


def test_auto_is_tiled_for_cuda_layers_too_large_to_unroll():
    big = GRID["parallel_p1"]
    assert resolve_style(big, "auto", gpu=True) == "tiled"
    assert resolve_style(big, "auto") == "loops"
    assert resolve_style(GRID["seed"], "auto", gpu=True) == "unrolled"
    with pytest.raises(RenderError, match="style='tiled' is for the CUDA target"):
        lower(big, OPENMP, "float64", "tiled")


def test_the_source_stages_tiles_and_keeps_grad_bias_as_loops():
    text = render(lower(GRID["s2_p2_d2_conv"], CUDA, "float32", "tiled"), CUDA).text(
        "conv2d_cuda.cu")
    for kernel in ("forward_tiled", "grad_input_tiled", "grad_weight_tiled",
                   "grad_bias_partial"):
        assert f"static __global__ void {kernel}(" in text
    assert text.count("CORRGEN_SHARED(real, ") == 6 and text.count("__syncthreads();") == 6
    assert "KH - 1 - i" in text  # convolution mode: the kernel flipped
    code = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    assert re.search(r"\batomic[A-Z]", code) is None


@pytest.mark.parametrize("layer", sorted(LAYERS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_tiles_fit_every_architecture_and_are_the_models_best(layer, dtype):
    spec = LAYERS[layer][0]
    itemsize = np.dtype(dtype).itemsize
    allowed = cuda_tiles.candidates(itemsize)
    for name in ("forward", "grad_input", "grad_weight"):
        tile = cuda_tiles.choose(spec, name, itemsize)
        assert tile.shared_bytes(itemsize) <= cuda_tiles.MAX_SHARED_BYTES
        assert tile.registers(itemsize) <= cuda_tiles.MAX_REGISTERS
        assert tile.threads <= 1024 and tile.tile_m % tile.regs_m == 0
        for gpu in cuda_tiles.GPUS:
            assert cuda_tiles.occupancy(tile, itemsize, gpu) >= 1
        # brute force over every allowed tile: none is predicted faster
        best = min(cuda_tiles.predicted_us(spec, name, t, itemsize, cuda_tiles.MODEL_GPU)
                   for t in allowed)
        chosen = cuda_tiles.predicted_us(spec, name, tile, itemsize, cuda_tiles.MODEL_GPU)
        assert chosen <= best + 1e-3


def test_model_is_a_roofline():
    """Never faster than the FMA rate or the DRAM bandwidth allow, and slower for a larger
    batch."""
    spec = LAYERS["S5"][0]
    for itemsize in (4, 8):
        for name in ("forward", "grad_input", "grad_weight"):
            tile = cuda_tiles.choose(spec, name, itemsize)
            for gpu in cuda_tiles.GPUS:
                p = cuda_tiles.product(spec, name, 32, itemsize)
                rate = gpu.fp64_gflops if itemsize == 8 else gpu.fp32_gflops
                us = cuda_tiles.predicted_us(spec, name, tile, itemsize, gpu, 32)
                assert us >= p.flops / (rate * 1e3)
                assert us >= p.dram_bytes / (gpu.dram_gbs * 1e3)
                assert cuda_tiles.predicted_us(spec, name, tile, itemsize, gpu, 64) > us


def test_print_ir_shows_each_tile_and_its_modelled_time():
    text = str(lower(LAYERS["S5"][0], CUDA, "float32", "tiled"))
    for name in ("forward", "grad_input", "grad_weight"):
        section = text.split(f"conv2d_{name}:")[1]
        assert "per thread" in section.split("\n")[2]
        for gpu in cuda_tiles.GPUS:
            assert f"model, {gpu.name} ({gpu.arch})" in section


@needs_nvcc
def test_tiled_grid_compiles_with_nvcc(tmp_path):
    """Warnings count as failures; float64, and float32 for the layers without a bias."""
    chain = toolchain(CUDA)
    flags = [f for f in CUDA.compile_flags if not (f == "-gencode" or f.startswith("arch="))]
    folders = []
    for name, dtype in CASES:
        if dtype == "float32" and GRID[name].bias:
            continue
        folder = tmp_path / f"{name}_{dtype}"
        folder.mkdir()
        render(lower(GRID[name], CUDA, dtype, "tiled"), CUDA).keyed("0" * 64).write(folder)
        folders.append(folder)

    def compile_one(folder):
        command = [*chain.compiler, *flags, *gencode_flags(("sm_80",), None), "-c",
                   "conv2d_cuda.cu", "-o", "kernels.o"]
        return folder, subprocess.run(command, cwd=folder, capture_output=True, text=True)

    with ThreadPoolExecutor(2) as pool:
        for folder, done in pool.map(compile_one, folders):
            assert done.returncode == 0, f"{folder.name}: nvcc failed:\n{done.stderr}"
            assert "warning" not in (done.stdout + done.stderr).lower(), folder.name


@needs_nvcc
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_s5_compiles_without_spills_on_every_architecture(tmp_path, dtype):
    """ptxas's report (-Xptxas -v) for S5's tiled kernels on every architecture the modules
    carry: no spill stores or loads, and no more registers than the tile choice allowed."""
    chain = toolchain(CUDA)
    flags = [f for f in CUDA.compile_flags if not (f == "-gencode" or f.startswith("arch="))]
    render(lower(LAYERS["S5"][0], CUDA, dtype, "tiled"), CUDA).keyed("0" * 64).write(tmp_path)
    command = [*chain.compiler, *flags, *gencode_flags(CUDA_ARCHS, None), "-Xptxas", "-v",
               "-c", "conv2d_cuda.cu", "-o", "kernels.o"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    report = done.stdout + done.stderr
    tiled = re.findall(r"Compiling entry function '_Z\d+(\w+_tiled)\w*' for '(sm_\d+)'.*?"
                       r"(\d+) bytes spill stores, (\d+) bytes spill loads.*?Used (\d+) "
                       r"registers", report, flags=re.S)
    assert {(kernel, arch) for kernel, arch, *_ in tiled} == {
        (f"{name}_tiled", arch) for name in ("forward", "grad_input", "grad_weight")
        for arch in CUDA_ARCHS}
    for kernel, arch, stores, loads, registers in tiled:
        assert (stores, loads) == ("0", "0"), f"{kernel} on {arch} spills"
        assert int(registers) <= cuda_tiles.MAX_REGISTERS, f"{kernel} on {arch}: {registers}"


def test_docs_table_is_the_models_current_output():
    from pathlib import Path

    text = (Path(__file__).resolve().parent.parent / "docs" / "cuda-tiles.md").read_text()
    table = "\n".join(cuda_tiles.model_table(LAYERS))
    assert table in text, "docs/cuda-tiles.md is stale: regenerate its table (see the page)"
