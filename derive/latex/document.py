"""The content of one derivation document: every equation printed, every check run, as data.

``document_content(spec, ...)`` proves the index forms, expands the selected elements and
checks each, checks the matrix forms, and returns a ``content.Document``: LaTeX strings,
numbers and the names of cases, no sentence. ``codegen.document`` renders it with
``templates/derivation.tex.jinja``, which holds the document's English.
"""

from __future__ import annotations

import shlex
from collections.abc import Callable
from pathlib import Path

from sympy import Expr

from ..errors import LatexError
from ..gradients import derive_layer
from ..passes import PASS_NAMES
from ..proof import Proof, prove
from ..proof import o as _o
from ..proof import x as _x
from ..proof import y as _y
from ..spec import LayerSpec
from ..symbols import G, K, V, Z, b
from ..vec_forms import VecForms
from .compact import compact
from .content import (
    ArrayLine,
    Block,
    Count,
    Document,
    Figure,
    Section,
    Setup,
    Symbols,
    Verified,
    Where,
)
from .expansions import Expansions
from .figures import figures
from .matrix_forms import MatrixForms
from .notation import MAX_MATRIX, NOTATIONS, Letters
from .printer import Row, tex, typewriter
from .selection import Selection, shown_channels, shown_pairs
from .vector_form import printable, vector_form
from .worked_example import Values, read_values, worked_example


def _setup(spec: LayerSpec, lt: Letters) -> Setup:
    """The layer: shapes, hyperparameters, the output-size arithmetic, the indices written."""
    c_in, h, w = spec.input
    n_out, _, kh, kw = spec.kernel
    _, ho, wo = spec.output_shape
    (sh, sw), (dh, dw) = spec.stride, spec.dilation
    top, bottom, left, right = spec.pads
    r, k = lt.rows_on, lt.cols_on

    def dims(*pairs: tuple[bool, int]) -> str:
        kept = r" \times ".join(str(n) for on, n in pairs if on)
        return r"\mathbb{R}" + (f"^{{{kept}}}" if kept else "")

    channels_o = (n_out > 1, n_out)
    shapes = [f"{lt.label(V)} \\in {dims((c_in > 1, c_in), (r, h), (k, w))}",
              f"{lt.label(K)} \\in {dims(channels_o, (c_in > 1, c_in), (r, kh), (k, kw))}"]
    if spec.bias:
        shapes.append(f"{lt.label(b)} \\in {dims(channels_o)}")
    shapes += [f"{lt.label(Z)} \\in {dims(channels_o, (r, ho), (k, wo))}",
               f"{lt.label(G)} \\in {dims(channels_o, (r, ho), (k, wo))}"]
    formulas = [
        rf"{a}_O = \left\lfloor \frac{{{a} + p_{{{a},1}} + p_{{{a},2}} - d_{a}\,(K_{a} - 1) - 1}}"
        rf"{{s_{a}}}\right\rfloor + 1 = \left\lfloor \frac{{{n} + {pt} + {pb} - {d} \cdot "
        rf"({kk} - 1) - 1}}{{{s}}} \right\rfloor + 1 = {out}"
        for on, a, n, kk, pt, pb, s, d, out in ((r, "H", h, kh, top, bottom, sh, dh, ho),
                                                 (k, "W", w, kw, left, right, sw, dw, wo))
        if on]
    gone, kept = [], []
    for on, axis in ((c_in > 1, "input_channel"), (n_out > 1, "output_channel"), (r, "row"),
                     (k, "column")):
        (kept if on else gone).append(axis)
    rows_u, cols_u = spec.uncovered
    return Setup(
        notation=lt.nt.name, mode=spec.mode, bias=spec.bias, channels=(c_in, n_out),
        shapes=shapes, kernel=(kh, kw), stride=(sh, sw), dilation=(dh, dw),
        padding_name=spec.padding if isinstance(spec.padding, str) else "",
        pads=(top, bottom, left, right), formulas=formulas, covered=not (rows_u or cols_u),
        uncovered_rows=[t + lt.base for t in rows_u],
        uncovered_cols=[t + lt.base for t in cols_u],
        dj_input=lt.dj(lt.bases[V].label), base=lt.base,
        written="all" if not gone else "order" if len(kept) > 1 else "only",
        dropped=gone, kept=kept)


def _arrays(spec: LayerSpec, lt: Letters) -> list[ArrayLine]:
    """Display lines of ``name = matrix``: at most two arrays a line, so that they stay
    legible, or, for one channel each way, all four on one line as seed 000 writes them."""
    c_in, h, w = spec.input
    n_out, _, kh, kw = spec.kernel
    _, ho, wo = spec.output_shape

    def eq(name: Expr, n_rows: int, n_cols: int, entry: Callable[[int, int], Expr]) -> str:
        return f"{tex(name)} = {lt.matrix(n_rows, n_cols, entry)}"

    channels, pairs, outs = shown_channels(c_in), shown_pairs(n_out, c_in), shown_channels(n_out)
    groups = [
        ([eq(lt.el(V, (c,)), h, w, lambda r, s, c=c: V[c, r, s]) for c in channels],
         c_in - len(channels), "input"),
        ([eq(lt.el(K, (o, c)), kh, kw, lambda r, s, o=o, c=c: K[o, c, r, s])
          for o, c in pairs], n_out * c_in - len(pairs), "pairs"),
        *(([eq(lt.el(a, (o,)), ho, wo, lambda r, s, o=o, a=a: a[o, r, s]) for o in outs],
           n_out - len(outs), "output") for a in (Z, G)),
    ]
    if n_out == c_in == 1 and max(h, w) <= MAX_MATRIX:
        return [ArrayLine(r",\quad ".join(eqs[0] for eqs, _, _ in groups))]
    lines = []
    for eqs, skipped, what in groups:
        for n in range(0, len(eqs), 2):
            last = n + 2 >= len(eqs)
            lines.append(ArrayLine(r",\quad ".join(eqs[n:n + 2]), skipped if last else 0, what))
    return lines


def _sections(spec: LayerSpec, lt: Letters, ex: Expansions, selection: Selection,
              figs: dict[str, list[Figure]], progress: Callable[[int, int], None]
              ) -> list[Section]:
    """The forward pass and each gradient: general formula, figures, elements expanded and
    checked (``progress(done, total)`` after each element)."""
    outs = selection.picks("outputs")
    names = ("grad_weight", "grad_input", "grad_bias")[:3 if spec.bias else 2]
    total = len(outs) + sum(len(selection.picks(name)) for name in names)
    progress(0, total)
    rows: list[Row] = []
    for n, out in enumerate(outs):
        rows += ex.forward_rows(out, n == len(outs) - 1)
        progress(n + 1, total)
    padded = any(spec.pads)
    sections = [Section("forward", ex.general("forward"),
                        ("padding" if lt.rows_on else "padding_columns") if padded else "",
                        "", selection.chosen("outputs"), [Block("", rows)],
                        figs["forward"])]
    rules = {"grad_weight": "padding" if padded else "", "grad_input": "integer",
             "grad_bias": ""}
    done = len(outs)
    for name, array in zip(names, (K, V, b)):
        blocks = []
        for index in selection.picks(name):
            blocks.append(ex.gradient_block(name, array[index]))
            done += 1
            progress(done, total)
        intro = ex.constraint_sum() if name == "grad_input" else ""
        sections.append(Section(name, ex.general(name), rules[name], intro,
                                selection.chosen(name), blocks, figs.get(name, [])))
    return sections


def _where(spec: LayerSpec, target: LayerSpec) -> Where:
    if spec == target:
        return Where(True)
    return Where(False, describe_tex(target), spec.n_terms)


def _verified(ex: Expansions, proof: Proof, matrix_counts: dict[str, int],
              matrices_on: LayerSpec, vector_counts: dict[str, int],
              vector_on: LayerSpec) -> Verified:
    """What the checks established, from the counts they made."""
    return Verified(
        proof_on=_where(proof.spec, proof.proved_on),
        proven=[Count(n, k, proof.zero_elements[n]) for n, k in proof.elements.items()],
        expanded=[Count(n, ex.checked[n]) for n in PASS_NAMES if ex.checked[n]],
        whole_sums=ex.forward is not None,
        readings=ex.checked["reading"],
        matrices_on=_where(proof.spec, matrices_on),
        matrices=[Count(n, k) for n, k in matrix_counts.items() if k],
        vector_on=_where(proof.spec, vector_on),
        vector=[Count(n, k) for n, k in vector_counts.items() if k])


def command_line(spec: LayerSpec, notation: str, base: int, elements: str | int,
                 values: Values | None = None) -> str:
    """The ``corrgen latex`` command that regenerates a document; values given as a dict
    (no file) are named ``FILE.json``, the file that would hold them."""
    parts = ["corrgen latex", spec.cli_options()]
    if base != 1:
        parts.append(f"--index-base {base}")
    if elements != "auto":
        parts.append(f"--elements {elements}")
    if notation != "seed000":
        parts.append(f"--notation {notation}")
    if values is not None:
        parts.append("--values " + (shlex.quote(str(values)) if isinstance(values, (str, Path))
                                    else "FILE.json"))
    return " ".join(parts)


def describe_tex(spec: LayerSpec) -> str:
    """``spec.describe()`` for LaTeX text (the arrow as ``$\\to$``)."""
    return spec.describe().replace(" -> ", r" $\to$ ")


def _title(spec: LayerSpec) -> tuple[str, str]:
    """The input's and the kernel's shapes, for the title."""
    c, h, w = spec.input
    o, _, kh, kw = spec.kernel
    inp = f"{c} \\times {h} \\times {w}" if c > 1 else f"{h} \\times {w}"
    ker = f"{o} \\times {c} \\times {kh} \\times {kw}" if (o, c) != (1, 1) else f"{kh} \\times {kw}"
    return inp, ker


def _g_definition(spec: LayerSpec, lt: Letters) -> str:
    """``G_{o,y,x} = dJ/dZ_{o,y,x}`` in the document's letters."""
    free = [_o, _y, _x]
    singles = {s: 0 for s, n in zip(free, spec.output_shape) if n == 1}
    g = lt.letter_el(G, free, singles)
    return f"{tex(g)} = {lt.dj(lt.letter_el(Z, free, singles))}"


#: ``progress(step, done, total)``: ``done`` of the ``total`` units of one of the steps that
#: can take seconds (``STEPS``), called as each starts (``done`` 0) and as it goes.
ProgressFn = Callable[[str, int, int], None]

#: The steps ``document_content`` reports, in order, with the unit each counts.
STEPS = {"proving": "elements", "checking matrix forms": "forms", "expanding": "elements"}


def _quiet(step: str, done: int, total: int) -> None:
    """No progress shown."""


def _checked_forms(spec: LayerSpec, proved_on: LayerSpec, tell: ProgressFn) -> tuple:
    """Seed 003's matrix forms and seed 004's vectorised form of ``spec``, each checked
    against the explicit gradients: on ``spec`` when its matrices are printed, otherwise on
    the layer the proof ran on (``proved_on``). Returns the matrix forms, the layer they were
    checked on and the check's counts, then the same three for the vectorised form."""
    tell("checking matrix forms", 0, 2)
    own = MatrixForms(spec)
    checked_on = spec if own.printable() else proved_on
    explicit = (derive_layer(checked_on, max_terms=None)  # cached by prove
                if checked_on == proved_on else None)
    matrix_counts = (own if checked_on == spec else MatrixForms(checked_on)).check(explicit)
    tell("checking matrix forms", 1, 2)
    vec_own = VecForms(spec)
    vec_on = spec if printable(vec_own) else proved_on
    vec_counts = (vec_own if vec_on == spec else VecForms(vec_on)).check(
        derive_layer(vec_on, max_terms=None))
    tell("checking matrix forms", 2, 2)
    return own, checked_on, matrix_counts, vec_own, vec_on, vec_counts


def document_content(spec: LayerSpec, index_base: int = 1, elements: str | int = "auto",
                     notation: str = "seed000", values: Values | None = None,
                     progress: ProgressFn | None = None) -> Document:
    """The content of the LaTeX document deriving the backward pass of ``spec``.

    Args:
        spec: the layer.
        index_base: first index written, 1 (as the seeds) or 0.
        elements: which elements are expanded: ``"all"``, ``"corners"`` (first and last
            along each axis, and a central one), a count N per array (evenly spread), or
            ``"auto"``: all when the layer has at most ``AUTO_ALL_LIMIT`` elements, else
            corners.
        notation: ``"seed000"`` (V, K, Z, G, J) or ``"seed003"`` (x, w, y, delta, E).
        values: numbers for seed 001's worked example (``derive.latex.worked_example``): a
            JSON file's path or a dict of arrays by name, ``V``, ``K``, ``b``, ``G``, and
            optionally ``lr``, the SGD step size; None (the default): no worked example.
        progress: called as ``progress(step, done, total)`` while the steps of ``STEPS``
            run (the proof, the check of the matrix forms, the expansions); None: nothing.

    Raises:
        LatexError: a bad option (naming it, the rule and the value).
        SpecError: bad ``values`` (an unknown name, a wrong shape, not a number).
        DerivationError: a check failed (nothing is to be written then).
    """
    from .. import __version__

    if index_base not in (0, 1):
        raise LatexError(f"index_base={index_base!r}: expected 0 or 1")
    if notation not in NOTATIONS:
        raise LatexError(f"notation={notation!r}: expected one of {', '.join(NOTATIONS)}")
    lt = Letters(spec, NOTATIONS[notation], index_base)
    selection = Selection(spec, elements)
    numbers = read_values(spec, values) if values is not None else None  # fail before work
    ex = Expansions(spec, lt)
    tell = progress or _quiet
    proof = prove(spec, progress=lambda done, total: tell("proving", done, total))
    forms = _checked_forms(spec, proof.proved_on, tell)
    own, checked_on, matrix_counts, vec_own, vec_on, vec_counts = forms
    sections = _sections(spec, lt, ex, selection, figures(spec, lt),
                         lambda done, total: tell("expanding", done, total))
    command = command_line(spec, notation, index_base, elements, values)
    title_input, title_kernel = _title(spec)
    return Document(
        version=__version__, describe=spec.describe(), describe_tex=describe_tex(spec),
        command=command,
        command_tex=typewriter(command),
        title_input=title_input, title_kernel=title_kernel,
        symbols=Symbols(*(lt.label(a) for a in (V, K, b, Z, G)), tex(lt.loss)),
        correlate=lt.nt.correlate, setup=_setup(spec, lt), arrays=_arrays(spec, lt),
        g_def=_g_definition(spec, lt), sections=sections,
        compact=compact(spec, lt, own, _where(spec, checked_on)),
        vector=vector_form(vec_own, lt, _where(spec, vec_on)),
        verified=_verified(ex, proof, matrix_counts, checked_on, vec_counts, vec_on),
        example=worked_example(spec, lt, numbers) if numbers is not None else None)
