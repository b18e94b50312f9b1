"""Index forms of every pass, and the proof that they equal the explicit derivation.

An index form writes one pass as a sum over kernel taps or positions of a product of
array elements whose indices are affine in the element's own indices and the summation
variables (DESIGN.md, "The index forms, written out")::

    Z[o,y,x]    = b[o] + sum_{c,i,j} K~[o,c,i,j] * V[c, y*sh + i*dh - pt, x*sw + j*dw - pl]
    dK~[o,c,i,j] = sum_{y,x} G[o,y,x] * V[c, y*sh + i*dh - pt, x*sw + j*dw - pl]
    dV[c,u,v]   = sum_{o,i,j} K~[o,c,i,j] * G[o, (u + pt - i*dh)/sh, (v + pl - j*dw)/sw]
    db[o]       = sum_{y,x} G[o,y,x]

One rule stands for every bound and constraint: a factor whose index falls outside its
array, or is not an integer, is zero (the zero padding of ``V``; the stride constraint of
``dV``). In convolution mode ``K~[o,c,i,j] = K[o,c,KH-1-i,KW-1-j]`` and the gradient is
stored unrotated: ``dK[o,c,i,j] = dK~[o,c,KH-1-i,KW-1-j]``.

``prove(spec)`` expands every element of every form and checks, with SymPy, that it equals
the explicit per-element expression obtained by differentiation (``derive_layer``). That is
done on the spec itself when it is small, and otherwise on a reduced proxy: at most two
channels each way and the fewest rows and columns that keep both borders, a whole stride
period between them, and the same remainder modulo the stride, so the same kernel, stride,
padding and dilation meet every case the full spec has.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass

from sympy import Add, Expr, IndexedBase, Mul, Symbol, expand, fraction, lambdify, together

from .errors import DerivationError
from .geometry import Geometry
from .gradients import LayerExprs, derive_layer
from .spec import LayerSpec
from .symbols import G, K, V, b

o, c, y, x, i, j, u, v = (Symbol(name, integer=True) for name in "ocyxijuv")


@dataclass(frozen=True)
class Factor:
    """``base[indices]``, zero when an index is outside ``0 .. extent-1`` or not an integer."""

    base: IndexedBase
    indices: tuple[Expr, ...]
    extents: tuple[int, ...]


#: One term of an index form's sum, as the ``(base, indices)`` of each of its factors.
Term = tuple[tuple[IndexedBase, tuple[int, ...]], ...]


@dataclass(frozen=True)
class IndexForm:
    """One pass as ``constant + sum over sums of prod(factors)``, for every free index."""

    name: str
    target: str
    free: tuple[tuple[Symbol, int], ...]
    sums: tuple[tuple[Symbol, int], ...]
    factors: tuple[Factor, ...]
    constant: Factor | None = None

    def __str__(self) -> str:
        def show(f: Factor) -> str:
            return f"{f.base}[{', '.join(_affine(e) for e in f.indices)}]"

        lhs = f"{self.target}[{', '.join(str(s) for s, _ in self.free)}]"
        ranges = ", ".join(f"{s}<{n}" for s, n in self.sums)
        body = " * ".join(show(f) for f in self.factors)
        const = f"{show(self.constant)} + " if self.constant else ""
        return f"{lhs} = {const}sum_{{{ranges}}} {body}"

    def evaluator(self) -> Callable[[tuple[int, ...]], Expr]:
        """A function from a (0-based) element index to its SymPy expression."""
        terms = self.term_indices()

        def element(index: tuple[int, ...]) -> Expr:
            return Add(*[Mul(*[base[at] for base, at in term]) for term in terms(index)])

        return element

    def term_indices(self) -> Callable[[tuple[int, ...]], list[Term]]:
        """A function from a (0-based) element index to the terms of its sum, each as the
        ``(base, indices)`` of its factors (the constant's term included), no SymPy object
        made: what a check that only asks which terms a sum has needs."""
        names = [s for s, _ in self.free] + [s for s, _ in self.sums]
        compiled = []
        for factor in self.factors:
            parts = [fraction(together(e)) for e in factor.indices]
            nums = lambdify(names, [p[0] for p in parts], "math")
            dens = [int(p[1]) for p in parts]
            compiled.append((factor.base, nums, dens, factor.extents))
        ranges = [range(n) for _, n in self.sums]

        def terms(index: tuple[int, ...]) -> list[Term]:
            found: list[Term] = []
            for point in itertools.product(*ranges):
                product: list[tuple[IndexedBase, tuple[int, ...]]] = []
                for base, nums, dens, extents in compiled:
                    at = []
                    for num, den, extent in zip(nums(*index, *point), dens, extents):
                        q, r = divmod(int(num), den)
                        if r or not 0 <= q < extent:
                            break
                        at.append(q)
                    else:
                        product.append((base, tuple(at)))
                        continue
                    break
                else:
                    found.append(tuple(product))
            if self.constant is not None:
                found.append(((self.constant.base, tuple(
                    int(e.subs(dict(zip(names, index)))) for e in self.constant.indices)),))
            return found

        return terms

    def elements(self) -> dict[tuple[int, ...], Expr]:
        """Every element, expanded (0-based keys)."""
        element = self.evaluator()
        return {idx: element(idx) for idx in itertools.product(*(range(n) for _, n in self.free))}


def index_forms(spec: LayerSpec) -> dict[str, IndexForm]:
    """The index forms of ``spec``: forward, grad_input, grad_weight and grad_bias."""
    g = Geometry.of(spec)
    ki, kj = g.kernel_row(i), g.kernel_col(j)
    tap_kernel = Factor(K, (o, c, ki, kj), spec.kernel)
    read_input = Factor(V, (c, g.input_row(y, i), g.input_col(x, j)), spec.input)
    forms = {
        "forward": IndexForm(
            "forward", "Z", ((o, g.o), (y, g.ho), (x, g.wo)), ((c, g.c), (i, g.kh), (j, g.kw)),
            (tap_kernel, read_input),
            Factor(b, (o,), (g.o,)) if spec.bias else None,
        ),
        "grad_input": IndexForm(
            "grad_input", "dV", ((c, g.c), (u, g.h), (v, g.w)), ((o, g.o), (i, g.kh), (j, g.kw)),
            (tap_kernel, Factor(G, (o, g.output_row(u, i), g.output_col(v, j)),
                                spec.output_shape)),
        ),
        "grad_weight": IndexForm(
            "grad_weight", "dK", ((o, g.o), (c, g.c), (i, g.kh), (j, g.kw)),
            ((y, g.ho), (x, g.wo)),
            (Factor(G, (o, y, x), spec.output_shape),
             Factor(V, (c, g.input_row(y, ki), g.input_col(x, kj)), spec.input)),
        ),
    }
    if spec.bias:
        forms["grad_bias"] = IndexForm(
            "grad_bias", "db", ((o, g.o),), ((y, g.ho), (x, g.wo)),
            (Factor(G, (o, y, x), spec.output_shape),),
        )
    return forms


def _affine(index: Expr) -> str:
    """``(u - i + 1)/2`` rather than SymPy's ``-i/2 + u/2 + 1/2``."""
    num, den = fraction(together(index))
    text = _ordered(num)
    return text if den == 1 else f"({text})/{den}"


def _ordered(affine: Expr) -> str:
    """An affine index, positive terms first, the element's own index first: ``u + 1 - i``,
    ``2*y + i - 1``, ``2 - i``."""
    coeffs = affine.as_coefficients_dict()
    order = sorted(coeffs, key=lambda t: (
        bool(coeffs[t] < 0), t == 1, str(t) not in ("u", "v", "y", "x"), str(t)))
    text = ""
    for term in order:
        coef = coeffs[term]
        mag = abs(coef)
        body = str(mag) if term == 1 else (str(term) if mag == 1 else f"{mag}*{term}")
        if not text:
            text = body if coef > 0 else f"-{body}"
        else:
            text += f" + {body}" if coef > 0 else f" - {body}"
    return text or "0"


# -- the proof ------------------------------------------------------------------------------

#: Specs with at most this many forward terms are proven on themselves.
PROOF_MAX_TERMS = 4000


def _reduced_extent(size: int, pad_lo: int, pad_hi: int, span: int, stride: int) -> int:
    """Fewest rows keeping both borders, one stride period between, and ``size % stride``."""
    need = 2 * span + 2 * stride - pad_lo - pad_hi
    if size <= need:
        return size
    return size - ((size - need) // stride) * stride


def proxy(spec: LayerSpec) -> LayerSpec:
    """The spec itself if small, else a reduced layer with the same kernel taps, stride,
    padding, dilation, mode and bias (see the module docstring)."""
    if spec.n_terms <= PROOF_MAX_TERMS:
        return spec
    cc, h, w = spec.input
    oo, _, kh, kw = spec.kernel
    top, bottom, left, right = spec.pads
    span_h, span_w = spec.dilated_kernel
    c2 = min(cc, 2)
    return spec.replace(
        input=(c2,
               _reduced_extent(h, top, bottom, span_h, spec.stride[0]),
               _reduced_extent(w, left, right, span_w, spec.stride[1])),
        kernel=(min(oo, 2), c2, kh, kw),
    )


@dataclass(frozen=True)
class Proof:
    """What ``prove`` established: on which spec, how many elements per pass, how long."""

    spec: LayerSpec
    proved_on: LayerSpec
    elements: dict[str, int]
    zero_elements: dict[str, int]
    seconds: float

    def __str__(self) -> str:
        where = ("on the spec itself" if self.proved_on == self.spec
                 else f"on the reduced proxy {self.proved_on.describe()} (same kernel, stride, "
                 f"padding, dilation and mode)")
        lines = [f"Proved {where}, element by element with SymPy "
                 f"(explicit derivation by differentiation == index form):"]
        for name, count in self.elements.items():
            zeros = self.zero_elements[name]
            extra = f" ({zeros} exactly zero)" if zeros else ""
            lines.append(f"  {name:<12} {count} elements equal{extra}")
        lines.append(f"  in {self.seconds:.2f} s")
        return "\n".join(lines)


def prove(spec: LayerSpec, explicit: LayerExprs | None = None,
          progress: Callable[[int, int], None] | None = None) -> Proof:
    """Check every index form against the explicit derivation, element by element.

    Args:
        progress: called as ``progress(done, total)`` with the elements compared so far, once
            before the first and after each.

    Raises:
        DerivationError: naming the pass and the first element that differs.
    """
    start = time.perf_counter()
    target = proxy(spec)
    if explicit is None or explicit.spec != target:
        explicit = derive_layer(target, max_terms=None)
    passes = explicit.passes()
    forms = index_forms(target)
    total, done = sum(len(passes[name]) for name in forms), 0
    if progress is not None:
        progress(0, total)
    counts: dict[str, int] = {}
    zeros: dict[str, int] = {}
    for name, form in forms.items():
        element = form.evaluator()
        counts[name] = zeros[name] = 0
        for index, expr in passes[name].items():
            closed = element(index)
            if expand(closed - expr) != 0:
                raise DerivationError(
                    f"{name}{list(index)} of {target.describe()}: the index form gives "
                    f"{closed} but differentiation gives {expr}"
                )
            counts[name] += 1
            zeros[name] += expr == 0
            done += 1
            if progress is not None:
                progress(done, total)
    return Proof(spec, target, counts, zeros, time.perf_counter() - start)
