"""The content of one derivation document, as plain data: what the LaTeX template receives.

Equations are LaTeX strings, already printed (``derive.latex.printer``); numbers are plain
ints, indices already in the document's index base; every choice is a flag or the name of a
case. There is no English sentence here: ``templates/derivation.tex.jinja`` holds every one,
and picks among them by these fields, so changing a sentence is a template edit. (Words
inside an equation, such as ``\\text{s.t.}`` under a sum, are part of the equation.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .printer import Row


@dataclass(frozen=True)
class Symbols:
    """The document's letters in LaTeX: input, kernel, bias, output, upstream gradient, loss."""

    V: str
    K: str
    b: str
    Z: str
    G: str
    J: str


@dataclass(frozen=True)
class Chosen:
    """Which elements of one array are expanded.

    Attributes:
        kind: ``"one"`` (the array has one element), ``"all"``, or ``"some"``: ``chosen`` of
            ``total``, picked by ``how``, ``"corners"`` or ``"spread"`` (evenly, row-major).
    """

    kind: str
    chosen: int
    total: int
    how: str


@dataclass(frozen=True)
class TapReading:
    """One kernel tap of a constraint reading: the output it fixes, or None (no output)."""

    tap: int
    out: int | None


@dataclass(frozen=True)
class AxisReading:
    """Seed 000's reading of one axis' constraint for one input element: ``cond = pos``, and
    for each tap (letter ``tap``) the output (letter ``out``) it fixes."""

    cond: str
    pos: int
    tap: str
    out: str
    taps: list[TapReading]


@dataclass(frozen=True)
class Block:
    """One element expanded.

    Attributes:
        var: the element (LaTeX) a gradient is taken with respect to; ``""`` for the forward
            equations.
        rows: the ``align*`` rows: chain rule, each factor evaluated, result.
        note: ``""``; ``"unread"``: no output reads ``var``; ``"partial"``: only the ``shown``
            outputs that read it are written, the ``other`` ones having the zero ``factor``.
        reading, reading_rows: for an input element, seed 000's constraint reading per axis
            and the sum it gives.
    """

    var: str
    rows: list[Row]
    note: str = ""
    shown: int = 0
    other: int = 0
    factor: str = ""
    reading: list[AxisReading] = field(default_factory=list)
    reading_rows: list[Row] = field(default_factory=list)


@dataclass(frozen=True)
class Cell:
    """One cell of an array drawn in a figure: 0-based ``row`` and ``col`` in the array (an
    input cell of the zero padding has a negative index, or one past the array's end), and
    ``pair``: the 0-based index of what it meets (a kernel element's row and column, or an
    output position), or None."""

    row: int
    col: int
    pair: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Fill:
    """``n`` cells filled side by side from ``(x, y)`` (picture units, one per cell), in the
    colour of ``style``: ``tap`` (a cell read), ``padtap`` (a padding cell read), ``mark``
    (the element the figure is about), ``pad`` (the zero padding), ``nonzero``."""

    x: int
    y: int
    n: int
    style: str


@dataclass(frozen=True)
class Text:
    """``text`` (math) centred in the ``width`` cells from ``(x, y)``, at ``size``:
    ``tiny`` (in a cell), ``index`` (a row or column number), ``title``."""

    x: int
    y: int
    width: int
    text: str
    size: str


@dataclass(frozen=True)
class Panel:
    """One array drawn as a grid of ``rows`` x ``cols`` cells, its lower left corner at
    ``(x, y)``; its top left cell is the array's ``(row0, col0)``. ``hlines``, ``vlines``:
    the grid's lines each way."""

    x: int
    y: int
    rows: int
    cols: int
    row0: int
    col0: int
    hlines: int
    vlines: int


@dataclass(frozen=True)
class Frame:
    """A thick rectangle (the border of an input inside its padding; a channel block)."""

    x: int
    y: int
    width: int
    height: int


@dataclass(frozen=True)
class Picture:
    """A figure as LaTeX's picture environment draws it: ``width`` x ``height`` units of
    ``unit`` millimetres."""

    width: int
    height: int
    unit: str
    fills: list[Fill]
    panels: list[Panel]
    frames: list[Frame]
    texts: list[Text]


@dataclass(frozen=True)
class Crop:
    """A grid drawn in part: ``name`` (LaTeX) shows rows ``rows[0]..rows[1]`` of
    ``rows[2]`` and columns ``cols[0]..cols[1]`` of ``cols[2]`` (in the index base)."""

    name: str
    rows: tuple[int, int, int]
    cols: tuple[int, int, int]


@dataclass(frozen=True)
class Figure:
    """One figure (``derive.latex.figures``).

    Attributes:
        kind: ``window`` (an output's kernel window), ``grad_weight`` (the input cells a
            kernel-gradient element reads), ``grad_input`` (the cells of G an input-gradient
            element gathers), ``jacobian`` (the nonzero pattern of dZ/dV).
        picture: what is drawn, or None when the figure is left out (``skipped``: ``span``,
            the window spans more than ``limit`` rows or columns; ``size``, the Jacobian has
            more than ``limit`` rows or columns, and so has one channel pair's block).
        element, formula: the element the figure is about and its formula (LaTeX).
        names: the arrays drawn, left to right (LaTeX).
        cells: the cells highlighted (for ``jacobian``, the nonzeros: row and column), and
            ``marked`` the element's own cell, or None.
        flipped: convolution mode; channels: the input (``window``, ``grad_weight``) or the
            output (``grad_input``) has several channels, drawn alike; padded: padding is
            drawn; pad_taps: some cells read are padding; labelled: cells carry what they
            meet.
        crops: the grids drawn in part.
        rows, cols, block: the Jacobian's rows and columns, and whether only the block of
            the first channel pair is drawn (``block_rows`` x ``block_cols``).
    """

    kind: str
    picture: Picture | None = None
    element: str = ""
    formula: str = ""
    names: list[str] = field(default_factory=list)
    cells: list[Cell] = field(default_factory=list)
    marked: Cell | None = None
    flipped: bool = False
    channels: bool = False
    padded: bool = False
    pad_taps: bool = False
    labelled: bool = False
    crops: list[Crop] = field(default_factory=list)
    skipped: str = ""
    limit: int = 0
    span: tuple[int, int] = (0, 0)
    rows: int = 0
    cols: int = 0
    block: bool = False
    block_rows: int = 0
    block_cols: int = 0


@dataclass(frozen=True)
class Section:
    """One pass.

    Attributes:
        name: ``forward``, ``grad_weight``, ``grad_input`` or ``grad_bias``.
        general: the proven index form, in the document's letters.
        rule: which reading of out-of-range indices applies: ``""``; ``"padding"``: the input
            is zero outside its rows and columns; ``"padding_columns"``: outside its columns
            (a 1-D layer); ``"integer"``: a term counts only where every index of the
            upstream gradient is an integer in range.
        intro: seed 000's constraint sums of the whole pass (the input gradient), or ``""``.
        figures: the pass's figures (``derive.latex.figures``).
    """

    name: str
    general: Row
    rule: str
    intro: str
    chosen: Chosen
    blocks: list[Block]
    figures: list[Figure] = field(default_factory=list)


@dataclass(frozen=True)
class Setup:
    """The layer: shapes, hyperparameters, output-size arithmetic, the indices written.

    Attributes:
        notation: ``seed000`` or ``seed003``.
        mode: ``correlation`` or ``convolution``.
        channels: ``(C, O)``; ``kernel``, ``stride``, ``dilation``: (rows, columns).
        shapes: ``V \\in \\mathbb{R}^{...}`` for each array.
        padding_name: ``same``, ``full``, ``valid``, or ``""`` for padding given in numbers;
            ``pads``: (top, bottom, left, right).
        formulas: the output-size formula, numbers substituted, per axis written.
        covered: every input row and column is read by a window; else ``uncovered_rows``,
            ``uncovered_cols`` are those no window reads (in the index base), where
            ``dj_input`` (``dJ/dV``) is 0.
        written: ``"all"`` (every index is written), ``"order"`` (``dropped`` left out, the
            ``kept`` ones in that order) or ``"only"`` (``dropped`` left out, one kept); axes
            named ``input_channel``, ``output_channel``, ``row``, ``column``.
    """

    notation: str
    mode: str
    bias: bool
    channels: tuple[int, int]
    shapes: list[str]
    kernel: tuple[int, int]
    stride: tuple[int, int]
    dilation: tuple[int, int]
    padding_name: str
    pads: tuple[int, int, int, int]
    formulas: list[str]
    covered: bool
    uncovered_rows: list[int]
    uncovered_cols: list[int]
    dj_input: str
    base: int
    written: str
    dropped: list[str]
    kept: list[str]


@dataclass(frozen=True)
class ArrayLine:
    """One display of the arrays as matrices; ``skipped`` channels (``what``: ``input``,
    ``pairs`` or ``output``) not shown, said after the group's last line."""

    equation: str
    skipped: int = 0
    what: str = ""


@dataclass(frozen=True)
class Where:
    """Where a check ran: on the layer ``itself``, or on a reduced ``proxy`` (its
    description, in LaTeX) because the layer's explicit derivation has ``terms`` terms."""

    itself: bool
    proxy: str = ""
    terms: int = 0


@dataclass(frozen=True)
class Edge:
    """Rows (columns) of zeros added on one side of the upstream gradient for the full
    correlation: ``count`` of them, or with ``dropped`` that many of its own rows cut off;
    ``single``: ``count`` is 1."""

    count: int
    dropped: bool
    single: bool


@dataclass(frozen=True)
class Sizes:
    """A plain layer's full-correlation size: ``out + kernel - 1 = input``, per axis."""

    out: tuple[int, int]
    kernel: tuple[int, int]
    input: tuple[int, int]


@dataclass(frozen=True)
class Form:
    """One compact form: its index formula, its matrix displays, and ``align*`` rows."""

    formula: str
    displays: list[str] = field(default_factory=list)
    rows: list[Row] = field(default_factory=list)


@dataclass(frozen=True)
class Compact:
    """The compact forms as correlations, and what their sentences need.

    Attributes:
        printable: whether the layer's matrices are printed; else ``checked_on`` says where
            the forms were checked.
        multi_c, multi_o, pairs: more than one input channel, output channel, channel pair.
        padded_v: the input is read with zero padding or cut (``vbar`` is not ``V``).
        strided, dilated, convolution, bias: the layer's stride > 1, dilation > 1, mode, bias.
        vbar, v_c, kern, k_oc, gup, g_o, ghat: the matrices' names, in LaTeX.
        first: the index base (the first row kept under dilation).
        edges: zero rows above, below, zero columns left, right of the upstream gradient.
        sizes: for a plain layer (stride and dilation 1, no padding), the full correlation's
            size, which is the input's; else None.
    """

    printable: bool
    checked_on: Where
    multi_c: bool
    multi_o: bool
    pairs: bool
    padded_v: bool
    strided: bool
    dilated: bool
    convolution: bool
    bias: bool
    vbar: str
    v_c: str
    kern: str
    k_oc: str
    gup: str
    g_o: str
    ghat: str
    first: int
    edges: tuple[Edge, Edge, Edge, Edge]
    sizes: Sizes | None
    forward: Form
    grad_weight: Form
    grad_input: Form
    grad_bias: Form | None


@dataclass(frozen=True)
class VectorForm:
    """Seed 004's matrix form of the layer (``derive.vec_forms``): im2col, vec, Kronecker.

    Attributes:
        printable: whether the matrices are written out (``displays``, ``grad_displays``);
            else ``checked_on`` says where the forms were checked.
        padded: ``P_pad`` adds a zero frame; else it is ``pad_identity``.
        bias, convolution: the layer's bias, and whether ``W`` holds the rotated kernel.
        dense: the kernel covers the whole unpadded input, ``P_phi P_pad = I``: the layer is
            seed 004's fully connected one, ``dense_rows`` its (8), (9).
        v, g, phi: the input and the upstream gradient as matrices, and
            ``phi(pad(V))``, in LaTeX; ``out``: the output's letter.
        shapes: ``name \\in \\mathbb{R}^{m \\times n}`` of every matrix.
        forward, gradients: the ``align*`` rows of (3), (4), (5) and of the gradients.
    """

    printable: bool
    checked_on: Where
    padded: bool
    bias: bool
    convolution: bool
    dense: bool
    v: str
    g: str
    phi: str
    out: str
    pad_identity: str
    shapes: list[str]
    forward: list[Row]
    gradients: list[Row]
    dense_rows: list[Row]
    displays: list[str]
    grad_displays: list[str]


@dataclass(frozen=True)
class Count:
    """Elements of one pass (``forward``, ``grad_input``, ...) checked, ``zeros`` of them 0."""

    name: str
    count: int
    zeros: int = 0


@dataclass(frozen=True)
class Verified:
    """What the checks established, with their counts.

    Attributes:
        proof_on, proven: where the index forms were proven equal to the explicit derivation,
            and the elements compared per pass.
        expanded: the elements expanded in the document, checked against the index forms.
        whole_sums: the chain-rule factors are derivatives of whole forward sums (few
            outputs), rather than of the one term holding the element.
        readings: input elements whose constraint reading was checked.
        matrices_on, matrices: where the compact forms were checked, and the elements.
        vector_on, vector: where seed 004's matrix forms were checked, and the elements
            (each in every form).
    """

    proof_on: Where
    proven: list[Count]
    expanded: list[Count]
    whole_sums: bool
    readings: int
    matrices_on: Where
    matrices: list[Count]
    vector_on: Where
    vector: list[Count]


@dataclass(frozen=True)
class Example:
    """Seed 001's worked example: the layer with numbers (``derive.latex.worked_example``).

    Attributes:
        given, symbolic: the layer's arrays given numbers and those left symbolic, by
            DESIGN's names (``V``, ``K``, ``b``, ``G``), in that order.
        arrays: the given arrays as matrices of numbers, per channel (pair).
        lines, shown, total: ``shown`` of the ``total`` outputs written term by term (each
            product ``kernel \\cdot input`` with the numbers substituted) and their value.
        output: the output's matrices.
        grad_lines, gradients: with ``G`` given, the first element of each gradient term by
            term, and every gradient's matrices; empty without ``G``.
        lr: the SGD step size in LaTeX (``""`` when none was given); ``step``: the parameters
            after one SGD step, when ``G`` and the step size are given.
        checked: numbers compared with the NumPy reference; ``probed``: some entries hold
            symbols, which were checked at integer values of those symbols.
    """

    given: list[str]
    symbolic: list[str]
    arrays: list[ArrayLine]
    lines: list[Row]
    shown: int
    total: int
    output: list[ArrayLine]
    grad_lines: list[Row]
    gradients: list[ArrayLine]
    lr: str
    step: list[ArrayLine]
    checked: int
    probed: bool


@dataclass(frozen=True)
class Document:
    """Everything one derivation document says, for ``templates/derivation.tex.jinja``.

    Attributes:
        describe, command: the layer and the command that regenerates the document, as text;
            ``describe_tex``, ``command_tex`` the same for LaTeX text.
        title_input, title_kernel: the input's and the kernel's shapes (LaTeX).
        symbols: the letters; ``correlate`` the valid-correlation operator.
        g_def: ``G_{o,y,x} = dJ/dZ_{o,y,x}``.
        example: seed 001's worked example with numbers (``values``), or None.
    """

    version: str
    describe: str
    describe_tex: str
    command: str
    command_tex: str
    title_input: str
    title_kernel: str
    symbols: Symbols
    correlate: str
    setup: Setup
    arrays: list[ArrayLine]
    g_def: str
    sections: list[Section]
    compact: Compact
    vector: VectorForm
    verified: Verified
    example: Example | None = None
