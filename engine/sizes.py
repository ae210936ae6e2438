"""The sources of a model analysis: per source its placeholder, size (w, h) in its own pixels and pixel step.

The same rules as the inference algorithms': a source feeds the placeholder given, else the model's inputs in
alphabetical order (as OTBTF); a source after the first without a size covers source 1's ground, in its own
pixels (the pixel-size ratio of the rasters when given, else of the model's static input shapes).
"""

from fractions import Fraction
from itertools import product
from math import lcm

import numpy as np

from .errors import EngineError, source_field
from .grid import build_lattice, scale_rfield
from .raster import raster_info

RATIOS = tuple(Fraction(1, d) for d in (1, 2, 4, 8, 16)) + (Fraction(2), Fraction(4))  # tried in this order


def _sizes_list(sizes, placeholders) -> list:
    if isinstance(sizes, dict):
        sizes = [sizes.get(p) for p in placeholders]
    return [None if not size else (int(size), int(size)) if isinstance(size, (int, np.integer))
            else (int(size[0]), int(size[1])) for size in sizes]


def assign_placeholders(signature, given, count: int) -> list:
    """The model input of each source: the one given, else the inputs no source names, in alphabetical order
    (as OTBTF when none is given)."""
    inputs, given = signature.input_names, (list(given or []) + [None] * count)[:count]
    chosen = []
    for index, name in enumerate(given):
        info = signature.input(name) if name else None
        if name and info is None:
            raise EngineError(f"Source {index + 1}: placeholder {name!r} is not an input of the model; its inputs "
                              f"are: {', '.join(inputs)}.", source_field(index, "placeholder"))
        chosen.append(info.name if info else None)
    free = iter([name for name in inputs if name not in chosen])
    chosen = [name or next(free) for name in chosen]
    if len(set(chosen)) != len(chosen):
        raise EngineError(f"Two sources feed the same placeholder ({', '.join(chosen)}); give each source its own "
                          "placeholder.", source_field(0, "placeholder"))
    return chosen


def _static_size(signature, name) -> tuple | None:
    shape = signature.input(name).shape
    return (shape[2], shape[1]) if shape and len(shape) == 4 and shape[1] and shape[2] else None


def source_sizes(signature, sizes, rasters=None, placeholders=None, accepts=None) -> tuple:
    """Per source: its placeholder, size (w, h) and pixel step (x, y) in lattice units, and notes. A source after
    the first without a size follows source 1's by the pixel-size ratio: of the rasters when given, else of the
    model's static input shapes, else the first ratio of RATIOS for which `accepts({placeholder: (w, h)})` (the model runs on them)."""
    count = len(signature.input_names)
    chosen = assign_placeholders(signature, placeholders, count)
    sizes = _sizes_list(sizes, chosen)
    rasters = [r[0] if isinstance(r, (list, tuple)) else r for r in rasters or []]
    notes = []
    for index in range(count, max(len(sizes), len(rasters))):
        if index < len(rasters) and rasters[index]:
            raise EngineError(f"Source {index + 1} is given but the model has only {count} input(s): "
                              f"{', '.join(signature.input_names)}.", source_field(index))
        if index < len(sizes) and sizes[index]:
            notes.append(f"Source {index + 1}'s size is ignored: the model has only {count} input(s).")
    placeholders = chosen
    sizes = (sizes + [None] * count)[:count]
    rasters = (rasters + [None] * count)[:count]
    if any(rasters) and not all(rasters):
        missing = rasters.index(None) + 1
        raise EngineError(f"Give a raster for every model input or for none (source {missing} has none).",
                          source_field(missing - 1))
    if sizes[0] is None:
        raise EngineError("Give source 1's size (its receptive field, in its pixels).", source_field(0, "rfield"))
    if all(rasters):
        infos = [raster_info(p, f"source {i + 1}", source_field(i)) for i, p in enumerate(rasters)]
        lattice = build_lattice([i.grid for i in infos])
        steps = [(ax.step, ay.step) for ax, ay in zip(lattice.sources_x, lattice.sources_y)]
    else:
        shapes = [_static_size(signature, p) for p in placeholders]
        for index in range(1, count):
            if sizes[index] is None and shapes[index] and shapes[0]:
                sizes[index] = tuple(sizes[0][a] * shapes[index][a] // shapes[0][a] for a in (0, 1))
                notes.append(f"Source {index + 1} ({placeholders[index]}): size {sizes[index][0]}, from the "
                             "model's input shapes' ratio.")
        unknown = [i for i in range(1, count) if sizes[i] is None]
        if unknown and accepts is not None:
            for ratios in product(RATIOS, repeat=len(unknown)):
                trial = list(sizes)
                for index, ratio in zip(unknown, ratios):
                    trial[index] = tuple(sizes[0][a] * ratio for a in (0, 1))
                if all(v.denominator == 1 for size in trial for v in size) and accepts(
                        {p: tuple(int(v) for v in size) for p, size in zip(placeholders, trial)}):
                    for index in unknown:
                        sizes[index] = tuple(int(v) for v in trial[index])
                        notes.append(f"Source {index + 1} ({placeholders[index]}): size {sizes[index][0]}, the "
                                     "first size the model accepts (1, 1/2, 1/4 ... or 2, 4 times source 1's); give "
                                     "its size or a raster per source if its pixels have another ratio.")
                    break
        missing = [i + 1 for i, s in enumerate(sizes) if s is None]
        if missing:
            raise EngineError(f"The model has {count} inputs ({', '.join(placeholders)}): give source "
                              f"{missing[0]}'s size ({placeholders[missing[0] - 1]}, in its pixels), or a raster "
                              "per source to take it from the pixel sizes.", source_field(missing[0] - 1, "rfield"))
        grounds = [lcm(*(size[axis] for size in sizes)) for axis in (0, 1)]
        steps = [tuple(grounds[axis] // size[axis] for axis in (0, 1)) for size in sizes]
    for index in range(count):
        if sizes[index] is None:
            sizes[index] = tuple(scale_rfield(sizes[0][a], steps[0][a], steps[index][a]) for a in (0, 1))
        if any(sizes[index][a] * steps[index][a] != sizes[0][a] * steps[0][a] for a in (0, 1)):
            raise EngineError(f"Source {index + 1}'s size {sizes[index][0]} does not cover the ground of source "
                              f"1's {sizes[0][0]} px with pixels {steps[index][0] / steps[0][0]:g} times source "
                              f"1's.", source_field(index, "rfield"))
    return placeholders, sizes, steps, notes
