"""The derivation document of a whole network, in the seeds' style (002, 003 §2 and App. A).

``network_content(net)`` computes what the document says, as plain data
(``codegen.network_document`` renders it with ``templates/network.tex.jinja``): the network as
a table, the forward pass layer by layer, the loss and its δ, the δ recursion backwards with
every parameter's gradient, the batch average and the SGD step ``p ← p − α ∂J/∂p``, the check of
the recursion against the derivative of the composed loss (small networks), and, with
``values``, a worked example whose numbers are compared with ``derive.reference.network``
before anything is printed.

Every element printed is ``derive.network_derivation``'s SymPy expression; the printer only
renames the symbols (``X`` -> x, ``Y<l>`` -> y^{(l)}, ``dY<l>`` -> δ^{(l)}, ``W<l>``,
``B<l>`` -> W^{(l)}, b^{(l)}, ``T`` -> t), shifts indices to the document's base, and writes
three nodes as the seeds do: ReLU as max(0, a) with its derivative ReLU'(a) (0 at 0), and the
max-pool switch as an Iverson bracket of its conditions (ties go to the first index). Big
arrays show a selection of their elements (the first and last of each), with the count left
out. The general rule of each layer restates the seeds; each one (but the pools' δ rules,
written as the seeds write up(·)) and the loss's general forms are checked against every
element they stand for before they are printed.

The sentences are the template's; this module computes every equation, number and choice,
and, like the rest of ``derive``, reads no template and runs no program.
"""

from __future__ import annotations

import itertools
import math
import re
from dataclasses import dataclass
from typing import Any

from sympy import (
    Add,
    And,
    Expr,
    Gt,
    Indexed,
    IndexedBase,
    Integer,
    Max,
    Piecewise,
    Rational,
    S,
    Sum,
    Symbol,
    cancel,
    exp,
    expand,
    log,
    sqrt,
    symbols,
)
from sympy.core.relational import Relational

from ..errors import DerivationError, LatexError, SpecError
from ..network import Layer, Network
from ..network_derivation import (
    NetworkExprs,
    T,
    X,
    arrays,
    bias,
    check_composition,
    delta,
    derive_network,
    evaluate,
    layer_input,
    output,
    weight,
)
from . import figures
from .content import Figure
from .printer import (
    DerivationPrinter,
    Row,
    _index_order,
    product,
    sum_rows,
    typewriter,
    width,
)
from .selection import N_LIMIT, parse_elements

#: ``auto`` prints every element when the document has at most this many; else the corners.
AUTO_ALL_LIMIT = 60
#: ``all`` refuses networks with more elements than this: the document would not be readable.
ALL_LIMIT = 600
#: The composition check runs when the network has at most ``COMPOSITION_PARAMS`` parameter
#: elements and its work, the nodes of the composed loss (``composed_size``) times the
#: parameter elements, is at most ``COMPOSITION_WORK``: it composes the network once per
#: parameter element and point. Measured on a shared 2-core machine (size x elements: s):
#: 33 x 7: 0.6, 891 x 9: 10, 453 x 9: 18 (nested exp and tanh), 3465 x 15: 42,
#: 4666 x 19: 163; a 12-layer network of every kind (10257 x 9) took over 300 s.
COMPOSITION_PARAMS = 40
COMPOSITION_WORK = 10_000
#: The SGD step's learning rate when ``values`` gives none.
DEFAULT_LR = Rational(1, 10)
#: Significant digits of the worked example's numbers.
DIGITS = 6
#: The worked example agrees with the reference to this relative tolerance (float64).
EXAMPLE_RTOL = 1e-9

ACTIVATION_KINDS = ("relu", "sigmoid", "tanh")
POOL_KINDS = ("maxpool", "avgpool", "l2pool")


# -- printing ----------------------------------------------------------------------------


_NAMES = [(re.compile(r"dY(\d+)"), r"\delta^{{({})}}"), (re.compile(r"Y(\d+)"), "y^{{({})}}"),
          (re.compile(r"W(\d+)"), "W^{{({})}}"), (re.compile(r"B(\d+)"), "b^{{({})}}")]


def symbol_tex(name: str) -> str:
    """An array's name as the document writes it: ``Y3`` -> ``y^{(3)}``, ``dY3`` ->
    ``\\delta^{(3)}``, ``W4`` -> ``W^{(4)}``, ``B4`` -> ``b^{(4)}``, ``X`` -> ``x``, ``T`` ->
    ``t``."""
    if name in ("X", "T"):
        return name.lower()
    for pattern, form in _NAMES:
        match = pattern.fullmatch(name)
        if match:
            return form.format(match.group(1))
    return name


def _index_key(atom: Indexed) -> tuple[Any, ...]:
    return (str(atom.base), tuple(int(i) if i.is_Integer else 0 for i in atom.indices))


class NetworkPrinter(DerivationPrinter):
    """The layer documents' printer with the network's names, indices from ``base``, and the
    seeds' ReLU, ReLU' and max-pool switch."""

    def __init__(self, base: int) -> None:
        super().__init__({"order": "none", "mat_str": "bmatrix", "mat_delim": ""})
        self.base = base

    def _print_Indexed(self, expr: Indexed) -> str:
        # Integer indices are shifted to the document's base; a symbolic index is already
        # written in it (the general rules build their indices that way).
        text = [str(int(i) + self.base) if i.is_Integer else self._print(_index_order(i))
                for i in expr.indices]
        sep = "," if all(i.is_Atom for i in expr.indices) else r",\,"
        return f"{symbol_tex(str(expr.base))}_{{{sep.join(text)}}}"

    def _print_Sum(self, expr: Sum) -> str:
        # One sign per index in the order the rule lists them (channels, then rows, then
        # columns): the sums are finite, so their order does not matter.
        signs = [rf"\sum_{{{self._print(s)}={int(lo) + self.base}}}^{{{int(hi) + self.base}}}"
                 for s, lo, hi in expr.limits]
        body = self._print(expr.function)
        if isinstance(expr.function, Add):
            body = rf"\left({body}\right)"
        return " ".join(signs) + " " + body

    def _print_Pow(self, expr: Expr) -> str:
        # (y_{1,2})^2 rather than y_{1,2}^2, which reads as an index
        if isinstance(expr.base, Indexed) and expr.exp.is_Integer and expr.exp > 1:
            return rf"\left({self._print(expr.base)}\right)^{{{self._print(expr.exp)}}}"
        return super()._print_Pow(expr)

    def _print_Max(self, expr: Expr) -> str:
        args = sorted(expr.args, key=lambda a: _index_key(a) if isinstance(a, Indexed) else ("",))
        return r"\max\left(" + ", ".join(self._print(a) for a in args) + r"\right)"

    def _seed_form(self, expr: Piecewise) -> str | None:
        """ReLU as ``max(0, a)``, its derivative as ``ReLU'(a)``, the max-pool switch as an
        Iverson bracket of its conditions; None for any other Piecewise."""
        if len(expr.args) != 2 or expr.args[1] != (S.Zero, True):
            return None
        value, cond = expr.args[0]
        if isinstance(cond, Gt) and cond.rhs == 0 and value == cond.lhs:
            return rf"\max\left(0, {self._print(value)}\right)"
        if value == 1 and isinstance(cond, Gt) and cond.rhs == 0:
            return rf"\operatorname{{ReLU}}'\left({self._print(cond.lhs)}\right)"
        if value == 1 and _is_switch(cond):
            parts = sorted(cond.args if isinstance(cond, And) else (cond,),
                           key=lambda rel: _index_key(rel.rhs))
            return r"\left[" + r" \wedge ".join(self._print(q) for q in parts) + r"\right]"
        return None

    def _print_Piecewise(self, expr: Piecewise) -> str:
        seed = self._seed_form(expr)
        return seed if seed is not None else super()._print_Piecewise(expr)

    def _needs_mul_brackets(self, expr: Expr, first: bool = False, last: bool = False) -> bool:
        # ReLU' and the switch read as a function and a bracket: no parentheses around them
        if isinstance(expr, Piecewise) and self._seed_form(expr) is not None:
            return False
        return super()._needs_mul_brackets(expr, first, last)


def _is_switch(cond: Any) -> bool:
    """A max-pool switch's condition: relations between elements of one array."""
    parts = cond.args if isinstance(cond, And) else (cond,)
    return bool(parts) and all(isinstance(p, Relational) and isinstance(p.lhs, Indexed)
                               and isinstance(p.rhs, Indexed) for p in parts)


def _term_key(term: Expr) -> tuple[Any, ...]:
    """Terms of a sum in the order people write them: by the indices of their elements
    (numerically, not as text), the bias last as in the seeds."""
    atoms = sorted(term.atoms(Indexed), key=_index_key)
    is_bias = any(str(a.base).startswith("B") for a in atoms) and len(atoms) == 1
    return (is_bias, [_index_key(a)[1] for a in atoms])


def _width(text: str) -> float:
    """``printer.width`` for this document's names: a layer's superscript ``^{(3)}`` is
    printed small, about one character wide."""
    return width(re.sub(r"\^\{\(\d+\)\}", "'", text))


def _join(terms: list[str], first: bool) -> str:
    """Terms of a sum on one line: ``a + b - c`` (a negative term brings its own sign)."""
    text = terms[0]
    for term in terms[1:]:
        text += f" {term}" if term.startswith("-") else f" + {term}"
    if first:
        return "= " + text
    return r"\quad " + (text if text.startswith("-") else "+ " + text)


def element_rows(p: NetworkPrinter, left: str, expr: Expr, ordered: bool = False) -> list[Row]:
    """``left = expr`` as ``align*`` rows: a sum over as many lines as its width needs, its
    terms in index order (``ordered``: as given), the middle of a very long one elided with
    its count of terms."""
    terms = list(expr.args) if isinstance(expr, Add) else [expr]
    if not ordered:
        terms.sort(key=_term_key)
    return sum_rows(left, terms, p.doprint, measure=_width, join=_join)


# -- which elements are shown ------------------------------------------------------------


def _all_indices(shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    return list(itertools.product(*(range(n) for n in shape)))


def picks(shape: tuple[int, ...], how: str | int) -> list[tuple[int, ...]]:
    """The indices shown of an array of ``shape``: all; the corners (the first and the last
    element along every axis of the first and of the last channel, or channel pair for a conv
    weight, and the centre of the first one); or N evenly spread in row-major order."""
    if how == "all":
        return _all_indices(shape)
    if how != "corners":
        total = math.prod(shape)
        flat = sorted({round(k * (total - 1) / max(int(how) - 1, 1)) for k in range(int(how))})
        return [_unravel(f, shape) for f in flat if f < total]
    lead = {1: 1, 2: 0, 3: 1, 4: 2}[len(shape)]  # channel axes: none for a dense weight
    found: set[tuple[int, ...]] = set()
    for channel in ((0,) * lead, tuple(n - 1 for n in shape[:lead])):
        found.update(channel + corner for corner in itertools.product(
            *({0, n - 1} for n in shape[lead:])))
    found.add((0,) * lead + tuple(n // 2 for n in shape[lead:]))
    return sorted(found)


def _unravel(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    index = []
    for n in reversed(shape):
        flat, r = divmod(flat, n)
        index.append(r)
    return tuple(reversed(index))


# -- the document's content --------------------------------------------------------------


@dataclass(frozen=True)
class Elements:
    """Some elements of one array, printed: ``shown`` of ``total``, picked as ``pick`` says
    (``pick_name``)."""

    symbol: str
    shown: int
    total: int
    pick: str
    rows: list[Row]


@dataclass(frozen=True)
class Param:
    """A parameter in the table: its PyTorch name and shape."""

    name: str
    shape: str


@dataclass(frozen=True)
class TableRow:
    """One line of the network's table."""

    index: int
    text: str
    shape_in: str
    shape_out: str
    params: list[Param]


@dataclass(frozen=True)
class Gradient:
    """One parameter: its name, its general rule, its elements, the batch average and the
    SGD step."""

    name: str
    symbol: str
    shape: str
    rules: list[str]
    elements: Elements
    batch: str
    step: str


@dataclass(frozen=True)
class LayerPart:
    """One layer: the rules and elements of its forward pass and of its δ recursion."""

    index: int
    kind: str
    text: str
    out: str
    forward_rules: list[str]
    forward: Elements
    backward_rules: list[str]
    backward: Elements | None
    grads: list[Gradient]
    padded: bool
    flipped: bool
    seed_form: str
    layer_command: str
    window: str
    checked: int
    figure: Figure | None = None


@dataclass(frozen=True)
class LossPart:
    """The loss: per sample, over the batch, and its δ, general and by element."""

    kind: str
    per_sample: str
    batch: str
    delta_rule: str
    delta: Elements
    classes: int


@dataclass(frozen=True)
class ValueLines:
    """Numbers of one array, a few to a line (``shown``, ``total``, ``pick`` as in
    ``Elements``)."""

    symbol: str
    shown: int
    total: int
    pick: str
    lines: list[str]


@dataclass(frozen=True)
class Example:
    """The worked example: the numbers given, the passes at them and one SGD step."""

    lr: str
    given: list[ValueLines]
    forward: list[ValueLines]
    loss: str
    deltas: list[ValueLines]
    grads: list[ValueLines]
    steps: list[Elements]
    checked: dict[str, int]


@dataclass(frozen=True)
class Verified:
    """What was checked: the loss's general forms, the composition, the worked example."""

    loss_elements: int
    rule_elements: int
    composition: Any  # CompositionCheck, or None when skipped
    params: int
    size: int
    params_limit: int
    work_limit: int
    kinds: list[str]


@dataclass(frozen=True)
class NetworkDoc:
    """The template's variables."""

    version: str
    text: str
    command_tex: str
    base: int
    how: str
    table: list[TableRow]
    input_shape: str
    layers: list[LayerPart]
    backward: list[LayerPart]
    loss: LossPart
    params: list[Gradient]
    example: Example | None
    verified: Verified


def _shape(shape: tuple[int, ...]) -> str:
    return r" \times ".join(map(str, shape))


def pick_name(shape: tuple[int, ...], how: str | int) -> str:
    """How ``picks`` chose, for the template's sentence: ``ends`` (a flat array's first and
    last), ``matrix`` (a dense weight's corners and a central one), ``corners`` (of the first
    and the last channel), ``pairs`` (of the first and the last channel pair), ``spread``."""
    if how == "corners":
        return ("ends", "matrix", "corners", "pairs")[len(shape) - 1]
    return "all" if how == "all" else "spread"


def _elements(p: NetworkPrinter, base: IndexedBase, items: dict[tuple[int, ...], Expr],
              shape: tuple[int, ...], how: str | int, left: Any = None,
              ordered: bool = False) -> Elements:
    """The picked elements of ``items`` as rows ``base[z] = items[z]`` (``left(z)``: another
    left side; ``ordered``: the terms of a sum as given)."""
    rows: list[Row] = []
    shown = [z for z in picks(shape, how) if z in items]
    for z in shown:
        name = left(z) if left else p.doprint(base[z])
        rows += element_rows(p, name, items[z], ordered)
    return Elements(symbol_tex(str(base)), len(shown), math.prod(shape),
                    pick_name(shape, how), rows)


def _dj(p: NetworkPrinter, element: Expr) -> str:
    return rf"\frac{{\partial J}}{{\partial {p.doprint(element)}}}"


# -- the general rule of each layer (the seeds' formulas, in the document's base) ---------


o, c, r, s, i, j, u, v, k = symbols("o c r s i j u v k", integer=True)


class Rules:
    """The general rules of one layer, printed: ``forward``, ``backward`` (δ of its input),
    ``grads`` (parameter name -> rules), and, for pools, the ``window`` read. Each rule built
    from SymPy is kept (``checks``) and ``verify`` compares it with every element it stands
    for: the rule at that index, summed out, with the elements outside their arrays (the
    zero padding, a stride's non-integer positions) read as 0."""

    def __init__(self, p: NetworkPrinter, layer: Layer) -> None:
        self.p, self.layer, self.b = p, layer, p.base
        self.src, self.out = layer_input(layer.index), output(layer.index)
        self.din, self.dout = delta(layer.index - 1), delta(layer.index)
        self.forward: list[str] = []
        self.backward: list[str] = []
        self.grads: dict[str, list[str]] = {}
        self.checks: list[tuple[str, Indexed, Expr]] = []
        self.window = ""
        self.shapes = {self.src: layer.in_shape, self.din: layer.in_shape,
                       self.out: layer.out_shape, self.dout: layer.out_shape}
        for name, shape in layer.params():
            self.shapes[(weight if name.endswith("weight") else bias)(layer.index)] = shape
        {"conv": self._conv, "dense": self._dense, "flatten": self._flatten,
         **{kind: self._activation for kind in ACTIVATION_KINDS},
         **{kind: self._pool for kind in POOL_KINDS}}[layer.kind]()

    def rule(self, which: str, lhs: Indexed, rhs: Expr, right: str | None = None) -> None:
        """``lhs = rhs`` printed in ``which`` (``forward``, ``backward`` or a parameter's
        name: then the left side is ``dJ/dlhs``), ``right`` replacing the printed right
        side, and kept to be checked."""
        left = _dj(self.p, lhs) if "." in which else self.p.doprint(lhs)
        text = f"{left} = {right if right is not None else self.p.doprint(rhs)}"
        (self.grads.setdefault(which, []) if "." in which else getattr(self, which)).append(text)
        self.checks.append((which, lhs, rhs))

    def _read(self, expr: Expr) -> Expr:
        """``expr`` with its elements at 0-based indices, those outside their arrays 0."""
        mapping: dict[Expr, Expr] = {}
        for atom in expr.atoms(Indexed):
            shape = self.shapes.get(atom.base)
            if shape is None:
                continue
            index = [i - self.b for i in atom.indices]
            inside = all(n.is_Integer and 0 <= n < extent for n, extent in zip(index, shape))
            mapping[atom] = atom.base[tuple(index)] if inside else S.Zero
        return expr.xreplace(mapping)

    def _summed(self, expr: Expr) -> Expr:
        """The sums of a rule written out over the indices as the document writes them
        (``b .. n-1+b``, the limits the printer shows: a rule's index arithmetic is in the
        document's base); term by term with ``xreplace``, which is much faster than
        ``Sum.doit``'s substitutions."""
        def out(e: Sum) -> Expr:
            names = [name for name, _, _ in e.limits]
            ranges = [range(int(lo) + self.b, int(hi) + self.b + 1) for _, lo, hi in e.limits]
            return Add(*[e.function.xreplace(dict(zip(names, map(Integer, values))))
                         for values in itertools.product(*ranges)])
        return expr.replace(lambda e: isinstance(e, Sum), out)

    def _agrees(self, rhs: Expr, at: dict[Expr, Expr], element: Expr) -> bool:
        if isinstance(rhs, Max):  # the window's elements, as a set: building Max compares them
            return {self._read(a.xreplace(at)) for a in rhs.args} == set(element.args)
        return _same(self._read(self._summed(rhs.xreplace(at))), element)

    def verify(self, ld: Any) -> int:
        """Every rule against every element it stands for; returns the number compared.
        Raises DerivationError on a difference."""
        count = 0
        for which, lhs, rhs in self.checks:
            if which == "forward_inverse":  # flatten: y[k(c, r, s)] = x[c, r, s]
                elements = {index: ld.forward[self._read(rhs.xreplace(
                    {name: Integer(n + self.b) for name, n in zip(lhs.indices, index)})).indices]
                    for index in _all_indices(self.layer.in_shape)}
                rhs = lhs
            else:
                elements = ld.grads[which] if "." in which else getattr(ld, which)
            for z, element in elements.items():
                at = {name: Integer(n + self.b) for name, n in zip(lhs.indices, z)}
                if not self._agrees(rhs, at, element):
                    raise DerivationError(f"layer {self.layer.index} ({self.layer.text}): the "
                                          f"{which} rule {lhs} = {rhs} differs from the "
                                          f"element {list(z)}: {element}")
                count += 1
        return count

    def _conv(self) -> None:
        spec, b, l = self.layer.spec, self.b, self.layer.index  # noqa: E741
        n_out, n_in, kh, kw = spec.kernel
        (sh, sw), (dh, dw) = spec.stride, spec.dilation
        top, _, left, _ = spec.pads
        flip = spec.mode == "convolution"

        def tap(t: Symbol, n: int) -> Expr:  # the kernel element a tap applies
            return n - 1 + 2 * b - t if flip else t

        def at(pos: Symbol, t: Symbol, stride: int, dil: int, pad: int) -> Expr:
            return stride * (pos - b) + dil * (t - b) - pad + b

        def back(pos: Symbol, t: Symbol, stride: int, dil: int, pad: int) -> Expr:
            return (pos - b + pad - dil * (t - b)) / stride + b

        W, B = weight(l), bias(l)
        taps = ((i, 0, kh - 1), (j, 0, kw - 1))
        read = self.src[c, at(r, tap(i, kh), sh, dh, top), at(s, tap(j, kw), sw, dw, left)]
        bias_term = (B[o, r, s] if self.layer.untied else B[o]) if self.layer.has_bias else 0
        total = Sum(product(W[o, c, i, j], read), (c, 0, n_in - 1), *taps)
        self.rule("forward", self.out[o, r, s], Add(total, bias_term, evaluate=False))
        if l > 0:
            gathered = self.dout[o, back(u, tap(i, kh), sh, dh, top),
                                 back(v, tap(j, kw), sw, dw, left)]
            self.rule("backward", self.din[c, u, v],
                      Sum(product(W[o, c, i, j], gathered), (o, 0, n_out - 1), *taps))
        _, ho, wo = self.layer.out_shape
        positions = ((r, 0, ho - 1), (s, 0, wo - 1))
        self.rule(f"{l}.weight", W[o, c, i, j], Sum(product(self.dout[o, r, s], read),
                                                     *positions))
        if self.layer.untied:
            self.rule(f"{l}.bias", B[o, r, s], self.dout[o, r, s])
        elif self.layer.has_bias:
            self.rule(f"{l}.bias", B[o], Sum(self.dout[o, r, s], *positions))

    def _dense(self) -> None:
        l, (units, width, _, _) = self.layer.index, self.layer.spec.kernel  # noqa: E741
        W, B = weight(l), bias(l)
        total = Sum(product(W[k, i], self.src[i]), (i, 0, width - 1))
        self.rule("forward", self.out[k], Add(total, B[k], evaluate=False)
                  if self.layer.has_bias else total)
        if l > 0:
            self.rule("backward", self.din[i], Sum(product(W[k, i], self.dout[k]),
                                                   (k, 0, units - 1)))
        self.rule(f"{l}.weight", W[k, i], product(self.dout[k], self.src[i]))
        if self.layer.has_bias:
            self.rule(f"{l}.bias", B[k], self.dout[k])

    def _free(self, shape: tuple[int, ...]) -> tuple[Symbol, ...]:
        return (k,) if len(shape) == 1 else (c, r, s)

    def _activation(self) -> None:
        from ..network_derivation import activation_derivative

        h, h_prime = activation_derivative(self.layer.kind)
        z = self._free(self.layer.out_shape)
        self.rule("forward", self.out[z], h(self.src[z]))
        at = self.src if self.layer.kind == "relu" else self.out
        if self.layer.index > 0:
            self.rule("backward", self.din[z], h_prime(at[z]) * self.dout[z])

    def _pool(self) -> None:
        (kh, kw), (sh, sw), b = self.layer.size, self.layer.stride, self.b
        taps = ((i, 0, kh - 1), (j, 0, kw - 1))
        read = self.src[c, sh * (r - b) + i, sw * (s - b) + j]
        kind = self.layer.kind
        if kind == "maxpool":
            self.rule("forward", self.out[c, r, s], Max(*(
                read.xreplace({i: ti + b, j: tj + b}) for ti in range(kh) for tj in range(kw)),
                evaluate=False),
                rf"\max_{{{b} \le i \le {kh - 1 + b},\; {b} \le j \le {kw - 1 + b}}} "
                f"{self.p.doprint(read)}")
        elif kind == "avgpool":
            self.rule("forward", self.out[c, r, s], Sum(read, *taps) / (kh * kw),
                      rf"\frac{{1}}{{{kh * kw}}} {self.p.doprint(Sum(read, *taps))}")
        else:
            self.rule("forward", self.out[c, r, s], sqrt(Sum(read**2, *taps)))
        lo_r, lo_s = sh * (r - b) + b, sw * (s - b) + b
        first, last = (self.p.doprint(_index_order(e)) for e in (lo_r, lo_r + kh - 1))
        left, right_ = (self.p.doprint(_index_order(e)) for e in (lo_s, lo_s + kw - 1))
        self.window = (rf"\mathcal{{W}}_{{r,s}} = \{{(u, v) : {first} \le u \le {last},\; "
                       rf"{left} \le v \le {right_}\}}")
        if self.layer.index == 0:
            return
        factor = {"maxpool": rf"\left[{self.p.doprint(self.src[c, u, v])} \text{{ is the "
                             rf"first maximum of }} \mathcal{{W}}_{{r,s}}\right]",
                  "avgpool": rf"\frac{{1}}{{{kh * kw}}}",
                  "l2pool": self.p.doprint(self.src[c, u, v] / self.out[c, r, s])}[kind]
        # Written as the seeds write up(.); its elements are the derivation's own, by diff.
        self.backward.append(
            rf"{self.p.doprint(self.din[c, u, v])} = \sum_{{(r, s)\,:\,(u, v) \in "
            rf"\mathcal{{W}}_{{r,s}}}} {self.p.doprint(self.dout[c, r, s])} \, {factor}")

    def _flatten(self) -> None:
        ch, h, w = self.layer.in_shape
        b = self.b
        flat = Add(h * w * (c - b), w * (r - b), s - b, b)
        self.forward.append(rf"{self.eq(self.out[k], self.src[c, r, s])}, \quad "
                            rf"k = {self.p.doprint(_index_order(flat))}")
        if self.layer.index > 0:
            self.rule("backward", self.din[c, r, s], self.dout[flat])
        # the forward rule, from the other side: element k is the input element it names
        self.checks.append(("forward_inverse", self.src[c, r, s], self.out[flat]))

    def eq(self, left: Expr, right: Expr) -> str:
        return f"{self.p.doprint(left)} = {self.p.doprint(right)}"


# -- the loss -----------------------------------------------------------------------------


def _same(a: Expr, b: Expr) -> bool:
    return a == b or expand(a - b) == 0 or cancel(a - b) == 0


class LossForms:
    """The per-sample loss ``factor * Sum(summand)`` over a free index (``k``, or ``c, r, s``
    for an image output) and its δ at any index, in the output ``y`` of the last layer and
    the targets ``t``, written as the seeds write them (``y - t``, not SymPy's ``-t + y``)."""

    def __init__(self, net: Network) -> None:
        self.net, self.shape = net, net.output_shape
        self.last = output(net.layers[-1].index)
        self.free = (k,) if len(self.shape) == 1 else (c, r, s)
        self.factor = {"l2": Rational(1, 2)}.get(net.loss, S.NegativeOne)
        dummy = Symbol("j", integer=True)
        self.norm = Sum(exp(self.last[dummy]), (dummy, 0, self.shape[0] - 1))

    def summand(self, at: tuple[Expr, ...]) -> Expr:
        y, t = self.last[at], T[at]
        if self.net.loss == "l2":
            return Add(y, -t, evaluate=False) ** 2
        if self.net.loss == "bce":
            return Add(t * log(y), (1 - t) * log(1 - y), evaluate=False)
        return t * Add(y, -log(self.norm), evaluate=False)

    def loss(self) -> Expr:
        limits = [(name, 0, n - 1) for name, n in zip(self.free, self.shape)]
        return self.factor * Sum(self.summand(self.free), *limits)

    def delta(self, at: tuple[Expr, ...]) -> Expr:
        y, t = self.last[at], T[at]
        if self.net.loss == "l2":
            return Add(y, -t, evaluate=False)
        if self.net.loss == "bce":
            return Add((1 - t) / (1 - y), -t / y, evaluate=False)
        return Add(exp(y) / self.norm, -t, evaluate=False)

    def loss_tex(self, p: NetworkPrinter) -> str:
        factor = r"\frac{1}{2}" if self.factor == Rational(1, 2) else "-"
        limits = [(name, 0, n - 1) for name, n in zip(self.free, self.shape)]
        return f"J = {factor} {p.doprint(Sum(self.summand(self.free), *limits))}"


def _loss(p: NetworkPrinter, exprs: NetworkExprs, how: str | int) -> LossPart:
    """The loss section; its general forms are checked against the derivation's loss and
    against every element of its δ (the element printed is the general form at that index)."""
    net = exprs.net
    forms = LossForms(net)
    if not _same(forms.loss().doit(), exprs.loss):
        raise DerivationError(f"loss {net.loss}: the general form {forms.loss()} is not the "
                              f"derived loss {exprs.loss}")
    elements = {}
    for z, element in exprs.loss_delta.items():
        form = forms.delta(tuple(map(Integer, z)))
        if not _same(form.doit(), element):
            raise DerivationError(f"loss {net.loss}: dJ/dY{list(z)}: the general form {form} is "
                                  f"not the derived {element}")
        elements[z] = form
    last, free = delta(net.layers[-1].index), forms.free
    b = p.base
    n_hi = "N" if b == 1 else "N - 1"
    return LossPart(
        kind=net.loss, per_sample=forms.loss_tex(p),
        batch=rf"\mathcal{{J}} = \frac{{1}}{{N}} \sum_{{n={b}}}^{{{n_hi}}} J_n",
        delta_rule=(rf"{p.doprint(last[free])} = \frac{{\partial J}}{{\partial "
                    rf"{p.doprint(forms.last[free])}}} = {p.doprint(forms.delta(free))}"),
        delta=_elements(p, last, elements, net.output_shape, how, ordered=True),
        classes=net.output_shape[0])


# -- the layers ---------------------------------------------------------------------------


def _seed_form(net: Network, layer: Layer) -> str:
    """Seed 003's δ^l = h'(a^l) ∘ up(δ^{l+1}) (2.16) for an activation after a conv or dense
    layer, whose output is the seeds' pre-activation a; up(·) when a pool follows."""
    l = layer.index  # noqa: E741
    if layer.kind not in ACTIVATION_KINDS or l == 0 or net.layers[l - 1].spec is None:
        return ""
    after = net.layers[l + 1] if l + 1 < len(net.layers) else None
    if after is not None and after.kind in POOL_KINDS:
        return (rf"\delta^{{({l - 1})}} = h'\left(y^{{({l - 1})}}\right) \circ "
                rf"\operatorname{{up}}\left(\delta^{{({l + 1})}}\right)")
    return rf"\delta^{{({l - 1})}} = h'\left(y^{{({l - 1})}}\right) \circ \delta^{{({l})}}"


def _gradients(p: NetworkPrinter, exprs: NetworkExprs, ld: Any, rules: Rules,
               how: str | int) -> list[Gradient]:
    out = []
    b = p.base
    n_hi = "N" if b == 1 else "N - 1"
    for name, shape in ld.layer.params():
        base = exprs.param_symbol(name)
        sym = symbol_tex(str(base))
        elements = _elements(p, base, ld.grads[name], shape, how,
                             left=lambda z, base=base: _dj(p, base[z]))
        out.append(Gradient(
            name=name, symbol=sym, shape=_shape(shape), rules=rules.grads[name],
            elements=elements,
            batch=(rf"\frac{{\partial \mathcal{{J}}}}{{\partial {sym}}} = \frac{{1}}{{N}} "
                   rf"\sum_{{n={b}}}^{{{n_hi}}} \frac{{\partial J_n}}{{\partial {sym}}}"),
            step=rf"{sym} \leftarrow {sym} - \alpha \, \frac{{\partial \mathcal{{J}}}}"
                 rf"{{\partial {sym}}}"))
    return out


def _window_figure(p: NetworkPrinter, layer: Layer) -> Figure | None:
    """A conv layer's figure of one output's window (``derive.latex.figures``); else None."""
    if layer.kind != "conv" or layer.spec is None:
        return None
    spec, l = layer.spec, layer.index  # noqa: E741
    out = figures.window_output(spec)
    names = [f"{symbol_tex(str(a))}_{{{p.base}}}" for a in (layer_input(l), output(l))]
    return figures.plain_window_figure(spec, out, p.doprint(output(l)[out]), names,
                                       figures.Written(p.base))


def _layer_part(p: NetworkPrinter, exprs: NetworkExprs, ld: Any, how: str | int) -> LayerPart:
    layer = ld.layer
    l = layer.index  # noqa: E741
    rules = Rules(p, layer)
    backward = (_elements(p, delta(l - 1), ld.backward, layer.in_shape, how) if l > 0
                else None)
    command = ""
    if layer.spec is not None:
        command = typewriter("corrgen latex " + layer.spec.cli_options())
    return LayerPart(
        index=l, kind=layer.kind, text=layer.text, out=symbol_tex(str(output(l))),
        forward_rules=rules.forward,
        forward=_elements(p, output(l), ld.forward, layer.out_shape, how),
        backward_rules=rules.backward, backward=backward,
        grads=_gradients(p, exprs, ld, rules, how),
        padded=layer.kind == "conv" and any(layer.spec.pads),
        flipped=layer.kind == "conv" and layer.spec.mode == "convolution",
        seed_form=_seed_form(exprs.net, layer), layer_command=command, window=rules.window,
        checked=rules.verify(ld), figure=_window_figure(p, layer))


def _table(net: Network) -> list[TableRow]:
    return [TableRow(la.index, la.text, _shape(la.in_shape), _shape(la.out_shape),
                     [Param(name, f"({', '.join(map(str, shape))})")
                      for name, shape in la.params()])
            for la in net.layers]


def element_count(exprs: NetworkExprs) -> int:
    """Every element the document could print: outputs, δs and gradients."""
    return len(exprs.loss_delta) + sum(
        len(ld.forward) + len(ld.backward) + sum(len(g) for g in ld.grads.values())
        for ld in exprs.layers)


def composed_size(exprs: NetworkExprs) -> int:
    """Nodes of the loss written as one expression of the input and the parameters (shared
    subexpressions counted each time they occur): how hard the composition check is."""
    size: dict[Expr, int] = {}

    def tree(expr: Any) -> int:
        if isinstance(expr, Indexed):
            return size.get(expr, 1)
        return 1 + sum(tree(a) for a in expr.args) if expr.args else 1

    for ld in exprs.layers:
        out = output(ld.index)
        for z, e in ld.forward.items():
            size[out[z]] = tree(e)
    return tree(exprs.loss)


# -- the worked example -------------------------------------------------------------------


def number(value: Expr) -> str:
    """A number as the worked example prints it: integers whole, others to ``DIGITS``
    significant digits (``1.5 \\cdot 10^{-7}`` rather than ``1.5e-07``)."""
    if value.is_Integer:
        return str(int(value))
    if not value.is_finite:
        return NetworkPrinter(0).doprint(value)
    f = float(value)
    if f == 0:
        return "0"
    text = f"{f:.{DIGITS}g}"
    if "e" in text:
        mantissa, power = text.split("e")
        return rf"{mantissa} \cdot 10^{{{int(power)}}}"
    return text


def _signed(text: str) -> str:
    return f"({text})" if text.startswith("-") else text


def _read_values(net: Network, values: Any) -> tuple[dict[Expr, Expr], Expr]:
    """``values``' substitutions and the learning rate (``values["lr"]``, else
    ``DEFAULT_LR``); for softmax-ce the target may be a class index instead of one-hot."""
    from ..values import read, substitutions

    data = dict(read(values))
    lr = data.pop("lr", DEFAULT_LR)
    if isinstance(lr, bool) or not isinstance(lr, (int, float, Rational)) \
            or not math.isfinite(float(lr)):
        raise SpecError(f"--values: lr: expected a finite number (the SGD step's learning "
                        f"rate), got {lr!r}")
    lr = lr if isinstance(lr, Rational) else Integer(lr) if isinstance(lr, int) \
        else Rational(str(lr))
    target = data.get("T")
    if net.loss == "softmax-ce" and isinstance(target, int) and not isinstance(target, bool):
        classes = net.output_shape[0]
        if not 0 <= target < classes:
            raise SpecError(f"--values: T: a class index must lie in 0..{classes - 1}, got "
                            f"{target}")
        data["T"] = [int(n == target) for n in range(classes)]
    return substitutions(data, arrays(net)), lr


def _array(base: IndexedBase, shape: tuple[int, ...], source: dict[Expr, Expr]) -> Any:
    import numpy as np

    return np.array([float(source[base[z]]) for z in _all_indices(shape)],
                    dtype=np.float64).reshape(shape)


def _agree(what: str, got: Any, want: Any) -> None:
    import numpy as np

    got, want = np.asarray(got, float), np.asarray(want, float)
    scale = max(1.0, float(np.abs(want).max())) if want.size else 1.0
    if not np.all(np.isfinite(want)) or not np.allclose(got, want, rtol=EXAMPLE_RTOL,
                                                        atol=EXAMPLE_RTOL * scale):
        raise DerivationError(f"worked example: {what}: the derivation gives {want.ravel()}, "
                              f"derive.reference.network gives {got.ravel()}")


def _reference_target(net: Network, subs: dict[Expr, Expr]) -> Any:
    import numpy as np

    target = _array(T, net.output_shape, subs)
    if net.loss != "softmax-ce":
        return target[None]
    if sorted(target.tolist()) != [0.0] * (target.size - 1) + [1.0]:
        raise SpecError(f"--values: T: softmax-ce needs a one-hot target (or a class index), "
                        f"got {target.tolist()}")
    return np.array([int(target.argmax())])


def check_example(net: Network, exprs: NetworkExprs, ex: Any, subs: dict[Expr, Expr],
                  lr: Expr) -> dict[str, int]:
    """The worked example against ``derive.reference.network`` (float64, one sample): every
    layer's output (through the network cut after that layer), the loss, every gradient and
    every parameter after one SGD step. Raises DerivationError on a difference; returns the
    counts of elements compared."""
    from ..network_reference import NetworkReference

    X1 = _array(X, net.input, subs)[None]
    params = {name: _array(exprs.param_symbol(name), shape, subs) for name, shape in net.params()}
    counts = {"outputs": 0, "grads": 0, "steps": 0}
    for layer in net.layers:
        cut = Network(net.input, net.layer_texts[:layer.index + 1], "l2")
        got = NetworkReference(cut).predict(X1, {n: params[n] for n, _ in cut.params()})[0]
        _agree(f"y({layer.index})", got, _array(output(layer.index), layer.out_shape, ex.values))
        counts["outputs"] += got.size
    target = _reference_target(net, subs)
    reference = NetworkReference(net)
    loss, grads = reference.grads(X1, target, params)
    _agree("J", loss, float(ex.loss))
    stepped = {name: array.copy() for name, array in params.items()}
    reference.step(X1, target, stepped, float(lr))
    for name, shape in net.params():
        base = exprs.param_symbol(name)
        _agree(f"dJ/d{name}", grads[name], _array(base, shape, ex.grads))
        after = {base[z]: subs[base[z]] - lr * ex.grads[base[z]] for z in _all_indices(shape)}
        _agree(f"{name} after the step", stepped[name], _array(base, shape, after))
        counts["grads"] += grads[name].size
        counts["steps"] += grads[name].size
    return counts


def _value_lines(p: NetworkPrinter, base: IndexedBase, shape: tuple[int, ...],
                 source: dict[Expr, Expr], how: str | int, gradient: bool = False,
                 per_line: int = 3) -> ValueLines:
    """``name = number`` for the picked elements, ``per_line`` to a line; ``gradient``:
    ``dJ/dname = number``."""
    shown = picks(shape, how)
    left = [_dj(p, base[z]) if gradient else p.doprint(base[z]) for z in shown]
    items = [f"{name} = {number(source[base[z]])}" for name, z in zip(left, shown)]
    lines = [r",\quad ".join(items[n:n + per_line]) for n in range(0, len(items), per_line)]
    return ValueLines(symbol_tex(str(base)), len(shown), math.prod(shape),
                      pick_name(shape, how), lines)


def _example(p: NetworkPrinter, exprs: NetworkExprs, values: Any, how: str | int) -> Example:
    net = exprs.net
    subs, lr = _read_values(net, values)
    ex = evaluate(exprs, subs)
    checked = check_example(net, exprs, ex, subs, lr)
    given = [_value_lines(p, X, net.input, subs, how), _value_lines(p, T, net.output_shape,
                                                                    subs, how)]
    params = [(exprs.param_symbol(name), shape) for name, shape in net.params()]
    given += [_value_lines(p, base, shape, subs, how) for base, shape in params]
    forward = [_value_lines(p, output(la.index), la.out_shape, ex.values, how)
               for la in net.layers]
    deltas = [_value_lines(p, delta(la.index), la.out_shape, ex.values, how)
              for la in reversed(net.layers)]
    grads, steps = [], []
    for base, shape in params:
        grads.append(_value_lines(p, base, shape, ex.grads, how, gradient=True, per_line=2))
        rows = []
        for z in picks(shape, how):
            before, g = subs[base[z]], ex.grads[base[z]]
            rows.append(Row(p.doprint(base[z]), rf"\leftarrow {number(before)} - {number(lr)} "
                            rf"\cdot {_signed(number(g))} = {number(before - lr * g)}"))
        steps.append(Elements(symbol_tex(str(base)), len(rows), math.prod(shape),
                              pick_name(shape, how), rows))
    return Example(number(lr), given, forward, number(ex.loss), deltas, grads, steps, checked)


# -- the document -------------------------------------------------------------------------


def _network(net: Any) -> Network:
    if isinstance(net, str):
        return Network.parse(net)
    if not isinstance(net, Network):
        raise LatexError(f"net: expected a derive.Network or its text form, got "
                         f"{type(net).__name__}")
    return net


def _selection(exprs: NetworkExprs, elements: Any) -> str | int:
    """``elements`` resolved: ``auto`` is ``all`` up to ``AUTO_ALL_LIMIT`` elements, else
    ``corners``; ``all`` is refused above ``ALL_LIMIT``."""
    how = parse_elements(elements)
    total = element_count(exprs)
    if how == "auto":
        how = "all" if total <= AUTO_ALL_LIMIT else "corners"
    if how == "all" and total > ALL_LIMIT:
        raise LatexError(f"elements='all': {exprs.net.text()} has {total:,} elements "
                         f"(outputs, deltas and gradients); more than {ALL_LIMIT} make a "
                         f"document too long to read: use corners, or a count N (at most "
                         f"{N_LIMIT} per array)")
    return how


def _verify(exprs: NetworkExprs, rule_elements: int) -> Verified:
    """The composition check, when the network is small enough (``COMPOSITION_WORK``)."""
    params = sum(math.prod(shape) for _, shape in exprs.net.params())
    size = composed_size(exprs)
    small = params <= COMPOSITION_PARAMS and size * params <= COMPOSITION_WORK
    kinds = sorted({la.kind for la in exprs.net.layers} | {exprs.net.loss})
    return Verified(loss_elements=len(exprs.loss_delta), rule_elements=rule_elements,
                    composition=check_composition(exprs) if small else None, params=params,
                    size=size, params_limit=COMPOSITION_PARAMS, work_limit=COMPOSITION_WORK,
                    kinds=kinds)


def command_line(net: Network, base: int, elements: Any, values: Any) -> str:
    """The ``corrgen latex --network`` command that regenerates a document."""
    parts = [f'corrgen latex --network "{net.text()}"']
    if base != 1:
        parts.append(f"--index-base {base}")
    if elements != "auto":
        parts.append(f"--elements {elements}")
    if values is not None:
        parts.append("--values " + (str(values) if not isinstance(values, dict) else "FILE.json"))
    return " ".join(parts)


def network_content(net: Network | str, values: Any = None, elements: str | int = "auto",
                    index_base: int = 1) -> NetworkDoc:
    """The content of the derivation document of ``net``: the template's variables, every
    check run.

    Args:
        net: the network (a ``derive.Network`` or its text form).
        values: numbers for a worked example: a dict, or the path of a JSON file, of arrays
            by name (``derive.values``: ``X``, ``T`` and every parameter, by PyTorch name or
            symbol), and optionally ``"lr"``, the SGD step's learning rate (default 0.1); for
            softmax-ce, ``T`` may be the class index. None: no worked example.
        elements: which elements of each array are printed: ``"all"``, ``"corners"`` (the
            first and last along each axis), a count N (evenly spread), or ``"auto"``: all
            when the network has at most ``AUTO_ALL_LIMIT`` elements, else corners.
        index_base: first index written, 1 (as the seeds) or 0.

    Raises:
        LatexError: a bad option (naming it, the rule and the value).
        SpecError: bad ``values`` (naming the array, the rule and the value).
        DerivationError: a check failed (nothing is to be written then).
    """
    from .. import __version__

    net = _network(net)
    if index_base not in (0, 1) or isinstance(index_base, bool):
        raise LatexError(f"index_base={index_base!r}: expected 0 or 1")
    exprs = derive_network(net)
    how = _selection(exprs, elements)
    p = NetworkPrinter(index_base)
    loss = _loss(p, exprs, how)
    layers = [_layer_part(p, exprs, ld, how) for ld in exprs.layers]
    example = _example(p, exprs, values, how) if values is not None else None
    command = command_line(net, index_base, elements, values)
    return NetworkDoc(
        version=__version__, text=net.text(), command_tex=typewriter(command),
        base=index_base, how=str(how), table=_table(net), input_shape=_shape(net.input),
        layers=layers, backward=layers[::-1], loss=loss,
        params=[g for part in layers for g in part.grads], example=example,
        verified=_verify(exprs, sum(part.checked for part in layers)))
