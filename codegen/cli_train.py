"""``corrgen train``: train a network on the digits or an .npz file with its module.

Kept apart from ``codegen.cli`` (the layer commands); the work is ``codegen.train``'s, this
module reads the options, shows progress and writes ``train.csv`` and ``train.png``.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
from pathlib import Path
from typing import Any

from .cli import UsageError, _help
from .train import (
    DEFAULT_BATCH,
    DEFAULT_EPOCHS,
    DEFAULT_LR,
    DEFAULT_NETWORK,
    DEFAULT_SCHEDULE,
    DTYPE_NAMES,
    HELD_OUT,
    SCHEDULES,
    Epoch,
    TrainError,
)

#: Where the CSV and the plot go without --out: a folder of their own in the current folder.
DEFAULT_OUT = "corrgen-train"
CSV_NAME, PLOT_NAME = "train.csv", "train.png"
TARGETS = ("openmp", "cuda")

TRAIN_EXAMPLES = """
corrgen train                                      # the default network on the digits
corrgen train --epochs 10 --out run1 --no-plot
corrgen train --network "1x8x8 | conv 8x3x3 pad 1 | relu | maxpool 2 | flatten | dense 10 \\
  | softmax-ce" --dtype float64 --target cuda
corrgen train --network "1x28x28 | conv 8x5x5 | relu | maxpool 2 | flatten | dense 10 \\
  | softmax-ce" --data mnist.npz --batch 64
"""

TRAIN_MORE = f"""\
--data FILE.npz holds the arrays X_train, y_train, X_test, y_test, or X, y (then split as
the digits are: a fixed {HELD_OUT:.0%} of every class held out). X is (N, C, H, W), or
(N, H, W) for one channel, any real dtype, used as given; y is (N,) integer labels 0..K-1.
The digits are scikit-learn's (pip install 'corrgen[train]'), pixels divided by 16.

Written to --out: {CSV_NAME} (epoch, train_loss, train_accuracy, test_loss, test_accuracy,
seconds since the start) and, with matplotlib, {PLOT_NAME} (loss and accuracy per epoch)."""


def _positive_int(what: str):
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = 0
        if value < 1:
            raise argparse.ArgumentTypeError(f"{text!r}: expected a positive integer ({what})")
        return value

    return parse


def _learning_rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r}: expected a positive learning rate, "
                                         f"e.g. {DEFAULT_LR}")
    return value


def _seed(text: str) -> int:
    if not text.strip().isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected a non-negative integer")
    return int(text)


def add_train(sub: Any) -> None:
    p = sub.add_parser(
        "train", help="train a network on the digits or an .npz file", **_help(
            "Train a network with its generated module: minibatch SGD through the module's "
            "step, a new order of the training set every epoch, the learning rate decaying "
            "linearly to lr/epochs in the last epoch (--schedule constant keeps it). Progress "
            "per epoch on stderr; after every epoch the training loss and the held-out "
            "accuracy; at the end the loss/accuracy curve as CSV and PNG.\n\n"
            "The defaults train the default network (--network) on scikit-learn's handwritten "
            "digits to over 97 % held-out accuracy.", TRAIN_EXAMPLES, TRAIN_MORE))
    p.add_argument("--network", default=DEFAULT_NETWORK, metavar="'INPUT | LAYER | ... | LOSS'",
                   help=f"the network (default '{DEFAULT_NETWORK}'; the syntax is corrgen "
                   f"derive --network's)")
    p.add_argument("--data", default="digits", metavar="digits|FILE.npz",
                   help="scikit-learn's 8x8 handwritten digits (default), or an .npz file")
    p.add_argument("--epochs", type=_positive_int("passes over the training set"),
                   default=DEFAULT_EPOCHS, metavar="E",
                   help=f"passes over the training set (default {DEFAULT_EPOCHS})")
    p.add_argument("--batch", type=_positive_int("samples per SGD step"),
                   default=DEFAULT_BATCH, metavar="B",
                   help=f"samples per SGD step (default {DEFAULT_BATCH})")
    p.add_argument("--lr", type=_learning_rate, default=DEFAULT_LR, metavar="A",
                   help=f"the learning rate of the first epoch (default {DEFAULT_LR})")
    p.add_argument("--schedule", choices=SCHEDULES, default=DEFAULT_SCHEDULE,
                   help="linear: lr*(1-(e-1)/E) in epoch e of E (default); constant: lr")
    p.add_argument("--dtype", choices=DTYPE_NAMES, default="float32",
                   help="the module's dtype (default float32)")
    p.add_argument("--target", choices=TARGETS, default="openmp",
                   help="the kernel backend (default openmp)")
    p.add_argument("--seed", type=_seed, default=0, metavar="S",
                   help="seeds the initial parameters and the order of the samples (default 0)")
    p.add_argument("--out", default=DEFAULT_OUT, metavar="DIR",
                   help=f"the folder for {CSV_NAME} and {PLOT_NAME}, created when missing "
                   f"(default ./{DEFAULT_OUT})")
    p.add_argument("--no-plot", action="store_true", help=f"write no {PLOT_NAME}")
    p.set_defaults(handler=cmd_train)


class EpochBar:
    """A progress bar of one epoch's batches on stderr, redrawn in place on a terminal; in a
    log, one line per finished epoch instead."""

    width = 24

    def __init__(self, epochs: int, stream: Any = None) -> None:
        self.epochs = epochs
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.last = 0.0

    def __call__(self, epoch: int, done: int, total: int, loss: float,
                 row: Epoch | None) -> None:
        if row is not None:
            if self.tty:  # the epoch's line (on stdout) takes the bar's place
                self.stream.write("\r\033[K")
                self.stream.flush()
            return
        now = time.perf_counter()
        if not self.tty:
            if done == total:
                self.stream.write(f"epoch {epoch}/{self.epochs}: {done}/{total} batches, "
                                  f"mean batch loss {loss:.4f}\n")
                self.stream.flush()
            return
        if done < total and now - self.last < 0.1:  # at most ten redraws a second
            return
        self.last = now
        filled = self.width * done // total
        self.stream.write(f"\repoch {epoch}/{self.epochs} [{'#' * filled}"
                          f"{'.' * (self.width - filled)}] {done}/{total} batches, loss "
                          f"{loss:.4f}")
        self.stream.flush()


def _out_folder(text: str) -> Path:
    from .errors import OutputError
    from .paths import output_folder

    try:
        return output_folder(text, "--out")
    except OutputError as error:
        raise UsageError(str(error)) from None


def cmd_train(args: argparse.Namespace) -> int:
    from derive.errors import SpecError
    from derive.network import Network

    from . import train as training

    try:
        net = Network.parse(args.network)
    except SpecError as error:
        raise UsageError(f"--network: {error}") from None
    out = _out_folder(args.out)
    if not args.no_plot:  # before the training, not after it
        try:
            training.require_matplotlib()
        except TrainError as error:
            raise UsageError(f"{error}; or pass --no-plot") from None
    try:
        data = training.load_dataset(args.data, args.dtype, net)
    except TrainError as error:
        raise UsageError(f"--data: {error}") from None
    print(f"training {net.text()} on {data.describe()}: {args.epochs} epochs, batch "
          f"{args.batch}, lr {args.lr:g} ({args.schedule}), {args.dtype}, {args.target}; "
          f"results in {out}{os.sep}")
    import codegen

    from .cli import StageProgress

    with StageProgress(f"building {args.target} {args.dtype} network module") as stage:
        module = codegen.load_network(net, args.target, args.dtype, progress=stage)
    try:
        history = training.train(net, data, args.epochs, args.batch, args.lr, args.dtype,
                                 args.target, args.seed, load=lambda *_: module,
                                 progress=_reporter(args.epochs), schedule=args.schedule)
    except training.DivergedError as error:
        raise UsageError(f"--lr {args.lr:g}: {error}") from None
    final = history.final
    print(f"held-out accuracy after {final.epoch} epochs: {100 * final.test_accuracy:.2f} % "
          f"({final.seconds:.1f} s)")
    _write_outputs(history, out, not args.no_plot)
    return 0


def _reporter(epochs: int) -> Any:
    """The progress function: the bar on stderr, and a line per epoch on stdout."""
    bar = EpochBar(epochs)
    digits = len(str(epochs))

    def report(epoch: int, done: int, total: int, loss: float, row: Epoch | None) -> None:
        bar(epoch, done, total, loss, row)
        if row is not None:
            print(f"epoch {row.epoch:>{digits}}/{epochs}  train loss {row.train_loss:.4f}  "
                  f"held-out accuracy {100 * row.test_accuracy:6.2f} %  {row.seconds:7.1f} s",
                  flush=True)

    return report


def _write_outputs(history: Any, out: Path, plot: bool) -> None:
    """The CSV and the plot: the PNG is drawn before anything is written, and each file is
    written whole or not at all."""
    from . import train as training

    png = training.plot_png(history) if plot else None
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UsageError(f"--out {str(out)!r}: cannot create the folder: "
                         f"{error.strerror or error}") from None
    written = [training.write_csv(history, out / CSV_NAME)]
    if png is not None:
        written.append(training.write_output(out / PLOT_NAME, png))
    for path in written:
        print(f"wrote {path}")
