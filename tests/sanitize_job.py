"""The sanitizer job: kernels built with AddressSanitizer and UBSan, run on every pass.

Run by ``tests/test_sanitize.py`` in a fresh Python started with the sanitizer runtime loaded
first (``LD_PRELOAD`` of libasan, ``ASAN_OPTIONS=detect_leaks=0``) and ``CORRGEN_SANITIZE=1``:

    python tests/sanitize_job.py OUT CASE...

where each CASE is ``layer:style:dtype`` with a layer of ``test_kernels.GRID``, or
``layer:loops:dtype:winograd`` with one of ``test_winograd.SPECS`` (every pass by
Winograd's algorithm, as tuning may choose it), or ``...:winograd-wide`` (the same with its
products' tiles of 512-bit vectors, as tuning may choose on a full-width AVX-512 CPU; planned
for AVX-512 whatever this CPU is, whose compiler splits the vectors it lacks), or
``sample:loops:dtype:winograd-samples`` (``test_winograd.SAMPLE_SPEC``'s forward and
grad_input in tasks of whole samples, in groups of one channel panel), or
``layer:loops:dtype:transposed`` (a 1x1 layer's forward and grad_input by transposed tiles,
their pixels read from the sample in place), or ``framedK:loops:dtype:frame`` (forward of
``test_tune.FRAMED[K]`` by a row-reusing tile whose rows of tiles at the frame leave out its
rows). It builds the
cases two at a time into OUT, then runs forward, grad_input, grad_weight, grad_bias and
backward on batches of 1 and 3 (and, for a 1x1 layer, one large enough for packed weights),
into new arrays and into ``out=`` buffers, and compares each result with the NumPy reference
(``codegen.check.compare``: 1e-12 in float64, 1e-5 in float32). A wrong result exits with
status 1; a sanitizer report ends the process on the spot with its own non-zero status and
the report on stderr. Prints one line per module and the build and run times.
"""

from __future__ import annotations

import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from test_kernels import GRID
from test_tune import FRAMED, _build_with
from test_winograd import SAMPLE_SPEC, SPECS

import codegen
from codegen.backends import SANITIZE_ENV, backend_for
from codegen.blocking import winograd
from codegen.blocking.common import MIN_TASKS
from codegen.blocking.layer import (
    PASSES,
    SAMPLE_WINOGRAD_CHOICE,
    WIDE_WINOGRAD_CHOICE,
    WINOGRAD_CHOICE,
)
from codegen.check import compare
from codegen.loader import _build_or_reuse, sanitizer_runtime_loaded
from codegen.lower import lower
from codegen.machine import AVX512
from codegen.render import render
from derive import reference

BATCHES = (1, 3)


def batches(case: tuple[str, ...], module) -> tuple[int, ...]:
    """``BATCHES``, and for a 1x1 layer also a batch large enough that its forward and
    grad_input read packed weights (at 1 and 3 they read them in place)."""
    if not case[0].startswith("pointwise"):
        return BATCHES
    return (*BATCHES, max(MIN_TASKS, 2 * module.threads()))


def results(module, batch: int) -> list:
    """Every pass of ``module`` on one random batch, new outputs and ``out=`` buffers."""
    spec, dtype = module.spec, module.dtype
    V, K, b, G = reference.random_inputs(spec, batch, dtype, seed=batch)
    V64, K64, G64 = (a.astype(np.float64) for a in (V, K, G))
    b64 = None if b is None else b.astype(np.float64)
    absb = None if b is None else np.abs(b64)
    want = {
        "forward": (reference.forward(spec, V64, K64, b64),
                    reference.forward(spec, abs(V64), abs(K64), absb)),
        "grad_input": (reference.grad_input(spec, K64, G64),
                       reference.grad_input(spec, abs(K64), abs(G64))),
        "grad_weight": (reference.grad_weight(spec, V64, G64),
                        reference.grad_weight(spec, abs(V64), abs(G64))),
        "grad_bias": (reference.grad_bias(spec, G64), reference.grad_bias(spec, abs(G64))),
    }
    got: list[tuple[str, np.ndarray | None]] = []
    Z = np.empty(want["forward"][0].shape, dtype)
    dV, dK = np.empty_like(V), np.empty_like(K)
    db = np.empty(spec.kernel[0], dtype) if spec.bias else None
    got += [("forward", module.forward(V, K, b)),
            ("forward", module.forward(V, K, b, out=Z)),
            ("grad_input", module.grad_input(K, G)),
            ("grad_input", module.grad_input(K, G, out=dV)),
            ("grad_weight", module.grad_weight(V, G)),
            ("grad_weight", module.grad_weight(V, G, out=dK))]
    if spec.bias:
        got += [("grad_bias", module.grad_bias(G)), ("grad_bias", module.grad_bias(G, out=db))]
    for out in (None, (np.empty_like(dV), np.empty_like(dK),
                       np.empty_like(db) if spec.bias else None)):
        grads = module.backward(V, K, G, out=out)
        got += [("grad_input", grads[0]), ("grad_weight", grads[1])]
        if spec.bias:
            got.append(("grad_bias", grads[2]))
        elif grads[2] is not None:
            raise AssertionError("backward: db is not None for a layer without bias")
    return [compare(name, array, *want[name], dtype) for name, array in got]


def _build_wide_winograd(spec, dtype: str, out: Path):
    """``spec``'s module with every pass by Winograd's algorithm in 512-bit products, planned
    for AVX-512 (the request says so, so that it is not taken for this CPU's own)."""
    backend = backend_for("openmp")
    choices = dict.fromkeys(PASSES, WIDE_WINOGRAD_CHOICE)
    request = {"spec": spec.to_dict(), "style": "loops", "dtype": dtype, "choices": choices,
               "machine": AVX512.isa}
    return _build_or_reuse(
        request, lambda: render(lower(spec, backend, dtype, "loops", machine=AVX512,
                                      choices=choices), backend),
        backend, out, None, None)


def main(argv: list[str]) -> int:
    if not sanitizer_runtime_loaded() or not backend_for("openmp").sanitize:
        print(f"run with {SANITIZE_ENV}=1 and the AddressSanitizer runtime preloaded",
              file=sys.stderr)
        return 2
    # The runtime is in this process now; the compilers this process starts need none.
    os.environ.pop("LD_PRELOAD", None)
    out, cases = argv[0], [tuple(case.split(":")) for case in argv[1:]]

    def build(case: tuple[str, ...]):
        layer, style, dtype, *algorithm = case
        if algorithm == ["winograd"]:
            return _build_with(SPECS[layer], dtype, dict.fromkeys(PASSES, WINOGRAD_CHOICE),
                               Path(out))
        if algorithm == ["winograd-wide"]:
            return _build_wide_winograd(SPECS[layer], dtype, Path(out))
        if algorithm == ["winograd-samples"]:
            winograd.GROUP_BYTES = 1  # groups of one panel: a run's every cut is taken
            return _build_with(SAMPLE_SPEC, dtype, dict.fromkeys(
                ("forward", "grad_input"), SAMPLE_WINOGRAD_CHOICE), Path(out))
        if algorithm == ["window"]:
            return _build_with(GRID[layer], dtype, {"grad_weight": "tile=4x2"}, Path(out))
        if algorithm == ["frame"]:
            spec, choice = FRAMED[int(layer.removeprefix("framed"))]
            return _build_with(spec, dtype, {"forward": choice}, Path(out))
        if algorithm == ["transposed"]:
            tile = "tile=8x3t" if dtype == "float32" else "tile=4x6t"
            return _build_with(GRID[layer], dtype, dict.fromkeys(("forward", "grad_input"), tile),
                               Path(out))
        return codegen.load(GRID[layer], dtype=dtype, out=out, style=style)

    start = time.perf_counter()
    with ThreadPoolExecutor(2) as pool:
        modules = list(pool.map(build, cases))
    built = time.perf_counter()
    failed = 0
    for case, module in zip(cases, modules):
        checks = [check for batch in batches(case, module) for check in results(module, batch)]
        bad = [str(check) for check in checks if not check.ok]
        failed += bool(bad)
        print(f"{':'.join(case)}: {len(checks)} results, "
              + ("ok" if not bad else "MISMATCH " + "; ".join(bad)))
    print(f"built {len(modules)} sanitized modules in {built - start:.1f} s, "
          f"ran them in {time.perf_counter() - built:.1f} s")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
