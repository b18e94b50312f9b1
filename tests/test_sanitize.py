"""The sanitizer job: every kernel variant built with AddressSanitizer and UBSan, every pass
run and compared with the reference, and proof that the sanitizers do fire.

Sanitized modules (``CORRGEN_SANITIZE=1``, ``codegen.backends.sanitized``) load only into a
Python whose first library is the AddressSanitizer runtime, so each check runs in a fresh
process started with ``LD_PRELOAD`` of libasan and ``ASAN_OPTIONS=detect_leaks=0`` (Python's
own allocations would be reported as leaks at exit). With the runtime preloaded, NumPy's
arrays are allocated by it as well, so a kernel reading or writing one element outside any
array is caught, and so is undefined behaviour such as a signed overflow in an index.
"""

from __future__ import annotations

import dataclasses
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_kernels import GRID

import codegen
from codegen.backends import OPENMP, SANITIZE_ENV, SANITIZE_FLAGS, backend_for, sanitized
from codegen.build import cache_key, toolchain
from codegen.errors import LoadError
from codegen.lower import lower
from codegen.render import render
from derive import LayerSpec

ROOT = Path(__file__).resolve().parent.parent
JOB = Path(__file__).resolve().parent / "sanitize_job.py"
#: What a sanitizer prints when it finds something.
REPORTS = ("ERROR: AddressSanitizer", "runtime error:")

#: Every layer of the kernel grid (test_kernels.GRID: plain loops, channels in lanes, the 1x1
#: matrix products, grad_input read in place, paired stride-2 column phases, the parallel
#: path, ...) in the loops style, float64 and float32, the seed unrolled in both, and two
#: layers of test_winograd.SPECS with every pass by Winograd's algorithm (odd
#: result sizes; unequal padding in convolution mode), then with its products in 512-bit
#: vectors (one layer per dtype), test_winograd.SAMPLE_SPEC in tasks of whole samples (in
#: groups of one channel panel), and four layers with grad_weight as a matrix product over
#: the output's pixels (gather_window reads at every edge), and a 1x1 layer's forward and
#: grad_input by transposed tiles (the sample read in place, to its last pixel), and three
#: forwards by row-reusing tiles that leave out the frame's rows (test_tune.FRAMED). The whole
#: grid builds in about a minute on 2 cores (-O1 -g1), so no layer is left out.
CASES = ([f"{name}:loops:{dtype}" for name in GRID for dtype in ("float64", "float32")]
         + ["seed:unrolled:float64", "seed:unrolled:float32"]
         + [f"{name}:loops:{dtype}:winograd" for name in ("odd_sizes", "unequal_padding")
            for dtype in ("float64", "float32")]
         + ["odd_sizes:loops:float32:winograd-wide", "unequal_padding:loops:float64:winograd-wide"]
         + [f"sample:loops:{dtype}:winograd-samples" for dtype in ("float64", "float32")]
         + [f"{name}:loops:{dtype}:window" for name, dtype in (
             ("lanes_s2x3_d2x1_conv", "float32"), ("same_odd_d2x1", "float64"),
             ("s3x2_full_d2", "float32"), ("full_nobias", "float64"))]
         + [f"pointwise_row_groups:loops:{dtype}:transposed" for dtype in ("float64", "float32")]
         + [f"framed{k}:loops:{dtype}:frame"
            for k, dtype in ((0, "float64"), (1, "float32"), (2, "float64"))])


def _runtime(library: str) -> str | None:
    """The path of a sanitizer runtime of the kernels' compiler, None when it is missing
    (``-print-file-name`` then echoes the bare name)."""
    compiler = shlex.split(os.environ.get("CC", "") or "cc")
    if shutil.which(compiler[0]) is None:
        return None
    done = subprocess.run([*compiler, f"-print-file-name={library}"], capture_output=True,
                          text=True)
    path = done.stdout.strip()
    return path if done.returncode == 0 and os.path.isabs(path) and os.path.exists(path) \
        else None


@pytest.fixture(scope="module")
def sanitizer_env() -> dict[str, str]:
    """The environment of a sanitized process: the runtime preloaded, CORRGEN_SANITIZE=1."""
    libasan = _runtime("libasan.so")
    if libasan is None or _runtime("libubsan.so") is None:
        pytest.skip("the compiler's AddressSanitizer/UBSan runtimes are not installed "
                    "(`cc -print-file-name=libasan.so` names no file): on Debian, install "
                    "the gcc's libgcc-<version>-dev (libasan8, libubsan1); .ci/run does")
    return {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{ROOT / 'tests'}",
            "LD_PRELOAD": libasan, "ASAN_OPTIONS": FILLED_ASAN_OPTIONS,
            "UBSAN_OPTIONS": "print_stacktrace=1", SANITIZE_ENV: "1"}


#: No leak reports (Python's own allocations would be reported at exit), and every block
#: malloc returns filled with AddressSanitizer's byte 0xbe, not only its first 4 KB (the
#: default ``max_malloc_fill_size``): a kernel that reads scratch it has not written then
#: computes garbage, which the job's comparison with the reference catches. Fresh pages from
#: the system are zero, so without it such a read could pass.
FILLED_ASAN_OPTIONS = "detect_leaks=0:max_malloc_fill_size=2147483647"


def no_report(done: subprocess.CompletedProcess) -> None:
    assert done.returncode == 0, (done.returncode, done.stdout[-3000:], done.stderr[-6000:])
    for report in REPORTS:
        assert report not in done.stderr, done.stderr[-6000:]


def test_every_kernel_variant_is_clean_under_the_sanitizers(sanitizer_env, tmp_path):
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(JOB), str(tmp_path), *CASES],
                          capture_output=True, text=True, env=sanitizer_env, timeout=600)
    no_report(done)
    lines = done.stdout.splitlines()
    assert sum(line.endswith(", ok") for line in lines) == len(CASES), done.stdout
    print(f"{lines[-1]} ({time.perf_counter() - start:.1f} s in all)")
    # What ran was instrumented: every module links the sanitizer runtimes.
    manifests = list(tmp_path.glob("conv2d_*/build.json"))
    assert len(manifests) == len(CASES)
    for manifest in manifests:
        assert all(flag in manifest.read_text() for flag in SANITIZE_FLAGS), manifest


#: What a sanitized process needs to build a module from edited sources: ``build(spec, edit,
#: name)`` renders the spec's OpenMP loops in float64, applies ``edit`` to the kernel source's
#: text, and builds it into ``sys.argv[1]``.
EDITED_MODULE = """
import os, sys
import numpy as np
os.environ.pop("LD_PRELOAD", None)
from codegen.backends import backend_for
from codegen.build import compile_cached
from codegen.loader import import_built
from codegen.lower import lower
from codegen.render import SourceFiles, render
from derive import LayerSpec, reference

def build(spec, edit, name):
    backend = backend_for("openmp")
    assert backend.sanitize
    sources = render(lower(spec, backend, "float64", "loops"), backend)
    text = edit(sources.text(backend.source))
    sources = SourceFiles(sources.name, sources.kernel_source, tuple(
        (file, text if file == backend.source else body) for file, body in sources.files))
    return import_built(compile_cached(sources, backend, sys.argv[1], name=name))
"""

#: A module whose kernels break on purpose: grad_bias writes one element past its output db
#: (NumPy's array), grad_input overflows a signed int. Built by a sanitized process, then
#: called; ``sys.argv[2]`` picks the pass.
BROKEN = EDITED_MODULE + """
past = "return grad_bias(n, (const real *)G, (real *)db);"
overflow = "return grad_input(n, (const real *)K, (const real *)G, (real *)dV);"

def edit(text):
    assert past in text and overflow in text
    text = text.replace(past, "((real *)db)[O] = 0; /* one element past db */\\n    " + past)
    return text.replace(overflow, "volatile int big = 2147483647; big += (int)n;\\n    " + overflow)

spec = LayerSpec(input=(1, 3, 3), kernel=(1, 1, 2, 2))
module = build(spec, edit, "broken")
V, K, b, G = reference.random_inputs(spec, batch=2)
print("calling", sys.argv[2], flush=True)
getattr(module, sys.argv[2])(*{"grad_bias": (G,), "grad_input": (K, G)}[sys.argv[2]])
print("no report")
"""


#: A module whose lane grad_weight zeroes only the first 4 KB of its scratch's input planes
#: (8 planes of at least 18 x 18 doubles), whose padding it reads as zero. With the default
#: ASAN_OPTIONS, which fill only a block's first 4 KB, its result matched the reference.
UNZEROED = EDITED_MODULE + """
zeroing = "memset(scratch, 0, sizeof(real) * (C * SRC_PLANE));"

def edit(text):
    assert "grad_weight_block" in text and text.count(zeroing) == 1
    return text.replace(zeroing, "memset(scratch, 0, 4096); /* the first 4 KB only */")

# 5x5: one block holds every tap, so the rows of the zero frame above and below are read (a
# 3x3 layer's blocks of one kernel row each skip them, and its border pixels the columns)
spec = LayerSpec(input=(8, 16, 16), kernel=(16, 8, 5, 5), padding=(2, 2))
module = build(spec, edit, "unzeroed")
V, K, b, G = reference.random_inputs(spec, batch=2)
same = np.allclose(module.grad_weight(V, G), reference.grad_weight(spec, V, G), atol=1e-12)
print("matches" if same else "differs")
"""


def test_the_filled_allocations_expose_an_unzeroed_scratch(sanitizer_env, tmp_path_factory):
    """A lane grad_weight that zeroes only part of its scratch reads garbage padding under the
    job's ASAN_OPTIONS, and its result differs from the reference."""
    out = tmp_path_factory.getbasetemp() / "unzeroed-kernels"
    done = subprocess.run([sys.executable, "-c", UNZEROED, str(out)], capture_output=True,
                          text=True, env=sanitizer_env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.strip().endswith("differs"), (done.stdout, done.stderr[-3000:])


@pytest.mark.parametrize("kernel, report", [
    ("grad_bias", "ERROR: AddressSanitizer: heap-buffer-overflow"),
    ("grad_input", "runtime error: signed integer overflow"),
])
def test_the_sanitizers_fire_on_a_broken_kernel(sanitizer_env, tmp_path_factory, kernel,
                                                report):
    """The job above cannot pass vacuously: the same build and the same preloaded runtime
    catch a write one element past a NumPy array, and a signed overflow."""
    out = tmp_path_factory.getbasetemp() / "broken-kernels"
    done = subprocess.run([sys.executable, "-c", BROKEN, str(out), kernel], capture_output=True,
                          text=True, env=sanitizer_env, timeout=300)
    assert f"calling {kernel}" in done.stdout, done.stderr[-3000:]
    assert "no report" not in done.stdout
    assert done.returncode != 0 and report in done.stderr, (done.returncode,
                                                            done.stderr[-3000:])
    assert "conv2d_openmp.c" in done.stderr  # the report points into the kernel source


# -- the build option ----------------------------------------------------------------------------


def test_corrgen_sanitize_selects_the_sanitized_backend(monkeypatch):
    monkeypatch.delenv(SANITIZE_ENV, raising=False)
    assert backend_for("openmp") == OPENMP
    for value in ("0", "", "no"):
        monkeypatch.setenv(SANITIZE_ENV, value)
        assert backend_for("openmp") == OPENMP
    monkeypatch.setenv(SANITIZE_ENV, "1")
    backend = backend_for("openmp")
    assert backend == sanitized(OPENMP) and backend.sanitize
    for flags in (backend.compile_flags, backend.glue_flags, backend.link_flags):
        assert set(SANITIZE_FLAGS) <= set(flags)
    assert "-O1" in backend.compile_flags and "-O3" not in backend.compile_flags
    assert "-march=native" in backend.compile_flags and "-fopenmp" in backend.link_flags
    assert backend_for("cuda").compile_flags == codegen.backends.CUDA.compile_flags
    with pytest.raises(ValueError, match="only the openmp kernels"):
        sanitized(codegen.backends.CUDA)


def test_a_sanitized_module_has_its_own_cache_key():
    spec = LayerSpec(input=(1, 4, 4), kernel=(1, 1, 2, 2))
    chain = toolchain(OPENMP)
    sources = render(lower(spec, OPENMP, "float64", "loops"), OPENMP)
    plain = cache_key(sources, OPENMP, chain)
    assert cache_key(sources, sanitized(OPENMP), chain) != plain
    # the glue flags alone change it too
    glue_only = dataclasses.replace(OPENMP, glue_flags=("-g1",))
    assert cache_key(sources, glue_only, chain) != plain


def test_a_sanitized_module_is_not_loaded_without_the_runtime(tmp_path, monkeypatch):
    """Without the runtime preloaded, loading would end the process: one LoadError instead,
    and the plain module of the same layer is built and loaded beside it."""
    spec = LayerSpec(input=(1, 4, 4), kernel=(1, 1, 2, 2))
    monkeypatch.setenv(SANITIZE_ENV, "1")
    with pytest.raises(LoadError, match="LD_PRELOAD=.*libasan"):
        codegen.load(spec, out=tmp_path, style="loops")
    monkeypatch.delenv(SANITIZE_ENV)
    plain = codegen.load(spec, out=tmp_path, style="loops")
    folders = sorted(p.name for p in tmp_path.glob("conv2d_*"))
    assert len(folders) == 2 and plain.__file__.split("/")[-2] in folders
