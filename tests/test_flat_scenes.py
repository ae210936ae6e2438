"""What the image contains (flat areas, zeros, no-data) never changes the measurement nor the valid part: a scene
with a large flat block and an all-no-data scene get the exact result and the sample's measurement."""

import numpy as np
from conftest import MODEL, PAN, XS
from osgeo import gdal
from rasters import write_raster

from seamless_inference.engine import InferenceRequest, Source, run_inference
from seamless_inference.engine.dependencies import import_tensorflow
from seamless_inference.engine.reading import SourceReader

XS_ORIGIN = tuple(gdal.Open(str(XS)).GetGeoTransform()[i] for i in (0, 3))


def request(pan, xs, **kw):
    return InferenceRequest(str(MODEL), (Source(pan, 128), Source(xs, 32)), valid_part=True, **kw)


def one_call(pan, xs):
    """The valid part computed by hand: one signature call over the mirror-padded image."""
    tf = import_tensorflow()
    signature = tf.saved_model.load(str(MODEL)).signatures["serving_default"]
    p = SourceReader([pan]).read(-32, -32, 576, 576)
    x = SourceReader([xs]).read(-8, -8, 144, 144)
    out = signature(input_p=tf.constant(p[None]), input_xs=tf.constant(x[None]))["estimated_crop32"]
    return np.moveaxis(out.numpy()[0, :500, :500], -1, 0)


def signature_of(measurement):
    return measurement.lost, measurement.stride, measurement.exact_crop


def test_a_large_flat_block_changes_neither_the_measurement_nor_the_exact_result(tmp_path):
    sample = run_inference(request(str(PAN), str(XS)), str(tmp_path / "sample.tif"))
    pan = gdal.Open(str(PAN)).ReadAsArray()
    xs = gdal.Open(str(XS)).ReadAsArray()
    pan[100:400, 100:400] = 0  # 300 of 500 px: zeros, as water or a no-data hole not declared
    xs[:, 25:100, 25:100] = 0
    flat_pan = write_raster(tmp_path / "flat_pan.tif", pan)
    flat_xs = write_raster(tmp_path / "flat_xs.tif", xs, origin=XS_ORIGIN, spacing=2.4)
    result = run_inference(request(flat_pan, flat_xs, tile_size=128), str(tmp_path / "flat.tif"))
    assert signature_of(result.plan.measurement) == signature_of(sample.plan.measurement)
    assert signature_of(sample.plan.measurement) == ((31, 31, 16, 16), (16, 16), 31)
    assert result.plan.output_names == ("estimated_crop32",) and len(result.plan.notes) >= 1
    written = gdal.Open(str(tmp_path / "flat.tif")).ReadAsArray()
    assert np.abs(written - one_call(flat_pan, flat_xs)).max() <= 1e-5


def test_an_all_nodata_scene_gives_the_all_nodata_output_and_the_same_measurement(tmp_path):
    sample = run_inference(request(str(PAN), str(XS)), str(tmp_path / "sample.tif"))
    empty_pan = write_raster(tmp_path / "empty_pan.tif", np.zeros((500, 500), np.int16), nodata=0)
    empty_xs = write_raster(tmp_path / "empty_xs.tif", np.zeros((4, 125, 125), np.int16), origin=XS_ORIGIN,
                            spacing=2.4, nodata=0)
    result = run_inference(request(empty_pan, empty_xs), str(tmp_path / "empty.tif"))
    assert signature_of(result.plan.measurement) == signature_of(sample.plan.measurement)
    assert result.skipped == result.tiles >= 1
    out = gdal.Open(str(tmp_path / "empty.tif"))
    assert (out.ReadAsArray() == 0).all() and out.GetRasterBand(1).GetNoDataValue() == 0.0
