"""The derivation document of a whole network, the rendering half.

``derive.latex.network_content(net)`` computes what the document says (every equation
printed, every check run, the worked example compared with the NumPy reference) as plain
data; ``render`` puts it into ``templates/network.tex.jinja`` with the environment of every
corrgen LaTeX document (``codegen.document.environment``). ``network_document(net)`` does
both. Writing the .tex and running pdflatex are ``codegen.document``'s (``write_document``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from derive.latex import NetworkDoc, network_content
from derive.network import Network

from .document import environment

#: The template of a network document, in the templates' folder (``render.template_root``).
TEMPLATE = "network.tex.jinja"


def render(content: NetworkDoc) -> str:
    """The document's text: ``content``'s fields are the template's variables."""
    fields = {f.name: getattr(content, f.name) for f in dataclasses.fields(content)}
    return environment().get_template(TEMPLATE).render(fields)


def network_document(net: Network | str, values: Any = None, elements: str | int = "auto",
                     index_base: int = 1) -> str:
    """A standalone LaTeX document deriving the forward and backward passes of ``net``.

    Args:
        net: the network (a ``derive.Network`` or its text form).
        values: numbers for a worked example: a dict, or the path of a JSON file, of arrays
            by name (``X``, ``T`` and every parameter, by PyTorch name or symbol), and
            optionally ``"lr"``, the SGD step's learning rate (default 0.1); for softmax-ce,
            ``T`` may be the class index. None: no worked example.
        elements: which elements of each array are printed: ``"all"``, ``"corners"``, a count
            N (evenly spread), or ``"auto"`` (all for a small network, else corners).
        index_base: first index written, 1 (as the seeds) or 0.

    Returns:
        The document's text.

    Raises:
        LatexError: a bad option (naming it, the rule and the value).
        SpecError: bad ``values`` (naming the array, the rule and the value).
        DerivationError: a check failed (nothing is to be written then).
    """
    return render(network_content(net, values, elements, index_base))


__all__ = ["TEMPLATE", "network_document", "render"]
