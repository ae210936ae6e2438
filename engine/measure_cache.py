"""The measurement, kept on disk between processes: a new qgis_process or QGIS session does not run the model
twenty-odd times again for a model and setup it has measured before (0.7-1 s for the sample, more for larger
models). Keyed by the SavedModel's fingerprint (its graph and variable index), the setup and the engine's
measurement version; a missing, unreadable or foreign file only means measuring again.

Where: $SEAMLESS_CACHE_DIR, else $XDG_CACHE_HOME/seamless_inference, else ~/.cache/seamless_inference; an empty
SEAMLESS_CACHE_DIR turns it off. Files are pickles read back with only the engine's own value types allowed.
"""

import hashlib
import os
import pickle  # nosec B403  # read back only through _EngineValues, which refuses all but engine values
import uuid

VERSION = 1  # raise when the measurement changes: older files are then ignored
_ALLOWED = {("fractions", "Fraction"), ("builtins", "frozenset"), ("builtins", "set")}


def folder() -> str | None:
    """The cache folder, or None when caching is off."""
    configured = os.environ.get("SEAMLESS_CACHE_DIR")
    if configured is not None:
        return configured or None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "seamless_inference")


def _path(key) -> str | None:
    where = folder()
    if where is None:
        return None
    digest = hashlib.sha256(repr((VERSION, key)).encode()).hexdigest()[:24]
    return os.path.join(where, f"measurement-{digest}.pickle")


class _EngineValues(pickle.Unpickler):
    """Unpickles only the engine's dataclasses, fractions and plain containers."""

    def find_class(self, module, name):
        package = __name__.rsplit(".", 1)[0]
        if module.startswith(package + ".") or (module, name) in _ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"{module}.{name} is not an engine value")


def load(key):
    """The stored measurement of `key`, or None."""
    path = _path(key)
    if path is None or not os.path.isfile(path):
        return None
    try:
        with open(path, "rb") as handle:
            stored_key, value = _EngineValues(handle).load()
    except Exception:  # noqa: BLE001 (a damaged or foreign file: measure again)
        return None
    return value if stored_key == key else None


def store(key, value) -> None:
    """Keep `value` for `key` (written under a temporary name, then renamed); silent when it cannot."""
    path = _path(key)
    if path is None:
        return
    temp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(temp, "wb") as handle:
            pickle.dump((key, value), handle, protocol=pickle.HIGHEST_PROTOCOL)
        os.replace(temp, path)
    except OSError:
        if os.path.exists(temp):
            os.remove(temp)
