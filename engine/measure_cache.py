"""The measurement, kept on disk between processes: a new qgis_process or QGIS session does not run the model
twenty-odd times again for a model and setup it has measured before (0.7-1 s for the sample, more for larger
models). Keyed by the SavedModel's fingerprint (its graph and variable index), the setup and the tolerance.

Where: $SEAMLESS_CACHE_DIR, else $XDG_CACHE_HOME/seamless_inference, else ~/.cache/seamless_inference; an empty
SEAMLESS_CACHE_DIR turns it off. Files are JSON data (engine.measurement's form, with its version, the fingerprint,
the setup and the tolerance), validated field by field when read: a cache folder may be shared by a team on a
network drive, so nothing in it is ever run. A missing, damaged, foreign or stale file only means measuring again,
and files of any other name (an old pickle included) are never opened.
"""

import hashlib
import json
import os
import uuid

from .measurement import VERSION, Measurement, from_json, setup_json, to_json

MAX_BYTES = 16 * 1024 * 1024  # a measurement is a few kB (the sample's: 9 kB); anything larger is not one


def folder() -> str | None:
    """The cache folder, or None when caching is off."""
    configured = os.environ.get("SEAMLESS_CACHE_DIR")
    if configured is not None:
        return configured or None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "seamless_inference")


def _header(fingerprint: str, setup, tolerance: float) -> dict:
    return {"version": VERSION, "fingerprint": fingerprint, "tolerance": tolerance, "setup": setup_json(setup)}


def _path(header: dict) -> str | None:
    where = folder()
    if where is None:
        return None
    digest = hashlib.sha256(json.dumps(header, sort_keys=True).encode()).hexdigest()[:24]
    return os.path.join(where, f"measurement-{digest}.json")


def read_json(path: str, limit: int = MAX_BYTES):
    """The JSON value in `path`, or None when the file is missing, too large, not UTF-8 JSON or unreadable."""
    try:
        if os.path.getsize(path) > limit:
            return None
        with open(path, encoding="utf-8") as handle:
            return json.load(handle)
    except (OSError, ValueError, RecursionError):
        return None


def load(fingerprint: str, setup, tolerance: float) -> Measurement | None:
    """The stored measurement of this model, setup and tolerance, or None."""
    header = _header(fingerprint, setup, tolerance)
    path = _path(header)
    record = read_json(path) if path and os.path.isfile(path) else None
    if not isinstance(record, dict) or {k: record.get(k) for k in header} != header:
        return None
    try:
        found = from_json(record.get("measurement"))
    except (ValueError, TypeError, ZeroDivisionError):
        return None
    return found if found.setup == setup else None


def store(fingerprint: str, setup, tolerance: float, measurement: Measurement) -> None:
    """Keep `measurement` (written under a temporary name, then renamed); silent when it cannot."""
    header = _header(fingerprint, setup, tolerance)
    path = _path(header)
    if path is None:
        return
    temp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(temp, "w", encoding="utf-8") as handle:
            json.dump({**header, "measurement": to_json(measurement)}, handle)
        os.replace(temp, path)
    except OSError:
        if os.path.exists(temp):
            os.remove(temp)
