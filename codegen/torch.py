"""PyTorch front end of the generated kernels (the optional extra ``torch``).

>>> from codegen.torch import Conv2d, conv2d_op                          # doctest: +SKIP
>>> layer = Conv2d(3, 16, kernel_size=5, padding=2, input_size=(32, 32))  # doctest: +SKIP
>>> y = layer(x)                   # x (N, 3, 32, 32), CPU or CUDA; autograd works  # doctest: +SKIP
>>> op = conv2d_op(spec, dtype="float64")   # op(V, K, b) -> Z, differentiable     # doctest: +SKIP
>>> model = network_module(net, dtype=torch.float32)  # a whole derive.Network   # doctest: +SKIP
>>> loss = model(X, T); loss.backward()   # or model.step(X, T, lr=0.1)    # doctest: +SKIP

``conv2d_op`` makes one ``torch.library`` custom op per layer, dtype and target, named
``corrgen::conv2d_<key>`` (``key``: a hash of the three, so every process names the same
layer alike), with its autograd formula and its fake (meta) kernel, so it works under
``torch.autograd``, ``torch.compile`` and ``DistributedDataParallel``. Its gradients are
custom ops too (``..._grad_input``, ``..._grad_weight``, ``..._grad_bias``), each computed
only when autograd needs it.

CPU tensors run the module of ``target`` on the tensors' memory, without copies (inputs
that are not contiguous are made so first; outputs are written in place through ``out=``).
CUDA tensors run the ``cuda`` module's device entry points (``module.device``) on the
current stream of the tensors' device.

Only this module imports torch; ``import codegen`` does not.
"""

from __future__ import annotations

import hashlib
import json
import math
import threading
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from derive.geometry import buffer_shapes
from derive.network import Network
from derive.spec import LayerSpec

from .vocabulary import DTYPE_NAMES

if TYPE_CHECKING:
    from types import ModuleType

__all__ = ["Conv2d", "Conv2dOp", "GeneratedNetwork", "conv2d_op", "network_module"]

#: The namespace of every op made here.
NAMESPACE = "corrgen"


def dtype_name(dtype: Any) -> str:
    """``"float32"`` or ``"float64"`` from a name or a torch dtype; ValueError otherwise."""
    name = str(dtype).removeprefix("torch.") if isinstance(dtype, (str, torch.dtype)) else None
    if name not in DTYPE_NAMES:
        raise ValueError(f"dtype={dtype!r}: expected one of {', '.join(DTYPE_NAMES)} "
                         "(a name or a torch dtype)")
    return name


def op_key(spec: LayerSpec, dtype: str, target: str) -> str:
    """A 12-digit hash of the layer, dtype and target: the same in every process."""
    text = json.dumps({"spec": spec.to_dict(), "dtype": dtype, "target": target},
                      sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:12]


class Conv2dOp:
    """The custom ops of one layer, dtype and target.

    Attributes:
        spec, dtype, target: what the ops run.
        name: the forward op's qualified name, ``corrgen::conv2d_<key>``.
        op: the forward op, ``op(V, K, b) -> Z`` (``b`` None when ``spec.bias`` is False).
        grad_input, grad_weight, grad_bias: the gradient ops, ``(K, G) -> dV``,
            ``(V, G) -> dK``, ``(G) -> db`` (``grad_bias`` None without a bias).
    """

    def __init__(self, spec: LayerSpec, dtype: str, target: str) -> None:
        self.spec, self.dtype, self.target = spec, dtype, target
        self.torch_dtype = getattr(torch, dtype)
        shapes = buffer_shapes(spec)
        self.shapes = {name: tuple(dims) for name, (dims, _) in shapes.items()}
        self.batched = {name for name, (_, batched) in shapes.items() if batched}
        self._modules: dict[str, ModuleType] = {}
        self._lock = threading.Lock()
        base = f"{NAMESPACE}::conv2d_{op_key(spec, dtype, target)}"
        self.name = base
        self.op = self._define(base, "(Tensor V, Tensor K, Tensor? b) -> Tensor",
                               self._forward, self._forward_fake)
        self.grad_input = self._define(f"{base}_grad_input", "(Tensor K, Tensor G) -> Tensor",
                                       self._grad_input, self._grad_input_fake)
        self.grad_weight = self._define(f"{base}_grad_weight",
                                        "(Tensor V, Tensor G) -> Tensor",
                                        self._grad_weight, self._grad_weight_fake)
        self.grad_bias = self._define(f"{base}_grad_bias", "(Tensor G) -> Tensor",
                                      self._grad_bias, self._grad_bias_fake) \
            if spec.bias else None
        self.op.register_autograd(self._backward, setup_context=self._setup_context)

    @staticmethod
    def _define(name: str, schema: str, function: Any, fake: Any) -> Any:
        op = torch.library.custom_op(name, function, mutates_args=(), schema=schema)
        op.register_fake(fake)
        return op

    def __call__(self, V: Tensor, K: Tensor, b: Tensor | None = None) -> Tensor:
        return self.op(V, K, b)

    def __repr__(self) -> str:
        return f"Conv2dOp({self.name}, dtype={self.dtype!r}, target={self.target!r})"

    # -- the generated modules --------------------------------------------------------------

    def module(self, device: torch.device) -> ModuleType:
        """The generated module that runs tensors on ``device`` (built on first use)."""
        target = "cuda" if device.type == "cuda" else self.target
        if device.type not in ("cpu", "cuda"):
            raise ValueError(f"device {device}: the generated kernels run on CPU and CUDA "
                             "tensors only")
        with self._lock:
            module = self._modules.get(target)
            if module is None:
                from .loader import load

                module = self._modules[target] = load(self.spec, target, self.dtype)
        return module

    # -- checks -----------------------------------------------------------------------------

    def expected(self, name: str, batch: Any = None) -> str:
        dims = self.shapes[name]
        if name in self.batched:
            dims = ("N" if batch is None else batch, *dims)
        return f"{self.torch_dtype} ({', '.join(map(str, dims))}{',' if len(dims) == 1 else ''})"

    def check(self, name: str, tensor: Any, batch: Any = None, device: Any = None) -> None:
        """Refuse a non-tensor (TypeError), another dtype (TypeError), another shape or
        device (ValueError); the message names the argument."""
        if not isinstance(tensor, Tensor):
            raise TypeError(f"{name}: expected a tensor of {self.expected(name, batch)}, got "
                            f"{type(tensor).__name__}")
        got = f"{tensor.dtype} {tuple(tensor.shape)}"
        if tensor.dtype != self.torch_dtype:
            raise TypeError(f"{name}: expected {self.expected(name, batch)}, got {got}")
        dims = self.shapes[name]
        if name in self.batched:
            ok = tensor.dim() == 4 and tuple(tensor.shape[1:]) == dims and (
                batch is None or tensor.shape[0] == batch)
        else:
            ok = tuple(tensor.shape) == dims
        if not ok:
            raise ValueError(f"{name}: expected {self.expected(name, batch)}, got {got}")
        if device is not None and tensor.device != device:
            raise ValueError(f"{name}: on {tensor.device}, expected {device} (the device of "
                             "the first argument)")

    def _check_forward(self, V: Tensor, K: Tensor, b: Tensor | None) -> None:
        self.check("V", V)
        self.check("K", K, device=V.device)
        if self.spec.bias:
            if b is None:
                raise TypeError(f"b: the layer has a bias: expected {self.expected('b')}, "
                                "got None")
            self.check("b", b, device=V.device)
        elif b is not None:
            raise ValueError("b: the layer has no bias (spec.bias is False): expected None, "
                             f"got {type(b).__name__}")

    # -- the kernels ------------------------------------------------------------------------

    def _run(self, name: str, inputs: tuple[Tensor, ...], out: Tensor) -> Tensor:
        """Run pass ``name`` of the device's module on ``inputs``, writing into ``out``."""
        inputs = tuple(t.detach().contiguous() for t in inputs)
        module = self.module(out.device)
        if out.device.type == "cuda":
            with torch.cuda.device(out.device):
                getattr(module.device, name)(*inputs, out=out,
                                             stream=torch.cuda.current_stream(out.device))
        else:
            getattr(module, name)(*(t.numpy() for t in inputs), out=out.numpy())
        return out

    def _forward(self, V: Tensor, K: Tensor, b: Tensor | None) -> Tensor:
        self._check_forward(V, K, b)
        Z = V.new_empty((V.shape[0], *self.shapes["Z"]))
        return self._run("forward", (V, K) if b is None else (V, K, b), Z)

    def _forward_fake(self, V: Tensor, K: Tensor, b: Tensor | None) -> Tensor:
        self._check_forward(V, K, b)
        return V.new_empty((V.shape[0], *self.shapes["Z"]))

    def _grad_input_fake(self, K: Tensor, G: Tensor) -> Tensor:
        self.check("K", K)
        self.check("G", G, device=K.device)
        return G.new_empty((G.shape[0], *self.shapes["V"]))

    def _grad_input(self, K: Tensor, G: Tensor) -> Tensor:
        return self._run("grad_input", (K, G), self._grad_input_fake(K, G))

    def _grad_weight_fake(self, V: Tensor, G: Tensor) -> Tensor:
        self.check("V", V)
        self.check("G", G, batch=V.shape[0], device=V.device)
        return V.new_empty(self.shapes["K"])

    def _grad_weight(self, V: Tensor, G: Tensor) -> Tensor:
        return self._run("grad_weight", (V, G), self._grad_weight_fake(V, G))

    def _grad_bias_fake(self, G: Tensor) -> Tensor:
        self.check("G", G)
        return G.new_empty(self.shapes["b"])

    def _grad_bias(self, G: Tensor) -> Tensor:
        return self._run("grad_bias", (G,), self._grad_bias_fake(G))

    # -- autograd ---------------------------------------------------------------------------

    @staticmethod
    def _setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        V, K, _ = inputs
        ctx.save_for_backward(V, K)

    def _backward(self, ctx: Any, G: Tensor) -> tuple[Tensor | None, ...]:
        V, K = ctx.saved_tensors
        needs = ctx.needs_input_grad
        G = G.contiguous()
        dV = self.grad_input(K, G) if needs[0] else None
        dK = self.grad_weight(V, G) if needs[1] else None
        db = self.grad_bias(G) if self.grad_bias is not None and needs[2] else None
        return dV, dK, db


_OPS: dict[tuple[LayerSpec, str, str], Conv2dOp] = {}
_OPS_LOCK = threading.Lock()


def conv2d_ops(spec: LayerSpec, dtype: Any = "float64", target: str = "openmp") -> Conv2dOp:
    """The ``Conv2dOp`` of a layer, dtype and target: made once per process, then reused."""
    if not isinstance(spec, LayerSpec):
        raise TypeError(f"spec: expected a derive.spec.LayerSpec, got {type(spec).__name__}")
    key = (spec, dtype_name(dtype), target)
    with _OPS_LOCK:
        ops = _OPS.get(key)
        if ops is None:
            ops = _OPS[key] = Conv2dOp(*key)
        return ops


def conv2d_op(spec: LayerSpec, dtype: Any = "float64", target: str = "openmp") -> Any:
    """The custom op ``op(V, K, b) -> Z`` of ``spec``: differentiable, traceable by
    ``torch.compile``, the same object for the same spec, dtype and target.

    Args:
        spec: the layer.
        dtype: ``"float32"``/``"float64"`` or the torch dtype; every tensor must have it.
        target: the module that runs CPU tensors (``openmp``); CUDA tensors always run the
            ``cuda`` module.
    """
    return conv2d_ops(spec, dtype, target).op


def _pair(value: Any) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


class Conv2d(nn.Module):
    """``nn.Conv2d`` on the generated kernels, for one input size.

    Takes ``nn.Conv2d``'s arguments (no groups, zero padding only) plus ``input_size``
    ``(H, W)`` (every extent but the batch is fixed by the kernels) and ``mode``. Holds
    ``weight`` ``(O, C, KH, KW)`` and ``bias`` ``(O,)`` as ``nn.Conv2d`` does, initialised as
    it does, so ``load_state_dict`` works both ways (in ``mode="convolution"`` the layer
    flips the kernel, so the same weights give another function than ``nn.Conv2d``).
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: Any, stride: Any = 1,
                 padding: Any = 0, dilation: Any = 1, bias: bool = True, *, input_size: Any,
                 dtype: torch.dtype = torch.float32, device: Any = None,
                 mode: str = "correlation", target: str = "openmp") -> None:
        super().__init__()
        kh, kw = _pair(kernel_size)
        h, w = _pair(input_size)
        self.spec = LayerSpec(input=(in_channels, h, w), kernel=(out_channels, in_channels, kh, kw),
                              stride=stride, padding=padding, dilation=dilation, bias=bias,
                              mode=mode)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.kernel_size, self.input_size = (kh, kw), (h, w)
        self.stride, self.dilation = self.spec.stride, self.spec.dilation
        self.padding = padding if isinstance(padding, str) else _pair(padding)
        self.mode = mode
        self.ops = conv2d_ops(self.spec, dtype, target)
        self.weight = nn.Parameter(torch.empty(self.spec.kernel, dtype=dtype, device=device))
        self.bias = nn.Parameter(torch.empty(out_channels, dtype=dtype, device=device)) \
            if bias else None
        self.reset_parameters()

    @classmethod
    def from_spec(cls, spec: LayerSpec, dtype: torch.dtype = torch.float32, device: Any = None,
                  target: str = "openmp") -> Conv2d:
        """The layer of ``spec``."""
        o, c, kh, kw = spec.kernel
        return cls(c, o, (kh, kw), spec.stride, spec.padding, spec.dilation, spec.bias,
                   input_size=spec.input[1:], dtype=dtype, device=device, mode=spec.mode,
                   target=target)

    def reset_parameters(self) -> None:
        """``nn.Conv2d.reset_parameters``: Kaiming-uniform weight, uniform bias."""
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            fan_in, _ = nn.init._calculate_fan_in_and_fan_out(self.weight)
            if fan_in:
                bound = 1 / math.sqrt(fan_in)
                nn.init.uniform_(self.bias, -bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        """``x`` ``(N, C, H, W)`` (or ``(C, H, W)``) to ``(N, O, HO, WO)`` (``(O, HO, WO)``)."""
        if x.dim() == 3:
            return self.ops.op(x.unsqueeze(0), self.weight, self.bias).squeeze(0)
        return self.ops.op(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        text = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
                f"stride={self.stride}")
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.dilation != (1, 1):
            text += f", dilation={self.dilation}"
        if self.bias is None:
            text += ", bias=False"
        text += f", input_size={self.input_size}"
        if self.mode != "correlation":
            text += f", mode={self.mode!r}"
        return text


# -- a whole network ------------------------------------------------------------------------


class _NetworkLoss(torch.autograd.Function):
    """The network's loss as a function of its parameters: forward and every parameter
    gradient in one call of the generated module (``grads``), the gradients kept for
    ``backward``, which only scales them by the loss's upstream gradient."""

    @staticmethod
    def forward(ctx: Any, owner: GeneratedNetwork, X: Tensor, T: Tensor,
                *params: Tensor) -> Tensor:
        arrays = dict(zip(owner.param_names, (p.detach().numpy() for p in params)))
        if any(ctx.needs_input_grad[3:]):
            loss, grads = owner.compiled.grads(X.numpy(), T.numpy(), arrays)
            ctx.save_for_backward(*(torch.from_numpy(grads[n]) for n in owner.param_names))
        else:
            loss = owner.compiled.loss(X.numpy(), T.numpy(), arrays)
        return torch.tensor(loss, dtype=X.dtype)

    @staticmethod
    def backward(ctx: Any, G: Tensor) -> tuple[Tensor | None, ...]:
        return (None, None, None, *(G * d for d in ctx.saved_tensors))


class _LayerParams(nn.Module):
    """One layer's ``weight`` and ``bias`` (the submodule ``"<i>"`` of ``GeneratedNetwork``)."""

    def __init__(self, layer: Any, dtype: torch.dtype) -> None:
        super().__init__()
        self.text = layer.text
        for name, shape in layer.params():
            setattr(self, name.rsplit(".", 1)[1], nn.Parameter(torch.empty(shape, dtype=dtype)))

    def extra_repr(self) -> str:
        return self.text


class GeneratedNetwork(nn.Module):
    """A ``derive.Network`` on its generated module (``codegen.load_network``), as an
    ``nn.Module``.

    Layer ``i``'s parameters are the submodule ``"<i>"``'s ``weight`` and ``bias``, so the
    ``state_dict`` names are DESIGN.md's (``"0.weight"``, ``"0.bias"``, ...) in
    ``net.params()`` order and shapes; for a network of plain conv and dense layers they
    are also ``codegen.torch_network.torch_model(net)``'s, so ``load_state_dict`` works both
    ways. Initialised as ``torch_model`` initialises (PyTorch's defaults) unless ``params``
    (name -> array) is given.

    ``model(X, T)`` is the loss, differentiable with respect to the parameters (so
    ``torch.optim`` optimisers and ``DistributedDataParallel`` work); ``model.step(X, T,
    lr)`` is the fused SGD step in one C call; ``model.predict(X)`` the last layer's output.
    CPU tensors only: they are handed to the module without copies.
    """

    def __init__(self, net: Network | str, dtype: Any = torch.float32, *,
                 target: str = "openmp", params: Any = None) -> None:
        super().__init__()
        from .loader import load_network

        self.net = Network.parse(net) if isinstance(net, str) else net
        if not isinstance(self.net, Network):
            raise TypeError(f"net: expected a derive.Network or its text, got "
                            f"{type(net).__name__}")
        self.dtype_name = dtype_name(dtype)
        self.torch_dtype = getattr(torch, self.dtype_name)
        self.compiled = load_network(self.net, target, self.dtype_name)
        self.param_names = [name for name, _ in self.net.params()]
        for layer in self.net.layers:
            if layer.params():
                self.add_module(str(layer.index), _LayerParams(layer, self.torch_dtype))
        self.load_params(params if params is not None else self._pytorch_defaults())

    def _pytorch_defaults(self) -> dict[str, Any]:
        from .torch_network import read_params, torch_model

        return read_params(torch_model(self.net, self.torch_dtype))

    def params(self) -> dict[str, Tensor]:
        """Name -> parameter, in ``net.params()`` order."""
        found = dict(self.named_parameters())
        return {name: found[name] for name in self.param_names}

    def load_params(self, params: Any) -> None:
        """Copy ``params`` (name -> array or tensor, every parameter of the network) in."""
        with torch.no_grad():
            for name, param in self.params().items():
                if name not in params:
                    raise ValueError(f"params: missing {name!r}")
                value = torch.as_tensor(params[name])
                if tuple(value.shape) != tuple(param.shape):
                    raise ValueError(f"params[{name!r}]: expected shape {tuple(param.shape)}, "
                                     f"got {tuple(value.shape)}")
                param.copy_(value)

    def _check(self, X: Tensor, T: Tensor | None = None) -> None:
        tensors = [("X", X, self.torch_dtype)]
        if T is not None:
            classes = self.net.loss == "softmax-ce"
            tensors.append(("T", T, torch.int64 if classes else self.torch_dtype))
        for name, tensor, dtype in tensors:
            if not isinstance(tensor, Tensor):
                raise TypeError(f"{name}: expected a tensor, got {type(tensor).__name__}")
            if tensor.device.type != "cpu" or tensor.dtype != dtype:
                raise TypeError(f"{name}: expected a CPU tensor of {dtype}, got {tensor.dtype}"
                                f" on {tensor.device}")
        if X.requires_grad:
            raise ValueError("X: requires grad, but the generated step computes the gradients "
                             "of the parameters only, not of the network's input")

    def forward(self, X: Tensor, T: Tensor) -> Tensor:
        """The loss of the batch ``X`` ``(N, C, H, W)`` against ``T`` (DESIGN.md's losses:
        class indices as int64 for softmax-ce), a 0-d tensor of the model's dtype."""
        self._check(X, T)
        return _NetworkLoss.apply(self, X.detach().contiguous(), T.detach().contiguous(),
                                  *self.params().values())

    @torch.no_grad()
    def predict(self, X: Tensor) -> Tensor:
        """The last layer's output ``(N, *net.output_shape)``, without gradients."""
        self._check(X)
        arrays = {n: p.detach().numpy() for n, p in self.params().items()}
        return torch.from_numpy(self.compiled.predict(X.contiguous().numpy(), arrays))

    @torch.no_grad()
    def step(self, X: Tensor, T: Tensor, lr: float) -> float:
        """One SGD step, ``p -= lr * dloss/dp`` on the parameters' own memory, forward to
        update in one call; returns the loss before the update."""
        self._check(X, T)
        arrays = {n: p.detach().numpy() for n, p in self.params().items()}
        return self.compiled.step(X.contiguous().numpy(), T.contiguous().numpy(), arrays, lr)

    def extra_repr(self) -> str:
        return f"{self.net.text()!r}, dtype={self.torch_dtype}, target={self.compiled.target!r}"


def network_module(net: Network | str, dtype: Any = torch.float32, *, target: str = "openmp",
                   params: Any = None) -> GeneratedNetwork:
    """``net`` (a ``derive.Network`` or its text) as an ``nn.Module`` on its generated module:
    see ``GeneratedNetwork``."""
    return GeneratedNetwork(net, dtype, target=target, params=params)
