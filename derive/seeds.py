"""The seeds' formulas, transcribed literally, and the catalogue of every slip in them.

Two things live here.

**Transcriptions.** Functions that build, for a spec, the SymPy expressions a seed's formula
gives, indices translated to corrgen's 0-based ``V[c,y,x]``, ``K[o,c,i,j]``, ``G[o,y,x]``. The
tests hold them against the derivation (``derive_layer``), the independent oracle: the
formulas are typed in from the documents, the derivation comes from ``sympy.diff``.

* Seed 000, equations (1)-(3), stride ``s``, 1-based (``seed000_forward``,
  ``seed000_grad_weight``, ``seed000_grad_input``)::

      Z[i,j,k]       = sum_{l,m,n} V[l,(j-1)s+m,(k-1)s+n] K[i,l,m,n]
      dJ/dK[i,j,k,l] = sum_{m,n} G[i,m,n] V[j,(m-1)s+k,(n-1)s+l]
      dJ/dV[i,j,k]   = sum_{l,m: (l-1)s+m=j} sum_{n,p: (n-1)s+p=k} sum_q K[q,i,m,p] G[q,l,n]

  All three are right for every stride, channel count and kernel shape without padding or
  dilation (the document has neither).
* Seed 002: the weight gradient of section 3 (``seed002_grad_weight``) is right; its strided
  input gradient (``seed002_grad_input``) is right only when the stride divides the kernel;
  sections 1-2 (``seed002_backward``) and the gradient step (``seed002_update``).
* Seed 003: the 'full' output size (``seed003_full_size``), convolution (1.2)
  (``seed003_convolution``), the correlation layer (2.15) (``seed003_pre_activation``) and
  the pooling layer's error (2.20) (``seed003_pool_delta``). Appendix B (B.4, B.7, B.17,
  B.23, B.26) is right; B.23 reads kernel elements outside the kernel (``w_{-1,0}``), which
  are zero.

**The catalogue.** ``SLIPS`` holds one frozen ``Slip`` per slip: the seed, where it is (as the
seed labels it), what the seed ``says``, what is ``right`` and ``why``. ``Slip.check()`` runs
its demonstration and returns ``Evidence``: the seed's version, the corrected version and an
oracle computed another way (``sympy.diff`` of the composed expression, ``derive_layer`` or
``derive.reference`` for layer formulas, or plain arithmetic on the seed's own numbers). The
seed's version disagrees with the oracle, the corrected one agrees. ``CONFIRMED`` holds the
statements that look suspicious but hold, checked the same way. In brief:

* 000 ``000-k-axis``: "k is y axis (channel)" in ``V_{i,j,k}``: k is the column index.
  ``000-kernel-letters``: "K_{i,j,k,m}" then "l is columns": the kernel is ``K_{i,j,k,l}``.
* 001 ``001-y11``, ``001-y12``: ``k13``, ``k14`` (and ``x14``) where a 2x2 kernel on a 3x3 input
  has ``k21 x.. + k22 x..``. ``001-scalar-by-matrix``: "Can we differentiate a scalar with a
  matrix? No": we can, that is ``dE/dK``. ``001-update-what``: the kernel gradients update
  kernels, not "errors". ``001-y-star-dk``: "Y * dE/dK = X * dE/dY" (a 1x1 against a 2x2); it
  is ``dE/dK = X * dE/dY``. ``001-input-range``: ``dE/dx_j`` for ``j = 1..d``; there are n
  inputs. ``001-sum-limit``: ``sum_{i=1}^{n}`` over the outputs; there are d.
  ``001-bce-brackets``: the cross-entropy's sum needs brackets round both terms.
  ``001-pred-label``: ``y*`` is labelled "(pred)"; it is the target, ``y`` the prediction.
  ``001-one-operator``: "I * K = I * rot180(K)" writes one ``*`` for convolution (left) and
  cross-correlation (right).
* 002 ``002-stride-upper``: the upper limit ``KH/stride - 1`` needs a ceiling.
  ``002-channel-order``: section 2's ``w[i',j',f',f]`` swaps the channel roles.
  ``002-padding-interval``: "x not in [0, output height]" must exclude the upper end.
* 003 ``003-symmetric``: ``h_F = w_F`` makes a filter square, not symmetric.
  ``003-fits-four``: a 2x2 filter fits 16 times on a 5x5 image, not four.
  ``003-eq1.2``: ``F(h_F - m, w_F - n)`` is off by one. ``003-eq1.3``: needs a floor.
  ``003-full-size``: ``h_I + h_F/2 + 1`` is ``h_I + h_F - 1``. ``003-activation-range``: ReLU
  is not bounded by 1. ``003-pool-even``: pooling needs the size divisible by P, not even.
  ``003-output-layer``: ``f`` dropped from the output layer. ``003-eq1.5-classes``: sums to
  ``C - 1`` over K classes. ``003-concave``: convex. ``003-x-length``: ``x^l`` has length I,
  not K. ``003-eq2.9``: ``y^{l-1}`` needs a transpose. ``003-eq2.10``: the output's ``h'``
  is missing. ``003-eq2.12``: the sum is over i, not k. ``003-eq2.15``, ``003-eq2.20``: sums
  to ``d_I`` and ``c`` (0-based: one plane too many). ``003-upstream-pooling``: the pooling
  layer is down-stream. ``003-A.4``: ``w1 w2`` for ``w2 w3``. ``003-B.3-letter``: ``w_j`` for
  ``w_k``. ``003-B.6-shape``: a row equated to a column. ``003-B.11``: ``y_03`` for ``y_02``.
  ``003-B.24-brackets``: a sum without brackets round its terms. ``003-B.14-B.19``: the chain
  rule without its sum over ``(i, j)``.
* 004: no slip; its Kronecker product and its vec identities (4)-(9) hold (``CONFIRMED``).

Confirmed, not slips: seed 000's eq. (1); seed 001's ``sigma' = sigma (1 - sigma)``, its
cross-entropy derivative, its rot180(K) and convolution [7 5; 11 3], and its one bias per
output element
(``b11, b12, ...``: an untied bias, which corrgen's networks offer as ``untied``); seed 003's
A.3, (2.14) and B.26; seed 004's Kronecker product and (4)-(9).
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import numpy as np
from sympy import (
    Add,
    Expr,
    Function,
    Indexed,
    IndexedBase,
    Matrix,
    Max,
    Rational,
    Sum,
    Symbol,
    derive_by_array,
    diff,
    exp,
    expand,
    limit,
    log,
    nan,
    oo,
    simplify,
    sympify,
    zoo,
)
from sympy.core.function import AppliedUndef
from sympy.matrices import MatrixBase, ShapeError

from . import reference
from .gradients import derive_layer
from .spec import LayerSpec
from .symbols import G, K, V, b

Elements = dict[tuple[int, ...], Expr]


# -- evidence and the catalogue's records -----------------------------------------------------


def agree(a: Any, c: Any) -> bool:
    """Whether two values are the same: dicts key by key, matrices and arrays entry by entry
    (shapes equal), SymPy expressions symbolically, numbers to 1e-12; NaN and infinities
    agree only with themselves (an infinity), None only with None."""
    if isinstance(a, dict) or isinstance(c, dict):
        return (isinstance(a, dict) and isinstance(c, dict) and a.keys() == c.keys()
                and all(agree(a[k], c[k]) for k in a))
    if isinstance(a, MatrixBase) or isinstance(c, MatrixBase):
        return (isinstance(a, MatrixBase) and isinstance(c, MatrixBase) and a.shape == c.shape
                and all(agree(x, y) for x, y in zip(a, c)))
    if isinstance(a, np.ndarray) or isinstance(c, np.ndarray):
        x, y = np.asarray(a, dtype=float), np.asarray(c, dtype=float)
        return x.shape == y.shape and bool(np.allclose(x, y, rtol=1e-12, atol=1e-12))
    exact = (str, tuple, bool)
    if a is None or c is None or isinstance(a, exact) or isinstance(c, exact):
        return type(a) is type(c) and a == c
    if isinstance(a, Expr) or isinstance(c, Expr):
        x, y = sympify(a), sympify(c)
        if x == y:
            return True
        if any(e.has(oo, -oo, zoo, nan) for e in (x, y)):
            return False
        d = expand(x - y)
        if d == 0:
            return True
        if d.is_number:
            scale = abs(complex(x)) if x.is_number else 1.0
            return abs(complex(d)) <= 1e-12 * max(1.0, scale)
        # One point where the difference is clearly not zero settles it, without simplify.
        point = _probe(d)
        if point is not None and abs(point) > 1e-9:
            return False
        return simplify(d) == 0
    x, y = float(a), float(c)
    return math.isclose(x, y, rel_tol=1e-12, abs_tol=1e-12)


def _probe(expr: Expr) -> complex | None:
    """``expr`` at one point, every symbol and array element a different number in (0, 1/2]
    (inside the domain of the logarithms and divisions here); None when it holds an unknown
    function or a sum (whose bound index must not be replaced), or the point is singular."""
    if expr.atoms(AppliedUndef) or expr.has(Sum):
        return None
    values = {e: Rational(2 * k + 1, 4 * k + 5)
              for k, e in enumerate(sorted(expr.atoms(Indexed), key=str))}
    expr = expr.xreplace(values)
    expr = expr.xreplace({s: Rational(2 * k + 1, 4 * k + 5)
                          for k, s in enumerate(sorted(expr.free_symbols, key=str), len(values))})
    value = expr.evalf()
    return complex(value) if value.is_number and not value.has(oo, -oo, zoo, nan) else None


@dataclass(frozen=True, eq=False)
class Evidence:
    """One demonstration: the seed's version, the corrected version, and the oracle."""

    seed: Any
    right: Any
    oracle: Any

    @property
    def seed_agrees(self) -> bool:
        return agree(self.seed, self.oracle)

    @property
    def right_agrees(self) -> bool:
        return agree(self.right, self.oracle)


@dataclass(frozen=True)
class Slip:
    """A slip in a seed document: where, what it says, what is right and why.

    ``check()`` demonstrates it: ``Evidence`` whose ``seed`` disagrees with the oracle and
    whose ``right`` agrees.
    """

    name: str
    seed: str
    where: str
    says: str
    right: str
    why: str
    demo: Callable[[], Evidence] = field(repr=False, compare=False)

    def check(self) -> Evidence:
        return self.demo()


@dataclass(frozen=True)
class Confirmation:
    """A seed statement that holds, with ``check()`` returning ``Evidence`` whose ``seed``
    (the statement) agrees with the oracle (``right`` is the statement again)."""

    name: str
    seed: str
    where: str
    says: str
    why: str
    demo: Callable[[], Evidence] = field(repr=False, compare=False)

    def check(self) -> Evidence:
        return self.demo()


def _indices(exprs: Any, base: IndexedBase) -> set[tuple[int, ...]]:
    """The indices of every element of ``base`` that the expressions read."""
    return {tuple(int(i) for i in s.indices) for e in exprs for s in e.atoms(Indexed)
            if s.base == base}


_TERM = re.compile(r"([a-z])(\d)(\d)")


def seed_terms(text: str, base: int = 1, letters: str = "kx") -> Expr:
    """A sum of products as seeds 001 and 003 write them, ``"k11 x12 + k12 x13"``
    (``base=1``) or ``"w00 x02 + ..."`` (``base=0``): the kernel letter (``k`` or ``w``,
    first of ``letters``) is ``K[0, 0, r, c]`` and the input letter ``V[0, r, c]``. A name past
    a 2x2 kernel or the input (``k13``, ``x14``) stays a symbol of its own, outside the layer.
    """
    kernel, image = letters
    terms = []
    for term in text.split("+"):
        found = {name: (int(r) - base, int(c) - base) for name, r, c in _TERM.findall(term)}
        if set(found) != {kernel, image}:
            raise ValueError(f"text: each term needs one {kernel}.. and one {image}..; "
                             f"got {term.strip()!r}")
        terms.append(K[(0, 0, *found[kernel])] * V[(0, *found[image])])
    return Add(*terms)


# -- transcriptions -------------------------------------------------------------------------


def _plain(spec: LayerSpec, seed: str) -> tuple[int, int, int, int, int, int, int, int]:
    if spec.pads != (0, 0, 0, 0) or spec.dilation != (1, 1) or spec.mode != "correlation":
        raise ValueError(f"{seed} covers unpadded, undilated correlation only; got {spec}")
    if spec.stride[0] != spec.stride[1]:
        raise ValueError(f"{seed} has one stride s for rows and columns; got {spec.stride}")
    c, h, w = spec.input
    o, _, kh, kw = spec.kernel
    return c, h, w, o, kh, kw, spec.out_h, spec.out_w


def _choice(name: str, value: str, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise ValueError(f"{name}={value!r}: expected one of {', '.join(map(repr, allowed))}")


def seed000_forward(spec: LayerSpec) -> Elements:
    """Seed 000, eq. (1): ``Z[i,j,k] = sum_{l,m,n} V[l,(j-1)s+m,(k-1)s+n] K[i,l,m,n]`` (no
    bias: the seed has none)."""
    c, _, _, o, kh, kw, ho, wo = _plain(spec, "seed 000")
    s = spec.stride[0]
    return {
        (i - 1, j - 1, k - 1): Add(*[
            V[l - 1, (j - 1) * s + m - 1, (k - 1) * s + n - 1] * K[i - 1, l - 1, m - 1, n - 1]
            for l in range(1, c + 1) for m in range(1, kh + 1) for n in range(1, kw + 1)  # noqa: E741
        ])
        for i in range(1, o + 1) for j in range(1, ho + 1) for k in range(1, wo + 1)
    }


def seed000_grad_weight(spec: LayerSpec) -> Elements:
    """Seed 000, eq. (2): ``dJ/dK[i,j,k,l] = sum_{m,n} G[i,m,n] V[j,(m-1)s+k,(n-1)s+l]``."""
    c, _, _, o, kh, kw, ho, wo = _plain(spec, "seed 000")
    s = spec.stride[0]
    out: Elements = {}
    for i in range(1, o + 1):
        for j in range(1, c + 1):
            for k in range(1, kh + 1):
                for l in range(1, kw + 1):  # noqa: E741 (the seed's letter)
                    out[(i - 1, j - 1, k - 1, l - 1)] = Add(*[
                        G[i - 1, m - 1, n - 1] * V[j - 1, (m - 1) * s + k - 1, (n - 1) * s + l - 1]
                        for m in range(1, ho + 1) for n in range(1, wo + 1)
                    ])
    return out


def seed000_grad_input(spec: LayerSpec) -> Elements:
    """Seed 000, eq. (3): the sums over ``(l, m)`` with ``(l-1)s + m = j`` (and columns)."""
    c, h, w, o, kh, kw, ho, wo = _plain(spec, "seed 000")
    s = spec.stride[0]
    out: Elements = {}
    for i in range(1, c + 1):
        for j in range(1, h + 1):
            for k in range(1, w + 1):
                terms = []
                for l in range(1, ho + 1):  # noqa: E741 (the seed's letter)
                    for m in range(1, kh + 1):
                        if (l - 1) * s + m != j:
                            continue
                        for n in range(1, wo + 1):
                            for p in range(1, kw + 1):
                                if (n - 1) * s + p != k:
                                    continue
                                terms += [K[q - 1, i - 1, m - 1, p - 1] * G[q - 1, l - 1, n - 1]
                                          for q in range(1, o + 1)]
                out[(i - 1, j - 1, k - 1)] = Add(*terms)
    return out


def seed000_update(spec: LayerSpec, V_: Any, K_: Any, G_: Any, alpha: float) -> np.ndarray:
    """Seed 000's training step ``K <- K - alpha * grad_K J`` with the gradient of eq. (2),
    at the numbers ``V_`` (C, H, W), ``K_`` (O, C, KH, KW) and ``G_ = dJ/dZ`` (O, HO, WO)."""
    values = {V[i]: float(x) for i, x in np.ndenumerate(np.asarray(V_))}
    values.update({G[i]: float(x) for i, x in np.ndenumerate(np.asarray(G_))})
    grad = np.zeros(spec.kernel)
    for index, expr in seed000_grad_weight(spec).items():
        grad[index] = float(expr.xreplace(values))
    return np.asarray(K_, dtype=float) - alpha * grad


def seed002_grad_weight(spec: LayerSpec) -> Elements:
    """Seed 002, section 3 gradient step: ``sum_{i',j'} delta[i',j',f] f[i+i'*s, j+j'*s, k]``."""
    c, _, _, o, kh, kw, ho, wo = _plain(spec, "seed 002")
    s = spec.stride[0]
    return {
        (f, k, i, j): Add(*[G[f, ii, jj] * V[k, i + ii * s, j + jj * s]
                            for ii in range(ho) for jj in range(wo)])
        for f in range(o) for k in range(c) for i in range(kh) for j in range(kw)
    }


def seed002_grad_input(spec: LayerSpec, upper: str = "floor") -> Elements:
    """Seed 002, section 3 backward pass, ``delta^l[i,j,f]`` (activation factor left out).

    Args:
        upper: ``"floor"`` sums ``i'`` up to ``KH // stride - 1`` as the seed writes it;
            ``"ceil"`` up to ``ceil(KH / stride) - 1``, the corrected reading. Kernel taps
            past the kernel and output positions outside the output read zero.
    """
    _choice("upper", upper, ("floor", "ceil"))
    c, h, w, o, kh, kw, ho, wo = _plain(spec, "seed 002")
    s = spec.stride[0]
    rounding = (lambda a, d: a // d) if upper == "floor" else (lambda a, d: math.ceil(a / d))
    out: Elements = {}
    for f in range(c):
        for i in range(h):
            for j in range(w):
                terms = []
                for ii in range(rounding(kh, s)):
                    for jj in range(rounding(kw, s)):
                        ki, kj = i % s + ii * s, j % s + jj * s
                        yi, xj = i // s - ii, j // s - jj
                        if not (ki < kh and kj < kw and 0 <= yi < ho and 0 <= xj < wo):
                            continue
                        for fp in range(o):
                            terms.append(K[fp, f, ki, kj] * G[fp, yi, xj])
                out[(f, i, j)] = Add(*terms)
    return out


def seed002_backward(spec: LayerSpec, order: str = "right",
                     interval: str = "half-open") -> Elements:
    """Seed 002, sections 1-2 backward pass (stride 1), activation factor left out::

        delta^l[i,j,f] = sum_{i',j',f'} w^{l+1}[i',j',f',f] delta^{l+1}[i-i', j-j', f']

    with ``delta^{l+1}[x, y] := 0`` outside the output. The forward pass's ``w[i',j',k',f]``
    is corrgen's ``K[f, k', i', j']``.

    Args:
        order: ``"seed"`` reads ``w[i',j',f',f]`` as section 2 writes it (``K[f, f', ...]``);
            ``"right"`` reads ``w[i',j',f,f']`` (``K[f', f, ...]``), as section 3 has it.
        interval: ``"closed"`` keeps ``delta^{l+1}[x, ...]`` for ``x`` in ``[0, HO]`` as the
            seed writes it (``x = HO`` is past the output); ``"half-open"``, ``[0, HO)``.
    """
    _choice("order", order, ("seed", "right"))
    _choice("interval", interval, ("closed", "half-open"))
    c, h, w, o, kh, kw, ho, wo = _plain(spec, "seed 002")
    if spec.stride != (1, 1):
        raise ValueError(f"stride={spec.stride}: seed 002 sections 1-2 have stride 1")
    top_h, top_w = (ho + 1, wo + 1) if interval == "closed" else (ho, wo)

    def weight(f: int, fp: int, ii: int, jj: int) -> Expr:
        return K[f, fp, ii, jj] if order == "seed" else K[fp, f, ii, jj]

    return {
        (f, i, j): Add(*[weight(f, fp, ii, jj) * G[fp, i - ii, j - jj]
                         for ii in range(kh) for jj in range(kw) for fp in range(o)
                         if 0 <= i - ii < top_h and 0 <= j - jj < top_w])
        for f in range(c) for i in range(h) for j in range(w)
    }


def seed002_update(f: Any, w: Any, bias: Any, delta: Any, alpha: float,
                   stride: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Seed 002's gradient step (section 3; sections 1-2 at stride 1), loop by loop::

        w[i,j,k,f] -= alpha * sum_{i',j'} delta[i',j',f] * f[i + i'*stride, j + j'*stride, k]
        b[f]       -= alpha * sum_{i',j'} delta[i',j',f]

    with ``f`` (C, H, W), ``w`` as corrgen's (O, C, KH, KW), ``bias`` (O,) and ``delta``
    (O, HO, WO). Returns the new ``(w, b)``.
    """
    f, w, bias, delta = (np.asarray(a, dtype=float) for a in (f, w, bias, delta))
    new_w, new_b = w.copy(), bias.copy()
    o_count, c_count, kh, kw = w.shape
    _, ho, wo = delta.shape
    for fo in range(o_count):
        for k in range(c_count):
            for i in range(kh):
                for j in range(kw):
                    total = sum(delta[fo, ii, jj] * f[k, i + ii * stride, j + jj * stride]
                                for ii in range(ho) for jj in range(wo))
                    new_w[fo, k, i, j] -= alpha * total
        new_b[fo] -= alpha * sum(delta[fo, ii, jj] for ii in range(ho) for jj in range(wo))
    return new_w, new_b


def seed003_full_size(h_input: int, h_filter: int) -> float:
    """Seed 003's stated size of a 'full' correlation, ``h_I + h_F/2 + 1`` (wrong)."""
    return h_input + h_filter / 2 + 1


def seed003_convolution(spec: LayerSpec, index: str = "seed") -> Elements:
    """Seed 003, eq. (1.2): ``C(i,j) = sum_{m,n} I(i+m, j+n) F(h_F - m, w_F - n)`` on one
    plane; ``index="right"`` reads ``F(h_F - 1 - m, w_F - 1 - n)``. ``F(h_F, .)`` is past the
    filter and stays a symbol of its own."""
    _choice("index", index, ("seed", "right"))
    _, _, _, _, kh, kw, ho, wo = _plain(spec, "seed 003")
    back = 0 if index == "seed" else 1
    return {
        (0, i, j): Add(*[V[0, i + m, j + n] * K[0, 0, kh - back - m, kw - back - n]
                         for m in range(kh) for n in range(kw)])
        for i in range(ho) for j in range(wo)
    }


def seed003_pre_activation(spec: LayerSpec, upper: str = "seed") -> Elements:
    """Seed 003, eq. (2.15) inside ``h``: ``a_j = sum_{i=0}^{d_I} y_i^{l-1} (x) k_{i,j} + b_j``
    (valid correlation); ``upper="right"`` sums to ``d_I - 1``. The plane ``i = d_I`` is past
    the input and stays a symbol of its own."""
    _choice("upper", upper, ("seed", "right"))
    d_in, _, _, o, kh, kw, ho, wo = _plain(spec, "seed 003")
    planes = d_in + 1 if upper == "seed" else d_in
    return {
        (j, y, x): b[j] + Add(*[V[i, y + m, x + n] * K[j, i, m, n] for i in range(planes)
                                for m in range(kh) for n in range(kw)])
        for j in range(o) for y in range(ho) for x in range(wo)
    }


def seed003_pool_delta(spec: LayerSpec, upper: str = "seed") -> Elements:
    """Seed 003, eq. (2.20): ``delta_i = sum_{j=0}^{c} corr2(delta_j, rot180(k_{i,j}), 'full')``
    for the layer ``spec`` downstream (its ``G`` is ``delta^{l+1}``); ``upper="right"`` sums
    to ``c - 1``. Outside the output ``delta^{l+1}`` is zero; the kernel ``j = c`` is past the
    layer and stays a symbol of its own."""
    _choice("upper", upper, ("seed", "right"))
    c_in, h, w, o, kh, kw, ho, wo = _plain(spec, "seed 003")
    kernels = o + 1 if upper == "seed" else o
    out: Elements = {}
    for i in range(c_in):
        for u in range(h):
            for v in range(w):
                # 'full': delta padded by KH-1 rows and KW-1 columns, read against the kernel
                # rotated by 180 degrees.
                out[(i, u, v)] = Add(*[
                    G[j, u + p - (kh - 1), v + q - (kw - 1)] * K[j, i, kh - 1 - p, kw - 1 - q]
                    for j in range(kernels) for p in range(kh) for q in range(kw)
                    if 0 <= u + p - (kh - 1) < ho and 0 <= v + q - (kw - 1) < wo
                ])
    return out


def seed001_bce(target: Any, pred: Any, bind: int | None = None) -> float:
    """Seed 001's binary cross-entropy ``E = -1/n sum_i y*_i log y_i + (1 - y*_i) log(1 - y_i)``
    with ``y* = target`` and ``y = pred``.

    Args:
        bind: None reads the sum round both terms (bracketed, the corrected reading); an
            index reads the line as written: the sum covers ``y* log y`` only, and the second
            term, outside it and outside the ``-1/n``, has its free ``i`` bound to ``bind``.
    """
    t, y = np.asarray(target, dtype=float), np.asarray(pred, dtype=float)
    n = len(t)
    with np.errstate(divide="ignore", invalid="ignore"):
        if bind is None:
            return float(-np.sum(t * np.log(y) + (1 - t) * np.log(1 - y)) / n)
        if not 0 <= bind < n:
            raise ValueError(f"bind={bind}: expected an index 0..{n - 1} of the {n} outputs")
        return float(-np.sum(t * np.log(y)) / n + (1 - t[bind]) * np.log(1 - y[bind]))


# -- seed 000 ---------------------------------------------------------------------------------

#: Seed 000, the left side of eq. (2) as written.
SEED000_EQ2_KERNEL = "K_{i,j,k,l}"


def check_000_k_axis() -> Evidence:
    """The extent of ``V``'s third index ``k``: the seed's "channel" would make it C; eq. (1)
    (transcribed) reads ``V[., ., (k-1)s + n]`` up to the last column, W."""
    spec = LayerSpec(input=(2, 3, 4), kernel=(1, 2, 2, 2))
    read = _indices(seed000_forward(spec).values(), V)
    c, _, w = spec.input
    return Evidence(seed=c, right=w, oracle=max(idx[2] for idx in read) + 1)


def check_000_kernel_letters() -> Evidence:
    """The kernel's index letters: the list's ``K_{i,j,k,m}`` against eq. (2)'s."""
    return Evidence(seed=tuple("ijkm"), right=tuple("ijkl"),
                    oracle=tuple(re.findall(r"[a-z]", SEED000_EQ2_KERNEL.split("_")[1])))


def confirm_000_eq1() -> Evidence:
    """Eq. (1) transcribed against the derivation's forward pass (without its bias), on a
    strided, multi-channel layer."""
    spec = LayerSpec(input=(2, 5, 6), kernel=(2, 2, 2, 3), stride=2, bias=False)
    seed = seed000_forward(spec)
    return Evidence(seed=seed, right=seed, oracle=derive_layer(spec, wrt=("weight",)).forward)


# -- seed 001 ---------------------------------------------------------------------------------

#: Seed 001's worked example: the input, the kernel, and the results the page writes.
SEED001_IMAGE = ((1, 6, 2), (5, 3, 1), (7, 0, 4))
SEED001_KERNEL = ((1, 2), (-1, 0))
SEED001_VALID = ((8, 7), (4, 5))
SEED001_ROT180 = ((0, -1), (2, 1))
SEED001_CONVOLUTION = ((7, 5), (11, 3))
SEED001_FULL = ((0, -1, -6, -2), (2, 8, 7, 1), (10, 4, 5, -3), (14, 7, 8, 4))
SEED001_SPEC = LayerSpec(input=(1, 3, 3), kernel=(1, 1, 2, 2))


def seed001_arrays() -> tuple[np.ndarray, np.ndarray]:
    """Seed 001's image as a batch of one, (1, 1, 3, 3), and its kernel, (1, 1, 2, 2)."""
    return (np.array(SEED001_IMAGE, dtype=float)[None, None],
            np.array(SEED001_KERNEL, dtype=float)[None, None])


def _seed001_output(index: tuple[int, int, int]) -> Expr:
    """The derivation's output ``Z[index]`` without its bias (the page's ``b_ij`` aside)."""
    return derive_layer(SEED001_SPEC).forward[index] - b[0]


def check_001_y11() -> Evidence:
    return Evidence(seed=seed_terms("k11 x11 + k12 x12 + k13 x13 + k14 x14"),
                    right=seed_terms("k11 x11 + k12 x12 + k21 x21 + k22 x22"),
                    oracle=_seed001_output((0, 0, 0)))


def check_001_y12() -> Evidence:
    return Evidence(seed=seed_terms("k11 x12 + k12 x13 + k13 x21 + k14 x22"),
                    right=seed_terms("k11 x12 + k12 x13 + k21 x22 + k22 x23"),
                    oracle=_seed001_output((0, 0, 1)))


def check_001_scalar_by_matrix() -> Evidence:
    """Differentiating the scalar ``E`` by the matrix ``K``: impossible as the page says (None),
    the page's own ``X * dE/dY`` (a valid correlation, written out), and ``sympy``'s
    ``derive_by_array`` of ``E = sum G Z`` (so that ``dE/dY = G``) by the 2x2 ``K``."""
    forward = derive_layer(SEED001_SPEC).forward
    loss = Add(*[G[z] * e for z, e in forward.items()])
    kernel = Matrix(2, 2, lambda i, j: K[0, 0, i, j])
    page = Matrix(2, 2, lambda m, n: Add(*[V[0, y + m, x + n] * G[0, y, x]
                                          for y in range(2) for x in range(2)]))
    return Evidence(seed=None, right=page, oracle=Matrix(derive_by_array(loss, kernel).tolist()))


def check_001_update_what() -> Evidence:
    """The shape of what ``dE/dk_ij`` updates: the errors ``dE/dY`` have the output's shape,
    the kernel its own; ``dE/dK`` (derive.reference) has the kernel's."""
    spec = LayerSpec(input=(1, 4, 4), kernel=(1, 1, 2, 2))
    V_, K_, _, G_ = reference.random_inputs(spec, batch=1)
    return Evidence(seed=G_.shape[2:], right=K_.shape[2:],
                    oracle=reference.grad_weight(spec, V_, G_).shape[2:])


def check_001_y_star_dk() -> Evidence:
    """On the page's numbers with ``E = 1/2 sum Y^2`` (``dE/dY = Y``): the seed's left side
    ``Y * dE/dK``, the corrected ``dE/dK`` (derive.reference.grad_weight) and the right side
    ``X * dE/dY`` (a forward correlation of X with dE/dY)."""
    X, Kn = seed001_arrays()
    Y = reference.forward(SEED001_SPEC, X, Kn)
    dK = reference.grad_weight(SEED001_SPEC, X, Y)
    lhs = reference.forward(LayerSpec(input=(1, 2, 2), kernel=(1, 1, 2, 2)), Y, dK)
    rhs = reference.forward(SEED001_SPEC, X, Y)  # dE/dY = Y read as the kernel
    return Evidence(seed=lhs[0, 0], right=dK[0, 0], oracle=rhs[0, 0])


def _seed001_layer() -> tuple[LayerSpec, np.ndarray, np.ndarray]:
    """A layer with n = 2 inputs and d = 3 outputs, and random ``K`` and ``dE/dY``."""
    spec = LayerSpec(input=(2, 4, 4), kernel=(3, 2, 2, 2))
    _, K_, _, G_ = reference.random_inputs(spec, batch=1, seed=1)
    return spec, K_, G_


def full_convolution(plane: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """``plane *full kernel`` (a true convolution) from derive.reference's forward pass."""
    spec = LayerSpec(input=(1, *plane.shape), kernel=(1, 1, *kernel.shape), padding="full",
                     mode="convolution", bias=False)
    return reference.forward(spec, plane[None, None], kernel[None, None])[0, 0]


def seed001_grad_input(K_: np.ndarray, G_: np.ndarray, outputs: int) -> np.ndarray:
    """Seed 001's ``dE/dx_j = sum_{i=1}^{outputs} dE/dy_i *full K_ij`` for every input j,
    ``K_`` (d, n, KH, KW) and ``G_ = dE/dY`` (1, d, HO, WO)."""
    return np.stack([sum(full_convolution(G_[0, i], K_[i, j]) for i in range(outputs))
                     for j in range(K_.shape[1])])


def check_001_sum_limit() -> Evidence:
    spec, K_, G_ = _seed001_layer()
    n, d = spec.input[0], spec.kernel[0]
    return Evidence(seed=seed001_grad_input(K_, G_, n), right=seed001_grad_input(K_, G_, d),
                    oracle=reference.grad_input(spec, K_, G_)[0])


def check_001_input_range() -> Evidence:
    """How many input gradients ``dE/dx_j`` there are: the seed's ``j = 1..d`` or n."""
    spec, K_, G_ = _seed001_layer()
    n, d = spec.input[0], spec.kernel[0]
    return Evidence(seed=d, right=n, oracle=reference.grad_input(spec, K_, G_).shape[1])


#: A target and a prediction for the cross-entropy checks.
BCE_TARGET = (1.0, 0.0, 1.0)
BCE_PRED = (0.9, 0.2, 0.6)


def _bce_numpy(target: Any, pred: Any) -> float:
    t, y = np.asarray(target), np.asarray(pred)
    return float(np.mean(-(t * np.log(y) + (1 - t) * np.log1p(-y))))


def check_001_bce_brackets() -> Evidence:
    """The line as written (free ``i`` bound to the first output, as the page's next step
    expands it) against the bracketed sum and the mean of the per-output cross-entropies."""
    return Evidence(seed=seed001_bce(BCE_TARGET, BCE_PRED, bind=0),
                    right=seed001_bce(BCE_TARGET, BCE_PRED),
                    oracle=_bce_numpy(BCE_TARGET, BCE_PRED))


def check_001_pred_label() -> Evidence:
    """With ``y*`` the prediction (as labelled) the 0/1 targets land inside the logarithms."""
    return Evidence(seed=seed001_bce(BCE_PRED, BCE_TARGET), right=seed001_bce(BCE_TARGET, BCE_PRED),
                    oracle=_bce_numpy(BCE_TARGET, BCE_PRED))


def _sigmoid(x: Expr) -> Expr:
    return 1 / (1 + exp(-x))


def _sigmoid_prime(x: Expr) -> Expr:
    """``e^{-x} / (1 + e^{-x})^2``, seed 001's form (``confirm_001_sigmoid``)."""
    return exp(-x) / (1 + exp(-x)) ** 2


def confirm_001_sigmoid() -> Evidence:
    """``sigma'(x) = e^{-x}/(1 + e^{-x})^2 = sigma(x)(1 - sigma(x))`` against ``sympy.diff``."""
    x = Symbol("x", real=True)
    oracle = diff(_sigmoid(x), x)
    seed = {"middle": exp(-x) / (1 + exp(-x)) ** 2, "last": _sigmoid(x) * (1 - _sigmoid(x))}
    return Evidence(seed=seed, right=seed, oracle={"middle": oracle, "last": oracle})


def confirm_001_bce_derivative() -> Evidence:
    """``dE/dy_i = 1/n ((1 - y*_i)/(1 - y_i) - y*_i/y_i)`` against ``sympy.diff`` of the
    bracketed cross-entropy, for n = 3."""
    n = 3
    t, y = IndexedBase("t"), IndexedBase("y")
    loss = -Add(*[t[i] * log(y[i]) + (1 - t[i]) * log(1 - y[i]) for i in range(n)]) / n
    seed = {i: ((1 - t[i]) / (1 - y[i]) - t[i] / y[i]) / n for i in range(n)}
    return Evidence(seed=seed, right=seed, oracle={i: diff(loss, y[i]) for i in range(n)})


def confirm_001_rot180() -> Evidence:
    """"I * K = I * rot180(K)" with the page's labels (left: convolution, right:
    cross-correlation): the page's rot180(K) and ``I * rot180(K)`` against NumPy's rotation and
    derive.reference's convolution of the page's image with its kernel."""
    I_, K_ = seed001_arrays()
    conv = reference.forward(SEED001_SPEC.replace(mode="convolution"), I_, K_)[0, 0]
    seed = {"rot180": np.array(SEED001_ROT180), "conv": np.array(SEED001_CONVOLUTION)}
    return Evidence(seed=seed, right=seed,
                    oracle={"rot180": np.rot90(K_[0, 0], 2), "conv": conv})


def check_001_one_operator() -> Evidence:
    """"I * K = I * rot180(K)" with one ``*``: the page's own ``I * K`` (its first worked
    example, [8 7; 4 5]) is not ``I * rot180(K)`` ([7 5; 11 3]); the convolution is, which
    needs a second symbol. Oracle: derive.reference's correlation of I with rot180(K)."""
    I_, K_ = seed001_arrays()
    rotated = np.rot90(K_, 2, axes=(2, 3)).copy()
    oracle = reference.forward(SEED001_SPEC, I_, rotated)[0, 0]
    convolution = reference.forward(SEED001_SPEC.replace(mode="convolution"), I_, K_)[0, 0]
    return Evidence(seed=np.array(SEED001_VALID), right=convolution, oracle=oracle)


def confirm_001_untied_bias() -> Evidence:
    """``dE/db_ij = dE/dy_ij`` with one bias per output element (the page's ``b_11, b_12,
    ...``), against ``sympy.diff`` of ``E`` through ``Y = B + X * K``."""
    B = IndexedBase("B")
    forward = derive_layer(SEED001_SPEC).forward
    loss = Add(*[G[z] * (forward[z] - b[0] + B[z[1:]]) for z in forward])
    return Evidence(seed={z[1:]: G[z] for z in forward}, right={z[1:]: G[z] for z in forward},
                    oracle={z[1:]: diff(loss, B[z[1:]]) for z in forward})


# -- seed 002 ---------------------------------------------------------------------------------


def check_002_stride_upper() -> Evidence:
    """Section 3's input gradient at ``KH = 3, stride = 2``: floor (as written) and ceil."""
    spec = LayerSpec(input=(1, 5, 5), kernel=(1, 1, 3, 3), stride=2)
    return Evidence(seed=seed002_grad_input(spec), right=seed002_grad_input(spec, upper="ceil"),
                    oracle=derive_layer(spec).grad_input)


def check_002_channel_order() -> Evidence:
    spec = LayerSpec(input=(2, 3, 3), kernel=(2, 2, 2, 2))
    return Evidence(seed=seed002_backward(spec, order="seed"), right=seed002_backward(spec),
                    oracle=derive_layer(spec).grad_input)


def check_002_padding_interval() -> Evidence:
    return Evidence(seed=seed002_backward(SEED001_SPEC, interval="closed"),
                    right=seed002_backward(SEED001_SPEC),
                    oracle=derive_layer(SEED001_SPEC).grad_input)


# -- seed 003 ---------------------------------------------------------------------------------


def _positions(size: int, window: int, stride: int = 1) -> int:
    """How many places a window fits along one axis, counted one by one."""
    return sum(1 for start in range(0, size, stride) if start + window <= size)


def check_003_symmetric() -> Evidence:
    """Seed 001's kernel has ``h_F = w_F``: is it then symmetric (``F = F^T``, the seed's
    "i.e."), square, and does it satisfy the premise ``h_F = w_F``?"""
    kernel = np.array(SEED001_KERNEL)
    h_f, w_f = kernel.shape
    return Evidence(seed=bool(np.array_equal(kernel, kernel.T)), right=h_f == w_f,
                    oracle=bool(h_f == w_f))


def check_003_fits_four() -> Evidence:
    """A 2x2 filter on a 5x5 image, stride one: places counted over both axes."""
    places = sum(1 for y in range(5) for x in range(5) if y + 2 <= 5 and x + 2 <= 5)
    return Evidence(seed=4, right=_positions(5, 2) ** 2, oracle=places)


def check_003_eq1_3() -> Evidence:
    """``h_I = 6, h_F = 3, P = 0, S = 2``: eq. (1.3) as written, floored, and counted."""
    h_i, h_f, p, s = 6, 3, 0, 2
    return Evidence(seed=Fraction(h_i - h_f + 2 * p, s) + 1, right=(h_i - h_f + 2 * p) // s + 1,
                    oracle=_positions(h_i + 2 * p, h_f, s))


def check_003_full_size() -> Evidence:
    """Seed 001's example, ``h_I = 3, h_F = 2``, padded by ``h_F - 1`` on each side."""
    h_i, h_f = 3, 2
    return Evidence(seed=seed003_full_size(h_i, h_f), right=h_i + h_f - 1,
                    oracle=_positions(h_i + 2 * (h_f - 1), h_f))


def check_003_convolution() -> Evidence:
    spec = SEED001_SPEC
    conv = derive_layer(spec.replace(mode="convolution")).forward
    return Evidence(seed=seed003_convolution(spec), right=seed003_convolution(spec, "right"),
                    oracle={z: e - b[0] for z, e in conv.items()})


def check_003_activation_range() -> Evidence:
    """The upper end of ReLU's range: 1 as the seed says, against ``sympy.limit``."""
    x = Symbol("x", real=True)
    return Evidence(seed=1, right=oo, oracle=limit(Max(0, x), x, oo))


def check_003_pool_even() -> Evidence:
    """``h_I = 6, P = 4``: admitted by "even", and whether P x P squares tile it."""
    h_i, p = 6, 4
    return Evidence(seed=h_i % 2 == 0, right=h_i % p == 0,
                    oracle=_positions(h_i, p, p) * p == h_i)


def check_003_output_layer() -> Evidence:
    """``y^{L-1}`` at numbers, with ``f`` the sigmoid: the seed's ``W y + b``, ``f(W y + b)``,
    and the seed's own two steps ``a^l = W y + b``, ``y^l = f(a^l)`` in plain floats."""
    w, y, bias = 2.0, 0.5, -0.25
    a = w * y + bias
    return Evidence(seed=w * y + bias, right=_sigmoid(sympify(w) * y + bias),
                    oracle=1 / (1 + math.exp(-a)))


def check_003_eq1_5_classes() -> Evidence:
    """Eq. (1.5)/(1.6) for one sample of K = 3 classes: the number of terms of the sum over k
    (C as written, a letter the page does not fix; K) and of (1.6)'s own right side,
    ``1/2 ||t_n - y_n||^2`` with ``y_n`` in R^K, and that both give its value."""
    t, y = np.array([0.0, 1.0, 0.0]), np.array([0.2, 0.7, 0.1])
    norm = 0.5 * float(np.linalg.norm(t - y) ** 2)
    right = sum((t[k] - y[k]) ** 2 for k in range(len(t))) / 2
    return Evidence(seed={"terms": Symbol("C", integer=True, positive=True), "E": right},
                    right={"terms": len(t), "E": right},
                    oracle={"terms": (t - y).size, "E": norm})


def check_003_concave() -> Evidence:
    """The sign of ``d^2E/dw^2`` for a squared error ``E = 1/2 sum (w x_n - t_n)^2``: concave
    (-1) as written, convex (+1), and ``sympy.diff``."""
    w = Symbol("w", real=True)
    loss = Add(*[(w * x - t) ** 2 for x, t in ((1, 1), (2, 3), (-1, 0))]) / 2
    second = diff(loss, w, 2)
    return Evidence(seed=-1, right=1, oracle=int(np.sign(float(second))))


def check_003_x_length() -> Evidence:
    """The length of ``x^l``: K as written, I, and the columns ``W^{l-1}`` (K x I) multiplies."""
    k_out, i_in = 2, 3
    weights = np.zeros((k_out, i_in))
    return Evidence(seed=k_out, right=i_in, oracle=weights.shape[1])


def _fc_layer(k_out: int = 2, i_in: int = 3) -> tuple[Matrix, Matrix, Matrix]:
    return (Matrix(k_out, i_in, lambda k, i: Symbol(f"w{k}{i}")),
            Matrix(i_in, 1, lambda i, _: Symbol(f"y{i}")),
            Matrix(k_out, 1, lambda k, _: Symbol(f"t{k}")))


def check_003_eq2_9() -> Evidence:
    """``grad E_w = delta^l . y^{l-1}`` with both column vectors (no product exists: None),
    ``delta (y^{l-1})^T``, and ``sympy.diff`` of ``E = 1/2 ||W y - t||^2`` per weight."""
    W, y, t = _fc_layer()
    delta = W * y - t  # (2.10) for the linear output of (2.3)
    loss = ((W * y - t).T * (W * y - t))[0] / 2
    try:
        seed = delta * y
    except ShapeError:
        seed = None
    return Evidence(seed=seed, right=delta * y.T,
                    oracle=Matrix(*W.shape, lambda k, i: diff(loss, W[k, i])))


def check_003_eq2_10() -> Evidence:
    """``delta^{L-1} = dE/da`` with a sigmoid output and the squared error (1.6)."""
    a, t = IndexedBase("a"), IndexedBase("t")
    loss = Add(*[(_sigmoid(a[k]) - t[k]) ** 2 for k in range(2)]) / 2
    return Evidence(
        seed={k: _sigmoid(a[k]) - t[k] for k in range(2)},
        right={k: (_sigmoid(a[k]) - t[k]) * _sigmoid_prime(a[k]) for k in range(2)},
        oracle={k: diff(loss, a[k]) for k in range(2)})


def check_003_eq2_12() -> Evidence:
    """``d a_k^{l+1} / d a_i^l`` for K = 2, I = 3: (2.12)'s middle term (a sum over k)
    differentiated, its right side ``w_ki h'(a_i)``, and ``sympy.diff`` of (2.4)-(2.5)."""
    w, a, h = IndexedBase("w"), IndexedBase("a"), Function("h")
    pairs = [(k, i) for k in range(2) for i in range(3)]
    return Evidence(
        seed={(k, i): diff(Add(*[w[kk, i] * h(a[i]) for kk in range(2)]), a[i]) for k, i in pairs},
        right={(k, i): w[k, i] * diff(h(a[i]), a[i]) for k, i in pairs},
        oracle={(k, i): diff(Add(*[w[k, ii] * h(a[ii]) for ii in range(3)]), a[i])
                for k, i in pairs})


def check_003_eq2_15() -> Evidence:
    spec = LayerSpec(input=(2, 3, 3), kernel=(2, 2, 2, 2))
    return Evidence(seed=seed003_pre_activation(spec), right=seed003_pre_activation(spec, "right"),
                    oracle=derive_layer(spec).forward)


def check_003_eq2_20() -> Evidence:
    spec = LayerSpec(input=(2, 3, 3), kernel=(2, 2, 2, 2))
    return Evidence(seed=seed003_pool_delta(spec), right=seed003_pool_delta(spec, "right"),
                    oracle=derive_layer(spec).grad_input)


def _direction(layer: int, other: int) -> str:
    """Seed 003, section 1: data flow from lower to higher indices, i.e. down-stream."""
    return "down-stream" if other > layer else "up-stream"


def check_003_upstream_pooling() -> Evidence:
    """Where the pooling layer ``l + 1`` lies from the correlation layer ``l``."""
    layer = 3
    return Evidence(seed="up-stream", right="down-stream", oracle=_direction(layer, layer + 1))


def _appendix_a() -> tuple[Expr, tuple[Symbol, ...]]:
    """(A.1)-(A.2): ``E_n = 1/2 sum (y_nk - t_nk)^2``, ``y_n1 = w1 w3 x``, ``y_n2 = w2 w3 x``."""
    w1, w2, w3, x, t1, t2 = names = tuple(Symbol(s) for s in ("w1", "w2", "w3", "x", "t1", "t2"))
    loss = ((w1 * w3 * x - t1) ** 2 + (w2 * w3 * x - t2) ** 2) / 2
    return loss, names


def check_003_a4() -> Evidence:
    loss, (w1, w2, w3, x, t1, t2) = _appendix_a()
    return Evidence(seed=(w1 * w3 * x - t1) * w1 * x + (w1 * w2 * x - t2) * w2 * x,
                    right=(w1 * w3 * x - t1) * w1 * x + (w2 * w3 * x - t2) * w2 * x,
                    oracle=diff(loss, w3))


def confirm_003_a3() -> Evidence:
    loss, (w1, _, w3, x, t1, _) = _appendix_a()
    seed = (w1 * w3 * x - t1) * w3 * x
    return Evidence(seed=seed, right=seed, oracle=diff(loss, w1))


#: Seed 003's one-dimensional example B.1: x = [x0..x3], w = [w0, w1], outputs y0..y2.
SEED003_1D = LayerSpec(input=(1, 1, 4), kernel=(1, 1, 1, 2))


def check_003_b3_letter() -> Evidence:
    """Which weights B.1 depends on: ``w_j`` for the outputs' ``j = 0, 1, 2``, ``w_k`` for
    ``k = 0, 1``, and the kernel indices the derivation's forward pass reads."""
    read = _indices(derive_layer(SEED003_1D).forward.values(), K)
    return Evidence(seed=(0, 1, 2), right=(0, 1), oracle=tuple(sorted(idx[3] for idx in read)))


def check_003_b6_shape() -> Evidence:
    """(B.6): the row ``[d0, d1, d2]`` times B.5's matrix, and the column the left side is."""
    x = Matrix(3, 2, lambda j, k: V[0, 0, j + k])  # (B.5)
    grads = derive_layer(SEED003_1D).grad_weight
    return Evidence(seed=Matrix([[G[0, 0, j] for j in range(3)]]) * x,
                    right=x.T * Matrix([G[0, 0, j] for j in range(3)]),
                    oracle=Matrix([grads[(0, 0, 0, k)] for k in range(2)]))


def check_003_b11() -> Evidence:
    """The output index of B.11's third line: as labelled, corrected, and the index whose
    derived forward expression is that line's right side."""
    line = seed_terms("w00 x02 + w01 x03 + w10 x12 + w11 x13", base=0, letters="wx") + b[0]
    forward = derive_layer(LayerSpec(input=(1, 4, 4), kernel=(1, 1, 2, 2))).forward
    found = [z[1:] for z, e in forward.items() if expand(e - line) == 0]
    return Evidence(seed=(0, 3), right=(0, 2), oracle=found[0] if len(found) == 1 else None)


def check_003_b24_brackets() -> Evidence:
    """(B.24) with the weights kept as symbols, as it writes them (negative indices included):
    its second line read literally (the free ``i`` bound to 0), bracketed, and its first line
    (B.23 at ``m = n = 0``)."""
    w, d = IndexedBase("w"), IndexedBase("delta")
    first = Add(*[d[i, j] * w[-i, -j] for i in range(3) for j in range(3)])
    literal = Add(*[d[i, 0] * w[-i, 0] for i in range(3)]) + d[0, 1] * w[0, -1] + d[0, 2] * w[0, -2]
    bracketed = Add(*[d[i, 0] * w[-i, 0] + d[i, 1] * w[-i, -1] + d[i, 2] * w[-i, -2]
                      for i in range(3)])
    return Evidence(seed=literal, right=bracketed, oracle=first)


def check_003_b14_b19() -> Evidence:
    """(B.14) and (B.19) for the 4x4 input and 2x2 filter: one chain-rule term (``i = j = 0``),
    the sums of (B.17) and (B.23), and the derivation."""
    spec = LayerSpec(input=(1, 4, 4), kernel=(1, 1, 2, 2))
    exprs = derive_layer(spec)

    def w_(m: int, n: int) -> Expr:  # B.23: weights outside the filter are zero
        return K[0, 0, m, n] if 0 <= m < 2 and 0 <= n < 2 else 0

    seed = {("w", m, n): G[0, 0, 0] * V[0, m, n] for m in range(2) for n in range(2)}
    seed.update({("x", m, n): G[0, 0, 0] * w_(m, n) for m in range(4) for n in range(4)})
    right = {("w", m, n): Add(*[G[0, i, j] * V[0, i + m, j + n]
                                for i in range(3) for j in range(3)])
             for m in range(2) for n in range(2)}
    right.update({("x", m, n): Add(*[G[0, i, j] * w_(m - i, n - j)
                                     for i in range(3) for j in range(3)])
                  for m in range(4) for n in range(4)})
    oracle = {("w", *k[2:]): e for k, e in exprs.grad_weight.items()}
    oracle.update({("x", *k[1:]): e for k, e in exprs.grad_input.items()})
    return Evidence(seed=seed, right=right, oracle=oracle)


def confirm_003_eq2_14() -> Evidence:
    """``delta^l = ((W^l)^T delta^{l+1}) o h'(a^l)`` with a sigmoid hidden layer (I = 3) and a
    linear output (K = 2, ``delta^{l+1} = a^{l+1} - t``), against ``sympy.diff`` of ``E``."""
    W, _, t = _fc_layer()
    a = Matrix(3, 1, lambda i, _: Symbol(f"a{i}"))
    hidden = a.applyfunc(_sigmoid)
    out = W * hidden
    loss = ((out - t).T * (out - t))[0] / 2
    seed = (W.T * (out - t)).multiply_elementwise(a.applyfunc(_sigmoid_prime))
    return Evidence(seed=seed, right=seed, oracle=Matrix(3, 1, lambda i, _: diff(loss, a[i])))


def confirm_003_b26() -> Evidence:
    """(B.26)/(B.27): the zero-padded delta correlated with ``w_180``, against
    derive.reference's input gradient, on random numbers."""
    spec = LayerSpec(input=(1, 4, 4), kernel=(1, 1, 2, 2))
    _, K_, _, G_ = reference.random_inputs(spec, batch=1, seed=2)
    padded = LayerSpec(input=(1, 3, 3), kernel=(1, 1, 2, 2), padding=1, bias=False)
    seed = reference.forward(padded, G_, K_[:, :, ::-1, ::-1])[0, 0]
    return Evidence(seed=seed, right=seed, oracle=reference.grad_input(spec, K_, G_)[0, 0])


# -- seed 004 ---------------------------------------------------------------------------------


def _vec(a: np.ndarray) -> np.ndarray:
    """``vec``: the columns stacked (column-major)."""
    return a.reshape(-1, order="F")


def confirm_004_eq6_7() -> Evidence:
    """``vec(AB) = (I (x) A) vec(B) = (B^T (x) I) vec(A)`` on random matrices."""
    rng = np.random.default_rng(3)
    A, B = rng.standard_normal((2, 3)), rng.standard_normal((3, 4))
    seed = {"(6)": np.kron(np.eye(4), A) @ _vec(B), "(7)": np.kron(B.T, np.eye(2)) @ _vec(A)}
    return Evidence(seed=seed, right=seed, oracle={"(6)": _vec(A @ B), "(7)": _vec(A @ B)})


def confirm_004_kronecker() -> Evidence:
    """'Vector Form IV': ``A (x) B`` is the block matrix of the ``a_ij B``, built block by
    block, against NumPy's ``kron``."""
    rng = np.random.default_rng(6)
    A, B = rng.standard_normal((2, 3)), rng.standard_normal((2, 2))
    blocks = np.block([[A[i, j] * B for j in range(A.shape[1])] for i in range(A.shape[0])])
    return Evidence(seed=blocks, right=blocks, oracle=np.kron(A, B))


def confirm_004_eq8_9() -> Evidence:
    """(8)-(9): a fully-connected layer ``s = W z + b`` in the same two forms, against
    derive.reference's forward pass of the layer as a 1x1 correlation over ``n_m`` channels."""
    n_in, n_out = 4, 3
    spec = LayerSpec(input=(n_in, 1, 1), kernel=(n_out, n_in, 1, 1))
    z_, K_, b_, _ = reference.random_inputs(spec, batch=1, seed=5)
    z, W = z_.reshape(n_in), K_.reshape(n_out, n_in)
    bias = np.kron(np.ones((1, 1)), np.eye(n_out)) @ b_
    seed = {"(8)": np.kron(np.eye(1), W) @ z + bias,
            "(9)": np.kron(z[None, :], np.eye(n_out)) @ _vec(W) + bias}
    s_ = reference.forward(spec, z_, K_, b_).reshape(n_out)
    return Evidence(seed=seed, right=seed, oracle={"(8)": s_, "(9)": s_})


def seed004_phi(spec: LayerSpec, Z_: np.ndarray) -> np.ndarray:
    """``phi(pad(Z))``: one column per output position (row-major), holding the window it
    reads as rows ``(c, i, j)``; ``Z_`` is one sample (C, H, W)."""
    top, bottom, left, right = spec.pads
    padded = np.pad(Z_, ((0, 0), (top, bottom), (left, right)))
    (sh, sw), (_, _, kh, kw), (_, ho, wo) = spec.stride, spec.kernel, spec.output_shape
    return np.stack([padded[:, y * sh:y * sh + kh, x * sw:x * sw + kw].reshape(-1)
                     for y in range(ho) for x in range(wo)], axis=1)


def confirm_004_eq4_5() -> Evidence:
    """(3)-(5): ``vec(S) = (I (x) W) vec(phi) + (1 (x) I_d) b = (phi^T (x) I_d) vec(W) + ...``
    against derive.reference's forward pass, ``S`` its output as (d, positions)."""
    spec = LayerSpec(input=(2, 5, 5), kernel=(3, 2, 2, 3), stride=(2, 1), padding=1)
    V_, K_, b_, _ = reference.random_inputs(spec, batch=1, seed=4)
    phi, W = seed004_phi(spec, V_[0]), K_.reshape(spec.kernel[0], -1)
    d, positions = W.shape[0], phi.shape[1]
    bias = np.kron(np.ones((positions, 1)), np.eye(d)) @ b_
    seed = {"(4)": np.kron(np.eye(positions), W) @ _vec(phi) + bias,
            "(5)": np.kron(phi.T, np.eye(d)) @ _vec(W) + bias}
    S = reference.forward(spec, V_, K_, b_)[0].reshape(d, positions)
    return Evidence(seed=seed, right=seed, oracle={"(4)": _vec(S), "(5)": _vec(S)})


# -- the catalogue ------------------------------------------------------------------------------

SLIPS: tuple[Slip, ...] = (
    Slip("000-k-axis", "000", "section 1.2, last paragraph (the axes of V_{i,j,k})",
         says="in V_{i,j,k} i is channel, j is x axis (rows), k is y axis (channel) for image",
         right="k is the y axis, the column index; i alone is the channel",
         why="eq. (1) reads V_{l,(j-1)s+m,(k-1)s+n}: k moves with the kernel's column n over "
             "the W columns, while the channels are summed through the first index l",
         demo=check_000_k_axis),
    Slip("000-kernel-letters", "000", "section 1.2, last paragraph (the axes of K)",
         says="in K_{i,j,k,m} i is output channel, j is input channel, k is rows, l is columns",
         right="K_{i,j,k,l}",
         why="eq. (2) writes the kernel K_{i,j,k,l}; the list names a fourth index m and then "
             "describes l",
         demo=check_000_kernel_letters),
    Slip("001-one-operator", "001", "'Convolutional', under the worked example",
         says="conv(I, K) = I * rot180(K);  I * K = I * rot180(K)",
         right="I (conv) K = I (corr) rot180(K): the two sides need two symbols (the labels "
               "under the line, Convolution and Cross-Correlation, say which is which)",
         why="the page writes * for both operations in one equation; read with one meaning, "
             "its own numbers refute it: I * K = [8 7; 4 5] on the page, I * rot180(K) = "
             "[7 5; 11 3]",
         demo=check_001_one_operator),
    Slip("001-y11", "001", "chain-rule page, the y_11 line after '[Consideration]'",
         says="y11 = b11 + k11 x11 + k12 x12 + k13 x13 + k14 x14",
         right="y11 = b11 + k11 x11 + k12 x12 + k21 x21 + k22 x22",
         why="a 2x2 kernel has no k13, k14 and a 3x3 input no x14; the page's own dE/dk21 "
             "and dE/dk22 lines have dE/dy11 x21 and dE/dy11 x22",
         demo=check_001_y11),
    Slip("001-y12", "001", "chain-rule page, the y_12 line",
         says="y12 = b12 + k11 x12 + k12 x13 + k13 x21 + k14 x22",
         right="y12 = b12 + k11 x12 + k12 x13 + k21 x22 + k22 x23",
         why="the window of y12 is rows 1-2, columns 2-3, read by the 2x2 kernel k11 k12 / "
             "k21 k22; the page's own dE/dk21 and dE/dk22 lines have dE/dy12 x22 and "
             "dE/dy12 x23",
         demo=check_001_y12),
    Slip("001-scalar-by-matrix", "001", "after dE/dK = X * dE/dY",
         says="Can we differentiate a scalar with a matrix? No, we can't",
         right="we can: dE/dK is the matrix of the dE/dk_mn, X * dE/dY, as the page writes it "
               "above",
         why="a scalar has a derivative by each element of a matrix, and together they form a "
             "matrix of K's shape (it is a matrix Y by a matrix K that needs more: the page's "
             "next point)",
         demo=check_001_scalar_by_matrix),
    Slip("001-update-what", "001", "the backpropagation overview, after dE/dy_i -> dE/dk_ij",
         says="dE/dk_ij, dE/db_i -> need them to update errors and biases",
         right="need them to update kernels and biases",
         why="dE/dk_ij updates the kernel k_ij (K <- K - alpha dE/dK, as in 000 and 002); the "
             "errors dE/dy are given by the next layer, not updated, and have another shape",
         demo=check_001_update_what),
    Slip("001-y-star-dk", "001", "after 'dE/dK = X * dE/dY' and 'Y = B + X * K'",
         says="Y * dE/dK = X * dE/dY",
         right="dE/dK = X * dE/dY (valid cross-correlation), the line above it",
         why="Y * dE/dK correlates two 2x2 arrays into one number, X * dE/dY is 2x2; the "
             "left side is dE/dK alone",
         demo=check_001_y_star_dk),
    Slip("001-input-range", "001", "page 'Convolution [check introductory pg]', the dE/dx_j line",
         says="dE/dx_j = sum_{i=1}^{d} dE/dy_i *full K_ij, j = 1, ..., d",
         right="j = 1, ..., n",
         why="x_j are the layer's inputs, n of them ('n -> no. of inputs', 'd -> no. of "
             "output neurons'): there are n input gradients",
         demo=check_001_input_range),
    Slip("001-sum-limit", "001", "'Backpropagation' summary, third bullet",
         says="dE/dx_j = sum_{i=1}^{n} dE/dy_i *full K_ij",
         right="sum_{i=1}^{d}",
         why="every one of the d outputs Y_i = B_i + sum_j X_j * K_ij reads X_j, so the sum "
             "runs over the d outputs, as the page's line before it has it",
         demo=check_001_sum_limit),
    Slip("001-bce-brackets", "001", "'Binary Entropy Loss'",
         says="E = -1/n sum_{i=1}^n y_i* log(y_i) + (1 - y_i*) log(1 - y_i)",
         right="E = -1/n sum_{i=1}^n [y_i* log(y_i) + (1 - y_i*) log(1 - y_i)]",
         why="without brackets the sum and the -1/n cover only y* log y, and the second term's "
             "i is free; the page's derivative (1/n)((1 - y*)/(1 - y) - y*/y) is that of the "
             "bracketed sum. Read literally it differs whichever output i is bound to",
         demo=check_001_bce_brackets),
    Slip("001-pred-label", "001", "'Binary Entropy Loss', the vectors y* and y",
         says="y* = [y_1* ... y_i*] (pred)   y = [y_1 ... y_i]",
         right="y* is the target, y the prediction",
         why="the logarithms take y, which must lie in (0, 1), and dE/dy is what is passed back "
             "to the network's last layer; with 0/1 targets as y, log(0) appears. (The label sits "
             "under y* where the transcription places it)",
         demo=check_001_pred_label),
    Slip("002-stride-upper", "002", "section 3 'Multiple Kernels with stride', Backward",
         says="sum_{i'=0}^{kernel height/stride - 1} sum_{j'=0}^{kernel width/stride - 1} ... "
              "w_{i%stride + i'*stride, j%stride + j'*stride, f, f'} "
              "delta_{i/stride - i', j/stride - j', f'}",
         right="sum_{i'=0}^{ceil(kernel height/stride) - 1} (likewise j'), taps past the kernel "
               "read as zero: ceil((KH - i%stride)/stride) taps for row i",
         why="row i is read by the taps congruent to i modulo the stride; with KH = 3, "
             "stride = 2 the even rows have two (0 and 2), and the floor keeps one. Right when "
             "the stride divides the kernel (i/stride is integer division)",
         demo=check_002_stride_upper),
    Slip("002-channel-order", "002", "section 2 'Multiple Kernels', Backward",
         says="delta^l_{i,j,f} = h'(y^l_{i,j,f}) sum_{i',j',f'} w^{l+1}_{i',j',f',f} "
              "delta^{l+1}_{i-i',j-j',f'}",
         right="w^{l+1}_{i',j',f,f'}",
         why="the forward pass w_{i',j',k',f} puts the input channel third and the kernel "
             "fourth; going back, f is layer l's channel (layer l+1's input) and f' the kernel, "
             "as section 3 writes w_{..., f, f'}",
         demo=check_002_channel_order),
    Slip("002-padding-interval", "002", "sections 1-3, 'with zero padding'",
         says="delta^{l+1}_{x,y} := 0 if x not in [0, output height] or y not in "
              "[0, output width]",
         right="x not in [0, output height) or y not in [0, output width)",
         why="outputs are numbered 0 ... output height - 1 (the gradient step sums i' to "
             "output height - 1); the closed interval keeps delta at x = output height, past "
             "the output",
         demo=check_002_padding_interval),
    Slip("003-symmetric", "003", "section 1, the filter (and the introduction's '2D, "
         "symmetric, tensor')",
         says="Frequently we have h_F = w_F, i.e. filters are symmetric",
         right="filters are square",
         why="h_F = w_F makes a filter square; symmetric means F = F^T, which seed 001's "
             "square kernel [1 2; -1 0] is not",
         demo=check_003_symmetric),
    Slip("003-fits-four", "003", "section 1, below figure 1.1",
         says="our sample kernel only fits four times over the 5 x 5 image when using a "
              "stride of one",
         right="sixteen times: a 4 x 4 output",
         why="(5 - 2)/1 + 1 = 4 places per axis, 4 x 4 = 16 in all; four is the count per row "
             "(or the total at stride 2)",
         demo=check_003_fits_four),
    Slip("003-eq1.2", "003", "eq. (1.2), convolution",
         says="C(i, j) = sum_{m,n} I(i+m, j+n) . F(h_F - m, w_F - n)",
         right="F(h_F - 1 - m, w_F - 1 - n)",
         why="indices run from 0 to the extent minus one (the seed's own convention, below "
             "eq. 1.1); at m = 0 the seed reads F(h_F, .), past the filter",
         demo=check_003_convolution),
    Slip("003-eq1.3", "003", "eq. (1.3), output size",
         says="h_C = (h_I - h_F + 2P)/S + 1",
         right="h_C = floor((h_I - h_F + 2P)/S) + 1",
         why="when S does not divide h_I - h_F + 2P the quotient is not whole: h_I = 6, "
             "h_F = 3, S = 2 gives 2.5, and the filter fits twice",
         demo=check_003_eq1_3),
    Slip("003-full-size", "003", "section 1, the 'full' mode",
         says="h_C = h_I + h_F/2 + 1 and w_C = w_I + w_F/2 + 1",
         right="h_C = h_I + h_F - 1, w_C = w_I + w_F - 1",
         why="h_F - 1 zero rows on each side: (h_I + 2(h_F - 1) - h_F) + 1; seed 001's full "
             "correlation of a 3x3 input with a 2x2 kernel is 4x4, not 5x5",
         demo=check_003_full_size),
    Slip("003-activation-range", "003", "section 1, after figure 1.2",
         says="activation function ... such as sigmoid, tanh, RELU. These range between "
              "0 ... 1 or -1 ... 1",
         right="sigmoid ranges over (0, 1), tanh over (-1, 1), ReLU over [0, infinity)",
         why="ReLU(x) = max(0, x) is unbounded above",
         demo=check_003_activation_range),
    Slip("003-pool-even", "003", "section 1, pooling layer",
         says="h_C = h_I/P and w_C = w_I/P. (Here we assume that the input height and width "
              "dimensions are even.)",
         right="assume the input height and width are multiples of P",
         why="'even' suffices for P = 2 only: 6 is even and 6/4 is not whole; 9 is odd and "
             "9/3 = 3",
         demo=check_003_pool_even),
    Slip("003-output-layer", "003", "section 1, fully-connected layers",
         says="y^{L-1} = f(a^{L-1}) = W^{L-2} . y^{L-2} + b^{L-1}",
         right="y^{L-1} = f(a^{L-1}) = f(W^{L-2} . y^{L-2} + b^{L-1})",
         why="a^l = W^{l-1} y^{l-1} + b^l and y^l = f(a^l), two lines above: the last step "
             "drops f",
         demo=check_003_output_layer),
    Slip("003-eq1.5-classes", "003", "eqs. (1.5) and (1.6)",
         says="E_N = 1/2 sum_{n=0}^{N-1} sum_{k=0}^{C-1} (t_nk - y_nk)^2",
         right="sum_{k=0}^{K-1}",
         why="the page has K classes (y_n in R^K, k = 0 ... K - 1); C names nothing here (it "
             "is the correlation's output elsewhere), and (1.6)'s own right side, "
             "1/2 ||t_n - y_n||^2, sums over the K entries",
         demo=check_003_eq1_5_classes),
    Slip("003-concave", "003", "section 2, second paragraph",
         says="where its gradient becomes zero when assuming the error function is concave "
              "and has a minimum",
         right="convex",
         why="a zero gradient is a minimum of a convex function, a maximum of a concave one; "
             "a squared error has a non-negative second derivative",
         demo=check_003_concave),
    Slip("003-x-length", "003", "section 2.1, below (2.2)",
         says="Column vector y^{l-1} has length I and column vector x^l is of length K",
         right="x^l = y^{l-1} has length I (the output y^l has length K)",
         why="the page's own x_i^l = y_i^{l-1}, and W^{l-1} is K x I: it multiplies a vector "
             "of length I",
         demo=check_003_x_length),
    Slip("003-eq2.9", "003", "eq. (2.9)",
         says="grad E_w = delta^l . y^{l-1}, ... the (1 x I) row vector y^{l-1}",
         right="grad E_w = delta^l (y^{l-1})^T",
         why="y^{l-1} is a column vector of length I (below (2.2)); the (K x I) Jacobian is "
             "the outer product, which needs the transpose",
         demo=check_003_eq2_9),
    Slip("003-eq2.10", "003", "eq. (2.10)",
         says="delta_k^{L-1} = y_k^{L-1} - t_k",
         right="delta_k^{L-1} = (y_k^{L-1} - t_k) h'(a_k^{L-1}); y - t for an output without "
               "activation",
         why="delta is dE/da (2.7) and the output is f(a^{L-1}) (section 1); the chain rule "
             "brings f'",
         demo=check_003_eq2_10),
    Slip("003-eq2.12", "003", "eq. (2.12) and the sentence after it",
         says="d(sum_k w_ki^l h(a_i^l))/da_i^l = w_ki^l h'(a_i^l), since in the sum over k "
              "only the term for a_i^l is relevant",
         right="a_k^{l+1} = sum_i w_ki^l h(a_i^l): the sum, and the sentence, run over i",
         why="a_k^{l+1} sums over the units i of layer l (2.4); a sum over k differentiated "
             "gives (sum_k w_ki) h'(a_i)",
         demo=check_003_eq2_12),
    Slip("003-eq2.15", "003", "eq. (2.15)",
         says="y_j^l = h(sum_{i=0}^{d_I} y_i^{l-1} (x) k_{i,j}^l + b_j^l)",
         right="sum_{i=0}^{d_I - 1}",
         why="indices start at 0 (the seed's convention): the d_I planes are 0 ... d_I - 1, "
             "and the upper limit d_I adds one that does not exist",
         demo=check_003_eq2_15),
    Slip("003-upstream-pooling", "003", "section 2.2.1, first paragraph",
         says="To compute the error terms delta_j^l in case of an up-stream pooling layer",
         right="down-stream pooling layer",
         why="the pooling layer l + 1 follows the correlation layer l, and the seed calls "
             "higher indices down-stream (section 1)",
         demo=check_003_upstream_pooling),
    Slip("003-eq2.20", "003", "eq. (2.20)",
         says="delta_i^l = sum_{j=0}^{c} corr2(delta_j^{l+1}, rot180(k_{i,j}^{l+1}), 'full')",
         right="sum_{j=0}^{c-1}",
         why="the c kernels are numbered 0 ... c - 1; j = c is past the layer",
         demo=check_003_eq2_20),
    Slip("003-A.4", "003", "appendix A, eq. (A.4), second line",
         says="(w_1 w_3 x_n - t_n1) w_1 x_n + (w_1 w_2 x_n - t_n2) w_2 x_n",
         right="(w_1 w_3 x_n - t_n1) w_1 x_n + (w_2 w_3 x_n - t_n2) w_2 x_n",
         why="(A.2) gives y_n2 = w_2 w_3 x_n; the third line (delta_n2 w_2 x_n) is right",
         demo=check_003_a4),
    Slip("003-B.3-letter", "003", "appendix B.1, the sentence after (B.3)",
         says="given the linear dependencies against w_j in equations B.1",
         right="w_k",
         why="j numbers the three outputs, k the two weights of (B.3): there is no w_2",
         demo=check_003_b3_letter),
    Slip("003-B.6-shape", "003", "appendix B.1, eq. (B.6)",
         says="[dE/dw_0; dE/dw_1] = [delta_0, delta_1, delta_2] [x_0 x_1; x_1 x_2; x_2 x_3]",
         right="[dE/dw_0; dE/dw_1] = [x_0 x_1; x_1 x_2; x_2 x_3]^T [delta_0; delta_1; delta_2]",
         why="a 1x3 row times the 3x2 matrix is a 1x2 row, while the left side is a 2x1 "
             "column; the entries are right",
         demo=check_003_b6_shape),
    Slip("003-B.11", "003", "appendix B.2, eq. (B.11), third line",
         says="y_03 = w_00 x_02 + w_01 x_03 + w_10 x_12 + w_11 x_13 + b",
         right="y_02",
         why="the window starts at column 2 (B.12: y_ij reads x_{i+k, j+l}), and a 4x4 input "
             "with a 2x2 filter has output columns 0 ... 2 only",
         demo=check_003_b11),
    Slip("003-B.24-brackets", "003", "appendix B.2, eq. (B.24), second line",
         says="sum_{i=0}^2 delta_i0 w_{0-i,0} + delta_i1 w_{0-i,-1} + delta_i2 w_{0-i,-2}",
         right="sum_{i=0}^2 [delta_i0 w_{0-i,0} + delta_i1 w_{0-i,-1} + delta_i2 w_{0-i,-2}]",
         why="without brackets the sum covers the first term only and i is free in the others; "
             "the next lines expand the bracketed sum. (Once the weights outside the filter are "
             "set to zero, as the text then does, the value at m = n = 0 is the same)",
         demo=check_003_b24_brackets),
    Slip("003-B.14-B.19", "003", "appendix B.2, eqs. (B.14) and (B.19)",
         says="dE/dw_mn = dE/dy_ij dy_ij/dw_mn; dE/dx_mn = dE/dy_ij dy_ij/dx_mn",
         right="dE/dw_mn = sum_{i,j} dE/dy_ij dy_ij/dw_mn, likewise for x_mn",
         why="every output y_ij reads w_mn (and several read x_mn): the chain rule sums over "
             "them, as (B.17) and (B.23) then do",
         demo=check_003_b14_b19),
)

CONFIRMED: tuple[Confirmation, ...] = (
    Confirmation("000-eq1", "000", "eq. (1)",
                 says="Z_{i,j,k} = sum_{l,m,n} V_{l,(j-1)s+m,(k-1)s+n} K_{i,l,m,n}",
                 why="the derivation's forward pass, with channels and a stride",
                 demo=confirm_000_eq1),
    Confirmation("001-sigmoid", "001", "'Sigmoid activation'",
                 says="sigma'(x) = e^{-x}/(1 + e^{-x})^2 = sigma(x)(1 - sigma(x))",
                 why="both forms equal sympy.diff of 1/(1 + e^{-x})", demo=confirm_001_sigmoid),
    Confirmation("001-bce-derivative", "001", "'Binary Entropy Loss', 'Generalized'",
                 says="dE/dy_i = 1/n ((1 - y_i*)/(1 - y_i) - y_i*/y_i)",
                 why="sympy.diff of the bracketed cross-entropy", demo=confirm_001_bce_derivative),
    Confirmation("001-rot180", "001", "'Convolutional', under the worked example",
                 says="rot180(K) = [0 -1; 2 1] and the convolution I * rot180(K) = [7 5; 11 3]",
                 why="NumPy's rotation, and derive.reference's convolution of the page's image "
                     "with its kernel",
                 demo=confirm_001_rot180),
    Confirmation("001-untied-bias", "001", "the dE/db_11 ... dE/db_22 lines",
                 says="dE/db_11 = dE/dy_11; dE/db_12 = dE/dy_12; ...",
                 why="one bias per output element (B_i the shape of Y_i) is a layer of its own "
                     "kind, untied biases; with one bias per channel dE/db is their sum",
                 demo=confirm_001_untied_bias),
    Confirmation("003-A.3", "003", "appendix A, eq. (A.3)",
                 says="dE_n/dw_1 = (w_1 w_3 x_n - t_n1) w_3 x_n",
                 why="sympy.diff of (A.1) through (A.2)", demo=confirm_003_a3),
    Confirmation("003-eq2.14", "003", "eq. (2.14)",
                 says="delta^l = ((W^l)^T delta^{l+1}) o h'(a^l)",
                 why="sympy.diff of the squared error through a sigmoid layer",
                 demo=confirm_003_eq2_14),
    Confirmation("003-B.26", "003", "appendix B.2, eqs. (B.26)-(B.27)",
                 says="delta-bar = delta_0 (x) w_180, delta_0 zero-padded",
                 why="derive.reference's input gradient", demo=confirm_003_b26),
    Confirmation("004-eq6-7", "004", "'Vector Form III', eqs. (6) and (7)",
                 says="vec(AB) = (I (x) A) vec(B) = (B^T (x) I) vec(A)",
                 why="NumPy's Kronecker product on random matrices", demo=confirm_004_eq6_7),
    Confirmation("004-eq4-5", "004", "'Vector Form I-II', eqs. (3)-(5)",
                 says="vec(S) = (I (x) W) vec(phi(pad(Z))) + (1 (x) I_d) b "
                      "= (phi(pad(Z))^T (x) I_d) vec(W) + (1 (x) I_d) b",
                 why="derive.reference's forward pass, padded and strided",
                 demo=confirm_004_eq4_5),
    Confirmation("004-eq8-9", "004", "'Vector Form V', eqs. (8) and (9)",
                 says="s = W z + b = (I_1 (x) W) z + (1_1 (x) I) b "
                      "= (z^T (x) I) vec(W) + (1_1 (x) I) b",
                 why="derive.reference's forward pass of the layer as a 1x1 correlation",
                 demo=confirm_004_eq8_9),
    Confirmation("004-kronecker", "004", "'Vector Form IV'",
                 says="A (x) B = [a_11 B ... a_1n B; ...; a_m1 B ... a_mn B]",
                 why="NumPy's kron", demo=confirm_004_kronecker),
)
