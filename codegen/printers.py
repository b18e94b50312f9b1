"""SymPy printers for the unrolled kernels: C99, with float32 literals where needed.

SymPy prints the mathematics; Jinja prints the files. ``IndexedBase`` objects carry their
shape, so SymPy's ``_print_Indexed`` flattens ``V_s[c, y, x]`` into one row-major subscript.

``loop_nest`` prints a proven index form (``derive.proof``) as C loops for the kernels that
are the forms themselves: the CUDA ``loops`` style and the OpenMP ``direct`` style.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sympy.codegen.ast import float32, float64, real
from sympy.printing.c import C99CodePrinter

from .vocabulary import DTYPES


class KernelPrinter(C99CodePrinter):
    """C99 printer for one dtype: ``float32`` gives ``1.0F`` literals and ``sqrtf``.

    ``strict`` stays on, so an expression SymPy cannot print raises
    ``PrintMethodNotImplementedError`` instead of leaving a comment in the kernel.
    """

    def __init__(self, dtype: str) -> None:
        if dtype not in DTYPES:
            raise ValueError(f"dtype={dtype!r}: expected one of {', '.join(DTYPES)}")
        alias = float32 if dtype == "float32" else float64
        super().__init__({"type_aliases": {real: alias}, "strict": True})


# -- the index forms as C loops -------------------------------------------------------------


@dataclass(frozen=True)
class Loop:
    """``for (int var = 0; var < extent; ++var)``, then, inside it, ``lets`` (``const int``
    definitions) and ``skip``: the condition under which the iteration's product is zero
    (an index outside its array or not a whole number: ``if (skip) continue;``), or ``""``."""

    var: str
    extent: str
    lets: tuple[tuple[str, str], ...] = ()
    skip: str = ""


@dataclass(frozen=True)
class LoopNest:
    """One index form (``derive.proof.IndexForm``) printed as C: every element of the output
    (the ``free`` loops) is ``init`` plus the sum over the ``sums`` loops of ``term``.

    Attributes:
        formula: ``str`` of the form.
        free: the element's own indices, outermost first (no lets or skips).
        sums: the summation indices, outermost first, each with the lets and the skip test
            that depend on it (and on the loops outside it) and on no loop inside it.
        init: the constant term (``b[o]``) or ``0``.
        term: the product of the form's factors, e.g. ``K[...] * V_s[...]``.
        target: the element's place in the output, e.g. ``Z_s[(o*HO + y)*WO + x]``.
        decode: ``(var, expression)``: each free index from the element's row-major number
            ``e`` (innermost first).
        size, positions: the number of elements (``O * HO * WO``), of positions summed
            over (``HO * WO``), as products of C constants.
        offset: the element's offset in the output (the subscript of ``target``).
        lets, skip: every sum loop's lets and skip tests together (for a loop over the sums
            written as one flat loop).
    """

    formula: str
    free: tuple[Loop, ...]
    sums: tuple[Loop, ...]
    init: str
    term: str
    target: str
    decode: tuple[tuple[str, str], ...]
    lets: tuple[tuple[str, str], ...]
    skip: str
    size: str
    positions: str
    offset: str


def _flat(indices: list[str], dims: tuple[str, ...]) -> str:
    """Row-major offset of ``indices`` in an array of extents ``dims`` (C text, Horner)."""
    text = indices[0]
    for index, dim in zip(indices[1:], dims[1:]):
        text = f"{text if _atom(text) else f'({text})'}*{dim} + {index}"
    return text


def _atom(text: str) -> bool:
    return text.replace("_", "").isalnum()


def _bounds(expr: Any, ranges: dict[Any, int]) -> tuple[int, int]:
    """Least and greatest value of an integer affine ``expr`` over ``0 <= s < ranges[s]``."""
    coeffs = expr.as_coefficients_dict()
    lo = hi = 0
    for sym, coef in coeffs.items():
        if sym == 1:
            lo, hi = lo + int(coef), hi + int(coef)
        else:
            top = int(coef) * (ranges[sym] - 1)
            lo, hi = lo + min(0, top), hi + max(0, top)
    return lo, hi


class IndexPrinter(KernelPrinter):
    """``KernelPrinter`` for integer index arithmetic, with the terms of a sum in the order
    of the index forms' text (``str(IndexForm)``): positive terms first, the element's own
    index first, the constant after them: ``3*y + 2*i - 2``, ``u + 2 - 2*i``, ``2 - i``."""

    OWN = ("u", "v", "y", "x")

    def _print_Add(self, expr: Any, order: Any = None) -> str:
        def key(term: Any) -> tuple:
            coef, rest = term.as_coeff_Mul()
            return (bool(coef < 0), rest == 1, str(rest) not in self.OWN, str(rest))

        text = ""
        for term in sorted(expr.args, key=key):
            coef, rest = term.as_coeff_Mul()
            body = self._print(abs(coef) * rest)
            if not text:
                text = body if coef > 0 else f"-{body}"
            else:
                text += f" + {body}" if coef > 0 else f" - {body}"
        return text


def _decode(free_names: list[str], extents: dict[str, str]) -> tuple[tuple[str, str], ...]:
    """Each free index from the flat element number ``e`` (the last index varying fastest),
    as ``(name, C expression)``, last index first."""
    decode, size = [], []
    for name in reversed(free_names):
        below = f" / {' * '.join(size)}" if len(size) == 1 else (
            f" / ({' * '.join(size)})" if size else "")
        last = name == free_names[0]
        decode.append((name, f"e{below}" + ("" if last else f" % {extents[name]}")))
        size.append(extents[name])
    return tuple(decode)


def loop_nest(form: Any, printer: KernelPrinter, arrays: dict[str, str],
              dims: dict[str, tuple[str, ...]], extents: dict[str, str]) -> LoopNest:
    """Print ``form`` as C loops: ``arrays`` names the C array of each base (``{"V": "V_s",
    ...}``, the target's name included), ``dims`` its extents as C constants, ``extents`` the
    constant of each loop index (``{"o": "O", ...}``).

    The form's zero rule (a factor whose index is outside its array, or not a whole number,
    is zero) becomes a skip test on the innermost loop the index depends on, left out where
    the loop bounds already keep the index inside; an index with a test is computed once, as
    ``<base>_<axis>``, there.
    """
    from sympy import fraction, together

    order = [s for s, _ in form.free] + [s for s, _ in form.sums]
    ranges = dict(form.free) | dict(form.sums)
    n_free = len(form.free)
    lets: list[list[tuple[str, str]]] = [[] for _ in form.sums]
    skips: list[list[str]] = [[] for _ in form.sums]

    def access(factor: Any) -> str:
        name = str(factor.base)
        texts = []
        for axis, (index, extent) in enumerate(zip(factor.indices, factor.extents)):
            num, den = fraction(together(index))
            den = int(den)
            lo, hi = _bounds(num, ranges)
            tests = (["{0} < 0"] if lo < 0 else []) + (
                [f"{{0}} % {den} != 0"] if den > 1 else []) + (
                [f"{{0}} >= {extent * den}"] if hi >= extent * den else [])
            text = printer.doprint(num)
            if not tests:
                texts.append(text)
                continue
            level = max([order.index(s) - n_free for s in num.free_symbols] + [0])
            var = f"{name}_{axis}"
            lets[level].append((var, text))
            skips[level].append(" || ".join(t.format(var) for t in tests))
            texts.append(var if den == 1 else f"{var} / {den}")
        return f"{arrays[name]}[{_flat(texts, dims[name])}]"

    term = " * ".join(access(f) for f in form.factors)
    init = access(form.constant) if form.constant is not None else "0"
    free_names = [str(s) for s, _ in form.free]
    offset = _flat(free_names, dims[form.target])
    target = f"{arrays[form.target]}[{offset}]"
    sums = tuple(Loop(str(s), extents[str(s)], tuple(lets[k]), " || ".join(skips[k]))
                 for k, (s, _) in enumerate(form.sums))
    all_skips = [t for k in range(len(sums)) for t in skips[k]]
    return LoopNest(
        formula=str(form),
        free=tuple(Loop(name, extents[name]) for name in free_names),
        sums=sums, init=init, term=term, target=target,
        decode=_decode(free_names, extents),
        lets=tuple(let for k in lets for let in k),
        skip=" || ".join(all_skips),
        size=_product([extents[name] for name in free_names]),
        positions=_product([extents[str(s)] for s, _ in form.sums]),
        offset=offset,
    )


@dataclass(frozen=True)
class NestLayout:
    """A ``LoopNest`` laid out at fixed indentation: what ``_loops.jinja`` and the templates
    print as it is, with nothing left to compute.

    Attributes:
        free: ``(indentation, loop)`` of each free loop, outermost first.
        free_closes: the free loops' closing braces at their indentation, innermost first.
        pad: the indentation of the statements inside the free loops (``real acc = ...``).
        sums: ``(indentation, loop)`` of each sum loop, outermost first.
        body: ``acc += term;`` at its indentation inside the sum loops.
        sum_closes: the sum loops' closing braces at their indentation, innermost first.
    """

    free: tuple[tuple[str, Loop], ...]
    free_closes: tuple[str, ...]
    pad: str
    sums: tuple[tuple[str, Loop], ...]
    body: str
    sum_closes: tuple[str, ...]


def lay_out(nest: LoopNest, free_indent: int, sums_indent: int) -> NestLayout:
    """``nest`` with its free loops from ``free_indent`` spaces and its sum loops from
    ``sums_indent`` spaces, each loop four spaces inside the one around it."""
    def opened(loops: tuple[Loop, ...], indent: int) -> tuple[tuple[str, Loop], ...]:
        return tuple((" " * (indent + 4 * k), loop) for k, loop in enumerate(loops))

    def closes(count: int, indent: int) -> tuple[str, ...]:
        return tuple(" " * (indent + 4 * k) + "}" for k in reversed(range(count)))

    inner = " " * (sums_indent + 4 * len(nest.sums))
    return NestLayout(
        free=opened(nest.free, free_indent),
        free_closes=closes(len(nest.free), free_indent),
        pad=" " * (free_indent + 4 * len(nest.free)),
        sums=opened(nest.sums, sums_indent),
        body=f"{inner}acc += {nest.term};",
        sum_closes=closes(len(nest.sums), sums_indent),
    )


def _product(factors: list[str]) -> str:
    return factors[0] if len(factors) == 1 else f"({' * '.join(factors)})"
