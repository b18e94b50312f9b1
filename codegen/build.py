"""SourceFiles -> a compiled, cached extension module in ``<out>/<name>_<key12>/``.

The cache key is a SHA-256 over the rendered sources (key placeholders in), the compilers'
paths and versions, every flag, the dtype, the target, the corrgen version, the Python
extension ABI and cffi's version, NumPy's version when the module has CPython entry points
(they use its C API), and the CPU model when the flags tune for it. A folder
whose ``build.json`` records the same key is complete and reused by any process.

A build happens under an inter-process lock (``fcntl.flock`` on ``<out>/.locks/<folder>``),
in a temporary folder that is renamed into place only when everything in it is written, so
a reader never sees half a module. Steps, each a logged command:

1. cffi writes the glue C file from ``conv2d.h`` (``FFI.emit_c_code``; cffi's API mode);
2. the backend's compiler compiles the kernel source to an object;
3. the host C compiler compiles the glue against Python's headers (and, with the module's
   CPython entry points ``conv2d_python.c`` included in it, NumPy's), with ``GLUE_FLAGS``
   and the backend's ``glue_flags`` (the sanitizers', for ``CORRGEN_SANITIZE=1``);
4. the host C compiler links both, with the backend's link flags and libraries (for CUDA:
   the static CUDA runtime, from the folder ``nvcc`` itself links against).

A failed step raises BuildError with the command, the compiler's output and the path of the
kept log; the temporary folder is removed.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import importlib.machinery
import importlib.util
import json
import os
import platform
import re
import shlex
import shutil
import sysconfig
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from derive import __version__

from .backends import Backend
from .errors import BuildError, OutputError
from .memo import remembered
from .paths import create_unused, module_name, output_folder, unwritable, write_atomic
from .render import PYTHON_ENTRIES, SourceFiles

# subprocess is imported where a program runs. Loading a module built earlier runs none
# (codegen.memo), and importing subprocess would be 8 ms of that load in a new process.

#: Flags of the host compiler for cffi's glue (the kernels get the backend's flags).
GLUE_FLAGS = ("-O2", "-fPIC")
MANIFEST = "build.json"
LOG = "build.log"
#: What cffi exposes of ``conv2d_python.c``: the function that attaches its CPython entry
#: points to the extension module (defined in ``templates/conv2d_python.c.jinja``).
PYTHON_ATTACH = "int conv2d_python_attach(const char *extension);"

PACKAGE_README = """\
# Modules built by corrgen

Modules produced by corrgen's code generator; do not edit; safe to delete.

They come from `corrgen build` and `codegen.load`, which rebuild a deleted module on first use.

Each `<kernel>_<key12>/` folder holds one layer's kernel source, its header, the Python
wrapper (`__init__.py`), cffi's glue, the compiled extension and `build.log`/`build.json`
(which records the size and SHA-256 of every file: a damaged module is rebuilt, never
imported); with this folder's parent on `sys.path` it imports as
`<this folder's name>.<kernel>_<key12>`.
"""

PACKAGE_INIT = '"""Modules produced by corrgen\'s code generator; do not edit; safe to delete."""\n'


@dataclass(frozen=True)
class Toolchain:
    """The programs and settings one backend's builds use (part of the cache key).

    Attributes:
        compiler: the kernel compiler's command (resolved path first), e.g. ``/usr/bin/gcc``.
        compiler_version: the first line of its ``--version``.
        host: the host C compiler's command, for cffi's glue and the link.
        host_version: the first line of its ``--version``.
        python_include: the folder of ``Python.h``.
        ext_suffix: the extension-module suffix of this Python (``.cpython-311-...so``).
        cpu: the CPU model, when the backend's flags tune for the CPU; else "".
        library_dirs: folders searched for the backend's libraries at link time (the CUDA
            runtime's folder for ``cuda``); empty for most backends.
        numpy_include: the folder of NumPy's C headers, for backends with CPython entry
            points; else "".
        numpy_version: the NumPy those headers belong to (the entry points use its C API).
    """

    compiler: tuple[str, ...]
    compiler_version: str
    host: tuple[str, ...]
    host_version: str
    python_include: str
    ext_suffix: str
    cpu: str
    library_dirs: tuple[str, ...] = ()
    numpy_include: str = ""
    numpy_version: str = ""

    def identity(self, backend: Backend) -> list[str]:
        """Everything about the tools and flags that changes the built module."""
        return [*self.compilers(backend), *machine_identity(backend)]

    def compilers(self, backend: Backend) -> list[str]:
        """The compilers' part of ``identity``: the programs, their versions and flags."""
        return [
            "compiler", *self.compiler, self.compiler_version,
            "flags", *backend.compile_flags,
            "host", *self.host, self.host_version, "glue", *GLUE_FLAGS, *backend.glue_flags,
            "link", *backend.link_flags, "libraries", *backend.libraries,
            *(["libdirs", *self.library_dirs] if self.library_dirs else []),
        ]


def machine_identity(backend: Backend) -> list[str]:
    """What a built module depends on besides its compilers, known without running any:
    this Python's extension ABI, cffi's version, the CPU model when the flags tune for it,
    NumPy's version when the module uses its C API."""
    import _cffi_backend  # cffi's compiled half, of cffi's version, without its C parser

    from .machine import host_machine

    machine = host_machine()
    tiles_for = machine.isa + ("" if machine.full_width else " in halves")
    identity = ["python", importlib.machinery.EXTENSION_SUFFIXES[0], "cffi",
                _cffi_backend.__version__,
                "cpu", _cpu_model() if backend.cpu_specific else "",
                "tiles for", tiles_for if backend.cpu_specific else ""]
    if backend.python_template:
        import numpy

        identity += ["numpy", numpy.__version__]
    return identity


def _find_compiler(env: str, default: str,
                   hint: str = "install a C compiler with OpenMP (gcc)") -> tuple[str, ...]:
    words = shlex.split(os.environ.get(env, "") or default)
    path = shutil.which(words[0]) if words else None
    if path is None:
        raise BuildError(
            f"no compiler: {words[0] if words else default!r} (from ${env} or the default "
            f"{default!r}) is not on PATH; {hint}"
            + ("" if env in hint else f" or set {env}")
        )
    return (path, *words[1:])


@functools.cache
def _version(command: tuple[str, ...]) -> str:
    """The first line of ``command --version`` (remembered: ``_version_output``)."""
    lines = _version_output(command).strip().splitlines()
    return lines[0] if lines else "unknown"


@functools.cache
def _version_lines(command: tuple[str, ...], pattern: str) -> str:
    """The lines of ``command --version`` matching ``pattern``, joined with "; " (nvcc's first
    line names no version: ``release 13.0, V13.0.88`` and its build line do)."""
    lines = [line.strip() for line in _version_output(command).splitlines()
             if re.search(pattern, line.strip())]
    return "; ".join(lines) or "unknown"


def _version_output(command: tuple[str, ...]) -> str:
    """What ``command --version`` prints, remembered across processes while the program's
    file (and the file it resolves to) keeps its size and time (``codegen.memo``)."""

    def run() -> str:
        import subprocess

        try:
            done = subprocess.run([*command, "--version"], capture_output=True, text=True,
                                  timeout=60)
        except OSError as error:
            raise BuildError(f"cannot run {command[0]}: {error}") from None
        return done.stdout or done.stderr

    name = hashlib.sha256("\0".join(command).encode()).hexdigest()[:16]
    return remembered(f"version-{name}", [command[0], os.path.realpath(command[0])], run)


@functools.cache
def cuda_library_dirs(nvcc: tuple[str, ...]) -> tuple[str, ...]:
    """The folder of the static CUDA runtime (``libcudart_static.a``) that ``nvcc`` links with.

    ``nvcc -dryrun`` prints the ``-L`` folders of its own link step (``LIBRARIES=...``); this
    finds the toolkit wherever it is, also when ``nvcc`` on PATH is a wrapper script. The
    driver stubs folder is left out: the module must load the real driver at run time.

    Raises:
        BuildError: no such folder holds ``libcudart_static.a``.
    """
    import subprocess

    try:
        done = subprocess.run([*nvcc, "-dryrun", "-x", "cu", "-c", os.devnull,
                               "-o", os.devnull], capture_output=True, text=True, timeout=60)
    except OSError as error:
        raise BuildError(f"cannot run {nvcc[0]}: {error}") from None
    folders: list[str] = []
    for line in (done.stdout + done.stderr).splitlines():
        line = line.removeprefix("#$ ").strip()
        if line.startswith("LIBRARIES="):
            folders += [w[2:] for w in shlex.split(line.removeprefix("LIBRARIES="))
                        if w.startswith("-L")]
        elif line.startswith("TOP="):
            top = line.removeprefix("TOP=").strip('"')
            folders += [f"{top}/lib64", f"{top}/lib"]
    for folder in folders:
        path = Path(folder)
        if path.name != "stubs" and (path / "libcudart_static.a").is_file():
            return (str(path.resolve()),)
    raise BuildError(
        f"no CUDA runtime: libcudart_static.a is in none of the folders {nvcc[0]} links with "
        f"({', '.join(folders) or 'nvcc -dryrun named none'}); reinstall the CUDA toolkit "
        f"(its cudart component) or set NVCC to a complete toolkit's nvcc"
    )


@functools.cache
def _cpu_model() -> str:
    """The CPU's model name and a digest of its feature flags: ``-march=native`` code built
    for one CPU may not run on another of the same name (an "AMD EPYC" with AVX-512 and one
    without)."""
    with contextlib.suppress(OSError):
        lines = Path("/proc/cpuinfo").read_text().splitlines()
        model = next((line for line in lines if line.startswith("model name")), "")
        flags = next((line for line in lines if line.startswith("flags")), "")
        if model or flags:
            return f"{model} flags {hashlib.sha256(flags.encode()).hexdigest()[:16]}"
    return platform.processor() or platform.machine()


def toolchain(backend: Backend) -> Toolchain:
    """The toolchain of ``backend`` on this machine (BuildError when a compiler is missing)."""
    compiler = _find_compiler(backend.compiler_env, backend.compiler, backend.install_hint)
    host = _find_compiler("CC", "cc")
    include = sysconfig.get_paths()["include"]
    numpy_include = numpy_version = ""
    if backend.python_template:
        import numpy

        numpy_include, numpy_version = numpy.get_include(), numpy.__version__
    return Toolchain(
        compiler=compiler,
        compiler_version=(_version_lines(compiler, backend.version_pattern)
                          if backend.version_pattern else _version(compiler)),
        host=host, host_version=_version(host),
        python_include=include,
        ext_suffix=importlib.machinery.EXTENSION_SUFFIXES[0],
        cpu=_cpu_model() if backend.cpu_specific else "",
        library_dirs=cuda_library_dirs(compiler) if backend.cuda_runtime else (),
        numpy_include=numpy_include, numpy_version=numpy_version,
    )


def cache_key(sources: SourceFiles, backend: Backend, chain: Toolchain) -> str:
    """SHA-256 (hex) over the sources, the toolchain and flags, the target and corrgen version.

    ``sources`` still carry the key placeholders (the key cannot cover itself).
    """
    digest = hashlib.sha256()
    for item in ("corrgen", __version__, "target", backend.name, *chain.identity(backend)):
        digest.update(item.encode() + b"\0")
    for file, text in sources.files:
        digest.update(file.encode() + b"\0" + text.encode() + b"\0")
    return digest.hexdigest()


@functools.cache
def generator_files() -> list[Path]:
    """Every file that renders sources: the templates, and the codegen and derive code, in
    every subfolder (templates/openmp, codegen/blocking, derive/latex). Installed, the
    templates lie inside ``codegen`` (``codegen/templates``): each file is listed once."""
    import derive

    from .render import template_root

    files: dict[Path, None] = {}
    for folder in (template_root(), Path(derive.__file__).resolve().parent,
                   Path(__file__).resolve().parent):
        # os.walk, not Path.rglob: half the time, and this runs on every new
        # process's first load.
        found = [Path(root, name) for root, _, names in os.walk(folder)
                 if "__pycache__" not in Path(root).parts
                 for name in names if name.endswith((".py", ".jinja", ".h"))]
        files.update((path, None) for path in sorted(found))
    return list(files)


#: The file of each package the generator renders with that declares its ``__version__``,
#: read without importing the package. ``importlib.metadata.version`` would give the same
#: answer, but importing it and asking took 40-49 ms of a new process.
VERSION_FILES = {"sympy": "release.py", "jinja2": "__init__.py"}


def _version_files() -> list[Path]:
    files = []
    for package, file in VERSION_FILES.items():
        found = importlib.util.find_spec(package)
        files.append(Path(found.origin).with_name(file) if found and found.origin
                     else Path(f"<{package} is not installed>"))
    return files


@functools.cache
def generator_fingerprint() -> str:
    """SHA-256 over everything that renders sources (``generator_files``, each named by its
    path below its package) and the versions of SymPy and Jinja (``VERSION_FILES``).

    Remembered across processes while no file's size or time changes (``codegen.memo``)."""
    files = generator_files()
    versions = _version_files()

    def fingerprint() -> str:
        digest = hashlib.sha256()
        for path in files:
            name = f"{path.parent.name}/{path.name}"
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
        for path in versions:
            digest.update(path.parent.name.encode() + b"\0"
                          + (path.read_bytes() if path.is_file() else b"missing"))
        return digest.hexdigest()

    # One memo per installation (its files' paths), so that two checkouts sharing a cache
    # do not overwrite each other's.
    where = hashlib.sha256("\0".join(map(str, files)).encode()).hexdigest()[:16]
    return remembered(f"generator-{where}", [*files, *versions], fingerprint)


def request_key(request: dict[str, object], backend: Backend) -> str:
    """SHA-256 over what determines a module before it is rendered, short of the compilers:
    the request (spec, style, dtype), the backend, this machine's part of the toolchain
    (``machine_identity``) and the generator's own code.

    ``<out>/.index/`` maps it to the builds it produced, each with a digest of the compilers
    that built it (``compilers_digest``), so that a process loading a module that is already
    built skips rendering (SymPy's share of an unrolled kernel takes seconds) and only imports
    it; and so that a module built earlier still loads where its compiler is gone.
    """
    digest = hashlib.sha256()
    for item in (json.dumps(request, sort_keys=True), repr(backend), *machine_identity(backend),
                 __version__, generator_fingerprint()):
        digest.update(item.encode() + b"\0")
    return digest.hexdigest()


def compilers_digest(chain: Toolchain, backend: Backend) -> str:
    """A digest of the compilers' part of the toolchain (``Toolchain.compilers``)."""
    return hashlib.sha256("\0".join(chain.compilers(backend)).encode()).hexdigest()


#: Builds remembered per request key (several compilers, or named and unnamed folders).
INDEX_ENTRIES = 8


def _index_path(out: Path, request: str) -> Path:
    return out / ".index" / f"{request[:32]}.json"


def _index_entries(out: Path, request: str) -> list[dict[str, str]]:
    """The builds recorded for a request key, oldest first; a missing, unreadable or
    malformed index is no entry (the index is only a shortcut: the module is rebuilt)."""
    try:
        data = json.loads(_index_path(out, request).read_text())
    except (OSError, ValueError):
        return []
    entries = data.get("builds") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return []
    return [entry for entry in entries if isinstance(entry, dict)
            and all(isinstance(entry.get(field), str) for field in ("folder", "key", "compilers"))
            and entry["folder"].isidentifier()]


def lookup(out: Path | str, request: str, name: str | None = None,
           compilers: str | None = None) -> Built | None:
    """The newest whole build recorded for a request key, if it is still there.

    Args:
        compilers: ``compilers_digest`` of the compilers this machine has: a build by other
            compilers is not taken. None: no compiler is available, so any whole build is.
    """
    out = Path(out)
    for entry in reversed(_index_entries(out, request)):
        if compilers is not None and entry["compilers"] != compilers:
            continue
        if name is not None and entry["folder"] != name:
            continue
        folder = out / entry["folder"]
        if is_built(folder, entry["key"]):
            return Built(folder, entry["key"], compiled=False)
    return None


def remember(out: Path | str, request: str, built: Built, compilers: str) -> None:
    """Record which build a request key produced (see ``request_key``). The index is a
    shortcut, so a folder that cannot be written just goes without it."""
    out = Path(out)
    entries = [entry for entry in _index_entries(out, request)
               if (entry["folder"], entry["compilers"]) != (built.folder.name, compilers)]
    entries.append({"folder": built.folder.name, "key": built.key, "compilers": compilers})
    with contextlib.suppress(OSError):
        (out / ".index").mkdir(exist_ok=True)
        write_atomic(_index_path(out, request),
                     json.dumps({"builds": entries[-INDEX_ENTRIES:]}) + "\n")


def extension_name(key: str) -> str:
    """The cffi extension's module name; it carries the key, so modules never clash."""
    return f"_conv2d_{key[:12]}"


@dataclass(frozen=True)
class Built:
    """A complete module folder: where it is, its key, and whether this call compiled it."""

    folder: Path
    key: str
    compiled: bool


def _file_record(path: Path) -> dict[str, object]:
    data = path.read_bytes()
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def _file_records(folder: Path) -> dict[str, dict[str, object]]:
    """Size and SHA-256 of every file of a finished module folder (not the manifest and the
    log), for ``is_built`` to check before anything is imported or dlopen'ed."""
    return {path.name: _file_record(path) for path in sorted(folder.iterdir())
            if path.is_file() and path.name not in (MANIFEST, LOG)}


def is_built(folder: Path, key: str) -> bool:
    """Whether ``folder`` holds a complete, intact build of ``key`` for this Python.

    Every file the manifest lists must have its recorded size and SHA-256: a truncated
    library would crash the process that dlopen'ed it (SIGBUS), and an edited wrapper could
    run anything, so a folder that fails this is rebuilt, never imported.
    """
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if not isinstance(manifest, dict) or manifest.get("key") != key:
        return False
    files = manifest.get("files")
    library = extension_name(key) + importlib.machinery.EXTENSION_SUFFIXES[0]
    if not isinstance(files, dict) or library not in files:
        return False
    for file, record in files.items():
        if not OWN_FILES.fullmatch(file):  # a name such as "../x" leads out of the folder
            return False
        path = folder / file
        try:
            if path.stat().st_size != record.get("bytes") or _file_record(path) != record:
                return False
        except (OSError, AttributeError):
            return False
    return True


def prepare_out(out: Path) -> None:
    """Create ``out`` with its ``__init__.py`` and README.md, so its modules import as
    ``<out's name>.<module>`` when its parent is on ``sys.path``."""
    out.mkdir(parents=True, exist_ok=True)
    for file, text in (("__init__.py", PACKAGE_INIT), ("README.md", PACKAGE_README)):
        path = out / file
        if not path.exists():
            write_atomic(path, text)


def _new_folder(parent: Path, prefix: str) -> Path:
    """A fresh temporary folder ``<prefix><8 hex digits>`` under ``parent``, with the mode a
    plain mkdir gives (``tempfile.mkdtemp`` would make it private)."""
    return create_unused(parent, lambda token: prefix + token, Path.mkdir)[0]


#: One build at a time per process and folder name (flock also orders threads, but a
#: process-local lock keeps a thread from even opening the file twice).
_thread_locks: dict[str, threading.Lock] = {}
_thread_locks_guard = threading.Lock()


def _thread_lock(out: Path, name: str) -> threading.Lock:
    with _thread_locks_guard:
        return _thread_locks.setdefault(f"{out.resolve()}/{name}", threading.Lock())


@contextlib.contextmanager
def build_lock(out: Path, name: str) -> Iterator[None]:
    """Hold the inter-process lock of module folder ``name`` under ``out``."""
    import fcntl

    local = _thread_lock(out, name)
    locks = out / ".locks"
    locks.mkdir(exist_ok=True)
    with local, open(locks / f"{name}.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


@contextlib.contextmanager
def _try_lock(out: Path, name: str) -> Iterator[bool]:
    """Take the lock of ``name`` if no one holds it; yields whether it was taken."""
    import fcntl

    local = _thread_lock(out, name)
    if not local.acquire(blocking=False):
        yield False
        return
    try:
        with open(out / ".locks" / f"{name}.lock", "a") as handle:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)
    finally:
        local.release()


#: The files corrgen writes into a module folder (any target): the sources, cffi's glue, the
#: extension, the manifest and the log. A folder holding anything else is not replaced.
OWN_FILES = re.compile(r"(conv2d[\w.]*|network[\w.]*|_conv2d_[0-9a-f]{12}[\w.-]*|__init__\.py|"
                       r"build\.json|build\.log|cuda_emulation(_blocks)?\.h)")


def check_replaceable(folder: Path, option: str = "name") -> None:
    """Refuse to build over ``folder`` unless it is missing or holds only corrgen's files
    (a module folder, however damaged): a user's own folder of that name is never deleted.

    Raises:
        OutputError: a file stands there, or a folder holding other files.
    """
    if not folder.exists() and not folder.is_symlink():
        return
    if folder.is_symlink() or not folder.is_dir():
        raise OutputError(f"{option}={folder.name!r}: {str(folder)!r} exists and is not a "
                          f"module folder; choose another name or remove it")
    foreign = sorted(
        entry.name for entry in folder.iterdir()
        if not (entry.is_file() and not entry.is_symlink() and OWN_FILES.fullmatch(entry.name))
        and not (entry.name == "__pycache__" and entry.is_dir() and not entry.is_symlink()
                 and all(p.suffix == ".pyc" for p in entry.iterdir())))
    if foreign:
        shown = ", ".join(foreign[:3]) + (f" and {len(foreign) - 3} more" if len(foreign) > 3
                                          else "")
        raise OutputError(f"{option}={folder.name!r}: {str(folder)!r} holds files corrgen did "
                          f"not write ({shown}); choose another name or move them away")


#: Temporary folders of builds, emits and replacements: ``.<name>.build-<random>``.
_TEMPORARY = re.compile(r"\.(?P<name>[A-Za-z_]\w*)\.(?:build|emit|old)-\w+")


def _remove_stale(out: Path, held: str) -> None:
    """Remove the temporary folders that killed builds left behind: those of ``held`` (whose
    lock the caller holds) and those of any other name whose lock is free."""
    for entry in out.iterdir():
        match = _TEMPORARY.fullmatch(entry.name)
        if not match or not entry.is_dir() or entry.is_symlink():
            continue
        if match["name"] == held:
            shutil.rmtree(entry, ignore_errors=True)
            continue
        with _try_lock(out, match["name"]) as free:
            if free:
                shutil.rmtree(entry, ignore_errors=True)


def _install(tmp: Path, folder: Path) -> None:
    """Move the finished ``tmp`` to ``folder``, replacing an older module folder of that name
    (``check_replaceable`` has been asked first)."""
    if folder.exists():
        old = _new_folder(folder.parent, f".{folder.name}.old-")
        os.replace(folder, old / folder.name)
        os.replace(tmp, folder)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, folder)


class _Log:
    """The build log: every command with its output, appended as the build goes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.path.write_text("")

    def run(self, command: list[str], cwd: Path, step: str) -> None:
        import subprocess

        start = time.perf_counter()
        try:
            done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
        except OSError as error:
            self._append(f"$ {shlex.join(command)}\n{error}\n")
            raise BuildError(f"{step} failed: {error}", command, str(error)) from None
        output = done.stdout + done.stderr
        self._append(f"$ {shlex.join(command)}\n{output}"
                     f"# exit status {done.returncode}, {time.perf_counter() - start:.2f} s\n")
        if done.returncode != 0:
            raise BuildError(f"{step} failed (exit status {done.returncode})", command,
                             done.stderr or done.stdout)

    def _append(self, text: str) -> None:
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(text)


def _compile(tmp: Path, sources: SourceFiles, backend: Backend, chain: Toolchain, key: str,
             progress: Callable[[str], None]) -> list[list[str]]:
    """Write the sources into ``tmp`` and build the extension there; returns the commands."""
    import cffi
    from cffi.recompiler import make_c_source

    sources.write(tmp)
    log = _Log(tmp / LOG)
    ext = extension_name(key)
    progress("writing cffi glue")
    ffi = cffi.FFI()
    ffi.cdef(sources.text(sources.header))
    glue = f'#include <stdint.h>\n#include "{sources.header}"\n'
    entry_flags: list[str] = []
    if PYTHON_ENTRIES in dict(sources.files):
        # The entry points use CPython's full API (vectorcall, NumPy's macros), not the
        # limited API cffi's glue otherwise keeps to; the module is built for this Python.
        ffi.cdef(PYTHON_ATTACH)
        glue += f'#include "{PYTHON_ENTRIES}"\n'
        entry_flags = ["-D_CFFI_NO_LIMITED_API", "-I", chain.numpy_include]
    make_c_source(ffi, ext, glue, str(tmp / f"{ext}.c"))
    kernel_obj, glue_obj = "kernels.o", "glue.o"
    target = ext + chain.ext_suffix
    commands = [
        ("compiling kernels", kernel_obj, [*chain.compiler, *backend.compile_flags, "-c",
                                           sources.kernel_source, "-o", kernel_obj]),
        ("compiling cffi glue", glue_obj, [*chain.host, *GLUE_FLAGS, *backend.glue_flags,
                                           "-I", chain.python_include, *entry_flags, "-I",
                                           ".", "-c", f"{ext}.c", "-o", glue_obj]),
        ("linking", target, [*chain.host, "-shared", glue_obj, kernel_obj, *backend.link_flags,
                             *(f"-L{folder}" for folder in chain.library_dirs),
                             *(f"-l{lib}" for lib in backend.libraries), "-o", target]),
    ]
    for step, product, command in commands:
        progress(step)
        log.run(command, tmp, step)
        if not (tmp / product).is_file() or (tmp / product).stat().st_size == 0:
            raise BuildError(f"{step} failed: {command[0]} exited with status 0 but wrote no "
                             f"{product}; is it a working compiler?", command)
    for obj in (kernel_obj, glue_obj):
        (tmp / obj).unlink()
    return [command for _, _, command in commands]


def compile_cached(sources: SourceFiles, backend: Backend, out: Path | str | None,
                   name: str | None = None, progress: Callable[[str], None] | None = None,
                   chain: Toolchain | None = None) -> Built:
    """Build ``sources`` into ``<out>/<name or kernel_key12>/``, or reuse a complete build.

    Args:
        sources: rendered by ``codegen.render`` (key placeholders still in).
        backend: the target's compile recipe.
        out: the output folder (created, with ``__init__.py`` and README.md); None: the
            per-user cache (``codegen.paths``).
        name: the module folder's name instead of ``<kernel>_<key12>``; a Python identifier.
        progress: called with the name of each build step as it starts.
        chain: the toolchain, when the caller has it already.

    Raises:
        OutputError: ``out`` or ``name`` cannot be used, or the folder cannot be written.
        BuildError: a compiler is missing or a step failed (command, output, log path).
    """
    out, name = output_folder(out), module_name(name)
    chain = chain or toolchain(backend)
    key = cache_key(sources, backend, chain)
    folder_name = name or f"{sources.name}_{key[:12]}"
    folder = out / folder_name
    if is_built(folder, key):
        return Built(folder, key, compiled=False)
    try:
        prepare_out(out)
        with build_lock(out, folder_name):
            _remove_stale(out, folder_name)
            if is_built(folder, key):  # another process built it while we waited
                return Built(folder, key, compiled=False)
            check_replaceable(folder)
            tmp = _new_folder(out, f".{folder_name}.build-")
            try:
                start = time.perf_counter()
                commands = _compile(tmp, sources.keyed(key), backend, chain, key,
                                    progress or (lambda _: None))
                manifest = {
                    "key": key, "module": sources.name, "extension": extension_name(key),
                    "target": backend.name, "corrgen": __version__,
                    "toolchain": chain.identity(backend), "commands": commands,
                    "seconds": round(time.perf_counter() - start, 3),
                    "files": _file_records(tmp),
                }
                (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
                _install(tmp, folder)
            except BuildError as error:
                kept = _keep_log(tmp, out, folder_name)
                shutil.rmtree(tmp, ignore_errors=True)
                raise BuildError(error.message, error.command, error.stderr, kept) from None
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    except OSError as error:
        raise unwritable(out, error) from None
    return Built(folder, key, compiled=True)


def _keep_log(tmp: Path, out: Path, folder_name: str) -> str | None:
    """Move a failed build's log to ``<out>/.build-logs/``; returns its path."""
    log = tmp / LOG
    if not log.exists():
        return None
    logs = out / ".build-logs"
    logs.mkdir(exist_ok=True)
    kept = logs / f"{folder_name}.log"
    os.replace(log, kept)
    return str(kept)


def emit(sources: SourceFiles, backend: Backend, out: Path | str | None,
         name: str | None = None) -> Path:
    """Write the sources (key in place) to ``<out>/<name or kernel_key12>/`` without compiling.

    An existing complete build of the same key is left as it is. ``out`` and ``name`` are
    checked as for ``compile_cached``, and a folder of that name holding anything but
    corrgen's files is never replaced (OutputError).
    """
    out, name = output_folder(out), module_name(name)
    chain = toolchain(backend)
    key = cache_key(sources, backend, chain)
    folder = out / (name or f"{sources.name}_{key[:12]}")
    if is_built(folder, key):
        return folder
    try:
        prepare_out(out)
        with build_lock(out, folder.name):
            _remove_stale(out, folder.name)
            check_replaceable(folder)
            tmp = _new_folder(out, f".{folder.name}.emit-")
            try:
                sources.keyed(key).write(tmp)
                manifest = {"key": key, "module": sources.name, "target": backend.name,
                            "corrgen": __version__, "emitted": True,
                            "files": _file_records(tmp)}
                (tmp / MANIFEST).write_text(json.dumps(manifest, indent=1) + "\n")
                _install(tmp, folder)
            except BaseException:
                shutil.rmtree(tmp, ignore_errors=True)
                raise
    except OSError as error:
        raise unwritable(out, error) from None
    return folder
