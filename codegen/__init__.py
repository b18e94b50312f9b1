"""corrgen's code generator: kernels from a layer's derivation, compiled and cached.

>>> import codegen                                                    # doctest: +SKIP
>>> mod = codegen.load(LayerSpec(input=(1, 3, 3), kernel=(1, 1, 2, 2)))  # doctest: +SKIP
>>> mod.forward(V, K, b)                                              # doctest: +SKIP

The pipeline, one stage per module::

    LayerSpec -> lower.lower -> KernelIR -> render.render -> SourceFiles
              -> build.compile_cached -> folder in the cache -> loader.import_built -> module

Targets: ``openmp`` (C99 + OpenMP) and ``cuda`` (nvcc; ``codegen.cuda`` is the front end of
its modules, ``backends.CUDA_EMULATION`` runs the same kernel source on the CPU).

A built module imports ``codegen.runtime`` (and ``codegen.cuda``), which need NumPy and cffi
only; so ``load`` (``codegen.loader``) and what it pulls in (SymPy, Jinja) are imported on
first use.
"""

from __future__ import annotations

import importlib
from typing import Any

from .backends import BACKENDS, Backend
from .errors import BuildError, CudaError, LoadError, OutputError, RenderError

__all__ = ["BACKENDS", "Backend", "BuildError", "CudaError", "LoadError", "OutputError",
           "RenderError", "load", "load_network"]


def __getattr__(name: str) -> Any:
    if name in ("load", "load_network"):
        found = getattr(importlib.import_module(".loader", __name__), name)
        globals()[name] = found
        return found
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
