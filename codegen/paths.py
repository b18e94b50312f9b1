"""Where modules go, and the one check of every output folder and module name.

Every command and function that writes modules (``codegen.load``, ``corrgen build``,
``corrgen emit``, ``corrgen check``, ``corrgen bench``) passes its folder and name through
``output_folder`` and ``module_name`` before anything is written, so a name can never be a
path that leads outside the folder, and a file can never stand where the folder should be.

Without an explicit folder, modules go to one per-user cache: ``$CORRGEN_CACHE`` when set,
else the platform's user cache folder (``~/.cache/corrgen`` on Linux, through
``platformdirs``), never the current folder.
"""

from __future__ import annotations

import keyword
import os
from pathlib import Path

from .errors import OutputError

#: The environment variable naming the module cache.
CACHE_ENV = "CORRGEN_CACHE"


def default_cache() -> Path:
    """The per-user module cache: ``$CORRGEN_CACHE``, else the user cache folder."""
    configured = os.environ.get(CACHE_ENV, "").strip()
    if configured:
        return Path(configured).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("corrgen", appauthor=False))


def output_folder(out: str | os.PathLike[str] | None, option: str = "out") -> Path:
    """The folder modules are written to: ``out``, or the cache when it is None.

    Nothing is created here; the folder may not exist yet.

    Raises:
        OutputError: ``out`` is empty, or names something that is not a folder (a file, or a
            path through a file).
    """
    if out is None:
        folder = default_cache()
        option = f"${CACHE_ENV}" if os.environ.get(CACHE_ENV, "").strip() else "the cache"
    else:
        if not str(out).strip():
            raise OutputError(f"{option}={str(out)!r}: expected a folder, got an empty path")
        folder = Path(out).expanduser()
    for part in (folder, *folder.parents):
        if part.exists():
            if not part.is_dir():
                raise OutputError(
                    f"{option}={str(folder)!r}: {str(part)!r} is a file, not a folder; "
                    f"name a folder (it is created when missing)")
            break
    return folder


def module_name(name: str | None, option: str = "name") -> str | None:
    """``name`` once checked: a module folder's name is a Python identifier, never a path.

    Raises:
        OutputError: ``name`` is not an identifier (a path such as ``../x`` or ``/some/dir``,
            an empty string, a keyword, or a ``__dunder__`` name Python reserves).
    """
    if name is None:
        return None
    if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name) or (
            name.startswith("__") and name.endswith("__")):
        raise OutputError(
            f"{option}={name!r}: a module's name must be a Python identifier (letters, digits "
            f"and underscores, not starting with a digit, not a keyword or a __dunder__ name); "
            f"it names a folder inside the output folder, never a path")
    return name


def unwritable(folder: Path, error: OSError, option: str = "out") -> OutputError:
    """The one-line error for an output folder the build cannot write to."""
    reason = error.strerror or str(error)
    where = f" ({error.filename})" if error.filename and str(error.filename) != str(folder) else ""
    return OutputError(
        f"{option}={str(folder)!r}: cannot write there: {reason}{where}; pass a writable "
        f"folder (--out DIR, out=DIR) or set {CACHE_ENV}")
