"""Values that a new process would recompute from files that seldom change, remembered in
the module cache under those files' sizes and modification times, the way Python keeps its
bytecode.

Two such values are needed before a module built earlier can be found:
- the generator's fingerprint (``build.generator_fingerprint``), from reading and hashing
  about 120 files: 10 ms;
- the compilers' ``--version`` lines (``build.toolchain``), from one process each, with
  ``subprocess`` to import: 15 ms.

Together they were a third of a new process's load of a module built earlier.

A memo is only a shortcut. One that is missing, unreadable, malformed or stale is computed
again, and one that cannot be written is simply not kept. A compiler is known by its path
and the file it resolves to. A compiler wrapper (ccache's ``gcc`` link) therefore keeps the
version line it gave until the wrapper itself changes. A module is then reused where the
compiler behind the wrapper changed, just as a folder of modules built elsewhere is reused.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from .paths import default_cache, write_atomic

#: The memo folder inside the module cache.
MEMO_FOLDER = ".memo"


def signature(files: Iterable[Path | str]) -> str:
    """A digest of each file's path, size and modification time (``missing`` when absent)."""
    digest = hashlib.sha256()
    for path in files:
        try:
            stat = os.stat(path)
            digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\0".encode())
        except OSError:
            digest.update(f"{path}\0missing\0".encode())
    return digest.hexdigest()


def remembered(name: str, files: Iterable[Path | str], compute: Callable[[], str]) -> str:
    """``compute()``, or the value it gave when ``files`` last had the same sizes and times.

    ``name`` names the memo file: one per value, so differing values never share a file.
    """
    stamp = signature(files)
    memo = default_cache() / MEMO_FOLDER / f"{name}.json"
    with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
        data = json.loads(memo.read_text())
        if data["signature"] == stamp and isinstance(data["value"], str):
            return data["value"]
    value = compute()
    with contextlib.suppress(OSError):
        memo.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(memo, json.dumps({"signature": stamp, "value": value}))
    return value
