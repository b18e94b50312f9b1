"""The SymPy symbols of every derivation (names fixed by DESIGN.md).

``V[c, y, x]`` input, ``K[o, c, i, j]`` kernel, ``b[o]`` bias, ``Z[o, y, x]`` output and
``G[o, y, x] = dJ/dZ[o, y, x]`` the upstream gradient; the batch index is dropped.
"""

from sympy import IndexedBase

V = IndexedBase("V")
K = IndexedBase("K")
b = IndexedBase("b")
Z = IndexedBase("Z")
G = IndexedBase("G")

#: name -> IndexedBase, for ``sympy.sympify(text, locals=NAMESPACE)``.
NAMESPACE = {"V": V, "K": K, "b": b, "Z": Z, "G": G}
