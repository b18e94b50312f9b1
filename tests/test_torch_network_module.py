"""codegen.torch.network_module: a generated network as an nn.Module.

Checked against the same network built from torch.nn layers (codegen.torch_network's twin,
itself checked against derive.reference.network): the loss, every gradient through
autograd, the output, SGD with torch.optim and the fused step, and gradcheck.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (the extra 'torch')")

from test_network_module import EXAMPLE, GRID  # noqa: E402

from codegen.torch import GeneratedNetwork, network_module  # noqa: E402
from codegen.torch_network import (  # noqa: E402
    load_params,
    read_params,
    torch_loss,
    torch_model,
    torch_params,
)
from derive.network import Network  # noqa: E402


def data(net: Network, dtype, batch: int = 4, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    X = torch.randn((batch, *net.input), dtype=dtype, generator=generator)
    if net.loss == "softmax-ce":
        T = torch.randint(0, net.output_shape[0], (batch,), generator=generator)
    else:
        T = 0.05 + 0.9 * torch.rand((batch, *net.output_shape), dtype=dtype,
                                    generator=generator)
    return X, T


def pair(text: str, dtype=torch.float64, seed: int = 0):
    """The generated network and its torch.nn twin, holding the same parameters."""
    net = Network.parse(text)
    params = net.init_params(seed)
    ours = network_module(net, dtype, params=params)
    twin = torch_model(net, dtype)
    load_params(twin, params)
    return net, ours, twin


@pytest.mark.parametrize("text", GRID, ids=[f"grid{i}" for i in range(len(GRID))])
def test_loss_gradients_and_output_match_the_torch_twin(text):
    net, ours, twin = pair(text)
    X, T = data(net, torch.float64)
    loss = ours(X, T)
    loss.backward()
    want = torch_loss(net)(twin(X), T)
    want.backward()
    torch.testing.assert_close(loss, want, rtol=1e-12, atol=1e-14)
    for name, (param, flip) in torch_params(twin).items():
        want_grad = param.grad.flip(-1, -2) if flip else param.grad
        got = ours.params()[name].grad
        assert got is not None, name
        torch.testing.assert_close(got, want_grad, rtol=1e-10, atol=1e-13, msg=name)
    torch.testing.assert_close(ours.predict(X), twin(X).detach(), rtol=1e-12, atol=1e-13)


def test_state_dict_names_are_designs_and_load_both_ways():
    net = Network.parse(EXAMPLE)
    ours = network_module(net, torch.float32)
    assert [(k, tuple(v.shape)) for k, v in ours.state_dict().items()] == net.params()
    twin = torch_model(net, torch.float32)
    ours.load_state_dict(twin.state_dict())
    for name, value in twin.state_dict().items():
        assert torch.equal(ours.state_dict()[name], value)
    ours.load_params(net.init_params(seed=3))
    twin.load_state_dict(ours.state_dict())
    X, T = data(net, torch.float32)
    torch.testing.assert_close(ours.predict(X), twin(X).detach(), rtol=2e-5, atol=1e-6)


def test_default_initialisation_is_pytorchs():
    """Without params, the parameters come from the twin's (PyTorch's) initialisation under
    the same seed."""
    torch.manual_seed(7)
    ours = network_module(EXAMPLE, torch.float64)
    torch.manual_seed(7)
    twin = torch_model(EXAMPLE, torch.float64)
    for name, value in twin.state_dict().items():
        assert torch.equal(ours.state_dict()[name], value), name


def _sgd(model, X, T, steps: int, lr: float, loss=None):
    optimiser = torch.optim.SGD(model.parameters(), lr=lr)
    for _ in range(steps):
        optimiser.zero_grad()
        (model(X, T) if loss is None else loss(model(X), T)).backward()
        optimiser.step()


@pytest.mark.parametrize("text", [GRID[0], GRID[1]], ids=["example", "grid1"])
def test_training_with_torch_optim_and_the_fused_step(text):
    net, ours, twin = pair(text)
    fused = network_module(net, torch.float64, params=read_params(twin))
    X, T = data(net, torch.float64, batch=6, seed=1)
    _sgd(ours, X, T, steps=5, lr=0.2)
    _sgd(twin, X, T, steps=5, lr=0.2, loss=torch_loss(net))
    losses = [fused.step(X, T, lr=0.2) for _ in range(5)]
    assert losses[-1] < losses[0]
    want = read_params(twin)
    for name in want:
        np.testing.assert_allclose(ours.params()[name].detach().numpy(), want[name],
                                   rtol=1e-10, atol=1e-12, err_msg=name)
        np.testing.assert_allclose(fused.params()[name].detach().numpy(), want[name],
                                   rtol=1e-10, atol=1e-12, err_msg=name)


def test_gradcheck():
    """Finite differences of the loss against the generated gradients (smooth layers only:
    tanh, average and L2 pooling, no kinks near the sample points)."""
    net = Network.parse("1x6x6 | conv 2x3x3 | tanh | avgpool 2 | flatten | dense 3 | l2")
    ours = network_module(net, torch.float64, params=net.init_params(seed=0))
    X, T = data(net, torch.float64, batch=2)
    names = list(ours.params())
    inputs = tuple(p.detach().clone().requires_grad_() for p in ours.params().values())

    def loss(*values):
        return torch.func.functional_call(ours, dict(zip(names, values)), (X, T))

    assert torch.autograd.gradcheck(loss, inputs, eps=1e-6, atol=1e-8)


def test_float32_module_and_refusals():
    net = Network.parse(EXAMPLE)
    ours = network_module(net, "float32")
    assert isinstance(ours, GeneratedNetwork) and ours.torch_dtype is torch.float32
    X, T = data(net, torch.float32)
    assert ours(X, T).dtype == torch.float32
    with pytest.raises(TypeError, match=r"X: expected a CPU tensor of torch.float32"):
        ours(X.double(), T)
    with pytest.raises(TypeError, match=r"T: expected a CPU tensor of torch.int64"):
        ours(X, T.int())
    with pytest.raises(ValueError, match=r"X: requires grad"):
        ours(X.clone().requires_grad_(), T)
    with pytest.raises(ValueError, match=r"dtype='float16'"):
        network_module(net, "float16")
    with pytest.raises(ValueError, match=r"params: missing '4.bias'"):
        ours.load_params({k: v for k, v in net.init_params(0).items() if k != "4.bias"})
    with pytest.raises(ValueError, match=r"T: class indices must lie in 0..9"):
        ours.step(X, torch.full_like(T, 10), lr=0.1)
