"""LayerSpec: validation messages, padding names, the output-size arithmetic, the closed-form
term count and the 32-bit size rule."""

import itertools
import json
import time

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from derive import LayerSpec, SpecError
from derive.spec import MAX_ELEMENTS, _covered_taps


def brute_output_size(size, pad_lo, pad_hi, taps, dilation, stride):
    """Count window positions by sliding, independently of the formula."""
    padded = size + pad_lo + pad_hi
    span = dilation * (taps - 1) + 1
    return len(range(0, padded - span + 1, stride))


@pytest.mark.parametrize(
    "h, kh, s, p, d",
    list(itertools.product((1, 4, 7, 10), (1, 2, 3), (1, 2, 3), (0, 1, 2), (1, 2))),
)
def test_output_size_matches_sliding_windows(h, kh, s, p, d):
    if d * (kh - 1) + 1 > h + 2 * p:
        with pytest.raises(SpecError, match="kernel"):
            LayerSpec(input=(1, h, h), kernel=(1, 1, kh, kh), stride=s, padding=p, dilation=d)
        return
    spec = LayerSpec(input=(1, h, h + 1), kernel=(1, 1, kh, kh), stride=s, padding=p, dilation=d)
    assert spec.out_h == brute_output_size(h, p, p, kh, d, s)
    assert spec.out_w == brute_output_size(h + 1, p, p, kh, d, s)


def test_normalisation_and_hashing():
    a = LayerSpec(input=(1, 3, 3), kernel=(1, 1, 2, 2))
    b = LayerSpec(input=[1, 3, 3], kernel=[1, 1, 2, 2], stride=(1, 1), padding=(0, 0))
    assert a == b and hash(a) == hash(b)
    assert a.stride == (1, 1) and a.padding == (0, 0) and a.dilation == (1, 1)
    assert a.output_shape == (1, 2, 2)
    with pytest.raises(AttributeError):
        a.stride = 2  # frozen


def test_padding_names():
    full = LayerSpec(input=(1, 3, 3), kernel=(1, 1, 2, 2), padding="full")
    assert full.pads == (1, 1, 1, 1) and full.output_shape == (1, 4, 4)
    # 'same' keeps H x W at stride 1; an odd total puts the extra row/column bottom/right.
    for kh, kw, d in [(3, 3, 1), (2, 2, 1), (2, 3, 2), (4, 1, 1), (5, 2, 3)]:
        spec = LayerSpec(input=(2, 9, 8), kernel=(1, 2, kh, kw), padding="same", dilation=d)
        assert spec.output_shape[1:] == (9, 8)
        top, bottom, left, right = spec.pads
        assert top + bottom == d * (kh - 1) and left + right == d * (kw - 1)
        assert bottom - top in (0, 1) and right - left in (0, 1)
    dilated_full = LayerSpec(input=(1, 5, 5), kernel=(1, 1, 3, 3), padding="FULL", dilation=2)
    assert dilated_full.pads == (4, 4, 4, 4) and dilated_full.padding == "full"
    valid = LayerSpec(input=(1, 5, 5), kernel=(1, 1, 3, 3), padding="valid")
    assert valid.output_shape == (1, 3, 3)


@pytest.mark.parametrize(
    "kwargs, field, rule",
    [
        ({"input": (1, 0, 3)}, "input", "extent H must be >= 1"),
        ({"input": (1, 3)}, "input", "expected 3 extents"),
        ({"input": (1, 3.0, 3)}, "input", "must be an integer"),
        ({"kernel": (1, 2, 2, 2)}, "kernel", "input channels C=2 must equal the input's C=1"),
        ({"kernel": (0, 1, 2, 2)}, "kernel", "extent O must be >= 1"),
        ({"kernel": (1, 1, 4, 2)}, "kernel", "spans 4 rows, more than the padded input's 3"),
        ({"kernel": (1, 1, 2, 2), "dilation": 3}, "kernel", "spans 4 rows"),
        ({"stride": 0}, "stride", "each stride must be >= 1"),
        ({"stride": (1, 2, 3)}, "stride", "an integer or a pair"),
        ({"padding": -1}, "padding", "each padding must be >= 0"),
        ({"padding": "half"}, "padding", "one of valid, same, full"),
        ({"dilation": (1, 0)}, "dilation", "each dilation must be >= 1"),
        ({"bias": 1}, "bias", "True or False"),
        ({"mode": "conv"}, "mode", "correlation, convolution"),
    ],
)
def test_invalid_specs_name_field_rule_and_value(kwargs, field, rule):
    args = {"input": (1, 3, 3), "kernel": (1, 1, 2, 2), **kwargs}
    with pytest.raises(ValueError) as info:
        LayerSpec(**args)
    message = str(info.value)
    assert isinstance(info.value, SpecError)
    assert message.startswith(f"{field}="), message
    assert rule in message, message


def test_uncovered_rows_and_columns():
    # stride 3 with a 2-tap kernel skips every third row/column; column 6 is past the last window
    spec = LayerSpec(input=(1, 8, 7), kernel=(1, 1, 2, 2), stride=3)
    assert spec.uncovered == ((2, 5), (2, 5, 6))
    assert LayerSpec(input=(1, 5, 5), kernel=(1, 1, 3, 3)).uncovered == ((), ())
    # a trailing row no window reaches
    assert LayerSpec(input=(1, 6, 5), kernel=(1, 1, 3, 3), stride=2).uncovered == ((5,), ())


def test_n_terms_counts_taps_inside_the_input():
    spec = LayerSpec(input=(2, 3, 3), kernel=(4, 2, 2, 2), padding=1)
    # brute force: every output, every tap landing inside the input
    count = 0
    for y in range(spec.out_h):
        for x in range(spec.out_w):
            for i in range(2):
                for j in range(2):
                    count += 0 <= y + i - 1 < 3 and 0 <= x + j - 1 < 3
    assert spec.n_terms == count * 4 * 2


def test_docstring_examples():
    import doctest

    import derive
    import derive.network
    import derive.spec

    for module in (derive, derive.spec, derive.network):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__


# -- the term count in closed form ---------------------------------------------------------


def brute_covered(size, pad, n_out, stride, taps, dilation):
    """#{(y, i): 0 <= y < n_out, 0 <= i < taps, 0 <= y*stride + i*dilation - pad < size},
    pair by pair."""
    return sum(0 <= y * stride + i * dilation - pad < size
               for y in range(n_out) for i in range(taps))


def per_tap_covered(size, pad, n_out, stride, taps, dilation):
    """The same count tap by tap: the outputs y of tap i form one interval (O(taps))."""
    total = 0
    for i in range(taps):
        first = max(0, -((i * dilation - pad) // stride))  # ceil((pad - i*d) / stride)
        last = min(n_out - 1, (size - 1 + pad - i * dilation) // stride)
        total += max(0, last - first + 1)
    return total


@settings(max_examples=400, deadline=None)
@given(size=st.integers(1, 40), pad=st.integers(0, 60), stride=st.integers(1, 50),
       taps=st.integers(1, 8), dilation=st.integers(1, 12), size_w=st.integers(1, 9))
def test_n_terms_matches_the_brute_force_count(size, pad, stride, taps, dilation, size_w):
    # padding up to far beyond the dilated kernel, strides beyond it (uncovered rows)
    assume(dilation * (taps - 1) + 1 <= size + 2 * pad)
    spec = LayerSpec(input=(2, size, size_w), kernel=(3, 2, taps, 2), stride=(stride, 1),
                     padding=(pad, 1), dilation=(dilation, 1))
    rows = brute_covered(size, pad, spec.out_h, stride, taps, dilation)
    cols = brute_covered(size_w, 1, spec.out_w, 1, 2, 1)
    assert spec.n_terms == 3 * 2 * rows * cols


@settings(max_examples=400, deadline=None)
@given(size=st.integers(1, 40), pad=st.integers(0, 60), n_out=st.integers(0, 30),
       stride=st.integers(1, 50), taps=st.integers(1, 8), dilation=st.integers(1, 12))
def test_covered_taps_counts_any_window_range(size, pad, n_out, stride, taps, dilation):
    # any number of windows, also windows reaching past the padded input on either side
    assert (_covered_taps(size, pad, n_out, stride, taps, dilation)
            == brute_covered(size, pad, n_out, stride, taps, dilation))


def test_a_layer_whose_taps_all_land_on_the_padding_is_valid_with_no_terms():
    """Stride 7 over 5 rows padded by 2: both output rows read padding only (found by
    test_properties, which had wanted at least one term). Its output is the bias, and its
    input gradient is zero."""
    spec = LayerSpec(input=(2, 5, 6), kernel=(3, 2, 2, 3), stride=(7, 1), padding=2)
    assert spec.out_h == 2 and spec.n_terms == 0
    assert spec.uncovered[0] == (0, 1, 2, 3, 4)


def test_n_terms_of_huge_layers_is_answered_at_once():
    start = time.perf_counter()
    # 10**7 rows took 12 s pair by pair: the first and last window each have a tap in padding
    tall = LayerSpec(input=(1, 10**7, 1), kernel=(1, 1, 3, 1), padding=(1, 0))
    assert tall.n_terms == 3 * 10**7 - 2
    wide = LayerSpec(input=(1, 1, 2**29), kernel=(1, 1, 1, 3), padding=(0, 1))
    assert wide.n_terms == 3 * 2**29 - 2
    # 292,512 windows of 1000 dilated taps, stride 7, padding far larger than the kernel
    dilated = LayerSpec(input=(1, 2**20, 100), kernel=(1, 1, 1000, 1), stride=(7, 1),
                        padding=(999_000, 0), dilation=(1000, 1))
    assert dilated.n_terms == 100 * per_tap_covered(2**20, 999_000, dilated.out_h, 7, 1000,
                                                    1000)
    # far beyond what any spec accepts: 7 taps, 5 zeros a side, 5+4+3+2+1 taps in each
    assert _covered_taps(10**20, 5, 10**20 + 4, 1, 7, 1) == 7 * (10**20 + 4) - 2 * 15
    assert time.perf_counter() - start < 2  # a pair-by-pair count never finishes


# -- the size rule: every per-sample array indexable with 32-bit int ------------------------


def test_a_50000x50000_plane_is_refused():
    # it used to build, and grad_bias summed HO*WO (int overflow) elements: 0 instead of 3
    with pytest.raises(SpecError) as info:
        LayerSpec(input=(1, 50000, 50000), kernel=(1, 1, 1, 1))
    message = str(info.value)
    assert message.startswith("input=(1, 50000, 50000): the input C x H x W")
    assert "2,500,000,000 elements per sample" in message
    assert f"fewer than {MAX_ELEMENTS:,} (2**30)" in message and "32-bit int" in message


@pytest.mark.parametrize("kwargs, field, what", [
    ({"input": (3, 1, 10**20), "kernel": (1, 3, 1, 1)}, "input", "the input C x H x W"),
    ({"input": (3, 99999999999999999999, 2), "kernel": (1, 3, 1, 1)}, "input", "the input"),
    ({"input": (1, 30000, 30000), "kernel": (1, 1, 3, 3), "padding": 3000}, "padding",
     "the padded input"),
    ({"input": (1, 30000, 30000), "kernel": (1, 1, 1, 1), "padding": (0, 10**20)}, "padding",
     "the padded input"),
    ({"input": (2**20, 1, 1), "kernel": (2**11, 2**20, 1, 1)}, "kernel", "the kernel"),
    ({"input": (1, 30000, 30000), "kernel": (2, 1, 1, 1)}, "kernel", "the output"),
    # small arrays, but the kernels' copies are not: a stride far beyond the input ...
    ({"input": (1, 3, 3), "kernel": (1, 1, 1, 1), "stride": 2**29}, "stride",
     "the kernels' copy of the input"),
    # ... a one-pixel-high input a tile's rows are added to ...
    ({"input": (1, 1, MAX_ELEMENTS - 63), "kernel": (1, 1, 1, 1)}, "input",
     "the kernels' copy of the input"),
    # ... and grad_input's gradient framed by a widely dilated kernel
    ({"input": (1, 1024, 1024), "kernel": (2**20, 1, 2, 2), "dilation": 1023}, "kernel",
     "grad_input's copy of the gradient"),
    ({"stride": 10**20}, "stride", "each stride must be < 1,073,741,824 (2**30)"),
    ({"dilation": (1, 2**30)}, "dilation", "each dilation must be < 1,073,741,824 (2**30)"),
])
def test_arrays_the_kernels_cannot_index_are_refused_at_once(kwargs, field, what):
    args = {"input": (1, 3, 3), "kernel": (1, 1, 2, 2), **kwargs}
    start = time.perf_counter()
    with pytest.raises(SpecError) as info:
        LayerSpec(**args)
    assert time.perf_counter() - start < 2
    message = str(info.value)
    assert message.startswith(f"{field}="), message
    assert what in message and "32-bit int" in message, message
    assert repr(args[field]) in message, message  # the value, as given or normalised


def test_the_largest_arrays_below_the_limit_are_accepted():
    # one row of MAX_ELEMENTS - 64 columns: the copies' rows gain 63 columns, MAX_ELEMENTS - 1
    spec = LayerSpec(input=(1, 1, MAX_ELEMENTS - 64), kernel=(1, 1, 1, 1))
    assert max(array.elements for array in spec.arrays) == MAX_ELEMENTS - 1
    with pytest.raises(SpecError, match="the input C x H x W"):
        LayerSpec(input=(1, 2**15, 2**15), kernel=(1, 1, 1, 1))
    # a stride far beyond the input: the copy's rows hold stride phases of 8 columns each
    far = LayerSpec(input=(1, 3, 3), kernel=(1, 1, 1, 1), stride=(2**29, 2**24))
    assert far.output_shape == (1, 1, 1) and far.arrays[4].shape == (1, 3, 2 + 2**27)


GRAD_WEIGHT_THRESHOLDS = {"GRAD_WEIGHT_TASKS", "GRAD_WEIGHT_PART_FLOPS",
                          "GRAD_WEIGHT_SLOT_PIXELS"}


def test_working_copy_bounds_hold_for_the_kernels_scratch_layouts():
    """LayerSpec.arrays bounds the scratch codegen.blocking lays out, on every tile it picks
    (column and channels-in-lanes tiles, both vector widths), and every constant (but
    grad_weight's thresholds on its tasks) and table entry of the plan stays below the largest
    array."""
    from codegen.blocking import is_pointwise, plan

    rng = np.random.default_rng(7)
    checked = 0
    while checked < 150:
        c, o = (int(v) for v in rng.choice([1, 3, 16], 2))
        h = int(rng.integers(1, 20))
        w = int(rng.choice([rng.integers(1, 20), rng.integers(60, 150)]))
        kh, kw = (int(v) for v in rng.integers(1, 5, 2))
        stride = tuple(int(v) for v in rng.choice([1, 1, 2, 3, 30], 2))
        dilation = tuple(int(v) for v in rng.choice([1, 2, 5], 2))
        padding = [0, 2, 7, "same", "full"][int(rng.integers(5))]
        try:
            spec = LayerSpec(input=(c, h, w), kernel=(o, c, kh, kw), stride=stride,
                             padding=padding, dilation=dilation)
        except SpecError:
            continue
        if is_pointwise(spec):  # matrix products: no copies
            continue
        checked += 1
        *_, input_copy, gradient_copy = (array.elements for array in spec.arrays)
        largest = max(array.elements for array in spec.arrays)
        for dtype_bytes in (4, 8):
            module = plan(spec, dtype_bytes)
            consts, tables = module.constants, module.tables
            k = {const.name: const.value for const in consts}
            assert c * k["SRC_PLANE"] <= input_copy, spec
            if spec.out_h > 1:  # else the row step is only ever multiplied by 0
                assert k["FWD_ROW_STEP"] * c <= input_copy, spec
            else:
                del k["FWD_ROW_STEP"], k["GW_ROW_STEP"]
            assert o * spec.out_h * k["VL"] <= gradient_copy, spec
            if "G_PLANE" in k:
                assert o * k["G_PLANE"] <= gradient_copy, spec
            # grad_weight's thresholds on its tasks are compared with 64-bit counts of the
            # batch's work, never used as an index
            values = ([abs(v) for name, v in k.items() if name not in GRAD_WEIGHT_THRESHOLDS]
                      + [abs(v) for t in tables for v in t.values])
            assert max(values) <= largest, spec


def test_numpy_integers_are_plain_ints_in_the_spec():
    plain = LayerSpec(input=(2, 7, 6), kernel=(3, 2, 3, 2), stride=(2, 1), padding=(1, 0),
                      dilation=2)
    numpy = LayerSpec(input=np.array([2, 7, 6]), kernel=tuple(np.int64(v) for v in (3, 2, 3, 2)),
                      stride=(np.int32(2), np.uint8(1)), padding=np.array([1, 0], np.int16),
                      dilation=np.int64(2))
    assert numpy == plain and hash(numpy) == hash(plain)
    for value in (*numpy.input, *numpy.kernel, *numpy.stride, *numpy.padding, *numpy.dilation):
        assert type(value) is int
    assert json.loads(json.dumps(numpy.to_dict())) == plain.to_dict()
    assert numpy.cli_options() == plain.cli_options()


@pytest.mark.parametrize("kwargs, field", [
    ({"input": (1, True, 3)}, "input"),
    ({"input": (1, np.True_, 3)}, "input"),
    ({"kernel": (1, 1, np.float64(2.0), 2)}, "kernel"),
    ({"stride": True}, "stride"),
    ({"stride": (1, np.bool_(True))}, "stride"),
    ({"padding": np.float32(1)}, "padding"),
    ({"padding": False}, "padding"),
    ({"dilation": (1.0, 1)}, "dilation"),
])
def test_booleans_and_floats_stay_refused(kwargs, field):
    with pytest.raises(SpecError) as info:
        LayerSpec(**{"input": (1, 3, 3), "kernel": (1, 1, 2, 2), **kwargs})
    assert str(info.value).startswith(f"{field}=")


def test_pointwise_panels_of_accepted_layers_are_indexed_in_64_bits():
    """A pointwise layer is a matrix product over its P = H*W pixels; grad_weight packs V_s^T
    into a panel of P x GW_NR reals, more than 2**31 here although every array of the layer
    (and the rule) stays below 2**30. The panel's offsets k*width must not be int products."""
    import re

    from codegen.backends import OPENMP
    from codegen.lower import lower
    from codegen.render import render

    spec = LayerSpec(input=(1, 2**14, 2**15 - 64), kernel=(1, 1, 1, 1))
    ir = lower(spec, OPENMP, "float32", "loops")
    constants = {const.name: const.value for const in ir.constants}
    assert constants["P"] * constants["GW_NR"] >= 2**31
    source = render(ir, OPENMP).text("conv2d_openmp.c")
    assert "panel[(int64_t)k * width + i]" in source
    assert "bk = b + (int64_t)k * GW_NR;" in source
    # no product of the step counter k with a panel width left in int (k*MR neither)
    int_products = re.findall(r".*(?<!\(int64_t\))\bk \* (?:width|\w+_NR|\w+_MR)\b.*", source)
    assert not int_products, int_products
