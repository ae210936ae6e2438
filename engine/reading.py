"""Reading a source's windows as float32 arrays, with the virtual padding of the whole image (mirror or zeros).

Apart from engine.raster (opening and describing rasters, numpy-free) so that what only describes a raster
does not import numpy.
"""

import numpy as np
from osgeo import gdal

from .raster import read_pixels
from .request import MIRROR, ZEROS


def mirror_index(index: np.ndarray, size: int) -> np.ndarray:
    """Indices reflected into [0, size) without repeating the edge pixel (…2 1 | 0 1 2 … n-1 | n-2 …)."""
    if size == 1:
        return np.zeros_like(index)
    period = 2 * (size - 1)
    folded = np.mod(index, period)
    return np.where(folded < size, folded, period - folded)


class SourceReader:
    """Reads windows of one source (one or more rasters stacked as channels) as float32 (h, w, c) arrays.

    Windows may reach beyond the image: the virtual padding of the whole image (mirror or zeros) fills them,
    so a pixel's value never depends on the window that read it.
    """

    def __init__(self, paths: list, padding: str = MIRROR, name: str = "source", field: str | None = None,
                 bands: tuple | None = None):
        self.paths, self.name, self.field = list(paths), name, field
        self.datasets = [gdal.Open(p, gdal.GA_ReadOnly) for p in paths]
        self.width = self.datasets[0].RasterXSize
        self.height = self.datasets[0].RasterYSize
        self.padding = padding
        # bands: channels numbered from 1 over the stack, in the order to feed: (dataset, band) of each
        stack = [(d, b) for d, ds in enumerate(self.datasets) for b in range(1, ds.RasterCount + 1)]
        self.selection = None if bands is None else [stack[b - 1] for b in bands]
        self.bands = len(stack) if bands is None else len(bands)

    def read(self, x0: int, y0: int, width: int, height: int) -> np.ndarray:
        """The window [x0, x0 + width) x [y0, y0 + height) in source pixels, padded where outside."""
        inside = x0 >= 0 and y0 >= 0 and x0 + width <= self.width and y0 + height <= self.height
        if inside:
            return self._read_block(x0, y0, width, height)
        if self.padding == ZEROS:
            out = np.zeros((height, width, self.bands), np.float32)
            ix0, iy0 = max(x0, 0), max(y0, 0)
            ix1, iy1 = min(x0 + width, self.width), min(y0 + height, self.height)
            if ix1 > ix0 and iy1 > iy0:
                out[iy0 - y0:iy1 - y0, ix0 - x0:ix1 - x0] = self._read_block(ix0, iy0, ix1 - ix0, iy1 - iy0)
            return out
        cols = mirror_index(np.arange(x0, x0 + width), self.width)
        rows = mirror_index(np.arange(y0, y0 + height), self.height)
        cx0, cx1, ry0, ry1 = cols.min(), cols.max() + 1, rows.min(), rows.max() + 1
        block = self._read_block(int(cx0), int(ry0), int(cx1 - cx0), int(ry1 - ry0))
        return block[np.ix_(rows - ry0, cols - cx0)]

    def _read_block(self, x0: int, y0: int, width: int, height: int) -> np.ndarray:
        out = np.empty((height, width, self.bands), np.float32)
        if self.selection is not None:  # the chosen bands, each read once, in the order asked
            for channel, (d, band) in enumerate(self.selection):
                ds = self.datasets[d]
                out[:, :, channel] = read_pixels(lambda: ds.GetRasterBand(band).ReadAsArray(x0, y0, width, height),
                                                 self.paths[d], f"{self.name}: ", self.field)
            return out
        channel = 0
        for path, ds in zip(self.paths, self.datasets):
            data = read_pixels(lambda: ds.ReadAsArray(x0, y0, width, height), path, f"{self.name}: ", self.field)
            data = data.reshape((-1, height, width))
            out[:, :, channel:channel + data.shape[0]] = np.moveaxis(data, 0, -1)
            channel += data.shape[0]
        return out

    def close(self) -> None:
        """Release the GDAL datasets."""
        self.datasets = []
