"""Golden sources of every kernel variant, both targets: one small layer each, checked in
under generated/variant_* and compared with fresh renderings, so that a change to the
templates, the lowering or the tile plans shows in the suite as a diff of the code that ships
(``pytest --update-golden`` rewrites them after a deliberate change).

The seed example's own sources are compared in test_render.py and test_cuda.py.
"""

from __future__ import annotations

import pytest
from golden import GENERATED, golden_differences

from codegen.backends import CUDA, OPENMP
from codegen.lower import lower
from codegen.render import render
from derive import LayerSpec

#: folder name -> (what it shows, spec, backend, style, dtype[, choices]). The OpenMP variants
#: are the plans codegen.blocking chooses (or, given ``choices``, the plans tuning may choose);
#: the layers are the kernel grid's (tests/test_kernels.py).
VARIANTS = {
    "variant_openmp_column_phases_f64": (
        "column tiles, stride 2x1 split by row phase, dilation 1x2",
        LayerSpec(input=(2, 7, 9), kernel=(3, 2, 3, 2), stride=(2, 1), padding=(2, 1),
                  dilation=(1, 2)), OPENMP, "loops", "float64"),
    "variant_openmp_row_reuse_f64": (
        "one stride phase: row reuse in the column sweeps, the parallel path",
        LayerSpec(input=(8, 16, 16), kernel=(8, 8, 3, 3), padding=1), OPENMP, "loops",
        "float64"),
    "variant_openmp_in_place_f32": (
        "grad_input reading the gradient in place, convolution mode",
        LayerSpec(input=(1, 11, 17), kernel=(2, 1, 2, 3), padding=1, dilation=(1, 2),
                  mode="convolution"), OPENMP, "loops", "float32"),
    "variant_openmp_uncovered_f64": (
        "a stride larger than the kernel: rows and columns no window reads",
        LayerSpec(input=(2, 4, 6), kernel=(1, 2, 1, 2), stride=3), OPENMP, "loops", "float64"),
    "variant_openmp_lanes_f32": (
        "channels in vector lanes in all three passes",
        LayerSpec(input=(16, 9, 11), kernel=(32, 16, 3, 3), padding=1), OPENMP, "loops",
        "float32"),
    "variant_openmp_lanes_transposed_f32": (
        "lane tiles of whole vectors of columns, stored through in-register transposes",
        LayerSpec(input=(16, 3, 37), kernel=(16, 16, 3, 3), padding=1), OPENMP, "loops",
        "float32"),
    "variant_openmp_lanes_paired_f32": (
        "stride 2: grad_input's two column phases stored interleaved, one a column narrower",
        LayerSpec(input=(16, 5, 39), kernel=(16, 16, 2, 3), stride=2, padding=(0, 1),
                  dilation=(1, 2)), OPENMP, "loops", "float32"),
    "variant_openmp_pointwise_f64": (
        "a 1x1 kernel: packed-panel matrix products",
        LayerSpec(input=(5, 3, 7), kernel=(19, 5, 1, 1), dilation=2), OPENMP, "loops",
        "float64"),
    "variant_openmp_pointwise_strided_f32": (
        "a 1x1 kernel at a stride: the input pixels under the output's gathered into the "
        "products' panels, and grad_input's product scattered into their cells",
        LayerSpec(input=(5, 6, 7), kernel=(19, 5, 1, 1), stride=(2, 3)), OPENMP, "loops",
        "float32"),
    "variant_openmp_pointwise_batch_f32": (
        "a 1x1 kernel on 49 pixels: forward and grad_input also over the batch's columns as "
        "one product, its panels spanning samples; narrower edge tiles in both drivers",
        LayerSpec(input=(24, 7, 7), kernel=(64, 24, 1, 1)), OPENMP, "loops", "float32",
        {"forward": "tile=8x2", "grad_input": "tile=4x5"}),
    "variant_openmp_pointwise_transposed_f32": (
        "a 1x1 kernel by transposed tiles (as tuning may choose): the result's rows in vectors, "
        "the pixels read in place; a narrower last row panel and a last pixel in both passes",
        LayerSpec(input=(56, 7, 7), kernel=(40, 56, 1, 1)), OPENMP, "loops", "float32",
        {"forward": "tile=8x3t", "grad_input": "tile=8x3t"}),
    "variant_openmp_pointwise_packed_f32": (
        "a 1x1 kernel with 520 output channels: grad_input packs the weights at every batch, "
        "read in place a row panel's lines would outgrow L1; forward still reads them in place",
        LayerSpec(input=(24, 3, 3), kernel=(520, 24, 1, 1)), OPENMP, "loops", "float32"),
    "variant_openmp_winograd_f32": (
        "every pass by Winograd's algorithm (F(2x2, 3x3); grad_weight F(3x3, 2x2)): odd result "
        "sizes, 17 channels",
        LayerSpec(input=(16, 9, 11), kernel=(17, 16, 3, 3), padding=1), OPENMP, "loops",
        "float32", {"forward": "winograd=2", "grad_input": "winograd=2",
                    "grad_weight": "winograd=2"}),
    "variant_openmp_wide_winograd_f64": (
        "every pass by Winograd's algorithm, its products' tiles of the widest vectors (as "
        "tuning may choose with AVX-512): padding 2, 24 output channels",
        LayerSpec(input=(16, 7, 6), kernel=(24, 16, 3, 3), padding=2), OPENMP, "loops",
        "float64", {"forward": "winograd=2w", "grad_input": "winograd=2w",
                    "grad_weight": "winograd=2w"}),
    "variant_openmp_winograd_samples_f32": (
        "forward and grad_input by Winograd's algorithm in tasks of whole samples (as tuning "
        "may choose where the transformed weights outgrow L2), in groups of channel panels",
        LayerSpec(input=(16, 14, 14), kernel=(80, 16, 3, 3), padding=1), OPENMP, "loops",
        "float32", {"forward": "winograd=2s", "grad_input": "winograd=2s"}),
    "variant_openmp_wide_columns_f32": (
        "forward's column tile of the widest vectors (as tuning may choose with AVX-512): rows "
        "reused, a partial vector at each row's end",
        LayerSpec(input=(3, 9, 21), kernel=(4, 3, 5, 5), padding=2), OPENMP, "loops",
        "float32", {"forward": "column_tile=1x4x2rw"}),
    "variant_openmp_frame_rows_f32": (
        "a 5x5 kernel with padding 2: forward's row-reusing tiles and grad_weight's block of "
        "every tap leave out the rows of the zero frame",
        LayerSpec(input=(3, 12, 10), kernel=(16, 3, 5, 5), padding=2), OPENMP, "loops",
        "float32", {"forward": "column_tile=1x4x2r", "grad_weight": "lane_fmas=1"}),
    "variant_openmp_window_grad_weight_f32": (
        "grad_weight as a matrix product over the output's pixels, its columns the input "
        "pixels under each tap gathered (as tuning may choose): stride, dilation, convolution",
        LayerSpec(input=(3, 8, 9), kernel=(16, 3, 3, 2), stride=(1, 2), padding=1,
                  dilation=(2, 1), mode="convolution"), OPENMP, "loops", "float32",
        {"grad_weight": "tile=4x5"}),
    "variant_openmp_direct_f64": (
        "the direct style: the index forms as plain loops; strides, dilation, convolution",
        LayerSpec(input=(2, 7, 9), kernel=(3, 2, 3, 2), stride=(2, 1), padding=(2, 1),
                  dilation=(1, 2), mode="convolution"), OPENMP, "direct", "float64"),
    "variant_cuda_loops_f64": (
        "the CUDA loops style: strides, same padding, dilation, convolution mode",
        LayerSpec(input=(3, 11, 8), kernel=(4, 3, 3, 3), stride=3, padding="same", dilation=2,
                  mode="convolution"), CUDA, "loops", "float64"),
    "variant_cuda_unrolled_f32": (
        "the CUDA unrolled style without bias, full padding",
        LayerSpec(input=(1, 5, 6), kernel=(2, 1, 2, 3), padding="full", bias=False), CUDA,
        "unrolled", "float32"),
    "variant_cuda_tiled_f32": (
        "the CUDA tiled style: shared-memory tiles, stride phases, dilation, convolution mode",
        LayerSpec(input=(3, 11, 8), kernel=(4, 3, 3, 3), stride=3, padding="same", dilation=2,
                  mode="convolution"), CUDA, "tiled", "float32"),
}


@pytest.mark.parametrize("folder", VARIANTS)
def test_variant_sources_match_the_checked_in_files(folder, update_golden):
    _, spec, backend, style, dtype, *choices = VARIANTS[folder]
    sources = render(lower(spec, backend, dtype, style, choices=next(iter(choices), None)),
                     backend)
    differences = golden_differences(folder, sources, backend, update_golden)
    assert not differences, "\n".join(differences)


def test_every_checked_in_variant_is_still_rendered():
    folders = {path.name for path in GENERATED.glob("variant_*") if path.is_dir()}
    assert folders == set(VARIANTS), f"stale or missing: {folders ^ set(VARIANTS)}"


@pytest.mark.parametrize("folder", [f for f in VARIANTS if VARIANTS[f][2] is OPENMP])
def test_each_openmp_variant_shows_what_it_is_named_for(folder):
    """The layer of each folder still takes the path its name says (a change of the tile
    plans could move it to another, and the golden file would silently stop covering it)."""
    _, spec, backend, style, dtype, *choices = VARIANTS[folder]
    text = render(lower(spec, backend, dtype, style, choices=next(iter(choices), None)),
                  backend).text(backend.source)
    marks = {
        "lanes": "LANES", "pointwise": "_ROW_PANELS", "in_place": "GIN_FRAME_ROW",
        "paired": "pair_dst", "transposed": "transpose_lanes", "column_phases": "_PHASES 2",
        "direct": "template openmp/direct.c.jinja", "winograd": "grad_input_patches(",
        "wide_columns": "LOAD_LANES(in + ", "window": "gather_window(",
        "batch": "store_batch_tile(", "samples": "last = unit + WF_GROUP;",
        "packed": "Such a batch still packs the weights",
        "frame_rows": "only the taps whose kernel row reads data there",
    }
    if "frame_rows" in folder:
        assert "leave out those loads" in text, f"{folder}: no frame tiles in forward"
    for word, mark in marks.items():
        if word in folder:
            assert mark in text, f"{folder}: no {mark} in the rendered source"
