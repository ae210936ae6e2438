"""The valid-size table walks into nested models: a Keras 3 model holding a Functional and a Sequential
sub-model gets a row per inner layer, not one "functional" row."""

import pytest

from seamless_inference.engine import analyse_model


@pytest.fixture(scope="module")
def nested_model(tmp_path_factory):
    from seamless_inference.engine.dependencies import import_tensorflow

    keras = import_tensorflow().keras  # Keras 3 with TF 2.16+
    keras.utils.set_random_seed(11)
    inner_in = keras.Input((None, None, 4))
    y = keras.layers.Conv2D(4, 3, padding="same", name="conv_a")(inner_in)
    y = keras.layers.Conv2D(4, 5, padding="same", name="conv_b")(y)
    backbone = keras.Model(inner_in, y, name="backbone")
    head = keras.Sequential([keras.layers.Conv2D(2, 3, padding="same", name="conv_c")], name="head")
    inputs = keras.Input((None, None, 1), name="x")
    x = head(backbone(keras.layers.Conv2D(4, 3, padding="same", name="stem")(inputs)))
    outputs = {"out": x, "out_crop8": keras.layers.Cropping2D(8)(x), "out_inner": x[:, 1:-1, 1:-1]}
    folder = tmp_path_factory.mktemp("nested") / "model"
    keras.Model(inputs, outputs).export(str(folder), format="tf_saved_model", verbose=False)
    return str(folder)


def test_inner_layers_of_nested_models_have_their_rows(nested_model):
    analysis = analyse_model(nested_model, [64])
    rows = {layer.name: layer for layer in analysis.theory.layers}
    assert {"stem", "backbone/conv_a", "backbone/conv_b", "head/conv_c"} <= set(rows), list(rows)
    assert [rows[n].kernel for n in ("backbone/conv_a", "backbone/conv_b", "head/conv_c")] == [(3, 3), (5, 5),
                                                                                             (3, 3)]
    # each row's window narrows by the layer's own half kernel (the odd pixel of "same" after the data)
    assert [rows[n].window[0] for n in ("stem", "backbone/conv_a", "backbone/conv_b", "head/conv_c")] == [
        (1, 63), (2, 62), (4, 60), (5, 59)]
    assert analysis.theory_lost == analysis.probe.lost == (5, 5, 5, 5)
    assert analysis.recommended_output == "out_crop8"
