"""The build cache: keys, reuse, concurrent builds, failures, and the generated/ package."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import codegen
from codegen.backends import OPENMP
from codegen.build import cache_key, compile_cached, toolchain
from codegen.errors import BuildError
from codegen.lower import lower
from codegen.render import render
from derive import LayerSpec

SPEC = LayerSpec(input=(2, 6, 5), kernel=(3, 2, 3, 2), stride=(2, 1), padding=1)
ROOT = Path(__file__).resolve().parent.parent


def sources(spec=SPEC, dtype="float64", style="loops", backend=OPENMP):
    return render(lower(spec, backend, dtype, style), backend)


def run_python(code: str, timeout: float = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=timeout, env=env)


def test_same_spec_same_key_and_no_rebuild(tmp_path):
    first = compile_cached(sources(), OPENMP, tmp_path)
    again = compile_cached(sources(), OPENMP, tmp_path)
    assert first.compiled and not again.compiled
    assert first.key == again.key and first.folder == again.folder
    assert first.folder.name.endswith("_" + first.key[:12]) and first.folder.name.isidentifier()
    built_at = (first.folder / "build.json").stat().st_mtime_ns
    codegen.load(SPEC, out=tmp_path, style="loops")
    assert (first.folder / "build.json").stat().st_mtime_ns == built_at


def test_key_changes_with_flags_dtype_and_spec():
    chain = toolchain(OPENMP)
    base = cache_key(sources(), OPENMP, chain)
    flagged = dataclasses.replace(OPENMP, compile_flags=(*OPENMP.compile_flags, "-DVARIANT"))
    assert cache_key(sources(), flagged, toolchain(flagged)) != base
    assert cache_key(sources(dtype="float32"), OPENMP, chain) != base
    assert cache_key(sources(SPEC.replace(bias=False)), OPENMP, chain) != base
    assert cache_key(sources(), OPENMP, chain) == base


def test_failed_compile_reports_and_leaves_nothing(tmp_path):
    broken = dataclasses.replace(OPENMP, compile_flags=(*OPENMP.compile_flags,
                                                        "-fno-such-corrgen-flag"))
    with pytest.raises(BuildError) as caught:
        codegen.load(SPEC, out=tmp_path, backend=broken)
    error = caught.value
    assert "-fno-such-corrgen-flag" in error.command
    assert "no-such-corrgen-flag" in error.stderr
    assert error.log_path and Path(error.log_path).is_file()
    assert "build log: " + error.log_path in str(error)
    leftovers = [p.name for p in tmp_path.iterdir()
                 if p.name not in ("__init__.py", "README.md", ".locks", ".build-logs")]
    assert leftovers == []


def test_four_processes_build_one_module_at_once(tmp_path):
    code = f"""
        import codegen
        from derive import LayerSpec
        spec = LayerSpec(input=(3, 9, 7), kernel=(2, 3, 3, 3), padding="same")
        module = codegen.load(spec, out={str(tmp_path)!r}, style="loops")
        import numpy as np
        from codegen.check import check_module
        assert all(r.ok for r in check_module(module))
        print(module.__name__)
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for _ in range(4)]
    results = [p.communicate(timeout=300) + (p.returncode,) for p in procs]
    assert [rc for _, _, rc in results] == [0] * 4, [err for _, err, _ in results]
    assert len({out for out, _, _ in results}) == 1
    folders = [p for p in tmp_path.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(folders) == 1
    assert json.loads((folders[0] / "build.json").read_text())["key"].startswith(
        folders[0].name[-12:])


def test_second_process_loads_the_cached_module_without_rendering(tmp_path):
    codegen.load(SPEC, out=tmp_path, dtype="float32")
    done = run_python(f"""
        import codegen.loader
        from derive import LayerSpec

        def never(*args, **kwargs):
            raise AssertionError("rendered again")

        codegen.loader.render = codegen.loader.lower = codegen.loader.compile_cached = never
        module = codegen.loader.load({SPEC!r}, out={str(tmp_path)!r}, dtype="float32")
        print(module.key)
    """)
    assert done.returncode == 0, done.stderr
    assert len(done.stdout.strip()) == 64


def test_generated_package_imports_by_name(tmp_path):
    out = tmp_path / "generated"
    module = codegen.load(SPEC, out=out)
    assert module.__name__ == f"generated.{Path(module.__file__).parent.name}"
    assert (out / "__init__.py").is_file()
    assert "do not edit" in (out / "README.md").read_text()
    done = run_python(f"""
        import sys
        sys.path.insert(0, {str(tmp_path)!r})
        import numpy as np
        import {module.__name__} as mod
        from derive import reference
        V, K, b, G = reference.random_inputs(mod.spec, 2)
        assert np.allclose(mod.forward(V, K, b), reference.forward(mod.spec, V, K, b))
        print(mod.key)
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == module.key


def test_named_module_is_rebuilt_when_its_key_changes(tmp_path):
    first = codegen.load(SPEC, out=tmp_path, name="my_layer")
    second = codegen.load(SPEC.replace(bias=False), out=tmp_path, name="my_layer")
    assert first.key != second.key
    assert second.spec.bias is False
    assert json.loads((tmp_path / "my_layer" / "build.json").read_text())["key"] == second.key


def test_cli_emit_build_check(tmp_path):
    from codegen.cli import main

    args = ["--input", "2x6x5", "--kernel", "3x2x3x2", "--stride", "2x1", "--out",
            str(tmp_path)]
    assert main(["emit", *args, "--name", "emitted"]) == 0
    assert sorted(p.name for p in (tmp_path / "emitted").iterdir()) == [
        "__init__.py", "build.json", "conv2d.h", "conv2d_openmp.c", "conv2d_python.c"]
    assert main(["build", *args, "--dtype", "float32"]) == 0
    assert main(["check", *args, "--batch", "3"]) == 0
    with pytest.raises(SystemExit) as usage:
        main(["check", *args, "--target", "nope"])
    assert usage.value.code == 2


@pytest.mark.parametrize("target", ["openmp", "cuda"])
def test_a_built_module_imports_and_runs_without_sympy_or_jinja(tmp_path, target):
    """What a built module needs at run time (codegen.runtime, codegen.cuda, derive.spec) is
    apart from the generator: it imports and runs where SymPy and Jinja cannot be imported."""
    from codegen.backends import CUDA_EMULATION

    out = tmp_path / "mods"
    backend = CUDA_EMULATION if target == "cuda" else None
    module = codegen.load(SPEC, target, out=out, style="loops", backend=backend)
    done = run_python(f"""
        import sys
        for blocked in ("sympy", "jinja2", "codegen.loader", "codegen.lower", "codegen.render"):
            sys.modules[blocked] = None   # any import of these raises ImportError
        sys.path.insert(0, {str(tmp_path)!r})
        import numpy as np
        import {module.__name__} as mod
        from derive import reference
        V, K, b, G = reference.random_inputs(mod.spec, 2)
        assert np.allclose(mod.forward(V, K, b), reference.forward(mod.spec, V, K, b))
        dV, dK, db = mod.backward(V, K, G)
        for got, want in zip((dV, dK, db), reference.backward(mod.spec, V, K, G)):
            assert np.allclose(got, want)
        print("ran", mod.__name__)
    """)
    assert done.returncode == 0, done.stderr
    assert f"ran {module.__name__}" in done.stdout


def test_codegen_load_of_a_built_module_imports_neither_sympy_nor_jinja(tmp_path):
    """codegen.load of a module built earlier (a new process, as a user's script) computes
    its key and imports it: SymPy and Jinja (most of a second) are for generating. With the
    compilers' versions and the generator's fingerprint remembered (codegen.memo), it runs
    no program either, and cffi's C parser and importlib.metadata (40-odd ms each) stay out."""
    out = tmp_path / "mods"
    codegen.load(SPEC, out=out, style="loops")
    done = run_python(f"""
        import sys
        import codegen
        from derive import LayerSpec
        module = codegen.load({SPEC!r}, out={str(out)!r}, style="loops")
        heavy = ("sympy", "jinja2", "subprocess", "pycparser", "importlib.metadata")
        print("loaded", module.spec, *(name in sys.modules for name in heavy))
    """)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == f"loaded {SPEC} False False False False False"


@pytest.mark.parametrize("package", ["derive", "codegen"])
def test_no_submodule_shadows_a_public_name(package):
    """Both packages import their heavy names on first use; a submodule of the same name as
    a public name (codegen.load, derive.index_forms once) would replace the function by the
    module as soon as anything imported the submodule."""
    import importlib
    import pkgutil

    module = importlib.import_module(package)
    submodules = {info.name for info in pkgutil.iter_modules(module.__path__)}
    assert not submodules & set(module.__all__)
    for name in module.__all__:
        assert not isinstance(getattr(module, name), type(module)), name


def test_the_generator_fingerprint_covers_every_subfolder():
    """An edit to any template or generator module, in a subfolder too, must change the
    cache key: otherwise a module rendered by the old code would be reused."""
    from codegen.build import generator_files

    names = [path.as_posix() for path in generator_files()]
    for wanted in ("templates/openmp/module.c.jinja", "templates/openmp/direct.c.jinja",
                   "codegen/blocking/records.py", "derive/latex/document.py",
                   "derive/geometry.py", "codegen/lower.py", "templates/conv2d.h.jinja"):
        assert any(name.endswith("/" + wanted) for name in names), wanted
    assert not any("__pycache__" in name for name in names)
