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

import threading
from collections.abc import Mapping
from typing import Any

import numpy as np

from derive.network import Network
from derive.network_reference import NetworkReference, check_step

from .runtime import _address

#: network_run's modes (``templates/openmp/network.c.jinja``).
MODE_PREDICT, MODE_LOSS, MODE_GRADS, MODE_STEP = range(4)
#: The method each mode serves, for messages.
MODES = ("predict", "loss", "grads", "step")
#: Workspaces kept per module (batch sizes x thread counts): training uses two batch sizes
#: (full and last), evaluation a third.
KEPT_WORKSPACES = 4
ALIGNMENT = 64
#: A step of fewer floating-point operations runs on the calling thread alone, unless
#: ``set_threads`` says otherwise: each of its passes ends in a barrier, which costs a
#: microsecond or more, and on a shared machine far more when the other core is busy.
#: Measured with the digits network (20 kFLOP per sample) on 2 threads: 1 thread was as fast
#: up to 16 samples (320 kFLOP), 2 threads faster from 32 (640 kFLOP).
SERIAL_STEP_FLOPS = 1 << 19


class NetworkModule:
    """NumPy front end of one compiled network: checks, workspace, the call.

    Args:
        net: the network the module was generated for.
        dtype: ``float32`` or ``float64``.
        target: the backend name.
        lib: the cffi ``lib`` of the extension (``network_run`` etc.).
        flops_per_sample: the step's floating-point operations per sample; batches under
            ``SERIAL_STEP_FLOPS`` run on one thread. 0: always on ``threads()``.
    """

    def __init__(self, net: Network, dtype: str, target: str, lib: Any,
                 flops_per_sample: int = 0) -> None:
        self._flops_per_sample = flops_per_sample
        self.net, self.dtype, self.target, self.lib = net, dtype, target, lib
        self._dtype = np.dtype(dtype)
        self._checks = NetworkReference(net)  # the reference's checks of T and params
        self._params = net.params()
        self._names = [name for name, _ in self._params]
        self._input_shape = tuple(net.input)
        softmax = net.loss == "softmax-ce"
        self._target_dtype = np.dtype(np.int64) if softmax else self._dtype
        self._target_shape = () if softmax else tuple(net.output_shape)
        self._loss = np.zeros(1, np.float64)
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
        grads = [np.empty(shape, self._dtype) for _, shape in self._params]
        loss = self._run(MODE_GRADS, X, T, self._values(params), grads=grads)
        return loss, dict(zip(self._names, grads))

    def step(self, X: Any, T: Any, params: Mapping[str, Any], lr: float) -> float:
        """One SGD step, ``p -= lr * dloss/dp`` in place for every parameter; returns the loss
        before the update."""
        check_step(self.net, params, lr)
        X = self._input(X)
        T = self._target(T, X)
        arrays = self._direct(params)
        if arrays is None:  # some array needs a check, a conversion or a copy
            self._checks._read_params(params, self._dtype)  # names, shapes, dtypes: or raise
            arrays = [self._updatable(name, params[name]) for name in self._names]
        loss = self._run(MODE_STEP, X, T, arrays, lr=float(lr))
        for name, array in zip(self._names, arrays, strict=True):
            if array is not params[name]:
                params[name][...] = array
        return loss

    def threads(self) -> int:
        """The number of threads a step runs on (one for a step under ``SERIAL_STEP_FLOPS``,
        unless ``set_threads`` chose a count)."""
        return self._threads or int(self.lib.network_threads())

    def _threads_for(self, batch: int) -> int:
        if self._threads is None and batch * self._flops_per_sample < SERIAL_STEP_FLOPS:
            return 1
        return self.threads()

    def set_threads(self, count: int | None) -> None:
        """Run on ``count`` threads (None: OpenMP's default). Results do not depend on it."""
        if count is not None and (isinstance(count, bool) or not isinstance(count, int)
                                  or count < 1):
            raise ValueError(f"count: expected a positive integer or None, got {count!r}")
        self._threads = count

    # -- checks: a fast path for what a training loop passes, the reference's otherwise ---

    def _input(self, X: Any) -> np.ndarray:
        if type(X) is np.ndarray and X.dtype == self._dtype and X.shape[1:] == self._input_shape \
                and X.ndim == len(self._input_shape) + 1 and X.shape[0] >= 1 \
                and X.flags.c_contiguous:
            return X
        if not isinstance(X, np.ndarray):
            raise TypeError(f"X: expected a NumPy array of dtype {self.dtype}, got "
                            f"{type(X).__name__}")
        if X.dtype != self._dtype:
            raise TypeError(f"X: expected dtype {self.dtype} (this module's), got {X.dtype}; "
                            f"convert with X.astype(np.{self.dtype})")
        return np.ascontiguousarray(self._checks._check_input(X))

    def _target(self, T: Any, X: np.ndarray) -> np.ndarray:
        # Class indices are checked against 0..K-1 by the kernel (status 3).
        if type(T) is np.ndarray and T.dtype == self._target_dtype and T.flags.c_contiguous \
                and T.shape == (X.shape[0], *self._target_shape):
            return T
        T = self._checks._check_target(T, X)
        return np.ascontiguousarray(T, dtype=self._target_dtype)

    def _direct(self, params: Mapping[str, Any]) -> list[np.ndarray] | None:
        """The parameter arrays themselves, when each can be handed to the kernel as it is
        (the module's dtype, the right shape, C-contiguous, writeable); else None."""
        if not isinstance(params, dict) or len(params) != len(self._params):
            return None
        arrays = []
        for name, shape in self._params:
            array = params.get(name)
            if type(array) is not np.ndarray or array.dtype != self._dtype \
                    or array.shape != shape or not array.flags.c_contiguous \
                    or not array.flags.writeable:
                return None
            arrays.append(array)
        return arrays

    def _values(self, params: Mapping[str, Any]) -> list[np.ndarray]:
        arrays = self._direct(params)
        if arrays is not None:
            return arrays
        values = self._checks._read_params(params, self._dtype)
        return [np.ascontiguousarray(values[name]) for name in self._names]

    def _updatable(self, name: str, array: np.ndarray) -> np.ndarray:
        """The array the kernel updates for ``array`` (a float array, ``check_step``): itself,
        or a contiguous copy in the module's dtype that ``step`` writes back."""
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

    def _run(self, mode: int, X: np.ndarray, T: np.ndarray | None, values: list[np.ndarray],
             *, predicted: np.ndarray | None = None, grads: list[np.ndarray] | None = None,
             lr: float = 0.0) -> float:
        batch = X.shape[0]
        threads = self._threads_for(batch)
        addresses = [_address(array) for array in values]
        gradients = [_address(array) for array in grads] if grads else [0] * len(values)
        with self._lock:
            space = self._workspace(batch, threads)
            status = self.lib.network_run(
                batch, threads, mode, lr, _address(space) if space.size else 0, _address(X),
                _address(T) if T is not None and T.size else 0,
                _address(predicted) if predicted is not None else 0, _address(self._loss),
                *addresses, *gradients)
            loss = float(self._loss[0])
        if status:
            self._refused(status, mode, X, T)
        return loss

    def _refused(self, status: int, mode: int, X: np.ndarray, T: np.ndarray | None) -> None:
        """Raise for network_run's non-zero ``status`` (2: bce's range, 3: a class index)."""
        if status == 2:
            raise ValueError("bce: the network's output must lie in [0, 1] (end it in sigmoid)")
        if status == 3:  # the reference's check names the range and the values found
            self._checks._check_target(T, X)
            raise ValueError(f"T: class indices must lie in 0..{self.net.output_shape[0] - 1}")
        raise RuntimeError(f"{MODES[mode]}: network_run returned the unknown status {status}")
