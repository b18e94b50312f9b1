"""The Python front end of CUDA modules: NumPy functions, CUDA errors, device entry points.

``CudaKernelModule`` is ``KernelModule`` (the same argument checks and functions: NumPy in,
NumPy out; the C launchers copy the arrays to the GPU and back) whose failures raise
``CudaError``, a RuntimeError naming the pass, CUDA's error name and its description;
``CudaNetworkModule`` is the same for a generated network (``NetworkModule``). A module
imports without a GPU or a driver; its first call then raises, for instance::

    CudaError: forward: CUDA error 35 (cudaErrorInsufficientDriver): CUDA driver version is
    insufficient for CUDA runtime version; no usable GPU: ...

``module.device`` (``DeviceFunctions``) has the same passes for arrays already on the GPU:
anything with ``__cuda_array_interface__`` (CuPy arrays, PyTorch CUDA tensors, Numba device
arrays). They are used in place, without copies, and new outputs are allocated by the
library of the first array argument (``cupy.empty``, ``torch.empty``, Numba's
``device_array``; ``ALLOCATORS`` maps a library's top-level module name to its allocator).
Kernels are queued on a stream (the legacy default stream unless ``stream=`` names another)
and the functions return without waiting for them, as CuPy's and PyTorch's do.

What these functions check before queueing anything: the interface itself (version, no
mask), dtype and shape (the same messages as the NumPy functions), C-contiguity (a
non-contiguous array raises, naming the copy to pass instead: nothing is copied silently),
that outputs are writeable, and that every array is device memory on the current device
(``cudaPointerGetAttributes``). An array whose interface names a stream other than the
launch stream is waited for on the GPU first (CUDA array interface v3).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from derive.network import Network
from derive.spec import LayerSpec

from .errors import CudaError
from .network_runtime import MODES, NetworkModule
from .runtime import KernelModule
from .vocabulary import GRADIENTS, PASS

#: CUDA errors that mean "no usable GPU here" rather than a fault of the call.
NO_DEVICE_ERRORS = frozenset({
    "cudaErrorNoDevice", "cudaErrorInsufficientDriver", "cudaErrorInitializationError",
    "cudaErrorDevicesUnavailable", "cudaErrorSystemDriverMismatch",
    "cudaErrorCompatNotSupportedOnDevice", "cudaErrorSystemNotReady", "cudaErrorStubLibrary",
})
#: CUDA errors that mean "the module has no code this GPU can run".
NO_IMAGE_ERRORS = frozenset({"cudaErrorNoKernelImageForDevice", "cudaErrorUnsupportedPtxVersion",
                             "cudaErrorInvalidPtx"})

NO_DEVICE_HINT = (
    "no usable GPU: the cuda target needs an NVIDIA GPU and its driver (libcuda); to run the "
    "same kernels on the CPU, load with backend=codegen.backends.CUDA_EMULATION, or use "
    "corrgen check --emulate")
NO_IMAGE_HINT = (
    "the module has no machine code for this GPU and its driver cannot compile the PTX it "
    "carries: add the GPU's sm_XX to codegen.backends.CUDA_ARCHS, or update the driver")


class CudaQueries:
    """What the front end of every CUDA module asks CUDA, through the module's C functions
    ``<prefix>_error_name``, ``<prefix>_device_count`` ...: errors as CudaError, and the
    device. Mixed into a front end that sets ``lib`` and ``ffi``."""

    #: The prefix of the module's C functions.
    prefix = "conv2d"
    #: How to run the same kernels without a GPU, for require_device's message.
    emulate_hint = "corrgen check --emulate runs the same kernels on the CPU"
    lib: Any
    ffi: Any

    def _c(self, name: str) -> Callable[..., Any]:
        return getattr(self.lib, f"{self.prefix}_{name}")

    # -- errors -----------------------------------------------------------------------------

    def error(self, code: int, what: str) -> CudaError:
        """The CudaError of CUDA error ``code`` raised by ``what`` (a pass or a CUDA call)."""
        name = self.ffi.string(self._c("error_name")(code)).decode(errors="replace")
        text = self.ffi.string(self._c("error_string")(code)).decode(errors="replace")
        message = f"{what}: CUDA error {code} ({name}): {text}"
        if name in NO_DEVICE_ERRORS:
            message += f"; {NO_DEVICE_HINT}"
        elif name in NO_IMAGE_ERRORS:
            message += f"; {NO_IMAGE_HINT}"
        return CudaError(message, code, name)

    def _status(self, status: int, kernel: str) -> None:
        if status:
            raise self.error(status, kernel)

    def _int_call(self, function: Callable[..., int], what: str, *args: Any) -> int:
        """Call a C function with a trailing ``int *`` out-parameter; its value, or raise."""
        value = self.ffi.new("int *")
        self._status(function(*args, value), what)
        return int(value[0])

    # -- the device ---------------------------------------------------------------------------

    def device_count(self) -> int:
        """The number of CUDA devices (CudaError when CUDA cannot tell: no driver, ...)."""
        return self._int_call(self._c("device_count"), "cudaGetDeviceCount")

    def current_device(self) -> int:
        """The CUDA device the kernels run on (the calling thread's current device)."""
        return self._int_call(self._c("current_device"), "cudaGetDevice")

    def device_name(self, device: int | None = None) -> str:
        """The name of a CUDA device (default: the current one), e.g. ``NVIDIA H100``."""
        device = self.current_device() if device is None else device
        name = self.ffi.new("char[256]")
        self._status(self._c("device_name")(device, name, 256), "cudaGetDeviceProperties")
        return self.ffi.string(name).decode(errors="replace")

    def require_device(self) -> str:
        """The name of the device the kernels will run on.

        Raises:
            CudaError: no CUDA device is available, with CUDA's reason.
        """
        try:
            count = self.device_count()
        except CudaError as error:
            reason = str(error).split(": ", 1)[1].split("; ")[0]
            raise CudaError(f"no CUDA device is available ({reason}); {self.emulate_hint}",
                            error.code, error.name) from None
        if count == 0:
            raise CudaError(f"no CUDA device is available (cudaGetDeviceCount found none); "
                            f"{self.emulate_hint}")
        return self.device_name()


class CudaKernelModule(CudaQueries, KernelModule):
    """NumPy front end of one compiled CUDA module, plus ``device`` entry points.

    Args:
        spec: the layer the kernels were generated for.
        dtype: their dtype.
        lib: the cffi ``lib`` of the extension (``conv2d_forward``, ``conv2d_forward_device``,
            ``conv2d_error_name`` ...).
        ffi: the cffi ``ffi`` of the extension (for out-parameters and strings).
    """

    def __init__(self, spec: LayerSpec, dtype: str, lib: Any, ffi: Any) -> None:
        self.ffi = ffi
        super().__init__(spec, dtype, lib)
        self.emulated = bool(lib.conv2d_emulated())
        self.device = DeviceFunctions(self)

    def pointer_device(self, pointer: int) -> int:
        """The device holding ``pointer``'s memory, or -1 when it is not device memory."""
        return self._int_call(self.lib.conv2d_pointer_device, "cudaPointerGetAttributes",
                              pointer)

    def synchronize(self, stream: Any = None) -> None:
        """Wait until the work queued on ``stream`` (default: the legacy default stream) is
        done; raises CudaError for a failure of that work."""
        self._status(self.lib.conv2d_synchronize(stream_handle(stream)), "cudaStreamSynchronize")

    def threads(self) -> int:
        """The host threads a call runs on: 1 (the kernels run on the GPU)."""
        return int(self.lib.conv2d_threads())


class CudaNetworkModule(CudaQueries, NetworkModule):
    """NumPy front end of one compiled CUDA network (``codegen.load_network(...,
    target="cuda")``): ``NetworkModule``'s methods and checks, whose C call copies the arrays
    to the GPU and back; a failed CUDA call raises CudaError naming the method, CUDA's error
    name and its description.

    Args:
        net, dtype, target, lib: as for ``NetworkModule``.
        ffi: the cffi ``ffi`` of the extension (for out-parameters and strings).
    """

    prefix = "network"
    emulate_hint = ("codegen.load_network(..., backend=codegen.backends.CUDA_EMULATION) runs "
                    "the same kernels on the CPU")

    def __init__(self, net: Network, dtype: str, target: str, lib: Any, ffi: Any) -> None:
        self.ffi = ffi
        super().__init__(net, dtype, target, lib)
        self.emulated = bool(lib.network_emulated())

    def _refused(self, status: int, mode: int, X: np.ndarray, T: np.ndarray | None) -> None:
        """A negative status is minus a CUDA error code; the others are NetworkModule's."""
        if status < 0:
            raise self.error(-status, MODES[mode])
        super()._refused(status, mode, X, T)


# -- __cuda_array_interface__ -------------------------------------------------------------------


@dataclass(frozen=True)
class DeviceArray:
    """One array as its ``__cuda_array_interface__`` describes it.

    Attributes:
        obj: the object itself (a CuPy array, a PyTorch tensor ...).
        pointer: the address of its first element (0 for an empty array).
        shape: its shape.
        dtype: its dtype.
        contiguous: whether it is C-contiguous.
        readonly: whether the interface marks it read-only.
        stream: the stream its data is valid on (interface v3), or None when unknown.
    """

    obj: Any
    pointer: int
    shape: tuple[int, ...]
    dtype: np.dtype
    contiguous: bool
    readonly: bool
    stream: int | None

    @property
    def size(self) -> int:
        # math.prod: a forward call asks for sizes 16 times, and with np.prod those took
        # about 140 of its 204 us (emulated S1, docs/cuda-tiles.md)
        return math.prod(self.shape)

    def overlaps(self, other: DeviceArray) -> bool:
        """Whether the two arrays' bytes (contiguous arrays) share any address."""
        if not self.size or not other.size:
            return False
        end = self.pointer + self.size * self.dtype.itemsize
        return self.pointer < other.pointer + other.size * other.dtype.itemsize and \
            other.pointer < end


def _c_contiguous(shape: tuple[int, ...], strides: tuple[int, ...] | None, itemsize: int
                  ) -> bool:
    """Whether byte ``strides`` lay ``shape`` out in C order (extent-1 axes may have any)."""
    if strides is None or 0 in shape:
        return True
    expected = itemsize
    for extent, stride in zip(reversed(shape), reversed(strides)):
        if extent != 1 and stride != expected:
            return False
        expected *= extent
    return True


def device_array(name: str, obj: Any) -> DeviceArray:
    """Read ``obj.__cuda_array_interface__``.

    Raises:
        TypeError: ``obj`` has no interface, or it is malformed.
        ValueError: it has a mask (not supported).
    """
    try:
        interface = obj.__cuda_array_interface__
    except AttributeError:
        raise TypeError(
            f"{name}: expected a GPU array (an object with __cuda_array_interface__, such as a "
            f"CuPy array or a PyTorch CUDA tensor), got {type(obj).__name__}; NumPy arrays go "
            f"to the module's functions outside .device") from None
    if not isinstance(interface, dict):
        raise TypeError(f"{name}: __cuda_array_interface__ must be a dict, got "
                        f"{type(interface).__name__}")
    missing = [k for k in ("shape", "typestr", "data", "version") if k not in interface]
    if missing:
        raise TypeError(f"{name}: __cuda_array_interface__ lacks {', '.join(map(repr, missing))}")
    if interface.get("mask") is not None:
        raise ValueError(f"{name}: masked arrays are not supported (its "
                         f"__cuda_array_interface__ has a mask)")
    try:
        shape = tuple(int(d) for d in interface["shape"])
        dtype = np.dtype(interface["typestr"])
        pointer, readonly = interface["data"]
        strides = interface.get("strides")
        strides = None if strides is None else tuple(int(s) for s in strides)
    except (TypeError, ValueError) as error:
        raise TypeError(f"{name}: malformed __cuda_array_interface__ ({error})") from None
    if strides is not None and len(strides) != len(shape):
        raise TypeError(f"{name}: __cuda_array_interface__ has {len(strides)} strides for "
                        f"{len(shape)} axes")
    stream = interface.get("stream")
    return DeviceArray(obj, int(pointer or 0), shape, dtype,
                       _c_contiguous(shape, strides, dtype.itemsize), bool(readonly),
                       None if stream is None else int(stream))


def stream_handle(stream: Any) -> int:
    """A ``cudaStream_t`` as an integer: None is 0 (the legacy default stream); an int is
    taken as it is; CuPy streams give ``.ptr``, PyTorch streams ``.cuda_stream``."""
    if stream is None:
        return 0
    for attribute in ("ptr", "cuda_stream"):
        if hasattr(stream, attribute):
            stream = getattr(stream, attribute)
            break
    if isinstance(stream, (int, np.integer)) and not isinstance(stream, bool) and stream >= 0:
        return int(stream)
    raise TypeError(f"stream: expected None, a stream handle (int >= 0), a CuPy stream or a "
                    f"PyTorch CUDA stream, got {stream!r}")


def _cupy_empty(like: Any, shape: tuple[int, ...], dtype: np.dtype) -> Any:
    import cupy

    with cupy.cuda.Device(like.device.id):
        return cupy.empty(shape, dtype)


def _torch_empty(like: Any, shape: tuple[int, ...], dtype: np.dtype) -> Any:
    import torch

    return torch.empty(shape, dtype=getattr(torch, dtype.name), device=like.device)


def _numba_empty(like: Any, shape: tuple[int, ...], dtype: np.dtype) -> Any:
    from numba import cuda

    return cuda.device_array(shape, dtype)


#: New outputs, by the top-level module of the first array argument's type:
#: ``allocate(like, shape, dtype)`` returns an empty C-contiguous array on ``like``'s device.
ALLOCATORS: dict[str, Callable[[Any, tuple[int, ...], np.dtype], Any]] = {
    "cupy": _cupy_empty, "torch": _torch_empty, "numba": _numba_empty,
}


def library(obj: Any) -> str:
    """The top-level module of ``obj``'s type, e.g. ``cupy`` or ``torch``."""
    return type(obj).__module__.split(".")[0]


class DeviceFunctions:
    """``module.device``: every pass on arrays already on the GPU, without copies.

    Each function takes the arguments of the module's NumPy function of the same name, as
    GPU arrays of the module's dtype and shapes, plus ``stream`` (None: the legacy default
    stream; an int handle, a CuPy or a PyTorch stream). Outputs are new arrays of the first
    array argument's library, or ``out``. The kernels are queued and the function returns:
    a failure of the kernels themselves shows at the next synchronising call
    (``module.synchronize()``, a copy to the host ...).
    """

    def __init__(self, module: CudaKernelModule) -> None:
        self.module = module
        self.spec = module.spec
        self.dtype = module.dtype

    # -- checks -------------------------------------------------------------------------------

    def check(self, name: str, obj: Any, batch: int | None = None) -> DeviceArray:
        """``obj`` read as a C-contiguous GPU array of ``name``'s dtype and shape.

        Raises:
            TypeError: no ``__cuda_array_interface__``, or another dtype.
            ValueError: another shape (for batched arrays: another batch than ``batch``),
                not C-contiguous, or masked.
        """
        module = self.module
        array = device_array(name, obj)
        if array.dtype != self.dtype:
            raise TypeError(f"{name}: expected {module.expected(name, batch)}, "
                            f"got {array.dtype} {array.shape}")
        dims = module.shapes[name]
        if name in module.batched:
            ok = len(array.shape) == 4 and array.shape[1:] == dims and (
                batch is None or array.shape[0] == batch)
        else:
            ok = array.shape == dims
        if not ok:
            raise ValueError(f"{name}: expected {module.expected(name, batch)}, "
                             f"got {array.dtype} {array.shape}")
        if not array.contiguous:
            raise ValueError(f"{name}: must be C-contiguous on the GPU; pass a contiguous copy "
                             f"(cupy.ascontiguousarray(x), x.contiguous() in PyTorch)")
        return array

    def output(self, name: str, out: Any, batch: int, like: DeviceArray) -> DeviceArray:
        """A new output array of ``like``'s library, or ``out`` once checked."""
        module = self.module
        dims = (batch, *module.shapes[name]) if name in module.batched else module.shapes[name]
        if out is None:
            allocate = ALLOCATORS.get(library(like.obj))
            if allocate is None:
                raise TypeError(
                    f"out ({name}): cannot allocate an output like a "
                    f"{type(like.obj).__module__}.{type(like.obj).__name__} (known libraries: "
                    f"{', '.join(ALLOCATORS)}); pass out= a GPU array of "
                    f"{module.expected(name, batch)}")
            out = allocate(like.obj, dims, self.dtype)
        label = f"out ({name})"
        array = device_array(label, out)
        if array.dtype != self.dtype or array.shape != dims:
            error = TypeError if array.dtype != self.dtype else ValueError
            raise error(f"{label}: expected {module.expected(name, batch)}, "
                        f"got {array.dtype} {array.shape}")
        if not array.contiguous or array.readonly:
            raise ValueError(f"{label}: must be C-contiguous and writeable")
        return array

    def _prepare(self, arrays: dict[str, DeviceArray], stream: Any) -> int:
        """Check that every array is on the current device and make the launch stream wait
        for the streams the arrays' data is valid on; returns the launch stream."""
        module = self.module
        handle = stream_handle(stream)
        current = module.current_device()
        for name, array in arrays.items():
            if array.size == 0:
                continue
            device = module.pointer_device(array.pointer)
            if device < 0:
                raise ValueError(f"{name}: not in GPU memory (its __cuda_array_interface__ "
                                 f"points at host memory)")
            if device != current:
                raise ValueError(
                    f"{name}: on CUDA device {device}, but the current device is {current}; "
                    f"call inside cupy.cuda.Device({device}) or torch.cuda.device({device})")
        waited = set()
        for array in arrays.values():
            producer = array.stream
            if producer in (None, 0, 1) or producer == handle or producer in waited:
                continue  # 1 is the legacy default stream, which synchronises with the others
            module._status(module.lib.conv2d_stream_wait(producer, handle),
                           "cudaStreamWaitEvent")
            waited.add(producer)
        return handle

    @staticmethod
    def _separate(arrays: dict[str, DeviceArray], outputs: tuple[str, ...]) -> None:
        """Refuse an output that shares memory with another array of the call: the kernels
        are queued, so an output cannot be written after its inputs were read."""
        for out in outputs:
            for name, array in arrays.items():
                if name != out and array.overlaps(arrays[out]):
                    raise ValueError(f"out ({out}): shares GPU memory with {name}; pass a "
                                     f"separate array")

    def _run(self, kernel: str, batch: int, arrays: dict[str, DeviceArray], stream: Any
             ) -> None:
        """Queue pass ``kernel``'s device entry point (``conv2d_<pass>_device``) on
        ``arrays``, its inputs then its output."""
        self._separate(arrays, (next(reversed(arrays)),))
        handle = self._prepare(arrays, stream)
        entry = getattr(self.module.lib, PASS[kernel].entry + "_device")
        self.module._status(entry(batch, *(a.pointer for a in arrays.values()), handle), kernel)

    # -- the passes -----------------------------------------------------------------------

    def forward(self, V: Any, K: Any, b: Any = None, out: Any = None, stream: Any = None
                ) -> Any:
        """Z = forward(V, K, b, out=None, stream=None) on GPU arrays (see the class)."""
        arrays = {"V": self.check("V", V), "K": self.check("K", K)}
        if self.spec.bias:
            if b is None:
                raise TypeError(f"b: the layer has a bias: expected a GPU array of "
                                f"{self.module.expected('b')}, got None")
            arrays["b"] = self.check("b", b)
        elif b is not None:
            raise ValueError(f"b: the layer has no bias (spec.bias is False): expected None, "
                             f"got {type(b).__name__}")
        batch = arrays["V"].shape[0]
        arrays["Z"] = self.output("Z", out, batch, arrays["V"])
        self._run("forward", batch, arrays, stream)
        return arrays["Z"].obj

    def grad_input(self, K: Any, G: Any, out: Any = None, stream: Any = None) -> Any:
        """dV = grad_input(K, G, out=None, stream=None) on GPU arrays (see the class)."""
        arrays = {"K": self.check("K", K), "G": self.check("G", G)}
        batch = arrays["G"].shape[0]
        arrays["dV"] = self.output("dV", out, batch, arrays["G"])
        self._run("grad_input", batch, arrays, stream)
        return arrays["dV"].obj

    def grad_weight(self, V: Any, G: Any, out: Any = None, stream: Any = None) -> Any:
        """dK = grad_weight(V, G, out=None, stream=None) on GPU arrays (see the class)."""
        arrays = {"V": self.check("V", V)}
        batch = arrays["V"].shape[0]
        arrays["G"] = self.check("G", G, batch)
        arrays["dK"] = self.output("dK", out, batch, arrays["V"])
        self._run("grad_weight", batch, arrays, stream)
        return arrays["dK"].obj

    def grad_bias(self, G: Any, out: Any = None, stream: Any = None) -> Any:
        """db = grad_bias(G, out=None, stream=None) on GPU arrays; None without a bias."""
        arrays = {"G": self.check("G", G)}
        if not self.spec.bias:
            return None
        batch = arrays["G"].shape[0]
        arrays["db"] = self.output("db", out, batch, arrays["G"])
        self._run("grad_bias", batch, arrays, stream)
        return arrays["db"].obj

    def backward(self, V: Any, K: Any, G: Any, out: tuple[Any, ...] | None = None,
                 stream: Any = None) -> tuple[Any, Any, Any]:
        """(dV, dK, db) = backward(V, K, G, out=None, stream=None) on GPU arrays; db is None
        without a bias."""
        arrays = {"V": self.check("V", V), "K": self.check("K", K)}
        batch = arrays["V"].shape[0]
        arrays["G"] = self.check("G", G, batch)
        outs = dict(zip((p.writes for p in GRADIENTS), self.module.outputs(out)))
        for name, given in outs.items():
            if given is not None:
                arrays[name] = self.output(name, given, batch, arrays["V"])
        self._separate(arrays, tuple(name for name in outs if name in arrays))
        dV_out, dK_out, db_out = outs.values()
        return (self.grad_input(K, G, dV_out, stream), self.grad_weight(V, G, dK_out, stream),
                self.grad_bias(G, db_out, stream) if self.spec.bias else None)
