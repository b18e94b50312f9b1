"""The CUDA ``tiled`` style's plans: each pass as an implicit matrix product, its tile sizes,
and a model of its time on a GPU.

Every pass of a correlation layer is a matrix product whose operands are gathered from the
layer's arrays (an *implicit* GEMM: nothing is materialised in global memory):

=============  ===============  =============================  ==========================
pass           rows (M)         columns (N)                    depth (summed)
=============  ===============  =============================  ==========================
forward        O                N·HO·WO output positions       C·KH·KW taps
grad_input     C                N·H·W input positions, split   O · the taps of the phase
                                by stride phase
grad_weight    O                C·KH·KW taps                   N·HO·WO positions, in chunks
=============  ===============  =============================  ==========================

A block of ``threads`` threads computes a ``tile_m × tile_n`` tile of the result. It walks the
depth in slices of ``depth``: the threads stage the slice of both operands in shared memory
(``tile_m × depth`` and ``depth × tile_n`` elements, coalesced reads along the contiguous
axis), wait at a barrier, and each thread multiplies its ``regs_m × regs_n`` register tile
from them. Each operand element is read from global memory once per tile instead of once per
product, which is what the one-thread-per-element ``loops`` kernels do.

The tile sizes are chosen per pass by the model below: the candidates that the limits of
every architecture the module is built for allow (``CUDA_ARCHS``: registers, shared memory,
threads per block), ranked by their predicted time on ``MODEL_GPU`` at ``MODEL_BATCH``. The
model is a roofline with the GPU's waves: the time of a pass is the larger of its arithmetic
(the padded tiles' FLOPs at the FMA rate, derated when the register tile is too small to
hide the shared-memory reads) and its memory traffic (DRAM: every array once; L2: every
tile's operand slices), times the waves the grid needs at the occupancy the tile allows,
plus a launch. It is printed by ``print(ir)`` for every modelled GPU, so a choice can be
argued before any GPU runs it; none of its numbers are measurements.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from derive.spec import LayerSpec

from .vocabulary import flops as pass_flops

#: A register is 4 bytes: a float64 value takes two.
REGISTER_BYTES = 4
#: Registers a tiled kernel's thread needs besides its tile and fragments (indices,
#: pointers, loop counters), estimated from ptxas's reports on these kernels.
REGISTER_OVERHEAD = 40
#: The most registers a thread may use: below 255 so the compiler need not spill.
MAX_REGISTERS = 128
#: Static shared memory per block (CUDA's limit without opting in to more).
MAX_SHARED_BYTES = 48 * 1024
#: The batch at which the model ranks the candidates and ``print(ir)`` reports times.
MODEL_BATCH = 32
#: The CUDA reductions (grad_weight, grad_bias) are cut into chunks until about this many
#: threads share the work ...
REDUCTION_THREADS = 1 << 17
#: ... with at least this many positions (n, y, x) per chunk.
TILED_REDUCTION_MIN_ITEMS = 256
#: One launch, in microseconds (the queueing cost a tiny layer cannot hide).
LAUNCH_US = 3.0


@dataclass(frozen=True)
class Gpu:
    """One GPU of the model: an architecture's limits and a card's rates."""

    name: str
    arch: str
    sms: int
    registers_per_sm: int
    threads_per_sm: int
    blocks_per_sm: int
    shared_per_sm: int
    fp32_gflops: float
    fp64_gflops: float
    dram_gbs: float
    l2_gbs: float


#: The modelled GPUs, one per architecture of ``codegen.backends.CUDA_ARCHS`` (published
#: figures: FP32/FP64 without tensor cores, DRAM bandwidth; L2 bandwidth about 2.5x DRAM).
GPUS = (
    Gpu("Tesla T4", "sm_75", 40, 65536, 1024, 16, 64 * 1024, 8141, 254, 320, 800),
    Gpu("A100 SXM4", "sm_80", 108, 65536, 2048, 32, 164 * 1024, 19500, 9700, 1555, 4000),
    Gpu("H100 SXM5", "sm_90", 132, 65536, 2048, 32, 228 * 1024, 66900, 33500, 3350, 8400),
)
#: The GPU the tile choice is ranked on.
MODEL_GPU = GPUS[1]


@dataclass(frozen=True)
class Tile:
    """A block's tile: ``tile_m × tile_n`` results, ``regs_m × regs_n`` per thread, the depth
    staged per slice."""

    tile_m: int
    tile_n: int
    depth: int
    regs_m: int
    regs_n: int

    @property
    def threads_m(self) -> int:
        return self.tile_m // self.regs_m

    @property
    def threads_n(self) -> int:
        return self.tile_n // self.regs_n

    @property
    def threads(self) -> int:
        return self.threads_m * self.threads_n

    def shared_bytes(self, itemsize: int) -> int:
        return (self.tile_m + self.tile_n) * self.depth * itemsize

    def registers(self, itemsize: int) -> int:
        """An estimate of the registers per thread: the accumulators and one column and row
        of fragments, plus the overhead."""
        words = itemsize // REGISTER_BYTES
        return (self.regs_m * self.regs_n + self.regs_m + self.regs_n) * words \
            + REGISTER_OVERHEAD

    def text(self) -> str:
        return (f"{self.tile_m}x{self.tile_n} tile, depth {self.depth}, "
                f"{self.regs_m}x{self.regs_n} per thread, {self.threads} threads")


@dataclass(frozen=True)
class Product:
    """One pass as a matrix product at batch ``n``: ``rows × columns``, summed over
    ``depth``; ``flops`` the useful ones, ``dram_bytes`` every array once."""

    rows: int
    columns: int
    depth: int
    flops: int
    dram_bytes: int


def product(spec: LayerSpec, name: str, batch: int, itemsize: int) -> Product:
    """The matrix product of pass ``name`` at batch ``batch`` (grad_input: its mean depth
    over the stride phases)."""
    c, h, w = spec.input
    o, _, kh, kw = spec.kernel
    _, ho, wo = spec.output_shape
    taps = c * kh * kw
    flops = pass_flops(spec, batch, name)  # BENCH.md's count: the same for the three passes
    arrays = {"V": batch * c * h * w, "K": o * taps, "Z": batch * o * ho * wo}
    dram = (arrays["V"] + arrays["K"] + arrays["Z"]) * itemsize
    if name == "forward":
        return Product(o, batch * ho * wo, taps, flops, dram)
    if name == "grad_input":
        return Product(c, batch * h * w, max(1, o * kh * kw // (spec.stride[0] * spec.stride[1])),
                       flops, dram)
    return Product(o, taps, batch * ho * wo, flops, dram)


def occupancy(tile: Tile, itemsize: int, gpu: Gpu) -> int:
    """Blocks of ``tile`` resident on one SM of ``gpu`` (0: it does not fit)."""
    registers = tile.registers(itemsize) * tile.threads
    return min(gpu.threads_per_sm // tile.threads, gpu.registers_per_sm // registers,
               gpu.shared_per_sm // max(1, tile.shared_bytes(itemsize)), gpu.blocks_per_sm)


def chunks(spec: LayerSpec, name: str, tile: Tile, batch: int) -> int:
    """grad_weight's chunks of the depth at batch ``batch``, as the launcher computes them
    (``reduction_chunks``): about ``REDUCTION_THREADS`` threads in all, at least
    ``TILED_REDUCTION_MIN_ITEMS`` positions per chunk; 1 for the other passes."""
    if name != "grad_weight":
        return 1
    p = product(spec, name, batch, 4)
    tiles = math.ceil(p.rows / tile.tile_m) * math.ceil(p.columns / tile.tile_n)
    wanted = math.ceil(REDUCTION_THREADS / (tiles * tile.threads))
    return max(1, min(wanted, math.ceil(p.depth / TILED_REDUCTION_MIN_ITEMS)))


def predicted_us(spec: LayerSpec, name: str, tile: Tile, itemsize: int, gpu: Gpu,
                 batch: int = MODEL_BATCH) -> float:
    """The model's time of pass ``name`` with ``tile`` on ``gpu``, in microseconds."""
    p = product(spec, name, batch, itemsize)
    split = chunks(spec, name, tile, batch)
    blocks = math.ceil(p.rows / tile.tile_m) * math.ceil(p.columns / tile.tile_n) * split
    resident = occupancy(tile, itemsize, gpu)
    if resident == 0:
        return math.inf
    # A step of a slice issues regs_m * regs_n FMAs and reads regs_m + regs_n shared words
    # (two per float64): the larger the register tile, the more of the issue slots are FMAs.
    fmas = tile.regs_m * tile.regs_n
    words = (tile.regs_m + tile.regs_n) * itemsize / REGISTER_BYTES
    per_sm = math.ceil(blocks / gpu.sms)  # blocks each SM runs, in waves of `resident`
    warps = min(resident, per_sm) * tile.threads / 32
    pace = fmas / (fmas + words) * min(1.0, warps / 8)  # under 8 warps, latency shows
    rate = (gpu.fp64_gflops if itemsize == 8 else gpu.fp32_gflops) * 1e3 / gpu.sms
    compute = per_sm * 2 * tile.tile_m * tile.tile_n * math.ceil(p.depth / split) / (rate * pace)
    l2 = blocks * (tile.tile_m + tile.tile_n) * math.ceil(p.depth / split) * itemsize
    partials = 2 * split * p.rows * p.columns * itemsize if split > 1 else 0
    memory = max((p.dram_bytes + partials) / (gpu.dram_gbs * 1e3), l2 / (gpu.l2_gbs * 1e3))
    return max(compute, memory) + LAUNCH_US * (2 if split > 1 else 1)


def candidates(itemsize: int) -> list[Tile]:
    """Every tile the limits of all modelled architectures allow."""
    out = []
    for tile_m in (16, 32, 64, 128):
        for tile_n in (16, 32, 64, 128):
            for regs_m in (1, 2, 4, 8):
                for regs_n in (1, 2, 4, 8):
                    for depth in (8, 16, 32):
                        tile = Tile(tile_m, tile_n, depth, regs_m, regs_n)
                        if tile_m % regs_m or tile_n % regs_n or not 64 <= tile.threads <= 256:
                            continue
                        if tile.registers(itemsize) > MAX_REGISTERS \
                                or tile.shared_bytes(itemsize) > MAX_SHARED_BYTES:
                            continue
                        if all(occupancy(tile, itemsize, gpu) > 0 for gpu in GPUS):
                            out.append(tile)
    return out


def choose(spec: LayerSpec, name: str, itemsize: int) -> Tile:
    """The candidate tile of pass ``name`` with the least predicted time on ``MODEL_GPU``
    (ties: fewer registers, then the order of ``candidates``)."""
    return min(candidates(itemsize),
               key=lambda t: (round(predicted_us(spec, name, t, itemsize, MODEL_GPU), 3),
                              t.registers(itemsize)))


def model_lines(spec: LayerSpec, name: str, tile: Tile, itemsize: int) -> list[str]:
    """``print(ir)``'s lines for one tiled pass: the tile, its resources, and the predicted
    time on each modelled GPU at ``MODEL_BATCH``."""
    p = product(spec, name, MODEL_BATCH, itemsize)
    lines = [f"    {tile.text()}; {tile.shared_bytes(itemsize):,} B shared, about "
             f"{tile.registers(itemsize)} registers per thread",
             f"    as a matrix product at N={MODEL_BATCH}: {p.rows} x {p.columns}, depth "
             f"{p.depth}; {p.flops / 1e6:,.1f} MFLOP, {p.dram_bytes / 1e6:,.2f} MB"]
    for gpu in GPUS:
        us = predicted_us(spec, name, tile, itemsize, gpu)
        gflops = p.flops / us / 1e3
        lines.append(f"    model, {gpu.name} ({gpu.arch}): {occupancy(tile, itemsize, gpu)} "
                     f"blocks per SM, {us:,.1f} us ({gflops:,.0f} GFLOP/s)")
    return lines


def model_table(layers: dict[str, tuple[LayerSpec, int]]) -> list[str]:
    """A Markdown table of the tile of every pass of ``layers`` (id -> (spec, batch)) and its
    modelled time on each GPU at the layer's batch (``docs/cuda-tiles.md``)."""
    head = ["| layer | N | dtype | pass | tile | shared B | regs (est.) | "
            + " | ".join(f"{gpu.name} µs" for gpu in GPUS) + " |",
            "|---|---:|---|---|---|---:|---:|" + "---:|" * len(GPUS)]
    rows = []
    for layer, (spec, batch) in layers.items():
        for dtype, itemsize in (("float32", 4), ("float64", 8)):
            for name in ("forward", "grad_input", "grad_weight"):
                tile = choose(spec, name, itemsize)
                times = " | ".join(f"{predicted_us(spec, name, tile, itemsize, gpu, batch):,.1f}"
                                   for gpu in GPUS)
                rows.append(f"| {layer} | {batch} | {dtype} | {name} | {tile.tile_m}×"
                            f"{tile.tile_n}, slice {tile.depth}, {tile.regs_m}×{tile.regs_n} "
                            f"per thread, {tile.threads} threads | "
                            f"{tile.shared_bytes(itemsize):,} | {tile.registers(itemsize)} | "
                            f"{times} |")
    return head + rows
