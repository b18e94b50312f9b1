"""LaTeX derivation documents, the file half: rendering, writing the .tex, running pdflatex.

``derive.latex.document_content(spec)`` computes what a document says (every equation
printed, every check run) as plain data; ``render`` puts it into
``templates/derivation.tex.jinja``, which holds the document's sentences, with LaTeX-safe
delimiters (``\\VAR{...}``, ``\\BLOCK{...}``). ``to_latex(spec)`` does both.

Files are written whole or not at all (``write_atomic``), with the mode a plain ``open``
gives. ``compile_pdf`` runs ``pdflatex -halt-on-error`` in a temporary folder and reports a
failure in one line: the first error, or the missing package and how to get it, and the log.
"""

from __future__ import annotations

import dataclasses
import functools
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

from derive.errors import LatexError
from derive.latex import Document, document_content
from derive.latex.document import ProgressFn
from derive.spec import LayerSpec

from .paths import write_atomic, write_error

#: The template of a derivation document, in the templates' folder (``render.template_root``).
TEMPLATE = "derivation.tex.jinja"

INSTALL_HINT = ("apt-get install texlive-latex-base texlive-latex-recommended "
                "texlive-fonts-recommended")


def _thousands(n: int) -> str:
    """``1234567`` -> ``1,234,567``."""
    return f"{n:,}"


@functools.cache
def environment() -> Any:  # -> jinja2.Environment
    """The Jinja environment of the LaTeX templates: ``\\VAR{x}``, ``\\BLOCK{for ...}``,
    ``\\#{comment}``; strict, quiet whitespace; templates from ``render.template_root()``; the
    filter ``thousands`` (``1,234``)."""
    import jinja2

    from codegen.render import template_root

    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(template_root())),
        block_start_string=r"\BLOCK{", block_end_string="}",
        variable_start_string=r"\VAR{", variable_end_string="}",
        comment_start_string=r"\#{", comment_end_string="}",
        line_comment_prefix="%#",
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True, autoescape=False,
    )
    env.filters["thousands"] = _thousands
    return env


def render(content: Document) -> str:
    """The document's text: ``content``'s fields are the template's variables."""
    fields = {f.name: getattr(content, f.name) for f in dataclasses.fields(content)}
    return environment().get_template(TEMPLATE).render(fields)


def to_latex(spec: LayerSpec, index_base: int = 1, elements: str | int = "auto",
             notation: str = "seed000", values: str | Path | dict[str, Any] | None = None,
             progress: ProgressFn | None = None) -> str:
    """A standalone LaTeX document deriving the backward pass of ``spec``.

    Args:
        spec: the layer.
        index_base: first index written, 1 (as the seeds) or 0.
        elements: which elements are expanded: ``"all"``, ``"corners"`` (first and last
            along each axis, and a central one), a count N per array (evenly spread), or
            ``"auto"``: all when the layer has at most ``AUTO_ALL_LIMIT`` elements, else
            corners.
        notation: ``"seed000"`` (V, K, Z, G, J) or ``"seed003"`` (x, w, y, delta, E).
        values: numbers for a section "Worked example" in seed 001's style: a JSON file's
            path or a dict of arrays by name (``V``, ``K``, ``b``, ``G``; nested lists,
            leading extents of 1 left out as one likes) and optionally ``lr``, the SGD step
            size. The output, and with ``G`` the gradients and with ``lr`` one SGD step, are
            computed exactly and checked against the NumPy reference. None: no such section.
        progress: called as ``progress(step, done, total)`` during the steps that can take
            seconds (``derive.latex.document.STEPS``: the proof, the check of the matrix
            forms, the expansions); None (the default): nothing is reported.

    Returns:
        The document's text.

    Raises:
        LatexError: a bad option (naming it, the rule and the value).
        SpecError: bad ``values`` (an unknown name, a wrong shape, not a number).
        DerivationError: a check failed (nothing is to be written then).
    """
    return render(document_content(spec, index_base, elements, notation, values, progress))


# -- files ----------------------------------------------------------------------------------------


def write_file(path: Path, data: str | bytes) -> None:
    """``write_atomic``, with any OSError as a one-line ``LatexError`` naming the path."""
    try:
        write_atomic(path, data)
    except OSError as error:
        raise LatexError(write_error(path, error)) from None


def find_engine() -> str | None:
    """Path of ``pdflatex``, or None when no LaTeX engine is installed."""
    return shutil.which("pdflatex")


def _missing_file(log_text: str) -> str | None:
    """The file named by ``! LaTeX Error: File `X' not found.`` in a pdflatex log, or None.

    TeX breaks log lines at 79 characters, so the name may run over a line break.
    """
    start = log_text.find("! LaTeX Error: File `")
    if start < 0:
        return None
    text = log_text[start:start + 400].replace("\n", "")
    match = re.match(r"! LaTeX Error: File `([^']+)' not found", text)
    return match.group(1) if match else None


def _missing_file_hint(name: str) -> str:
    """How to get the LaTeX file ``name`` (``lmodern.sty``): Debian's and TeX Live's way."""
    stem = name.rsplit(".", 1)[0]
    return (f"the LaTeX file {name} is not installed (Debian/Ubuntu: apt-get install the "
            f"package that 'apt-file search {name}' names, usually texlive-latex-recommended "
            f"or texlive-latex-extra; TeX Live: tlmgr install {stem})")


def compile_pdf(tex_path: Path, engine: str | None = None,
                timeout: float = 300) -> tuple[Path, int]:
    """Compile ``tex_path`` with ``pdflatex -halt-on-error`` in a temporary folder and put the
    PDF next to it (atomically). Returns the PDF's path and its page count.

    Raises:
        LatexError: no engine, or the run failed (its first error and the log's path, the log
            being copied next to the .tex; a missing package is named, with how to get it),
            or a file could not be read or written. Always one line.
    """
    tex_path = Path(tex_path)
    engine = engine or find_engine()
    if engine is None:
        raise LatexError(f"--pdf: no LaTeX engine is installed (pdflatex not found on PATH); "
                         f"install one with '{INSTALL_HINT}'")
    pdf_path = tex_path.with_suffix(".pdf")
    with tempfile.TemporaryDirectory(prefix="corrgen-latex-") as tmp:
        work = Path(tmp) / tex_path.name
        try:
            shutil.copyfile(tex_path, work)
        except OSError as error:
            raise LatexError(f"cannot read {str(tex_path)!r}: {error.strerror or error}") \
                from None
        cmd = [engine, "-interaction=nonstopmode", "-halt-on-error", "-no-shell-escape",
               work.name]
        try:
            run = subprocess.run(cmd, cwd=tmp, capture_output=True, timeout=timeout,
                                 stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise LatexError(f"{engine} on {tex_path}: no result after {timeout:.0f} s") from None
        log = work.with_suffix(".log")
        log_text = log.read_text(errors="replace") if log.exists() else ""
        built = work.with_suffix(".pdf")
        if run.returncode != 0 or not built.exists():
            kept = tex_path.with_suffix(".log")
            if log_text:
                write_file(kept, log_text)
            missing = _missing_file(log_text)
            if missing is not None:
                first = _missing_file_hint(missing)
            else:
                errors = [line for line in log_text.splitlines() if line.startswith("!")]
                first = errors[0] if errors else f"exit status {run.returncode}"
            raise LatexError(f"{Path(engine).name} -halt-on-error failed on {tex_path}: "
                             f"{first} (log: {kept})")
        match = re.search(r"Output written on .*?\((\d+) pages?", log_text, re.S)
        pages = int(match.group(1)) if match else 0
        write_file(pdf_path, built.read_bytes())
    return pdf_path, pages


def write_document(path: Path, text: str, pdf: bool = False) -> tuple[Path | None, int]:
    """Write the .tex atomically and, with ``pdf``, compile it; returns (PDF path, pages).

    Raises:
        LatexError: the file cannot be written, or compiled (one line).
    """
    write_file(path, text)
    if not pdf:
        return None, 0
    return compile_pdf(path)


__all__ = [
    "INSTALL_HINT",
    "LatexError",
    "compile_pdf",
    "environment",
    "find_engine",
    "render",
    "to_latex",
    "write_atomic",
    "write_document",
    "write_file",
]
