"""NumPy reference of the layer: the oracle every generated kernel is checked against.

Depends on NumPy alone (and the plain arithmetic of ``derive.geometry``). Vectorised: the
forward pass and grad_weight contract the windows of the padded input; grad_input loops over
the KH*KW kernel taps only (never over pixels), adding each tap's contribution into the
positions of the padded gradient it read.

Shapes (DESIGN.md): ``V`` (N, C, H, W), ``K`` (O, C, KH, KW), ``b`` (O,), ``Z`` and ``G``
(N, O, HO, WO). Arithmetic is done in the dtype of the inputs (float32 or float64).

``network(net)`` is the reference of a whole ``derive.Network`` (``loss``, ``grads``, ``step``,
``predict``), built on these layer functions in ``derive.network_reference``.
"""

from __future__ import annotations

import numpy as np

from .geometry import is_flipped, kernel_tap, tap_index
from .spec import LayerSpec


def _flipped(spec: LayerSpec, K: np.ndarray) -> np.ndarray:
    """``K`` with its last two axes read as the taps read the kernel: ``K~`` from ``K``, and
    back (``derive.geometry.kernel_tap``: rotated by 180 degrees in convolution mode)."""
    kh, kw = K.shape[-2:]
    flip = is_flipped(spec.mode)
    rows, cols = kernel_tap(np.arange(kh), kh, flip), kernel_tap(np.arange(kw), kw, flip)
    return K[..., rows[:, None], cols[None, :]]


def _padded(spec: LayerSpec, V: np.ndarray) -> np.ndarray:
    top, bottom, left, right = spec.pads
    return np.pad(V, ((0, 0), (0, 0), (top, bottom), (left, right)))


def _taps(spec: LayerSpec) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``(HO, KH)`` and columns ``(WO, KW)`` of the padded input that output ``y`` reads
    at tap ``i``: ``derive.geometry.tap_index`` with the padding already in place."""
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    _, _, kh, kw = spec.kernel
    _, ho, wo = spec.output_shape
    rows = tap_index(np.arange(ho)[:, None], np.arange(kh)[None, :], sh, dh, 0)
    cols = tap_index(np.arange(wo)[:, None], np.arange(kw)[None, :], sw, dw, 0)
    return rows, cols


def _windows(spec: LayerSpec, V: np.ndarray) -> np.ndarray:
    """``(N, C, HO, WO, KH, KW)`` windows of the padded input: ``win[n,c,y,x,i,j] = Vpad[...]``."""
    rows, cols = _taps(spec)
    return _padded(spec, V)[:, :, rows[:, None, :, None], cols[None, :, None, :]]


def forward(spec: LayerSpec, V: np.ndarray, K: np.ndarray, b: np.ndarray | None = None):
    """``Z[n,o,y,x] = b[o] + sum_{c,i,j} K~[o,c,i,j] * Vpad[n, c, y*sh + i*dh, x*sw + j*dw]``."""
    win = _windows(spec, V)
    Z = np.tensordot(win, _flipped(spec, K), axes=([1, 4, 5], [1, 2, 3]))
    Z = np.ascontiguousarray(Z.transpose(0, 3, 1, 2))
    if b is not None:
        Z += b.reshape(1, -1, 1, 1)
    return Z


def grad_weight(spec: LayerSpec, V: np.ndarray, G: np.ndarray) -> np.ndarray:
    """``dK``: the valid correlation of the padded input with ``G`` (stride as dilation)."""
    win = _windows(spec, V)
    dK = np.tensordot(G, win, axes=([0, 2, 3], [0, 2, 3]))  # (O, C, KH, KW) for K~
    return np.ascontiguousarray(_flipped(spec, dK))


def grad_input(spec: LayerSpec, K: np.ndarray, G: np.ndarray) -> np.ndarray:
    """``dV``: each tap adds ``K~[:, :, i, j]``-weighted ``G`` into the positions it read."""
    c, h, w = spec.input
    _, _, kh, kw = spec.kernel
    top, bottom, left, right = spec.pads
    n = G.shape[0]
    Kt = _flipped(spec, K)
    rows, cols = _taps(spec)
    dVp = np.zeros((n, c, h + top + bottom, w + left + right), dtype=G.dtype)
    for i in range(kh):
        for j in range(kw):
            dVp[:, :, rows[:, i, None], cols[None, :, j]] += np.einsum("noyx,oc->ncyx", G,
                                                                      Kt[:, :, i, j])
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


def network(net):
    """The NumPy reference of a whole network (a ``derive.Network`` or its text form): an
    object with ``loss``, ``grads``, ``step`` and ``predict`` (``derive.network_reference``)."""
    # Imported here: derive.network_reference imports this module for its layer functions.
    from .network_reference import NetworkReference

    return NetworkReference(net)
