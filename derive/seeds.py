"""The seeds' own gradient formulas, transcribed literally, and where they are right or off.

Each function builds, for a spec, the SymPy expressions a seed's formula gives, indices
translated to corrgen's 0-based ``V[c,y,x]``, ``K[o,c,i,j]``, ``G[o,y,x]``. The tests hold
them against the derivation (``derive_layer``), which is the independent oracle here: the
formulas are typed in from the documents, the derivation comes from ``sympy.diff``.

What the comparison finds:

* Seed 000 (``000_*.txt``), equations (2) and (3), stride ``s``, 1-based::

      dJ/dK[i,j,k,l] = sum_{m,n} G[i,m,n] V[j,(m-1)s+k,(n-1)s+l]
      dJ/dV[i,j,k]   = sum_{l,m: (l-1)s+m=j} sum_{n,p: (n-1)s+p=k} sum_q K[q,i,m,p] G[q,l,n]

  Both are right for every stride, channel count and kernel shape without padding or
  dilation (the document has neither).

* Seed 002 (``002_*.txt``), section 3 "Multiple Kernels with stride": the weight gradient
  ``sum_{i',j'} delta[i',j'] f[i + i'*stride, j + j'*stride]`` is right. The input gradient::

      delta^l[i,j] = sum_{i'=0}^{KH/stride - 1} sum_{j'=0}^{KW/stride - 1} sum_f'
                     w[i % stride + i'*stride, j % stride + j'*stride]
                     * delta^{l+1}[i/stride - i', ...]

  picks the right taps (those congruent to ``i`` modulo the stride) and the right output
  rows, but its upper limit ``KH/stride - 1`` is only right when the stride divides the
  kernel size. With ``KH = 3, stride = 2`` it keeps one tap per phase, and loses tap 2 for
  the even rows; the right count is ``ceil((KH - i % stride) / stride)`` taps for row ``i``
  (or sum to ``ceil(KH/stride) - 1`` and treat taps past the kernel as zero).
  ``seed002_grad_input(spec, upper="ceil")`` is that corrected reading and agrees with the
  derivation. Its section 2 writes the backward kernel index as ``w[i',j',f',f]``, swapping
  the input/output channel roles of its own forward pass ``w[i',j',k',f]``; section 3 has the
  right order ``w[..., f, f']``. Its zero-padding condition ``x not in [0, output height]``
  should exclude the upper end: ``[0, output height)``.

* Seed 003 (``003_*.txt``): the "full" output size ``h_I + h_F/2 + 1`` is wrong; full
  padding adds ``h_F - 1`` rows on each side, so ``h_C = h_I + h_F - 1`` (seed 001's full
  correlation of a 3x3 input with a 2x2 kernel is 4x4, not 5x5). Its equation (1.3),
  ``(h_I - h_F + 2P)/S + 1``, needs a floor when the stride does not divide evenly. Appendix
  B (B.4, B.7, B.17, B.23, B.26) is right; B.23 reads kernel elements outside the kernel
  (``w_{-1,0}``), which are zero.
"""

from __future__ import annotations

import math

from sympy import Add, Expr

from .spec import LayerSpec
from .symbols import G, K, V

Elements = dict[tuple[int, ...], Expr]


def _plain(spec: LayerSpec, seed: str) -> tuple[int, int, int, int, int, int, int, int]:
    if spec.pads != (0, 0, 0, 0) or spec.dilation != (1, 1) or spec.mode != "correlation":
        raise ValueError(f"{seed} covers unpadded, undilated correlation only; got {spec}")
    if spec.stride[0] != spec.stride[1]:
        raise ValueError(f"{seed} has one stride s for rows and columns; got {spec.stride}")
    c, h, w = spec.input
    o, _, kh, kw = spec.kernel
    return c, h, w, o, kh, kw, spec.out_h, spec.out_w


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


def seed003_full_size(h_input: int, h_filter: int) -> float:
    """Seed 003's stated size of a 'full' correlation, ``h_I + h_F/2 + 1`` (wrong)."""
    return h_input + h_filter / 2 + 1
