"""What every blocking module shares: the tuning constants, the layer as the loops see it,
and small integer helpers.

Why the constants have the values they have, and the measurements behind them, is in
``docs/tiles.md``.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path

from derive.geometry import Geometry
from derive.spec import LayerSpec

#: Bytes per vector of the column tiles: 256 bits. 512-bit vectors of columns give no more
#: multiply-adds per cycle on the machines these kernels were tuned on, and half as many
#: columns per tile; the lane tiles gain from 512 bits by other means.
VECTOR_BYTES = 32
#: Below this many multiply-adds per output element (input channels x taps), a forward or
#: stride-1 grad_input lane tile costs more than the column tile, which stores whole vectors
#: as they are. A grad_input with a column stride stores its column tiles element by
#: element, so it takes lanes whenever its channels fill them.
LANE_MIN_SUMS = 128


@dataclass(frozen=True)
class Machine:
    """The vector unit the tiles are sized for: that of the CPU building the module
    (``host_machine``), whose ``-march=native`` code the module runs.

    Attributes:
        isa: ``avx512``, ``avx2`` or ``sse``, as ``/proc/cpuinfo``'s flags name it.
        lane_bytes: the widest vector: the channels-in-lanes tiles hold this many bytes of
            channels (wider vectors the compiler splits, and the split tiles spill).
        registers: vector registers (32 with AVX-512, 16 below it).
        lane_fmas: lane-vector multiply-adds per cycle, as the lane tiles' cost model
            charges them: 1 with AVX-512 (Zen 4, where the tiles were tuned, runs a 512-bit
            multiply-add as two halves), 2 with 256-bit or narrower vectors.
    """

    isa: str
    lane_bytes: int
    registers: int
    lane_fmas: int = 2

    @property
    def accumulators(self) -> int:
        """Registers a column tile's partial sums may take: three quarters, the rest for
        its loads and broadcasts (24 of 32)."""
        return self.registers * 3 // 4

    @property
    def lane_accumulators(self) -> int:
        """Registers a lane tile's partial sums may take: all but four (28 of 32), as each
        step loads one vector per NV and broadcasts one value at a time."""
        return self.registers - 4


#: The machines the tiles know: AVX-512 (the tuning of docs/tiles.md, Zen 4: 512-bit lanes,
#: so that each broadcast source value feeds 16 float32 multiply-adds per instruction), AVX2
#: (Zen 3 and older Xeons: 16 registers of 32 bytes), SSE.
AVX512 = Machine("avx512", 64, 32, lane_fmas=1)
AVX2 = Machine("avx2", 32, 16)
SSE = Machine("sse", 16, 16)


#: Names the vector unit to size the tiles for instead of this CPU's: avx512, avx2 or sse
#: (to render another machine's kernels, or to compare them on this one).
ISA_ENV = "CORRGEN_VECTOR_ISA"
MACHINES = {m.isa: m for m in (AVX512, AVX2, SSE)}


def host_machine() -> Machine:
    """This CPU's vector unit, from ``/proc/cpuinfo``'s flags (AVX2 when unreadable), or
    the one ``CORRGEN_VECTOR_ISA`` names (ValueError for another name)."""
    forced = os.environ.get(ISA_ENV, "").strip().lower()
    if forced:
        if forced not in MACHINES:
            raise ValueError(f"{ISA_ENV}={forced!r}: expected one of {', '.join(MACHINES)}")
        return MACHINES[forced]
    return _detected_machine()


#: Where the CPU's flags are read.
CPUINFO = Path("/proc/cpuinfo")


@functools.cache
def _detected_machine() -> Machine:
    try:
        text = CPUINFO.read_text()
    except OSError:
        return AVX2
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines()
                  if line.startswith("flags")), [])
    if "avx512f" in flags:
        return AVX512
    return AVX2 if "avx2" in flags and "fma" in flags else SSE


#: forward and grad_input split a sample's channel blocks into groups until the batch gives
#: at least this many tasks.
MIN_TASKS = 8
#: grad_weight sums the batch in at most this many chunks (partial sums added in order).
GRAD_WEIGHT_CHUNKS = 8
#: Bytes of transposed gradient a lane grad_weight tile sweeps per pass (half of L1).
GRAD_WEIGHT_BAND_BYTES = 16 * 1024
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
    """A 1x1 kernel at stride 1 without padding (dilation does not matter): per sample, a
    product of the O x C weights with the C x (H*W) input."""
    _, _, kh, kw = spec.kernel
    return (kh, kw, *spec.stride, *spec.pads) == (1, 1, 1, 1, 0, 0, 0, 0)


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
