"""``codegen.train`` and ``corrgen train``: the data, the SGD loop, the outputs, the command.

The network module is a parameter of the training (``load``); these tests pass the NumPy
reference of DESIGN.md's "Networks" (``derive.reference.network``), the oracle every
generated network module is checked against, which has the same four methods.
"""

from __future__ import annotations

import csv
import io
import math
import sys

import numpy as np
import pytest

import codegen
from codegen import train as training
from codegen.cli import main
from codegen.cli_train import EpochBar
from derive import Network, reference

pytest.importorskip("sklearn")
from sklearn.datasets import load_digits  # noqa: E402

NET = Network.parse(training.DEFAULT_NETWORK)
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def reference_module(net, target, dtype):
    return reference.network(net)


@pytest.fixture(scope="module")
def digits():
    return training.load_dataset("digits", "float32", NET)


class Recorder:
    """The reference module, recording what every step was given."""

    def __init__(self, net, loss=None):
        self.ref, self.steps, self.fixed_loss = reference.network(net), [], loss

    def step(self, X, T, params, lr):
        self.steps.append((X.copy(), T.copy(), lr))
        loss = self.ref.step(X, T, params, lr)
        return loss if self.fixed_loss is None else self.fixed_loss

    def loss(self, X, T, params):
        return self.ref.loss(X, T, params)

    def predict(self, X, params):
        return self.ref.predict(X, params)


# -- data ---------------------------------------------------------------------------------------


def test_digits_are_scaled_shaped_and_split(digits):
    sk = load_digits()
    train_idx, test_idx = training.split_indices(sk.target)
    assert digits.X_train.shape == (len(train_idx), 1, 8, 8)
    assert digits.X_test.shape == (len(test_idx), 1, 8, 8)
    assert len(train_idx) + len(test_idx) == len(sk.target) == 1797
    assert digits.X_train.dtype == np.float32 and digits.y_train.dtype == np.int64
    # The pixels are scikit-learn's 0..16 divided by 16, in the split's order.
    np.testing.assert_array_equal(digits.X_train.reshape(-1, 64) * 16, sk.data[train_idx])
    np.testing.assert_array_equal(digits.X_test.reshape(-1, 64) * 16, sk.data[test_idx])
    np.testing.assert_array_equal(digits.y_test, sk.target[test_idx])
    assert digits.X_train.min() == 0 and digits.X_train.max() == 1
    assert training.load_dataset("digits", "float64", NET).X_train.dtype == np.float64


def _documented_split(labels, held_out=0.25, seed=0):
    """The module docstring's recipe, written out again: per class in order of label, the
    class's indices permuted by one RandomState(seed), the first round(held_out * count)
    held out."""
    rng = np.random.RandomState(seed)
    test = set()
    for label in sorted(set(labels.tolist())):
        members = [i for i, value in enumerate(labels) if value == label]
        order = rng.permutation(len(members))
        count = int(held_out * len(members) + 0.5)
        test |= {members[k] for k in order[:count]}
    return sorted(set(range(len(labels))) - test), sorted(test)


def test_the_split_is_fixed_disjoint_and_stratified():
    labels = load_digits().target
    np.random.seed(12345)  # the global state must not matter
    np.random.random(7)
    train_idx, test_idx = training.split_indices(labels)
    again = training.split_indices(labels)
    np.testing.assert_array_equal(train_idx, again[0])
    np.testing.assert_array_equal(test_idx, again[1])
    assert not set(train_idx) & set(test_idx)
    assert sorted([*train_idx, *test_idx]) == list(range(len(labels)))
    expected_train, expected_test = _documented_split(labels)
    assert list(train_idx) == expected_train and list(test_idx) == expected_test
    for label, count in enumerate(np.bincount(labels)):
        held = int((labels[test_idx] == label).sum())
        assert held == math.floor(count / 4 + 0.5)


def test_digits_need_scikit_learn(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(training.TrainError, match=r"pip install 'corrgen\[train\]'"):
        training.load_dataset("digits", "float32", NET)


def test_digits_need_an_8x8_input_and_ten_outputs():
    with pytest.raises(training.TrainError, match="1x8x8.*2x8x8"):
        training.load_dataset("digits", "float32", "2x8x8 | flatten | dense 10 | softmax-ce")
    with pytest.raises(training.TrainError, match="labels 0..9.*8 element"):
        training.load_dataset("digits", "float32", "1x8x8 | flatten | dense 8 | softmax-ce")
    with pytest.raises(training.TrainError, match=r"output has shape \(2, 6, 6\)"):
        training.load_dataset("digits", "float32", "1x8x8 | conv 2x3x3 | l2")


def test_npz_with_a_split_of_its_own(tmp_path):
    rng = np.random.default_rng(1)
    X_train, X_test = rng.integers(0, 255, (20, 8, 8), dtype=np.uint8), rng.random((6, 8, 8))
    y_train, y_test = rng.integers(0, 10, 20), rng.integers(0, 10, 6).astype(np.int32)
    path = tmp_path / "d.npz"
    np.savez(path, X_train=X_train, y_train=y_train, X_test=X_test, y_test=y_test)
    data = training.load_dataset(path, "float64", NET)
    # (N, H, W) gains the channel axis; values are used as given, in the asked dtype.
    np.testing.assert_array_equal(data.X_train, X_train[:, None].astype(np.float64))
    np.testing.assert_array_equal(data.X_test, X_test[:, None])
    assert data.y_test.dtype == np.int64
    np.testing.assert_array_equal(data.y_test, y_test)
    assert data.X_train.dtype == np.float64 and data.name == str(path)


def test_npz_of_x_and_y_is_split_as_the_digits(tmp_path):
    rng = np.random.default_rng(2)
    X, y = rng.random((80, 1, 8, 8)), np.repeat(np.arange(10), 8)
    path = tmp_path / "whole.npz"
    np.savez(path, X=X, y=y)
    data = training.load_dataset(str(path), "float32", NET)
    train_idx, test_idx = _documented_split(y)
    np.testing.assert_array_equal(data.X_train, X[train_idx].astype(np.float32))
    np.testing.assert_array_equal(data.y_test, y[test_idx])
    assert len(data.y_test) == 20  # 2 of every 8


@pytest.mark.parametrize("arrays, message", [
    ({"X_train": np.zeros((4, 8, 8)), "y_train": np.zeros(4, int), "X_test": np.zeros((2, 8, 8))},
     r"missing array 'y_test'"),
    ({"X": np.zeros((4, 8, 8))}, r"missing array 'y'"),
    ({"images": np.zeros(3)}, r"missing array 'X_train'.*found \['images'\]"),
    ({"X": np.zeros((4, 3, 8, 8)), "y": np.zeros(4, int)},
     r"X has shape \(4, 3, 8, 8\); the network's input is 1x8x8, so expected \(N, 1, 8, 8\) "
     r"or \(N, 8, 8\)"),
    ({"X": np.zeros((4, 7, 8)), "y": np.zeros(4, int)}, r"X has shape \(4, 7, 8\)"),
    ({"X": np.zeros((4, 8, 8), dtype=complex), "y": np.zeros(4, int)}, r"X has dtype complex"),
    ({"X": np.zeros((4, 8, 8)), "y": np.zeros(4)}, r"y has dtype float64; expected integer"),
    ({"X": np.zeros((4, 8, 8)), "y": np.zeros(5, int)}, r"y has shape \(5,\); expected \(4,\)"),
    ({"X": np.zeros((4, 8, 8)), "y": np.array([0, 1, -1, 2])}, r"y holds the label -1"),
    ({"X": np.full((4, 8, 8), np.nan), "y": np.zeros(4, int)}, r"X holds NaN"),
    ({"X": np.zeros((8, 8, 8)), "y": np.arange(8) % 2 + 10}, r"labels 0..11.*10 element"),
    ({"X_train": np.zeros((4, 8, 8)), "y_train": np.zeros(4, int),
      "X_test": np.zeros((2, 8, 8)), "y_test": np.zeros(3, int)},
     r"y_test has shape \(3,\); expected \(2,\), one label per sample of X_test"),
])
def test_npz_errors_name_the_file_the_array_and_the_rule(tmp_path, arrays, message):
    path = tmp_path / "bad.npz"
    np.savez(path, **arrays)
    with pytest.raises(training.TrainError, match=message) as info:
        training.load_dataset(path, "float32", NET)
    assert str(path) in str(info.value)


def test_npz_files_that_are_not_archives(tmp_path):
    with pytest.raises(training.TrainError, match="no such file"):
        training.load_dataset(tmp_path / "missing.npz", "float32", NET)
    np.save(tmp_path / "one.npy", np.zeros(3))
    with pytest.raises(training.TrainError, match=r"one array \(.npy\)"):
        training.load_dataset(tmp_path / "one.npy", "float32", NET)
    (tmp_path / "text.npz").write_text("not an archive")
    with pytest.raises(training.TrainError, match="cannot be read"):
        training.load_dataset(tmp_path / "text.npz", "float32", NET)
    np.savez(tmp_path / "objects.npz", X=np.array([None, 1], dtype=object), y=np.zeros(2, int))
    with pytest.raises(training.TrainError, match="cannot be read"):  # pickles are refused
        training.load_dataset(tmp_path / "objects.npz", "float32", NET)
    with pytest.raises(training.TrainError, match="is a folder"):
        training.load_dataset(tmp_path, "float32", NET)


def test_targets_per_loss():
    labels = np.array([3, 0, 9, 3])
    ce = training.targets(NET, labels, "float32")
    assert ce.dtype == np.int64 and list(ce) == [3, 0, 9, 3]
    l2 = training.targets("1x8x8 | flatten | dense 10 | l2", labels, "float64")
    one_hot = np.zeros((4, 10))
    for row, label in enumerate(labels):
        one_hot[row, label] = 1
    assert l2.dtype == np.float64
    np.testing.assert_array_equal(l2, one_hot)
    with pytest.raises(training.TrainError, match=r"output \(2, 6, 6\) must be a vector"):
        training.targets("1x8x8 | conv 2x3x3 | sigmoid | bce", labels, "float32")
    with pytest.raises(training.TrainError, match="labels: expected a vector of integer"):
        training.targets(NET, labels.astype(float), "float32")


# -- the training loop --------------------------------------------------------------------------


def test_one_full_batch_epoch_is_one_sgd_step(digits):
    """With the batch as large as the training set, one epoch is one step of plain gradient
    descent, whatever the order: p - lr * dJ/dp of the reference's gradients."""
    data = training.Dataset("digits", digits.X_train.astype(np.float64), digits.y_train,
                            digits.X_test.astype(np.float64), digits.y_test)
    history = training.train(NET, data, epochs=1, batch=len(data.y_train), lr=0.5,
                             dtype="float64", seed=3, load=reference_module,
                             schedule="constant")
    start = NET.init_params(3)
    _, grads = reference.network(NET).grads(data.X_train, data.y_train, start)
    for name, value in start.items():
        assert history.params[name].dtype == np.float64
        np.testing.assert_allclose(history.params[name], value - 0.5 * grads[name],
                                   rtol=1e-12, atol=1e-14)


def test_batches_cover_the_set_once_per_epoch_in_new_orders():
    n = 45
    X = (np.arange(n, dtype=np.float32) / n)[:, None, None, None] * np.ones((1, 1, 8, 8))
    y = np.arange(n) % 10
    data = training.Dataset("tagged", X.astype(np.float32), y, X[:5].astype(np.float32), y[:5])
    recorder = Recorder(NET)
    training.train(NET, data, epochs=3, batch=10, lr=0.2, load=lambda *a: recorder, seed=1)
    sizes = [len(x) for x, _, _ in recorder.steps]
    assert sizes == [10, 10, 10, 10, 5] * 3  # the last, partial batch included
    orders = []
    for epoch in range(3):
        batches = recorder.steps[5 * epoch:5 * epoch + 5]
        seen = [int(round(v * n)) for x, _, _ in batches for v in x[:, 0, 0, 0]]
        assert sorted(seen) == list(range(n))
        labels = [t for _, T, _ in batches for t in T]
        assert labels == [i % 10 for i in seen]  # each sample with its own label
        orders.append(seen)
    assert orders[0] != orders[1] != orders[2]
    # Linear decay: lr, then lr * 2/3, then lr / 3.
    lrs = [lr for _, _, lr in recorder.steps[::5]]
    np.testing.assert_allclose(lrs, [0.2, 0.2 * 2 / 3, 0.2 / 3])


def test_rows_are_the_losses_and_accuracies_of_the_whole_sets(digits, monkeypatch):
    monkeypatch.setattr(training, "EVAL_CHUNK", 100)  # several chunks, the last partial
    calls = []
    history = training.train(NET, digits, epochs=2, batch=64, lr=0.1, load=reference_module,
                             progress=lambda *args: calls.append(args))
    ref = reference.network(NET)
    final = history.final
    assert [row.epoch for row in history.rows] == [1, 2]
    for X, y, loss, accuracy in ((digits.X_train, digits.y_train, final.train_loss,
                                  final.train_accuracy),
                                 (digits.X_test, digits.y_test, final.test_loss,
                                  final.test_accuracy)):
        assert loss == pytest.approx(ref.loss(X, y, history.params), rel=1e-5)
        assert accuracy == np.mean(ref.predict(X, history.params).argmax(axis=1) == y)
    assert 0 < history.rows[0].seconds <= final.seconds
    assert all(p.dtype == np.float32 and p.flags.c_contiguous for p in history.params.values())
    # Progress: every batch of each epoch, then the epoch's row.
    batches = -(-len(digits.y_train) // 64)
    assert [c[1] for c in calls if c[4] is None] == list(range(1, batches + 1)) * 2
    assert [c[4] for c in calls if c[4] is not None] == history.rows


def test_training_is_seeded(digits):
    def run(seed):
        return training.train(NET, digits, epochs=1, batch=128, lr=0.1, seed=seed,
                              load=reference_module)

    first, again, other = run(4), run(4), run(5)
    for name in first.params:
        np.testing.assert_array_equal(first.params[name], again.params[name])
    assert not np.array_equal(first.params["4.weight"], other.params["4.weight"])


def test_a_short_run_learns(digits):
    """Five epochs take the held-out accuracy from chance to over 80 % (the seeds 0-5 gave
    85-92 %), and the loss well below its start."""
    start = reference.network(NET).loss(digits.X_train, digits.y_train, NET.init_params(0))
    history = training.train(NET, digits, epochs=5, batch=32, lr=0.1, load=reference_module)
    assert history.final.test_accuracy > 0.8
    assert history.final.train_loss < start / 3


def test_the_default_command_reaches_97_percent_and_draws_its_curve(tmp_path, capsys):
    """``corrgen train`` as a newcomer runs it: the example network's generated module on the
    digits, the default settings (measured at 97.8-98.4 % held out for the initialisation
    seeds 0-11), the CSV's last row and the PNG."""
    out = tmp_path / "run"
    assert main(["train", "--out", str(out)]) == 0
    assert "held-out accuracy after 60 epochs" in capsys.readouterr().out
    with open(out / "train.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == training.DEFAULT_EPOCHS
    assert float(rows[-1]["test_accuracy"]) >= 0.97, rows[-1]
    assert (out / "train.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_other_losses_train(tmp_path):
    net = Network.parse("1x8x8 | conv 4x3x3 | sigmoid | flatten | dense 10 | sigmoid | bce")
    data = training.load_dataset("digits", "float64", net)
    history = training.train(net, data, epochs=1, batch=64, lr=0.05, dtype="float64",
                             load=reference_module)
    one_hot = training.targets(net, data.y_test, "float64")
    expected = reference.network(net).loss(data.X_test, one_hot, history.params)
    assert history.final.test_loss == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize("setting, message", [
    ({"epochs": 0}, "epochs=0"), ({"epochs": 2.5}, "epochs=2.5"), ({"batch": 0}, "batch=0"),
    ({"lr": -0.1}, "lr=-0.1"), ({"lr": math.nan}, "lr=nan"), ({"lr": True}, "lr=True"),
    ({"schedule": "cosine"}, "schedule='cosine'"), ({"seed": -1}, "seed=-1"),
    ({"dtype": "float16"}, "dtype='float16'"),
])
def test_bad_settings_are_named(digits, setting, message):
    settings = {"epochs": 1, "batch": 8, "lr": 0.1, **setting}
    with pytest.raises(training.TrainError, match=message.replace(".", r"\.")):
        training.train(NET, digits, load=reference_module, **settings)


def test_a_diverging_loss_stops_the_training(digits):
    with pytest.raises(training.DivergedError, match=r"loss became nan in batch 1.*lr=0\.1"):
        training.train(NET, digits, epochs=1, batch=64, lr=0.1,
                       load=lambda *a: Recorder(NET, loss=math.nan))


def test_the_module_factory_is_looked_up_when_training(digits, monkeypatch):
    seen = []

    def factory(net, target, dtype):
        seen.append((net, target, dtype))
        return reference.network(net)

    monkeypatch.setattr(codegen, "load_network", factory, raising=False)
    training.train(NET, digits, epochs=1, batch=256, lr=0.1, dtype="float64", target="cuda")
    assert seen == [(NET, "cuda", "float64")]
    monkeypatch.setattr(codegen, "load_network", None, raising=False)
    with pytest.raises(training.TrainError, match="codegen.load_network"):
        training.train(NET, digits, epochs=1)


# -- outputs ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def history(digits):
    return training.train(NET, digits, epochs=3, batch=64, lr=0.1, load=reference_module)


def test_csv_holds_every_row(history, tmp_path):
    path = training.write_csv(history, tmp_path / "h.csv")
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert list(rows[0]) == ["epoch", "train_loss", "train_accuracy", "test_loss",
                             "test_accuracy", "seconds"]
    assert len(rows) == 3
    for row, epoch in zip(rows, history.rows):
        assert int(row["epoch"]) == epoch.epoch
        for column in ("train_loss", "train_accuracy", "test_loss", "test_accuracy",
                       "seconds"):
            assert float(row[column]) == getattr(epoch, column)  # written in full
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.csv"]  # no temporary file left


def test_png_is_a_png(history, tmp_path):
    path = training.write_plot(history, tmp_path / "h.png")
    assert path.read_bytes().startswith(PNG_SIGNATURE)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["h.png"]


def test_a_failed_write_leaves_nothing(history, tmp_path):
    target = tmp_path / "missing-folder" / "h.csv"
    with pytest.raises(training.TrainError, match="cannot write.*missing-folder"):
        training.write_csv(history, target)
    assert list(tmp_path.iterdir()) == []


def test_the_plot_needs_matplotlib(history, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    with pytest.raises(training.TrainError, match=r"matplotlib.*pip install 'corrgen\[train\]'"):
        training.write_plot(history, tmp_path / "h.png")
    assert list(tmp_path.iterdir()) == []


# -- the command --------------------------------------------------------------------------------


@pytest.fixture
def reference_loader(monkeypatch):
    """The commands below run on the NumPy reference, which needs no build."""
    monkeypatch.setattr(codegen, "load_network", lambda net, target, dtype, **_: reference_module(
        net, target, dtype), raising=False)


def test_cli_trains_and_writes_both_files(reference_loader, tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--out", str(out), "--batch", "64"]) == 0
    stdout, stderr = capsys.readouterr()
    assert "training 1x8x8 | conv 6x3x3 pad 1" in stdout and "epochs" in stdout
    assert "epoch 1/1  train loss" in stdout and "held-out accuracy" in stdout
    assert f"wrote {out / 'train.csv'}" in stdout and f"wrote {out / 'train.png'}" in stdout
    assert "epoch 1/1: 22/22 batches" in stderr  # not a terminal: one line per epoch
    with open(out / "train.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert len(rows) == 1
    accuracy = float(rows[0]["test_accuracy"])
    assert f"held-out accuracy after 1 epochs: {100 * accuracy:.2f} %" in stdout
    assert (out / "train.png").read_bytes().startswith(PNG_SIGNATURE)


def test_cli_writes_into_its_own_folder_by_default(reference_loader, tmp_path, monkeypatch,
                                                   capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--epochs", "1", "--batch", "256", "--no-plot"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corrgen-train"]
    assert sorted(p.name for p in (tmp_path / "corrgen-train").iterdir()) == ["train.csv"]
    stdout = capsys.readouterr().out
    assert "results in corrgen-train/" in stdout and "wrote corrgen-train/train.csv" in stdout


@pytest.mark.parametrize("options, message", [
    (["--epochs", "0"], "argument --epochs: '0': expected a positive integer"),
    (["--epochs", "ten"], "argument --epochs: 'ten'"),
    (["--batch", "-3"], "argument --batch: '-3'"),
    (["--lr", "-1"], "argument --lr: '-1': expected a positive learning rate"),
    (["--lr", "inf"], "argument --lr: 'inf'"),
    (["--seed", "-1"], "argument --seed: '-1'"),
    (["--dtype", "float16"], "argument --dtype: invalid choice"),
    (["--data", "missing.npz"], "--data: data file 'missing.npz': no such file"),
    (["--network", "1x8x8 | conv 6x3x3 | softmax-ce"], "--network: "),
    (["--network", "1x9x9 | flatten | dense 10 | softmax-ce"],
     "--data: digits are 1x8x8 images; the network's input is 1x9x9"),
])
def test_cli_errors_name_the_option(reference_loader, tmp_path, monkeypatch, capsys, options,
                                    message):
    monkeypatch.chdir(tmp_path)
    assert _status(["train", *options]) == 2
    assert message in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []  # nothing written


def _status(argv):
    """main's exit status, also when argparse refuses an option (it exits)."""
    try:
        return main(argv)
    except SystemExit as exit:
        return exit.code


def test_cli_out_must_be_a_folder(reference_loader, tmp_path, capsys):
    (tmp_path / "file").write_text("")
    assert main(["train", "--out", str(tmp_path / "file"), "--epochs", "1"]) == 2
    assert "--out" in capsys.readouterr().err


def test_cli_without_matplotlib(reference_loader, tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    out = tmp_path / "run"
    assert main(["train", "--epochs", "1", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "pip install 'corrgen[train]'" in err and "--no-plot" in err
    assert not out.exists()
    assert main(["train", "--epochs", "1", "--batch", "256", "--out", str(out),
                 "--no-plot"]) == 0
    assert sorted(p.name for p in out.iterdir()) == ["train.csv"]


def test_cli_names_lr_when_the_loss_diverges(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(codegen, "load_network",
                        lambda *a, **_: Recorder(NET, loss=math.inf), raising=False)
    out = tmp_path / "run"
    assert main(["train", "--lr", "5", "--out", str(out)]) == 2
    assert "--lr 5: the loss became inf" in capsys.readouterr().err
    assert not out.exists()


def test_the_bar_redraws_in_place_on_a_terminal():
    class Terminal(io.StringIO):
        def isatty(self):
            return True

    stream = Terminal()
    bar = EpochBar(2, stream)
    bar(1, 1, 2, 0.75, None)
    bar(1, 2, 2, 0.5, None)
    row = training.Epoch(1, 0.5, 0.9, 0.6, 0.8, 1.0, 0.3)
    bar(1, 2, 2, 0.5, row)
    text = stream.getvalue()
    assert "\n" not in text and text.startswith("\repoch 1/2 [")
    assert "1/2 batches, loss 0.7500" in text and "2/2 batches, loss 0.5000" in text
    assert text.endswith("\r\033[K")  # cleared for the epoch's own line


def test_corrgen_help_lists_train(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    assert "corrgen train --epochs 20" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    assert "examples:\n  corrgen train  " in out and "X_train, y_train, X_test, y_test" in out
    assert f"(default {training.DEFAULT_EPOCHS})" in out and "DESIGN.md" not in out
