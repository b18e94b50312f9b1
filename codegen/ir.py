"""KernelIR: everything a template sees, as plain strings and integers.

Decisions live in Python (``codegen.lower``, ``codegen.blocking``); templates only loop over
these records and the plan records of ``codegen.blocking.records``. No SymPy object reaches a
template: unrolled kernels arrive as printed C assignments. ``str(ir)`` is a readable dump of
the whole record, naming each pass's plan and why it was chosen.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # plain records too, but their module imports SymPy's printer
    from .printers import LoopNest, NestLayout


@dataclass(frozen=True)
class Constant:
    """A compile-time integer: ``#define NAME value`` with a comment."""

    name: str
    value: int
    doc: str


@dataclass(frozen=True)
class Table:
    """A compile-time integer table: ``static const int NAME[len] = {...}``."""

    name: str
    values: tuple[int, ...]
    doc: str

    @property
    def c_values(self) -> tuple[int, ...]:
        """The values as C initialises them: C has no empty arrays, so ``()`` is ``(0,)``."""
        return self.values or (0,)


@dataclass(frozen=True)
class Buffer:
    """One array argument of a kernel, C-contiguous, in the module's dtype.

    Attributes:
        name: the C and Python name (``V``, ``K``, ``b``, ``G``, ``Z``, ``dV``, ``dK``, ``db``).
        shape: the shape as text for comments and docstrings, e.g. ``(N, 1, 3, 3)``.
        batched: whether the leading axis is the run-time batch ``N``.
        sample_size: elements per sample (the whole array when not batched).
        output: whether the kernel writes it.
        dims: the extents after the batch axis (the whole shape when not batched).
    """

    name: str
    shape: str
    batched: bool
    sample_size: int
    output: bool = False
    dims: tuple[int, ...] = ()

    @property
    def ndim(self) -> int:
        """The number of axes of the array, the batch axis included."""
        return len(self.dims) + self.batched


@dataclass(frozen=True)
class Assignment:
    """``lhs = rhs;`` (or ``lhs += rhs;`` when accumulating), both sides printed C."""

    lhs: str
    rhs: str


@dataclass(frozen=True)
class Kernel:
    """One pass: its C entry point, arguments and (unrolled style) its statements.

    Attributes:
        name: the pass, ``forward``, ``grad_input``, ``grad_weight`` or ``grad_bias``.
        entry: the exported C function, e.g. ``conv2d_forward``.
        formula: the index form it computes, for the comment above it.
        inputs: the arrays it reads, in argument order.
        output: the array it writes (last argument).
        flops_per_sample: multiply-adds times two per sample, used to pick the serial path.
        schedule: the OpenMP schedule of the sweeps' and matrix products' task loops,
            ``static`` or ``dynamic`` (``codegen.lower.DYNAMIC_TASK_FLOPS``).
        temporaries: unrolled style: the common subexpressions, in order.
        results: unrolled style: one assignment per output element.
        accumulates: unrolled style: results are summed over the batch (``+=``).
        nest: the pass's proven index form printed as C loops (``codegen.printers``), which
            the CUDA ``loops`` and the OpenMP ``direct`` templates print.
        layout: those loops at the indentation of the template that prints them.
    """

    name: str
    entry: str
    formula: str
    inputs: tuple[Buffer, ...]
    output: Buffer
    flops_per_sample: int
    schedule: str = "static"
    temporaries: tuple[Assignment, ...] = ()
    results: tuple[Assignment, ...] = ()
    accumulates: bool = False
    nest: LoopNest | None = None
    layout: NestLayout | None = None

    @property
    def params(self) -> tuple[Buffer, ...]:
        """Every array argument in C order: the inputs, then the output."""
        return (*self.inputs, self.output)

    @property
    def batched_inputs(self) -> tuple[Buffer, ...]:
        """The inputs with a batch axis, in argument order (the first gives ``N``)."""
        return tuple(b for b in self.inputs if b.batched)

    @property
    def python_indent(self) -> str:
        """The spaces that align a continued parameter list of the CPython function
        ``python_<name>`` (``conv2d_python.c``) under its first parameter."""
        return " " * len(f"static PyObject *python_{self.name}(")

    @property
    def shapes(self) -> str:
        """``V (N, 1, 3, 3), K (1, 1, 2, 2), ...``: every argument with its shape."""
        return ", ".join(f"{b.name} {b.shape}" for b in self.params)


@dataclass(frozen=True)
class KernelIR:
    """The whole generated module of one spec, style, dtype and target.

    Attributes:
        name: the module's base name (a Python identifier), e.g. ``conv2d_1x3x3_1x1x2x2_f64``.
        spec_text: ``LayerSpec.describe()``.
        spec_json: ``LayerSpec.to_dict()`` as one-line JSON.
        spec_args: the ``LayerSpec(...)`` keyword arguments as Python source.
        style: ``unrolled`` or ``loops``.
        dtype: ``float32`` or ``float64``; ``ctype`` is the C type (``float``, ``double``).
        target: the backend name, e.g. ``openmp``.
        version: the corrgen version that rendered it.
        constants: every extent, stride, padding and dilation, and the tuning constants.
        tables: the loop bounds of every kernel tap, computed in Python.
        kernels: forward, grad_input, grad_weight and (with a bias) grad_bias.
        pointwise: the ``loops`` kernels are matrix products (a 1x1 kernel without
            padding, at any stride).
        plans: OpenMP target: one plan record per kernel, in the same order
            (``codegen.blocking.records``: its ``variant`` names the template that prints
            it, its ``reason`` why it was chosen); empty for the CUDA targets.
        helpers: OpenMP target: the shared C helpers the module needs
            (``codegen.blocking.records.Helpers``); None for the CUDA targets.
        cuda_passes: CUDA targets: one ``codegen.cuda_plans.CudaPass`` per kernel, in the
            same order (what ``templates/cuda/`` prints); empty for the OpenMP target.
        machine: OpenMP ``loops`` style: the vector unit its tiles are sized for, in words
            (``codegen.blocking.Machine``); empty otherwise.
        kernel_index: CUDA ``tiled`` style: the C expression of the flat index in ``K`` of
            the element tap ``(i, j)`` of channels ``(o, c)`` multiplies (flipped in
            convolution mode), and ``kernel_element`` that element as a formula.
    """

    name: str
    spec_text: str
    spec_json: str
    spec_args: str
    style: str
    dtype: str
    ctype: str
    target: str
    version: str
    constants: tuple[Constant, ...]
    tables: tuple[Table, ...]
    kernels: tuple[Kernel, ...]
    has_bias: bool
    pointwise: bool = False
    plans: tuple[Any, ...] = ()
    helpers: Any = None
    cuda_passes: tuple[Any, ...] = ()
    kernel_index: str = ""
    kernel_element: str = ""
    machine: str = ""

    @property
    def inputs(self) -> tuple[Buffer, ...]:
        """Every array some kernel reads, once each, in the order the kernels first read them."""
        seen: dict[str, Buffer] = {}
        for kernel in self.kernels:
            for buffer in kernel.inputs:
                seen.setdefault(buffer.name, buffer)
        return tuple(seen.values())

    @property
    def passes(self) -> tuple[tuple[Kernel, Any], ...]:
        """``(kernel, plan)`` of every pass, in order."""
        return tuple(zip(self.kernels, self.plans, strict=True))

    def constant(self, name: str) -> int:
        """The value of one constant, by name."""
        for constant in self.constants:
            if constant.name == name:
                return constant.value
        raise KeyError(name)

    def table(self, name: str) -> tuple[int, ...]:
        """The values of one table, by name."""
        for table in self.tables:
            if table.name == name:
                return table.values
        raise KeyError(name)

    def kernel(self, name: str) -> Kernel:
        """The kernel of one pass, by name."""
        for kernel in self.kernels:
            if kernel.name == name:
                return kernel
        raise KeyError(name)

    def __str__(self) -> str:
        lines = [f"KernelIR {self.name}: {self.spec_text}",
                 f"  style {self.style}, dtype {self.dtype} ({self.ctype}), target {self.target}"]
        if self.machine:
            lines.append(f"  tiles for {self.machine}")
        lines.append("  constants: " + ", ".join(f"{c.name}={c.value}" for c in self.constants))
        for plan in self.plans:
            lines.append(f"  {plan.name}: {plan.variant} ({plan.reason})")
        for table in self.tables:
            lines.append(f"  table {table.name} = {list(table.values)}")
        tiles = {p.kernel.name: p for p in self.cuda_passes if p.tile is not None}
        for k in self.kernels:
            lines.append(f"  {k.entry}: {k.shapes}")
            lines.append(f"    {k.formula}")
            if k.name in tiles:
                lines += tiles[k.name].model
            if k.results:
                lines.append(f"    {len(k.temporaries)} temporaries, {len(k.results)} results"
                             + (" (summed over the batch)" if k.accumulates else ""))
        return "\n".join(lines)
