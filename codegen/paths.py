"""Where modules go, the one check of every output folder and module name, and the one way
files are written (whole or not at all: ``write_atomic``, ``write_output``).

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
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from .errors import OutputError

T = TypeVar("T")

#: The Python wrapper of a built module: its folder's package file.
WRAPPER = "__init__.py"
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


# -- files ------------------------------------------------------------------------------------


def create_unused(parent: Path, name: Callable[[str], str], create: Callable[[Path], T]
                  ) -> tuple[Path, T]:
    """``create(parent / name(token))`` for a fresh random token of 8 hex digits, retried
    while that name is taken (``create`` raises FileExistsError), at most 100 times: the
    path and what ``create`` returned."""
    for _ in range(100):
        path = parent / name(secrets.token_hex(4))
        try:
            return path, create(path)
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name {name('...')} in {parent}")


def write_atomic(path: Path, data: str | bytes) -> None:
    """Write ``path`` whole or not at all: a temporary file beside it, then a rename.

    The file gets the mode a plain ``open(path, "w")`` gives (0666 less the umask): the
    temporary file is created with ``os.open(..., 0o666)``, so the kernel applies the umask
    (``tempfile.mkstemp`` would leave it private, 0600). OSError propagates; see
    ``write_output`` for the one-line error.
    """
    path = Path(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    tmp, fd = create_unused(path.parent, lambda token: f".{path.name}.{token}.tmp",
                            lambda tmp: os.open(tmp, flags, 0o666))
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data.encode() if isinstance(data, str) else data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_error(path: Path, error: OSError) -> str:
    """What went wrong writing ``path``, and the rule, in one line."""
    path = Path(path)
    folder = path.parent
    if path.is_dir():
        why = "it is a folder; name a file"
    elif not folder.exists():
        why = f"folder {str(folder)!r} does not exist"
    elif not folder.is_dir():
        why = f"{str(folder)!r} is not a folder"
    elif isinstance(error, PermissionError):
        why = f"no permission to write in folder {str(folder)!r}"
    else:
        why = error.strerror or str(error)
    return f"cannot write {str(path)!r}: {why}"


def write_output(path: str | os.PathLike[str], data: str | bytes,
                 error: type[Exception] = OutputError) -> Path:
    """``write_atomic``, with any OSError raised as a one-line ``error`` naming the path
    and what is wrong with it (``write_error``); the path written, as a ``Path``."""
    path = Path(path)
    try:
        write_atomic(path, data)
    except OSError as failure:
        raise error(write_error(path, failure)) from None
    return path
