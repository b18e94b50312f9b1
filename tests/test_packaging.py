"""The wheel: what a non-editable install puts on ``sys.path``.

Built from a copy of the checkout's packaged files (so no ``build/`` folder of an earlier
build leaks into it, and the checkout stays clean), without build isolation: the test
extra brings setuptools.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

#: What the wheel is built from: the packages, the templates folder and the metadata files.
SOURCES = ("pyproject.toml", "README.md", "LICENSE", "codegen", "derive", "templates")


def _setuptools_recent() -> bool:
    try:
        from importlib.metadata import version

        return int(version("setuptools").split(".")[0]) >= 77
    except Exception:  # not installed, or an unusual version string
        return False


@pytest.mark.slow
@pytest.mark.skipif(not _setuptools_recent(), reason="building the wheel needs setuptools>=77")
def test_the_wheel_installs_codegen_and_derive_only(tmp_path):
    source = tmp_path / "src"
    source.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, source / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.py[cod]"))
        else:
            shutil.copy2(path, source / name)
    run = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps",
                          "--no-build-isolation", "-w", str(tmp_path / "dist"), str(source)],
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    [wheel] = (tmp_path / "dist").glob("corrgen-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        metadata = archive.read(next(n for n in names if n.endswith(".dist-info/METADATA")))

    top = {name.split("/")[0] for name in names}
    dist_info = {name for name in top if name.endswith(".dist-info")}
    assert top - dist_info == {"codegen", "derive"}, sorted(top)
    assert len(dist_info) == 1
    for wanted in ("codegen/templates/openmp/module.c.jinja",
                   "codegen/templates/cuda/module.cu.jinja",
                   "codegen/templates/derivation.tex.jinja",
                   "codegen/templates/cuda_emulation.h",
                   "codegen/templates/cuda_emulation_blocks.h"):
        assert wanted in names, wanted
    assert not any(name.startswith(("templates/", "generated/")) for name in names)
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)
    # Every template of the repository is in the wheel.
    for path in (ROOT / "templates").rglob("*"):
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
            assert f"codegen/templates/{path.relative_to(ROOT / 'templates').as_posix()}" \
                in names, path
    requires = [line for line in metadata.decode().splitlines()
                if line.startswith("Requires-Dist:") and "extra ==" not in line]
    assert not any("setuptools" in line for line in requires), requires
