"""The class map: the argmax of class scores as a Byte raster, written in the same streaming pass as the scores.

`ClassMapSink` is a block sink that receives the blocks the backend computes and fans them out: to the scores'
GeoTIFF sink (optional: a class map alone writes 1 or 2 bytes per pixel instead of 4 per band), and to a Byte
GeoTIFF of the winning class (band 1) and, optionally, its score in percent (band 2, "confidence"). No second run
and no second read of the scores. A class table (CSV `value,name,color`, QGIS `.qml` paletted style or `.clr`
colour map) names and colours the classes; without one they are "class 0..N-1" in a qualitative palette. The
table is written into the GeoTIFF as its colour table and category names, so any GIS shows it.
"""

import codecs
import csv
import io
import math
import os
import re
import xml.etree.ElementTree as ElementTree  # nosec B405  # see _qml_entries

import numpy as np
from osgeo import gdal

from .classes import CLASS_NODATA, MAX_CLASSES, PALETTE, ClassEntry, default_table, hex_color  # noqa: F401
from .errors import EngineError
from .raster import AUTO
from .sinks import GeoTiffSink

SUM_TOLERANCE = 0.01  # softmax scores sum to 1 within this


def read_class_table(path: str) -> tuple:
    """The classes of a class table file, sorted by value: CSV (`value,name,color`, a header line allowed),
    QGIS layer style `.qml` (a paletted renderer's classes) or `.clr` (`value r g b [a] [name]`, QGIS's colour
    map export). Raises an EngineError naming `class_table` with the line at fault."""
    if not os.path.isfile(path):
        raise EngineError(f"The class table {path!r} does not exist; choose a .csv, .qml or .clr file.", "class_table")
    extension = os.path.splitext(path)[1].lower()
    readers = {".csv": _csv_entries, ".txt": _clr_entries, ".clr": _clr_entries, ".qml": _qml_entries}
    if extension not in readers:
        raise EngineError(f"The class table {path!r} is not a .csv, .qml or .clr file; save it as one of those.",
                          "class_table")
    entries = readers[extension](path)
    if not entries:
        raise EngineError(f"The class table {path!r} lists no class; give one line per class (value,name,color).",
                          "class_table")
    values = [e.value for e in entries]
    if len(set(values)) != len(values):
        raise EngineError(f"The class table {path!r} gives a value twice; give each class one line.", "class_table")
    for entry in entries:
        if not 0 <= entry.value < MAX_CLASSES:
            raise EngineError(f"The class table {path!r} has the value {entry.value}; class values are 0..254 "
                              "(the band index of the class's score, from 0).", "class_table")
    return tuple(sorted(entries, key=lambda e: e.value))


ENCODINGS = ("utf-8-sig", "cp1252", "latin-1")  # UTF-8 with or without BOM, then what Windows tools write


def read_text(path: str) -> str:
    """A class table's text in the first of the common encodings that decodes it: UTF-16 with its BOM (Excel's
    "Unicode text"), UTF-8 (a BOM allowed, as Excel's "CSV UTF-8"), else Windows-1252 (Excel's plain CSV,
    Notepad), else Latin-1 (which decodes any byte)."""
    with open(path, "rb") as handle:
        data = handle.read()
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):  # Excel's "Unicode text"
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError:
            pass
    for encoding in ENCODINGS[:-1]:
        try:
            return data.decode(encoding)
        except UnicodeDecodeError:
            continue
    return data.decode(ENCODINGS[-1])  # Latin-1 decodes every byte


def _csv_entries(path: str) -> list:
    try:
        rows = list(csv.reader(io.StringIO(read_text(path), newline="")))
    except csv.Error as exc:
        raise EngineError(f"{os.path.basename(path)} is not a CSV file ({exc}); save it as CSV value,name,color.",
                          "class_table") from exc
    entries = []
    for number, row in enumerate(rows, 1):
        cells = [c.strip() for c in row]
        if not any(cells) or cells[0].startswith("#"):
            continue
        if number == 1 and not cells[0].lstrip("-").isdigit():
            continue  # a header
        where = f"{os.path.basename(path)}, line {number}"
        if len(cells) < 3 or not cells[0].lstrip("-").isdigit():
            raise EngineError(f"{where}: expected value,name,color (e.g. 0,water,#1f77b4), got {row!r}.",
                              "class_table")
        entries.append(ClassEntry(int(cells[0]), cells[1], hex_color(cells[2], where)))
    return entries


def _clr_entries(path: str) -> list:
    entries = []
    for number, line in enumerate(read_text(path).splitlines(), 1):
        words = line.split()
        if not words or words[0].startswith("#") or words[0].upper().startswith("INTERPOLATION"):
            continue
        where = f"{os.path.basename(path)}, line {number}"
        try:
            value, rgb = int(float(words[0])), [int(w) for w in words[1:4]]
        except ValueError as exc:
            raise EngineError(f"{where}: expected value r g b [a] [name], got {line.strip()!r}.",
                              "class_table") from exc
        if len(rgb) < 3:
            raise EngineError(f"{where}: expected value r g b [a] [name], got {line.strip()!r}.", "class_table")
        rest = words[4:]
        alpha = 255
        if rest and rest[0].isdigit():
            alpha, rest = int(rest[0]), rest[1:]
        if any(not 0 <= v <= 255 for v in rgb + [alpha]):
            raise EngineError(f"{where}: colour {' '.join(map(str, rgb + [alpha]))} is out of range; r g b a are "
                              "whole numbers 0..255.", "class_table")
        entries.append(ClassEntry(value, " ".join(rest) or f"class {value}", tuple(rgb) + (alpha,)))
    return entries


def _qml_entries(path: str) -> list:
    # bandit B314: ElementTree fetches no external entities or DTDs, and expat 2.4.1+ (Python 3.10's, Debian 12's
    # 2.5) stops entity expansion bombs: a style file the user picked cannot reach beyond its own text
    try:
        root = ElementTree.parse(path).getroot()  # nosec B314
    except ElementTree.ParseError as exc:
        raise EngineError(f"The class table {path!r} is not a QGIS style file ({exc}).", "class_table") from exc
    # ElementTree keeps no line numbers: the n-th <paletteEntry in the text is the n-th element
    text = read_text(path)
    starts = [match.start() for match in re.finditer(r"<paletteEntry\b", text)]
    entries = []
    for index, element in enumerate(root.iter("paletteEntry")):
        line = text.count("\n", 0, starts[index]) + 1 if index < len(starts) else "?"
        where = f"{os.path.basename(path)}, line {line}"
        color = hex_color(element.get("color", ""), where)
        value = _number(element, "value", where, "the class value, a whole number (e.g. value=\"3\")")
        alpha = _number(element, "alpha", where, "the opacity, a whole number 0..255", "255")
        if value != int(value) or alpha != int(alpha) or not 0 <= alpha <= 255:
            raise EngineError(f"{where}: paletteEntry value={element.get('value')!r} alpha={element.get('alpha')!r}"
                              ": the value must be a whole number and the alpha a whole number 0..255.",
                              "class_table")
        value = int(value)
        entries.append(ClassEntry(value, element.get("label") or f"class {value}", color[:3] + (int(alpha),)))
    if not entries:
        raise EngineError(f"The style {path!r} has no paletted classes (paletteEntry); save a layer styled "
                          "Paletted/Unique values, or give a CSV value,name,color.", "class_table")
    return entries


def _number(element, name: str, where: str, what: str, default: str | None = None) -> float:
    """A paletteEntry's numeric attribute, or an EngineError saying which line and what it should be."""
    text = element.get(name, default)
    try:
        number = float(text)
    except (TypeError, ValueError):
        number = math.nan
    if not math.isfinite(number):
        shown = "missing" if text is None else f"{text!r}, not a number"
        raise EngineError(f"{where}: paletteEntry {name} is {shown}; it must be {what}.", "class_table")
    return number


def complete_table(table: tuple | None, classes: int) -> tuple:
    """The table for a class map of `classes` classes: the given entries for 0..N-1, the default name and colour
    where the table has none, and (table, missing values, values beyond the classes)."""
    given = {e.value: e for e in table or ()}
    defaults = default_table(classes)
    full = tuple(given.get(i, defaults[i]) for i in range(classes))
    missing = [i for i in range(classes) if i not in given] if table else []
    beyond = sorted(v for v in given if v >= classes)
    return full, missing, beyond


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


def band_range(path: str, band: int) -> tuple:
    """(minimum, maximum) of a band, exactly (the display stretch of a regression: one pass over one band)."""
    dataset = gdal.Open(path)
    band = band if 1 <= band <= dataset.RasterCount else 1  # the styling says so when the band does not exist
    low, high = dataset.GetRasterBand(band).ComputeRasterMinMax(False)
    return (float(low), float(high)) if high > low else (float(low), float(low) + 1.0)


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
