"""Seed 001's worked example: the layer with numbers, every number checked before it is printed.

``values`` is a path to a JSON object, or a dict, of arrays by DESIGN's names ``V``, ``K``,
``b``, ``G`` (nested lists; leading extents of 1 may be left out: seed 001's 3x3 input for
``V`` of shape (1, 3, 3)), read exactly by ``derive.values`` (integers stay integers, decimals
become rationals). One more key is allowed: ``lr``, the SGD step size alpha, a positive
number; it is taken out before the arrays are read, and with ``G`` it adds the step
``K <- K - alpha dJ/dK`` (and ``b <- b - alpha dJ/db``). Seed 001's example::

    {"V": [[1, 6, 2], [5, 3, 1], [7, 0, 4]], "K": [[1, 2], [-1, 0]]}

gives ``Z = [[8, 7], [4, 5]]`` (and ``[[7, 5], [11, 3]]`` in convolution mode).

The numbers are substituted into the explicit derivation (``derive.gradients.derive_layer``):
the forward elements, and with ``G`` the gradient elements. Arrays not given stay symbolic
(no ``b``: every output keeps ``+ b``; no ``G``: no gradient numbers). Every entry is
compared with the NumPy reference (``derive.reference``, float64) before it is printed; an
entry that still holds symbols is compared at integer values of them (drawn once, with a
fixed seed), with the reference run on the same integers. A mismatch raises
``DerivationError``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
from sympy import Add, Expr, Indexed, Integer, Rational

from .. import reference
from .. import values as values_io
from ..errors import DerivationError, LatexError, SpecError
from ..forward import kernel_element, window
from ..gradients import DEFAULT_MAX_TERMS, LayerExprs, derive_layer
from ..spec import LayerSpec
from ..symbols import G, K, V, Z, b
from .content import ArrayLine, Example
from .notation import Letters
from .printer import Row, sum_rows, tex, width
from .selection import shown_channels, shown_pairs

#: The key of the SGD step size in ``values`` (not an array).
LR = "lr"
#: The arrays of a layer, in the order the document names them.
NAMES = ("V", "K", "b", "G")
#: Every output is written term by term up to this many; beyond, the first of each output
#: channel shown and the last one.
ALL_LINES = 4
#: Relative tolerance of the comparison with the float64 reference, on the sum of the
#: terms' magnitudes (float64 rounds each of at most a few thousand terms by 1.1e-16).
RTOL = 1e-10
#: A result this wide (``printer.width``) goes on its own line after the sum.
INLINE_RESULT = 10

Values = str | Path | dict[str, Any]


@dataclass(frozen=True)
class Numbers:
    """``values`` read for one layer: ``{element: number}`` of the arrays given (``given``,
    DESIGN's names) and the SGD step size (None when not given)."""

    subs: dict[Expr, Expr]
    given: tuple[str, ...]
    lr: Expr | None


def read_values(spec: LayerSpec, source: Values) -> Numbers:
    """Read ``source`` for ``spec``; SpecError names the key, the rule and the value.

    Raises LatexError (before any other work) for a layer too large to substitute into
    every element of its explicit derivation.
    """
    if spec.n_terms > DEFAULT_MAX_TERMS:
        raise LatexError(
            f"values: a worked example substitutes the numbers into every element of the "
            f"explicit derivation, and {spec.describe()} has {spec.n_terms:,} forward terms, "
            f"more than {DEFAULT_MAX_TERMS:,}")
    if not isinstance(source, (str, Path, dict)):
        raise SpecError(f"values: expected a JSON file's path or a dict of arrays by name, "
                        f"got {type(source).__name__}")
    data = dict(values_io.read(source))
    lr = data.pop(LR, None)
    arrays = values_io.layer_arrays(spec)
    expected = f"expected some of {', '.join(n for n in NAMES if n in arrays)}, and {LR}"
    for name in data:
        if name == "b" and not spec.bias:
            raise SpecError("--values: b: the layer has no bias (bias=False); leave b out")
        if name not in arrays:
            raise SpecError(f"--values: unknown array {name!r}; {expected} (the SGD step "
                            f"size)")
    if not data:
        raise SpecError(f"--values: no array given; {expected}")
    step = None
    if lr is not None:
        if isinstance(lr, bool) or not isinstance(lr, (int, float)) \
                or not math.isfinite(lr) or lr <= 0:
            raise SpecError(f"--values: {LR} (the SGD step size alpha) must be a positive "
                            f"number, got {lr!r}")
        step = Integer(lr) if isinstance(lr, int) else Rational(str(lr))
    subs = values_io.substitutions(data, arrays)
    return Numbers(subs, tuple(n for n in NAMES if n in data), step)


def _indices(shape: Sequence[int]) -> list[tuple[int, ...]]:
    return list(np.ndindex(*shape))


class _Reference:
    """The NumPy reference of the layer at the given numbers, float64; arrays not given get
    integer values from -9 to 9 (``probe``), which are also substituted into the entries
    that hold their symbols before the comparison."""

    def __init__(self, spec: LayerSpec, numbers: Numbers):
        self.spec, self.checked = spec, 0
        rng = np.random.default_rng(0)
        self.probe: dict[Expr, Expr] = {}
        full: dict[str, np.ndarray] = {}
        for name, (base, shape) in values_io.layer_arrays(spec).items():
            cells = [base[index] for index in _indices(shape)]
            if name in numbers.given:
                exact = [numbers.subs[cell] for cell in cells]
            else:
                exact = [Integer(int(n)) for n in rng.integers(-9, 10, len(cells))]
                self.probe.update(zip(cells, exact))
            full[name] = np.array([float(n) for n in exact], dtype=np.float64).reshape(shape)
        self.want = self._passes(full)
        self.scale = self._passes({name: np.abs(a) for name, a in full.items()})
        self.full = full

    def _passes(self, a: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        spec, v, g = self.spec, a["V"][None], a["G"][None]
        out = {"forward": reference.forward(spec, v, a["K"], a.get("b"))[0],
               "grad_weight": reference.grad_weight(spec, v, g),
               "grad_input": reference.grad_input(spec, a["K"], g)[0]}
        if spec.bias:
            out["grad_bias"] = reference.grad_bias(spec, g)
        return out

    def check(self, what: str, index: tuple[int, ...], value: Expr, want: float,
              scale: float) -> None:
        """``value`` (symbols of arrays not given at their probe values) against ``want``."""
        got = value.xreplace(self.probe)
        if not got.is_number or abs(float(got) - want) > RTOL * (1 + scale):
            raise DerivationError(
                f"worked example: {what}{list(index)} of {self.spec.describe()} is {value} by "
                f"the derivation{' at ' + str(got) if got != value else ''}, but the NumPy "
                f"reference gives {want!r}")
        self.checked += 1

    def check_pass(self, name: str, elements: dict[tuple[int, ...], Expr]) -> None:
        for index, value in elements.items():
            self.check(name, index, value, float(self.want[name][index]),
                       float(self.scale[name][index]))


def _factor(lt: Letters, value: Expr) -> str:
    """One factor of a product: a number (in parentheses when negative) or a symbol."""
    text = tex(lt.show(value))
    return f"({text})" if value.is_number and value.is_negative else text


def _line(lt: Letters, lhs: str, items: list[tuple[Expr, ...]], value: Expr,
          last: bool) -> list[Row]:
    """``lhs = a . b + ... = value``, each factor a number or, not given, a symbol."""
    rows = sum_rows(lhs, items, lambda t: r" \cdot ".join(_factor(lt, f) for f in t))
    result, end = tex(lt.show(value)), "." if last else ","
    if len(rows) == 1 and not rows[0].terms and width(result) <= INLINE_RESULT:
        return [replace(rows[0], right=f"{rows[0].right} = {result}", end=end)]
    return [*rows, Row("", f"= {result}", end=end)]


def _outputs_shown(spec: LayerSpec) -> list[tuple[int, int, int]]:
    n_out, ho, wo = spec.output_shape
    if n_out * ho * wo <= ALL_LINES:
        return _indices(spec.output_shape)
    return sorted({*((o, 0, 0) for o in shown_channels(n_out)), (n_out - 1, ho - 1, wo - 1)})


def _forward_lines(spec: LayerSpec, lt: Letters, numbers: Numbers,
                   exprs: LayerExprs) -> list[Row]:
    """A few outputs, each product ``kernel . input`` of its window with the numbers in, as
    seed 001's first line; the products are the derivation's forward element, checked."""
    rows: list[Row] = []
    picks = _outputs_shown(spec)
    for n, (o, y, x) in enumerate(picks):
        items: list[tuple[Expr, ...]] = [
            (kernel_element(spec, o, c, i, j), V[c, u, v])
            for i, j, u, v in window(spec, y, x) for c in range(spec.input[0])]
        items += [(b[o],)] if spec.bias else []
        derived = exprs.forward[(o, y, x)]
        if Add(*[math.prod(t) for t in items]) != derived:
            raise DerivationError(f"worked example: the window of Z{[o, y, x]} of "
                                  f"{spec.describe()} is not the derived element {derived}")
        rows += _line(lt, tex(lt.el(Z, (o, y, x))),
                      [tuple(f.xreplace(numbers.subs) for f in t) for t in items],
                      derived.xreplace(numbers.subs), n == len(picks) - 1)
    return rows


def _gradient_lines(spec: LayerSpec, lt: Letters, numbers: Numbers,
                    exprs: LayerExprs) -> list[Row]:
    """The first element of each gradient, each term ``dZ/dx . G`` (the chain rule's order)
    with the numbers in."""
    rows: list[Row] = []
    firsts = [("grad_weight", K, (0, 0, 0, 0)), ("grad_input", V, (0, 0, 0))]
    firsts += [("grad_bias", b, (0,))] if spec.bias else []
    for n, (name, array, index) in enumerate(firsts):
        derived = getattr(exprs, name)[index]
        items = []
        for term in sorted(Add.make_args(derived) if derived != 0 else (),
                           key=lambda t: [g.indices for g in t.atoms(Indexed) if g.base == G]):
            (g,) = [f for f in term.atoms(Indexed) if f.base == G]
            rest = term / g
            items.append((g,) if rest == 1 else (rest, g))
        rows += _line(lt, lt.dj(lt.el(array, index)),
                      [tuple(f.xreplace(numbers.subs) for f in t) for t in items],
                      derived.xreplace(numbers.subs), n == len(firsts) - 1)
    return rows


Entry = Callable[[int, int], Expr]


def _vector(lt: Letters, n: int, entry: Callable[[int], Expr], factor: bool = False) -> str:
    """A bias-shaped array: its number (or symbol) for one output channel, else a column;
    with ``factor``, a negative number in parentheses and a multiplication dot before it."""
    if n > 1:
        return lt.matrix(n, 1, lambda r, _: entry(r))
    return r"\cdot " + _factor(lt, entry(0)) if factor else tex(lt.show(entry(0)))


def _group(eqs: list[str], skipped: int, what: str, per: int = 2) -> list[ArrayLine]:
    """At most ``per`` ``name = matrix`` a display; ``skipped`` channels said after the last."""
    return [ArrayLine(r",\quad ".join(eqs[n:n + per]), skipped if n + per >= len(eqs) else 0,
                      what) for n in range(0, len(eqs), per)]


class _Displays:
    """``name = matrix`` displays of one layer's arrays, per channel (pair) shown."""

    def __init__(self, spec: LayerSpec, lt: Letters):
        self.spec, self.lt = spec, lt
        self.C, self.H, self.W = spec.input
        self.O, _, self.KH, self.KW = spec.kernel
        _, self.HO, self.WO = spec.output_shape

    def per_input(self, name: Callable[[int], str], entry: Callable[[int, int, int], Expr],
                  rows: int, cols: int) -> list[ArrayLine]:
        channels = shown_channels(self.C)
        return _group([f"{name(c)} = {self.lt.matrix(rows, cols, lambda r, s, c=c: entry(c, r, s))}"
                       for c in channels], self.C - len(channels), "input")

    def per_output(self, name: Callable[[int], str], entry: Callable[[int, int, int], Expr],
                   ) -> list[ArrayLine]:
        channels = shown_channels(self.O)
        lt, ho, wo = self.lt, self.HO, self.WO
        return _group([f"{name(o)} = {lt.matrix(ho, wo, lambda r, s, o=o: entry(o, r, s))}"
                       for o in channels], self.O - len(channels), "output")

    def per_pair(self, text: Callable[[int, int, Callable[[Entry], str]], str],
                 per: int = 2) -> list[ArrayLine]:
        """``text(o, c, matrix)``, ``matrix(entry)`` printing a kernel-shaped matrix; ``per``
        a display."""
        pairs = shown_pairs(self.O, self.C)

        def matrix(entry: Entry) -> str:
            return self.lt.matrix(self.KH, self.KW, entry)

        return _group([text(o, c, matrix) for o, c in pairs], self.O * self.C - len(pairs),
                      "pairs", per)


def _given(d: _Displays, numbers: Numbers) -> list[ArrayLine]:
    """The given arrays as matrices of numbers."""
    lt, n = d.lt, numbers.subs
    lines: list[ArrayLine] = []
    if "V" in numbers.given:
        lines += d.per_input(lambda c: tex(lt.el(V, (c,))), lambda c, r, s: n[V[c, r, s]],
                             d.H, d.W)
    if "K" in numbers.given:
        lines += d.per_pair(lambda o, c, m: f"{tex(lt.el(K, (o, c)))} = "
                            f"{m(lambda r, s: n[K[o, c, r, s]])}")
    if "b" in numbers.given:
        lines.append(ArrayLine(f"{tex(lt.el(b, ()))} = {_vector(lt, d.O, lambda o: n[b[o]])}"))
    if "G" in numbers.given:
        lines += d.per_output(lambda o: tex(lt.el(G, (o,))), lambda o, r, s: n[G[o, r, s]])
    return lines


def _gradients(d: _Displays, exprs: dict[str, dict[tuple[int, ...], Expr]]) -> list[ArrayLine]:
    lt, dk, dv = d.lt, exprs["grad_weight"], exprs["grad_input"]
    lines = d.per_pair(lambda o, c, m: f"{lt.dj(lt.el(K, (o, c)))} = "
                       f"{m(lambda r, s: dk[(o, c, r, s)])}")
    lines += d.per_input(lambda c: lt.dj(lt.el(V, (c,))), lambda c, r, s: dv[(c, r, s)],
                         d.H, d.W)
    if d.spec.bias:
        db = exprs["grad_bias"]
        lines.append(ArrayLine(f"{lt.dj(lt.el(b, ()))} = "
                               f"{_vector(lt, d.O, lambda o: db[(o,)])}"))
    return lines


def _step(d: _Displays, numbers: Numbers, exprs: dict[str, dict[tuple[int, ...], Expr]],
          ref: _Reference) -> list[ArrayLine]:
    """One SGD step, ``p <- p - alpha dJ/dp``, for the kernel and the bias, checked."""
    lt, alpha, subs = d.lt, numbers.lr, numbers.subs
    assert alpha is not None
    new: dict[str, dict[tuple[int, ...], Expr]] = {}
    for name, array, grad in (("K", K, "grad_weight"), ("b", b, "grad_bias")):
        if grad not in exprs:
            continue
        new[name] = {i: array[i].xreplace(subs) - alpha * g for i, g in exprs[grad].items()}
        ref_grad, ref_scale = ref.want[grad], ref.scale[grad]
        for i, value in new[name].items():
            ref.check(f"{name} after the step ", i, value,
                      float(ref.full[name][i] - float(alpha) * ref_grad[i]),
                      float(abs(ref.full[name][i]) + abs(float(alpha)) * ref_scale[i]))
    a = tex(alpha)

    def pair(o: int, c: int, m: Callable[[Entry], str]) -> str:
        k = tex(lt.el(K, (o, c)))
        return (rf"{k} \leftarrow {k} - \alpha {lt.dj(lt.el(K, (o, c)))} = "
                f"{m(lambda r, s: K[o, c, r, s].xreplace(subs))} - {a} "
                f"{m(lambda r, s: exprs['grad_weight'][(o, c, r, s)])} = "
                f"{m(lambda r, s: new['K'][(o, c, r, s)])}")

    lines = d.per_pair(pair, per=1)  # three matrices an equation: one equation a display
    if "b" in new:
        bb = tex(lt.el(b, ()))
        lines.append(ArrayLine(
            rf"{bb} \leftarrow {bb} - \alpha {lt.dj(lt.el(b, ()))} = "
            f"{_vector(lt, d.O, lambda o: b[o].xreplace(subs))} - {a} "
            f"{_vector(lt, d.O, lambda o: exprs['grad_bias'][(o,)], factor=True)} = "
            f"{_vector(lt, d.O, lambda o: new['b'][(o,)])}"))
    return lines


def worked_example(spec: LayerSpec, lt: Letters, numbers: Numbers) -> Example:
    """The worked example of ``spec`` at ``numbers`` (``read_values``), every entry checked.

    Raises:
        DerivationError: an entry differs from the NumPy reference.
    """
    derived = derive_layer(spec, max_terms=None)  # the call document_content makes: cached
    ref = _Reference(spec, numbers)
    has_g = "G" in numbers.given
    exact = {name: {i: e.xreplace(numbers.subs) for i, e in elements.items()}
             for name, elements in derived.passes().items() if name == "forward" or has_g}
    for name, elements in exact.items():
        ref.check_pass(name, elements)
    d = _Displays(spec, lt)
    step = _step(d, numbers, exact, ref) if has_g and numbers.lr is not None else []
    lines = _forward_lines(spec, lt, numbers, derived)
    return Example(
        given=list(numbers.given),
        symbolic=[n for n in NAMES if n in values_io.layer_arrays(spec)
                  and n not in numbers.given],
        arrays=_given(d, numbers), lines=lines, shown=len(_outputs_shown(spec)),
        total=math.prod(spec.output_shape),
        output=d.per_output(lambda o: tex(lt.el(Z, (o,))),
                            lambda o, r, s: exact["forward"][(o, r, s)]),
        grad_lines=_gradient_lines(spec, lt, numbers, derived) if has_g else [],
        gradients=_gradients(d, exact) if has_g else [],
        lr=tex(numbers.lr) if numbers.lr is not None else "", step=step,
        checked=ref.checked, probed=bool(ref.probe) and not _all_numbers(exact))


def _all_numbers(exact: dict[str, dict[tuple[int, ...], Expr]]) -> bool:
    return all(e.is_number for elements in exact.values() for e in elements.values())
