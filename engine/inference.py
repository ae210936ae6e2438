"""Tiled, streaming inference with TensorflowModelServe semantics (otbtf-semantics.md 1.1-1.7).

`plan_inference` validates a request and derives everything from the rasters and the model: placeholders,
output names, expression field, output grid, tile lattice. `run_inference` then streams tiles through the
model: GDAL reads (with virtual padding), one TensorFlow call per batch of same-shaped tiles, GDAL writes into
a temporary file renamed at the end. Memory is bounded by the tile and batch sizes, never by the image size.
"""

import logging
import os
import time
from fractions import Fraction
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from math import ceil

import numpy as np

from . import grid as g
from .analysis import ProbeSource, probe_model, recommended_crop
from .errors import Cancelled, EngineError
from .model import SavedModel, read_signature, split_crop
from .raster import MIRROR, ZEROS, OutputWriter, SourceReader, gdal_cache_limit, raster_info, same_crs

FULL, OTBTF = "full", "otbtf"
EXTENT_MODES = (FULL, OTBTF)
PADDINGS = (MIRROR, ZEROS)
AUTO_TILE_MAX = 2048       # output pixels. On the sample model, 4096 and 16384 px scenes: peak RSS 1.33 GB (goal
                           # 1.5); 10 % faster than 1536 (fewer margin pixels, and a 4096 px scene's tiles then
                           # start on the output's 256 px GeoTIFF blocks, so none is written twice)
BATCH_PIXELS = 4_000_000   # input pixels per TensorFlow call (several tiles per call)
GDAL_CACHE_BYTES = 64 << 20  # GDAL's block cache during a run: it keeps written blocks until full, so a larger
                             # one makes peak RSS grow with the image (GDAL's default, 5 % of RAM: 1.0 GB at 4096 px,
                             # 1.7 GB at 16384 px; 256 MB: 1.06 and 1.30 GB); 64 MB is as fast

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Source:
    """One model input: rasters stacked as channels, receptive field (x, y) in its own pixels, placeholder."""

    paths: tuple
    rfield: tuple
    placeholder: str | None = None
    nodata: float | None = None


@dataclass(frozen=True)
class InferenceRequest:
    """Everything TensorflowModelServe takes, plus the plugin's extent mode, padding and tiling choices.

    efield: output pixels (x, y); None = source 1's receptive field minus twice the output's crop (`_cropN`).
    extent: (xmin, ymin, xmax, ymax) in source 1's CRS, like OTBTF's box= but geographic; None = everything.
    tile_size: output pixels; None = Auto (large tiles when the output is exact, else the efield, as OTBTF).
    crop: output pixels the engine drops on each side of the model's output, on top of any `_cropN` of the
    output name: lets a model without `_cropN` outputs (or with none fitting) give its valid part.
    """

    model_dir: str
    sources: tuple
    output_names: tuple = ()
    efield: tuple | None = None
    spcscale: float = 1.0
    extent: tuple | None = None
    extent_mode: str = FULL
    padding: str = MIRROR
    tile_size: int | None = None
    batch_size: int | None = None
    data_type: str = "float32"
    background: float = 0.0
    crop: int = 0
    compression: str = "auto"


@dataclass(frozen=True)
class Plan:
    """A validated request with every derived value: what a run will do, before it does it."""

    request: InferenceRequest
    names: tuple                # source display names
    placeholders: tuple
    channels: tuple
    output_names: tuple
    crop: int                   # crop of the (first) output, output pixels per side (0 = raw output)
    efield: tuple
    lattice: g.Lattice
    out_x: g.Axis
    out_y: g.Axis
    window: tuple               # written output pixels: (x0, y0, x1, y1) in the grid
    tile: tuple                 # (x, y) output pixels
    tile_base: tuple            # lattice origin of tile starts (x, y)
    batch: int
    exact: bool | None          # the crop keeps only exact pixels (None: not measured)
    probe: object = None
    crs_wkt: str = ""
    notes: tuple = field(default_factory=tuple)
    reference_grid: g.RasterGrid = None  # source 1's georeferencing

    @property
    def geotransform(self) -> tuple:
        """GDAL geotransform of the written output (the window of the grid)."""
        ref = self.reference_grid
        x = ref.origin_x + (self.out_x.offset + self.window[0] * self.out_x.step) * self.lattice.unit_x
        y = ref.origin_y - (self.out_y.offset + self.window[1] * self.out_y.step) * self.lattice.unit_y
        return (x, self.out_x.step * self.lattice.unit_x, 0.0, y, 0.0, -self.out_y.step * self.lattice.unit_y)

    @property
    def size(self) -> tuple:
        """(width, height) of the written output."""
        return self.window[2] - self.window[0], self.window[3] - self.window[1]


@dataclass(frozen=True)
class InferenceResult:
    """What a run produced and how long it took."""

    path: str
    plan: Plan
    tiles: int
    skipped: int
    seconds: float
    device: str


def source_names(count: int) -> list:
    """Display names matching the algorithms' parameters: 'source 1' ..."""
    return [f"source {i + 1}" for i in range(count)]


def _probe_sources(sources, placeholders, lattice, rfields, synthetic=False):
    """ProbeSources reading real data around each source's centre (mirror padded), cached per size; or, when
    `synthetic`, normal noise with each channel's mean and spread (a flat or saturating image hides borders)."""
    probes = []
    for index, source in enumerate(sources):
        reader = SourceReader(list(source.paths), MIRROR)
        cache = {}

        def make_input(width, height, variant, reader=reader, cache=cache):
            key = (width, height, variant)
            if key not in cache:
                data = reader.read(reader.width // 2 - width // 2, reader.height // 2 - height // 2, width, height)
                # variant 1 must differ everywhere, even on a constant or mirror-symmetric image: roll it by
                # odd offsets and add seeded noise (both variants, so neither is degenerate)
                rng = np.random.default_rng(variant + 10 * synthetic)
                if synthetic:
                    mean = data.mean(axis=(0, 1))
                    spread = np.maximum(np.maximum(data.std(axis=(0, 1)), 0.25 * np.abs(mean)), 1.0)
                    cache[key] = rng.normal(mean, spread, data.shape).astype(np.float32)
                    return cache[key]
                if variant:
                    data = np.roll(data, (height // 3 + 1, width // 5 + 1), axis=(0, 1))
                # strong noise: the probe needs every input pixel to matter, even on a tiny or flat image
                spread = max(float(data.std()), 0.25 * float(np.abs(data).mean()), 1.0) * 0.5
                cache[key] = (data + rng.normal(0.0, spread, data.shape)).astype(np.float32)
            return cache[key]

        probes.append(ProbeSource(placeholders[index], lattice.sources_x[index].step,
                                  lattice.sources_y[index].step, rfields[index], make_input))
    return probes


def plan_inference(request: InferenceRequest, model: SavedModel | None = None, measure: bool = True) -> Plan:
    """Validate a request against its rasters and model, and derive the grid, efield, tiles and batch.

    measure=False skips running the model to measure its stride and valid window (OTBTF mode only: the OTBTF
    backend needs the grid, not the tiles; the tiles are then the expression field, as OTBTF's).
    """
    if not request.sources:
        raise EngineError("Give at least one source raster.", "SOURCE1")
    if request.extent_mode not in EXTENT_MODES:
        raise EngineError(f"Unknown extent mode {request.extent_mode!r}; choose one of {EXTENT_MODES}.",
                          "EXTENT_MODE")
    if request.padding not in PADDINGS:
        raise EngineError(f"Unknown padding {request.padding!r}; choose one of {PADDINGS}.", "PADDING")
    names = source_names(len(request.sources))
    signature = model.signature if model else read_signature(request.model_dir)
    infos, channels = [], []
    for index, (source, name) in enumerate(zip(request.sources, names)):
        parameter = f"SOURCE{index + 1}"
        if not source.paths:
            raise EngineError(f"{name}: no raster given.", parameter)
        if min(source.rfield) < 1:
            raise EngineError(f"{name}: the receptive field must be at least 1 pixel (got {source.rfield}).",
                              f"{parameter}_RFIELD")
        stack = [raster_info(p, name, parameter) for p in source.paths]
        for other in stack[1:]:
            if (other.grid.width, other.grid.height) != (stack[0].grid.width, stack[0].grid.height):
                raise EngineError(f"{name}: the stacked rasters must have the same size ({other.path} is "
                                  f"{other.grid.width}x{other.grid.height}, {stack[0].path} is "
                                  f"{stack[0].grid.width}x{stack[0].grid.height}).", parameter)
        infos.append(stack[0])
        channels.append(sum(i.bands for i in stack))
    for info, name, index in zip(infos[1:], names[1:], range(2, len(infos) + 1)):
        if not same_crs(info.crs_wkt, infos[0].crs_wkt):
            raise EngineError(f"{name} is not in the same CRS as source 1; reproject it onto source 1's grid "
                              "(Raster > Projections > Warp).", f"SOURCE{index}")

    placeholders = _resolve_placeholders(request, signature, names, channels)
    output_names = _resolve_outputs(request, signature)
    crop = split_crop(output_names[0])[1] + request.crop
    if request.crop < 0:
        raise EngineError(f"The crop must be 0 or more output pixels (got {request.crop}).", "CROP")

    lattice = _lattice(infos, request.spcscale, names)
    ref_rf = request.sources[0].rfield
    ratio = (lattice.sources_x[0].step / lattice.out_step_x, lattice.sources_y[0].step / lattice.out_step_y)
    if request.efield is not None:
        efield = tuple(int(v) for v in request.efield)
        if min(efield) < 1:
            raise EngineError(f"The expression field must be at least 1 output pixel (got {efield}).", "EFIELD")
    else:
        efield = (int(ref_rf[0] * ratio[0]) - 2 * crop, int(ref_rf[1] * ratio[1]) - 2 * crop)
        if min(efield) < 1:
            raise EngineError(f"Output {output_names[0]} crops {crop} px on each side, which leaves nothing of "
                              f"a {ref_rf[0]} px receptive field: raise source 1's receptive field above "
                              f"{2 * crop} or choose a smaller crop.", "SOURCE1_RFIELD")
    rfields = [s.rfield for s in request.sources]

    notes = []
    probe, exact = None, None
    if request.extent_mode == FULL or (request.tile_size is None and measure):  # Full: stride; Auto: exactness
        model = model or SavedModel.load(request.model_dir)
        probe = _probe(model, request.sources, placeholders, lattice, rfields, output_names[0])
        exact = probe.exact_crop <= 0 or _crop_is_exact(signature, output_names[0], request.crop, probe)
    stride = probe.stride if probe else (1, 1)

    if request.extent_mode == OTBTF:
        out_x = g.otbtf_axis(lattice.sources_x, [r[0] for r in rfields], lattice.out_step_x, efield[0], names, "x")
        out_y = g.otbtf_axis(lattice.sources_y, [r[1] for r in rfields], lattice.out_step_y, efield[1], names, "y")
        base, quantum = (0, 0), efield
    else:
        g.check_overlap(lattice.sources_x, names, "x")
        g.check_overlap(lattice.sources_y, names, "y")
        out_x = g.full_axis(lattice.sources_x[0], lattice.out_step_x)
        out_y = g.full_axis(lattice.sources_y[0], lattice.out_step_y)
        bx, qx = g.tile_lattice(out_x, lattice.sources_x, [r[0] for r in rfields], efield[0], stride[0])
        by, qy = g.tile_lattice(out_y, lattice.sources_y, [r[1] for r in rfields], efield[1], stride[1])
        base, quantum = (bx, by), (qx, qy)

    window = _window(request.extent, infos[0].grid, lattice, out_x, out_y)
    # tiles start on the lattice at or just before the written window (any lattice point gives the same pixels)
    base = tuple(b + (window[a] - b) // quantum[a] * quantum[a] for a, b in enumerate(base))
    tile = _tile_size(request, quantum, efield, exact, window, base)
    pixels = 1
    for index, source in enumerate(request.sources):  # a tile's input, in each source's pixels
        width, height = _tile_input(out_x, out_y, lattice, base, tile, efield, source, names[index], index)
        pixels += width * height
    batch = request.batch_size or max(1, BATCH_PIXELS // pixels)
    if request.extent_mode == FULL and request.tile_size is None and exact is False:
        notes.append(f"{output_names[0]} keeps pixels polluted by the tile borders (exact crop "
                     f"{probe.exact_crop} px): tiles of the expression field, as OTBTF, show blocking artifacts.")
    return Plan(request, tuple(names), tuple(placeholders), tuple(channels), tuple(output_names), crop, efield,
                lattice, out_x, out_y, window, tile, base, batch, exact, probe, infos[0].crs_wkt, tuple(notes),
                reference_grid=infos[0].grid)


def _crop_is_exact(signature, output_name, extra_crop, probe) -> bool:
    base, crop = split_crop(output_name)
    if signature.output(base) is None and crop:
        crop = 0  # a crop output without its raw output: the probe measured the crop output itself
    return crop + extra_crop >= probe.exact_crop


def _probe(model, sources, placeholders, lattice, rfields, output_name):
    """Measure stride and valid window on the raw output (if the model has it), cached per model and setup."""
    base = split_crop(output_name)[0]
    name = base if model.signature.output(base) is not None else output_name
    key = (id(model), tuple(placeholders), tuple(rfields), lattice.sources_x, lattice.sources_y,
           lattice.out_step_x, lattice.out_step_y, name)
    cache = _probe._cache  # type: ignore[attr-defined]
    if key not in cache:
        steps = (lattice.out_step_x, lattice.out_step_y)
        run = lambda feeds: model.run(feeds, [name])  # noqa: E731
        real = probe_model(run, _probe_sources(sources, placeholders, lattice, rfields), steps, name)
        noise = probe_model(run, _probe_sources(sources, placeholders, lattice, rfields, True), steps, name)
        # a pixel is polluted if either input, or the graph (model analysis), shows it: keep the larger loss
        losses = [real.lost, noise.lost, _theory_lost(model, placeholders, lattice, rfields, name, real)]
        cache[key] = replace(real, lost=tuple(max(v) for v in zip(*(lo for lo in losses if lo))),
                             stride=tuple(max(a, b) for a, b in zip(real.stride, noise.stride)))
    return cache[key]


def _theory_lost(model, placeholders, lattice, rfields, name, probe) -> tuple | None:
    """Pixels the model's graph says a tile border pollutes (engine.receptive, the Model analysis
    algorithm's theory), or None when the graph cannot be followed; the measurement then decides alone."""
    from .receptive import read_theory

    ref = (lattice.sources_x[0].step, lattice.sources_y[0].step)
    steps = {p: (Fraction(ax.step, ref[0]), Fraction(ay.step, ref[1]))
             for p, ax, ay in zip(placeholders, lattice.sources_x, lattice.sources_y)}
    try:
        theory = read_theory(model.function, dict(zip(placeholders, rfields)), steps)
        geo = theory.outputs.get(name)
    except Exception:  # noqa: BLE001 (any graph the walker does not know: the measurement decides)
        return None
    if geo is None:
        return None
    (x0, x1), (y0, y1) = geo.window
    width, height = probe.tile_output
    return x0, y0, width - x1, height - y1


_probe._cache = {}  # type: ignore[attr-defined]


def _resolve_placeholders(request, signature, names, channels) -> list:
    inputs = signature.input_names
    if len(request.sources) > len(inputs):
        raise EngineError(f"{len(request.sources)} sources are given but the model has only {len(inputs)} "
                          f"input(s): {', '.join(inputs)}. Remove the extra sources.",
                          f"SOURCE{len(inputs) + 1}")
    if len(request.sources) < len(inputs):
        raise EngineError(f"The model needs {len(inputs)} inputs ({', '.join(inputs)}) but only "
                          f"{len(request.sources)} source(s) are given. Add source {len(request.sources) + 1}.",
                          f"SOURCE{len(request.sources) + 1}")
    chosen = []
    for index, source in enumerate(request.sources):
        name = source.placeholder or inputs[index]
        info = signature.input(name)
        if info is None:
            raise EngineError(f"{names[index]}: placeholder {name!r} is not an input of the model; its inputs "
                              f"are: {', '.join(inputs)}.", f"SOURCE{index + 1}_PLACEHOLDER")
        if info.channels is not None and info.channels != channels[index]:
            raise EngineError(f"{names[index]} has {channels[index]} band(s) but the model's input "
                              f"{info.name!r} takes {info.channels}: give rasters with {info.channels} band(s) "
                              "in total, or the right placeholder.", f"SOURCE{index + 1}")
        chosen.append(info.name)
    if len(set(chosen)) != len(chosen):
        raise EngineError(f"Two sources feed the same placeholder ({', '.join(chosen)}); give each source its "
                          "own placeholder.", "SOURCE1_PLACEHOLDER")
    return chosen


def _resolve_outputs(request, signature) -> list:
    names = list(request.output_names) or [signature.output_names[0]]
    for name in names:
        info = signature.output(name)
        if info is None:
            raise EngineError(f"Output {name!r} is not in the model's signature; its outputs are: "
                              f"{', '.join(signature.output_names)}.", "OUTPUT_NAMES")
        if info.shape is None:
            raise EngineError(f"Output {name!r} has an unknown rank, so neither its spatial size nor its bands "
                              "can be known before running; export the model with a fixed output rank "
                              "([N, H, W, C]).", "OUTPUT_NAMES")
        if len(info.shape) > 4:
            raise EngineError(f"Output {name!r} has rank {len(info.shape)}; only rank 1 to 4 outputs "
                              "([N, H, W, C]) can be written as raster bands.", "OUTPUT_NAMES")
        if len(info.shape) == 4 and info.shape[-1] is None:
            raise EngineError(f"Output {name!r} has an unknown number of channels; export the model with a "
                              "static last dimension.", "OUTPUT_NAMES")
    crops = {split_crop(n)[1] for n in names}
    if len(crops) > 1:
        raise EngineError(f"The outputs {', '.join(names)} have different crops, hence different sizes; "
                          "stack only outputs of the same size.", "OUTPUT_NAMES")
    return [signature.output(n).name for n in names]


def _lattice(infos, spcscale, names):
    grids = [i.grid for i in infos]
    try:
        return g.build_lattice(grids, spcscale, names)
    except EngineError as exc:
        if exc.parameter:
            raise
        bad = next((i for i, n in enumerate(names) if n in str(exc) and i > 0), 0)
        raise EngineError(str(exc), f"SOURCE{bad + 1}") from exc


def _window(extent, ref_grid, lattice, out_x, out_y) -> tuple:
    """Output pixels (x0, y0, x1, y1) covering `extent` (map units), clipped to the grid."""
    if extent is None:
        return 0, 0, out_x.size, out_y.size
    xmin, ymin, xmax, ymax = extent
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
                          "field in OTBTF mode); choose an extent inside source 1.", "EXTENT")
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
                                  "TILE_SIZE")
        return size, size
    if not exact:  # pixels depend on the tile: keep OTBTF's blocks of one expression field
        return efield
    tile = []
    for axis in (0, 1):
        q = quantum[axis]
        span = window[axis + 2] - base[axis]  # tiles start at `base`, on the lattice, at or before the window
        largest = max(q, AUTO_TILE_MAX // q * q)
        count = -(-span // largest)
        tile.append(-(-span // (count * q)) * q)  # balanced: the last tile barely overhangs the window
    return tuple(tile)


def _tiles(plan: Plan) -> list:
    """Tile origins (output pixels, may be negative or overhang in Full mode) covering the written window."""
    x0, y0, x1, y1 = plan.window
    xs = g.tile_starts(x0, x1, plan.tile_base[0], plan.tile[0])
    ys = g.tile_starts(y0, y1, plan.tile_base[1], plan.tile[1])
    return [(tx, ty) for ty in ys for tx in xs]


def _clip(plan: Plan, tx: int, ty: int) -> tuple:
    """The part of tile (tx, ty) that is written: tile-relative slices and output position."""
    x0, y0, x1, y1 = plan.window
    a, b = max(tx, x0), min(tx + plan.tile[0], x1)
    c, d = max(ty, y0), min(ty + plan.tile[1], y1)
    if plan.request.extent_mode == OTBTF:  # OTBTF tiles never overhang its grid
        b, d = min(b, plan.out_x.size), min(d, plan.out_y.size)
    return (slice(c - ty, d - ty), slice(a - tx, b - tx)), (a - x0, c - y0)


def run_inference(request: InferenceRequest, output_path: str | None, progress=None, is_canceled=None,
                  log_info=None, backend: str = "tensorflow", sink=None) -> InferenceResult:
    """Run a request tile by tile into `output_path` (GeoTIFF); progress(fraction), is_canceled() -> bool.

    backend: "tensorflow" (this engine), "otbtf" (pyotb's TensorflowModelServe, OTBTF extent mode only) or
    "auto" (OTBTF when installed and able to run the request); the choice and its reason are logged.
    sink: instead of a GeoTIFF, sink(plan, bands, band_names) returns an object with OutputWriter's methods
    (write(x0, y0, block, mask), declare_nodata, flush, commit, abort) that receives the output blocks: the
    distortion comparison compares them in memory. The tensorflow backend only; output_path is then unused.
    """
    started = time.perf_counter()
    say = log_info or log.info
    from .otbtf_backend import (BACKEND_NAMES, OTBTF_BACKEND, TENSORFLOW_BACKEND, choose_backend,  # noqa: PLC0415
                                run_otbtf)  # (import cycle)

    chosen, reason = choose_backend(backend, request) if sink is None else (TENSORFLOW_BACKEND, "blocks to a sink")
    say(f"Backend: {BACKEND_NAMES[chosen]} ({reason}).")
    if chosen == OTBTF_BACKEND:
        return run_otbtf(request, output_path, say, progress, is_canceled)
    if sink is None:
        _check_output_path(request, output_path)
    model = SavedModel.load(request.model_dir)
    plan = plan_inference(request, model)
    for note in plan.notes:
        say(note)
    readers = [SourceReader(list(s.paths), request.padding) for s in request.sources]
    width, height = plan.size
    bands = sum(model.signature.output(n).channels or 1 for n in plan.output_names)
    band_names = _band_names(model, plan.output_names)
    say(f"Model {request.model_dir}: inputs {', '.join(plan.placeholders)}; output(s) "
        f"{', '.join(plan.output_names)} ({bands} band(s)); running on {model.device}.")
    say(f"Grid ({request.extent_mode} mode): {width} x {height} output pixels of "
        f"{plan.out_x.step * plan.lattice.unit_x:g} x {plan.out_y.step * plan.lattice.unit_y:g} map units, "
        f"expression field {plan.efield[0]} x {plan.efield[1]}, receptive fields "
        f"{', '.join(f'{n} {s.rfield[0]}x{s.rfield[1]}' for n, s in zip(plan.names, request.sources))}.")
    if plan.probe:
        say(f"Measured: total stride {plan.probe.stride[0]} px, pixels lost to tile borders "
            f"(left, top, right, bottom) {plan.probe.lost} for a {plan.probe.rfield[0]} px tile; "
            f"exact crop {plan.probe.exact_crop} px; output crop {plan.crop} px -> "
            f"{'exact (seamless)' if plan.exact else 'NOT exact (blocking artifacts)'}.")
    tiles = _tiles(plan)
    say(f"Tiles: {len(tiles)} of {plan.tile[0]} x {plan.tile[1]} output pixels, {plan.batch} per TensorFlow call.")
    if sink is not None:
        writer = sink(plan, bands, band_names)
    else:
        writer = OutputWriter(output_path, width, height, bands, plan.geotransform, plan.crs_wkt,
                              request.data_type, band_names=band_names, compression=request.compression)
    batches = [tiles[i:i + plan.batch] for i in range(0, len(tiles), plan.batch)]
    skipped = 0
    # a three-stage pipeline: the next batch is read and the last one written while TensorFlow computes;
    # GDAL and TensorFlow release the GIL, and at most three batches are in memory
    with ThreadPoolExecutor(1, "seamless-read") as reading, ThreadPoolExecutor(1, "seamless-write") as writing, \
            gdal_cache_limit(GDAL_CACHE_BYTES):
        try:
            pending_read = reading.submit(_read_batch, plan, readers, batches[0])
            pending_write = None
            for index, group in enumerate(batches):
                if is_canceled and is_canceled():
                    raise Cancelled("Cancelled by the user.")
                feeds, keep, masks = pending_read.result()
                if index + 1 < len(batches):
                    pending_read = reading.submit(_read_batch, plan, readers, batches[index + 1])
                skipped += len(group) - len(keep)
                outputs = _run_batch(plan, model, feeds, keep) if keep else []
                if pending_write is not None:
                    pending_write.result()
                pending_write = writing.submit(_write_batch, plan, writer, group, keep, outputs, masks, bands)
                if progress:
                    progress((index + 1) / len(batches))
            if pending_write is not None:
                pending_write.result()
            path = writer.commit()
        except BaseException:
            reading.shutdown(wait=True, cancel_futures=True)
            writing.shutdown(wait=True, cancel_futures=True)
            writer.abort()
            raise
    seconds = time.perf_counter() - started
    rate = width * height / max(seconds, 1e-9) / 1e6
    say(f"Wrote {path or 'the output'} in {seconds:.1f} s ({rate:.2f} Mpx/s of output"
        + (f", {skipped} empty tile(s) skipped" if skipped else "") + ").")
    return InferenceResult(path, plan, len(tiles), skipped, seconds, model.device)


def _check_output_path(request: InferenceRequest, output_path: str) -> None:
    """The output must not replace one of the inputs."""
    target = os.path.realpath(output_path)
    for index, source in enumerate(request.sources):
        if any(os.path.realpath(p) == target for p in source.paths):
            raise EngineError(f"The output {output_path!r} is a raster of source {index + 1}: writing it would "
                              "destroy the input; choose another output path.", "OUTPUT")


def _runs(plan: Plan, group) -> list:
    """The tiles of a batch (row-major) as runs of horizontally adjacent tiles: [(first index, count)].
    Each run is read once per source and written once: small tiles cost a few GDAL calls per batch, not two
    per tile."""
    runs = []
    for index, (tx, ty) in enumerate(group):
        if runs and ty == group[index - 1][1] and tx == group[index - 1][0] + plan.tile[0]:
            runs[-1][1] += 1
        else:
            runs.append([index, 1])
    return runs


def _write_batch(plan: Plan, writer: OutputWriter, group, keep, outputs, masks, bands) -> None:
    """Write the part of each tile of `group` inside the output window, a run of adjacent tiles at a time:
    the background for skipped tiles and for the pixels masked as no-data (the mask goes to the writer too)."""
    background = np.float32(plan.request.background)
    slot = {tile: position for position, tile in enumerate(keep)}  # tile index -> its row in `outputs`
    for first, count in _runs(plan, group):
        blocks, block_masks, origin = [], [], None
        for index in range(first, first + count):
            (rows, cols), position = _clip(plan, *group[index])
            origin = origin or position
            shape = (rows.stop - rows.start, cols.stop - cols.start)
            if index in slot:
                blocks.append(outputs[slot[index]][rows, cols])
                block_masks.append(None if masks[index] is None else masks[index][rows, cols])
            else:
                blocks.append(np.full(shape + (bands,), background, np.float32))
                block_masks.append(np.ones(shape, bool))
        block = blocks[0] if count == 1 else np.concatenate(blocks, axis=1)
        mask = None
        if any(m is not None for m in block_masks):
            mask = np.concatenate([np.zeros(b.shape[:2], bool) if m is None else m
                                   for b, m in zip(blocks, block_masks)], axis=1)
            block = np.where(mask[..., np.newaxis], background, block)
            writer.declare_nodata(plan.request.background)
        if block.size:
            writer.write(origin[0], origin[1], block, mask)
    writer.flush()  # to disk now, in this thread, rather than all at once when the file is closed


def _band_names(model, output_names) -> list:
    names = []
    for name in output_names:
        count = model.signature.output(name).channels or 1
        names += [name] if count == 1 else [f"{name}[{c}]" for c in range(count)]
    return names


def _read_batch(plan: Plan, readers, group) -> tuple:
    """Inputs {placeholder: (n, h, w, c)} for the tiles of `group` that are not entirely no-data, the indices
    of those tiles, and per tile a (tile_h, tile_w) mask of output pixels over no-data (or None).

    As OTBTF, a tile is skipped when a source's whole input is its no-data value. Beyond OTBTF, output pixels
    whose source pixels are no-data (or NaN/inf, which are fed as the no-data value or 0) are masked.
    """
    lattice, request = plan.lattice, plan.request
    inputs = [[None] * len(readers) for _ in group]  # per tile, per source: (data, x, y, no bad pixel)
    for first, count in _runs(plan, group):
        for s, (source, reader) in enumerate(zip(request.sources, readers)):
            windows = [g.input_window(plan.out_x, group[i][0], plan.tile[0], lattice.sources_x[s],
                                      source.rfield[0], plan.efield[0], plan.names[s], "x")
                       for i in range(first, first + count)]
            y, h = g.input_window(plan.out_y, group[first][1], plan.tile[1], lattice.sources_y[s],
                                  source.rfield[1], plan.efield[1], plan.names[s], "y")
            left = windows[0][0]
            strip = reader.read(left, y, windows[-1][0] + windows[-1][1] - left, h)  # one read for the run
            clean = bool(np.isfinite(strip).all()) and (source.nodata is None or not (strip == source.nodata).any())
            for i, (x, w) in zip(range(first, first + count), windows):
                inputs[i][s] = (strip[:, x - left:x - left + w], x, y, clean)
    per_source = [[] for _ in readers]
    keep, masks = [], []
    for index, (tx, ty) in enumerate(group):
        tile_arrays, mask, empty = [], None, False
        for s, source in enumerate(request.sources):
            data, x, y, clean = inputs[index][s]
            if clean:  # the usual case: checked once for the whole run
                tile_arrays.append(data)
                continue
            bad = ~np.isfinite(data)
            if source.nodata is not None:
                if np.all(data == source.nodata):
                    empty = True
                bad |= data == source.nodata
            if bad.all():
                empty = True
            elif bad.any():
                data = np.where(np.isfinite(data), data, np.float32(source.nodata or 0.0))
                under = bad.any(axis=-1)[np.ix_(_under(plan.out_y, ty, plan.tile[1], lattice.sources_y[s], y),
                                                _under(plan.out_x, tx, plan.tile[0], lattice.sources_x[s], x))]
                mask = under if mask is None else mask | under
            tile_arrays.append(data)
        masks.append(mask)
        if not empty:
            keep.append(index)
            for s, data in enumerate(tile_arrays):
                per_source[s].append(data)
    feeds = {plan.placeholders[s]: np.stack(arrays) for s, arrays in enumerate(per_source) if arrays}
    return feeds, keep, masks


def _under(out: g.Axis, start: int, length: int, src: g.Axis, window_start: int) -> np.ndarray:
    """For output pixels [start, start + length), the index (in the read window) of the source pixel under
    each output pixel's centre."""
    centres = 2 * (out.offset + (start + np.arange(length)) * out.step) + out.step  # in half units
    return (centres - 2 * src.offset) // (2 * src.step) - window_start


def _run_batch(plan: Plan, model: SavedModel, feeds: dict, keep: list) -> list:
    """One TensorFlow call; returns one (tile_h, tile_w, bands) array per kept tile."""
    results = model.run(feeds, list(plan.output_names))
    stacked = []
    extra = plan.request.crop
    for name in plan.output_names:
        value = results[name]
        if extra:
            value = value[:, extra:value.shape[1] - extra, extra:value.shape[2] - extra]
        if value.shape[1:3] != (plan.tile[1], plan.tile[0]):
            shapes = ", ".join(f"{k} {v.shape[1]}x{v.shape[2]}" for k, v in feeds.items())
            raise EngineError(
                f"The model returned {value.shape[2]}x{value.shape[1]} pixels of {name} for inputs {shapes}, "
                f"but the tile needs {plan.tile[0]}x{plan.tile[1]} (expression field {plan.efield[0]}). "
                f"TensorflowModelServe would stop with \"Error occurred during tensor to image conversion\": "
                f"check the receptive fields, the expression field (receptive field - 2 x crop of "
                f"{name}) and the spacing scale.", "EFIELD")
        stacked.append(value)
    merged = np.concatenate(stacked, axis=-1) if len(stacked) > 1 else stacked[0]
    return [merged[i] for i in range(len(keep))]


def _tile_input(out_x, out_y, lattice, base, tile, efield, source, name, index) -> tuple:
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
        width, height = _tile_input(plan.out_x, plan.out_y, plan.lattice, plan.tile_base, plan.tile, plan.efield,
                                    source, plan.names[index], index)
        shapes[plan.placeholders[index]] = (plan.batch, height, width, plan.channels[index])
    return shapes


def warm_up(request: InferenceRequest) -> None:
    """One TensorFlow call on zeros of a batch's shape, so that a timed run does not pay for the first call of a
    new input shape (oneDNN builds its kernels per shape); nothing when that shape already ran."""
    model = SavedModel.load(request.model_dir)
    plan = plan_inference(request, model)
    batch = min(plan.batch, len(_tiles(plan)))
    feeds = {name: np.zeros((batch,) + shape[1:], np.float32) for name, shape in input_shapes(plan).items()}
    if not model.has_run(feeds, list(plan.output_names)):
        model.run(feeds, list(plan.output_names))


def valid_part_output(request: InferenceRequest) -> tuple:
    """(output name, engine crop, probe) giving the exact valid part for the request's receptive fields.

    Measures the raw output's valid window, then takes the smallest `_cropN` output that is exact (otbtf's
    naming); when the model has none, the engine crops the raw output itself by the smallest exact crop that
    keeps tile inputs on the total-stride lattice.
    """
    signature = read_signature(request.model_dir)
    wanted = request.output_names[0] if request.output_names else signature.base_outputs()[0]
    base = split_crop(wanted)[0] if signature.output(split_crop(wanted)[0]) is not None else wanted
    plan = plan_inference(replace(request, output_names=(base,), efield=None, crop=0, tile_size=None,
                                  extent_mode=FULL, extent=None))
    probe = plan.probe
    pixel = Fraction(plan.out_x.step, plan.lattice.sources_x[0].step)  # an output pixel in source-1 pixels
    size = int(min(request.sources[0].rfield) / pixel)                  # a tile's output for one receptive field
    crops = {c: n for c, n in signature.crops_of(base).items() if c}
    crop = recommended_crop(crops, probe.exact_crop, max(probe.stride), size, pixel)
    if 2 * crop >= size:
        raise EngineError(f"No exact valid part fits a {size} px tile: the model loses {probe.exact_crop} px on a "
                          f"side of each tile. Raise source 1's receptive field above {2 * crop}.", "SOURCE1_RFIELD")
    if crop in crops:
        return crops[crop], 0, probe
    return base, crop, probe
