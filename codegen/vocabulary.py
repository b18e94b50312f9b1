"""The words every part of corrgen shares: the dtypes it generates and the passes of a layer.

One record per dtype and one per pass; the generator, the run-time front end, the checks,
the benchmarks and the command line read them from here, so adding a dtype (float16) or a
pass means adding one record. Imports only the standard library and NumPy: a built module
imports this through ``codegen.runtime`` where SymPy and Jinja are not installed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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


@dataclass(frozen=True)
class Pass:
    """One pass of a layer: a function of every generated module and the kernel it runs.

    Attributes:
        name: the module's function (``grad_weight``).
        wrt: what the gradient is taken with respect to (``input``, ``weight``, ``bias``);
            None for ``forward``.
        reads: the arrays it takes, in the order the module's function and the NumPy
            reference (``derive.reference``) take them; ``b`` is None without a bias.
        writes: the array it returns.
        accumulates: whether it sums over the batch (its output has no batch axis).
        needs_bias: whether it exists only for layers with a bias.
    """

    name: str
    wrt: str | None
    reads: tuple[str, ...]
    writes: str
    accumulates: bool
    needs_bias: bool

    @property
    def entry(self) -> str:
        """The C entry point of its kernel (``conv2d_grad_weight``)."""
        return f"conv2d_{self.name}"

    def inputs(self, bias: bool) -> tuple[str, ...]:
        """The arrays its kernel reads for a layer with or without a bias."""
        return self.reads if bias else tuple(r for r in self.reads if r != "b")

    def runs(self, bias: bool) -> bool:
        """Whether a layer with or without a bias has this pass's kernel."""
        return bias or not self.needs_bias


#: Every pass, in the order of the module's functions; ``backward`` returns the gradients
#: (every pass with a ``wrt``) in this order.
PASS_TABLE: tuple[Pass, ...] = (
    Pass("forward", None, ("V", "K", "b"), "Z", accumulates=False, needs_bias=False),
    Pass("grad_input", "input", ("K", "G"), "dV", accumulates=False, needs_bias=False),
    Pass("grad_weight", "weight", ("V", "G"), "dK", accumulates=True, needs_bias=False),
    Pass("grad_bias", "bias", ("G",), "db", accumulates=True, needs_bias=True),
)

#: The passes by name.
PASS: dict[str, Pass] = {p.name: p for p in PASS_TABLE}
#: Their names, in order.
PASS_NAMES: tuple[str, ...] = tuple(PASS)
#: The passes ``backward`` runs, in the order of its results ``(dV, dK, db)``.
GRADIENTS: tuple[Pass, ...] = tuple(p for p in PASS_TABLE if p.wrt is not None)
