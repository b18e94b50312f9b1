"""The LaTeX derivation documents (``derive/latex/``, ``codegen/document.py``, ``corrgen latex``).

The seed document's equations are checked against the seeds' worked examples on the
generated .tex text, term sets compared after normalising (term order may differ); every
document of the grid is compiled with a real ``pdflatex -halt-on-error``.
"""

from __future__ import annotations

import argparse
import ast
import dataclasses
import difflib
import functools
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import codegen.document as latex_doc
import derive.latex.expansions as expansions
import derive.vec_forms as vec_forms
from codegen import cli
from codegen.document import compile_pdf, to_latex, write_atomic
from derive import LayerSpec
from derive.errors import DerivationError
from derive.latex import LatexError, document_content, parse_elements

ROOT = Path(__file__).resolve().parent.parent
GOLDEN = ROOT / "generated" / "seed_3x3_2x2.tex"
SEED = LayerSpec(input=(1, 3, 3), kernel=(1, 1, 2, 2))

#: The grid of issue 3: every document compiles.
GRID = {
    "seed": SEED,
    "1d": LayerSpec(input=(1, 1, 4), kernel=(1, 1, 1, 2)),
    "strided-multichannel": LayerSpec(input=(2, 5, 5), kernel=(2, 2, 3, 3), stride=2,
                                      padding=1),
    "padded": LayerSpec(input=(1, 4, 4), kernel=(1, 1, 3, 3), padding=1),
    "dilated": LayerSpec(input=(1, 5, 5), kernel=(1, 1, 2, 2), dilation=2),
    "convolution": LayerSpec(input=(1, 3, 3), kernel=(1, 1, 2, 2), mode="convolution"),
    "large": LayerSpec(input=(3, 32, 32), kernel=(16, 3, 5, 5), padding=2),
}

@functools.cache
def document(name: str) -> tuple[str, float]:
    """The grid document ``name`` and the seconds it took to generate (made once per run)."""
    start = time.perf_counter()
    text = to_latex(GRID[name])
    return text, time.perf_counter() - start


needs_pdflatex = pytest.mark.skipif(
    shutil.which("pdflatex") is None,
    reason="pdflatex is not installed (apt-get install texlive-latex-base "
           "texlive-latex-recommended texlive-fonts-recommended)")

#: What .ci/run installs (apt-get --no-install-recommends), and texlive-base, which they need.
CI_TEXLIVE = ("texlive-latex-base", "texlive-latex-recommended", "texlive-fonts-recommended")


@pytest.fixture
def umask_022() -> Iterator[None]:
    """The usual umask for the test's duration (the process's own is put back after)."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


# -- reading equations back from the .tex ------------------------------------------------------


def _norm(text: str) -> str:
    """``{V}_{1,1} \\cdot {G}_{1,1}`` -> ``V_{1,1} G_{1,1}``; trailing punctuation dropped."""
    text = re.sub(r"\{(\\?[A-Za-z]+)\}_", r"\1_", text)
    text = re.sub(r"\\(cdot|times)", " ", text)
    return re.sub(r"\s+", " ", text).strip().rstrip(".,").strip()


def equations(tex: str) -> list[tuple[str, list[str]]]:
    """Every ``align*`` equation as (left side, [right side of each step]), normalised;
    continuation lines (``\\quad + ...``) are joined to their step."""
    found: list[tuple[str, list[str]]] = []
    for body in re.findall(r"\\begin\{align\*\}(.*?)\\end\{align\*\}", tex, re.S):
        current: tuple[str, list[str]] | None = None
        for row in body.split("\\\\\n"):
            if not row.strip():
                continue
            left, right = (part.strip() for part in row.split("&", 1))
            if left:
                current = (_norm(left), [])
                found.append(current)
            assert current is not None, row
            if right.startswith(r"\quad +"):
                current[1][-1] += " + " + _norm(right[len(r"\quad +"):])
            else:
                current[1].append(_norm(right.removeprefix("=")))
    return found


def terms(text: str) -> Counter[tuple[str, ...]]:
    """A sum as a multiset of terms, each term its sorted factors."""
    text = re.sub(r"\\quad\\text\{\(\d+ terms\)\}", "", text)
    return Counter(tuple(sorted(t.split())) for t in _norm(text).split(" + "))


def results(tex: str, lhs: str) -> list[Counter[tuple[str, ...]]]:
    """The last step of every equation whose left side is ``lhs`` (written as in seeds),
    general formulas (sums over index letters) left out."""
    want = _norm(lhs)
    return [terms(steps[-1]) for left, steps in equations(tex)
            if left == want and r"\sum" not in steps[-1]]


def parse(seed_text: str) -> Counter[tuple[str, ...]]:
    """A seed's sum, ``K_{1,1} \\times V_{1,1} + ...``, as the same multiset."""
    return terms(seed_text)


# -- the seed document: golden file and the seeds' worked examples -----------------------------


@pytest.fixture(scope="module")
def seed_tex() -> str:
    return to_latex(SEED)


def _same_as_checked_in(path: Path, text: str) -> None:
    """Fail with a unified diff unless the golden file ``path`` holds exactly ``text``."""
    assert path.exists(), f"{path} is missing; run pytest --update-golden"
    golden = path.read_text()
    if golden != text:
        diff = "\n".join(difflib.unified_diff(
            golden.splitlines(), text.splitlines(), "checked in", "generated", lineterm=""))
        pytest.fail(f"{path.relative_to(ROOT)} is out of date:\n{diff}\n"
                    "see the diff above; run python -m pytest --update-golden to rewrite it")


def test_seed_document_matches_the_checked_in_file(seed_tex: str, update_golden: bool) -> None:
    if update_golden:
        write_atomic(GOLDEN, seed_tex)
        pytest.skip(f"rewrote {GOLDEN.relative_to(ROOT)}")
    _same_as_checked_in(GOLDEN, seed_tex)


#: Documents checked in beside the seed's, as generated/derivation_<name>.tex (name -> the
#: ``corrgen latex`` options). The seed's has no padding, stride, dilation, channels,
#: convolution, elided sum, proxy or unprintable matrix; between them, these run every
#: branch of the document's code that a valid layer reaches, so a change to any sentence or
#: equation of any of them shows here as a diff.
DOCUMENTS = {
    "base0": "--input 3x3 --kernel 2x2 --index-base 0",
    "elements3": "--elements 3",
    "oned_strided_seed003": "--input 3x1x10 --kernel 2x3x1x3 --stride 2 --padding 1 "
                            "--notation seed003 --index-base 0",
    "dilated_full_conv": "--input 1x7x7 --kernel 1x1x3x3 --dilation 2 --padding full "
                         "--convolution --no-bias",
    "uncovered_elided": "--input 26x26 --kernel 2x2 --stride 3",
    "proxy_same": "--input 2x16x16 --kernel 3x2x3x3 --padding same --elements 2",
    "single_output": "--input 2x2 --kernel 2x2",
    "column": "--input 6x1 --kernel 2x1",
    "cropped_conv": "--input 3x3 --kernel 2x2 --padding 3x0 --stride 2x1 --convolution",
    "wide_dilation": "--input 4x5 --kernel 2x3 --dilation 1x2",
    "many_channels": "--input 5x3x3 --kernel 1x5x2x2 --elements 1",
    "three_outputs": "--input 2x3x3 --kernel 3x2x2x2 --no-bias --elements 1",
}


@pytest.mark.parametrize("name", DOCUMENTS)
def test_documents_match_the_checked_in_files(name: str, tmp_path: Path, update_golden: bool,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    golden = ROOT / "generated" / f"derivation_{name}.tex"
    out = golden if update_golden else tmp_path / golden.name
    assert cli.main(["latex", *DOCUMENTS[name].split(), "-o", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    if update_golden:
        pytest.skip(f"rewrote {golden.relative_to(ROOT)}")
    _same_as_checked_in(golden, out.read_text())


def test_every_checked_in_document_is_still_generated() -> None:
    found = {p.name for p in (ROOT / "generated").glob("derivation_*.tex")}
    assert found == {f"derivation_{name}.tex" for name in DOCUMENTS}


SEED000_FORWARD = {  # seed 000: Z_{1,1} = K_{1,1} x V_{1,1} + ..., no bias in the seed
    "Z_{1,1}": r"K_{1,1} \times V_{1,1} + K_{1,2} \times V_{1,2} + K_{2,1} \times V_{2,1} "
               r"+ K_{2,2} \times V_{2,2}",
    "Z_{1,2}": r"K_{1,1} \times V_{1,2} + K_{1,2} \times V_{1,3} + K_{2,1} \times V_{2,2} "
               r"+ K_{2,2} \times V_{2,3}",
    "Z_{2,1}": r"K_{1,1} \times V_{2,1} + K_{1,2} \times V_{2,2} + K_{2,1} \times V_{3,1} "
               r"+ K_{2,2} \times V_{3,2}",
    "Z_{2,2}": r"K_{1,1} \times V_{2,2} + K_{1,2} \times V_{2,3} + K_{2,1} \times V_{3,2} "
               r"+ K_{2,2} \times V_{3,3}",
}

# seed 001's kernel and input gradients (its x, k, dE/dy written in seed 000's V, K, G)
SEED001_GRAD = {
    r"\frac{\partial J}{\partial K_{1,1}}": "G_{1,1} V_{1,1} + G_{1,2} V_{1,2} + G_{2,1} V_{2,1} "
                                            "+ G_{2,2} V_{2,2}",
    r"\frac{\partial J}{\partial K_{1,2}}": "G_{1,1} V_{1,2} + G_{1,2} V_{1,3} + G_{2,1} V_{2,2} "
                                            "+ G_{2,2} V_{2,3}",
    r"\frac{\partial J}{\partial K_{2,1}}": "G_{1,1} V_{2,1} + G_{1,2} V_{2,2} + G_{2,1} V_{3,1} "
                                            "+ G_{2,2} V_{3,2}",
    r"\frac{\partial J}{\partial K_{2,2}}": "G_{1,1} V_{2,2} + G_{1,2} V_{2,3} + G_{2,1} V_{3,2} "
                                            "+ G_{2,2} V_{3,3}",
    r"\frac{\partial J}{\partial V_{1,1}}": "G_{1,1} K_{1,1}",
    r"\frac{\partial J}{\partial V_{1,2}}": "G_{1,1} K_{1,2} + G_{1,2} K_{1,1}",
    r"\frac{\partial J}{\partial V_{1,3}}": "G_{1,2} K_{1,2}",
    r"\frac{\partial J}{\partial V_{2,1}}": "G_{1,1} K_{2,1} + G_{2,1} K_{1,1}",
    r"\frac{\partial J}{\partial V_{2,2}}": "G_{1,1} K_{2,2} + G_{1,2} K_{2,1} + G_{2,1} K_{1,2} "
                                            "+ G_{2,2} K_{1,1}",
    r"\frac{\partial J}{\partial V_{2,3}}": "G_{1,2} K_{2,2} + G_{2,2} K_{1,2}",
    r"\frac{\partial J}{\partial V_{3,1}}": "G_{2,1} K_{2,1}",
    r"\frac{\partial J}{\partial V_{3,2}}": "G_{2,1} K_{2,2} + G_{2,2} K_{2,1}",
    r"\frac{\partial J}{\partial V_{3,3}}": "G_{2,2} K_{2,2}",
    r"\frac{\partial J}{\partial b}": "G_{1,1} + G_{1,2} + G_{2,1} + G_{2,2}",
}


@pytest.mark.parametrize("lhs", SEED000_FORWARD)
def test_seed_forward_equations_are_seed_000s(seed_tex: str, lhs: str) -> None:
    no_bias = to_latex(SEED.replace(bias=False))
    assert results(no_bias, lhs) == [parse(SEED000_FORWARD[lhs])]
    with_bias = parse(SEED000_FORWARD[lhs]) + Counter({("b",): 1})
    assert results(seed_tex, lhs) == [with_bias]


def test_seed_000_lines_are_there_in_its_order(seed_tex: str) -> None:
    # The forward line and dJ/dV_{2,2} as seed 000 prints them, term for term.
    assert (r"{Z}_{1,1} &= {K}_{1,1} \times {V}_{1,1} + {K}_{1,2} \times {V}_{1,2} + "
            r"{K}_{2,1} \times {V}_{2,1} + {K}_{2,2} \times {V}_{2,2} + b,") in seed_tex
    assert (r"&= {K}_{2,2} \cdot {G}_{1,1} + {K}_{2,1} \cdot {G}_{1,2} + {K}_{1,2} \cdot "
            r"{G}_{2,1} + {K}_{1,1} \cdot {G}_{2,2}.") in seed_tex


@pytest.mark.parametrize("lhs", SEED001_GRAD)
def test_seed_gradients_are_the_seeds_worked_examples(seed_tex: str, lhs: str) -> None:
    found = results(seed_tex, lhs)
    assert found, f"no equation for {lhs}"
    # every equation with that left side (chain rule, constraint reading) ends in the seed's sum
    assert all(r == parse(SEED001_GRAD[lhs]) for r in found), found


def test_seed_chain_rule_lists_every_output_with_each_factor_evaluated(seed_tex: str) -> None:
    (steps,) = [s for left, s in equations(seed_tex)
                if left == _norm(r"\frac{\partial J}{\partial {V}_{1,1}}") and len(s) > 1]
    assert steps[0] == (r"\sum_{y=1}^{2} \sum_{x=1}^{2} \frac{\partial Z_{y,x}}"
                        r"{\partial V_{1,1}} \frac{\partial J}{\partial Z_{y,x}}")
    assert terms(steps[1]) == terms(
        r"\frac{\partial Z_{1,1}}{\partial V_{1,1}} \frac{\partial J}{\partial Z_{1,1}} + "
        r"\frac{\partial Z_{1,2}}{\partial V_{1,1}} \frac{\partial J}{\partial Z_{1,2}} + "
        r"\frac{\partial Z_{2,1}}{\partial V_{1,1}} \frac{\partial J}{\partial Z_{2,1}} + "
        r"\frac{\partial Z_{2,2}}{\partial V_{1,1}} \frac{\partial J}{\partial Z_{2,2}}")
    assert terms(steps[2]) == parse("K_{1,1} G_{1,1} + 0 G_{1,2} + 0 G_{2,1} + 0 G_{2,2}")
    assert terms(steps[3]) == parse("K_{1,1} G_{1,1}")


def test_seed_constraint_reading_is_seed_000s(seed_tex: str) -> None:
    # seed 000: for k = 2, p = 1 gives n = 2 and p = 2 gives n = 1; likewise for rows.
    block = seed_tex.split(r"Partial derivative with respect to ${V}_{2,2}$")[1]
    block = block.split(r"\paragraph")[0]
    assert (r"\item $(l - 1) \cdot 1 + m = 2$: $m = 1 \Rightarrow l = 2$, "
            r"$m = 2 \Rightarrow l = 1$") in block
    assert (r"\item $(n - 1) \cdot 1 + q = 2$: $q = 1 \Rightarrow n = 2$, "
            r"$q = 2 \Rightarrow n = 1$") in block
    corner = seed_tex.split(r"Partial derivative with respect to ${V}_{1,1}$")[1]
    assert r"$m = 1 \Rightarrow l = 1$, $m = 2$: no $l$" in corner.split(r"\paragraph")[0]


def test_seed_compact_forms_are_seed_003s_matrices(seed_tex: str) -> None:
    # (B.18): dJ/dK = V * G, valid; (B.26): dJ/dV = zero-padded G * rot180(K)
    v = (r"\begin{bmatrix}{V}_{1,1} & {V}_{1,2} & {V}_{1,3}\\{V}_{2,1} & {V}_{2,2} & {V}_{2,3}"
         r"\\{V}_{3,1} & {V}_{3,2} & {V}_{3,3}\end{bmatrix}")
    g = r"\begin{bmatrix}{G}_{1,1} & {G}_{1,2}\\{G}_{2,1} & {G}_{2,2}\end{bmatrix}"
    assert rf"\frac{{\partial J}}{{\partial K}} = {v} \star {g}" in seed_tex
    padded = (r"\begin{bmatrix}0 & 0 & 0 & 0\\0 & {G}_{1,1} & {G}_{1,2} & 0\\0 & {G}_{2,1} & "
              r"{G}_{2,2} & 0\\0 & 0 & 0 & 0\end{bmatrix}")
    rot = r"\begin{bmatrix}{K}_{2,2} & {K}_{2,1}\\{K}_{1,2} & {K}_{1,1}\end{bmatrix}"
    assert rf"\frac{{\partial J}}{{\partial V}} = {padded} \star {rot}" in seed_tex
    assert "2 + 2 - 1 = 3" in seed_tex  # the full correlation's size (not h_I + h_F/2 + 1)


def _bmatrix_after(tex: str, lhs: str) -> list[list[str]]:
    """The cells of the last matrix of the display that starts with ``lhs``."""
    display = tex.split(rf"\fitwidth{{{lhs} = ")[1].split(r"} \]")[0]
    body = display.rsplit(r"\begin{bmatrix}", 1)[1].split(r"\end{bmatrix}")[0]
    return [[_norm(cell) for cell in row.split(" & ")] for row in body.split(r"\\")]


def _seed_names(letter: str, rows: int, cols: int) -> np.ndarray:
    """``letter_{r,t}``, 1-based, as an array of the document's (normalised) names."""
    return np.array([[f"{letter}_{{{r + 1},{t + 1}}}" for t in range(cols)]
                     for r in range(rows)], dtype=object)


def test_seed_matrix_form_is_seed_004s_im2col(seed_tex: str) -> None:
    # Seed 004, MATLAB's layout: V as a 1 x 9 matrix, positions column-major; phi's columns
    # the 2 x 2 windows (column-major over the outputs), each raveled column-major; W the
    # kernel raveled likewise. The oracle is NumPy's Fortran-order ravel of the names.
    v, k = _seed_names("V", 3, 3), _seed_names("K", 2, 2)
    section = seed_tex.split(r"\section{Matrix form (seed 004)}")[1]
    assert _bmatrix_after(section, r"\boldsymbol{V}") == [list(np.ravel(v, order="F"))]
    windows = [np.ravel(v[y:y + 2, x:x + 2], order="F") for x in range(2) for y in range(2)]
    phi = np.stack(windows, axis=1)
    assert _bmatrix_after(section, r"\phi(\operatorname{pad}(\boldsymbol{V}))") == phi.tolist()
    assert _bmatrix_after(section, "W") == [list(np.ravel(k, order="F"))]
    # P_phi: row r of window q picks the position phi[r, q] holds, from vec(V)
    p_phi = _bmatrix_after(section, r"P_{\phi}")
    flat = list(np.ravel(v, order="F"))
    want = [["1" if flat[col] == phi[r, q] else "0" for col in range(9)]
            for q in range(4) for r in range(4)]
    assert p_phi == want
    assert r"P_{\text{pad}} = \mathcal{I}_{9}" in section
    assert _bmatrix_after(section, r"S = W \phi(\operatorname{pad}(\boldsymbol{V})) + "
                                   r"\boldsymbol{b} \mathbb{1}_{4}^T") == [
        list(np.ravel(_seed_names("Z", 2, 2), order="F"))]
    # the gradients in the same orders: dJ/dW as W, dJ/dvec(V) as vec(V)
    dj = np.vectorize(lambda name: _norm(rf"\frac{{\partial J}}{{\partial {name}}}"))
    assert _bmatrix_after(section, r"\frac{\partial J}{\partial W}") == [
        list(dj(np.ravel(k, order="F")))]
    assert _bmatrix_after(
        section, r"\left(\frac{\partial J}{\partial \operatorname{vec}(\boldsymbol{V})}\right)^T"
    ) == [list(dj(flat))]
    for tag in (3, 4, 5):
        assert rf"\tag{{{tag}}}" in section
    assert r"(\mathcal{I}_{4} \otimes W) \operatorname{vec}" in section
    assert "on this layer itself, element by element, each element in every form: 4 forward, " \
           "4 kernel-gradient, 9 input-gradient, 1 bias-gradient elements" in seed_tex


def test_a_kernel_covering_its_input_reads_as_seed_004s_dense_layer() -> None:
    tex = to_latex(LayerSpec(input=(1, 2, 2), kernel=(1, 1, 2, 2)))
    section = tex.split(r"\section{Matrix form (seed 004)}")[1]
    assert r"\tag{8}" in section and r"\tag{9}" in section
    assert r"= \mathcal{I}_{4} \operatorname{vec}(\boldsymbol{V})" in section
    assert _bmatrix_after(section, r"P_{\phi}") == np.eye(4, dtype=int).astype(str).tolist()
    assert r"\tag{8}" not in to_latex(SEED)


def test_large_layers_print_the_matrix_forms_sizes_not_their_matrices() -> None:
    tex = document("large")[0]
    section = tex.split(r"\section{Matrix form (seed 004)}")[1].split(r"\section")[0]
    # 75 taps x 1024 windows rows, 3 x 36 x 36 padded input columns
    assert r"P_{\phi} \in \{0, 1\}^{76800 \times 3888}" in section
    assert r"\mathcal{I}_{1024} \otimes W" in section
    assert "too large to print" in section and "reduced proxy" in section
    assert r"\begin{bmatrix}" not in section


def test_a_wrong_matrix_form_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # W reading the wrong kernel tap must not reach the document, large layer or small
    real = vec_forms.kernel_element
    monkeypatch.setattr(vec_forms, "kernel_element",
                        lambda spec, o, c, i, j: real(spec, o, c, j, i))
    for spec in (LayerSpec(input=(1, 3, 3), kernel=(1, 1, 2, 3)),
                 LayerSpec(input=(1, 9, 9), kernel=(1, 1, 2, 3))):
        with pytest.raises(DerivationError, match="seed 004's form"):
            to_latex(spec)


def test_seed_setup_and_provenance(seed_tex: str) -> None:
    assert r"\left\lfloor \frac{3 + 0 + 0 - 1 \cdot (2 - 1) - 1}{1} \right\rfloor + 1 = 2" \
        in seed_tex
    assert r"V = \begin{bmatrix}{V}_{1,1}" in seed_tex  # channel indices of extent 1 dropped
    assert "Every input row and column is read" in seed_tex
    assert "generated by corrgen 0.1.0" in seed_tex
    assert r"\texttt{corrgen latex -{}-input 3x3 -{}-kernel 2x2}" in seed_tex
    assert "on this layer itself" in seed_tex


# -- notation, index base, other layers ---------------------------------------------------------


def test_seed003_notation_index_base_0_reproduces_appendix_b() -> None:
    tex = to_latex(LayerSpec(input=(1, 4, 4), kernel=(1, 1, 2, 2)), index_base=0,
                   notation="seed003")
    # (B.11); the seed labels its third line y_{03}, but those terms are y_{02}'s
    assert results(tex, "y_{0,0}") == [parse(
        r"w_{0,0} x_{0,0} + w_{0,1} x_{0,1} + w_{1,0} x_{1,0} + w_{1,1} x_{1,1} + b")]
    assert results(tex, "y_{0,2}") == [parse(
        r"w_{0,0} x_{0,2} + w_{0,1} x_{0,3} + w_{1,0} x_{1,2} + w_{1,1} x_{1,3} + b")]
    # (B.17) with m = n = 0
    assert results(tex, r"\frac{\partial E}{\partial w_{0,0}}") == [parse(" + ".join(
        rf"\delta_{{{i},{j}}} x_{{{i},{j}}}" for i in range(3) for j in range(3)))]
    # (B.25): dE/dx_{00} = delta_{00} w_{00}
    found = results(tex, r"\frac{\partial E}{\partial x_{0,0}}")
    assert found and all(r == parse(r"\delta_{0,0} w_{0,0}") for r in found)
    # (B.26): the zero-padded delta and the rotated filter
    assert (r"\begin{bmatrix}0 & 0 & 0 & 0 & 0\\0 & {\delta}_{0,0} & {\delta}_{0,1} & "
            r"{\delta}_{0,2} & 0\\") in tex
    assert r"\otimes \begin{bmatrix}{w}_{1,1} & {w}_{1,0}\\{w}_{0,1} & {w}_{0,0}\end{bmatrix}" \
        in tex
    assert r"\delta" in tex and "Indices are 0-based" in tex


def test_one_dimensional_layer_reads_like_seed_000s_isolated_sum() -> None:
    tex = document("1d")[0]
    # seed 000: dJ/dV_2 = K_1 G_2 + K_2 G_1 (the row index of extent 1 is left out)
    found = results(tex, r"\frac{\partial J}{\partial V_{2}}")
    assert found and all(r == parse("K_{1} G_{2} + K_{2} G_{1}") for r in found)
    assert results(tex, "Z_{1}") == [parse(r"K_{1} \times V_{1} + K_{2} \times V_{2} + b")]
    # seed 003 (B.7) in its own letters, 0-based
    tex = to_latex(GRID["1d"], index_base=0, notation="seed003")
    found = results(tex, r"\frac{\partial E}{\partial x_{1}}")
    assert found and all(r == parse(r"w_{1} \delta_{0} + w_{0} \delta_{1}") for r in found)


def test_convolution_mode_flips_the_kernel() -> None:
    tex = document("convolution")[0]
    assert results(tex, "Z_{1,1}") == [parse(
        r"K_{2,2} V_{1,1} + K_{2,1} V_{1,2} + K_{1,2} V_{2,1} + K_{1,1} V_{2,2} + b")]
    assert r"\operatorname{rot180}" in tex and r"\tilde{K}" in tex
    found = results(tex, r"\frac{\partial J}{\partial K_{2,2}}")
    assert found == [parse("G_{1,1} V_{1,1} + G_{1,2} V_{1,2} + G_{2,1} V_{2,1} + G_{2,2} V_{2,2}")]


def test_multichannel_strided_keeps_channel_indices() -> None:
    tex = document("strided-multichannel")[0]
    assert r"{V}_{c,u,v}" in tex and r"{K}_{o,c,i,j}" in tex
    # general index form: G rows (u - i + 3)/2 under the stride
    assert r"\frac{u - i + 3}{2}" in tex
    # dJ/dV_{1,1,1}: only the tap (2,2) of each output channel reaches it: (1 - 1 + 1 - 1)/2
    found = results(tex, r"\frac{\partial J}{\partial V_{1,1,1}}")
    assert found and all(r == parse("K_{1,1,2,2} G_{1,1,1} + K_{2,1,2,2} G_{2,1,1}")
                         for r in found)


def test_uncovered_rows_are_named_and_get_zero() -> None:
    spec = LayerSpec(input=(1, 5, 5), kernel=(1, 1, 2, 2), stride=3)
    assert spec.uncovered == ((2,), (2,))
    tex = to_latex(spec)
    assert "no window reads input rows 3 and columns 3" in tex
    found = results(tex, r"\frac{\partial J}{\partial V_{3,3}}")
    assert found and all(r == parse("0") for r in found)


def test_large_layer_selects_elements_and_stays_bounded() -> None:
    tex, seconds = document("large")
    assert seconds < 60
    heads = re.findall(r"Partial derivative with respect to \$(.*?)\$", tex)
    assert len(heads) == 9 + 9 + 2  # corners of first and last channel (pair) and a centre
    assert "reduced proxy" in tex and "1,138,368 terms" in tex
    assert r"\cdots" in tex and "(1024 terms)" in tex
    assert r"{K}_{1,1,3,3}" in heads  # the centre tap
    assert len(tex) < 400_000


# -- selection and options -----------------------------------------------------------------------


def test_parse_elements() -> None:
    assert parse_elements("all") == "all" and parse_elements(" Corners ") == "corners"
    assert parse_elements("7") == 7 and parse_elements(3) == 3
    for bad in ("some", "0", "101", -1, True):
        with pytest.raises(LatexError, match="elements="):
            parse_elements(bad)


def test_elements_count_and_all() -> None:
    tex = to_latex(SEED, elements=2)
    heads = re.findall(r"Partial derivative with respect to \$(.*?)\$", tex)
    assert heads == [r"{K}_{1,1}", r"{K}_{2,2}", r"{V}_{1,1}", r"{V}_{3,3}", "b"]
    assert "2 of the 9 input elements are expanded" in tex
    with pytest.raises(LatexError, match=r"elements='all': .* 20,672 elements .* corners"):
        to_latex(GRID["large"], elements="all")
    with pytest.raises(LatexError, match="notation='seed999'"):
        to_latex(SEED, notation="seed999")
    with pytest.raises(LatexError, match="index_base=2"):
        to_latex(SEED, index_base=2)


def test_a_wrong_expansion_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # A forward pass that reads the wrong kernel tap must not reach the document.
    real = expansions.kernel_element
    monkeypatch.setattr(expansions, "kernel_element",
                        lambda spec, o, c, i, j: real(spec, o, c, j, i))
    with pytest.raises(DerivationError, match="proven index form"):
        to_latex(LayerSpec(input=(1, 3, 3), kernel=(1, 1, 2, 3)))


@pytest.mark.parametrize("change", ["wrong_term", "missing_term"])
def test_a_wrong_elided_chain_rule_is_refused(monkeypatch: pytest.MonkeyPatch,
                                              change: str) -> None:
    # 49 outputs read each kernel element: its chain rule is printed elided, and checked
    # against the index form's terms by their indices.
    from derive.symbols import K, V

    real = expansions.Expansions.reads

    def reads(self: expansions.Expansions, var: object) -> list:
        found = real(self, var)
        if getattr(var, "base", None) != K:
            return found
        if change == "missing_term":
            return found[1:]
        return [(found[0][0], lambda: var * V[0, 7, 7]), *found[1:]]  # not read by (0, 0)

    monkeypatch.setattr(expansions.Expansions, "reads", reads)
    match = "printed terms not in the index form: \\[G\\[0, 0, 0\\]\\*V\\[0, 7, 7\\]\\]" \
        if change == "wrong_term" else "the chain rule has 48 terms"
    with pytest.raises(DerivationError, match=match):
        document_content(LayerSpec(input=(1, 8, 8), kernel=(1, 1, 2, 2)), elements=1)


def test_templates_are_found_from_the_package() -> None:
    env = latex_doc.environment()
    assert "derivation.tex.jinja" in env.list_templates()
    assert env.undefined.__name__ == "StrictUndefined"
    assert env.variable_start_string == r"\VAR{"


# -- derive computes, codegen renders ----------------------------------------------------------


def test_derive_imports_and_builds_a_document_without_jinja() -> None:
    # The symbolic half needs neither Jinja nor the templates: with jinja2 made unimportable,
    # derive, derive.spec and derive.latex import and compute a document's whole content.
    code = "\n".join([
        "import sys",
        "sys.modules['jinja2'] = None  # any import of jinja2 now raises ImportError",
        "import derive, derive.spec",
        "from derive import LayerSpec",
        "from derive.latex import document_content",
        "doc = document_content(LayerSpec(input=(1, 3, 3), kernel=(1, 1, 2, 2)))",
        "assert [s.name for s in doc.sections][0] == 'forward'",
        "assert sys.modules['jinja2'] is None",
        "print(sorted(m for m in sys.modules",
        "             if m.split('.')[0] in ('jinja2', 'markupsafe', 'templates', 'codegen')))",
    ])
    run = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "['jinja2']", run.stdout  # only the None placed above


def test_derive_runs_no_programs_and_reads_no_templates() -> None:
    # derive imports point nowhere but to itself, SymPy, NumPy and the standard library's
    # computing modules: no subprocess, no Jinja, no templates, never codegen.
    banned = {"subprocess", "jinja2", "templates", "codegen"}
    found = []
    for path in sorted((ROOT / "derive").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level
                     else [])
            found += [f"{path.relative_to(ROOT)}: {n}" for n in names
                      if n.split(".")[0] in banned]
    assert not found, found
    assert "subprocess" not in "".join(p.read_text() for p in (ROOT / "derive").rglob("*.py"))


#: Fields of the content that carry the layer's own description, not the document's prose.
PROVENANCE = {"version", "describe", "describe_tex", "command", "command_tex", "proxy"}


def _strings(value: object, name: str = "") -> Iterator[tuple[str, str]]:
    """Every string in the content, with the name of the field holding it."""
    if isinstance(value, str):
        yield name, value
    elif dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            yield from _strings(getattr(value, f.name), f.name)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _strings(item, name)


@pytest.mark.parametrize("spec, options", [
    (SEED, {}),
    (GRID["strided-multichannel"], {"notation": "seed003", "index_base": 0}),
    (GRID["1d"], {}),
    (LayerSpec(input=(1, 26, 26), kernel=(1, 1, 2, 2), stride=3), {}),
    (LayerSpec(input=(2, 16, 16), kernel=(3, 2, 3, 3), padding="same"), {"elements": 2}),
], ids=["seed", "strided-seed003", "1d", "elided", "proxy"])
def test_the_content_has_no_english(spec: LayerSpec, options: dict[str, object]) -> None:
    # The sentences are the template's: derive's content holds LaTeX math (words inside an
    # equation, such as \text{s.t.}, belong to it), numbers, and the names of cases.
    prose = []
    for name, text in _strings(document_content(spec, **options)):
        if name in PROVENANCE or re.fullmatch(r"[a-z0-9_]*", text):  # a case's name
            continue
        math = re.sub(r"\\(?:text|operatorname|begin|end)\{[^{}]*\}", "", text)
        math = re.sub(r"\\[A-Za-z]+", "", math)
        if re.search(r"[A-Za-z]{2,}", math):
            prose.append((name, text))
    assert not prose, prose[:5]


# -- files and the command line -------------------------------------------------------------------


def test_write_atomic_leaves_nothing_on_failure(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "x.tex"
    write_atomic(target, "old")

    def broken(*_: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken)
    with pytest.raises(OSError):
        write_atomic(target, "new")
    assert target.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["x.tex"]


def test_written_files_get_the_usual_mode(tmp_path: Path) -> None:
    # 0666 less the umask, as open() gives, not tempfile.mkstemp's private 0600
    old = os.umask(0o022)
    try:
        write_atomic(tmp_path / "a.tex", "a")
        write_atomic(tmp_path / "a.tex", "again")  # a replaced file too
        os.umask(0o027)
        write_atomic(tmp_path / "b.log", b"b")
    finally:
        os.umask(old)
    assert mode(tmp_path / "a.tex") == 0o644
    assert mode(tmp_path / "b.log") == 0o640
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.tex", "b.log"]


def test_missing_file_is_read_from_the_log_across_its_line_breaks() -> None:
    # TeX breaks log lines at 79 characters, names included
    name = "a-package-with-a-very-long-name-that-runs-over-the-line-break.sty"
    line = f"! LaTeX Error: File `{name}' not found."
    log = f"(./x.tex\n{line[:79]}\n{line[79:]}\n\nType X to quit or <RETURN> to proceed,\n"
    assert latex_doc._missing_file(log) == name
    assert latex_doc._missing_file("! Undefined control sequence.\n") is None
    hint = latex_doc._missing_file_hint("lmodern.sty")
    assert "apt-get install" in hint and "apt-file search lmodern.sty" in hint
    assert "tlmgr install lmodern" in hint


def test_cli_writes_the_document(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "seed.tex"
    assert cli.main(["latex", "-o", str(out)]) == 0
    assert out.read_text() == to_latex(SEED)
    assert f"wrote {out}" in capsys.readouterr().out


def test_cli_errors_are_one_line_with_status_2(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    cases = {
        ("-o", str(tmp_path / "x.pdf")): "the output must be a .tex file",
        ("-o", str(tmp_path / "no" / "x.tex")): "does not exist",
        ("-o", str(tmp_path / "x.tex"), "--elements", "many"): "--elements 'many'",
    }
    for argv, message in cases.items():
        assert cli.main(["latex", *argv]) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    monkeypatch.setattr(cli, "find_engine", lambda: None)
    assert cli.main(["latex", "-o", str(tmp_path / "y.tex"), "--pdf"]) == 2
    err = capsys.readouterr().err
    assert "no LaTeX engine is installed" in err and "apt-get install texlive-latex-base" in err
    assert err.count("\n") == 1
    assert list(tmp_path.iterdir()) == []  # nothing written


def test_cli_output_that_cannot_be_written_is_one_line_with_status_2(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "somedir").mkdir()
    (tmp_path / "dir.tex").mkdir()
    (tmp_path / "file").write_text("")
    (tmp_path / "d.pdf").mkdir()
    cases = {
        (str(tmp_path / "somedir"),): "is a folder; the output must be a .tex file",
        (str(tmp_path / "dir.tex"),): "is a folder; the output must be a .tex file",
        ("/nonexistent-dir/x.tex",): "folder '/nonexistent-dir' does not exist",
        (str(tmp_path / "file" / "x.tex"),): "is not a folder",
        (str(tmp_path / "d.tex"), "--pdf"): "d.pdf', which is a folder",
    }
    for (out, *more), message in cases.items():
        assert cli.main(["latex", "-o", out, *more]) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert repr(out) in captured.err and message in captured.err, captured.err
        assert captured.err.count("\n") == 1, captured.err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.pdf", "dir.tex", "file", "somedir"]

    # a folder without write permission: said before any work where the check can see it,
    # and by the write itself where it cannot (root passes os.access; ACLs; a race)
    locked = tmp_path / "locked"
    locked.mkdir()
    out = locked / "x.tex"
    if os.geteuid() != 0:
        locked.chmod(0o555)
        try:
            assert cli.main(["latex", "-o", str(out)]) == 2
        finally:
            locked.chmod(0o755)
        err = capsys.readouterr().err
        assert f"no permission to write in folder {str(locked)!r}" in err
        assert err.count("\n") == 1, err

    def denied(path: Path, data: object) -> None:
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(cli.os, "access", lambda *_, **__: True)
    monkeypatch.setattr(latex_doc, "write_atomic", denied)
    assert cli.main(["latex", "-o", str(out)]) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err == (f"corrgen latex: error: cannot write {str(out)!r}: no permission to "
                            f"write in folder {str(locked)!r}\n")
    assert list(locked.iterdir()) == []


def test_demo_step_writes_the_seed_document_into_the_cache(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli._demo_latex in cli.DEMO_STEPS
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    monkeypatch.setenv("CORRGEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(cli, "find_engine", lambda: None)
    assert cli._demo_latex(SEED, argparse.Namespace(out=None)) == 0
    document = tmp_path / "cache" / "demo" / "derivation.tex"
    assert document.read_text() == to_latex(SEED)
    assert list(work.iterdir()) == []
    assert f"wrote {document}" in capsys.readouterr().out


def test_demo_step_errors_go_to_stderr(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    def failing(path: Path) -> tuple[Path, int]:
        raise LatexError(f"pdflatex -halt-on-error failed on {path}: ! boom")

    monkeypatch.setattr(cli, "find_engine", lambda: "/usr/bin/pdflatex")
    monkeypatch.setattr(cli, "compile_pdf", failing)
    folder = tmp_path / "demo"
    args = argparse.Namespace(out=str(folder))
    assert cli._demo_latex(SEED, args) == 2
    captured = capsys.readouterr()
    tex = folder / "derivation.tex"
    assert f"wrote {tex}" in captured.out and "boom" not in captured.out
    assert captured.err == f"corrgen demo: error: pdflatex -halt-on-error failed on {tex}: ! boom\n"
    # the demo's folder cannot be made: one line on stderr, not a traceback
    tex.unlink()
    folder.rmdir()
    folder.write_text("a file in the way")
    assert cli._demo_latex(SEED, args) == 2
    captured = capsys.readouterr()
    assert "error" not in captured.out
    assert captured.err.startswith(f"corrgen demo: error: --out={str(folder)!r}")
    assert "is a file" in captured.err and captured.err.count("\n") == 1


def test_compile_without_engine_says_how_to_get_one(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    tex = tmp_path / "a.tex"
    tex.write_text("x")
    monkeypatch.setattr(latex_doc, "find_engine", lambda: None)
    with pytest.raises(LatexError, match="apt-get install texlive-latex-base"):
        compile_pdf(tex)


@needs_pdflatex
def test_a_latex_error_is_reported_with_its_log(tmp_path: Path, umask_022: None) -> None:
    tex = tmp_path / "bad.tex"
    tex.write_text("\\documentclass{article}\\begin{document}$\\frac{1}$\\end{document}\n")
    with pytest.raises(LatexError, match=r"pdflatex -halt-on-error failed .*! .*log: "):
        compile_pdf(tex)
    assert not (tmp_path / "bad.pdf").exists()
    assert (tmp_path / "bad.log").exists()
    assert mode(tmp_path / "bad.log") == 0o644


@needs_pdflatex
def test_a_missing_package_is_named_with_how_to_get_it(tmp_path: Path) -> None:
    tex = tmp_path / "needs.tex"
    tex.write_text("\\documentclass{article}\\usepackage{corrgen-no-such-package}\n"
                   "\\begin{document}x\\end{document}\n")
    with pytest.raises(LatexError) as caught:
        compile_pdf(tex)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"pdflatex -halt-on-error failed on {tex}: the LaTeX file "
                              "corrgen-no-such-package.sty is not installed (Debian/Ubuntu: ")
    assert "apt-file search corrgen-no-such-package.sty" in message
    assert "tlmgr install corrgen-no-such-package)" in message
    assert message.endswith(f"(log: {tmp_path / 'needs.log'})")


def _loaded(tex: str) -> list[str]:
    """The class and package files a document loads: article.cls, geometry.sty, ..."""
    files = [f"{name}.cls" for name in re.findall(r"\\documentclass(?:\[[^]]*\])?\{([^}]*)\}", tex)]
    for names in re.findall(r"\\usepackage(?:\[[^]]*\])?\{([^}]*)\}", tex):
        files += [f"{name.strip()}.sty" for name in names.split(",")]
    return files


@pytest.mark.skipif(shutil.which("kpsewhich") is None, reason="no TeX installation (kpsewhich)")
def test_documents_load_only_what_the_ci_texlive_packages_have(seed_tex: str) -> None:
    # With exactly CI's packages (no recommends) lmodern.sty was missing and every compile
    # stopped. Each file must be found, and on Debian belong to those packages.
    ci = (ROOT / ".ci" / "run").read_text()
    assert all(package in ci for package in CI_TEXLIVE)
    files = _loaded(seed_tex)
    assert "article.cls" in files and "amsmath.sty" in files
    dpkg = shutil.which("dpkg")
    for name in files:
        found = subprocess.run(["kpsewhich", name], capture_output=True, text=True).stdout
        assert found.strip(), f"{name} is not installed (kpsewhich {name} finds nothing)"
        if dpkg:
            owner = subprocess.run([dpkg, "-S", found.strip()], capture_output=True,
                                   text=True).stdout.split(":")[0]
            assert owner in (*CI_TEXLIVE, "texlive-base"), f"{name} comes from {owner!r}"


@needs_pdflatex
@pytest.mark.parametrize("notation", ["seed000", "seed003"])
def test_documents_use_only_outline_fonts(notation: str, tmp_path: Path) -> None:
    # No bitmap (pk) font made by mktexpk: without lmodern and cm-super, T1 text or TS1
    # symbols (itemize's bullet) would be rendered as Type 3 bitmaps.
    tex = tmp_path / "d.tex"
    tex.write_text(to_latex(GRID["strided-multichannel"], elements="corners",
                            notation=notation))
    run = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error",
                          "-no-shell-escape", tex.name], cwd=tmp_path, capture_output=True,
                         stdin=subprocess.DEVNULL, timeout=300)
    log = (tmp_path / "d.log").read_text(errors="replace")
    assert run.returncode == 0, log[-2000:]
    assert r"\item" in tex.read_text()
    assert not re.findall(r"[\w-]+\.\d+pk\b", log), re.findall(r"[\w-]+\.\d+pk\b", log)
    assert ".pfb" in log.replace("\n", "")


@needs_pdflatex
@pytest.mark.parametrize("name", GRID)
def test_grid_document_compiles(name: str, tmp_path: Path) -> None:
    text, generated = document(name)
    path = tmp_path / f"{name}.tex"
    write_atomic(path, text)
    pdf, pages = compile_pdf(path)
    assert pdf.exists() and pdf.read_bytes().startswith(b"%PDF")
    assert 1 <= pages <= 50, f"{name}: {pages} pages"
    print(f"{name}: {pages} pages, generated in {generated:.1f} s")


@needs_pdflatex
@pytest.mark.parametrize("notation", ["seed000", "seed003"])
def test_other_notation_and_base_compile(notation: str, tmp_path: Path) -> None:
    path = tmp_path / "n.tex"
    write_atomic(path, to_latex(GRID["strided-multichannel"], index_base=0, elements="corners",
                                notation=notation))
    assert compile_pdf(path)[1] >= 1


@needs_pdflatex
def test_cli_pdf(tmp_path: Path, capsys: pytest.CaptureFixture[str], umask_022: None) -> None:
    out = tmp_path / "d.tex"
    assert cli.main(["latex", "-o", str(out), "--pdf", "--input", "1x4", "--kernel", "1x2"]) == 0
    assert out.with_suffix(".pdf").exists()
    assert "pages)" in capsys.readouterr().out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.pdf", "d.tex"]
    assert mode(out) == mode(out.with_suffix(".pdf")) == 0o644
