"""The figures of the derivation documents (``derive/latex/figures.py``).

Every cell a figure highlights is compared with NumPy's reference (``derive.reference``),
which knows nothing of the figures' geometry: an input (or upstream gradient) that is zero
but for one element shows which outputs (or gradient elements) that element reaches, and
kernel elements of distinct values say which one each product used.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from derive import LayerSpec
from derive import reference as ref
from derive.latex import document_content
from derive.latex import figures as figs
from derive.latex.content import Cell, Figure
from derive.latex.notation import NOTATIONS, Letters

SPECS = {
    "seed": LayerSpec(input=(1, 3, 3), kernel=(1, 1, 2, 2)),
    "stride2_pad1": LayerSpec(input=(2, 7, 7), kernel=(2, 2, 3, 3), stride=2, padding=1),
    "dilation2_full_conv": LayerSpec(input=(1, 7, 7), kernel=(1, 1, 3, 3), dilation=2,
                                     padding="full", mode="convolution", bias=False),
    "same_uneven": LayerSpec(input=(2, 6, 5), kernel=(3, 2, 3, 2), padding="same"),
    "full_stride21": LayerSpec(input=(1, 5, 6), kernel=(2, 1, 2, 3), padding="full",
                               stride=(2, 1)),
    "stride3_conv_uncovered": LayerSpec(input=(1, 7, 8), kernel=(1, 1, 2, 2), stride=3,
                                        mode="convolution"),
    "mixed": LayerSpec(input=(2, 7, 9), kernel=(3, 2, 3, 2), stride=(2, 1), padding=(2, 1),
                       dilation=(1, 2)),
}


def padded_spec(spec: LayerSpec) -> LayerSpec:
    """The same layer on its input with the zeros put in explicitly (and no padding), so
    that the padding cells are input cells the reference can perturb."""
    c, h, w = spec.input
    top, bottom, left, right = spec.pads
    padded = spec.replace(input=(c, h + top + bottom, w + left + right), padding=0)
    assert padded.output_shape == spec.output_shape
    return padded


def distinct_kernel(spec: LayerSpec) -> np.ndarray:
    """A kernel whose elements are 1, 2, 3, ...: a value names the element."""
    return np.arange(1, np.prod(spec.kernel) + 1, dtype=float).reshape(spec.kernel)


def kernel_index(spec: LayerSpec, value: float) -> tuple[int, ...]:
    return tuple(int(t) for t in np.unravel_index(int(round(value)) - 1, spec.kernel))


def one_hots(shape: tuple[int, ...]) -> np.ndarray:
    """A batch of arrays of ``shape``, sample n zero but for its n-th element (row-major)."""
    n = int(np.prod(shape))
    return np.eye(n).reshape((n, *shape))


def oracle_windows(spec: LayerSpec) -> dict[tuple[int, int, int], set[Cell]]:
    """Per output (o, y, x): the cells of input channel 0 (padding included, in the input's
    own coordinates) whose perturbation changes it, each with the kernel element it met."""
    padded = padded_spec(spec)
    top, _, left, _ = spec.pads
    c_in, hp, wp = padded.input
    Z = ref.forward(padded, one_hots(padded.input), distinct_kernel(spec))
    found: dict[tuple[int, int, int], set[Cell]] = {}
    for n, out in itertools.product(range(hp * wp), np.ndindex(*spec.output_shape)):
        value = Z[(n, *out)]  # sample n: channel 0's cell n is one, the rest zero
        if value:
            o, c, i, j = kernel_index(spec, value)
            assert (o, c) == (out[0], 0)
            found.setdefault(out, set()).add(Cell(n // wp - top, n % wp - left, (i, j)))
    return found


def oracle_weight_reads(spec: LayerSpec) -> dict[tuple[int, ...], set[Cell]]:
    """Per kernel element of channel pair (0, 0): the padded input cells it multiplies by G,
    each with the output position of that G (G one-hot per position, input cells valued
    1, 2, 3, ... so that dK's value names the cell)."""
    padded = padded_spec(spec)
    top, _, left, _ = spec.pads
    c_in, hp, wp = padded.input
    V = np.arange(1, c_in * hp * wp + 1, dtype=float).reshape((1, *padded.input))
    found: dict[tuple[int, ...], set[Cell]] = {}
    _, ho, wo = spec.output_shape
    for y, x in itertools.product(range(ho), range(wo)):
        G = np.zeros((1, *spec.output_shape))
        G[0, 0, y, x] = 1
        dK = ref.grad_weight(padded, V, G)
        for index in np.ndindex(*spec.kernel[2:]):
            cell = int(round(dK[(0, 0, *index)])) - 1  # channel 0's cells come first
            assert 0 <= cell < hp * wp
            found.setdefault(index, set()).add(Cell(cell // wp - top, cell % wp - left, (y, x)))
    return found


def oracle_gathers(spec: LayerSpec) -> dict[tuple[int, int], set[Cell]]:
    """Per input element (u, v) of channel 0: the cells of G[0] it gathers, each with the
    kernel element it is multiplied by (G one-hot per cell, distinct kernel values)."""
    G = one_hots(spec.output_shape)
    dV = ref.grad_input(spec, distinct_kernel(spec), G)
    _, ho, wo = spec.output_shape
    found: dict[tuple[int, int], set[Cell]] = {}
    for n, (u, v) in itertools.product(range(ho * wo), np.ndindex(*spec.input[1:])):
        value = dV[n, 0, u, v]  # sample n: G[0] one at cell n (output channel 0)
        if value:
            o, c, i, j = kernel_index(spec, value)
            assert (o, c) == (0, 0)
            found.setdefault((u, v), set()).add(Cell(n // wo, n % wo, (i, j)))
    return found


def oracle_jacobian(spec: LayerSpec) -> set[tuple[int, int]]:
    """The nonzero (row, column) of dZ/dV, its columns the outputs of one-hot inputs (the
    layer is linear in V) with a kernel of nonzero random values."""
    rng = np.random.default_rng(0)
    K = rng.uniform(1, 2, spec.kernel)
    Z = ref.forward(spec, one_hots(spec.input), K)
    J = Z.reshape(Z.shape[0], -1).T  # rows: outputs, columns: inputs
    return {(int(r), int(c)) for r, c in zip(*np.nonzero(J))}


# -- the cells against the reference ---------------------------------------------------------


@pytest.mark.parametrize("name", SPECS)
def test_every_window_reads_what_the_reference_reads(name: str) -> None:
    spec = SPECS[name]
    want = oracle_windows(spec)
    for out in np.ndindex(*spec.output_shape):
        got = figs.window(spec, out)
        assert len(got) == spec.kernel[2] * spec.kernel[3]  # one cell per tap
        assert set(got) == want[out], (name, out)


@pytest.mark.parametrize("name", SPECS)
def test_every_kernel_gradient_reads_what_the_reference_reads(name: str) -> None:
    spec = SPECS[name]
    want = oracle_weight_reads(spec)
    for index in np.ndindex(*spec.kernel[2:]):
        got = figs.weight_reads(spec, (0, 0, *index))
        assert len(got) == spec.output_shape[1] * spec.output_shape[2]  # one per position
        assert set(got) == want[index], (name, index)


@pytest.mark.parametrize("name", SPECS)
def test_every_input_gradient_gathers_what_the_reference_gathers(name: str) -> None:
    spec = SPECS[name]
    want = oracle_gathers(spec)
    for u, v in np.ndindex(*spec.input[1:]):
        got = figs.input_gathers(spec, (0, u, v))
        assert len(got) == len(set(got))
        assert set(got) == want.get((u, v), set()), (name, u, v)


def test_a_stride_gathers_only_whole_quotients() -> None:
    # Stride 2, one kernel tap in two: along each axis an input element is reached by the
    # taps of one parity only, so at most 2 x 2 of the 3 x 3 taps (the reference agrees above).
    spec = SPECS["stride2_pad1"]
    counts = {len(figs.input_gathers(spec, (0, u, v))) for u, v in np.ndindex(7, 7)}
    assert counts <= {1, 2, 4} and 4 in counts and 1 in counts


@pytest.mark.parametrize("name", SPECS)
def test_the_jacobian_is_the_reference_jacobians_pattern(name: str) -> None:
    spec = SPECS[name]
    got = figs.jacobian(spec)
    assert len(got) == len(set(got))
    assert {(t.row, t.col) for t in got} == oracle_jacobian(spec)
    # The first channel pair's block: the rows of output channel 0, columns of channel 0.
    _, ho, wo = spec.output_shape
    _, h, w = spec.input
    block = {(r, c) for r, c in oracle_jacobian(spec) if r < ho * wo and c < h * w}
    assert {(t.row, t.col) for t in figs.jacobian(spec, block=True)} == block


# -- what the documents draw -------------------------------------------------------------------


def _by_kind(spec: LayerSpec, **options: object) -> dict[str, Figure]:
    content = document_content(spec, **options)
    return {f.kind: f for s in content.sections for f in s.figures}


def _filled(figure: Figure, panel: int, styles: set[str]) -> set[tuple[int, int]]:
    """The array cells of one panel that the picture fills in ``styles``, read back from the
    fills' picture coordinates."""
    assert figure.picture is not None
    p = figure.picture.panels[panel]
    cells = set()
    for f in figure.picture.fills:
        if f.style in styles and p.x <= f.x < p.x + p.cols and p.y <= f.y < p.y + p.rows:
            row = p.row0 + (p.y + p.rows - 1 - f.y)
            cells |= {(row, p.col0 + f.x - p.x + k) for k in range(f.n)}
    return cells


def _labels(figure: Figure, panel: int) -> dict[tuple[int, int], str]:
    assert figure.picture is not None
    p = figure.picture.panels[panel]
    return {(p.row0 + (p.y + p.rows - 1 - t.y), p.col0 + t.x - p.x): t.text
            for t in figure.picture.texts
            if t.size == "tiny" and p.x <= t.x < p.x + p.cols and p.y <= t.y < p.y + p.rows}


@pytest.mark.parametrize("name", ["seed", "stride2_pad1", "dilation2_full_conv", "mixed"])
def test_the_document_draws_the_reference_cells(name: str) -> None:
    spec = SPECS[name]
    base = 1
    fig = _by_kind(spec, elements=1)
    window = fig["window"]
    out = figs.window_output(spec)
    assert set(window.cells) == oracle_windows(spec)[out]
    assert _filled(window, 0, {"tap", "padtap"}) == {(t.row, t.col) for t in window.cells}
    assert _filled(window, 1, {"mark"}) == {out[1:]}
    if window.labelled:
        assert _labels(window, 0) == {(t.row, t.col): "{,}".join(str(k + base) for k in t.pair)
                                      for t in window.cells}
    weight = fig["grad_weight"]
    assert set(weight.cells) == oracle_weight_reads(spec)[figs.WEIGHT_ELEMENT[2:]]
    assert _filled(weight, 0, {"tap", "padtap"}) == {(t.row, t.col) for t in weight.cells}
    gather = fig["grad_input"]
    element = figs.input_element(spec)
    assert set(gather.cells) == oracle_gathers(spec)[element[1:]]
    assert _filled(gather, 0, {"tap"}) == {(t.row, t.col) for t in gather.cells}
    assert _filled(gather, 1, {"mark"}) == {element[1:]}
    jac = fig["jacobian"]
    rows = jac.rows
    drawn = set()
    for f in jac.picture.fills:
        drawn |= {(rows - 1 - f.y, f.x + k) for k in range(f.n)}
    assert drawn == oracle_jacobian(spec)


def test_padding_is_drawn_apart_and_taps_on_it_are_light() -> None:
    spec = SPECS["dilation2_full_conv"]
    window = _by_kind(spec, elements=1)["window"]
    top, bottom, left, right = spec.pads
    _, h, w = spec.input
    padding = {(r, c) for r in range(-top, h + bottom) for c in range(-left, w + right)
               if not (0 <= r < h and 0 <= c < w)}
    assert _filled(window, 0, {"pad", "padtap"}) == padding
    assert _filled(window, 0, {"padtap"}) == {(t.row, t.col) for t in window.cells} & padding
    assert window.pad_taps and window.flipped and window.padded
    assert window.picture is not None and len(window.picture.frames) == 1  # the input's border


def test_the_input_element_shown_gathers_the_most() -> None:
    for spec in SPECS.values():
        element = figs.input_element(spec)
        most = max(len(figs.input_gathers(spec, (0, u, v)))
                   for u, v in np.ndindex(*spec.input[1:]))
        assert len(figs.input_gathers(spec, element)) == most


# -- bounds ------------------------------------------------------------------------------------


def _letters(spec: LayerSpec) -> Letters:
    return Letters(spec, NOTATIONS["seed000"], 1)


def test_large_grids_are_cropped_around_the_window() -> None:
    spec = LayerSpec(input=(3, 40, 36), kernel=(4, 3, 5, 5), padding=2, stride=1)
    window = figs.window_figure(spec, _letters(spec))
    assert window.picture is not None
    for p in window.picture.panels:
        assert p.rows <= figs.MAX_CELLS and p.cols <= figs.MAX_CELLS
    assert _filled(window, 0, {"tap", "padtap"}) == {(t.row, t.col) for t in window.cells}
    assert [c.rows[2] for c in window.crops] == [40, 40] and window.crops[0].cols[2] == 36


def test_a_window_wider_than_a_figure_is_left_out_with_its_span() -> None:
    spec = LayerSpec(input=(1, 40, 40), kernel=(1, 1, 3, 3), dilation=9)
    window = figs.window_figure(spec, _letters(spec))
    assert window.picture is None and window.skipped == "span"
    assert window.span == (19, 19) and window.limit == figs.MAX_CELLS


def test_large_jacobians_draw_one_block_or_nothing() -> None:
    block = LayerSpec(input=(3, 16, 16), kernel=(8, 3, 3, 3))
    fig = figs.jacobian_figure(block, _letters(block))
    assert fig.block and fig.picture is not None
    assert (fig.block_rows, fig.block_cols) == (14 * 14, 16 * 16)
    assert fig.picture.height == 14 * 14 and fig.picture.width == 16 * 16
    none = LayerSpec(input=(1, 20, 20), kernel=(1, 1, 3, 3))
    fig = figs.jacobian_figure(none, _letters(none))
    assert fig.picture is None and fig.skipped == "size" and not fig.channels


def test_network_documents_draw_each_conv_layers_window() -> None:
    from derive import Network
    from derive.latex import network_content

    text = "1x5x6 | conv 2x3x3 stride 2 pad 1 | relu | conv 1x2x2 convolution | flatten | l2"
    content = network_content(text)
    convs = [layer for layer in Network.parse(text).layers if layer.kind == "conv"]
    parts = {p.index: p for p in content.layers}
    assert [i for i, p in parts.items() if p.figure is not None] == [la.index for la in convs]
    for layer in convs:
        window = parts[layer.index].figure
        assert window is not None and window.picture is not None
        want = oracle_windows(layer.spec)[figs.window_output(layer.spec)]
        assert set(window.cells) == want
        assert _filled(window, 0, {"tap", "padtap"}) == {(t.row, t.col) for t in want}
