"""A network: a chain of layers ending in a loss, its text form, shapes and parameters.

The text form (DESIGN.md, "Networks")::

    INPUT | LAYER | LAYER | ... | LOSS
    INPUT   CxHxW or HxW
    conv    conv OxKHxKW [stride S] [pad P|valid|same|full] [dil D] [nobias] [untied] [convolution]
    act     relu | sigmoid | tanh
    pool    maxpool K [stride S] | avgpool K [stride S] | l2pool K [stride S]
    flatten flatten
    dense   dense N [nobias]
    LOSS    l2 | bce | softmax-ce

``untied`` gives a conv layer one bias per output element (seed 001's ``b_11, b_12, ...``)
instead of one per output channel: its bias has the output's shape ``(O, HO, WO)``.

Layers are numbered from 0 in the order written (activations, pools and flatten included,
like ``torch.nn.Sequential``); parameters are ``"<index>.weight"`` and ``"<index>.bias"``.
This module is pure Python (no SymPy): the symbolic derivation is ``derive.network_derivation``.

>>> net = Network.parse("1x8x8 | conv 6x3x3 pad 1 | relu | maxpool 2 | flatten | dense 10 "
...                     "| softmax-ce")
>>> net.params()
[('0.weight', (6, 1, 3, 3)), ('0.bias', (6,)), ('4.weight', (10, 96)), ('4.bias', (10,))]
>>> [layer.out_shape for layer in net.layers]
[(6, 8, 8), (6, 8, 8), (6, 4, 4), (96,), (10,)]
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import SpecError
from .spec import PADDING_NAMES, LayerSpec

ACTIVATIONS = ("relu", "sigmoid", "tanh")
POOLS = ("maxpool", "avgpool", "l2pool")
LOSSES = ("l2", "bce", "softmax-ce")
KINDS = ("conv", *ACTIVATIONS, *POOLS, "flatten", "dense")

#: The text form of every kind, for error messages and help.
FORMS = {
    "conv": "conv OxKHxKW [stride S] [pad P|valid|same|full] [dil D] [nobias] [untied] "
            "[convolution]",
    **{name: name for name in ACTIVATIONS},
    **{name: f"{name} K [stride S]" for name in POOLS},
    "flatten": "flatten",
    "dense": "dense N [nobias]",
}

Shape = tuple[int, ...]


@dataclass(frozen=True)
class Layer:
    """One layer of a network: its kind, options, and the shapes in and out (per sample).

    Attributes:
        index: position in the chain, from 0 (parameters are named ``"<index>.weight"``).
        kind: one of ``KINDS``.
        in_shape, out_shape: ``(C, H, W)`` for images, ``(D,)`` after flatten or dense.
        spec: the correlation of a conv or dense layer (dense: a kernel covering its whole
            input, ``(N, D, 1, 1)`` over ``(D, 1, 1)``); None for the others.
        size, stride: a pool's window and step ``(rows, columns)``.
        untied: a conv layer with one bias per output element.
        text: the layer as written.
    """

    index: int
    kind: str
    in_shape: Shape
    out_shape: Shape
    text: str
    spec: LayerSpec | None = None
    size: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    untied: bool = False

    @property
    def has_weight(self) -> bool:
        return self.kind in ("conv", "dense")

    @property
    def has_bias(self) -> bool:
        return self.spec is not None and self.spec.bias

    def params(self) -> list[tuple[str, Shape]]:
        """``[(name, shape), ...]`` of this layer's parameters, weight first."""
        if self.spec is None:
            return []
        o, c, kh, kw = self.spec.kernel
        weight = (o, c, kh, kw) if self.kind == "conv" else (o, c)
        out = [(f"{self.index}.weight", weight)]
        if self.has_bias:
            out.append((f"{self.index}.bias", self.out_shape if self.untied else (o,)))
        return out

    @property
    def fan_in(self) -> int:
        """Inputs feeding one output (PyTorch's default initialisation scales by it)."""
        assert self.spec is not None
        _, c, kh, kw = self.spec.kernel
        return c * kh * kw

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Network:
    """A chain of layers from an input shape to a loss (see the module docstring).

    Build one with ``Network.parse(text)`` or ``Network(input, layers, loss)`` where
    ``layers`` are layer texts (``"conv 6x3x3 pad 1"``, ``"relu"``, ...).
    """

    input: Shape
    layer_texts: tuple[str, ...]
    loss: str
    layers: tuple[Layer, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        shape = _input_shape(self.input)
        object.__setattr__(self, "input", shape)
        if isinstance(self.layer_texts, str):
            raise SpecError(f"layers={self.layer_texts!r}: expected a sequence of layer texts")
        texts = tuple(" ".join(str(t).split()) for t in self.layer_texts)
        object.__setattr__(self, "layer_texts", texts)
        if not texts:
            raise SpecError("layers: a network needs at least one layer before its loss")
        layers = []
        for index, text in enumerate(texts):
            layer = _layer(index, text, shape)
            layers.append(layer)
            shape = layer.out_shape
        object.__setattr__(self, "layers", tuple(layers))
        loss = str(self.loss).strip().lower()
        if loss not in LOSSES:
            raise SpecError(f"loss={self.loss!r}: expected one of {', '.join(LOSSES)} as the "
                            f"last item of the chain")
        if loss == "softmax-ce" and len(shape) != 1:
            raise SpecError(
                f"loss='softmax-ce': the network's output must be a vector of class scores "
                f"(flatten or dense before the loss), got shape {shape}")
        object.__setattr__(self, "loss", loss)

    @classmethod
    def parse(cls, text: str) -> Network:
        """``"1x8x8 | conv 6x3x3 pad 1 | relu | ... | softmax-ce"`` as a Network."""
        if not isinstance(text, str):
            raise SpecError(f"network={text!r}: expected the text form 'INPUT | LAYER | ... | "
                            f"LOSS'")
        items = [item.strip() for item in text.split("|")]
        if len(items) < 3 or not all(items):
            raise SpecError(
                f"network={text!r}: expected 'INPUT | LAYER | ... | LOSS' (at least one layer; "
                f"no empty item between bars), e.g. '1x8x8 | conv 6x3x3 pad 1 | relu | "
                f"maxpool 2 | flatten | dense 10 | softmax-ce'")
        try:
            shape = _ints("input", items[0], (2, 3))
        except SpecError:
            raise SpecError(f"input {items[0]!r}: expected CxHxW or HxW (positive integers) as "
                            f"the first item of the chain") from None
        return cls(shape, tuple(items[1:-1]), items[-1])

    @property
    def output_shape(self) -> Shape:
        return self.layers[-1].out_shape

    def params(self) -> list[tuple[str, Shape]]:
        """Every parameter as ``(name, shape)``, in layer order, weight before bias."""
        return [p for layer in self.layers for p in layer.params()]

    def init_params(self, seed: int = 0) -> dict[str, Any]:
        """Float64 parameters drawn as ``torch.nn.Conv2d``/``Linear`` draw them by default:
        uniform in ``±1/sqrt(fan_in)`` (weights and biases alike), from NumPy's generator
        seeded with ``seed``."""
        import numpy as np

        rng = np.random.default_rng(seed)
        out: dict[str, Any] = {}
        for layer in self.layers:
            if layer.spec is None:
                continue
            bound = 1.0 / math.sqrt(layer.fan_in)
            for name, shape in layer.params():
                out[name] = rng.uniform(-bound, bound, size=shape)
        return out

    def text(self) -> str:
        """The text form, normalised (parses back to an equal network)."""
        return " | ".join(["x".join(map(str, self.input)), *self.layer_texts, self.loss])

    def describe(self) -> str:
        return self.text()

    def to_dict(self) -> dict[str, Any]:
        return {
            "network": self.text(),
            "layers": [{"index": la.index, "layer": la.text, "kind": la.kind,
                        "in_shape": list(la.in_shape), "out_shape": list(la.out_shape)}
                       for la in self.layers],
            "loss": self.loss,
            "params": {name: list(shape) for name, shape in self.params()},
        }

    def __str__(self) -> str:
        return self.text()


# -- parsing -----------------------------------------------------------------------------


def _ints(what: str, text: str, counts: tuple[int, ...]) -> tuple[int, ...]:
    parts = text.lower().split("x")
    if len(parts) not in counts or not all(re.fullmatch(r"\d+", p) for p in parts):
        forms = " or ".join("x".join(["N"] * n) for n in counts)
        raise SpecError(f"{what} {text!r}: expected {forms} with non-negative integers")
    return tuple(int(p) for p in parts)


def _input_shape(value: Any) -> Shape:
    try:
        items = tuple(int(v) for v in value)
    except (TypeError, ValueError):
        raise SpecError(f"input={value!r}: expected (C, H, W) or (H, W) of positive "
                        f"integers") from None
    if len(items) == 2:
        items = (1, *items)
    if len(items) != 3 or min(items) < 1:
        raise SpecError(f"input={value!r}: expected (C, H, W) or (H, W) of positive integers")
    return items


def _pair_of(layer: str, option: str, text: str) -> tuple[int, int]:
    values = _ints(f"{layer}: {option}", text, (1, 2))
    return (values[0], values[0]) if len(values) == 1 else (values[0], values[1])


def _layer(index: int, text: str, shape: Shape) -> Layer:
    words = text.split()
    kind = words[0].lower() if words else ""
    where = f"layer {index} ({text!r})"
    if kind not in KINDS:
        raise SpecError(f"{where}: unknown layer kind {kind!r}; expected one of "
                        f"{', '.join(KINDS)} (a loss, {', '.join(LOSSES)}, comes last)")
    try:
        return _BUILDERS[kind](index, kind, words[1:], shape, text)
    except SpecError as error:
        message = str(error)
        if message.startswith("layer "):
            raise
        raise SpecError(f"{where}: {message}") from None


def _options(kind: str, words: list[str], valued: tuple[str, ...], flags: tuple[str, ...]
             ) -> tuple[list[str], dict[str, str], set[str]]:
    """Split ``words`` into leading positional words, ``name value`` options and flags."""
    positional: list[str] = []
    values: dict[str, str] = {}
    seen: set[str] = set()
    i = 0
    while i < len(words):
        word = words[i].lower()
        if word in valued:
            if i + 1 >= len(words):
                raise SpecError(f"option {word!r} needs a value; expected {FORMS[kind]}")
            if word in values:
                raise SpecError(f"option {word!r} given twice")
            values[word] = words[i + 1]
            i += 2
        elif word in flags:
            seen.add(word)
            i += 1
        elif not values and not seen:
            positional.append(words[i])
            i += 1
        else:
            raise SpecError(f"unexpected {words[i]!r}; expected {FORMS[kind]}")
    return positional, values, seen


def _image(where: str, shape: Shape) -> tuple[int, int, int]:
    if len(shape) != 3:
        raise SpecError(f"{where} needs an image input (C, H, W), got the flat shape {shape} "
                        f"(flatten comes after the image layers)")
    return shape  # type: ignore[return-value]


def _conv(index: int, kind: str, words: list[str], shape: Shape, text: str) -> Layer:
    positional, values, flags = _options(
        kind, words, ("stride", "pad", "dil"), ("nobias", "untied", "convolution"))
    if len(positional) != 1:
        raise SpecError(f"expected {FORMS[kind]}")
    channels, h, w = _image("conv", shape)
    kernel = _ints("kernel", positional[0], (3,))
    padding: Any = 0
    if "pad" in values:
        name = values["pad"].lower()
        padding = name if name in PADDING_NAMES else _pair_of(text, "pad", values["pad"])
    spec = LayerSpec(
        input=(channels, h, w), kernel=(kernel[0], channels, kernel[1], kernel[2]),
        stride=_pair_of(text, "stride", values["stride"]) if "stride" in values else 1,
        padding=padding,
        dilation=_pair_of(text, "dil", values["dil"]) if "dil" in values else 1,
        bias="nobias" not in flags,
        mode="convolution" if "convolution" in flags else "correlation",
    )
    if "untied" in flags and "nobias" in flags:
        raise SpecError("'untied' (one bias per output element) and 'nobias' exclude each other")
    return Layer(index, kind, shape, spec.output_shape, text, spec=spec,
                 untied="untied" in flags)


def _activation(index: int, kind: str, words: list[str], shape: Shape, text: str) -> Layer:
    if words:
        raise SpecError(f"{kind} takes no options, got {' '.join(words)!r}")
    return Layer(index, kind, shape, shape, text)


def _pool(index: int, kind: str, words: list[str], shape: Shape, text: str) -> Layer:
    positional, values, _ = _options(kind, words, ("stride",), ())
    if len(positional) != 1:
        raise SpecError(f"expected {FORMS[kind]}")
    channels, h, w = _image(kind, shape)
    size = _pair_of(text, "window", positional[0])
    stride = _pair_of(text, "stride", values["stride"]) if "stride" in values else size
    if min(size) < 1 or min(stride) < 1:
        raise SpecError(f"window {size} and stride {stride} must be >= 1")
    if size[0] > h or size[1] > w:
        raise SpecError(f"the {size[0]}x{size[1]} window is larger than its {h}x{w} input")
    out = (channels, (h - size[0]) // stride[0] + 1, (w - size[1]) // stride[1] + 1)
    return Layer(index, kind, shape, out, text, size=size, stride=stride)


def _flatten(index: int, kind: str, words: list[str], shape: Shape, text: str) -> Layer:
    if words:
        raise SpecError(f"flatten takes no options, got {' '.join(words)!r}")
    return Layer(index, kind, shape, (math.prod(shape),), text)


def _dense(index: int, kind: str, words: list[str], shape: Shape, text: str) -> Layer:
    positional, _, flags = _options(kind, words, (), ("nobias",))
    if len(positional) != 1:
        raise SpecError(f"expected {FORMS[kind]}")
    if len(shape) != 1:
        raise SpecError(f"dense needs a flat input, got shape {shape}: put 'flatten' before it")
    units = _ints("units", positional[0], (1,))[0]
    spec = LayerSpec(input=(shape[0], 1, 1), kernel=(units, shape[0], 1, 1),
                     bias="nobias" not in flags)
    return Layer(index, kind, shape, (units,), text, spec=spec)


_BUILDERS = {
    "conv": _conv, **{name: _activation for name in ACTIVATIONS},
    **{name: _pool for name in POOLS}, "flatten": _flatten, "dense": _dense,
}
