"""What every blocking module shares: the tuning constants, the layer as the loops see it,
and small integer helpers.

Why the constants have the values they have, and the measurements behind them, is in
``docs/tiles.md``.
"""

from __future__ import annotations

from derive.geometry import Geometry
from derive.spec import LayerSpec

from ..machine import AVX2 as AVX2
from ..machine import AVX512 as AVX512
from ..machine import ISA_ENV as ISA_ENV
from ..machine import MACHINES as MACHINES
from ..machine import SSE as SSE
from ..machine import Machine as Machine
from ..machine import host_machine as host_machine

#: Bytes per vector of the column tiles: 256 bits. 512-bit vectors of columns give no more
#: multiply-adds per cycle on the machines these kernels were tuned on, and half as many
#: columns per tile; the lane tiles gain from 512 bits by other means.
VECTOR_BYTES = 32
#: The bytes of a cache line. Operands that a loop reads or writes at once in several places
#: whose distances are whole multiples of 4 KB fall in one cache set, which holds 8 lines (L1
#: and L2 alike): a 1x1 layer's column panels (40 KB each for S6) and the 16 points of each
#: of Winograd's transforms lie one or two lines further apart (``skewed``). Without it, the
#: weights' transform took half of a 512-channel 14x14 layer's float32 forward at a batch of 1,
#: S5's Winograd passes took 1.01-1.09 times as long, and S6's float64 forward and grad_input
#: at a batch of 1 1.08-1.10 (docs/tiles.md).
LINE_BYTES = 64
#: What ``skewed`` keeps every such distance from being a whole number of.
SET_SPAN_BYTES = 4096


def skewed(reals: int, dtype_bytes: int) -> int:
    """A distance of at least ``reals`` reals, one cache line more (two, where one would
    make it a whole number of ``SET_SPAN_BYTES``): never a whole number of 4 KB."""
    line = LINE_BYTES // dtype_bytes
    out = reals + line
    return out + line if out * dtype_bytes % SET_SPAN_BYTES == 0 else out
#: Below this many multiply-adds per output element (input channels x taps), a forward or
#: stride-1 grad_input lane tile costs more than the column tile, which stores whole vectors
#: as they are. A grad_input with a column stride stores its column tiles element by
#: element, so it takes lanes whenever its channels fill them.
LANE_MIN_SUMS = 128
#: forward and grad_input split a sample's channel blocks into groups until the batch gives
#: at least this many tasks.
MIN_TASKS = 8
#: grad_weight sums the batch in at most this many chunks (partial sums added in order).
GRAD_WEIGHT_CHUNKS = 8
#: grad_weight also cuts each sample's output rows into parts, each summed into a slot of its
#: own, until chunks x blocks of output channels x parts make at least this many tasks. The
#: chunks alone left threads idle where a layer has one block of output channels: at a batch
#: of 1 (ResNet's 7x7 stem ran on one of two threads) and on hosts of 16 threads (S2's and
#: S3's grad_weight had 8 tasks).
GRAD_WEIGHT_TASKS = 32
#: grad_weight cuts rows into parts only while each task keeps at least this many flops: a
#: part's own costs (its slot zeroed and added, the input rows around it packed again) took
#: S3's float32 grad_weight to 1.07 of the time at a batch of 4 on 2 threads in 16 tasks of
#: 0.6 MFLOP each.
GRAD_WEIGHT_PART_FLOPS = 1 << 21
#: grad_weight cuts rows into parts only while each slot sums at least this many output pixels
#: (its chunk's samples x its part's pixels): a slot is zeroed, then added by one thread at the
#: end, and with 256 pixels (a 64x32x32 -> 64 3x3 layer in float64 at a batch of 1, in four
#: slots) that addition took the call to 1.21 of the time.
GRAD_WEIGHT_SLOT_PIXELS = 1024
#: grad_bias sums several samples' planes of a channel side by side (``grad_bias_planes``):
#: the planes lie a sample apart, and one plane at a time keeps one stream from memory in
#: flight. Planes times the lanes of the machine's widest vector: about this many reals.
GRAD_BIAS_LANES = 32
#: ... and at most this many planes.
GRAD_BIAS_MAX_PLANES = 4


def grad_bias_planes(lanes: int) -> int:
    """How many samples' planes grad_bias sums side by side, with vectors of ``lanes`` reals:
    two to four, fewer the wider the vectors. On a Zen 4, 16 float32 lanes, against one plane
    at a time: four planes took 1.00-1.09 of the time on planes of 16x16 and 20x20 pixels
    (S4's among them), two 0.92-0.98; 8 float64 lanes ran fastest with four on most shapes
    (0.82-0.95), and neither dtype with eight (docs/tiles.md)."""
    return max(2, min(GRAD_BIAS_MAX_PLANES, GRAD_BIAS_LANES // lanes))
#: Bytes of transposed gradient a lane grad_weight tile sweeps per pass (half of L1).
GRAD_WEIGHT_BAND_BYTES = 16 * 1024
#: A lane grad_weight transposes its gradient LANES x LANES reals at a time in registers
#: (``pack_transposed``) where its lane vectors hold at least this many reals, or where its
#: output channels fill a single lane vector, and element by element, as GCC vectorizes
#: that loop, elsewhere. Side by side on a Zen 4 (AVX-512), the register transpose took
#: 0.976-0.978 of the time on S3's float32 grad_weight and 0.986 on S4's (16 lanes; GCC's loop
#: spilled its shuffles), 0.94-0.97 on S2's float64 (8 lanes, 8 channels; 0.95-0.97 in
#: float32 with AVX2's 8 lanes, on the same CPU), but 1.023-1.028 on S3's float64 and 0.999 on
#: S4's (8 lanes, 16 and 32 channels; docs/tiles.md).
REGISTER_TRANSPOSE_LANES = 16
#: The output pixels per pass of a lane grad_weight tile's loop that tuning times besides one
#: (``pixels=2``): two pixels at a time took 0.92-0.97 of the time on S4 and S5 (Zen 3), but
#: 1.09-1.11 on S3's float64 tile of four vectors, so it is measured, not assumed.
GRAD_WEIGHT_PIXELS = 2
#: How many of its steps a matrix-product tile's loop takes per pass (``#pragma GCC
#: unroll``): one step's loads and multiply-adds, with its own loop test, took the 6x2 tile
#: 1.14-1.21 times as long on a Zen 3 as four steps at a time.
PRODUCT_STEP_UNROLL = 4
#: Cycles charged per tile (stores, set-up) and per channel of a tile (loop overhead) by the
#: cost model that picks the tiles.
TILE_OVERHEAD = 24
CHANNEL_OVERHEAD = 3
#: Load slots the cost model charges a column tile's vector load: it starts at any element,
#: so it crosses a cache line (and takes two slots) about 3 times in 8; a weight broadcast
#: is one aligned element (one slot).
VECTOR_LOAD_SLOTS = 1.5
#: Cycles charged per output row and channel of a column tile: its own store stream, with
#: its own edge test. With it the model prefers wide tiles of few channels on layers of one
#: input channel, as measured.
ROW_OVERHEAD = 2


#: The layer as the loops see it: one spec's numbers and the tap, flip and phase rules
#: (``derive.geometry``, the one home of that arithmetic).
geometry = Geometry.of


def is_pointwise(spec: LayerSpec) -> bool:
    """A 1x1 kernel without padding (dilation does not matter): per sample, a product of the
    O x C weights with the C x (HO*WO) input pixels the output reads, which at a stride are
    every SH-th row's every SW-th column (``pointwise.pointwise_plan``)."""
    _, _, kh, kw = spec.kernel
    return (kh, kw, *spec.pads) == (1, 1, 0, 0, 0, 0)


def _cdiv(a: int, b: int) -> int:
    return -(-a // b)


def _divisors(n: int, limit: int) -> list[int]:
    return [d for d in range(1, min(n, limit) + 1) if n % d == 0]


def _tap_blocks(offsets: list[int]) -> list[int]:
    """The tap counts ``tt`` (dividing the number of taps) for which every block of ``tt``
    consecutive taps has its taps at the same distances from its first: a block then reads
    them from one pointer at offsets fixed at compile time. 1 always qualifies."""
    return [tt for tt in _divisors(len(offsets), len(offsets))
            if all(offsets[t0 + k] - offsets[t0] == offsets[k] - offsets[0]
                   for t0 in range(0, len(offsets), tt) for k in range(tt))]
