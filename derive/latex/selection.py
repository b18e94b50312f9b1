"""Which elements a document expands: all of them, the corners, or a count N evenly spread.

An explicit derivation of a whole layer grows as outputs x kernel, so a document expands only
the selected elements of each array; the general index formulas stand for the rest.
"""

from __future__ import annotations

import itertools
import math
import re
from typing import Any

from ..errors import LatexError
from ..spec import LayerSpec
from .content import Chosen

#: ``elements`` values besides a count N.
SELECTIONS = ("auto", "all", "corners")
#: ``auto`` expands every element when the layer has at most this many (outputs + gradients).
AUTO_ALL_LIMIT = 150
#: ``all`` refuses layers with more elements than this: the document would not be readable.
ALL_LIMIT = 400
#: A count N expands at most this many elements per array.
N_LIMIT = 100
#: Channel pairs (or channels) written out in full; beyond, the first and the last.
MAX_PAIRS = 4


def parse_elements(value: Any) -> str | int:
    """``"all"``, ``"corners"``, ``"auto"`` or a count N (an int, or text such as ``"6"``)."""
    if isinstance(value, str) and value.strip().lower() in SELECTIONS:
        return value.strip().lower()
    if isinstance(value, str) and re.fullmatch(r"\s*\d+\s*", value):
        value = int(value)
    if not isinstance(value, int) or isinstance(value, bool):
        raise LatexError(f"elements={value!r}: expected all, corners, auto or a count N "
                         f"from 1 to {N_LIMIT}")
    if not 1 <= value <= N_LIMIT:
        raise LatexError(f"elements={value!r}: a count N of elements expanded per array "
                         f"must be from 1 to {N_LIMIT}")
    return value


def _corners(shape: tuple[int, ...], channel_axes: int) -> list[tuple[int, ...]]:
    """The spatial corners of the first and of the last channel (pair), and the centre of
    the first one, in row-major order."""
    picks: set[tuple[int, ...]] = set()
    for channels in ((0,) * channel_axes, tuple(n - 1 for n in shape[:channel_axes])):
        picks.update(channels + corner for corner in itertools.product(
            *({0, n - 1} for n in shape[channel_axes:])))
    picks.add(tuple([0] * channel_axes + [n // 2 for n in shape[channel_axes:]]))
    return sorted(picks)


def _spread(shape: tuple[int, ...], count: int) -> list[tuple[int, ...]]:
    """``count`` indices evenly spread in row-major order, first and last included."""
    total = math.prod(shape)
    if count >= total:
        return list(itertools.product(*(range(n) for n in shape)))
    flat = [0] if count == 1 else sorted({round(k * (total - 1) / (count - 1))
                                          for k in range(count)})
    picks = []
    for f in flat:
        index = []
        for n in reversed(shape):
            f, r = divmod(f, n)
            index.append(r)
        picks.append(tuple(reversed(index)))
    return picks


def _select(how: str | int, shape: tuple[int, ...], channel_axes: int) -> list[tuple[int, ...]]:
    if how == "all":
        return list(itertools.product(*(range(n) for n in shape)))
    if how == "corners":
        return _corners(shape, channel_axes)
    return _spread(shape, int(how))


class Selection:
    """The elements one document expands, per array: ``outputs``, ``grad_input``,
    ``grad_weight``, ``grad_bias``.

    Attributes:
        how: ``"all"``, ``"corners"`` or a count N (``"auto"`` resolved).

    Raises:
        LatexError: a bad ``elements``, or ``"all"`` on a layer of more than ``ALL_LIMIT``
            elements.
    """

    def __init__(self, spec: LayerSpec, elements: str | int):
        self.spec = spec
        how = parse_elements(elements)
        total = sum(self.counts().values())
        if how == "auto":
            how = "all" if total <= AUTO_ALL_LIMIT else "corners"
        if how == "all" and total > ALL_LIMIT:
            parts = ", ".join(f"{n:,} {k}" for k, n in self.counts().items())
            raise LatexError(
                f"elements='all': {spec.describe()} has {total:,} elements ({parts}); "
                f"more than {ALL_LIMIT} make a document too long to read: use corners, or a "
                f"count N (at most {N_LIMIT} per array)")
        self.how: str | int = how

    def counts(self) -> dict[str, int]:
        """Elements per array (``grad_bias`` only with a bias)."""
        counts = {"outputs": math.prod(self.spec.output_shape),
                  "grad_input": math.prod(self.spec.input),
                  "grad_weight": math.prod(self.spec.kernel)}
        if self.spec.bias:
            counts["grad_bias"] = self.spec.kernel[0]
        return counts

    def picks(self, array: str) -> list[tuple[int, ...]]:
        """0-based indices expanded, for ``outputs`` or one gradient."""
        if array == "outputs":
            return _select(self.how, self.spec.output_shape, 1)
        if array == "grad_input":
            picks = _select(self.how, self.spec.input, 1)
            rows, cols = self.spec.uncovered
            if self.how != "all" and (rows or cols):  # show one exactly-zero gradient
                extra = (0, rows[0] if rows else 0, cols[0] if cols else 0)
                picks = sorted({*picks, extra})
            return picks
        if array == "grad_weight":
            return _select(self.how, self.spec.kernel, 2)
        return _select(self.how, (self.spec.kernel[0],), 1)

    def chosen(self, array: str) -> Chosen:
        """How many of the array's elements are expanded, and how they were picked."""
        chosen, total = len(self.picks(array)), self.counts()[array]
        kind = "one" if total == 1 else "all" if chosen == total else "some"
        return Chosen(kind, chosen, total, "corners" if self.how == "corners" else "spread")


def shown_channels(n: int) -> list[int]:
    """The channels whose matrices are written: all, or the first and the last."""
    return list(range(n)) if n <= MAX_PAIRS else [0, n - 1]


def shown_pairs(n_out: int, n_in: int) -> list[tuple[int, int]]:
    """The channel pairs ``(o, c)`` whose matrices are written: all, or the first and last."""
    pairs = list(itertools.product(range(n_out), range(n_in)))
    return pairs if len(pairs) <= MAX_PAIRS else [pairs[0], pairs[-1]]
