"""The ``corrgen`` command line (DESIGN.md, "Command line").

Every subcommand takes the same spec options; each subcommand's handler is a function
``cmd_<name>(args) -> int`` below. Bad input prints one line on stderr and exits with 2;
a failed check exits with 1.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from codegen.document import INSTALL_HINT, compile_pdf, find_engine, to_latex, write_file
from codegen.vocabulary import DTYPE_NAMES
from derive import __version__
from derive.errors import CorrgenError, DerivationError
from derive.fastprint import ElementPrinter
from derive.gradients import DEFAULT_MAX_TERMS, WRT, chain_rule, derive_layer, variable
from derive.latex import AUTO_ALL_LIMIT, N_LIMIT, NOTATIONS, LatexError, parse_elements
from derive.latex.document import STEPS as LATEX_STEPS
from derive.printing import GRAD_NAMES, index_text, shift_indices
from derive.proof import index_forms, prove
from derive.spec import PADDING_NAMES, LayerSpec

#: The layer spec options, shown once in every subcommand's help as the "layer spec" group.
SPEC_GROUP = ("the same for every subcommand; the defaults are the seeds' worked example,\n"
              "a 3x3 input and a 2x2 kernel")

#: The forms --padding accepts, for its help and its error.
PADDING_FORMS = "N, NxM, valid, same or full"


def _help(description: str, examples: str, more: str = "") -> dict[str, Any]:
    """add_parser's keywords: the description as wrapped paragraphs, and an epilog of
    examples (and ``more``) that keeps its lines."""
    paragraphs = [textwrap.fill(" ".join(t.split()), 79) for t in description.split("\n\n")]
    epilog = "examples:\n" + textwrap.indent(textwrap.dedent(examples).strip("\n"), "  ")
    return {"description": "\n\n".join(paragraphs),
            "epilog": epilog + ("\n\n" + more.strip("\n") if more else ""),
            "formatter_class": argparse.RawDescriptionHelpFormatter}


class UsageError(CorrgenError):
    """A command-line argument is malformed."""


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage error is one line on stderr and exit status 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        sys.stderr.write(f"{self.prog}: error: {message} (see --help)\n")
        raise SystemExit(2)

    def _print_message(self, message: str, file: Any = None) -> None:
        # argparse drops a failed write of --help or --version silently in later releases
        # (Python 3.11.7) and raises it from parse_args in earlier ones (3.11.2, Debian 12's):
        # either way main() is to say it, in one line with status 2, as it does when the same
        # text fails at the final flush.
        if message:
            (file or sys.stderr).write(message)

    def _get_values(self, action: argparse.Action, arg_strings: list[str]) -> Any:
        # argparse (Python < 3.12) drops a "--" given as an option's value (--input=--) and
        # hands the command [] instead of text: an option's value is what was typed.
        if action.option_strings and action.nargs is None and arg_strings == ["--"]:
            value = self._get_value(action, "--")
            self._check_value(action, value)
            return value
        return super()._get_values(action, arg_strings)


def _ints(option: str, text: str, counts: tuple[int, ...]) -> tuple[int, ...]:
    parts = text.lower().split("x")
    if len(parts) not in counts or not all(re.fullmatch(r"\d+", p) for p in parts):
        forms = " or ".join("x".join(["N"] * n) for n in counts)
        raise UsageError(f"{option} {text!r}: expected {forms} with non-negative integers")
    return tuple(int(p) for p in parts)


def _int_or_pair(option: str, text: str) -> int | tuple[int, ...]:
    values = _ints(option, text, (1, 2))
    return values[0] if len(values) == 1 else values


def spec_from_args(args: argparse.Namespace) -> LayerSpec:
    """Build the LayerSpec the spec options describe (raises SpecError / UsageError)."""
    shape = _ints("--input", args.input, (2, 3))
    kern = _ints("--kernel", args.kernel, (2, 4))
    if len(shape) == 2:
        shape = (1, *shape)
    if len(kern) == 2:
        kern = (1, 1, *kern)
    padding: Any = args.padding.lower()
    if padding not in PADDING_NAMES:
        if not re.fullmatch(r"\d+(x\d+)?", padding):
            raise UsageError(f"--padding {args.padding!r}: expected {PADDING_FORMS} (N and M "
                             f"non-negative integers: zeros per side, rows x columns)")
        padding = _int_or_pair("--padding", args.padding)
    return LayerSpec(
        input=shape,  # type: ignore[arg-type]
        kernel=kern,  # type: ignore[arg-type]
        stride=_int_or_pair("--stride", args.stride),
        padding=padding,
        dilation=_int_or_pair("--dilation", args.dilation),
        bias=not args.no_bias,
        mode="convolution" if args.convolution else "correlation",
    )


def _spec_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("layer spec", SPEC_GROUP)
    group.add_argument("--input", default="3x3", metavar="CxHxW",
                       help="channels x rows x columns, or HxW for one channel, e.g. 3x32x32 "
                       "(default 3x3)")
    group.add_argument("--kernel", default="2x2", metavar="OxCxKHxKW",
                       help="output channels x input channels x rows x columns, or KHxKW for "
                       "one of each, e.g. 16x3x5x5 (default 2x2)")
    group.add_argument("--stride", default="1", metavar="N|NxM",
                       help="N, or rows x columns (default 1)")
    group.add_argument("--padding", default="0", metavar="N|NxM|valid|same|full",
                       help="zeros on every side: N, or NxM (rows x columns); valid: none; "
                       "same: the output as large as the input at stride 1 (an odd extra "
                       "row/column goes at the bottom/right, as PyTorch); full: (K-1)*dilation "
                       "per side (default 0)")
    group.add_argument("--dilation", default="1", metavar="N|NxM",
                       help="N, or rows x columns (default 1)")
    group.add_argument("--no-bias", action="store_true", help="the layer has no bias")
    group.add_argument("--convolution", action="store_true",
                       help="true convolution: the kernel is rotated by 180 degrees (default: "
                       "correlation, as CNN libraries compute)")


# -- progress ---------------------------------------------------------------------------------


class Progress:
    """Progress on stderr for work longer than about a second."""

    #: Seconds of work before anything is shown.
    delay = 1.0

    def __init__(self, what: str, stream: Any = None, unit: str = "terms") -> None:
        self.what, self.unit = what, unit
        self.stream = stream or sys.stderr
        self.start = time.perf_counter()
        self.last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        elapsed = now - self.start
        if elapsed < self.delay:  # short work stays quiet
            return
        # A terminal gets one line rewritten twice a second; a log, a line every 5 s.
        tty = self.stream.isatty()
        if done < total and now - self.last < (0.5 if tty else 5.0):
            return
        self.last = now
        end = "\r" if tty and done < total else "\n"
        eta = f", ETA {elapsed * (total - done) / done:.0f} s" if 0 < done < total else ""
        self.stream.write(f"{self.what}: {100 * done // max(total, 1)}% ({done:,}/{total:,} "
                          f"{self.unit}, {elapsed:.0f} s{eta}){end}")
        self.stream.flush()


class StepsProgress:
    """Progress on stderr of work in named steps, as ``Progress`` shows it, one step after
    another: the callback ``progress(step, done, total)`` of ``derive.latex`` (``units``:
    the unit each step counts, "elements" when not named)."""

    def __init__(self, units: dict[str, str], stream: Any = None) -> None:
        self.units, self.stream = units, stream
        self.step: Progress | None = None

    def __call__(self, step: str, done: int, total: int) -> None:
        if self.step is None or self.step.what != step or done == 0:
            # a step's clock starts when it does (done 0: nothing to show yet)
            self.step = Progress(step, self.stream, unit=self.units.get(step, "elements"))
        if done:
            self.step(done, total)


# -- corrgen derive -----------------------------------------------------------------------------


def _parse_wrt(text: str) -> tuple[str, ...]:
    names = tuple(n.strip() for n in text.split(",") if n.strip())
    for name in names:
        if name not in WRT:
            raise UsageError(f"--wrt {text!r}: {name!r} is not one of {', '.join(WRT)}")
    return names


_ELEMENT = re.compile(r"^\s*([VKb])\s*(?:\[([\d,\s]*)\]|:?([\d,\s]+))\s*$")


def parse_element(spec: LayerSpec, text: str, base: int) -> tuple[str, tuple[int, ...]]:
    """``V[2,2]``, ``K:1,1,2,1`` or ``b[1]`` (in the index base) -> (wrt, 0-based index).

    Leading indices of extent-1 axes may be left out: ``V[2,2]`` for a one-channel input.
    """
    match = _ELEMENT.match(text)
    if not match:
        raise UsageError(f"--element {text!r}: expected NAME[i,j,...] with NAME one of V, K, b")
    name, digits = match.group(1), match.group(2) or match.group(3)
    wrt = {"V": "input", "K": "weight", "b": "bias"}[name]
    shape = {"input": spec.input, "weight": spec.kernel, "bias": spec.kernel[:1]}[wrt]
    index = [int(t) - base for t in digits.split(",") if t.strip()]
    missing = len(shape) - len(index)
    if missing > 0 and all(n == 1 for n in shape[:missing]):
        index = [0] * missing + index
    try:
        variable(spec, wrt, tuple(index))
    except DerivationError:
        raise UsageError(
            f"--element {text!r}: {name} has shape {tuple(shape)}; give {len(shape)} indices, "
            f"each from {base} to extent{'-1' if base == 0 else ''} ({base}-based)"
        ) from None
    return wrt, tuple(index)


def _element_text(spec: LayerSpec, wrt: str, index: tuple[int, ...], base: int) -> str:
    """Seed 000's reading of one gradient element: chain rule, factors, result."""
    var = variable(spec, wrt, index)
    name = f"{var.base}[{index_text(index, base)}]"
    steps = chain_rule(spec, var)
    shown = steps if len(steps) <= 16 else [s for s in steps if s.factor != 0]
    hidden = len(steps) - len(shown)

    def out(s: Any) -> str:
        return index_text(s.out, base)

    pad = " " * len(f"dJ/d{name} ")
    lines = [f"dJ/d{name} = sum over outputs z of dZ[z]/d{name} * dJ/dZ[z]"]
    lines.append(pad + "= " + " + ".join(f"dZ[{out(s)}]/d{name}*dJ/dZ[{out(s)}]" for s in shown))
    lines.append(pad + "= " + " + ".join(
        f"({shift_indices(s.factor, base)})*G[{out(s)}]" for s in shown))
    if hidden:
        lines.append(pad + f"  (the other {hidden} outputs do not read {name}: factor 0)")
    result = sum((s.factor * s.upstream for s in steps), start=0)
    lines.append(pad + f"= {shift_indices(result, base)}")
    return "\n".join(lines)


def cmd_derive(args: argparse.Namespace) -> int:
    if args.network:
        from .cli_network import cmd_derive_network

        return cmd_derive_network(args)
    spec = spec_from_args(args)
    base = args.index_base
    wrt = _parse_wrt(args.wrt)
    if args.element:
        for text in args.element:
            ewrt, index = parse_element(spec, text, base)
            print(_element_text(spec, ewrt, index, base))
        return 0
    if args.verify:
        print(f"# index forms of {spec.describe()}, indices 0-based; a factor whose index falls "
              f"outside its array, or is not an integer, is zero")
        for form in index_forms(spec).values():
            print(form)
        print(prove(spec))
        return 0
    progress = Progress("differentiating") if spec.n_terms > 20_000 else None
    exprs = derive_layer(spec, wrt, args.max_terms, progress)
    passes = exprs.passes()
    numbers = _layer_values(spec, args.values)
    if args.format == "json":
        body: dict[str, Any] = {"spec": spec.to_dict()}
        # Terms in SymPy's internal order, sstr(expr, order="none"): faster to print than
        # sorted ones, and sympify reads either.
        tick, printer = _printing(passes), ElementPrinter()
        for pass_name, elements in passes.items():
            body[pass_name] = {}
            for idx, expr in elements.items():
                body[pass_name][",".join(map(str, idx))] = printer.plain(expr)
                tick()
        if "bias" in wrt and not spec.bias:
            body["grad_bias"] = {}
        if numbers:
            body["values"] = {name: {",".join(map(str, idx)): str(expr.xreplace(numbers))
                                     for idx, expr in elements.items()}
                              for name, elements in passes.items()}
        json.dump(body, sys.stdout, indent=1)
        print()
        return 0
    if args.format == "latex":
        _print_latex(passes, base)
        return 0
    print(f"# corrgen {__version__}: {spec.describe()}; indices {base}-based")
    tick, printer = _printing(passes), ElementPrinter(base)  # str(shift_indices(expr, base))
    for pass_name, elements in passes.items():
        print(f"\n# {pass_name}")
        for idx, expr in elements.items():
            if pass_name == "forward":
                lhs_text = f"Z[{index_text(idx, base)}]"
            else:
                lhs_text = f"dJ/d{GRAD_NAMES[pass_name]}[{index_text(idx, base)}]"
            value = f" = {expr.xreplace(numbers)}" if numbers else ""
            print(f"{lhs_text} = {printer.text(expr)}{value}")
            tick()
    return 0


def _layer_values(spec: LayerSpec, path: str | None) -> dict[Any, Any]:
    """``--values FILE.json`` as substitutions for the layer's V, K, b, G (empty without)."""
    if not path:
        return {}
    from derive import values

    return values.substitutions(path, values.layer_arrays(spec))


def _printing(passes: dict[str, dict[tuple[int, ...], Any]]) -> Callable[[], None]:
    """A function to call once per element of ``passes`` printed: "printing: i/n ..., ETA"
    on stderr (as Progress shows it) while the printing takes more than a second."""
    total = sum(len(elements) for elements in passes.values())
    progress = Progress("printing", unit="elements")
    done = 0

    def tick() -> None:
        nonlocal done
        done += 1
        progress(done, total)

    return tick


def _print_latex(passes: dict[str, dict[tuple[int, ...], Any]], base: int) -> None:
    from sympy import latex

    def lhs(pass_name: str, idx: tuple[int, ...]) -> str:
        sub = index_text(idx, base, ",")
        if pass_name == "forward":
            return f"Z_{{{sub}}}"
        return rf"\frac{{\partial J}}{{\partial {GRAD_NAMES[pass_name]}_{{{sub}}}}}"

    tick = _printing(passes)
    for pass_name, elements in passes.items():
        print(f"% {pass_name}")
        for idx, expr in elements.items():
            print(f"{lhs(pass_name, idx)} = {latex(shift_indices(expr, base))} \\\\")
            tick()


DERIVE_EXAMPLES = """
corrgen derive --input 3x3 --kernel 2x2 --wrt input     # the seed example's dJ/dV
corrgen derive --element 'V[2,2]'                       # one element's chain rule, unsimplified
corrgen derive --input 2x5x5 --kernel 2x2x3x3 --stride 2 --padding 1 --format json
corrgen derive --input 16x32x32 --kernel 16x16x3x3 --verify   # prove the index forms
corrgen derive --values seed001.json --wrt weight       # numbers in: Z = 8, 7, 4, 5
corrgen derive --network "1x8x8 | conv 6x3x3 pad 1 | relu | maxpool 2 | flatten | dense 10 \
  | softmax-ce"
"""

DERIVE_JSON = """\
--format json writes one object:
  "spec"         the layer: input [C,H,W], kernel [O,C,KH,KW], stride, padding and
                 dilation [rows,columns], pads [top,bottom,left,right], bias, mode
                 (correlation or convolution), output [O,HO,WO]
  "forward"      {"o,y,x": Z[o,y,x]}           one entry per output element
  "grad_input"   {"c,y,x": dJ/dV[c,y,x]}       with --wrt input
  "grad_weight"  {"o,c,i,j": dJ/dK[o,c,i,j]}   with --wrt weight
  "grad_bias"    {"o": dJ/db[o]}               with --wrt bias ({} with --no-bias)
Keys are 0-based indices joined by commas; values are SymPy expressions as text over
V[c,y,x], K[o,c,i,j], b[o] and G[o,y,x] (0-based), which sympy.sympify reads back.
With --values, "values" holds each element's number under the same keys.

With --network, the object is "network" (the layers, shapes and parameters), "symbols"
(each array's name and shape: X, T, Y<l>, dY<l> = dJ/dY<l>, W<l>, B<l>), "layers" (per
layer "forward" {index: Y<l>[index]}, "backward" {index: dY<l-1>[index]}, "grads"
{"<l>.weight": {index: dJ/dW<l>[index]}, ...}) and "loss" ("J", and "delta" {index:
dY<last>[index]}); sympify reads the expressions with the names of "symbols" as
IndexedBase (locals).
"""


def _add_derive(sub: Any) -> None:
    p = sub.add_parser(
        "derive", help="per-element forward and gradient expressions", **_help(
            "Print every element of the forward pass and of the requested gradients, derived "
            "with SymPy through the chain rule dJ/dx = sum_z G[z] * dZ[z]/dx, where Z is the "
            "output, V the input, K the kernel, b the bias and G = dJ/dZ the upstream "
            "gradient.", DERIVE_EXAMPLES, DERIVE_JSON))
    _spec_options(p)
    p.add_argument("--wrt", default="input,weight,bias", metavar="LIST",
                   help="gradients to derive, comma-separated from input, weight, bias "
                   "(default all)")
    p.add_argument("--format", choices=("text", "latex", "json"), default="text",
                   help="text (default), latex equations, or json (one object, laid out as "
                   "below; its keys are always 0-based)")
    p.add_argument("--index-base", type=int, choices=(0, 1), default=1,
                   help="first index in text and LaTeX (default 1, as the seeds)")
    p.add_argument("--element", action="append", metavar="NAME[i,j,..]",
                   help="show the chain-rule expansion of one gradient element before it "
                   "simplifies, e.g. --element 'V[2,2]' (repeatable)")
    p.add_argument("--verify", action="store_true",
                   help="prove the index forms equal the explicit derivation and say on what")
    p.add_argument("--max-terms", type=int, default=DEFAULT_MAX_TERMS, metavar="N",
                   help=f"refuse specs with more forward terms, or more elements to write out "
                   f"(default {DEFAULT_MAX_TERMS:,})")
    _network_options(p)
    p.set_defaults(handler=cmd_derive)


def _network_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("networks and numbers")
    group.add_argument("--network", metavar="'INPUT | LAYER | ... | LOSS'",
                       help="derive a whole network instead of one layer, e.g. '1x8x8 | conv "
                       "6x3x3 pad 1 | relu | maxpool 2 | flatten | dense 10 | softmax-ce' "
                       "(layers: conv OxKHxKW [stride S] [pad P] [dil D] [nobias] [untied] "
                       "[convolution], relu, sigmoid, tanh, maxpool|avgpool|l2pool K [stride "
                       "S], flatten, dense N [nobias]; losses: l2, bce, softmax-ce)")
    group.add_argument("--values", metavar="FILE.json",
                       help="numbers for the worked example, a JSON object of arrays by name: "
                       "V, K, b, G for a layer (e.g. {\"V\": [[1,6,2],[5,3,1],[7,0,4]], \"K\": "
                       "[[1,2],[-1,0]]}); X, T and the parameters ('0.weight' or W0) for a "
                       "network")


# -- kernels: corrgen emit / build / check / bench -----------------------------------------------


class StageProgress:
    """Reports the stage of a build on stderr once it has run longer than ``delay`` seconds.

    Use as a context manager; call it with each stage's name as the stage starts.
    """

    def __init__(self, what: str, stream: Any = None, delay: float = 1.0) -> None:
        self.what, self.stream, self.delay = what, stream or sys.stderr, delay
        self.stage, self.shown = "", ""
        self.stages: list[str] = []
        self.start = time.perf_counter()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def __call__(self, stage: str) -> None:
        self.stage = stage
        self.stages.append(stage)

    @property
    def built(self) -> bool:
        """Whether anything was compiled (not only rendered, or found built)."""
        return any(stage != "rendering" for stage in self.stages)

    def __enter__(self) -> StageProgress:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.done.set()
        self.thread.join()
        if self.shown:
            state = "failed" if exc[0] else "done"
            self._write(f"{self.what}: {state} in {time.perf_counter() - self.start:.1f} s\n")

    def _watch(self) -> None:
        tty = self.stream.isatty()
        while not self.done.wait(0.25):
            elapsed = time.perf_counter() - self.start
            if elapsed >= self.delay and self.stage and (tty or self.stage != self.shown):
                self.shown = self.stage
                self._write(f"{self.what}: {self.stage} ({elapsed:.1f} s)"
                            + ("\r" if tty else "\n"))

    def _write(self, text: str) -> None:
        self.stream.write(text)
        self.stream.flush()


def _kernel_options(parser: argparse.ArgumentParser, name: bool = False,
                    dtype_list: bool = False) -> None:
    from codegen.backends import BACKENDS
    from codegen.styles import STYLES

    group = parser.add_argument_group("kernels")
    group.add_argument("--target", choices=tuple(BACKENDS), default="openmp",
                       help="the kernel backend (default openmp)")
    if dtype_list:
        group.add_argument("--dtype", default=",".join(DTYPE_NAMES), metavar="LIST",
                           help=f"{', '.join(DTYPE_NAMES)}, or several comma-separated, or both "
                                "(default all)")
    else:
        group.add_argument("--dtype", choices=DTYPE_NAMES, default="float64",
                           help="the arrays' type (default float64)")
    group.add_argument("--style", choices=STYLES, default="auto",
                       help="unrolled: the derived per-element expressions (small layers); "
                       "loops: the index forms; direct (OpenMP): the index forms printed as "
                       "plain loops, slow, a second oracle; tiled (CUDA): shared-memory "
                       "tiles; auto (default) picks by size (never direct)")
    group.add_argument("--no-tune", dest="tune", action="store_false", default=None,
                       help="OpenMP loops modules of large layers: skip timing the tile "
                       "choices the cost model cannot settle on this CPU (default: tune "
                       "once, stored with the module; CORRGEN_TUNE=0 also turns it off)")
    group.add_argument("--out", default=None, metavar="DIR",
                       help="the folder modules are written to, which becomes a package you "
                       "own (default: the per-user cache, $CORRGEN_CACHE or ~/.cache/corrgen)")
    if name:
        group.add_argument("--name", metavar="NAME",
                           help="the module's folder name instead of <kernel>_<key12> "
                           "(a Python identifier)")


def _load(spec: LayerSpec, args: argparse.Namespace, dtype: str | None = None) -> Any:
    """The module the options ask for; its ``built_now`` says whether this call compiled it."""
    import codegen

    dtype = dtype or args.dtype
    with StageProgress(f"building {args.target} {dtype} module") as progress:
        module = codegen.load(spec, args.target, dtype, args.out, style=args.style,
                              name=getattr(args, "name", None), backend=_backend(args),
                              progress=progress, tune=getattr(args, "tune", None))
    module.built_now = progress.built
    return module


def _backend(args: argparse.Namespace) -> Any:
    """The backend the options ask for: the target's, or its CPU emulation (--emulate)."""
    from codegen.backends import backend_for, emulation_for

    if getattr(args, "emulate", False):
        return emulation_for(args.target)
    return backend_for(args.target)


def _runs_on(module: Any) -> str:
    """Where a module's kernels run, for the first line of a report: the thread count, or
    the GPU (CudaError, a one-line "no CUDA device is available" error, when there is none)."""
    if getattr(module, "target", "") != "cuda":
        return f"{module.threads()} threads"
    if module.emulated:
        return "CUDA kernels emulated on the CPU (cuda_emulation.h)"
    return f"on {module.require_device()}"


def _emulate_option(parser: argparse.ArgumentParser, what: str) -> None:
    parser.add_argument("--emulate", action="store_true",
                        help=f"{what} the cuda kernels for the CPU emulation instead of the "
                        "GPU: the same .cu source, compiled by the host C++ compiler with "
                        "cuda_emulation.h (no GPU or nvcc needed)")


def cmd_emit(args: argparse.Namespace) -> int:
    from codegen.blocking import host_machine
    from codegen.build import emit
    from codegen.lower import lower
    from codegen.render import render

    spec = spec_from_args(args)
    backend = _backend(args)
    with StageProgress("rendering") as progress:
        progress("rendering")
        sources = render(lower(spec, backend, args.dtype, args.style,
                               machine=host_machine()), backend)
        folder = emit(sources, backend, args.out, args.name)
    for file, _ in sources.files:
        print(folder / file)
    return 0


def cmd_build(args: argparse.Namespace) -> int:
    module = _load(spec_from_args(args), args)
    if args.json:
        print(json.dumps({
            "module": module.__name__, "path": str(Path(module.__file__).parent),
            "key": module.key, "target": module.target, "dtype": module.dtype,
            "style": module.style, "emulated": bool(getattr(module, "emulated", False)),
            "built": module.built_now, "spec": module.spec.to_dict(),
            "tuning": _tuning_json(module)}, indent=1))
        return 0
    print(f"{module.__name__}  ({module.style}, {module.dtype}, {module.target})")
    print(Path(module.__file__).parent)
    if getattr(module, "tuning", None):
        print("tuned on this CPU:")
        print("\n".join(f"  {line}" for line in module.tuning.summary().splitlines()))
    return 0


def _tuning_json(module: Any) -> Any:
    """``build --json``'s tuning: the choice per pass and the times, or None."""
    tuning = getattr(module, "tuning", None)
    if not tuning:
        return None
    return {"choices": tuning.choices, "timings_us": tuning.timings_us,
            "batch": tuning.batch, "threads": tuning.threads, "seconds": tuning.seconds,
            "runoffs": tuning.runoffs}


def _check(spec: LayerSpec, args: argparse.Namespace, dtype: str | None = None) -> int:
    from codegen.check import check_module

    module = _load(spec, args, dtype)
    if getattr(args, "json", False):
        return _check_json(module, args)
    print(f"{module.__name__}: {module.style} kernels, {module.dtype}, batch {args.batch}, "
          f"{_runs_on(module)}")
    results = check_module(module, args.batch, args.seed)
    for result in results:
        print(f"  {result}")
    failed = [r.name for r in results if not r.ok]
    print("  every pass matches the reference" if not failed
          else f"  MISMATCH in {', '.join(failed)}")
    return 1 if failed else 0


def _check_json(module: Any, args: argparse.Namespace) -> int:
    """``check --json``: one JSON object on standard output; exit status 1 on a mismatch."""
    from codegen.check import check_module

    where = _runs_on(module)  # before the run: no GPU is the usual one-line error
    results = check_module(module, args.batch, args.seed)
    ok = all(r.ok for r in results)
    print(json.dumps({
        "spec": module.spec.to_dict(), "describe": module.spec.describe(),
        "module": module.__name__, "target": module.target, "dtype": module.dtype,
        "style": module.style, "emulated": bool(getattr(module, "emulated", False)),
        "runs_on": where, "batch": args.batch, "seed": args.seed,
        "passes": {r.name: {"max_error": float(r.max_error), "relative_error": float(r.relative),
                            "tolerance": float(r.tolerance), "ok": r.ok} for r in results},
        "ok": ok}, indent=1))
    return 0 if ok else 1


def _check_batch(spec: LayerSpec, batch: int, dtypes: Sequence[str], option: str = "--batch"
                 ) -> None:
    """Refuse a batch size that is not positive, or whose arrays cannot fit in memory."""
    import numpy as np

    if batch < 1:
        raise UsageError(f"{option} {batch}: expected a batch size >= 1")
    c, h, w = spec.input
    o, ho, wo = spec.output_shape
    # V, G, and the module's and the reference's Z and dV, at the widest dtype checked.
    itemsize = max(np.dtype(d).itemsize for d in dtypes)
    needed = batch * (3 * c * h * w + 3 * o * ho * wo) * itemsize
    available = _memory_bytes()
    if available and needed > available:
        raise UsageError(f"{option} {batch}: the arrays of {spec.describe()} would take "
                         f"{needed / 2**30:,.1f} GiB, more than this machine's "
                         f"{available / 2**30:,.1f} GiB of memory")


def _memory_bytes() -> int:
    """This machine's physical memory in bytes (0 when unknown)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def cmd_check(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    _check_batch(spec, args.batch, [args.dtype])
    return _check(spec, args)


def _parse_layers(text: str) -> list[str]:
    from codegen.bench import LAYERS

    names = list(LAYERS) if text.strip().lower() == "all" else [
        t.strip().upper() for t in text.split(",") if t.strip()]
    for name in names:
        if name not in LAYERS:
            raise UsageError(f"--layers {text!r}: {name!r} is not one of "
                             f"{', '.join(LAYERS)} (or all)")
    return names


def _plot_option(args: argparse.Namespace) -> Path | None:
    """``--plot``'s path, checked before anything is timed (its suffix, its folder, and
    matplotlib); None without --plot."""
    if args.from_json and not args.plot:
        raise UsageError(f"--from-json {args.from_json!r}: draws a saved --json file; name "
                         f"the picture with --plot FILE.png")
    if not args.plot:
        return None
    from codegen.bench_plot import check_path, require_matplotlib

    path = check_path(args.plot)
    require_matplotlib()
    return path


def _write_plot(document: dict[str, Any], path: Path) -> None:
    from codegen.bench_plot import write_plot

    print(f"wrote {write_plot(document, path)}")


def _plot_saved(args: argparse.Namespace, path: Path) -> int:
    """``bench --from-json FILE --plot FILE.png``: a saved run drawn, nothing timed."""
    from codegen.bench_plot import load_document

    given = [f"--{name}" for name in ("layers", "network", "markdown", "json")
             if getattr(args, name)]
    if given:
        raise UsageError(f"--from-json {args.from_json!r}: draws a saved run, and "
                         f"{', '.join(given)} ask(s) for a new one; give one or the other")
    _write_plot(load_document(args.from_json), path)
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    from codegen.bench import (
        LAYERS,
        QUIET_PEERS_ENV,
        WINOGRAD,
        WINOGRAD_NOTE,
        document,
        markdown,
        table,
        to_json,
        tuning_lines,
    )
    from codegen.bench_network import NETWORK_ENV

    plot = _plot_option(args)  # a bad --plot is refused before anything runs
    if args.from_json:
        return _plot_saved(args, plot)
    # OpenBLAS reads its settings when NumPy is imported, which has happened by now: when
    # this process is the command itself, start it again with them in place.
    env = NETWORK_ENV if args.network else QUIET_PEERS_ENV
    missing = {k: v for k, v in env.items() if os.environ.get(k) is None}
    if missing and getattr(args, "argv", None) == sys.argv[1:]:
        sys.stdout.flush()
        os.execve(sys.executable, [sys.executable, "-m", "codegen", *args.argv],
                  {**os.environ, **missing})

    both = args.dtype.strip().lower() == "both"
    dtypes = list(DTYPE_NAMES) if both else [d.strip() for d in args.dtype.split(",") if d.strip()]
    for dtype in dtypes:
        if dtype not in DTYPE_NAMES:
            raise UsageError(f"--dtype {args.dtype!r}: {dtype!r} is not one of "
                             f"{', '.join(DTYPE_NAMES)}")
    if args.runs < 7:
        raise UsageError(f"--runs {args.runs}: the median needs at least 7 runs")
    if args.network:
        from .cli_network import cmd_bench_network

        return cmd_bench_network(args, dtypes, plot)
    if args.layers:
        jobs = [(name, *LAYERS[name]) for name in _parse_layers(args.layers)]
    else:
        jobs = [("", spec_from_args(args), 16)]
    rows = _timed_rows(args, jobs, dtypes)
    print(table(rows))
    if any(r.algorithm == WINOGRAD for r in rows):
        print(WINOGRAD_NOTE.strip())
    for line in tuning_lines(rows):
        print(f"tuned: {line}")
    if args.markdown:
        Path(args.markdown).write_text(markdown(rows))
    if args.json:
        Path(args.json).write_text(to_json(rows) + "\n")
    if plot is not None:
        _write_plot(document(rows), plot)
    return 0


def _timed_rows(args: argparse.Namespace, jobs: list[tuple[str, Any, int]], dtypes: list[str]
                ) -> list[Any]:
    """Every pass of every job's module in every dtype, timed (``codegen.bench``), with the
    peak of each dtype on the CPU (``_with_peaks``)."""
    from codegen.bench import bench_for

    def time_jobs() -> list[Any]:
        rows = []
        for layer, spec, batch in jobs:
            batch = args.batch or batch
            _check_batch(spec, batch, dtypes)
            for dtype in dtypes:
                module = _load(spec, args, dtype)
                print(f"timing {layer or spec.describe()} {dtype}, N={batch}, "
                      f"{_runs_on(module)} ...", file=sys.stderr)
                rows += bench_for(module)(module, batch, layer, args.runs, not args.no_torch)
        return rows

    return _with_peaks(args.target, dtypes, time_jobs)


def _with_peaks(target: str, dtypes: list[str], time: Callable[[], list[Any]]) -> list[Any]:
    """``time()``'s records (each with a ``dtype``, ``peak_gflops`` and ``peaks_gflops``); on
    the CPU, each given its dtype's multiply-add peak measured before and after the timings,
    the higher kept: a VM slowed for the seconds of one measurement once gave half its peak,
    and every % of peak twice its share. Both are kept in the records, and when they differ
    by more than ``codegen.bench.PEAK_SPREAD`` a note on stderr and in the reports says so."""
    if target != "openmp":
        return time()
    from codegen.bench import unsteady_peaks_note
    from codegen.peak import fma_peak

    print("measuring the multiply-add peak ...", file=sys.stderr)
    before = fma_peak(tuple(dtypes))
    records = time()
    print("measuring the multiply-add peak again ...", file=sys.stderr)
    after = fma_peak(tuple(dtypes))
    note = unsteady_peaks_note({d: (before[d], after[d]) for d in dtypes})
    if note:
        print(f"note: {note.strip()}", file=sys.stderr)
    return [replace(r, peak_gflops=max(before[r.dtype], after[r.dtype]),
                    peaks_gflops=(before[r.dtype], after[r.dtype])) for r in records]


def _add_kernel_command(sub: Any, name: str, help: str, description: str,
                        handler: Callable[[argparse.Namespace], int],
                        with_name: bool = False, dtype_list: bool = False
                        ) -> argparse.ArgumentParser:
    more = MORE_HELP[name]() if name in MORE_HELP else ""
    p = sub.add_parser(name, help=help, **_help(description, EXAMPLES[name], more))
    _spec_options(p)
    _kernel_options(p, with_name, dtype_list)
    p.set_defaults(handler=handler)
    return p


#: Each kernel command's examples, for its help's epilog.
EXAMPLES = {
    "emit": """
corrgen emit --input 3x32x32 --kernel 16x3x5x5 --padding 2 --target cuda --out src
corrgen emit --style loops --out /tmp/src        # the OpenMP sources only
""",
    "build": """
corrgen build --input 3x32x32 --kernel 16x3x5x5 --padding 2 --dtype float32
corrgen build --out mykernels --name conv1 --json   # import mykernels.conv1
""",
    "check": """
corrgen check --input 3x11x9 --kernel 4x3x3x2 --stride 2x1 --padding same
corrgen check --target cuda --emulate --dtype float32 --json
""",
    "bench": """
corrgen bench --layers S2,S5
corrgen bench --input 3x32x32 --kernel 16x3x5x5 --padding 2 --dtype float32 --batch 64
corrgen bench --layers all --markdown bench.md --json bench.json
corrgen bench --layers S2,S3 --dtype both --plot bench.png     # also .pdf, .svg
corrgen bench --from-json bench.json --plot bench.svg          # a saved run drawn
corrgen bench --network "1x8x8 | conv 6x3x3 pad 1 | relu | maxpool 2 | flatten | dense 10 \
| softmax-ce" --batch 64 --dtype both
""",
}


def _bench_layers_help() -> str:
    from codegen.bench import LAYERS

    lines = ["the benchmark layers (--layers; N: the batch size unless --batch is given):"]
    for layer, (spec, batch) in LAYERS.items():
        lines.append(f"  {layer}  N={batch:<3} {spec.cli_options()}")
    return "\n".join(lines)


#: More epilog text per kernel command: a function, called when the parser is built.
MORE_HELP: dict[str, Callable[[], str]] = {"bench": _bench_layers_help}


def _add_emit(sub: Any) -> None:
    p = _add_kernel_command(
        sub, "emit", "write kernel sources", "Render the kernels of a layer (header, kernel "
        "source, Python wrapper; for openmp also the CPython entry points) into "
        "DIR/<kernel>_<key12>/ without compiling them.",
        cmd_emit, with_name=True)
    _emulate_option(p, "write")


def _add_build(sub: Any) -> None:
    p = _add_kernel_command(
        sub, "build", "emit and compile a module", "Render and compile the kernels of a layer "
        "into an importable module (reused when already built); prints its import name "
        "and folder.", cmd_build, with_name=True)
    _emulate_option(p, "build")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object instead: module (import name), path, key "
                   "(the cache key), target, dtype, style, emulated, built (true: compiled "
                   "now; false: reused), spec")


def _add_check(sub: Any) -> None:
    p = _add_kernel_command(
        sub, "check", "validate every pass against the NumPy reference", "Build the module, "
        "run every pass on random data and compare with the NumPy reference; exit status 1 "
        "on a mismatch. --target cuda needs a GPU (without one: exit status 2, saying so), "
        "or --emulate.", cmd_check)
    _emulate_option(p, "check")
    p.add_argument("--batch", type=int, default=2, metavar="N", help="batch size (default 2)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object instead: spec, module, target, dtype, style, "
                   "batch, seed, and per pass max_error, relative_error, tolerance, ok; and "
                   "ok overall (the exit status is still 1 on a mismatch)")


def _add_bench(sub: Any) -> None:
    p = _add_kernel_command(
        sub, "bench", "time the kernels against NumPy and PyTorch", "Time every pass of the "
        "generated module against the NumPy reference and, when installed, PyTorch's CPU "
        "conv2d and autograd backward: median of interleaved runs after a warm-up, GFLOP/s "
        "(2*N*O*HO*WO*C*KH*KW per pass), % of the multiply-add peak measured in the same run "
        "(before and after the timings, the higher kept), "
        "time ratios, thread count (OMP_NUM_THREADS). "
        "--target cuda times the kernels on the GPU (on PyTorch CUDA tensors against "
        "PyTorch's CUDA convolution, when PyTorch has CUDA) and needs a GPU.\n\n"
        "With --network, time a whole network's SGD step instead (forward, loss, backward, "
        "update; the generated network module against the NumPy reference and the same model "
        "in PyTorch with torch.optim.SGD, same parameters and batch, every contestant on "
        "OMP_NUM_THREADS threads, 2 unless set): one row per dtype.",
        cmd_bench, dtype_list=True)
    p.add_argument("--layers", metavar="IDS",
                   help="the benchmark layers to time instead of the spec (listed below): "
                   "e.g. S2,S5, or all")
    p.add_argument("--network", metavar="'INPUT | LAYER | ... | LOSS'",
                   help="time a network's training step instead of a layer's passes, e.g. "
                   "'1x8x8 | conv 6x3x3 pad 1 | relu | maxpool 2 | flatten | dense 10 | "
                   "softmax-ce' (the layers of 'corrgen derive --network')")
    p.add_argument("--batch", type=int, default=0, metavar="N",
                   help="batch size (default: the layer's, 16 for a spec, 64 for a network)")
    p.add_argument("--runs", type=int, default=7,
                   help="timed rounds per pass, at least (default 7); the rounds go on "
                   "without NumPy until corrgen's timings add up to 0.5 s")
    p.add_argument("--no-torch", action="store_true", help="leave PyTorch out")
    p.add_argument("--markdown", metavar="FILE", help="also write the table as markdown")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    p.add_argument("--plot", metavar="FILE.png",
                   help="also draw the medians as bars, one panel per layer (a network: per "
                   "dtype), log time axis, quartile whiskers, corrgen's time ÷ each peer's; "
                   ".png, .pdf or .svg; needs matplotlib (pip install 'corrgen[plot]')")
    p.add_argument("--from-json", metavar="FILE.json",
                   help="with --plot: draw a file --json wrote instead of timing anything")


def _demo_module(spec: LayerSpec, args: argparse.Namespace) -> int:
    print("\n== 3. OpenMP module, built and validated against the NumPy reference")
    args.target, args.style, args.name = "openmp", "auto", None
    args.batch, args.seed = 2, 0
    status = 0
    for dtype in reversed(DTYPE_NAMES):  # the widest first
        status = max(status, _check(spec, args, dtype))
    return status


# -- corrgen demo -------------------------------------------------------------------------------


def cmd_demo(args: argparse.Namespace) -> int:
    spec = spec_from_args(args)
    print(f"corrgen {__version__} demo: {spec.describe()}\n")
    print("== 1. Derivation (SymPy, chain rule, indices 1-based as in the seeds)")
    args.index_base, args.wrt, args.element, args.verify = 1, "input,weight,bias", None, False
    args.format, args.max_terms = "text", DEFAULT_MAX_TERMS
    args.network = args.values = None  # the layer of the spec options, symbols only
    cmd_derive(args)
    print("\n== 2. Index forms, proven equal to the derivation")
    for form in index_forms(spec).values():
        print(form)
    print(prove(spec))
    status = 0
    for step in DEMO_STEPS:
        status = max(status, step(spec, args))
    return status


#: Further demo stages ``(spec, args) -> exit status``, appended by the modules that own them.
DEMO_STEPS: list[Callable[[LayerSpec, argparse.Namespace], int]] = [_demo_module]


def _add_demo(sub: Any) -> None:
    p = sub.add_parser("demo", help="the seed example end to end", **_help(
        "The seed example end to end (or the layer the spec options give): its derivation "
        "printed, the index forms proven equal to it, the OpenMP module built and validated "
        "against the NumPy reference in every dtype, and the LaTeX derivation document "
        "written (and compiled when pdflatex is installed) into the per-user cache's demo/ "
        "folder, or --out DIR.", """
        corrgen demo
        corrgen demo --input 2x5x5 --kernel 2x2x3x3 --stride 2 --padding 1 --out demo-out
        """))
    _spec_options(p)
    p.add_argument("--out", default=None, metavar="DIR",
                   help="the folder for the document and the modules (default: the per-user "
                   "cache, $CORRGEN_CACHE or ~/.cache/corrgen; the document in its demo/)")
    p.set_defaults(handler=cmd_demo)


# -- corrgen latex ------------------------------------------------------------------------------


def _elements_option(text: str) -> str | int:
    try:
        return parse_elements(text)
    except LatexError:
        raise UsageError(
            f"--elements {text!r}: expected all, corners, auto or a count N from 1 to "
            f"{N_LIMIT} (elements expanded per array)") from None


def _tex_path(text: str, pdf: bool = False) -> Path:
    """``-o``'s file, checked before any work: a .tex file (not a folder) in a folder that
    exists and can be written; with ``pdf``, the PDF's name next to it must not be a folder."""
    path = Path(text)
    if path.is_dir():
        raise UsageError(f"-o {text!r} is a folder; the output must be a .tex file (with --pdf "
                         f"the PDF is written next to it)")
    if path.suffix != ".tex":
        raise UsageError(f"-o {text!r}: the output must be a .tex file (with --pdf the PDF is "
                         f"written next to it)")
    folder = path.parent
    if not folder.exists():
        raise UsageError(f"-o {text!r}: folder {str(folder)!r} does not exist")
    if not folder.is_dir():
        raise UsageError(f"-o {text!r}: {str(folder)!r} is not a folder")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise UsageError(f"-o {text!r}: no permission to write in folder {str(folder)!r}")
    for other in (path.with_suffix(".pdf"), path.with_suffix(".log")) if pdf else ():
        if other.is_dir():
            raise UsageError(f"-o {text!r}: --pdf writes {str(other)!r}, which is a folder")
    return path


def cmd_latex(args: argparse.Namespace) -> int:
    if args.network:
        return _latex_network(args)
    spec = spec_from_args(args)
    elements = _elements_option(args.elements)
    out = _latex_output(args)
    start = time.perf_counter()
    text = to_latex(spec, index_base=args.index_base, elements=elements,
                    notation=args.notation, values=args.values,
                    progress=StepsProgress(LATEX_STEPS))
    return _write_latex(args, out, text, start, spec.describe())


def _latex_output(args: argparse.Namespace) -> Path:
    """``-o``'s path, checked, and with ``--pdf`` a LaTeX engine: before any work, so that a
    refusal writes nothing."""
    out = _tex_path(args.output, pdf=args.pdf)
    if args.pdf and find_engine() is None:
        raise LatexError(f"--pdf: no LaTeX engine is installed (pdflatex not found on PATH); "
                         f"install one with '{INSTALL_HINT}', or leave out --pdf")
    return out


def _write_latex(args: argparse.Namespace, out: Path, text: str, start: float,
                 what: str) -> int:
    """Write the document (and with ``--pdf`` compile it), saying what was written."""
    write_file(out, text)  # the checks above can be outrun (root, a race): one line still
    print(f"wrote {out} ({len(text.splitlines()):,} lines, "
          f"{time.perf_counter() - start:.1f} s): {what}")
    if args.pdf:
        pdf, pages = compile_pdf(out)
        print(f"wrote {pdf} ({pages} pages)")
    return 0


def _latex_network(args: argparse.Namespace) -> int:
    """``corrgen latex --network``: the network's derivation document."""
    from .cli_network import parse_network
    from .network_document import network_document

    net = parse_network(args)
    if args.notation != "seed000":
        raise UsageError(f"--notation {args.notation}: the letters of a layer document; a "
                         f"network document writes x, y^(l), delta^(l), W^(l), b^(l)")
    elements = _elements_option(args.elements)
    out = _latex_output(args)
    start = time.perf_counter()
    with StageProgress("latex --network") as stage:
        stage("deriving and checking")
        text = network_document(net, values=args.values, elements=elements,
                                index_base=args.index_base)
    return _write_latex(args, out, text, start, net.text())


def _add_latex(sub: Any) -> None:
    p = sub.add_parser(
        "latex", help="a standalone LaTeX derivation document (--pdf compiles it)", **_help(
            "Write a LaTeX document deriving the backward pass of the layer the way the "
            "seeds do: the setup, the arrays as matrices, the forward equations, the chain "
            "rule of every gradient element shown, the compact forms as correlations, and "
            "what was verified.", """
            corrgen latex --input 3x3 --kernel 2x2 -o doc.tex --pdf
            corrgen latex --input 2x5x5 --kernel 2x2x3x3 --stride 2 --padding 1 --notation seed003
            corrgen latex --values examples/seed001.json -o seed001.tex   # seed 001's numbers
            corrgen latex --network "1x3x3 | conv 1x2x2 | relu | flatten | dense 2 | l2" --pdf
            """))
    _spec_options(p)
    p.add_argument("-o", "--output", default="derivation.tex", metavar="FILE.tex",
                   help="the .tex file to write (default derivation.tex)")
    p.add_argument("--pdf", action="store_true",
                   help="compile it with pdflatex -halt-on-error; the PDF goes next to it")
    p.add_argument("--index-base", type=int, choices=(0, 1), default=1,
                   help="first index written (default 1, as the seeds)")
    p.add_argument("--elements", default="auto", metavar="all|corners|N",
                   help="elements expanded: all; corners (first and last along each axis, and "
                   "a central one); N per array, evenly spread; default auto: all for small "
                   f"layers (at most {AUTO_ALL_LIMIT} elements), else corners")
    p.add_argument("--notation", choices=tuple(NOTATIONS), default="seed000",
                   help="letters: seed000 (V, K, Z, G, J; the default) or seed003 "
                   "(x, w, y, delta, E)")
    _network_options(p)
    p.set_defaults(handler=cmd_latex)


#: Where the demo writes the seed example's document.
DEMO_LATEX = "derivation.tex"


def demo_folder(out: str | None) -> Path:
    """Where the demo writes its document: ``--out DIR``, else the cache's ``demo`` folder
    (never the current folder)."""
    from codegen.paths import default_cache, output_folder

    return output_folder(out, "--out") if out is not None else default_cache() / "demo"


def _demo_latex(spec: LayerSpec, args: argparse.Namespace) -> int:
    """Demo stage: the layer's LaTeX document, compiled when pdflatex is installed.

    A failure (the folder cannot be written, pdflatex fails) is one line on stderr and
    exit status 2, like any error of the environment; the demo's other stages still run.
    """
    from codegen.errors import OutputError

    try:
        tex = demo_folder(getattr(args, "out", None)) / DEMO_LATEX
    except OutputError as error:
        return _demo_error(str(error))
    print(f"\n== 4. LaTeX derivation document ({tex})")
    try:
        tex.parent.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        return _demo_error(f"cannot create folder {str(tex.parent)!r}: "
                           f"{error.strerror or error}")
    try:
        write_file(tex, to_latex(spec))
    except LatexError as error:
        return _demo_error(str(error))
    print(f"wrote {tex}")
    if find_engine() is None:
        print(f"pdflatex is not installed, so no PDF ({INSTALL_HINT} to get one)")
        return 0
    try:
        pdf, pages = compile_pdf(tex)
    except LatexError as error:
        return _demo_error(str(error))
    print(f"wrote {pdf} ({pages} pages)")
    return 0


def _demo_error(message: str) -> int:
    sys.stdout.flush()  # keep the order of the two streams in a terminal or a shared log
    sys.stderr.write(f"corrgen demo: error: {message}\n")
    return 2


DEMO_STEPS.append(_demo_latex)


# -- main ---------------------------------------------------------------------------------------


def _add_train(sub: Any) -> None:
    from .cli_train import add_train  # here: codegen.cli_train imports this module

    add_train(sub)


COMMANDS: list[Callable[[Any], None]] = [
    _add_demo, _add_derive, _add_latex, _add_emit, _add_build, _add_check, _add_bench,
    _add_train]


MAIN_EXAMPLES = """
corrgen demo                                        # the seed example end to end
corrgen derive --input 3x3 --kernel 2x2 --wrt input
corrgen latex --input 3x3 --kernel 2x2 -o doc.tex --pdf
corrgen emit --input 3x32x32 --kernel 16x3x5x5 --target cuda --out src
corrgen build --input 3x32x32 --kernel 16x3x5x5 --padding 2 --dtype float32
corrgen check --input 3x11x9 --kernel 4x3x3x2 --stride 2x1 --padding same
corrgen bench --layers S2,S5
corrgen train --epochs 20                           # a network on the handwritten digits
"""


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="corrgen", **_help(
        "Derive the gradients of a CNN correlation layer symbolically and generate "
        "shape-specialised kernels.\n\n"
        "Every command takes the same layer spec options (--input, --kernel, --stride, "
        "--padding, --dilation, --no-bias, --convolution); 'corrgen COMMAND --help' lists "
        "them with the command's own options and examples.", MAIN_EXAMPLES))
    parser.add_argument("--version", action="version", version=f"corrgen {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for add in COMMANDS:
        add(sub)
    return parser


class _Stdout:
    """``sys.stdout`` while a command runs: a write or flush that fails (a full disk, a
    closed terminal) is marked as standard output's, so ``main`` tells it from the errors
    of other files."""

    def __init__(self, stream: Any) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        try:
            return int(self.stream.write(text))
        except OSError as error:
            error.corrgen_stdout = True  # type: ignore[attr-defined]
            raise

    def flush(self) -> None:
        try:
            self.stream.flush()
        except OSError as error:
            error.corrgen_stdout = True  # type: ignore[attr-defined]
            raise

    def __getattr__(self, name: str) -> Any:
        return getattr(self.stream, name)


def _drop_stdout(stream: Any) -> None:
    """Point standard output's file at the null device, so that nothing left in its buffer
    fails again (as "Exception ignored") when the interpreter flushes it at exit."""
    try:
        fd = stream.fileno()
    except (OSError, ValueError, AttributeError):  # no file under it (a test's capture)
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, fd)
    finally:
        os.close(null)


def _stdout_error(prog: str, error: OSError) -> int:
    sys.stderr.write(f"{prog}: error: cannot write to standard output: "
                     f"{error.strerror or error}\n")
    return 2


def _command_names(parser: argparse.ArgumentParser) -> list[str]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    return []


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    if not argv:  # bare corrgen: the usage, and nothing run or written
        argv = ["--help"]
    try:
        if argv[0].startswith("-") and argv[0] not in ("-h", "--help", "--version"):
            parser.error(f"{argv[0]}: name a command first, one of "
                         f"{', '.join(_command_names(parser))} (corrgen COMMAND [options])")
        args = parser.parse_args(argv)
    except BrokenPipeError:  # --help unbuffered, piped into head
        _drop_stdout(sys.stdout)
        return 0
    except OSError as error:  # --help or --version unbuffered, onto a full disk
        _drop_stdout(sys.stdout)
        return _stdout_error("corrgen", error)
    except SystemExit:  # --help, --version: their text fails (if at all) here, not at exit
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            _drop_stdout(sys.stdout)
        except OSError as error:
            _drop_stdout(sys.stdout)
            return _stdout_error("corrgen", error)
        raise
    args.argv = argv
    stdout = sys.stdout
    sys.stdout = _Stdout(stdout)
    try:
        status = int(args.handler(args) or 0)
        sys.stdout.flush()  # buffered output often fails only here (a full disk)
        return status
    except (CorrgenError, ValueError) as error:
        sys.stderr.write(f"corrgen {args.command}: error: {error}\n")
        return 2
    except MemoryError as error:
        sys.stderr.write(f"corrgen {args.command}: error: out of memory"
                         f"{': ' + str(error) if str(error) else ''}\n")
        return 2
    except BrokenPipeError:  # output piped into head: stop quietly
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115
        return 0
    except OSError as error:
        if not getattr(error, "corrgen_stdout", False):
            raise
        _drop_stdout(stdout)
        return _stdout_error(f"corrgen {args.command}", error)
    except KeyboardInterrupt:
        sys.stderr.write("corrgen: interrupted\n")
        return 130
    finally:
        if isinstance(sys.stdout, _Stdout):
            sys.stdout = stdout


if __name__ == "__main__":
    raise SystemExit(main())
