"""codegen.torch: the generated kernels as PyTorch custom ops and an nn.Conv2d-like layer.

Checked against torch.nn.functional.conv2d and nn.Conv2d (forward, gradients, training,
state dicts), with gradcheck, opcheck, torch.compile and DistributedDataParallel (gloo, two
processes on this machine; this file is also the workers' script).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch", reason="PyTorch is not installed (the extra 'torch')")

import torch.nn.functional as F  # noqa: E402
from torch import nn  # noqa: E402

from codegen.torch import Conv2d, conv2d_op, conv2d_ops  # noqa: E402
from codegen.vocabulary import DTYPES  # noqa: E402
from derive.spec import LayerSpec  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

#: Small layers covering stride, padding (symmetric, asymmetric "same"), dilation, no bias and
#: convolution mode.
LAYERS = [
    LayerSpec(input=(2, 5, 6), kernel=(3, 2, 3, 3)),
    LayerSpec(input=(2, 7, 6), kernel=(3, 2, 3, 2), stride=2, padding=1),
    LayerSpec(input=(1, 8, 7), kernel=(2, 1, 2, 3), dilation=(2, 1), padding="same"),
    LayerSpec(input=(3, 6, 6), kernel=(2, 3, 3, 3), stride=(1, 2), bias=False),
    LayerSpec(input=(2, 6, 5), kernel=(2, 2, 3, 2), padding=(1, 0), mode="convolution"),
]
IDS = ["plain", "stride-pad", "dilation-same", "no-bias", "convolution"]


def reference(spec: LayerSpec, V, K, b):
    """The layer by torch.nn.functional.conv2d (the kernel flipped in convolution mode)."""
    if spec.mode == "convolution":
        K = K.flip(-1, -2)
    top, bottom, left, right = spec.pads
    V = F.pad(V, (left, right, top, bottom))
    return F.conv2d(V, K, b, stride=spec.stride, dilation=spec.dilation)


def inputs(spec: LayerSpec, dtype, batch: int = 3, grad: bool = False, seed: int = 0):
    generator = torch.Generator().manual_seed(seed)
    shapes = [(batch, *spec.input), spec.kernel] + ([(spec.kernel[0],)] if spec.bias else [])
    tensors = [torch.randn(s, dtype=dtype, generator=generator, requires_grad=grad)
               for s in shapes]
    return (*tensors, None) if not spec.bias else tuple(tensors)


# -- the op ---------------------------------------------------------------------------------


@pytest.mark.parametrize("spec", LAYERS, ids=IDS)
def test_gradcheck(spec):
    op = conv2d_op(spec, dtype="float64")
    assert torch.autograd.gradcheck(op, inputs(spec, torch.float64, batch=2, grad=True))


@pytest.mark.parametrize("spec", [LAYERS[1], LAYERS[3]], ids=[IDS[1], IDS[3]])
def test_opcheck(spec):
    op = conv2d_op(spec, dtype="float64")
    torch.library.opcheck(op, inputs(spec, torch.float64))
    torch.library.opcheck(op, inputs(spec, torch.float64, grad=True))


def test_one_op_per_layer_and_dtype():
    spec = LAYERS[0]
    op = conv2d_op(spec, dtype="float32")
    assert conv2d_op(LayerSpec(input=(2, 5, 6), kernel=(3, 2, 3, 3)), torch.float32) is op
    assert conv2d_op(spec, dtype="float64") is not op
    name = conv2d_ops(spec, "float32").name
    assert name.startswith("corrgen::conv2d_") and name != conv2d_ops(spec, "float64").name


def _bound(spec, tensors, G, dtype):
    """Allowed error of the forward and of each gradient: the dtype's tolerance times the
    sum of the absolute terms (the same computation on absolute values, in float64)."""
    absolute = [None if t is None else t.detach().double().abs().requires_grad_()
                for t in tensors]
    Z = reference(spec, *absolute)
    Z.backward(G.double().abs())
    tolerance = DTYPES[str(dtype).removeprefix("torch.")].tolerance
    terms = [Z.detach()] + [t.grad for t in absolute if t is not None]
    return [tolerance * t + 1e-300 for t in terms]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64], ids=["f32", "f64"])
@pytest.mark.parametrize("spec", LAYERS, ids=IDS)
def test_matches_functional_conv2d(spec, dtype):
    op = conv2d_op(spec, dtype=dtype)
    ours = inputs(spec, dtype, grad=True, seed=1)
    theirs = [None if t is None else t.detach().double().requires_grad_() for t in ours]
    Z, R = op(*ours), reference(spec, *theirs)
    G = torch.randn(Z.shape, dtype=dtype, generator=torch.Generator().manual_seed(2))
    Z.backward(G)
    R.backward(G.double())
    bounds = _bound(spec, ours, G, dtype)
    got = [Z.detach()] + [t.grad for t in ours if t is not None]
    want = [R.detach()] + [t.grad for t in theirs if t is not None]
    for name, g, w, bound in zip(("Z", "dV", "dK", "db"), got, want, bounds):
        assert g.dtype == dtype and g.shape == w.shape, name
        excess = ((g.double() - w).abs() - bound).max().item()
        assert excess <= 0, f"{name}: error above the bound by {excess}"


def test_only_needed_gradients(monkeypatch):
    spec = LAYERS[1]
    ops = conv2d_ops(spec, "float64")
    calls = []
    for name in ("grad_input", "grad_weight", "grad_bias"):
        op = getattr(ops, name)
        monkeypatch.setattr(ops, name, lambda *a, _op=op, _n=name: calls.append(_n) or _op(*a))
    V, K, b = inputs(spec, torch.float64)
    K.requires_grad_()
    ops.op(V, K, b).sum().backward()
    assert calls == ["grad_weight"] and V.grad is None and b.grad is None


def test_refusals_name_the_argument():
    spec = LAYERS[0]
    op = conv2d_op(spec, dtype="float64")
    V, K, b = inputs(spec, torch.float64)
    with pytest.raises(TypeError, match=r"^V: expected torch.float64 \(N, 2, 5, 6\), got "
                                        r"torch.float32"):
        op(V.float(), K, b)
    with pytest.raises(ValueError, match=r"^K: expected torch.float64 \(3, 2, 3, 3\)"):
        op(V, K[:, :1], b)
    with pytest.raises(ValueError, match=r"^V: expected"):
        op(V[..., :5], K, b)
    with pytest.raises(TypeError, match=r"^b: the layer has a bias"):
        op(V, K, None)
    with pytest.raises(ValueError, match=r"^b: the layer has no bias"):
        conv2d_op(LAYERS[3], dtype="float64")(*inputs(LAYERS[3], torch.float64)[:2], b)
    with pytest.raises(ValueError, match="dtype='float16'"):
        conv2d_op(spec, dtype="float16")


def test_non_contiguous_inputs():
    spec = LAYERS[0]
    V, K, b = inputs(spec, torch.float64)
    Vt = V.transpose(2, 3).contiguous().transpose(2, 3)
    assert not Vt.is_contiguous()
    torch.testing.assert_close(conv2d_op(spec)(Vt, K, b), reference(spec, V, K, b))


def test_import_codegen_does_not_import_torch():
    code = "import sys, codegen; codegen.load; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


# -- the layer ------------------------------------------------------------------------------


def test_layer_like_nn_conv2d():
    layer = Conv2d(3, 4, kernel_size=3, stride=2, padding=1, dilation=2, bias=True,
                   input_size=(9, 8), dtype=torch.float64)
    twin = nn.Conv2d(3, 4, kernel_size=3, stride=2, padding=1, dilation=2, dtype=torch.float64)
    assert [(n, p.shape) for n, p in layer.named_parameters()] == \
        [(n, p.shape) for n, p in twin.named_parameters()]
    twin.load_state_dict(layer.state_dict())
    x = torch.randn(2, 3, 9, 8, dtype=torch.float64)
    torch.testing.assert_close(layer(x), twin(x))
    twin.reset_parameters()
    layer.load_state_dict(twin.state_dict())
    torch.testing.assert_close(layer(x), twin(x))
    torch.testing.assert_close(layer(x[0]), twin(x[0]))
    assert repr(layer) == ("Conv2d(3, 4, kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), "
                           "dilation=(2, 2), input_size=(9, 8))")


def test_initialisation_like_nn_conv2d():
    torch.manual_seed(5)
    layer = Conv2d(3, 4, 3, input_size=(5, 5))
    torch.manual_seed(5)
    twin = nn.Conv2d(3, 4, 3)
    torch.testing.assert_close(layer.weight, twin.weight, rtol=0, atol=0)
    torch.testing.assert_close(layer.bias, twin.bias, rtol=0, atol=0)
    assert layer.weight.dtype == torch.float32


def test_from_spec():
    spec = LAYERS[4]
    layer = Conv2d.from_spec(spec, dtype=torch.float64)
    assert layer.spec == spec and layer.bias is not None and "mode='convolution'" in repr(layer)
    x = torch.randn(2, *spec.input, dtype=torch.float64)
    torch.testing.assert_close(layer(x), reference(spec, x, layer.weight, layer.bias))
    nobias = Conv2d.from_spec(LAYERS[3])
    assert nobias.bias is None and "bias=False" in repr(nobias)


def model(dtype=torch.float64, layers=(Conv2d, Conv2d)):
    """Two conv layers (generated or nn.Conv2d), ReLU, a linear classifier; seeded."""
    torch.manual_seed(0)
    first, second = layers
    extra = [{"input_size": (8, 8)}, {"input_size": (8, 8)}] if first is Conv2d else [{}, {}]
    return nn.Sequential(
        first(1, 4, 3, padding=1, dtype=dtype, **extra[0]), nn.ReLU(),
        second(4, 6, 3, stride=2, dtype=dtype, **extra[1]), nn.ReLU(),
        nn.Flatten(), nn.Linear(6 * 3 * 3, 3, dtype=dtype))


def batch(dtype=torch.float64, n=8):
    generator = torch.Generator().manual_seed(1)
    return (torch.randn(n, 1, 8, 8, dtype=dtype, generator=generator),
            torch.randint(0, 3, (n,), generator=generator))


def train(net, X, T, steps=3, lr=0.1):
    optimiser = torch.optim.SGD(net.parameters(), lr=lr)
    for _ in range(steps):
        optimiser.zero_grad()
        F.cross_entropy(net(X), T).backward()
        optimiser.step()
    return net


def test_training_matches_nn_conv2d():
    ours = model()
    theirs = model(layers=(nn.Conv2d, nn.Conv2d))
    theirs.load_state_dict(ours.state_dict())
    X, T = batch()
    train(ours, X, T)
    train(theirs, X, T)
    for (name, p), (_, q) in zip(ours.named_parameters(), theirs.named_parameters()):
        torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12, msg=name)


def test_compile_fullgraph():
    net = model()
    X, T = batch()
    compiled = torch.compile(net, fullgraph=True)
    start = time.perf_counter()
    got = compiled(X)
    print(f"torch.compile (first call): {time.perf_counter() - start:.1f} s")
    torch.testing.assert_close(got, net(X), rtol=1e-12, atol=1e-12)
    F.cross_entropy(got, T).backward()
    assert all(p.grad is not None for p in net.parameters())


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA GPU")
def test_cuda_matches_cpu():
    spec = LAYERS[1]
    op = conv2d_op(spec, dtype="float64")
    cpu = inputs(spec, torch.float64, grad=True)
    gpu = [t.detach().cuda().requires_grad_() for t in cpu]
    Z, Zg = op(*cpu), op(*gpu)
    torch.testing.assert_close(Zg.cpu(), Z)
    Z.sum().backward()
    Zg.sum().backward()
    for a, g in zip(cpu, gpu):
        torch.testing.assert_close(g.grad.cpu(), a.grad)


# -- DistributedDataParallel ------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp_worker(rank: int, world: int, out: str, steps: int = 3) -> None:
    """One DDP process: its shard of the batch, ``steps`` SGD steps; rank 0 saves the
    parameters to ``out``."""
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world)
    try:
        net = nn.parallel.DistributedDataParallel(model())
        X, T = batch()
        shard = len(X) // world
        train(net, X[rank * shard:(rank + 1) * shard], T[rank * shard:(rank + 1) * shard],
              steps=steps)
        if rank == 0:
            torch.save(net.module.state_dict(), out)
        # Neither rank shuts gloo down while the other may still be talking to it, and
        # the wrapper (whose reducer holds the process group) goes before the group does.
        dist.barrier()
        del net
    finally:
        dist.destroy_process_group()


def test_ddp_matches_one_process(tmp_path):
    single = train(model(), *batch())  # builds the modules the workers load from the cache
    out = tmp_path / "ddp.pt"
    env = dict(os.environ, MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()),
               OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join(
                   [str(ROOT), os.environ.get("PYTHONPATH", "")]))
    start = time.perf_counter()
    workers = [subprocess.Popen([sys.executable, __file__, "ddp", str(rank), "2", str(out)],
                                cwd=ROOT, env=env) for rank in range(2)]
    try:
        codes = [w.wait(timeout=120) for w in workers]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
    print(f"DDP, 2 processes: {time.perf_counter() - start:.1f} s")
    assert codes == [0, 0]
    state = torch.load(out)
    difference = max((state[name] - p).abs().max().item()
                     for name, p in single.state_dict().items())
    print(f"DDP against one process: max |difference| = {difference:.3g}")
    assert difference <= 1e-12


if __name__ == "__main__" and sys.argv[1:2] == ["ddp"]:
    ddp_worker(int(sys.argv[2]), int(sys.argv[3]), sys.argv[4])
    # The work is done and checked by the parent; leaving without interpreter
    # finalization keeps torch's gloo threads from being torn down under a dying
    # interpreter, which aborted a worker once in CI ("terminate called without an
    # active exception", exit -6) after its training had finished.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
