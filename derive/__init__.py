"""corrgen's symbolic half: the layer spec, its derivation, index forms and the NumPy reference.

>>> from derive import LayerSpec, derive_layer
>>> exprs = derive_layer(LayerSpec(input=(1, 3, 3), kernel=(1, 1, 2, 2)))
>>> exprs.grad_input[(0, 0, 0)]
G[0, 0, 0]*K[0, 0, 0, 0]

The spec and the errors are imported here; the symbolic parts (SymPy) on first use, so that
``derive.spec`` costs a built module, which needs only the spec, nothing more.
"""

from __future__ import annotations

import importlib
from typing import Any

from .errors import CorrgenError, DerivationError, SpecError
from .network import Network
from .spec import LayerSpec

__version__ = "0.1.0"

#: Public names imported on first use: name -> the submodule that defines it. No submodule
#: may share a name with a public name: importing it would set the package's attribute to
#: the submodule, shadowing the name.
_LAZY = {
    "LayerExprs": "gradients", "chain_rule": "gradients", "derive_layer": "gradients",
    "IndexForm": "proof", "Proof": "proof", "index_forms": "proof", "prove": "proof",
    "proxy": "proof",
}

__all__ = [
    "CorrgenError",
    "DerivationError",
    "IndexForm",
    "LayerExprs",
    "LayerSpec",
    "Network",
    "Proof",
    "SpecError",
    "__version__",
    "chain_rule",
    "derive_layer",
    "index_forms",
    "prove",
    "proxy",
]


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
