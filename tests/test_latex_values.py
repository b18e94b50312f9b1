"""The layer document's worked example (``to_latex(spec, values=...)``): seed 001's numbers.

The matrices are read back from the printed LaTeX and compared with oracles that share no
code with the derivation: seed 001's own numbers (its cross-correlation 8 7 / 4 5 and its
convolution 7 5 / 11 3), a plain loop over output positions and kernel taps written here,
central finite differences of ``J = sum(G * Z)`` through that loop, and ``derive.reference``.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shutil
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

import derive.reference as reference
from codegen import cli
from codegen.document import compile_pdf, to_latex, write_atomic
from derive import LayerSpec
from derive.errors import DerivationError, SpecError
from derive.latex import document_content

ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = ROOT / "examples" / "seed001.json"
SEED = LayerSpec(input=(1, 3, 3), kernel=(1, 1, 2, 2))
#: Seed 001's worked example, as its page writes it.
SEED_V = [[1, 6, 2], [5, 3, 1], [7, 0, 4]]
SEED_K = [[1, 2], [-1, 0]]
SEED_CORRELATION = [[8, 7], [4, 5]]
SEED_CONVOLUTION = [[7, 5], [11, 3]]  # the input with rot180 of the kernel
#: A strided, padded layer with two channels each way (all four pairs printed).
STRIDED = LayerSpec(input=(2, 5, 4), kernel=(2, 2, 3, 2), stride=2, padding=1)


# -- reading the section back ------------------------------------------------------------------


def section(tex: str) -> str:
    """The text of the section "Worked example"."""
    start = tex.index(r"\section{Worked example}")
    return tex[start:tex.index(r"\section{", start + 1)]


def cell(text: str) -> Fraction | str:
    """A printed entry: an integer or a fraction (``- \\frac{7}{2}``), else the text."""
    text = text.strip()
    if text.startswith("(") and text.endswith(")"):  # a negative factor of a product
        text = text[1:-1]
    match = re.fullmatch(r"(-?)\s*(?:(\d+)|\\frac\{(\d+)\}\{(\d+)\})", text)
    if not match:
        return text
    sign, whole, num, den = match.groups()
    value = Fraction(int(whole)) if whole else Fraction(int(num), int(den))
    return -value if sign else value


def matrix_after(tex: str, lhs: str, last: bool = False) -> np.ndarray:
    """The matrix printed right after ``lhs = `` in a display (with ``last``, the last matrix
    of that equation); a one-element array printed as a plain number is 1x1."""
    start = tex.index(lhs)
    equation = re.split(r",\\quad |\} \\\]", tex[start:])[0]
    matrices = re.findall(r"\\begin\{bmatrix\}(.*?)\\end\{bmatrix\}", equation)
    if not matrices and not equation[len(lhs):].lstrip().startswith("="):
        raise AssertionError(f"no matrix after {lhs!r} in {equation!r}")
    if not last and not equation[len(lhs):].lstrip(" =").startswith(r"\begin{bmatrix}"):
        return np.array([[cell(equation[len(lhs):].lstrip(" ="))]], dtype=object)
    body = matrices[-1] if last else matrices[0]
    return np.array([[cell(c) for c in row.split("&")] for row in body.split(r"\\")],
                    dtype=object)


def scalar_after(tex: str, lhs: str) -> Fraction | str:
    """The last ``= value`` of the equation that starts with ``lhs``."""
    equation = re.split(r",\\quad |\} \\\]", tex[tex.index(lhs):])[0]
    return cell(equation.rsplit("=", 1)[1])


# -- an oracle written here: loops over positions and taps, finite differences ----------------


def naive_forward(spec: LayerSpec, V: np.ndarray, K: np.ndarray, b: np.ndarray) -> np.ndarray:
    """DESIGN's formula, one output position and tap at a time (no code shared with derive)."""
    top, _, left, _ = spec.pads
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    n_out, C, KH, KW = K.shape
    if spec.mode == "convolution":
        K = K[:, :, ::-1, ::-1]
    _, HO, WO = spec.output_shape
    Z = np.zeros((n_out, HO, WO))
    for o in range(n_out):
        for y in range(HO):
            for x in range(WO):
                total = b[o]
                for c in range(C):
                    for i in range(KH):
                        for j in range(KW):
                            u, v = y * sh + i * dh - top, x * sw + j * dw - left
                            if 0 <= u < V.shape[1] and 0 <= v < V.shape[2]:
                                total += K[o, c, i, j] * V[c, u, v]
                Z[o, y, x] = total
    return Z


def finite_differences(spec: LayerSpec, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """dJ/dK, dJ/dV, dJ/db of ``J = sum(G * Z)`` by central differences of ``naive_forward``."""
    def loss(a: dict[str, np.ndarray]) -> float:
        return float(np.sum(a["G"] * naive_forward(spec, a["V"], a["K"], a["b"])))

    grads = {}
    for name in ("K", "V", "b"):
        grad = np.zeros_like(arrays[name])
        for index in np.ndindex(*arrays[name].shape):
            moved = {k: a.copy() for k, a in arrays.items()}
            moved[name][index] += 0.5
            up = loss(moved)
            moved[name][index] -= 1.0
            grad[index] = up - loss(moved)  # J is linear in each array: exact
        grads[name] = grad
    return grads


def as_float(m: np.ndarray) -> np.ndarray:
    return np.array([[float(x) for x in row] for row in m])


def seed_values(**more: object) -> dict[str, object]:
    return {"V": SEED_V, "K": SEED_K, **more}


# -- seed 001 ----------------------------------------------------------------------------------


def test_seed_001_numbers_give_its_output() -> None:
    text = section(to_latex(SEED, values=seed_values(b=0)))
    Z = matrix_after(text, "Z = ")
    assert Z.tolist() == SEED_CORRELATION
    V, K = np.array(SEED_V, float), np.array(SEED_K, float)
    assert np.array_equal(as_float(Z), naive_forward(SEED, V[None], K[None, None], [0.0])[0])
    # seed 001's first line, 1.1 + 2.6 + -1.5 + 0.3 = 8: the products of the window, summed
    line = re.search(r"\{Z\}_\{1,1\} &= (.*?) = (\d+)", text)
    assert line, text
    products = [[cell(f) for f in t.split(r"\cdot")] for t in line.group(1).split(" + ")]
    assert [p for p in products if len(p) == 2] == [[1, 1], [2, 6], [-1, 5], [0, 3]]
    assert sum(p[0] * p[1] for p in products if len(p) == 2) == int(line.group(2)) == 8
    assert "(-1) \\cdot 5" in line.group(1)  # a negative factor in parentheses


def test_seed_001_convolution_is_its_rotated_kernel_example() -> None:
    spec = SEED.replace(mode="convolution")
    text = section(to_latex(spec, values=seed_values(b=0)))
    Z = matrix_after(text, "Z = ")
    assert Z.tolist() == SEED_CONVOLUTION
    V, K = np.array(SEED_V, float), np.array(SEED_K, float)
    rotated = naive_forward(SEED, V[None], np.rot90(K, 2)[None, None], [0.0])[0]
    assert np.array_equal(as_float(Z), rotated)
    assert "rotated by $180^\\circ$" in text


def test_arrays_not_given_stay_symbolic() -> None:
    # no b: every output keeps + b; no G: no gradient numbers, and the document says so
    text = section(to_latex(SEED, values=seed_values()))
    Z = matrix_after(text, "Z = ")
    for got, want in zip(Z.ravel(), np.array(SEED_CORRELATION).ravel()):
        assert isinstance(got, str) and sorted(got.replace(" ", "").split("+")) == \
            sorted([str(want), "b"]), got
    assert "$b$ and $G$ stay symbolic" in text
    assert "The upstream gradient $G$ is not given" in text
    assert r"\frac{\partial J}{\partial K} = " not in text
    assert "compared at integer values" in text  # the entries holding b were checked too


def test_the_example_file_is_seed_001s() -> None:
    data = json.loads(EXAMPLE.read_text())
    assert data["V"] == SEED_V and data["K"] == SEED_K and data["b"] == 0
    text = section(to_latex(SEED, values=EXAMPLE))
    assert matrix_after(text, "Z = ").tolist() == SEED_CORRELATION
    G = np.array(data["G"], float)
    V, K = np.array(SEED_V, float)[None], np.array(SEED_K, float)[None, None]
    grads = finite_differences(SEED, {"V": V, "K": K, "b": np.zeros(1), "G": G[None]})
    assert np.array_equal(as_float(matrix_after(text, r"\frac{\partial J}{\partial K} = ")),
                          grads["K"][0, 0])
    assert np.array_equal(as_float(matrix_after(text, r"\frac{\partial J}{\partial V} = ")),
                          grads["V"][0])
    assert float(scalar_after(text, r"\frac{\partial J}{\partial b} = ")) == grads["b"][0]
    assert "No step size was given" in text
    # the command that regenerates the document names the file
    assert f"--values {EXAMPLE}" in to_latex(SEED, values=str(EXAMPLE)).splitlines()[2]


def test_the_example_file_reads_in_corrgen_derive_too(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["derive", "--values", str(EXAMPLE)]) == 0
    out = capsys.readouterr().out
    assert re.search(r"^Z\[1, 1, 1\] = .* = 8$", out, re.M), out


# -- any layer: stride, padding, dilation, mode, channels --------------------------------------


def _random_values(spec: LayerSpec, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    out = {"V": rng.integers(-4, 5, spec.input), "K": rng.integers(-3, 4, spec.kernel),
           "G": rng.integers(-3, 4, spec.output_shape)}
    if spec.bias:
        out["b"] = rng.integers(-2, 3, spec.kernel[:1])
    return {k: a.astype(float) for k, a in out.items()}


def _check_all(spec: LayerSpec, text: str, arrays: dict[str, np.ndarray], lr: float,
               lhs: dict[str, str]) -> None:
    """Every matrix of the section against the loop oracle and finite differences; ``lhs``:
    the printed names with ``{o}``, ``{c}`` (1-based) of Z, dK, dV, db and the step's K."""
    C, n_out = spec.input[0], spec.kernel[0]
    b = arrays.get("b", np.zeros(n_out))
    Z = naive_forward(spec, arrays["V"], arrays["K"], b)
    grads = finite_differences(spec, {**arrays, "b": b.copy()})
    ref = reference.backward(spec, arrays["V"][None], arrays["K"], arrays["G"][None])
    assert np.allclose(grads["V"], ref[0][0]) and np.allclose(grads["K"], ref[1])
    for o in range(n_out):
        assert np.array_equal(as_float(matrix_after(text, lhs["Z"].format(o=o + 1))), Z[o])
        for c in range(C):
            name = lhs["dK"].format(o=o + 1, c=c + 1)
            assert np.array_equal(as_float(matrix_after(text, name)), grads["K"][o, c])
            stepped = matrix_after(text, lhs["step"].format(o=o + 1, c=c + 1), last=True)
            assert np.allclose(as_float(stepped), arrays["K"][o, c] - lr * grads["K"][o, c],
                               rtol=0, atol=1e-12)
    for c in range(C):
        assert np.array_equal(as_float(matrix_after(text, lhs["dV"].format(c=c + 1))),
                              grads["V"][c])
    if spec.bias:
        assert np.array_equal(as_float(matrix_after(text, lhs["db"])).ravel(), grads["b"])


def test_strided_padded_multichannel_layer_with_g_matches_the_oracles() -> None:
    arrays = _random_values(STRIDED, 3)
    values = {k: a.astype(int).tolist() for k, a in arrays.items()}
    text = section(to_latex(STRIDED, values={**values, "lr": 0.25}))
    _check_all(STRIDED, text, arrays, 0.25, {
        "Z": "{{Z}}_{{{o}}} = ", "dK": r"\frac{{\partial J}}{{\partial {{K}}_{{{o},{c}}}}} = ",
        "dV": r"\frac{{\partial J}}{{\partial {{V}}_{{{c}}}}} = ",
        "db": r"\frac{\partial J}{\partial b} = ", "step": "{{K}}_{{{o},{c}}} \\leftarrow"})
    assert "the taps on the zero padding add nothing" in text
    assert r"\alpha = \frac{1}{4}" in text


@pytest.mark.parametrize("spec", [
    LayerSpec(input=(1, 6, 5), kernel=(2, 1, 2, 3), padding="same", dilation=(2, 1),
              mode="convolution"),
    LayerSpec(input=(2, 4, 4), kernel=(1, 2, 2, 2), stride=(1, 3), padding=(2, 0),
              bias=False),
], ids=["same-dilated-convolution", "uneven-stride-no-bias"])
def test_other_layers_match_the_oracles(spec: LayerSpec) -> None:
    arrays = _random_values(spec, 5)
    values = {k: a.astype(int).tolist() for k, a in arrays.items()}
    text = section(to_latex(spec, values={**values, "lr": 1}))
    multi_o, multi_c = spec.kernel[0] > 1, spec.input[0] > 1
    z = "{{Z}}_{{{o}}} = " if multi_o else "Z = "
    k = ("{{K}}_{{{o},{c}}}" if multi_o and multi_c else "{{K}}_{{{o}}}" if multi_o
         else "{{K}}_{{{c}}}" if multi_c else "K")
    v = "{{V}}_{{{c}}}" if multi_c else "V"
    _check_all(spec, text, arrays, 1.0, {
        "Z": z, "dK": rf"\frac{{{{\partial J}}}}{{{{\partial {k}}}}} = ",
        "dV": rf"\frac{{{{\partial J}}}}{{{{\partial {v}}}}} = ",
        "db": r"\frac{\partial J}{\partial b} = ", "step": k + r" \leftarrow"})


def test_seed003_notation_and_index_base_0() -> None:
    text = section(to_latex(SEED, index_base=0, notation="seed003",
                            values=seed_values(b=0, G=[[1, 0], [0, 0]])))
    assert matrix_after(text, "y = ").tolist() == SEED_CORRELATION
    # G picks the top-left output: dE/dw is the input's top-left window
    assert matrix_after(text, r"\frac{\partial E}{\partial w} = ").tolist() == [[1, 6], [5, 3]]
    assert r"{y}_{0,0} &= 1 \cdot 1" in text


def test_only_some_arrays_given_are_checked_at_integers_of_the_others() -> None:
    # K and G without V: dJ/dV is numbers, Z and dJ/dK hold V's symbols
    G = [[1, -1], [0, 2]]
    text = section(to_latex(SEED, values={"K": SEED_K, "G": G}))
    dV = matrix_after(text, r"\frac{\partial J}{\partial V} = ")
    want = reference.grad_input(SEED, np.array(SEED_K, float)[None, None],
                                np.array(G, float)[None, None])[0, 0]
    assert np.array_equal(as_float(dV), want)
    assert all(isinstance(x, str) and "V" in x for x in matrix_after(text, "Z = ").ravel())
    assert "compared at integer values" in text


def test_values_none_leaves_the_document_as_it_was() -> None:
    assert "Worked example" not in to_latex(SEED)
    assert document_content(SEED).example is None


# -- checks and errors -------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["forward", "grad_weight", "grad_input"])
def test_a_number_the_reference_disagrees_with_is_refused(which: str,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    real = getattr(reference, which)

    def off_by_one(*args: object, **kwargs: object) -> np.ndarray:
        out = real(*args, **kwargs).copy()
        out.flat[-1] += 1
        return out

    monkeypatch.setattr(reference, which, off_by_one)
    with pytest.raises(DerivationError, match="worked example: .* NumPy reference gives"):
        to_latex(SEED, values=seed_values(b=0, G=[[1, 2], [3, 4]]))


@pytest.mark.parametrize("values, message", [
    ({"V": [[1, 2], [3, 4]], "K": SEED_K}, r"V has shape \(1, 3, 3\) \(9 elements\), got 4"),
    ({"V": SEED_V, "W": SEED_K}, r"unknown array 'W'; expected some of V, K, b, G, and lr"),
    ({"V": SEED_V, "K": [[1, "two"], [3, 4]]}, r"K: expected numbers, got 'two'"),
    ({"V": SEED_V, "lr": -0.1}, r"lr \(the SGD step size alpha\) must be a positive number"),
    ({"V": SEED_V, "lr": "0.1"}, r"must be a positive number, got '0.1'"),
    ({"lr": 0.1}, r"no array given; expected some of V, K, b, G"),
])
def test_bad_values_are_clear_spec_errors(values: dict[str, object], message: str) -> None:
    with pytest.raises(SpecError, match=message):
        to_latex(SEED, values=values)


def test_bad_values_files_and_a_bias_the_layer_lacks(tmp_path: Path) -> None:
    with pytest.raises(SpecError, match="b: the layer has no bias"):
        to_latex(SEED.replace(bias=False), values=seed_values(b=0))
    with pytest.raises(SpecError, match="cannot read it"):
        to_latex(SEED, values=tmp_path / "missing.json")
    with pytest.raises(SpecError, match="expected a JSON file's path or a dict .*, got list"):
        to_latex(SEED, values=[SEED_V, SEED_K])  # type: ignore[arg-type]
    (tmp_path / "bad.json").write_text("[1, 2]")
    with pytest.raises(SpecError, match="expected a JSON object of arrays by name"):
        to_latex(SEED, values=tmp_path / "bad.json")


def _strings(value: object) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            yield from _strings(getattr(value, f.name))
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item)


def test_the_example_content_has_no_english() -> None:
    # as the rest of the content: LaTeX math, numbers and names of cases; the template speaks
    example = document_content(SEED, values=seed_values(G=[[1, 0], [0, 1]], lr=0.5)).example
    assert example is not None
    for text in _strings(example):
        if re.fullmatch(r"[a-z0-9_]*", text):  # the name of a case ("input", "pairs")
            continue
        math = re.sub(r"\\(?:begin|end)\{[^{}]*\}|\\[A-Za-z]+", "", text)
        assert not re.search(r"[A-Za-z]{2,}", math), text


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
@pytest.mark.parametrize("values", [EXAMPLE, {**json.loads(EXAMPLE.read_text()), "lr": 0.1}],
                         ids=["file", "with-lr"])
def test_the_seed_document_with_values_compiles(values: object, tmp_path: Path) -> None:
    path = tmp_path / "seed.tex"
    write_atomic(path, to_latex(SEED, values=values))
    pdf, pages = compile_pdf(path)
    assert pdf.read_bytes().startswith(b"%PDF") and pages >= 1


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex is not installed")
def test_a_values_file_whose_path_has_latex_specials_compiles(tmp_path: Path) -> None:
    """The provenance line names the values file: a path with an underscore (a checkout in
    /tmp/ci_clone stopped pdflatex with "Missing $ inserted") or any other LaTeX special
    character is printed as text."""
    folder = tmp_path / "my_run #1 50% & $x~^{y}\\z"
    folder.mkdir()
    values = folder / "seed_values.json"
    shutil.copy(EXAMPLE, values)
    path = tmp_path / "seed.tex"
    text = to_latex(SEED, values=values)
    assert r"my\_run \#1 50\% \& \$x\~{}\^{}\{y\}\textbackslash{}z" in text
    write_atomic(path, text)
    pdf, pages = compile_pdf(path)
    assert pdf.read_bytes().startswith(b"%PDF") and pages >= 1
