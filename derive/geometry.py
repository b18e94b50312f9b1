"""The layer's geometry, each rule written once: output extent, padding, taps, flip, gather.

Pure Python: every rule is plain arithmetic, so it works on ints (the spec, the NumPy
reference, the kernel tables) and on SymPy symbols alike (the index forms of
``derive.proof``). Per axis (rows, or columns likewise), with ``size`` input rows, ``taps``
kernel rows, stride ``s``, dilation ``d`` and ``pad`` zero rows above the input:

* the window of output row ``y`` reads tap ``i`` at input row ``tap_index(y, i, s, d, pad)
  = y*s + i*d - pad`` (a row outside ``0 .. size-1`` is a zero of the padding);
* there are ``output_extent(size, pad_lo, pad_hi, taps, d, s) = floor((size + pad_lo +
  pad_hi - d*(taps-1) - 1) / s) + 1`` output rows;
* in convolution mode, tap ``i`` applies kernel row ``kernel_tap(i, taps, True) =
  taps-1-i`` (the kernel rotated by 180 degrees);
* grad_input gathers: input row ``u`` collects from output row ``gather_index(u, i, s, d,
  pad) = (u + pad - i*d)/s`` of each tap whose quotient is a whole number inside the output
  (``phase_split`` groups the input rows by stride phase, so that no division is left).

``Geometry`` gathers one spec's numbers with the same rules for both axes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, NamedTuple

PADDING_NAMES = ("valid", "same", "full")


def window_span(taps: Any, dilation: Any) -> Any:
    """Rows one window spans: ``d*(taps-1) + 1``."""
    return dilation * (taps - 1) + 1


def output_extent(size: Any, pad_lo: Any, pad_hi: Any, taps: Any, dilation: Any,
                  stride: Any) -> Any:
    """``floor((size + pad_lo + pad_hi - d*(taps-1) - 1) / stride) + 1``: the output rows."""
    return (size + pad_lo + pad_hi - window_span(taps, dilation)) // stride + 1


def resolve_padding(padding: Any, spans: tuple[int, int]) -> tuple[int, int, int, int]:
    """Zero rows and columns ``(top, bottom, left, right)`` of a padding: a pair
    ``(ph, pw)`` (each on both sides), or a name of ``PADDING_NAMES`` for windows of
    ``spans = (rows, columns)``: ``valid`` none, ``full`` ``span - 1`` on every side,
    ``same`` a total of ``span - 1``, the odd one at the bottom (right), as PyTorch's and
    TensorFlow's ``"same"``."""
    if not isinstance(padding, str):
        ph, pw = padding
        return ph, ph, pw, pw
    total_h, total_w = spans[0] - 1, spans[1] - 1
    if padding == "valid":
        return 0, 0, 0, 0
    if padding == "full":
        return total_h, total_h, total_w, total_w
    if padding != "same":
        raise ValueError(f"padding={padding!r}: expected one of {', '.join(PADDING_NAMES)}")
    return total_h // 2, total_h - total_h // 2, total_w // 2, total_w - total_w // 2


def tap_index(out: Any, tap: Any, stride: Any, dilation: Any, pad: Any) -> Any:
    """The input row output row ``out`` reads at tap ``tap``: ``out*stride + tap*d - pad``."""
    return out * stride + tap * dilation - pad


def gather_index(pos: Any, tap: Any, stride: Any, dilation: Any, pad: Any) -> Any:
    """The output row whose tap ``tap`` read input row ``pos``: ``(pos + pad - tap*d) /
    stride``. With ints, the whole quotient, or None when it is not whole; with SymPy
    symbols, the (possibly fractional) affine expression."""
    num = pos + pad - tap * dilation
    if isinstance(num, int):
        quotient, remainder = divmod(num, stride)
        return None if remainder else quotient
    return num / stride


def kernel_tap(tap: Any, taps: Any, flipped: bool) -> Any:
    """The kernel row that tap ``tap`` applies: ``taps-1-tap`` when ``flipped`` (convolution
    mode, the kernel rotated by 180 degrees), else ``tap``. An involution: it also gives the
    tap that applies a kernel row."""
    return taps - 1 - tap if flipped else tap


def is_flipped(mode: str) -> bool:
    """Whether a layer of this mode flips its kernel (``"convolution"``)."""
    return mode == "convolution"


def gather_frame(taps: int, dilation: int, stride: int) -> int:
    """The most output rows a gather reaches back: ``floor(d*(taps-1) / stride)``."""
    return dilation * (taps - 1) // stride


class PhaseSplit(NamedTuple):
    """grad_input's gather on one axis, split by stride phase ``r = (u + pad) mod stride``.

    Attributes:
        taps: per phase ``r``, the taps ``(t, a)`` that reach it: ``t*d = a*stride + r``;
            input row ``u = m*stride + r - pad`` collects tap ``t`` from output row ``m - a``.
        spans: per phase ``r``, ``(first m, count)`` of its input rows inside ``0 .. size-1``.
        frame: the largest ``a`` (``gather_frame``): zero output rows needed above the output.
    """

    taps: list[list[tuple[int, int]]]
    spans: list[tuple[int, int]]
    frame: int


def phase_split(taps: int, dilation: int, stride: int, pad: int, size: int) -> PhaseSplit:
    """grad_input's gather on one axis, split by stride phase (see ``PhaseSplit``)."""
    by_phase = [[(t, (t * dilation - r) // stride) for t in range(taps)
                 if (t * dilation) % stride == r] for r in range(stride)]
    frame = max((a for phase in by_phase for _, a in phase), default=0)
    spans = []
    for r in range(stride):
        lo = -((r - pad) // stride)
        hi = (size - 1 + pad - r) // stride
        spans.append((lo, max(0, hi - lo + 1)))
    return PhaseSplit(by_phase, spans, frame)


def buffer_shapes(spec: Any) -> dict[str, tuple[tuple[int, ...], bool]]:
    """Per array, its per-sample shape and whether a batch axis ``N`` comes first: ``V``,
    ``K``, ``b``, ``G`` in, ``Z``, ``dV``, ``dK``, ``db`` out (``Z``, ``G``: ``(O, HO, WO)``;
    ``dV`` as ``V``, ``dK`` as ``K``, ``db`` as ``b``)."""
    o = spec.kernel[0]
    return {
        "V": (spec.input, True), "K": (spec.kernel, False), "b": ((o,), False),
        "G": (spec.output_shape, True), "Z": (spec.output_shape, True),
        "dV": (spec.input, True), "dK": (spec.kernel, False), "db": ((o,), False),
    }


@dataclass(frozen=True)
class Geometry:
    """One spec's numbers, both axes, and the rules above applied to them."""

    c: int
    h: int
    w: int
    o: int
    kh: int
    kw: int
    ho: int
    wo: int
    sh: int
    sw: int
    dh: int
    dw: int
    top: int
    left: int
    flip: bool
    bottom: int = 0
    right: int = 0

    @classmethod
    def of(cls, spec: Any) -> Geometry:
        c, h, w = spec.input
        o, _, kh, kw = spec.kernel
        _, ho, wo = spec.output_shape
        (sh, sw), (dh, dw) = spec.stride, spec.dilation
        top, bottom, left, right = spec.pads
        return cls(c, h, w, o, kh, kw, ho, wo, sh, sw, dh, dw, top, left,
                   is_flipped(spec.mode), bottom, right)

    def input_row(self, y: Any, i: Any) -> Any:
        return tap_index(y, i, self.sh, self.dh, self.top)

    def input_col(self, x: Any, j: Any) -> Any:
        return tap_index(x, j, self.sw, self.dw, self.left)

    def output_row(self, u: Any, i: Any) -> Any:
        return gather_index(u, i, self.sh, self.dh, self.top)

    def output_col(self, v: Any, j: Any) -> Any:
        return gather_index(v, j, self.sw, self.dw, self.left)

    def kernel_row(self, i: Any) -> Any:
        return kernel_tap(i, self.kh, self.flip)

    def kernel_col(self, j: Any) -> Any:
        return kernel_tap(j, self.kw, self.flip)

    def weight_index(self, i: int, j: int) -> int:
        """Offset of tap ``(i, j)``'s kernel element in a kernel plane ``K[o, c]``."""
        return self.kernel_row(i) * self.kw + self.kernel_col(j)

    def row_phases(self) -> PhaseSplit:
        return phase_split(self.kh, self.dh, self.sh, self.top, self.h)

    def col_phases(self) -> PhaseSplit:
        return phase_split(self.kw, self.dw, self.sw, self.left, self.w)
