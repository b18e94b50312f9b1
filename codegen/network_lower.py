"""Network -> NetworkIR: the stages of a generated training step and every constant they use.

A generated network module runs a whole SGD step in one C call. Its unit is the *stage*:
one layer that computes (``conv``, ``dense``, a pool) together with the activation that
follows it, applied in the same output loop; ``flatten`` is no stage at all (a sample's
C, H, W elements are already its flat vector). An activation with nothing to fuse into (the
first layer, or a second activation in a row) becomes an ``identity`` stage of its own.

Each stage keeps its output (after the activation) for the backward pass, and a δ buffer:
the loss's gradient with respect to the stage's output *before* its activation. The kernel
that produces a δ multiplies by the activation's derivative as it stores (``relu'`` from
``y > 0``, ``σ' = y(1 − y)``, ``tanh' = 1 − y²``, the derivation's forms written in the output
``y``), so no activation has a backward pass of its own.

The arithmetic is the index forms of ``derive.proof`` (DESIGN.md, "The index forms"),
batched as matrix products: a conv layer's forward is ``W · im2col(x)`` per sample, its
grad_input ``col2im(Wᵀ · δ)``, its grad_weight ``Σₙ δₙ · colsₙᵀ``; a dense layer is the same
with the whole input as one column (seed 004's forms, eqs. (3)–(9)). ``register_rows``
chooses the rows of each product's register tile from its shape.

The CUDA source (``templates/cuda/network*.cu.jinja``) uses the same stages and constants
with kernels of its own: one thread per element written, gathers for grad_input, and sums in
a fixed order per parameter element; ``NetworkIR.launch_constants`` is its launch
configuration, the layer modules' (``codegen.lower``).

Everything here is plain data for the templates.
"""

from __future__ import annotations

import hashlib
import json
import math
from dataclasses import dataclass

from derive import __version__
from derive.network import ACTIVATIONS, Layer, Network

from .lower import CUDA_BLOCK, CUDA_GRID_LIMIT
from .vocabulary import DTYPES

#: Row counts of a product's register tile, most preferred first: with two vectors of
#: columns per row, 6 rows are 12 accumulators, which the 16 vector registers of AVX2 hold
#: with room for the loaded operands.
TILE_ROWS = (6, 4, 5, 3)


@dataclass(frozen=True)
class StageConstant:
    """``NAME = value`` in a stage's enum, with what it is."""

    name: str
    value: int
    doc: str


@dataclass(frozen=True)
class Stage:
    """One stage of the step: a computing layer and the activation fused into it.

    Attributes:
        number: from 1 (0 is the network's input).
        kind: ``conv``, ``dense``, ``maxpool``, ``avgpool``, ``l2pool`` or ``identity``.
        layers: the layers it covers, as written (``"0: conv 6x3x3 pad 1"``, ...).
        activation: the activation applied to its output, or ``""``.
        input_activation: the activation of the stage before it (its input's), whose
            derivative the stage's grad_input applies; ``""`` for none.
        in_shape, out_shape: per sample.
        constants: the stage's extents and taps (``S<number>_<NAME>`` in C).
        tiles: the register tiles of its OpenMP products (same naming).
        weight, bias: the C names of its parameters (``w0``, ``b0``), ``""`` for none.
        weight_param, bias_param: their names in the params dict (``"0.weight"``).
        bias_kind: ``channel`` (one per output channel or unit), ``untied`` (one per output
            element) or ``""``.
        input_gradient: whether the backward pass needs δ of its input (not for stage 1).
        flip: a conv layer in ``convolution`` mode (the kernel read flipped).
        source, source_delta: the C expressions of its input and of its input's δ.
    """

    number: int
    kind: str
    layers: tuple[str, ...]
    activation: str
    input_activation: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    constants: tuple[StageConstant, ...]
    tiles: tuple[StageConstant, ...] = ()
    weight: str = ""
    bias: str = ""
    weight_param: str = ""
    bias_param: str = ""
    bias_kind: str = ""
    input_gradient: bool = True
    flip: bool = False

    @property
    def source(self) -> str:
        """The C expression of the stage's input for the whole batch: the network's input
        ``x`` for stage 1, else the previous stage's outputs."""
        return "x" if self.number == 1 else f"ws->y{self.number - 1}"

    @property
    def source_delta(self) -> str:
        """Where the stage's grad_input writes: the previous stage's δ."""
        return f"ws->d{self.number - 1}"

    @property
    def prefix(self) -> str:
        return f"S{self.number}_"

    @property
    def is_pool(self) -> bool:
        return self.kind.endswith("pool")

    def constant(self, name: str) -> int:
        for constant in (*self.constants, *self.tiles):
            if constant.name == name:
                return constant.value
        raise KeyError(name)


@dataclass(frozen=True)
class Parameter:
    """One parameter array: its dict name, C names (value and gradient) and shape."""

    name: str
    c_name: str
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def grad_name(self) -> str:
        return f"d{self.c_name}"


@dataclass(frozen=True)
class NetworkIR:
    """The whole generated network module of one network, dtype and target.

    Attributes:
        name: the module's base name, e.g. ``network_1x8x8_d2f3a1c9_f32``.
        text: ``Network.text()``.
        net_json: ``Network.to_dict()`` as one-line JSON.
        dtype, ctype: ``float32``/``float64`` and ``float``/``double``.
        target, version: the backend and the corrgen version that rendered it.
        stages: in forward order.
        params: every parameter, in ``net.params()`` order.
        loss: ``l2``, ``bce`` or ``softmax-ce``.
        output_size: elements of the network's output per sample.
        output_shape: per sample.
        input_shape: per sample.
        flops_per_sample: floating-point operations of one step per sample (what
            ``corrgen bench --network`` counts), for the front end's choice of a serial step.
    """

    name: str
    text: str
    net_json: str
    dtype: str
    ctype: str
    target: str
    version: str
    stages: tuple[Stage, ...]
    params: tuple[Parameter, ...]
    loss: str
    output_shape: tuple[int, ...]
    input_shape: tuple[int, ...]
    flops_per_sample: int = 0

    @property
    def output_size(self) -> int:
        return math.prod(self.output_shape)

    @property
    def spec_text(self) -> str:
        """What the generated files' headers name as the spec: the network's text."""
        return self.text

    @property
    def spec_json(self) -> str:
        return self.net_json

    @property
    def style(self) -> str:
        """The headers' style line: one fused training step."""
        return "fused network step"

    @property
    def python_text(self) -> str:
        """The network's text as a Python string literal."""
        return repr(self.text)

    @property
    def last(self) -> Stage:
        return self.stages[-1]

    @property
    def conv_stages(self) -> tuple[Stage, ...]:
        return tuple(s for s in self.stages if s.kind == "conv")

    @property
    def launch_constants(self) -> tuple[StageConstant, ...]:
        """The CUDA kernels' launch configuration: threads per block and the grid's cap."""
        return (StageConstant("BLOCK", CUDA_BLOCK, "threads per block of every kernel"),
                StageConstant("GRID_LIMIT", CUDA_GRID_LIMIT, "the most blocks per launch; "
                              "grid-stride loops cover the rest"))

    @property
    def thread_scratch(self) -> int:
        """Elements of per-thread scratch: the largest conv stage's ``cols`` matrix (im2col of
        one sample), which its forward pass, its grad_input (``Wᵀ · δ`` before it is folded
        back onto the input) and its grad_weight (the rows of the thread's tiles) fill in
        turn."""
        return max((s.constant("ROWS") * s.constant("POSITIONS") for s in self.conv_stages),
                   default=0)

    def __str__(self) -> str:
        lines = [f"NetworkIR {self.name}: {self.text}",
                 f"  dtype {self.dtype} ({self.ctype}), target {self.target}, loss {self.loss}"]
        for s in self.stages:
            act = f" + {s.activation}" if s.activation else ""
            lines.append(f"  stage {s.number} {s.kind}{act}: {s.in_shape} -> {s.out_shape} "
                         f"[{'; '.join(s.layers)}]")
            lines.append("    " + ", ".join(f"{c.name}={c.value}" for c in s.constants))
        return "\n".join(lines)


def register_rows(rows: int) -> int:
    """The rows of a product's register tile for a matrix of ``rows`` rows: the first of
    ``TILE_ROWS`` that divides it (no remainder tile), else the one leaving the fewest
    rows to a remainder tile."""
    for candidate in TILE_ROWS:
        if rows % candidate == 0:
            return candidate
    return min(TILE_ROWS, key=lambda c: (-(rows // c * c), -c)) if rows > 6 else rows


def _group(net: Network) -> list[tuple[Layer | None, list[Layer]]]:
    """The layers grouped into stages: ``(computing layer or None, [activations])``; flatten
    belongs to no stage."""
    groups: list[tuple[Layer | None, list[Layer]]] = []
    for layer in net.layers:
        if layer.kind == "flatten":
            continue
        if layer.kind in ACTIVATIONS:
            if groups and groups[-1][0] is not None and not groups[-1][1]:
                groups[-1][1].append(layer)
            else:
                groups.append((None, [layer]))
        else:
            groups.append((layer, []))
    return groups


def _conv_constants(layer: Layer) -> list[StageConstant]:
    spec = layer.spec
    assert spec is not None
    o, c, kh, kw = spec.kernel
    _, h, w = spec.input
    top, _, left, _ = spec.pads
    ho, wo = spec.out_h, spec.out_w
    values = [
        ("C", c, "input channels"), ("H", h, "input rows"), ("W", w, "input columns"),
        ("O", o, "output channels"), ("KH", kh, "kernel rows"), ("KW", kw, "kernel columns"),
        ("SH", spec.stride[0], "stride between output rows"),
        ("SW", spec.stride[1], "stride between output columns"),
        ("DH", spec.dilation[0], "dilation of kernel rows"),
        ("DW", spec.dilation[1], "dilation of kernel columns"),
        ("PT", top, "zero rows above the input"), ("PL", left, "zero columns left of it"),
        ("HO", ho, "output rows"), ("WO", wo, "output columns"),
        ("ROWS", c * kh * kw, "rows of im2col: one per (channel, kernel row, kernel column)"),
        ("POSITIONS", ho * wo, "columns of im2col: one per output position"),
    ]
    return [StageConstant(name, value, doc) for name, value, doc in values]


def _conv_tiles(layer: Layer) -> tuple[StageConstant, ...]:
    """The OpenMP products' register tiles of a conv stage."""
    assert layer.spec is not None
    o, c, kh, kw = layer.spec.kernel
    return (StageConstant("MR", register_rows(o), "rows of the forward product's register tile"),
            StageConstant("MR_INPUT", register_rows(c * kh * kw),
                          "rows of grad_input's register tile"))


def _dense_constants(layer: Layer) -> list[StageConstant]:
    assert layer.spec is not None
    units, d, _, _ = layer.spec.kernel
    values = [("D", d, "inputs per sample"), ("U", units, "units (outputs per sample)")]
    return [StageConstant(name, value, doc) for name, value, doc in values]


def _pool_constants(layer: Layer) -> list[StageConstant]:
    c, h, w = layer.in_shape
    _, ho, wo = layer.out_shape
    values = [("C", c, "channels"), ("H", h, "input rows"), ("W", w, "input columns"),
              ("KH", layer.size[0], "window rows"), ("KW", layer.size[1], "window columns"),
              ("SH", layer.stride[0], "stride between windows' rows"),
              ("SW", layer.stride[1], "stride between windows' columns"),
              ("HO", ho, "output rows"), ("WO", wo, "output columns")]
    return [StageConstant(name, value, doc) for name, value, doc in values]


def _stage(number: int, layer: Layer | None, acts: list[Layer], in_shape: tuple[int, ...],
           input_activation: str) -> Stage:
    written = tuple(f"{la.index}: {la.text}" for la in ([layer] if layer else []) + acts)
    activation = acts[0].kind if acts else ""
    common = dict(number=number, layers=written, activation=activation,
                  input_activation=input_activation, in_shape=in_shape,
                  input_gradient=number > 1)
    size = [StageConstant("IN", math.prod(in_shape), "input elements per sample")]
    if layer is None:
        out = StageConstant("OUT", math.prod(in_shape), "output elements per sample")
        return Stage(kind="identity", out_shape=in_shape, constants=(*size, out), **common)
    out = StageConstant("OUT", math.prod(layer.out_shape), "output elements per sample")
    if layer.kind in ("conv", "dense"):
        bias_param = f"{layer.index}.bias" if layer.has_bias else ""
        extra = _conv_constants(layer) if layer.kind == "conv" else _dense_constants(layer)
        return Stage(kind=layer.kind, out_shape=layer.out_shape,
                     constants=(*size, out, *extra),
                     tiles=_conv_tiles(layer) if layer.kind == "conv" else (),
                     weight=c_name(f"{layer.index}.weight"),
                     bias=c_name(bias_param) if bias_param else "",
                     weight_param=f"{layer.index}.weight", bias_param=bias_param,
                     bias_kind=("untied" if layer.untied else "channel") if bias_param else "",
                     flip=layer.spec is not None and layer.spec.mode == "convolution",
                     **common)
    return Stage(kind=layer.kind, out_shape=layer.out_shape,
                 constants=(*size, out, *_pool_constants(layer)), **common)


def stages(net: Network) -> tuple[Stage, ...]:
    """The stages of ``net``, in forward order."""
    out: list[Stage] = []
    shape, before = net.input, ""
    for number, (layer, acts) in enumerate(_group(net), start=1):
        stage = _stage(number, layer, acts, shape, before)
        out.append(stage)
        shape, before = stage.out_shape, stage.activation
    return tuple(out)


def c_name(param: str) -> str:
    """A parameter's C name: ``"0.weight"`` is ``w0``, ``"4.bias"`` is ``b4``."""
    index, kind = param.split(".")
    return f"{kind[0]}{index}"


def _module_name(net: Network, dtype: str) -> str:
    digest = hashlib.sha256(net.text().encode()).hexdigest()[:8]
    shape = "x".join(map(str, net.input))
    return f"network_{shape}_{digest}_{DTYPES[dtype].suffix}"


def lower_network(net: Network, dtype: str, target: str = "openmp") -> NetworkIR:
    """The NetworkIR of ``net`` in ``dtype`` for ``target``."""
    from .bench_network import network_flops

    params = tuple(Parameter(name, c_name(name), shape) for name, shape in net.params())
    return NetworkIR(
        name=_module_name(net, dtype), text=net.text(),
        net_json=json.dumps(net.to_dict(), separators=(",", ":")),
        dtype=dtype, ctype=DTYPES[dtype].ctype, target=target, version=__version__,
        stages=stages(net), params=params, loss=net.loss,
        output_shape=net.output_shape, input_shape=net.input,
        flops_per_sample=network_flops(net, 1),
    )
