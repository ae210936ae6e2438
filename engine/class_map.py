"""The class map: the argmax of class scores as a Byte raster, written in the same streaming pass as the scores.

`ClassMapSink` is a block sink that receives the blocks the backend computes and fans them out: to the scores'
GeoTIFF sink (optional: a class map alone writes 1 or 2 bytes per pixel instead of 4 per band), and to a Byte
GeoTIFF of the winning class (band 1) and, optionally, its score in percent (band 2, "confidence"). No second run
and no second read of the scores. A class table (CSV `value,name,color`, QGIS `.qml` paletted style or `.clr`
colour map) names and colours the classes; without one they are "class 0..N-1" in a qualitative palette. The
table is written into the GeoTIFF as its colour table and category names, so any GIS shows it.
"""

import os

import numpy as np
from osgeo import gdal

# the class tables live in engine.classes (numpy-free, read by the plugin before a run); named here too
from .classes import (CLASS_NODATA, MAX_CLASSES, PALETTE, ClassEntry, complete_table, default_table,  # noqa: F401
                      hex_color, read_class_table)
from .errors import EngineError
from .raster import AUTO, band_range  # noqa: F401 (named here too)
from .sinks import GeoTiffSink

SUM_TOLERANCE = 0.01  # softmax scores sum to 1 within this


def score_warning(block: np.ndarray, mask: np.ndarray | None) -> str | None:
    """Why this (h, w, bands) block does not look like softmax probabilities, or None when it does."""
    valid = block if mask is None else block[~mask]
    valid = valid.reshape(-1, block.shape[-1])
    if not valid.size:
        return None
    low, high = float(valid.min()), float(valid.max())
    if low < -1e-6 or high > 1 + 1e-6:
        return (f"the scores range from {low:.3g} to {high:.3g}, not probabilities in [0, 1]: the class map is the "
                "argmax of raw scores (logits?) and the confidence is not a probability")
    sums = valid.sum(axis=-1, dtype=np.float64)
    if np.abs(sums - 1).max() > SUM_TOLERANCE:
        return (f"the scores of a pixel sum to {sums.min():.3g}..{sums.max():.3g}, not 1: per-class probabilities "
                "(sigmoid?) rather than a softmax; the class map is still their argmax")
    return None


class ClassMapSink:
    """Fans the output blocks out to the scores' sink (or none) and a Byte GeoTIFF of their argmax.

    Both files are written under temporary names; `commit()` renames both, `abort()` removes both.
    """

    def __init__(self, path: str, scores: GeoTiffSink | None = None, confidence: bool = False,
                 table: tuple | None = None, compression: str = AUTO, say=None):
        self.classes = GeoTiffSink(path, "uint8", compression, field="class_map")
        self.scores, self.confidence, self.table, self.say = scores, confidence, table, say or (lambda text: None)
        self.path = scores.path if scores else None  # the scores' file, as GeoTiffSink.path
        self.class_path = path
        self.warned = False

    def open(self, plan) -> None:
        """Refuse outputs that are not class scores; create both files."""
        if plan.bands < 2:
            raise EngineError(f"The output {', '.join(plan.output_names)} has {plan.bands} band: a class map needs "
                              "one score per class (2 bands or more); leave Class map empty for this model.",
                              "class_map")
        if plan.bands > MAX_CLASSES:
            raise EngineError(f"The output has {plan.bands} bands: a Byte class map holds at most {MAX_CLASSES} "
                              "classes; leave Class map empty.", "class_map")
        table, missing, beyond = complete_table(self.table, plan.bands)
        if missing:
            self.say(f"Warning: the class table has no class {', '.join(map(str, missing))}: shown as 'class N'.")
        if beyond:
            self.say(f"Warning: the class table's values {', '.join(map(str, beyond))} are beyond the output's "
                     f"{plan.bands} classes (0..{plan.bands - 1}): ignored.")
        if self.scores is not None:
            self.scores.open(plan)
        width, height = plan.size
        names = ["class"] + (["confidence (%)"] if self.confidence else [])
        self.classes.create(width, height, len(names), plan.geotransform, plan.crs_wkt, names, CLASS_NODATA)
        colors = gdal.ColorTable()
        for entry in table:
            colors.SetColorEntry(entry.value, entry.color)
        band = self.classes.dataset.GetRasterBand(1)
        band.SetColorTable(colors)
        band.SetCategoryNames([e.name for e in table])
        self.entries = table

    def write(self, x0: int, y0: int, block: np.ndarray, mask: np.ndarray | None = None) -> None:
        """The block to the scores' sink, its argmax (and confidence) to the class map."""
        if self.scores is not None:
            self.scores.write(x0, y0, block, mask)
        if not self.warned:
            warning = score_warning(block, mask)
            if warning:
                self.say(f"Warning: class map: {warning}.")
                self.warned = True
            elif mask is None or not mask.all():
                self.warned = True  # the first block with data looked like softmax scores: no need to look again
        winner = np.argmax(block, axis=-1)
        out = np.empty(block.shape[:2] + (2 if self.confidence else 1,), np.uint8)
        out[..., 0] = winner
        if self.confidence:
            best = np.take_along_axis(block, winner[..., np.newaxis], axis=-1)[..., 0]
            out[..., 1] = np.clip(np.rint(best * 100), 0, 100)
        if mask is not None:
            out[mask] = CLASS_NODATA
        self.classes.write(x0, y0, out)

    def declare_nodata(self, value: float) -> None:
        """The scores' no-data value (the class map's is always 255)."""
        if self.scores is not None:
            self.scores.declare_nodata(value)

    def flush(self) -> None:
        """Both files."""
        if self.scores is not None:
            self.scores.flush()
        self.classes.flush()

    def commit(self) -> str:
        """Rename both into place (the class map first; the scores' failure removes it again)."""
        try:
            self.classes.commit()
        except EngineError:
            if self.scores is not None:
                self.scores.abort()
            raise
        if self.scores is not None:
            try:
                self.scores.commit()
            except EngineError:
                os.remove(self.class_path)
                raise
        return self.class_path

    def abort(self) -> None:
        """Remove both temporary files."""
        self.classes.abort()
        if self.scores is not None:
            self.scores.abort()


def most_contrast_band(path: str, window: int = 512) -> int:
    """The band (from 1) with the largest standard deviation over the first `window` x `window` output pixels,
    no-data left out: the band that shows something when a layer is first displayed."""
    dataset = gdal.Open(path)
    width, height = min(window, dataset.RasterXSize), min(window, dataset.RasterYSize)
    spreads = []
    for index in range(1, dataset.RasterCount + 1):
        band = dataset.GetRasterBand(index)
        values = band.ReadAsArray(0, 0, width, height).astype(np.float64)
        nodata = band.GetNoDataValue()
        keep = np.isfinite(values) if nodata is None else np.isfinite(values) & (values != nodata)
        spreads.append(float(values[keep].std()) if keep.any() else 0.0)
    return int(np.argmax(spreads)) + 1
