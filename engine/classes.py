"""Classes of a class map: value, name and colour, the qualitative palette and its defaults, and the class tables
read from files (CSV `value,name,color`, QGIS `.qml` paletted style, `.clr` colour map).

Shared by the class map (engine.class_map), the model card (engine.card, which carries a model's classes) and the
plugin, which reads a table before a run; numpy-free, so that reading one imports no pipeline."""

import codecs
import csv
import io
import math
import os
import re
import xml.etree.ElementTree as ElementTree  # nosec B405  # see _qml_entries
from dataclasses import dataclass

from .errors import EngineError

CLASS_NODATA = 255  # class map (and confidence) value of no-data pixels: at most 255 classes
MAX_CLASSES = 255
# a qualitative palette (Tableau 20, strong colours first), cycled beyond 20 classes
PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
           "#17becf", "#aec7e8", "#ffbb78", "#98df8a", "#ff9896", "#c5b0d5", "#c49c94", "#f7b6d2", "#c7c7c7",
           "#dbdb8d", "#9edae5")


@dataclass(frozen=True)
class ClassEntry:
    """One class: its value in the class map, its name and its colour (r, g, b, a), 0..255 each."""

    value: int
    name: str
    color: tuple


def hex_color(text, where: str, field: str = "class_table") -> tuple:
    """(r, g, b, a) of `#rrggbb` or `#rrggbbaa`; an EngineError naming `where` and `field` for anything else."""
    digits = text.strip().lstrip("#") if isinstance(text, str) else ""
    if len(digits) not in (6, 8) or any(c not in "0123456789abcdefABCDEF" for c in digits):
        raise EngineError(f"{where}: {text!r} is not a colour; write it #rrggbb (e.g. #2ca02c).", field)
    values = [int(digits[i:i + 2], 16) for i in range(0, len(digits), 2)]
    return tuple(values + [255] * (4 - len(values)))


def default_table(classes: int) -> tuple:
    """"class 0" .. "class N-1" in the qualitative palette."""
    return tuple(ClassEntry(i, f"class {i}", hex_color(PALETTE[i % len(PALETTE)], "palette")) for i in range(classes))


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
