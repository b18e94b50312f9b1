"""The vector unit the OpenMP tiles are sized for: read from the CPU, or forced by
CORRGEN_VECTOR_ISA; part of the cache key; every machine's kernels correct on this one."""

from __future__ import annotations

import pytest
from test_kernels import GRID

import codegen
from codegen.backends import OPENMP
from codegen.blocking import AVX2, AVX512, SSE, geometry, host_machine, plan
from codegen.blocking.tiles import _grad_weight_tile, _lane_tile, sweep_tile_candidates
from codegen.build import machine_identity
from codegen.check import check_module
from codegen.lower import lower
from codegen.machine import AVX512_HALVES, ISA_ENV, _detected_machine

#: Layers whose channels fill lane vectors at every width, and one 1x1 product.
LANE_LAYERS = ["lanes_p1", "lanes_s2x3_d2x1_conv", "lanes_long_rows", "pointwise_parallel"]


def test_detection_follows_the_cpu_flags(monkeypatch, tmp_path):
    for flags, expected in (("fpu sse2 avx avx2 fma avx512f avx512bw", AVX512),
                            ("fpu sse2 avx avx2 fma", AVX2), ("fpu sse2 sse4_2", SSE)):
        cpuinfo = tmp_path / "cpuinfo"
        cpuinfo.write_text(f"processor\t: 0\nmodel name\t: Some CPU\nflags\t\t: {flags}\n")
        monkeypatch.setattr("codegen.machine.CPUINFO", cpuinfo)
        _detected_machine.cache_clear()
        assert _detected_machine() == expected
    _detected_machine.cache_clear()


@pytest.mark.parametrize("vendor, family, expected", [
    ("AuthenticAMD", 25, AVX512_HALVES),   # Zen 4
    ("AuthenticAMD", 26, AVX512),          # Zen 5
    ("GenuineIntel", 6, AVX512),           # a Xeon
])
def test_avx512_in_halves_is_read_from_the_vendor_and_family(monkeypatch, tmp_path, vendor,
                                                              family, expected):
    """Zen 4 (AMD family 25) runs each 512-bit multiply-add as two halves; the first
    processor's fields decide, as every processor lists the same."""
    first = (f"processor\t: 0\nvendor_id\t: {vendor}\ncpu family\t: {family}\n"
             "flags\t\t: fpu avx2 fma avx512f\n")
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(first + "\n" + first.replace(": 0", ": 1").replace(vendor, "Other"))
    monkeypatch.setattr("codegen.machine.CPUINFO", cpuinfo)
    _detected_machine.cache_clear()
    try:
        assert _detected_machine() == expected
    finally:
        _detected_machine.cache_clear()


def test_tiles_of_the_widest_vectors_are_offered_where_they_multiply_at_full_width():
    """Only AVX-512 has vectors wider than VL, and only where a 512-bit multiply-add is not
    split into halves does tuning time tiles of them."""
    assert AVX512.wide_tiles
    assert not AVX512_HALVES.wide_tiles and not AVX2.wide_tiles and not SSE.wide_tiles


def test_the_environment_variable_forces_a_machine_or_is_refused(monkeypatch):
    monkeypatch.setenv(ISA_ENV, "AVX2")
    assert host_machine() == AVX2
    monkeypatch.setenv(ISA_ENV, "neon")
    with pytest.raises(ValueError, match=r"CORRGEN_VECTOR_ISA='neon': expected one of "
                                         r"avx512, avx2, sse"):
        host_machine()


def test_machine_is_part_of_the_cache_identity(monkeypatch):
    monkeypatch.setenv(ISA_ENV, "avx2")
    avx2 = machine_identity(OPENMP)
    monkeypatch.setenv(ISA_ENV, "avx512")
    full = machine_identity(OPENMP)
    assert full != avx2
    monkeypatch.delenv(ISA_ENV)
    monkeypatch.setattr("codegen.machine._detected_machine", lambda: AVX512_HALVES)
    assert machine_identity(OPENMP) not in (full, avx2)


@pytest.mark.parametrize("machine", [AVX512, AVX2, SSE], ids=lambda m: m.isa)
def test_tiles_fit_the_machines_registers(machine):
    """Every tile's partial sums fit the budget of the machine it is sized for, and lane
    tiles hold the machine's widest vector of channels."""
    for name in LANE_LAYERS + ["s2x1_p2x1_d1x2", "parallel_p1"]:
        g = geometry(GRID[name])
        for dtype_bytes in (4, 8):
            constants = {c.name: c.value for c in plan(GRID[name], dtype_bytes,
                                                       machine).constants}
            if "LANES" in constants:
                assert constants["LANES"] * dtype_bytes == machine.lane_bytes
            vl, lanes = 32 // dtype_bytes, machine.lane_bytes // dtype_bytes
            phases = [(g.ho, g.wo, g.kh * g.kw)]
            for column in sweep_tile_candidates(vl, g.o, g.c, phases, machine):
                assert column.ob * column.ty * column.txv <= machine.accumulators
            if g.o % lanes == 0:
                lane = _lane_tile(lanes, g.o, g.c, phases, machine)
                assert lane.nv * lane.ty * lane.tx <= machine.lane_accumulators
            gw = _grad_weight_tile(g, vl, [1], machine)
            assert gw.ob * gw.cb * gw.tt <= machine.accumulators
            assert gw.ob * gw.cb * gw.tt + gw.ob + 1 <= machine.registers


def test_print_ir_names_the_machine():
    text = str(lower(GRID["lanes_p1"], OPENMP, "float32", "loops", machine=AVX2))
    assert "tiles for avx2: 32-byte lanes, 16 vector registers" in text


@pytest.mark.parametrize("isa", ["avx512", "avx2"])
def test_every_machines_kernels_match_the_reference_here(monkeypatch, tmp_path, isa):
    """Kernels sized for either machine compute the same on this one (the compiler splits
    vectors wider than the CPU's), so both are checked whatever CPU runs the tests."""
    monkeypatch.setenv(ISA_ENV, isa)
    for name in LANE_LAYERS:
        for dtype in ("float32", "float64"):
            module = codegen.load(GRID[name], dtype=dtype, out=tmp_path, style="loops")
            for result in check_module(module, batch=3, seed=5):
                assert result.ok, f"{isa} {name} {dtype}: {result}"
