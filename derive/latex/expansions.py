"""The derivation of each element a document shows, checked before it is printed.

For every element selected: the forward sum; for a gradient element, seed 000's chain rule
``dJ/dx = sum_z dZ[z]/dx * dJ/dZ[z]`` with each factor evaluated by ``sympy.diff``, then the
simplified result; for an input element also seed 000's reading of its constraint sums
(which ``(l, m)`` satisfy ``(l-1)s + m = j``). Each is checked against the proven index form
(``derive.proof``) and counted; a mismatch raises ``DerivationError``.

Large layers: with more than ``ALL_OUTPUTS_LIMIT`` outputs, a chain rule walks only the
outputs that read the element, and a long sum is printed elided (only its printed terms are
differentiated; the number of terms and each printed term are checked against the form).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from typing import Any

from sympy import Add, Derivative, Expr, Indexed, Mul, Sum, Symbol, diff, expand

from ..errors import DerivationError
from ..forward import forward_exprs, kernel_element, window
from ..geometry import Geometry, gather_index
from ..passes import PASS_NAMES
from ..proof import index_forms
from ..spec import LayerSpec
from ..symbols import G, K, V, Z, b
from .content import AxisReading, Block, TapReading
from .notation import Letters
from .printer import Row, elide, product, sum_rows, tex

#: The chain rule lists every output, zero factors included, up to this many outputs.
ALL_OUTPUTS_LIMIT = 9

#: A chain rule's steps: each output read, with its factor dZ/dx (None: not printed).
Steps = list[tuple[tuple[int, int, int], Expr | None]]


def taps(pos: int, pad: int, stride: int, dil: int, n_taps: int,
         n_out: int) -> Iterator[tuple[int, int]]:
    """Kernel taps ``t`` and outputs ``y`` (0-based) with ``y*stride + t*dil - pad == pos``."""
    for t in range(n_taps):
        q = gather_index(pos, t, stride, dil, pad)
        if q is not None and 0 <= q < n_out:
            yield t, q


def _factors(term: Expr) -> frozenset[tuple[Any, tuple[int, ...]]] | None:
    """A product of array elements as the ``(base, indices)`` of its factors, as
    ``IndexForm.term_indices`` gives a term; None for anything else."""
    factors = Mul.make_args(term)
    if not all(isinstance(f, Indexed) and all(i.is_Integer for i in f.indices)
               for f in factors):
        return None
    return frozenset((f.base, tuple(int(i) for i in f.indices)) for f in factors)


class Expansions:
    """The expansions of one document, and the count of elements checked per pass.

    Attributes:
        checked: elements checked per pass, and ``reading`` for constraint readings.
        forward: every output's forward sum when there are at most ``ALL_OUTPUTS_LIMIT``
            outputs (the chain rules then list them all), else None.
    """

    def __init__(self, spec: LayerSpec, letters: Letters):
        self.spec, self.lt, self.base = spec, letters, letters.base
        self.C, self.H, self.W = spec.input
        self.O, _, self.KH, self.KW = spec.kernel
        _, self.HO, self.WO = spec.output_shape
        (self.sh, self.sw), (self.dh, self.dw) = spec.stride, spec.dilation
        self.top, _, self.left, _ = spec.pads
        self.g = Geometry.of(spec)
        self.forms = index_forms(spec)
        self.eval = {name: form.evaluator() for name, form in self.forms.items()}
        self.terms = {name: form.term_indices() for name, form in self.forms.items()}
        self.checked = dict.fromkeys((*PASS_NAMES, "reading"), 0)
        small = self.O * self.HO * self.WO <= ALL_OUTPUTS_LIMIT
        self.forward = forward_exprs(spec) if small else None

    # -- general formulas ------------------------------------------------------------------

    def general(self, name: str) -> Row:
        """The proven index form of one pass, written with the document's letters."""
        form, lt = self.forms[name], self.lt
        letters = lt.letters()
        singles = {s: 0 for s, n in (*form.free, *form.sums) if n == 1}
        body: Expr = product(*[lt.letter_el(f.base, f.indices, singles) for f in form.factors])
        for s, n in reversed(form.sums):
            if n > 1:
                body = Sum(body, (letters[s], self.base, n - 1 + self.base))
        target = {"forward": Z, "grad_input": V, "grad_weight": K, "grad_bias": b}[name]
        lhs = lt.letter_el(target, [s for s, _ in form.free], singles)
        right = tex(body)
        if form.constant is not None:
            right = tex(lt.letter_el(b, form.constant.indices, singles)) + " + " + right
        return Row(tex(lhs) if name == "forward" else lt.dj(lhs), "= " + right)

    def constraint(self, out_l: str, tap_l: str, stride: int, dil: int, pad: int) -> str:
        """Left side of seed 000's constraint ``(l-1) s + m = j`` with this axis' numbers:
        ``(l-1) s + (m-1) d + 1 - p`` (1-based) or ``l s + m d - p`` (0-based), the dilation
        and padding parts written only when they are not 1 and 0."""
        if self.base == 1:
            text = f"({out_l} - 1) \\cdot {stride} + "
            text += f"({tap_l} - 1) \\cdot {dil} + 1" if dil != 1 else tap_l
        else:
            text = f"{out_l} \\cdot {stride} + " + (f"{tap_l} \\cdot {dil}" if dil != 1
                                                     else tap_l)
        return text + (f" - {pad}" if pad else "")

    def constraint_sum(self) -> str:
        """Seed 000's equation (3) for this layer: dJ/dV as sums under constraints."""
        nt, lt, B = self.lt.nt, self.lt, self.base
        c, o = Symbol("c", integer=True), Symbol("o", integer=True)
        u, v = (Symbol(n, integer=True) for n in nt.in_idx)
        (l_, m_), (n_, q_) = ((Symbol(a, integer=True), Symbol(t, integer=True))
                              for a, t in (nt.row_pair, nt.col_pair))
        tap_r, tap_c = self.g.kernel_row(m_ - B), self.g.kernel_col(q_ - B)
        kern = lt.el(K, (o - B, c - B, tap_r, tap_c))
        grad = lt.el(G, (o - B, l_ - B, n_ - B))
        lhs = lt.dj(lt.el(V, (c - B, u - B, v - B)))
        sums = []
        for on, (a, t), pos, stride, dil, pad in (
            (lt.rows_on, nt.row_pair, u, self.sh, self.dh, self.top),
            (lt.cols_on, nt.col_pair, v, self.sw, self.dw, self.left),
        ):
            if on:
                cond = self.constraint(a, t, stride, dil, pad)
                sums.append(rf"\sum_{{\substack{{{a},\,{t} \\ \text{{s.t.}} \\ "
                            rf"{cond} = {tex(pos)}}}}}")
        if self.O > 1:
            sums.append(rf"\sum_{{o={B}}}^{{{self.O - 1 + B}}}")
        return f"{lhs} = {' '.join(sums)} {tex(product(kern, grad))}"

    # -- checks ----------------------------------------------------------------------------

    def _check(self, name: str, index: tuple[int, ...], expr: Expr) -> None:
        want = self.eval[name](index)
        if expr != want and expand(expr - want) != 0:
            raise DerivationError(
                f"{name}{list(index)} of {self.spec.describe()}: the expansion gives {expr} "
                f"but the proven index form gives {want}")
        self.checked[name] += 1

    def _check_steps(self, name: str, index: tuple[int, ...], steps: Steps,
                     value: bool = False) -> Expr | None:
        """Check a chain rule against the proven index form; return the index form's value
        (for an elided chain rule only with ``value``, else None).

        Complete (no ``None`` factor): its sum must equal the form. Elided (factors only for
        the terms printed): the form must have as many terms as there are steps, and every
        printed ``factor * G`` must be one of them. The elided check compares the factors'
        indices (``IndexForm.term_indices``): building the whole SymPy sum of a long form
        only to look terms up in it took most of a large document's time.
        """
        if all(f is not None for _, f in steps):
            result = Add(*[f * G[out] for out, f in steps])
            self._check(name, index, result)
            return result
        found = self.terms[name](index)
        terms = {frozenset(term) for term in found}
        wrong = [f * G[out] for out, f in steps
                 if f is not None and _factors(f * G[out]) not in terms]
        if len(terms) != len(steps) or len(found) != len(steps) or wrong:
            raise DerivationError(
                f"{name}{list(index)} of {self.spec.describe()}: the chain rule has "
                f"{len(steps)} terms (printed terms not in the index form: {wrong}) but the "
                f"proven index form has {len(terms)}")
        self.checked[name] += 1
        return self.eval[name](index) if value else None

    # -- per-element expansions ------------------------------------------------------------

    def forward_rows(self, out: tuple[int, int, int], last: bool) -> list[Row]:
        """``Z[out]`` as the sum of its window's products (and the bias), checked."""
        o, y, x = out
        lt = self.lt
        products = [(kernel_element(self.spec, o, cc, i, j), V[cc, uu, vv])
                    for i, j, uu, vv in window(self.spec, y, x) for cc in range(self.C)]
        expr = Add(*[k * v for k, v in products], *([b[o]] if self.spec.bias else []))
        self._check("forward", out, expr)
        items: list[Any] = list(products) + ([b[o]] if self.spec.bias else [])

        def fmt(item: Any) -> str:
            if isinstance(item, tuple):
                return tex(product(lt.show(item[0]), lt.show(item[1])), "times")
            return tex(lt.show(item))

        return sum_rows(tex(lt.el(Z, out)), items, fmt, end="." if last else ",")

    def reads(self, var: Indexed) -> list[tuple[tuple[int, int, int], Callable[[], Expr]]]:
        """The outputs whose forward sum holds ``var``, each with a function giving that one
        product term (made only for the terms printed: a long sum elides most of them)."""
        spec, out = self.spec, []
        if var.base == V:
            cc, uu, vv = (int(t) for t in var.indices)
            for o in range(self.O):
                for ti, y in taps(uu, self.top, self.sh, self.dh, self.KH, self.HO):
                    for tj, x in taps(vv, self.left, self.sw, self.dw, self.KW, self.WO):
                        out.append(((o, y, x), lambda o=o, ti=ti, tj=tj:
                                    kernel_element(spec, o, cc, ti, tj) * var))
        elif var.base == K:
            o, cc, i, j = (int(t) for t in var.indices)
            ti, tj = self.g.kernel_row(i), self.g.kernel_col(j)
            for y in range(self.HO):
                uu = self.g.input_row(y, ti)
                for x in range(self.WO):
                    vv = self.g.input_col(x, tj)
                    if 0 <= uu < self.H and 0 <= vv < self.W:
                        out.append(((o, y, x), lambda uu=uu, vv=vv: var * V[cc, uu, vv]))
        else:
            o = int(var.indices[0])
            out = [((o, y, x), lambda: var) for y in range(self.HO) for x in range(self.WO)]
        return sorted(out, key=lambda t: t[0])

    def _steps(self, var: Indexed) -> Steps:
        """The chain rule's outputs and factors ``dZ/dvar``: with few outputs all of them
        (``diff`` of each whole forward sum); else only those that read ``var`` (``diff`` of
        the one term holding it), and of a long sum only the terms printed."""
        if self.forward is not None:
            return [(out, diff(z, var)) for out, z in self.forward.items()]
        reads = self.reads(var)
        printed = {out for out, _ in (t for t in elide(reads) if t is not None)}
        return [(out, diff(term(), var) if out in printed else None) for out, term in reads]

    def _chain_rows(self, shown_var: Expr, steps: Steps) -> tuple[list[Row], Expr]:
        """The chain rule's rows: the sum over outputs, each factor written, each evaluated,
        and (when zeros drop out or factors are 1) the simplified result; and ``dZ/dvar``
        in the document's letters, with an output of letters."""
        lt = self.lt
        out_syms = [Symbol("o", integer=True), *(Symbol(n, integer=True)
                                                 for n in lt.nt.out_idx)]
        on = lt.keep[Z]
        zsym = lt.bases[Z][tuple(s for s, k in zip(out_syms, on) if k)]
        chain: Expr = product(Derivative(zsym, shown_var), Derivative(lt.loss, zsym))
        for s, n, k in reversed(list(zip(out_syms, (self.O, self.HO, self.WO), on))):
            if k:
                chain = Sum(chain, (s, self.base, n - 1 + self.base))
        rows = [Row(lt.dj(shown_var), "= " + tex(chain))]
        nonzero = [(out, f) for out, f in steps if f != 0]

        def derivative(step: tuple[Any, Expr]) -> str:
            z = lt.el(Z, step[0])
            return tex(product(Derivative(z, shown_var), Derivative(lt.loss, z)))

        def evaluated(step: tuple[Any, Expr]) -> str:
            return tex(product(lt.show(step[1]), lt.el(G, step[0])), "dot")

        def simplified(step: tuple[Any, Expr]) -> str:
            if step[1] == 1:
                return tex(lt.el(G, step[0]))
            return evaluated(step)

        if steps:
            rows += sum_rows("", steps, derivative)
            rows += sum_rows("", steps, evaluated)
        if len(nonzero) != len(steps) or any(f == 1 for _, f in nonzero) or not steps:
            rows += sum_rows("", nonzero, simplified)
        rows[-1] = dataclasses.replace(rows[-1], end=".")  # after the count of an elided sum
        return rows, Derivative(zsym, shown_var)

    def gradient_block(self, name: str, var: Indexed) -> Block:
        """Seed 000's expansion of ``dJ/dvar``: chain rule, each factor evaluated, result,
        checked; for an input element also its constraint reading."""
        index = tuple(int(t) for t in var.indices)
        shown_var = self.lt.show(var)
        steps = self._steps(var)
        result = self._check_steps(name, index, steps, value=name == "grad_input")
        rows, factor = self._chain_rows(shown_var, steps)
        note, other = "", 0
        if self.forward is None:
            other = self.O * self.HO * self.WO - len(steps)
            note = "unread" if not steps else "partial" if other else ""
        reading, reading_rows = ([], []) if name != "grad_input" else self.reading(var, result)
        return Block(var=tex(shown_var), rows=rows, note=note, shown=len(steps), other=other,
                     factor=tex(factor), reading=reading, reading_rows=reading_rows)

    def reading(self, var: Indexed, result: Expr) -> tuple[list[AxisReading], list[Row]]:
        """Seed 000's reading of the constraint sums of ``dJ/dV[c, u, v]``, per axis, and
        the sum it gives, checked against ``result``: the chain rule's sum, or for an elided
        sum the proven index form that every printed chain-rule term belongs to."""
        cc, uu, vv = (int(t) for t in var.indices)
        lt, B = self.lt, self.base
        rows = list(taps(uu, self.top, self.sh, self.dh, self.KH, self.HO))
        cols = list(taps(vv, self.left, self.sw, self.dw, self.KW, self.WO))
        terms = [(kernel_element(self.spec, o, cc, m, q), G[o, row, n])
                 for o in range(self.O) for m, row in rows for q, n in cols]
        check = Add(*[k * g for k, g in terms])
        if check != result and expand(check - result) != 0:
            raise DerivationError(
                f"grad_input{[cc, uu, vv]} of {self.spec.describe()}: the constraint sums "
                f"give {check} but the chain rule gives {result}")
        self.checked["reading"] += 1
        axes = []
        for on, (out_l, tap_l), pos, pad, stride, dil, n_taps, found in (
            (lt.rows_on, lt.nt.row_pair, uu, self.top, self.sh, self.dh, self.KH, rows),
            (lt.cols_on, lt.nt.col_pair, vv, self.left, self.sw, self.dw, self.KW, cols),
        ):
            if on:
                which = dict(found)
                axes.append(AxisReading(
                    self.constraint(out_l, tap_l, stride, dil, pad), pos + B, tap_l, out_l,
                    [TapReading(t + B, which[t] + B if t in which else None)
                     for t in range(n_taps)]))
        sums = sum_rows(lt.dj(lt.show(var)), terms,
                        lambda t: tex(product(lt.show(t[0]), lt.show(t[1])), "dot"), end=".")
        return axes, sums
