"""Every pass of a built module against the NumPy reference (``derive.reference``).

The error of a pass is normwise: ``max|kernel - reference| / max|reference|``; it must stay
within ``TOLERANCE[dtype]`` (1e-12 for float64, 1e-5 for float32).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np

from derive import reference
from derive.spec import LayerSpec

TOLERANCE = {"float32": 1e-5, "float64": 1e-12}


@dataclass(frozen=True)
class PassCheck:
    """One pass compared with the reference.

    Attributes:
        name: the pass (``forward``, ``grad_input``, ``grad_weight``, ``grad_bias``).
        max_error: the largest absolute difference.
        scale: the largest absolute value of the reference.
        tolerance: the largest relative error allowed.
    """

    name: str
    max_error: float
    scale: float
    tolerance: float

    @property
    def relative(self) -> float:
        """``max_error / scale`` (the absolute error when the reference is all zeros)."""
        return self.max_error / self.scale if self.scale > 0 else self.max_error

    @property
    def ok(self) -> bool:
        return bool(self.relative <= self.tolerance)

    def __str__(self) -> str:
        verdict = "ok" if self.ok else "MISMATCH"
        return (f"{self.name:<12} max error {self.max_error:.3e}  relative {self.relative:.3e}"
                f"  (tolerance {self.tolerance:.0e})  {verdict}")


def compare(name: str, got: np.ndarray, want: np.ndarray, dtype: str) -> PassCheck:
    """One pass's result against the reference's, as a PassCheck."""
    if got.shape != want.shape:
        raise AssertionError(f"{name}: shape {got.shape}, the reference has {want.shape}")
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    return PassCheck(name, float(diff.max(initial=0.0)),
                     float(np.abs(want).max(initial=0.0)), TOLERANCE[dtype])


def check_module(module: ModuleType, batch: int = 2, seed: int = 0) -> list[PassCheck]:
    """Run every pass of ``module`` on random data and compare it with the reference."""
    spec: LayerSpec = module.spec
    dtype: str = module.dtype
    V, K, b, G = reference.random_inputs(spec, batch, dtype, seed)
    results = [
        compare("forward", module.forward(V, K, b), reference.forward(spec, V, K, b), dtype),
        compare("grad_input", module.grad_input(K, G), reference.grad_input(spec, K, G), dtype),
        compare("grad_weight", module.grad_weight(V, G), reference.grad_weight(spec, V, G),
                dtype),
    ]
    if spec.bias:
        results.append(compare("grad_bias", module.grad_bias(G), reference.grad_bias(spec, G),
                               dtype))
    return results
