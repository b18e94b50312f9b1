"""Per-element gradients by SymPy differentiation through the chain rule.

For every variable ``x`` (an element of ``V``, ``K`` or ``b``)::

    dJ/dx = sum over outputs z of  G[z] * dZ[z]/dx

Only the outputs whose window reads ``x`` have a non-zero ``dZ[z]/dx``, and within such a
``Z[z]`` only the terms that contain ``x``. So the forward pass is walked once, term by
term; each term is filed under the symbols it contains; and each gradient is the sum of
``G[z] * diff(term, x)`` over the terms filed under ``x``. ``sympy.diff`` does every
differentiation, so the cost grows with the number of forward terms, not with
outputs x inputs.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from sympy import Add, Derivative, Expr, Indexed, S, diff

from .errors import DerivationError
from .forward import forward_exprs, forward_terms
from .forward import outputs as _outputs
from .passes import WRT
from .spec import LayerSpec
from .symbols import G, K, V, Z, b

#: Default ceiling on forward terms for an explicit, per-element derivation (about 25 s).
DEFAULT_MAX_TERMS = 50_000

#: Measured cost per forward term of ``corrgen derive`` (sympy.diff dominates; printing
#: the result adds a fifth): 451,584 terms took 266 s on one core.
SECONDS_PER_TERM = 0.0006

Elements = dict[tuple[int, ...], Expr]


@dataclass(frozen=True)
class LayerExprs:
    """The explicit derivation of one layer: every element of every pass, keys 0-based."""

    spec: LayerSpec
    forward: Elements
    grad_input: Elements = field(default_factory=dict)
    grad_weight: Elements = field(default_factory=dict)
    grad_bias: Elements = field(default_factory=dict)

    def passes(self) -> dict[str, Elements]:
        """The passes that were derived, in DESIGN.md's JSON order."""
        out = {"forward": self.forward}
        for name in WRT.values():
            if getattr(self, name):
                out[name] = getattr(self, name)
        return out


def check_size(spec: LayerSpec, max_terms: int | None,
               wrt: tuple[str, ...] = ("input", "weight", "bias")) -> None:
    """Refuse a spec whose explicit derivation would be too large to be useful: more forward
    terms than ``max_terms``, or more elements to write out (every output, and every input
    element for ``wrt`` input), each at least one term even where no tap reaches it."""
    if max_terms is None:
        return
    o, ho, wo = spec.output_shape
    c, h, w = spec.input
    elements = o * ho * wo + (c * h * w if "input" in wrt else 0)
    if spec.n_terms <= max_terms < elements:  # padding or strides far beyond the kernel
        raise DerivationError(
            f"{spec.describe()} has {elements:,} elements to write out (the outputs"
            f"{' and the input' if 'input' in wrt else ''}), more than "
            f"--max-terms={max_terms:,}, though only {spec.n_terms:,} forward terms; "
            f"pass --max-terms {elements} to derive them anyway"
        )
    if spec.n_terms > max_terms:
        raise DerivationError(
            f"{spec.describe()} has {spec.n_terms:,} forward terms, more than "
            f"--max-terms={max_terms:,}; per-element expressions of that size are not "
            f"readable. Pass --max-terms {spec.n_terms} to derive them anyway (about "
            f"{spec.n_terms * SECONDS_PER_TERM:.0f} s), "
            f"use --verify to prove the index forms on a reduced proxy, or 'corrgen "
            f"emit --style loops' for kernels"
        )


@functools.lru_cache(maxsize=16)  # large derivations take GBs: keep only the recent ones
def derive_layer(
    spec: LayerSpec,
    wrt: tuple[str, ...] = ("input", "weight", "bias"),
    max_terms: int | None = DEFAULT_MAX_TERMS,
    progress: Callable[[int, int], None] | None = None,
) -> LayerExprs:
    """Forward expressions and the requested gradients of ``spec``, element by element.

    Args:
        spec: the layer.
        wrt: any of ``"input"``, ``"weight"``, ``"bias"``.
        max_terms: refuse (``DerivationError``) above this many forward terms; None: no limit.
        progress: called as ``progress(done, total)`` while the gradients are differentiated.

    Returns:
        LayerExprs; gradients not requested are left empty. ``grad_bias`` is empty when the
        spec has no bias.
    """
    for name in wrt:
        if name not in WRT:
            raise DerivationError(f"wrt={name!r}: expected one of {', '.join(WRT)}")
    check_size(spec, max_terms, wrt)
    want_v, want_k = "input" in wrt, "weight" in wrt

    # One walk over the forward terms: sum them per output, and file each term under the
    # variables it contains (the sparsity: no other variable has a non-zero derivative).
    sums: dict[tuple[int, ...], list[Expr]] = {out: [] for out in _outputs(spec)}
    filed: dict[Indexed, list[tuple[tuple[int, ...], Expr]]] = defaultdict(list)
    for term in forward_terms(spec):
        product = term.expr
        sums[term.out].append(product)
        if want_v:
            filed[term.value].append((term.out, product))
        if want_k:
            filed[term.weight].append((term.out, product))
    forward = {
        out: Add(b[out[0]], *terms) if spec.bias else Add(*terms) for out, terms in sums.items()
    }
    total = sum(len(v) for v in filed.values())
    done = 0

    upstream = {out: G[out] for out in sums}

    def gradient(var: Indexed) -> Expr:
        nonlocal done
        parts = filed.get(var, ())
        grad = Add(*[upstream[out] * diff(product, var) for out, product in parts])
        done += len(parts)
        if progress is not None and parts:
            progress(done, total)
        return grad

    c_in, h, w = spec.input
    o_count, _, kh, kw = spec.kernel
    _, ho, wo = spec.output_shape
    grads: dict[str, Elements] = {}
    if want_v:
        grads["grad_input"] = {
            (c, u, v): gradient(V[c, u, v])
            for c in range(c_in) for u in range(h) for v in range(w)
        }
    if want_k:
        grads["grad_weight"] = {
            (o, c, i, j): gradient(K[o, c, i, j])
            for o in range(o_count) for c in range(c_in) for i in range(kh) for j in range(kw)
        }
    if "bias" in wrt and spec.bias:
        # b[o] is one term of each Z[o, y, x]: dZ/db[o] is the derivative of that term.
        grads["grad_bias"] = {
            (o,): Add(*[upstream[(o, y, x)] * diff(b[o], b[o])
                        for y in range(ho) for x in range(wo)])
            for o in range(o_count)
        }
    return LayerExprs(spec, forward, **grads)


def variable(spec: LayerSpec, wrt: str, index: tuple[int, ...]) -> Indexed:
    """The SymPy element ``V[...]``, ``K[...]`` or ``b[...]`` at a 0-based index (checked)."""
    base, shape = {
        "input": (V, spec.input),
        "weight": (K, spec.kernel),
        "bias": (b, spec.kernel[:1]),
    }[wrt]
    if len(index) != len(shape) or not all(0 <= i < n for i, n in zip(index, shape)):
        raise DerivationError(
            f"element {index}: {base} has shape {tuple(shape)}, so an element takes "
            f"{len(shape)} indices with 0 <= index < extent (0-based)"
        )
    if wrt == "bias" and not spec.bias:
        raise DerivationError("element of b: the spec has no bias (--no-bias)")
    return base[index]


@dataclass(frozen=True)
class ChainStep:
    """One summand ``dZ[out]/dx * dJ/dZ[out]`` of the chain rule, before and after diff."""

    out: tuple[int, int, int]
    derivative: Expr  # the unevaluated Derivative(Z[out], x)
    factor: Expr  # its value, dZ[out]/dx
    upstream: Expr  # G[out]


def chain_rule(spec: LayerSpec, var: Indexed, only_nonzero: bool = False) -> list[ChainStep]:
    """The chain-rule expansion of ``dJ/dvar`` over every output element (seed 000's form).

    Every output ``z`` contributes ``dZ[z]/dvar * G[z]``; ``factor`` is ``sympy.diff`` of the
    forward expression of ``Z[z]``. With ``only_nonzero`` the outputs that do not read ``var``
    are left out.
    """
    forward = forward_exprs(spec)
    steps = []
    for out, expr in forward.items():
        factor = diff(expr, var)
        if only_nonzero and factor == S.Zero:
            continue
        steps.append(ChainStep(out, Derivative(Z[out], var), factor, G[out]))
    return steps
