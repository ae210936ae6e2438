"""Which Auto tile size a model runs fastest on this machine: a few input sizes timed once, the timings kept on disk.

A larger tile wastes fewer margin pixels, but a convolution network does not run every tensor size at the same
speed per pixel (oneDNN's blocking, caches): the largest tile is not always the fastest way through a scene.
For an exact (valid-part) output in Full mode, planning offers the balanced tiles of a few nominal sizes
(NOMINAL), and this module prices each: its tiles' input pixels at the per-pixel speed the model showed on the
nominal tile nearest to it. The timings are measured once per model (fingerprint), output, input shapes and
machine, and kept as JSON beside the measurement cache (engine.measure_cache's folder; data, never code). The
choice changes no pixel beyond float32 rounding: an exact output does not depend on the tile, but on some CPUs
oneDNN sums a convolution in another order for another input size (1.5e-12 apart on CI's machine, 0 on others).
"""

import hashlib
import json
import os
import platform
import time
import uuid

import numpy as np

from .measure_cache import folder, read_json
from .model import SavedModel

NOMINAL = (1024, 1536, 2048)  # output pixels of the tiles timed (Auto's largest, 2048, and two smaller)
REPEATS = 2  # timed calls after one that builds the kernels; the best counts (a busy machine only slows one)
VERSION = 1


def machine() -> str:
    """What makes a timing this machine's: processor, cores, TensorFlow's thread settings."""
    threads = ",".join(os.environ.get(k, "") for k in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS",
                                                       "OMP_NUM_THREADS"))
    return f"{platform.node()}|{platform.machine()}|{platform.processor()}|{os.cpu_count()}|{threads}"


def _path(model: SavedModel, output: str, shapes: dict) -> str | None:
    where = folder()
    if where is None:
        return None
    key = json.dumps([VERSION, model.fingerprint, output, machine(), model.device, sorted(shapes.items())])
    return os.path.join(where, f"tile-speed-{hashlib.sha256(key.encode()).hexdigest()[:24]}.json")


def seconds_per_pixel(model: SavedModel, output: str, shapes: dict) -> float:
    """Seconds one tile of input `shapes` {placeholder: (1, h, w, c)} takes, per input pixel of source 1 (the
    best of REPEATS after a first call), cached on disk."""
    path = _path(model, output, shapes)
    cached = read_json(path, 4096) if path and os.path.isfile(path) else None
    if isinstance(cached, dict) and isinstance(cached.get("seconds_per_pixel"), float) and \
            cached["seconds_per_pixel"] > 0:
        return cached["seconds_per_pixel"]
    rng = np.random.default_rng(0)
    feeds = {name: rng.uniform(0, 1, shape).astype(np.float32) for name, shape in shapes.items()}
    model.run(feeds, [output])
    best = float("inf")
    for _ in range(REPEATS):
        started = time.perf_counter()
        model.run(feeds, [output])
        best = min(best, time.perf_counter() - started)
    first = next(iter(shapes.values()))
    value = best / (first[1] * first[2])
    if path:
        temp = f"{path}.{uuid.uuid4().hex[:8]}.tmp"
        try:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(temp, "w", encoding="utf-8") as handle:
                json.dump({"seconds_per_pixel": value, "shapes": {k: list(v) for k, v in shapes.items()}}, handle)
            os.replace(temp, path)
        except OSError:
            if os.path.exists(temp):
                os.remove(temp)
    return value


def fastest(model: SavedModel, output: str, candidates: dict, shapes_of, quantum: tuple) -> tuple:
    """(tile, note) of the cheapest of `candidates` {tile (x, y): tile count}: each priced at its count times its
    input pixels (source 1's), at the per-pixel speed of the nominal tile nearest to it. shapes_of(tile) gives a
    tile's input shapes {placeholder: (1, h, w, c)}. With one candidate, or all near one nominal size, nothing is
    timed (the geometry decides)."""
    nominal = {}
    for tile in candidates:
        near = min(NOMINAL, key=lambda n: abs(n - max(tile)))
        nominal[tile] = tuple(max(q, near // q * q) for q in quantum)
    if len(set(nominal.values())) < 2:
        tile = min(candidates, key=lambda t: (candidates[t] * _pixels(shapes_of(t)), -max(t)))
        return tile, None
    speed = {size: seconds_per_pixel(model, output, shapes_of(size)) for size in set(nominal.values())}
    cost = {tile: candidates[tile] * _pixels(shapes_of(tile)) * speed[nominal[tile]] for tile in candidates}
    tile = min(cost, key=lambda t: (cost[t], -max(t)))
    timings = ", ".join(f"{size[0]} px {1e-6 / speed[size]:.1f} Mpx/s" for size in sorted(speed))
    return tile, (f"Tiles: {tile[0]} x {tile[1]} px, the fastest here for this scene (the model's input speed on "
                  f"this machine: {timings}; measured once, cached).")


def _pixels(shapes: dict) -> int:
    first = next(iter(shapes.values()))
    return first[1] * first[2]
