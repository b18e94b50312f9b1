"""Register shuffles, simulated here so that what the kernels rely on is checked, not assumed:
the in-register transpose of the lane tiles, the shifted loads of grad_input in place, and
the row schedule of a row-reusing tile."""

from __future__ import annotations

from .records import Shuffle

RowSchedule = tuple[tuple[int, tuple[tuple[int, int], ...]], ...]


def row_schedule(ty: int, row_step: int, tap_rows: tuple[int, ...]) -> RowSchedule:
    """A row-reusing tile's loads per column tap, top to bottom: ``(row, uses)``, the source
    row (below the tile's top row of taps) and the ``(tile row, row tap)`` pairs that
    multiply it."""
    uses: dict[int, list[tuple[int, int]]] = {}
    for y in range(ty):
        for i, row in enumerate(tap_rows):
            uses.setdefault(y * row_step + row, []).append((y, i))
    return tuple((row, tuple(uses[row])) for row in sorted(uses))


def in_place_loads(vl: int, width: int, starts: tuple[int, ...], txv: int
                   ) -> tuple[tuple[tuple[str, tuple[int, ...]], ...], ...]:
    """Per column tap (its first gradient column in ``starts``) and vector of the in-place
    grad_input tile, how to load its source vector from a gradient row of ``width`` reals:
    ``(kind, indices)``. ``load``: the VL reals from its first column on; ``zero``: none is
    inside the row (no multiply-adds); ``left``: it crosses the row's first column, so the
    row's first VL reals are shuffled in after zeros; ``right``: it crosses the last column,
    so the row's last VL reals are shuffled in before zeros. ``indices`` are as
    ``VEC_SHUFFLE`` takes them (lane i of the first operand below VL, lane i - VL of the
    second above)."""
    plans = []
    for start in starts:
        plan = []
        for xv in range(txv):
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


def _interleave(n: int, block: int, hi: int, width: int) -> tuple[int, ...]:
    """unpack{lo,hi}: groups of ``width`` lanes of a and b, alternately, from the lower or
    upper half of every block."""
    indices: list[int] = []
    for start in range(hi * block // 2, n, block):
        for group in range(start, start + block // 2, width):
            indices += range(group, group + width)
            indices += range(n + group, n + group + width)
    return tuple(indices)


def _blocks(n: int, block: int, hi: int) -> tuple[int, ...]:
    """The even (or odd) blocks of a, then those of b."""
    chosen = [block * (2 * k + hi) + e for k in range(n // block // 2) for e in range(block)]
    return tuple(chosen) + tuple(n + i for i in chosen)


def lane_transpose(n: int, real_bytes: int
                   ) -> tuple[tuple[tuple[tuple[int, int, int, tuple[int, ...]], ...], ...],
                              tuple[int, ...]]:
    """How to transpose ``n`` lane vectors (row ``i`` holds the elements ``(i, 0 .. n-1)``)
    into vectors of columns, in shuffles that each match one x86 instruction (unpacklo/hi
    of 1, 2, ... reals within 16-byte blocks, then shuffles of whole blocks): ``(steps,
    columns)``. A step is a tuple of ``(row, a, b, indices)``: the new ``row`` is the
    shuffle of the old rows ``a`` and ``b`` (an index below n picks that lane of ``a``, one
    above it lane ``index - n`` of ``b``). After the last step, column ``j`` is the row
    ``columns[j]``. The order of the rows is simulated, so the result is checked."""
    steps, rows = _butterfly([[(i, j) for j in range(n)] for i in range(n)], n,
                             min(n, 16 // real_bytes), n)
    columns = tuple(rows.index([(i, j) for i in range(n)]) for j in range(n))
    return steps, columns


def _butterfly(rows: list[list[tuple[int, int]]], n: int, block: int, until: int
               ) -> tuple[tuple, list[list[tuple[int, int]]]]:
    """``lane_transpose``'s steps on ``rows`` (vectors of ``n`` lanes, each lane the element
    it holds) while the rows paired are fewer than ``until`` apart: unpacks of 1, 2, ...
    reals within ``block``-real blocks, then shuffles of whole blocks. The steps and the
    rows after them, simulated."""
    steps = []
    distance, width = 1, 1
    while distance < until:
        step = []
        new_rows = list(rows)
        for i in range(len(rows)):
            if i & distance:
                continue
            for hi, row in ((0, i), (1, i + distance)):
                indices = (_interleave(n, block, hi, width) if width < block
                           else _blocks(n, block, hi))
                step.append((row, i, i + distance, indices))
                both = rows[i] + rows[i + distance]
                new_rows[row] = [both[k] for k in indices]
        steps.append(tuple(step))
        rows = new_rows
        distance *= 2
        width = min(width * 2, block)
    return tuple(steps), rows


def half_transpose(n: int, real_bytes: int
                   ) -> tuple[tuple[tuple[tuple[int, int, int, tuple[int, ...]], ...], ...],
                              tuple[tuple[int, int], ...]]:
    """How to transpose ``n / 2`` vectors of ``n`` lanes (row ``i`` holds the elements ``(i,
    0 .. n-1)``) into ``n`` half vectors of columns, where a half is a 16-byte block (four
    float32 of eight, two float64 of four): the unpacklo/hi steps of ``lane_transpose``
    within the blocks, which transpose each block of the ``n / 2`` rows in place. ``(steps,
    halves)``: the steps as ``lane_transpose``'s, and for each column ``j`` the ``(row,
    block)`` whose ``n / 2`` lanes hold ``(0 .. n/2 - 1, j)``. Simulated, so the result is
    checked."""
    half = n // 2
    if 16 // real_bytes != half:
        raise ValueError(f"a half transpose needs halves of 16 bytes: {n} reals of {real_bytes}")
    steps, rows = _butterfly([[(i, j) for j in range(n)] for i in range(half)], n, half, half)
    where = {tuple(rows[r][b * half:(b + 1) * half]): (r, b)
             for r in range(half) for b in range(2)}
    return steps, tuple(where[tuple((i, j) for i in range(half))] for j in range(n))


def _printed(steps: tuple) -> tuple[int, tuple[Shuffle, ...], str]:
    """``steps`` (as ``lane_transpose`` gives them) as printed: their number, the shuffles
    (operands named ``rows[i]`` in the first step, ``step<s>_<row>`` after) and the prefix
    of the last step's values."""
    def operand(s: int, row: int) -> str:
        return f"rows[{row}]" if s == 1 else f"step{s - 1}_{row}"

    shuffles = tuple(Shuffle(f"step{s}_{row}", operand(s, a), operand(s, b), indices)
                     for s, step in enumerate(steps, 1) for row, a, b, indices in step)
    return len(steps), shuffles, f"step{len(steps)}_"


def transpose_shuffles(n: int, real_bytes: int
                       ) -> tuple[int, tuple[Shuffle, ...], tuple[str, ...]]:
    """``transpose_lanes`` as printed: its number of steps, its shuffles (operands named
    ``rows[i]`` in the first step, ``step<s>_<row>`` after) and the value of each column."""
    steps, columns = lane_transpose(n, real_bytes)
    last, shuffles, prefix = _printed(steps)
    return last, shuffles, tuple(f"{prefix}{row}" for row in columns)


def half_transpose_shuffles(n: int, real_bytes: int
                            ) -> tuple[int, tuple[Shuffle, ...], tuple[str, ...],
                                       tuple[tuple[int, int], ...]]:
    """``half_transpose`` as printed: its number of steps, its shuffles, the value of each
    of the ``n / 2`` vectors it leaves, and for each column ``j`` the ``(vector, half)``
    holding it."""
    steps, halves = half_transpose(n, real_bytes)
    last, shuffles, prefix = _printed(steps)
    return last, shuffles, tuple(f"{prefix}{row}" for row in range(n // 2)), halves
