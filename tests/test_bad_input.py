"""Every mistake a GIS analyst makes daily gets a sentence that says what is wrong and how to fix it, names the
parameter, and leaves no output file behind (through processing.run, in a real QGIS)."""

import os
import shutil

import numpy as np
import pytest
from conftest import MODEL, PAN, XS, recording_feedback
from osgeo import gdal
from rasters import SAMPLE_ORIGIN, pan_data, write_raster, xs_data

VALID = "seamless:validpartinference"
ARTIFACT = "seamless:artifactproneinference"


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Broken SavedModels made from the sample one by editing its saved_model.pb."""
    from tensorflow.core.protobuf import saved_model_pb2  # noqa: F401 (TF must be importable, as in the plugin)

    from seamless_inference.engine.dependencies import import_tensorflow

    import_tensorflow()

    root = tmp_path_factory.mktemp("models")
    made = {}
    for name, edit in (("train_tag", "tag"), ("no_signature", "signature")):
        folder = root / name
        shutil.copytree(MODEL, folder)
        proto = saved_model_pb2.SavedModel()
        proto.ParseFromString((folder / "saved_model.pb").read_bytes())
        graph = proto.meta_graphs[0]
        if edit == "tag":
            del graph.meta_info_def.tags[:]
            graph.meta_info_def.tags.append("train")
        else:
            for key in list(graph.signature_def):
                del graph.signature_def[key]
        (folder / "saved_model.pb").write_bytes(proto.SerializeToString())
        made[name] = folder
    keras_file = root / "model.keras"
    keras_file.write_bytes(b"PK\x03\x04 not really a keras archive")
    made["keras_file"] = keras_file
    (root / "empty").mkdir()
    made["empty"] = root / "empty"
    made["rank5"] = _tf_module_model(root / "rank5", "rank5")
    made["unknown_channels"] = _tf_module_model(root / "unknown_channels", "unknown_channels")
    made["unknown_rank"] = _tf_module_model(root / "unknown_rank", "unknown_rank")
    return made


def _tf_module_model(folder, kind):
    """A tiny non-Keras SavedModel (tf.Module) with an output raster bands cannot hold."""
    from seamless_inference.engine.dependencies import import_tensorflow

    tf = import_tensorflow()

    class Odd(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 1], tf.float32, name="input_p")])
        def serve(self, input_p):
            if kind == "rank5":
                return {"out": tf.expand_dims(input_p, -1)}
            if kind == "unknown_rank":
                return {"out": tf.squeeze(input_p)}
            return {"out": tf.reshape(input_p, tf.concat([tf.shape(input_p)[:3], [-1]], 0))}

    module = Odd()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    return folder


def run(algorithm, tmp_path, **params):
    """processing.run with the sample as defaults; returns the QgsProcessingException's message."""
    import processing
    from qgis.core import QgsProcessingException

    values = {"MODEL": str(MODEL), "SOURCE1": [str(PAN)], "SOURCE2": [str(XS)],
              "OUTPUT": str(tmp_path / "out" / "result.tif")}
    values.update(params)
    os.makedirs(tmp_path / "out", exist_ok=True)
    with pytest.raises(QgsProcessingException) as error:
        processing.run(algorithm, values)
    leftovers = os.listdir(tmp_path / "out")
    assert leftovers == [], f"left behind: {leftovers}"
    return str(error.value)


def check(message, *fragments):
    print(f"\nMESSAGE: {message}")  # the catalogue, as the user reads it (pytest -s)
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in: {message}"


# --- the model ---------------------------------------------------------------------------------------------

def test_model_folder_missing(provider, tmp_path):
    check(run(VALID, tmp_path, MODEL=str(tmp_path / "nowhere")), "does not exist", "MODEL")


def test_folder_that_is_not_a_savedmodel(provider, tmp_path, models):
    check(run(VALID, tmp_path, MODEL=str(models["empty"])), "no saved_model.pb", "MODEL")


def test_savedmodel_without_serve_tag(provider, tmp_path, models):
    check(run(VALID, tmp_path, MODEL=str(models["train_tag"])), "no 'serve' tag set", "train", "MODEL")


def test_savedmodel_without_signature(provider, tmp_path, models):
    check(run(VALID, tmp_path, MODEL=str(models["no_signature"])), "has no signature", "model.export", "MODEL")


def test_keras_file_instead_of_a_folder(provider, tmp_path, models):
    check(run(VALID, tmp_path, MODEL=str(models["keras_file"])), "Keras model file", "model.export", "MODEL")


def test_placeholder_not_in_the_signature(provider, tmp_path):
    check(run(VALID, tmp_path, SOURCE1_PLACEHOLDER="input_pan"), "'input_pan' is not an input",
          "input_p, input_xs", "SOURCE1_PLACEHOLDER")


def test_output_name_not_in_the_signature(provider, tmp_path):
    check(run(ARTIFACT, tmp_path, OUTPUT_NAMES="prediction"), "'prediction' is not in the model's signature",
          "estimated_crop32", "OUTPUT_NAMES")


def test_more_sources_than_model_inputs(provider, tmp_path):
    check(run(VALID, tmp_path, SOURCE3=[str(PAN)], SOURCE3_RFIELD=128), "3 sources are given",
          "only 2 input(s)", "SOURCE3")


def test_fewer_sources_than_model_inputs(provider, tmp_path):
    check(run(VALID, tmp_path, SOURCE2=None), "needs 2 inputs", "Add source 2", "SOURCE2")


def test_output_of_rank_5(provider, tmp_path, models):
    check(run(ARTIFACT, tmp_path, MODEL=str(models["rank5"]), SOURCE2=None), "rank 5", "OUTPUT_NAMES")


def test_output_of_unknown_rank(provider, tmp_path, models):
    check(run(ARTIFACT, tmp_path, MODEL=str(models["unknown_rank"]), SOURCE2=None), "unknown rank",
          "OUTPUT_NAMES")


def test_output_with_unknown_channels(provider, tmp_path, models):
    check(run(ARTIFACT, tmp_path, MODEL=str(models["unknown_channels"]), SOURCE2=None),
          "unknown number of channels", "OUTPUT_NAMES")


# --- receptive field, expression field, crop, spacing -----------------------------------------------------

def test_receptive_field_smaller_than_the_efield_needs(provider, tmp_path):
    check(run(ARTIFACT, tmp_path, EFIELD=128, SOURCE1_RFIELD=64, SOURCE2_RFIELD=16),
          "smaller than what the expression field", "EFIELD")


def test_receptive_field_not_a_multiple_of_the_total_stride(provider, tmp_path):
    check(run(ARTIFACT, tmp_path, SOURCE1_RFIELD=120, SOURCE2_RFIELD=30), "multiples of its total stride",
          "SOURCE1_RFIELD")


def test_efield_that_does_not_match_the_output_crop(provider, tmp_path):
    check(run(VALID, tmp_path, OUTPUT_NAMES="estimated_crop32", EFIELD=96), "tensor to image conversion",
          "receptive field - 2 x crop", "EFIELD")


def test_crop_of_half_the_receptive_field(provider, tmp_path):
    check(run(VALID, tmp_path, OUTPUT_NAMES="estimated_crop64"), "leaves nothing", "SOURCE1_RFIELD")


def test_efield_larger_than_the_image_in_otbtf_mode(provider, tmp_path):
    pan = write_raster(tmp_path / "pan.tif", pan_data()[:160, :160])
    xs = write_raster(tmp_path / "xs.tif", xs_data()[:, :40, :40], spacing=2.4)
    check(run(ARTIFACT, tmp_path, SOURCE1=[pan], SOURCE2=[xs], EXTENT_MODE=1, EFIELD=128,
              SOURCE1_RFIELD=256, SOURCE2_RFIELD=64, OUTPUT_NAMES="estimated"), "OTBTF mode", "EXTENT_MODE")


def test_spacing_scale_that_breaks_the_grid(provider, tmp_path):
    check(run(VALID, tmp_path, SPCSCALE=0.3), "spacing scale 0.3 must be a whole number", "SPCSCALE")


def test_tile_size_off_the_lattice(provider, tmp_path):
    check(run(VALID, tmp_path, TILE_SIZE=100), "Tile size 100", "use 112", "TILE_SIZE")


# --- rasters ---------------------------------------------------------------------------------------------

def test_rasters_that_do_not_overlap(provider, tmp_path):
    xs = write_raster(tmp_path / "far.tif", xs_data(), origin=(SAMPLE_ORIGIN[0] + 9600, SAMPLE_ORIGIN[1]),
                      spacing=2.4)
    check(run(VALID, tmp_path, SOURCE2=[xs]), "does not overlap", "SOURCE2")


def test_a_source_covering_part_of_source_1_is_refused_not_padded(provider, tmp_path):
    # an XS over a quarter of the PAN, and one shifted by 60 XS pixels: the model would see mirror padding where
    # the scene has data, and be wrong there without a word
    quarter = write_raster(tmp_path / "quarter.tif", xs_data()[:, :63, :63], spacing=2.4)
    check(run(VALID, tmp_path, SOURCE2=[quarter]), "source 2 does not cover the area to compute", "padding instead",
          "set the extent to the area both cover", "[parameter SOURCE2]")
    shifted = write_raster(tmp_path / "shifted.tif", xs_data(), origin=(SAMPLE_ORIGIN[0] + 144, SAMPLE_ORIGIN[1]),
                           spacing=2.4)
    check(run(ARTIFACT, tmp_path, SOURCE2=[shifted]), "does not cover", "along x", "[parameter SOURCE2]")


def test_an_extent_inside_the_area_both_cover_runs_and_gives_the_full_pixels(provider, tmp_path):
    import processing

    quarter = write_raster(tmp_path / "quarter.tif", xs_data()[:, :63, :63], spacing=2.4)
    x0, y0 = SAMPLE_ORIGIN
    inside = f"{x0 + 20},{x0 + 130},{y0 - 130},{y0 - 20} [EPSG:32631]"
    common = {"MODEL": str(MODEL), "SOURCE1": [str(PAN)], "EXTENT": inside}
    part = processing.run(VALID, dict(common, SOURCE2=[quarter], OUTPUT=str(tmp_path / "part.tif")))["OUTPUT"]
    whole = processing.run(VALID, dict(common, SOURCE2=[str(XS)], OUTPUT=str(tmp_path / "whole.tif")))["OUTPUT"]
    a, b = (gdal.Open(p) for p in (part, whole))
    assert a.GetGeoTransform() == b.GetGeoTransform() and np.abs(a.ReadAsArray() - b.ReadAsArray()).max() <= 1e-6
    # up to PAN pixel 240 of the XS's 252: the last output pixels read 16 px further (the model's measured reach)
    near = f"{x0 + 20},{x0 + 144},{y0 - 130},{y0 - 20} [EPSG:32631]"
    check(run(VALID, tmp_path, SOURCE2=[quarter], EXTENT=near), "output reads [2, 256)", "[parameter SOURCE2]")


def test_rasters_in_different_crs(provider, tmp_path):
    xs = write_raster(tmp_path / "xs32630.tif", xs_data(), spacing=2.4, epsg=32630)
    check(run(VALID, tmp_path, SOURCE2=[xs]), "not in the same CRS", "SOURCE2")


def test_xs_grid_not_aligned_with_pan(provider, tmp_path):
    xs = write_raster(tmp_path / "shifted.tif", xs_data(), origin=(SAMPLE_ORIGIN[0] + 0.15, SAMPLE_ORIGIN[1]),
                      spacing=2.4)
    check(run(VALID, tmp_path, SOURCE2=[xs]), "not aligned", "SOURCE2")


def test_non_integer_spacing_ratio(provider, tmp_path):
    xs = write_raster(tmp_path / "xs25.tif", xs_data(), spacing=2.5)
    check(run(VALID, tmp_path, SOURCE2=[xs]), "must be an integer", "SOURCE2")


def test_wrong_band_count_for_the_placeholder(provider, tmp_path):
    check(run(VALID, tmp_path, SOURCE2=[str(PAN)]), "1 band(s)", "takes 4", "SOURCE2")


def test_image_smaller_than_the_rfield_in_otbtf_mode(provider, tmp_path):
    pan = write_raster(tmp_path / "pan.tif", pan_data()[:64, :64])
    xs = write_raster(tmp_path / "xs.tif", xs_data()[:, :16, :16], spacing=2.4)
    check(run(VALID, tmp_path, SOURCE1=[pan], SOURCE2=[xs], EXTENT_MODE=1), "smaller than the receptive fields",
          "Full extent mode", "EXTENT_MODE")


def test_one_pixel_image_still_works_in_full_mode(provider, tmp_path):
    import processing

    pan = write_raster(tmp_path / "pan1.tif", pan_data()[:4, :4])
    xs = write_raster(tmp_path / "xs1.tif", xs_data()[:, :1, :1], spacing=2.4)
    result = processing.run(VALID, {"MODEL": str(MODEL), "SOURCE1": [pan], "SOURCE2": [xs],
                                    "OUTPUT": str(tmp_path / "tiny.tif")})
    out = gdal.Open(result["OUTPUT"])
    assert (out.RasterXSize, out.RasterYSize, out.RasterCount) == (4, 4, 6)
    assert np.allclose(out.ReadAsArray().sum(axis=0), 1.0, atol=1e-5)


# --- no-data and non-finite values -----------------------------------------------------------------------

def test_nan_and_inf_in_the_input_are_masked_not_spread(provider, tmp_path):
    import processing

    data = pan_data().astype(np.float32)
    data[100:110, 200:210] = np.nan
    data[300, 300] = np.inf
    pan = write_raster(tmp_path / "nan.tif", data)
    result = processing.run(VALID, {"MODEL": str(MODEL), "SOURCE1": [pan], "SOURCE2": [str(XS)],
                                    "OUTPUT": str(tmp_path / "nan_out.tif")})
    out = gdal.Open(result["OUTPUT"])
    values = out.ReadAsArray()
    assert np.isfinite(values).all()
    assert out.GetRasterBand(1).GetNoDataValue() == 0.0
    assert (values[:, 100:110, 200:210] == 0).all() and (values[:, 300, 300] == 0).all()
    assert np.allclose(values[:, :90].sum(axis=0), 1.0, atol=1e-5)


def test_nodata_tiles_are_skipped_and_partly_empty_ones_masked(provider, tmp_path):
    import processing

    data = pan_data()
    data[:, :256] = 0          # the left half: whole tiles of 128 px are no-data
    data[400:420, 300:320] = 0  # a hole inside a tile
    pan = write_raster(tmp_path / "holes.tif", data, nodata=0)
    result = processing.run(ARTIFACT, {"MODEL": str(MODEL), "SOURCE1": [pan], "SOURCE2": [str(XS)],
                                       "SOURCE1_NODATA": 0, "OUTPUT": str(tmp_path / "holes_out.tif")})
    values = gdal.Open(result["OUTPUT"]).ReadAsArray()
    assert (values[:, :, :256] == 0).all() and (values[:, 400:420, 300:320] == 0).all()
    assert np.allclose(values[:, :380, 256:].sum(axis=0), 1.0, atol=1e-5)


def test_file_declared_nodata_counts_without_the_nodata_parameter(provider, tmp_path):
    import processing

    feedback = recording_feedback()
    data = pan_data()
    data[:, :256] = 0
    pan = write_raster(tmp_path / "declared.tif", data, nodata=0)  # no SOURCE1_NODATA given
    result = processing.run(ARTIFACT, {"MODEL": str(MODEL), "SOURCE1": [pan], "SOURCE2": [str(XS)],
                                       "OUTPUT": str(tmp_path / "declared_out.tif")}, feedback=feedback)
    values = gdal.Open(result["OUTPUT"]).ReadAsArray()
    assert (values[:, :, :256] == 0).all() and np.allclose(values[:, :380, 256:].sum(axis=0), 1.0, atol=1e-5)
    assert any(line.startswith("source 1: no-data value 0, declared by its raster") for line in feedback.lines)
    # an all-no-data raster gets no predictions: the background, declared no-data
    empty = write_raster(tmp_path / "empty.tif", np.zeros_like(data), nodata=0)
    result = processing.run(VALID, {"MODEL": str(MODEL), "SOURCE1": [empty], "SOURCE2": [str(XS)],
                                    "OUTPUT": str(tmp_path / "empty_out.tif")})
    out = gdal.Open(result["OUTPUT"])
    assert (out.ReadAsArray() == 0).all() and out.GetRasterBand(1).GetNoDataValue() == 0.0


# --- the output ------------------------------------------------------------------------------------------

def test_output_folder_missing(provider, tmp_path):
    check(run(VALID, tmp_path, OUTPUT=str(tmp_path / "out" / "missing" / "x.tif")), "does not exist", "OUTPUT")


def test_output_path_not_writable(provider):
    """/proc takes no new files, even from root (CI runs as root, where chmod would not stop a write)."""
    import processing
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException) as error:
        processing.run(VALID, {"MODEL": str(MODEL), "SOURCE1": [str(PAN)], "SOURCE2": [str(XS)],
                               "OUTPUT": "/proc/seamless_result.tif"})
    assert "OUTPUT" in str(error.value)
    assert "not writable" in str(error.value) or "Cannot create the output" in str(error.value)
    assert not os.path.exists("/proc/seamless_result.tif")


def test_output_equal_to_an_input(provider, tmp_path):
    pan = write_raster(tmp_path / "out" / "pan.tif", pan_data())
    before = os.path.getsize(pan)
    import processing
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="destroy the input") as error:
        processing.run(VALID, {"MODEL": str(MODEL), "SOURCE1": [pan], "SOURCE2": [str(XS)], "OUTPUT": pan})
    assert "OUTPUT" in str(error.value)
    assert os.path.getsize(pan) == before and os.listdir(tmp_path / "out") == ["pan.tif"]


def test_non_ascii_paths_with_spaces_work(provider, tmp_path):
    import processing

    folder = tmp_path / "données d'été" / "modèle ü"
    shutil.copytree(MODEL, folder)
    pan, xs = tmp_path / "données d'été" / "pan é.tif", tmp_path / "données d'été" / "xs ß.tif"
    shutil.copy(PAN, pan)
    shutil.copy(XS, xs)
    result = processing.run(VALID, {"MODEL": str(folder), "SOURCE1": [str(pan)], "SOURCE2": [str(xs)],
                                    "OUTPUT": str(tmp_path / "données d'été" / "sortie ø.tif")})
    assert gdal.Open(result["OUTPUT"]).RasterXSize == 500
