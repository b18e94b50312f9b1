"""Training a network on real data with its module's SGD step (``corrgen train``).

>>> from derive import Network                                         # doctest: +SKIP
>>> net = Network.parse(DEFAULT_NETWORK)                               # doctest: +SKIP
>>> data = load_dataset("digits", "float32", net)                      # doctest: +SKIP
>>> history = train(net, data, epochs=DEFAULT_EPOCHS)                  # doctest: +SKIP
>>> history.final.test_accuracy                                        # doctest: +SKIP

Data:

- ``"digits"``: scikit-learn's bundled handwritten digits (``sklearn.datasets.load_digits``:
  1797 images of 8x8 pixels with values 0..16, no download), scaled to [0, 1] by dividing by
  16 and shaped ``(N, 1, 8, 8)``; labels ``int64`` 0..9.
- ``FILE.npz``: the arrays ``X_train, y_train, X_test, y_test``, or ``X, y`` which are
  split as the digits are. ``X`` is ``(N, C, H, W)`` with the network's input ``(C, H, W)``
  (``(N, H, W)`` when C = 1), any real dtype, read as given (no scaling); ``y`` is ``(N,)``
  of integer class labels 0..K-1.

The split (``split_indices``) is fixed: it depends on neither scikit-learn's random state nor
NumPy's global one. Within each class, in order of label, the samples' indices are permuted
by one ``numpy.random.RandomState(SPLIT_SEED)`` (the legacy generator, whose stream NumPy keeps
unchanged across versions) and the first ``round(HELD_OUT * count)`` are held out; so a
quarter of every class is held out, 451 of the 1797 digits.

Targets, per loss: ``softmax-ce`` trains on the labels (``int64``); ``l2`` and ``bce`` on
one-hot rows of the output's dtype, which needs the network's output to be a vector with at
least one element per class. Accuracy is the share of samples whose largest output is their
label.

Training (``train``) is minibatch SGD through ``module.step``: each epoch visits the training
set in a new order drawn from ``numpy.random.default_rng([seed, 1])`` (so the order and the
initial parameters, ``net.init_params(seed)``, come from distinct streams), in batches of
``batch`` samples, the last one smaller when ``batch`` does not divide the set. The learning
rate is ``lr`` throughout (``schedule="constant"``) or, by default, ``lr * (1 - (e - 1) /
epochs)`` in epoch ``e`` (``"linear"``): plain SGD on these small networks overshoots and
undoes its progress now and then at a rate high enough to learn quickly, and the decay lets
the last epochs settle. After every epoch the loss and accuracy of both sets are measured.

Defaults: with the default network, ``DEFAULT_EPOCHS`` epochs of ``DEFAULT_BATCH`` samples at
``DEFAULT_LR`` (linear decay) reach at least 97 % held-out accuracy on the digits
(tests/test_train.py checks it), for every initialisation seed tried.
"""

from __future__ import annotations

import csv
import importlib
import io
import math
import time
import zipfile
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from derive.errors import CorrgenError
from derive.network import Network

__all__ = ["DEFAULT_BATCH", "DEFAULT_EPOCHS", "DEFAULT_LR", "DEFAULT_NETWORK", "Dataset",
           "DivergedError", "Epoch", "History", "TrainError", "load_dataset", "split_indices",
           "targets", "train", "write_csv", "write_output", "write_plot"]

#: DESIGN.md's example network, the one ``corrgen train`` trains by default.
DEFAULT_NETWORK = "1x8x8 | conv 6x3x3 pad 1 | relu | maxpool 2 | flatten | dense 10 | softmax-ce"
#: Settings measured to take the default network past 97 % held-out accuracy on the digits.
DEFAULT_EPOCHS = 60
DEFAULT_BATCH = 32
DEFAULT_LR = 0.3
SCHEDULES = ("linear", "constant")
DEFAULT_SCHEDULE = "linear"
#: The share of every class held out, and the seed of the split's permutations.
HELD_OUT = 0.25
SPLIT_SEED = 0
#: Samples per call when measuring the loss and accuracy of a whole set.
EVAL_CHUNK = 1024
DTYPE_NAMES = ("float32", "float64")
INSTALL_HINT = "pip install 'corrgen[train]'"
#: The columns of ``write_csv``, in order (the fields of ``Epoch`` less ``lr``).
CSV_COLUMNS = ("epoch", "train_loss", "train_accuracy", "test_loss", "test_accuracy", "seconds")

#: ``progress(epoch, done, total, loss, row)``: called after every batch with ``row`` None
#: (``done`` of ``total`` batches of epoch ``epoch`` done, ``loss`` their mean so far), and
#: once more after the epoch's evaluation with its ``Epoch`` row.
ProgressFn = Callable[[int, int, int, float, "Epoch | None"], None]
#: ``load(net, target, dtype)``: a network module (``codegen.load_network``'s signature).
LoadFn = Callable[[Network, str, str], Any]


class TrainError(CorrgenError, ValueError):
    """Data or training settings that cannot be used; the message names the argument (or the
    file and its array), the rule and the value."""


class DivergedError(TrainError):
    """The loss became NaN or infinite during training: the learning rate is too large."""


# -- data -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dataset:
    """A training set and a held-out set: ``X`` of the network's input shape, ``y`` int64
    class labels."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray

    def describe(self) -> str:
        return (f"{self.name} ({len(self.y_train)} training samples, {len(self.y_test)} held "
                f"out)")


def split_indices(labels: np.ndarray, held_out: float = HELD_OUT,
                  seed: int = SPLIT_SEED) -> tuple[np.ndarray, np.ndarray]:
    """``(train, test)``: sorted, disjoint indices covering ``labels``; per class (in order of
    label) its indices permuted by one ``RandomState(seed)`` and the first
    ``round(held_out * count)`` held out (half rounds up)."""
    labels = np.asarray(labels)
    rng = np.random.RandomState(seed)  # the legacy stream: fixed across NumPy versions
    test = []
    for label in np.unique(labels):
        members = np.flatnonzero(labels == label)
        members = members[rng.permutation(len(members))]
        test.append(members[:int(math.floor(held_out * len(members) + 0.5))])
    test_idx = np.sort(np.concatenate(test)) if test else np.zeros(0, dtype=np.intp)
    train_idx = np.setdiff1d(np.arange(len(labels)), test_idx)
    return train_idx, test_idx


def _dtype(dtype: Any) -> np.dtype:
    name = str(np.dtype(dtype)) if isinstance(dtype, (type, np.dtype)) else str(dtype)
    if name not in DTYPE_NAMES:
        raise TrainError(f"dtype={dtype!r}: expected one of {', '.join(DTYPE_NAMES)}")
    return np.dtype(name)


def _network(net: Network | str) -> Network:
    if isinstance(net, str):
        return Network.parse(net)
    if not isinstance(net, Network):
        raise TypeError(f"net: expected a derive.Network or its text form, got "
                        f"{type(net).__name__}")
    return net


def load_dataset(name_or_path: str | Path, dtype: Any, net: Network | str) -> Dataset:
    """``"digits"`` or an ``.npz`` file (see the module docstring) as a ``Dataset`` whose
    ``X`` has ``dtype`` and ``net``'s input shape.

    Raises:
        TrainError: scikit-learn missing for the digits, a file that is missing or not an
            ``.npz`` of the expected arrays, shapes or dtypes that do not fit ``net``, labels
            its output cannot score.
    """
    net, dtype = _network(net), _dtype(dtype)
    if str(name_or_path) == "digits":
        data = _digits(net)
    else:
        data = _npz(Path(name_or_path), net)
    _check_classes(data, net)
    return Dataset(data.name, data.X_train.astype(dtype), data.y_train,
                   data.X_test.astype(dtype), data.y_test)


def _digits(net: Network) -> Dataset:
    try:
        import sklearn  # noqa: F401  (first, so that a missing package is told apart)
        from sklearn.datasets import load_digits
    except ImportError:
        raise TrainError(f"the digits data set comes with scikit-learn, which is not "
                         f"installed: {INSTALL_HINT} (or pip install scikit-learn)") from None
    if net.input != (1, 8, 8):
        raise TrainError(f"digits are 1x8x8 images; the network's input is "
                         f"{'x'.join(map(str, net.input))} (start it with '1x8x8 | ...')")
    digits = load_digits()
    X = (np.asarray(digits.data, dtype=np.float64) / 16.0).reshape(-1, 1, 8, 8)
    y = np.asarray(digits.target, dtype=np.int64)
    train_idx, test_idx = split_indices(y)
    return Dataset("digits", X[train_idx], y[train_idx], X[test_idx], y[test_idx])


#: The two layouts an .npz file may have.
NPZ_SPLIT = ("X_train", "y_train", "X_test", "y_test")
NPZ_WHOLE = ("X", "y")


def _npz(path: Path, net: Network) -> Dataset:
    where = f"data file {str(path)!r}"
    if not path.exists():
        raise TrainError(f"{where}: no such file (expected 'digits' or an .npz file)")
    if path.is_dir():
        raise TrainError(f"{where} is a folder; expected an .npz file")
    # Not NumPy's format, a damaged archive, or object arrays (refused: no pickles).
    unreadable = (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error)
    try:
        archive = np.load(path, allow_pickle=False)
    except unreadable as error:
        raise TrainError(f"{where}: cannot be read as an .npz archive ({error})") from None
    if not hasattr(archive, "files"):
        raise TrainError(f"{where}: holds one array (.npy); expected an .npz archive of the "
                         f"arrays {', '.join(NPZ_SPLIT)} or {', '.join(NPZ_WHOLE)}")
    with archive:
        try:
            arrays = _npz_arrays(archive, where)
        except unreadable as error:
            raise TrainError(f"{where}: cannot be read as an .npz archive of numeric arrays "
                             f"({error})") from None
    if len(arrays) == 2:
        X = _npz_images(arrays["X"], net, where, "X")
        y = _npz_labels(arrays["y"], len(X), where, "y")
        train_idx, test_idx = split_indices(y)
        if not len(test_idx) or not len(train_idx):
            raise TrainError(f"{where}: {len(y)} samples are too few to hold {HELD_OUT:.0%} "
                             f"of a class out; give X_train, y_train, X_test, y_test instead")
        return Dataset(str(path), X[train_idx], y[train_idx], X[test_idx], y[test_idx])
    parts = []
    for x_key, y_key in (("X_train", "y_train"), ("X_test", "y_test")):
        X = _npz_images(arrays[x_key], net, where, x_key)
        parts += [X, _npz_labels(arrays[y_key], len(X), where, y_key, x_key)]
    return Dataset(str(path), *parts)


def _npz_arrays(archive: Any, where: str) -> dict[str, np.ndarray]:
    keys = set(archive.files)
    wanted = NPZ_SPLIT if "X_train" in keys or "X" not in keys else NPZ_WHOLE
    missing = [key for key in wanted if key not in keys]
    if missing:
        raise TrainError(f"{where}: missing array {missing[0]!r}; expected the arrays "
                         f"{', '.join(NPZ_SPLIT)} (a split of your own) or {', '.join(NPZ_WHOLE)} "
                         f"(split {HELD_OUT:.0%} held out), found {sorted(keys) or 'none'}")
    return {key: archive[key] for key in wanted}


def _npz_images(X: np.ndarray, net: Network, where: str, key: str) -> np.ndarray:
    c, h, w = net.input
    shape = "(N, " + ", ".join(map(str, net.input)) + ")" + (f" or (N, {h}, {w})" if c == 1
                                                            else "")
    if X.dtype.kind not in "fiu":
        raise TrainError(f"{where}: {key} has dtype {X.dtype}; expected real numbers "
                         f"(float or integer)")
    given = X.shape
    if c == 1 and X.ndim == 3:  # one-channel images without the channel axis
        X = X[:, None]
    if X.ndim != 4 or X.shape[1:] != tuple(net.input) or X.shape[0] < 1:
        raise TrainError(f"{where}: {key} has shape {given}; the network's input is "
                         f"{'x'.join(map(str, net.input))}, so expected {shape} with N >= 1")
    X = X.astype(np.float64)
    if not np.isfinite(X).all():
        raise TrainError(f"{where}: {key} holds NaN or infinite values")
    return X


def _npz_labels(y: np.ndarray, n: int, where: str, key: str, x_key: str = "X") -> np.ndarray:
    if y.dtype.kind not in "iu":
        raise TrainError(f"{where}: {key} has dtype {y.dtype}; expected integer class "
                         f"labels (e.g. y.astype(np.int64))")
    if y.shape != (n,):
        raise TrainError(f"{where}: {key} has shape {y.shape}; expected ({n},), one label "
                         f"per sample of {x_key}")
    if y.min() < 0:
        raise TrainError(f"{where}: {key} holds the label {y.min()}; labels are 0..K-1")
    return y.astype(np.int64)


def _check_classes(data: Dataset, net: Network) -> None:
    """The network's output must score every label: a vector of at least max label + 1."""
    top = int(max(data.y_train.max(), data.y_test.max()))
    out = net.output_shape
    if len(out) != 1:
        raise TrainError(f"the network's output has shape {out}; {net.loss} on class labels "
                         f"needs a vector of class scores (end with 'flatten | dense K')")
    if out[0] <= top:
        raise TrainError(f"{data.name} has labels 0..{top}, but the network's output has "
                         f"{out[0]} element(s); end it with 'dense {top + 1}' or more")


def targets(net: Network | str, labels: np.ndarray, dtype: Any) -> np.ndarray:
    """What ``net``'s loss compares the output with: the labels (``softmax-ce``, int64) or
    their one-hot rows of ``dtype`` (``l2``, ``bce``)."""
    net, dtype = _network(net), _dtype(dtype)
    labels = np.asarray(labels)
    out = net.output_shape
    if labels.dtype.kind not in "iu" or labels.ndim != 1:
        raise TrainError(f"labels: expected a vector of integer class labels, got shape "
                         f"{labels.shape} of dtype {labels.dtype}")
    low, high = labels.min(initial=0), labels.max(initial=0)
    if len(out) != 1 or low < 0 or high >= out[0]:
        raise TrainError(f"labels from {low} to {high}: "
                         f"the network's output {out} must be a vector with one element per "
                         f"class for {net.loss}")
    if net.loss == "softmax-ce":
        return labels.astype(np.int64)
    return np.eye(out[0], dtype=dtype)[labels]


# -- training ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Epoch:
    """One row of a training history: the losses and accuracies after epoch ``epoch`` (from
    1), the learning rate it used, and the seconds since training started."""

    epoch: int
    train_loss: float
    train_accuracy: float
    test_loss: float
    test_accuracy: float
    seconds: float
    lr: float


@dataclass
class History:
    """What ``train`` did: its settings, a row per epoch, and the final parameters."""

    network: str
    data: str
    dtype: str
    target: str
    batch: int
    lr: float
    schedule: str
    seed: int
    rows: list[Epoch] = field(default_factory=list)
    params: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def final(self) -> Epoch:
        """The last epoch's row."""
        if not self.rows:
            raise TrainError("the history has no epochs")
        return self.rows[-1]


def _check_settings(epochs: Any, batch: Any, lr: Any, schedule: Any, seed: Any) -> None:
    def whole(value: Any) -> bool:
        return isinstance(value, (int, np.integer)) and not isinstance(value, bool)

    if not whole(epochs) or epochs < 1:
        raise TrainError(f"epochs={epochs!r}: expected a positive integer")
    if not whole(batch) or batch < 1:
        raise TrainError(f"batch={batch!r}: expected a positive integer (samples per step)")
    if isinstance(lr, bool) or not isinstance(lr, (int, float, np.integer, np.floating)) \
            or not math.isfinite(float(lr)) or lr <= 0:
        raise TrainError(f"lr={lr!r}: expected a positive finite learning rate")
    if schedule not in SCHEDULES:
        raise TrainError(f"schedule={schedule!r}: expected one of {', '.join(SCHEDULES)}")
    if not whole(seed) or seed < 0:
        raise TrainError(f"seed={seed!r}: expected a non-negative integer")


def rate(lr: float, epoch: int, epochs: int, schedule: str = DEFAULT_SCHEDULE) -> float:
    """The learning rate of epoch ``epoch`` (from 1) of ``epochs``."""
    if schedule == "constant":
        return float(lr)
    return float(lr) * (1.0 - (epoch - 1) / epochs)


def _load_module(load: LoadFn | None, net: Network, target: str, dtype: str) -> Any:
    if load is None:
        codegen = importlib.import_module("codegen")
        load = getattr(codegen, "load_network", None)
        if load is None:
            raise TrainError("codegen.load_network is not available in this installation, "
                             "so no network module can be built")
    return load(net, target, dtype)


def _measure(module: Any, X: np.ndarray, T: np.ndarray, labels: np.ndarray,
             params: Mapping[str, np.ndarray]) -> tuple[float, float]:
    """``(loss, accuracy)`` of a whole set, in chunks of ``EVAL_CHUNK`` samples; the loss is
    the mean over samples, so each chunk's mean is weighted by its size."""
    total, right = 0.0, 0
    for start in range(0, len(X), EVAL_CHUNK):
        part = slice(start, start + EVAL_CHUNK)
        n = len(X[part])
        total += float(module.loss(X[part], T[part], params)) * n
        scores = np.asarray(module.predict(X[part], params)).reshape(n, -1)
        right += int((scores.argmax(axis=1) == labels[part]).sum())
    return total / len(X), right / len(X)


def _epoch(module: Any, X: np.ndarray, T: np.ndarray, params: dict[str, np.ndarray],
           lr: float, batch: int, order: np.ndarray,
           tick: Callable[[int, int, float], None]) -> float:
    """One pass of SGD steps over ``X`` in ``order``; the mean of the batches' losses."""
    total = -(-len(X) // batch)
    losses = []
    for done, start in enumerate(range(0, len(X), batch), start=1):
        pick = order[start:start + batch]
        loss = float(module.step(X[pick], T[pick], params, lr))
        if not math.isfinite(loss):
            raise DivergedError(f"the loss became {loss} in batch {done} of {total}: lr={lr:g} "
                             f"is too large for this network and data; try a smaller lr")
        losses.append(loss)
        tick(done, total, sum(losses) / len(losses))
    return sum(losses) / len(losses)


def train(net: Network | str, data: Dataset | str, epochs: int = DEFAULT_EPOCHS,
          batch: int = DEFAULT_BATCH, lr: float = DEFAULT_LR, dtype: str = "float32",
          target: str = "openmp", seed: int = 0, load: LoadFn | None = None,
          progress: ProgressFn | None = None, schedule: str = DEFAULT_SCHEDULE) -> History:
    """Train ``net`` on ``data`` (a ``Dataset``, or what ``load_dataset`` reads) with minibatch
    SGD through the module ``load(net, target, dtype)`` gives (``codegen.load_network`` when
    ``load`` is None, looked up at call time); see the module docstring.

    Raises:
        TrainError: a setting out of range (naming it), data that does not fit, or a loss
            that became NaN or infinite (the learning rate too large).
    """
    net, np_dtype = _network(net), _dtype(dtype)
    _check_settings(epochs, batch, lr, schedule, seed)
    if not isinstance(data, Dataset):
        data = load_dataset(data, np_dtype, net)
    X = np.ascontiguousarray(data.X_train, dtype=np_dtype)
    X_test = np.ascontiguousarray(data.X_test, dtype=np_dtype)
    T, T_test = targets(net, data.y_train, np_dtype), targets(net, data.y_test, np_dtype)
    module = _load_module(load, net, target, np_dtype.name)
    # Contiguous arrays of the module's dtype: step updates them in place, without copies.
    params = {name: np.ascontiguousarray(value, dtype=np_dtype)
              for name, value in net.init_params(seed).items()}
    history = History(net.text(), data.name, np_dtype.name, target, int(batch), float(lr),
                      schedule, int(seed), params=params)
    order_rng = np.random.default_rng([seed, 1])
    report = progress or (lambda *_: None)
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        epoch_lr = rate(lr, epoch, epochs, schedule)
        _epoch(module, X, T, params, epoch_lr, batch, order_rng.permutation(len(X)),
               lambda done, total, loss, e=epoch: report(e, done, total, loss, None))
        train_loss, train_acc = _measure(module, X, T, data.y_train, params)
        test_loss, test_acc = _measure(module, X_test, T_test, data.y_test, params)
        row = Epoch(epoch, train_loss, train_acc, test_loss, test_acc,
                    time.perf_counter() - start, epoch_lr)
        history.rows.append(row)
        report(epoch, -(-len(X) // batch), -(-len(X) // batch), train_loss, row)
    return history


# -- output -----------------------------------------------------------------------------------


def csv_text(history: History) -> str:
    """The history as CSV: a header of ``CSV_COLUMNS`` and a row per epoch (floats written
    in full, as Python's repr)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for row in history.rows:
        writer.writerow([repr(getattr(row, column)) for column in CSV_COLUMNS])
    return buffer.getvalue()


def write_output(path: str | Path, data: str | bytes) -> Path:
    """Write ``data`` to ``path`` whole or not at all (``codegen.paths.write_output``: a
    temporary file beside it, then a rename); an OSError becomes a one-line ``TrainError``
    naming the path."""
    from .paths import write_output as write_whole

    return write_whole(path, data, TrainError)


def write_csv(history: History, path: str | Path) -> Path:
    """Write ``csv_text(history)`` to ``path``, whole or not at all (a temporary file, then a
    rename)."""
    return write_output(path, csv_text(history))


def require_matplotlib() -> None:
    """Raise ``TrainError`` with the install hint when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError:
        raise TrainError(f"the loss/accuracy plot needs matplotlib, which is not installed: "
                         f"{INSTALL_HINT} (or pip install matplotlib)") from None


def plot_png(history: History) -> bytes:
    """The loss (left) and accuracy (right) of both sets per epoch, as PNG bytes.

    Drawn on a ``Figure`` with the Agg canvas directly, so neither pyplot's global state nor
    the user's matplotlib backend is touched."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    epochs = [row.epoch for row in history.rows]
    figure = Figure(figsize=(10, 4), layout="constrained")
    FigureCanvasAgg(figure)
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    loss_name = history.network.rsplit("|", 1)[-1].strip()
    for axes, what, label in ((loss_axes, "loss", f"loss ({loss_name})"),
                              (accuracy_axes, "accuracy", "accuracy")):
        axes.plot(epochs, [getattr(row, f"train_{what}") for row in history.rows],
                  marker=".", label="training set")
        axes.plot(epochs, [getattr(row, f"test_{what}") for row in history.rows],
                  marker=".", label="held out")
        axes.set_xlabel("epoch")
        axes.xaxis.set_major_locator(MaxNLocator(integer=True))
        axes.set_ylabel(label)
        axes.grid(True, alpha=0.3)
        axes.legend()
    figure.suptitle(f"{history.network}\n{history.data}, {history.dtype}, batch "
                    f"{history.batch}, lr {history.lr:g} ({history.schedule})", fontsize=9)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=100)
    return buffer.getvalue()


def write_plot(history: History, path: str | Path) -> Path:
    """Write ``plot_png(history)`` to ``path``, whole or not at all.

    Raises:
        TrainError: matplotlib is not installed (the message says how to install it), or
            the file cannot be written.
    """
    return write_output(path, plot_png(history))
