"""Golden files: rendered sources checked in under generated/, compared with fresh renderings
(``pytest --update-golden`` rewrites them)."""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from codegen.backends import Backend
from codegen.build import emit
from codegen.render import SourceFiles

GENERATED = Path(__file__).resolve().parent.parent / "generated"


def masked(text: str) -> str:
    """The text with the cache key masked: it covers the compiler, which varies by machine."""
    text = re.sub(r"\b[0-9a-f]{64}\b", "<cache key>", text)
    return re.sub(r"_conv2d_[0-9a-f]{12}\b", "_conv2d_<key12>", text)


def golden_differences(folder: str, sources: SourceFiles, backend: Backend, update: bool
                       ) -> list[str]:
    """The unified diffs between ``generated/<folder>/`` and ``sources`` (key masked); with
    ``update``, the folder is rewritten first (which needs the backend's compiler, for the
    key in the files' headers)."""
    if update:
        emit(sources, backend, GENERATED, folder)
    differences = []
    for file, text in sources.keyed("0" * 64).files:
        golden = GENERATED / folder / file
        if not golden.is_file():
            differences.append(f"{golden} is missing; run pytest --update-golden")
            continue
        want, got = masked(golden.read_text()), masked(text)
        diff = "".join(difflib.unified_diff(want.splitlines(True), got.splitlines(True),
                                            str(golden), f"regenerated {file}"))
        if diff:
            differences.append(f"{golden} differs (pytest --update-golden rewrites):\n{diff}")
    return differences
