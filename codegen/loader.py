"""Build-or-reuse a module (``load``) and import it.

What a built module runs at import and call time (the NumPy front end of its kernels) is
``codegen.runtime``, which needs neither SymPy nor Jinja: this module is the generator's side.
"""

from __future__ import annotations

import ctypes
import hashlib
import importlib.util
import keyword
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from derive.spec import LayerSpec

from .backends import SANITIZE_ENV, Backend, backend_for
from .build import (
    Built,
    compile_cached,
    compilers_digest,
    lookup,
    remember,
    request_key,
    toolchain,
)
from .errors import BuildError, LoadError
from .machine import host_machine
from .paths import WRAPPER, module_name, output_folder
from .styles import resolve_style
from .tune import applies as tune_applies
from .tune import threads_here, tuned_choices
from .vocabulary import DTYPE_NAMES

if TYPE_CHECKING:
    from derive.network import Network

    from .render import SourceFiles


def load(spec: LayerSpec, target: str = "openmp", dtype: str = "float64",
         out: str | Path | None = None, *, style: str = "auto", name: str | None = None,
         backend: Backend | None = None, progress: Callable[[str], None] | None = None,
         tune: bool | None = None) -> ModuleType:
    """The compiled module of ``spec``: built on first use, reused from ``out`` afterwards.

    Args:
        spec: the layer.
        target: the backend's name (``openmp`` or ``cuda``).
        dtype: ``float32`` or ``float64``.
        out: the folder modules are built in. None (the default): the per-user cache,
            ``$CORRGEN_CACHE`` or the platform's user cache folder, never the current folder.
            A folder you name becomes a package you own: its modules import as
            ``<its name>.<module>`` when its parent is on ``sys.path``.
        style: ``auto``, ``unrolled`` or ``loops``.
        name: the module folder's name, instead of ``<kernel>_<key12>``.
        backend: a Backend record to use instead of the target's (other flags, say; or
            ``codegen.backends.CUDA_EMULATION``, the cuda kernels compiled for the CPU).
        progress: called with the name of each stage as it starts.
        tune: OpenMP ``loops`` modules of layers above ``codegen.tune.TUNE_MIN_FLOPS``: time
            the tile choices the cost model cannot settle on this CPU and keep the faster
            (stored, so only the first build pays). None (the default): on unless
            ``CORRGEN_TUNE=0``; False: off.

    Returns:
        The module, with ``forward``, ``backward``, ``grad_input``, ``grad_weight``,
        ``grad_bias``, ``threads()`` and the attributes ``spec``, ``dtype``, ``target``,
        ``style`` and ``key``; cuda modules also ``device`` (the passes on GPU arrays, see
        ``codegen.cuda``), ``device_count()``, ``device_name()``, ``require_device()``,
        ``synchronize()`` and ``emulated``.

    Raises:
        OutputError: ``out`` or ``name`` cannot be used (a file, a path for a name, a folder
            that cannot be written).
        BuildError: the module is not built yet and a compiler is missing or failed. A module
            built earlier loads without any compiler on PATH.
        LoadError: a built module does not import, or it is built with the sanitizers
            (``CORRGEN_SANITIZE=1``) and this process has not preloaded their runtime.
    """
    backend = backend or backend_for(target)
    _check_dtype(dtype)
    style = resolve_style(spec, style, backend.gpu)

    def build(choices: dict[str, str] | None, module_name: str | None) -> ModuleType:
        request = {"spec": spec.to_dict(), "style": style, "dtype": dtype}
        if choices:
            request["choices"] = choices
        return _build_or_reuse(request, lambda: _sources(spec, backend, dtype, style, choices),
                               backend, out, module_name, progress)

    tuning = None
    if tune_applies(spec, style, backend, tune):
        tuning = tuned_choices(spec, dtype, backend, output_folder(out),
                               lambda choices: build(choices, None), threads_here(), progress)
    module = build(tuning.choices if tuning else None, name)
    module.tuning = tuning
    return module


def load_network(net: Network | str, target: str = "openmp", dtype: str = "float32",
                 out: str | Path | None = None, *, name: str | None = None,
                 backend: Backend | None = None,
                 progress: Callable[[str], None] | None = None) -> ModuleType:
    """The compiled training step of ``net``: built on first use, reused afterwards.

    Args:
        net: a ``derive.Network`` or its text form.
        target: ``openmp`` or ``cuda`` (host arrays in and out, the step run on the GPU).
        dtype: ``float32`` or ``float64``.
        out, name, progress: as for ``load``.
        backend: as for ``load``; ``codegen.backends.CUDA_EMULATION`` compiles the cuda
            target's source for the CPU.

    Returns:
        The module, with ``predict``, ``loss``, ``grads`` and ``step`` (DESIGN.md,
        "Networks"), ``threads()``, ``set_threads(count)`` and the attributes ``net``,
        ``dtype``, ``target`` and ``key``; cuda modules also ``emulated``,
        ``device_count()``, ``device_name()`` and ``require_device()``, and raise
        ``codegen.errors.CudaError`` when a CUDA call fails (no GPU, say).

    Raises:
        SpecError: ``net`` is text that does not parse.
        ValueError: an unknown dtype.
        RenderError: a backend without generated networks.
        OutputError, BuildError, LoadError: as for ``load``.
    """
    from derive.network import Network

    from .network_lower import lower_network
    from .render import render_network

    if isinstance(net, str):
        net = Network.parse(net)
    if not isinstance(net, Network):
        raise TypeError(f"net: expected a derive.Network or its text form, got "
                        f"{type(net).__name__}")
    backend = backend or backend_for(target)
    _check_dtype(dtype)
    return _build_or_reuse({"network": net.text(), "dtype": dtype},
                           lambda: render_network(lower_network(net, dtype, backend.name), backend),
                           backend, out, name, progress)


def _sources(spec: LayerSpec, backend: Backend, dtype: str, style: str,
             choices: dict[str, str] | None) -> SourceFiles:
    """A layer module's generated files. SymPy and Jinja are imported here, when a module
    is generated, not when one built earlier is loaded (0.7 s of a new process's first
    load)."""
    from .lower import lower
    from .render import render

    return render(lower(spec, backend, dtype, style, machine=host_machine(),
                        choices=choices), backend)


def _check_dtype(dtype: str) -> None:
    if dtype not in DTYPE_NAMES:
        raise ValueError(f"dtype={dtype!r}: expected one of {', '.join(DTYPE_NAMES)}")


def _build_or_reuse(request: dict[str, object], sources: Callable[[], SourceFiles],
                    backend: Backend, out: str | Path | None, name: str | None,
                    progress: Callable[[str], None] | None) -> ModuleType:
    """The module ``request`` names: reused from ``out`` when built before (by this
    toolchain; by any, when no compiler is here), else rendered by ``sources()``, compiled,
    and remembered in ``out``'s index."""
    out, name = output_folder(out), module_name(name)
    key = request_key(request, backend)
    try:
        chain = toolchain(backend)
    except BuildError:
        # No compiler: a module built earlier (by any compiler) still serves; else say so.
        built = lookup(out, key, name)
        if built is None:
            raise
        return _import_for(built, backend)
    compilers = compilers_digest(chain, backend)
    built = lookup(out, key, name, compilers)
    if built is None:
        (progress or (lambda _: None))("rendering")
        built = compile_cached(sources(), backend, out, name, progress, chain)
        remember(out, key, built, compilers)
    return _import_for(built, backend)


def sanitizer_runtime_loaded() -> bool:
    """Whether AddressSanitizer's runtime is in this process (preloaded: ``LD_PRELOAD``)."""
    try:
        return hasattr(ctypes.CDLL(None), "__asan_init")
    except OSError:
        return False


def _import_for(built: Built, backend: Backend) -> ModuleType:
    """``import_built``, after checking that a sanitized module can be loaded here: without
    the AddressSanitizer runtime loaded first, loading it would end the process."""
    if backend.sanitize and not sanitizer_runtime_loaded():
        raise LoadError(
            f"{built.folder}: the module is built with the sanitizers ({SANITIZE_ENV}=1), so "
            f"Python must start with their runtime loaded: run it with "
            f"LD_PRELOAD=$(gcc -print-file-name=libasan.so) ASAN_OPTIONS=detect_leaks=0, "
            f"or unset {SANITIZE_ENV}")
    return import_built(built)


def _import_path(name: str, folder: Path) -> ModuleType:
    """Import the package ``folder/__init__.py`` as ``name``; on any failure nothing stays
    registered and the error is one LoadError."""
    init = folder / WRAPPER
    spec = importlib.util.spec_from_file_location(
        name, init, submodule_search_locations=[str(folder)])
    if spec is None or spec.loader is None:
        raise LoadError(f"{init}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    before = set(sys.modules)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as error:
        for added in set(sys.modules) - before:
            del sys.modules[added]
        raise LoadError(f"{folder}: the built module does not import ({type(error).__name__}: "
                        f"{error}); delete the folder to rebuild it") from error
    return module


def _package_name(out: Path) -> str:
    """The name the out folder's modules import under: the folder's own name (DESIGN.md:
    ``<DIR's name>.<module>``), or a private name when that is no identifier."""
    name = out.name
    if name.isidentifier() and not keyword.iskeyword(name):
        return name
    return _private_package(out)


def _private_package(out: Path) -> str:
    return f"_corrgen_{hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:12]}"


def _same_file(module: ModuleType, path: Path) -> bool:
    try:
        return Path(getattr(module, "__file__", None) or "").resolve() == path.resolve()
    except OSError:
        return False


def import_built(built: Built) -> ModuleType:
    """Import a built module folder as ``<out's name>.<folder>``, e.g.
    ``generated.conv2d_...``, without changing ``sys.path``.

    Only that qualified name (and its extension, a submodule of it) is registered in
    ``sys.modules``: not the out folder's name, so a folder called ``wave`` never shadows
    ``import wave``. When the qualified name is taken by a module from somewhere else, a
    private name is used instead.
    """
    init = built.folder / WRAPPER
    for package in (_package_name(built.folder.parent), _private_package(built.folder.parent)):
        qualified = f"{package}.{built.folder.name}"
        loaded = sys.modules.get(qualified)
        if loaded is None:
            return _import_path(qualified, built.folder)
        if _same_file(loaded, init):
            if getattr(loaded, "key", None) == built.key:
                return loaded
            return _import_path(qualified, built.folder)  # rebuilt since: the new module
    raise LoadError(f"{built.folder}: its import names are taken by other modules")
