"""The machine's multiply-add peak, measured: what ``corrgen bench``'s "% peak" divides by.

A loop of independent vector multiply-add chains (16 chains of the widest vectors the
compiler targets with the OpenMP backend's flags: 512 bits with AVX-512, else 256), one
copy per OpenMP thread, compiled once per call of ``fma_peak`` into a temporary folder and
loaded with ctypes. Nothing but registers is touched, so the figure is the arithmetic
ceiling of the cores the kernels run on, with as many threads as they use.
"""

from __future__ import annotations

import ctypes
import subprocess
import tempfile
import time
from pathlib import Path

from .backends import OPENMP
from .build import toolchain
from .vocabulary import DTYPE_NAMES, DTYPES

SOURCE = r"""
#include <omp.h>
/* CHAINS chains must cover the multiply-add latency on every pipe (4 cycles x 2 pipes: 8)
 * and fit the vector registers with x and y: 16 of 32 with AVX-512, 10 of 16 below it
 * (with 16 chains an AVX2 CPU spills them, and measured half its peak: 114 GFLOP/s float32
 * on 2 Zen 3 cores, against 221 with 10). */
#if defined(__AVX512F__)
#define VECTOR_BYTES 64
#define CHAINS 16
#else
#define VECTOR_BYTES 32
#define CHAINS 10
#endif

/* x and y are read through volatile, not written as constants: chain 1 starts at 1, a fixed
 * point of a * x + y (1 * 0.999 + 0.001 rounds to 1 in both dtypes), and with constants GCC
 * saw it and dropped that chain's multiply-adds, so the loop did CHAINS - 1 of the CHAINS it
 * counts and the peak read 16/15 of the cores' with AVX-512, 10/9 with AVX2. */
static volatile double multiplier = 0.999, addend = 0.001;

/* CHAINS independent chains a = a * x + y per iteration and thread; returns the reals per
 * vector times CHAINS (the multiply-adds of one iteration), and the threads that ran in
 * *threads. */
#define PEAK_LOOP(real, name)                                                               \
int name(long iterations, int *threads, double *sink)                                    \
{                                                                                          \
    typedef real vec __attribute__((vector_size(VECTOR_BYTES)));                          \
    double total = 0;                                                                      \
    int team = 1;                                                                          \
    _Pragma("omp parallel reduction(+:total)")                                             \
    {                                                                                      \
        _Pragma("omp single")                                                              \
        team = omp_get_num_threads();                                                      \
        const vec x = (vec){0} + (real)multiplier, y = (vec){0} + (real)addend;           \
        vec a[CHAINS];                                                                     \
        for (int c = 0; c < CHAINS; ++c)                                                   \
            a[c] = (vec){0} + (real)c;                                                     \
        for (long i = 0; i < iterations; ++i) {                                            \
            _Pragma("GCC unroll 16")                                                       \
            for (int c = 0; c < CHAINS; ++c)                                               \
                a[c] = a[c] * x + y;                                                       \
        }                                                                                  \
        for (int c = 0; c < CHAINS; ++c)                                                   \
            for (int lane = 0; lane < (int)(VECTOR_BYTES / sizeof(real)); ++lane)          \
                total += a[c][lane];                                                       \
    }                                                                                      \
    *threads = team;                                                                       \
    *sink = total;                                                                         \
    return (int)(CHAINS * VECTOR_BYTES / sizeof(real));                                    \
}

""" + "".join(f"PEAK_LOOP({d.ctype}, peak_{d.name})\n" for d in DTYPES.values())


def _library(folder: Path) -> ctypes.CDLL:
    chain = toolchain(OPENMP)
    source, library = folder / "peak.c", folder / "peak.so"
    source.write_text(SOURCE)
    command = [*chain.compiler, *OPENMP.compile_flags, "-shared",
               str(source), "-o", str(library), *OPENMP.link_flags]
    subprocess.run(command, check=True, capture_output=True)
    return ctypes.CDLL(str(library))


def _rate(loop: ctypes._CFuncPtr, iterations: int) -> tuple[float, float]:
    """GFLOP/s of one call of a peak loop, and the seconds it took."""
    threads, sink = ctypes.c_int(), ctypes.c_double()
    start = time.perf_counter()
    fmas = loop(iterations, ctypes.byref(threads), ctypes.byref(sink))
    elapsed = time.perf_counter() - start
    return 2 * fmas * iterations * threads.value / elapsed / 1e9, elapsed


def fma_peak(dtypes: str | tuple[str, ...] = DTYPE_NAMES, seconds: float = 0.2,
             repeats: int = 5) -> dict[str, float]:
    """GFLOP/s of the multiply-add loop per dtype (a multiply-add counts 2): the best of
    ``repeats`` timings of about ``seconds`` each, with the process's OpenMP threads.
    ``dtypes`` may also be one dtype name."""
    dtypes = (dtypes,) if isinstance(dtypes, str) else tuple(dtypes)
    unknown = [d for d in dtypes if d not in DTYPE_NAMES]
    if unknown:
        raise ValueError(f"dtypes: each must be one of {', '.join(DTYPE_NAMES)}; "
                         f"got {', '.join(map(repr, unknown))}")
    with tempfile.TemporaryDirectory(prefix="corrgen-peak-") as tmp:
        library = _library(Path(tmp))
        loops, iterations = {}, {}
        for dtype in dtypes:
            loop = loops[dtype] = getattr(library, f"peak_{dtype}")
            loop.argtypes = [ctypes.c_long, ctypes.POINTER(ctypes.c_int),
                             ctypes.POINTER(ctypes.c_double)]
            _, elapsed = _rate(loop, 100_000)  # warm-up, and the size of one timing
            iterations[dtype] = max(1, int(100_000 * seconds / elapsed))
        # the dtypes take turns, so a core that is busy for a while slows all of them alike
        peaks = dict.fromkeys(dtypes, 0.0)
        for _ in range(repeats):
            for dtype in dtypes:
                peaks[dtype] = max(peaks[dtype], _rate(loops[dtype], iterations[dtype])[0])
        return peaks
