"""The shared records (codegen.vocabulary) agree with NumPy, C and the generated modules."""

from __future__ import annotations

import inspect

import cffi
import numpy as np
import pytest

import codegen
from codegen.backends import OPENMP
from codegen.lower import lower, module_name
from codegen.vocabulary import (
    DTYPE_NAMES,
    DTYPES,
    GRADIENTS,
    PASS,
    PASS_NAMES,
    PASS_TABLE,
    VECTOR_BYTES,
)
from derive import LayerSpec, reference

SEED = LayerSpec(input=(1, 3, 3), kernel=(1, 1, 2, 2))


@pytest.mark.parametrize("name", DTYPE_NAMES)
def test_each_dtype_record_agrees_with_numpy_and_c(name):
    record = DTYPES[name]
    assert record.name == name == str(record)
    assert record.numpy == np.dtype(name)
    assert record.itemsize == np.dtype(name).itemsize == cffi.FFI().sizeof(record.ctype)
    assert record.lanes * record.itemsize == VECTOR_BYTES
    assert record.suffix == f"f{8 * record.itemsize}"
    assert module_name(SEED, "openmp", name).endswith("_" + record.suffix)
    # above the dtype's rounding, far below an error of 1
    assert np.finfo(record.numpy).eps < record.tolerance < 1e-3


def test_the_pass_table_is_consistent():
    assert PASS_NAMES == tuple(p.name for p in PASS_TABLE) == tuple(PASS)
    assert [p.writes for p in GRADIENTS] == ["dV", "dK", "db"]
    assert [p.wrt for p in GRADIENTS] == ["input", "weight", "bias"]
    assert PASS["forward"].inputs(False) == ("V", "K")
    assert [p.name for p in PASS_TABLE if p.runs(False)] == ["forward", "grad_input",
                                                              "grad_weight"]


@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("style", ["unrolled", "loops"])
def test_the_kernels_of_the_ir_are_the_pass_table(bias, style):
    ir = lower(SEED.replace(bias=bias), OPENMP, style=style)
    table = [p for p in PASS_TABLE if p.runs(bias)]
    assert [k.name for k in ir.kernels] == [p.name for p in table]
    for kernel, p in zip(ir.kernels, table):
        assert kernel.entry == p.entry
        assert tuple(b.name for b in kernel.inputs) == p.inputs(bias)
        assert kernel.output.name == p.writes
        assert kernel.output.batched is not p.accumulates
        if style == "unrolled":
            assert kernel.accumulates is p.accumulates


@pytest.mark.parametrize("bias", [True, False], ids=["bias", "nobias"])
def test_the_functions_of_a_built_module_are_the_pass_table(bias):
    spec = SEED.replace(bias=bias)
    module = codegen.load(spec, dtype="float32", style="loops")
    front = module._module
    V, K, b, G = reference.random_inputs(spec, 3, "float32")
    arrays = {"V": V, "K": K, "b": b, "G": G}
    results = {}
    for p in PASS_TABLE:
        assert hasattr(module._extension.lib, p.entry) is p.runs(bias)
        function = getattr(module, p.name)
        parameters = list(inspect.signature(function).parameters)
        assert parameters == [*p.reads, "out"], p.name
        result = function(*(arrays[name] for name in p.reads))
        if not p.runs(bias):
            assert result is None
            continue
        assert (p.writes in front.batched) is not p.accumulates
        shape = front.shapes[p.writes] if p.accumulates else (3, *front.shapes[p.writes])
        assert result.shape == shape and result.dtype == np.float32
        results[p.writes] = result
    gradients = module.backward(V, K, G)
    assert len(gradients) == len(GRADIENTS)
    for p, got in zip(GRADIENTS, gradients):
        if p.runs(bias):
            np.testing.assert_array_equal(got, results[p.writes])
        else:
            assert got is None
