"""NumPy reference of the layer: the oracle every generated kernel is checked against.

Depends on NumPy alone. Vectorised: the forward pass and grad_weight contract a strided
window view of the padded input; grad_input loops over the KH*KW kernel taps only (never
over pixels), adding each tap's contribution into a strided slice of the padded gradient.

Shapes (DESIGN.md): ``V`` (N, C, H, W), ``K`` (O, C, KH, KW), ``b`` (O,), ``Z`` and ``G``
(N, O, HO, WO). Arithmetic is done in the dtype of the inputs (float32 or float64).
"""

from __future__ import annotations

import numpy as np

from .spec import LayerSpec


def _effective_kernel(spec: LayerSpec, K: np.ndarray) -> np.ndarray:
    """``K~``: the kernel as the taps read it (rotated by 180 degrees in convolution mode)."""
    return K[:, :, ::-1, ::-1] if spec.mode == "convolution" else K


def _padded(spec: LayerSpec, V: np.ndarray) -> np.ndarray:
    top, bottom, left, right = spec.pads
    return np.pad(V, ((0, 0), (0, 0), (top, bottom), (left, right)))


def _windows(spec: LayerSpec, V: np.ndarray) -> np.ndarray:
    """View ``(N, C, HO, WO, KH, KW)`` of the padded input: ``win[n,c,y,x,i,j] = Vpad[...]``."""
    Vp = _padded(spec, V)
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    _, _, kh, kw = spec.kernel
    _, ho, wo = spec.output_shape
    n, c = Vp.shape[:2]
    s = Vp.strides
    return np.lib.stride_tricks.as_strided(
        Vp,
        shape=(n, c, ho, wo, kh, kw),
        strides=(s[0], s[1], s[2] * sh, s[3] * sw, s[2] * dh, s[3] * dw),
        writeable=False,
    )


def forward(spec: LayerSpec, V: np.ndarray, K: np.ndarray, b: np.ndarray | None = None):
    """``Z[n,o,y,x] = b[o] + sum_{c,i,j} K~[o,c,i,j] * Vpad[n, c, y*sh + i*dh, x*sw + j*dw]``."""
    win = _windows(spec, V)
    Z = np.tensordot(win, _effective_kernel(spec, K), axes=([1, 4, 5], [1, 2, 3]))
    Z = np.ascontiguousarray(Z.transpose(0, 3, 1, 2))
    if b is not None:
        Z += b.reshape(1, -1, 1, 1)
    return Z


def grad_weight(spec: LayerSpec, V: np.ndarray, G: np.ndarray) -> np.ndarray:
    """``dK``: the valid correlation of the padded input with ``G`` (stride as dilation)."""
    win = _windows(spec, V)
    dK = np.tensordot(G, win, axes=([0, 2, 3], [0, 2, 3]))  # (O, C, KH, KW) for K~
    dK = dK[:, :, ::-1, ::-1] if spec.mode == "convolution" else dK
    return np.ascontiguousarray(dK)


def grad_input(spec: LayerSpec, K: np.ndarray, G: np.ndarray) -> np.ndarray:
    """``dV``: each tap adds ``K~[:, :, i, j]``-weighted ``G`` into the positions it read."""
    c, h, w = spec.input
    _, _, kh, kw = spec.kernel
    _, ho, wo = spec.output_shape
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    top, bottom, left, right = spec.pads
    n = G.shape[0]
    Kt = _effective_kernel(spec, K)
    dVp = np.zeros((n, c, h + top + bottom, w + left + right), dtype=G.dtype)
    for i in range(kh):
        rows = slice(i * dh, i * dh + sh * (ho - 1) + 1, sh)
        for j in range(kw):
            cols = slice(j * dw, j * dw + sw * (wo - 1) + 1, sw)
            dVp[:, :, rows, cols] += np.einsum("noyx,oc->ncyx", G, Kt[:, :, i, j])
    return np.ascontiguousarray(dVp[:, :, top : top + h, left : left + w])


def grad_bias(spec: LayerSpec, G: np.ndarray) -> np.ndarray:
    """``db[o] = sum_{n,y,x} G[n,o,y,x]``."""
    return G.sum(axis=(0, 2, 3))


def backward(spec: LayerSpec, V: np.ndarray, K: np.ndarray, G: np.ndarray):
    """``(dV, dK, db)``; ``db`` is None when the spec has no bias."""
    db = grad_bias(spec, G) if spec.bias else None
    return grad_input(spec, K, G), grad_weight(spec, V, G), db


def random_inputs(spec: LayerSpec, batch: int = 2, dtype="float64", seed: int = 0):
    """Reproducible random ``V, K, b, G`` for a spec (``b`` is None without bias)."""
    rng = np.random.default_rng(seed)
    o, ho, wo = spec.output_shape
    V = rng.standard_normal((batch, *spec.input)).astype(dtype)
    K = rng.standard_normal(spec.kernel).astype(dtype)
    b = rng.standard_normal(o).astype(dtype) if spec.bias else None
    G = rng.standard_normal((batch, o, ho, wo)).astype(dtype)
    return V, K, b, G
