"""Per-element gradients through the chain rule, differentiated term by term.

For every variable ``x`` (an element of ``V``, ``K`` or ``b``)::

    dJ/dx = sum over outputs z of  G[z] * dZ[z]/dx

Only the outputs whose window reads ``x`` have a non-zero ``dZ[z]/dx``, and within such a
``Z[z]`` only the terms that contain ``x``. So the forward pass is walked once, term by
term; each term is filed under the symbols it contains; and each gradient is the sum of
``G[z] * d(term)/dx`` over the terms filed under ``x``. A term is ``weight * value``, two
different elements, so its derivative is the other factor (what ``sympy.diff`` returns for
it); the products and sums are built in SymPy's canonical form directly
(``derive.forward.product`` and ``total``). The cost grows with the number of forward terms,
not with outputs x inputs. ``chain_rule`` still differentiates with ``sympy.diff``, and
tests/test_derive_speed_paths.py checks ``derive_layer`` against ``sympy.diff`` of the whole
forward expressions.
"""

from __future__ import annotations

import atexit
import contextlib
import functools
import gc
import itertools
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from sympy import Derivative, Expr, Indexed, IndexedBase, S, diff

from .errors import DerivationError
from .forward import Keyed, forward_exprs, keyed, outputs, product, total, window
from .geometry import Geometry
from .passes import WRT
from .spec import LayerSpec
from .symbols import G, K, V, Z, b

#: Default ceiling on forward terms for an explicit, per-element derivation (about 20 s of
#: work, and about 1 GB of expressions).
DEFAULT_MAX_TERMS = 1_000_000

#: Measured cost per forward term of ``corrgen derive``, differentiating and printing
#: (docs/derivation-speed.md): 451,584 terms took about 10 s, as JSON or as text.
SECONDS_PER_TERM = 0.00002

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
        progress: called as ``progress(done, total)`` while the forward terms are walked and
            differentiated, and the gradient sums built; it counts the terms made (a forward
            term and its derivatives) and the terms summed.

    Returns:
        LayerExprs; gradients not requested are left empty. ``grad_bias`` is empty when the
        spec has no bias.
    """
    for name in wrt:
        if name not in WRT:
            raise DerivationError(f"wrt={name!r}: expected one of {', '.join(WRT)}")
    check_size(spec, max_terms, wrt)
    walk = _Walk(spec, "input" in wrt, "weight" in wrt, progress)
    grads: dict[str, Elements] = {}
    if spec.n_terms > EXIT_FREEZE_TERMS:
        _spare_exit_collections()
    with without_gc():
        forward = walk.run()
        for name, filed in (("grad_input", walk.into_v), ("grad_weight", walk.into_k)):
            if filed is not None:
                grads[name] = walk.sums(filed)
    if "bias" in wrt and spec.bias:
        # b[o] is one term of each Z[o, y, x], with derivative 1: dJ/db[o] sums G[o, :, :].
        _, ho, wo = spec.output_shape
        grads["grad_bias"] = {
            (o,): total([walk.g[o, y, x] for y in range(ho) for x in range(wo)])
            for o in range(spec.kernel[0])
        }
    return LayerExprs(spec, forward, **grads)


#: Forward terms above which a derivation's expressions are left out of the collections the
#: interpreter runs as it exits (see ``_spare_exit_collections``).
EXIT_FREEZE_TERMS = 50_000


@functools.cache  # once per process
def _spare_exit_collections() -> None:
    """Freeze the collector's view of every live object when the interpreter exits.

    ``derive_layer``'s cache keeps the last derivations until the end, and the interpreter's
    final collections walk every object still alive: for a few hundred thousand terms that
    is several seconds after the last line is printed, to find no cycle in expressions that
    hold none. Frozen objects are skipped; they are still freed when the process ends.
    """
    atexit.register(gc.freeze)


@contextlib.contextmanager
def without_gc() -> Iterator[None]:
    """Python's cyclic garbage collector paused while millions of expressions are made.

    SymPy expressions hold no reference cycles, so the collector finds nothing to free;
    yet every few hundred allocations it scans the young objects, and ever more often all
    of them: with it running, a large derivation takes more than twice as long. It is
    switched back on afterwards only if it was on before.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _indices(shape: tuple[int, ...]) -> Iterator[tuple[int, ...]]:
    """Every index of an array of ``shape``, in row-major order."""
    return itertools.product(*map(range, shape))


class _Table(dict):
    """The elements of ``base`` (an array of ``shape``) with their sort keys, each made once,
    the first time it is asked for (each costs ~20 us). Made for every index up front, a
    kernel of 811 x 811 taps on a 3x3 input (padding 811, 9 forward terms) took 14 s."""

    def __init__(self, base: IndexedBase, shape: tuple[int, ...]) -> None:
        super().__init__()
        self.base, self.shape = base, shape

    def __missing__(self, index: tuple[int, ...]) -> Keyed:
        if len(index) != len(self.shape) or not all(
                0 <= i < n for i, n in zip(index, self.shape)):
            raise KeyError(index)
        self[index] = element = keyed(self.base, index)
        return element


class _Walk:
    """One walk over the forward terms, differentiating each as it goes.

    Term ``K[o, c, ki, kj] * V[c, u, v]`` of ``Z[o, y, x]`` is a product of two different
    elements, so (SymPy's product rule, ``Mul._eval_derivative``) its derivative by the value
    is the weight and by the weight the value: it adds ``G[o, y, x] * K[o, c, ki, kj]`` to
    ``dJ/dV[c, u, v]`` and ``G[o, y, x] * V[c, u, v]`` to ``dJ/dK[o, c, ki, kj]``, and no
    other variable's derivative of it is non-zero. tests/test_derive_speed_paths.py checks
    the result against ``sympy.diff`` of the whole forward expressions.
    """

    def __init__(self, spec: LayerSpec, want_v: bool, want_k: bool,
                 progress: Callable[[int, int], None] | None) -> None:
        self.spec, self.progress = spec, progress
        self.v, self.k = _Table(V, spec.input), _Table(K, spec.kernel)
        self.g = _Table(G, spec.output_shape)
        self.b = _Table(b, spec.kernel[:1]) if spec.bias else {}
        self.into_v = {index: [] for index in _indices(spec.input)} if want_v else None
        self.into_k = {index: [] for index in _indices(spec.kernel)} if want_k else None
        # Work for the progress, in terms: the walk makes a product per forward term and
        # one per gradient it enters; then each gradient sums its terms. The two phases take
        # about as long per term, so the ETA holds from the start.
        self.per_term = 1 + want_v + want_k
        self.done, self.work = 0, spec.n_terms * (2 * self.per_term - 1)

    def run(self) -> Elements:
        """``Z[o, y, x]`` for every output; fills ``into_v`` and ``into_k`` on the way."""
        spec, geo = self.spec, Geometry.of(self.spec)
        channels, (_, ho, wo) = spec.input[0], spec.output_shape
        taps = {(y, x): [(geo.kernel_row(i), geo.kernel_col(j), u, v)
                         for i, j, u, v in window(spec, y, x)]
                for y in range(ho) for x in range(wo)}
        vt, kt, gt, into_v, into_k = self.v, self.k, self.g, self.into_v, self.into_k
        forward: Elements = {}
        for o, y, x in outputs(spec):
            gz = gt[o, y, x]
            terms = [self.b[(o,)]] if spec.bias else []
            for ki, kj, u, v in taps[y, x]:
                for c in range(channels):
                    weight, value = kt[o, c, ki, kj], vt[c, u, v]
                    terms.append(product(weight, value))
                    if into_v is not None:
                        into_v[c, u, v].append(product(gz, weight))
                    if into_k is not None:
                        into_k[o, c, ki, kj].append(product(gz, value))
            forward[o, y, x] = total(terms)
            self._advance((len(terms) - spec.bias) * self.per_term)
        return forward

    def sums(self, filed: dict[tuple[int, ...], list[Keyed]]) -> Elements:
        """Each variable's gradient: the sum of the terms filed under it (0 for none)."""
        out: Elements = {}
        for index in list(filed):
            terms = filed.pop(index)  # let the keys go as the sums are built
            out[index] = total(terms)
            self._advance(len(terms))
        return out

    def _advance(self, n: int) -> None:
        self.done += n
        if self.progress is not None and n:
            self.progress(self.done, self.work)


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
