"""The words every part of corrgen shares: the dtypes it generates and (from
``derive.passes``) the passes of a layer.

One record per dtype and one per pass; the generator, the run-time front end, the checks,
the benchmarks and the command line read them from here, so adding a dtype (float16) or a
pass means adding one record. Imports only the standard library and NumPy: a built module
imports this through ``codegen.runtime`` where SymPy and Jinja are not installed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from derive.passes import GRADIENTS, PASS, PASS_NAMES, PASS_TABLE, Pass

if TYPE_CHECKING:
    from derive.spec import LayerSpec

__all__ = ["DTYPES", "DTYPE_NAMES", "GRADIENTS", "PASS", "PASS_NAMES", "PASS_TABLE",
           "VECTOR_BYTES", "Dtype", "Pass", "flops"]

#: Bytes in one SIMD vector of the CPU kernels (AVX2): what ``Dtype.lanes`` counts in.
VECTOR_BYTES = 32


@dataclass(frozen=True)
class Dtype:
    """One element type of the generated kernels.

    Attributes:
        name: NumPy's name, the public spelling (``float32``).
        ctype: the C type of the kernels (``float``).
        itemsize: bytes per element.
        suffix: the short name ending module names (``f32``).
        tolerance: the largest error allowed against the float64 reference, relative to the
            sum of the absolute terms of an element (``codegen.check``).
    """

    name: str
    ctype: str
    itemsize: int
    suffix: str
    tolerance: float

    @property
    def numpy(self) -> np.dtype:
        """The NumPy dtype."""
        return np.dtype(self.name)

    @property
    def lanes(self) -> int:
        """Elements per ``VECTOR_BYTES``-byte vector."""
        return VECTOR_BYTES // self.itemsize

    def __str__(self) -> str:
        return self.name


#: Every dtype, by name, narrowest first (the order the command line lists them in).
DTYPES: dict[str, Dtype] = {d.name: d for d in (
    Dtype("float32", "float", 4, "f32", 1e-5),
    Dtype("float64", "double", 8, "f64", 1e-12),
)}
#: Their names, in order.
DTYPE_NAMES: tuple[str, ...] = tuple(DTYPES)


def flops(spec: LayerSpec, batch: int, name: str) -> int:
    """Floating-point operations of one pass (BENCH.md's count)."""
    o, ho, wo = spec.output_shape
    _, c, kh, kw = spec.kernel
    outputs = batch * o * ho * wo
    return outputs if name == "grad_bias" else 2 * outputs * c * kh * kw
