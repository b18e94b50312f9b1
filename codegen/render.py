"""KernelIR -> SourceFiles: the Jinja environment and the rendered files of one module.

Every file names its cache key in its header, and the cache key is a hash over the files.
So files are rendered with placeholders for the key, hashed (``codegen.build.cache_key``),
and then ``SourceFiles.keyed(key)`` puts the key in.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .backends import Backend
from .errors import RenderError
from .paths import WRAPPER

if TYPE_CHECKING:
    from .ir import KernelIR


@functools.cache
def template_root() -> Path:
    """The folder of the Jinja templates, the one place every template is read from.

    Installed, they are the package data of ``codegen.templates`` (the repository's
    ``templates/`` folder, shipped inside ``codegen``; an editable install maps the name to
    the checkout's folder). Run from a source tree (``codegen`` imported from the checkout,
    not installed), there is no ``codegen.templates``: the folder is then ``templates/`` next
    to ``codegen/``. Found with ``importlib.util.find_spec``, which, unlike
    ``importlib.resources``, is already imported when a module built earlier is loaded.
    """
    found = importlib.util.find_spec("codegen.templates")
    if found is None or not found.submodule_search_locations:
        return Path(__file__).resolve().parent.parent / "templates"
    # Jinja's FileSystemLoader and the cache's fingerprint read real files: a wheel installed
    # as files has them (a zipped install, which has none, is not supported).
    return Path(next(iter(found.submodule_search_locations))).resolve()


#: Where the Jinja templates live (``template_root()``).
TEMPLATE_DIR = template_root()

HEADER = "conv2d.h"
NETWORK_HEADER = "network.h"
#: The CPython entry points, for backends that have them (``Backend.python_template``).
PYTHON_ENTRIES = "conv2d_python.c"

#: Placeholders for the cache key (and its first 12 characters) until it is known.
KEY_TOKEN = "@@CORRGEN_CACHE_KEY@@"
KEY12_TOKEN = "@@CORRGEN_KEY12@@"


@functools.cache
def environment():  # -> jinja2.Environment
    """The one Jinja environment: strict about undefined names, quiet about whitespace."""
    import jinja2

    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATE_DIR)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )


@dataclass(frozen=True)
class SourceFiles:
    """The rendered files of one module, in writing order.

    Attributes:
        name: the module's base name (``KernelIR.name``).
        kernel_source: the file name of the kernel source, e.g. ``conv2d_openmp.c``.
        files: ``(file name, text)`` pairs: the header, the kernel source, the Python wrapper,
            the CPython entry points when the backend has them, and any extra files.
        header: the file name of the C header cffi compiles against (``conv2d.h`` for a
            layer, ``network.h`` for a network).
    """

    name: str
    kernel_source: str
    files: tuple[tuple[str, str], ...]
    header: str = HEADER

    def text(self, file: str) -> str:
        """The text of one file."""
        return dict(self.files)[file]

    def keyed(self, key: str) -> SourceFiles:
        """The files with the cache key in place of its placeholders."""
        return SourceFiles(self.name, self.kernel_source, tuple(
            (file, text.replace(KEY_TOKEN, key).replace(KEY12_TOKEN, key[:12]))
            for file, text in self.files
        ), self.header)

    def write(self, folder: Path) -> list[Path]:
        """Write every file into ``folder`` (which must exist); returns the paths."""
        paths = []
        for file, text in self.files:
            path = folder / file
            path.write_text(text, encoding="utf-8")
            paths.append(path)
        return paths


def render(ir: KernelIR, backend: Backend) -> SourceFiles:
    """The header, the kernel source, the Python wrapper and (when the backend has them) the
    CPython entry points of ``ir``, key placeholders in, then the backend's extra files
    (copied unchanged from ``templates/``)."""
    env = environment()
    context = {"ir": ir, "key": KEY_TOKEN, "key12": KEY12_TOKEN, "source": backend.source}
    files = (
        (HEADER, env.get_template(backend.header_template).render(context)),
        (backend.source, env.get_template(backend.kernel_template(ir.style)).render(context)),
        (WRAPPER, env.get_template(backend.wrapper_template).render(context)),
        *(((PYTHON_ENTRIES, env.get_template(backend.python_template).render(context)),)
          if backend.python_template else ()),
        *((name, (TEMPLATE_DIR / name).read_text(encoding="utf-8"))
          for name in backend.extra_files),
    )
    return SourceFiles(ir.name, backend.source, files)


def render_network(ir: Any, backend: Backend) -> SourceFiles:
    """The header, the kernel source (``backend.network_template``) and the Python wrapper of
    a network (``codegen.network_lower.NetworkIR``), key placeholders in, then the backend's
    extra files (the emulation header of ``CUDA_EMULATION``).

    Raises:
        RenderError: the backend has no network template.
    """
    if not backend.network_template:
        raise RenderError(f"target={backend.name!r}: this backend has no generated networks "
                          f"(the openmp and cuda targets have)")
    env = environment()
    source = backend.network_source
    context = {"ir": ir, "key": KEY_TOKEN, "key12": KEY12_TOKEN, "source": source}
    files = (
        (NETWORK_HEADER, env.get_template("network.h.jinja").render(context)),
        (source, env.get_template(backend.network_template).render(context)),
        (WRAPPER, env.get_template("network_module.py.jinja").render(context)),
        *((name, (TEMPLATE_DIR / name).read_text(encoding="utf-8"))
          for name in backend.extra_files),
    )
    return SourceFiles(ir.name, source, files, NETWORK_HEADER)
