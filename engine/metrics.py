"""Compare two rasters over their geographic intersection: the seed's vector RMSE, per-band RMSE, MAE, max.

The seed's `compute_rmse_value(ref, img)` is pyotb's ExtractROI(mode fit) + BandMathX "(im1-im2)*(im1-im2)'" +
ComputeImagesStatistics: the BandMathX expression is a matrix product, so it returns the RMSE of the error
*vector*, sqrt(mean over pixels of the sum over bands of d_b^2), not a per-band RMSE (findings.md, 1). Here both
are computed, over the intersection of the two footprints (the seed fails when the image does not cover the
reference, findings.md 2), streaming blocks of rows so that memory does not depend on the raster size.
When pyotb imports with OTB, the same numbers come from the seed's OTB applications instead (ExtractROI mode fit,
both ways, BandMathX, ComputeImagesStatistics); `method` forces one or the other.
All errors are in the rasters' value units; d = image - reference.
"""

import math
from dataclasses import dataclass

import numpy as np

from .errors import Cancelled, EngineError
from .grid import build_lattice
from .otb_process import OtbFailed, otb_status, run_task
from .paths import check_output
from .raster import gdal_session, open_raster, raster_info, read_pixels, same_crs
from .sinks import GeoTiffSink

REFERENCE, IMAGE = "reference", "image"  # the fields errors name
AUTO, NUMPY, OTB = "auto", "numpy", "otb"
METHODS = (AUTO, NUMPY, OTB)
METHOD_TEXT = {NUMPY: "numpy, streaming blocks of rows",
               OTB: "OTB through pyotb, as the seed's helper: ExtractROI (mode fit, each raster on the other), "
                    "BandMathX, ComputeImagesStatistics"}
SQUARED_ERROR_NODATA = -1.0  # impossible for a squared error
_BLOCK_PIXELS = 1 << 16  # blocks hold at most this many pixels (a block of rows is split into columns): with
                         # 256 x 256 blocks, 4096 px x 6 bands compare in 2.7 s; with 1 << 20 px, 5.7 s
_TOLERANCE = 1e-6  # relative, on pixel sizes


@dataclass(frozen=True)
class ErrorSums:
    """Running float64 sums of the differences over the pixels seen so far (value units of the rasters)."""

    squared: tuple = ()  # per band: sum of d_b^2
    absolute: float = 0.0  # sum over pixels and bands of |d_b|
    max_abs: float = 0.0  # largest |d_b|
    max_squared: float = 0.0  # largest per-pixel sum over bands of d_b^2
    pixels: int = 0
    above: int = 0  # pixels where some |d_b| exceeds the tolerance

    @property
    def band_rmse(self) -> tuple:
        """Per band: sqrt(mean over pixels of d_b^2)."""
        return tuple(math.sqrt(s / self.pixels) for s in self.squared)

    @property
    def vector_rmse(self) -> float:
        """The seed's headline: sqrt(mean over pixels of the sum over bands of d_b^2)."""
        return math.sqrt(sum(s / self.pixels for s in self.squared))

    @property
    def mae(self) -> float:
        """Mean of |d_b| over pixels and bands."""
        return self.absolute / (self.pixels * len(self.squared))


def accumulate(sums: ErrorSums, diff: np.ndarray, tolerance: float = math.inf) -> ErrorSums:
    """Add a block of differences shaped (bands, pixels), float32 or float64, to the running float64 sums.
    The squares are summed in float64 (the RMSE); the other sums and maxima in the block's type, twice as fast
    for float32 blocks (a float32 block's absolute sum is then good to about 1e-6, relative)."""
    if diff.shape[1] == 0:
        return sums
    squares = diff * diff
    per_band = [float(v) for v in squares.sum(axis=1, dtype=np.float64)]
    squared = tuple(per_band) if not sums.squared else tuple(a + b for a, b in zip(sums.squared, per_band))
    absolute = np.abs(diff)
    largest = absolute.max(axis=0)
    return ErrorSums(squared, sums.absolute + float(absolute.sum()), max(sums.max_abs, float(largest.max())),
                     max(sums.max_squared, float(squares.sum(axis=0).max())), sums.pixels + diff.shape[1],
                     sums.above + int(np.count_nonzero(largest > tolerance)))


@dataclass(frozen=True)
class Comparison:
    """The result of `compare_rasters`; errors in the rasters' value units, windows in pixels of each raster.

    vector_rmse: the seed's headline, sqrt(mean over pixels of the sum over bands of d_b^2).
    band_rmse: per compared band, sqrt(mean over pixels of d_b^2) (their squares sum to vector_rmse^2).
    mae: mean of |d_b| over pixels and bands; max_abs_error: the largest |d_b|; max_squared_error: the largest
    per-pixel sum over bands of d_b^2 (the maximum of the squared-error raster).
    pixels: pixels compared; nodata_pixels: pixels of the intersection skipped as no-data in either raster.
    window_reference, window_image: the intersection as (x0, y0, width, height) in each raster's pixels.
    """

    reference: str
    image: str
    bands: tuple
    vector_rmse: float
    band_rmse: tuple
    mae: float
    max_abs_error: float
    max_squared_error: float
    pixels: int
    nodata_pixels: int
    window_reference: tuple
    window_image: tuple
    nodata: tuple = (None, None)  # (reference, image): per compared band, or None when no band has one
    squared_error_path: str | None = None
    above_tolerance: int = 0  # pixels where some |d_b| > the tolerance given to compare_rasters
    method: str = NUMPY  # what computed the numbers: "numpy" or "otb" (pyotb's applications)

    def summary(self) -> str:
        """A few lines of text for a log or a report."""
        x, y, w, h = self.window_reference
        xi, yi = self.window_image[:2]
        lines = [
            f"Compared {self.image} with {self.reference} over their geographic intersection: {w} x {h} pixels "
            f"(reference pixels from x {x}, y {y}; image pixels from x {xi}, y {yi}), {self.pixels} pixels "
            f"and {len(self.bands)} band(s) ({', '.join(map(str, self.bands))}) compared.",
            f"Vector RMSE (the seed's compute_rmse_value: sqrt of the mean over pixels of the sum over bands of "
            f"the squared differences): {self.vector_rmse:.6g}",
            "Per-band RMSE: " + ", ".join(f"band {b} {v:.6g}" for b, v in zip(self.bands, self.band_rmse)),
            f"MAE (all bands): {self.mae:.6g}; max |error|: {self.max_abs_error:.6g}",
            f"Computed with {METHOD_TEXT.get(self.method, self.method)}.",
        ]
        if self.nodata != (None, None):
            described = [f"{name} " + (", ".join("none" if v is None else f"{v:g}" for v in values) if values
                                       else "none") for name, values in zip(("reference", "image"), self.nodata)]
            lines.append(f"No-data ({'; '.join(described)}): {self.nodata_pixels} pixel(s) of the intersection "
                         "where either raster is no-data were ignored.")
        if self.squared_error_path:
            lines.append(f"Squared error (sum over bands of d^2 per pixel): {self.squared_error_path}")
        return "\n".join(lines)


def _intersection(ref, img) -> tuple:
    """(reference window, image window), each (x0, y0, width, height), or an EngineError naming IMAGE."""
    if not same_crs(ref.crs_wkt, img.crs_wkt):
        raise EngineError("The image and the reference are in different CRSs; reproject the image onto the "
                          "reference's CRS and grid first (Raster > Projections > Warp, or Align rasters).", IMAGE)
    a, b = ref.grid, img.grid
    if (not math.isclose(a.spacing_x, b.spacing_x, rel_tol=_TOLERANCE)
            or not math.isclose(a.spacing_y, b.spacing_y, rel_tol=_TOLERANCE)):
        raise EngineError(f"The image's pixels ({b.spacing_x:g} x {b.spacing_y:g} map units) differ from the "
                          f"reference's ({a.spacing_x:g} x {a.spacing_y:g}); resample the image onto the "
                          "reference's grid first (Raster > Projections > Warp with -tap, or Align rasters).", IMAGE)
    try:
        lattice = build_lattice([a, b], names=["the reference", "the image"])
    except EngineError as exc:
        raise EngineError(str(exc), IMAGE) from exc
    spans = []
    for ref_axis, img_axis in (lattice.sources_x, lattice.sources_y):
        lo, hi = max(ref_axis.offset, img_axis.offset), min(ref_axis.end, img_axis.end)
        if hi <= lo:
            raise EngineError("The image does not overlap the reference: nothing to compare; choose rasters that "
                              "cover the same area.", IMAGE)
        spans.append((lo - ref_axis.offset, lo - img_axis.offset, hi - lo))
    (rx, ix, width), (ry, iy, height) = spans
    return (rx, ry, width, height), (ix, iy, width, height)


def _select_bands(ref_count: int, img_count: int, bands: list | None) -> tuple:
    if bands is None:
        if ref_count != img_count:
            raise EngineError(f"The reference has {ref_count} band(s) and the image {img_count}; choose the bands "
                              "to compare (the same numbers in both).", "bands")
        return tuple(range(1, ref_count + 1))
    bands = tuple(int(b) for b in bands)
    if not bands or any(b < 1 or b > min(ref_count, img_count) for b in bands):
        raise EngineError(f"Bands {list(bands)} do not all exist: the reference has {ref_count} band(s), the image "
                          f"{img_count}.", "bands")
    return bands


def _read(dataset, bands: tuple, x0: int, y0: int, width: int, height: int, path: str = "", field: str = IMAGE):
    """A (bands, height, width) float64 block; a damaged file gives an EngineError naming `field`."""
    return np.stack([read_pixels(lambda b=b: dataset.GetRasterBand(b).ReadAsArray(x0, y0, width, height), path, "",
                                 field) for b in bands]).astype(np.float64)


def _nodata_mask(block: np.ndarray, nodata: tuple | None) -> np.ndarray:
    """(height, width) True where any band equals its no-data value (NaN matches NaN)."""
    mask = np.zeros(block.shape[1:], bool)
    for values, value in zip(block, nodata or ()):
        if value is not None:
            mask |= np.isnan(values) if math.isnan(value) else values == value
    return mask


PROGRESS_STEPS = 32  # blocks of rows, at least 16 rows and at most `block_rows`, so a person sees it advance


def compare_rasters(reference: str, image: str, squared_error_path: str | None = None, bands: list | None = None,
                    progress=None, is_canceled=None, block_rows: int = 256,
                    tolerance: float = math.inf, method: str = AUTO) -> Comparison:
    """Compare `image` with `reference` over their geographic intersection, streaming blocks of rows.

    Both rasters must share the CRS, the pixel size and the pixel grid (else EngineError naming IMAGE). `bands`
    (1-based, the same numbers in both) selects the bands; by default all, which needs equal band counts. Pixels
    that are no-data in any compared band of either raster are ignored and counted. `squared_error_path`, when
    given, receives a float32 GeoTIFF of the per-pixel sum over bands of d^2 on the intersection's grid (no-data
    -1). `tolerance` counts the pixels where some |d_b| exceeds it (above_tolerance).
    method: "otb" computes with pyotb's OTB applications (no no-data, no squared-error raster), "numpy" streams
    with numpy, "auto" takes OTB when pyotb imports with OTB and the comparison needs neither; both give the same
    numbers (relative 1e-7). progress(fraction), is_canceled() -> bool; a cancel raises Cancelled and leaves no file.
    """
    if method not in METHODS:
        raise EngineError(f"Unknown comparison method {method!r}; choose one of {', '.join(METHODS)}.", "method")
    with gdal_session():
        return _compare(reference, image, squared_error_path, bands, progress, is_canceled, block_rows, tolerance,
                        method)


def _compare(reference, image, squared_error_path, bands, progress, is_canceled, block_rows, tolerance,
             method) -> Comparison:
    ref_info = raster_info(reference, "Reference", REFERENCE)
    img_info = raster_info(image, "Image", IMAGE)
    if squared_error_path:
        check_output(squared_error_path, "squared_error_path", [("the reference", reference), ("the image", image)])
    window_ref, window_img = _intersection(ref_info, img_info)
    bands = _select_bands(ref_info.bands, img_info.bands, bands)
    ref_ds, img_ds = open_raster(reference, "Reference", REFERENCE), open_raster(image, "Image", IMAGE)
    nodata = tuple(tuple(ds.GetRasterBand(b).GetNoDataValue() for b in bands) for ds in (ref_ds, img_ds))
    nodata = tuple(values if any(v is not None for v in values) else None for values in nodata)
    if method != NUMPY:
        try:
            unsuitable = _otb_unsuitable(nodata, squared_error_path)
            if unsuitable:
                raise _Unsuitable(unsuitable)
            result = _compare_otb(reference, image, ref_info.grid, (window_ref, window_img), bands, nodata,
                                  tolerance, progress, is_canceled)
            if not math.isfinite(result.vector_rmse):
                raise _Unsuitable("the rasters hold NaN or infinite values, which OTB's statistics do not skip")
            return result
        except _Unsuitable as exc:
            if method == OTB:
                raise EngineError(f"The OTB comparison cannot run: {exc}; use the numpy method.", "method") from exc
    x, y, width, height = window_ref
    xi, yi = window_img[:2]
    g = ref_info.grid
    geotransform = (g.origin_x + x * g.spacing_x, g.spacing_x, 0.0, g.origin_y - y * g.spacing_y, 0.0, -g.spacing_y)
    rows = max(1, min(block_rows, max(16, -(-height // PROGRESS_STEPS))))  # progress in PROGRESS_STEPS steps or so
    cols = max(1, min(width, _BLOCK_PIXELS // rows))
    sums, skipped, writer = ErrorSums(), 0, None
    try:
        if squared_error_path:
            writer = GeoTiffSink(squared_error_path, "float32", field="squared_error_path")
            writer.create(width, height, 1, geotransform, ref_info.crs_wkt, ["squared error"],
                          SQUARED_ERROR_NODATA if nodata != (None, None) else None)
        for top in range(0, height, rows):
            h = min(rows, height - top)
            for left in range(0, width, cols):
                if is_canceled and is_canceled():
                    raise Cancelled("Cancelled by the user.")
                w = min(cols, width - left)
                ref_block = _read(ref_ds, bands, x + left, y + top, w, h, reference, REFERENCE)
                img_block = _read(img_ds, bands, xi + left, yi + top, w, h, image, IMAGE)
                diff = img_block - ref_block
                valid = ~(_nodata_mask(ref_block, nodata[0]) | _nodata_mask(img_block, nodata[1]))
                valid &= np.isfinite(diff).all(axis=0)  # NaN or infinite in either: not comparable, counted
                skipped += int(valid.size - valid.sum())
                sums = accumulate(sums, diff[:, valid], tolerance)
                if writer:
                    squared = np.where(valid, (diff * diff).sum(axis=0), SQUARED_ERROR_NODATA)
                    writer.write(left, top, squared[:, :, None])
            if progress:
                progress((top + h) / height)
        if not sums.pixels:
            raise EngineError("Every pixel of the intersection is no-data, NaN or infinite in the reference or the "
                              f"image ({skipped} pixels): nothing to compare; check the rasters (or their no-data "
                              "values).", IMAGE)
        path = writer.commit() if writer else None
    except BaseException:
        if writer:
            writer.abort()
        raise
    return Comparison(reference, image, bands, sums.vector_rmse, sums.band_rmse, sums.mae, sums.max_abs,
                      sums.max_squared, sums.pixels, skipped, window_ref, window_img, nodata, path, sums.above)


class _Unsuitable(Exception):
    """The OTB path cannot compute this comparison (the reason is the message)."""


def _otb_unsuitable(nodata: tuple, squared_error_path) -> str | None:
    """Why the OTB path cannot compute this comparison, or None."""
    if nodata != (None, None):
        return "no-data values are declared, and OTB's statistics would count those pixels"
    if squared_error_path:
        return "the squared-error raster is written by the numpy path"
    available, reason = otb_status()["pyotb"]
    return None if available else reason


def _compare_otb(reference: str, image: str, grid, windows: tuple, bands: tuple, nodata: tuple, tolerance: float,
                 progress, is_canceled) -> Comparison:
    """The seed's helper over the intersection, in a child process (engine.otb_child.statistics): ExtractROI fits
    the image on the reference, then the reference on that; BandMathX builds d_b^2, |d_b|, the seed's sum over
    bands (im1-im2)*(im1-im2)' and the tolerance test; ComputeImagesStatistics averages them. All >= 0."""
    x, y, width, height = windows[0]
    diffs = [f"(im1b{b}-im2b{b})" for b in bands]  # im1 = image, im2 = reference: d = im1 - im2
    squares, absolutes = [f"{d}*{d}" for d in diffs], [f"abs({d})" for d in diffs]
    expressions = squares + absolutes + ["+".join(squares)]
    wanted = [(i, "mean") for i in range(2 * len(bands))] + [(i, "max") for i in range(len(bands), len(expressions))]
    if math.isfinite(tolerance):
        expressions.append("(" + " || ".join(f"{a}>{tolerance!r}" for a in absolutes) + ") ? 1 : 0")
        wanted.append((len(expressions) - 1, "mean"))
    task = {"task": "statistics", "reference": reference, "image": image, "size": [width, height],
            "origin": [grid.origin_x + x * grid.spacing_x, grid.origin_y - y * grid.spacing_y],
            "spacing": [grid.spacing_x, grid.spacing_y], "expressions": expressions, "wanted": wanted}
    try:
        answer = run_task(task, progress, is_canceled)
    except OtbFailed as exc:
        raise _Unsuitable(f"{exc.kind}: {str(exc)[:300]}") from exc
    if "unsuitable" in answer:
        raise _Unsuitable(answer["unsuitable"])
    if progress:
        progress(1.0)
    value = dict(zip(wanted, answer["values"]))
    count = len(bands)
    band_ms = [value[i, "mean"] for i in range(count)]
    pixels = width * height
    above = round(value[len(expressions) - 1, "mean"] * pixels) if math.isfinite(tolerance) else 0
    return Comparison(reference, image, bands, math.sqrt(sum(band_ms)), tuple(math.sqrt(v) for v in band_ms),
                      sum(value[count + b, "mean"] for b in range(count)) / count,
                      max(value[count + b, "max"] for b in range(count)), value[2 * count, "max"], pixels, 0,
                      windows[0], windows[1], nodata, None, above, OTB)
