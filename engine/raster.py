"""GDAL raster input: opening and describing rasters, reading windows with virtual padding; GDAL's settings.

GDAL's exception mode and block cache are process-wide and shared with QGIS and its other plugins: the engine
sets them only for the duration of a run (`gdal_session`), never at import."""

import os
import threading
from contextlib import contextmanager
from dataclasses import dataclass
from xml.etree import ElementTree  # nosec B405  # see vrt_sources

from osgeo import gdal, osr

from .errors import EngineError
from .grid import RasterGrid

AUTO, ZSTD, DEFLATE, NONE = "auto", "zstd", "deflate", "none"
COMPRESSIONS = (AUTO, ZSTD, DEFLATE, NONE)

DATA_TYPES = {
    "float32": gdal.GDT_Float32, "float64": gdal.GDT_Float64, "uint8": gdal.GDT_Byte,
    "int16": gdal.GDT_Int16, "uint16": gdal.GDT_UInt16, "int32": gdal.GDT_Int32, "uint32": gdal.GDT_UInt32,
}


@dataclass(frozen=True)
class RasterInfo:
    """What the engine needs to know of an input raster file."""

    path: str
    grid: RasterGrid
    bands: int
    crs_wkt: str
    nodata: float | None
    georeferenced: bool = True  # False: no geotransform, the pixel grid is used (origin 0, pixel size 1)


_session_lock = threading.Lock()
_session = {"depth": 0, "exceptions": False, "cache": 0}


@contextmanager
def gdal_session(cache_bytes: int | None = None):
    """GDAL raises exceptions (and, with `cache_bytes`, its block cache is capped) inside this block only; the
    previous settings come back when the outermost block ends. Nested and concurrent blocks share one session."""
    with _session_lock:
        if _session["depth"] == 0:
            _session["exceptions"], _session["cache"] = bool(gdal.GetUseExceptions()), gdal.GetCacheMax()
            gdal.UseExceptions()
        _session["depth"] += 1
        if cache_bytes is not None:
            gdal.SetCacheMax(min(gdal.GetCacheMax(), cache_bytes))
    try:
        yield
    finally:
        with _session_lock:
            _session["depth"] -= 1
            if _session["depth"] == 0:
                gdal.SetCacheMax(_session["cache"])
                if not _session["exceptions"]:
                    gdal.DontUseExceptions()


COMPLEX_TYPES = {gdal.GDT_CInt16, gdal.GDT_CInt32, gdal.GDT_CFloat32, gdal.GDT_CFloat64}


VSI_PREFIX = "/vsi"  # GDAL's virtual file systems: /vsizip/, /vsicurl/, /vsimem/, ...


def is_virtual(path: str) -> bool:
    """True for a GDAL virtual path (/vsizip/archive.zip/pan.tif, /vsicurl/https://...): valid for GDAL and QGIS
    to read, never a file the plugin writes."""
    return str(path).startswith(VSI_PREFIX)


def raster_exists(path: str) -> bool:
    """True when the file exists: on disk, or for GDAL's virtual file systems (a member of a zip, a URL)."""
    if not path:
        return False
    if is_virtual(path):
        with gdal_session():
            try:
                return gdal.VSIStatL(path) is not None
            except RuntimeError:
                return False
    return os.path.exists(path)


def open_raster(path: str, name: str, field: str | None = None):
    """Open a raster read-only, or raise an EngineError that names the request field. A raster that refers to
    files (a VRT) must find them all."""
    if not raster_exists(path):
        raise EngineError(f"{name}: raster file not found: {path!r}.", field)
    with gdal_session():
        try:
            dataset = gdal.Open(path, gdal.GA_ReadOnly)
        except RuntimeError as exc:
            raise EngineError(f"{name}: GDAL cannot read {path!r} as a raster ({_first_line(exc)}); is it a "
                              "complete raster file?", field) from exc
    missing = [f for f in vrt_sources(dataset, path) if not raster_exists(f)]
    if missing:
        raise EngineError(f"{name}: {path!r} refers to file(s) that do not exist: {', '.join(missing[:3])}; fix "
                          "the paths in it or rebuild it.", field)
    return dataset


def vrt_sources(dataset, path: str) -> list:
    """The files a VRT reads directly (none for other formats), as paths (GDAL virtual paths kept as given)."""
    if dataset is None or dataset.GetDriver().ShortName != "VRT" or is_virtual(path):
        return []
    return _vrt_file_sources(path)


def _vrt_file_sources(path: str) -> list:
    """The SourceFilename entries of a VRT file (relative ones made absolute)."""
    # bandit B314: ElementTree fetches no external entities or DTDs, and expat 2.4.1+ (Python 3.10's, Debian 12's
    # 2.5) stops entity expansion bombs; GDAL has already opened this VRT
    try:
        root = ElementTree.parse(path).getroot()  # nosec B314
    except (ElementTree.ParseError, OSError):
        return []
    found = []
    for element in root.iter("SourceFilename"):
        name = (element.text or "").strip()
        if not name:
            continue
        if element.get("relativeToVRT") == "1" and not is_virtual(name):
            name = os.path.join(os.path.dirname(os.path.abspath(path)), name)
        found.append(name)
    return found


def files_read(path: str) -> list:
    """Every file on disk that GDAL reads for the raster `path`: the file itself, what GDAL lists for the dataset
    (GetFileList: sidecars, overviews, masks, a VRT's sources), the sources of a VRT and of the VRTs it names,
    recursively, and the archive or file behind a virtual path (/vsizip/a.zip/pan.tif -> a.zip). An output must
    be none of them: writing it would change the input."""
    found, pending, seen = [], [path], set()
    while pending:
        current = pending.pop()
        if not current or current in seen:
            continue
        seen.add(current)
        on_disk = disk_file(current)
        if on_disk and on_disk not in found:
            found.append(on_disk)
        # only the input and the VRTs it names are opened: a mosaic of 10 000 tiles lists them without 10 000 opens
        if (current != path and not current.lower().endswith(".vrt")) or not raster_exists(current):
            continue
        with gdal_session():
            try:
                dataset = gdal.Open(current, gdal.GA_ReadOnly)
                listed = (dataset.GetFileList() or []) if dataset is not None else []
            except RuntimeError:
                dataset, listed = None, []
        pending.extend(listed)
        if dataset is not None and dataset.GetDriver().ShortName == "VRT" and not is_virtual(current):
            pending.extend(_vrt_file_sources(current))
    return found


def disk_file(path: str) -> str | None:
    """The file on disk behind `path`: the path itself, or for a GDAL virtual path the archive or file it reads
    from (/vsizip/{/data/a.zip}/pan.tif, /vsigzip//data/pan.tif.gz, /vsisubfile/0_100,/data/x.tif); None for a
    URL or memory."""
    if not is_virtual(path):
        return path
    rest = path
    while is_virtual(rest):
        prefix, _, rest = rest[1:].partition("/")
        if prefix in ("vsisubfile",):
            rest = rest.partition(",")[2]
        elif prefix in ("vsicurl", "vsimem", "vsistdin", "vsis3", "vsigs", "vsiaz", "vsiadls", "vsioss",
                        "vsiswift", "vsiwebhdfs", "vsihdfs", "vsicurl_streaming"):
            return None
    rest = rest.strip()
    if rest.startswith("{") and "}" in rest:
        return rest[1:rest.index("}")]
    candidate = rest
    while candidate and candidate != os.sep:  # the longest leading part that is a file: the archive
        if os.path.isfile(candidate):
            return candidate
        candidate = os.path.dirname(candidate)
    return None


def raster_info(path: str, name: str, field: str | None = None) -> RasterInfo:
    """Read the grid, band count, CRS and nodata of a raster file. Without georeferencing, the pixel grid (origin
    0, pixel size 1, north-up, as QGIS shows such a raster)."""
    ds = open_raster(path, name, field)
    complex_bands = [b for b in range(1, ds.RasterCount + 1) if ds.GetRasterBand(b).DataType in COMPLEX_TYPES]
    if complex_bands:
        raise EngineError(f"{name}: {path!r} holds complex values (band {complex_bands[0]} is "
                          f"{gdal.GetDataTypeName(ds.GetRasterBand(complex_bands[0]).DataType)}), which a model "
                          "does not take; write its amplitude or its real part first (Raster calculator).", field)
    geotransform = ds.GetGeoTransform(can_return_null=True)
    georeferenced = geotransform is not None
    try:
        grid = RasterGrid.from_geotransform(geotransform or (0.0, 1.0, 0.0, 0.0, 0.0, -1.0), ds.RasterXSize,
                                            ds.RasterYSize, name)
    except EngineError as exc:
        raise EngineError(str(exc), field) from exc
    return RasterInfo(path, grid, ds.RasterCount, ds.GetProjection(), ds.GetRasterBand(1).GetNoDataValue(),
                      georeferenced)


def read_pixels(read, path: str, prefix: str, field: str | None):
    """`read()` (a GDAL read of `path`), or an EngineError naming `field` when GDAL cannot read the pixels: a
    truncated or damaged file, a missing file behind a VRT (an exception inside a gdal_session, None outside)."""
    try:
        data = read()
    except RuntimeError as exc:
        cause = f" ({_first_line(exc)})"
    else:
        if data is not None:
            return data
        cause = ""
    raise EngineError(f"{prefix}GDAL cannot read pixels of {path!r}{cause}; the file is damaged or incomplete: copy "
                      "or export it again.", field)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [exc.__class__.__name__])[0][:200]


def same_crs(wkt_a: str, wkt_b: str) -> bool:
    """True when two WKT strings describe the same CRS (or both are empty)."""
    if not wkt_a or not wkt_b:
        return wkt_a == wkt_b
    a, b = osr.SpatialReference(wkt=wkt_a), osr.SpatialReference(wkt=wkt_b)
    return bool(a.IsSame(b))


def band_range(path: str, band: int) -> tuple:
    """(minimum, maximum) of a band, exactly (the display stretch of a regression: one pass over one band)."""
    dataset = gdal.Open(path)
    band = band if 1 <= band <= dataset.RasterCount else 1  # the styling says so when the band does not exist
    low, high = dataset.GetRasterBand(band).ComputeRasterMinMax(False)
    return (float(low), float(high)) if high > low else (float(low), float(low) + 1.0)


def creation_options(compression: str, data_type: str) -> list:
    """GeoTIFF compression options. Auto: ZSTD for integer outputs; none for float outputs, because lossless
    compression of model probabilities saves about 10 % (measured on the sample's softmax: 89.7 vs 100.7 MB)
    for 2.6 times the write time (13.6 vs 35.7 Mpx/s on 6 bands), which would halve the pipeline's speed."""
    if compression not in COMPRESSIONS:
        raise EngineError(f"Unknown compression {compression!r}; choose one of {', '.join(COMPRESSIONS)}.",
                          "compression")
    if compression == AUTO:
        compression = NONE if data_type.startswith("float") else ZSTD
    if compression == ZSTD:
        return ["COMPRESS=ZSTD", "ZSTD_LEVEL=1"]
    if compression == DEFLATE:
        return ["COMPRESS=DEFLATE", "PREDICTOR=3" if data_type.startswith("float") else "PREDICTOR=2"]
    return []
