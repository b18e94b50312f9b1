"""The shape of the code itself: the OpenMP templates only print what the plans hold, and no
function grows past what a reader takes in at once."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
OPENMP_TEMPLATES = sorted((ROOT / "templates" / "openmp").glob("*.jinja"))
#: The most lines a template or a function may have.
TEMPLATE_LINES = 300
FUNCTION_LINES = 80
#: Functions allowed to be longer, as "path::name" (none).
LONG_FUNCTIONS: set[str] = set()


def test_the_openmp_templates_exist():
    names = {path.name for path in OPENMP_TEMPLATES}
    assert {"module.c.jinja", "helpers.c.jinja"} <= names


@pytest.mark.parametrize("path", OPENMP_TEMPLATES, ids=lambda path: path.name)
def test_openmp_templates_only_print(path):
    """Short, no computed ``{% set %}``, and no call into a method of the IR or of a plan
    (the templates read fields; macros and Jinja's own filters are fine)."""
    text = path.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= TEMPLATE_LINES, f"{path.name}: over {TEMPLATE_LINES} lines"
    assert "{% set" not in text and "{%- set" not in text, f"{path.name}: a {{% set %}}"
    calls = re.findall(r"\b(?:ir|plan|kernel)(?:\.\w+)*\.(\w+)\(", text)
    assert not calls, f"{path.name} calls {calls}"


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
