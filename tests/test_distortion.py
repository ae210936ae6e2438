"""Distortion comparison on the sample: exact from the exact crop on, clearly wrong below, honest costs."""

import pytest
from conftest import MODEL, PAN, XS, seed_sources

from seamless_inference.engine import InferenceRequest
from seamless_inference.engine.distortion import default_crops, distortion_comparison

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
