"""The passes of a layer, one record each: the forward pass and one gradient per parameter
or input. The derivation, the documents, the generator, the run-time front end, the checks
and the benchmarks all read this table, so a new pass is one record. Plain Python: a built
module imports it (through ``codegen.vocabulary``) where SymPy is not installed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Pass:
    """One pass of a layer: a function of every generated module and the kernel it runs.

    Attributes:
        name: the module's function (``grad_weight``).
        wrt: what the gradient is taken with respect to (``input``, ``weight``, ``bias``);
            None for ``forward``.
        reads: the arrays it takes, in the order the module's function and the NumPy
            reference (``derive.reference``) take them; ``b`` is None without a bias.
        writes: the array it returns.
        accumulates: whether it sums over the batch (its output has no batch axis).
        needs_bias: whether it exists only for layers with a bias.
        variable: the array its gradient is taken with respect to (``K``); None for
            ``forward``.
    """

    name: str
    wrt: str | None
    reads: tuple[str, ...]
    writes: str
    accumulates: bool
    needs_bias: bool
    variable: str | None = None

    @property
    def entry(self) -> str:
        """The C entry point of its kernel (``conv2d_grad_weight``)."""
        return f"conv2d_{self.name}"

    def inputs(self, bias: bool) -> tuple[str, ...]:
        """The arrays its kernel reads for a layer with or without a bias."""
        return self.reads if bias else tuple(r for r in self.reads if r != "b")

    def runs(self, bias: bool) -> bool:
        """Whether a layer with or without a bias has this pass's kernel."""
        return bias or not self.needs_bias


#: Every pass, in the order of the module's functions; ``backward`` returns the gradients
#: (every pass with a ``wrt``) in this order.
PASS_TABLE: tuple[Pass, ...] = (
    Pass("forward", None, ("V", "K", "b"), "Z", accumulates=False, needs_bias=False),
    Pass("grad_input", "input", ("K", "G"), "dV", accumulates=False, needs_bias=False,
         variable="V"),
    Pass("grad_weight", "weight", ("V", "G"), "dK", accumulates=True, needs_bias=False,
         variable="K"),
    Pass("grad_bias", "bias", ("G",), "db", accumulates=True, needs_bias=True,
         variable="b"),
)

#: The passes by name.
PASS: dict[str, Pass] = {p.name: p for p in PASS_TABLE}
#: Their names, in order.
PASS_NAMES: tuple[str, ...] = tuple(PASS)
#: The passes ``backward`` runs, in the order of its results ``(dV, dK, db)``.
GRADIENTS: tuple[Pass, ...] = tuple(p for p in PASS_TABLE if p.wrt is not None)
#: The gradient pass of each ``wrt`` name (``input``, ``weight``, ``bias``).
WRT: dict[str, str] = {p.wrt: p.name for p in GRADIENTS if p.wrt is not None}
#: The array each gradient pass differentiates with respect to (``grad_weight``: ``K``).
GRAD_NAMES: dict[str, str] = {p.name: p.variable for p in GRADIENTS if p.variable is not None}
