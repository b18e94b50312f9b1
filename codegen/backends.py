"""Backends as data: which template renders the kernels and how they are compiled.

A module is always built the same way (``codegen.build``): the kernel source is compiled to
an object by the backend's compiler, cffi's glue is compiled by the host C compiler, and
both are linked into one extension module with the backend's link flags and libraries. A
backend differs only in the fields below; a CUDA backend, for instance, names its own
templates and suffix, ``nvcc`` with ``-Xcompiler -fPIC`` and an arch list as compiler and
flags, and the CUDA runtime as a library.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Backend:
    """How one target renders and compiles its kernels.

    Attributes:
        name: the target name users pass (``--target``, ``codegen.load(target=...)``).
        template: the Jinja template of the kernel source, in ``templates/``.
        source: the file name of the rendered kernel source.
        compiler_env: the environment variable that overrides the kernel compiler.
        compiler: the kernel compiler used when that variable is unset.
        compile_flags: flags for compiling the kernel source to an object.
        link_flags: flags added when linking the extension module.
        libraries: libraries linked into the extension module (``-l`` names).
        cpu_specific: the flags tune for the build machine's CPU (``-march=native``), so the
            CPU model goes into the cache key.
        header_template: the Jinja template of the C header (prototypes; cffi's cdef).
        wrapper_template: the Jinja template of the Python wrapper (``__init__.py``).
        extra_files: files copied unchanged from ``templates/`` next to the sources (and
            hashed into the cache key with them), e.g. an emulation header.
        gpu: the kernels are CUDA kernels: ``lower`` computes their launch configuration.
        cuda_runtime: link the static CUDA runtime; its folder is found from the compiler
            (``nvcc -dryrun``) and becomes part of the toolchain.
        version_pattern: a regular expression picking the lines of ``compiler --version``
            that identify the compiler (all matches, joined); empty: the first line.
        install_hint: what to install when the compiler is missing.
    """

    name: str
    template: str
    source: str
    compiler_env: str
    compiler: str
    compile_flags: tuple[str, ...]
    link_flags: tuple[str, ...] = ()
    libraries: tuple[str, ...] = ()
    cpu_specific: bool = False
    header_template: str = "conv2d.h.jinja"
    wrapper_template: str = "module.py.jinja"
    extra_files: tuple[str, ...] = ()
    gpu: bool = False
    cuda_runtime: bool = False
    version_pattern: str = ""
    install_hint: str = "install a C compiler with OpenMP (gcc)"



OPENMP = Backend(
    name="openmp",
    template="conv2d_openmp.c.jinja",
    source="conv2d_openmp.c",
    compiler_env="CC",
    compiler="cc",
    compile_flags=("-std=c99", "-O3", "-march=native", "-fopenmp", "-fPIC", "-Wall"),
    link_flags=("-fopenmp",),
    cpu_specific=True,
)

#: Every target, by name.
BACKENDS: dict[str, Backend] = {backend.name: backend for backend in (OPENMP,)}


def backend_for(target: str) -> Backend:
    """The backend of a target name; ValueError naming the known targets otherwise."""
    try:
        return BACKENDS[target]
    except KeyError:
        raise ValueError(
            f"target={target!r}: expected one of {', '.join(BACKENDS)}"
        ) from None
