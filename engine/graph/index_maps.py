"""Per-axis index maps: which input pixels each output pixel of an op reads, and so its valid window.

A feature map's spatial axis is a `Span`: its size and its valid window [first, end), the pixels computed only
from pixels of the tile, never from the padding at its border. An output pixel is exact when every input pixel
it reads is exact (otbtf-semantics.md 5, 5.2): TF "same" padding puts the odd pixel after the data, hence
asymmetric windows ([31, 112) of 128 for the sample model). Each rule returns the output span, the textbook
formula as text and the textbook's valid size, shown next to the exact one.
"""

from dataclasses import dataclass, replace
from fractions import Fraction

import numpy as np

from ..records import Geo, Span  # noqa: F401 (the spans' rules live here)


@dataclass(frozen=True)
class Static:
    """A tensor whose shape is known but not its value (a layer's weights)."""

    shape: tuple


class _Unknown:
    """A tensor downstream of a spatial op that could not be interpreted: its geometry is unknown."""

    def __repr__(self):
        return "UNKNOWN"


UNKNOWN = _Unknown()


class NotInterpreted(Exception):
    """An op the walk cannot follow; the message says why."""


def window_of(ok: np.ndarray) -> tuple:
    hit = np.flatnonzero(ok)
    return (int(hit[0]), int(hit[-1]) + 1) if hit.size else (0, 0)


def reading(span: Span, size: int, reads: np.ndarray, step: Fraction) -> Span:
    """The output span whose pixel i reads input pixels reads[i] (-1 in a row = no read)."""
    inside = (reads >= span.first) & (reads < span.end)
    return Span(size, *window_of(inside.all(axis=1)), step)


def conv_axis(span, k, s, d, padding, explicit=(0, 0)):
    keff, n = (k - 1) * d + 1, span.size
    if padding == "SAME":
        out = -(-n // s)
        before = max((out - 1) * s + keff - n, 0) // 2
    else:
        before = explicit[0] if padding == "EXPLICIT" else 0
        out = (n + sum(explicit) - keff) // s + 1 if padding == "EXPLICIT" else (n - keff) // s + 1
    if out < 1:
        raise NotInterpreted(f"a {n} px input is smaller than its {keff} px kernel")
    reads = np.arange(out)[:, None] * s - before + np.arange(k)[None, :] * d
    textbook = max(0, (span.valid - keff) // s + 1)
    return reading(span, out, reads, span.step * s), f"⌊({span.valid} − {keff})/{s}⌋ + 1 = {textbook}", textbook


def transposed_axis(span, k, s, d, padding, out=None, explicit=(0, 0)):
    keff, n = (k - 1) * d + 1, span.size
    if out is None:
        out = n * s if padding == "SAME" else (n - 1) * s + keff - sum(explicit)
    before = {"SAME": max((n - 1) * s + keff - out, 0) // 2, "EXPLICIT": explicit[0]}.get(padding, 0)
    # output i receives input j through tap t when j s - before + t d = i
    num = np.arange(out)[:, None] + before - np.arange(k)[None, :] * d
    inside = np.where(num % s == 0, (num // s >= span.first) & (num // s < span.end), True)
    textbook = max(0, s * span.valid + s - keff)
    return (Span(out, *window_of(inside.all(axis=1)), span.step / s),
            f"{s}·{span.valid} + {s} − {keff} = {textbook}", textbook)


def resize_axis(span, out, nearest, align_corners, half_pixel):
    n, i = span.size, np.arange(out, dtype=np.float64)
    if align_corners and out > 1:
        src = i * (n - 1) / (out - 1)
    elif half_pixel:
        src = (i + 0.5) * n / out - (0.0 if nearest else 0.5)
    else:
        src = i * n / out
    if nearest:
        lo = hi = np.round(src) if align_corners else np.floor(src)
    else:
        lo, hi = np.floor(src), np.ceil(src)
    reads = np.stack([lo, hi], axis=1).astype(np.int64)
    result = reading(span, out, reads, span.step * Fraction(n, out))
    return result, f"resize {n} → {out}: {result.valid}", None


def slice_axis(span, start, stop, stride):
    start, stop, stride = slice(start, stop, stride).indices(span.size)
    out = len(range(start, stop, stride))
    result = reading(span, out, (start + np.arange(out) * stride)[:, None], span.step * abs(stride))
    return result, f"[{start}, {max(start, stop)}) of {span.size}: {result.valid}", None


def pad_axis(span, before, after):
    result = Span(span.size + before + after, span.first + before, span.end + before, span.step)
    return result, f"{span.valid} (+{before}, +{after} padding, not exact)", None


def spatial(geo: Geo, rule, params_y, params_x, kernel=None, stride=None) -> "Result":
    """Apply a per-axis rule to both axes."""
    y, fy, ty = rule(geo.y, *params_y)
    x, fx, tx = rule(geo.x, *params_x)
    textbook = None if tx is None else (tx, ty)
    return Result([replace(geo, y=y, x=x)], kernel, stride, fx if fx == fy else f"x: {fx}; y: {fy}", textbook)


@dataclass(frozen=True)
class Result:
    """What a spatial op gives: its outputs, kernel and stride (x, y) if any, formula, textbook valid (x, y)."""

    outs: list
    kernel: tuple | None = None
    stride: tuple | None = None
    formula: str = ""
    textbook: tuple | None = None


def intersection(geos: list) -> Result:
    """Pixel-by-pixel combination: same sizes, valid where every operand is valid (the skip-sum rule)."""
    rank = max(g.rank for g in geos)
    aligned = [replace(g, axes=tuple(a + rank - g.rank for a in g.axes), rank=rank) for g in geos]
    ref = aligned[0]
    for other in aligned[1:]:
        if other.axes != ref.axes or other.size != ref.size or (other.x.step, other.y.step) != (ref.x.step,
                                                                                                 ref.y.step):
            raise NotInterpreted(f"operands of different sizes {ref.size} and {other.size} (a broadcast "
                                  "pooled map?)")
    spans = []
    for axis in ("y", "x"):
        first = max(getattr(g, axis).first for g in aligned)
        end = min(getattr(g, axis).end for g in aligned)
        spans.append(replace(getattr(ref, axis), first=first, end=max(first, end)))
    out = replace(ref, y=spans[0], x=spans[1])
    return Result([out], formula=" ∩ ".join(str(g.x.valid) for g in geos) + f" = {out.x.valid}"
                   if len(geos) > 1 else "")


def drop_axes(geo: Geo, dropped: set) -> Geo:
    return replace(geo, axes=tuple(a - sum(d < a for d in dropped) for a in geo.axes), rank=geo.rank - len(dropped))


