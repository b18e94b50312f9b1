"""The shape of the code itself: the templates only print what the IR and the plans hold,
and no function grows past what a reader takes in at once."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = sorted((ROOT / "templates").rglob("*.jinja"))
#: The most lines a template or a function may have.
TEMPLATE_LINES = 300
FUNCTION_LINES = 80
#: Functions allowed to be longer, as "path::name" (none).
LONG_FUNCTIONS: set[str] = set()

#: The Jinja in a template: ``{{ ... }}``, ``{% ... %}``, and the LaTeX templates' ``\VAR{...}``
#: and ``\BLOCK{...}`` (codegen.document's delimiters). The text around it is C or LaTeX.
JINJA = re.compile(r"\{\{(.*?)\}\}|\{%(.*?)%\}|\\VAR\{(.*?)\}|\\BLOCK\{(.*?)\}", re.S)
#: ``{% import "..." as m %}``: the macro namespaces a template may call into.
IMPORT = re.compile(r"\bimport\s+\S+\s+as\s+(\w+)")
#: A method call: ``name.attr(`` (allowed when ``name`` is an imported macro namespace), or
#: a call on the result of an expression, ``).attr(``, ``"...".attr(``, ``].attr(``.
DOTTED = re.compile(r"\b([A-Za-z_]\w*)((?:\.\w+)+)\(")
ON_RESULT = re.compile(r"[)\]\"']\.\w+\(")


def _template_id(path: Path) -> str:
    return path.relative_to(ROOT / "templates").as_posix()


def test_the_templates_exist():
    names = {_template_id(path) for path in TEMPLATES}
    assert {"openmp/module.c.jinja", "openmp/helpers.c.jinja", "cuda/module.cu.jinja",
            "cuda/launch.cu.jinja", "cuda/loops.cu.jinja", "cuda/unrolled.cu.jinja",
            "derivation.tex.jinja", "_latex_macros.tex.jinja", "conv2d_python.c.jinja"} <= names


@pytest.mark.parametrize("path", TEMPLATES, ids=_template_id)
def test_templates_only_print(path):
    """Every template: short, no ``{% set %}`` (computed or not), and no call into a method
    of the IR, of a plan or of anything else (templates read fields; their own macros, the
    macros they import, and Jinja's filters are fine)."""
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= TEMPLATE_LINES, f"{path.name}: over {TEMPLATE_LINES} lines"
    code = ["".join(groups) for groups in JINJA.findall(text)]
    sets = [c for c in code if re.match(r"\s*-?\s*set\b", c)]
    assert not sets, f"{path.name}: set in {sets}"
    namespaces = set(IMPORT.findall(text))
    calls = [f"{root}{attrs}(" for c in code for root, attrs in DOTTED.findall(c)
             if root not in namespaces]
    calls += [m for c in code for m in ON_RESULT.findall(c)]
    assert not calls, f"{path.name} calls {calls}"


def test_the_checks_see_sets_and_calls():
    """The patterns above find what they forbid, in both syntaxes."""
    text = '{% set a = ir.kernel("forward") %}\\BLOCK{set c = compact}{{ x.rstrip("\\n") }}'
    code = ["".join(groups) for groups in JINJA.findall(text)]
    assert [c for c in code if re.match(r"\s*-?\s*set\b", c)] == code[:2]
    assert DOTTED.findall(code[0]) == [("ir", ".kernel")]
    assert DOTTED.findall(code[2]) == [("x", ".rstrip")]


def _functions(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            yield node.name, node.end_lineno - node.lineno + 1


def test_no_function_is_longer_than_80_lines():
    long = []
    for folder in ("codegen", "derive"):
        for path in sorted((ROOT / folder).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for name, lines in _functions(path):
                if lines > FUNCTION_LINES and f"{rel}::{name}" not in LONG_FUNCTIONS:
                    long.append(f"{rel}::{name} ({lines} lines)")
    assert not long, "functions over 80 lines: " + ", ".join(long)
