"""The forward pass as explicit SymPy sums, one expression per output element.

Padding is handled by index bounds: a tap that lands on a zero of the padded input
contributes no term at all, so every term is ``K[o, c, i, j] * V[c, u, v]`` with ``(c, u, v)``
inside the input. In convolution mode tap ``(i, j)`` reads the kernel rotated by 180
degrees (``derive.geometry.kernel_tap``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from sympy import Add, Expr, Indexed

from .geometry import Geometry
from .spec import LayerSpec
from .symbols import K, V, b


@dataclass(frozen=True)
class Term:
    """One product ``weight * value`` of the forward sum of output ``out``."""

    out: tuple[int, int, int]
    weight: Indexed
    value: Indexed

    @property
    def expr(self) -> Expr:
        return self.weight * self.value


def kernel_element(spec: LayerSpec, o: int, c: int, i: int, j: int) -> Indexed:
    """The kernel element tap ``(i, j)`` reads: ``K~[o, c, i, j]`` of DESIGN.md."""
    g = Geometry.of(spec)
    return K[o, c, g.kernel_row(i), g.kernel_col(j)]


def window(spec: LayerSpec, y: int, x: int) -> Iterator[tuple[int, int, int, int]]:
    """Taps ``(i, j)`` of output position ``(y, x)`` that land inside the input, with ``(u, v)``."""
    g = Geometry.of(spec)
    for i in range(g.kh):
        u = g.input_row(y, i)
        if not 0 <= u < g.h:
            continue
        for j in range(g.kw):
            v = g.input_col(x, j)
            if 0 <= v < g.w:
                yield i, j, u, v


def outputs(spec: LayerSpec) -> Iterator[tuple[int, int, int]]:
    """Every output index ``(o, y, x)``, row-major."""
    o_count, ho, wo = spec.output_shape
    for o in range(o_count):
        for y in range(ho):
            for x in range(wo):
                yield o, y, x


def forward_terms(spec: LayerSpec) -> Iterator[Term]:
    """Every product term of the forward pass, output by output."""
    channels = spec.input[0]
    for o, y, x in outputs(spec):
        for i, j, u, v in window(spec, y, x):
            for c in range(channels):
                yield Term((o, y, x), kernel_element(spec, o, c, i, j), V[c, u, v])


def forward_exprs(spec: LayerSpec) -> dict[tuple[int, ...], Expr]:
    """``Z[o, y, x]`` for every output element, as ``b[o] + sum of K*V`` (0-based keys)."""
    sums: dict[tuple[int, ...], list[Expr]] = {
        out: [b[out[0]]] if spec.bias else [] for out in outputs(spec)
    }
    for term in forward_terms(spec):
        sums[term.out].append(term.expr)
    return {key: Add(*terms) for key, terms in sums.items()}
