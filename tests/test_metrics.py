"""Raster comparison without QGIS: the seed's vector RMSE and per-band errors over the geographic intersection."""

import math
import os

import numpy as np
import pytest
from osgeo import gdal, osr
from rasters import SX, WKT, X0, Y0, expected, noisy, pan_bands, write_bands

from seamless_inference.engine import Cancelled, EngineError
from seamless_inference.engine.metrics import ErrorSums, accumulate, compare_rasters


def assert_matches(result, want: dict) -> None:
    for name, value in want.items():
        assert np.allclose(getattr(result, name), value, rtol=1e-9, atol=0), name


@pytest.fixture(scope="module")
def shifted(tmp_path_factory):
    """A 500x500 reference and a 400x380 image whose corner is at reference pixel (150, -30): 350x350 overlap."""
    folder = tmp_path_factory.mktemp("shifted")
    reference = pan_bands()
    image = np.random.default_rng(7).random((3, 380, 400)).astype(np.float32)
    image[:, 30:380, 0:350] = noisy(reference[:, 0:350, 150:500])
    paths = write_bands(folder / "ref.tif", reference), write_bands(folder / "img.tif", image, 150, -30)
    return paths, expected(reference[:, 0:350, 150:500], image[:, 30:380, 0:350])


def test_same_extent_equals_numpy_and_the_vector_rmse_sums_the_bands(tmp_path):
    reference = pan_bands()
    image = noisy(reference)
    result = compare_rasters(write_bands(tmp_path / "ref.tif", reference),
                             write_bands(tmp_path / "img.tif", image))
    assert_matches(result, expected(reference, image))
    assert result.pixels == 500 * 500 and result.nodata_pixels == 0
    assert result.window_reference == result.window_image == (0, 0, 500, 500)
    assert result.bands == (1, 2, 3)
    # the seed's BandMathX (im1-im2)*(im1-im2)' is a matrix product: the squares of the per-band RMSEs add up
    assert math.isclose(result.vector_rmse ** 2, sum(v * v for v in result.band_rmse), rel_tol=1e-12)
    assert "Vector RMSE" in result.summary() and "250000 pixels" in result.summary()


def test_different_extents_are_compared_over_their_intersection(shifted):
    (reference, image), want = shifted
    result = compare_rasters(reference, image)
    assert result.window_reference == (150, 0, 350, 350)
    assert result.window_image == (0, 30, 350, 350)
    assert result.pixels == 350 * 350
    assert_matches(result, want)


def test_reference_and_image_swap_symmetrically(shifted):
    (reference, image), want = shifted
    result = compare_rasters(image, reference)
    assert result.window_reference == (0, 30, 350, 350) and result.window_image == (150, 0, 350, 350)
    assert_matches(result, want)


def test_squared_error_raster_has_the_intersection_georeferencing_and_values(shifted, tmp_path):
    (reference, image), want = shifted
    output = tmp_path / "squared.tif"
    result = compare_rasters(reference, image, str(output))
    assert result.squared_error_path == str(output)
    assert sorted(os.listdir(tmp_path)) == ["squared.tif"]
    ds = gdal.Open(str(output))
    assert (ds.RasterXSize, ds.RasterYSize, ds.RasterCount) == (350, 350, 1)
    assert ds.GetRasterBand(1).DataType == gdal.GDT_Float32
    assert ds.GetGeoTransform() == pytest.approx((X0 + 150 * SX, SX, 0.0, Y0, 0.0, -SX), rel=1e-12)
    assert osr.SpatialReference(wkt=ds.GetProjection()).IsSame(osr.SpatialReference(wkt=WKT))
    ref = gdal.Open(reference).ReadAsArray(150, 0, 350, 350).astype(np.float64)
    img = gdal.Open(image).ReadAsArray(0, 30, 350, 350).astype(np.float64)
    want_squared = np.sum((img - ref) ** 2, axis=0).astype(np.float32)
    assert np.array_equal(ds.ReadAsArray(), want_squared)
    assert math.isclose(result.max_squared_error, want["max_squared_error"], rel_tol=1e-9)


def test_streaming_does_not_change_the_results(shifted, tmp_path):
    (reference, image), _ = shifted
    small = compare_rasters(reference, image, str(tmp_path / "small.tif"), block_rows=7)
    large = compare_rasters(reference, image, str(tmp_path / "large.tif"), block_rows=256)
    for name in ("vector_rmse", "band_rmse", "mae"):  # float64 sums in another order: last-digit differences
        assert np.allclose(getattr(small, name), getattr(large, name), rtol=1e-12, atol=0), name
    assert (small.max_abs_error, small.pixels, small.window_image) == (large.max_abs_error, large.pixels,
                                                                      large.window_image)
    assert np.array_equal(gdal.Open(str(tmp_path / "small.tif")).ReadAsArray(),
                          gdal.Open(str(tmp_path / "large.tif")).ReadAsArray())


def test_accumulating_blocks_equals_one_pass():
    diff = np.random.default_rng(3).normal(size=(2, 1000))
    whole = accumulate(ErrorSums(), diff)
    parts = accumulate(accumulate(accumulate(ErrorSums(), diff[:, :300]), diff[:, 300:300]), diff[:, 300:])
    assert parts.pixels == whole.pixels == 1000
    assert np.allclose(parts.squared, whole.squared, rtol=1e-12) and parts.max_abs == whole.max_abs
    assert np.allclose(whole.squared, (diff ** 2).sum(axis=1), rtol=1e-12)


@pytest.mark.parametrize("nodata", [-9999.0, float("nan")])
def test_nodata_pixels_of_either_raster_are_ignored_and_counted(tmp_path, nodata):
    reference = pan_bands(2)
    image = noisy(reference)
    valid = np.ones((500, 500), bool)
    reference[1, 10:20, 30:60] = nodata  # one band is enough to drop the pixel
    image[0, 400:450, 0:500] = nodata
    valid[10:20, 30:60] = valid[400:450, :] = False
    output = tmp_path / "squared.tif"
    result = compare_rasters(write_bands(tmp_path / "ref.tif", reference, nodata=nodata),
                             write_bands(tmp_path / "img.tif", image, nodata=nodata), str(output))
    assert result.pixels == valid.sum() and result.nodata_pixels == (~valid).sum() == 300 + 25000
    d = (image.astype(np.float64) - reference)[:, valid]
    assert math.isclose(result.vector_rmse, math.sqrt(np.mean(np.sum(d * d, axis=0))), rel_tol=1e-9)
    assert np.allclose(result.band_rmse, np.sqrt(np.mean(d * d, axis=1)), rtol=1e-9, atol=0)
    assert math.isclose(result.mae, np.mean(np.abs(d)), rel_tol=1e-9)
    assert "No-data" in result.summary() and f"{300 + 25000} pixel(s)" in result.summary()
    squared = gdal.Open(str(output))
    assert squared.GetRasterBand(1).GetNoDataValue() == -1.0
    assert (squared.ReadAsArray()[~valid] == -1.0).all() and (squared.ReadAsArray()[valid] >= 0).all()


def test_all_nodata_intersection_is_an_error_and_leaves_no_file(tmp_path):
    data = np.zeros((1, 50, 50), np.float32)
    reference = write_bands(tmp_path / "ref.tif", data, nodata=0.0)
    image = write_bands(tmp_path / "img.tif", data + 1)
    with pytest.raises(EngineError, match="no-data") as error:
        compare_rasters(reference, image, str(tmp_path / "squared.tif"))
    assert error.value.field == "image"
    assert sorted(os.listdir(tmp_path)) == ["img.tif", "ref.tif"]


@pytest.mark.parametrize("col, spacing, wkt, message", [
    (0.5, SX, WKT, "not aligned"),
    (0.0, 2 * SX, WKT, "resample the image"),
    (0.0, SX, osr.SRS_WKT_WGS84_LAT_LONG, "different CRS"),
    (500.0, SX, WKT, "does not overlap"),
])
def test_grids_that_cannot_be_compared_name_image(tmp_path, col, spacing, wkt, message):
    data = pan_bands(1)
    reference = write_bands(tmp_path / "ref.tif", data)
    image = write_bands(tmp_path / "img.tif", data[:, :100, :100], col, 0.0, spacing, wkt)
    with pytest.raises(EngineError, match=message) as error:
        compare_rasters(reference, image, str(tmp_path / "squared.tif"))
    assert error.value.field == "image"
    assert not (tmp_path / "squared.tif").exists()


def test_different_band_counts_need_a_band_selection(tmp_path):
    reference, image = pan_bands(3), noisy(pan_bands(2))
    ref_path, img_path = write_bands(tmp_path / "ref.tif", reference), write_bands(tmp_path / "img.tif", image)
    with pytest.raises(EngineError, match="3 band") as error:
        compare_rasters(ref_path, img_path)
    assert error.value.field == "bands"
    with pytest.raises(EngineError, match="do not all exist"):
        compare_rasters(ref_path, img_path, bands=[3])
    result = compare_rasters(ref_path, img_path, bands=[2])
    assert result.bands == (2,)
    assert_matches(result, expected(reference[1:2], image[1:2]))


def test_cancel_raises_and_leaves_no_file(shifted, tmp_path):
    (reference, image), _ = shifted
    calls = []

    def cancel_on_third_block():
        calls.append(1)
        return len(calls) >= 3

    with pytest.raises(Cancelled):
        compare_rasters(reference, image, str(tmp_path / "squared.tif"), is_canceled=cancel_on_third_block,
                        block_rows=16)
    assert os.listdir(tmp_path) == []


def test_progress_reaches_one(shifted):
    (reference, image), _ = shifted
    seen = []
    compare_rasters(reference, image, progress=seen.append, block_rows=100)
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) >= 20  # blocks of rows cut for a moving bar
