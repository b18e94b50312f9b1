"""Seed 004's vector form of a layer: vec, Kronecker products and the im2col matrix.

Seed 004 (after Vedaldi and Lenc's MatConvNet) writes a correlation layer as products of
matrices::

    S       = W mat(P_phi P_pad vec(Z)) + b 1^T                          (3)
    vec(S)  = (I ⊗ W) vec(phi(pad(Z))) + (1 ⊗ I_O) b                      (4)
            = (phi(pad(Z))^T ⊗ I_O) vec(W) + (1 ⊗ I_O) b                  (5)

from ``vec(AB) = (I ⊗ A) vec(B) = (B^T ⊗ I) vec(A)`` (6, 7). Its ``Z`` is the layer's input,
DESIGN's ``V``. ``VecForms(spec)`` builds those matrices for one layer, in DESIGN's symbols
(0-based), and ``check`` proves every element of every form equal to the explicit derivation
(``derive_layer``). The layout is MATLAB's, as in the seed:

- ``vec`` stacks the columns of a matrix (column-major), ``mat`` undoes it;
- the input is a ``C x (H*W)`` matrix, one row per channel, one column per position, the
  positions in column-major order: ``Vmat[c, y + H*x] = V[c, y, x]``; the output ``S`` and
  the upstream gradient ``Gmat`` are ``O x (HO*WO)`` alike;
- ``P_pad`` (0/1) maps ``vec(Vmat)`` to ``vec`` of the zero-padded input, ``C x (Hp*Wp)``;
- ``P_phi`` (0/1) gathers the windows (im2col): column ``y + HO*x`` of ``phi(pad(Z))`` is
  the window of output ``(y, x)``, its row ``c + C*(i + KH*j)`` the tap ``(i, j)`` of
  channel ``c``; ``W[o, c + C*(i + KH*j)]`` is the kernel element that tap applies,
  ``K~[o, c, i, j]`` (``K`` rotated by 180 degrees in convolution mode).

The gradients, from the transposed Jacobians of (4) and (5), in the same form::

    dJ/dW      = Gmat phi^T,      vec(dJ/dW) = (phi ⊗ I_O) vec(Gmat)
    dJ/dvec(V) = P_pad^T P_phi^T vec(W^T Gmat) = P_pad^T P_phi^T (I ⊗ W^T) vec(Gmat)
    dJ/db      = Gmat 1 = (1^T ⊗ I_O) vec(Gmat)

Also here: the pooling matrix ``P_pool`` of seed 004's ``Z^{m+1} = mat(P_pool
vec(sigma(S)))`` (``pool_matrix``), and the fully connected layer's forms (8), (9)
(``dense_forms``), whose ``phi(pad(z)) = I z``: a layer whose kernel covers its whole,
unpadded input has ``P_phi P_pad = I`` (``VecForms.covers_input``).

The matrices are ``Dok`` objects, their non-zero entries by ``(row, column)``, and
``Dok.sympy()`` gives each as a SymPy ``SparseMatrix``; products, sums, Kronecker products,
transposes, ``vec`` and ``mat`` (``matmul``, ``add``, ``kron``, ...) work on the non-zero
entries only. SymPy's own operations on sparse symbolic matrices take time with the matrices'
sizes (minutes for a Kronecker product of a few hundred rows), these with the number of
non-zero entries; the tests check them against SymPy's dense operations.
"""

from __future__ import annotations

import functools
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from sympy import (
    Add,
    Expr,
    Matrix,
    MatrixBase,
    Rational,
    S,
    SparseMatrix,
    diff,
    expand,
    sympify,
)

from .errors import DerivationError, SpecError
from .forward import kernel_element
from .geometry import Geometry
from .gradients import LayerExprs
from .spec import LayerSpec
from .symbols import G, K, V, b

# -- matrix helpers ---------------------------------------------------------------------------


class Dok:
    """A matrix as its non-zero entries, ``(row, column) -> entry``: what the forms compute
    on (SymPy's own sparse matrices re-check and convert every entry they are built with).
    ``sympy()`` gives the SymPy matrix; ``dok(m)`` reads a SymPy matrix back."""

    __slots__ = ("rows", "cols", "entries")

    def __init__(self, rows: int, cols: int, entries: dict[tuple[int, int], Expr]):
        self.rows, self.cols = rows, cols
        # sums of products of symbols never cancel here: a zero is one that was never added
        self.entries = {k: e for k, e in entries.items() if e is not S.Zero}

    @property
    def shape(self) -> tuple[int, int]:
        return self.rows, self.cols

    def __getitem__(self, key: tuple[int, int]) -> Expr:
        return self.entries.get(key, S.Zero)

    def sympy(self) -> SparseMatrix:
        return SparseMatrix(self.rows, self.cols, self.entries)


def dok(m: MatrixBase | Dok) -> Dok:
    """``m`` as a ``Dok`` (a SymPy matrix converted, its entries sympified)."""
    if isinstance(m, Dok):
        return m
    return Dok(m.rows, m.cols, {k: sympify(e) for k, e in m.todok().items()})


def identity(n: int) -> Dok:
    """``I_n``."""
    return Dok(n, n, {(k, k): S.One for k in range(n)})


def ones(n: int) -> Dok:
    """``1_n``, a column of ones."""
    return Dok(n, 1, {(k, 0): S.One for k in range(n)})


def matmul(*factors: MatrixBase | Dok) -> Dok:
    """The product of the factors, left to right, summed over their non-zero entries only."""
    result = dok(factors[0])
    for factor in factors[1:]:
        right = dok(factor)
        if result.cols != right.rows:
            raise ValueError(f"matmul: a {result.rows}x{result.cols} matrix times a "
                             f"{right.rows}x{right.cols} one: inner sizes differ")
        by_row: dict[int, list[tuple[int, Expr]]] = defaultdict(list)
        for (k, j), e in right.entries.items():
            by_row[k].append((j, e))
        terms: dict[tuple[int, int], list[Expr]] = defaultdict(list)
        for (i, k), e in result.entries.items():
            for j, f in by_row.get(k, ()):
                terms[i, j].append(_times(e, f))
        result = Dok(result.rows, right.cols, {key: Add(*parts) for key, parts in terms.items()})
    return result


def _times(e: Expr, f: Expr) -> Expr:
    # Most factors are the ones of a 0/1 matrix: skip SymPy's Mul for them. The forms make
    # the same products (K*V, K*G, G*V) again and again: each is made once.
    if e is S.One:
        return f
    if f is S.One:
        return e
    return _product(*((e, f) if hash(e) <= hash(f) else (f, e)))


@functools.lru_cache(maxsize=1 << 16)
def _product(e: Expr, f: Expr) -> Expr:
    return e * f


def add(*terms: MatrixBase | Dok) -> Dok:
    """The sum of matrices of one shape, over their non-zero entries."""
    parts = [dok(m) for m in terms]
    sums: dict[tuple[int, int], list[Expr]] = defaultdict(list)
    for m in parts:
        if m.shape != parts[0].shape:
            raise ValueError(f"add: a {m.rows}x{m.cols} matrix and a "
                             f"{parts[0].rows}x{parts[0].cols} one")
        for key, e in m.entries.items():
            sums[key].append(e)
    return Dok(*parts[0].shape, {key: Add(*es) for key, es in sums.items()})


def kron(left: MatrixBase | Dok, right: MatrixBase | Dok) -> Dok:
    """The Kronecker product ``left ⊗ right``: block ``(i, j)`` is ``left[i, j] * right``."""
    a, c = dok(left), dok(right)
    return Dok(a.rows * c.rows, a.cols * c.cols,
               {(i * c.rows + k, j * c.cols + m): _times(e, f)
                for (i, j), e in a.entries.items() for (k, m), f in c.entries.items()})


def transpose(m: MatrixBase | Dok) -> Dok:
    d = dok(m)
    return Dok(d.cols, d.rows, {(j, i): e for (i, j), e in d.entries.items()})


def vec(m: MatrixBase | Dok) -> Dok:
    """The columns of ``m`` stacked (column-major): entry ``(i, j)`` goes to ``i + rows*j``."""
    d = dok(m)
    return Dok(d.rows * d.cols, 1, {(i + d.rows * j, 0): e for (i, j), e in d.entries.items()})


def mat(m: MatrixBase | Dok, rows: int, cols: int) -> Dok:
    """The ``rows x cols`` matrix whose ``vec`` is the column ``m``."""
    d = dok(m)
    if d.shape != (rows * cols, 1):
        raise ValueError(f"mat: a {d.rows}x{d.cols} matrix is not a column of {rows}*{cols}")
    return Dok(rows, cols, {(k % rows, k // rows): e for (k, _), e in d.entries.items()})


def _memo(method: Callable[[Any], Dok]) -> Callable[[Any], Dok]:
    """A matrix method computed once per instance (the forms share their factors)."""
    name = method.__name__

    @functools.wraps(method)
    def wrapper(self: Any) -> Dok:
        if name not in self._memo:
            self._memo[name] = method(self)
        return self._memo[name]

    return wrapper


def _differs(got: Expr, want: Expr) -> bool:
    return got != want and expand(got - want) != 0


# -- a correlation layer ----------------------------------------------------------------------


class VecForms:
    """Seed 004's matrices of one layer (see the module docstring), in DESIGN's symbols.

    Attributes:
        n_in, n_pad: rows of ``vec(Vmat)`` (``C*H*W``) and of its padded twin
            (``C*Hp*Wp``); ``n_taps``: rows of ``phi`` (``C*KH*KW``); ``n_win``: windows,
            columns of ``phi`` and ``S`` (``HO*WO``).
    """

    def __init__(self, spec: LayerSpec):
        self.spec = spec
        self.g = g = Geometry.of(spec)
        self.hp, self.wp = g.h + g.top + g.bottom, g.w + g.left + g.right
        self.n_in, self.n_pad = g.c * g.h * g.w, g.c * self.hp * self.wp
        self.n_taps, self.n_win = g.c * g.kh * g.kw, g.ho * g.wo
        self._memo: dict[str, Dok] = {}

    # column-major indices (0-based)
    def position(self, y: int, x: int) -> int:
        """Column of input position ``(y, x)`` in ``Vmat``."""
        return y + self.g.h * x

    def window(self, y: int, x: int) -> int:
        """Column of output position ``(y, x)`` in ``phi``, ``S`` and ``Gmat``."""
        return y + self.g.ho * x

    def tap(self, c: int, i: int, j: int) -> int:
        """Row of channel ``c``'s tap ``(i, j)`` in ``phi``, column in ``W``."""
        return c + self.g.c * (i + self.g.kh * j)

    def taps(self) -> Iterator[tuple[int, int, int]]:
        """Every ``(c, i, j)``, in the order of ``phi``'s rows."""
        for j in range(self.g.kw):
            for i in range(self.g.kh):
                for c in range(self.g.c):
                    yield c, i, j

    def outputs(self) -> Iterator[tuple[int, int, int]]:
        """Every output ``(o, y, x)``, in the order of ``vec(S)``."""
        for x in range(self.g.wo):
            for y in range(self.g.ho):
                for o in range(self.g.o):
                    yield o, y, x

    def inputs(self) -> Iterator[tuple[int, int, int]]:
        """Every input ``(c, y, x)``, in the order of ``vec(Vmat)``."""
        for x in range(self.g.w):
            for y in range(self.g.h):
                for c in range(self.g.c):
                    yield c, y, x

    # the matrices
    @_memo
    def input_matrix(self) -> Dok:
        """``Vmat``: ``C x (H*W)``, seed 004's ``Z``."""
        return Dok(self.g.c, self.g.h * self.g.w,
                   {(c, self.position(y, x)): V[c, y, x] for c, y, x in self.inputs()})

    @_memo
    def p_pad(self) -> Dok:
        """``P_pad``: ``(C*Hp*Wp) x (C*H*W)``, the zero frame added."""
        g = self.g
        return Dok(self.n_pad, self.n_in, {
            (c + g.c * (y + g.top + self.hp * (x + g.left)),
             c + g.c * self.position(y, x)): S.One for c, y, x in self.inputs()})

    @_memo
    def p_phi(self) -> Dok:
        """``P_phi``: ``(C*KH*KW*HO*WO) x (C*Hp*Wp)``, the windows gathered (im2col)."""
        g = self.g
        entries = {}
        for _, y, x in self.outputs():
            for c, i, j in self.taps():
                row, col = g.input_row(y, i) + g.top, g.input_col(x, j) + g.left
                entries[self.tap(c, i, j) + self.n_taps * self.window(y, x),
                        c + g.c * (row + self.hp * col)] = S.One
        return Dok(self.n_taps * self.n_win, self.n_pad, entries)

    @_memo
    def weight(self) -> Dok:
        """``W``: ``O x (C*KH*KW)``, ``W[o, tap(c, i, j)] = K~[o, c, i, j]``."""
        return Dok(self.g.o, self.n_taps,
                   {(o, self.tap(c, i, j)): kernel_element(self.spec, o, c, i, j)
                    for o in range(self.g.o) for c, i, j in self.taps()})

    @_memo
    def bias(self) -> Dok:
        """``b``: ``O x 1`` (zero without a bias)."""
        return Dok(self.g.o, 1, {(o, 0): b[o] for o in range(self.g.o) if self.spec.bias})

    @_memo
    def upstream(self) -> Dok:
        """``Gmat``: ``O x (HO*WO)``, ``dJ/dS``."""
        return Dok(self.g.o, self.n_win,
                   {(o, self.window(y, x)): G[o, y, x] for o, y, x in self.outputs()})

    @_memo
    def phi(self) -> Dok:
        """``phi(pad(Vmat)) = mat(P_phi P_pad vec(Vmat))``: ``(C*KH*KW) x (HO*WO)``."""
        column = matmul(self.p_phi(), self.p_pad(), vec(self.input_matrix()))
        return mat(column, self.n_taps, self.n_win)

    def covers_input(self) -> bool:
        """Whether ``P_phi P_pad`` is the identity: one window, the whole unpadded input
        read once in ``vec`` order, seed 004's ``phi(pad(z)) = I z`` of a dense layer."""
        if self.n_taps * self.n_win != self.n_in:
            return False
        return matmul(self.p_phi(), self.p_pad()).entries == identity(self.n_in).entries

    # the forms, each as the matrix it gives
    def forward_forms(self) -> dict[str, Dok]:
        """``S`` by (3), and ``mat`` of ``vec(S)`` by (4) and by (5): ``O x (HO*WO)``."""
        w, phi, bias, n, o = self.weight(), self.phi(), self.bias(), self.n_win, self.g.o
        bias_vec = matmul(kron(ones(n), identity(o)), bias)
        eq4 = add(matmul(kron(identity(n), w), vec(phi)), bias_vec)
        eq5 = add(matmul(kron(transpose(phi), identity(o)), vec(w)), bias_vec)
        return {"(3)": add(matmul(w, phi), matmul(bias, transpose(ones(n)))),
                "(4)": mat(eq4, o, n), "(5)": mat(eq5, o, n)}

    def grad_weight_forms(self) -> dict[str, Dok]:
        """``dJ/dW = Gmat phi^T`` and ``mat((phi ⊗ I_O) vec(Gmat))``: ``O x (C*KH*KW)``."""
        gm, phi, o = self.upstream(), self.phi(), self.g.o
        return {"G phi^T": matmul(gm, transpose(phi)),
                "(phi ⊗ I) vec(G)": mat(matmul(kron(phi, identity(o)), vec(gm)),
                                        o, self.n_taps)}

    def grad_input_forms(self) -> dict[str, Dok]:
        """``dJ/dvec(Vmat)`` two ways: ``C*H*W x 1``."""
        back = matmul(transpose(self.p_pad()), transpose(self.p_phi()))
        w, gm = self.weight(), self.upstream()
        return {"P^T vec(W^T G)": matmul(back, vec(matmul(transpose(w), gm))),
                "P^T (I ⊗ W^T) vec(G)": matmul(back, kron(identity(self.n_win), transpose(w)),
                                                vec(gm))}

    def grad_bias_forms(self) -> dict[str, Dok]:
        """``dJ/db = Gmat 1 = (1^T ⊗ I_O) vec(Gmat)``: ``O x 1``."""
        gm, n = self.upstream(), self.n_win
        return {"G 1": matmul(gm, ones(n)),
                "(1^T ⊗ I) vec(G)": matmul(kron(transpose(ones(n)), identity(self.g.o)),
                                           vec(gm))}

    def check(self, explicit: LayerExprs) -> dict[str, int]:
        """Every element of every form against ``explicit``, the layer's explicit derivation
        (``derive_layer(spec)``); the elements compared per pass (each in every form).

        Raises:
            DerivationError: an element differs (naming it, the form and both values).
        """
        if explicit.spec != self.spec:
            raise DerivationError(f"explicit: the derivation of {explicit.spec.describe()}, "
                                  f"not of {self.spec.describe()}")
        counts = dict.fromkeys(("forward", "grad_weight", "grad_input", "grad_bias"), 0)

        def same(name: str, index: tuple[int, ...], form: str, got: Expr) -> None:
            want = getattr(explicit, name)[index]
            if _differs(got, want):
                raise DerivationError(
                    f"{name}{list(index)} of {self.spec.describe()}: seed 004's form {form} "
                    f"gives {got} but the derivation gives {want}")

        for form, m in self.forward_forms().items():
            for o, y, x in self.outputs():
                same("forward", (o, y, x), form, m[o, self.window(y, x)])
        counts["forward"] = self.g.o * self.n_win
        g = self.g
        for form, m in self.grad_weight_forms().items():
            for o in range(g.o):
                for c, i, j in self.taps():
                    same("grad_weight", (o, c, g.kernel_row(i), g.kernel_col(j)), form,
                         m[o, self.tap(c, i, j)])
        counts["grad_weight"] = g.o * self.n_taps
        for form, column in self.grad_input_forms().items():
            for c, y, x in self.inputs():
                same("grad_input", (c, y, x), form, column[c + g.c * self.position(y, x), 0])
        counts["grad_input"] = self.n_in
        if self.spec.bias:
            for form, column in self.grad_bias_forms().items():
                for o in range(g.o):
                    same("grad_bias", (o,), form, column[o, 0])
            counts["grad_bias"] = g.o
        return counts


# -- pooling ----------------------------------------------------------------------------------

POOLS = ("max", "avg")


def _pair(name: str, value: Any) -> tuple[int, int]:
    items = (value, value) if isinstance(value, (int, np.integer)) else tuple(value)
    if (len(items) != 2 or any(isinstance(n, bool) or not isinstance(n, (int, np.integer))
                               or n < 1 for n in items)):
        raise SpecError(f"{name}={value!r}: expected a positive integer or a pair of them")
    return int(items[0]), int(items[1])


def pool_output_shape(shape: tuple[int, int, int], size: Any, stride: Any = None
                      ) -> tuple[int, int, int]:
    """``(d, a', b')`` of a pooling with windows ``size`` and step ``stride`` (default
    ``size``) of a ``(d, a, b)`` input: ``a' = floor((a - kh) / sh) + 1``, likewise ``b'``."""
    if len(shape) != 3 or any(not isinstance(n, (int, np.integer)) or n < 1 for n in shape):
        raise SpecError(f"shape={shape!r}: expected (channels, rows, columns), positive ints")
    (kh, kw), (sh, sw) = _pair("size", size), _pair("stride", size if stride is None else stride)
    d, a, bb = (int(n) for n in shape)
    if kh > a or kw > bb:
        raise SpecError(f"size={size!r}: the window {kh}x{kw} is larger than the input "
                        f"{a}x{bb}")
    return d, (a - kh) // sh + 1, (bb - kw) // sw + 1


def max_switches(values: np.ndarray, size: Any, stride: Any = None) -> np.ndarray:
    """Where each window of ``values`` (``(d, a, b)``) has its maximum: ``(d, a', b', 2)``
    input ``(row, column)``; on ties the first in row-major order within the window."""
    values = np.asarray(values)
    if values.ndim != 3:
        raise SpecError(f"values: expected an array (channels, rows, columns), got shape "
                        f"{values.shape}")
    d, ao, bo = pool_output_shape(values.shape, size, stride)
    (kh, kw), (sh, sw) = _pair("size", size), _pair("stride", size if stride is None else stride)
    out = np.zeros((d, ao, bo, 2), dtype=np.int64)
    for ch in range(d):
        for y in range(ao):
            for x in range(bo):
                block = values[ch, y * sh:y * sh + kh, x * sw:x * sw + kw]
                r, t = divmod(int(np.argmax(block)), kw)  # argmax: the first maximum
                out[ch, y, x] = (y * sh + r, x * sw + t)
    return out


def pool_matrix(shape: tuple[int, int, int], kind: str, size: Any, stride: Any = None,
                switches: np.ndarray | None = None) -> SparseMatrix:
    """Seed 004's ``P_pool``: ``vec(Z^{m+1}) = P_pool vec(sigma(S))``, both ``vec`` of
    ``channels x positions`` matrices with positions in column-major order.

    ``kind="avg"``: each output averages its window, entries ``1/(kh*kw)``; ``kind="max"``:
    a 0/1 selection of the ``switches`` (``(d, a', b', 2)`` input ``(row, column)``, each
    inside its window; ``max_switches`` finds them from the values).
    """
    if kind not in POOLS:
        raise SpecError(f"kind={kind!r}: expected one of {', '.join(POOLS)}")
    d, ao, bo = pool_output_shape(shape, size, stride)
    (kh, kw), (sh, sw) = _pair("size", size), _pair("stride", size if stride is None else stride)
    a = shape[1]
    entries: dict[tuple[int, int], Any] = {}
    if kind == "avg":
        for ch in range(d):
            for y in range(ao):
                for x in range(bo):
                    for r in range(y * sh, y * sh + kh):
                        for t in range(x * sw, x * sw + kw):
                            entries[ch + d * (y + ao * x), ch + d * (r + a * t)] = Rational(
                                1, kh * kw)
        return Dok(d * ao * bo, d * a * shape[2], entries).sympy()
    if switches is None or np.shape(switches) != (d, ao, bo, 2):
        raise SpecError(f"switches: max pooling needs the (row, column) of each window's "
                        f"maximum, shape {(d, ao, bo, 2)}; got "
                        f"{None if switches is None else np.shape(switches)}")
    for ch in range(d):
        for y in range(ao):
            for x in range(bo):
                r, t = (int(n) for n in switches[ch, y, x])
                if not (y * sh <= r < y * sh + kh and x * sw <= t < x * sw + kw):
                    raise SpecError(f"switches[{ch}, {y}, {x}]=({r}, {t}): outside its window,"
                                    f" rows {y * sh}..{y * sh + kh - 1}, columns "
                                    f"{x * sw}..{x * sw + kw - 1}")
                entries[ch + d * (y + ao * x), ch + d * (r + a * t)] = S.One
    return Dok(d * ao * bo, d * a * shape[2], entries).sympy()


# -- the fully connected layer ----------------------------------------------------------------


@dataclass(frozen=True)
class DenseForms:
    """Seed 004's fully connected layer ``s = W z + b``, in SymPy, with ``W[o, r] = K[o, r]``,
    ``z[r] = V[r]``, ``b[o]`` and ``g[o] = G[o] = dJ/ds[o]``.

    Attributes:
        forward: ``s`` by (8) ``(I_1 ⊗ W) z + (1_1 ⊗ I) b`` and by (9)
            ``(z^T ⊗ I) vec(W) + (1_1 ⊗ I) b``, each ``n_out x 1``.
        grad_weight: ``mat((z ⊗ I) g)`` (``g z^T``), ``n_out x n_in``; ``grad_input``:
            ``(I_1 ⊗ W^T) g``; ``grad_bias``: ``(1_1^T ⊗ I) g``, None without a bias
            (``b`` is zero then).
    """

    W: Matrix
    z: Matrix
    b: Matrix
    g: Matrix
    forward: dict[str, Dok]
    grad_weight: Dok
    grad_input: Dok
    grad_bias: Dok | None

    def check(self) -> int:
        """Every form against SymPy's dense product ``W z + b``, and every gradient against
        ``sympy.diff`` of ``g^T s``; the elements compared.

        Raises:
            DerivationError: an element differs.
        """
        s = self.W * self.z + self.b
        loss = (self.g.T * s)[0, 0]
        wants = [(f"forward {name}", form, s) for name, form in self.forward.items()] + [
            ("grad_weight", self.grad_weight, self.W.applyfunc(lambda e: diff(loss, e))),
            ("grad_input", self.grad_input, self.z.applyfunc(lambda e: diff(loss, e)))]
        if self.grad_bias is not None:
            wants.append(("grad_bias", self.grad_bias, self.b.applyfunc(lambda e: diff(loss, e))))
        count = 0
        for name, got, want in wants:
            for r in range(want.rows):
                for t in range(want.cols):
                    if _differs(got[r, t], want[r, t]):
                        raise DerivationError(f"dense layer {name}[{r}, {t}]: seed 004's form "
                                              f"gives {got[r, t]} but SymPy gives {want[r, t]}")
                    count += 1
        return count


def dense_forms(n_out: int, n_in: int, bias: bool = True) -> DenseForms:
    """Seed 004's forms (8), (9) of a fully connected layer with ``n_in`` inputs and ``n_out``
    outputs, and its gradients in the same form (``phi(pad(z)) = I z``)."""
    for name, n in (("n_out", n_out), ("n_in", n_in)):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise SpecError(f"{name}={n!r}: expected a positive integer")
    w = Matrix(n_out, n_in, lambda o, r: K[o, r])
    z = Matrix(n_in, 1, lambda r, _: V[r])
    bb = Matrix(n_out, 1, lambda o, _: b[o] if bias else S.Zero)
    g = Matrix(n_out, 1, lambda o, _: G[o])
    one, eye = ones(1), identity(n_out)
    bias_vec = matmul(kron(one, eye), bb)
    phi = matmul(identity(n_in), z)  # phi(pad(z)) = I z
    return DenseForms(
        W=w, z=z, b=bb, g=g,
        forward={"(8)": add(matmul(kron(identity(1), w), phi), bias_vec),
                 "(9)": add(matmul(kron(transpose(phi), eye), vec(w)), bias_vec)},
        grad_weight=mat(matmul(kron(phi, eye), g), n_out, n_in),
        grad_input=matmul(kron(identity(1), transpose(w)), g),
        grad_bias=matmul(kron(transpose(one), eye), g) if bias else None)
