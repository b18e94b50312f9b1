"""Bench results drawn: ``corrgen bench --plot FILE.png`` (and ``.pdf``, ``.svg``).

The plot is made from the records ``--json`` writes (``codegen.bench.document``,
``codegen.bench_network.document``), so a saved ``--json`` file draws the same picture later
(``corrgen bench --from-json FILE.json --plot FILE.png``).

- Layers: one panel per benchmark layer (or spec), in a grid; in each, one group of
  horizontal bars per pass (and dtype, when several were timed), one bar per contestant:
  corrgen, the NumPy reference, PyTorch when it ran.
- ``--network``: one panel, one group per dtype, one bar per contestant: a training step.

The time axis is logarithmic (the contestants are often orders of magnitude apart). A bar's
length is the median of the runs, its whisker the runs' quartiles (when the records have
them: older files do not). Beside each peer's bar stands corrgen's time divided by that
peer's, as in the tables (below 1: corrgen is faster); beside corrgen's bar, its time.

matplotlib is optional (``pip install 'corrgen[plot]'``) and imported only here, inside the
functions that draw: importing ``codegen`` never imports it. The figure is drawn on a bare
``Figure`` with the Agg canvas, so neither pyplot's global state nor a display is involved.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from derive.errors import CorrgenError

__all__ = ["INSTALL_HINT", "SUFFIXES", "Bar", "PlotError", "bars", "check_path", "figure",
           "load_document", "render", "require_matplotlib", "write_plot"]

#: The file suffixes --plot accepts; matplotlib picks the format from the suffix.
SUFFIXES = (".png", ".pdf", ".svg")
INSTALL_HINT = "pip install 'corrgen[plot]'"
#: The contestants, in the order their bars are drawn, and their names in the legend.
PEERS = {"corrgen": "corrgen", "numpy": "NumPy reference", "torch": "PyTorch"}
COLORS = {"corrgen": "tab:blue", "numpy": "tab:orange", "torch": "tab:green"}
#: Resolution of the written file (and so a PNG's size: the figure's inches times DPI).
DPI = 100
#: The keys a record needs to be drawn, per kind of document.
NEEDED = {"rows": ("layer", "spec", "batch", "dtype", "name", "threads", "corrgen_us",
                   "numpy_us", "torch_us"),
          "timings": ("network", "batch", "dtype", "contestant", "threads", "us")}
NOTE = ("bar: median of the runs; whisker: their quartiles\nnumber beside a peer's bar: "
        "corrgen's time ÷ that peer's (below 1: corrgen is faster)")


class PlotError(CorrgenError, ValueError):
    """A plot cannot be drawn or written as asked; the message names the option, the rule
    and the value."""


@dataclass(frozen=True)
class Bar:
    """One drawn bar: a contestant's median time (µs) in one group of one panel.

    ``quartiles``: (first, third) quartile in µs, or None; ``ratio``: corrgen's median
    divided by this contestant's (None for corrgen itself)."""

    panel: str
    group: str
    peer: str
    us: float
    quartiles: tuple[float, float] | None
    ratio: float | None

    @property
    def gid(self) -> str:
        """The drawn rectangle's id: ``panel|group|peer``."""
        return f"{self.panel}|{self.group}|{self.peer}"


def check_path(path: str | Path, option: str = "--plot") -> Path:
    """``path`` once checked, before anything is timed: a suffix of ``SUFFIXES`` and a
    folder that exists.

    Raises:
        PlotError: another suffix (or none), or a folder that is missing or not a folder.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise PlotError(f"{option} {str(path)!r}: the suffix picks the picture's format, one "
                        f"of {', '.join(SUFFIXES)}; got {suffix or 'no suffix'!r}")
    if path.is_dir():
        raise PlotError(f"{option} {str(path)!r}: is a folder; name a file")
    folder = path.parent
    if not folder.is_dir():
        why = "does not exist" if not folder.exists() else "is not a folder"
        raise PlotError(f"{option} {str(path)!r}: folder {str(folder)!r} {why}")
    return path


def require_matplotlib(option: str = "--plot") -> None:
    """Raise ``PlotError`` with the install hint when matplotlib is missing."""
    try:
        import matplotlib  # noqa: F401
        from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: F401
        from matplotlib.figure import Figure  # noqa: F401
    except ImportError:
        raise PlotError(f"{option} needs matplotlib, which is not installed: "
                        f"{INSTALL_HINT} (or pip install matplotlib)") from None


def load_document(path: str | Path, option: str = "--from-json") -> dict[str, Any]:
    """A ``corrgen bench --json`` file, read and checked for what the plot needs.

    Raises:
        PlotError: the file cannot be read, is not JSON, or holds neither ``rows`` (layers)
            nor ``timings`` (a network) with the keys the plot reads.
    """
    try:
        body = json.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as error:
        raise PlotError(f"{option} {str(path)!r}: cannot read it: "
                        f"{error.strerror or error}") from None
    except ValueError as error:
        raise PlotError(f"{option} {str(path)!r}: not JSON ({error})") from None
    kind = next((k for k in NEEDED if isinstance(body, dict) and k in body), None)
    records = body.get(kind) if kind else None
    if not isinstance(records, list) or not records:
        raise PlotError(f"{option} {str(path)!r}: expected the object 'corrgen bench --json' "
                        f"writes, with a non-empty list 'rows' or 'timings'")
    for number, record in enumerate(records):
        missing = [k for k in NEEDED[kind] if not isinstance(record, dict) or k not in record]
        if missing:
            raise PlotError(f"{option} {str(path)!r}: {kind}[{number}] lacks "
                            f"{', '.join(missing)}")
    return body


# -- what is drawn ------------------------------------------------------------------------------


def _quartiles(value: Any) -> tuple[float, float] | None:
    return None if value is None else (float(value[0]), float(value[1]))


def _layer_bars(rows: list[dict[str, Any]]) -> list[Bar]:
    several = len({r["dtype"] for r in rows}) > 1
    found = []
    for r in rows:
        panel = f"{r['layer'] + ': ' if r['layer'] else ''}{r['spec']}, N={r['batch']}"
        group = f"{r['name']} {r['dtype']}" if several else r["name"]
        spread = r.get("quartiles_us") or {}
        for peer in PEERS:
            us = r[f"{peer}_us"]
            if us is not None:
                ratio = None if peer == "corrgen" else r["corrgen_us"] / us
                found.append(Bar(panel, group, peer, us, _quartiles(spread.get(peer)), ratio))
    return found


def _network_bars(timings: list[dict[str, Any]]) -> list[Bar]:
    ours = {(t["network"], t["dtype"], t["batch"]): t["us"] for t in timings
            if t["contestant"] == "corrgen"}
    found = []
    for t in sorted(timings, key=lambda t: list(PEERS).index(t["contestant"])):
        if t["us"] is None:
            continue
        key = (t["network"], t["dtype"], t["batch"])
        ratio = None if t["contestant"] == "corrgen" else ours[key] / t["us"]
        found.append(Bar(f"{t['network']}, N={t['batch']}", t["dtype"], t["contestant"],
                         t["us"], _quartiles(t.get("quartiles_us")), ratio))
    # Groups in the order the dtypes were timed, each group's bars in PEERS order.
    dtypes = list(dict.fromkeys(t["dtype"] for t in timings))
    return sorted(found, key=lambda b: dtypes.index(b.group))


def bars(document: dict[str, Any]) -> list[Bar]:
    """Every bar the plot of ``document`` (a ``--json`` object) draws, panel by panel, group
    by group, in drawing order."""
    if "rows" in document:
        return _layer_bars(document["rows"])
    return _network_bars(document["timings"])


def _title(document: dict[str, Any]) -> str:
    records = document.get("rows") or document.get("timings") or []
    machine = document.get("machine") or {}
    threads = sorted({r["threads"] for r in records})
    dtypes = ", ".join(dict.fromkeys(r["dtype"] for r in records))
    target = records[0].get("target", "openmp") if records else "openmp"
    cpu = machine.get("processor") or machine.get("machine") or "unknown CPU"
    cpus = machine.get("logical CPUs")
    what = ("corrgen bench --network: one SGD step" if "timings" in document
            else "corrgen bench: time per pass")
    on = (f"{cpu}{f' ({cpus} logical CPUs)' if cpus else ''}, "
          f"{'/'.join(map(str, threads))} thread{'s' if threads != [1] else ''}")
    if target == "cuda":
        on = f"CUDA kernels on the GPU; host {on}"
    return f"{what}; {dtypes}; {target}\n{on}"


# -- drawing ------------------------------------------------------------------------------------


def _time_text(us: float) -> str:
    if us < 1e3:
        return f"{us:.3g} µs"
    return f"{us / 1e3:.3g} ms" if us < 1e6 else f"{us / 1e6:.3g} s"


def _ratio_text(ratio: float) -> str:
    """A ratio in few characters: far below 1 as a fraction (1/399 reads better than
    0.00251), far above without an exponent."""
    if ratio < 0.01:
        return f"1/{1 / ratio:,.0f}"
    return f"{ratio:.3g}" if ratio < 100 else f"{ratio:,.0f}"


def _panels(found: list[Bar]) -> dict[str, dict[str, list[Bar]]]:
    """The bars by panel, then by group, in the order they come."""
    panels: dict[str, dict[str, list[Bar]]] = {}
    for bar in found:
        panels.setdefault(bar.panel, {}).setdefault(bar.group, []).append(bar)
    return panels


def _draw_panel(axes: Any, groups: dict[str, list[Bar]], unit: str) -> None:
    """One panel: a group of horizontal bars per entry of ``groups``, top to bottom."""
    width = 0.8 / max(len(g) for g in groups.values())
    low, high = math.inf, 0.0
    for place, members in enumerate(groups.values()):
        for slot, bar in enumerate(members):
            y = place + (slot - (len(members) - 1) / 2) * width
            drawn = axes.barh(y, bar.us, height=width * 0.9, color=COLORS[bar.peer],
                              label=PEERS[bar.peer])
            drawn.patches[0].set_gid(bar.gid)
            q1, q3 = bar.quartiles or (bar.us, bar.us)
            if bar.quartiles is not None:
                axes.errorbar(bar.us, y, xerr=[[bar.us - q1], [q3 - bar.us]], fmt="none",
                              ecolor="black", elinewidth=0.8, capsize=2)
            text = _time_text(bar.us) if bar.ratio is None else _ratio_text(bar.ratio)
            axes.text(max(q3, bar.us) * 1.15, y, text, va="center", fontsize=7)
            low, high = min(low, q1, bar.us), max(high, q3, bar.us)
    axes.set_xscale("log")
    # Room on the left for the bars' start, on the right for the numbers beside them.
    axes.set_xlim(10 ** math.floor(math.log10(low / 2)), high * 8)
    axes.set_yticks(range(len(groups)), list(groups), fontsize=8)
    axes.invert_yaxis()
    axes.set_xlabel(f"median time per {unit} (µs, log scale)", fontsize=8)
    axes.tick_params(axis="x", labelsize=7)
    axes.grid(True, axis="x", which="major", alpha=0.3)


def _legend(fig: Any) -> None:
    """One legend for all panels (they share the contestants' colours), with the note on
    how to read the bars: under the grid, or, where matplotlib cannot place a legend outside
    the panels (before 3.7), in the first panel with the note under the grid."""
    shown = {h.get_label(): h for axes in fig.axes
             for h in axes.get_legend_handles_labels()[0]}
    try:
        fig.legend(list(shown.values()), list(shown), loc="outside lower center",
                   ncols=len(shown), fontsize=8, title=NOTE, title_fontsize=7)
    except ValueError:
        fig.axes[0].legend(list(shown.values()), list(shown), loc="best", fontsize=7)
        fig.supxlabel(NOTE, fontsize=7)


def figure(document: dict[str, Any]) -> Any:
    """The plot of ``document`` (what ``--json`` writes) as a matplotlib ``Figure``, with an
    Agg canvas; every bar's rectangle has ``Bar.gid`` as its gid."""
    require_matplotlib()
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    panels = _panels(bars(document))
    count = len(panels)
    columns = 1 if count == 1 else 2 if count <= 4 else 3
    rows = math.ceil(count / columns)
    tallest = max(sum(len(g) for g in groups.values()) for groups in panels.values())
    fig = Figure(figsize=(6.5 * columns, rows * (1.2 + 0.22 * tallest) + 1.0),
                 layout="constrained")
    FigureCanvasAgg(fig)
    unit = "step" if "timings" in document else "pass"
    for number, (panel, groups) in enumerate(panels.items()):
        axes = fig.add_subplot(rows, columns, number + 1)
        _draw_panel(axes, groups, unit)
        axes.set_title(panel, fontsize=9)
    _legend(fig)
    fig.suptitle(_title(document), fontsize=10)
    return fig


def render(fig: Any, suffix: str = ".png") -> bytes:
    """``fig`` as the bytes of a file with ``suffix`` (one of ``SUFFIXES``), at ``DPI``."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format=suffix.lstrip(".").lower(), dpi=DPI)
    return buffer.getvalue()


def write_plot(document: dict[str, Any], path: str | Path, option: str = "--plot") -> Path:
    """Draw ``document`` and write it to ``path`` whole or not at all; the path written.

    Raises:
        PlotError: a suffix outside ``SUFFIXES``, matplotlib missing (with the install
            hint), or the file cannot be written.
    """
    from .paths import write_output

    path = check_path(path, option)
    data = render(figure(document), path.suffix)
    return write_output(path, data, PlotError)
