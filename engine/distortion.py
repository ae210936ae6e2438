"""Distortion comparison: how far each cropping value is from the exact result, against what it costs.

For a receptive field R and each crop c, the model runs as OTBTF would (OTBTF extent mode, blocks of one
expression field R - 2c), so that every crop shows the border pollution it really leaves; each output is then
compared with the exact reference (the seamless valid part) over their common geographic extent: outputs of
different crops start at different pixels (otbtf-semantics.md 1.2). Theoretical cost: (R / (R - 2c))^2 pixels
computed per output pixel.

The reference is computed once, into a memory-mapped array in a temporary folder; each crop's blocks are
compared with it as they come out of the model, so no crop output is written to disk and read back (that took
24 s of a 43 s sweep on a 4096 px scene). The sums are the same as `compare_rasters` on the files:
the seed's vector RMSE, per-band RMSE, MAE, maximum, pixels above the tolerance.
"""

import os
import re
import tempfile
import time
from dataclasses import dataclass, replace

import numpy as np
from osgeo import gdal

from .errors import EngineError, source_field
from .grid import scale_rfield
from .inference import run_inference, warm_up
from .metrics import SQUARED_ERROR_NODATA, ErrorSums, accumulate
from .model import read_signature, split_crop
from .paths import check_output, check_output_folder, remove_quietly, replace_file, temporary_path
from .planning import Plan, plan_inference
from .raster import gdal_session
from .request import FULL, OTBTF, InferenceRequest
from .sinks import GeoTiffSink


@dataclass(frozen=True)
class CropResult:
    """One crop's distortion and cost. Errors in output value units; cost in computed pixels per output pixel."""

    crop: int
    efield: int
    output_name: str      # the model output used
    engine_crop: int      # pixels the engine cropped itself (the model has no such `_cropN` output)
    rmse: float           # the seed's vector RMSE against the reference
    band_rmse: tuple
    mae: float
    max_abs_error: float
    share_above: float    # share of compared pixels where some band's |error| exceeds the tolerance
    pixels: int
    theoretical_cost: float
    seconds: float
    output_pixels: int
    path: str | None      # the squared-error raster, when asked for

    @property
    def seconds_per_mpx(self) -> float:
        """Measured time per million output pixels."""
        return self.seconds / max(self.output_pixels, 1) * 1e6


@dataclass(frozen=True)
class DistortionResult:
    """All crops, the reference they were compared with, and what the reference was."""

    rfield: int
    reference_output: str
    reference_crop: int
    tolerance: float
    crops: tuple
    measured_crop: int = 0  # the crop of the exact reference (its `_cropN` plus any engine crop)

    def result(self, crop: int) -> CropResult | None:
        """The row of one crop value."""
        return next((r for r in self.crops if r.crop == crop), None)

_CHUNK_PIXELS = 1 << 16  # pixels compared at a time


class _Reference:
    """The sweep's exact reference as a float32 (height, width, bands) array memory-mapped from a temporary .npy
    file (the page cache holds it; a 16384 px scene does not need 6 GB of RAM). No-data pixels are NaN."""

    def __init__(self, path: str):
        self.path, self.plan, self.array = path, None, None
        self.masked = False  # some pixel is no-data (NaN)

    def open(self, plan: Plan) -> None:
        """The array of the plan's output."""
        width, height = plan.size
        self.plan = plan
        self.array = np.lib.format.open_memmap(self.path, mode="w+", dtype=np.float32,
                                               shape=(height, width, plan.bands))

    def write(self, x0: int, y0: int, block: np.ndarray, mask: np.ndarray | None = None) -> None:
        if mask is not None and mask.any():
            block = np.where(mask[..., np.newaxis], np.float32(np.nan), block)
            self.masked = True
        self.array[y0:y0 + block.shape[0], x0:x0 + block.shape[1]] = block

    def declare_nodata(self, value: float) -> None:
        """Masked pixels are NaN here, whatever the background value."""

    def flush(self) -> None:
        """Nothing to flush: the array stays in the page cache for the comparisons (no msync)."""

    def commit(self) -> None:
        return None

    def abort(self) -> None:
        """The temporary folder goes with the sweep."""


def _offset(out, start: int, ref_out, ref_start: int, axis: str) -> int:
    """Where output pixel `start` of one grid is in another grid of the same lattice and pixel size."""
    delta = (out.offset + start * out.step) - (ref_out.offset + ref_start * ref_out.step)
    if out.step != ref_out.step or delta % out.step:
        raise EngineError(f"A crop's output grid is not on the reference's grid along {axis}; this is a bug, "
                          "please report it with the rasters' geotransforms.", "crops")
    return delta // out.step


class _CropComparison:
    """Receives one crop's output blocks and accumulates their differences from the reference (d = crop -
    reference) over the intersection of the two footprints; optionally writes the squared-error raster (sum over
    bands of d^2 per pixel, no-data -1) of that intersection."""

    def __init__(self, reference: _Reference, tolerance: float, error_path: str | None):
        self.reference, self.tolerance, self.error_path = reference, tolerance, error_path
        self.sums, self.bands, self.error = ErrorSums(), 0, None

    def open(self, plan: Plan) -> None:
        """Place this crop's output on the reference's grid; create the squared-error raster, if asked for."""
        ref_plan = self.reference.plan
        self.dx = _offset(plan.out_x, plan.window[0], ref_plan.out_x, ref_plan.window[0], "x")
        self.dy = _offset(plan.out_y, plan.window[1], ref_plan.out_y, ref_plan.window[1], "y")
        width, height = plan.size
        ref_width, ref_height = ref_plan.size
        # the intersection, in this crop's output pixels
        self.box = (max(0, -self.dx), max(0, -self.dy), min(width, ref_width - self.dx),
                    min(height, ref_height - self.dy))
        if self.box[2] <= self.box[0] or self.box[3] <= self.box[1]:
            raise EngineError("A crop's output does not overlap the reference: nothing to compare; choose a larger "
                              "extent.", "extent")
        self.bands = plan.bands
        if self.error_path:
            gt = plan.geotransform
            origin = (gt[0] + self.box[0] * gt[1], gt[3] + self.box[1] * gt[5])
            self.error = GeoTiffSink(self.error_path, "float32", field="error_folder")
            self.error.create(self.box[2] - self.box[0], self.box[3] - self.box[1], 1,
                              (origin[0], gt[1], 0.0, origin[1], 0.0, gt[5]), plan.crs_wkt, ["squared error"])

    def write(self, x0: int, y0: int, block: np.ndarray, mask: np.ndarray | None = None) -> None:
        bx0, by0, bx1, by1 = self.box
        left, top = max(x0, bx0), max(y0, by0)
        right, bottom = min(x0 + block.shape[1], bx1), min(y0 + block.shape[0], by1)
        if right <= left or bottom <= top:
            return
        step = max(1, _CHUNK_PIXELS // (right - left))
        for row in range(top, bottom, step):  # chunks that stay in the CPU cache through the sums
            end = min(row + step, bottom)
            ref = self.reference.array[row + self.dy:end + self.dy, left + self.dx:right + self.dx]
            # d = block - reference, band-planar (bands, pixels) in one pass: numpy's reductions are 7x faster
            # over long band rows than over 6-wide pixel rows
            planar = np.empty((self.bands, (end - row) * (right - left)), np.float32)
            np.subtract(block[row - y0:end - y0, left - x0:right - x0].reshape(-1, self.bands).T,
                        ref.reshape(-1, self.bands).T, out=planar)
            valid = None
            if self.reference.masked:
                valid = ~np.isnan(ref[..., 0])
            if mask is not None:
                inside = ~mask[row - y0:end - y0, left - x0:right - x0]
                valid = inside if valid is None else valid & inside
            if valid is not None and valid.all():
                valid = None
            compared = planar if valid is None else planar[:, valid.ravel()]
            self.sums = accumulate(self.sums, compared, self.tolerance)
            if self.error:
                squared = (planar * planar).sum(axis=0).reshape(end - row, right - left)
                if valid is not None:
                    squared[~valid] = SQUARED_ERROR_NODATA
                    self.error.declare_nodata(SQUARED_ERROR_NODATA)
                self.error.write(left - bx0, row - by0, squared[..., np.newaxis])

    def declare_nodata(self, value: float) -> None:
        """The blocks come with their no-data masks."""

    def flush(self) -> None:
        if self.error:
            self.error.flush()

    def commit(self) -> None:
        """The squared-error raster stays under its temporary name: the sweep renames every file it wrote
        together at its end (a later failure must leave none of them)."""

    def abort(self) -> None:
        if self.error:
            self.error.abort()


def default_crops(model_dir: str, rfield: int, base: str | None = None) -> list:
    """0 (the raw output) and every `_cropN` of the model's output that fits the receptive field."""
    signature = read_signature(model_dir)
    base = base or signature.base_outputs()[0]
    crops = [c for c in signature.crops_of(base) if rfield - 2 * c > 0]
    return sorted(set([0] + crops))


def _reference(request: InferenceRequest, base: str) -> Plan:
    """The plan of the exact valid part: with the given receptive fields, or larger ones when those leave no exact
    pixel (e.g. PAN 64: the sample loses 31 px per side). In Full mode with Auto tiles the valid part does not
    depend on the receptive field, only on the crop being exact."""
    error = None
    for factor in (1, 2, 4):
        sources = tuple(replace(s, rfield=(s.rfield[0] * factor, s.rfield[1] * factor)) if s.rfield else s
                        for s in request.sources)  # None: source 1's ground, in this source's pixels
        try:
            return plan_inference(replace(request, sources=sources, output_names=(base,), valid_part=True,
                                          extent_mode=FULL))
        except EngineError as exc:
            error = exc
    raise error


def _part(progress, index: int, steps: int):
    """progress(fraction) of one run, as the `index`-th of `steps` equal parts of the sweep (None: no progress)."""
    return (lambda fraction: progress((index + fraction) / steps)) if progress else None


class _Files:
    """What a sweep writes (squared-error rasters, the report), kept under temporary names and renamed together at
    its end: a failure, a cancel or a full disk leaves none of them, nor the error folder when the sweep made it."""

    def __init__(self, error_folder: str | None, report_path: str | None):
        self.error_folder, self.report_path = error_folder, report_path
        self.made_folder = bool(error_folder) and not os.path.isdir(error_folder)
        self.sinks, self.report_temp = [], None

    def open(self) -> None:
        """Make the error folder, when one is asked for and missing."""
        if self.made_folder:
            try:
                os.makedirs(self.error_folder)
            except OSError as exc:
                raise EngineError(f"Cannot create the error folder {self.error_folder!r} ({exc.strerror or exc}).",
                                  "error_folder") from exc

    def commit(self, text: str | None) -> None:
        """Close every raster, write the report (`text`), then rename them all into place."""
        for sink in self.sinks:
            try:
                sink.dataset.FlushCache()
                sink.dataset = None
                if gdal.Open(sink.temp_path) is None:
                    raise RuntimeError("the file cannot be read back")
            except RuntimeError as exc:
                raise EngineError(f"Writing the squared-error raster {sink.path!r} failed ({exc}); is the disk "
                                  "full? Free some space or choose another folder.", "error_folder") from exc
        if self.report_path and text is not None:
            self.report_temp = temporary_path(self.report_path)
            try:
                with open(self.report_temp, "w", encoding="utf-8") as handle:
                    handle.write(text)
            except OSError as exc:
                raise EngineError(f"Writing the report {self.report_path!r} failed ({exc.strerror or exc}); is the "
                                  "disk full? Free some space or choose another folder.", "report") from exc
        for sink in self.sinks:
            replace_file(sink.temp_path, sink.path)
        if self.report_temp:
            replace_file(self.report_temp, self.report_path)

    def abort(self) -> None:
        """Remove every temporary file, and the error folder if this sweep made it and it is empty again."""
        for sink in self.sinks:
            sink.abort()
        if self.report_temp:
            remove_quietly(self.report_temp)
        if self.made_folder:
            try:
                os.rmdir(self.error_folder)
            except OSError:
                pass


def _crop_request(base_request: InferenceRequest, signature, base: str, rfield: int, crop: int) -> tuple:
    """(request, output name, engine crop) of one crop's run: OTBTF grid, blocks of its expression field."""
    model_crops = signature.crops_of(base)
    name, engine_crop = (model_crops[crop], 0) if crop in model_crops else (base, crop)
    efield = rfield - 2 * crop
    return (replace(base_request, output_names=(name,), crop=engine_crop, extent_mode=OTBTF, efield=(efield, efield),
                    tile_size=efield), name, engine_crop)


def _off_grid(base_request: InferenceRequest, signature, base: str, rfield: int, crop: int) -> str | None:
    """Why a crop's blocks cannot be read from every source (their edges fall between a source's pixels), or
    None when they can. Planning is cheap here: no model run."""
    try:
        plan_inference(_crop_request(base_request, signature, base, rfield, crop)[0], measure_model=False)
    except EngineError as exc:  # other faults are said where the sweep meets them (the reference comes first)
        return str(exc) if exc.field == "tile_size" else None
    return None


def _check_crops(base_request: InferenceRequest, signature, base: str, rfield: int, crops: list) -> None:
    """Refuse, before computing, the crops whose blocks of R - 2c output pixels do not start and end on every
    source's pixel grid (a coarser source 2: R - 2c must be a multiple of its pixel ratio), saying which can."""
    bad = [c for c in crops if _off_grid(base_request, signature, base, rfield, c)]
    if not bad:
        return
    fits = [c for c in range((rfield + 1) // 2) if not _off_grid(base_request, signature, base, rfield, c)]
    shown = ", ".join(map(str, fits[:12])) + (f" and {len(fits) - 12} more" if len(fits) > 12 else "")
    coarse = re.search(r"on (.+?)'s pixel grid", _off_grid(base_request, signature, base, rfield, bad[0]))
    raise EngineError(f"Crop(s) {', '.join(map(str, bad))} cannot be measured with R = {rfield}: each crop c runs "
                      f"blocks of R - 2c output pixels ({', '.join(str(rfield - 2 * c) for c in bad)}), whose edges "
                      f"would fall between the pixels of {coarse[1] if coarse else 'a coarser source'}; "
                      + (f"crops that can be measured with this R: {shown}." if fits else
                         "no crop can with this R: choose a receptive field that is a multiple of the sources' "
                         "pixel ratio."), "crops")


def distortion_comparison(request: InferenceRequest, rfield: int, crops: list, tolerance: float = 1e-5,
                          error_folder: str | None = None, progress=None, is_canceled=None, log=None,
                          work_folder: str | None = None, with_measured: bool = False,
                          report_path: str | None = None, report=None) -> DistortionResult:
    """Run every crop with receptive field `rfield` (source 1 pixels) and compare it with the exact valid part.
    `with_measured`: add the measured crop (the exact reference's) to the crops when it fits `rfield`.

    The other sources' receptive fields keep their ratio to source 1's. `error_folder`, when given, receives
    one squared-error raster per crop (`squared_error_crop<c>.tif`), on which the block grid shows; every file it
    will receive is checked before computing (none may be a file an input reads). `report_path` receives
    `report(result)` (an HTML text). The rasters and the report are written under temporary names and renamed
    together at the end: a failure, a cancel or a full disk leaves none of them (nor a folder the sweep made).
    """
    say = log or (lambda text: None)
    if rfield < 1:
        raise EngineError(f"The receptive field must be positive (got {rfield}).", "rfield")
    crops = sorted(set(int(c) for c in crops))
    for crop in crops:
        if crop < 0 or rfield - 2 * crop < 1:
            raise EngineError(f"Crop {crop} leaves no expression field of a {rfield} px receptive field "
                              f"(efield = rfield - 2 x crop); use crops below {(rfield + 1) // 2}.", "crops")
    inputs = [(f"a raster of source {index + 1}", path) for index, source in enumerate(request.sources)
              for path in source.paths]
    if report_path:
        check_output(report_path, "report", inputs, request.model_dir, (), "report")
    if error_folder:
        check_output_folder(error_folder, "error_folder", inputs, request.model_dir, "error folder")
    first = request.sources[0].rfield[0] if request.sources[0].rfield else None
    if first is None:  # source 1 at R, the others on its ground (the model card's receptive fields are for its own R)
        sources = (replace(request.sources[0], rfield=(rfield, rfield)),) + tuple(
            replace(s, rfield=None) for s in request.sources[1:])
    else:
        sources = tuple(replace(s, rfield=(scale_rfield(rfield, s.rfield[0], first),) * 2) if s.rfield else s
                        for s in request.sources)
    base_request = replace(request, sources=sources, efield=None, tile_size=None, crop=0)
    signature = read_signature(request.model_dir)
    base = split_crop(request.output_names[0])[0] if request.output_names else signature.base_outputs()[0]
    if signature.output(base) is None:
        raise EngineError(f"The distortion comparison needs the model's raw output {base!r} (or give its name).",
                          "output_names")
    with gdal_session():
        _check_crops(base_request, signature, base, rfield, crops)
    files = _Files(error_folder, report_path)

    def error_path(crop: int) -> str | None:
        """The crop's squared-error raster, checked: never a file an input reads, nor the model."""
        if not error_folder:
            return None
        path = os.path.join(error_folder, f"squared_error_crop{crop}.tif")
        check_output(path, "error_folder", inputs, request.model_dir, what="squared-error raster")
        return path

    steps = len(crops) + 1
    try:
        files.open()
        for crop in crops:  # before computing: every file the folder will receive
            error_path(crop)
        with tempfile.TemporaryDirectory(prefix="seamless-distortion-", dir=work_folder) as folder, gdal_session():
            reference_plan = _reference(base_request, base)
            measured = reference_plan.measurement
            reference_name, reference_crop = reference_plan.output_names[0], reference_plan.request.crop
            measured_crop = split_crop(reference_name)[1] + reference_crop
            if with_measured and measured_crop not in crops and rfield - 2 * measured_crop >= 1 and \
                    not _off_grid(base_request, signature, base, rfield, measured_crop):
                error_path(measured_crop)
                crops = sorted(crops + [measured_crop])
                steps = len(crops) + 1
            say(f"Reference: {reference_name}" + (f" cropped by {reference_crop} px" if reference_crop else "")
                + f", Full mode (exact: the model loses {measured.lost} px of a {measured.setup.sizes[0][0]} px "
                "block).")
            reference = _Reference(os.path.join(folder, "reference.npy"))
            run_inference(reference_plan.request, is_canceled=is_canceled, log_info=lambda text: None,
                          sink=reference, plan=reference_plan, progress=_part(progress, 0, steps))
            rows = []
            for index, crop in enumerate(crops):
                crop_request, name, engine_crop = _crop_request(base_request, signature, base, rfield, crop)
                efield = rfield - 2 * crop
                comparison = _CropComparison(reference, tolerance, error_path(crop))
                crop_plan = warm_up(crop_request)
                started = time.perf_counter()
                result = run_inference(crop_request, is_canceled=is_canceled, log_info=lambda text: None,
                                       sink=comparison, plan=crop_plan, progress=_part(progress, index + 1, steps))
                if comparison.error:
                    files.sinks.append(comparison.error)
                seconds = time.perf_counter() - started
                sums = comparison.sums
                if not sums.pixels:
                    raise EngineError(f"Crop {crop}: every pixel it shares with the reference is no-data; nothing "
                                      "to compare.", source_field(0))
                width, height = result.plan.size
                rows.append(CropResult(crop, efield, name, engine_crop, sums.vector_rmse, sums.band_rmse,
                                       sums.mae, sums.max_abs, sums.above / sums.pixels, sums.pixels,
                                       (rfield / efield) ** 2, seconds, width * height, comparison.error_path))
                say(f"crop {crop:3d} (efield {efield:3d}, {name}{f' cropped {engine_crop}' if engine_crop else ''})"
                    f": RMSE {sums.vector_rmse:.3g}, max |error| {sums.max_abs:.3g}, "
                    f"cost {(rfield / efield) ** 2:.2f}, {seconds:.2f} s")
            del reference, comparison  # unmap before the folder goes
            outcome = DistortionResult(rfield, reference_name, reference_crop, tolerance, tuple(rows),
                                       measured_crop)
            files.commit(report(outcome) if report and report_path else None)
    except BaseException:
        files.abort()
        raise
    return outcome


__all__ = ["CropResult", "DistortionResult", "default_crops", "distortion_comparison"]
