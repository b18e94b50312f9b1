"""The forward pass as explicit SymPy sums, one expression per output element.

Padding is handled by index bounds: a tap that lands on a zero of the padded input
contributes no term at all, so every term is ``K[o, c, i, j] * V[c, u, v]`` with ``(c, u, v)``
inside the input. In convolution mode tap ``(i, j)`` reads the kernel rotated by 180
degrees (``derive.geometry.kernel_tap``).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from operator import eq, itemgetter

from sympy import Add, Expr, Indexed, IndexedBase, Integer, Mul, S
from sympy.core.basic import _args_sortkey

from .geometry import Geometry
from .spec import LayerSpec
from .symbols import G, K, V, Z, b


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


# -- canonical products and sums without SymPy's flatten --------------------------------------
#
# ``Mul(a, b)`` and ``Add(*terms)`` spend nearly all their time in ``flatten``: collecting
# like terms and powers, and sorting the arguments with ``Basic.compare``, which recurses
# through every argument on every comparison. Here each factor is an ``Indexed`` element
# with non-negative integer indices, no product repeats a factor and (checked below) no sum
# repeats a term, so ``flatten`` has nothing to collect: the canonical object is the class's
# ``_from_args`` over the arguments sorted by ``Basic.compare``. That order is written once
# per element as a tuple, and tuples compare in C.
#
# ``Basic.compare`` orders objects of different classes by class name, objects of one class
# by the length of ``_hashable_content()`` and then item by item. An element's content is
# ``(base, *indices, *assumptions)``; a product's, its two factors. Bases are ranked by
# ``Basic.compare`` itself. Integer indices compare by value: ``Zero``, ``One`` and
# ``Integer`` are different classes, and the class order puts them in that order too
# (asserted below, once).

#: A key and the expression it orders: ``(key, expr)``.
Keyed = tuple[tuple, Expr]

_BASE_RANK = {base: rank for rank, base in
              enumerate(sorted((V, K, b, Z, G), key=_args_sortkey))}
# The class rank of elements against products (their class names decide).
_INDEXED, _MUL = (0, 1) if b[0].compare(Mul(K[0, 0, 0, 0], V[0, 0, 0])) < 0 else (1, 0)
if not S.Zero.compare(S.One) < 0 or not S.One.compare(Integer(2)) < 0:  # pragma: no cover
    raise ImportError("SymPy no longer orders 0 < 1 < 2 in Basic.compare: derive.forward's "
                      "sort keys need revisiting")


def keyed(base: IndexedBase, index: tuple[int, ...]) -> Keyed:
    """``base[index]`` with its sort key: its place in ``Basic.compare``'s order."""
    element = base[index]
    content = element._hashable_content()  # (base, *indices, *sorted assumptions)
    if _BASE_RANK.get(base) is None or any(i < 0 for i in index):
        raise ValueError(f"{element}: keyed elements are V, K, b, Z or G with indices >= 0")
    n = len(index)
    return (_INDEXED, len(content), _BASE_RANK[base], *index, *content[1 + n:]), element


def product(p: Keyed, q: Keyed) -> Keyed:
    """The product of two different keyed elements, as ``Mul(p, q)`` builds it, with its key."""
    (kp, ep), (kq, eq) = p, q
    if kp[0] != _INDEXED or kq[0] != _INDEXED or kp == kq:
        raise ValueError(f"product({ep}, {eq}): two different elements expected")
    if kq < kp:
        kp, ep, kq, eq = kq, eq, kp, ep
    return (_MUL, 2, kp, kq), _mul((ep, eq), True)


def total(terms: list[Keyed]) -> Expr:
    """``Add`` of the keyed terms, the same object ``Add(*exprs)`` builds. Sorts ``terms``."""
    terms.sort(key=_first)
    keys = [k for k, _ in terms]
    if any(map(eq, keys, keys[1:])):  # a repeated term: let SymPy collect it
        return Add(*[e for _, e in terms])
    return _add(tuple([e for _, e in terms]), True)


_first = itemgetter(0)
_mul, _add = Mul._from_args, Add._from_args
