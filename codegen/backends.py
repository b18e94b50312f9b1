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
  loops over the grid and the block on the CPU (``CORRGEN_LAUNCH``), or, for kernels with
  shared memory and barriers, the threads of each block as fibers that check every shared
  access for races (``CORRGEN_LAUNCH_COOPERATIVE``, ``cuda_emulation_blocks.h``): the CUDA
  kernels validated without a GPU.

``CORRGEN_SANITIZE=1`` (``SANITIZE_ENV``) makes ``backend_for("openmp")`` return
``sanitized(OPENMP)``: the kernels, cffi's glue and the link built with AddressSanitizer and
UndefinedBehaviorSanitizer (``SANITIZE_FLAGS``). The flags are part of the cache key, so a
sanitized module is never reused as a plain one, nor the other way round.
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass


@dataclass(frozen=True)
class Backend:
    """How one target renders and compiles its kernels.

    Attributes:
        name: the target name users pass (``--target``, ``codegen.load(target=...)``).
        template: the Jinja template of the kernel source, in ``templates/``.
        style_templates: ``(style, template)`` pairs: the styles whose kernel source another
            template renders (the OpenMP ``direct`` style).
        network_template: the Jinja template of a generated network's source
            (``codegen.load_network``); empty: the target has no generated networks.
        network_source: the file name of the rendered network source.
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
        glue_flags: flags added to ``codegen.build.GLUE_FLAGS`` when compiling cffi's glue
            (with the module's CPython entry points) on the host compiler.
        sanitize: the module is built with the sanitizers (``sanitized``): a process imports
            it only with the AddressSanitizer runtime loaded first, ``LD_PRELOAD`` of
            ``$(gcc -print-file-name=libasan.so)``, and usually ``ASAN_OPTIONS=detect_leaks=0``
            (Python's own allocations would be reported as leaks at exit). ``codegen.load``
            refuses to import it otherwise (``LoadError``), rather than let the runtime end
            the process. Set by ``CORRGEN_SANITIZE=1`` for the ``openmp`` target.
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
    glue_flags: tuple[str, ...] = ()
    sanitize: bool = False
    style_templates: tuple[tuple[str, str], ...] = ()
    network_template: str = ""
    network_source: str = ""

    def kernel_template(self, style: str) -> str:
        """The Jinja template of the kernel source of ``style``."""
        return dict(self.style_templates).get(style, self.template)


OPENMP = Backend(
    name="openmp",
    template="openmp/module.c.jinja",
    style_templates=(("direct", "openmp/direct.c.jinja"),),
    source="conv2d_openmp.c",
    compiler_env="CC",
    compiler="cc",
    compile_flags=("-std=c99", "-O3", "-march=native", "-ffp-contract=fast", "-fopenmp", "-fPIC",
                   "-Wall"),
    link_flags=("-fopenmp",),
    cpu_specific=True,
    python_template="conv2d_python.c.jinja",
    network_template="openmp/network.c.jinja",
    network_source="network_openmp.c",
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
    template="cuda/module.cu.jinja",
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
    network_template="cuda/network.cu.jinja",
    network_source="network_cuda.cu",
)

#: The ``cuda`` target's kernel source, compiled for the CPU: ``templates/cuda_emulation.h``
#: (force-included) defines the CUDA keywords, ``threadIdx`` and friends, the runtime calls
#: the launchers make, and (in ``cuda_emulation_blocks.h``, which it includes) a launch macro
#: that loops over the grid and the block, and a cooperative one for kernels with
#: ``CORRGEN_SHARED`` arrays and ``__syncthreads()``.
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
    extra_files=("cuda_emulation.h", "cuda_emulation_blocks.h"),
    gpu=True,
    install_hint="install a C++ compiler (g++), or set CXX to its path",
    network_template=CUDA.network_template,
    network_source=CUDA.network_source,
)

#: Every target, by name.
BACKENDS: dict[str, Backend] = {backend.name: backend for backend in (OPENMP, CUDA)}

#: The CPU emulation of each target that has one (``corrgen check --emulate``).
EMULATIONS: dict[str, Backend] = {"cuda": CUDA_EMULATION}


#: The environment variable that asks for sanitized OpenMP builds (``CORRGEN_SANITIZE=1``).
SANITIZE_ENV = "CORRGEN_SANITIZE"
#: What a sanitized build adds to the kernel, glue and link flags: AddressSanitizer (reads and
#: writes outside any allocation, NumPy's arrays included once the runtime is preloaded) and
#: UndefinedBehaviorSanitizer, whose first report ends the process (no recovering), so a run
#: that finds anything fails.
SANITIZE_FLAGS = ("-fsanitize=address,undefined", "-fno-omit-frame-pointer",
                  "-fno-sanitize-recover=undefined")
#: Optimisation of a sanitized build, in place of the backend's: -O1 keeps the reports' stack
#: traces readable; -g1 gives them function names and source lines (full -g would take the
#: instrumented kernels' compile from about 3 s to 20 s for the larger layers).
SANITIZE_OPTIMIZE = ("-O1", "-g1")


def sanitized(backend: Backend) -> Backend:
    """``backend`` built with ``SANITIZE_FLAGS``: the kernel object, cffi's glue and the link.

    Its ``-O`` level becomes ``-O1 -g1``; every other flag (``-march=native``, ``-fopenmp``)
    stays. Only host-compiler backends can be sanitized (``openmp``); ValueError otherwise.
    """
    if backend.sanitize:
        return backend
    if backend.gpu:
        raise ValueError(f"{SANITIZE_ENV}=1 (target={backend.name!r}): only the openmp "
                         f"kernels can be built with the sanitizers")
    flags = tuple(f for f in backend.compile_flags if not f.startswith("-O"))
    return dataclasses.replace(
        backend,
        compile_flags=(*SANITIZE_OPTIMIZE, *flags, *SANITIZE_FLAGS),
        glue_flags=(*backend.glue_flags, *SANITIZE_OPTIMIZE, *SANITIZE_FLAGS),
        link_flags=(*backend.link_flags, *SANITIZE_FLAGS),
        sanitize=True,
    )


def sanitize_requested() -> bool:
    """Whether ``CORRGEN_SANITIZE`` asks for sanitized builds (set, and not 0/empty/no)."""
    return os.environ.get(SANITIZE_ENV, "").strip().lower() not in ("", "0", "no", "false",
                                                                   "off")


def backend_for(target: str) -> Backend:
    """The backend of a target name; ValueError naming the known targets otherwise.

    With ``CORRGEN_SANITIZE=1`` the ``openmp`` backend comes ``sanitized``; the ``cuda``
    target is unchanged (nvcc has no sanitizers).
    """
    try:
        backend = BACKENDS[target]
    except KeyError:
        raise ValueError(
            f"target={target!r}: expected one of {', '.join(BACKENDS)}"
        ) from None
    if sanitize_requested() and not backend.gpu:
        return sanitized(backend)
    return backend


def emulation_for(target: str) -> Backend:
    """The CPU emulation of a target; ValueError naming the targets that have one."""
    try:
        return EMULATIONS[target]
    except KeyError:
        raise ValueError(
            f"--emulate (target={target!r}): {target} kernels have no CPU emulation; only "
            f"{', '.join(EMULATIONS)} kernels do"
        ) from None
