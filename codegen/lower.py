"""LayerSpec (+ its derivation) -> KernelIR: names, constants, loop bounds, statements.

Two styles:

* ``unrolled``: the explicit per-element expressions of ``derive_layer``, common
  subexpressions eliminated with ``sympy.cse`` and printed by ``KernelPrinter``. The batch
  stays a run-time loop around the straight-line code. Only for small layers: the
  derivation costs about 0.3 ms per forward term, and the code grows with it.
* ``loops``: the proven index forms (``derive.proof``) as direct convolutions
  specialised to the layer (``codegen.blocking``): register tiles chosen for the layer,
  zero-framed scratch copies of each sample so that no inner loop tests a bound, and
  grad_input's gather split by stride phase. Every bound and tap offset is computed in
  Python and handed to the template as a constant or a table.
* ``direct`` (OpenMP only): the index forms printed as plain loops, the proof covers them;
  slow, for reading and as a second oracle. ``auto`` never picks it.
* ``tiled`` (CUDA only): forward, grad_input and grad_weight as implicit matrix products
  whose operand tiles are staged in shared memory (``codegen.cuda_tiles``: the tiles and the
  model of their time). ``auto`` picks it for every CUDA layer too large to unroll.

Every kernel's formula and, for the ``direct`` style and the CUDA ``loops`` style, its loops
are printed from the proven index form of its pass (``derive.proof.index_forms``,
``codegen.printers.loop_nest``): the index arithmetic the proof checked is the one that ships.

CUDA backends (``Backend.gpu``) get no tables: their ``loops`` kernels run one thread per
output element and test the bounds of each tap (the index form's zero rule), which costs a
GPU little. Instead ``lower`` fixes their launch configuration (``_cuda_constants``):
threads per block of every kernel, the grid-size cap above which the kernels' grid-stride
loops take over, and the policy that splits grad_weight's and grad_bias's reductions into
chunks. ``codegen.cuda_plans`` turns each of their passes into the record the
``templates/cuda/`` templates print (``KernelIR.cuda_passes``): argument lists, the launch and
chunk arithmetic, the reductions' walk over their positions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import replace

from sympy import IndexedBase, cse, numbered_symbols

from derive import __version__
from derive.geometry import buffer_shapes
from derive.gradients import derive_layer
from derive.proof import index_forms
from derive.spec import LayerSpec
from derive.symbols import G, K, V, b

from .backends import Backend
from .blocking import AVX512, Machine, is_pointwise, plan, unrolled
from .cuda_plans import cuda_pass, tile_constants
from .cuda_tiles import REDUCTION_THREADS, TILED_REDUCTION_MIN_ITEMS, Tile, choose, model_lines
from .errors import RenderError
from .ir import Assignment, Buffer, Constant, Kernel, KernelIR
from .printers import IndexPrinter, KernelPrinter, lay_out, loop_nest
from .styles import resolve_style
from .vocabulary import DTYPES, PASS, PASS_TABLE

#: Work below this many floating-point operations per call runs on the calling thread:
#: starting an OpenMP team costs a few microseconds.
PARALLEL_MIN_FLOPS = 1 << 17

#: Samples of at least this much work (about 40 µs at 200 GFLOP/s) are handed out to the
#: threads one task at a time, so that a core slowed by another job does not hold the call
#: back (S6 float32 forward, one of 2 cores busy: 2.3-4.6 ms against 6.0-6.3 in equal shares);
#: smaller ones in equal shares, where the handing out cost S2 and S4 3-34 % on a quiet
#: machine (docs/tiles.md).
DYNAMIC_TASK_FLOPS = 1 << 23

#: CUDA: threads per block of the kernels with one thread per output element (loops style).
CUDA_BLOCK = 256
#: CUDA: threads per block of the unrolled kernels (one thread per sample or chunk of samples:
#: few threads, each running the whole straight-line code).
CUDA_UNROLLED_BLOCK = 64
#: CUDA: the most blocks one launch starts; grid-stride loops cover any larger problem.
CUDA_GRID_LIMIT = 1 << 16
#: CUDA: grad_weight and grad_bias split their sums into chunks until about this many
#: threads share the work (loops: chunks x elements; unrolled: one thread per chunk; tiled:
#: chunks x blocks x threads) ...
CUDA_REDUCTION_THREADS = REDUCTION_THREADS
#: ... but give each chunk at least this many positions (loops style; unrolled: one sample).
CUDA_REDUCTION_MIN_ITEMS = 16
#: The passes the ``tiled`` style computes as matrix products.
TILED_PASSES = ("forward", "grad_input", "grad_weight")
#: The constants of the layer itself, shared by every backend.
SPEC_CONSTANTS = ("C", "H", "W", "O", "KH", "KW", "HO", "WO", "SH", "SW", "DH", "DW", "PT",
                  "PL")


def module_name(spec: LayerSpec, target: str, dtype: str) -> str:
    """A readable Python identifier for the module, e.g. ``conv2d_openmp_1x3x3_1x1x2x2_f64``."""
    c, h, w = spec.input
    o, _, kh, kw = spec.kernel
    parts = ["conv2d", target, f"{c}x{h}x{w}", f"{o}x{c}x{kh}x{kw}"]

    def pair(prefix: str, value: tuple[int, int], default: tuple[int, int]) -> None:
        if value != default:
            parts.append(prefix + (str(value[0]) if value[0] == value[1]
                                   else f"{value[0]}x{value[1]}"))

    pair("s", spec.stride, (1, 1))
    if isinstance(spec.padding, str):
        if spec.padding != "valid":
            parts.append("p" + spec.padding)
    else:
        pair("p", spec.padding, (0, 0))
    pair("d", spec.dilation, (1, 1))
    if not spec.bias:
        parts.append("nobias")
    if spec.mode == "convolution":
        parts.append("conv")
    parts.append(DTYPES[dtype].suffix)
    return "_".join(parts)


def spec_args(spec: LayerSpec) -> str:
    """The keyword arguments that rebuild ``spec``, as Python source."""
    return (f"input={spec.input!r}, kernel={spec.kernel!r}, stride={spec.stride!r}, "
            f"padding={spec.padding!r}, dilation={spec.dilation!r}, bias={spec.bias!r}, "
            f"mode={spec.mode!r}")


def _shape(dims: tuple[int, ...], batched: bool) -> str:
    """``(N, 1, 3, 3)`` or ``(4,)``, as Python writes a shape."""
    items = (["N"] if batched else []) + [str(d) for d in dims]
    return "(" + ", ".join(items) + ("," if len(items) == 1 else "") + ")"


def _buffers(spec: LayerSpec) -> dict[str, Buffer]:
    buffers = {}
    for name, (dims, batched) in buffer_shapes(spec).items():
        size = 1
        for d in dims:
            size *= d
        buffers[name] = Buffer(name, _shape(dims, batched), batched, size,
                               name in OUTPUTS, tuple(dims))
    return buffers


#: The arrays the kernels write.
OUTPUTS = tuple(p.writes for p in PASS_TABLE)
#: The C constant of each array's extents (after the batch axis), and of each index of the
#: index forms (``derive.proof``).
DIMS = {"V": ("C", "H", "W"), "K": ("O", "C", "KH", "KW"), "b": ("O",),
        "G": ("O", "HO", "WO"), "Z": ("O", "HO", "WO"), "dV": ("C", "H", "W"),
        "dK": ("O", "C", "KH", "KW"), "db": ("O",)}
EXTENTS = {"o": "O", "c": "C", "y": "HO", "x": "WO", "i": "KH", "j": "KW", "u": "H", "v": "W"}


def _kernels(spec: LayerSpec, dtype: str) -> list[Kernel]:
    """Every pass, its formula and loops printed from its proven index form."""
    buf = _buffers(spec)
    o, ho, wo = spec.output_shape
    _, c, kh, kw = spec.kernel
    flops = 2 * o * ho * wo * c * kh * kw
    printer = IndexPrinter(dtype)
    # per-sample pointers for the batched arrays, the arrays themselves otherwise
    arrays = {name: f"{name}_s" if b.batched else name for name, b in buf.items()}
    values = {constant.name: constant.value for constant in _constants(spec)}
    for name, dims in DIMS.items():  # the names the loops print stand for the right extents
        if tuple(values[d] for d in dims) != buf[name].dims:
            raise RenderError(f"{name}: extents {dims} are not {buf[name].dims}")
    kernels: list[Kernel] = []
    for name, form in index_forms(spec).items():
        for symbol, extent in (*form.free, *form.sums):
            if values[EXTENTS[str(symbol)]] != extent:
                raise RenderError(f"{name}: index {symbol} runs to {extent}, not "
                                  f"{EXTENTS[str(symbol)]}")
        record = PASS[name]
        inputs = tuple(buf[array] for array in record.inputs(spec.bias))
        work = o * ho * wo if name == "grad_bias" else flops  # grad_bias: additions only
        nest = loop_nest(form, printer, arrays, DIMS, EXTENTS)
        schedule = "dynamic" if work >= DYNAMIC_TASK_FLOPS else "static"
        kernels.append(Kernel(name, record.entry, nest.formula, inputs, buf[record.writes], work,
                              schedule, nest=nest))
    return kernels


def _laid_out(kernel: Kernel, gpu: bool) -> Kernel:
    """``kernel`` with its loops laid out for its template: the CUDA ``loops`` kernels sum
    inside a grid-stride loop (8 spaces); the OpenMP ``direct`` kernels sum inside their free
    loops, and grad_weight and grad_bias inside a loop over the samples there too."""
    nest = kernel.nest
    if nest is None:
        return kernel
    if gpu:
        return replace(kernel, layout=lay_out(nest, 8, 8))
    inside = 4 + 4 * len(nest.free) + (4 if PASS[kernel.name].accumulates else 0)
    return replace(kernel, layout=lay_out(nest, 4, inside))


def _constants(spec: LayerSpec) -> tuple[Constant, ...]:
    c, h, w = spec.input
    o, _, kh, kw = spec.kernel
    _, ho, wo = spec.output_shape
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    top, _, left, _ = spec.pads
    consts = [
        Constant("C", c, "input channels"), Constant("H", h, "input rows"),
        Constant("W", w, "input columns"), Constant("O", o, "output channels"),
        Constant("KH", kh, "kernel rows"), Constant("KW", kw, "kernel columns"),
        Constant("HO", ho, "output rows"), Constant("WO", wo, "output columns"),
        Constant("SH", sh, "row stride"), Constant("SW", sw, "column stride"),
        Constant("DH", dh, "row dilation"), Constant("DW", dw, "column dilation"),
        Constant("PT", top, "zero rows above the input"),
        Constant("PL", left, "zero columns left of the input"),
        Constant("PARALLEL_MIN_FLOPS", PARALLEL_MIN_FLOPS,
                 "smaller calls run serially: an OpenMP team costs microseconds"),
    ]
    return tuple(consts)


def tiled_passes(spec: LayerSpec, dtype: str) -> dict[str, Tile]:
    """The tile of each pass the ``tiled`` style computes as a matrix product (grad_bias
    stays a ``loops`` pass: a sum with nothing to stage)."""
    itemsize = DTYPES[dtype].itemsize
    return {name: choose(spec, name, itemsize) for name in TILED_PASSES}


def _tiled_constants(spec: LayerSpec, tiles: dict[str, Tile]) -> list[Constant]:
    c, h, w = spec.input
    o, _, kh, kw = spec.kernel
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    consts = [*tile_constants("forward", tiles["forward"], o, 0, 1),
              *tile_constants("grad_input", tiles["grad_input"], c, 0, sh * sw),
              *tile_constants("grad_weight", tiles["grad_weight"], o, c * kh * kw, 1)]
    consts += [
        Constant("GRAD_INPUT_PHASE_ROWS", -(-h // sh), "the most input rows of one stride "
                 "phase (rows u with the same (u + PT) % SH)"),
        Constant("GRAD_INPUT_PHASE_COLUMNS", -(-w // sw), "... and columns"),
        Constant("ROW_TAP_STEP", sh // math.gcd(sh, dh), "kernel rows i that reach one phase's "
                 "rows are this far apart"),
        Constant("COLUMN_TAP_STEP", sw // math.gcd(sw, dw), "... and kernel columns j"),
    ]
    return consts


def _cuda_constants(spec: LayerSpec, style: str, tiles: dict[str, Tile] | None = None
                    ) -> tuple[Constant, ...]:
    """The layer's constants and the launch configuration of the CUDA kernels.

    Every kernel runs a grid-stride loop over its work items, so any grid is correct; the
    launchers start ``min(ceil(items / BLOCK), GRID_LIMIT)`` blocks. The reductions
    (grad_weight, grad_bias) sum fixed chunks of their items into a partial buffer, then add
    the chunks in order (``sum_chunks``): the number of chunks depends on N and these
    constants only, so the result does not change from run to run or GPU to GPU.
    """
    loops = style != "unrolled"  # tiled: grad_bias is a loops pass, the rest own constants
    block = CUDA_BLOCK if loops else CUDA_UNROLLED_BLOCK
    items = "positions (n, y, x)" if loops else "samples"
    consts = [c for c in _constants(spec) if c.name in SPEC_CONSTANTS]
    if style != "tiled":
        consts += [
            Constant("FORWARD_BLOCK", block, "threads per block of forward_kernel ("
                     f"{'one element Z[n,o,y,x]' if loops else 'one sample Z[n]'} each)"),
            Constant("GRAD_INPUT_BLOCK", block, "threads per block of grad_input_kernel ("
                     f"{'one element dV[n,c,u,v]' if loops else 'one sample dV[n]'} each)"),
        ]
    partials = "grad_bias_partial" if style == "tiled" else \
        "grad_weight_partial and grad_bias_partial"
    consts += [
        Constant("REDUCTION_BLOCK", block, f"threads per block of {partials} (one chunk of "
                 f"{'one element' if loops else 'samples, every element,'} each)"),
        Constant("SUM_BLOCK", CUDA_BLOCK, "threads per block of sum_chunks (one element each)"),
        Constant("GRID_LIMIT", CUDA_GRID_LIMIT, "the most blocks per launch; grid-stride "
                 "loops do the rest"),
        Constant("REDUCTION_THREADS", CUDA_REDUCTION_THREADS, "reductions are split into "
                 "chunks until about this many threads share the work"),
        Constant("REDUCTION_MIN_ITEMS", {"unrolled": 1, "tiled": TILED_REDUCTION_MIN_ITEMS}.get(
            style, CUDA_REDUCTION_MIN_ITEMS), f"... keeping at least this many {items} per chunk"),
    ]
    if tiles:
        consts += _tiled_constants(spec, tiles)
    return tuple(consts)


def _unrolled(spec: LayerSpec, kernels: list[Kernel], dtype: str,
              progress: Callable[[int, int], None] | None) -> list[Kernel]:
    """Fill each kernel's statements from the explicit derivation, CSE'd and printed."""
    exprs = derive_layer(spec, max_terms=None, progress=progress)
    o, ho, wo = spec.output_shape
    shaped = {V: IndexedBase("V_s", shape=spec.input), K: IndexedBase("K", shape=spec.kernel),
              b: IndexedBase("b", shape=(o,)), G: IndexedBase("G_s", shape=spec.output_shape)}
    printer = KernelPrinter(dtype)
    filled = []
    for kernel in kernels:
        elements = exprs.passes()[kernel.name]
        keys = list(elements)
        values = [elements[k].xreplace(shaped) for k in keys]
        temps, reduced = cse(values, symbols=numbered_symbols("t"))
        name = kernel.output.name + ("_s" if kernel.output.batched else "")
        dims = kernel.output.dims
        results = []
        for key, value in zip(keys, reduced):
            flat = 0
            for index, extent in zip(key, dims):
                flat = flat * extent + index
            results.append(Assignment(f"{name}[{flat}]", printer.doprint(value)))
        filled.append(replace(
            kernel,
            temporaries=tuple(Assignment(str(s), printer.doprint(e)) for s, e in temps),
            results=tuple(results),
            accumulates=PASS[kernel.name].accumulates,
        ))
    return filled


def lower(spec: LayerSpec, backend: Backend, dtype: str = "float64", style: str = "auto",
          progress: Callable[[int, int], None] | None = None, machine: Machine = AVX512,
          choices: dict[str, str] | None = None) -> KernelIR:
    """The KernelIR of ``spec`` for one backend, dtype and style.

    Args:
        spec: the layer.
        backend: the target (its name goes into the IR; its template renders it).
        dtype: ``float32`` or ``float64``.
        style: ``auto``, ``unrolled``, ``loops`` or ``direct`` (see the module docstring).
        progress: ``progress(done, total)`` while an unrolled kernel is differentiated.
        machine: the vector unit the OpenMP ``loops`` tiles are sized for. The default,
            AVX-512, makes the output the same on every machine (the checked-in sources);
            ``codegen.load`` and ``corrgen emit`` pass this CPU's
            (``codegen.blocking.host_machine``).
        choices: OpenMP ``loops``: pass by pass, the tile choices ``codegen.tune`` measured
            best here (``codegen.blocking.plan``).
    """
    if dtype not in DTYPES:
        raise RenderError(f"dtype={dtype!r}: expected one of {', '.join(DTYPES)}")
    style = resolve_style(spec, style, backend.gpu)
    if style == "direct" and backend.gpu:
        raise RenderError(f"style='direct' is for the OpenMP target, not {backend.name}: the "
                          f"CUDA 'loops' kernels are the index forms printed as loops already")
    kernels = [_laid_out(kernel, backend.gpu) for kernel in _kernels(spec, dtype)]
    if style == "unrolled":
        kernels = _unrolled(spec, kernels, dtype, progress)
    module, tables, fields = None, (), {}
    if backend.gpu:
        constants, fields = _cuda_parts(spec, style, dtype, kernels)
    else:
        constants = _constants(spec)
    if style == "loops" and not backend.gpu:
        module = plan(spec, DTYPES[dtype].itemsize, machine, choices)
        constants += module.constants
        tables = module.tables
        fields = {"machine": _machine_text(machine, choices)}
    elif style == "unrolled" and not backend.gpu:
        module = unrolled(tuple(kernel.name for kernel in kernels))
    return KernelIR(
        name=module_name(spec, backend.name, dtype),
        spec_text=spec.describe(),
        spec_json=json.dumps(spec.to_dict(), separators=(", ", ": ")),
        spec_args=spec_args(spec),
        style=style,
        dtype=dtype,
        ctype=DTYPES[dtype].ctype,
        target=backend.name,
        version=__version__,
        constants=constants,
        tables=tables,
        kernels=tuple(kernels),
        has_bias=spec.bias,
        pointwise=style == "loops" and is_pointwise(spec),
        plans=module.passes if module else (),
        helpers=module.helpers if module else None,
        **fields,
    )


def _cuda_parts(spec: LayerSpec, style: str, dtype: str, kernels: list[Kernel]
                ) -> tuple[tuple[Constant, ...], dict[str, object]]:
    """A CUDA module's constants, and its passes (with the tiled style's tiles, models and
    kernel index) as ``KernelIR`` fields."""
    tiles = tiled_passes(spec, dtype) if style == "tiled" else {}
    fields: dict[str, object] = {"cuda_passes": tuple(
        cuda_pass(kernel, style, tiles.get(kernel.name), _model(spec, kernel.name, tiles, dtype))
        for kernel in kernels)}
    if tiles:
        fields.update(_kernel_index(spec))
    return _cuda_constants(spec, style, tiles), fields


def _machine_text(machine: Machine, choices: dict[str, str] | None) -> str:
    text = f"{machine.isa}: {machine.lane_bytes}-byte lanes, {machine.registers} vector registers"
    if not machine.full_width:
        text += f", each {8 * machine.lane_bytes}-bit multiply-add in two halves"
    if choices:
        text += "; measured here (codegen.tune): " + ", ".join(
            f"{name} {choice}" for name, choice in choices.items())
    return text


def _model(spec: LayerSpec, name: str, tiles: dict[str, Tile], dtype: str) -> tuple[str, ...]:
    if name not in tiles:
        return ()
    return tuple(model_lines(spec, name, tiles[name], DTYPES[dtype].itemsize))


def _kernel_index(spec: LayerSpec) -> dict[str, str]:
    """The tiled kernels' ``kernel_index`` and ``kernel_element`` (``KernelIR``)."""
    if spec.mode == "convolution":
        return {"kernel_index": "((o * C + c) * KH + (KH - 1 - i)) * KW + (KW - 1 - j)",
                "kernel_element": "K[o, c, KH-1-i, KW-1-j] (convolution: the kernel flipped)"}
    return {"kernel_index": "((o * C + c) * KH + i) * KW + j", "kernel_element": "K[o, c, i, j]"}
