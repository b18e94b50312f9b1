"""LaTeX derivation documents, the symbolic half: the backward pass of one layer, derived the
way the seeds do it, as data.

``document_content(spec)`` returns the content of a standalone document for exactly that
layer (``codegen.document.to_latex`` renders it with ``templates/derivation.tex.jinja``):

1. the setup: shapes, stride, padding, dilation, the output-size formula with the numbers
   substituted, and the input rows/columns no window reads (their gradient is zero);
2. ``V``, ``K`` (per channel pair), ``Z`` and ``G = dJ/dZ`` written out as matrices of symbols;
3. the forward equations, one per output element shown;
4. for every gradient element shown, the chain rule ``dJ/dx = sum_z dZ[z]/dx * dJ/dZ[z]``, each
   factor evaluated with ``sympy.diff``, then the simplified result; for ``dJ/dV`` also seed
   000's reading of its constraint sums (which ``(l, m)`` satisfy ``(l-1)s + m = j``);
5. the compact forms, as index formulas and as matrices like seed 003's (B.18) and (B.26):
   ``dJ/dK`` the valid correlation of V with G, ``dJ/dV`` the full correlation of the
   stride-dilated, zero-padded G with the 180-degree-rotated kernel, ``dJ/db`` the sum of G,
   and the sums over channels;
6. seed 004's matrix form: the input as a channels x positions matrix, ``P_pad``, the im2col
   gather ``P_phi`` and ``W``, the forward pass by its (3), (4), (5) (vec and Kronecker
   products), the gradients in the same form, and (8), (9) when the kernel covers the input;
   the matrices written out when each has at most ``MAX_VECTOR`` rows and columns;
7. with ``values`` (a JSON file's path or a dict of arrays ``V``, ``K``, ``b``, ``G``, and
   optionally ``lr``), seed 001's worked example: the given arrays as matrices of numbers, a
   few outputs term by term and the whole output, and with ``G`` the gradients and with
   ``lr`` one SGD step, exact, each entry checked against the NumPy reference; arrays not
   given stay symbolic;
8. what was verified, with the counts;
9. figures, drawn from the layer's geometry: the kernel window of one output on the padded
   input, the input cells one kernel-gradient element reads and the cells of G one
   input-gradient element gathers, and the nonzero pattern of dZ/dV (bounded: large arrays
   are cropped, and what cannot be drawn readably is left out with the reason).

One module per responsibility:

- ``printer``: ``sympy.latex``'s printer as the seeds write (``tex``), and the layout of long
  sums over lines (``sum_rows``);
- ``notation``: the letters (seed 000's or seed 003's), the index base, the indices written;
- ``selection``: which elements are expanded (``elements``: all, corners, a count N);
- ``expansions``: each element's forward sum, chain rule and constraint reading, checked;
- ``matrix_forms``: the compact forms' matrices and their check;
- ``compact``: the compact forms' equations;
- ``vector_form``: seed 004's matrix form (``derive.vec_forms`` builds and checks it);
- ``worked_example``: the numbers of ``values``, substituted and checked;
- ``figures``: the figures' cells (from ``derive.geometry``) and their layout as pictures;
- ``content``: the plain data the template receives (``Document``);
- ``document``: ``document_content``, which runs all of the above.

Nothing here reads templates, writes files or runs programs: the English sentences are the
template's, and rendering, writing the .tex and running pdflatex are ``codegen.document``'s.

Nothing is printed unproven. ``prove(spec)`` checks the index forms against the explicit
derivation (on the spec itself, or on its reduced proxy when the spec is large); every
element expanded is checked against its index form, every constraint-sum reading against
its chain-rule result, the matrix forms against the index forms, and seed 004's forms
against the explicit derivation (on the spec, or on the same proxy; always on the spec when
its matrices are printed), and every number of a worked example against
``derive.reference``. A mismatch raises ``DerivationError``.

Limits: indices with two or more digits make wide lines; long sums and large matrices are
elided in the middle (the count is printed), so a document stays readable and of bounded
size. ``elements="all"`` is refused above ``ALL_LIMIT`` elements.
"""

from ..errors import LatexError
from .content import Document
from .document import document_content
from .matrix_forms import MatrixForms
from .network_document import NetworkDoc, network_content
from .notation import NOTATIONS, Notation
from .printer import DerivationPrinter, tex
from .selection import ALL_LIMIT, AUTO_ALL_LIMIT, N_LIMIT, SELECTIONS, parse_elements

__all__ = [
    "ALL_LIMIT",
    "AUTO_ALL_LIMIT",
    "NOTATIONS",
    "N_LIMIT",
    "SELECTIONS",
    "DerivationPrinter",
    "Document",
    "LatexError",
    "MatrixForms",
    "NetworkDoc",
    "Notation",
    "document_content",
    "network_content",
    "parse_elements",
    "tex",
]
