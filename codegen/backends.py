"""Backends as data: which template renders the kernels and how they are compiled.

A module is always built the same way (``codegen.build``): the kernel source is compiled to
an object by the backend's compiler, cffi's glue is compiled by the host C compiler, and
both are linked into one extension module with the backend's link flags and libraries. A
backend differs only in the fields below.

Targets:

* ``openmp``: C99 + OpenMP, compiled by the host C compiler.
* ``cuda``: CUDA C++ compiled by ``nvcc`` (``-Xcompiler -fPIC``, an arch list with a PTX
  fallback) and linked with the static CUDA runtime, so the module needs the NVIDIA driver
  but no ``libcudart.so`` at run time. ``CUDA_EMULATION`` compiles the same ``.cu`` text
  with the host C++ compiler and ``cuda_emulation.h``, which runs every kernel launch as
  loops over the grid and the block on the CPU: the CUDA kernels validated without a GPU.
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
        python_template: the Jinja template of the module's CPython entry points
            (``conv2d_python.c``, compiled into cffi's glue against NumPy's C API: the common
            call runs its kernel without Python code in between); empty: none, every call
            goes through the Python wrapper.
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
    python_template: str = ""
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
    compile_flags=("-std=c99", "-O3", "-march=native", "-ffp-contract=fast", "-fopenmp", "-fPIC",
                   "-Wall"),
    link_flags=("-fopenmp",),
    cpu_specific=True,
    python_template="conv2d_python.c.jinja",
)

#: The GPUs ``cuda`` modules carry machine code for (``sm_75`` Turing, ``sm_80`` Ampere, which
#: also runs on ``sm_86``/``sm_89``, ``sm_90`` Hopper) plus ``compute_90`` PTX, which the
#: driver compiles for newer GPUs at load time. CUDA 13 dropped ``sm_50`` to ``sm_70``.
CUDA_ARCHS = ("sm_75", "sm_80", "sm_90")
CUDA_PTX = "compute_90"


def gencode_flags(archs: tuple[str, ...] = CUDA_ARCHS, ptx: str | None = CUDA_PTX
                  ) -> tuple[str, ...]:
    """``-gencode`` flags for real architectures ``archs`` and, optionally, ``ptx`` PTX."""
    flags: list[str] = []
    for arch in archs:
        flags += ["-gencode", f"arch=compute_{arch.removeprefix('sm_')},code={arch}"]
    if ptx:
        flags += ["-gencode", f"arch={ptx},code={ptx}"]
    return tuple(flags)


CUDA = Backend(
    name="cuda",
    template="conv2d_cuda.cu.jinja",
    source="conv2d_cuda.cu",
    compiler_env="NVCC",
    compiler="nvcc",
    compile_flags=("-std=c++17", "-O3", "-Xcompiler", "-fPIC", "-Xcompiler", "-Wall",
                   *gencode_flags()),
    libraries=("cudart_static", "dl", "rt", "pthread", "stdc++"),
    header_template="conv2d_cuda.h.jinja",
    wrapper_template="module_cuda.py.jinja",
    gpu=True,
    cuda_runtime=True,
    version_pattern=r"release \d|^Build ",
    install_hint="install the CUDA toolkit (nvcc), or set NVCC to its path",
)

#: The ``cuda`` target's kernel source, compiled for the CPU: ``templates/cuda_emulation.h``
#: (force-included) defines the CUDA keywords, ``threadIdx`` and friends, the runtime calls
#: the launchers make, and a launch macro that loops over the grid and the block.
CUDA_EMULATION = Backend(
    name="cuda",
    template=CUDA.template,
    source=CUDA.source,
    compiler_env="CXX",
    compiler="c++",
    compile_flags=("-x", "c++", "-std=c++17", "-O2", "-fPIC", "-Wall",
                   "-include", "cuda_emulation.h"),
    libraries=("stdc++",),
    header_template=CUDA.header_template,
    wrapper_template=CUDA.wrapper_template,
    extra_files=("cuda_emulation.h",),
    gpu=True,
    install_hint="install a C++ compiler (g++), or set CXX to its path",
)

#: Every target, by name.
BACKENDS: dict[str, Backend] = {backend.name: backend for backend in (OPENMP, CUDA)}

#: The CPU emulation of each target that has one (``corrgen check --emulate``).
EMULATIONS: dict[str, Backend] = {"cuda": CUDA_EMULATION}


def backend_for(target: str) -> Backend:
    """The backend of a target name; ValueError naming the known targets otherwise."""
    try:
        return BACKENDS[target]
    except KeyError:
        raise ValueError(
            f"target={target!r}: expected one of {', '.join(BACKENDS)}"
        ) from None


def emulation_for(target: str) -> Backend:
    """The CPU emulation of a target; ValueError naming the targets that have one."""
    try:
        return EMULATIONS[target]
    except KeyError:
        raise ValueError(
            f"--emulate (target={target!r}): {target} kernels have no CPU emulation; only "
            f"{', '.join(EMULATIONS)} kernels do"
        ) from None
