"""grad_weight of a layer of any kernel as a matrix product over the output's pixels
(``codegen.blocking.pointwise.window_grad_weight``): dK's (input channel, tap) pairs are the
product's columns, each gathering the input pixels its tap reads, zero in the padding."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_kernels import GRID
from test_tune import _build_with

from codegen.bench import LAYERS
from codegen.blocking import AVX2, AVX512, candidates, plan
from codegen.blocking.layer import tile_choice, window_products_pay
from codegen.blocking.pointwise import window_grad_weight_candidates
from codegen.blocking.records import Product
from codegen.check import check_module
from codegen.machine import host_machine
from derive import LayerSpec
from derive.geometry import Geometry

#: Strides, dilations, padding of every kind (same, full, unequal), convolution mode, a 5x5
#: kernel, and a layer whose pixels are summed in several chunks that end mid-row.
LAYERS_CHECKED = {
    **{name: GRID[name] for name in (
        "s2x1_p2x1_d1x2", "s3_same_d2_conv", "full_nobias", "same_odd_d2x1", "s3x2_full_d2",
        "lanes_s2x3_d2x1_conv", "lanes_parallel_5x5", "in_place_d1x2_conv")},
    "chunks_mid_row": LayerSpec(input=(2, 75, 81), kernel=(64, 2, 3, 3), padding=(1, 2)),
}


def _window_choice(spec: LayerSpec, dtype: str) -> str:
    dtype_bytes = 4 if dtype == "float32" else 8
    tiles = window_grad_weight_candidates(spec, 32 // dtype_bytes, dtype_bytes, host_machine())
    return tile_choice(tiles[0])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("layer", list(LAYERS_CHECKED))
def test_window_grad_weight_matches_the_reference(tmp_path: Path, layer, dtype):
    spec = LAYERS_CHECKED[layer]
    module = _build_with(spec, dtype, {"grad_weight": _window_choice(spec, dtype)}, tmp_path)
    source = (Path(module.__file__).parent / "conv2d_openmp.c").read_text()
    assert "gather_window(" in source and "GW_COLUMNS" in source
    assert ("KH - 1 - tap / KW" in source) is (spec.mode == "convolution")
    if layer == "chunks_mid_row":
        kc = int(source.split("#define GW_KC ")[1].split()[0])
        assert kc < spec.out_h * spec.out_w and kc % spec.out_w
    for result in check_module(module, batch=3, seed=6):
        assert result.ok, result


def test_a_wide_window_tile_matches_the_reference(tmp_path: Path):
    """A tile of the widest vectors (as tuning may choose with AVX-512; elsewhere the
    compiler splits the 512-bit vectors)."""
    spec = LAYERS_CHECKED["lanes_parallel_5x5"]
    module = _build_with(spec, "float32", {"grad_weight": "tile=4x2w"}, tmp_path)
    assert "IN_REGISTER_LANES" in (Path(module.__file__).parent / "conv2d_openmp.c").read_text()
    for result in check_module(module, batch=2, seed=7):
        assert result.ok, result


def test_tuning_times_window_products_from_128_output_channels():
    """A layer of at least 128 output channels gets the product's tiles after its direct
    choices (the model's choice stays first); the benchmark's layers (at most 64) do not."""
    for machine in (AVX2, AVX512):
        for channels in (128, 512):
            spec = LayerSpec(input=(channels, 14, 14), kernel=(channels, channels, 3, 3),
                             padding=1)
            options = candidates(spec, 4, machine)["grad_weight"]
            tiles = [c for c in options if c.startswith("tile=")]
            assert tiles and not options[0].startswith("tile="), options
            record = next(p for p in plan(spec, 4, machine, {"grad_weight": tiles[0]}).passes
                          if p.name == "grad_weight")
            assert isinstance(record, Product) and record.windows
        for name in ("S2", "S3", "S4", "S5"):
            assert not any(c.startswith("tile=") for c in
                           candidates(LAYERS[name][0], 4, machine).get("grad_weight", ()))
    assert not window_products_pay(Geometry.of(LAYERS["S5"][0]))
