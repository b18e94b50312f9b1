"""A 1x1 layer of few pixels: forward and grad_input also take the batch's n*P columns as one
product (``codegen.blocking.pointwise.batch_columns``), in panels that run on from one
sample into the next, where that pads fewer columns than the samples' own panels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from test_tune import _build_with

import codegen.blocking.pointwise as pointwise
from codegen.bench import LAYERS
from codegen.blocking import AVX2, AVX512, plan
from codegen.check import check_module
from derive import LayerSpec, reference

#: 9 pixels a sample: a panel of 16 or more columns spans two samples or more; 24 and 40
#: channels leave edge row panels.
FEW_PIXELS = LayerSpec(input=(24, 3, 3), kernel=(40, 24, 1, 1))


def _products(spec, dtype_bytes, machine):
    return {p.name: p for p in plan(spec, dtype_bytes, machine).passes
            if p.name in ("forward", "grad_input")}


def test_few_pixels_take_the_batch_columns_and_s6_does_not():
    for machine in (AVX2, AVX512):
        for dtype_bytes in (4, 8):
            few = _products(FEW_PIXELS, dtype_bytes, machine)
            assert all(p.batch_columns for p in few.values())
            constants = {c.name: c.value for c in plan(FEW_PIXELS, dtype_bytes, machine).constants}
            assert min(constants["FWD_SAMPLE_COLUMNS"], constants["GIN_SAMPLE_COLUMNS"]) > 9 * 1.05
            s6 = _products(LAYERS["S6"][0], dtype_bytes, machine)
            assert not any(p.batch_columns for p in s6.values())
            wide = _products(LayerSpec(input=(512, 7, 7), kernel=(2048, 512, 1, 1)),
                             dtype_bytes, machine)
            assert all(p.batch_columns for p in wide.values()), wide


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_batch_columns_match_the_reference_and_the_per_sample_bits(tmp_path: Path, monkeypatch,
                                                                   dtype):
    """Every batch from 1 (one sample's own panels) to 33 (many tasks, panels spanning up
    to three samples) matches the reference, and, the same sums in the same order, the bits
    of the module whose products go sample by sample."""
    module = _build_with(FEW_PIXELS, dtype, {}, tmp_path / "batch")
    source = (Path(module.__file__).parent / "conv2d_openmp.c").read_text()
    assert "forward_batch(" in source and "grad_input_batch(" in source
    monkeypatch.setattr(pointwise, "BATCH_COLUMNS_WASTE", 10.0)
    per_sample = _build_with(FEW_PIXELS, dtype, {}, tmp_path / "per_sample")
    assert "store_batch_tile" not in (Path(per_sample.__file__).parent
                                      / "conv2d_openmp.c").read_text()
    for n in (1, 2, 3, 5, 16, 33):
        for result in check_module(module, batch=n, seed=n):
            assert result.ok, (n, result)
        V, K, b, G = reference.random_inputs(FEW_PIXELS, n, dtype, n)
        assert np.array_equal(module.forward(V, K, b), per_sample.forward(V, K, b)), n
        assert np.array_equal(module.grad_input(K, G), per_sample.grad_input(K, G)), n
