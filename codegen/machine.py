"""The vector unit the OpenMP tiles are sized for, read from this CPU (``host_machine``).

Kept outside ``codegen.blocking`` (which re-exports it): loading a module built earlier
needs the machine for its cache key, not the cost models, and importing the whole blocking
package took a tenth of a second of such a load.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, replace
from pathlib import Path

from .vocabulary import VECTOR_BYTES


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
        full_width: whether a multiply-add of the widest vectors runs at the rate of a
            256-bit one. False on Zen 4 (AMD family 25 with AVX-512), which splits it into
            two halves: tiles of 512-bit vectors hold no more multiply-adds per cycle there,
            and tuning does not time them. An Intel Xeon with AVX-512 multiplies 512 bits at
            once, and a 256-bit tile reaches half its peak at most (docs/tiles.md).
    """

    isa: str
    lane_bytes: int
    registers: int
    lane_fmas: int = 2
    full_width: bool = True

    @property
    def accumulators(self) -> int:
        """Registers a column tile's partial sums may take: three quarters, the rest for
        its loads and broadcasts (24 of 32)."""
        return self.registers * 3 // 4

    @property
    def wide_tiles(self) -> bool:
        """Whether tuning times tiles of the widest vectors: they are wider than the VL
        vectors (``VECTOR_BYTES``) every machine's tiles have, and multiply at full width.
        The matrix products, forward's column sweeps and Winograd's products ask it."""
        return self.lane_bytes > VECTOR_BYTES and self.full_width

    @property
    def lane_accumulators(self) -> int:
        """Registers a lane tile's partial sums may take: all but four (28 of 32), as each
        step loads one vector per NV and broadcasts one value at a time."""
        return self.registers - 4


#: The machines the tiles know: AVX-512 (the tuning of docs/tiles.md, Zen 4: 512-bit lanes,
#: so that each broadcast source value feeds 16 float32 multiply-adds per instruction), AVX2
#: (Zen 3 and older Xeons: 16 registers of 32 bytes), SSE.
AVX512 = Machine("avx512", 64, 32, lane_fmas=1)
#: AVX-512 as Zen 4 runs it: each 512-bit multiply-add in two 256-bit halves.
AVX512_HALVES = replace(AVX512, full_width=False)
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
    fields = _first_fields(text)
    flags = fields.get("flags", "").split()
    if "avx512f" in flags:
        halves = fields.get("vendor_id") == "AuthenticAMD" and fields.get("cpu family") == "25"
        return AVX512_HALVES if halves else AVX512
    return AVX2 if "avx2" in flags and "fma" in flags else SSE


def _first_fields(cpuinfo: str) -> dict[str, str]:
    """The fields of ``/proc/cpuinfo``'s first processor, by name."""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        name, colon, value = line.partition(":")
        if not colon:
            if fields:
                break  # the blank line after the first processor
            continue
        fields.setdefault(name.strip(), value.strip())
    return fields
