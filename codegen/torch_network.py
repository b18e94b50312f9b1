"""A network's twin in PyTorch: the same layers as ``torch.nn`` modules, our parameters in it.

>>> from derive import Network                                              # doctest: +SKIP
>>> net = Network.parse("1x8x8 | conv 6x3x3 pad 1 | relu | maxpool 2 | flatten | dense 10 "
...                     "| softmax-ce")                                     # doctest: +SKIP
>>> model = torch_model(net, dtype="float32")   # a torch.nn.Sequential       # doctest: +SKIP
>>> load_params(model, net.init_params(seed=0))                             # doctest: +SKIP
>>> loss = torch_loss(net)(model(X), T)         # DESIGN.md's loss          # doctest: +SKIP

The twin follows DESIGN.md ("Networks"): module ``i`` of the Sequential is layer ``i``, so a
plain conv or dense layer's parameters are ``"<i>.weight"``/``"<i>.bias"`` in its
``state_dict`` as in ours. Two conv layers need more than ``nn.Conv2d``: an uneven ``same``
padding at a stride above 1 (Conv2d's ``padding="same"`` refuses strides; an explicit
``ZeroPad2d`` before it does the same), and ``untied`` (a bias per output element, which no
torch.nn layer has). Those become a small module whose conv is ``"<i>.conv"``;
``torch_params`` maps our names onto either layout. ``convolution`` layers hold the flipped
kernel: Conv2d correlates, and the flip is made when parameters go in or come out.

The tests check the twin against ``derive.reference.network`` (loss, every gradient, the
output). Only the functions here import torch, and only when called: torch is the optional
extra ``torch``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from derive.network import Layer, Network

from .vocabulary import DTYPE_NAMES

__all__ = ["load_params", "read_params", "sgd_step", "torch_grads", "torch_loss", "torch_model",
           "torch_params"]


def _torch() -> Any:
    import torch

    return torch


def _dtype(torch: Any, dtype: Any) -> Any:
    """The torch dtype of a name (``"float32"``) or of a torch dtype; ValueError otherwise."""
    name = str(dtype).removeprefix("torch.")
    if name not in DTYPE_NAMES:
        raise ValueError(f"dtype={dtype!r}: expected one of {', '.join(DTYPE_NAMES)}")
    return getattr(torch, name)


@functools.cache
def _conv_parts(torch: Any) -> type:
    """The module class of a conv layer that ``nn.Conv2d`` alone cannot be (made once per
    process: torch is imported only when a twin is built)."""
    nn = torch.nn

    class ConvParts(nn.Module):
        """Zero padding given per side, then a Conv2d, then a bias per output element."""

        def __init__(self, conv: Any, pads: tuple[int, int, int, int] | None,
                     untied_shape: tuple[int, ...] | None) -> None:
            super().__init__()
            self.pad = nn.ZeroPad2d(pads) if pads is not None else nn.Identity()
            self.conv = conv
            if untied_shape is None:
                self.register_parameter("bias", None)
            else:
                self.bias = nn.Parameter(torch.zeros(untied_shape, dtype=conv.weight.dtype))

        def forward(self, x: Any) -> Any:
            y = self.conv(self.pad(x))
            return y if self.bias is None else y + self.bias

    return ConvParts


def _conv(torch: Any, layer: Layer, dtype: Any) -> Any:
    spec = layer.spec
    assert spec is not None
    o, c, kh, kw = spec.kernel
    top, bottom, left, right = spec.pads
    pads = None
    if (top, left) == (bottom, right):
        padding: Any = (top, left)
    elif spec.stride == (1, 1):
        # Uneven padding only comes from 'same', which PyTorch resolves itself at stride 1:
        # the twin then checks LayerSpec's choice (the extra row and column at the bottom
        # and right) against PyTorch's.
        padding = "same"
    else:
        padding, pads = 0, (left, right, top, bottom)
    conv = torch.nn.Conv2d(c, o, (kh, kw), stride=spec.stride, padding=padding,
                           dilation=spec.dilation, bias=spec.bias and not layer.untied,
                           dtype=dtype)
    if pads is None and not layer.untied:
        return conv
    return _conv_parts(torch)(conv, pads, layer.out_shape if layer.untied else None)


def torch_model(net: Network | str, dtype: Any = "float64") -> Any:
    """``net`` as a ``torch.nn.Sequential`` of ``dtype`` (module ``i`` is layer ``i``), with
    PyTorch's default initialisation; ``load_params`` puts our parameters in. The model
    keeps ``net`` and its torch ``dtype`` as attributes of those names."""
    torch = _torch()
    net = Network.parse(net) if isinstance(net, str) else net
    dtype = _dtype(torch, dtype)
    nn = torch.nn
    simple = {"relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh, "flatten": nn.Flatten}
    pools = {"maxpool": nn.MaxPool2d, "avgpool": nn.AvgPool2d,
             "l2pool": lambda size, stride: nn.LPPool2d(2, size, stride)}
    modules = []
    for layer in net.layers:
        if layer.kind == "conv":
            modules.append(_conv(torch, layer, dtype))
        elif layer.kind == "dense":
            units, d, _, _ = layer.spec.kernel
            modules.append(nn.Linear(d, units, bias=layer.spec.bias, dtype=dtype))
        elif layer.kind in pools:
            modules.append(pools[layer.kind](layer.size, layer.stride))
        else:
            modules.append(simple[layer.kind]())
    model = nn.Sequential(*modules)
    model.net, model.dtype = net, dtype
    return model


def torch_params(model: Any) -> dict[str, tuple[Any, bool]]:
    """Our parameter name -> (the model's parameter, whether its last two axes are flipped
    against ours), in ``net.params()`` order, for a model of ``torch_model``."""
    net: Network = model.net
    found = dict(model.named_parameters())
    out = {}
    for layer in net.layers:
        parts = layer.kind == "conv" and not isinstance(model[layer.index], _torch().nn.Conv2d)
        flip = layer.kind == "conv" and layer.spec.mode == "convolution"
        for name, _ in layer.params():
            weight = name.endswith("weight")
            torch_name = name
            if parts and (weight or not layer.untied):
                torch_name = f"{layer.index}.conv.{name.rsplit('.', 1)[1]}"
            out[name] = (found[torch_name], flip and weight)
    if len(out) != len(found):
        raise ValueError(f"model: its parameters {sorted(found)} are not those of "
                         f"{net.text()!r}")
    return out


def load_params(model: Any, params: Mapping[str, Any]) -> None:
    """Copy our parameters (name -> array, DESIGN.md's names and shapes) into ``model``, in
    the model's dtype; every parameter of the network must be given."""
    torch = _torch()
    with torch.no_grad():
        for name, (param, flip) in torch_params(model).items():
            if name not in params:
                raise ValueError(f"params: missing {name!r}")
            value = np.asarray(params[name])
            if value.shape != tuple(param.shape):
                raise ValueError(f"params[{name!r}]: expected shape {tuple(param.shape)}, "
                                 f"got {value.shape}")
            value = value[..., ::-1, ::-1] if flip else value
            param.copy_(torch.from_numpy(np.ascontiguousarray(value)))


def read_params(model: Any) -> dict[str, np.ndarray]:
    """The model's parameters under our names and layout, as NumPy copies."""
    out = {}
    for name, (param, flip) in torch_params(model).items():
        value = param.detach().numpy()
        out[name] = np.ascontiguousarray(value[..., ::-1, ::-1] if flip else value)
    return out


def torch_loss(net: Network | str) -> Callable[[Any, Any], Any]:
    """The loss of ``net`` as a function ``(Y, T) -> scalar tensor`` from torch.nn losses,
    with DESIGN.md's reduction: summed over a sample's outputs, averaged over the batch."""
    torch = _torch()
    net = Network.parse(net) if isinstance(net, str) else net
    if net.loss == "l2":
        mse = torch.nn.MSELoss(reduction="sum")
        return lambda Y, T: mse(Y, T) / (2 * Y.shape[0])
    if net.loss == "bce":
        bce = torch.nn.BCELoss(reduction="sum")
        return lambda Y, T: bce(Y, T) / Y.shape[0]
    return torch.nn.CrossEntropyLoss()


def _tensors(torch: Any, model: Any, X: Any, T: Any) -> tuple[Any, Any]:
    """``X`` and ``T`` as tensors for ``model``: class indices as int64, everything else in
    the model's dtype (the arrays are shared, not copied, when they have that dtype)."""
    Xt = torch.from_numpy(np.ascontiguousarray(X)).to(model.dtype)
    T = np.asarray(T)
    Tt = torch.from_numpy(np.ascontiguousarray(T))
    return Xt, (Tt.to(torch.int64) if T.dtype.kind in "iu" else Tt.to(model.dtype))


def torch_grads(net: Network | str, X: Any, T: Any, params: Mapping[str, Any]
                ) -> tuple[float, dict[str, np.ndarray], np.ndarray]:
    """``(loss, {name: dloss/dparam}, Y)`` from the twin in ``X``'s dtype: what
    ``derive.reference.network(net).grads`` and ``predict`` give, computed by PyTorch."""
    torch = _torch()
    model = torch_model(net, np.asarray(X).dtype.name)
    load_params(model, params)
    Xt, Tt = _tensors(torch, model, X, T)
    Y = model(Xt)
    loss = torch_loss(model.net)(Y, Tt)
    loss.backward()
    grads = {}
    for name, (param, flip) in torch_params(model).items():
        grad = param.grad.numpy()
        grads[name] = grad[..., ::-1, ::-1] if flip else grad
    return loss.item(), grads, Y.detach().numpy()


def sgd_step(model: Any, X: Any, T: Any, lr: float) -> Callable[[], Any]:
    """One SGD step of ``model`` on ``X``, ``T`` per call, as PyTorch users write it:
    ``zero_grad``, forward, loss, ``backward``, ``torch.optim.SGD.step``; the call returns
    the loss before the update (a tensor)."""
    torch = _torch()
    optimizer = torch.optim.SGD(model.parameters(), lr=lr)
    loss_fn = torch_loss(model.net)
    Xt, Tt = _tensors(torch, model, X, T)

    def step() -> Any:
        optimizer.zero_grad()
        loss = loss_fn(model(Xt), Tt)
        loss.backward()
        optimizer.step()
        return loss

    return step
