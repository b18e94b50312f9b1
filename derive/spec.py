"""The layer spec: one correlation (or convolution) layer of fixed shape.

Conventions (DESIGN.md): layout NCHW, input ``V[c, y, x]`` of shape ``(C, H, W)``, kernel
``K[o, c, i, j]`` of shape ``(O, C, KH, KW)``, bias ``b[o]``, output ``Z[o, y, x]`` of shape
``(O, HO, WO)`` with

    HO = floor((H + pad_top + pad_bottom - dh*(KH-1) - 1) / sh) + 1      (likewise WO)

Padding names: ``"valid"`` is no padding; ``"full"`` pads ``dh*(KH-1)`` rows and ``dw*(KW-1)``
columns on every side; ``"same"`` pads a total of ``dh*(KH-1)`` rows and ``dw*(KW-1)``
columns, so that at stride 1 the output keeps H x W. When that total is odd, the extra row
(column) goes to the bottom (right), as PyTorch's ``padding="same"`` and TensorFlow do:
``pad_top = total // 2``, ``pad_bottom = total - pad_top``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from .errors import SpecError

PADDING_NAMES = ("valid", "same", "full")
MODES = ("correlation", "convolution")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _shape(field: str, value: Any, names: tuple[str, ...]) -> tuple[int, ...]:
    try:
        items = tuple(value)
    except TypeError:
        raise SpecError(
            f"{field}={value!r}: expected a tuple ({', '.join(names)}) of positive integers"
        ) from None
    if len(items) != len(names):
        raise SpecError(
            f"{field}={value!r}: expected {len(names)} extents ({', '.join(names)}), "
            f"got {len(items)}"
        )
    for name, item in zip(names, items):
        if not _is_int(item):
            raise SpecError(f"{field}={value!r}: extent {name} must be an integer, got {item!r}")
        if item < 1:
            raise SpecError(f"{field}={value!r}: extent {name} must be >= 1, got {item}")
    return items


def _pair(field: str, value: Any, minimum: int) -> tuple[int, int]:
    items = (value, value) if _is_int(value) else value
    try:
        items = tuple(items)
    except TypeError:
        raise SpecError(f"{field}={value!r}: expected an integer or a pair of integers") from None
    if len(items) != 2 or not all(_is_int(v) for v in items):
        raise SpecError(f"{field}={value!r}: expected an integer or a pair of integers")
    if min(items) < minimum:
        raise SpecError(f"{field}={value!r}: each {field} must be >= {minimum}")
    return items  # type: ignore[return-value]


@dataclass(frozen=True)
class LayerSpec:
    """One 2-D correlation layer, every extent fixed (the batch size N stays free).

    Args:
        input: ``(C, H, W)``: input channels, height (rows), width (columns).
        kernel: ``(O, C, KH, KW)``: output channels, input channels, kernel rows, columns.
        stride: ``sh`` or ``(sh, sw)``, output step in input rows/columns; each >= 1.
        padding: ``p``, ``(ph, pw)`` zero rows/columns added on each side, or one of
            ``"valid"``, ``"same"``, ``"full"`` (see the module docstring).
        dilation: ``d`` or ``(dh, dw)``, distance between kernel taps; each >= 1.
        bias: whether the layer adds ``b[o]``.
        mode: ``"correlation"`` (no flip, as in every seed) or ``"convolution"`` (the
            kernel is rotated by 180 degrees).

    Stride, padding and dilation are stored normalised: pairs of ints, or a padding name.

    >>> LayerSpec(input=(1, 3, 3), kernel=(1, 1, 2, 2)).output_shape
    (1, 2, 2)
    >>> LayerSpec(input=(3, 32, 32), kernel=(16, 3, 5, 5), padding="same").pads
    (2, 2, 2, 2)
    """

    input: tuple[int, int, int]
    kernel: tuple[int, int, int, int]
    stride: Any = 1
    padding: Any = 0
    dilation: Any = 1
    bias: bool = True
    mode: str = "correlation"

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "input", _shape("input", self.input, ("C", "H", "W")))
        set_(self, "kernel", _shape("kernel", self.kernel, ("O", "C", "KH", "KW")))
        set_(self, "stride", _pair("stride", self.stride, 1))
        set_(self, "dilation", _pair("dilation", self.dilation, 1))
        if isinstance(self.padding, str):
            name = self.padding.lower()
            if name not in PADDING_NAMES:
                raise SpecError(
                    f"padding={self.padding!r}: expected an integer, a pair, or one of "
                    f"{', '.join(PADDING_NAMES)}"
                )
            set_(self, "padding", name)
        else:
            set_(self, "padding", _pair("padding", self.padding, 0))
        if not isinstance(self.bias, bool):
            raise SpecError(f"bias={self.bias!r}: expected True or False")
        if self.mode not in MODES:
            raise SpecError(f"mode={self.mode!r}: expected one of {', '.join(MODES)}")
        c_in, c_kernel = self.input[0], self.kernel[1]
        if c_in != c_kernel:
            raise SpecError(
                f"kernel={self.kernel}: its input channels C={c_kernel} must equal the "
                f"input's C={c_in} (input={self.input})"
            )
        top, bottom, left, right = self.pads
        for axis, extent, padded, span in (
            ("rows", self.input[1], self.input[1] + top + bottom, self.dilated_kernel[0]),
            ("columns", self.input[2], self.input[2] + left + right, self.dilated_kernel[1]),
        ):
            if span > padded:
                raise SpecError(
                    f"kernel={self.kernel}: the dilated kernel spans {span} {axis}, more than "
                    f"the padded input's {padded} ({extent} + padding {self.padding!r}); "
                    f"the kernel must fit inside the padded input"
                )

    # -- derived sizes, computed here only -------------------------------------------------

    @property
    def dilated_kernel(self) -> tuple[int, int]:
        """Rows and columns one kernel window spans: ``d*(K-1) + 1``."""
        (dh, dw), (_, _, kh, kw) = self.dilation, self.kernel
        return dh * (kh - 1) + 1, dw * (kw - 1) + 1

    @property
    def pads(self) -> tuple[int, int, int, int]:
        """Zero rows/columns added: ``(top, bottom, left, right)``."""
        if isinstance(self.padding, tuple):
            ph, pw = self.padding
            return ph, ph, pw, pw
        span_h, span_w = self.dilated_kernel
        if self.padding == "valid":
            return 0, 0, 0, 0
        if self.padding == "full":
            return span_h - 1, span_h - 1, span_w - 1, span_w - 1
        total_h, total_w = span_h - 1, span_w - 1  # "same"
        return total_h // 2, total_h - total_h // 2, total_w // 2, total_w - total_w // 2

    @property
    def out_h(self) -> int:
        top, bottom, _, _ = self.pads
        return (self.input[1] + top + bottom - self.dilated_kernel[0]) // self.stride[0] + 1

    @property
    def out_w(self) -> int:
        _, _, left, right = self.pads
        return (self.input[2] + left + right - self.dilated_kernel[1]) // self.stride[1] + 1

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """``(O, HO, WO)``."""
        return self.kernel[0], self.out_h, self.out_w

    @property
    def n_terms(self) -> int:
        """Number of product terms in the forward pass (taps that land on the input)."""
        rows = _covered_taps(self.input[1], self.pads[0], self.out_h, self.stride[0],
                             self.kernel[2], self.dilation[0])
        cols = _covered_taps(self.input[2], self.pads[2], self.out_w, self.stride[1],
                             self.kernel[3], self.dilation[1])
        return self.kernel[0] * self.kernel[1] * rows * cols

    @property
    def uncovered(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Input rows and columns (0-based) that no kernel tap reads: their gradient is 0."""
        return (
            _uncovered(self.input[1], self.pads[0], self.out_h, self.stride[0],
                       self.kernel[2], self.dilation[0]),
            _uncovered(self.input[2], self.pads[2], self.out_w, self.stride[1],
                       self.kernel[3], self.dilation[1]),
        )

    def replace(self, **changes: Any) -> LayerSpec:
        """A copy with some fields changed (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready description, with the derived sizes."""
        return {
            "input": list(self.input),
            "kernel": list(self.kernel),
            "stride": list(self.stride),
            "padding": self.padding if isinstance(self.padding, str) else list(self.padding),
            "pads": list(self.pads),
            "dilation": list(self.dilation),
            "bias": self.bias,
            "mode": self.mode,
            "output": list(self.output_shape),
        }

    def _settings(self) -> list[tuple[str, str | None]]:
        """The settings that differ from the defaults: ``(name, value)``, value None for a flag."""
        settings: list[tuple[str, str | None]] = []
        if self.stride != (1, 1):
            settings.append(("stride", _fmt_pair(self.stride)))
        if self.padding not in ((0, 0), "valid"):
            pad = self.padding if isinstance(self.padding, str) else _fmt_pair(self.padding)
            settings.append(("padding", pad))
        if self.dilation != (1, 1):
            settings.append(("dilation", _fmt_pair(self.dilation)))
        if not self.bias:
            settings.append(("no-bias", None))
        if self.mode != "correlation":
            settings.append((self.mode, None))
        return settings

    def describe(self) -> str:
        """Short one-line form, e.g. ``input 1x3x3, kernel 1x1x2x2 -> output 1x2x2``."""
        c, h, w = self.input
        o, _, kh, kw = self.kernel
        parts = [f"input {c}x{h}x{w}", f"kernel {o}x{c}x{kh}x{kw}"]
        parts += [f"{name} {value}" if value else name.replace("-", " ")
                  for name, value in self._settings()]
        o, ho, wo = self.output_shape
        return ", ".join(parts) + f" -> output {o}x{ho}x{wo}"

    def cli_options(self) -> str:
        """The ``corrgen`` spec options that rebuild this spec (shortest forms).

        >>> LayerSpec(input=(1, 5, 5), kernel=(2, 1, 3, 3), stride=2, bias=False).cli_options()
        '--input 5x5 --kernel 2x1x3x3 --stride 2 --no-bias'
        """
        c, h, w = self.input
        o, _, kh, kw = self.kernel
        parts = [f"--input {c}x{h}x{w}" if c > 1 else f"--input {h}x{w}",
                 f"--kernel {o}x{c}x{kh}x{kw}" if (o, c) != (1, 1) else f"--kernel {kh}x{kw}"]
        parts += [f"--{name} {value}" if value else f"--{name}"
                  for name, value in self._settings()]
        return " ".join(parts)


def _fmt_pair(pair: tuple[int, int]) -> str:
    return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"


def _tap_positions(size: int, pad: int, n_out: int, stride: int, taps: int, dil: int):
    for y in range(n_out):
        for i in range(taps):
            u = y * stride + i * dil - pad
            if 0 <= u < size:
                yield u


def _covered_taps(size: int, pad: int, n_out: int, stride: int, taps: int, dil: int) -> int:
    return sum(1 for _ in _tap_positions(size, pad, n_out, stride, taps, dil))


def _uncovered(size: int, pad: int, n_out: int, stride: int, taps: int, dil: int):
    seen = set(_tap_positions(size, pad, n_out, stride, taps, dil))
    return tuple(u for u in range(size) if u not in seen)
