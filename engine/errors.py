"""Errors the engine raises: each names the parameter at fault, so a user interface can point at it."""


class EngineError(ValueError):
    """A mistake in the request that the user can fix; `parameter` names the faulty input (or is None)."""

    def __init__(self, message: str, parameter: str | None = None):
        super().__init__(message)
        self.parameter = parameter


class Cancelled(RuntimeError):
    """The caller asked to stop; nothing was left on disk."""


class DependencyMissing(ImportError):
    """An optional dependency (TensorFlow, pyotb) is not importable; the message says how to install it."""
