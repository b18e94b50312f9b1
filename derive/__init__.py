"""corrgen's symbolic half: the layer spec, its derivation, index forms and the NumPy reference.

>>> from derive import LayerSpec, derive_layer
>>> exprs = derive_layer(LayerSpec(input=(1, 3, 3), kernel=(1, 1, 2, 2)))
>>> exprs.grad_input[(0, 0, 0)]
G[0, 0, 0]*K[0, 0, 0, 0]
"""

from .errors import CorrgenError, DerivationError, SpecError
from .gradients import LayerExprs, chain_rule, derive_layer
from .index_forms import IndexForm, Proof, index_forms, prove, proxy
from .spec import LayerSpec

__version__ = "0.1.0"

__all__ = [
    "CorrgenError",
    "DerivationError",
    "IndexForm",
    "LayerExprs",
    "LayerSpec",
    "Proof",
    "SpecError",
    "__version__",
    "chain_rule",
    "derive_layer",
    "index_forms",
    "prove",
    "proxy",
]
