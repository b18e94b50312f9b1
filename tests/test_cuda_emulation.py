"""The cooperative launches of the CUDA emulation (templates/cuda_emulation_blocks.h).

``tests/cuda_emulation/kernels.cu`` holds block-cooperative kernels written to the interface
the generated CUDA sources use (``CORRGEN_SHARED``, ``__syncthreads()``,
``CORRGEN_LAUNCH_COOPERATIVE``): correct ones (a tiled matrix product, a reduction tree, a
tiled transpose, a block scan, chunked suffix sums, a reversal), each of which also has a
broken form (a barrier left out, a bad index, a divergent barrier). ``driver.cu`` runs one
case per process, reading its inputs from files NumPy wrote and writing its outputs. The
programs are compiled exactly as the emulated modules are (``-x c++ -std=c++17 -include
cuda_emulation.h``), plus -Werror, so the headers stay free of warnings; with AddressSanitizer
for the global-memory checks; and, where nvcc is installed, by nvcc with the nvcc-side macros
of the CUDA templates, which proves the interface is CUDA.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from codegen.backends import SANITIZE_FLAGS, SANITIZE_OPTIMIZE

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = ROOT / "templates"
SOURCES = Path(__file__).resolve().parent / "cuda_emulation"
KERNELS = (SOURCES / "kernels.cu").read_text()
DRIVER = (SOURCES / "driver.cu").read_text()
LANES = 32  # kernels.cu's LANES
SHAPE = (19, 23, 13)  # the matrix product's m, k, n: no multiple of the tile

#: The phrase of each kind of report; a report has exactly one.
KINDS = {
    "read-after-write": "read-after-write race on shared",
    "write-after-read": "write-after-read race on shared",
    "write-after-write": "write-after-write race on shared",
    "uninitialised": "read of uninitialised shared",
    "returned": "returned without reaching it",
    "two barriers": "waits at the one at",
    "index": "index outside",
    "sequential": "under CORRGEN_LAUNCH,",
}


def _compiler() -> list[str]:
    compiler = shlex.split(os.environ.get("CXX", "") or "c++")
    if shutil.which(compiler[0]) is None:
        pytest.skip(f"no C++ compiler ({compiler[0]}) for the emulated kernels")
    return compiler


def _build(folder: Path, flags: tuple[str, ...]) -> Path:
    """driver.cu compiled in ``folder`` (relative names, so reports say kernels.cu:LINE)."""
    folder.mkdir(parents=True, exist_ok=True)
    for source in ("kernels.cu", "driver.cu"):
        shutil.copy(SOURCES / source, folder / source)
    command = [*_compiler(), "-x", "c++", "-std=c++17", *flags, "-Wall", "-Wextra", "-Werror",
               "-pthread", "-include", str(TEMPLATES / "cuda_emulation.h"), f"-I{TEMPLATES}",
               "driver.cu", "-o", "driver"]
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True)
    assert done.returncode == 0, (command, done.stderr[-4000:])
    return folder / "driver"


def _inputs(folder: Path) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    m, k, n = SHAPE
    arrays = {"a": rng.standard_normal((m, k)), "b": rng.standard_normal((k, n)),
              "shape": np.array(SHAPE, dtype=np.int32), "x": rng.standard_normal(1000),
              "m": rng.standard_normal((21, 30)).astype(np.float32),
              "s": rng.standard_normal(3 * LANES)}
    for name, array in arrays.items():
        array.tofile(folder / f"{name}.bin")
    return arrays


@pytest.fixture(scope="module")
def emulated(tmp_path_factory) -> Path:
    return _build(tmp_path_factory.mktemp("emulated"), ("-O1",))


class Run:
    """One case of the driver: its printed launches and reports, and its output files."""

    def __init__(self, program: Path, case: str, folder: Path, env: dict | None = None):
        folder.mkdir(parents=True, exist_ok=True)
        self.inputs = _inputs(folder)
        self.folder = folder
        self.done = subprocess.run([str(program), case, str(folder)], capture_output=True,
                                   text=True, env=env, timeout=120)
        self.status = dict(re.findall(r"^launch (.+?): (\w+)$", self.done.stdout, re.M))
        self.reports = dict(re.findall(r"^report (.+?): (.*)$", self.done.stdout, re.M))

    def output(self, name: str, dtype=np.float64) -> np.ndarray:
        return np.fromfile(self.folder / f"{name}.out", dtype=dtype)


def _lines(fragment: str, function: str, text: str = KERNELS) -> list[int]:
    """The 1-based lines holding ``fragment`` in the definition of ``function``."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines)
                 if re.match(rf"(static |__global__ )?(void|int) {function}\(", line))
    end = lines.index("}", start)
    return [i + 1 for i in range(start, end) if fragment in lines[i]]


def _line(fragment: str, function: str, text: str = KERNELS) -> int:
    return _lines(fragment, function, text)[0]


def _launch_line(case: str, kernel: str) -> str:
    """Where ``case`` launches ``kernel``, as the reports name it."""
    if kernel == "matmul":
        return f"kernels.cu:{_line('CORRGEN_LAUNCH_COOPERATIVE(matmul', 'launch_matmul')}"
    branch = f'which == "{case}"'
    return f"driver.cu:{_line(branch, 'broken', DRIVER) + 1}"


def _reference_block_sums(x: np.ndarray, blocks: int) -> np.ndarray:
    owner = (np.arange(x.size) // LANES) % blocks
    return np.array([x[owner == b].sum() for b in range(blocks)])


def _reference_suffix_sums(x: np.ndarray, blocks: int, chunks: int) -> np.ndarray:
    chunk = x[:blocks * chunks * LANES].reshape(blocks, chunks, LANES)
    suffix = np.cumsum(chunk[:, :, ::-1], axis=2)[:, :, ::-1]
    return suffix.sum(axis=1).ravel()


def _check_correct_outputs(run: Run) -> None:
    a, b, x, s = (run.inputs[name] for name in ("a", "b", "x", "s"))
    np.testing.assert_allclose(run.output("matmul").reshape(SHAPE[0], SHAPE[2]), a @ b,
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(run.output("block_sum"), _reference_block_sums(x, 5),
                               rtol=1e-12)
    # A transpose moves values: exactly equal.
    assert np.array_equal(run.output("transpose", np.float32).reshape(30, 21),
                          run.inputs["m"].T)
    np.testing.assert_allclose(run.output("scan"),
                               np.cumsum(s.reshape(3, LANES), axis=1).ravel(), rtol=1e-12)
    np.testing.assert_allclose(run.output("suffix_sums"), _reference_suffix_sums(x, 2, 3),
                               rtol=1e-12)
    assert np.array_equal(run.output("reverse"), s.reshape(3, LANES)[:, ::-1].ravel())
    x = s[:LANES]
    u = np.roll(x, -1)
    formed = u * (2 + u) * u + x * (2 + u) * u + np.where(x > u, x, 0.0) + u + LANES
    np.testing.assert_allclose(run.output("forms"), formed, rtol=1e-12)


# -- correct kernels -------------------------------------------------------------------------


def test_correct_cooperative_kernels_compute_what_numpy_does(emulated, tmp_path):
    run = Run(emulated, "correct", tmp_path)
    assert run.done.returncode == 0, run.done.stderr
    launches = ["matmul", "block_sum", "transpose", "scan", "suffix_sums", "reverse", "forms"]
    assert run.status == {name: "cudaSuccess" for name in launches}, run.done.stdout
    # With no launch stopped yet, the error string is CUDA's own and there is no report.
    assert "before any failure: unspecified launch failure|\n" in run.done.stdout
    _check_correct_outputs(run)


def test_host_threads_run_cooperative_launches_at_once(emulated, tmp_path):
    run = Run(emulated, "host_threads", tmp_path)
    assert run.status == {"host_threads": "cudaSuccess"}, run.done.stdout + run.done.stderr
    product = run.inputs["a"] @ run.inputs["b"]
    for name in ("first", "second"):
        np.testing.assert_allclose(run.output(name).reshape(product.shape), product,
                                   rtol=1e-12, atol=1e-12)


def test_launch_configurations_cuda_refuses_run_nothing(emulated, tmp_path):
    run = Run(emulated, "configuration", tmp_path)
    assert run.status == {"2048 threads": "cudaErrorInvalidConfiguration",
                          "no blocks": "cudaErrorInvalidConfiguration"}
    assert not run.output("ran", np.int32).any()


# -- each mistake, and its report ------------------------------------------------------------

#: case: (kernel, kind, fragments the report holds). Thread and block are threadIdx and
#: blockIdx; lines are looked up in kernels.cu.
MISTAKES = {
    # A thread reads the slot the thread before it stored, with no barrier between.
    "scan_store_barrier": ("scan", "read-after-write", lambda: [
        "block (0,0,0), thread (1,0,0)", "shared tile[0]",
        f"read at kernels.cu:{_line('acc += tile[j]', 'scan')}",
        f"written by thread (0,0,0) at line {_line('tile[threadIdx.x] =', 'scan')}"]),
    # The matrix product without the barrier after the loads: the first thread read as[1]
    # before thread (1,0,0) stored it.
    "matmul_load_barrier": ("matmul", "write-after-read", lambda: [
        "block (0,0,0), thread (1,0,0)", "shared as[1]",
        f"written at kernels.cu:{_line('as[ty * TILE + tx] =', 'matmul')}",
        f"read by thread (0,0,0) at line {_line('fma(', 'matmul')}, before any thread wrote"]),
    # ... without the barrier after the reads: thread (0,0,0) already stored the next tile.
    "matmul_trailing_barrier": ("matmul", "read-after-write", lambda: [
        "block (0,0,0), thread (1,0,0)", "shared as[0]", "barrier phase 2",
        f"read at kernels.cu:{_line('fma(', 'matmul')}",
        f"written by thread (0,0,0) at line {_line('as[ty * TILE + tx] =', 'matmul')}"]),
    # The next chunk's store overwrites a slot an earlier thread read in this chunk.
    "suffix_trailing_barrier": ("suffix_sums", "write-after-read", lambda: [
        "block (0,0,0), thread (1,0,0)", "shared tile[1]", "barrier phase 2",
        f"written at kernels.cu:{_line('tile[t] =', 'suffix_sums')}",
        f"read by thread (0,0,0) at line {_line('acc += tile[j]', 'suffix_sums')}"]),
    "pairs": ("pairs", "write-after-write", lambda: [
        "block (0,0,0), thread (1,0,0)", "shared tile[0]",
        f"written at kernels.cu:{_line('tile[threadIdx.x / 2] =', 'pairs')}",
        "by thread (0,0,0)"]),
    # 24 threads store part[0..23]; the tree's first step reads part[t + 16].
    "tree_of_fewer_threads": ("block_sum", "uninitialised", lambda: [
        "block (0,0,0), thread (8,0,0)", "shared part[24]",
        f"at kernels.cu:{_line('part[t] += part[t + s]', 'block_sum')}",
        "no thread of this block has written it"]),
    # 40 items in blocks of 32: in block 1, threads 8.. return before the barrier.
    "early_return": ("scan", "returned", lambda: [
        "block (1,0,0), thread (0,0,0)",
        f"waits at __syncthreads() at kernels.cu:{_line('__syncthreads()', 'scan')}",
        "thread (8,0,0) returned without reaching it (8 of 32 threads wait)"]),
    "split_barrier": ("split_barrier", "two barriers", lambda: [
        "block (0,0,0), thread (0,0,0)",
        f"waits at __syncthreads() at kernels.cu:{_line('__syncthreads()', 'split_barrier')}",
        f"thread (16,0,0) waits at the one at kernels.cu:"
        f"{_lines('__syncthreads()', 'split_barrier')[1]}"]),
    "one_past_the_end": ("reverse", "index", lambda: [
        "block (0,0,0), thread (0,0,0)", "shared tile[32] read",
        f"at kernels.cu:{_line('out[i] = tile[', 'reverse')}", "index outside 0..31",
        f"tile declared at kernels.cu:{_line('CORRGEN_SHARED', 'reverse')}"]),
    # The correct scan, launched as if its threads shared nothing.
    "sequential_shared": ("scan", "sequential", lambda: [
        "block (0,0,0), thread (0,0,0)", "write of shared tile[0]",
        f"at kernels.cu:{_line('tile[threadIdx.x] =', 'scan')} under CORRGEN_LAUNCH",
        "CORRGEN_LAUNCH_COOPERATIVE"]),
    "sequential_barrier": ("barrier_only", "sequential", lambda: [
        "block (0,0,0), thread (0,0,0)",
        f"__syncthreads() at kernels.cu:{_line('__syncthreads()', 'barrier_only')} under "
        f"CORRGEN_LAUNCH"]),
}


@pytest.mark.parametrize("case", sorted(MISTAKES))
def test_each_mistake_stops_the_launch_with_its_own_report(emulated, tmp_path, case):
    kernel, kind, fragments = MISTAKES[case]
    run = Run(emulated, case, tmp_path)
    assert run.done.returncode == 0, run.done.stderr
    assert run.status == {case: "cudaErrorLaunchFailure"}, run.done.stdout
    report = run.reports[case]
    assert report.startswith(f"kernel {kernel} (launched at {_launch_line(case, kernel)}), "), \
        report
    found = [name for name, phrase in KINDS.items() if phrase in report]
    assert found == [kind], report
    for fragment in fragments():
        assert fragment in report, (fragment, report)


def test_a_stopped_launch_runs_no_further_thread_or_block(emulated, tmp_path):
    # Thread 0 of block 0 reads tile[32] after the barrier: no thread gets past it, and the
    # blocks after it never start.
    run = Run(emulated, "one_past_the_end", tmp_path / "index")
    assert not run.output("ran", np.int32).any()
    assert (run.output("out") == -1).all()
    # The barrier of block 1 stops the launch: block 0 finished, block 1 stored nothing.
    run = Run(emulated, "early_return", tmp_path / "return")
    x, out = run.inputs["x"], run.output("out")
    np.testing.assert_allclose(out[:LANES], np.cumsum(x[:LANES]), rtol=1e-12)
    assert (out[LANES:] == -1).all()
    # Under CORRGEN_LAUNCH, the first thread's store to shared memory is refused: it finishes
    # (its shared reads NaN), and no thread after it runs.
    run = Run(emulated, "sequential_shared", tmp_path / "sequential")
    out = run.output("out")
    assert np.isnan(out[0]) and (out[1:] == -1).all()


def test_a_launch_after_a_stopped_one_runs_normally(emulated, tmp_path):
    run = Run(emulated, "recover", tmp_path)
    assert run.status == {"pairs": "cudaErrorLaunchFailure", "matmul": "cudaSuccess"}
    np.testing.assert_allclose(run.output("matmul").reshape(SHAPE[0], SHAPE[2]),
                               run.inputs["a"] @ run.inputs["b"], rtol=1e-12, atol=1e-12)


# -- global memory: AddressSanitizer ---------------------------------------------------------


def _runtime(library: str) -> str | None:
    done = subprocess.run([*_compiler(), f"-print-file-name={library}"], capture_output=True,
                          text=True)
    path = done.stdout.strip()
    return path if os.path.isabs(path) and os.path.exists(path) else None


@pytest.fixture(scope="module")
def sanitized(tmp_path_factory) -> Path:
    if _runtime("libasan.so") is None or _runtime("libubsan.so") is None:
        pytest.skip("the compiler's AddressSanitizer/UBSan runtimes are not installed "
                    "(`c++ -print-file-name=libasan.so` names no file): on Debian, install "
                    "the gcc's libgcc-<version>-dev (libasan8, libubsan1)")
    # The project's sanitizer flags, less UBSan's own bounds and object-size checks, which
    # would report the overflows below before AddressSanitizer does: finding those is its job.
    return _build(tmp_path_factory.mktemp("sanitized"),
                  (*SANITIZE_OPTIMIZE, *SANITIZE_FLAGS, "-fno-sanitize=bounds,object-size"))


def _sanitizer_env() -> dict[str, str]:
    return {**os.environ, "ASAN_OPTIONS": "detect_leaks=0"}


#: case: (AddressSanitizer's finding, the kernel, the line's fragment in it).
OVERFLOWS = {
    "overflow": ("heap-buffer-overflow", "shifted", "in[i + 1]"),
    # A thread's own array, after a barrier: the fiber's stack keeps its redzones.
    "local_overflow": ("stack-buffer-overflow", "local_past_the_end", "local[n]"),
}


@pytest.mark.parametrize("case", sorted(OVERFLOWS))
def test_asan_reports_a_kernels_read_past_an_array(sanitized, tmp_path, case):
    finding, kernel, fragment = OVERFLOWS[case]
    run = Run(sanitized, case, tmp_path, env=_sanitizer_env())
    assert run.done.returncode != 0
    err = run.done.stderr
    assert f"ERROR: AddressSanitizer: {finding}" in err, err[-3000:]
    # The first frame is the kernel's line, run in a fiber of the cooperative launch.
    frame = re.search(r"#0 0x[0-9a-f]+ in (\w+)\(.*? (\S+)$", err, re.M)
    assert frame is not None, err[-3000:]
    assert frame.group(1) == kernel
    assert frame.group(2).endswith(f"kernels.cu:{_line(fragment, kernel)}")
    assert "corrgen_fiber_main" in err


@pytest.mark.parametrize("case", ["correct", "recover", "one_past_the_end"])
def test_cooperative_launches_run_clean_under_the_sanitizers(sanitized, tmp_path, case):
    """Fibers, stopped launches and the stacks they leave behind: no sanitizer report."""
    run = Run(sanitized, case, tmp_path, env=_sanitizer_env())
    assert run.done.returncode == 0, run.done.stderr[-3000:]
    for report in ("ERROR: AddressSanitizer", "runtime error:"):
        assert report not in run.done.stderr, run.done.stderr[-3000:]
    if case == "correct":
        _check_correct_outputs(run)
    else:
        assert "cudaErrorLaunchFailure" in run.status.values()


# -- the same source is CUDA -----------------------------------------------------------------


def _nvcc_block(template: str) -> str:
    """The template's ``#ifndef CORRGEN_CUDA_EMULATION`` block: the nvcc-side macros."""
    text = (TEMPLATES / "cuda" / template).read_text()
    found = re.search(r"^#ifndef CORRGEN_CUDA_EMULATION\n.*?^#endif\n", text, re.S | re.M)
    assert found is not None, template
    return found.group(0)


def test_the_layer_and_network_templates_define_the_same_macros():
    block = _nvcc_block("module.cu.jinja")
    assert block == _nvcc_block("network.cu.jinja")
    for macro in ("CORRGEN_LAUNCH", "CORRGEN_LAUNCH_COOPERATIVE", "CORRGEN_SHARED"):
        assert f"#define {macro}(" in block


def test_nvcc_compiles_the_kernels_with_the_templates_macros(tmp_path):
    nvcc = shutil.which(os.environ.get("NVCC", "") or "nvcc")
    if nvcc is None:
        pytest.skip("nvcc is not on PATH")
    shutil.copy(SOURCES / "kernels.cu", tmp_path / "kernels.cu")
    (tmp_path / "cuda.cu").write_text(_nvcc_block("module.cu.jinja")
                                      + '#include "kernels.cu"\n')
    command = [nvcc, "-c", "-arch=sm_80", "-std=c++17", "cuda.cu", "-o", "cuda.o"]
    done = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]
    assert (tmp_path / "cuda.o").stat().st_size > 0
