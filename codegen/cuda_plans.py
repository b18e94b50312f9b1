"""The CUDA passes as the templates print them: one frozen ``CudaPass`` per kernel.

``codegen.lower`` builds them for the CUDA targets (``KernelIR.cuda_passes``); the templates
under ``templates/cuda/`` only print their fields: argument lists, the launch line of each
launcher, the per-sample pointers, for the reductions of the ``loops`` style the statements
that walk a chunk's positions, and for the ``tiled`` style the pass's tile
(``codegen.cuda_tiles``).
"""

from __future__ import annotations

from dataclasses import dataclass

from .cuda_tiles import Tile
from .ir import Buffer, Constant, Kernel
from .vocabulary import PASS

#: The threads-per-block constant of each pass's kernel.
BLOCKS = {"forward": "FORWARD_BLOCK", "grad_input": "GRAD_INPUT_BLOCK",
          "grad_weight": "REDUCTION_BLOCK", "grad_bias": "REDUCTION_BLOCK"}


@dataclass(frozen=True)
class CudaPass:
    """One pass of a CUDA module, printed by ``templates/cuda/``.

    Attributes:
        kernel: the pass (``codegen.ir.Kernel``; the ``loops`` style's carries its laid-out
            index form, ``nest`` and ``layout``).
        params: the kernel's parameters: ``int64_t n``, then its arrays as ``__restrict__``
            pointers (the launcher's too, before the stream).
        args: the same as arguments, ``n, V, K, Z``.
        reduction: the pass sums over the batch: its kernel writes chunk sums into a partial
            buffer (``partial_params``, ``partial_args``) that ``sum_chunks`` adds up.
        partial_params, partial_args: the ``_partial`` kernel's parameters and arguments
            (``n, chunks``, the inputs, ``partial``); empty when not a reduction.
        block: the constant naming the threads per block of the pass's kernel.
        items: plain passes: the work items of one launch, ``n`` or ``n * <elements>``.
        chunks, threads: reductions: the number of chunks, and of threads, of one launch.
        pointers: the per-sample pointers of the batched arrays (``V_s = V + s * ...``).
        uploads: ``(name, elements)`` of each input the host entry point copies to the GPU.
        output_elements: the elements of the output, ``n * <sample>`` when batched.
        sum_vars: ``loops`` reductions: the summed indices, ``y, x``.
        starts: ``loops`` reductions: each summed index from the chunk's first position
            ``p`` (innermost first), e.g. ``int x = p % WO;``.
        advance: ``loops`` reductions: the lines, indented, that step to the next position.
        launch: plain passes: the launcher's ``CORRGEN_LAUNCH...`` line.
        partial_launch: reductions: the launch of the kernel that writes ``partial``.
        tile: ``tiled`` style: the pass's tile (its constants are ``<PREFIX>_TILE_M`` etc.,
            ``prefix`` the pass's name in capitals); None otherwise.
        model: ``tiled`` style: the lines ``print(ir)`` shows of the tile's resources and
            its modelled time (``codegen.cuda_tiles.model_lines``).
    """

    kernel: Kernel
    params: str
    args: str
    reduction: bool
    partial_params: str
    partial_args: str
    block: str
    items: str
    chunks: str
    threads: str
    pointers: tuple[str, ...]
    uploads: tuple[tuple[str, str], ...]
    output_elements: str
    sum_vars: str = ""
    starts: tuple[str, ...] = ()
    advance: tuple[str, ...] = ()
    launch: str = ""
    partial_launch: str = ""
    tile: Tile | None = None
    model: tuple[str, ...] = ()

    @property
    def prefix(self) -> str:
        """The pass's name in capitals: the prefix of its constants."""
        return self.kernel.name.upper()


def _elements(buffer: Buffer) -> str:
    return f"{'n * ' if buffer.batched else ''}{buffer.sample_size}"


def _pointer(buffer: Buffer) -> str:
    return (f"{'' if buffer.output else 'const '}real *__restrict__ {buffer.name}_s = "
            f"{buffer.name} + s * {buffer.sample_size};")


def _params(kernel: Kernel, partial: bool) -> tuple[str, str]:
    """The parameters and arguments of a kernel, or of its ``_partial`` kernel."""
    output = "partial" if partial else kernel.output.name
    params = ["int64_t n", *(["int64_t chunks"] if partial else []),
              *(f"const real *__restrict__ {b.name}" for b in kernel.inputs),
              f"real *__restrict__ {output}"]
    args = ["n", *(["chunks"] if partial else []), *(b.name for b in kernel.inputs), output]
    return ", ".join(params), ", ".join(args)


def _walk(kernel: Kernel) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """The statements that start the summed indices at position ``p`` (innermost first),
    and the indented lines that step them, and ``s`` after the last, to the next position."""
    sums = kernel.nest.sums
    count = len(sums)
    starts = []
    for index, loop in enumerate(reversed(sums), 1):
        inner = " * ".join(inner_loop.extent for inner_loop in sums[count - index + 1:])
        divide = f" / {inner if count - index < 2 else f'({inner})'}" if inner else ""
        modulo = f" % {loop.extent}" if index < count else ""
        starts.append(f"int {loop.var} = p{divide}{modulo};")
    advance = []
    for index, loop in enumerate(reversed(sums), 1):
        advance.append(" " * (8 + 4 * index) + f"if (++{loop.var} == {loop.extent}) {{")
        advance.append(" " * (12 + 4 * index) + f"{loop.var} = 0;")
    advance.append(" " * (12 + 4 * count) + "++s;")
    advance += [" " * (8 + 4 * (count - index + 1)) + "}" for index in range(1, count + 1)]
    return tuple(starts), tuple(advance)


def cuda_pass(kernel: Kernel, style: str, tile: Tile | None = None,
              model: tuple[str, ...] = ()) -> CudaPass:
    """The CUDA pass of ``kernel`` in ``style`` (``unrolled``, ``loops``, or ``tiled`` with
    its ``tile``; a ``tiled`` module's grad_bias is a ``loops`` pass)."""
    if style == "tiled" and tile is None:
        style = "loops"
    loops = style == "loops"
    # the passes that sum over the batch: into a partial buffer, then the chunks in order
    reduction = PASS[kernel.name].accumulates
    params, args = _params(kernel, partial=False)
    partial_params, partial_args = _params(kernel, partial=True) if reduction else ("", "")
    size = kernel.output.sample_size
    name, block = kernel.name, BLOCKS[kernel.name]
    launch = partial_launch = ""
    if tile is not None:
        prefix = name.upper()
        layers = {"grad_weight": ", (unsigned int)chunks", "grad_input": ", GRAD_INPUT_PHASES"}
        columns = f"{prefix}_COLUMN_TILES" if reduction else \
            f"blocks_for_tiles(items, {prefix}_TILE_N)"
        grid = f"dim3({columns}, {prefix}_ROW_TILES{layers.get(name, '')})"
        line = f"CORRGEN_LAUNCH_COOPERATIVE({name}_tiled, {grid}, {prefix}_THREADS, stream, "
        items = "" if reduction else ("n * (HO * WO)" if name == "forward" else
                                      "n * (GRAD_INPUT_PHASE_ROWS * GRAD_INPUT_PHASE_COLUMNS)")
        chunks = (f"reduction_chunks(n * (HO * WO), {prefix}_COLUMN_TILES * {prefix}_ROW_TILES"
                  f" * {prefix}_THREADS)")
        threads = ""
        if reduction:
            partial_launch = line + partial_args + ");"
        else:
            launch = line + args + ");"
    elif reduction:
        items = ""
        chunks = f"reduction_chunks(n * (HO * WO), {size})" if loops else "reduction_chunks(n, 1)"
        threads = f"chunks * {size}" if loops else "chunks"
        partial_launch = (f"CORRGEN_LAUNCH({name}_partial, blocks_for(threads, {block}), "
                          f"{block}, stream, {partial_args});")
    else:
        items, chunks, threads = f"n * {size}" if loops else "n", "", ""
        launch = (f"CORRGEN_LAUNCH({name}_kernel, blocks_for(items, {block}), {block}, stream, "
                  f"{args});")
    starts, advance = _walk(kernel) if loops and reduction else ((), ())
    return CudaPass(
        kernel=kernel, params=params, args=args, reduction=reduction,
        partial_params=partial_params, partial_args=partial_args, block=block,
        items=items, chunks=chunks, threads=threads,
        pointers=tuple(_pointer(b) for b in kernel.params if b.batched),
        uploads=tuple((b.name, _elements(b)) for b in kernel.inputs),
        output_elements=_elements(kernel.output),
        sum_vars=", ".join(loop.var for loop in kernel.nest.sums) if loops else "",
        starts=starts, advance=advance, launch=launch, partial_launch=partial_launch, tile=tile,
        model=model,
    )


def tile_constants(name: str, tile: Tile, rows: int, columns: int, phases: int
                   ) -> tuple[Constant, ...]:
    """The constants of a tiled pass ``name``: its tile, and the tiles of its grid that do
    not depend on N (``rows`` of the product; ``columns`` for grad_weight, whose columns are
    the taps; ``phases``: grad_input's stride phases, 1 otherwise)."""
    prefix = name.upper()
    consts = [
        Constant(f"{prefix}_TILE_M", tile.tile_m, f"rows of the {name} tile a block computes"),
        Constant(f"{prefix}_TILE_N", tile.tile_n, "... and its columns"),
        Constant(f"{prefix}_SLICE", tile.depth, "the depth staged in shared memory at a time"),
        Constant(f"{prefix}_REGS_M", tile.regs_m, "rows of a thread's register tile"),
        Constant(f"{prefix}_REGS_N", tile.regs_n, "... and its columns"),
        Constant(f"{prefix}_THREADS_M", tile.threads_m, "threads along a tile's rows"),
        Constant(f"{prefix}_THREADS_N", tile.threads_n, "... and along its columns"),
        Constant(f"{prefix}_THREADS", tile.threads, f"threads per block of {name}_tiled"),
        Constant(f"{prefix}_ROW_TILES", -(-rows // tile.tile_m), "blocks along the rows"),
    ]
    if name == "grad_weight":
        consts.append(Constant(f"{prefix}_COLUMN_TILES", -(-columns // tile.tile_n),
                               "blocks along the columns (the taps)"))
    if name == "grad_input":
        consts.append(Constant(f"{prefix}_PHASES", phases, "grid layers: one per stride "
                               "phase (SH x SW)"))
    return tuple(consts)
