"""Where the output blocks go: the block-sink contract and its GeoTIFF and null implementations.

A backend computes output blocks and hands each to a sink as it comes: `open(plan)` once (the plan gives the
output's size, georeferencing and bands), then `write(x0, y0, block, mask)` per block, `flush()` after a batch,
and `commit()` when all is written or `abort()` on any failure or cancel. The GeoTIFF sink writes a temporary
file renamed by `commit()`; the distortion comparison's sinks compare blocks in memory; the bench's null sink
drops them.
"""

from typing import Protocol

import numpy as np
from osgeo import gdal

from .errors import EngineError
from .paths import check_output, remove_quietly, replace_file, temporary_path
from .raster import AUTO, DATA_TYPES, creation_options
from .request import InferenceRequest

FLUSH_BYTES = 32 << 20  # GeoTiffSink.flush writes to the file after this much


class BlockSink(Protocol):
    """What a backend writes output blocks into."""

    def open(self, plan) -> None:
        """Prepare for the plan's output (size `plan.size`, `plan.bands` bands, `plan.geotransform`)."""

    def write(self, x0: int, y0: int, block: np.ndarray, mask: np.ndarray | None = None) -> None:
        """An (h, w, bands) block at output pixel (x0, y0); `mask` is True over no-data pixels."""

    def declare_nodata(self, value: float) -> None:
        """Some pixels were filled with the no-data `value`."""

    def flush(self) -> None:
        """A batch is complete."""

    def commit(self) -> str | None:
        """Everything was written: finish (the written path, if any)."""

    def abort(self) -> None:
        """Failure or cancel: leave nothing behind."""


class NullSink:
    """Drops every block: the pipeline's speed without its output (the bench's profile)."""

    def open(self, plan) -> None:
        """Nothing to prepare."""

    def write(self, x0: int, y0: int, block: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Dropped."""

    def declare_nodata(self, value: float) -> None:
        """Nothing to declare."""

    def flush(self) -> None:
        """Nothing to flush."""

    def commit(self) -> None:
        """Nothing written."""

    def abort(self) -> None:
        """Nothing to remove."""


def check_output_path(request: InferenceRequest, output_path: str, field: str = "output_path") -> None:
    """The output must be a GeoTIFF path that replaces neither an input raster nor the model (engine.paths)."""
    inputs = [(f"a raster of source {index + 1}", path) for index, source in enumerate(request.sources)
              for path in source.paths]
    check_output(output_path, field, inputs, request.model_dir)


class GeoTiffSink:
    """A tiled, compressed GeoTIFF written under a temporary name and renamed only by `commit()`.

    A crash or a cancel therefore never leaves a file that looks complete under the requested name.
    """

    def __init__(self, path: str, data_type: str = "float32", compression: str = AUTO, field: str = "output_path"):
        if data_type not in DATA_TYPES:
            raise EngineError(f"Unknown output data type {data_type!r}; choose one of {', '.join(DATA_TYPES)}.",
                              "data_type")
        self.options = ["TILED=YES", "BLOCKXSIZE=256", "BLOCKYSIZE=256", "BIGTIFF=IF_SAFER"]
        self.options += creation_options(compression, data_type)
        check_output(path, field)
        self.path, self.field, self.data_type, self.compression = path, field, data_type, compression
        self.temp_path = temporary_path(path)  # also removes what killed runs of this output left
        self.numpy_type = np.dtype(data_type)
        self._pending = 0  # bytes written since the last flush
        self.dataset, self.nodata = None, None
        self.notes = []  # what the user should know about the written values

    def open(self, plan) -> None:
        """Create the file for the plan's output window."""
        width, height = plan.size
        self.create(width, height, plan.bands, plan.geotransform, plan.crs_wkt, plan.band_names)

    def create(self, width: int, height: int, bands: int, geotransform, crs_wkt: str, band_names: list | None = None,
               nodata: float | None = None) -> None:
        """Create the temporary GeoTIFF with this geometry."""
        try:
            self.dataset = gdal.GetDriverByName("GTiff").Create(self.temp_path, width, height, bands,
                                                                DATA_TYPES[self.data_type], self.options)
        except RuntimeError as exc:
            raise EngineError(f"Cannot create the output {self.path!r}: {exc}", self.field) from exc
        self.nodata = nodata
        self.dataset.SetGeoTransform(geotransform)
        if crs_wkt:
            self.dataset.SetProjection(crs_wkt)
        for index in range(bands):
            band = self.dataset.GetRasterBand(index + 1)
            if nodata is not None:
                band.SetNoDataValue(nodata)
            if band_names:
                band.SetDescription(band_names[index])

    def adopt(self, source_path: str, band_names: list) -> None:
        """Fill the temporary file with a copy of another raster of the output's geometry (the Dask backend's
        VRT of its parts), and name its bands."""
        try:
            self.dataset = gdal.Translate(self.temp_path, source_path, format="GTiff", creationOptions=self.options)
        except RuntimeError as exc:
            raise EngineError(f"Cannot create the output {self.path!r}: {exc}", self.field) from exc
        for index, name in enumerate(band_names):
            self.dataset.GetRasterBand(index + 1).SetDescription(name)

    def write(self, x0: int, y0: int, block: np.ndarray, mask: np.ndarray | None = None) -> None:
        """Write an (h, w, bands) block at output pixel (x0, y0), straight from its pixel-interleaved buffer.
        `mask` (True over no-data) is not needed here: those pixels already hold the no-data value."""
        if self.numpy_type.kind in "iu":
            block = self._whole(block)
        data = np.ascontiguousarray(block, dtype=self.numpy_type)
        self._pending += data.nbytes
        size = data.itemsize
        try:
            height, width, bands = data.shape
            self.dataset.WriteRaster(x0, y0, width, height, data, buf_type=DATA_TYPES[str(self.numpy_type)],
                                     buf_pixel_space=size * bands, buf_line_space=size * bands * width,
                                     buf_band_space=size)
        except RuntimeError as exc:
            raise EngineError(f"Writing the output {self.path!r} failed ({exc}); is the disk full?",
                              self.field) from exc

    def _whole(self, block: np.ndarray) -> np.ndarray:
        """Values of an integer output: rounded to the nearest and clipped to the type's range (a cast would
        truncate 0.97 to 0 and wrap -1 to 255), with a note the first time it changes values."""
        if block.dtype.kind in "iu" and np.can_cast(block.dtype, self.numpy_type):
            return block
        limits = np.iinfo(self.numpy_type)
        whole = np.clip(np.rint(np.nan_to_num(block, nan=self.nodata or 0.0)), limits.min, limits.max)
        if not self.notes and block.size and not np.array_equal(whole, block):
            low, high = float(np.nanmin(block)), float(np.nanmax(block))
            self.notes.append(f"Output data type {self.data_type} holds whole numbers from {limits.min} to "
                              f"{limits.max}, but the model's values go from {low:g} to {high:g} (first block): "
                              "they were rounded and clipped. Choose float32 to keep them, or rescale them in the "
                              "model.")
        return whole

    def declare_nodata(self, value: float) -> None:
        """Mark `value` as the bands' no-data value (once some pixels were filled with it)."""
        if self.nodata != value:
            self.nodata = value
            for index in range(self.dataset.RasterCount):
                self.dataset.GetRasterBand(index + 1).SetNoDataValue(value)

    def flush(self) -> None:
        """Write the cached blocks to the file once 32 MB were written since the last time: a flush writes
        whole GeoTIFF blocks, so flushing after every 64 px tile rewrote each 1.5 MB block 16 times."""
        if self._pending < FLUSH_BYTES:
            return
        self._pending = 0
        try:
            self.dataset.FlushCache()
        except RuntimeError as exc:
            raise EngineError(f"Writing the output {self.path!r} failed ({exc}); is the disk full?",
                              self.field) from exc

    def commit(self) -> str:
        """Flush, close and move the finished file to its final name."""
        try:
            self.dataset.FlushCache()
            self.dataset = None
            replace_file(self.temp_path, self.path)
        except (RuntimeError, OSError) as exc:
            self.abort()
            raise EngineError(f"Finishing the output {self.path!r} failed ({exc}); is the disk full?",
                              self.field) from exc
        return self.path

    def abort(self) -> None:
        """Drop the temporary file; the final name is left untouched."""
        self.dataset = None
        for candidate in (self.temp_path, self.temp_path + ".aux.xml"):
            remove_quietly(candidate)
