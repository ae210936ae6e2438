

def test_static_input_shapes_give_a_following_source_its_size():
    from seamless_inference.engine.model import ModelSignature, TensorInfo
    from seamless_inference.engine.sizes import source_sizes

    signature = ModelSignature("m", "serving_default", (
        TensorInfo("x_ms", "float32", (None, 64, 64, 4)), TensorInfo("x_pan", "float32", (None, 256, 256, 1))), ())
    placeholders, sizes, steps, notes = source_sizes(signature, [256, 0], placeholders=["x_pan"])
    assert placeholders == ["x_pan", "x_ms"] and sizes == [(256, 256), (64, 64)] and steps == [(1, 1), (4, 4)]
    assert "input shapes" in notes[0]
    nothing_known = ModelSignature("m", "serving_default", (
        TensorInfo("x_ms", "float32", (None, None, None, 4)), TensorInfo("x_pan", "float32", (None, None, None, 1))),
        ())
    from seamless_inference.engine import EngineError

    with pytest.raises(EngineError, match="give source 2's size") as missing:
        source_sizes(nothing_known, [256, 0], placeholders=["x_pan"])  # and no model to try ratios on
    assert missing.value.field == "sources[1].rfield"
