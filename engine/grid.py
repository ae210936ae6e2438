"""Output grids and input windows, in exact integer arithmetic (pure functions, no GDAL, no TensorFlow).

Every source raster and the output are placed on one integer lattice per axis, the *unit*: the finest spacing
among them. A raster axis is then an `Axis` (offset of its first pixel corner from source 1's corner, pixel
step, pixel count), all in units. Deriving these integers once, with a tolerance, from the geotransforms avoids
the floating-point snapping that makes OTBTF misregister PAN and XS when float32 cannot hold the pixel size
(0.6 m / 2.4 m; docs/findings.md, 3).
The y axis counts downwards (rows), so north-up rasters map onto the same arithmetic as x.
"""

from dataclasses import dataclass
from math import ceil, floor, gcd, lcm

from .errors import EngineError, source_field

_TOLERANCE = 1e-6  # relative, on spacings and origins expressed in units


@dataclass(frozen=True)
class RasterGrid:
    """A north-up raster's georeferencing: upper-left corner, positive pixel sizes, pixel counts."""

    width: int
    height: int
    origin_x: float
    origin_y: float
    spacing_x: float
    spacing_y: float

    @classmethod
    def from_geotransform(cls, geotransform, width: int, height: int, name: str = "raster") -> "RasterGrid":
        """Build from a GDAL geotransform; rotated or south-up rasters are refused."""
        x0, sx, rx, y0, ry, sy = geotransform
        if rx != 0 or ry != 0:
            raise EngineError(f"{name} is rotated (geotransform terms {rx}, {ry}); warp it north-up first "
                              "(Raster > Projections > Warp).")
        if sx <= 0 or sy >= 0:
            raise EngineError(f"{name} is not north-up (pixel size {sx}, {sy}); warp it north-up first.")
        return cls(width, height, x0, y0, sx, -sy)


@dataclass(frozen=True)
class Axis:
    """One axis of a raster on the unit lattice: first pixel corner `offset`, pixel `step`, `size` pixels."""

    offset: int
    step: int
    size: int

    @property
    def end(self) -> int:
        """Unit coordinate just past the last pixel."""
        return self.offset + self.step * self.size


@dataclass(frozen=True)
class Lattice:
    """The units of both axes and every source's axes on them; `out_step` is the output pixel in units."""

    unit_x: float
    unit_y: float
    sources_x: tuple
    sources_y: tuple
    out_step_x: int
    out_step_y: int


def _as_int(value: float, what: str, field: str | None = None) -> int:
    nearest = round(value)
    if abs(value - nearest) > _TOLERANCE * max(1.0, abs(value)):
        raise EngineError(what, field)
    return int(nearest)


def _axis_unit(spacings: list) -> float:
    return min(spacings)


def build_lattice(grids: list, spcscale: float = 1.0, names: list | None = None) -> Lattice:
    """Place every source (grids[0] = source 1, the reference) and the output on integer lattices.

    Raises EngineError naming the source when spacings are not integer multiples of each other or when a
    source's pixel corners do not fall on the common lattice (grids not aligned).
    """
    names = names or [f"source {i + 1}" for i in range(len(grids))]
    whole = spcscale >= 1 and abs(spcscale - round(spcscale)) <= _TOLERANCE * spcscale
    fraction = 0 < spcscale < 1 and abs(1 / spcscale - round(1 / spcscale)) <= _TOLERANCE / spcscale
    if not (whole or fraction):
        raise EngineError(f"Output spacing scale {spcscale:g} must be a whole number (2: output pixels twice as "
                          "large as source 1's) or its inverse (0.5, 0.25: smaller); use such a value.", "spcscale")
    ref = grids[0]
    out_sx, out_sy = ref.spacing_x * spcscale, ref.spacing_y * spcscale
    unit_x = _axis_unit([g.spacing_x for g in grids] + [out_sx])
    unit_y = _axis_unit([g.spacing_y for g in grids] + [out_sy])
    axes_x, axes_y = [], []
    for index, (grid, name) in enumerate(zip(grids, names)):
        field = source_field(index)
        ratio_hint = (f"{name} has pixel size {grid.spacing_x:g} x {grid.spacing_y:g}, {names[0]} "
                      f"{ref.spacing_x:g} x {ref.spacing_y:g}: their ratio must be an integer (e.g. PAN 0.6 m "
                      f"with XS 2.4 m); resample {name} to a multiple of {names[0]}'s pixel size.")
        step_x = _as_int(grid.spacing_x / unit_x, ratio_hint, field)
        step_y = _as_int(grid.spacing_y / unit_y, ratio_hint, field)
        align_hint = (f"{name}'s pixel grid is not aligned with {names[0]}'s: its upper-left corner is "
                      f"({grid.origin_x - ref.origin_x:+g}, {ref.origin_y - grid.origin_y:+g}) map units away, "
                      f"not a whole number of {unit_x:g} x {unit_y:g} pixels; resample it onto "
                      f"{names[0]}'s grid (gdalwarp -tap or Align rasters).")
        off_x = _as_int((grid.origin_x - ref.origin_x) / unit_x, align_hint, field)
        off_y = _as_int((ref.origin_y - grid.origin_y) / unit_y, align_hint, field)
        axes_x.append(Axis(off_x, step_x, grid.width))
        axes_y.append(Axis(off_y, step_y, grid.height))
    scale_hint = (f"Output spacing scale {spcscale:g} gives output pixels of {out_sx:g} x {out_sy:g} map units, "
                  "not a whole number of the sources' common pixel; use a scale such as 1, 2, 4 or 0.25.")
    return Lattice(unit_x, unit_y, tuple(axes_x), tuple(axes_y),
                   _as_int(out_sx / unit_x, scale_hint, "spcscale"), _as_int(out_sy / unit_y, scale_hint, "spcscale"))


def check_overlap(sources: tuple, names: list, axis_name: str) -> None:
    """Every source must overlap source 1 along this axis."""
    ref = sources[0]
    for index, (axis, name) in enumerate(zip(sources[1:], names[1:]), start=2):
        if axis.end <= ref.offset or axis.offset >= ref.end:
            raise EngineError(f"{name} does not overlap {names[0]} ({axis_name} ranges "
                              f"[{axis.offset}, {axis.end}) and [{ref.offset}, {ref.end}) in pixels of "
                              f"{names[0]}); choose rasters that cover the same area.", source_field(index - 1))


def check_coverage(sources: tuple, out: Axis, first: int, end: int, margins: tuple, names: list,
                   axis_name: str) -> None:
    """Full mode: inside source 1's footprint, every source must cover what the written output pixels
    [first, end) read: those pixels widened by `margins` (output pixels the model reads before and after an
    output pixel, measured), short of less than one of its own pixels at either end. Beyond the image edges the
    virtual padding stands for data; inside, a source that stops early would feed the model padding where the
    scene has data, and the output would be wrong there without a word (a shifted or partial XS)."""
    lo = max(sources[0].offset, out.offset + (first - margins[0]) * out.step)
    hi = min(sources[0].end, out.offset + (end + margins[1]) * out.step)
    for index, (axis, name) in enumerate(zip(sources[1:], names[1:]), start=1):
        if axis.offset - lo >= axis.step or hi - axis.end >= axis.step:
            unit = sources[0].step
            raise EngineError(f"{name} does not cover the area to compute: along {axis_name} it spans "
                              f"[{axis.offset / unit:g}, {axis.end / unit:g}) and the output reads [{lo / unit:g}, "
                              f"{hi / unit:g}), in pixels of {names[0]}; the model would see padding instead of "
                              f"{name}'s data there. Give a {name} covering {names[0]}, or set the extent to the "
                              "area both cover.", source_field(index))


def full_axis(ref: Axis, out_step: int) -> Axis:
    """Full mode: the output covers source 1's whole extent, from its corner (the last pixel may overhang)."""
    return Axis(ref.offset, out_step, ceil(ref.size * ref.step / out_step))


def pad_split(to_pad: int) -> tuple:
    """OTBTF's SmartPad: (before, after) of a total padding, the extra pixel going before."""
    after = to_pad // 2
    return to_pad - after, after


def val_to_pad(efield: int, out_step: int, src_step: int) -> int:
    """OTBTF's valToPad: source pixels spanned by one expression field, int(1 + (ef - 1) * scale)."""
    return int(1 + (efield - 1) * out_step / src_step)


def otbtf_axis(sources: tuple, rfields: list, out_step: int, efield: int, names: list,
               axis_name: str) -> Axis:
    """OTBTF mode: TensorflowModelServe's output axis (otbtf-semantics.md 1.2), in exact integer arithmetic.

    Each source's extent shrinks to the centres where its receptive field fits; the output is their
    intersection snapped onto every source grid, widened by the expression field and truncated to a whole
    number of efield blocks.
    """
    lo, hi = None, None
    for axis, rf in zip(sources, rfields):
        first = axis.offset + axis.step * (rf // 2)
        end = axis.offset + axis.step * (axis.size - rf + 1 + rf // 2)
        lo = first if lo is None else max(lo, first)
        hi = end if hi is None else min(hi, end)
    # snap inwards onto every source grid (OTBTF >= 4.2.1, fully convolutional mode)
    while lo < hi and any((lo - a.offset) % a.step for a in sources):
        lo += 1
    while hi > lo and any((hi - a.offset) % a.step for a in sources):
        hi -= 1
    if hi <= lo:
        raise EngineError(f"OTBTF mode: no output pixel has its whole receptive field inside every source "
                          f"along {axis_name}; the rasters are smaller than the receptive fields. Use the "
                          f"Full extent mode (virtual padding), or smaller receptive fields.", "extent_mode")
    ref_step = sources[0].step
    half = ref_step - out_step  # OTBTF places the origin with 0.5 x source-1 spacing, even when spcscale != 1
    if half % 2:
        raise EngineError("OTBTF mode: with this spacing scale the OTBTF origin falls between output pixels; "
                          "use the Full extent mode.", "extent_mode")
    corner = lo + half // 2
    size = (hi - lo) // out_step
    corner -= out_step * (efield // 2)
    size += efield - 1
    if efield > size:
        raise EngineError(f"OTBTF mode: the expression field ({efield} px) is larger than the output "
                          f"({size} px along {axis_name}): TensorflowModelServe would stop with \"Output grid size "
                          f"is larger than output image size\". Use the Full extent mode or a smaller "
                          f"expression field.", "efield")
    return Axis(corner, out_step, size - size % efield)


def input_window(out: Axis, start: int, length: int, src: Axis, rfield: int, efield: int, name: str,
                 axis_name: str) -> tuple:
    """Source pixels [first, first + size) feeding output pixels [start, start + length) of `out`.

    As OTBTF: the footprint of the output block in the source, padded by rf - valToPad split as SmartPad.
    """
    lo = out.offset + start * out.step - src.offset
    span = length * out.step
    if lo % src.step or span % src.step:
        raise EngineError(f"Output block [{start}, {start + length}) along {axis_name} does not start and end on "
                          f"{name}'s pixel grid; use tile sizes that are multiples of the source's pixel ratio.",
                          "tile_size")
    to_pad = rfield - val_to_pad(efield, out.step, src.step)
    if to_pad < 0:
        raise EngineError(f"The receptive field of {name} ({rfield} px) is smaller than what the expression "
                          f"field ({efield} output px) covers in {name} ({val_to_pad(efield, out.step, src.step)} "
                          f"px): TensorflowModelServe would stop with \"The input requested region of source is not "
                          f"consistent\". Raise the receptive field or lower the expression field.", "efield")
    before, _ = pad_split(to_pad)
    return lo // src.step - before, span // src.step + to_pad


def tile_lattice(out: Axis, sources: tuple, rfields: list, efield: int, stride: int) -> tuple:
    """Full mode: (base, step) of tile starts, in output pixels, so that tiling never changes a pixel.

    Every tile must read each source from a whole pixel, and source 1's input must start on the model's
    total-stride lattice anchored at source 1's first pixel (`stride` in source-1 pixels): a shifted phase
    changes a strided network's output (otbtf-semantics.md 5.2.3).
    """
    ref = sources[0]
    step = 1
    for src in sources:
        step = lcm(step, src.step // gcd(src.step, out.step))
    step = lcm(step, (ref.step * stride) // gcd(ref.step * stride, out.step))
    before = pad_split(rfields[0] - val_to_pad(efield, out.step, ref.step))[0]
    for phase in range(stride):
        for base in range(step):
            lo = out.offset + base * out.step
            if any((lo - s.offset) % s.step for s in sources):
                continue
            if ((lo - ref.offset) // ref.step - before - phase) % stride == 0:
                return base, step
    raise EngineError("The sources' grids admit no common tile origin; resample them onto source 1's grid.",
                      source_field(1))


def tile_starts(first: int, end: int, base: int, tile: int) -> list:
    """Starts of tiles of size `tile` on the lattice base + k*tile that cover output pixels [first, end)."""
    k0 = floor((first - base) / tile)
    starts = []
    start = base + k0 * tile
    while start < end:
        starts.append(start)
        start += tile
    return starts


def scale_rfield(rfield: int, numerator: int, denominator: int) -> int:
    """A receptive field carried to another source: rfield x numerator / denominator, rounded up so that it
    covers at least the same ground (the one rule: PAN 128 at pixel 1 gives XS 32 at pixel 4)."""
    return max(1, -(-rfield * numerator // denominator))
