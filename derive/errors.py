"""Exceptions of corrgen, one per pipeline stage, under one base class."""


class CorrgenError(Exception):
    """Base class of every error corrgen raises on purpose."""


class SpecError(CorrgenError, ValueError):
    """A layer spec breaks a rule; the message names the field, the rule and the value."""


class DerivationError(CorrgenError):
    """The symbolic derivation cannot be done as asked (too large, or a proof failed)."""


class LatexError(CorrgenError):
    """A LaTeX document cannot be made, written or compiled as asked."""
