"""Test rasters on the sample's grid, written with GDAL, and the numbers a comparison of two of them must give
(a helper, not a test module)."""

import math
import os

import numpy as np
from conftest import PAN, XS
from osgeo import gdal, osr

PAN_DS = gdal.Open(str(PAN))
X0, SX, _, Y0, _, _ = PAN_DS.GetGeoTransform()  # Toulouse: non-round origin, 0.6 m
WKT = PAN_DS.GetProjection()
SAMPLE_ORIGIN = (X0, Y0)


def write_raster(path, data, origin=SAMPLE_ORIGIN, spacing=0.6, epsg=32631, nodata=None):
    """A GeoTIFF of (bands, rows, cols) data, by default on the sample's grid."""
    os.makedirs(os.path.dirname(str(path)), exist_ok=True)
    data = np.asarray(data)
    data = data.reshape((-1,) + data.shape[-2:])
    kind = gdal.GDT_Float32 if data.dtype.kind == "f" else gdal.GDT_Int16
    ds = gdal.GetDriverByName("GTiff").Create(str(path), data.shape[2], data.shape[1], data.shape[0], kind)
    ds.SetGeoTransform((origin[0], spacing, 0.0, origin[1], 0.0, -spacing))
    srs = osr.SpatialReference()
    srs.ImportFromEPSG(epsg)
    ds.SetProjection(srs.ExportToWkt())
    for band in range(data.shape[0]):
        ds.GetRasterBand(band + 1).WriteArray(data[band])
        if nodata is not None:
            ds.GetRasterBand(band + 1).SetNoDataValue(nodata)
    ds = None
    return str(path)


def pan_data():
    return gdal.Open(str(PAN)).ReadAsArray()


def xs_data():
    return gdal.Open(str(XS)).ReadAsArray()


def pan_bands(count: int = 3) -> np.ndarray:
    """(count, 500, 500) float32 softmax-like bands derived from the sample PAN."""
    pan = PAN_DS.ReadAsArray().astype(np.float64)
    return np.stack([np.sin(pan / (50.0 * (b + 1))) ** 2 for b in range(count)]).astype(np.float32)


def noisy(data: np.ndarray, seed: int = 1, scale: float = 0.01) -> np.ndarray:
    """The same bands plus a small deterministic error."""
    return (data + np.random.default_rng(seed).normal(0.0, scale, data.shape)).astype(np.float32)


def write_bands(path, data: np.ndarray, col: float = 0.0, row: float = 0.0, spacing: float = SX, wkt: str = WKT,
                nodata=None) -> str:
    """A float32 GeoTIFF of (bands, h, w) whose corner is at PAN pixel (col, row), on PAN's CRS by default."""
    ds = gdal.GetDriverByName("GTiff").Create(str(path), data.shape[2], data.shape[1], data.shape[0],
                                              gdal.GDT_Float32)
    ds.SetGeoTransform((X0 + col * SX, spacing, 0.0, Y0 - row * SX, 0.0, -spacing))
    ds.SetProjection(wkt)
    for index, band in enumerate(data):
        ds.GetRasterBand(index + 1).WriteArray(band)
        if nodata is not None:
            ds.GetRasterBand(index + 1).SetNoDataValue(nodata)
    ds = None
    return str(path)


def expected(reference: np.ndarray, image: np.ndarray) -> dict:
    """Independent numpy computation on the overlapping arrays."""
    d = image.astype(np.float64) - reference.astype(np.float64)
    return {"vector_rmse": math.sqrt(np.mean(np.sum(d * d, axis=0))),
            "band_rmse": np.sqrt(np.mean(d * d, axis=(1, 2))), "mae": np.mean(np.abs(d)),
            "max_abs_error": np.abs(d).max(), "max_squared_error": np.sum(d * d, axis=0).max()}
