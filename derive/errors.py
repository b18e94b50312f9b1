"""Exceptions of corrgen, one per pipeline stage, under one base class."""


class CorrgenError(Exception):
    """Base class of every error corrgen raises on purpose."""


class SpecError(CorrgenError, ValueError):
    """A layer spec breaks a rule; the message names the field, the rule and the value.

    The message is one line: a value whose repr spans lines (a NumPy array's) is joined.
    """

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(line.strip() for line in str(message).splitlines()))


class DerivationError(CorrgenError):
    """The symbolic derivation cannot be done as asked (too large, or a proof failed)."""


class LatexError(CorrgenError):
    """A LaTeX document cannot be made, written or compiled as asked."""
