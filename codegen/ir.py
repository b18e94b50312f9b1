"""KernelIR: everything a template sees, as plain strings and integers.

Decisions live in Python (``codegen.lower``); templates only loop over these records. No
SymPy object reaches a template: unrolled kernels arrive as printed C assignments.
``str(ir)`` is a readable dump of the whole record.
"""

from __future__ import annotations

from dataclasses import dataclass


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
class RowReuse:
    """A column-tile sweep that loads each source row once for all the row taps reaching it.

    Attributes:
        name: the pass, ``forward`` or ``grad_input``; ``prefix`` its constants' (``FWD``).
        row_step: source rows from one output row to the next.
        tap_rows: per row tap, its source row below the top row of taps.
    """

    name: str
    prefix: str
    row_step: int
    tap_rows: tuple[int, ...]


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
        temporaries: unrolled style: the common subexpressions, in order.
        results: unrolled style: one assignment per output element.
        accumulates: unrolled style: results are summed over the batch (``+=``).
    """

    name: str
    entry: str
    formula: str
    inputs: tuple[Buffer, ...]
    output: Buffer
    flops_per_sample: int
    temporaries: tuple[Assignment, ...] = ()
    results: tuple[Assignment, ...] = ()
    accumulates: bool = False

    @property
    def params(self) -> tuple[Buffer, ...]:
        """Every array argument in C order: the inputs, then the output."""
        return (*self.inputs, self.output)

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
        tap_row, tap_col: the kernel row/column a tap ``(i, j)`` reads (rotated in
            convolution mode).
        has_bias: whether the layer has a bias.
        pointwise: the ``loops`` kernels are matrix products (a 1x1 kernel at stride 1
            without padding).
        in_lanes: the ``loops`` passes whose register tiles hold channels in vector lanes
            (see ``codegen.blocking``).
        row_reuse: the ``loops`` sweeps whose column tiles load each source row once per
            column tap for all the row taps that reach it (see ``codegen.blocking``).
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
    tap_row: str
    tap_col: str
    has_bias: bool
    pointwise: bool = False
    in_lanes: tuple[str, ...] = ()
    row_reuse: tuple[RowReuse, ...] = ()

    def constant(self, name: str) -> int:
        """The value of one constant, by name."""
        for constant in self.constants:
            if constant.name == name:
                return constant.value
        raise KeyError(name)

    def reuses_rows(self, name: str) -> bool:
        """Whether the sweep of pass ``name`` reuses source rows."""
        return any(reuse.name == name for reuse in self.row_reuse)

    def row_schedule(self, name: str) -> tuple[tuple[int, tuple[tuple[int, int], ...]], ...]:
        """A row-reusing sweep's loads per column tap, top to bottom: ``(row, uses)``, the
        source row (below the tile's top row of taps) and the ``(tile row, row tap)`` pairs
        that multiply it."""
        reuse = next(reuse for reuse in self.row_reuse if reuse.name == name)
        uses: dict[int, list[tuple[int, int]]] = {}
        for y in range(self.constant(f"{reuse.prefix}_TY")):
            for i, row in enumerate(reuse.tap_rows):
                uses.setdefault(y * reuse.row_step + row, []).append((y, i))
        return tuple((row, tuple(uses[row])) for row in sorted(uses))

    def shares_row_loads(self, name: str) -> bool:
        """Whether a row-reusing sweep loads some source row for more than one row tap."""
        return any(len(uses) > 1 for _, uses in self.row_schedule(name))

    def reads_in_place(self, name: str) -> bool:
        """Whether the sweep of pass ``name`` (grad_input: a row-reusing column tile as wide as
        the rows of dV, at stride 1) reads the gradient in place rather than a zero-framed
        copy of it: rows outside it are read from a row of zeros, and the vectors crossing
        its left or right edge are loaded inside it and shifted in registers."""
        return name == "grad_input" and any(c.name == "GIN_FRAME_ROW" for c in self.constants)

    def in_place_loads(self) -> tuple[tuple[tuple[str, tuple[int, ...]], ...], ...]:
        """Per column tap and vector of the in-place grad_input tile, how to load its source
        vector from a gradient row: ``(kind, indices)``. ``load``: the VL reals from its
        first column on; ``zero``: none is inside the row (no multiply-adds); ``left``: it
        crosses the row's first column, so the row's first VL reals are shuffled in after
        zeros; ``right``: it crosses the last column, so the row's last VL reals are shuffled
        in before zeros. ``indices`` are as ``VEC_SHUFFLE`` takes them (lane i of the first
        operand below VL, lane i - VL of the second above)."""
        vl, width = self.constant("VL"), self.constant("LWO")
        plans = []
        for start in self.table("GIN_COLUMN_START"):
            plan = []
            for xv in range(self.constant("GIN_TXV")):
                first = start + xv * vl
                if first >= 0 and first + vl <= width:
                    plan.append(("load", ()))
                elif first + vl <= 0 or first >= width:
                    plan.append(("zero", ()))
                elif first < 0:  # shuffle(zero, row[0 .. VL-1])
                    plan.append(("left", tuple(vl + first + e if first + e >= 0 else 0
                                               for e in range(vl))))
                else:  # shuffle(row[width-VL .. width-1], zero)
                    plan.append(("right", tuple(first + e - (width - vl) if first + e < width
                                                else vl for e in range(vl))))
            plans.append(tuple(plan))
        return tuple(plans)

    def stores_transposed(self, name: str) -> bool:
        """Whether the lane tile of forward or grad_input ``name`` stores its whole tiles
        through in-register transposes: it spans at least LANES columns, and the columns
        it writes are contiguous (forward, and grad_input at column stride 1)."""
        prefix = {"forward": "FWD", "grad_input": "GIN"}[name]
        return (name in self.in_lanes
                and self.constant(f"{prefix}_TX") >= self.constant("LANES")
                and (name == "forward" or self.constant("SW") == 1))

    def table(self, name: str) -> tuple[int, ...]:
        """The values of one table, by name."""
        for table in self.tables:
            if table.name == name:
                return table.values
        raise KeyError(name)

    def pairs_column_phases(self, name: str) -> bool:
        """Whether the lane tile of ``name`` (grad_input at column stride 2) sweeps the two
        column phases of each row phase together and stores their whole tiles interleaved,
        in vectors of contiguous columns: it spans at least LANES columns, and the phases
        come in pairs of one row phase, the one holding its first column first (their
        first elements one column apart, the second phase as wide or one column narrower)."""
        if (name != "grad_input" or name not in self.in_lanes or self.constant("SW") != 2
                or self.constant("GIN_TX") < self.constant("LANES")):
            return False
        rows, cols, dst = (self.table(f"GIN_PHASE_{what}") for what in ("ROWS", "COLS", "DST"))
        return len(rows) % 2 == 0 and all(
            rows[p] == rows[p + 1] and dst[p + 1] == dst[p] + 1 and cols[p] - cols[p + 1] in (0, 1)
            for p in range(0, len(rows), 2))

    def lane_transpose(self) -> tuple[tuple[tuple[tuple[int, int, int, tuple[int, ...]], ...], ...],
                                      tuple[int, ...]]:
        """How to transpose LANES lane vectors (row ``i`` holds the elements ``(i, 0 ..
        LANES-1)``) into vectors of columns, in shuffles that each match one x86 instruction
        (unpacklo/hi of 1, 2, ... reals within 16-byte blocks, then shuffles of whole
        blocks): ``(steps, columns)``. A step is a tuple of ``(row, a, b, indices)``: the new
        ``row`` is the shuffle of the old rows ``a`` and ``b`` (an index below LANES picks
        that lane of ``a``, one above it lane ``index - LANES`` of ``b``). After the last
        step, column ``j`` is the row ``columns[j]``. The order of the rows is simulated
        here, so the result is checked rather than assumed."""
        n = self.constant("LANES")
        block = min(n, 16 // (4 if self.ctype == "float" else 8))

        def interleave(hi: int, width: int) -> tuple[int, ...]:
            """unpack{lo,hi}: groups of ``width`` lanes of a and b, alternately, from the
            lower or upper half of every block."""
            indices: list[int] = []
            for start in range(hi * block // 2, n, block):
                for group in range(start, start + block // 2, width):
                    indices += range(group, group + width)
                    indices += range(n + group, n + group + width)
            return tuple(indices)

        def blocks(hi: int) -> tuple[int, ...]:
            """The even (or odd) blocks of a, then those of b."""
            chosen = [block * (2 * k + hi) + e
                      for k in range(n // block // 2) for e in range(block)]
            return tuple(chosen) + tuple(n + i for i in chosen)

        steps = []
        rows = [[(i, j) for j in range(n)] for i in range(n)]
        distance, width = 1, 1
        while distance < n:
            step = []
            new_rows = list(rows)
            for i in range(n):
                if i & distance:
                    continue
                for hi, row in ((0, i), (1, i + distance)):
                    indices = interleave(hi, width) if width < block else blocks(hi)
                    step.append((row, i, i + distance, indices))
                    both = rows[i] + rows[i + distance]
                    new_rows[row] = [both[k] for k in indices]
            steps.append(tuple(step))
            rows = new_rows
            distance *= 2
            width = min(width * 2, block)
        columns = tuple(rows.index([(i, j) for i in range(n)]) for j in range(n))
        return tuple(steps), columns

    def kernel(self, name: str) -> Kernel:
        """The kernel of one pass, by name."""
        for kernel in self.kernels:
            if kernel.name == name:
                return kernel
        raise KeyError(name)

    def __str__(self) -> str:
        lines = [f"KernelIR {self.name}: {self.spec_text}",
                 f"  style {self.style}, dtype {self.dtype} ({self.ctype}), target {self.target}"]
        lines.append("  constants: " + ", ".join(f"{c.name}={c.value}" for c in self.constants))
        if self.in_lanes:
            lines.append("  channels in lanes: " + ", ".join(self.in_lanes))
        if self.row_reuse:
            lines.append("  source rows reused: " + ", ".join(r.name for r in self.row_reuse))
        for table in self.tables:
            lines.append(f"  table {table.name} = {list(table.values)}")
        for k in self.kernels:
            lines.append(f"  {k.entry}: {k.shapes}")
            lines.append(f"    {k.formula}")
            if k.results:
                lines.append(f"    {len(k.temporaries)} temporaries, {len(k.results)} results"
                             + (" (summed over the batch)" if k.accumulates else ""))
        return "\n".join(lines)
