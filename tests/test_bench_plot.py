"""corrgen bench --plot: the bench records drawn as bars (codegen.bench_plot).

The records come from the bench (or its --json file); the checks read the drawn artists
back (a rectangle's width, a whisker's ends, the text beside a bar, the PNG's pixels) and
compare them with the records, never with numbers the plot module computed itself.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

import codegen
from codegen import bench, bench_network
from codegen import bench_plot as bp
from codegen.cli import main
from derive import LayerSpec, Network, reference

pytest.importorskip("matplotlib")

SMALL = "1x6x6 | conv 2x3x3 pad 1 | relu | maxpool 2 | flatten | dense 3 | softmax-ce"
TINY = ["--input", "3x3", "--kernel", "2x2"]
PEERS = ("corrgen", "numpy", "torch")


def _drawn(fig):
    """Every bar's rectangle by its gid (panel|group|peer)."""
    return {p.get_gid(): p for axes in fig.axes for p in axes.patches if p.get_gid()}


def _whiskers(fig):
    """Each error bar's (left, right, y), read from the drawn line segments."""
    ends = []
    for axes in fig.axes:
        for container in axes.containers:
            for collection in getattr(container, "lines", ((), (), ()))[2]:
                for (x0, y0), (x1, _) in collection.get_segments():
                    ends.append((x0, x1, y0))
    return ends


def _center(rect):
    return rect.get_y() + rect.get_height() / 2


def _text_beside(rect):
    """The text drawn on the bar's row, right of its end."""
    axes = rect.axes
    found = [t for t in axes.texts if abs(t.get_position()[1] - _center(rect)) < 1e-9
             and t.get_position()[0] > rect.get_width()]
    assert len(found) == 1, [t.get_text() for t in found]
    return found[0].get_text()


# -- the records drawn --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def layer_document():
    """A bench of two tiny layers in both dtypes, through its JSON text, as --json saves it."""
    rows = []
    for name, spec in (("A", LayerSpec(input=(1, 3, 3), kernel=(1, 1, 2, 2))),
                       ("", LayerSpec(input=(2, 5, 5), kernel=(2, 2, 3, 3), bias=False))):
        for dtype in ("float32", "float64"):
            module = codegen.load(spec, "openmp", dtype)
            rows += bench.bench_module(module, 2, name, runs=3, span_s=0)  # drawn, not judged
    return json.loads(bench.to_json(rows))


def test_summarize_quartiles_are_numpys_percentiles():
    rng = np.random.default_rng(4)
    times = {"a": list(rng.uniform(1e-6, 1e-3, 7)), "b": list(rng.uniform(1e-6, 1e-3, 10))}
    median, quartiles = bench.summarize(times)
    for who, t in times.items():
        assert median[who] == pytest.approx(np.median(t) * 1e6, rel=1e-12)
        assert quartiles[who] == pytest.approx(tuple(np.percentile(t, [25, 75]) * 1e6),
                                               rel=1e-12)
    assert bench.summarize({"one": [2e-6]})[1] == {"one": (2.0, 2.0)}


def test_bar_lengths_are_the_records_medians(layer_document):
    rows = layer_document["rows"]
    fig = bp.figure(layer_document)
    drawn = _drawn(fig)
    with_torch = rows[0]["torch_us"] is not None
    assert len(drawn) == len(rows) * (3 if with_torch else 2)
    assert len(fig.axes) == 2  # one panel per layer
    checked = 0
    for r in rows:
        panel = f"{r['layer'] + ': ' if r['layer'] else ''}{r['spec']}, N={r['batch']}"
        for peer in PEERS:
            if r[f"{peer}_us"] is None:
                continue
            rect = drawn[f"{panel}|{r['name']} {r['dtype']}|{peer}"]
            assert rect.get_x() == 0 and rect.get_width() == r[f"{peer}_us"]
            q1, q3 = r["quartiles_us"][peer]
            assert q1 <= r[f"{peer}_us"] <= q3
            assert (q1, q3, _center(rect)) in [pytest.approx(w) for w in _whiskers(fig)]
            if peer != "corrgen":
                assert _text_beside(rect) == bp._ratio_text(r[f"vs_{peer}"])
            checked += 1
    assert checked == len(drawn)
    axes = fig.axes[0]
    assert axes.get_xscale() == "log"
    assert [t.get_text() for t in axes.get_yticklabels()] == [
        f"{name} {dtype}" for dtype in ("float32", "float64")
        for name in ("forward", "grad_input", "grad_weight", "grad_bias")]
    title = fig._suptitle.get_text()
    assert bench._cpu_name() in title and "float32, float64" in title
    assert f"{rows[0]['threads']} thread" in title


def test_records_without_quartiles_draw_without_whiskers(layer_document):
    rows = [{k: v for k, v in r.items() if k != "quartiles_us"}
            for r in layer_document["rows"]]
    fig = bp.figure({"machine": {}, "rows": rows})
    assert _whiskers(fig) == [] and len(_drawn(fig)) >= 2 * len(rows)


@pytest.mark.parametrize("suffix, magic", [(".png", b"\x89PNG\r\n\x1a\n"), (".pdf", b"%PDF"),
                                           (".svg", b"<?xml")])
def test_the_file_is_the_figure_in_the_suffixs_format(layer_document, tmp_path, suffix, magic):
    from matplotlib.image import imread

    path = bp.write_plot(layer_document, tmp_path / f"bench{suffix.upper()}")
    assert path.read_bytes().startswith(magic)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left
    if suffix == ".png":
        width, height = bp.figure(layer_document).get_size_inches() * bp.DPI
        pixels = imread(path)
        assert pixels.shape[:2] == (round(height), round(width))
        assert pixels.std() > 0.05  # something is drawn


def test_legend_falls_back_into_the_first_panel(layer_document, monkeypatch):
    """matplotlib before 3.7 cannot place a figure legend outside the panels."""
    from matplotlib.figure import Figure

    def refuse(*_, **__):
        raise ValueError("'outside lower center' is not a valid value for loc")

    monkeypatch.setattr(Figure, "legend", refuse)
    fig = bp.figure(layer_document)
    labels = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert labels[:2] == ["corrgen", "NumPy reference"]


# -- corrgen bench --plot -----------------------------------------------------------------------


@pytest.fixture
def no_timing(monkeypatch):
    """Any timing, peak measurement or build fails the test."""
    def fail(*_, **__):
        pytest.fail("something was timed or built")

    monkeypatch.setattr("codegen.peak.fma_peak", fail)
    monkeypatch.setattr(codegen, "load", fail, raising=False)
    monkeypatch.setattr(codegen, "load_network", fail, raising=False)
    monkeypatch.setattr(bench, "bench_module", fail)
    monkeypatch.setattr(bench_network, "bench_network", fail)


@pytest.mark.parametrize("name, words", [
    ("bench.jpg", ["--plot", "bench.jpg", ".png, .pdf, .svg", "'.jpg'"]),
    ("bench", ["--plot", "no suffix"]),
    ("missing/bench.png", ["--plot", "folder", "missing", "does not exist"]),
])
@pytest.mark.parametrize("what", [TINY, ["--network", SMALL]])
def test_a_bad_plot_path_is_refused_before_any_timing(capsys, tmp_path, no_timing, name,
                                                      words, what):
    status = main(["bench", *what, "--plot", str(tmp_path / name)])
    _, err = capsys.readouterr()
    assert status == 2 and err.startswith("corrgen bench: error: --plot ")
    assert len(err.splitlines()) == 1
    for word in words:
        assert word in err
    assert list(tmp_path.iterdir()) == []


def test_without_matplotlib_the_error_says_how_to_install_it(capsys, tmp_path, no_timing,
                                                             monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib raises
    status = main(["bench", *TINY, "--plot", str(tmp_path / "bench.png")])
    _, err = capsys.readouterr()
    assert status == 2 and "--plot needs matplotlib" in err
    assert "pip install 'corrgen[plot]'" in err and list(tmp_path.iterdir()) == []


def test_importing_codegen_never_imports_matplotlib():
    code = ("import sys, codegen, codegen.cli, codegen.bench, codegen.bench_network, "
            "codegen.bench_plot; print('matplotlib' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"


def test_cli_plot_draws_what_json_saved(capsys, tmp_path, monkeypatch):
    from matplotlib.image import imread

    monkeypatch.setattr("codegen.peak.fma_peak", lambda dtypes: {d: 50.0 for d in dtypes})
    png, saved = tmp_path / "bench.png", tmp_path / "bench.json"
    status = main(["bench", *TINY, "--dtype", "float64", "--batch", "2", "--no-torch",
                   "--out", str(tmp_path / "modules"), "--json", str(saved), "--plot", str(png)])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert out.splitlines()[-1] == f"wrote {png}"
    rows = json.loads(saved.read_text())["rows"]
    assert imread(png).ndim == 3
    drawn = _drawn(bp.figure(json.loads(saved.read_text())))
    assert sorted(drawn) == sorted(f"{r['spec']}, N=2|{r['name']}|{peer}"
                                   for r in rows for peer in ("corrgen", "numpy"))
    for r in rows:
        assert drawn[f"{r['spec']}, N=2|{r['name']}|numpy"].get_width() == r["numpy_us"]
    # The saved run drawn again, nothing timed.
    monkeypatch.setattr(bench, "bench_module", lambda *_, **__: pytest.fail("timed"))
    svg = tmp_path / "again.svg"
    assert main(["bench", "--from-json", str(saved), "--plot", str(svg)]) == 0
    assert capsys.readouterr().out == f"wrote {svg}\n"
    assert b"<svg" in svg.read_bytes()


@pytest.mark.parametrize("argv, words", [
    (["--from-json", "x.json"], ["--from-json 'x.json'", "--plot FILE.png"]),
    (["--from-json", "x.json", "--plot", "p.png", "--layers", "S1"], ["--layers",
                                                                      "one or the other"]),
    (["--from-json", "missing.json", "--plot", "p.png"], ["--from-json", "cannot read"]),
    (["--from-json", "text.json", "--plot", "p.png"], ["--from-json", "not JSON"]),
    (["--from-json", "other.json", "--plot", "p.png"], ["'rows' or 'timings'"]),
    (["--from-json", "short.json", "--plot", "p.png"], ["rows[0] lacks", "numpy_us"]),
])
def test_from_json_refusals_name_the_option(capsys, tmp_path, monkeypatch, no_timing, argv,
                                            words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "text.json").write_text("not json")
    (tmp_path / "other.json").write_text('{"machine": {}, "rows": []}')
    (tmp_path / "short.json").write_text('{"rows": [{"layer": "", "spec": "s", "batch": 1, '
                                         '"dtype": "float64", "name": "forward", '
                                         '"threads": 1, "corrgen_us": 1, "torch_us": null}]}')
    before = sorted(p.name for p in tmp_path.iterdir())
    status = main(["bench", *argv])
    _, err = capsys.readouterr()
    assert status == 2 and len(err.splitlines()) == 1
    for word in words:
        assert word in err
    assert sorted(p.name for p in tmp_path.iterdir()) == before


@pytest.fixture
def fake_network_modules(monkeypatch):
    """codegen.load_network answered by the reference; the peak a fixed figure."""
    monkeypatch.setattr(codegen, "load_network",
                        lambda net, *_, **__: reference.network(net), raising=False)
    monkeypatch.setattr("codegen.peak.fma_peak", lambda dtypes: {d: 50.0 for d in dtypes})


def test_cli_network_plot_has_a_bar_per_dtype_and_contestant(capsys, tmp_path,
                                                             fake_network_modules):
    png, saved = tmp_path / "net.png", tmp_path / "net.json"
    status = main(["bench", "--network", SMALL, "--batch", "2", "--dtype", "both",
                   "--json", str(saved), "--plot", str(png)])
    out, err = capsys.readouterr()
    assert status == 0, err
    assert out.splitlines()[-1] == f"wrote {png}"
    timings = json.loads(saved.read_text())["timings"]
    fig = bp.figure(json.loads(saved.read_text()))
    drawn = _drawn(fig)
    ran = [t for t in timings if t["us"] is not None]
    assert len(fig.axes) == 1 and len(drawn) == len(ran)
    panel = f"{Network.parse(SMALL).text()}, N=2"
    for t in ran:
        rect = drawn[f"{panel}|{t['dtype']}|{t['contestant']}"]
        assert rect.get_width() == t["us"]
        if t["contestant"] != "corrgen":
            assert _text_beside(rect) == bp._ratio_text(
                next(o["vs_" + t["contestant"]] for o in timings
                     if o["contestant"] == "corrgen" and o["dtype"] == t["dtype"]))
    assert [t.get_text() for t in fig.axes[0].get_yticklabels()] == ["float32", "float64"]
    assert "one SGD step" in fig._suptitle.get_text()


def test_bench_help_shows_the_plot_examples(capsys):
    with pytest.raises(SystemExit):
        main(["bench", "--help"])
    out = capsys.readouterr().out
    assert "--plot bench.png" in out and "--from-json bench.json --plot bench.svg" in out
    assert "pip install 'corrgen[plot]'" in out
