"""Compiled OpenMP kernels against the NumPy reference, on a grid of awkward layers."""

from __future__ import annotations

import inspect
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import codegen
from codegen.backends import OPENMP
from codegen.blocking import AVX512
from codegen.blocking import plan as plan_layer
from codegen.blocking.common import MIN_TASKS
from codegen.blocking.pointwise import in_place_pays
from codegen.blocking.shuffles import half_transpose_shuffles, in_place_loads, lane_transpose
from codegen.check import check_module
from codegen.lower import lower
from codegen.runtime import PASSES, KernelModule
from derive import LayerSpec, reference

SEED = LayerSpec(input=(1, 3, 3), kernel=(1, 1, 2, 2))


def plans(ir) -> dict:
    """The plan record of every pass of a ``loops`` module, by pass name."""
    return {plan.name: plan for plan in ir.plans}


def in_lanes(ir) -> tuple[str, ...]:
    """The passes whose plans hold channels in vector lanes."""
    return tuple(p.name for p in ir.plans if p.variant in ("lane_sweep", "grad_weight_lanes"))

#: Strides 1-3 (also unequal), paddings including same (even and odd totals) and full,
#: dilation 1-2, channels 1-5, non-square inputs and kernels, convolution mode, bias on/off,
#: rows/columns no window covers, and two layers large enough for the parallel path.
GRID = {
    "seed": SEED,
    "s2x1_p2x1_d1x2": LayerSpec(input=(2, 7, 9), kernel=(3, 2, 3, 2), stride=(2, 1),
                                padding=(2, 1), dilation=(1, 2)),
    "s3_same_d2_conv": LayerSpec(input=(3, 11, 8), kernel=(4, 3, 3, 3), stride=3,
                                 padding="same", dilation=2, mode="convolution"),
    "full_nobias": LayerSpec(input=(1, 5, 6), kernel=(2, 1, 2, 3), padding="full",
                             bias=False),
    "s1x3_p3x0_c5": LayerSpec(input=(5, 9, 13), kernel=(5, 5, 4, 3), stride=(1, 3),
                              padding=(3, 0)),
    "s3_uncovered": LayerSpec(input=(2, 4, 4), kernel=(1, 2, 1, 1), stride=3),
    "same_conv_nobias": LayerSpec(input=(4, 10, 7), kernel=(2, 4, 3, 3), padding="same",
                                  mode="convolution", bias=False),
    "same_odd_d2x1": LayerSpec(input=(3, 8, 12), kernel=(5, 3, 2, 4), padding="same",
                               dilation=(2, 1)),
    "s3x2_full_d2": LayerSpec(input=(1, 12, 5), kernel=(3, 1, 5, 2), stride=(3, 2),
                              padding="full", dilation=2),
    "s2_p1_o1": LayerSpec(input=(5, 6, 6), kernel=(1, 5, 3, 3), stride=2, padding=1),
    "s2_p2_d2_conv": LayerSpec(input=(2, 9, 9), kernel=(4, 2, 3, 3), stride=2, padding=2,
                               dilation=2, mode="convolution"),
    "s1x2_p0x2_nobias": LayerSpec(input=(3, 5, 17), kernel=(2, 3, 1, 5), stride=(1, 2),
                                  padding=(0, 2), bias=False),
    "s2x1_p1x0_tall": LayerSpec(input=(4, 13, 6), kernel=(3, 4, 4, 1), stride=(2, 1),
                                padding=(1, 0)),
    "one_row": LayerSpec(input=(1, 1, 8), kernel=(2, 1, 1, 3), stride=(1, 3)),
    # grad_input read in place: vectors crossing both edges of a gradient row and lying past
    # it, rows that fill no whole tile, and tiles reaching past the gradient's last row
    "in_place_d1x2_conv": LayerSpec(input=(1, 11, 17), kernel=(2, 1, 2, 3), padding=1,
                                    dilation=(1, 2), mode="convolution"),
    "parallel_p1": LayerSpec(input=(8, 16, 16), kernel=(8, 8, 3, 3), padding=1),
    "parallel_s2_same": LayerSpec(input=(16, 12, 12), kernel=(12, 16, 3, 3), stride=2,
                                  padding="same"),
    # channels filling whole 64-byte vectors put channels in lanes (codegen.blocking): 16
    # and 32 output channels (float32 and float64), 8 and 16 input channels, tiles that
    # overrun rows and columns, stride phases that no tap reaches, and the parallel path
    "lanes_p1": LayerSpec(input=(16, 9, 11), kernel=(32, 16, 3, 3), padding=1),
    "lanes_s2x3_d2x1_conv": LayerSpec(input=(16, 13, 10), kernel=(16, 16, 3, 2), stride=(2, 3),
                                      padding=(1, 2), dilation=(2, 1), mode="convolution"),
    "lanes_s3_uncovered_nobias": LayerSpec(input=(8, 10, 7), kernel=(16, 8, 1, 2), stride=3,
                                           bias=False),
    "lanes_parallel_5x5": LayerSpec(input=(3, 20, 20), kernel=(16, 3, 5, 5), padding=2),
    # rows long enough for tiles of at least a vector of columns, transposed in registers
    # (a whole vector and a partial one per tile; the second tile of a row is an edge)
    "lanes_long_rows": LayerSpec(input=(16, 3, 37), kernel=(16, 16, 3, 3), padding=1),
    # column stride 2 on rows that long: the two column phases of a row phase are stored
    # interleaved, one a column narrower than the other (and a row phase no tap reaches),
    # or as wide, with edge tiles and (float64) two lane vectors of channels
    "lanes_s2_paired_d1x2": LayerSpec(input=(16, 5, 39), kernel=(16, 16, 2, 3), stride=2,
                                      padding=(0, 1), dilation=(1, 2)),
    "lanes_s2_paired_conv": LayerSpec(input=(16, 5, 58), kernel=(8, 16, 3, 3), stride=2,
                                      padding=1, mode="convolution"),
    # a forward lane tile spanning whole rows at a column stride and dilation: the pixels
    # whose column taps read the zero frame have no multiply-adds
    "lanes_s2_d2_narrow_conv": LayerSpec(input=(16, 5, 9), kernel=(16, 16, 3, 3), stride=2,
                                         padding=2, dilation=2, mode="convolution"),
    # grad_weight's row parts (at batches 1, 3 and 7, enough pixels and flops per sample for
    # two or more): parts that read the same input rows, rows of padding, a stride and a
    # dilation down the rows; output channels in lanes, then in column tiles with a tail of
    # columns
    "row_parts_s2x1_d2x1_conv": LayerSpec(input=(16, 64, 66), kernel=(16, 16, 3, 3),
                                          stride=(2, 1), padding=(1, 2), dilation=(2, 1),
                                          mode="convolution"),
    "row_parts_5x5": LayerSpec(input=(8, 64, 70), kernel=(12, 8, 5, 5), padding=2),
    # 1x1 kernels at stride 1 without padding: the matrix-product kernels, with edge tiles
    # (rows and columns that fill no whole tile), a single pixel, and the parallel path
    "pointwise_d2": LayerSpec(input=(5, 3, 7), kernel=(19, 5, 1, 1), dilation=2),
    "pointwise_conv_nobias": LayerSpec(input=(13, 4, 5), kernel=(6, 13, 1, 1),
                                       mode="convolution", bias=False),
    "pointwise_one_pixel": LayerSpec(input=(3, 1, 1), kernel=(2, 3, 1, 1)),
    "pointwise_parallel": LayerSpec(input=(37, 9, 9), kernel=(21, 37, 1, 1)),
    # fewer pixels than result rows in both forward and grad_input: a small batch's tasks
    # divide the row panels (the others' divide the column panels), over two column panels
    # (three in float64), the last narrower
    "pointwise_row_groups": LayerSpec(input=(64, 6, 9), kernel=(72, 64, 1, 1)),
    # grad_weight in chunks of pixels (G_s larger than a chunk; the last chunk shorter, not a
    # whole number of vectors), and fewer input channels than a column panel holds
    "pointwise_chunks": LayerSpec(input=(13, 61, 59), kernel=(32, 13, 1, 1)),
    # 1x1 kernels at a stride: the products gather the input pixels under the output's, and
    # grad_input scatters into their cells; cells clipped at the right and bottom edges, a
    # dilation (no effect), a small batch's column groups, row groups, and grad_weight's chunks
    "pointwise_s2x3_d2": LayerSpec(input=(13, 10, 11), kernel=(6, 13, 1, 1), stride=(2, 3),
                                   dilation=2),
    "pointwise_s3_conv_nobias": LayerSpec(input=(5, 10, 7), kernel=(19, 5, 1, 1), stride=3,
                                          mode="convolution", bias=False),
    "pointwise_s2_parallel": LayerSpec(input=(37, 18, 18), kernel=(21, 37, 1, 1), stride=2),
    "pointwise_s1x2_row_groups": LayerSpec(input=(64, 6, 17), kernel=(72, 64, 1, 1),
                                           stride=(1, 2)),
    "pointwise_s2x1_chunks": LayerSpec(input=(13, 121, 59), kernel=(32, 13, 1, 1),
                                       stride=(2, 1)),
    # forward and grad_input products too deep for a panel of two vectors in PANEL_BYTES:
    # panels of several vectors past L1
    "pointwise_deep": LayerSpec(input=(700, 3, 5), kernel=(650, 700, 1, 1)),
}

#: Unrolled kernels for the layers small enough to unroll quickly.
UNROLLED = [name for name, spec in GRID.items() if spec.n_terms <= 1400]

#: Every layer in the blocked style and both dtypes; the direct style (the index forms
#: printed as loops, whose arithmetic does not depend on the dtype) in float64, and in
#: float32 on the seed; the unrolled style where it is quick to build.
CASES = ([(name, "loops", dtype) for name in GRID for dtype in ("float64", "float32")]
         + [(name, "direct", "float64") for name in GRID]
         + [("seed", "direct", "float32")]
         + [(name, "unrolled", "float64") for name in UNROLLED]
         + [("seed", "unrolled", "float32")])


@pytest.fixture(scope="session")
def modules(tmp_path_factory):
    """Every grid module, built once per session into one temporary folder, two at a time."""
    out = tmp_path_factory.mktemp("kernels")

    def build(case):
        name, style, dtype = case
        return case, codegen.load(GRID[name], dtype=dtype, out=out, style=style)

    with ThreadPoolExecutor(2) as pool:
        return dict(pool.map(build, CASES))


@pytest.mark.parametrize("batch", [1, 7])
@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_every_pass_matches_reference(modules, case, batch):
    module = modules[case]
    for result in check_module(module, batch=batch, seed=batch):
        assert result.ok, f"{result.name} mismatch for {module.spec.describe()}: {result}"


@pytest.mark.parametrize("case", [("same_odd_d2x1", "loops", "float64"),
                                  ("parallel_s2_same", "loops", "float32"),
                                  ("s2_p2_d2_conv", "unrolled", "float64")],
                         ids=lambda c: "-".join(c))
def test_backward_equals_the_single_passes(modules, case):
    module = modules[case]
    V, K, _, G = reference.random_inputs(module.spec, 3, module.dtype, 1)
    dV, dK, db = module.backward(V, K, G)
    np.testing.assert_array_equal(dV, module.grad_input(K, G))
    np.testing.assert_array_equal(dK, module.grad_weight(V, G))
    np.testing.assert_array_equal(db, module.grad_bias(G))


@pytest.mark.parametrize("case", [("parallel_p1", "loops", "float64"),
                                  ("s3_same_d2_conv", "loops", "float32"),
                                  ("lanes_s2x3_d2x1_conv", "loops", "float32"),
                                  ("s2x1_p2x1_d1x2", "unrolled", "float64")],
                         ids=lambda c: "-".join(c))
def test_adjoint_identity(modules, case):
    """<forward(V), G> = <V, grad_input(G)> = <K, grad_weight(V, G)>, bias 0."""
    module = modules[case]
    V, K, b, G = reference.random_inputs(module.spec, 3, module.dtype, 2)
    Z = module.forward(V, K, None if b is None else np.zeros_like(b))
    lhs = np.vdot(Z.astype(float), G.astype(float))
    via_input = np.vdot(V.astype(float), module.grad_input(K, G).astype(float))
    via_weight = np.vdot(K.astype(float), module.grad_weight(V, G).astype(float))
    scale = np.abs(Z).sum() * np.abs(G).max()
    tol = 1e-6 if module.dtype == "float32" else 1e-12
    assert abs(lhs - via_input) <= tol * scale
    assert abs(lhs - via_weight) <= tol * scale


@pytest.mark.parametrize("style", ["unrolled", "loops", "direct"])
def test_seed_001_worked_examples_exactly(tmp_path, style):
    V = np.array([[[[1, 6, 2], [5, 3, 1], [7, 0, 4]]]], float)
    K = np.array([[[[1, 2], [-1, 0]]]], float)
    plain = codegen.load(SEED.replace(bias=False), out=tmp_path, style=style)
    np.testing.assert_array_equal(plain.forward(V, K)[0, 0], [[8, 7], [4, 5]])
    conv = codegen.load(SEED.replace(bias=False, mode="convolution"), out=tmp_path,
                        style=style)
    np.testing.assert_array_equal(conv.forward(V, K)[0, 0], [[7, 5], [11, 3]])
    full = codegen.load(SEED.replace(bias=False, padding="full"), out=tmp_path, style=style)
    np.testing.assert_array_equal(full.forward(V, K)[0, 0], [
        [0, -1, -6, -2], [2, 8, 7, 1], [10, 4, 5, -3], [14, 7, 8, 4]])


def test_lane_tiles_are_covered_by_the_grid():
    """Every pass of both dtypes puts channels in lanes somewhere in the grid, and a pass
    whose channels do not fill whole vectors does not."""
    covered = {(dtype, name) for spec in GRID.values() for dtype in ("float32", "float64")
               for name in in_lanes(lower(spec, OPENMP, dtype, "loops"))}
    assert covered == {(dtype, name) for dtype in ("float32", "float64")
                       for name in ("forward", "grad_input", "grad_weight")}
    odd = lower(GRID["parallel_s2_same"], OPENMP, "float32", "loops")
    assert in_lanes(odd) == ("grad_input",)  # C = 16 fills a vector of 16; O = 12 does not


def test_transposed_lane_stores_are_covered_by_the_grid():
    """Lane tiles of at least LANES columns store whole tiles through in-register transposes:
    forward and stride-1 grad_input of both dtypes do so somewhere in the grid, with runs of
    LANES columns and partial runs, edge tiles (stored the other way), and two lane vectors
    of channels; the transpose's steps move every element to its transposed place."""
    covered, partial, edges, vectors = set(), set(), set(), set()
    for spec in GRID.values():
        for dtype in ("float32", "float64"):
            ir = lower(spec, OPENMP, dtype, "loops")
            for prefix, name, cols in (("FWD", "forward", "LWO"), ("GIN", "grad_input", "LW")):
                if not getattr(plans(ir)[name], "transposed", False):
                    continue
                lanes, tx = ir.constant("LANES"), ir.constant(f"{prefix}_TX")
                assert tx >= lanes and (name == "forward" or ir.constant("SW") == 1)
                covered.add((dtype, name))
                partial.add(tx % lanes > 0)
                edges.add(ir.constant(cols) % tx > 0)
                vectors.add(ir.constant(f"{prefix}_NV"))
                steps, columns = lane_transpose(lanes, 4 if dtype == "float32" else 8)
                matrix = np.arange(lanes * lanes).reshape(lanes, lanes)
                rows = list(matrix)
                for step in steps:
                    rows = [np.concatenate([rows[a], rows[b]])[list(indices)]
                            for _, a, b, indices in sorted(step)]
                np.testing.assert_array_equal(np.array([rows[row] for row in columns]), matrix.T)
    assert covered == {(dtype, name) for dtype in ("float32", "float64")
                       for name in ("forward", "grad_input")}
    assert True in partial and True in edges and vectors == {1, 2}


@pytest.mark.parametrize("vl, real_bytes", [(8, 4), (4, 8)])
def test_the_half_transpose_leaves_each_column_in_the_half_it_names(vl, real_bytes):
    """``transpose_halves`` as printed (its shuffles, the vectors it leaves, each column's
    vector and half), run on NumPy rows: every column of the VL / 2 x VL matrix comes out
    whole in the half named for it, and each shuffle keeps to 16-byte blocks (an unpack)."""
    steps, shuffles, values, halves = half_transpose_shuffles(vl, real_bytes)
    half = vl // 2
    matrix = np.arange(half * vl).reshape(half, vl)
    named = {f"rows[{i}]": matrix[i] for i in range(half)}
    for s in shuffles:
        named[s.target] = np.concatenate([named[s.a], named[s.b]])[list(s.indices)]
        assert all(index % vl // half == lane // half for lane, index in enumerate(s.indices))
    columns = [named[value] for value in values]
    for j, (vector, which) in enumerate(halves):
        np.testing.assert_array_equal(columns[vector][which * half:(which + 1) * half],
                                      matrix[:, j])
    assert len(shuffles) == steps * half and 2 ** steps == half


def test_grad_weight_tap_blocks_lie_at_fixed_distances():
    """grad_weight reads each block of GW_TT taps from one pointer at the compile-time
    offsets GW_TAP_DELTA: in every grid layer of both dtypes each block's taps lie at those
    distances from the block's first tap. The grid has layers of several blocks, with
    channels in lanes and without, and layers where blocks of some other size would not."""
    blocks, uneven = set(), set()
    for spec in GRID.values():
        for dtype in ("float32", "float64"):
            ir = lower(spec, OPENMP, dtype, "loops")
            if ir.pointwise:  # a matrix product: no taps
                continue
            tt, offsets = ir.constant("GW_TT"), ir.table("GW_TAP_OFFSET")
            delta = ir.table("GW_TAP_DELTA")
            assert len(delta) == tt and len(offsets) % tt == 0
            for t0 in range(0, len(offsets), tt):
                assert [offsets[t0 + k] - offsets[t0] for k in range(tt)] == list(delta)
            if len(offsets) > tt:
                blocks.add("grad_weight" in in_lanes(ir))
            n = len(offsets)
            uneven.update(size for size in range(1, n + 1) if n % size == 0 and len(
                {tuple(offsets[t0 + k] - offsets[t0] for k in range(size))
                 for t0 in range(0, n, size)}) > 1)
    assert blocks == {True, False} and uneven


def test_paired_column_phases_are_covered_by_the_grid():
    """At column stride 2, a grad_input lane tile of at least LANES columns sweeps the two
    column phases of a row phase together and stores them interleaved: both dtypes do so in
    the grid, with phases as wide and one column apart, partial runs of columns, edge tiles,
    phases no tap reaches and two lane vectors of channels; each pair fills whole rows."""
    covered, uneven, partial, edges, empty, vectors = set(), set(), set(), set(), set(), set()
    for spec in GRID.values():
        for dtype in ("float32", "float64"):
            ir = lower(spec, OPENMP, dtype, "loops")
            if not getattr(plans(ir)["grad_input"], "paired", False):
                continue
            lanes, tx, width = ir.constant("LANES"), ir.constant("GIN_TX"), ir.constant("LW")
            assert ir.constant("SW") == 2 and tx >= lanes
            cols, dst = ir.table("GIN_PHASE_COLS"), ir.table("GIN_PHASE_DST")
            record = plans(ir)["grad_input"]
            taps = record.tap_spans or ir.table("GIN_PHASE_TAPS")
            for p in range(0, len(cols), 2):
                # the first phase starts a row of the input and the two fill it
                assert dst[p] % width == 0 and cols[p] + cols[p + 1] == width
            covered.add(dtype)
            uneven.add(cols[0] != cols[1])
            partial.add(tx % lanes > 0)
            edges.add(cols[0] % tx > 0)
            empty.add(any(taps[p] == taps[p + 1] for p in range(len(cols))))
            vectors.add(ir.constant("GIN_NV"))
    assert covered == {"float32", "float64"} and uneven == {True, False}
    assert True in partial and True in edges and True in empty and vectors == {1, 2}


def test_in_place_grad_input_is_covered_by_the_grid():
    """A row-reusing grad_input column tile as wide as the rows of dV reads the gradient in
    place: both dtypes do so in the grid, with vectors loaded whole, shifted in across the
    first and the last column of a row and lying past it, rows that fill no whole tile and
    rows past the gradient; each vector's load gives the gradient columns it stands for."""
    covered, kinds, row_edges, past = set(), set(), set(), set()
    for spec in GRID.values():
        for dtype in ("float32", "float64"):
            ir = lower(spec, OPENMP, dtype, "loops")
            if plans(ir)["grad_input"].variant != "in_place_sweep":
                continue
            covered.add(dtype)
            vl, width, rows = ir.constant("VL"), ir.constant("LWO"), ir.constant("LHO")
            ty, top = ir.constant("GIN_TY"), ir.constant("GIN_FRAME_ROW")
            phase_rows = ir.table("GIN_PHASE_ROWS")[0]
            row_edges.add(phase_rows % ty > 0)
            last = max(row for row, _ in plans(ir)["grad_input"].schedule)
            past.add(top < 0 or (phase_rows - 1) // ty * ty + top + last >= rows)
            row = np.arange(1.0, width + 1)
            starts = ir.table("GIN_COLUMN_START")
            loads = in_place_loads(vl, width, starts, ir.constant("GIN_TXV"))
            for start, plan in zip(starts, loads, strict=True):
                for xv, (kind, indices) in enumerate(plan):
                    kinds.add(kind)
                    columns = start + xv * vl + np.arange(vl)
                    want = np.where((columns >= 0) & (columns < width),
                                    row[np.clip(columns, 0, width - 1)], 0)
                    # what the kernel loads: LOAD(row + start + xv*VL), or the row's first
                    # (last) VL reals shuffled with zeros
                    if kind == "load":
                        got = row[columns[0]:columns[0] + vl]
                    elif kind == "zero":
                        got = np.zeros(vl)
                    elif kind == "left":
                        got = np.concatenate([np.zeros(vl), row[:vl]])[list(indices)]
                    else:
                        got = np.concatenate([row[-vl:], np.zeros(vl)])[list(indices)]
                    np.testing.assert_array_equal(got, want)
    assert covered == {"float32", "float64"} and kinds == {"load", "zero", "left", "right"}
    assert row_edges == {True, False} and True in past


def test_column_grad_weight_shapes_are_covered_by_the_grid():
    """The column grad_weight reads the gradient's rows in place in whole vectors and copies
    the rest of each row: the grid has rows of whole vectors only, of a tail only, and both."""
    shapes = set()
    for spec in GRID.values():
        for dtype in ("float32", "float64"):
            ir = lower(spec, OPENMP, dtype, "loops")
            if not ir.pointwise and "grad_weight" not in in_lanes(ir):
                shapes.add((ir.constant("GW_FULL_COLS") > 0, ir.constant("GW_TAIL_COLS") > 0))
    assert shapes == {(True, False), (False, True), (True, True)}


def _row_parts(n: int, constants: dict, flops_per_sample: int, block: int) -> int:
    """The parts grad_weight cuts a sample's rows into at batch n (templates/openmp/
    _grad_weight.jinja's rule, restated)."""
    chunks = min(max(n, 1), constants["GRAD_WEIGHT_CHUNKS"])
    tasks = chunks * constants["O"] // block
    parts = min(-(-constants["GRAD_WEIGHT_TASKS"] // tasks),
                n * flops_per_sample // (tasks * constants["GRAD_WEIGHT_PART_FLOPS"]),
                n // chunks * constants["LHO"] * constants["LWO"]
                // constants["GRAD_WEIGHT_SLOT_PIXELS"],
                constants["GW_MOST_PARTS"])
    return max(parts, 1)


def test_grad_weight_row_parts_are_covered_by_the_grid():
    """Both grad_weight tiles (lanes and columns, with a tail of columns) cut a sample's rows
    into several parts on some grid layer in both dtypes, at the batches that the check of
    every pass (1 and 7) and the thread-count test (3) run."""
    covered = set()
    for spec in GRID.values():
        for dtype in ("float32", "float64"):
            ir = lower(spec, OPENMP, dtype, "loops")
            constants = {c.name: c.value for c in ir.constants}
            plan = next(p for p in ir.plans if p.name == "grad_weight")
            if "GW_MOST_PARTS" not in constants:
                continue
            flops = next(k for k in ir.kernels if k.name == "grad_weight").flops_per_sample
            block = constants.get("GW_LW", constants.get("GW_OB"))
            if all(_row_parts(n, constants, flops, block) > 1 for n in (1, 3, 7)):
                covered.add((dtype, plan.variant, constants.get("GW_TAIL_COLS", 0) > 0))
    assert {("float32", "grad_weight_lanes", False), ("float64", "grad_weight_lanes", False),
            ("float32", "grad_weight_columns", True), ("float64", "grad_weight_columns", True)
            } <= covered


def test_row_reuse_is_covered_by_the_grid():
    """Both sweeps of both dtypes reuse source rows somewhere in the grid, among them a
    strided forward (rows shared by some row taps only) and a dilated one (gaps between the
    rows); every (tile row, row tap) pair reads its own source row exactly once."""
    covered, steps, gaps = set(), set(), set()
    for spec in GRID.values():
        for dtype in ("float32", "float64"):
            ir = lower(spec, OPENMP, dtype, "loops")
            for reuse in ir.plans:
                if not (reuse.variant == "in_place_sweep" or getattr(reuse, "reuse", False)):
                    continue
                covered.add((dtype, reuse.name))
                steps.add(reuse.row_step)
                gaps.add(max(reuse.tap_rows) + 1 > len(reuse.tap_rows))
                pairs = [(row, use) for row, uses in reuse.schedule for use in uses]
                assert sorted(use for _, use in pairs) == [
                    (y, i) for y in range(ir.constant(f"{reuse.prefix}_TY"))
                    for i in range(len(reuse.tap_rows))]
                assert all(row == y * reuse.row_step + reuse.tap_rows[i]
                           for row, (y, i) in pairs)
    assert covered == {(dtype, name) for dtype in ("float32", "float64")
                       for name in ("forward", "grad_input")}
    assert steps == {1, 2} and gaps == {False, True}


def _grid_records(field: str):
    """(spec, dtype, ir, record) for every pass record of the grid, both dtypes, whose
    ``field`` is set."""
    for spec in GRID.values():
        for dtype in ("float32", "float64"):
            ir = lower(spec, OPENMP, dtype, "loops")
            for record in ir.plans:
                if getattr(record, field, None):
                    yield spec, dtype, ir, record


def _live_rows(spec: LayerSpec, ir, prefix: str, phase: int, m0: int, tap: int) -> bool:
    """Whether tap ``tap`` of a sweep's row of tiles from phase row ``m0`` reads any row of
    data, from the layer's geometry alone: forward's output row y reads input row
    ``y*SH + i*DH - PT``; grad_input's input row u (the phase's first plus m*SH) reads
    gradient row ``(u + PT - i*DH) / SH``."""
    (_, _, kh, kw), (sh, _), (dh, _) = spec.kernel, spec.stride, spec.dilation
    top = spec.pads[0]
    flat = ir.table(f"{prefix}_TAP_WEIGHT")[tap]
    i = flat // kw if spec.mode == "correlation" else kh - 1 - flat // kw
    rows = ir.table(f"{prefix}_PHASE_ROWS")[phase]
    ys = range(m0, min(m0 + ir.constant(f"{prefix}_TY"), rows))
    if prefix == "FWD":
        return any(0 <= y * sh + i * dh - top < spec.input[1] for y in ys)
    first = ir.table("GIN_PHASE_DST")[phase] // spec.input[2]  # the phase's first input row
    reads = [first + m * sh + top - i * dh for m in ys]
    assert all(r % sh == 0 for r in reads)
    return any(0 <= r // sh < spec.output_shape[1] for r in reads)


def test_taps_reading_only_zero_rows_are_skipped_across_the_grid():
    """A sweep's row of tiles runs the taps TAPS_FROM .. TAPS_TO - 1 of its phase: every tap
    outside reads only zero rows above or below the data, and the first and last inside read
    data (checked against the layer's geometry). Lane and column tiles of forward and
    grad_input skip taps somewhere in the grid, at strides and dilations, and the tiles'
    results are the reference's (test_every_pass_matches_reference)."""
    covered, strided, dilated = set(), set(), set()
    for spec, _, ir, record in _grid_records("tap_spans"):
        prefix = record.prefix
        starts = record.tap_spans  # each phase's taps, which the C no longer lists
        with pytest.raises(KeyError):
            ir.table(f"{prefix}_PHASE_TAPS")
        first = ir.table(f"{prefix}_SPANS_FIRST")
        low, high = ir.table(f"{prefix}_TAPS_FROM"), ir.table(f"{prefix}_TAPS_TO")
        ty = ir.constant(f"{prefix}_TY")
        skipped = 0
        for phase, rows in enumerate(ir.table(f"{prefix}_PHASE_ROWS")):
            for k, m0 in enumerate(range(0, rows, ty)):
                span = first[phase] + k
                taps = range(starts[phase], starts[phase + 1])
                inside = range(low[span], high[span])
                assert set(inside) <= set(taps)
                for tap in taps:
                    live = _live_rows(spec, ir, prefix, phase, m0, tap)
                    assert live == (tap in inside) or (
                        tap in inside and inside[0] < tap < inside[-1]), (tap, m0)
                skipped += len(taps) - len(inside)
        assert skipped > 0
        covered.add((record.variant, record.name))
        strided.add(spec.stride[0] > 1)
        dilated.add(spec.dilation[0] > 1)
    assert covered == {(variant, name) for variant in ("lane_sweep", "column_sweep")
                       for name in ("forward", "grad_input")}
    assert strided == dilated == {False, True}


def test_pixels_reading_only_zero_columns_are_skipped_across_the_grid():
    """A lane tile that spans its phase's every column runs its taps a row at a time, with a
    multiply-add for pixel x and column tap j only where that reads a column of data (checked
    against the layer's geometry: forward's output column x reads input column
    ``x*SW + j*DW - PL``, a stride-1 grad_input's input column x gradient column
    ``x + PL - j*DW``). Forward (also strided and dilated) and grad_input do so in the grid,
    and the tiles' results are the reference's (test_every_pass_matches_reference)."""
    covered, strided, dilated = set(), set(), set()
    for spec, _, ir, record in _grid_records("column_taps"):
        (_, _, _, kw), (_, sw), (_, dw) = spec.kernel, spec.stride, spec.dilation
        left = spec.pads[2]
        prefix, per_row = record.prefix, len(record.column_taps)
        weights, offsets = (ir.table(f"{prefix}_TAP_WEIGHT"),
                            ir.table(f"{prefix}_TAP_OFFSET"))
        assert ir.table(f"{prefix}_PHASE_COLS")[0] <= record.tx
        assert len(weights) % per_row == 0
        skipped = 0
        for j, delta, live in record.column_taps:
            columns = {weights[r * per_row + j] % kw
                       for r in range(len(weights) // per_row)}
            assert len(columns) == 1  # one kernel column per column tap
            assert all(offsets[r * per_row + j] - offsets[r * per_row] == delta
                       for r in range(len(weights) // per_row))
            column = columns.pop()
            jj = column if spec.mode == "correlation" else kw - 1 - column
            for x in range(record.tx):
                if prefix == "FWD":
                    data = 0 <= x * sw + jj * dw - left < spec.input[2]
                else:
                    data = 0 <= x + left - jj * dw < spec.output_shape[2]
                assert (x in live) == data, (j, x)
            skipped += record.tx - len(live)
        assert skipped > 0
        covered.add(record.name)
        strided.add(sw > 1)
        dilated.add(dw > 1)
    assert covered == {"forward", "grad_input"}
    assert strided == dilated == {False, True}


def test_grad_weight_rows_reading_only_zero_rows_are_skipped_across_the_grid():
    """grad_weight's block of taps t0 .. t0 + GW_TT - 1 sums the output rows GW_ROWS_FROM ..
    GW_ROWS_TO - 1 of its block: every row outside reads only zero rows under every tap of
    the block, and the first and last inside read data under some tap (checked against the
    layer's geometry: output row y and kernel row i read input row y*SH + i*DH - PT). Lane
    and column tiles do so in the grid, at a stride and a dilation, and their results are the
    reference's (test_every_pass_matches_reference)."""
    covered, strided, dilated = set(), set(), set()
    for spec, _, ir, record in _grid_records("row_spans"):
        (_, _, kh, kw), (sh, _), (dh, _) = spec.kernel, spec.stride, spec.dilation
        top, rows = spec.pads[0], spec.output_shape[1]
        low, high = ir.table("GW_ROWS_FROM"), ir.table("GW_ROWS_TO")
        tt, weights = ir.constant("GW_TT"), ir.table("GW_TAP_WEIGHT")
        assert len(low) == len(high) == kh * kw // tt
        skipped = 0
        for block, t0 in enumerate(range(0, kh * kw, tt)):
            kernel_rows = {weights[t] // kw for t in range(t0, t0 + tt)}
            if spec.mode == "convolution":
                kernel_rows = {kh - 1 - i for i in kernel_rows}
            live = [y for y in range(rows)
                    if any(0 <= y * sh + i * dh - top < spec.input[1] for i in kernel_rows)]
            assert (low[block], high[block]) == ((live[0], live[-1] + 1) if live else (0, 0))
            skipped += rows - (high[block] - low[block])
        assert skipped > 0
        covered.add(record.variant)
        strided.add(sh > 1)
        dilated.add(dh > 1)
    assert covered == {"grad_weight_lanes", "grad_weight_columns"}
    assert strided == dilated == {False, True}


def test_grad_weight_border_pixels_leave_out_the_taps_on_the_zero_frame():
    """A lane grad_weight tile whose blocks hold whole kernel rows peels the output columns
    at which some tap reads the zero frame, each with a multiply-add for exactly the taps
    that read data there (output column x and kernel column j read input column
    x*SW + j*DW - PL), and loops over the columns between, where every tap does. The grid
    has such tiles, also at a column stride and dilation."""
    covered, strided, dilated = set(), set(), set()
    for spec, dtype, ir, record in _grid_records("border"):
        (_, _, _, kw), (_, sw), (_, dw) = spec.kernel, spec.stride, spec.dilation
        left, width = spec.pads[2], spec.output_shape[2]
        weights = ir.table("GW_TAP_WEIGHT")
        assert record.tt % kw == 0
        columns = [weights[t] % kw if spec.mode == "correlation" else kw - 1 - weights[t] % kw
                   for t in range(record.tt)]
        live = {x: tuple(t for t in range(record.tt)
                         if 0 <= x * sw + columns[t] * dw - left < spec.input[2])
                for x in range(width)}
        first, end = record.inner
        assert dict(record.border) == {x: taps for x, taps in live.items()
                                       if not first <= x < end}
        assert all(len(live[x]) == record.tt for x in range(first, end))
        assert all(len(taps) < record.tt for _, taps in record.border)
        covered.add(dtype)
        strided.add(sw > 1)
        dilated.add(dw > 1)
    assert covered == {"float32", "float64"}
    assert strided == dilated == {False, True}


def test_grad_weight_border_rows_leave_out_the_taps_on_the_zero_frame():
    """A lane grad_weight tile of one block of every tap (whose rows no span can cut) sums
    apart the output rows at which some kernel row reads the zero frame, each with a
    multiply-add for exactly the taps whose kernel row reads data there (output row y and
    kernel row i read input row y*SH + i*DH - PT), and loops over the rows between, where
    every tap does. The grid has such tiles in both dtypes, also at a row stride and
    dilation."""
    covered, strided, dilated = set(), set(), set()
    for spec, dtype, ir, record in _grid_records("border_rows"):
        (_, _, kh, kw), (sh, _), (dh, _) = spec.kernel, spec.stride, spec.dilation
        top, height = spec.pads[0], spec.output_shape[1]
        weights = ir.table("GW_TAP_WEIGHT")
        assert record.tt == kh * kw
        rows = [weights[t] // kw if spec.mode == "correlation" else kh - 1 - weights[t] // kw
                for t in range(record.tt)]
        live = {y: tuple(t for t in range(record.tt)
                         if 0 <= y * sh + rows[t] * dh - top < spec.input[1])
                for y in range(height)}
        first, end = record.inner_rows
        assert dict(record.border_rows) == {y: taps for y, taps in live.items()
                                            if not first <= y < end}
        assert all(len(live[y]) == record.tt for y in range(first, end))
        assert all(len(taps) < record.tt for _, taps in record.border_rows)
        covered.add(dtype)
        strided.add(sh > 1)
        dilated.add(dh > 1)
    assert covered == {"float32", "float64"}
    assert strided == dilated == {False, True}


def test_a_column_tap_that_reads_no_data_is_left_out(tmp_path):
    """Padding wider than the input: a forward lane tile spanning the row has column taps
    that read only the frame at every column. They are left out whole (no weight loaded for
    nothing, which -Wall would report), and the result is the reference's."""
    spec = LayerSpec(input=(64, 4, 1), kernel=(16, 64, 1, 5), padding=(0, 3))
    record = plans(lower(spec, OPENMP, "float32", "loops"))["forward"]
    assert [len(live) for _, _, live in record.column_taps] == [0, 1, 1, 1, 0]
    module = codegen.load(spec, dtype="float32", out=tmp_path, style="loops")
    log = next(tmp_path.glob("*/build.log")).read_text()
    assert "warning" not in log
    V, K, b, _ = reference.random_inputs(spec, 3, "float32", 0)
    np.testing.assert_allclose(module.forward(V, K, b), reference.forward(spec, V, K, b),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", ["parallel_p1", "pointwise_parallel", "lanes_parallel_5x5"])
def test_grad_weight_is_identical_run_to_run(modules, name):
    module = modules[(name, "loops", "float32")]
    V, _, _, G = reference.random_inputs(module.spec, 7, "float32", 3)
    first = module.grad_weight(V, G)
    for _ in range(5):
        np.testing.assert_array_equal(module.grad_weight(V, G), first)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["pointwise_parallel", "pointwise_row_groups",
                                  "pointwise_s2_parallel", "pointwise_chunks"])
def test_a_1x1_layers_grad_weight_zeroes_every_block_of_out(modules, name, dtype):
    """A 1x1 layer's grad_weight has each thread zero the blocks of dK its own tasks sum
    into, not one memset before the team starts: a buffer of NaN passed as ``out`` comes
    back equal to the reference at a batch split among the threads and at one sample, and
    as zeros for an empty batch."""
    module = modules[(name, "loops", dtype)]
    source = (Path(module.__file__).parent / "conv2d_openmp.c").read_text()
    driver = source[source.index("static int grad_weight("):]
    assert "memset(dK, 0, sizeof(real) * O" not in driver
    assert "memset(dK + o * " in driver
    tolerance = 1e-5 if dtype == "float32" else 1e-13
    for batch in (0, 1, max(MIN_TASKS, 2 * module.threads())):
        V, _, _, G = reference.random_inputs(module.spec, batch, dtype, 6)
        dK = np.full(module.spec.kernel, np.nan, dtype)
        assert module.grad_weight(V, G, out=dK) is dK
        want = reference.grad_weight(module.spec, V.astype(np.float64), G.astype(np.float64))
        np.testing.assert_allclose(dK, want, rtol=tolerance,
                                   atol=tolerance * max(np.abs(want).max(), 1))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name, split", [("pointwise_parallel", "COL"), ("pointwise_d2", "COL"),
                                         ("pointwise_row_groups", "ROW"),
                                         ("pointwise_s2_parallel", "COL"),
                                         ("pointwise_s1x2_row_groups", "ROW")])
def test_a_small_batch_reads_the_weights_in_place_to_the_same_bits(modules, name, split,
                                                                    dtype):
    """A 1x1 layer's forward and grad_input read the weights where they lie in K when the
    batch is cut into groups of its column panels or row panels (a batch smaller than
    MIN_TASKS and two per thread), and from packed panels otherwise: the same sums in the
    same order, so each sample of a large batch has the bits it has alone. The groups divide
    the larger of the two factors: the sample where it has more pixels than the result rows
    (``split_columns``), the weights where it has fewer."""
    module = modules[(name, "loops", dtype)]
    source = (Path(module.__file__).parent / "conv2d_openmp.c").read_text()
    assert "const int in_place = groups > 1;" in source
    assert "(in_place ? forward_in_place_tile : forward_tile)(" in source
    for prefix in ("FWD", "GIN"):
        assert f"task_groups(n, {prefix}_{split}_PANELS)" in source
    large = max(MIN_TASKS, 2 * module.threads())
    V, K, b, G = reference.random_inputs(module.spec, large, dtype, 11)
    forward, grad_input = module.forward(V, K, b), module.grad_input(K, G)
    for s in (0, large - 1):
        np.testing.assert_array_equal(module.forward(V[s:s + 1], K, b), forward[s:s + 1])
        np.testing.assert_array_equal(module.grad_input(K, G[s:s + 1]), grad_input[s:s + 1])


def test_grad_input_reads_the_weights_in_place_only_while_a_panels_lines_fit_l1():
    """forward reads K's rows in place for a small batch whatever its depth; grad_input reads
    a column of K per row, one cache line per step, so only up to IN_PLACE_LINES_BYTES of
    lines: S6 (256 steps) and 512 steps do, 513 and 2048 do not."""
    assert in_place_pays("1", 4096)
    for depth, pays in ((256, True), (512, True), (513, False), (2048, False)):
        assert in_place_pays("C", depth) == pays
        spec = LayerSpec(input=(8, 3, 5), kernel=(depth, 8, 1, 1))
        records = {r.name: r for r in plan_layer(spec, 4, AVX512).passes}
        assert records["forward"].in_place and records["grad_input"].in_place == pays


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_grad_input_that_always_packs_the_weights_matches_the_reference(tmp_path, dtype):
    """A 1x1 layer of 520 output channels: grad_input packs the weights at every batch (no
    in-place tile, no in_place flag), in both its per-sample and its batch-columns driver
    (9 pixels a sample); forward keeps its in-place tiles. Both match the reference at
    batches 1 and 3, and a sample of a large batch has the bits it has alone."""
    spec = LayerSpec(input=(24, 3, 3), kernel=(520, 24, 1, 1))
    module = codegen.load(spec, dtype=dtype, out=tmp_path, style="loops", tune=False)
    source = (Path(module.__file__).parent / "conv2d_openmp.c").read_text()
    assert "grad_input_in_place_tile" not in source and "forward_in_place_tile" in source
    assert "static int grad_input_batch(" in source
    assert "Such a batch still packs the weights" in source
    for batch, seed in ((1, 2), (3, 4)):
        for result in check_module(module, batch=batch, seed=seed):
            assert result.ok, result
    large = max(MIN_TASKS, 2 * module.threads())
    _, K, _, G = reference.random_inputs(spec, large, dtype, 8)
    grad_input = module.grad_input(K, G)
    for s in (0, large - 1):
        np.testing.assert_array_equal(module.grad_input(K, G[s:s + 1]), grad_input[s:s + 1])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("name", ["pointwise_s2x3_d2", "pointwise_s2_parallel",
                                  "pointwise_s1x2_row_groups"])
def test_a_strided_1x1_layers_grad_input_writes_every_pixel(modules, name, dtype):
    """At a stride, a 1x1 layer's products gather the input pixels under the output's, and
    grad_input scatters its product into their cells of dV, zero but for the corners: a
    buffer of NaN passed as ``out`` comes back equal to the reference, with exact zeros
    wherever no output pixel reads, at a batch whose tasks are groups of panels and at one
    whose tasks are samples."""
    module = modules[(name, "loops", dtype)]
    source = (Path(module.__file__).parent / "conv2d_openmp.c").read_text()
    assert "pack_gathered_column_panels(src, C," in source and "scatter_cells(block," in source
    sh, sw = module.spec.stride
    for batch in (1, max(MIN_TASKS, 2 * module.threads())):
        _, K, _, G = reference.random_inputs(module.spec, batch, dtype, 5)
        dV = np.full((batch, *module.spec.input), np.nan, dtype)
        assert module.grad_input(K, G, out=dV) is dV
        want = reference.grad_input(module.spec, K.astype(np.float64), G.astype(np.float64))
        tolerance = 1e-5 if dtype == "float32" else 1e-13
        np.testing.assert_allclose(dV, want, rtol=tolerance, atol=tolerance * np.abs(want).max())
        read = np.zeros(module.spec.input[1:], bool)
        read[::sh, ::sw] = True
        assert not np.any(dV[..., ~read]), "a pixel no output reads is not zero"


@pytest.mark.parametrize("dtype_bytes", [4, 8])
def test_a_1x1_layers_column_panels_lie_a_cache_line_off_4_kb(dtype_bytes):
    """forward's and grad_input's packed column panels lie a panel plus one cache line apart:
    S6's panels (256 x 40 reals in float32, 256 x 20 in float64) are 40 KB each, and a
    row's copies into them all fell in one cache set."""
    from codegen.backends import OPENMP
    from codegen.blocking.common import LINE_BYTES, SET_SPAN_BYTES
    from codegen.lower import lower

    spec = LayerSpec(input=(256, 14, 14), kernel=(256, 256, 1, 1))
    dtype = "float32" if dtype_bytes == 4 else "float64"
    ir = lower(spec, OPENMP, dtype, "loops", choices={"forward": "tile=4x5",
                                                      "grad_input": "tile=4x5"})
    constants = {c.name: c.value for c in ir.constants}
    for prefix in ("FWD", "GIN"):
        panel = 256 * constants[f"{prefix}_NR"]
        assert panel * dtype_bytes % SET_SPAN_BYTES == 0
        assert constants[f"{prefix}_PANEL"] == panel + LINE_BYTES // dtype_bytes
        assert constants[f"{prefix}_PANEL"] * dtype_bytes % SET_SPAN_BYTES
    assert "GW_PANEL" not in constants


@settings(max_examples=6, deadline=None, derandomize=True)
@given(data=st.data())
def test_random_small_layers(tmp_path_factory, data):
    c, o = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    kh, kw = data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))
    dh, dw = data.draw(st.integers(1, 2)), data.draw(st.integers(1, 2))
    h = data.draw(st.integers(dh * (kh - 1) + 1, 9))
    w = data.draw(st.integers(dw * (kw - 1) + 1, 9))
    padding = data.draw(st.sampled_from(["valid", "same", "full", (1, 0), (0, 2)]))
    spec = LayerSpec(input=(c, h, w), kernel=(o, c, kh, kw),
                     stride=(data.draw(st.integers(1, 3)), data.draw(st.integers(1, 3))),
                     padding=padding, dilation=(dh, dw), bias=data.draw(st.booleans()),
                     mode=data.draw(st.sampled_from(["correlation", "convolution"])))
    module = codegen.load(spec, out=tmp_path_factory.mktemp("hypothesis"), style="loops")
    for result in check_module(module, batch=3):
        assert result.ok, f"{result.name} mismatch for {spec.describe()}: {result}"


def test_kernels_release_the_gil(tmp_path):
    """Python keeps running in another thread while a kernel runs."""
    spec = LayerSpec(input=(16, 64, 64), kernel=(16, 16, 3, 3), padding=1)
    module = codegen.load(spec, out=tmp_path, dtype="float32")
    V, K, b, _ = reference.random_inputs(spec, 32, "float32")  # calls of several ms each
    start = time.perf_counter()
    module.forward(V, K, b)
    once = time.perf_counter() - start
    calls = max(1, int(0.3 / once))
    done = threading.Event()

    def run():
        for _ in range(calls):
            module.forward(V, K, b)
        done.set()

    ticks = 0
    worker = threading.Thread(target=run)
    worker.start()
    while not done.is_set():
        ticks += 1
        time.sleep(0)
    worker.join()
    # With the GIL held through each call, this loop would only run between calls.
    assert ticks > 10 * calls


def test_one_pass_called_from_several_threads_at_once(tmp_path):
    """The kernels release the GIL, so calls of one pass can overlap in time: each, on its own
    data, gets the reference's result (no state is shared between calls)."""
    spec = LayerSpec(input=(8, 24, 24), kernel=(16, 8, 3, 3), padding=1)
    module = codegen.load(spec, out=tmp_path, dtype="float64", style="loops", tune=False)
    inputs = [reference.random_inputs(spec, 3, "float64", seed) for seed in range(8)]

    def run(i):
        V, K, b, G = inputs[i % len(inputs)]
        return i, module.forward(V, K, b), module.grad_input(K, G), module.grad_weight(V, G)

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(run, range(32)))
    for i, z, dv, dk in results:
        V, K, b, G = inputs[i % len(inputs)]
        np.testing.assert_allclose(z, reference.forward(spec, V, K, b), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(dv, reference.grad_input(spec, K, G), rtol=1e-10, atol=1e-10)
        np.testing.assert_allclose(dk, reference.grad_weight(spec, V, G), rtol=1e-10, atol=1e-10)


# -- the module's argument checks ---------------------------------------------------------


@pytest.fixture(scope="module")
def checked(tmp_path_factory):
    spec = LayerSpec(input=(4, 5, 13), kernel=(4, 4, 1, 1))
    return codegen.load(spec, dtype="float32", out=tmp_path_factory.mktemp("checks"))


def test_wrong_shape_names_argument_expected_and_got(checked):
    V, K, _, _ = reference.random_inputs(checked.spec, 2, "float32")
    G = np.zeros((2, 4, 5, 12), np.float32)
    with pytest.raises(ValueError, match=r"^G: expected float32 \(N, 4, 5, 13\), "
                                         r"got float32 \(2, 4, 5, 12\)$"):
        checked.grad_input(K, G)
    with pytest.raises(ValueError, match=r"^G: expected float32 \(2, 4, 5, 13\), "
                                         r"got float32 \(3, 4, 5, 13\)$"):
        checked.grad_weight(V, np.zeros((3, 4, 5, 13), np.float32))
    with pytest.raises(ValueError, match=r"^K: expected float32 \(4, 4, 1, 1\), got "):
        checked.forward(V, K[:, :, :, :1].reshape(4, 4, 1), np.zeros(4, np.float32))


def test_wrong_dtype_or_non_array_is_a_type_error(checked):
    V, K, b, G = reference.random_inputs(checked.spec, 2, "float32")
    with pytest.raises(TypeError, match=r"^G: expected float32 \(N, 4, 5, 13\), "
                                        r"got float64 \(2, 4, 5, 13\)$"):
        checked.grad_bias(G.astype(np.float64))
    with pytest.raises(TypeError, match=r"^V: expected a NumPy array of float32 "
                                        r"\(N, 4, 5, 13\), got list$"):
        checked.forward(V.tolist(), K, b)
    with pytest.raises(TypeError, match=r"^b: the layer has a bias"):
        checked.forward(V, K)


def test_non_contiguous_inputs_and_out_buffers(checked):
    V, K, b, G = reference.random_inputs(checked.spec, 3, "float32")
    flipped = V[:, :, :, ::-1]
    np.testing.assert_array_equal(checked.forward(flipped, K, b),
                                  checked.forward(np.ascontiguousarray(flipped), K, b))
    out = np.empty((3, 4, 5, 13), np.float32)
    assert checked.forward(V, K, b, out=out) is out
    dV, dK, db = np.empty_like(V), np.empty_like(K), np.empty_like(b)
    result = checked.backward(V, K, G, out=(dV, dK, db))
    assert result[0] is dV and result[1] is dK and result[2] is db
    with pytest.raises(ValueError, match=r"^out \(Z\): expected float32 \(3, 4, 5, 13\)"):
        checked.forward(V, K, b, out=np.empty((2, 4, 5, 13), np.float32))
    with pytest.raises(ValueError, match=r"^out \(Z\): must be C-contiguous"):
        checked.forward(V, K, b, out=np.empty((3, 4, 5, 26), np.float32)[..., ::2])


def test_module_attributes_and_docstrings(checked):
    assert checked.spec == LayerSpec(input=(4, 5, 13), kernel=(4, 4, 1, 1))
    assert (checked.dtype, checked.target, checked.style) == ("float32", "openmp", "loops")
    assert "V float32 (N, 4, 5, 13)" in checked.forward.__doc__
    assert "dK float32 (4, 4, 1, 1)" in checked.grad_weight.__doc__
    assert checked.threads() >= 1


# -- the CPython entry points ---------------------------------------------------------------


class _CountingModule(KernelModule):
    """A KernelModule whose checked functions count their calls, by pass."""

    def _build_functions(self) -> None:
        super()._build_functions()
        self.calls = dict.fromkeys(PASSES, 0)
        for name in PASSES:
            setattr(self, name, self._counted(name, getattr(self, name)))

    def _counted(self, name, function):
        def counted(*args, **kwargs):
            self.calls[name] += 1
            return function(*args, **kwargs)
        return counted


@pytest.mark.parametrize("spec", [SEED, GRID["same_conv_nobias"]], ids=["seed", "nobias"])
def test_common_calls_run_in_c_and_every_other_call_is_checked(tmp_path, spec):
    """Exact arrays in positional arguments never reach the Python checks; anything else
    does, and gets the same results or the checks' errors."""
    extension = codegen.load(spec, dtype="float32", out=tmp_path)._extension
    module = _CountingModule(spec, "float32", extension.lib, extension)
    V, K, b, G = reference.random_inputs(spec, 3, "float32")
    bias = (b,) if spec.bias else ()
    want = {"forward": reference.forward(spec, V, K, b),
            "grad_input": reference.grad_input(spec, K, G),
            "grad_weight": reference.grad_weight(spec, V, G),
            "grad_bias": reference.grad_bias(spec, G) if spec.bias else None}
    common = {"forward": (V, K, *bias), "grad_input": (K, G), "grad_weight": (V, G),
              "grad_bias": (G,)}
    for name, args in common.items():
        for writeable in (True, False):  # read-only arrays make common calls too
            for array in args:
                array.flags.writeable = writeable
            got = getattr(module, name)(*args)
            if want[name] is not None:
                np.testing.assert_allclose(got, want[name], rtol=1e-5, atol=1e-5)
        for array in args:
            array.flags.writeable = True
    # an empty batch is a common call too
    assert module.forward(V[:0], K, *bias).shape == (0, *spec.output_shape)
    np.testing.assert_array_equal(module.grad_weight(V[:0], G[:0]), np.zeros_like(K))
    in_python = dict.fromkeys(PASSES, 0)
    if not spec.bias:
        in_python["grad_bias"] = 2  # without a bias there is no C grad_bias
    assert module.calls == in_python
    assert type(module.forward).__name__ == "builtin_function_or_method"
    assert list(inspect.signature(module.forward).parameters) == ["V", "K", "b", "out"]
    assert list(inspect.signature(module.grad_weight).parameters) == ["V", "G", "out"]
    assert "dK = grad_weight(V, G, out=None): dJ/dK" in module.grad_weight.__doc__

    class Subclass(np.ndarray):
        pass

    uncommon = [
        ("forward", (), {"V": V, "K": K, "b": b}),
        ("forward", (V, K, *bias), {"out": np.empty_like(want["forward"])}),
        ("forward", (V.view(Subclass), K, *bias), {}),
        ("forward", (np.asfortranarray(V), K, *bias), {}),
        ("grad_input", (np.asfortranarray(K), G), {}),
        ("grad_weight", (V, np.asfortranarray(G)), {}),
    ]
    for name, args, kwargs in uncommon:
        np.testing.assert_allclose(getattr(module, name)(*args, **kwargs), want[name],
                                   rtol=1e-5, atol=1e-5)
    assert sum(module.calls.values()) - sum(in_python.values()) == len(uncommon)
    with pytest.raises(ValueError, match=r"^G: expected float32 \(3, "):
        module.grad_weight(V, G[:2])  # the batches differ
    with pytest.raises(TypeError, match=r"^V: expected float32 \(N, .*got >f4"):
        module.forward(V.astype(">f4"), K, *bias)
    with pytest.raises(TypeError, match="positional argument"):
        module.grad_input(K, G, None, None)


# -- threads -----------------------------------------------------------------------------------

_THREADS_SCRIPT = """
import sys
import numpy as np
import codegen
import codegen.lower
from derive import reference
sys.path.insert(0, sys.argv[2])
from test_kernels import GRID, THREAD_LAYERS
results = {}
for key, out in (("", None), ("dynamic_", sys.argv[3])):
    if out is not None:  # every task loop handed out dynamically, built in a folder of its own
        codegen.lower.DYNAMIC_TASK_FLOPS = 0
    for i, name in enumerate(sys.argv[4:]):
        spec = {**GRID, **THREAD_LAYERS}[name]
        module = codegen.load(spec, dtype="float64", style="loops", tune=False, out=out)
        results[f"{key}{i}_threads"] = np.array(module.threads())
        for batch in (3, 1):
            V, K, b, G = reference.random_inputs(spec, batch, "float64", seed=4)
            z = module.forward(V, K, b) if spec.bias else module.forward(V, K)
            results[f"{key}{i}_{batch}_z"] = z
            results[f"{key}{i}_{batch}_dv"] = module.grad_input(K, G)
            results[f"{key}{i}_{batch}_dk"] = module.grad_weight(V, G)
            if batch == 1:  # its passes may cut the sample into bands of rows
                want = reference.forward(spec, V, K, b if spec.bias else None)
                np.testing.assert_allclose(z, want, rtol=1e-12, atol=1e-12)
                np.testing.assert_allclose(results[f"{key}{i}_1_dv"],
                                           reference.grad_input(spec, K, G), rtol=1e-12, atol=1e-12)
np.savez(sys.argv[1], **results)
"""

#: Layers of the thread-count test beyond GRID's: one channel block in every sweep pass, so
#: that a batch of 1 is cut into bands of rows of tiles (a stem-like 7x7 at stride 2).
THREAD_LAYERS = {
    "one_block_s2": LayerSpec(input=(3, 30, 30), kernel=(8, 3, 7, 7), stride=2, padding=3),
}


def test_results_do_not_depend_on_the_thread_count(tmp_path):
    """On 1, 3 and 16 threads (more than this machine's cores: the task groups that keep
    more cores busy on a small batch, and at a batch of 1 the bands of rows of tiles where a
    sweep's channel blocks are fewer than the threads), every pass gives the same bits, and
    at a batch of 1 what the reference gives: every element is
    computed by one task, in an order that does not depend on the threads. These layers'
    tasks are short, so they are shared out statically; the same layers with their tasks
    handed out dynamically (``DYNAMIC_TASK_FLOPS`` 0) give those bits too. The pointwise
    layers' grad_weight has threads take over the rest of other threads' blocks of dK
    (S6: 1 to 7 times a call at a batch of 3 on 3 and 16 threads, counted in an instrumented
    copy), each block still adding its samples in order."""
    import os
    import subprocess
    import sys

    names = ["lanes_p1", "lanes_s2_paired_conv", "parallel_s2_same", "pointwise_parallel",
             "pointwise_row_groups", "pointwise_chunks", "pointwise_s2x1_chunks",
             "row_parts_s2x1_d2x1_conv",
             "row_parts_5x5", *THREAD_LAYERS]
    runs = {}
    for threads in (1, 3, 16):
        out = tmp_path / f"{threads}.npz"
        env = dict(os.environ, OMP_NUM_THREADS=str(threads))
        subprocess.run([sys.executable, "-c", _THREADS_SCRIPT, str(out),
                        str(Path(__file__).parent), str(tmp_path / "dynamic"), *names],
                       env=env, check=True)
        runs[threads] = dict(np.load(out))
    dynamic = [path.read_text() for path in (tmp_path / "dynamic").glob("*/conv2d_openmp.c")]
    assert len(dynamic) == len(names)
    assert all("schedule(dynamic)" in source for source in dynamic)
    for threads in (3, 16):
        for key, value in runs[1].items():
            if key.endswith("_threads"):
                assert int(runs[threads][key]) == threads and int(value) == 1
            else:
                np.testing.assert_array_equal(runs[threads][key], value, err_msg=key)
