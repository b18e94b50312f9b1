"""derive.geometry (each rule of the layer's geometry, written once) and the index forms printed
as C loops (codegen.printers.loop_nest) for the kernels that ship them."""

from __future__ import annotations

import itertools
import re
import subprocess
import sys

import pytest
from sympy import Symbol

from codegen.backends import CUDA, OPENMP
from codegen.errors import RenderError
from codegen.lower import lower
from codegen.render import render
from codegen.styles import STYLES, resolve_style
from derive import LayerSpec, index_forms
from derive.geometry import (
    Geometry,
    buffer_shapes,
    gather_index,
    kernel_tap,
    output_extent,
    phase_split,
    resolve_padding,
    tap_index,
)

LAYERS = [
    LayerSpec(input=(1, 3, 3), kernel=(1, 1, 2, 2)),
    LayerSpec(input=(2, 7, 9), kernel=(3, 2, 3, 2), stride=(2, 1), padding=(2, 1),
              dilation=(1, 2)),
    LayerSpec(input=(3, 11, 8), kernel=(4, 3, 3, 3), stride=3, padding="same", dilation=2,
              mode="convolution"),
    LayerSpec(input=(2, 4, 4), kernel=(1, 2, 1, 1), stride=3, bias=False),
    LayerSpec(input=(1, 12, 5), kernel=(3, 1, 5, 2), stride=(3, 2), padding="full",
              dilation=2),
]


def test_importing_geometry_loads_no_sympy():
    code = "import sys, derive.geometry, derive.spec; print('sympy' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"


def test_output_extent_and_padding_are_the_spec_s():
    assert output_extent(3, 0, 0, 2, 1, 1) == 2
    assert output_extent(11, 2, 2, 3, 2, 3) == 4
    assert resolve_padding("same", (4, 5)) == (1, 2, 2, 2)
    assert resolve_padding("full", (3, 1)) == (2, 2, 0, 0)
    assert resolve_padding((1, 3), (9, 9)) == (1, 1, 3, 3)
    for spec in LAYERS:
        g = Geometry.of(spec)
        top, bottom, left, right = spec.pads
        assert (g.ho, g.wo) == spec.output_shape[1:]
        assert g.ho == output_extent(g.h, top, bottom, g.kh, g.dh, g.sh)
        assert g.wo == output_extent(g.w, left, right, g.kw, g.dw, g.sw)


def test_rules_work_on_symbols_and_ints_alike():
    y, i, u = (Symbol(n, integer=True) for n in "yiu")
    assert tap_index(y, i, 2, 3, 1) == 2 * y + 3 * i - 1
    assert tap_index(4, 1, 2, 3, 1) == 10
    assert kernel_tap(i, 3, True) == 2 - i and kernel_tap(i, 3, False) == i
    assert gather_index(u, i, 2, 3, 1) == (u + 1 - 3 * i) / 2
    assert gather_index(10, 1, 2, 3, 1) == 4 and gather_index(9, 1, 2, 3, 1) is None
    assert all(kernel_tap(kernel_tap(t, 5, True), 5, True) == t for t in range(5))


@pytest.mark.parametrize("taps, dil, stride, pad, size",
                         list(itertools.product((1, 2, 3, 5), (1, 2), (1, 2, 3), (0, 1, 3),
                                           (1, 4, 9))))
def test_phase_split_is_the_gather(taps, dil, stride, pad, size):
    """Every input row u of phase r lies at m*stride + r - pad for the phase's span of m, and
    collects exactly the taps whose output row gather_index(u, t) is a whole number; tap (t, a)
    from output row m - a."""
    split = phase_split(taps, dil, stride, pad, size)
    assert len(split.taps) == len(split.spans) == stride
    seen = set()
    for r, ((first, count), phase) in enumerate(zip(split.spans, split.taps)):
        for m in range(first, first + count):
            u = m * stride + r - pad
            assert 0 <= u < size
            seen.add(u)
            want = {(t, gather_index(u, t, stride, dil, pad)) for t in range(taps)
                    if gather_index(u, t, stride, dil, pad) is not None}
            assert {(t, m - a) for t, a in phase} == want
    assert seen == set(range(size))
    assert split.frame == max((a for phase in split.taps for _, a in phase), default=0)


def test_buffer_shapes():
    spec = LAYERS[1]
    shapes = buffer_shapes(spec)
    assert shapes["V"] == shapes["dV"] == (spec.input, True)
    assert shapes["K"] == shapes["dK"] == (spec.kernel, False)
    assert shapes["Z"] == shapes["G"] == (spec.output_shape, True)
    assert shapes["b"] == shapes["db"] == ((3,), False)


def test_weight_index_is_the_flipped_tap():
    g = Geometry.of(LAYERS[2])
    assert [g.weight_index(i, j) for i in range(3) for j in range(3)] == list(range(8, -1, -1))
    g = Geometry.of(LAYERS[1])
    assert [g.weight_index(i, j) for i in range(3) for j in range(2)] == list(range(6))


# -- the forms printed as loops -------------------------------------------------------------


def test_direct_is_a_style_auto_never_picks():
    assert "direct" in STYLES
    assert all(resolve_style(spec, "auto") != "direct" for spec in LAYERS)
    with pytest.raises(RenderError, match="direct"):
        lower(LAYERS[0], CUDA, "float64", "direct")


def test_formulas_are_the_forms():
    for spec in LAYERS:
        forms = index_forms(spec)
        ir = lower(spec, OPENMP, "float64", "loops")
        assert [k.formula for k in ir.kernels] == [str(f) for f in forms.values()]
        assert all(k.formula in str(ir) for k in ir.kernels)


def test_skip_tests_only_where_an_index_can_leave_its_array():
    seed, strided = (lower(spec, OPENMP, "float64", "direct") for spec in LAYERS[:2])
    forward = seed.kernel("forward").nest
    assert not forward.skip and "V_s[(c*H + y + i)*W + x + j]" in forward.term
    gin = seed.kernel("grad_input").nest
    assert gin.skip == "G_1 < 0 || G_1 >= 2 || G_2 < 0 || G_2 >= 2"
    assert [loop.var for loop in gin.sums if loop.skip] == ["i", "j"]
    gin = strided.kernel("grad_input").nest
    assert "G_1 % 2 != 0" in gin.skip and "G_1 / 2" in gin.term
    assert strided.kernel("grad_bias").nest.skip == ""


@pytest.mark.parametrize("spec", LAYERS, ids=range(len(LAYERS)))
def test_kernels_print_the_forms_and_no_index_rule_of_their_own(spec):
    """The CUDA loops kernels and the OpenMP direct kernels carry each form's printed term
    and target, and none of the hand-typed arithmetic they had (``* SH``, ``KH - 1``)."""
    for backend, style in ((CUDA, "loops"), (OPENMP, "direct")):
        ir = lower(spec, backend, "float32", style)
        text = render(ir, backend).text(backend.source)
        for k in ir.kernels:
            assert k.nest.term in text and k.nest.formula in text
        body = text[text.index("/* forward:"):]
        assert not re.search(r"\* (SH|SW|DH|DW)\b|[-+] (PT|PL)\b|K[HW] - 1", body)
