"""Numbers for a worked example: ``--values FILE.json`` read into SymPy substitutions.

The file is one JSON object whose keys name arrays and whose values are nested lists (or a
single number for a one-element array)::

    {"V": [[1, 6, 2], [5, 3, 1], [7, 0, 4]], "K": [[1, 2], [-1, 0]]}

A layer's arrays are DESIGN.md's ``V``, ``K``, ``b``, ``G``; a network's are ``X``, ``T``
and its parameters by PyTorch name (``"0.weight"``) or symbol (``W0``, ``B0``). A list may
leave out leading extents of 1 (seed 001's 3x3 input for ``V`` of shape (1, 3, 3)). Numbers
are read exactly: integers stay integers and decimals become rationals (``0.5`` -> 1/2), so
the substituted derivation is exact arithmetic. The key ``"lr"``, the step size of the
documents' SGD step, is not an array and is passed over here.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from sympy import Expr, IndexedBase, Integer, Rational

from .errors import SpecError

#: The key of the SGD step size the documents use for their update step; not an array.
LEARNING_RATE = "lr"

#: Arrays by name: ``name -> (IndexedBase, shape)``.
Arrays = dict[str, tuple[IndexedBase, tuple[int, ...]]]


def read(source: str | Path | dict[str, Any]) -> dict[str, Any]:
    """The JSON object of ``source`` (a path, or an already-parsed dict)."""
    if isinstance(source, dict):
        return source
    path = Path(source)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise SpecError(f"--values {str(path)!r}: cannot read it ({error.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise SpecError(f"--values {str(path)!r}: not valid JSON ({error})") from None
    if not isinstance(data, dict):
        raise SpecError(f"--values {str(path)!r}: expected a JSON object of arrays by name, "
                        f"got {type(data).__name__}")
    return data


def _number(name: str, value: Any) -> Expr:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise SpecError(f"--values: {name}: expected numbers, got {value!r}")
    if isinstance(value, int):
        return Integer(value)
    if not math.isfinite(value):
        raise SpecError(f"--values: {name}: expected finite numbers, got {value!r}")
    return Rational(str(value))


def _flat(name: str, value: Any) -> list[Any]:
    if isinstance(value, list):
        out = []
        for item in value:
            out += _flat(name, item)
        return out
    return [value]


def substitutions(source: str | Path | dict[str, Any], arrays: Arrays) -> dict[Expr, Expr]:
    """``{element: number}`` for every array ``source`` gives, each checked against its shape.

    Raises SpecError naming the array, its expected shape and what was given, for an unknown
    name, a wrong number of elements or a non-number.
    """
    data = read(source)
    out: dict[Expr, Expr] = {}
    for name, value in data.items():
        if name == LEARNING_RATE:
            continue
        if name not in arrays:
            raise SpecError(f"--values: unknown array {name!r}; expected some of "
                            f"{', '.join(arrays)}")
        base, shape = arrays[name]
        items = _flat(name, value)
        if len(items) != math.prod(shape):
            raise SpecError(f"--values: {name} has shape {shape} ({math.prod(shape)} elements), "
                            f"got {len(items)} numbers")
        for position, item in enumerate(items):
            index = []
            rest = position
            for extent in reversed(shape):
                index.append(rest % extent)
                rest //= extent
            out[base[tuple(reversed(index))]] = _number(name, item)
    return out


def layer_arrays(spec: Any) -> Arrays:
    """A layer's arrays by DESIGN.md's names (``b`` only with a bias)."""
    from .symbols import G, K, V, b

    arrays: Arrays = {"V": (V, spec.input), "K": (K, spec.kernel), "G": (G, spec.output_shape)}
    if spec.bias:
        arrays["b"] = (b, spec.kernel[:1])
    return arrays
