"""Nothing lost, no one harmed: output folders and names, the module cache healing itself,
aliasing between inputs and outputs, and one-line errors where tracebacks used to be.

Each test replays one way a user or a hostile input once lost data or got a crash or a wrong
result, and checks the outcome against the NumPy reference or the files left behind.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import codegen
from codegen.build import is_built
from codegen.errors import BuildError, LoadError, OutputError
from derive import LayerSpec, reference

ROOT = Path(__file__).resolve().parent.parent
SPEC = LayerSpec(input=(2, 5, 4), kernel=(3, 2, 2, 3), padding=1)
#: A layer whose gradient dV has the shape of G (C == O, "same" at stride 1), so that an
#: output can alias an input of another pass.
SQUARE = LayerSpec(input=(2, 4, 4), kernel=(2, 2, 3, 3), padding="same")


def run_python(code: str, cwd: Path | None = None, env: dict[str, str] | None = None,
               timeout: float = 300) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, env=environment, cwd=cwd)


def corrgen(*argv: str, cwd: Path | None = None, env: dict[str, str] | None = None
            ) -> subprocess.CompletedProcess:
    """The CLI in a fresh process, as a user runs it."""
    environment = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    return subprocess.run([sys.executable, "-m", "codegen", *argv], capture_output=True,
                          text=True, timeout=300, env=environment, cwd=cwd)


def one_line_error(done: subprocess.CompletedProcess, *words: str) -> None:
    """Exit status 2, one line on stderr naming ``words``, no traceback."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = [line for line in done.stderr.splitlines() if "error" in line]
    assert len(lines) == 1 and "Traceback" not in done.stderr, done.stderr
    for word in words:
        assert word in lines[0], (word, lines[0])


def tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


# -- 1. names are never paths; a user's folder is never replaced -------------------------------


@pytest.mark.parametrize("command", ["emit", "build"])
@pytest.mark.parametrize("kind", ["absolute", "parent"])
def test_a_name_that_is_a_path_is_refused_and_touches_nothing(tmp_path, command, kind):
    victim = tmp_path / "precious"
    victim.mkdir()
    (victim / "notes.txt").write_text("a user's file")
    out = tmp_path / "out"
    out.mkdir()
    name = str(victim) if kind == "absolute" else "../precious"
    done = corrgen(command, "--out", str(out), "--name", name)
    one_line_error(done, "name=", "identifier")
    assert tree(victim) == {"notes.txt": b"a user's file"}
    assert list(out.iterdir()) == []


def test_a_users_folder_of_the_same_name_is_never_replaced(tmp_path):
    mine = tmp_path / "my_layer"
    mine.mkdir()
    (mine / "model.py").write_text("weights = 1\n")
    with pytest.raises(OutputError, match="model.py"):
        codegen.load(SPEC, out=tmp_path, name="my_layer", style="loops")
    done = corrgen("emit", "--out", str(tmp_path), "--name", "my_layer")
    one_line_error(done, "my_layer", "model.py")
    assert tree(mine) == {"model.py": b"weights = 1\n"}


def test_a_module_folder_is_replaced_when_rebuilt_under_its_name(tmp_path):
    first = codegen.load(SPEC, out=tmp_path, name="layer", style="loops")
    emitted = corrgen("emit", "--out", str(tmp_path), "--name", "layer", "--no-bias")
    assert emitted.returncode == 0, emitted.stderr
    again = codegen.load(SPEC, out=tmp_path, name="layer", style="loops")
    assert again.key == first.key and is_built(tmp_path / "layer", first.key)


# -- 2. (the 32-bit limit is tested with the spec) ---------------------------------------------

# -- 3. outputs that alias inputs --------------------------------------------------------------


@pytest.fixture(scope="module", params=["unrolled", "loops"])
def square(request, tmp_path_factory):
    module = codegen.load(SQUARE, out=tmp_path_factory.mktemp("square"), style=request.param)
    V, K, b, G = reference.random_inputs(SQUARE, batch=3, seed=5)
    return module, V, K, b, G


def test_backward_into_its_own_inputs_equals_the_reference(square):
    module, V, K, b, G = square
    dV, dK, db = reference.backward(SQUARE, V, K, G)
    for slot, source in [(0, "V"), (0, "G"), (1, "K")]:
        arrays = {"V": V.copy(), "K": K.copy(), "G": G.copy()}
        out = [None, None, None]
        out[slot] = arrays[source]
        got = module.backward(arrays["V"], arrays["K"], arrays["G"], out=tuple(out))
        assert got[slot] is arrays[source]
        for have, want in zip(got, (dV, dK, db)):
            np.testing.assert_allclose(have, want, rtol=1e-12, atol=1e-12)


def test_every_pass_into_its_own_input_equals_the_reference(square):
    module, V, K, b, G = square
    Z = reference.forward(SQUARE, V, K, b)
    dV, dK, _ = reference.backward(SQUARE, V, K, G)
    X = V.copy()
    np.testing.assert_allclose(module.forward(X, K, b, out=X), Z, rtol=1e-12, atol=1e-12)
    X = G.copy()
    np.testing.assert_allclose(module.grad_input(K, X, out=X), dV, rtol=1e-12, atol=1e-12)
    X = K.copy()
    W = K.copy()
    np.testing.assert_allclose(module.grad_weight(V, G, out=X), dK, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(W, K)


@pytest.mark.parametrize("out, words", [
    ((None,), "tuple of length 1"),
    ([None, None, None, None], "list of length 4"),
    (np.zeros(3), "got ndarray"),
])
def test_backward_out_of_the_wrong_form_is_one_value_error(square, out, words):
    module, V, K, b, G = square
    with pytest.raises(ValueError, match="out: expected None or a tuple") as info:
        module.backward(V, K, G, out=out)
    assert words in str(info.value)


def test_backward_outputs_sharing_memory_are_refused(square):
    module, V, K, b, G = square
    buffer = np.zeros(V.size + K.size)
    dV = buffer[:V.size].reshape(V.shape)
    dK = buffer[V.size - 1:V.size - 1 + K.size].reshape(K.shape)
    with pytest.raises(ValueError, match="dV and dK share memory"):
        module.backward(V, K, G, out=(dV, dK, None))


# -- 4. a damaged cache heals itself -----------------------------------------------------------

BUILD_AND_CHECK = """
    import sys, numpy as np, codegen
    from derive import LayerSpec, reference
    spec = LayerSpec(input=(2, 5, 4), kernel=(3, 2, 2, 3), padding=1)
    module = codegen.load(spec, out=sys.argv[1] if len(sys.argv) > 1 else {out!r},
                          style="loops")
    V, K, b, G = reference.random_inputs(spec, batch=2)
    assert np.allclose(module.forward(V, K, b), reference.forward(spec, V, K, b))
    print(module.__name__, module.__file__)
"""


def _damage(path: Path, how: str) -> None:
    if how == "truncate":
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
    elif how == "garbage":
        path.write_bytes(b"\x00garbage(\n" * 7)
    elif how == "wrong type":
        path.write_text(json.dumps(["not", "a", "record"]))
    elif how == "delete":
        path.unlink()


@pytest.fixture(scope="module")
def built_cache(tmp_path_factory):
    """A cache with one module, built by another process; copied for each damage."""
    out = tmp_path_factory.mktemp("pristine") / "cache"
    done = run_python(BUILD_AND_CHECK.format(out=str(out)))
    assert done.returncode == 0, done.stderr
    return out


def _cache_files(out: Path) -> dict[str, Path]:
    module = next(p for p in out.iterdir() if p.is_dir() and p.name.startswith("conv2d"))
    index = next((out / ".index").iterdir())
    return {
        "library": next(module.glob("_conv2d_*.so")),
        "glue": next(module.glob("_conv2d_*.c")),
        "wrapper": module / "__init__.py",
        "kernel source": module / "conv2d_openmp.c",
        "header": module / "conv2d.h",
        "entry points": module / "conv2d_python.c",
        "manifest": module / "build.json",
        "index": index,
        "package init": out / "__init__.py",
    }


@pytest.mark.parametrize("file, how", [
    ("library", "truncate"), ("library", "garbage"), ("library", "delete"),
    ("glue", "garbage"), ("wrapper", "garbage"), ("wrapper", "delete"),
    ("kernel source", "truncate"), ("header", "garbage"), ("entry points", "garbage"),
    ("manifest", "garbage"), ("manifest", "wrong type"), ("manifest", "delete"),
    ("index", "garbage"), ("index", "wrong type"), ("package init", "delete"),
])
def test_a_damaged_cache_file_is_rebuilt_never_loaded(built_cache, tmp_path, file, how):
    out = tmp_path / "cache"
    shutil.copytree(built_cache, out)
    _damage(_cache_files(out)[file], how)
    done = run_python(BUILD_AND_CHECK.format(out=str(out)))
    assert done.returncode == 0, (done.returncode, done.stderr[-2000:])
    if (file, how) == ("library", "truncate"):  # healed for good, not only once
        again = run_python(BUILD_AND_CHECK.format(out=str(out)))
        assert again.returncode == 0, again.stderr


def test_a_module_damaged_on_disk_is_rebuilt_in_a_running_process(tmp_path):
    first = codegen.load(SPEC, out=tmp_path, name="healing", style="loops")
    library = next((tmp_path / "healing").glob("_conv2d_*.so"))
    # Replaced by a new file (truncating the mapped one in place would kill this process).
    damaged = library.with_suffix(".tmp")
    damaged.write_bytes(library.read_bytes()[:4096])
    os.replace(damaged, library)
    assert not is_built(tmp_path / "healing", first.key)
    again = codegen.load(SPEC, out=tmp_path, name="healing", style="loops")
    assert is_built(tmp_path / "healing", first.key)
    V, K, b, _ = reference.random_inputs(SPEC, batch=2)
    np.testing.assert_allclose(again.forward(V, K, b), reference.forward(SPEC, V, K, b))


def test_killed_builds_leave_nothing_after_the_next_build(tmp_path):
    codegen.load(SPEC, out=tmp_path, style="loops")
    # What a build killed with SIGKILL leaves: its temporary folders, unlocked.
    for stale in (".conv2d_openmp_x_0123456789ab.build-k1ll3d",
                  ".my_layer.emit-abcd1234", ".my_layer.old-zz9"):
        (tmp_path / stale).mkdir()
        (tmp_path / stale / "kernels.o").write_bytes(b"half")
    codegen.load(SPEC.replace(bias=False), out=tmp_path, style="loops")
    assert not [p.name for p in tmp_path.iterdir() if ".build-" in p.name or ".emit-" in p.name
                or ".old-" in p.name]


def test_a_build_killed_midway_is_cleaned_by_the_next(tmp_path):
    out = tmp_path / "cache"
    code = f"""
        import os, signal, codegen
        from derive import LayerSpec
        def die(step):
            if step == "linking":
                os.kill(os.getpid(), signal.SIGKILL)
        codegen.load(LayerSpec(input=(1, 4, 4), kernel=(1, 1, 2, 2)), out={str(out)!r},
                     style="loops", progress=die)
    """
    killed = run_python(code)
    assert killed.returncode == -9
    assert [p.name for p in out.iterdir() if ".build-" in p.name]
    codegen.load(SPEC, out=out, style="loops")
    assert not [p.name for p in out.iterdir() if ".build-" in p.name]


# -- 6. one-line errors ------------------------------------------------------------------------


def test_out_naming_a_file_is_one_line(tmp_path):
    afile = tmp_path / "file.txt"
    afile.write_text("mine")
    for command in ("build", "emit", "check"):
        done = corrgen(command, "--out", str(afile))
        one_line_error(done, "is a file")
    with pytest.raises(OutputError, match="is a file"):
        codegen.load(SPEC, out=afile / "below")
    assert afile.read_text() == "mine"


@contextlib.contextmanager
def read_only(folders: list[Path]):
    """Make ``folders`` unwritable, also for root (which ignores modes): immutable there."""
    as_root = os.geteuid() == 0
    if as_root and shutil.which("chattr") is None:
        pytest.skip("running as root without chattr: no way to make a folder read-only")
    for folder in folders:
        if as_root:
            subprocess.run(["chattr", "+i", str(folder)], check=True)
        else:
            os.chmod(folder, 0o555)
    try:
        yield
    finally:
        for folder in folders:
            if as_root:
                subprocess.run(["chattr", "-i", str(folder)], check=True)
            else:
                os.chmod(folder, stat.S_IRWXU)


def test_a_read_only_cache_is_one_line_and_a_built_module_still_loads(tmp_path):
    cache = tmp_path / "cache"
    built = run_python(BUILD_AND_CHECK.format(out=str(cache)))
    assert built.returncode == 0, built.stderr
    folders = [cache, *[p for p in cache.rglob("*") if p.is_dir()]]
    with read_only(folders):
        env = {"CORRGEN_CACHE": str(cache)}
        loads = run_python(BUILD_AND_CHECK.format(out=str(cache)), env=env)
        assert loads.returncode == 0, loads.stderr
        builds = corrgen("build", "--input", "7x7", env=env)
        one_line_error(builds, "cannot write there", str(cache))


def test_a_compiler_that_writes_nothing_is_one_line(tmp_path):
    done = corrgen("build", "--out", str(tmp_path), env={"CC": "true"})
    one_line_error(done, "exited with status 0 but wrote no kernels.o")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(("conv2d", ".conv2d"))]


def test_a_batch_too_large_for_memory_is_one_line(tmp_path):
    done = corrgen("check", "--out", str(tmp_path), "--batch", "1000000000000")
    one_line_error(done, "--batch 1000000000000", "GiB")
    one_line_error(corrgen("check", "--out", str(tmp_path), "--batch", "0"), "--batch 0")


# -- 7 and 8. module names and where modules go ------------------------------------------------


def test_loading_registers_only_the_modules_own_name(tmp_path):
    code = f"""
        import sys, codegen
        from derive import LayerSpec
        before = set(sys.modules)
        module = codegen.load(LayerSpec(input=(1, 4, 4), kernel=(1, 1, 2, 2)),
                              out={str(tmp_path / "wave")!r})
        added = set(sys.modules) - before
        ours = {{name for name in added if name.startswith("wave.")}}
        assert "wave" not in sys.modules, "the out folder's name was registered"
        import wave
        assert wave.__file__.endswith("wave.py") and hasattr(wave, "open"), wave
        assert module.__name__ == "wave." + module.__file__.split("/")[-2], module.__name__
        assert ours == {{module.__name__, module._extension.__name__}}, ours
        print("ok")
    """
    done = run_python(code)
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr


def test_a_default_load_leaves_a_users_generated_package_alone(tmp_path):
    mine = tmp_path / "generated"
    mine.mkdir()
    (mine / "__init__.py").write_text("OWNER = 'user'\n")
    code = """
        import sys, codegen, generated
        from derive import LayerSpec
        codegen.load(LayerSpec(input=(1, 4, 4), kernel=(1, 1, 2, 2)))
        assert sys.modules["generated"] is generated and generated.OWNER == "user"
        print("ok")
    """
    done = run_python(code, cwd=tmp_path, env={"PYTHONPATH": f"{tmp_path}:{ROOT}",
                                               "CORRGEN_CACHE": str(tmp_path / "cache")})
    assert done.returncode == 0 and "ok" in done.stdout, done.stderr
    assert sorted(p.name for p in mine.iterdir()) == ["__init__.py"]


def test_nothing_is_written_to_the_current_folder(tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    cache = tmp_path / "cache"
    env = {"CORRGEN_CACHE": str(cache)}
    assert corrgen("build", "--input", "4x4", cwd=work, env=env).returncode == 0
    assert corrgen("check", "--input", "4x4", cwd=work, env=env).returncode == 0
    assert corrgen("emit", "--input", "4x5", cwd=work, env=env).returncode == 0
    done = run_python("""
        import codegen
        from derive import LayerSpec
        codegen.load(LayerSpec(input=(1, 4, 4), kernel=(1, 1, 2, 2)))
    """, cwd=work, env=env)
    assert done.returncode == 0, done.stderr
    assert list(work.iterdir()) == []
    assert [p for p in cache.iterdir() if p.name.startswith("conv2d")]


def test_the_cache_is_the_user_cache_folder_without_corrgen_cache(tmp_path):
    done = run_python("""
        from codegen.paths import default_cache
        print(default_cache())
    """, env={"CORRGEN_CACHE": "", "HOME": str(tmp_path), "XDG_CACHE_HOME": ""})
    assert done.stdout.strip() == str(tmp_path / ".cache" / "corrgen"), done.stderr


# -- 10. loading needs no compiler -------------------------------------------------------------


def test_a_built_module_loads_without_any_compiler_on_path(tmp_path):
    out = tmp_path / "cache"
    assert run_python(BUILD_AND_CHECK.format(out=str(out))).returncode == 0
    bare = tmp_path / "bin"
    bare.mkdir()
    done = run_python(BUILD_AND_CHECK.format(out=str(out)),
                      env={"PATH": str(bare), "CC": "", "CXX": "", "NVCC": ""})
    assert done.returncode == 0, done.stderr
    other = run_python(BUILD_AND_CHECK.replace('"loops"', '"unrolled"').format(out=str(out)),
                       env={"PATH": str(bare), "CC": ""})
    assert other.returncode == 1 and "no compiler" in other.stderr


def test_load_errors_are_corrgen_errors(tmp_path):
    with pytest.raises(OutputError, match="name="):
        codegen.load(SPEC, out=tmp_path, name="../up")
    with pytest.raises(OutputError, match="empty path"):
        codegen.load(SPEC, out="")
    assert issubclass(OutputError, ValueError) and not issubclass(LoadError, OutputError)
    assert issubclass(BuildError, Exception)
