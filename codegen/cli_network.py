"""``corrgen derive --network`` and ``--values``: a network's elements, and numbers in them;
``corrgen bench --network``: its training step timed.

Kept apart from ``codegen.cli`` (the layer commands): the network output has its own layout,
layer by layer forward, then the loss, then the δ recursion backwards.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from sympy import Expr
from sympy.printing.str import sstr

from derive import __version__
from derive.errors import SpecError
from derive.fastprint import ElementPrinter
from derive.network import Network
from derive.printing import index_text, shift_indices

#: The spec options a network ignores (its layers carry their own), with their defaults.
SPEC_OPTIONS = {"input": "3x3", "kernel": "2x2", "stride": "1", "padding": "0",
                "dilation": "1", "no_bias": False, "convolution": False}

SYMBOLS_NOTE = ("X the input; Y<l> the output of layer l; dY<l> = dJ/dY<l> (the seeds' delta); "
                "W<l>, B<l> the parameters '<l>.weight', '<l>.bias'; T the targets (one-hot for "
                "softmax-ce); J the loss of one sample (a batch averages J and every gradient "
                "over its N samples)")


def parse_network(args: argparse.Namespace) -> Network:
    """``--network``'s Network; refuses layer spec options given with it."""
    given = [f"--{name.replace('_', '-')}" for name, default in SPEC_OPTIONS.items()
             if getattr(args, name, default) != default]
    if given:
        raise SpecError(f"--network describes every layer; {', '.join(given)} describe(s) a "
                        f"single layer: put them in the network's conv layer instead "
                        f"(e.g. 'conv 6x3x3 stride 2 pad 1')")
    return Network.parse(args.network)


def _key(index: tuple[int, ...]) -> str:
    return ",".join(map(str, index))


def network_json(net: Network, exprs: Any, example: Any = None) -> dict[str, Any]:
    """The derivation as one JSON-ready object (keys 0-based, values sympify-able text)."""
    def text(expr: Expr) -> str:
        return sstr(expr, order="none")

    symbols = {name: list(shape) for name, shape in exprs.symbols().items()}
    body: dict[str, Any] = {"network": net.to_dict(), "symbols": symbols, "layers": []}
    for d in exprs.layers:
        layer = d.layer
        entry = {
            "index": layer.index, "layer": layer.text, "kind": layer.kind,
            "forward": {_key(z): text(e) for z, e in d.forward.items()},
            "backward": {_key(u): text(e) for u, e in d.backward.items()},
            "grads": {name: {_key(i): text(e) for i, e in elements.items()}
                      for name, elements in d.grads.items()},
        }
        body["layers"].append(entry)
    body["loss"] = {"kind": net.loss, "J": text(exprs.loss),
                    "delta": {_key(z): text(e) for z, e in exprs.loss_delta.items()}}
    if example is not None:
        body["values"] = {
            "J": text(example.loss),
            "elements": {str(k): text(v) for k, v in example.values.items()},
            "grads": {str(k): text(v) for k, v in example.grads.items()},
        }
    return body


def print_network_text(net: Network, exprs: Any, base: int, example: Any = None) -> None:
    """Layer by layer: the forward elements, the loss and its δ, then the recursion back."""
    from derive.network_derivation import delta, output

    def number(lhs: Expr) -> str:
        if example is None:
            return ""
        value = example.grads.get(lhs, example.values.get(lhs))
        return "" if value is None else f" = {value}"

    printer = ElementPrinter(base)  # str(shift_indices(expr, base)), faster for sums

    def line(lhs: Expr, name: str, index: tuple[int, ...], expr: Expr) -> None:
        print(f"{name}[{index_text(index, base)}] = {printer.text(expr)}{number(lhs)}")

    print(f"# corrgen {__version__}: network {net.text()}; indices {base}-based")
    print(f"# {SYMBOLS_NOTE}")
    for d in exprs.layers:
        layer = d.layer
        params = ", ".join(f"{n} {s}" for n, s in layer.params())
        print(f"\n## layer {layer.index}: {layer.text}   {layer.in_shape} -> {layer.out_shape}"
              + (f"; {params}" if params else ""))
        out = output(layer.index)
        for z, e in d.forward.items():
            line(out[z], str(out), z, e)
    last = exprs.layers[-1].index
    print(f"\n## loss: {net.loss}")
    print(f"J = {shift_indices(exprs.loss, base)}"
          + ("" if example is None else f" = {example.loss}"))
    for z, e in exprs.loss_delta.items():
        line(delta(last)[z], f"dY{last}", z, e)
    for d in reversed(exprs.layers):
        print(f"\n## backward through layer {d.layer.index}: {d.layer.text}")
        for name, elements in d.grads.items():
            base_symbol = exprs.param_symbol(name)
            for i, e in elements.items():
                line(base_symbol[i], f"dJ/d{base_symbol}", i, e)
        if d.backward:
            below = delta(d.layer.index - 1)
            for u, e in d.backward.items():
                line(below[u], str(below), u, e)


def cmd_derive_network(args: argparse.Namespace) -> int:
    from derive.network_derivation import arrays, derive_network, evaluate

    from .cli import Progress

    net = parse_network(args)
    exprs = derive_network(net, args.max_terms, Progress("deriving"))
    example = None
    if args.values:
        from derive import values

        example = evaluate(exprs, values.substitutions(args.values, arrays(net)))
    if args.format == "json":
        json.dump(network_json(net, exprs, example), sys.stdout, indent=1)
        print()
    elif args.format == "latex":
        print_network_latex(exprs, args.index_base)
    else:
        print_network_text(net, exprs, args.index_base, example)
    return 0


def print_network_latex(exprs: Any, base: int) -> None:
    from sympy import latex

    def row(name: str, index: tuple[int, ...], expr: Expr) -> None:
        print(f"{name}_{{{index_text(index, base, ',')}}} = {latex(shift_indices(expr, base))} "
              f"\\\\")

    for d in exprs.layers:
        print(f"% layer {d.layer.index}: {d.layer.text}")
        for z, e in d.forward.items():
            row(f"Y^{{({d.layer.index})}}", z, e)
    print(f"% loss {exprs.net.loss}")
    print(f"J = {latex(shift_indices(exprs.loss, base))} \\\\")
    last = exprs.layers[-1].index
    for z, e in exprs.loss_delta.items():
        row(rf"\delta^{{({last})}}", z, e)
    for d in reversed(exprs.layers):
        print(f"% backward through layer {d.layer.index}: {d.layer.text}")
        for name, elements in d.grads.items():
            symbol = exprs.param_symbol(name)
            for i, e in elements.items():
                row(rf"\frac{{\partial J}}{{\partial {symbol}}}", i, e)
        below = d.layer.index - 1
        for u, e in d.backward.items():
            row(rf"\delta^{{({below})}}", u, e)


#: ``corrgen bench --network``'s batch size unless --batch is given.
BENCH_BATCH = 64


def cmd_bench_network(args: argparse.Namespace, dtypes: list[str], plot: Any = None) -> int:
    """``corrgen bench --network``: the network's training step timed per dtype against the
    NumPy reference and PyTorch (``codegen.bench_network``); drawn to ``plot`` (a checked
    ``--plot`` path) when given."""
    from pathlib import Path

    import codegen

    from .bench_network import bench_network, document, heading, markdown, table, to_json
    from .cli import StageProgress, UsageError, _with_peaks, _write_plot

    if args.layers:
        raise UsageError(f"--layers {args.layers!r}: names benchmark layers, and --network "
                         f"times a whole network instead; give one or the other")
    if args.style != "auto":
        raise UsageError(f"--style {args.style}: chooses a single layer's kernels; a "
                         f"--network module is built as codegen.load_network builds it")
    net = parse_network(args)
    batch = args.batch or BENCH_BATCH
    if batch < 1:
        raise UsageError(f"--batch {batch}: expected a batch size >= 1")

    def load(net: Network, target: str, dtype: str) -> Any:
        with StageProgress(f"building {target} {dtype} network module") as progress:
            return codegen.load_network(net, target, dtype, out=args.out, progress=progress)

    def time_steps() -> list[Any]:
        timings = []
        for dtype in dtypes:
            print(f"timing {net.text()} {dtype}, N={batch} ...", file=sys.stderr)
            timings += bench_network(net, batch, dtype, args.target, args.runs, load,
                                     with_torch=not args.no_torch)
        return timings

    timings = _with_peaks(args.target, dtypes, time_steps)
    print(f"{heading(timings)}\n\n{table(timings)}")
    if args.markdown:
        Path(args.markdown).write_text(markdown(timings))
    if args.json:
        Path(args.json).write_text(to_json(timings) + "\n")
    if plot is not None:
        _write_plot(document(timings), plot)
    return 0
