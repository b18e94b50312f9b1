"""A network derived element by element, the seeds' way: forward, then the δ recursion.

Symbols (SymPy ``IndexedBase``, per sample, 0-based): ``X`` the network's input; ``Y<l>`` the
output of layer ``l``; ``dY<l>`` the gradient of the sample's loss with respect to ``Y<l>``
(the δ of the seeds); ``W<l>``, ``B<l>`` the parameters ``"<l>.weight"``, ``"<l>.bias"``;
``T`` the targets (one-hot for ``softmax-ce``: ``T[k] = 1`` for the sample's class ``t``).

Each layer is differentiated through the chain rule like the correlation layer::

    dY<l-1>[u] = sum over outputs z of layer l that read u of  dY<l>[z] * dY<l>[z]/dY<l-1>[u]

Conv and dense layers are ``derive_layer``'s correlation (dense: a kernel covering its whole
input) with their symbols renamed; activations, pools and flatten are differentiated here
with ``sympy.diff``. Three results are written out in the seeds' terms rather than SymPy's:

* sigmoid and tanh: ``h'(a)`` in terms of the layer's output, ``Y(1 - Y)`` and ``1 - Y**2``
  (seed 001's σ(1 - σ)), each proven equal to SymPy's derivative once per kind;
* ReLU is ``Piecewise((a, a > 0), (0, True))``, so its derivative at 0 is 0 (seed 003);
* max pooling: the derivative of ``Max`` is ``Heaviside(x_u - Max(others))``, undefined on a
  tie; the switch written out sends the gradient to the first maximum of the window in
  row-major order, as PyTorch does (``max_switch``).

The per-sample loss ``J`` is summed over the sample's outputs; over a batch of ``N`` the
loss and every gradient are averaged (``1/N``), which ``derive.reference.network`` does.
"""

from __future__ import annotations

import functools
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

from sympy import (
    Add,
    And,
    Expr,
    Float,
    Ge,
    Gt,
    Heaviside,
    Indexed,
    IndexedBase,
    Integer,
    Max,
    Piecewise,
    Rational,
    S,
    diff,
    exp,
    expand,
    log,
    simplify,
    sqrt,
    symbols,
    sympify,
    tanh,
)

from .errors import DerivationError
from .gradients import DEFAULT_MAX_TERMS, derive_layer
from .network import Layer, Network
from .symbols import G, K, V, b

Elements = dict[tuple[int, ...], Expr]
Index = tuple[int, ...]

X = IndexedBase("X")
T = IndexedBase("T")


def output(index: int) -> IndexedBase:
    return IndexedBase(f"Y{index}")


def delta(index: int) -> IndexedBase:
    return IndexedBase(f"dY{index}")


def weight(index: int) -> IndexedBase:
    return IndexedBase(f"W{index}")


def bias(index: int) -> IndexedBase:
    return IndexedBase(f"B{index}")


def layer_input(index: int) -> IndexedBase:
    return X if index == 0 else output(index - 1)


@dataclass(frozen=True)
class LayerDerivation:
    """One layer's elements: ``forward`` (``Y<l>`` by index), ``backward`` (``dY<l-1>`` by
    index; empty for layer 0, whose input needs no gradient), ``grads`` (parameter name ->
    elements of ``dJ/dW<l>`` or ``dJ/dB<l>``)."""

    layer: Layer
    forward: Elements
    backward: Elements
    grads: dict[str, Elements] = field(default_factory=dict)

    @property
    def index(self) -> int:
        return self.layer.index


@dataclass(frozen=True)
class NetworkExprs:
    """A derived network: every layer, the per-sample loss and its δ (``dY<last>``)."""

    net: Network
    layers: tuple[LayerDerivation, ...]
    loss: Expr
    loss_delta: Elements

    def symbols(self) -> dict[str, tuple[int, ...]]:
        """Every array the expressions use, by name, with its shape (per sample): the names
        ``sympify`` reads as ``IndexedBase``."""
        out = {str(X): self.net.input, str(T): self.net.output_shape}
        for layer in self.net.layers:
            out[str(output(layer.index))] = out[str(delta(layer.index))] = layer.out_shape
            for name, shape in layer.params():
                out[str(self.param_symbol(name))] = shape
        return out

    def param_symbol(self, name: str) -> IndexedBase:
        index, kind = name.split(".")
        return (weight if kind == "weight" else bias)(int(index))


# -- one layer at a time ------------------------------------------------------------------


def _correlation(layer: Layer, max_terms: int | None) -> LayerDerivation:
    """Conv and dense: derive_layer's elements with DESIGN's V, K, b, G renamed."""
    spec = layer.spec
    assert spec is not None
    l = layer.index  # noqa: E741 (the seeds' letter for a layer)
    dense = layer.kind == "dense"
    wrt = ("weight", "bias") if l == 0 else ("input", "weight", "bias")
    exprs = derive_layer(spec.replace(bias=spec.bias and not layer.untied), wrt, max_terms)

    def flat(index: Index) -> Index:  # dense: (d, 0, 0) -> (d,), (n, d, 0, 0) -> (n, d)
        return index[:-2] if dense else index

    src, dout = layer_input(l), delta(l)
    mapping: dict[Expr, Expr] = {}
    for base, new, shape in ((V, src, spec.input), (K, weight(l), spec.kernel),
                             (G, dout, spec.output_shape)):
        mapping.update({base[i]: new[flat(i)] for i in _indices(shape)})
    mapping.update({b[i]: bias(l)[i] for i in range(spec.kernel[0])})

    def renamed(expr: Expr) -> Expr:
        return expr.xreplace(mapping)

    forward = {flat(k): renamed(v) for k, v in exprs.forward.items()}
    grads = {f"{l}.weight": {flat(k): renamed(v) for k, v in exprs.grad_weight.items()}}
    if layer.untied:  # one bias per output element: Y[z] += B[z], so dJ/dB[z] = dY[z]
        forward = {z: e + bias(l)[z] for z, e in forward.items()}
        grads[f"{l}.bias"] = {z: diff(forward[z], bias(l)[z]) * dout[z] for z in forward}
    elif layer.has_bias:
        grads[f"{l}.bias"] = {k: renamed(v) for k, v in exprs.grad_bias.items()}
    backward = {flat(k): renamed(v) for k, v in exprs.grad_input.items()}
    return LayerDerivation(layer, forward, backward, grads)


@functools.cache
def activation_derivative(kind: str) -> tuple[Callable[[Expr], Expr], Callable[[Expr], Expr]]:
    """``(h, h')`` of an activation, ``h'`` written in terms of ``h``'s output where the
    seeds do so (sigmoid, tanh), proven equal to SymPy's derivative of ``h``."""
    a, y = symbols("a y", real=True)
    if kind == "relu":
        h = Piecewise((a, a > 0), (0, True))
        derivative = diff(h, a)  # Piecewise((1, a > 0), (0, True)): relu'(0) = 0
        return (lambda x: _put(h, a, x)), (lambda x: _put(derivative, a, x))
    h, in_output = {
        "sigmoid": (1 / (1 + exp(-a)), y * (1 - y)),
        "tanh": (tanh(a), 1 - y**2),
    }[kind]
    if simplify(diff(h, a) - in_output.subs(y, h)) != 0:
        raise DerivationError(f"{kind}: h' is not {in_output} in terms of the output y")
    return (lambda x: _put(h, a, x)), (lambda x: _put(in_output, y, x))


def _put(expr: Expr, old: Expr, new: Expr) -> Expr:
    """``expr`` with ``old`` replaced by ``new``, rebuilt unevaluated: ``expr`` is already
    in its final form, and re-asking SymPy whether ``Y[z] > 0`` costs about 2 ms a relation."""
    new = sympify(new)
    if expr == old:
        return new
    if new.is_number:  # a worked example's number: let SymPy evaluate
        return expr.xreplace({old: new})
    if not expr.args:
        return expr
    args = [_put(arg, old, new) for arg in expr.args]
    try:
        return expr.func(*args, evaluate=False)
    except TypeError:  # ExprCondPair takes no evaluate
        return expr.func(*args)


def _elementwise(layer: Layer) -> LayerDerivation:
    l = layer.index  # noqa: E741
    src, out, dout = layer_input(l), output(l), delta(l)
    h, h_prime = activation_derivative(layer.kind)
    forward = {z: h(src[z]) for z in _indices(layer.out_shape)}
    # h'(a) of the pre-activation a = src[z]; for sigmoid/tanh written with the output out[z]
    at = src if layer.kind == "relu" else out
    backward = {} if l == 0 else {z: dout[z] * h_prime(at[z]) for z in forward}
    return LayerDerivation(layer, forward, backward)


def _windows(layer: Layer) -> dict[Index, list[Index]]:
    """Each pooling output ``(c, y, x)`` -> the input elements of its window, row-major."""
    kh, kw = layer.size
    sh, sw = layer.stride
    return {
        (c, y, x): [(c, y * sh + i, x * sw + j) for i in range(kh) for j in range(kw)]
        for c, y, x in _indices(layer.out_shape)
    }


def max_switch(values: list[Expr], position: int) -> Expr:
    """1 where ``values[position]`` is the first maximum of ``values``, else 0: the
    derivative of ``Max(*values)`` with respect to ``values[position]`` off ties (where
    SymPy's ``Heaviside(x - Max(others))`` is undefined), ties to the first index."""
    mine = values[position]
    # unevaluated: asking SymPy whether x > y holds for symbols costs ~1 ms a relation
    conditions = ([Gt(mine, v, evaluate=False) for v in values[:position]]
                  + [Ge(mine, v, evaluate=False) for v in values[position + 1:]])
    return Piecewise((1, And(*conditions, evaluate=False)), (0, True), evaluate=False)


def _pool(layer: Layer) -> LayerDerivation:
    l = layer.index  # noqa: E741
    src, out, dout = layer_input(l), output(l), delta(l)
    windows = _windows(layer)
    area = layer.size[0] * layer.size[1]
    forward: Elements = {}
    reduce = {"maxpool": lambda values: Max(*values, evaluate=False),
              "avgpool": lambda values: Add(*values) / area,
              "l2pool": lambda values: sqrt(Add(*[v**2 for v in values]))}[layer.kind]
    for z, cells in windows.items():
        forward[z] = reduce([src[u] for u in cells])
    if l == 0:
        return LayerDerivation(layer, forward, {})
    parts: dict[Index, list[Expr]] = defaultdict(list)
    for z, cells in windows.items():
        values = [src[u] for u in cells]
        for position, u in enumerate(cells):
            if layer.kind == "maxpool":  # SymPy's dMax/dx_u, off ties; written out with ties
                _max_derivative(len(values), position)
                parts[u].append(dout[z] * max_switch(values, position))
                continue
            factor = diff(forward[z], src[u])
            if layer.kind == "l2pool":  # x_u / sqrt(sum x^2) = x_u / Y[z]; 0 on an all-zero window
                factor = Piecewise((factor.xreplace({1 / forward[z]: 1 / out[z]}), out[z] > 0),
                                   (0, True))
            parts[u].append(dout[z] * factor)
    backward = {u: Add(*parts.get(u, [])) for u in _indices(layer.in_shape)}
    return LayerDerivation(layer, forward, backward)


@functools.cache
def _max_derivative(count: int, position: int) -> Expr:
    """SymPy's derivative of ``Max(a_0, ..., a_{count-1})`` by ``a_position``: checked to be
    ``Heaviside(a_position - Max(others))``, the step ``max_switch`` writes out with ties
    resolved (derived once per window size and position: the same for every window)."""
    a = symbols(f"a:{count}", real=True)
    derivative = diff(Max(*a), a[position])
    others = [x for i, x in enumerate(a) if i != position]
    step = Heaviside(a[position] - Max(*others)) if others else S.One
    if derivative != step:
        raise DerivationError(f"d Max/d a{position}: expected {step}, got {derivative}")
    return derivative


def _flatten(layer: Layer) -> LayerDerivation:
    l = layer.index  # noqa: E741
    src, dout = layer_input(l), delta(l)
    cells = list(_indices(layer.in_shape))
    forward = {(k,): src[u] for k, u in enumerate(cells)}
    backward = {} if l == 0 else {u: dout[k] * diff(forward[k], src[u])
                                  for k, u in zip(forward, cells)}
    return LayerDerivation(layer, forward, backward)


def _indices(shape: tuple[int, ...]) -> list[Index]:
    out: list[Index] = [()]
    for extent in shape:
        out = [index + (i,) for index in out for i in range(extent)]
    return out


# -- losses -------------------------------------------------------------------------------


def loss_expr(net: Network) -> tuple[Expr, Elements]:
    """The per-sample loss in ``Y<last>`` and ``T``, and its δ ``dJ/dY<last>`` by diff."""
    last = output(net.layers[-1].index)
    cells = _indices(net.output_shape)
    y = [last[z] for z in cells]
    t = [T[z] for z in cells]
    if net.loss == "l2":
        loss = Rational(1, 2) * Add(*[(yi - ti) ** 2 for yi, ti in zip(y, t)])
    elif net.loss == "bce":
        loss = -Add(*[ti * log(yi) + (1 - ti) * log(1 - yi) for yi, ti in zip(y, t)])
    else:  # -log softmax(y)[t] with one-hot T: -sum_k T[k] (y[k] - log sum_j exp(y[j]))
        log_sum = log(Add(*[exp(yi) for yi in y]))
        loss = -Add(*[ti * (yi - log_sum) for yi, ti in zip(y, t)])
    deltas = {z: diff(loss, last[z]) for z in cells}
    if net.loss == "softmax-ce":
        deltas = {z: _softmax_minus_target(d, y, t, k) for k, (z, d) in enumerate(deltas.items())}
    return loss, deltas


def _softmax_minus_target(derivative: Expr, y: list[Expr], t: list[Expr], k: int) -> Expr:
    """SymPy's derivative is ``softmax(y)[k] * sum_j T[j] - T[k]``; the one-hot targets sum
    to 1, so ``dJ/dy[k] = softmax(y)[k] - T[k]`` (checked, not assumed, before the rewrite)."""
    softmax = exp(y[k]) / Add(*[exp(yi) for yi in y])
    if expand(derivative - (softmax * Add(*t) - t[k])) != 0:
        raise DerivationError(f"softmax-ce: dJ/dY[{k}] = {derivative} is not softmax*sum(T) - T")
    return softmax - t[k]


# -- the network --------------------------------------------------------------------------


_KINDS: dict[str, Callable[..., LayerDerivation]] = {
    "relu": _elementwise, "sigmoid": _elementwise, "tanh": _elementwise,
    "maxpool": _pool, "avgpool": _pool, "l2pool": _pool, "flatten": _flatten,
}


@functools.lru_cache(maxsize=8)
def derive_network(net: Network, max_terms: int | None = DEFAULT_MAX_TERMS,
                   progress: Callable[[int, int], None] | None = None) -> NetworkExprs:
    """Every layer's forward elements and δ recursion, every parameter's gradient, the loss.

    Args:
        net: the network.
        max_terms: refuse a conv or dense layer with more forward terms than this.
        progress: called as ``progress(done, total)`` after each layer, in terms (a conv or
            dense layer's forward products, a pool's window elements, one per element else).
    """
    work = [_work(layer) for layer in net.layers]
    derived = []
    for layer in net.layers:
        if layer.spec is not None:
            derived.append(_correlation(layer, max_terms))
        else:
            derived.append(_KINDS[layer.kind](layer))
        if progress is not None:
            progress(sum(work[:layer.index + 1]), sum(work))
    loss, deltas = loss_expr(net)
    return NetworkExprs(net, tuple(derived), loss, deltas)


def _work(layer: Layer) -> int:
    if layer.spec is not None:
        return layer.spec.n_terms
    cells = 1
    for extent in layer.out_shape:
        cells *= extent
    return cells * layer.size[0] * layer.size[1]


# -- the recursion against the composed loss (tiny networks) --------------------------------


@dataclass(frozen=True)
class CompositionCheck:
    """``dJ/dp`` by differentiating the fully composed loss, against the recursion."""

    elements: int
    proved: int  # equal after expand (polynomial networks): a proof
    sampled: int  # equal at ``points`` random points to 40 digits (exp, log, Max, Piecewise)
    points: int

    def __str__(self) -> str:
        return (f"{self.elements} parameter elements: dJ/dp of the composed loss equals the "
                f"recursion; {self.proved} proven by expansion, {self.sampled} at "
                f"{self.points} random points to 40 digits")


def composed(exprs: NetworkExprs) -> tuple[Expr, dict[Expr, Expr]]:
    """The loss as one expression of ``X``, ``T`` and the parameters, and each ``Y``/``dY``
    element in the same terms (the recursion's values, composed)."""
    env: dict[Expr, Expr] = {}
    for layer in exprs.layers:
        out = output(layer.index)
        for z, e in layer.forward.items():
            env[out[z]] = e.xreplace(env)
    last = exprs.layers[-1].index
    for z, d in exprs.loss_delta.items():
        env[delta(last)[z]] = d.xreplace(env)
    for layer in reversed(exprs.layers[1:]):
        below = delta(layer.index - 1)
        for u, d in layer.backward.items():
            env[below[u]] = d.xreplace(env)
    return exprs.loss.xreplace(env), env


def check_composition(exprs: NetworkExprs, points: int = 3, seed: int = 0) -> CompositionCheck:
    """Differentiate the composed loss by every parameter element and compare with the
    recursion's gradient. Raises DerivationError on a difference.

    A polynomial network (no activation but identities, average pooling, l2 loss) is proven:
    the difference is expanded to 0. Otherwise both sides are compared at ``points`` random
    points to 40 digits: for each parameter element ``p`` the network is composed forward with
    every other input a 50-digit number and ``p`` a symbol, so the loss is a function of ``p``
    alone, which SymPy differentiates (composing it symbolically in every variable first costs
    minutes: SymPy simplifies each nested ``Max`` on construction).
    """
    pairs = [(exprs.param_symbol(name)[index], grad)
             for layer in exprs.layers for name, elements in layer.grads.items()
             for index, grad in elements.items()]
    if exprs.loss.is_polynomial(*exprs.loss.atoms(Indexed)) and not any(
            layer.layer.kind in ("relu", "sigmoid", "tanh", "maxpool", "l2pool")
            for layer in exprs.layers):
        loss, env = composed(exprs)
        for p, grad in pairs:
            if expand(diff(loss, p) - grad.xreplace(env)) != 0:
                raise DerivationError(f"d J/d {p}: the recursion differs from the composed "
                                      f"loss's derivative")
        return CompositionCheck(len(pairs), len(pairs), 0, 0)
    rng = random.Random(seed)
    for _ in range(points):
        point, numbers = _smooth_point(exprs, rng)
        for p, _ in pairs:
            loss = _forward(exprs, {k: v for k, v in point.items() if k != p})
            direct = diff(loss, p).xreplace({p: point[p]}).evalf(50)
            other = numbers.grads[p]
            if abs(direct - other) > Integer(10) ** -40 * (1 + abs(direct)):
                raise DerivationError(f"d J/d {p}: composed {direct} != recursion {other}")
    return CompositionCheck(len(pairs), 0, len(pairs), points)


def _forward(exprs: NetworkExprs, env: dict[Expr, Expr]) -> Expr:
    """The loss composed layer by layer from the values in ``env``."""
    env = dict(env)
    for layer in exprs.layers:
        out = output(layer.index)
        for z, e in layer.forward.items():
            env[out[z]] = _substitute(e, env)
    return _substitute(exprs.loss, env)


def _substitute(expr: Expr, env: dict[Expr, Expr]) -> Expr:
    """``expr.xreplace(env)``, except that a ``Max`` with a symbolic argument stays unevaluated:
    evaluating one means SymPy's search for arguments it can drop (``_find_localzeros``), about
    50 ms a ``Max`` here, and the result is the same function."""
    if expr in env:
        return env[expr]
    if not expr.args or isinstance(expr, Indexed):
        return expr
    args = [_substitute(arg, env) for arg in expr.args]
    if isinstance(expr, Max) and not all(arg.is_number for arg in args):
        return Max(*args, evaluate=False)
    return expr.func(*args)


def _smooth_point(exprs: NetworkExprs, rng: random.Random) -> tuple[dict[Expr, Expr], Example]:
    """A random point (and the recursion there) where no L2 pool window is all zeros (after a
    ReLU that happens): there sqrt's derivative is 0/0, which the composed loss cannot give
    and the recursion defines as 0."""
    pools = [layer for layer in exprs.layers if layer.layer.kind == "l2pool"]
    for _ in range(50):
        point = _random_point(exprs, rng)
        numbers = evaluate(exprs, point, digits=50)
        if all(numbers.values[output(p.index)[z]] != 0 for p in pools for z in p.forward):
            return point, numbers
    raise DerivationError("no random point found without an all-zero L2 pool window in 50 "
                          "tries: the composition check needs the loss differentiable there")


def _random_point(exprs: NetworkExprs, rng: random.Random) -> dict[Expr, Expr]:
    """Random 50-digit values for ``X``, ``T`` and the parameters; targets in (0, 1), or
    one-hot for softmax-ce (whose δ uses that they sum to 1). A tie of the max pool after a
    ReLU (zeros) meets ReLU's zero derivative, so both sides agree there too."""
    point: dict[Expr, Expr] = {}
    for name, (base, shape) in arrays(exprs.net).items():
        if name[0].isdigit() or base == T:
            continue
        point.update({base[i]: Float(Rational(rng.randint(-999, 999), 997), 50)
                      for i in _indices(shape)})
    cells = _indices(exprs.net.output_shape)
    if exprs.net.loss == "softmax-ce":
        hot = rng.randrange(len(cells))
        point.update({T[z]: Integer(k == hot) for k, z in enumerate(cells)})
    else:
        point.update({T[z]: Float(Rational(rng.randint(1, 99), 100), 50) for z in cells})
    return point


# -- numbers: the worked example ----------------------------------------------------------


def arrays(net: Network) -> dict[str, tuple[IndexedBase, tuple[int, ...]]]:
    """The arrays ``--values`` may give for ``net``: ``X``, ``T`` and the parameters, by
    PyTorch name and by symbol (``"0.weight"`` and ``W0``)."""
    out = {"X": (X, net.input), "T": (T, net.output_shape)}
    for layer in net.layers:
        for name, shape in layer.params():
            index, kind = name.split(".")
            base = (weight if kind == "weight" else bias)(int(index))
            out[name] = out[str(base)] = (base, shape)
    return out


@dataclass(frozen=True)
class Example:
    """A network at numbers: ``values`` every ``X``/``T``/parameter/``Y``/``dY`` element,
    ``loss`` the sample's loss, ``grads`` each parameter element's ``dJ/dp``."""

    values: dict[Expr, Expr]
    loss: Expr
    grads: dict[Expr, Expr]


def evaluate(exprs: NetworkExprs, subs: dict[Expr, Expr], digits: int = 15) -> Example:
    """The recursion at the numbers ``subs`` (``X``, ``T`` and the parameters): exact where
    the arithmetic is rational, else to ``digits`` digits."""
    missing = [name for name, (base, shape) in arrays(exprs.net).items()
               if not name[0].isdigit() and any(base[i] not in subs for i in _indices(shape))]
    if missing:
        raise DerivationError(f"--values: the worked example needs every element of "
                              f"{', '.join(sorted(set(missing)))}")
    env = dict(subs)

    def value(expr: Expr) -> Expr:
        number = expr.xreplace(env)
        return number if number.is_Rational else number.evalf(digits)

    for layer in exprs.layers:
        out = output(layer.index)
        for z, e in layer.forward.items():
            env[out[z]] = value(e)
    loss = value(exprs.loss)
    last = exprs.layers[-1].index
    for z, d in exprs.loss_delta.items():
        env[delta(last)[z]] = value(d)
    grads: dict[Expr, Expr] = {}
    for layer in reversed(exprs.layers):
        for name, elements in layer.grads.items():
            base = exprs.param_symbol(name)
            grads.update({base[i]: value(g) for i, g in elements.items()})
        below = delta(layer.index - 1)
        for u, d in layer.backward.items():
            env[below[u]] = value(d)
    return Example(env, loss, grads)
