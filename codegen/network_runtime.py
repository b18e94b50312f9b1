"""What a built network module needs at run time: the NumPy front end of its training step.

Imported by every generated network module's ``__init__.py``; it imports only NumPy and cffi
(through ``codegen.runtime``) and ``derive.network`` (pure Python), never SymPy or Jinja.

The four methods are those of ``derive.reference.network`` (DESIGN.md, "Networks"), with the
same checks and messages for ``T`` and ``params``; ``X`` must be an array of the module's
dtype (TypeError otherwise, naming both), since a silent conversion would hide that a
float64 batch runs in float32. Arrays that are not C-contiguous are copied. ``step`` updates
the parameter arrays in place: arrays of the module's dtype, C-contiguous and writeable are
handed to the kernel directly; any other float array is copied in and written back.

Each call runs forward, loss, backward and (``step``) the update in one C call, on a
workspace allocated once per batch size and thread count and kept for the next call; a lock
keeps two Python threads from sharing it.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from derive.network import Network
from derive.network_reference import NetworkReference

from .runtime import _address

#: network_run's modes (``templates/openmp/network.c.jinja``).
MODE_PREDICT, MODE_LOSS, MODE_GRADS, MODE_STEP = range(4)
#: Workspaces kept per module (batch sizes x thread counts): training uses two batch sizes
#: (full and last), evaluation a third.
KEPT_WORKSPACES = 4
ALIGNMENT = 64


class NetworkModule:
    """NumPy front end of one compiled network: checks, workspace, the call.

    Args:
        net: the network the module was generated for.
        dtype: ``float32`` or ``float64``.
        target: the backend name.
        lib: the cffi ``lib`` of the extension (``network_run`` etc.).
    """

    def __init__(self, net: Network, dtype: str, target: str, lib: Any) -> None:
        self.net, self.dtype, self.target, self.lib = net, dtype, target, lib
        self._dtype = np.dtype(dtype)
        self._checks = NetworkReference(net)  # the reference's checks of T and params
        self._names = [name for name, _ in net.params()]
        self._shapes = dict(net.params())
        self._workspaces: dict[tuple[int, int], np.ndarray] = {}
        self._lock = threading.Lock()
        self._threads: int | None = None

    def __repr__(self) -> str:
        return f"<network module {self.net.text()!r} {self.dtype} {self.target}>"

    # -- the four methods of DESIGN.md --------------------------------------------------

    def predict(self, X: Any, params: Mapping[str, Any]) -> np.ndarray:
        """The last layer's output ``(N, *net.output_shape)`` (before the loss)."""
        X = self._input(X)
        out = np.empty((X.shape[0], *self.net.output_shape), self._dtype)
        self._run(MODE_PREDICT, X, None, self._values(params), predicted=out)
        return out

    def loss(self, X: Any, T: Any, params: Mapping[str, Any]) -> float:
        """The loss of the batch (averaged over its samples), as a Python float."""
        X = self._input(X)
        return self._run(MODE_LOSS, X, self._target(T, X), self._values(params))

    def grads(self, X: Any, T: Any, params: Mapping[str, Any]
              ) -> tuple[float, dict[str, np.ndarray]]:
        """``(loss, {name: dloss/dparam})`` in ``net.params()`` order, in the module's dtype."""
        X = self._input(X)
        T = self._target(T, X)
        grads = {name: np.empty(shape, self._dtype) for name, shape in self._shapes.items()}
        loss = self._run(MODE_GRADS, X, T, self._values(params), grads=grads)
        return loss, grads

    def step(self, X: Any, T: Any, params: Mapping[str, Any], lr: float) -> float:
        """One SGD step, ``p -= lr * dloss/dp`` in place for every parameter; returns the loss
        before the update."""
        if isinstance(lr, bool) or not isinstance(lr, (int, float, np.integer, np.floating)) \
                or not math.isfinite(float(lr)):
            raise ValueError(f"lr: expected a finite real number, got {lr!r}")
        X = self._input(X)
        T = self._target(T, X)
        self._values(params)  # names, shapes and dtypes checked before anything is written
        arrays = {name: self._updatable(name, params[name]) for name in self._names}
        loss = self._run(MODE_STEP, X, T, arrays, lr=float(lr))
        for name in self._names:
            if arrays[name] is not params[name]:
                params[name][...] = arrays[name]
        return loss

    def threads(self) -> int:
        """The number of threads the step runs on."""
        return self._threads or int(self.lib.network_threads())

    def set_threads(self, count: int | None) -> None:
        """Run on ``count`` threads (None: OpenMP's default). Results do not depend on it."""
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)
                                  or count < 1):
            raise ValueError(f"count: expected a positive integer or None, got {count!r}")
        self._threads = count

    # -- checks ---------------------------------------------------------------------------

    def _input(self, X: Any) -> np.ndarray:
        if not isinstance(X, np.ndarray):
            raise TypeError(f"X: expected a NumPy array of dtype {self.dtype}, got "
                            f"{type(X).__name__}")
        if X.dtype != self._dtype:
            raise TypeError(f"X: expected dtype {self.dtype} (this module's), got {X.dtype}; "
                            f"convert with X.astype(np.{self.dtype})")
        return np.ascontiguousarray(self._checks._check_input(X))

    def _target(self, T: Any, X: np.ndarray) -> np.ndarray:
        T = self._checks._check_target(T, X)
        wanted = np.int64 if self.net.loss == "softmax-ce" else self._dtype
        return np.ascontiguousarray(T, dtype=wanted)

    def _values(self, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
        values = self._checks._read_params(params, self._dtype)
        return {name: np.ascontiguousarray(array) for name, array in values.items()}

    def _updatable(self, name: str, array: Any) -> np.ndarray:
        if not (isinstance(array, np.ndarray) and array.dtype.kind == "f"):
            kind = f"an array of dtype {array.dtype}" if isinstance(array, np.ndarray) \
                else type(array).__name__
            raise TypeError(f"params[{name!r}]: step updates it in place, so it must be a float "
                            f"NumPy array, got {kind}")
        if not array.flags.writeable:
            raise ValueError(f"params[{name!r}]: step updates it in place, but it is read-only")
        if array.dtype == self._dtype and array.flags.c_contiguous and array.flags.aligned:
            return array
        return np.ascontiguousarray(array, dtype=self._dtype)

    # -- the call -------------------------------------------------------------------------

    def _workspace(self, batch: int, threads: int) -> np.ndarray:
        key = (batch, threads)
        space = self._workspaces.get(key)
        if space is None:
            size = int(self.lib.network_workspace_bytes(batch, threads))
            raw = np.empty(size + ALIGNMENT, np.uint8)
            start = -raw.ctypes.data % ALIGNMENT
            space = raw[start:start + size]
            if len(self._workspaces) >= KEPT_WORKSPACES:
                self._workspaces.pop(next(iter(self._workspaces)))
            self._workspaces[key] = space
        return space

    def _run(self, mode: int, X: np.ndarray, T: np.ndarray | None,
             values: dict[str, np.ndarray], *, predicted: np.ndarray | None = None,
             grads: dict[str, np.ndarray] | None = None, lr: float = 0.0) -> float:
        batch, threads = X.shape[0], self.threads()
        loss = np.zeros(1, np.float64)
        addresses = [_address(values[name]) for name in self._names]
        gradients = [_address(grads[name]) if grads else 0 for name in self._names]
        with self._lock:
            space = self._workspace(batch, threads)
            status = self.lib.network_run(
                batch, threads, mode, lr, _address(space) if space.size else 0, _address(X),
                _address(T) if T is not None and T.size else 0,
                _address(predicted) if predicted is not None else 0, _address(loss),
                *addresses, *gradients)
        if status == 2:
            raise ValueError("bce: the network's output must lie in [0, 1] (end it in sigmoid)")
        return float(loss[0])
