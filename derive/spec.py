"""The layer spec: one correlation (or convolution) layer of fixed shape.

Conventions (DESIGN.md): layout NCHW, input ``V[c, y, x]`` of shape ``(C, H, W)``, kernel
``K[o, c, i, j]`` of shape ``(O, C, KH, KW)``, bias ``b[o]``, output ``Z[o, y, x]`` of shape
``(O, HO, WO)`` with

    HO = floor((H + pad_top + pad_bottom - dh*(KH-1) - 1) / sh) + 1      (likewise WO)

Padding names: ``"valid"`` is no padding; ``"full"`` pads ``dh*(KH-1)`` rows and ``dw*(KW-1)``
columns on every side; ``"same"`` pads a total of ``dh*(KH-1)`` rows and ``dw*(KW-1)``
columns, so that at stride 1 the output keeps H x W. When that total is odd, the extra row
(column) goes to the bottom (right), as PyTorch's ``padding="same"`` and TensorFlow do:
``pad_top = total // 2``, ``pad_bottom = total - pad_top``. These rules are written once,
in ``derive.geometry``.
"""

from __future__ import annotations

import dataclasses
import operator
import sys
from dataclasses import dataclass
from typing import Any

from .errors import SpecError
from .geometry import (
    PADDING_NAMES,
    gather_frame,
    output_extent,
    resolve_padding,
    tap_index,
    window_span,
)

MODES = ("correlation", "convolution")

#: The most elements (exclusive) of any array the generated kernels index within one sample.
#: The C/OpenMP and CUDA kernels index each sample's arrays with 32-bit ``int`` (only the
#: batch index is ``int64_t``), so every per-sample offset must stay below 2**31 - 1. The
#: limit is half of that: with every array, and every working copy the kernels make of one
#: (``LayerSpec.arrays``), below 2**30 elements, the sum of two in-bounds offsets (the
#: largest the templates form in ``int``, e.g. grad_weight's scratch of the input's copy plus
#: the gradient's row tails) is still below 2**31 - 1. Strides and dilations stay below it
#: too: they are emitted as ``int`` constants.
MAX_ELEMENTS = 2**30
#: The most output rows one register tile of the ``loops`` kernels covers (``TY`` in
#: ``codegen.blocking``): the kernels' copy of a sample has room for the tile's overrun.
TILE_ROWS = 8
#: The most output columns one register tile covers: 8 vectors of ``VECTOR_REALS`` columns
#: (channels-in-lanes tiles cover at most 28).
TILE_COLUMNS = 64
#: The most reals in one vector of columns (32 bytes of float32): grad_weight rounds each
#: output row up to whole vectors.
VECTOR_REALS = 8


def _as_int(value: Any) -> int | None:
    """``value`` as a plain int when it is an integer (Python's, NumPy's, anything with
    ``__index__``) but not a boolean; else None. Plain ints keep specs hashable, equal to
    their plain-int twins and JSON-ready."""
    if isinstance(value, bool) or type(value).__name__ in ("bool_", "bool"):  # NumPy's too
        return None
    try:
        return int(operator.index(value))
    except TypeError:
        return None


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
    extents = []
    for name, item in zip(names, items):
        extent = _as_int(item)
        if extent is None:
            raise SpecError(f"{field}={value!r}: extent {name} must be an integer, got {item!r}")
        if extent < 1:
            raise SpecError(f"{field}={value!r}: extent {name} must be >= 1, got {extent}")
        extents.append(extent)
    return tuple(extents)


def _pair(field: str, value: Any, minimum: int, below: int | None = None) -> tuple[int, int]:
    """``value`` (an integer or a pair) as a pair of plain ints in ``minimum .. below - 1``."""
    single = _as_int(value)
    items: Any = (single, single) if single is not None else value
    try:
        items = tuple(items)
    except TypeError:
        raise SpecError(f"{field}={value!r}: expected an integer or a pair of integers") from None
    pair = [_as_int(v) for v in items]
    if len(pair) != 2 or pair[0] is None or pair[1] is None:
        raise SpecError(f"{field}={value!r}: expected an integer or a pair of integers")
    first, second = pair[0], pair[1]
    if min(first, second) < minimum:
        raise SpecError(f"{field}={value!r}: each {field} must be >= {minimum}")
    if below is not None and max(first, second) >= below:
        raise SpecError(
            f"{field}={value!r}: each {field} must be < {below:,} ({_power(below)}), got "
            f"{max(first, second):,}: the generated kernels compute indices with 32-bit int"
        )
    return first, second


def _printable(field: str, value: Any) -> None:
    """Refuse a value that Python will not print, an integer of more digits than
    ``sys.get_int_max_str_digits()`` (every refusal below shows the value it refuses)."""
    try:
        repr(value)
    except ValueError:
        raise SpecError(
            f"{field}: an integer of more than {sys.get_int_max_str_digits():,} digits, too "
            f"large to print and far beyond any layer") from None


def _power(n: int) -> str:
    """``2**30`` for a power of two, else the number."""
    return f"2**{n.bit_length() - 1}" if n & (n - 1) == 0 else f"{n:,}"


@dataclass(frozen=True)
class ArraySize:
    """One array the generated kernels index within a sample, as the size rule sees it."""

    #: the spec field a refusal names
    field: str
    #: what the array is, e.g. ``"the input C x H x W"``
    name: str
    #: its extents
    shape: tuple[int, ...]

    @property
    def elements(self) -> int:
        count = 1
        for extent in self.shape:
            count *= extent
        return count


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
        for field in ("input", "kernel", "stride", "padding", "dilation", "bias", "mode"):
            _printable(field, getattr(self, field))
        set_(self, "input", _shape("input", self.input, ("C", "H", "W")))
        set_(self, "kernel", _shape("kernel", self.kernel, ("O", "C", "KH", "KW")))
        set_(self, "stride", _pair("stride", self.stride, 1, MAX_ELEMENTS))
        set_(self, "dilation", _pair("dilation", self.dilation, 1, MAX_ELEMENTS))
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
        if not isinstance(self.mode, str) or self.mode not in MODES:  # an array: no `in`
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
        self._check_sizes()

    def _check_sizes(self) -> None:
        """Refuse a spec with an array the kernels cannot index with 32-bit ``int``.

        O(1) in the extents (a few products), so that ``3x99999999999999999999`` is refused
        at once; everything before it in ``__post_init__`` is O(1) too.
        """
        for array in self.arrays:
            if array.elements >= MAX_ELEMENTS:
                value = getattr(self, array.field)
                shape = " x ".join(f"{extent:,}" for extent in array.shape)
                raise SpecError(
                    f"{array.field}={value!r}: {array.name} ({shape}) has "
                    f"{array.elements:,} elements per sample; every array the kernels index "
                    f"must have fewer than {MAX_ELEMENTS:,} ({_power(MAX_ELEMENTS)}): the "
                    f"generated kernels index each sample's arrays with 32-bit int"
                )

    # -- derived sizes, computed here only -------------------------------------------------

    @property
    def dilated_kernel(self) -> tuple[int, int]:
        """Rows and columns one kernel window spans: ``d*(K-1) + 1``."""
        (dh, dw), (_, _, kh, kw) = self.dilation, self.kernel
        return window_span(kh, dh), window_span(kw, dw)

    @property
    def pads(self) -> tuple[int, int, int, int]:
        """Zero rows/columns added: ``(top, bottom, left, right)``."""
        return resolve_padding(self.padding, self.dilated_kernel)

    @property
    def out_h(self) -> int:
        top, bottom, _, _ = self.pads
        return output_extent(self.input[1], top, bottom, self.kernel[2], self.dilation[0],
                             self.stride[0])

    @property
    def out_w(self) -> int:
        _, _, left, right = self.pads
        return output_extent(self.input[2], left, right, self.kernel[3], self.dilation[1],
                             self.stride[1])

    @property
    def output_shape(self) -> tuple[int, int, int]:
        """``(O, HO, WO)``."""
        return self.kernel[0], self.out_h, self.out_w

    @property
    def arrays(self) -> tuple[ArraySize, ...]:
        """Every array the generated kernels index within one sample, as the size rule sees it.

        The spec's own arrays (input, padded input, kernel, output) and upper bounds of the
        two working copies the ``loops`` kernels of the OpenMP target make of a sample
        (``codegen.blocking``), bounds that hold whatever register tiles the blocking picks
        (at most ``TILE_ROWS`` x ``TILE_COLUMNS`` outputs, rows rounded up to whole vectors of
        at most ``VECTOR_REALS``):

        * the input, zero-padded, each row split into ``SW`` stride phases, with room below
          and right for a tile's overrun: ``Hp + (min(TILE_ROWS, HO) - 1)*SH`` rows of
          ``Wp - 1 + SW*min(WO + VECTOR_REALS - 1, TILE_COLUMNS)`` reals (``Hp``, ``Wp``: the
          padded extents). With one output row a stride beyond the input makes the row step
          ``SH`` rows larger than the copy; that constant is only ever multiplied by 0, and C
          takes a literal beyond ``int`` as a ``long``;
        * grad_input's gradient inside a zero frame of ``FH = floor(DH*(KH-1)/SH)`` rows
          (``FW`` columns likewise), with room for a tile of each stride phase:
          ``FH + max(HO, (H - 1 + PT)//SH + min(TILE_ROWS, H))`` rows of
          ``FW + max(WO, (W - 1 + PL)//SW + min(W + VECTOR_REALS - 1, TILE_COLUMNS))``, per
          output channel. It also bounds grad_weight's gradient rows rounded up to whole
          vectors (``O x HO x VECTOR_REALS``). A large dilation makes the frame large even
          when every array of the spec is small.

        ``tests/test_spec.py`` checks these bounds against ``codegen.blocking.plan``.
        """
        c, h, w = self.input
        o, _, kh, kw = self.kernel
        top, bottom, left, right = self.pads
        (sh, sw), (dh, dw) = self.stride, self.dilation
        hp, wp = h + top + bottom, w + left + right
        ho, wo = self.out_h, self.out_w
        frame_h, frame_w = gather_frame(kh, dh, sh), gather_frame(kw, dw, sw)
        return (
            ArraySize("input", "the input C x H x W", (c, h, w)),
            ArraySize("padding", "the padded input C x (H + pads) x (W + pads)", (c, hp, wp)),
            ArraySize("kernel", "the kernel O x C x KH x KW", (o, c, kh, kw)),
            ArraySize("kernel", "the output O x HO x WO", (o, ho, wo)),
            ArraySize("input" if (sh, sw) == (1, 1) else "stride",
                      "the kernels' copy of the input (padded, split by stride, room for a "
                      "tile)",
                      (c, hp + (min(TILE_ROWS, ho) - 1) * sh,
                       wp - 1 + sw * min(wo + VECTOR_REALS - 1, TILE_COLUMNS))),
            ArraySize("kernel", "grad_input's copy of the gradient O x rows x columns (framed "
                      "by the dilated kernel, room for a tile)",
                      (o, frame_h + max(ho, (h - 1 + top) // sh + min(TILE_ROWS, h)),
                       frame_w + max(wo, (w - 1 + left) // sw
                                     + min(w + VECTOR_REALS - 1, TILE_COLUMNS)))),
        )

    @property
    def n_terms(self) -> int:
        """Number of product terms in the forward pass (taps that land on the input).

        Closed form, O(log) in the extents: sizes of any magnitude answer at once.
        """
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
            u = tap_index(y, i, stride, dil, pad)
            if 0 <= u < size:
                yield u


def _floor_sum(n: int, m: int, a: int, b: int) -> int:
    """``sum(floor((a*j + b) / m) for j in range(n))`` for ``n, a, b >= 0``, ``m >= 1``.

    O(log) steps: the Euclid-like reduction of the AtCoder Library's ``floor_sum`` (take
    the whole parts of ``a/m`` and ``b/m`` out, then count the same lattice points with the
    axes swapped).
    """
    total = 0
    while n > 0:
        if a >= m:
            total += n * (n - 1) // 2 * (a // m)
            a %= m
        if b >= m:
            total += n * (b // m)
            b %= m
        y_max = a * n + b
        if y_max < m:
            break
        n, b = divmod(y_max, m)
        m, a = a, m
    return total


def _pairs_at_most(t: int, n_out: int, stride: int, taps: int, dil: int) -> int:
    """``#{(y, i): 0 <= y < n_out, 0 <= i < taps, y*stride + i*dil <= t}``, in O(log)."""
    if t < 0 or n_out < 1:
        return 0
    reach = min(taps, t // dil + 1)  # taps i with i*dil <= t
    # taps i < whole reach every output: t - i*dil >= (n_out - 1)*stride
    spare = t - (n_out - 1) * stride
    whole = 0 if spare < 0 else min(reach, spare // dil + 1)
    # each other tap i reaches floor((t - i*dil) / stride) + 1 outputs; with i = reach-1-j,
    # t - i*dil = low + j*dil
    rest = reach - whole
    low = t - (reach - 1) * dil
    return whole * n_out + rest + _floor_sum(rest, stride, dil, low)


def _covered_taps(size: int, pad: int, n_out: int, stride: int, taps: int, dil: int) -> int:
    """``#{(y, i): 0 <= y < n_out, 0 <= i < taps, 0 <= y*stride + i*dil - pad < size}``.

    All pairs, less those above the input (``y*stride + i*dil <= pad - 1``) and those below
    it (``y*stride + i*dil >= size + pad``; counted from the other end, ``y -> n_out-1-y``,
    ``i -> taps-1-i``). No pair is both, as ``size >= 1``. O(log) in the extents.
    """
    if n_out < 1:
        return 0
    last = tap_index(n_out - 1, taps - 1, stride, dil, 0)
    return (n_out * taps - _pairs_at_most(pad - 1, n_out, stride, taps, dil)
            - _pairs_at_most(last - size - pad, n_out, stride, taps, dil))


def _uncovered(size: int, pad: int, n_out: int, stride: int, taps: int, dil: int):
    seen = set(_tap_positions(size, pad, n_out, stride, taps, dil))
    return tuple(u for u in range(size) if u not in seen)
