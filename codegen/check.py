"""Every pass of a built module against the NumPy reference (``derive.reference``).

The reference runs in float64 on the same inputs. The error of an element is measured
against the size of the terms it sums, ``|kernel - reference| / sum|terms|`` (the sum of
absolute terms is the reference pass applied to absolute values), so that cancellation in a
sum does not pass for inaccuracy; the largest such error must stay within the dtype's
``tolerance`` (``codegen.vocabulary.DTYPES``: 1e-12 for float64, 1e-5 for float32).
"""

from __future__ import annotations

from dataclasses import dataclass
from types import ModuleType

import numpy as np

from derive import reference
from derive.spec import LayerSpec

from .vocabulary import DTYPES, PASS_TABLE


@dataclass(frozen=True)
class PassCheck:
    """One pass compared with the reference.

    Attributes:
        name: the pass (``forward``, ``grad_input``, ``grad_weight``, ``grad_bias``).
        max_error: the largest absolute difference.
        relative: the largest difference relative to the element's sum of absolute terms.
        tolerance: the largest relative error allowed.
    """

    name: str
    max_error: float
    relative: float
    tolerance: float

    @property
    def ok(self) -> bool:
        return bool(self.relative <= self.tolerance)

    def __str__(self) -> str:
        verdict = "ok" if self.ok else "MISMATCH"
        return (f"{self.name:<12} max error {self.max_error:.3e}  relative {self.relative:.3e}"
                f"  (tolerance {self.tolerance:.0e})  {verdict}")


def compare(name: str, got: np.ndarray, want: np.ndarray, magnitude: np.ndarray, dtype: str
            ) -> PassCheck:
    """One pass's result against the reference's; ``magnitude`` is the sum of |terms|."""
    if got.shape != want.shape:
        raise AssertionError(f"{name}: shape {got.shape}, the reference has {want.shape}")
    diff = np.abs(got.astype(np.float64) - want)
    relative = diff / np.maximum(magnitude, np.finfo(np.float64).tiny)
    return PassCheck(name, float(diff.max(initial=0.0)), float(relative.max(initial=0.0)),
                     DTYPES[dtype].tolerance)


def check_module(module: ModuleType, batch: int = 2, seed: int = 0) -> list[PassCheck]:
    """Run every pass of ``module`` on random data and compare it with the reference."""
    spec: LayerSpec = module.spec
    dtype: str = module.dtype
    V, K, b, G = reference.random_inputs(spec, batch, dtype, seed)
    arrays = {"V": V, "K": K, "b": b, "G": G}
    wide = {name: None if a is None else a.astype(np.float64) for name, a in arrays.items()}
    absolute = {name: None if a is None else np.abs(a) for name, a in wide.items()}
    results = []
    for p in PASS_TABLE:
        if not p.runs(spec.bias):
            continue
        run, oracle = getattr(module, p.name), getattr(reference, p.name)
        results.append(compare(p.name, run(*(arrays[r] for r in p.reads)),
                               oracle(spec, *(wide[r] for r in p.reads)),
                               oracle(spec, *(absolute[r] for r in p.reads)), dtype))
    return results
