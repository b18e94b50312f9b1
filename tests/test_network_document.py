"""The network derivation document (derive.latex.network_content, rendered by
codegen.network_document): it builds, compiles with
pdflatex, and says what the seeds say, checked against oracles that do not come from it: the
seeds' rules (ReLU'(0) = 0, the max-pool switch with ties to the first index, PyTorch's
numbering), seed 000's numbers (its 3x3 input and 2x2 kernel give 8 7 / 4 5) and the NumPy
reference of the whole network."""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import re

import numpy as np
import pytest

from codegen.document import compile_pdf, find_engine
from codegen.network_document import network_document
from derive.errors import DerivationError, LatexError, SpecError
from derive.latex import network_content
from derive.latex.network_document import COMPOSITION_PARAMS, COMPOSITION_WORK, composed_size
from derive.network import Network
from derive.network_derivation import derive_network
from derive.network_reference import NetworkReference

EXAMPLE = "1x8x8 | conv 6x3x3 pad 1 | relu | maxpool 2 | flatten | dense 10 | softmax-ce"
#: Every layer kind: conv, relu, avgpool, sigmoid, l2pool, tanh, maxpool, flatten, dense.
EVERY_KIND = ("1x5x5 | conv 1x2x2 | relu | avgpool 2 stride 1 | sigmoid | l2pool 2 stride 1 | "
              "tanh | maxpool 2 | flatten | dense 2 | sigmoid | bce")
#: Seed 000's 3x3 input and 2x2 kernel in a network small enough for the composition check.
TINY = "1x3x3 | conv 1x2x2 | relu | maxpool 2 | flatten | dense 2 | softmax-ce"
SEED_V = [[1, 6, 2], [5, 3, 1], [7, 0, 4]]
SEED_K = [[1, 2], [-1, 0]]
VALUES = {"X": SEED_V, "0.weight": SEED_K, "0.bias": [0], "4.weight": [[0.5], [-0.25]],
          "4.bias": [0.1, 0.2], "T": 0, "lr": 0.1}


@pytest.fixture(scope="module")
def example_doc() -> str:
    return network_document(EXAMPLE)


@pytest.fixture(scope="module")
def every_doc() -> str:
    return network_document(EVERY_KIND)


@pytest.fixture(scope="module")
def tiny_doc() -> str:
    return network_document(TINY, values=copy.deepcopy(VALUES))


def _compiles(tmp_path, text: str, name: str) -> int:
    if find_engine() is None:
        pytest.skip("pdflatex is not installed")
    path = tmp_path / f"{name}.tex"
    path.write_text(text)
    pdf, pages = compile_pdf(path)
    assert pdf.exists() and pages >= 1
    return pages


def _switch(prefix: str, window: list[tuple[int, int, int]], position: int) -> str:
    """The switch of window element ``position``, written from PyTorch's rule: strictly
    larger than the elements before it, at least as large as those after it (1-based)."""
    def name(cell: tuple[int, ...]) -> str:
        return f"{prefix}_{{{','.join(str(i + 1) for i in cell)}}}"

    mine = window[position]
    parts = [f"{name(mine)} > {name(other)}" for other in window[:position]]
    parts += [rf"{name(mine)} \geq {name(other)}" for other in window[position + 1:]]
    return r"\left[" + r" \wedge ".join(parts) + r"\right]"


def test_the_example_network_compiles_and_says_what_the_seeds_say(example_doc, tmp_path):
    assert _compiles(tmp_path, example_doc, "example") >= 5
    # the table: PyTorch's numbering and names, the shapes through the chain
    assert r"0 & \texttt{conv 6x3x3 pad 1} & $1 \times 8 \times 8 \to 6 \times 8 \times 8$" \
        in example_doc
    assert r"\texttt{4.weight} $(10, 96)$" in example_doc
    # ReLU'(0) = 0 (seed 003): the δ of the conv output through the rectifier
    assert (r"\delta^{(0)}_{1,1,1} &= \delta^{(1)}_{1,1,1} "
            r"\operatorname{ReLU}'\left(y^{(0)}_{1,1,1}\right)") in example_doc
    assert r"the derivative at $0$ is taken as $0$" in example_doc
    # the max-pool switch: the first element of the first window, the last of the last one
    # (both corners of the input, so both are printed)
    for out, position in (((0, 0), 0), ((3, 3), 3)):
        window = [(0, 2 * out[0] + i, 2 * out[1] + j) for i, j in itertools.product(range(2),
                                                                                 range(2))]
        cell = window[position]
        line = (rf"\delta^{{(1)}}_{{{','.join(str(i + 1) for i in cell)}}} &= "
                rf"\delta^{{(2)}}_{{1,{out[0] + 1},{out[1] + 1}}} "
                rf"{_switch('y^{(1)}', window, position)}")
        assert line in example_doc
    # seed 003's (2.16) for the conv -> relu -> maxpool chain
    assert (r"\delta^{(0)} = h'\left(y^{(0)}\right) \circ "
            r"\operatorname{up}\left(\delta^{(2)}\right)") in example_doc
    # the dense layer's δ sums over its 10 outputs (2.13); its forward over 96 inputs and the
    # bias, elided in the middle with the count
    block = example_doc[example_doc.index(r"\delta^{(3)}_{1} &="):
                        example_doc.index(r"\delta^{(3)}_{96} &=")]
    for k in range(1, 11):
        assert rf"\delta^{{(4)}}_{{{k}}} W^{{(4)}}_{{{k},1}}" in block, k
    assert "(97 terms)" in example_doc
    # softmax - t, its batch mean and the SGD step of every parameter
    assert r"\frac{e^{y^{(4)}_{k}}}{\sum_{j=1}^{10} e^{y^{(4)}_{j}}} - t_{k}" in example_doc
    assert r"\mathcal{J} = \frac{1}{N} \sum_{n=1}^{N} J_n" in example_doc
    for name, symbol in (("0.weight", "W^{(0)}"), ("0.bias", "b^{(0)}"),
                         ("4.weight", "W^{(4)}"), ("4.bias", "b^{(4)}")):
        assert rf"{symbol} \leftarrow {symbol} - \alpha \, \frac{{\partial \mathcal{{J}}}}" \
               rf"{{\partial {symbol}}}" in example_doc
        assert rf"\paragraph{{Gradient of \texttt{{{name}}}}}" in example_doc
    # big arrays: the corners, and the count left out
    assert "9 of the 384 elements of $y^{(0)}$" in example_doc
    assert "the other 375 are left out" in example_doc
    # 1,030 parameter elements: the composition check is skipped, and the document says so
    assert "was not checked: the network has 1,030 parameter elements" in example_doc


def test_every_layer_kind_compiles(every_doc, tmp_path):
    assert _compiles(tmp_path, every_doc, "every") >= 3
    for kind in ("conv", "relu", "avgpool", "sigmoid", "l2pool", "tanh", "maxpool", "flatten",
                 "dense"):
        assert re.search(rf"\\subsection\*{{Layer \d+: \\texttt{{{kind}", every_doc), kind
    # σ' = σ(1 - σ) and tanh' = 1 - tanh², written with the layer's output
    assert (r"\delta^{(2)}_{c,r,s} = \left(1 - y^{(3)}_{c,r,s}\right) y^{(3)}_{c,r,s} "
            r"\delta^{(3)}_{c,r,s}") in every_doc
    assert (r"\delta^{(4)}_{c,r,s} = \left(1 - \left(y^{(5)}_{c,r,s}\right)^{2}\right) "
            r"\delta^{(5)}_{c,r,s}") in every_doc
    # bce's δ; its general form is checked against each element before it is printed
    assert (r"\frac{1 - t_{k}}{1 - y^{(9)}_{k}} - \frac{t_{k}}{y^{(9)}_{k}}") in every_doc
    # the average pool splits δ over its 2x2 window: the centre of 4x4 gets four quarters
    assert (r"\delta^{(1)}_{1,3,3} &= \frac{\delta^{(2)}_{1,2,2}}{4} + "
            r"\frac{\delta^{(2)}_{1,2,3}}{4} + \frac{\delta^{(2)}_{1,3,2}}{4} + "
            r"\frac{\delta^{(2)}_{1,3,3}}{4}") in every_doc
    # flatten of a 1x1x1 image
    assert r"k = c + r + s - 2" in every_doc


def test_the_composition_threshold_is_the_documented_one():
    """The check runs within the limits and is skipped beyond them, by the numbers."""
    for text, runs in ((TINY, True), (EVERY_KIND, False), (EXAMPLE, False)):
        exprs = derive_network(Network.parse(text))
        params = sum(math.prod(shape) for _, shape in exprs.net.params())
        within = params <= COMPOSITION_PARAMS and composed_size(exprs) * params \
            <= COMPOSITION_WORK
        assert within == runs, text


def _number(value: float) -> str:
    """The reference's value at six significant digits, as Python prints it."""
    return f"{value:.6g}"


def test_the_worked_example_equals_the_reference(tiny_doc, tmp_path):
    _compiles(tmp_path, tiny_doc, "tiny")
    net = Network.parse(TINY)
    X = np.array(SEED_V, float)[None, None]
    params = {"0.weight": np.array(SEED_K, float)[None, None], "0.bias": np.zeros(1),
              "4.weight": np.array([[0.5], [-0.25]]), "4.bias": np.array([0.1, 0.2])}
    T = np.array([0])
    reference = NetworkReference(net)
    loss, grads = reference.grads(X, T, params)
    # seed 000's forward pass: the 3x3 input and the 2x2 kernel give 8 7 / 4 5
    for (y, x), z in zip(itertools.product(range(2), range(2)), (8, 7, 4, 5)):
        assert f"y^{{(0)}}_{{1,{y + 1},{x + 1}}} = {z}" in tiny_doc
    assert f"J = {_number(loss)}" in tiny_doc
    for name, symbol in (("0.weight", "W^{(0)}"), ("4.weight", "W^{(4)}"),
                         ("4.bias", "b^{(4)}")):
        for index in itertools.product(*(range(n) for n in grads[name].shape)):
            element = f"{symbol}_{{{','.join(str(i + 1) for i in index)}}}"
            assert (rf"\frac{{\partial J}}{{\partial {element}}} = "
                    rf"{_number(grads[name][index])}") in tiny_doc, element
    stepped = {name: array.copy() for name, array in params.items()}
    reference.step(X, T, stepped, lr=0.1)
    for index in itertools.product(range(2), range(1)):
        element = f"W^{{(4)}}_{{{index[0] + 1},{index[1] + 1}}}"
        line = re.search(re.escape(element) + r" &\\leftarrow .* = (\S+)", tiny_doc)
        assert line and line.group(1) == _number(stepped["4.weight"][index]), element
    assert "The worked example equals the NumPy reference" in tiny_doc
    assert "9 elements at 3 random points" in tiny_doc  # the composition check ran


def test_a_difference_from_the_reference_is_refused(monkeypatch):
    """The worked example is compared before it is printed: a reference that disagrees in
    one gradient element stops the document."""
    grads = NetworkReference.grads

    def off(self, X, T, params):
        loss, found = grads(self, X, T, params)
        found["4.bias"] = found["4.bias"] + np.array([0.0, 1e-6])
        return loss, found

    monkeypatch.setattr(NetworkReference, "grads", off)
    values = copy.deepcopy(VALUES)
    with pytest.raises(DerivationError, match=r"worked example: dJ/d4\.bias"):
        network_content("1x3x3 | conv 1x2x2 | relu | maxpool 2 | flatten | dense 2 | "
                        "softmax-ce", values=values)


def test_index_base_zero_and_the_element_choice():
    doc = network_document("1x2x2 | conv 1x2x2 | sigmoid | flatten | dense 1 | l2",
                           index_base=0, elements=1)
    assert r"y^{(0)}_{0,0,0} &= " in doc
    assert r"\sum_{k=0}^{0}" in doc
    assert "1 of the 4 elements of $W^{(0)}$" in doc


@pytest.mark.parametrize("kwargs, error, words", [
    ({"index_base": 2}, LatexError, "index_base=2: expected 0 or 1"),
    ({"elements": "some"}, LatexError, "elements='some'"),
    ({"values": {**VALUES, "lr": "fast"}}, SpecError, "lr: expected a finite number"),
    ({"values": {**VALUES, "T": 5}}, SpecError, r"T: a class index must lie in 0\.\.1"),
    ({"values": {**VALUES, "T": [1, 1]}}, SpecError, "softmax-ce needs a one-hot target"),
])
def test_bad_options_are_named(kwargs, error, words):
    with pytest.raises(error, match=words):
        network_content(TINY, **kwargs)


def test_all_elements_is_refused_for_a_big_network():
    with pytest.raises(LatexError, match="elements='all'.*use corners"):
        network_content(EXAMPLE, elements="all")


#: Fields that carry the network's own description or a name, not the document's prose.
PROVENANCE = {"version", "text", "command_tex", "layer_command", "name"}


def _strings(value: object, name: str = ""):
    if isinstance(value, str):
        yield name, value
    elif dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            yield from _strings(getattr(value, f.name), f.name)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item, name)


def test_the_content_has_no_english():
    """The sentences are the template's: the content holds LaTeX math (words inside an
    equation belong to it), numbers and the names of cases."""
    content = network_content(TINY, values=copy.deepcopy(VALUES))
    prose = []
    for name, text in _strings(content):
        if name in PROVENANCE or re.fullmatch(r"[a-z0-9_-]*", text):
            continue
        math_only = re.sub(r"\\(?:text|operatorname|begin|end)\{[^{}]*\}", "", text)
        math_only = re.sub(r"\\[A-Za-z]+", "", math_only)
        if re.search(r"[A-Za-z]{2,}", math_only):
            prose.append((name, text))
    assert not prose, prose[:5]


def test_a_general_rule_that_differs_from_its_elements_is_refused():
    """The rules are compared with the elements they stand for: a conv rule without its
    bias, or with its window one row off, is caught."""
    from derive.latex.network_document import NetworkPrinter, Rules, r

    net = Network.parse("1x4x4 | conv 2x2x2 pad 1 | relu | flatten | dense 1 | l2")
    exprs = derive_network(net)
    rules = Rules(NetworkPrinter(1), net.layers[0])
    # every output (2x5x5), every weight (2x1x2x2) and bias (2) element
    assert rules.verify(exprs.layers[0]) == 2 * 5 * 5 + 2 * 4 + 2
    which, lhs, rhs = rules.checks[0]
    assert which == "forward"
    without_bias = [a for a in rhs.args if not str(a).startswith("B0")][0]
    for wrong in (without_bias, rhs.xreplace({r: r + 1})):
        rules.checks[0] = (which, lhs, wrong)
        with pytest.raises(DerivationError, match="the forward rule"):
            rules.verify(exprs.layers[0])


def test_the_example_network_document_matches_the_checked_in_file(example_doc, update_golden):
    """generated/network_example.tex: DESIGN.md's example network's document, kept in sync."""
    from pathlib import Path

    from codegen.document import write_atomic

    golden = Path(__file__).resolve().parents[1] / "generated" / "network_example.tex"
    if update_golden:
        write_atomic(golden, example_doc)
        pytest.skip(f"rewrote {golden.name}")
    assert golden.exists(), f"{golden} is missing; run python -m pytest --update-golden"
    assert golden.read_text() == example_doc, (
        f"{golden.name} is out of date; run python -m pytest --update-golden to rewrite it")
