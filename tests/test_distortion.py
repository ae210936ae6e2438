"""Distortion comparison on the sample: exact from the exact crop on, clearly wrong below, honest costs."""

import shutil
from dataclasses import replace

import numpy as np
import pytest
from conftest import MODEL, PAN, XS, seed_sources
from osgeo import gdal

from seamless_inference.engine import OTBTF, Cancelled, InferenceRequest, Source, run_inference
from seamless_inference.engine.distortion import default_crops, distortion_comparison
from seamless_inference.engine.metrics import compare_rasters

REQUEST = InferenceRequest(str(MODEL), seed_sources())


@pytest.fixture(scope="module")
def seed_sweep():
    """R = 128, crops 0, 16, 32 (the model's outputs that fit) and a free value, 24, cropped by the engine."""
    return distortion_comparison(REQUEST, 128, default_crops(str(MODEL), 128) + [24])


def test_default_crops_are_the_raw_output_and_the_crop_outputs_that_fit():
    assert default_crops(str(MODEL), 128) == [0, 16, 32]
    assert default_crops(str(MODEL), 256) == [0, 16, 32, 64, 96]


def test_crops_from_the_exact_one_on_are_exact_and_smaller_ones_are_not(seed_sweep):
    rows = {r.crop: r for r in seed_sweep.crops}
    assert rows[32].rmse <= 1e-5 and rows[32].share_above == 0.0
    assert rows[0].rmse > 1e-3 and rows[16].rmse > 1e-3
    assert rows[0].rmse > rows[16].rmse > rows[32].rmse
    assert rows[24].output_name == "estimated" and rows[24].engine_crop == 24   # not an output of the model
    assert rows[24].rmse > 1e-5  # 24 < 31 px lost on the left/top: the seed's (128 - 81) / 2 is not enough


def test_costs_follow_the_expression_field(seed_sweep):
    rows = {r.crop: r for r in seed_sweep.crops}
    assert rows[0].theoretical_cost == 1.0 and rows[32].theoretical_cost == 4.0
    assert rows[16].theoretical_cost == pytest.approx((128 / 96) ** 2)
    assert all(r.pixels > 100_000 and r.seconds > 0 for r in seed_sweep.crops)


def _files_way(request, crop, tmp_path):
    """Crop 16 of R 128 the slow way: the reference and the crop written as GeoTIFFs, then compare_rasters."""
    reference = tmp_path / "reference.tif"
    run_inference(replace(request, output_names=("estimated_crop32",)), str(reference))
    image = tmp_path / f"crop{crop}.tif"
    efield = 128 - 2 * crop
    run_inference(replace(request, output_names=(f"estimated_crop{crop}",), extent_mode=OTBTF,
                          efield=(efield, efield), tile_size=efield), str(image))
    return compare_rasters(str(reference), str(image), str(tmp_path / "squared.tif"), tolerance=1e-5,
                           method="numpy")


@pytest.mark.parametrize("holes", [False, True])
def test_in_memory_comparison_gives_what_comparing_the_written_rasters_gives(tmp_path, holes):
    """The sweep compares each crop's blocks with the reference as they come out of the model; writing both
    rasters and comparing the files gives the same numbers and the same squared-error raster. With no-data
    holes in the PAN (a whole 128 px block and a hole inside one), the same pixels are left out. (The files get
    a NaN background: with 0, the files' comparison would also drop the valid pixels where a softmax band
    underflows to exactly 0, which happens next to the holes: a quarter of the pixels here. The sweep keeps them.)"""
    pan = str(PAN)
    if holes:
        pan = str(tmp_path / "pan_holes.tif")
        shutil.copy(PAN, pan)
        ds = gdal.Open(pan, gdal.GA_Update)
        data = ds.ReadAsArray()
        data[:128, 128:256] = -9999
        data[300:310, 200:230] = -9999
        ds.GetRasterBand(1).WriteArray(data)
        ds = None
    sources = (Source((pan,), (128, 128), "input_p", -9999.0 if holes else None),) + seed_sources()[1:]
    request = InferenceRequest(str(MODEL), sources, background=float("nan") if holes else 0.0)
    errors = tmp_path / "errors"
    errors.mkdir()
    row = distortion_comparison(request, 128, [16], error_folder=str(errors)).crops[0]
    files = _files_way(request, 16, tmp_path)
    assert row.pixels == files.pixels and (files.nodata_pixels > 0) == holes
    assert row.rmse == pytest.approx(files.vector_rmse, rel=1e-6)
    assert row.band_rmse == pytest.approx(files.band_rmse, rel=1e-6)
    assert row.mae == pytest.approx(files.mae, rel=1e-6)
    assert row.max_abs_error == pytest.approx(files.max_abs_error, rel=1e-6)
    assert row.share_above == pytest.approx(files.above_tolerance / files.pixels, abs=1e-5)
    mine, theirs = gdal.Open(row.path), gdal.Open(str(tmp_path / "squared.tif"))
    assert mine.GetGeoTransform() == pytest.approx(theirs.GetGeoTransform())
    assert np.allclose(mine.ReadAsArray(), theirs.ReadAsArray(), rtol=1e-5, atol=1e-12)
    assert mine.GetRasterBand(1).GetNoDataValue() == theirs.GetRasterBand(1).GetNoDataValue()


def test_cancel_mid_sweep_leaves_no_reference_and_no_error_raster(tmp_path):
    """The reference array lives in a temporary folder and the error rasters are written under temporary names,
    renamed together at the end of the sweep: a cancel during the second crop leaves none of them, not even the
    first crop's finished one."""
    work, errors = tmp_path / "work", tmp_path / "errors"
    work.mkdir()
    errors.mkdir()
    with pytest.raises(Cancelled):
        distortion_comparison(REQUEST, 128, [0, 16], error_folder=str(errors), work_folder=str(work),
                              is_canceled=lambda: any(p.name.startswith(".squared_error_crop16.tif.")
                                                      for p in errors.iterdir()))
    assert list(work.iterdir()) == []
    assert list(errors.iterdir()) == []


def test_the_tutorial_setting_pan_64_xs_16_crop16_is_not_exact():
    """The small tutorial's rfield 64 / efield 32 / _crop16 keeps polluted pixels (notes 5.2.2)."""
    sweep = distortion_comparison(REQUEST, 64, [16])
    assert sweep.reference_output == "estimated_crop32"   # the reference needs a larger field to be exact
    assert sweep.crops[0].rmse > 1e-4


def test_algorithm_returns_the_chosen_rmse_report_table_and_error_rasters(provider, tmp_path):
    import processing
    from qgis.core import QgsVectorLayer

    result = processing.run("seamless:distortioncomparison", {
        "MODEL": str(MODEL), "SOURCE1": [str(PAN)], "SOURCE2": [str(XS)], "REPORT": str(tmp_path / "r.html"),
        "TABLE": str(tmp_path / "table.csv"), "ERROR_FOLDER": str(tmp_path / "errors"), "CHOSEN_CROP": 16})
    assert 1e-3 < result["RMSE"] < 0.1
    html = (tmp_path / "r.html").read_text()
    assert "estimated_crop32" in html and "data:image/png;base64," in html
    table = QgsVectorLayer(result["TABLE"], "table", "ogr")
    assert table.featureCount() == 3 and table.wkbType() == 100  # NoGeometry
    assert sorted(p.name for p in (tmp_path / "errors").iterdir()) == [
        "squared_error_crop0.tif", "squared_error_crop16.tif", "squared_error_crop32.tif"]


def test_bad_crop_names_the_parameter(provider, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="CROPS"):
        processing.run("seamless:distortioncomparison", {
            "MODEL": str(MODEL), "SOURCE1": [str(PAN)], "SOURCE2": [str(XS)], "CROPS": "0, 64",
            "REPORT": str(tmp_path / "r.html")})
