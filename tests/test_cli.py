"""corrgen derive and the CLI's shared behaviour: formats, elements, proofs, one-line errors."""

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from sympy import expand, sympify

from codegen.cli import main
from derive import LayerSpec, derive_layer
from derive.symbols import NAMESPACE


def run(capsys, *argv):
    status = main(list(argv))
    out, err = capsys.readouterr()
    return status, out, err


def test_json_matches_the_derivation_and_parses_with_sympify(capsys):
    status, out, _ = run(capsys, "derive", "--input", "3x3", "--kernel", "2x2", "--format", "json")
    assert status == 0
    body = json.loads(out)
    assert list(body) == ["spec", "forward", "grad_input", "grad_weight", "grad_bias"]
    assert body["spec"]["output"] == [1, 2, 2]
    exprs = derive_layer(LayerSpec(input=(1, 3, 3), kernel=(1, 1, 2, 2)))
    for name in ("forward", "grad_input", "grad_weight", "grad_bias"):
        elements = getattr(exprs, name)
        assert set(body[name]) == {",".join(map(str, k)) for k in elements}
        for key, text in body[name].items():
            index = tuple(int(t) for t in key.split(","))
            assert expand(sympify(text, locals=NAMESPACE) - elements[index]) == 0
    # seed 000: dJ/dV_{2,2} = K22 G11 + K21 G12 + K12 G21 + K11 G22 (0-based here)
    expected = ("K[0,0,1,1]*G[0,0,0] + K[0,0,1,0]*G[0,0,1] + K[0,0,0,1]*G[0,1,0]"
                " + K[0,0,0,0]*G[0,1,1]")
    assert expand(sympify(body["grad_input"]["0,1,1"], locals=NAMESPACE)
                  - sympify(expected, locals=NAMESPACE)) == 0


def test_wrt_and_no_bias(capsys):
    status, out, _ = run(capsys, "derive", "--wrt", "weight", "--format", "json", "--no-bias")
    body = json.loads(out)
    assert status == 0 and list(body) == ["spec", "forward", "grad_weight"]
    assert body["spec"]["bias"] is False and "b" not in body["forward"]["0,0,0"]
    status, out, _ = run(capsys, "derive", "--wrt", "bias", "--format", "json", "--no-bias")
    assert json.loads(out)["grad_bias"] == {}


def test_text_is_one_based_by_default_and_zero_based_on_request(capsys):
    _, out, _ = run(capsys, "derive")
    assert "dJ/dV[1, 1, 1] = G[1, 1, 1]*K[1, 1, 1, 1]" in out
    assert "Z[1, 2, 2] = " in out and "indices 1-based" in out
    _, out, _ = run(capsys, "derive", "--index-base", "0")
    assert "dJ/dV[0, 0, 0] = G[0, 0, 0]*K[0, 0, 0, 0]" in out


def test_latex_format(capsys):
    status, out, _ = run(capsys, "derive", "--format", "latex", "--wrt", "input")
    assert status == 0
    assert r"\frac{\partial J}{\partial V_{1,1,1}} = {G}_{1,1,1} {K}_{1,1,1,1}" in out


def test_element_shows_the_chain_rule_before_it_simplifies(capsys):
    status, out, _ = run(capsys, "derive", "--element", "V[2,2]")
    assert status == 0
    lines = out.splitlines()
    assert lines[1].strip().startswith("= dZ[1, 1, 1]/dV[1, 2, 2]*dJ/dZ[1, 1, 1] + ")
    assert lines[1].count("/dV[1, 2, 2]") == 4  # every output of the seed example
    assert lines[-1].strip() == (
        "= G[1, 1, 1]*K[1, 1, 2, 2] + G[1, 1, 2]*K[1, 1, 2, 1] + G[1, 2, 1]*K[1, 1, 1, 2] "
        "+ G[1, 2, 2]*K[1, 1, 1, 1]")
    _, out, _ = run(capsys, "derive", "--element", "V[1,1]")
    assert "(0)*G[1, 1, 2]" in out and out.splitlines()[-1].strip() == "= G[1, 1, 1]*K[1, 1, 1, 1]"


def test_verify_says_what_was_proven_and_on_what(capsys):
    status, out, _ = run(capsys, "derive", "--input", "2x5x5", "--kernel", "2x2x3x3",
                         "--stride", "2", "--padding", "1", "--verify")
    assert status == 0 and "on the spec itself" in out and "grad_input   50 elements" in out
    status, out, _ = run(capsys, "derive", "--input", "16x32x32", "--kernel", "16x16x3x3",
                         "--verify")
    assert status == 0 and "reduced proxy input 2x" in out


@pytest.mark.parametrize("argv, message", [
    (["--stride", "0"], "stride=0: each stride must be >= 1"),
    (["--input", "3x3x"], "--input '3x3x': expected"),
    (["--kernel", "2x2x3x3", "--input", "3x5x5"], "input channels C=2 must equal the input's C=3"),
    (["--padding", "half"], "--padding 'half'"),
    (["--wrt", "weights"], "'weights' is not one of input, weight, bias"),
    (["--element", "V[4,1]"], "--element 'V[4,1]': V has shape (1, 3, 3)"),
    (["--input", "16x64x64", "--kernel", "16x16x3x3"], "--max-terms"),
    (["--format", "yaml"], "invalid choice: 'yaml'"),
    # refused at once (counting its terms row by row never ended): 32-bit indices
    (["--input", "3x99999999999999999999"], "input=(1, 3, 99999999999999999999): the input "
     "C x H x W (1 x 3 x 99,999,999,999,999,999,999) has 299,999,999,999,999,999,997 elements"),
    (["--input", "1x50000x50000", "--kernel", "1x1"], "fewer than 1,073,741,824 (2**30): the "
     "generated kernels index each sample's arrays with 32-bit int"),
    (["--stride", "99999999999999999999"], "each stride must be < 1,073,741,824"),
])
def test_bad_input_is_one_line_on_stderr_with_status_2(argv, message):
    result = subprocess.run([sys.executable, "-m", "codegen", "derive", *argv],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0], result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="no /dev/full")
@pytest.mark.parametrize("buffered", [True, False])
@pytest.mark.parametrize("argv", [["derive"], ["derive", "--format", "json"],
                                  ["derive", "--help"]])
def test_a_full_disk_on_stdout_is_one_line_with_status_2(argv, buffered):
    # /dev/full fails every write with ENOSPC; buffered, only when the buffer is flushed
    # (at exit, where Python used to print "Exception ignored").
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    if not buffered:
        env["PYTHONUNBUFFERED"] = "1"
    with open("/dev/full", "w") as full:
        result = subprocess.run([sys.executable, "-m", "codegen", *argv], stdout=full,
                                stderr=subprocess.PIPE, text=True, env=env, timeout=120,
                                cwd=Path(__file__).resolve().parent.parent)
    # unbuffered --help fails inside argparse, which drops the error (Python 3.11.7) or
    # raises it (3.11.2): corrgen's parser lets it through to the one line either way
    assert result.returncode == 2, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    prog = "corrgen" if "--help" in argv else "corrgen derive"
    assert lines[0].startswith(f"{prog}: error: cannot write to standard output: "), lines


def help_text(capsys, *argv):
    with pytest.raises(SystemExit) as info:
        main([*argv, "--help"])
    assert info.value.code == 0
    return capsys.readouterr().out


def test_help_explains_the_spec_options_with_an_example(capsys):
    out = help_text(capsys, "derive")
    assert "--input CxHxW" in out and "or HxW for one channel" in out
    assert "examples:\n  corrgen derive --input 3x3 --kernel 2x2 --wrt input" in out


COMMAND_EXAMPLES = {
    "": ["corrgen derive --input 3x3 --kernel 2x2 --wrt input", "corrgen bench --layers S2,S5"],
    "demo": ["corrgen demo\n"],
    "derive": ["corrgen derive --input 3x3 --kernel 2x2 --wrt input"],
    "latex": ["corrgen latex --input 3x3 --kernel 2x2 -o doc.tex --pdf"],
    "emit": ["--target cuda --out src"],
    "build": ["corrgen build --input"],
    "check": ["corrgen check --input"],
    "bench": ["corrgen bench --layers S2,S5",
              "S5  N=16  --input 64x56x56 --kernel 64x64x3x3 --padding 1"],
}


@pytest.mark.parametrize("command", list(COMMAND_EXAMPLES))
def test_each_help_has_its_examples_the_spec_once_and_no_outside_files(capsys, command):
    out = help_text(capsys, *([command] if command else []))
    assert "DESIGN.md" not in out and "BENCH.md" not in out
    for example in COMMAND_EXAMPLES[command]:
        assert example in out, example
    examples = out[out.index("examples:\n"):]
    assert all(line.startswith("  ") for line in examples.splitlines()[1:3])  # lines kept
    if command:
        assert out.count("--padding N|NxM|valid|same|full\n") == 1  # the option, listed once
        assert out.count("layer spec:") == 1


def test_derive_help_describes_the_json_layout(capsys):
    out = help_text(capsys, "derive")
    for key in ('"spec"', '"forward"', '"grad_input"', '"grad_weight"', '"grad_bias"'):
        assert key in out
    assert "0-based" in out


def test_bare_corrgen_prints_the_usage_and_writes_nothing(tmp_path):
    env = {**os.environ, "CORRGEN_CACHE": str(tmp_path / "cache"),
           "PYTHONPATH": str(Path(__file__).resolve().parent.parent)}
    work = tmp_path / "work"
    work.mkdir()
    done = subprocess.run([sys.executable, "-m", "codegen"], capture_output=True, text=True,
                          cwd=work, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("usage: corrgen") and "examples:" in done.stdout
    assert "demo" in done.stdout and "== 1." not in done.stdout  # listed, not run
    assert list(work.iterdir()) == [] and not (tmp_path / "cache").exists()


def test_options_without_a_command_ask_for_one(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--input", "3x3"])
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "name a command first" in err and "derive" in err


@pytest.mark.parametrize("padding", ["weird", "1x2x3", "-1", "samee"])
def test_padding_error_names_the_valid_forms(capsys, padding):
    status, out, err = run(capsys, "derive", "--padding", padding)
    assert status == 2 and out == ""
    assert f"--padding {padding!r}: expected N, NxM, valid, same or full" in err


def test_large_spec_shows_progress(capsys, monkeypatch):
    from codegen.cli import Progress

    monkeypatch.setattr(Progress, "delay", 0.0)  # as if differentiating took seconds
    status, out, err = run(capsys, "derive", "--input", "18x18", "--kernel", "6x1x5x5",
                           "--wrt", "input", "--format", "json")
    assert status == 0 and json.loads(out)["spec"]["output"] == [6, 14, 14]
    # Without padding every tap of every output lands on the input. Each forward term makes
    # two terms (itself and its dJ/dV term), and the dJ/dV sums add up one of them again.
    work = 3 * (6 * 14 * 14) * (5 * 5)
    assert f"differentiating: 100% ({work:,}/{work:,} terms" in err


@pytest.mark.parametrize("spec", [
    LayerSpec(input=(1, 3, 3), kernel=(1, 1, 2, 2)),
    LayerSpec(input=(2, 5, 7), kernel=(3, 2, 3, 2), stride=(2, 1), padding=(1, 0),
              dilation=2, bias=False, mode="convolution"),
    LayerSpec(input=(1, 6, 6), kernel=(4, 1, 2, 2), padding="same"),
    LayerSpec(input=(3, 4, 4), kernel=(1, 3, 1, 1), padding="full", stride=3),
], ids=lambda s: s.describe())
def test_cli_options_rebuild_the_spec(spec):
    from codegen.cli import build_parser, spec_from_args

    args = build_parser().parse_args(["derive", *spec.cli_options().split()])
    assert spec_from_args(args) == spec


def test_bench_reports_percent_of_the_measured_peak(capsys, tmp_path):
    report = tmp_path / "bench.json"
    status, out, err = run(capsys, "bench", "--input", "4x10x10", "--kernel", "16x4x3x3",
                           "--dtype", "float32", "--no-torch", "--batch", "2",
                           "--out", str(tmp_path), "--json", str(report))
    assert status == 0, err
    assert "% peak" in out.splitlines()[0]
    rows = json.loads(report.read_text())["rows"]
    assert [r["name"] for r in rows] == ["forward", "grad_input", "grad_weight", "grad_bias"]
    for r in rows:
        assert r["peak_gflops"] > 0
        assert r["percent_of_peak"] == pytest.approx(100 * r["gflops"] / r["peak_gflops"])


@pytest.mark.parametrize("what", [["--input", "3x3", "--kernel", "2x2"],
                                  ["--network", "1x3x4 | flatten | dense 2 | l2"]],
                         ids=["layer", "network"])
@pytest.mark.parametrize("first, second", [(50.0, 80.0), (80.0, 50.0), (76.0, 80.0)])
def test_bench_measures_the_peak_before_and_after_and_keeps_the_higher(capsys, tmp_path,
                                                                       monkeypatch, first,
                                                                       second, what):
    """A peak measured while the machine was slowed would inflate every % of peak. Both
    measurements are kept, and when they differ by more than 10 % stderr and the markdown
    say that the machine's speed changed during the run."""
    measured = iter([first, second])

    def peak(dtypes):
        value = next(measured)
        return {d: value for d in dtypes}

    monkeypatch.setattr("codegen.peak.fma_peak", peak)
    report, markdown = tmp_path / "bench.json", tmp_path / "bench.md"
    status, out, err = run(capsys, "bench", *what, "--no-torch", "--batch", "2", "--out",
                           str(tmp_path), "--json", str(report), "--markdown", str(markdown))
    assert status == 0, err
    assert next(measured, None) is None  # measured twice
    assert err.index("measuring the multiply-add peak again") > err.index("timing ")
    saved = json.loads(report.read_text())
    records = saved.get("rows") or saved["timings"]
    assert records and {r["peak_gflops"] for r in records} == {80.0}
    assert {tuple(r["peaks_gflops"]) for r in records} == {(first, second)}
    if "--network" not in what:
        assert "80 GFLOP/s float64" in markdown.read_text()
    note = re.compile(rf"differed by more than 10 % \((float(32|64): {first:.0f} then "
                      rf"{second:.0f} GFLOP/s(, )?)+\): this machine's speed changed during "
                      "the run")
    unsteady = abs(first - second) > 8.0
    assert bool(note.search(err)) == unsteady, err
    assert bool(note.search(" ".join(markdown.read_text().split()))) == unsteady


def test_fma_peak_float64_is_about_half_of_float32():
    """The same vectors hold half as many float64 lanes: an independent check that the loop
    measures arithmetic throughput (not call overhead or memory)."""
    # On one thread, in a process of its own: a second busy process on these 2-core machines
    # then takes the other core instead of stalling one of two threads that wait for each
    # other, which skewed the ratio when the suite shared the machine.
    import os
    import subprocess
    import sys

    code = ("from codegen.peak import fma_peak; p = fma_peak(seconds=0.05, repeats=9); "
            "print(p['float64'] / p['float32'])")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=120)
    assert done.returncode == 0, done.stderr
    assert 0.3 < float(done.stdout) < 0.7


@pytest.mark.parametrize("march", ["native", "x86-64-v3", "x86-64-v4"])
def test_the_peak_loop_runs_every_multiply_add_it_counts(tmp_path, march):
    """The peak divides the multiply-adds the loop counts (CHAINS a iteration) by its time, so
    the compiled loop must run them all. With x and y written as constants, GCC found chain 1
    at a fixed point (1 * 0.999 + 0.001 rounds to 1) and dropped its multiply-adds: 15 of 16
    with AVX-512, and every % of peak read 1/16 low. Counted in the assembly GCC makes of the
    loop with the modules' flags, per dtype: a whole number of times CHAINS; for this CPU and
    for an AVX2 and an AVX-512 one (x86-64-v3, v4), whatever CPU runs the tests."""
    import platform

    from codegen.backends import OPENMP
    from codegen.build import toolchain
    from codegen.peak import SOURCE

    if platform.machine() not in ("x86_64", "AMD64"):
        pytest.skip("counts x86-64's vfmadd instructions")
    source = tmp_path / "peak.c"
    source.write_text(SOURCE)
    assert "-march=native" in OPENMP.compile_flags
    flags = [f"-march={march}" if f == "-march=native" else f for f in OPENMP.compile_flags]
    compile_command = [*toolchain(OPENMP).compiler, *flags, str(source)]
    done = subprocess.run([*compile_command, "-dM", "-E"], capture_output=True, text=True)
    if done.returncode != 0 and march != "native":
        pytest.skip(f"the compiler does not know -march={march}")
    assert done.returncode == 0, done.stderr
    macros = done.stdout
    if "__FMA__" not in macros:
        pytest.skip("the compiler's target has no fused multiply-add")
    chains = 16 if "__AVX512F__" in macros else 10
    assembly = subprocess.run([*compile_command, "-S", "-o", "-"], capture_output=True,
                              text=True, check=True).stdout
    fmas: dict[str, int] = {}
    function = None
    for line in assembly.splitlines():
        label = re.match(r"(peak_float(32|64))\S*:", line)
        if label:
            function = label.group(1)
        elif re.match(r"\w", line):
            function = None
        elif function and re.match(r"\s+vfmadd", line):
            fmas[function] = fmas.get(function, 0) + 1
    assert set(fmas) == {"peak_float32", "peak_float64"}, fmas
    for function, count in fmas.items():
        assert count % chains == 0, (function, count, chains)


def test_fma_peak_takes_one_dtype_name_and_names_a_wrong_one():
    from codegen.peak import fma_peak

    assert list(fma_peak("float32", seconds=0.01, repeats=1)) == ["float32"]
    with pytest.raises(ValueError, match=r"^dtypes: each must be one of float32, float64; "
                                         r"got 'float16'$"):
        fma_peak(("float32", "float16"))


def test_build_json_says_what_was_built_and_reused(capsys, tmp_path):
    argv = ["build", "--input", "3x3", "--kernel", "2x2", "--out", str(tmp_path), "--json"]
    status, out, _ = run(capsys, *argv)
    assert status == 0
    first = json.loads(out)
    for field in ("module", "path", "key", "target", "dtype", "style", "built"):
        assert field in first, field
    assert first["built"] is True and first["target"] == "openmp"
    assert first["dtype"] == "float64" and first["style"] == "unrolled"
    assert Path(first["path"]).is_dir() and first["module"].endswith(Path(first["path"]).name)
    assert first["module"].startswith(tmp_path.name + ".") and len(first["key"]) == 64
    status, out, _ = run(capsys, *argv)
    again = json.loads(out)
    assert status == 0 and again["built"] is False
    assert {k: v for k, v in again.items() if k != "built"} == {
        k: v for k, v in first.items() if k != "built"}


def test_check_json_is_one_object_and_keeps_the_exit_status(capsys, tmp_path, monkeypatch):
    argv = ["check", "--input", "2x4x4", "--kernel", "3x2x2x2", "--dtype", "float32",
            "--batch", "3", "--out", str(tmp_path), "--json"]
    status, out, _ = run(capsys, *argv)
    body = json.loads(out)
    assert status == 0 and body["ok"] is True
    assert body["spec"]["input"] == [2, 4, 4] and body["target"] == "openmp"
    assert body["dtype"] == "float32" and body["batch"] == 3
    assert list(body["passes"]) == ["forward", "grad_input", "grad_weight", "grad_bias"]
    for result in body["passes"].values():
        assert set(result) == {"max_error", "relative_error", "tolerance", "ok"}
        assert result["ok"] is True and result["tolerance"] == 1e-5
        assert 0 <= result["relative_error"] <= result["tolerance"]

    from codegen import check

    real = check.check_module

    def wrong(*a, **k):  # a pass off by far more than the tolerance
        results = real(*a, **k)
        return [results[0].__class__(results[0].name, 1.0, 0.5, results[0].tolerance),
                *results[1:]]

    monkeypatch.setattr(check, "check_module", wrong)
    status, out, _ = run(capsys, *argv)
    body = json.loads(out)
    assert status == 1 and body["ok"] is False and body["passes"]["forward"]["ok"] is False
    assert body["passes"]["grad_input"]["ok"] is True


@pytest.mark.parametrize("fmt", ["text", "json", "latex"])
def test_derive_shows_printing_progress_with_an_eta(capsys, monkeypatch, fmt):
    from codegen.cli import Progress

    monkeypatch.setattr(Progress, "delay", 0.0)  # as if the printing took seconds
    status, out, err = run(capsys, "derive", "--input", "4x4", "--kernel", "2x1x2x2",
                           "--format", fmt)
    assert status == 0 and out
    lines = [line for line in err.splitlines() if line.startswith("printing: ")]
    n = 2 * 9 + 16 + 8 + 2  # forward, grad_input, grad_weight, grad_bias elements
    # the seconds are the run's own (on a loaded machine the LaTeX printing takes one)
    assert re.fullmatch(rf"printing: 2% \(1/{n} elements, \d+ s, ETA .+\)", lines[0]), lines[0]
    assert re.fullmatch(rf"printing: 100% \({n}/{n} elements, \d+ s\)", lines[-1]), lines[-1]
    assert "printing" not in out


def test_demo_runs_end_to_end(capsys, tmp_path):
    """The README's main command: derivation, proof, module built and validated, document."""
    status = main(["demo", "--out", str(tmp_path / "demo")])
    out = capsys.readouterr().out
    assert status in (0, 2), out  # 2: only when no LaTeX engine can compile the document
    assert "== 1." in out and "== 2." in out
    # seed 000's dJ/dV_22 = K22 G11 + K21 G12 + K12 G21 + K11 G22 (channel indices added)
    assert ("dJ/dV[1, 2, 2] = G[1, 1, 1]*K[1, 1, 2, 2] + G[1, 1, 2]*K[1, 1, 2, 1] + "
            "G[1, 2, 1]*K[1, 1, 1, 2] + G[1, 2, 2]*K[1, 1, 1, 1]") in out
    assert out.count("every pass matches the reference") == 2
    assert "mismatch" not in out.lower()


def test_latex_shows_each_steps_progress_with_an_eta(capsys, monkeypatch, tmp_path):
    import re

    from codegen.cli import Progress
    from codegen.document import to_latex

    spec = ["--input", "4x4", "--kernel", "2x1x2x2", "--padding", "1", "--elements", "all"]
    quiet, loud = tmp_path / "quiet.tex", tmp_path / "loud.tex"
    monkeypatch.setattr(Progress, "delay", float("inf"))  # as if every step were quick
    status, quiet_out, quiet_err = run(capsys, "latex", *spec, "-o", str(quiet))
    assert status == 0 and quiet_err == ""
    monkeypatch.setattr(Progress, "delay", 0.0)  # as if every step took seconds
    status, loud_out, err = run(capsys, "latex", *spec, "-o", str(loud))
    assert status == 0 and loud.read_text() == quiet.read_text()

    def same(out, path):  # stdout but for the file's name and the seconds taken
        return re.sub(r"\d+\.\d s\)", "T s)", out.replace(str(path), "FILE"))

    assert same(loud_out, loud) == same(quiet_out, quiet) and "ETA" not in loud_out
    # Every element of every pass is proven (the layer is small enough to be its own proxy)
    # and, with --elements all, expanded: outputs O*HO*WO, input C*H*W, kernel O*C*KH*KW, b O.
    n = 2 * 5 * 5 + 1 * 4 * 4 + 2 * 1 * 2 * 2 + 2
    lines = err.splitlines()
    for step, total, unit in (("proving", n, "elements"), ("checking matrix forms", 2, "forms"),
                              ("expanding", n, "elements")):
        shown = [line for line in lines if line.startswith(f"{step}: ")]
        assert re.fullmatch(rf"{step}: {100 // total}% \(1/{total} {unit}, \d+ s, ETA \d+ s\)",
                            shown[0]), shown
        assert re.fullmatch(rf"{step}: 100% \({total}/{total} {unit}, \d+ s\)", shown[-1]), shown
    assert [line.split(":")[0] for line in lines] == sorted(
        (line.split(":")[0] for line in lines),
        key=["proving", "checking matrix forms", "expanding"].index)  # one step after another
    # A library caller passes no callback and sees nothing.
    to_latex(LayerSpec(input=(1, 4, 4), kernel=(2, 1, 2, 2), padding=1))
    assert capsys.readouterr() == ("", "")
