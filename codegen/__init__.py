"""corrgen's code generator: kernels from a layer's derivation, compiled and cached.

>>> import codegen                                                    # doctest: +SKIP
>>> mod = codegen.load(LayerSpec(input=(1, 3, 3), kernel=(1, 1, 2, 2)))  # doctest: +SKIP
>>> mod.forward(V, K, b)                                              # doctest: +SKIP

The pipeline, one stage per module::

    LayerSpec -> lower.lower -> KernelIR -> render.render -> SourceFiles
              -> build.compile_cached -> folder in generated/ -> load.import_built -> module

Targets: ``openmp`` (C99 + OpenMP) and ``cuda`` (nvcc; ``codegen.cuda`` is the front end of
its modules, ``backends.CUDA_EMULATION`` runs the same kernel source on the CPU).
"""

from .backends import BACKENDS, Backend
from .errors import BuildError, CudaError, LoadError, RenderError
from .load import load

__all__ = ["BACKENDS", "Backend", "BuildError", "CudaError", "LoadError", "RenderError", "load"]
