"""The compact forms as matrices, and their check against the proven index forms.

Seed 003's (B.18) and (B.26) write the gradients as correlations of whole matrices: ``dJ/dK``
the valid correlation of V with G, ``dJ/dV`` the full correlation of the stride-dilated,
zero-padded G with the 180-degree-rotated kernel. ``MatrixForms`` builds those matrices for
one layer (any stride, padding, dilation and mode) and checks every element of every form
against the index forms, or against the explicit derivation ``prove`` showed equal to them.
"""

from __future__ import annotations

from collections.abc import Callable

from sympy import Add, Expr, Matrix, S, expand

from ..errors import DerivationError
from ..forward import kernel_element
from ..geometry import is_flipped, kernel_tap, tap_index, window_span
from ..gradients import LayerExprs
from ..passes import PASS_NAMES
from ..proof import index_forms
from ..spec import LayerSpec
from ..symbols import G, V, b

#: The matrix forms are printed when every matrix has at most this many rows and columns.
MAX_COMPACT = 12


class MatrixForms:
    """The matrices of the compact forms (0-based, DESIGN's symbols), for one spec.

    Per axis (rows shown; columns alike), with ``s`` stride, ``d`` dilation, ``p`` top padding:

    - ``vbar(c)``: ``V[c]`` with ``p`` zero rows above, cut after the last row a window reads
      (``(HO-1)s + (KH-1)d + 1`` rows in all);
    - ``gup(o)``: ``G[o]`` with ``s-1`` zero rows between neighbours (stride-dilated);
    - ``dk(o, c)``: the valid correlation ``vbar(c) * gup(o)``, every ``d``-th row (and rotated
      by 180 degrees in convolution mode);
    - ``ghat(o)``: ``gup(o)`` moved down by ``q = (KH-1)d - p`` rows, zero elsewhere, ``H +
      (KH-1)d`` rows (the zero padding of a full correlation);
    - ``rot(o, c)``: the kernel the windows apply, rotated by 180 degrees, ``d-1`` zero rows
      between taps;
    - ``dv(c)``: ``sum over o`` of the valid correlations ``ghat(o) * rot(o, c)``.
    """

    def __init__(self, spec: LayerSpec):
        self.spec = spec
        self.C, self.H, self.W = spec.input
        self.O, _, self.KH, self.KW = spec.kernel
        _, self.HO, self.WO = spec.output_shape
        (self.sh, self.sw), (self.dh, self.dw) = spec.stride, spec.dilation
        self.top, _, self.left, _ = spec.pads
        # ghat(o) is gup(o) moved down by q: a window's span less one, less the top padding
        self.q_rows = window_span(self.KH, self.dh) - 1 - self.top
        self.q_cols = window_span(self.KW, self.dw) - 1 - self.left

    def vbar(self, c: int) -> Matrix:
        # one past the last padded row (column) a window reads
        rows = tap_index(self.HO - 1, self.KH - 1, self.sh, self.dh, 0) + 1
        cols = tap_index(self.WO - 1, self.KW - 1, self.sw, self.dw, 0) + 1

        def entry(t: int, s: int) -> Expr:
            u, v = t - self.top, s - self.left
            return V[c, u, v] if 0 <= u < self.H and 0 <= v < self.W else S.Zero

        return Matrix(rows, cols, entry)

    def gup(self, o: int) -> Matrix:
        def entry(t: int, s: int) -> Expr:
            if t % self.sh or s % self.sw:
                return S.Zero
            return G[o, t // self.sh, s // self.sw]

        return Matrix((self.HO - 1) * self.sh + 1, (self.WO - 1) * self.sw + 1, entry)

    def ghat(self, o: int) -> Matrix:
        up = self.gup(o)

        def entry(t: int, s: int) -> Expr:
            r, k = t - self.q_rows, s - self.q_cols
            return up[r, k] if 0 <= r < up.rows and 0 <= k < up.cols else S.Zero

        return Matrix(self.H + window_span(self.KH, self.dh) - 1,
                      self.W + window_span(self.KW, self.dw) - 1, entry)

    def applied(self, o: int, c: int) -> Matrix:
        """The kernel the windows apply, ``K~[o, c]`` (rotated by 180 degrees in convolution)."""
        return Matrix(self.KH, self.KW,
                      lambda i, j: kernel_element(self.spec, o, c, i, j))

    def rot(self, o: int, c: int) -> Matrix:
        """The applied kernel rotated by 180 degrees, then dilated."""
        applied = self.applied(o, c)
        return self.dilate(Matrix(self.KH, self.KW, lambda i, j: applied[
            kernel_tap(i, self.KH, True), kernel_tap(j, self.KW, True)]))

    @staticmethod
    def correlation(a: Matrix, k: Matrix) -> Callable[[int, int], Expr]:
        """Entry ``(t, s)`` of the valid correlation (no flip) of ``a`` with ``k``: ``sum
        k[r, q] * a[t + r, s + q]``, the terms in the kernel's row-major order, zero factors
        left out."""
        # A dilated kernel is mostly zeros, and so is a padded or stride-dilated matrix: the
        # nonzero taps are listed once and the entries read from plain lists, and callers ask
        # only for the entries they keep (a stride or a dilation keeps one in s, or in d).
        taps = [(r, q, k[r, q]) for r in range(k.rows) for q in range(k.cols) if k[r, q] != 0]
        rows = [[None if e == 0 else e for e in row] for row in a.tolist()]

        def entry(t: int, s: int) -> Expr:
            return Add(*[w * rows[t + r][s + q] for r, q, w in taps
                         if rows[t + r][s + q] is not None])

        return entry

    @classmethod
    def correlate(cls, a: Matrix, k: Matrix) -> Matrix:
        """The valid correlation (no flip): ``out[t, s] = sum k[r, q] * a[t + r, s + q]``."""
        return Matrix(a.rows - k.rows + 1, a.cols - k.cols + 1, cls.correlation(a, k))

    def dilate(self, m: Matrix) -> Matrix:
        """``m`` with ``d-1`` zero rows (columns) between its rows (columns)."""
        return Matrix((m.rows - 1) * self.dh + 1, (m.cols - 1) * self.dw + 1,
                      lambda r, s: S.Zero if r % self.dh or s % self.dw
                      else m[r // self.dh, s // self.dw])

    def z(self, o: int) -> Matrix:
        """``Z[o]``: ``b[o]`` plus the sum over ``c`` of ``vbar(c)`` correlated with the
        dilated kernel, every ``s``-th row and column."""
        channels = [self.correlation(self.vbar(c), self.dilate(self.applied(o, c)))
                    for c in range(self.C)]
        bias = b[o] if self.spec.bias else S.Zero
        return Matrix(self.HO, self.WO, lambda y, x: bias + Add(
            *[entry(y * self.sh, x * self.sw) for entry in channels]))

    def dk(self, o: int, c: int) -> Matrix:
        full = self.correlation(self.vbar(c), self.gup(o))
        picked = Matrix(self.KH, self.KW, lambda i, j: full(i * self.dh, j * self.dw))
        flip = is_flipped(self.spec.mode)
        return Matrix(self.KH, self.KW, lambda i, j: picked[
            kernel_tap(i, self.KH, flip), kernel_tap(j, self.KW, flip)])

    def dv(self, c: int) -> Matrix:
        total = Matrix.zeros(self.H, self.W)
        for o in range(self.O):
            total += self.correlate(self.ghat(o), self.rot(o, c))
        return total

    def printable(self) -> bool:
        """Whether the matrices are small enough to print (and to check on this spec)."""
        sizes = self.vbar(0).shape + self.ghat(0).shape
        return max(sizes) <= MAX_COMPACT and self.O * self.C <= 64

    def check(self, explicit: LayerExprs | None = None) -> dict[str, int]:
        """Every element of every matrix form against the index forms, or against
        ``explicit``, the derivation ``prove`` showed equal to them; counts per pass."""
        if explicit is not None:
            passes = explicit.passes()
            ev = {name: passes[name].__getitem__ for name in passes}
        else:
            ev = {name: form.evaluator() for name, form in index_forms(self.spec).items()}
        # in the order the document lists the compact forms: forward, kernel, input, bias
        counts = dict.fromkeys((PASS_NAMES[0], PASS_NAMES[2], PASS_NAMES[1], PASS_NAMES[3]), 0)

        def same(name: str, index: tuple[int, ...], got: Expr) -> None:
            want = ev[name](index)
            if got != want and expand(got - want) != 0:
                raise DerivationError(
                    f"{name}{list(index)} of {self.spec.describe()}: the matrix form gives "
                    f"{got} but the proven index form gives {want}")
            counts[name] += 1

        for o in range(self.O):
            m = self.z(o)
            for y in range(self.HO):
                for x in range(self.WO):
                    same("forward", (o, y, x), m[y, x])
        for o in range(self.O):
            for c in range(self.C):
                m = self.dk(o, c)
                for i in range(self.KH):
                    for j in range(self.KW):
                        same("grad_weight", (o, c, i, j), m[i, j])
        for c in range(self.C):
            m = self.dv(c)
            for u in range(self.H):
                for v in range(self.W):
                    same("grad_input", (c, u, v), m[u, v])
        if self.spec.bias:
            for o in range(self.O):
                same("grad_bias", (o,), Add(*[G[o, y, x] for y in range(self.HO)
                                              for x in range(self.WO)]))
        return counts
