"""Model analysis takes its sources as the inference algorithms do: placeholders, sizes that follow source 1's
ground unless given, and a size to use when the one given leaves no exact pixel."""

import pytest
from conftest import MODEL, PAN, XS, recording_feedback

ANALYSIS = "seamless:modelanalysis"
NUMBERS = ("OUTPUT_NAME", "CROP", "RFIELD", "EFIELD", "TOTAL_STRIDE")


@pytest.fixture(scope="module")
def pan_ms_model(tmp_path_factory):
    """A hold-out model whose inputs sort the other way round: x_ms (4 bands, 4x coarser) before x_pan."""
    from seamless_inference.engine.dependencies import import_tensorflow

    tf = import_tensorflow()
    rng = tf.random.Generator.from_seed(7)
    weights = tf.constant(rng.normal((5, 5, 5, 2)))

    class PanMs(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 1], tf.float32, name="x_pan"),
                                      tf.TensorSpec([None, None, None, 4], tf.float32, name="x_ms")])
        def serve(self, x_pan, x_ms):
            pooled = tf.nn.avg_pool2d(x_pan, 4, 4, "VALID")  # PAN 0.6 m -> the MS grid, 2.4 m
            out = tf.nn.conv2d(tf.concat([pooled, x_ms], -1), weights, 1, "SAME")
            return {"out": out, **{f"out_crop{c}": out[:, c:-c, c:-c] for c in (1, 2, 4)}}

    module = PanMs()
    folder = tmp_path_factory.mktemp("pan_ms") / "model"
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    return str(folder)


@pytest.fixture(scope="module")
def stride32_model(tmp_path_factory):
    """Five stride-2 5x5 convolutions and five transposed ones: total stride 32, as a U-Net without skips; it
    loses 63 and 64 px on the sides of a tile, so a 128 px tile keeps no exact pixel."""
    from seamless_inference.engine.dependencies import import_tensorflow

    keras = import_tensorflow().keras
    keras.utils.set_random_seed(3)
    inputs = keras.Input((None, None, 1), name="x")
    x = inputs
    for filters in (4, 8, 8, 8, 8):
        x = keras.layers.Conv2D(filters, 5, strides=2, padding="same", activation="relu")(x)
    for filters in (8, 8, 8, 8, 2):
        x = keras.layers.Conv2DTranspose(filters, 3, strides=2, padding="same")(x)
    folder = tmp_path_factory.mktemp("stride32") / "model"
    keras.Model(inputs, {"scores": x}).export(str(folder), format="tf_saved_model", verbose=False)
    return str(folder)


def analyse(tmp_path, feedback=None, **params):
    import processing

    result = processing.run(ANALYSIS, {"REPORT": str(tmp_path / "report.html"), **params}, feedback=feedback)
    return {key: result[key] for key in NUMBERS}


def test_placeholders_give_what_swapped_sizes_gave(provider, tmp_path, pan_ms_model):
    named = analyse(tmp_path, MODEL=pan_ms_model, SOURCE1_PLACEHOLDER="x_pan", SOURCE1_SIZE=128,
                    SOURCE2_PLACEHOLDER="x_ms", SOURCE2_SIZE=32)
    swapped = analyse(tmp_path, MODEL=pan_ms_model, SOURCE1_SIZE=32, SOURCE2_SIZE=128)  # x_ms first, as before
    assert (named["OUTPUT_NAME"], named["CROP"], named["EFIELD"]) == (
        swapped["OUTPUT_NAME"], swapped["CROP"], swapped["EFIELD"]) == ("out_crop2", 2, 28)
    # source 1 is PAN now: its receptive field and the total stride are in PAN pixels, 4 to an MS pixel
    assert (named["RFIELD"], named["TOTAL_STRIDE"]) == (128, 4) and (swapped["RFIELD"], swapped["TOTAL_STRIDE"]) \
        == (32, 1)


def test_a_size_left_at_0_follows_source_1_like_in_inference(provider, tmp_path, pan_ms_model):
    feedback = recording_feedback()
    only_pan = analyse(tmp_path, feedback, MODEL=pan_ms_model, SOURCE1_PLACEHOLDER="x_pan", SOURCE1_SIZE=256)
    given = analyse(tmp_path, MODEL=pan_ms_model, SOURCE1_PLACEHOLDER="x_pan", SOURCE1_SIZE=256, SOURCE2_SIZE=64)
    assert only_pan == given and only_pan["RFIELD"] == 256 and only_pan["EFIELD"] == 60
    assert any("x_ms 64x64" in line for line in feedback.lines)
    with_rasters = analyse(tmp_path, MODEL=str(MODEL), SOURCE1=str(PAN), SOURCE2=str(XS), SOURCE1_SIZE=256)
    assert (with_rasters["OUTPUT_NAME"], with_rasters["RFIELD"], with_rasters["EFIELD"]) == (
        "estimated_crop32", 256, 192)


def test_a_wrong_placeholder_names_its_parameter(provider, tmp_path, pan_ms_model):
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match=r"'x_nir'.*x_ms, x_pan.*SOURCE2_PLACEHOLDER"):
        analyse(tmp_path, MODEL=pan_ms_model, SOURCE1_PLACEHOLDER="x_pan", SOURCE2_PLACEHOLDER="x_nir")


def test_a_stride_32_model_at_128_px_says_the_size_to_use(provider, tmp_path, stride32_model):
    feedback = recording_feedback()
    result = analyse(tmp_path, feedback, MODEL=stride32_model)
    assert result["TOTAL_STRIDE"] == 32 and result["RFIELD"] == 160
    assert result["EFIELD"] > 0 and result["EFIELD"] == result["RFIELD"] - 2 * result["CROP"]
    assert any(f"Use {result['RFIELD']}" in line and "128 px" in line for line in feedback.lines), feedback.lines
    # the size it names is the smallest that works: one stride less leaves no exact pixel
    from seamless_inference.engine import analyse_model

    assert analyse_model(stride32_model, [result["RFIELD"]]).efield == result["EFIELD"]
    assert analyse_model(stride32_model, [result["RFIELD"] - 32]).efield == 0


def test_static_input_shapes_give_a_following_source_its_size():
    from seamless_inference.engine import EngineError
    from seamless_inference.engine.model import ModelSignature, TensorInfo
    from seamless_inference.engine.sizes import source_sizes

    signature = ModelSignature("m", "serving_default", (
        TensorInfo("x_ms", "float32", (None, 64, 64, 4)), TensorInfo("x_pan", "float32", (None, 256, 256, 1))), ())
    placeholders, sizes, steps, notes = source_sizes(signature, [256, 0], placeholders=["x_pan"])
    assert placeholders == ["x_pan", "x_ms"] and sizes == [(256, 256), (64, 64)] and steps == [(1, 1), (4, 4)]
    assert "input shapes" in notes[0]
    unknown = ModelSignature("m", "serving_default", (
        TensorInfo("x_ms", "float32", (None, None, None, 4)), TensorInfo("x_pan", "float32", (None, None, None, 1))),
        ())
    with pytest.raises(EngineError, match="give source 2's size") as missing:
        source_sizes(unknown, [256, 0], placeholders=["x_pan"])  # and no model to try ratios on
    assert missing.value.field == "sources[1].rfield"


def test_inference_follows_the_same_rules(provider, tmp_path, pan_ms_model):
    """In valid-part inference too: naming source 1's placeholder gives source 2 the input left; setting only
    source 1's receptive field gives source 2 the same ground (256 PAN px -> 64 XS px)."""
    import processing

    feedback = recording_feedback()
    result = processing.run("seamless:artifactproneinference", {
        "MODEL": str(pan_ms_model), "SOURCE1": [str(PAN)], "SOURCE2": [str(XS)], "SOURCE1_PLACEHOLDER": "x_pan",
        "SOURCE1_RFIELD": 256, "SPCSCALE": 4, "OUTPUT": str(tmp_path / "out.tif")}, feedback=feedback)
    assert result["OUTPUT"]
    grid = next(line for line in feedback.lines if line.startswith("Grid"))
    assert "source 1 256x256, source 2 64x64" in grid, grid
    model = next(line for line in feedback.lines if line.startswith("Model"))
    assert "inputs x_pan, x_ms" in model, model
