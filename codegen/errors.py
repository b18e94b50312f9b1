"""Exceptions of the code generator, one per stage, under corrgen's base class."""

from __future__ import annotations

from derive.errors import CorrgenError


class RenderError(CorrgenError):
    """A kernel cannot be rendered as asked (an unknown style or dtype, a layer too large)."""


class BuildError(CorrgenError):
    """Compiling or linking a generated module failed.

    Attributes:
        command: the command line that failed (a list of arguments), or None.
        stderr: what the compiler printed.
        log_path: the build log, kept after the failed build's files were removed.
    """

    def __init__(self, message: str, command: list[str] | None = None, stderr: str = "",
                 log_path: str | None = None) -> None:
        parts = [message]
        if command:
            parts.append("command: " + " ".join(command))
        if stderr.strip():
            parts.append("compiler output:\n" + stderr.rstrip())
        if log_path:
            parts.append(f"build log: {log_path}")
        super().__init__("\n".join(parts))
        self.message = message
        self.command = command
        self.stderr = stderr
        self.log_path = log_path


class LoadError(CorrgenError):
    """A built module cannot be imported (a missing or foreign file in the cache folder)."""


class OutputError(CorrgenError, ValueError):
    """An output folder or module name cannot be used: the message names the argument, the
    rule it breaks and the value (a file where a folder should be, a name that is a path, a
    folder that cannot be written, a folder of someone else's files in the way)."""


class CudaError(CorrgenError, RuntimeError):
    """A CUDA runtime call of a generated module failed; the message names the call or pass,
    CUDA's error name and its description, and what to do when the cause is a missing GPU.

    Attributes:
        code: CUDA's error code (``cudaError_t``).
        name: CUDA's name of it, e.g. ``cudaErrorNoDevice``.
    """

    def __init__(self, message: str, code: int = 0, name: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.name = name
