"""Seed 004's matrix form of a document's layer: im2col, vec and Kronecker products.

``vector_form`` writes the equations of ``derive.vec_forms`` (seed 004's (3), (4), (5), the
gradients in the same form, and (8), (9) when the kernel covers the whole input) with the
layer's sizes, and, when every matrix has at most ``MAX_VECTOR`` rows and columns, the
matrices themselves. ``document_content`` checks the forms (``VecForms.check``) before this
module prints them: on the layer itself when its matrices are printed.
"""

from __future__ import annotations

from collections.abc import Sequence

from sympy import Matrix

from ..symbols import G, K, V, Z, b
from ..vec_forms import Dok, VecForms, identity, kron, matmul, ones, transpose
from .content import VectorForm, Where
from .notation import Letters
from .printer import Row, tex

#: The matrices are printed when every one has at most this many rows and columns.
MAX_VECTOR = 16


def _bmatrix(cells: Sequence[Sequence[str]]) -> str:
    """A matrix of LaTeX cells, as ``tex`` prints a SymPy matrix."""
    return r"\begin{bmatrix}" + r"\\".join(" & ".join(row) for row in cells) + r"\end{bmatrix}"


def _shape(rows: int, cols: int, zero_one: bool = False) -> str:
    field = r"\{0, 1\}" if zero_one else r"\mathbb{R}"
    return f"{field}^{{{rows} \\times {cols}}}"


class _Names:
    """The symbols of seed 004's equations in the document's letters, with its sizes."""

    def __init__(self, forms: VecForms, lt: Letters):
        self.lt = lt
        self.v = rf"\boldsymbol{{{lt.label(V)}}}"
        self.g = rf"\boldsymbol{{{lt.label(G)}}}"
        self.b = rf"\boldsymbol{{{lt.label(b)}}}"
        self.phi = rf"\phi(\operatorname{{pad}}({self.v}))"
        self.vec_v = rf"\operatorname{{vec}}({self.v})"
        self.vec_g = rf"\operatorname{{vec}}({self.g})"
        n, o = forms.n_win, forms.g.o
        self.eye_n, self.eye_o = rf"\mathcal{{I}}_{{{n}}}", rf"\mathcal{{I}}_{{{o}}}"
        self.one_n = rf"\mathbb{{1}}_{{{n}}}"
        self.pads = r"P_{\text{pad}}^T P_{\phi}^T"
        self.bias_vec = rf" + ({self.one_n} \otimes {self.eye_o}) {self.b}" if forms.spec.bias \
            else ""

    def dj(self, what: str) -> str:
        return rf"\frac{{\partial {tex(self.lt.loss)}}}{{\partial {what}}}"


def _equations(forms: VecForms, nm: _Names) -> tuple[list[Row], list[Row], list[Row]]:
    """The forward rows (3), (4), (5), the gradient rows, and (8), (9) for a dense layer."""
    bias_t = rf" + {nm.b} {nm.one_n}^T" if forms.spec.bias else ""
    forward = [
        Row("S", rf"= W \operatorname{{mat}}(P_{{\phi}} P_{{\text{{pad}}}} {nm.vec_v}){bias_t}",
            end=r" \tag{3}"),
        Row(r"\operatorname{vec}(S)",
            rf"= ({nm.eye_n} \otimes W) \operatorname{{vec}}({nm.phi}){nm.bias_vec}",
            end=r" \tag{4}"),
        Row("", rf"= ({nm.phi}^T \otimes {nm.eye_o}) \operatorname{{vec}}(W){nm.bias_vec}",
            end=r" \tag{5}"),
    ]
    grads = [
        Row(nm.dj("W"), rf"= {nm.g}\, {nm.phi}^T"),
        Row(rf"\operatorname{{vec}}\left({nm.dj('W')}\right)",
            rf"= ({nm.phi} \otimes {nm.eye_o}) {nm.vec_g}"),
        Row(nm.dj(nm.vec_v), rf"= {nm.pads} \operatorname{{vec}}(W^T {nm.g})"),
        Row("", rf"= {nm.pads} ({nm.eye_n} \otimes W^T) {nm.vec_g}"),
    ]
    if forms.spec.bias:
        grads.append(Row(nm.dj(nm.b), rf"= {nm.g} {nm.one_n} = ({nm.one_n}^T \otimes "
                                      rf"{nm.eye_o}) {nm.vec_g}"))
    dense = []
    if forms.covers_input():
        one_bias = rf" + (\mathbb{{1}}_{{1}} \otimes {nm.eye_o}) {nm.b}" if forms.spec.bias \
            else ""
        dense = [
            Row(nm.phi, rf"= P_{{\phi}} P_{{\text{{pad}}}} {nm.vec_v} = "
                        rf"\mathcal{{I}}_{{{forms.n_in}}} {nm.vec_v}"),
            Row("S", rf"= (\mathcal{{I}}_{{1}} \otimes W) {nm.vec_v}{one_bias}", end=r" \tag{8}"),
            Row("", rf"= ({nm.vec_v}^T \otimes {nm.eye_o}) \operatorname{{vec}}(W){one_bias}",
                end=r" \tag{9}"),
        ]
    return forward, grads, dense


def _sizes(forms: VecForms) -> list[tuple[int, int]]:
    """The shapes of ``_names``'s matrices, in that order."""
    g, o, n, taps = forms.g, forms.g.o, forms.n_win, forms.n_taps
    return [(g.c, g.h * g.w), (forms.n_pad, forms.n_in), (taps * n, forms.n_pad), (taps, n),
            (o, taps), (o, n), (o * n, taps * n), (n * o, taps * o)]


def _shapes(forms: VecForms, nm: _Names) -> list[str]:
    """``name \\in \\mathbb{R}^{rows \\times cols}`` for every matrix of the equations."""
    names = [nm.v, r"P_{\text{pad}}", r"P_{\phi}", nm.phi, "W", f"S, {nm.g}",
             rf"{nm.eye_n} \otimes W", rf"{nm.phi}^T \otimes {nm.eye_o}"]
    return [f"{name} \\in {_shape(*size, zero_one=name.startswith('P_'))}"
            for name, size in zip(names, _sizes(forms))]


def printable(forms: VecForms) -> bool:
    """Whether every matrix of the layer's vector form is small enough to print."""
    return max(max(size) for size in _sizes(forms)) <= MAX_VECTOR


def _displays(forms: VecForms, nm: _Names) -> tuple[list[str], list[str]]:
    """The forward pass's matrices and the gradients', written out (0-based symbols shown
    in the document's letters); names stand for the elements the check proved them equal
    to (the output's, the gradients')."""
    lt, g, spec = nm.lt, forms.g, forms.spec

    def full(m: Dok) -> str:
        return lt.full(Matrix(m.sympy()))

    def names(rows: int, cols: int, cell) -> str:
        return _bmatrix([[cell(r, t) for t in range(cols)] for r in range(rows)])

    taps = list(forms.taps())
    s_names = names(g.o, forms.n_win, lambda o, q: tex(lt.el(Z, (o, q % g.ho, q // g.ho))))
    dw_names = names(g.o, forms.n_taps, lambda o, r: lt.dj(lt.el(K, (
        o, taps[r][0], g.kernel_row(taps[r][1]), g.kernel_col(taps[r][2])))))
    inputs = list(forms.inputs())
    dv_names = names(1, forms.n_in, lambda _, k: lt.dj(lt.el(V, inputs[k])))
    bias = rf" + {nm.b} {nm.one_n}^T" if spec.bias else ""
    forward = [f"{nm.v} = {full(forms.input_matrix())}"]
    if forms.p_pad().entries != identity(forms.n_in).entries:
        forward.append(rf"P_{{\text{{pad}}}} = {full(forms.p_pad())}")
    forward += [
        rf"P_{{\phi}} = {full(forms.p_phi())}",
        rf"{nm.phi} = \operatorname{{mat}}(P_{{\phi}} P_{{\text{{pad}}}} {nm.vec_v}) = "
        rf"{full(forms.phi())}",
        rf"W = {full(forms.weight())}",
        rf"S = W {nm.phi}{bias} = {s_names}",
        rf"{nm.eye_n} \otimes W = {full(kron(identity(forms.n_win), forms.weight()))}",
        rf"{nm.phi}^T \otimes {nm.eye_o} = "
        rf"{full(kron(transpose(forms.phi()), identity(g.o)))}",
    ]
    wt_g = matmul(transpose(forms.weight()), forms.upstream())
    grads = [
        f"{nm.g} = {full(forms.upstream())}",
        rf"{nm.dj('W')} = {nm.g}\, {nm.phi}^T = {dw_names}",
        rf"W^T {nm.g} = {full(wt_g)}",
        rf"\left({nm.dj(nm.vec_v)}\right)^T = \left({nm.pads} \operatorname{{vec}}(W^T "
        rf"{nm.g})\right)^T = {dv_names}",
    ]
    if spec.bias:
        grads.append(rf"{nm.g} {nm.one_n} = {full(matmul(forms.upstream(), ones(forms.n_win)))}")
    return forward, grads


def vector_form(forms: VecForms, lt: Letters, checked_on: Where) -> VectorForm:
    """Seed 004's form of ``forms.spec`` for its document; ``checked_on``: where
    ``VecForms.check`` ran (on the layer itself whenever the matrices are printed)."""
    nm = _Names(forms, lt)
    forward, grads, dense = _equations(forms, nm)
    shown = printable(forms)
    displays, grad_displays = _displays(forms, nm) if shown else ([], [])
    padded = forms.p_pad().entries != identity(forms.n_in).entries
    return VectorForm(
        printable=shown, checked_on=checked_on, padded=padded, bias=forms.spec.bias,
        convolution=forms.spec.mode == "convolution", dense=bool(dense),
        v=nm.v, g=nm.g, phi=nm.phi, out=lt.label(Z),
        pad_identity=rf"\mathcal{{I}}_{{{forms.n_in}}}", shapes=_shapes(forms, nm),
        forward=forward, gradients=grads, dense_rows=dense, displays=displays,
        grad_displays=grad_displays)
