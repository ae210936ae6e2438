"""Raster comparison in QGIS (pytest-qgis): the numbers of the engine, the optional files, errors, styling."""

import math
import os

import numpy as np
import pytest
from osgeo import gdal
from rasters import SX, X0, Y0, expected, noisy, pan_bands, write_bands

from seamless_inference.engine.metrics import compare_rasters

COMPARISON = "seamless:rastercomparison"


def tifs(folder) -> list:
    """Files in a folder, without the .aux.xml statistics QGIS leaves next to the rasters it opened."""
    return sorted(name for name in os.listdir(folder) if not name.endswith(".aux.xml"))


@pytest.fixture()
def shifted(tmp_path):
    """The OTBTF case: the valid-part output starts 32 px further than the artifact-prone one (3 bands)."""
    reference = pan_bands()
    image = noisy(reference[:, 32:, 32:], seed=5)
    paths = write_bands(tmp_path / "artifact.tif", reference), write_bands(tmp_path / "valid.tif", image, 32, 32)
    return paths, expected(reference[:, 32:, 32:], image)


def test_it_is_listed_with_its_outputs(provider):
    from qgis.core import QgsApplication, QgsProcessingOutputHtml, QgsProcessingOutputNumber

    algorithm = QgsApplication.processingRegistry().algorithmById(COMPARISON)
    assert algorithm.displayName() == "Raster comparison (RMSE)" and not algorithm.icon().isNull()
    assert "intersection" in algorithm.shortHelpString() and "ExtractROI" in algorithm.shortHelpString()
    outputs = {o.name(): o for o in algorithm.outputDefinitions()}
    for name in ("RMSE", "MAE", "MAX_ABS_ERROR", "PIXELS"):
        assert isinstance(outputs[name], QgsProcessingOutputNumber)
    assert isinstance(outputs["REPORT"], QgsProcessingOutputHtml)  # shown in the Results Viewer
    assert algorithm.parameterDefinition("REPORT").createByDefault()
    assert not algorithm.parameterDefinition("SQUARED_ERROR").createByDefault()


def test_numbers_equal_numpy_over_the_intersection(provider, shifted, tmp_path):
    import processing

    (reference, image), want = shifted
    squared, report = tmp_path / "squared.tif", tmp_path / "report.html"
    result = processing.run(COMPARISON, {"REFERENCE": reference, "IMAGE": image, "SQUARED_ERROR": str(squared),
                                         "REPORT": str(report)})
    assert result["PIXELS"] == 468 * 468
    for key, name in (("RMSE", "vector_rmse"), ("MAE", "mae"), ("MAX_ABS_ERROR", "max_abs_error")):
        assert math.isclose(result[key], want[name], rel_tol=1e-9), key
    band_rmse = [float(v) for v in result["BAND_RMSE"].split(",")]
    assert np.allclose(band_rmse, want["band_rmse"], rtol=1e-9, atol=0)
    assert result["SQUARED_ERROR"] == str(squared) and result["REPORT"] == str(report)
    ds = gdal.Open(str(squared))
    assert (ds.RasterXSize, ds.RasterYSize) == (468, 468)
    assert ds.GetGeoTransform() == pytest.approx((X0 + 32 * SX, SX, 0.0, Y0 - 32 * SX, 0.0, -SX), rel=1e-12)
    text = report.read_text(encoding="utf-8")
    assert "Vector RMSE" in text and f"{result['RMSE']:.6g}" in text


def test_optional_files_are_not_written_unless_asked(provider, shifted, tmp_path):
    import processing

    (reference, image), _ = shifted
    result = processing.run(COMPARISON, {"REFERENCE": reference, "IMAGE": image})
    assert not result.get("SQUARED_ERROR")
    assert tifs(tmp_path) == ["artifact.tif", "valid.tif"]
    assert result["RMSE"] == compare_rasters(reference, image).vector_rmse


@pytest.mark.parametrize("col, message", [(0.5, "not aligned"), (600, "does not overlap")])
def test_incomparable_rasters_raise_naming_image(provider, tmp_path, col, message):
    import processing
    from qgis.core import QgsProcessingException

    data = pan_bands(1)
    reference = write_bands(tmp_path / "ref.tif", data)
    image = write_bands(tmp_path / "img.tif", data, col, 0.0)
    with pytest.raises(QgsProcessingException, match=message) as error:
        processing.run(COMPARISON, {"REFERENCE": reference, "IMAGE": image,
                                    "SQUARED_ERROR": str(tmp_path / "squared.tif")})
    assert "[parameter IMAGE]" in str(error.value)
    assert tifs(tmp_path) == ["img.tif", "ref.tif"]


def test_bands_select_a_common_subset(provider, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    reference, image = pan_bands(3), noisy(pan_bands(2))
    params = {"REFERENCE": write_bands(tmp_path / "ref.tif", reference),
              "IMAGE": write_bands(tmp_path / "img.tif", image)}
    with pytest.raises(QgsProcessingException, match=r"\[parameter BANDS\]"):
        processing.run(COMPARISON, params)
    result = processing.run(COMPARISON, {**params, "BANDS": [1, 2]})
    assert math.isclose(result["RMSE"], expected(reference[:2], image)["vector_rmse"], rel_tol=1e-9)


def test_cancel_leaves_no_file(provider, shifted, tmp_path):
    import processing
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    (reference, image), _ = shifted
    feedback = QgsProcessingFeedback()
    feedback.cancel()
    with pytest.raises(QgsProcessingException, match="Cancelled"):
        processing.run(COMPARISON, {"REFERENCE": reference, "IMAGE": image,
                                    "SQUARED_ERROR": str(tmp_path / "squared.tif")}, feedback=feedback)
    assert tifs(tmp_path) == ["artifact.tif", "valid.tif"]


def test_squared_error_is_loaded_with_a_gray_stretch_to_its_maximum(provider, qgis_new_project, shifted, tmp_path):
    import processing
    from qgis.core import QgsSingleBandGrayRenderer

    (reference, image), want = shifted
    processing.runAndLoadResults(COMPARISON, {"REFERENCE": reference, "IMAGE": image,
                                              "SQUARED_ERROR": str(tmp_path / "squared.tif")})
    layers = qgis_new_project.mapLayersByName("Squared error")
    assert len(layers) == 1, [layer.name() for layer in qgis_new_project.mapLayers().values()]
    renderer = layers[0].renderer()
    assert isinstance(renderer, QgsSingleBandGrayRenderer) and renderer.grayBand() == 1
    enhancement = renderer.contrastEnhancement()
    assert enhancement.minimumValue() == 0.0
    assert math.isclose(enhancement.maximumValue(), want["max_squared_error"], rel_tol=1e-6)
