"""Errors the engine raises. Each names the request field at fault (`sources[1].rfield`, `efield`, ...), so that
a user interface can point at its own parameter for it (the Processing algorithms map fields to parameters)."""


class EngineError(ValueError):
    """A mistake in the request that the user can fix; `field` names the faulty request field (or is None)."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field

    def __reduce__(self):
        """Pickled with its field (a Dask worker's error reaches the client whole)."""
        return type(self), (str(self), self.field)


class Cancelled(RuntimeError):
    """The caller asked to stop; nothing was left on disk."""


class DependencyMissing(ImportError):
    """An optional dependency (TensorFlow, pyotb) is not importable; the message says how to install it."""


def source_field(index: int, attribute: str | None = None) -> str:
    """The field of source `index` (0-based), or of one of its attributes: `sources[0]`, `sources[1].rfield`."""
    return f"sources[{index}]" + (f".{attribute}" if attribute else "")
