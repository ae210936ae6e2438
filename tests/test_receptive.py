"""Model analysis without QGIS: the seed's valid-size table from the graph, and the measured valid window."""

import os

import numpy as np
import pytest
from conftest import MODEL, PAN, XS

from seamless_inference.engine import EngineError
from seamless_inference.engine.dependencies import import_tensorflow
from seamless_inference.engine import analyse_model
from seamless_inference.engine.reports import analysis_html

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

SEED_LAYERS = ("conv1", "conv2", "conv_xs", "add_conv2_xs", "conv3", "conv4", "conv1t", "conv2t", "conv3t",
               "estimated")
DEEP_CROPS = (8, 16, 24, 32, 48, 64, 80, 96, 112, 128)  # a model's inference_cropping, not only powers of two


@pytest.fixture(scope="module")
def seed():
    return analyse_model(str(MODEL), [128, 32])


def keras():
    import_tensorflow()  # before keras: sets RTLD_DEEPBIND inside QGIS
    import keras as module

    return module


def export_unet(path, levels=5, head_kernel=5, upsampling=False):
    """A small random U-Net, otbtf style: `estimated` and its `_cropN` outputs, exported with Keras 3."""
    k = keras()
    k.utils.set_random_seed(1)
    inputs = k.Input((None, None, 1), name="input_p")
    x, skips = inputs, []
    for level in range(levels):
        x = k.layers.Conv2D(4, 3, strides=2, padding="same", activation="relu", name=f"conv{level + 1}")(x)
        skips.append(x)
    for level in range(levels):
        if upsampling:  # Keras 3 builds it with Tile/Reshape: an op pattern the graph analysis does not read
            x = k.layers.UpSampling2D(2, name=f"up{level + 1}")(x)
        else:
            x = k.layers.Conv2DTranspose(4, 3, strides=2, padding="same", activation="relu",
                                         name=f"tconv{level + 1}")(x)
        if level < levels - 1:
            x = k.layers.Add(name=f"add{level + 1}")([x, skips[levels - 2 - level]])
    x = k.layers.Conv2D(2, head_kernel, padding="same", activation="softmax", name="estimated")(x)
    outputs = {"estimated": x}
    for crop in DEEP_CROPS:
        outputs[f"estimated_crop{crop}"] = k.layers.Cropping2D(((crop, crop), (crop, crop)),
                                                               name=f"estimated_crop{crop}")(x)
    k.Model(inputs, outputs).export(str(path), format="tf_saved_model", verbose=False)
    return str(path)


@pytest.fixture(scope="module")
def deep(tmp_path_factory):
    """One more down/up level than the seed (total stride 32) and a 5x5 head: 256 px tiles."""
    return analyse_model(export_unet(tmp_path_factory.mktemp("deep") / "model"), [256])


def test_the_graph_reproduces_the_seed_valid_size_table(seed):
    rows = {layer.name: layer for layer in seed.theory.layers}
    assert [rows[n].valid[0] for n in SEED_LAYERS] == [63, 31, 30, 30, 14, 6, 11, 21, 41, 81]
    assert [rows[n].size[0] for n in SEED_LAYERS] == [64, 32, 32, 32, 16, 8, 16, 32, 64, 128]
    assert rows["conv1"].kernel == (3, 3) and rows["conv1"].stride == (2, 2)
    assert rows["conv_xs"].stride == (1, 1) and rows["estimated"].operation.startswith("Conv2DBackpropInput")
    assert rows["input_p"].size == (128, 128) and rows["input_xs"].size == (32, 32)
    assert rows["conv_xs"].formula == "⌊(32 − 3)/1⌋ + 1 = 30"
    assert rows["estimated"].formula == "2·41 + 2 − 3 = 81"
    assert not seed.theory.issues


def test_the_valid_window_is_asymmetric_in_theory_and_measured(seed):
    assert seed.theory_window == ((31, 112), (31, 112))
    assert seed.probe.lost == (31, 31, 16, 16)  # [31, 111] of 128
    assert seed.measured_window == ((31, 112), (31, 112))
    assert seed.theory.outputs["estimated_crop32"].window == ((0, 64), (0, 64))
    assert seed.theory.outputs["estimated_crop16"].window == ((15, 96), (15, 96))  # crop16 is not exact


def test_the_seed_recommendation_is_crop32_efield64(seed):
    assert (seed.total_stride, seed.theory.stride, seed.exact_crop) == (16, 16, 31)
    assert (seed.recommended_crop(), seed.recommended_output) == (32, "estimated_crop32")
    assert (seed.rfield, seed.efield) == (128, 64)


def test_the_centred_textbook_crop_is_flagged(seed):
    text = " ".join(seed.disagreements)
    assert "(128 − 81)/2 = 23.5" in text and "≥ 31" in text and "[31, 111]" in text


def test_the_report_holds_the_table_and_the_formulas(seed):
    page = analysis_html(seed)
    assert "<table" in page and "valid output size" in page
    assert "<td>conv3t</td>" in page and "estimated_crop32" in page
    assert "s·x + s − k" in page and "⌊(x − k)/s⌋ + 1" in page


def test_real_rasters_give_the_sizes_ratio_and_the_same_window():
    analysis = analyse_model(str(MODEL), [128, 0], rasters=[str(PAN), str(XS)])
    assert analysis.sizes == ((128, 128), (32, 32)) and analysis.steps == ((1, 1), (4, 4))
    assert analysis.probe.lost == (31, 31, 16, 16)
    assert analysis.recommended_output == "estimated_crop32"


def test_a_deeper_model_needs_a_larger_crop_off_the_powers_of_two(deep):
    assert (deep.total_stride, deep.theory.stride) == (32, 32)
    assert deep.theory_lost == deep.probe.lost == (33, 33, 34, 34)
    assert deep.exact_crop == 34 > 31
    # 24 is not exact; 48 is, and 256 - 2 x 48 = 160 is a multiple of the 32 px stride
    assert (deep.recommended_crop(), deep.recommended_output, deep.efield) == (48, "estimated_crop48", 160)


def test_crops_off_the_stride_lattice_are_skipped(deep):
    assert [c for c in DEEP_CROPS if deep.on_stride_lattice(c)] == [16, 32, 48, 64, 80, 96, 112, 128]
    assert deep.recommended_crop(available=(40, 56, 64)) == 64      # 2 x 40 and 2 x 56 break the lattice
    assert deep.recommended_crop(available=(24, 40)) == 48          # none fits: the engine crops 48 itself


def test_ops_it_cannot_read_are_named_and_the_measurement_stands(tmp_path):
    analysis = analyse_model(export_unet(tmp_path / "model", levels=2, head_kernel=3, upsampling=True), [64])
    assert any(issue.startswith("Tile") for issue in analysis.theory.issues)
    assert analysis.theory.outputs["estimated"] is None and analysis.theory_lost is None
    assert analysis.probe.lost[0] > 0 and analysis.recommended_crop() >= analysis.probe.exact_crop
    assert "could not follow estimated" in " ".join(analysis.disagreements)
    assert "Tile" in analysis_html(analysis)


def test_common_keras_layers_match_the_measurement(tmp_path):
    k, layers = keras(), keras().layers
    k.utils.set_random_seed(2)
    inputs = k.Input((None, None, 3), name="img")
    x = layers.Activation("relu")(layers.BatchNormalization()(layers.Conv2D(8, 3, padding="same")(inputs)))
    x = layers.Concatenate()([layers.DepthwiseConv2D(3, strides=2, padding="same")(x), layers.MaxPooling2D(2)(x),
                              layers.AveragePooling2D(3, strides=2, padding="same")(x)])
    x = layers.Conv2D(8, 2)(layers.ZeroPadding2D(((1, 0), (1, 0)))(layers.SeparableConv2D(8, 3, padding="same")(x)))
    x = layers.Conv2DTranspose(4, 3, padding="same")(layers.Conv2DTranspose(8, 4, strides=2, padding="same")(x))
    labels = layers.Lambda(lambda t: k.ops.expand_dims(k.ops.argmax(t, axis=-1), -1), name="labels")(x)
    k.Model(inputs, {"labels": labels}).export(str(tmp_path / "model"), format="tf_saved_model", verbose=False)
    analysis = analyse_model(str(tmp_path / "model"), [64])
    assert not analysis.theory.issues
    assert analysis.theory_lost == analysis.probe.lost == (8, 8, 6, 6)
    # a 2x2 pooling of the window [1, 63) keeps [1, 31): one pixel fewer than floor((62 - 2)/2) + 1 says
    assert any("MaxPool" in note and "gives 31" in note for note in analysis.disagreements)


def test_resize_pad_and_pooling_windows_match_the_measurement(tmp_path):
    tf = import_tensorflow()
    rng = np.random.default_rng(0)

    class Net(tf.Module):
        def __init__(self):
            super().__init__()
            self.k1 = tf.Variable(rng.normal(size=(3, 3, 1, 4)).astype(np.float32))
            self.k2 = tf.Variable(rng.normal(size=(3, 3, 4, 2)).astype(np.float32))

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 1], tf.float32, name="x")])
        def serve(self, x):
            y = tf.nn.relu(tf.nn.conv2d(x, self.k1, 2, "SAME"))
            y = tf.nn.max_pool2d(y, 3, 1, "SAME")
            y = tf.image.resize(y, tf.shape(y)[1:3] * 2, "bilinear")
            y = tf.pad(y, [[0, 0], [1, 1], [1, 1], [0, 0]], "REFLECT")
            return {"out": tf.nn.conv2d(y, self.k2, 1, "VALID")}

    net = Net()
    tf.saved_model.save(net, str(tmp_path / "model"), signatures=net.serve)
    analysis = analyse_model(str(tmp_path / "model"), [64])
    assert not analysis.theory.issues
    assert analysis.theory_lost == analysis.probe.lost
    operations = " ".join(layer.operation for layer in analysis.theory.layers)
    assert "ResizeBilinear" in operations and "MirrorPad" in operations and "MaxPool" in operations


def test_sizes_are_checked_against_the_model_inputs():
    follows = analyse_model(str(MODEL), [128, 0])  # no raster: the first pixel ratio the model accepts, 1/4
    assert follows.sizes == ((128, 128), (32, 32)) and follows.recommended_output == "estimated_crop32"
    with pytest.raises(EngineError) as placeholder:
        analyse_model(str(MODEL), [128, 32], placeholders=["input_xs", "input_xs"])
    assert placeholder.value.field == "sources[0].placeholder"
    with pytest.raises(EngineError) as ground:
        analyse_model(str(MODEL), [128, 48])
    assert ground.value.field == "sources[0].rfield"  # 128 / 48 is not a whole pixel ratio the model accepts
    with pytest.raises(EngineError) as output:
        analyse_model(str(MODEL), [128, 32], output_name="nope")
    assert output.value.field == "output_names"
