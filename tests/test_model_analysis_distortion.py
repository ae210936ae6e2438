"""The measured crop is the default everywhere: Distortion comparison returns the RMSE of the crop the model
needs, not of a fixed 32."""

import pytest
from conftest import PAN

DISTORTION = "seamless:distortioncomparison"


@pytest.fixture(scope="module")
def crop64_model(tmp_path_factory):
    """A 3 x 3 convolution dilated by 64: a tile border pollutes 64 px on each side; `_crop32` and `_crop64`."""
    from seamless_inference.engine.dependencies import import_tensorflow

    tf = import_tensorflow()
    weights = tf.constant(tf.random.Generator.from_seed(5).normal((3, 3, 1, 2)))

    class Dilated(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 1], tf.float32, name="x")])
        def serve(self, x):
            out = tf.nn.conv2d(x, weights, 1, "SAME", dilations=64)
            return {"out": out, "out_crop32": out[:, 32:-32, 32:-32], "out_crop64": out[:, 64:-64, 64:-64]}

    module = Dilated()
    folder = tmp_path_factory.mktemp("crop64") / "model"
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    return str(folder)


def test_the_default_rmse_is_the_measured_crops(provider, tmp_path, crop64_model):
    import processing

    result = processing.run(DISTORTION, {"MODEL": crop64_model, "SOURCE1": [str(PAN)], "SOURCE1_RFIELD": 256,
                                         "RFIELD": 256, "REPORT": str(tmp_path / "d.html"),
                                         "TABLE": str(tmp_path / "table.gpkg")})
    from qgis.core import QgsVectorLayer

    rows = {f["crop"]: f["rmse"] for f in QgsVectorLayer(result["TABLE"]).getFeatures()}
    assert set(rows) == {0, 32, 64} and rows[32] > 1.0  # crop 32, the old default, is far from exact
    assert result["RMSE"] == rows[64] < 1e-4  # the measured crop's: floating-point noise


def test_the_measured_crop_joins_the_crops_given(provider, tmp_path, crop64_model):
    import processing

    result = processing.run(DISTORTION, {"MODEL": crop64_model, "SOURCE1": [str(PAN)], "SOURCE1_RFIELD": 256,
                                         "RFIELD": 256, "CROPS": "0,16", "REPORT": str(tmp_path / "d.html")})
    assert result["RMSE"] < 1e-4
    chosen = processing.run(DISTORTION, {"MODEL": crop64_model, "SOURCE1": [str(PAN)], "SOURCE1_RFIELD": 256,
                                         "RFIELD": 256, "CROPS": "0,16", "CHOSEN_CROP": 16,
                                         "REPORT": str(tmp_path / "d.html")})
    assert chosen["RMSE"] > 1.0
