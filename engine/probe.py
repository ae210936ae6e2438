"""Measure what a fully convolutional model does at tile borders: its total stride and its valid window.

Both are measured, not guessed, by running the model on real (or random) inputs:
- valid window: run once on a large input, then again with the content outside a tile-sized window changed on
  one side; the output pixels of the window that change are those the zero padding of a tile would pollute.
  Done per side, because TF's "same" padding makes the window asymmetric (31 and 16 px of 128 for the sample).
- total stride: the smallest input shift that shifts the output by the same amount with identical values;
  tiles must start on that lattice or a strided network gives different pixels (otbtf-semantics.md 5.2.3).
"""

from dataclasses import dataclass
from math import lcm

import numpy as np

from .errors import EngineError
from .records import ProbeResult


@dataclass(frozen=True)
class ProbeSource:
    """One model input for a probe: placeholder, pixel step (units), receptive field (x, y) and a data maker.

    `make_input(width, height, variant)` returns a float32 (height, width, channels) array; variant 1 must
    differ from variant 0 (e.g. the same data flipped) with the same statistics.
    """

    placeholder: str
    step_x: int
    step_y: int
    rfield: tuple
    make_input: object


def probe_model(run, sources: list, out_step: tuple, output_name: str, tolerance: float = 1e-5) -> ProbeResult:
    """Measure the valid window and total stride of `output_name` for tiles of the sources' receptive fields.

    `run(feeds) -> {output_name: (1, h, w, c) array}`; `out_step` = output pixel (x, y) in units.
    """
    ref = sources[0]
    quantum = (lcm(*(s.step_x for s in sources), out_step[0]), lcm(*(s.step_y for s in sources), out_step[1]))
    # margin around the tile, in units: at least one receptive field, on a coarse power-of-two lattice
    margin = tuple(_round_up(max(max(s.rfield[a] * (s.step_x, s.step_y)[a] for s in sources), 128),
                             lcm(128, quantum[a] * 32)) for a in (0, 1))
    tile = (ref.rfield[0] * ref.step_x, ref.rfield[1] * ref.step_y)  # units
    big = (tile[0] + 2 * margin[0], tile[1] + 2 * margin[1])
    world = (2 * big[0], 2 * big[1])  # every window below is cut from this one virtual image

    def feeds(size, shift=(0, 0), perturb=None):
        out = {}
        for src in sources:
            steps = (src.step_x, src.step_y)
            width, height = size[0] // steps[0], size[1] // steps[1]
            sx, sy = shift[0] // steps[0], shift[1] // steps[1]
            data = src.make_input(world[0] // steps[0], world[1] // steps[1], 0)[sy:sy + height, sx:sx + width]
            data = data.copy()
            if perturb is not None:
                other = src.make_input(world[0] // steps[0], world[1] // steps[1], 1)[sy:sy + height,
                                                                                      sx:sx + width]
                side, limit = perturb
                edge = (limit[0] // steps[0], limit[1] // steps[1])
                if side == "left":
                    data[:, :edge[0]] = other[:, :edge[0]]
                elif side == "right":
                    data[:, edge[0]:] = other[:, edge[0]:]
                elif side == "top":
                    data[:edge[1]] = other[:edge[1]]
                else:
                    data[edge[1]:] = other[edge[1]:]
            out[src.placeholder] = data[np.newaxis]
        return out

    def output(feed):
        return run(feed)[output_name][0]

    tile_out = output(feeds(tile, shift=margin))
    base_out = output(feeds(big))
    for result in (tile_out, base_out):
        if not np.isfinite(result).all():
            raise EngineError(f"The model returns NaN or infinite values in {output_name} on random inputs (normal "
                              "noise of the data's scale), so its borders cannot be measured: check the model's "
                              "normalisation (a division by a zero variance?) or give an output that is finite.",
                              "model_dir")
    # the tile's output sits margin/out_step pixels inside the big output (the same crop applies to both)
    ox, oy = margin[0] // out_step[0], margin[1] // out_step[1]
    th, tw = tile_out.shape[:2]
    scale = tolerance * max(1.0, float(np.abs(base_out).max()))
    lost = []
    for side, limit in (("left", (margin[0], 0)), ("top", (0, margin[1])),
                        ("right", (margin[0] + tile[0], 0)), ("bottom", (0, margin[1] + tile[1]))):
        changed = np.abs(output(feeds(big, perturb=(side, limit))) - base_out).max(axis=-1)
        window = changed[oy:oy + th, ox:ox + tw] > scale
        if side in ("left", "right"):
            hit = np.flatnonzero(window.any(axis=0))
            lost.append(0 if hit.size == 0 else (hit.max() + 1 if side == "left" else tw - hit.min()))
        else:
            hit = np.flatnonzero(window.any(axis=1))
            lost.append(0 if hit.size == 0 else (hit.max() + 1 if side == "top" else th - hit.min()))
    stride = (_measure_stride(output, feeds, big, base_out, quantum, out_step, lost, 0, scale) // ref.step_x,
              _measure_stride(output, feeds, big, base_out, quantum, out_step, lost, 1, scale) // ref.step_y)
    return ProbeResult(output_name, tuple(ref.rfield), stride, tuple(int(v) for v in lost), (tw, th))


def _measure_stride(output, feeds, big, base_out, quantum, out_step, lost, axis, scale) -> int:
    """Smallest shift (units) along `axis` after which the output is the same, shifted."""
    limit = big[axis] // 2
    shift = quantum[axis]
    while shift <= limit:
        moved = output(feeds(big, shift=(shift, 0) if axis == 0 else (0, shift)))
        delta = shift // out_step[axis]
        first, last = max(lost) + 1, base_out.shape[1 - axis] - max(lost) - 1 - delta
        if last > first:
            if axis == 0:
                a, b = moved[:, first:last], base_out[:, first + delta:last + delta]
                rows = slice(max(lost) + 1, base_out.shape[0] - max(lost) - 1)
                a, b = a[rows], b[rows]
            else:
                a, b = moved[first:last], base_out[first + delta:last + delta]
                cols = slice(max(lost) + 1, base_out.shape[1] - max(lost) - 1)
                a, b = a[:, cols], b[:, cols]
            if a.size and np.abs(a - b).max() <= 10 * scale:  # rounding differs with position, by ~1e-5
                return shift
        shift += quantum[axis]
    raise EngineError("The model's output does not follow a shift of its input by any stride up to half the "
                      "probe size; it does not look fully convolutional.", "model_dir")


def _round_up(value: int, step: int) -> int:
    return -(-value // step) * step
