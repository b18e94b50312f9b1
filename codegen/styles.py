"""The kernel styles and the rule that resolves ``auto``: what ``codegen.load`` needs before
it knows whether a module must be generated, kept apart from ``lower`` (which imports
SymPy) so that loading a module built earlier imports neither SymPy nor Jinja."""

from __future__ import annotations

from derive.spec import LayerSpec

from .errors import RenderError

STYLES = ("auto", "unrolled", "loops", "direct", "tiled")

#: ``auto`` unrolls layers with at most this many forward terms.
AUTO_UNROLLED_MAX_TERMS = 512
#: ``unrolled`` refuses layers with more forward terms than this.
UNROLLED_MAX_TERMS = 4096


def resolve_style(spec: LayerSpec, style: str, gpu: bool = False) -> str:
    """``auto`` -> ``unrolled`` for small layers, else ``loops`` (``tiled`` for a ``gpu``
    target; never ``direct``); checks the name, the size and the target."""
    if style not in STYLES:
        raise RenderError(f"style={style!r}: expected one of {', '.join(STYLES)}")
    if style == "auto":
        if spec.n_terms <= AUTO_UNROLLED_MAX_TERMS:
            return "unrolled"
        return "tiled" if gpu else "loops"
    if style == "tiled" and not gpu:
        raise RenderError("style='tiled' is for the CUDA target: the OpenMP 'loops' kernels "
                          "choose their own register tiles")
    if style == "unrolled" and spec.n_terms > UNROLLED_MAX_TERMS:
        raise RenderError(
            f"style='unrolled': {spec.describe()} has {spec.n_terms:,} forward terms, more "
            f"than the {UNROLLED_MAX_TERMS:,} an unrolled kernel allows; use style 'loops' "
            f"(or 'auto')"
        )
    return style
