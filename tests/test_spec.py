"""LayerSpec: validation messages, padding names and the output-size arithmetic."""

import itertools

import pytest

from derive import LayerSpec, SpecError


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
    import derive.spec

    for module in (derive, derive.spec):
        result = doctest.testmod(module)
        assert result.attempted > 0 and result.failed == 0, module.__name__
