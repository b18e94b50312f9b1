"""The compact forms of a document: each pass as correlations of whole matrices.

The index formulas use the matrices' names (``\\bar{V}_c``, ``G^{\\uparrow}_o``, ...); when
the layer's matrices are small enough (``MatrixForms.printable``) they are written out too,
as seed 003's (B.18) and (B.26). The sentences that say what each form is are the template's;
this module says which of them apply (``content.Compact``).
"""

from __future__ import annotations

from collections.abc import Sequence

from sympy import IndexedBase

from ..geometry import tap_index, window_span
from ..spec import LayerSpec
from ..symbols import G, K, V, Z, b
from .content import Compact, Edge, Form, Sizes, Where
from .matrix_forms import MatrixForms
from .notation import Letters
from .printer import Row, sum_rows, tex
from .selection import shown_channels, shown_pairs


def _edge(n: int) -> Edge:
    """``n`` zero rows on one side, or, negative, ``-n`` rows cut off."""
    return Edge(abs(n), n < 0, abs(n) == 1)


class _Compact:
    """The names and flags the compact forms share, for one layer."""

    def __init__(self, spec: LayerSpec, lt: Letters, forms: MatrixForms):
        self.spec, self.lt, self.forms = spec, lt, forms
        self.op = lt.nt.correlate
        self.conv = spec.mode == "convolution"
        self.dilated = spec.dilation != (1, 1)
        self.printable = forms.printable()
        top, _, left, _ = spec.pads
        self.plain_v = top == left == 0 and forms.vbar(0).shape == spec.input[1:]
        self.plain_g = spec.stride == (1, 1)
        self.vbar = lt.name(V, "@" if self.plain_v else r"\bar{@}", ["c"])
        self.gup = lt.name(G, "@" if self.plain_g else r"@^{\uparrow}", ["o"])
        self.kern = lt.name(K, r"\tilde{@}" if self.conv else "@", ["o", "c"])

    def lhs(self, array: IndexedBase, letters: Sequence[str]) -> str:
        """``dJ/dV_c`` with a channel slice named by letters."""
        name = self.lt.name(array, "@", letters)
        return rf"\frac{{\partial {tex(self.lt.loss)}}}{{\partial {name}}}"

    def forward(self) -> Form:
        """``Z_o = b_o + sum_c (vbar_c * K_{o,c})``, every s-th position."""
        lt, spec = self.lt, self.spec
        strided = r"\big\rvert_{\text{every } s\text{-th}}" if not self.plain_g else ""
        bias = f"{lt.name(b, '@', ['o'])} + " if spec.bias else ""
        sum_c = r"\sum_{c} " if spec.input[0] > 1 else ""
        return Form(f"{lt.name(Z, '@', ['o'])} = {bias}{sum_c}\\left({self.vbar} {self.op} "
                    f"{self.kern}\\right){strided}")

    def grad_weight(self) -> Form:
        """``dJ/dK_{o,c}``: the valid correlation of V with G, per channel pair."""
        lt, forms, dh = self.lt, self.forms, self.spec.dilation[0]
        body = f"{self.vbar} {self.op} {self.gup}"
        if self.dilated:
            body = rf"\left({body}\right)\big\rvert_{{\text{{every }} d\text{{-th}}}}"
        if self.conv:
            body = rf"\operatorname{{rot180}}\left({body}\right)"
        displays = []
        for o, c in shown_pairs(*self.spec.kernel[:2]) if self.printable else ():
            body_m = f"{lt.full(forms.vbar(c))} {self.op} {lt.full(forms.gup(o))}"
            if self.dilated:
                body_m = (rf"\left({body_m}\right)\big\rvert_{{\text{{rows, columns }} "
                          rf"{lt.base}, {lt.base}+{dh}, \ldots}}")
            if self.conv:
                body_m = rf"\operatorname{{rot180}}\left({body_m}\right)"
            displays.append(f"{lt.dj(lt.el(K, (o, c)))} = {body_m}")
        return Form(f"{self.lhs(K, ['o', 'c'])} = {body}", displays)

    def grad_input(self) -> Form:
        """``dJ/dV_c``: the full correlation of the stride-dilated, zero-padded G with the
        rotated kernel, summed over output channels."""
        lt, forms, n_out = self.lt, self.forms, self.spec.kernel[0]
        ghat = lt.name(G, r"\hat{@}", ["o"])
        sum_o = r"\sum_{o} " if n_out > 1 else ""
        displays = []
        for c in shown_channels(self.spec.input[0]) if self.printable and n_out <= 2 else ():
            parts = [f"{lt.full(forms.ghat(o))} {self.op} {lt.full(forms.rot(o, c))}"
                     for o in range(n_out)]
            displays.append(f"{lt.dj(lt.el(V, (c,)))} = " + " + ".join(parts))
        return Form(rf"{self.lhs(V, ['c'])} = {sum_o}{ghat} {self.op} "
                    rf"\operatorname{{rot180}}({self.kern})", displays)

    def grad_bias(self) -> Form:
        """``dJ/db_o``: the sum of G over every output position."""
        lt = self.lt
        _, ho, wo = self.spec.output_shape
        rows: list[Row] = []
        for o in shown_channels(self.spec.kernel[0]) if self.printable else ():
            items = [(o, y, x) for y in range(ho) for x in range(wo)]
            rows += sum_rows(lt.dj(lt.el(b, (o,))), items, lambda t: tex(lt.el(G, t)),
                             end=".")
        y_, x_ = lt.nt.out_idx
        return Form(f"{self.lhs(b, ['o'])} = \\sum_{{{y_},{x_}}} "
                    f"{lt.name(G, '@', ['o', y_, x_])}", rows=rows)

    def edges(self) -> tuple[Edge, Edge, Edge, Edge]:
        """Zero rows above and below, columns left and right, of ``ghat``."""
        c_in, h, w = self.spec.input
        _, _, kh, kw = self.spec.kernel
        _, ho, wo = self.spec.output_shape
        (sh, sw), (dh, dw) = self.spec.stride, self.spec.dilation
        q_r, q_c = self.forms.q_rows, self.forms.q_cols
        below = h + window_span(kh, dh) - 1 - q_r - (tap_index(ho - 1, 0, sh, dh, 0) + 1)
        right = w + window_span(kw, dw) - 1 - q_c - (tap_index(wo - 1, 0, sw, dw, 0) + 1)
        return _edge(q_r), _edge(below), _edge(q_c), _edge(right)


def compact(spec: LayerSpec, lt: Letters, forms: MatrixForms, checked_on: Where) -> Compact:
    """The compact forms of ``spec``, with its matrices when they are small enough;
    ``checked_on``: where ``forms`` were checked (said when the matrices are not printed)."""
    cf = _Compact(spec, lt, forms)
    c_in, h, w = spec.input
    n_out, _, kh, kw = spec.kernel
    _, ho, wo = spec.output_shape
    plain = cf.plain_g and not cf.dilated and not any(spec.pads)
    return Compact(
        printable=cf.printable, checked_on=checked_on,
        multi_c=c_in > 1, multi_o=n_out > 1, pairs=n_out * c_in > 1,
        padded_v=not cf.plain_v, strided=not cf.plain_g, dilated=cf.dilated,
        convolution=cf.conv, bias=spec.bias,
        vbar=cf.vbar, v_c=lt.name(V, "@", ["c"]), kern=cf.kern,
        k_oc=lt.name(K, "@", ["o", "c"]), gup=cf.gup, g_o=lt.name(G, "@", ["o"]),
        ghat=lt.name(G, r"\hat{@}", ["o"]), first=lt.base, edges=cf.edges(),
        sizes=Sizes((ho, wo), (kh, kw), (h, w)) if plain else None,
        forward=cf.forward(), grad_weight=cf.grad_weight(), grad_input=cf.grad_input(),
        grad_bias=cf.grad_bias() if spec.bias else None,
    )
