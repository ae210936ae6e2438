"""The names and colours of a class map's values, for the map products made from it (class polygons, area tables).

A class map written by the inference algorithms carries its class table in the GeoTIFF itself (band 1's colour
table and category names, see class_map.ClassMapSink.open); a class table file (CSV, .qml, .clr) given by the user
takes precedence. Values a table does not name are "class N", in the qualitative palette, as on the class map.
"""

import os

from osgeo import gdal

from .classes import MAX_CLASSES, ClassEntry, default_table, read_class_table
from .errors import EngineError


def raster_classes(path: str) -> tuple:
    """The classes a class map names in its GeoTIFF (category names, with the colour table's colours), sorted by
    value; unnamed values and no-data are left out. Empty for a raster without category names."""
    try:
        dataset = gdal.OpenEx(path, gdal.OF_RASTER)
    except RuntimeError:  # GDAL's exceptions on
        dataset = None
    if dataset is None:
        raise EngineError(f"The class map {path!r} cannot be read as a raster.", "class_map")
    band = dataset.GetRasterBand(1)
    colors = band.GetColorTable()
    band.GetMetadata()  # loads the .aux.xml: GDAL 3.6's GTiff GetCategoryNames alone does not
    names = band.GetCategoryNames() or []
    nodata = band.GetNoDataValue()
    entries = []
    for value, name in enumerate(names[:MAX_CLASSES]):
        if not name or value == nodata:
            continue  # an unnamed slot of the category list (values without a name are "class N")
        color = tuple(colors.GetColorEntry(value)) if colors and value < colors.GetCount() else None
        entries.append(ClassEntry(value, name, color or default_table(value + 1)[value].color))
    return tuple(entries)


def class_entries(class_map: str | None = None, table_path: str | None = None) -> tuple:
    """The classes to name a class map's values with: the class table file when given, else the class map's own
    table (empty when it has none: every value is then "class N")."""
    if table_path:
        return read_class_table(table_path)
    if class_map and os.path.exists(class_map):
        return raster_classes(class_map)
    return ()


def entry_of(entries, value) -> ClassEntry:
    """The class of `value` (a number, possibly a float from an area report), or "class N" in the palette."""
    number = int(round(float(value)))
    for entry in entries:
        if entry.value == number:
            return entry
    if 0 <= number < MAX_CLASSES:
        return default_table(number + 1)[number]
    return ClassEntry(number, f"class {number}", (128, 128, 128, 255))  # beyond a Byte class map: grey
