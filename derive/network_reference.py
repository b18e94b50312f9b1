"""NumPy reference of a whole network: the oracle every generated network is checked against.

``derive.reference.network(net)`` returns a ``NetworkReference`` with the four methods of
DESIGN.md ("Networks"): ``loss``, ``grads``, ``step`` and ``predict``. Depends on NumPy alone;
conv and dense layers go through ``derive.reference``'s layer functions (a dense layer is
the correlation of its ``(D, 1, 1)`` input with an ``(N, D, 1, 1)`` kernel).

Semantics are PyTorch's, so that a model ports both ways:

- ``conv``: ``torch.nn.Conv2d`` (correlation; ``convolution`` flips the kernel; an uneven
  ``same`` padding puts the extra row/column at the bottom/right). ``untied``: one bias per
  output element, shape ``(O, HO, WO)``.
- ``relu`` (its derivative at 0 is 0), ``sigmoid``, ``tanh``.
- Pools have no padding and a floor output size (``MaxPool2d``, ``AvgPool2d``,
  ``LPPool2d(2)``). ``maxpool`` sends the gradient to the FIRST maximum of a window in
  row-major order, as PyTorch does on ties. ``l2pool`` is ``sqrt`` of the window's sum of
  squares; its gradient ``x / l2pool`` is undefined on an all-zero window, where this
  reference uses 0 (PyTorch gives NaN there), the true derivative when the zeros come from
  a ``relu`` that is off: the loss is flat around them.
- ``flatten``: C, H, W order. ``dense N``: ``torch.nn.Linear`` (weight ``(N, D)``).
- Losses, per sample summed over that sample's outputs and averaged over the batch:
  ``l2`` = mean ½·Σ(y − t)²; ``bce`` = mean −Σ[t·log y + (1 − t)·log(1 − y)], each log
  clamped at −100 and the gradient ``(y − t) / max(y·(1 − y), 1e-12)`` as in
  ``torch.nn.BCELoss`` (which also refuses an output outside [0, 1]: so does this reference,
  with a ValueError); ``softmax-ce`` = mean −log softmax(y)[t] through the log-sum-exp.

Inputs: ``X`` is ``(N, C, H, W)`` exactly (also when C = 1: pass ``X[:, None]`` for a batch
of ``(N, H, W)`` planes), float32 or float64; every computation is done in ``X``'s dtype, and
the loss comes back as a Python float, the gradients as arrays of ``X``'s dtype. ``T`` has the
output's shape ``(N, ...)`` (any float dtype) for ``l2`` and ``bce``, and is ``(N,)`` of
integer class indices (``int64`` as PyTorch wants; any integer dtype is accepted) for
``softmax-ce``. ``params`` maps every name of ``net.params()`` to an array of its shape (any
float dtype, read in ``X``'s dtype); ``step`` updates those arrays in place.

>>> import numpy as np
>>> from derive import Network
>>> net = Network.parse("1x4x4 | conv 2x3x3 pad 1 | relu | maxpool 2 | flatten | dense 3 "
...                     "| softmax-ce")
>>> ref = NetworkReference(net)
>>> X, T = np.ones((2, 1, 4, 4)), np.array([0, 2])
>>> loss, grads = ref.grads(X, T, net.init_params(seed=0))
>>> sorted(grads), ref.predict(X, net.init_params(seed=0)).shape
(['0.bias', '0.weight', '4.bias', '4.weight'], (2, 3))
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from . import reference
from .network import Layer, Network

#: Floating dtypes a network computes in.
DTYPES = (np.float32, np.float64)
#: ``torch.nn.BCELoss`` clamps each log at -100 and the denominator of its gradient at 1e-12.
BCE_LOG_FLOOR = -100.0
BCE_EPSILON = 1e-12


class NetworkReference:
    """The forward pass, loss, gradients and SGD step of a ``derive.Network`` in NumPy."""

    def __init__(self, net: Network | str) -> None:
        if isinstance(net, str):
            net = Network.parse(net)
        if not isinstance(net, Network):
            raise TypeError(f"net: expected a derive.Network or its text form, got "
                            f"{type(net).__name__}")
        self.net = net

    def __repr__(self) -> str:
        return f"NetworkReference({self.net.text()!r})"

    def predict(self, X: Any, params: Mapping[str, Any]) -> np.ndarray:
        """The last layer's output ``(N, *net.output_shape)`` (before the loss)."""
        X = self._check_input(X)
        values = self._read_params(params, X.dtype)
        return self._forward(X, values)[0]

    def loss(self, X: Any, T: Any, params: Mapping[str, Any]) -> float:
        """The loss of the batch (averaged over its samples), as a Python float."""
        X = self._check_input(X)
        T = self._check_target(T, X)
        values = self._read_params(params, X.dtype)
        Y, _ = self._forward(X, values)
        return float(_LOSSES[self.net.loss][0](Y, T))

    def grads(self, X: Any, T: Any, params: Mapping[str, Any]
              ) -> tuple[float, dict[str, np.ndarray]]:
        """``(loss, {name: dloss/dparam})``, every gradient in ``X``'s dtype and its
        parameter's shape, in ``net.params()`` order."""
        X = self._check_input(X)
        T = self._check_target(T, X)
        values = self._read_params(params, X.dtype)
        Y, caches = self._forward(X, values)
        value_fn, grad_fn = _LOSSES[self.net.loss]
        G = grad_fn(Y, T)
        found: dict[str, np.ndarray] = {}
        for layer, cache in zip(reversed(self.net.layers), reversed(caches)):
            # The network's input needs no gradient: the first layer skips its own.
            G, layer_grads = _BACKWARD[layer.kind](layer, cache, G, values, layer.index > 0)
            found.update(layer_grads)
        ordered = {name: np.ascontiguousarray(found[name], dtype=X.dtype)
                   for name, _ in self.net.params()}
        return float(value_fn(Y, T)), ordered

    def step(self, X: Any, T: Any, params: Mapping[str, Any], lr: float) -> float:
        """One SGD step, ``p -= lr * dloss/dp`` in place for every parameter; returns the loss
        before the update."""
        check_step(self.net, params, lr)
        loss, grads = self.grads(X, T, params)
        for name, grad in grads.items():
            array = params[name]  # updated through the array itself: params may be read-only
            array -= array.dtype.type(lr) * grad.astype(array.dtype, copy=False)
        return loss

    # -- the passes -----------------------------------------------------------------------

    def _forward(self, X: np.ndarray, values: dict[str, np.ndarray]
                 ) -> tuple[np.ndarray, list[Any]]:
        """The output and, per layer, what its backward pass needs."""
        A, caches = X, []
        for layer in self.net.layers:
            A, cache = _FORWARD[layer.kind](layer, A, values)
            caches.append(cache)
        return A, caches

    # -- validation -----------------------------------------------------------------------

    def _check_input(self, X: Any) -> np.ndarray:
        X = np.asarray(X)
        if X.dtype not in DTYPES:
            raise TypeError(f"X: expected dtype float32 or float64, got {X.dtype}")
        expected = self.net.input
        if X.ndim != 1 + len(expected) or tuple(X.shape[1:]) != expected or X.shape[0] < 1:
            hint = ""
            if expected[0] == 1 and tuple(X.shape[1:]) == expected[1:]:
                hint = " (add the channel axis: X[:, None])"
            raise ValueError(f"X: expected shape (N, {', '.join(map(str, expected))}) with "
                             f"N >= 1, a batch of the network's input, got {X.shape}{hint}")
        return X

    def _check_target(self, T: Any, X: np.ndarray) -> np.ndarray:
        T = np.asarray(T)
        n, out = X.shape[0], self.net.output_shape
        if self.net.loss == "softmax-ce":
            if T.dtype.kind not in "iu":
                raise TypeError(f"T: softmax-ce expects integer class indices (int64), got "
                                f"dtype {T.dtype}")
            if T.shape != (n,):
                raise ValueError(f"T: softmax-ce expects shape ({n},), one class per sample, "
                                 f"got {T.shape}")
            if T.size and (T.min() < 0 or T.max() >= out[0]):
                raise ValueError(f"T: class indices must lie in 0..{out[0] - 1}, got values "
                                 f"from {T.min()} to {T.max()}")
            return T.astype(np.int64)
        if T.dtype.kind != "f":
            raise TypeError(f"T: {self.net.loss} expects float targets of the output's shape, "
                            f"got dtype {T.dtype}")
        if T.shape != (n, *out):
            raise ValueError(f"T: {self.net.loss} expects the output's shape "
                             f"{(n, *out)}, got {T.shape}")
        return T.astype(X.dtype, copy=False)

    def _read_params(self, params: Mapping[str, Any], dtype: np.dtype) -> dict[str, np.ndarray]:
        if not isinstance(params, Mapping):
            raise TypeError(f"params: expected a dict of name -> array, got "
                            f"{type(params).__name__}")
        wanted = dict(self.net.params())
        missing = [name for name in wanted if name not in params]
        extra = [name for name in params if name not in wanted]
        if missing or extra:
            raise ValueError(f"params: expected exactly the names {list(wanted)}; missing "
                             f"{missing}, unexpected {extra}")
        values = {}
        for name, shape in wanted.items():
            array = np.asarray(params[name])
            if array.dtype.kind != "f":
                raise TypeError(f"params[{name!r}]: expected a float array, got dtype "
                                f"{array.dtype}")
            if array.shape != shape:
                raise ValueError(f"params[{name!r}]: expected shape {shape}, got {array.shape}")
            values[name] = array.astype(dtype, copy=False)
        return values


def network(net: Network | str) -> NetworkReference:
    """The NumPy reference of ``net`` (a ``derive.Network`` or its text form)."""
    return NetworkReference(net)


def check_step(net: Network, params: Mapping[str, Any], lr: Any) -> None:
    """What ``step`` needs beyond ``grads``'s checks: a finite ``lr``, and parameters it can
    update in place (float NumPy arrays). Raises ValueError or TypeError naming them."""
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(lr)):
        raise ValueError(f"lr: expected a finite real number, got {lr!r}")
    for name, _ in net.params():
        array = params.get(name) if isinstance(params, Mapping) else None
        if array is not None and not (isinstance(array, np.ndarray) and array.dtype.kind == "f"):
            raise TypeError(f"params[{name!r}]: step updates it in place, so it must be a "
                            f"float NumPy array, got {_describe(array)}")


def _describe(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype}"
    return type(value).__name__


# -- layers: forward returns (output, cache); backward (dInput or None, {name: grad}) -------


def _bias(layer: Layer, values: dict[str, np.ndarray]) -> np.ndarray | None:
    return values.get(f"{layer.index}.bias")


def _conv_forward(layer: Layer, A: np.ndarray, values: dict[str, np.ndarray]):
    spec, b = layer.spec, _bias(layer, values)
    W = values[f"{layer.index}.weight"]
    Z = reference.forward(spec, A, W, None if layer.untied else b)
    if layer.untied:
        Z += b[None]
    return Z, A


def _conv_backward(layer: Layer, A: np.ndarray, G: np.ndarray, values, want_input: bool):
    spec, name = layer.spec, f"{layer.index}.weight"
    out = {name: reference.grad_weight(spec, A, G)}
    if layer.has_bias:
        out[f"{layer.index}.bias"] = G.sum(axis=0) if layer.untied else reference.grad_bias(
            spec, G)
    dA = reference.grad_input(spec, values[name], G) if want_input else None
    return dA, out


def _dense_forward(layer: Layer, A: np.ndarray, values: dict[str, np.ndarray]):
    n, (units, d, _, _) = A.shape[0], layer.spec.kernel
    W = values[f"{layer.index}.weight"].reshape(units, d, 1, 1)
    Z = reference.forward(layer.spec, A.reshape(n, d, 1, 1), W, _bias(layer, values))
    return Z.reshape(n, units), A


def _dense_backward(layer: Layer, A: np.ndarray, G: np.ndarray, values, want_input: bool):
    spec, name = layer.spec, f"{layer.index}.weight"
    units, d, _, _ = spec.kernel
    n = A.shape[0]
    V, G4 = A.reshape(n, d, 1, 1), G.reshape(n, units, 1, 1)
    out = {name: reference.grad_weight(spec, V, G4).reshape(units, d)}
    if layer.has_bias:
        out[f"{layer.index}.bias"] = reference.grad_bias(spec, G4)
    dA = None
    if want_input:
        dA = reference.grad_input(spec, values[name].reshape(units, d, 1, 1), G4).reshape(n, d)
    return dA, out


def _sigmoid(x: np.ndarray) -> np.ndarray:
    """``1 / (1 + exp(-x))`` without overflow: ``exp`` only ever sees ``-|x|``."""
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


#: Activation: (f, f' written in terms of the input x and the output y).
_ACTIVATIONS: dict[str, tuple[Callable, Callable]] = {
    # relu'(0) = 0 (seed 003; PyTorch's threshold_backward).
    "relu": (lambda x: np.maximum(x, 0), lambda x, y: (x > 0).astype(x.dtype)),
    "sigmoid": (_sigmoid, lambda x, y: y * (1 - y)),
    "tanh": (np.tanh, lambda x, y: 1 - y * y),
}


def _activation_forward(layer: Layer, A: np.ndarray, values):
    Y = _ACTIVATIONS[layer.kind][0](A)
    return Y, (A, Y)


def _activation_backward(layer: Layer, cache, G: np.ndarray, values, want_input: bool):
    A, Y = cache
    return G * _ACTIVATIONS[layer.kind][1](A, Y), {}


def _pool_taps(layer: Layer) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``(HO, KH)`` and columns ``(WO, KW)`` of the input that window ``(y, x)`` reads."""
    (kh, kw), (sh, sw) = layer.size, layer.stride
    _, ho, wo = layer.out_shape
    rows = np.arange(ho)[:, None] * sh + np.arange(kh)[None, :]
    cols = np.arange(wo)[:, None] * sw + np.arange(kw)[None, :]
    return rows, cols


def _pool_windows(layer: Layer, A: np.ndarray) -> np.ndarray:
    """``(N, C, HO, WO, KH*KW)``: each window's elements in row-major order."""
    rows, cols = _pool_taps(layer)
    win = A[:, :, rows[:, None, :, None], cols[None, :, None, :]]
    return win.reshape(*win.shape[:4], -1)


def _pool_scatter(layer: Layer, Gwin: np.ndarray) -> np.ndarray:
    """The adjoint of ``_pool_windows``: each window element's gradient added back to the
    input element it read. Within one tap no two windows read the same element, so a plain
    ``+=`` per tap is exact; overlapping windows add up across taps."""
    rows, cols = _pool_taps(layer)
    (kh, kw), (c, h, w) = layer.size, layer.in_shape
    Gwin = Gwin.reshape(*Gwin.shape[:4], kh, kw)
    dA = np.zeros((Gwin.shape[0], c, h, w), dtype=Gwin.dtype)
    for i in range(kh):
        for j in range(kw):
            dA[:, :, rows[:, i, None], cols[None, :, j]] += Gwin[..., i, j]
    return dA


def _pool_forward(layer: Layer, A: np.ndarray, values):
    win = _pool_windows(layer, A)
    if layer.kind == "maxpool":
        # argmax keeps the first of equal maxima in row-major order, as PyTorch does.
        first = win.argmax(axis=-1)
        return np.take_along_axis(win, first[..., None], axis=-1)[..., 0], first
    if layer.kind == "avgpool":
        return win.mean(axis=-1), None
    out = np.sqrt((win * win).sum(axis=-1))
    return out, (win, out)


def _pool_backward(layer: Layer, cache, G: np.ndarray, values, want_input: bool):
    if not want_input:
        return None, {}
    taps = layer.size[0] * layer.size[1]
    if layer.kind == "maxpool":
        Gwin = (np.arange(taps) == cache[..., None]) * G[..., None]
    elif layer.kind == "avgpool":
        Gwin = np.repeat(G[..., None] / G.dtype.type(taps), taps, axis=-1)
    else:
        win, out = cache
        # d sqrt(sum x^2) / dx = x / out, taken as 0 on an all-zero window (out = 0).
        scale = np.divide(G, out, out=np.zeros_like(G), where=out > 0)
        Gwin = win * scale[..., None]
    return _pool_scatter(layer, Gwin.astype(G.dtype, copy=False)), {}


def _flatten_forward(layer: Layer, A: np.ndarray, values):
    return A.reshape(A.shape[0], -1), A.shape


def _flatten_backward(layer: Layer, shape, G: np.ndarray, values, want_input: bool):
    return G.reshape(shape), {}


_FORWARD: dict[str, Callable] = {
    "conv": _conv_forward, "dense": _dense_forward, "flatten": _flatten_forward,
    **{kind: _activation_forward for kind in _ACTIVATIONS},
    **{kind: _pool_forward for kind in ("maxpool", "avgpool", "l2pool")},
}
_BACKWARD: dict[str, Callable] = {
    "conv": _conv_backward, "dense": _dense_backward, "flatten": _flatten_backward,
    **{kind: _activation_backward for kind in _ACTIVATIONS},
    **{kind: _pool_backward for kind in ("maxpool", "avgpool", "l2pool")},
}


# -- losses: (value, dloss/dY) of the output Y and the targets T ---------------------------


def _per_sample_sum(values: np.ndarray) -> np.ndarray:
    return values.reshape(values.shape[0], -1).sum(axis=1)


def _l2(Y: np.ndarray, T: np.ndarray) -> np.floating:
    D = Y - T
    return (_per_sample_sum(D * D) / 2).mean()


def _l2_grad(Y: np.ndarray, T: np.ndarray) -> np.ndarray:
    return (Y - T) / Y.dtype.type(Y.shape[0])


def _check_probabilities(Y: np.ndarray) -> None:
    if not np.all((Y >= 0) & (Y <= 1)):
        raise ValueError(f"bce: the network's output must lie in [0, 1] (end it in sigmoid), "
                         f"got values from {np.nanmin(Y)} to {np.nanmax(Y)}")


def _bce(Y: np.ndarray, T: np.ndarray) -> np.floating:
    _check_probabilities(Y)
    with np.errstate(divide="ignore"):
        log_y = np.maximum(np.log(Y), BCE_LOG_FLOOR)
        log_1y = np.maximum(np.log(1 - Y), BCE_LOG_FLOOR)
    return (-_per_sample_sum(T * log_y + (1 - T) * log_1y)).mean()


def _bce_grad(Y: np.ndarray, T: np.ndarray) -> np.ndarray:
    _check_probabilities(Y)
    denominator = np.maximum(Y * (1 - Y), Y.dtype.type(BCE_EPSILON))
    return (Y - T) / denominator / Y.dtype.type(Y.shape[0])


def _log_softmax(Y: np.ndarray) -> np.ndarray:
    """``y - logsumexp(y)`` per sample, shifted by the row's maximum so ``exp`` cannot
    overflow."""
    shifted = Y - Y.max(axis=1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))


def _softmax_ce(Y: np.ndarray, T: np.ndarray) -> np.floating:
    return -np.take_along_axis(_log_softmax(Y), T[:, None], axis=1).mean()


def _softmax_ce_grad(Y: np.ndarray, T: np.ndarray) -> np.ndarray:
    P = np.exp(_log_softmax(Y))
    P[np.arange(Y.shape[0]), T] -= 1
    return P / Y.dtype.type(Y.shape[0])


_LOSSES: dict[str, tuple[Callable, Callable]] = {
    "l2": (_l2, _l2_grad), "bce": (_bce, _bce_grad), "softmax-ce": (_softmax_ce, _softmax_ce_grad),
}
