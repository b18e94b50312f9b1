"""What a built module needs at run time: the NumPy front end of its kernels.

Imported by every generated module's ``__init__.py``; it imports only NumPy, cffi and ctypes
(and ``derive.spec`` for the type), never SymPy, Jinja or the generator, so a built module
imports and runs where those are not installed.

The front end checks every array before a kernel sees it: a non-array, or an array of the
wrong dtype, raises TypeError; a wrong shape raises ValueError; each message names the
argument, what was expected and what came, e.g.
``ValueError("G: expected float32 (N, 4, 5, 13), got float64 (2, 4, 5, 12)")``.
Arrays that are not C-contiguous (or not aligned) are copied first; the batch size N is
free. Kernels run through cffi's API mode, which releases the GIL for the call.
"""

from __future__ import annotations

import ctypes
from types import ModuleType
from typing import TYPE_CHECKING, Any

import _cffi_backend
import numpy as np

from derive.geometry import buffer_shapes

from .vocabulary import GRADIENTS, PASS, PASS_NAMES

if TYPE_CHECKING:
    from derive.spec import LayerSpec


#: Array addresses for the kernels' uintptr_t arguments. ctypes' view of a writeable array's
#: buffer gives its address as a Python int in about half the time of cffi's view cast to an
#: integer (which the call then converts again), and a quarter of ``array.ctypes.data``;
#: on tiny layers that is much of a call. ctypes refuses read-only and empty buffers: cffi
#: takes those. The FFI is the backend's own, the kind a compiled module carries:
#: ``cffi.FFI()`` would import its C parser (pycparser): 41-48 ms in a new process.
_FFI = _cffi_backend.FFI()
_from_buffer, _cast = _FFI.from_buffer, _FFI.cast
_addressof, _char_view = ctypes.addressof, ctypes.c_char.from_buffer


def _address(array: np.ndarray) -> Any:
    try:
        return _addressof(_char_view(array))
    except (TypeError, ValueError):
        return _cast("uintptr_t", _from_buffer(array))


#: The functions that run one kernel each (``backward`` runs several), by name.
PASSES = PASS_NAMES


def _target(out: np.ndarray, *reads: Any) -> np.ndarray:
    """Where a kernel writes the checked ``out``: ``out`` itself, or a fresh array when
    ``out`` shares memory with one of ``reads``.

    A kernel may write part of its output before it has read all of its inputs, so an
    ``out`` that shares memory with an input is written only once the kernel is done: the
    kernel writes into a fresh array, copied into ``out`` by ``_deliver``.
    """
    if any(isinstance(a, np.ndarray) and np.may_share_memory(out, a) for a in reads):
        return np.empty(out.shape, out.dtype)
    return out


def _deliver(result: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """``result``, copied into ``out`` when the kernel wrote elsewhere."""
    if out is None or result is out:
        return result
    out[...] = result
    return out


class KernelModule:
    """NumPy front end of one compiled module: argument checks, outputs, kernel calls.

    Args:
        spec: the layer the kernels were generated for.
        dtype: their dtype.
        lib: the cffi ``lib`` of the extension (``conv2d_forward`` etc.).
        extension: the extension module itself. When its ``lib`` has
            ``conv2d_python_attach`` (``templates/conv2d_python.c.jinja``), the functions
            become its CPython entry points: they run the common call (exact arrays, positional
            arguments) without Python code and hand every other call to the checked functions
            built here, which stay available as ``checked``.
    """

    def __init__(self, spec: LayerSpec, dtype: str, lib: Any,
                 extension: ModuleType | None = None) -> None:
        self.spec = spec
        self.dtype = np.dtype(dtype)
        self.lib = lib
        shapes = buffer_shapes(spec)
        self.shapes = {name: dims for name, (dims, _) in shapes.items()}
        self.batched = {name for name, (_, batched) in shapes.items() if batched}
        self._build_functions()
        self.checked = {name: getattr(self, name) for name in PASSES}
        if extension is not None and hasattr(lib, "conv2d_python_attach"):
            self._attach(extension)

    def _attach(self, extension: ModuleType) -> None:
        """Replace the functions by the extension's CPython entry points (which fall back on
        the checked ones); ImportError when that fails."""
        extension.checked = self.checked
        if self.lib.conv2d_python_attach(extension.__name__.encode()):
            raise ImportError(f"{extension.__name__}: could not attach the module's CPython "
                              "entry points (the Python error is printed above)")
        for name in PASSES:
            setattr(self, name, getattr(extension, name, self.checked[name]))

    # -- checks -------------------------------------------------------------------------

    def expected(self, name: str, batch: int | None = None) -> str:
        """``float32 (N, 4, 5, 13)``: the dtype and shape argument ``name`` must have."""
        dims = self.shapes[name]
        if name in self.batched:
            dims = ("N" if batch is None else batch, *dims)
        text = ", ".join(map(str, dims)) + ("," if len(dims) == 1 else "")
        return f"{self.dtype} ({text})"

    def check(self, name: str, array: Any, batch: int | None = None) -> np.ndarray:
        """``array`` as a C-contiguous array of the module's dtype and ``name``'s shape.

        Raises:
            TypeError: not a NumPy array, or of another dtype.
            ValueError: another shape (for batched arrays: another batch than ``batch``).
        """
        if not isinstance(array, np.ndarray):
            raise TypeError(f"{name}: expected a NumPy array of {self.expected(name, batch)}, "
                            f"got {type(array).__name__}")
        if array.dtype != self.dtype:
            raise TypeError(f"{name}: expected {self.expected(name, batch)}, "
                            f"got {array.dtype} {array.shape}")
        shape = array.shape
        if name in self.batched:
            ok = shape[1:] == self.shapes[name] and len(shape) == 4 and (
                batch is None or shape[0] == batch)
        else:
            ok = shape == self.shapes[name]
        if not ok:
            raise ValueError(f"{name}: expected {self.expected(name, batch)}, "
                             f"got {array.dtype} {shape}")
        if not (array.flags.c_contiguous and array.flags.aligned):
            array = np.array(array, order="C")
        return array

    def output(self, name: str, out: Any, batch: int) -> np.ndarray:
        """A new output array, or ``out`` once checked (C-contiguous and writeable)."""
        dims = (batch, *self.shapes[name]) if name in self.batched else self.shapes[name]
        if out is None:
            return np.empty(dims, self.dtype)
        label = f"out ({name})"
        if not isinstance(out, np.ndarray):
            raise TypeError(f"{label}: expected a NumPy array of {self.expected(name, batch)}, "
                            f"got {type(out).__name__}")
        if out.dtype != self.dtype or out.shape != dims:
            error = TypeError if out.dtype != self.dtype else ValueError
            raise error(f"{label}: expected {self.expected(name, batch)}, "
                        f"got {out.dtype} {out.shape}")
        if not (out.flags.c_contiguous and out.flags.aligned and out.flags.writeable):
            raise ValueError(f"{label}: must be C-contiguous, aligned and writeable; pass "
                             f"np.empty({dims}, {str(self.dtype)!r}) or leave out=None")
        return out

    def outputs(self, out: Any) -> tuple[Any, Any, Any]:
        """``backward``'s ``out``: None, or a tuple ``(dV, dK, db)`` of arrays or Nones.

        Raises:
            ValueError: another kind of value, another length, or a ``db`` array for a layer
                without bias.
        """
        if out is None:
            return None, None, None
        if not isinstance(out, (tuple, list)) or len(out) != 3:
            got = (f"{type(out).__name__} of length {len(out)}"
                   if isinstance(out, (tuple, list)) else type(out).__name__)
            raise ValueError(f"out: expected None or a tuple (dV, dK, db) of 3 arrays, each "
                             f"of which may be None, got {got}")
        if out[2] is not None and not self.spec.bias:
            raise ValueError(f"out (db): the layer has no bias (spec.bias is False): expected "
                             f"None, got {type(out[2]).__name__}")
        return out[0], out[1], out[2]

    @staticmethod
    def _status(status: int, kernel: str) -> None:
        if status:
            raise MemoryError(f"{kernel}: the kernel could not allocate its work space")

    # -- the module's functions ---------------------------------------------------------
    #
    # Each function first tries a fast test of the common case (an ndarray of the module's
    # dtype and shape, C-contiguous, aligned and writeable: ``flags.carray``) and runs the
    # full checks, with their messages and copies, only when it fails. Names are bound once,
    # when the function is made, not looked up per call.

    def _build_functions(self) -> None:
        """Make ``forward``, ``grad_input``, ``grad_weight``, ``grad_bias`` and ``backward``."""
        grad_input, grad_weight = self._grad_input_function(), self._grad_weight_function()
        grad_bias = self._grad_bias_function()
        self.forward, self.grad_input, self.grad_weight = (
            self._forward_function(), grad_input, grad_weight)
        self.grad_bias = grad_bias
        self.backward = self._backward_function(grad_input, grad_weight, grad_bias)
        self._document()

    def _forward_function(self) -> Any:
        check, output, status, has_bias = self.check, self.output, self._status, self.spec.bias
        ndarray, dtype, empty, address = np.ndarray, self.dtype, np.empty, _address
        target, deliver = _target, _deliver
        v_dims, k_dims, b_dims, z_dims = (self.shapes[n] for n in ("V", "K", "b", "Z"))
        kernel = getattr(self.lib, PASS["forward"].entry)
        expected = self.expected

        def forward(V: np.ndarray, K: np.ndarray, b: np.ndarray | None = None,
                    out: np.ndarray | None = None) -> np.ndarray:
            shape = V.shape if type(V) is ndarray else None
            if not (shape is not None and shape[1:] == v_dims and V.dtype is dtype
                    and V.flags.carray):
                V = check("V", V)
                shape = V.shape
            if not (type(K) is ndarray and K.shape == k_dims and K.dtype is dtype
                    and K.flags.carray):
                K = check("K", K)
            n = shape[0]
            Z = empty((n, *z_dims), dtype) if out is None else target(output("Z", out, n),
                                                                        V, K, b)
            if has_bias:
                if not (type(b) is ndarray and b.shape == b_dims and b.dtype is dtype
                        and b.flags.carray):
                    if b is None:
                        raise TypeError(f"b: the layer has a bias: expected "
                                        f"{expected('b')}, got None")
                    b = check("b", b)
                failed = kernel(n, address(V), address(K), address(b), address(Z))
            else:
                if b is not None:
                    raise ValueError("b: the layer has no bias (spec.bias is False): expected "
                                     f"None, got {type(b).__name__}")
                failed = kernel(n, address(V), address(K), address(Z))
            if failed:
                status(failed, "forward")
            return deliver(Z, out)

        return forward

    def _grad_input_function(self) -> Any:
        check, output, status = self.check, self.output, self._status
        ndarray, dtype, empty, address = np.ndarray, self.dtype, np.empty, _address
        target, deliver = _target, _deliver
        k_dims, g_dims, dv_dims = (self.shapes[n] for n in ("K", "G", "dV"))
        kernel = getattr(self.lib, PASS["grad_input"].entry)

        def grad_input(K: np.ndarray, G: np.ndarray, out: np.ndarray | None = None
                       ) -> np.ndarray:
            if not (type(K) is ndarray and K.shape == k_dims and K.dtype is dtype
                    and K.flags.carray):
                K = check("K", K)
            shape = G.shape if type(G) is ndarray else None
            if not (shape is not None and shape[1:] == g_dims and G.dtype is dtype
                    and G.flags.carray):
                G = check("G", G)
                shape = G.shape
            n = shape[0]
            dV = empty((n, *dv_dims), dtype) if out is None else target(output("dV", out, n),
                                                                          K, G)
            failed = kernel(n, address(K), address(G), address(dV))
            if failed:
                status(failed, "grad_input")
            return deliver(dV, out)

        return grad_input

    def _grad_weight_function(self) -> Any:
        check, output, status = self.check, self.output, self._status
        ndarray, dtype, empty, address = np.ndarray, self.dtype, np.empty, _address
        target, deliver = _target, _deliver
        v_dims, g_dims, dk_dims = (self.shapes[n] for n in ("V", "G", "dK"))
        kernel = getattr(self.lib, PASS["grad_weight"].entry)

        def grad_weight(V: np.ndarray, G: np.ndarray, out: np.ndarray | None = None
                        ) -> np.ndarray:
            shape = V.shape if type(V) is ndarray else None
            if not (shape is not None and shape[1:] == v_dims and V.dtype is dtype
                    and V.flags.carray):
                V = check("V", V)
                shape = V.shape
            n = shape[0]
            if not (type(G) is ndarray and G.shape == (n, *g_dims) and G.dtype is dtype
                    and G.flags.carray):
                G = check("G", G, n)
            dK = empty(dk_dims, dtype) if out is None else target(output("dK", out, n), V, G)
            failed = kernel(n, address(V), address(G), address(dK))
            if failed:
                status(failed, "grad_weight")
            return deliver(dK, out)

        return grad_weight

    def _grad_bias_function(self) -> Any:
        check, output, status, has_bias = self.check, self.output, self._status, self.spec.bias
        ndarray, dtype, empty, address = np.ndarray, self.dtype, np.empty, _address
        target, deliver = _target, _deliver
        g_dims, db_dims = self.shapes["G"], self.shapes["db"]
        kernel = getattr(self.lib, PASS["grad_bias"].entry) if has_bias else None

        def grad_bias(G: np.ndarray, out: np.ndarray | None = None) -> np.ndarray | None:
            shape = G.shape if type(G) is ndarray else None
            if not (shape is not None and shape[1:] == g_dims and G.dtype is dtype
                    and G.flags.carray):
                G = check("G", G)
                shape = G.shape
            if not has_bias:
                if out is not None:  # not left unwritten as if it held the gradient
                    raise ValueError("out (db): the layer has no bias (spec.bias is False): "
                                     f"expected None, got {type(out).__name__}")
                return None
            db = empty(db_dims, dtype) if out is None else target(output("db", out, shape[0]),
                                                                    G)
            failed = kernel(shape[0], address(G), address(db))
            if failed:
                status(failed, "grad_bias")
            return deliver(db, out)

        return grad_bias

    def _backward_function(self, grad_input: Any, grad_weight: Any, grad_bias: Any) -> Any:
        """``backward`` over the given pass functions (those of this module, not the
        attributes, which the CPython entry points may replace)."""
        check, output, outputs, has_bias = self.check, self.output, self.outputs, self.spec.bias
        target, deliver, overlapping = _target, _deliver, np.may_share_memory
        names = tuple(p.writes for p in GRADIENTS)

        def backward(V: np.ndarray, K: np.ndarray, G: np.ndarray,
                     out: tuple[np.ndarray | None, ...] | None = None
                     ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
            V = check("V", V)
            K = check("K", K)
            n = V.shape[0]
            G = check("G", G, n)
            outs = dict(zip(names, outputs(out)))
            for name, array in outs.items():
                if array is not None:
                    outs[name] = output(name, array, n)
            given = [(name, array) for name, array in outs.items() if array is not None]
            for i, (first, a) in enumerate(given):
                for second, b in given[i + 1:]:
                    if overlapping(a, b):
                        raise ValueError(f"out: {first} and {second} share memory; pass "
                                         f"separate arrays")
            # Every pass reads V, K or G: an output sharing memory with any of them is
            # written once all three passes are done.
            into = {name: target(array, V, K, G) for name, array in given}
            dV = grad_input(K, G, into.get("dV"))
            dK = grad_weight(V, G, into.get("dK"))
            db = grad_bias(G, into.get("db")) if has_bias else None
            return (deliver(dV, outs["dV"]), deliver(dK, outs["dK"]),
                    deliver(db, outs["db"]) if has_bias else None)

        return backward

    def _document(self) -> None:
        """The functions' docstrings: their arguments' dtypes and shapes."""
        has_bias = self.spec.bias
        shapes = {name: self.expected(name) for name in self.shapes}
        self.forward.__doc__ = (
            f"Z = forward(V, K{', b' if has_bias else ''}, out=None): the layer's output.\n\n"
            f"V {shapes['V']}, K {shapes['K']}"
            + (f", b {shapes['b']}" if has_bias else " (no bias: b must be None)")
            + f" -> Z {shapes['Z']}; out: an optional array for Z.")
        self.grad_input.__doc__ = (f"dV = grad_input(K, G, out=None): dJ/dV.\n\n"
                                   f"K {shapes['K']}, G {shapes['G']} -> dV {shapes['dV']}.")
        self.grad_weight.__doc__ = (
            f"dK = grad_weight(V, G, out=None): dJ/dK, summed over the batch.\n\n"
            f"V {shapes['V']}, G {shapes['G']} -> dK {shapes['dK']}.")
        self.grad_bias.__doc__ = (f"db = grad_bias(G, out=None): dJ/db, summed over the batch "
                                  f"(None: the layer has no bias).\n\nG {shapes['G']} -> db "
                                  f"{shapes['db']}.")
        self.backward.__doc__ = (
            f"(dV, dK, db) = backward(V, K, G, out=None): every gradient.\n\n"
            f"V {shapes['V']}, K {shapes['K']}, G {shapes['G']}; db is None "
            f"without a bias; out: an optional (dV, dK, db) tuple of arrays.")

    def threads(self) -> int:
        """The number of threads the kernels run on (OpenMP's maximum)."""
        return int(self.lib.conv2d_threads())
