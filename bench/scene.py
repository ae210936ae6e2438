"""Large benchmark scenes mirrored from the Toulouse sample: PAN N x N and XS N/4 x N/4, same georeferencing."""

import sys
from pathlib import Path

import numpy as np
from osgeo import gdal

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "sample" / "data"


def mirrored(data: np.ndarray, size: int) -> np.ndarray:
    """(bands, size, size) made of the sample and its mirror images, so content stays realistic."""
    tile = np.concatenate([data, data[:, :, ::-1]], axis=2)
    tile = np.concatenate([tile, tile[:, ::-1, :]], axis=1)
    reps = -(-size // tile.shape[1])
    return np.tile(tile, (1, reps, reps))[:, :size, :size]


def make_scene(size: int, folder: Path) -> tuple:
    """Write (pan.tif, xs.tif) of a size x size PAN scene (tiled, uncompressed); reuse them if present."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, factor in (("pan", 1), ("xs", 4)):
        path = folder / f"{name}_{size}.tif"
        paths.append(path)
        if path.exists():
            continue
        source = gdal.Open(str(DATA / f"{name}.tif"))
        data = source.ReadAsArray()
        data = data.reshape((-1,) + data.shape[-2:])
        n = size // factor
        temp = folder / f".{name}_{size}.tmp.tif"
        ds = gdal.GetDriverByName("GTiff").Create(str(temp), n, n, data.shape[0], gdal.GDT_Int16,
                                                  ["TILED=YES", "BIGTIFF=IF_SAFER"])
        ds.SetGeoTransform(source.GetGeoTransform())
        ds.SetProjection(source.GetProjection())
        step = 1024
        for y in range(0, n, step):  # row strips keep memory bounded for the 16384 scene
            rows = min(step, n - y)
            block = mirrored(data, n)[:, y:y + rows] if n <= 4096 else _strip(data, n, y, rows)
            for b in range(data.shape[0]):
                ds.GetRasterBand(b + 1).WriteArray(block[b], 0, y)
        ds = None
        temp.rename(path)
    return tuple(paths)


def _strip(data, n, y, rows):
    period = 2 * data.shape[1]
    ys = np.arange(y, y + rows) % period
    ys = np.where(ys < data.shape[1], ys, period - 1 - ys)
    xs = np.arange(n) % (2 * data.shape[2])
    xs = np.where(xs < data.shape[2], xs, 2 * data.shape[2] - 1 - xs)
    return data[:, ys][:, :, xs]


if __name__ == "__main__":
    print(make_scene(int(sys.argv[1]), ROOT / ".build" / "bench"))
