"""SymPy printers for the unrolled kernels: C99, with float32 literals where needed.

SymPy prints the mathematics; Jinja prints the files. ``IndexedBase`` objects carry their
shape, so SymPy's ``_print_Indexed`` flattens ``V_s[c, y, x]`` into one row-major subscript.
"""

from __future__ import annotations

from sympy.codegen.ast import float32, float64, real
from sympy.printing.c import C99CodePrinter

from .vocabulary import DTYPES

#: The C type of each dtype (``codegen.vocabulary.DTYPES``).
CTYPES = {name: d.ctype for name, d in DTYPES.items()}


class KernelPrinter(C99CodePrinter):
    """C99 printer for one dtype: ``float32`` gives ``1.0F`` literals and ``sqrtf``.

    ``strict`` stays on, so an expression SymPy cannot print raises
    ``PrintMethodNotImplementedError`` instead of leaving a comment in the kernel.
    """

    def __init__(self, dtype: str) -> None:
        if dtype not in CTYPES:
            raise ValueError(f"dtype={dtype!r}: expected one of {', '.join(CTYPES)}")
        alias = float32 if dtype == "float32" else float64
        super().__init__({"type_aliases": {real: alias}, "strict": True})
