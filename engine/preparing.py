"""A request completed before planning: the model card applied, band selection and scaling checked against the
rasters, pixel sizes compared with the card's and, when asked, sources resampled to them.

Band selection and scaling are the engine's own capabilities (every backend feeds `fed_values`' result, or the
same through VRTs), usable without a card; the card only fills what the request leaves empty.
"""

import atexit
import os
import shutil
import tempfile
import uuid
from dataclasses import replace

import numpy as np
from osgeo import gdal

from .card import apply_card, pixel_size_mismatch, read_card
from .errors import EngineError, source_field
from .model import fingerprint
from .raster import raster_info
from .request import source_names

RESAMPLINGS = ("nearest", "bilinear", "cubic", "cubicspline", "lanczos", "average")
_scratch = []  # the folder of this process's warped VRTs (a few kB each), removed when the process ends


def prepare(request, signature) -> tuple:
    """(request, notes, card): the model card's values where the request has none; bands, scales and pixel
    sizes checked against the rasters; sources warped to the card's pixel size when `request.resample` says so."""
    card = read_card(request.model_dir, signature, fingerprint(request.model_dir)) if request.use_card else None
    request, notes = apply_card(request, card)
    notes = list(notes)
    names = source_names(len(request.sources))
    if request.resample is not None and request.resample not in RESAMPLINGS:
        raise EngineError(f"Unknown resampling {request.resample!r}; choose one of {', '.join(RESAMPLINGS)}.",
                          "resample")
    sources = list(request.sources)
    for index, source in enumerate(sources):
        if not source.paths:
            continue
        from_card = card is not None and index < len(card.sources)
        info = raster_info(source.paths[0], names[index], source_field(index))
        mismatch = pixel_size_mismatch(card, index, (info.grid.spacing_x, info.grid.spacing_y))
        if mismatch and info.georeferenced and _projected(info.crs_wkt):
            if request.resample is None:
                raise EngineError(f"{mismatch}. Give imagery at the model's pixel size, or let the plugin resample "
                                  "this source on the fly (Resample to the model's pixel size: e.g. bilinear).",
                                  source_field(index))
            wanted = card.sources[index].pixel_size
            sources[index] = replace(source, paths=tuple(_warp(p, wanted, request.resample) for p in source.paths))
            notes.append(f"{mismatch}: resampled ({request.resample}) to {wanted[0]:g} x {wanted[1]:g}; the output "
                         "is on the resampled grid.")
        bands = sum(raster_info(p, names[index], source_field(index)).bands for p in source.paths)
        _check_bands(sources[index], bands, names[index], index, from_card and card.sources[index])
    return replace(request, sources=tuple(sources)), tuple(notes), card


def _check_bands(source, bands: int, name: str, index: int, entry) -> None:
    """The bands asked exist; one scale and offset, or one per fed band."""
    def origin(key):
        return f" by the model card (sources[{index}].{key})"

    if source.bands is not None:
        wrong = [b for b in source.bands if b > bands]
        if wrong:
            said = origin("bands") if entry and entry.bands == source.bands else ""
            raise EngineError(f"{name}: band {wrong[0]} is asked{said} but the source has {bands} band(s) in total; "
                              f"give band numbers 1 to {bands}.", source_field(index, "bands"))
    fed = len(source.bands) if source.bands is not None else bands
    for key in ("scale", "offset"):
        values = getattr(source, key)
        if values is not None and len(values) not in (1, fed):
            said = origin(key) if entry and getattr(entry, key) == values else ""
            raise EngineError(f"{name}: {len(values)} {key} values{said} for {fed} fed band(s): give one, or one "
                              "per band.", source_field(index, key))
    if source.scale is not None and 0.0 in source.scale:
        raise EngineError(f"{name}: a scale of 0 feeds the model a constant; give the factor from the raster's "
                          "values to the model's.", source_field(index, "scale"))


def fed_channels(source, bands: int) -> int:
    """How many channels a source feeds its placeholder, of the `bands` its rasters hold."""
    return len(source.bands) if source.bands is not None else bands


def fed_values(data: np.ndarray, source) -> np.ndarray:
    """`data` (h, w, bands of the selection) as the model takes it: raster value x scale + offset."""
    if source.scale is None and source.offset is None:
        return data
    scale = np.asarray(source.scale if source.scale is not None else (1.0,), np.float32)
    offset = np.asarray(source.offset if source.offset is not None else (0.0,), np.float32)
    return data * scale + offset


def _projected(wkt: str) -> bool:
    """Pixel sizes in metres (or another linear unit): a projected CRS. Degrees are not compared."""
    if not wkt:
        return True  # no CRS: the pixel grid, compared as it is
    from osgeo import osr  # noqa: PLC0415

    reference = osr.SpatialReference(wkt=wkt)
    return not reference.IsGeographic()


def _warp(path: str, pixel: tuple, resampling: str) -> str:
    """A warped VRT of `path` at `pixel` size, aligned on multiples of it, in a scratch folder of this process."""
    if not _scratch:
        _scratch.append(tempfile.mkdtemp(prefix="seamless-resampled-"))
        atexit.register(release)
    folder = _scratch[0]
    os.makedirs(folder, exist_ok=True)
    target = os.path.join(folder, f"{uuid.uuid4().hex[:8]}_{os.path.splitext(os.path.basename(path))[0]}.vrt")
    options = gdal.WarpOptions(format="VRT", xRes=pixel[0], yRes=pixel[1], targetAlignedPixels=True,
                               resampleAlg=resampling)
    dataset = gdal.Warp(target, path, options=options)
    if dataset is None:
        raise EngineError(f"GDAL could not resample {path!r} to {pixel[0]:g} x {pixel[1]:g}.", "resample")
    dataset = None
    return target


def release() -> None:
    """Remove this process's warped VRTs."""
    while _scratch:
        shutil.rmtree(_scratch.pop(), ignore_errors=True)
