"""From a request to a plan: the one place that reads the signature, measures the model and computes the grid.

`plan_inference` validates a request against its rasters and model and derives everything a backend needs:
placeholders, output names and bands, receptive and expression fields, the measurement (engine.analysis), the
output grid (TensorflowModelServe semantics, otbtf-semantics.md 1.1-1.7, in exact integer arithmetic), the
written window and the tiles. A run builds it once; the backends only execute it.
"""

from dataclasses import dataclass, replace
from fractions import Fraction
from math import ceil

import numpy as np

from . import grid as g
from .analysis import Measurement, Setup, measure, valid_output
from .errors import EngineError, source_field
from .memory import check_memory
from .model import SavedModel, read_signature, split_crop
from .preparing import fed_channels, prepare
from .raster import gdal_session, raster_info, same_crs
from .sizes import assign_placeholders
from .tile_speed import NOMINAL, fastest
from .request import EXTENT_MODES, FULL, OTBTF, PADDINGS, InferenceRequest, source_names

AUTO_TILE_MAX = 2048       # output pixels. On the sample model, 4096 and 16384 px scenes: peak RSS 1.33 GB (goal
                           # 1.5); 10 % faster than 1536 (fewer margin pixels, and a 4096 px scene's tiles then
                           # start on the output's 256 px GeoTIFF blocks, so none is written twice)
BATCH_PIXELS = 4_000_000   # input pixels per TensorFlow call (several tiles per call)


@dataclass(frozen=True, kw_only=True)
class Plan:
    """A validated request with every derived value: what a run will do, before it does it.

    request: the request completed (output names, engine crop and every source's receptive field resolved).
    crop: output pixels dropped on each side of the raw output (`_cropN` plus the engine's crop).
    window: written output pixels (x0, y0, x1, y1) of the grid; tile (x, y) and tile_base: output pixels.
    exact: the crop keeps only exact pixels (None: not measured).
    """

    request: InferenceRequest
    names: tuple                # source display names
    placeholders: tuple
    channels: tuple
    output_names: tuple
    band_names: tuple
    crop: int
    efield: tuple
    lattice: g.Lattice
    out_x: g.Axis
    out_y: g.Axis
    window: tuple
    tile: tuple
    tile_base: tuple
    batch: int
    exact: bool | None
    measurement: Measurement | None
    crs_wkt: str
    reference_grid: g.RasterGrid  # source 1's georeferencing
    notes: tuple = ()
    kind: str | None = None       # what the output is, by the model card: scores, probabilities, regression

    @property
    def bands(self) -> int:
        """Bands of the output."""
        return len(self.band_names)

    @property
    def geotransform(self) -> tuple:
        """GDAL geotransform of the written output (the window of the grid)."""
        ref, unit_x, unit_y = self.reference_grid, self.lattice.unit_x, self.lattice.unit_y
        x = ref.origin_x + (self.out_x.offset + self.window[0] * self.out_x.step) * unit_x
        y = ref.origin_y - (self.out_y.offset + self.window[1] * self.out_y.step) * unit_y
        return (x, self.out_x.step * unit_x, 0.0, y, 0.0, -self.out_y.step * unit_y)

    @property
    def size(self) -> tuple:
        """(width, height) of the written output."""
        return self.window[2] - self.window[0], self.window[3] - self.window[1]


def plan_inference(request: InferenceRequest, model: SavedModel | None = None, measure_model: bool = True) -> Plan:
    """Validate a request against its rasters and model, and derive the grid, efield, tiles and batch.

    measure_model=False skips running the model to measure its stride and valid window (OTBTF mode only: the OTBTF
    backend needs the grid, not the tiles; the tiles are then the expression field, as OTBTF's); a valid-part
    request still measures, to choose its crop.
    """
    with gdal_session():
        return _plan(request, model, measure_model)


def _plan(request: InferenceRequest, model: SavedModel | None, measure_model: bool) -> Plan:
    if not request.sources:
        raise EngineError("Give at least one source raster.", source_field(0))
    if request.extent_mode not in EXTENT_MODES:
        raise EngineError(f"Unknown extent mode {request.extent_mode!r}; choose one of {EXTENT_MODES}.",
                          "extent_mode")
    if request.padding not in PADDINGS:
        raise EngineError(f"Unknown padding {request.padding!r}; choose one of {PADDINGS}.", "padding")
    if request.crop < 0:
        raise EngineError(f"The crop must be 0 or more output pixels (got {request.crop}).", "crop")
    names = source_names(len(request.sources))
    signature = model.signature if model else read_signature(request.model_dir)
    request, notes, card = prepare(request, signature)
    notes = list(notes)
    infos, channels = _read_sources(request, names)
    declared = [replace(s, nodata=i.nodata) if s.nodata is None and i.nodata is not None else s
                for s, i in zip(request.sources, infos)]
    for name, given, used in zip(names, request.sources, declared):
        if used is not given:
            notes.append(f"{name}: no-data value {used.nodata:g}, declared by its raster (tiles all no-data are "
                         "skipped, output pixels over no-data are masked).")
    request = replace(request, sources=tuple(declared))
    placeholders = _resolve_placeholders(request, signature, names, channels)
    lattice = g.build_lattice([i.grid for i in infos], request.spcscale, names)
    request = replace(request, sources=_resolve_rfields(request, lattice))
    output_names = _resolve_outputs(request, signature)
    rfields = [s.rfield for s in request.sources]

    measurement, exact = None, None
    if not request.output_names and not request.valid_part:
        notes.append(f"Output: {output_names[0]} (the model's raw output).")
    base = split_crop(output_names[0])[0]
    base = base if signature.output(base) is not None else output_names[0]
    choose_crop = request.valid_part and split_crop(output_names[0])[1] == 0 and not request.crop
    if choose_crop or request.extent_mode == FULL or (request.tile_size is None and measure_model):
        model = model or SavedModel.load(request.model_dir)
        ratios = tuple((Fraction(ax.step, lattice.sources_x[0].step), Fraction(ay.step, lattice.sources_y[0].step))
                       for ax, ay in zip(lattice.sources_x, lattice.sources_y))
        measurement = measure(model, Setup(base, tuple(placeholders), tuple(rfields), ratios), card=card)
        if measurement.origin != "measured":
            notes.append(f"Measurement of {base}: from {measurement.origin} (no probe run).")
        _check_output_pixel(measurement, lattice, request.spcscale)
        if choose_crop:
            name, engine_crop = valid_output(signature, measurement, base)
            request = replace(request, output_names=(name,), crop=engine_crop)
            output_names = [name]
            notes.append(f"Valid part: the model loses (left, top, right, bottom) {measurement.lost} px of a "
                         f"{rfields[0][0]} px block (total stride {measurement.stride[0]}); using {name}"
                         + (f" cropped by {engine_crop} px" if engine_crop else "") + ".")
        exact = measurement.exact_crop <= 0 or _crop_is_exact(signature, output_names[0], request.crop, measurement)
    crop = split_crop(output_names[0])[1] + request.crop
    efield = _efield(request, lattice, crop, output_names[0])
    stride = measurement.stride if measurement else (1, 1)

    if request.extent_mode == OTBTF:
        out_x = g.otbtf_axis(lattice.sources_x, [r[0] for r in rfields], lattice.out_step_x, efield[0], names, "x")
        out_y = g.otbtf_axis(lattice.sources_y, [r[1] for r in rfields], lattice.out_step_y, efield[1], names, "y")
        base_xy, quantum = (0, 0), efield
    else:
        g.check_overlap(lattice.sources_x, names, "x")
        g.check_overlap(lattice.sources_y, names, "y")
        out_x = g.full_axis(lattice.sources_x[0], lattice.out_step_x)
        out_y = g.full_axis(lattice.sources_y[0], lattice.out_step_y)
        bx, qx = g.tile_lattice(out_x, lattice.sources_x, [r[0] for r in rfields], efield[0], stride[0])
        by, qy = g.tile_lattice(out_y, lattice.sources_y, [r[1] for r in rfields], efield[1], stride[1])
        base_xy, quantum = (bx, by), (qx, qy)

    window = _window(request.extent, infos[0].grid, lattice, out_x, out_y)
    if request.extent_mode == FULL:  # what an output pixel reads around it: the measured border loss, per side
        left, top, right, bottom = measurement.lost
        g.check_coverage(lattice.sources_x, out_x, window[0], window[2], (left, right), names, "x")
        g.check_coverage(lattice.sources_y, out_y, window[1], window[3], (top, bottom), names, "y")
    # tiles start on the lattice at or just before the written window (any lattice point gives the same pixels)
    base_xy = tuple(b + (window[a] - b) // quantum[a] * quantum[a] for a, b in enumerate(base_xy))
    tile = _tile_size(request, quantum, efield, exact, window, base_xy)
    if request.tile_size is None and exact and request.extent_mode == FULL:  # the fastest here (engine.tile_speed)
        def shapes_of(size):
            return {placeholders[i]: (1,) + tile_input(out_x, out_y, lattice, base_xy, size, efield, source,
                                                       names[i], i)[::-1] + (channels[i],)
                    for i, source in enumerate(request.sources)}

        candidates = dict(_balanced(quantum, window, base_xy, size) for size in NOMINAL)
        tile, note = fastest(model, output_names[0], candidates, shapes_of, quantum)
        notes += [note] if note else []
    pixels, values = 1, 0  # a tile's input, in each source's pixels, and its values (pixels x channels)
    for index, source in enumerate(request.sources):
        width, height = tile_input(out_x, out_y, lattice, base_xy, tile, efield, source, names[index], index)
        pixels += width * height
        values += width * height * channels[index]
    batch = _batch(request, signature, placeholders, pixels)
    # three batches in flight (read, computed, written): their inputs and outputs, float32
    check_memory(3 * 4 * batch * (values + tile[0] * tile[1] * len(signature.band_names(output_names))),
                 f"A batch of {batch} tile(s) of {tile[0]} x {tile[1]} output px", "tile_size",
                 "give a smaller tile size or batch size (Auto fits about 4 million input pixels a batch)")
    if request.extent_mode == FULL and request.tile_size is None and exact is False:
        notes.append(f"{output_names[0]} keeps pixels polluted by the tile borders (exact crop "
                     f"{measurement.exact_crop} px): tiles of the expression field, as OTBTF, show blocking "
                     "artifacts.")
    return Plan(request=request, names=tuple(names), placeholders=tuple(placeholders), channels=tuple(channels),
                output_names=tuple(output_names), band_names=tuple(signature.band_names(output_names)), crop=crop,
                efield=efield, lattice=lattice, out_x=out_x, out_y=out_y, window=window, tile=tile,
                tile_base=base_xy, batch=batch, exact=exact,
                measurement=measurement, crs_wkt=infos[0].crs_wkt, reference_grid=infos[0].grid, notes=tuple(notes),
                kind=next((k for n, k in (card.outputs if card else ()) if n == base), None))


def _batch(request, signature, placeholders, pixels) -> int:
    """Tiles per TensorFlow call: as asked, else about BATCH_PIXELS input pixels; a model exported with a fixed
    batch dimension gets exactly that."""
    size = signature.fixed_batch(placeholders)
    if size:
        if request.batch_size and request.batch_size != size:
            raise EngineError(f"The model takes exactly {size} tile(s) per call (its inputs have a fixed batch "
                              f"dimension); set the batch size to {size} or leave it on Auto.", "batch_size")
        return size
    return request.batch_size or max(1, BATCH_PIXELS // pixels)


def _read_sources(request: InferenceRequest, names: list) -> tuple:
    """Each source's first raster's info and the source's channel count; stacks of one size, one CRS."""
    infos, channels = [], []
    for index, (source, name) in enumerate(zip(request.sources, names)):
        if not source.paths:
            raise EngineError(f"{name}: no raster given.", source_field(index))
        if source.rfield and min(source.rfield) < 1:
            raise EngineError(f"{name}: the receptive field must be at least 1 pixel (got {source.rfield}).",
                              source_field(index, "rfield"))
        stack = [raster_info(p, name, source_field(index)) for p in source.paths]
        for other in stack[1:]:
            if (other.grid.width, other.grid.height) != (stack[0].grid.width, stack[0].grid.height):
                raise EngineError(f"{name}: the stacked rasters must have the same size ({other.path} is "
                                  f"{other.grid.width}x{other.grid.height}, {stack[0].path} is "
                                  f"{stack[0].grid.width}x{stack[0].grid.height}).", source_field(index))
            if not _same_footprint(other.grid, stack[0].grid) or not same_crs(other.crs_wkt, stack[0].crs_wkt):
                raise EngineError(f"{name}: the stacked rasters must cover the same ground on the same grid, as "
                                  f"channels of one image: {other.path} starts at ({other.grid.origin_x:.6g}, "
                                  f"{other.grid.origin_y:.6g}) with {other.grid.spacing_x:g} px, {stack[0].path} at "
                                  f"({stack[0].grid.origin_x:.6g}, {stack[0].grid.origin_y:.6g}) with "
                                  f"{stack[0].grid.spacing_x:g} px. Resample them onto one grid first (Raster > "
                                  "Projections > Warp with the same extent and resolution).", source_field(index))
        if not stack[0].georeferenced and len(request.sources) > 1:
            raise EngineError(f"{name}: {stack[0].path} has no georeferencing, so its pixels cannot be paired with "
                              "the other sources'; georeference it (or give a single source).", source_field(index))
        infos.append(stack[0])
        channels.append(fed_channels(source, sum(i.bands for i in stack)))
    for index, (info, name) in enumerate(zip(infos[1:], names[1:]), start=1):
        if not same_crs(info.crs_wkt, infos[0].crs_wkt):
            raise EngineError(f"{name} is not in the same CRS as source 1; reproject it onto source 1's grid "
                              "(Raster > Projections > Warp).", source_field(index))
    return infos, channels


def _same_footprint(a: g.RasterGrid, b: g.RasterGrid) -> bool:
    """Same origin and pixel size, to a hundredth of a pixel."""
    tolerance = 0.01 * min(a.spacing_x, a.spacing_y)
    return all(abs(u - v) <= tolerance for u, v in ((a.origin_x, b.origin_x), (a.origin_y, b.origin_y),
                                                    (a.spacing_x, b.spacing_x), (a.spacing_y, b.spacing_y)))


def _resolve_rfields(request: InferenceRequest, lattice: g.Lattice) -> tuple:
    """Every source with a receptive field: one not given covers the ground of source 1's."""
    first = request.sources[0].rfield
    if not first:
        raise EngineError("Source 1's receptive field must be at least 1 pixel.", source_field(0, "rfield"))
    sources = []
    for index, source in enumerate(request.sources):
        if not source.rfield or not min(source.rfield):
            steps = ((lattice.sources_x[0].step, lattice.sources_x[index].step),
                     (lattice.sources_y[0].step, lattice.sources_y[index].step))
            source = replace(source, rfield=tuple(g.scale_rfield(first[a], *steps[a]) for a in (0, 1)))
        sources.append(replace(source, rfield=tuple(int(v) for v in source.rfield)))
    return tuple(sources)


def _resolve_placeholders(request, signature, names, channels) -> list:
    inputs = signature.input_names
    if len(request.sources) > len(inputs):
        raise EngineError(f"{len(request.sources)} sources are given but the model has only {len(inputs)} "
                          f"input(s): {', '.join(inputs)}. Remove the extra sources.", source_field(len(inputs)))
    if len(request.sources) < len(inputs):
        raise EngineError(f"The model needs {len(inputs)} inputs ({', '.join(inputs)}) but only "
                          f"{len(request.sources)} source(s) are given. Add source {len(request.sources) + 1}.",
                          source_field(len(request.sources)))
    for index, source in enumerate(request.sources):
        if source.placeholder and signature.input(source.placeholder) is None:
            raise EngineError(f"{names[index]}: placeholder {source.placeholder!r} is not an input of the model; its "
                              f"inputs are: {', '.join(inputs)}.", source_field(index, "placeholder"))
    # a source without a placeholder takes the inputs no source names, in alphabetical order (as Model analysis)
    chosen = assign_placeholders(signature, [s.placeholder for s in request.sources], len(request.sources))
    for index, name in enumerate(chosen):
        info = signature.input(name)
        if info.channels is not None and info.channels != channels[index]:
            raise EngineError(f"{names[index]} has {channels[index]} band(s) but the model's input "
                              f"{info.name!r} takes {info.channels}: give rasters with {info.channels} band(s) "
                              "in total, or the right placeholder.", source_field(index))
    return chosen


def _resolve_outputs(request, signature) -> list:
    names = list(request.output_names) or [signature.base_outputs()[0]]
    for name in names:
        info = signature.output(name)
        if info is None:
            raise EngineError(f"Output {name!r} is not in the model's signature; its outputs are: "
                              f"{', '.join(signature.output_names)}.", "output_names")
        if info.shape is None:
            raise EngineError(f"Output {name!r} has an unknown rank, so neither its spatial size nor its bands "
                              "can be known before running; export the model with a fixed output rank "
                              "([N, H, W, C]).", "output_names")
        if len(info.shape) > 4:
            raise EngineError(f"Output {name!r} has rank {len(info.shape)}; only rank 1 to 4 outputs "
                              "([N, H, W, C]) can be written as raster bands.", "output_names")
        if len(info.shape) == 4 and info.shape[-1] is None:
            raise EngineError(f"Output {name!r} has an unknown number of channels; export the model with a "
                              "static last dimension.", "output_names")
    crops = {split_crop(n)[1] for n in names}
    if len(crops) > 1:
        raise EngineError(f"The outputs {', '.join(names)} have different crops, hence different sizes; "
                          "stack only outputs of the same size.", "output_names")
    return [signature.output(n).name for n in names]


def _check_output_pixel(measurement: Measurement, lattice: g.Lattice, spcscale: float) -> None:
    """The model's output pixel must be the one the spacing scale places on the grid."""
    planned = (Fraction(lattice.out_step_x, lattice.sources_x[0].step),
               Fraction(lattice.out_step_y, lattice.sources_y[0].step))
    if tuple(measurement.output_pixel) != planned:
        scale = measurement.output_pixel[0]
        raise EngineError(f"The model's output pixel is {float(scale):g} x source 1's pixel, but the output spacing "
                          f"scale is {spcscale:g}: set the spacing scale to {float(scale):g}.", "spcscale")


def _efield(request, lattice, crop, output_name) -> tuple:
    """The expression field asked, or source 1's receptive field in output pixels minus twice the crop."""
    if request.efield is not None:
        efield = tuple(int(v) for v in request.efield)
        if min(efield) < 1:
            raise EngineError(f"The expression field must be at least 1 output pixel (got {efield}).", "efield")
        return efield
    ref_rf = request.sources[0].rfield
    ratio = (lattice.sources_x[0].step / lattice.out_step_x, lattice.sources_y[0].step / lattice.out_step_y)
    efield = (int(ref_rf[0] * ratio[0]) - 2 * crop, int(ref_rf[1] * ratio[1]) - 2 * crop)
    if min(efield) < 1:
        raise EngineError(f"Output {output_name} crops {crop} px on each side, which leaves nothing of a "
                          f"{ref_rf[0]} px receptive field: raise source 1's receptive field above {2 * crop} or "
                          "choose a smaller crop.", source_field(0, "rfield"))
    return efield


def _crop_is_exact(signature, output_name, extra_crop, measurement) -> bool:
    base, crop = split_crop(output_name)
    if signature.output(base) is None and crop:
        crop = 0  # a crop output without its raw output: the measurement is of the crop output itself
    return crop + extra_crop >= measurement.exact_crop


def _window(extent, ref_grid, lattice, out_x, out_y) -> tuple:
    """Output pixels (x0, y0, x1, y1) covering `extent` (map units), clipped to the grid."""
    if extent is None:
        return 0, 0, out_x.size, out_y.size
    xmin, ymin, xmax, ymax = extent
    if not (xmax > xmin and ymax > ymin):
        raise EngineError(f"The extent ({xmin:g}, {ymin:g}, {xmax:g}, {ymax:g}) has no area; draw a rectangle, or "
                          "leave the extent empty for the whole of source 1.", "extent")
    sx, sy = out_x.step * lattice.unit_x, out_y.step * lattice.unit_y
    left = ref_grid.origin_x + out_x.offset * lattice.unit_x
    top = ref_grid.origin_y - out_y.offset * lattice.unit_y
    eps = 1e-9
    x0 = max(0, int(np.floor((xmin - left) / sx + eps)))
    x1 = min(out_x.size, int(np.ceil((xmax - left) / sx - eps)))
    y0 = max(0, int(np.floor((top - ymax) / sy + eps)))
    y1 = min(out_y.size, int(np.ceil((top - ymin) / sy - eps)))
    if x1 <= x0 or y1 <= y0:
        raise EngineError("The extent does not overlap the output (source 1's footprint, shrunk by the receptive "
                          "field in OTBTF mode); choose an extent inside source 1.", "extent")
    return x0, y0, x1, y1


def _tile_size(request, quantum, efield, exact, window, base) -> tuple:
    """Tile (x, y) in output pixels: as asked, else large when the output is exact, else the efield."""
    if request.tile_size:
        size = int(request.tile_size)
        for axis in (0, 1):
            if size % quantum[axis]:
                what = "the expression field" if request.extent_mode == OTBTF else "the tile lattice"
                raise EngineError(f"Tile size {size} is not a multiple of {quantum[axis]} output pixels ({what}: "
                                  f"total stride and pixel ratios); use {ceil(size / quantum[axis]) * quantum[axis]}.",
                                  "tile_size")
        return size, size
    if not exact:  # pixels depend on the tile: keep OTBTF's blocks of one expression field
        return efield
    return _balanced(quantum, window, base, AUTO_TILE_MAX)[0]


def _balanced(quantum, window, base, largest) -> tuple:
    """(tile (x, y), tile count): the tiles of at most `largest` output pixels that cover the window in the fewest
    tiles, balanced so that the last one barely overhangs it."""
    tile, count = [], 1
    for axis in (0, 1):
        q = quantum[axis]
        span = window[axis + 2] - base[axis]  # tiles start at `base`, on the lattice, at or before the window
        number = -(-span // max(q, largest // q * q))
        tile.append(-(-span // (number * q)) * q)
        count *= -(-span // tile[-1])
    return tuple(tile), count


def tiles(plan: Plan) -> list:
    """Tile origins (output pixels, may be negative or overhang in Full mode) covering the written window."""
    x0, y0, x1, y1 = plan.window
    xs = g.tile_starts(x0, x1, plan.tile_base[0], plan.tile[0])
    ys = g.tile_starts(y0, y1, plan.tile_base[1], plan.tile[1])
    return [(tx, ty) for ty in ys for tx in xs]


def clip(plan: Plan, tx: int, ty: int) -> tuple:
    """The part of tile (tx, ty) that is written: tile-relative slices and output position."""
    x0, y0, x1, y1 = plan.window
    a, b = max(tx, x0), min(tx + plan.tile[0], x1)
    c, d = max(ty, y0), min(ty + plan.tile[1], y1)
    if plan.request.extent_mode == OTBTF:  # OTBTF tiles never overhang its grid
        b, d = min(b, plan.out_x.size), min(d, plan.out_y.size)
    return (slice(c - ty, d - ty), slice(a - tx, b - tx)), (a - x0, c - y0)


def runs(plan: Plan, group) -> list:
    """The tiles of a batch (row-major) as runs of horizontally adjacent tiles: [(first index, count)].
    Each run is read once per source and written once: small tiles cost a few GDAL calls per batch, not two
    per tile."""
    found = []
    for index, (tx, ty) in enumerate(group):
        if found and ty == group[index - 1][1] and tx == group[index - 1][0] + plan.tile[0]:
            found[-1][1] += 1
        else:
            found.append([index, 1])
    return found


def tile_input(out_x, out_y, lattice, base, tile, efield, source, name, index) -> tuple:
    """(width, height) of a tile's input in source `index`'s pixels."""
    _, width = g.input_window(out_x, base[0], tile[0], lattice.sources_x[index], source.rfield[0], efield[0], name,
                              "x")
    _, height = g.input_window(out_y, base[1], tile[1], lattice.sources_y[index], source.rfield[1], efield[1], name,
                               "y")
    return width, height


def input_shapes(plan: Plan) -> dict:
    """{placeholder: (batch, height, width, channels)}: the tensors of one full batch of the plan."""
    shapes = {}
    for index, source in enumerate(plan.request.sources):
        width, height = tile_input(plan.out_x, plan.out_y, plan.lattice, plan.tile_base, plan.tile, plan.efield,
                                   source, plan.names[index], index)
        shapes[plan.placeholders[index]] = (plan.batch, height, width, plan.channels[index])
    return shapes
