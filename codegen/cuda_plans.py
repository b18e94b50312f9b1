"""The CUDA passes as the templates print them: one frozen ``CudaPass`` per kernel.

``codegen.lower`` builds them for the CUDA targets (``KernelIR.cuda_passes``); the templates
under ``templates/cuda/`` only print their fields: argument lists, the launch arithmetic of
each launcher, the per-sample pointers, and, for the reductions of the ``loops`` style, the
statements that walk a chunk's positions.
"""

from __future__ import annotations

from dataclasses import dataclass

from .ir import Buffer, Kernel
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


def cuda_pass(kernel: Kernel, style: str) -> CudaPass:
    """The CUDA pass of ``kernel`` in ``style`` (``unrolled`` or ``loops``)."""
    loops = style == "loops"
    # the passes that sum over the batch: into a partial buffer, then the chunks in order
    reduction = PASS[kernel.name].accumulates
    params, args = _params(kernel, partial=False)
    partial_params, partial_args = _params(kernel, partial=True) if reduction else ("", "")
    size = kernel.output.sample_size
    if reduction:
        items = ""
        chunks = f"reduction_chunks(n * (HO * WO), {size})" if loops else "reduction_chunks(n, 1)"
        threads = f"chunks * {size}" if loops else "chunks"
    else:
        items, chunks, threads = f"n * {size}" if loops else "n", "", ""
    starts, advance = _walk(kernel) if loops and reduction else ((), ())
    return CudaPass(
        kernel=kernel, params=params, args=args, reduction=reduction,
        partial_params=partial_params, partial_args=partial_args, block=BLOCKS[kernel.name],
        items=items, chunks=chunks, threads=threads,
        pointers=tuple(_pointer(b) for b in kernel.params if b.batched),
        uploads=tuple((b.name, _elements(b)) for b in kernel.inputs),
        output_elements=_elements(kernel.output),
        sum_vars=", ".join(loop.var for loop in kernel.nest.sums) if loops else "",
        starts=starts, advance=advance,
    )
