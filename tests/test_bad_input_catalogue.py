"""The bad-input and fault catalogue, round two: for each kind of mistake or fault, in every algorithm and from
Python, a message that names the parameter (or request field) and the fix, and not one file created, changed or
left in the folder that holds the inputs and the outputs. The kinds: a user's file as output, an extension the
plugin does not write, a folder or device as output, outputs checked before computing, rasters whose pixels
cannot be trusted (damaged, missing behind a VRT, complex, stacked with different footprints, no
georeferencing), values a model's integer input cannot hold, memory a plan cannot have, TensorFlow's own failures
(fixed batch, fixed size, a model that raises, NaN), and Python's obvious forms."""

import hashlib
import os
import shutil

import numpy as np
import pytest
from conftest import MODEL, PAN, XS, recording_feedback
from osgeo import gdal
from rasters import pan_data, write_raster, xs_data

VALID = "seamless:validpartinference"
ARTIFACT = "seamless:artifactproneinference"
ANALYSIS = "seamless:modelanalysis"
DISTORTION = "seamless:distortioncomparison"
COMPARISON = "seamless:rastercomparison"


def snapshot(folder) -> dict:
    """Every file under `folder` (hidden ones included) with a digest of its bytes; links as their target."""
    found = {}
    for root, dirs, files in os.walk(folder):
        for name in files + [d for d in dirs if os.path.islink(os.path.join(root, d))]:
            path = os.path.join(root, name)
            if os.path.islink(path):
                found[path] = "-> " + os.readlink(path)
            else:
                with open(path, "rb") as handle:
                    found[path] = hashlib.sha256(handle.read()).hexdigest()
        found.update({os.path.join(root, d) + "/": "dir" for d in dirs})
    return found


@pytest.fixture()
def work(tmp_path):
    """A folder with copies of the sample model and rasters: what the catalogue's cases may not touch."""
    folder = tmp_path / "work"
    folder.mkdir()
    shutil.copytree(MODEL, folder / "model")
    shutil.copy(PAN, folder / "pan.tif")
    shutil.copy(XS, folder / "xs.tif")
    return folder


def refused(algorithm, work, params, *fragments, defaults=True):
    """processing.run must raise a QgsProcessingException with every fragment, and leave `work` as it was."""
    import processing
    from qgis.core import QgsProcessingException

    values = {"MODEL": str(work / "model"), "SOURCE1": [str(work / "pan.tif")],
              "SOURCE2": [str(work / "xs.tif")]} if defaults else {}
    if defaults and algorithm in (VALID, ARTIFACT):
        values["OUTPUT"] = str(work / "result.tif")
    values.update(params)
    before = snapshot(work)
    with pytest.raises(QgsProcessingException) as error:
        processing.run(algorithm, values)
    message = str(error.value)
    print(f"\nMESSAGE: {message}")
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in: {message}"
    assert snapshot(work) == before, "files created, changed or left"
    return message


def tf_model(folder, kind):
    """Small tf.Module SavedModels for TensorFlow's own failures: one input `x` (1 band), output `y` (2 bands)."""
    from seamless_inference.engine.dependencies import import_tensorflow

    tf = import_tensorflow()
    dtype = tf.uint8 if kind == "uint8" else tf.float32
    shape = {"fixed_batch": [2, None, None, 1], "fixed_size": [None, 64, 64, 1]}.get(kind, [None, None, None, 1])

    class Model(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec(shape, dtype, name="x")])
        def serve(self, x):
            x = tf.cast(x, tf.float32)
            if kind == "raises":
                tf.debugging.assert_less(tf.reduce_max(x), -1e9, message="input out of the trained range")
            y = tf.concat([x, -x], -1) / 100.0
            if kind == "upsample":  # a 2x up-sampling: the output pixel is half source 1's
                y = tf.image.resize(y, tf.shape(y)[1:3] * 2, method="nearest")
            if kind == "nan":
                y = y / 0.0 * 0.0
            return {"y": y}

    module = Model()
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    return folder


@pytest.fixture(scope="module")
def tf_models(tmp_path_factory):
    root = tmp_path_factory.mktemp("tf_models")
    return {kind: tf_model(root / kind, kind) for kind in ("uint8", "fixed_batch", "fixed_size", "raises", "nan",
                                                          "plain", "upsample")}


def pan_against_itself(work, **params) -> dict:
    """Raster comparison's parameters: the PAN copy compared with itself, plus `params`."""
    return {"REFERENCE": str(work / "pan.tif"), "IMAGE": str(work / "pan.tif"), **params}


# --- a user's file as the output (every algorithm) ----------------------------------------------------------

@pytest.mark.parametrize("algorithm", [VALID, ARTIFACT])
def test_output_equal_to_source_2(provider, work, algorithm):
    refused(algorithm, work, {"OUTPUT": str(work / "xs.tif")}, "is the input", "destroy the input",
            "choose another path", "[parameter OUTPUT]")


def test_output_that_is_a_symlink_to_an_input(provider, work):
    os.symlink(work / "pan.tif", work / "link.tif")
    refused(VALID, work, {"OUTPUT": str(work / "link.tif")}, "destroy the input", "[parameter OUTPUT]")


def test_output_that_is_a_hard_link_to_an_input(provider, work):
    os.link(work / "pan.tif", work / "hard.tif")
    refused(VALID, work, {"OUTPUT": str(work / "hard.tif")}, "destroy the input", "[parameter OUTPUT]")


def test_output_replacing_the_model_graph(provider, work):
    refused(VALID, work, {"OUTPUT": str(work / "model" / "saved_model.pb")}, "must be a .tif", "[parameter OUTPUT]")


def test_output_inside_the_model_folder(provider, work):
    refused(ARTIFACT, work, {"OUTPUT": str(work / "model" / "variables" / "out.tif")}, "inside the model folder",
            "outside it", "[parameter OUTPUT]")


def test_output_that_is_a_device(provider, work):
    os.symlink("/dev/null", work / "null.tif")
    refused(VALID, work, {"OUTPUT": str(work / "null.tif")}, "not a regular file", "[parameter OUTPUT]")


def test_output_that_is_a_folder(provider, work):
    (work / "folder.tif").mkdir()
    refused(VALID, work, {"OUTPUT": str(work / "folder.tif")}, "is a folder", "file name inside it",
            "[parameter OUTPUT]")


@pytest.mark.parametrize("extension", [".png", ".jpg", ".vrt", ".nc"])
def test_output_extension_the_plugin_does_not_write(provider, work, extension):
    refused(VALID, work, {"OUTPUT": str(work / f"result{extension}")}, "must be a .tif or .tiff file",
            "change its extension", "[parameter OUTPUT]")


def test_output_name_too_long_for_its_temporary_name(provider, work):
    refused(VALID, work, {"OUTPUT": str(work / ("n" * 240 + ".tif"))}, "file name is too long", "shorten it",
            "[parameter OUTPUT]")


def test_squared_error_equal_to_the_reference(provider, work):
    refused(COMPARISON, work, pan_against_itself(work, SQUARED_ERROR=str(work / "pan.tif")), "destroy the input",
            "[parameter SQUARED_ERROR]", defaults=False)


def test_squared_error_equal_to_the_image(provider, work):
    refused(COMPARISON, work, {"REFERENCE": str(work / "pan.tif"), "IMAGE": str(work / "xs.tif"),
                               "BANDS": [1], "SQUARED_ERROR": str(work / "xs.tif")}, "destroy the input",
            "[parameter SQUARED_ERROR]", defaults=False)


def test_squared_error_as_png(provider, work):
    refused(COMPARISON, work, pan_against_itself(work, SQUARED_ERROR=str(work / "error.png")), "must be a .tif",
            "[parameter SQUARED_ERROR]", defaults=False)


def test_comparison_report_equal_to_the_reference(provider, work):
    refused(COMPARISON, work, pan_against_itself(work, REPORT=str(work / "pan.tif")), "destroy the input",
            "[parameter REPORT]", defaults=False)


def test_comparison_report_equal_to_the_squared_error(provider, work):
    refused(COMPARISON, work, pan_against_itself(work, SQUARED_ERROR=str(work / "same.tif"),
                                                 REPORT=str(work / "same.tif")),
            "is the output", "[parameter REPORT]", defaults=False)


def test_model_analysis_report_replacing_the_model(provider, work):
    refused(ANALYSIS, work, {"MODEL": str(work / "model"), "REPORT": str(work / "model" / "saved_model.pb")},
            "inside the model folder", "[parameter REPORT]", defaults=False)


def test_distortion_report_equal_to_an_input(provider, work):
    refused(DISTORTION, work, {"REPORT": str(work / "pan.tif")}, "destroy the input", "[parameter REPORT]")


def test_distortion_error_folder_inside_the_model(provider, work):
    refused(DISTORTION, work, {"REPORT": str(work / "r.html"), "ERROR_FOLDER": str(work / "model" / "errors")},
            "model folder", "[parameter ERROR_FOLDER]")


# --- outputs checked before computing ------------------------------------------------------------------------

def test_model_analysis_report_in_a_missing_folder(provider, work):
    refused(ANALYSIS, work, {"MODEL": str(work / "model"), "REPORT": str(work / "missing" / "r.html")},
            "does not exist", "create it", "[parameter REPORT]", defaults=False)


def test_model_analysis_report_that_is_a_folder(provider, work):
    (work / "r.html").mkdir()
    refused(ANALYSIS, work, {"MODEL": str(work / "model"), "REPORT": str(work / "r.html")}, "is a folder",
            "[parameter REPORT]", defaults=False)


def test_model_analysis_report_on_a_read_only_file_system(provider, work):
    refused(ANALYSIS, work, {"MODEL": str(work / "model"), "REPORT": "/proc/seamless_report.html"}, "not writable",
            "[parameter REPORT]", defaults=False)


def test_distortion_report_in_a_missing_folder(provider, work):
    refused(DISTORTION, work, {"REPORT": str(work / "missing" / "r.html")}, "does not exist", "[parameter REPORT]")


def test_distortion_report_that_is_a_folder(provider, work):
    (work / "d.html").mkdir()
    refused(DISTORTION, work, {"REPORT": str(work / "d.html")}, "is a folder", "[parameter REPORT]")


def test_distortion_error_folder_that_is_a_file(provider, work):
    (work / "errors").write_text("not a folder")
    refused(DISTORTION, work, {"REPORT": str(work / "r.html"), "ERROR_FOLDER": str(work / "errors")},
            "is a file, not a folder", "[parameter ERROR_FOLDER]")


def test_comparison_report_in_a_missing_folder(provider, work):
    refused(COMPARISON, work, pan_against_itself(work, REPORT=str(work / "missing" / "r.html")), "does not exist",
            "[parameter REPORT]", defaults=False)


def test_comparison_squared_error_on_a_read_only_file_system(provider, work):
    refused(COMPARISON, work, pan_against_itself(work, SQUARED_ERROR="/proc/seamless_error.tif"), "not writable",
            "[parameter SQUARED_ERROR]", defaults=False)


# --- parameters that QGIS would read as something else --------------------------------------------------------

def test_nodata_that_is_not_a_number(provider, work):
    refused(VALID, work, {"SOURCE1_NODATA": "abc"}, "'abc' is not a number", "leave it empty",
            "[parameter SOURCE1_NODATA]")


def test_extent_without_area(provider, work):
    x, y = gdal.Open(str(PAN)).GetGeoTransform()[0], gdal.Open(str(PAN)).GetGeoTransform()[3]
    refused(VALID, work, {"EXTENT": f"{x + 10},{x + 10},{y - 50},{y - 10} [EPSG:32631]"}, "has no area",
            "leave the extent empty", "[parameter EXTENT]")


# --- rasters whose pixels cannot be trusted -------------------------------------------------------------------

def test_stacked_rasters_with_different_footprints(provider, work):
    origin = gdal.Open(str(XS)).GetGeoTransform()
    far = write_raster(work / "far.tif", xs_data()[:2], origin=(origin[0] + 1000, origin[3]), spacing=2.4)
    near = write_raster(work / "near.tif", xs_data()[2:], origin=(origin[0], origin[3]), spacing=2.4)
    refused(VALID, work, {"SOURCE2": [near, far]}, "must cover the same ground", "Resample them onto one grid",
            "[parameter SOURCE2]")


def test_complex_raster(provider, work):
    path = str(work / "complex.tif")
    ds = gdal.GetDriverByName("GTiff").Create(path, 100, 100, 1, gdal.GDT_CFloat32)
    ds.SetGeoTransform(gdal.Open(str(PAN)).GetGeoTransform())
    ds.SetProjection(gdal.Open(str(PAN)).GetProjection())
    ds = None
    refused(VALID, work, {"SOURCE1": [path]}, "complex values", "amplitude or its real part", "[parameter SOURCE1]")


def test_second_source_without_georeferencing(provider, work):
    path = str(work / "raw.tif")
    ds = gdal.GetDriverByName("GTiff").Create(path, 125, 125, 4, gdal.GDT_Int16)
    ds.GetRasterBand(1).WriteArray(xs_data()[0, :125, :125])
    ds = None
    refused(VALID, work, {"SOURCE2": [path]}, "has no georeferencing", "georeference it", "[parameter SOURCE2]")


def test_vrt_pointing_to_a_missing_file(provider, work):
    shutil.copy(PAN, work / "gone.tif")
    gdal.BuildVRT(str(work / "pan.vrt"), [str(work / "gone.tif")]).FlushCache()
    os.remove(work / "gone.tif")
    refused(VALID, work, {"SOURCE1": [str(work / "pan.vrt")]}, "refers to file(s) that do not exist", "gone.tif",
            "[parameter SOURCE1]")


def test_truncated_tiff_in_inference(provider, work):
    data = (work / "pan.tif").read_bytes()
    (work / "cut.tif").write_bytes(data[:len(data) // 2])
    message = refused(VALID, work, {"SOURCE1": [str(work / "cut.tif")]}, "[parameter SOURCE1]")
    assert "damaged or incomplete" in message or "is it a complete raster file" in message


def test_truncated_tiff_in_raster_comparison(provider, work):
    data = (work / "pan.tif").read_bytes()
    (work / "cut.tif").write_bytes(data[:len(data) // 2])
    message = refused(COMPARISON, work, {"REFERENCE": str(work / "pan.tif"), "IMAGE": str(work / "cut.tif")},
                      "[parameter IMAGE]", defaults=False)
    assert "damaged or incomplete" in message or "is it a complete raster file" in message


def test_vrt_with_a_missing_file_as_comparison_reference(provider, work):
    shutil.copy(PAN, work / "gone.tif")
    gdal.BuildVRT(str(work / "ref.vrt"), [str(work / "gone.tif")]).FlushCache()
    os.remove(work / "gone.tif")
    refused(COMPARISON, work, {"REFERENCE": str(work / "ref.vrt"), "IMAGE": str(work / "pan.tif")},
            "do not exist", "[parameter REFERENCE]", defaults=False)


def test_all_nan_reference(provider, work):
    reference = write_raster(work / "nan.tif", np.full((1, 200, 200), np.nan, np.float32))
    image = write_raster(work / "img.tif", np.ones((1, 200, 200), np.float32))
    refused(COMPARISON, work, {"REFERENCE": reference, "IMAGE": image}, "no-data, NaN or infinite",
            "40000 pixels", "[parameter IMAGE]", defaults=False)


# --- memory a plan cannot have ---------------------------------------------------------------------------------

def test_huge_receptive_field(provider, work):
    refused(VALID, work, {"SOURCE1_RFIELD": 400000, "SOURCE2_RFIELD": 100000}, "GiB of memory",
            "smaller receptive field", "[parameter SOURCE1_RFIELD]")


def test_huge_tile_size(provider, work):
    refused(VALID, work, {"TILE_SIZE": 1 << 20}, "GiB of memory", "smaller tile size", "[parameter TILE_SIZE]")


def test_huge_batch(provider, work):
    refused(ARTIFACT, work, {"BATCH_SIZE": 1 << 24}, "GiB of memory", "batch size", "[parameter TILE_SIZE]")


def test_huge_model_analysis_size(provider, work):
    refused(ANALYSIS, work, {"MODEL": str(work / "model"), "SOURCE1_SIZE": 400000, "SOURCE2_SIZE": 100000,
                             "REPORT": str(work / "r.html")}, "GiB of memory", "[parameter SOURCE1_SIZE]",
            defaults=False)


def test_huge_distortion_receptive_field(provider, work):
    refused(DISTORTION, work, {"RFIELD": 400000, "REPORT": str(work / "r.html")}, "GiB of memory")


# --- TensorFlow's own failures, named with their fix ------------------------------------------------------------

def single(work, tf_models, kind, **params):
    values = {"MODEL": str(tf_models[kind]), "SOURCE1": [str(work / "pan.tif")], "SOURCE2": None,
              "SOURCE1_RFIELD": 64, "OUTPUT": str(work / "result.tif")}
    values.update(params)
    return values


def test_uint8_model_input_refuses_values_that_would_wrap(provider, work, tf_models):
    refused(ARTIFACT, work, single(work, tf_models, "uint8"), "'x' is uint8 (0 to 255)", "would wrap around",
            "Rescale the raster", "[parameter SOURCE1]", defaults=False)


def test_fixed_batch_model_with_another_batch_size(provider, work, tf_models):
    refused(ARTIFACT, work, single(work, tf_models, "fixed_batch", BATCH_SIZE=3), "exactly 2 tile(s) per call",
            "set the batch size to 2", "[parameter BATCH_SIZE]", defaults=False)


def test_fixed_size_model_in_full_mode(provider, work, tf_models):
    refused(ARTIFACT, work, single(work, tf_models, "fixed_size", SOURCE1_RFIELD=128), "fixed size (x 64x64)",
            "OTBTF extent mode", "[parameter SOURCE1_RFIELD]", defaults=False)


def test_model_that_raises(provider, work, tf_models):
    refused(ARTIFACT, work, single(work, tf_models, "raises", EFIELD=64), "model itself raised",
            "input out of the trained range", "[parameter MODEL]", defaults=False)


def test_model_with_nan_outputs(provider, work, tf_models):
    refused(VALID, work, single(work, tf_models, "nan"), "NaN or infinite values", "normalisation",
            "[parameter MODEL]", defaults=False)


def test_up_sampling_model_without_its_spacing_scale(provider, work, tf_models):
    refused(VALID, work, single(work, tf_models, "upsample"), "output pixel is 0.5 x source 1's pixel",
            "set the spacing scale to 0.5", "[parameter SPCSCALE]", defaults=False)


# --- faults: cancel during the only batch, stale files of killed runs, sidecars, integer outputs --------------

def test_cancel_during_the_only_batch_is_a_cancel(provider, work):
    import processing
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    class CancelInTheBatch(QgsProcessingFeedback):
        def pushInfo(self, info):  # noqa: N802 (QGIS API name): the plan is logged just before the one batch
            if info.startswith("Tiles:"):
                self.cancel()

    before = snapshot(work)
    with pytest.raises(QgsProcessingException, match="Cancelled: no output file was written"):
        processing.run(VALID, {"MODEL": str(work / "model"), "SOURCE1": [str(work / "pan.tif")],
                               "SOURCE2": [str(work / "xs.tif")], "OUTPUT": str(work / "result.tif")},
                       feedback=CancelInTheBatch())
    assert snapshot(work) == before


def test_a_killed_runs_partial_file_is_removed_by_the_next_run(provider, work):
    import processing

    stale = work / ".result.tif.999999999-0badc0de.partial.tif"  # no such process
    stale.write_bytes(b"left by kill -9")
    parts = work / ".result.tif.999999999-0badc0de.parts"  # a killed Dask run's part files
    parts.mkdir()
    (parts / "part00000.tif").write_bytes(b"part")
    alive = work / f".result.tif.{os.getpid()}-0badc0de.partial.tif"  # a running process's: kept
    alive.write_bytes(b"being written")
    processing.run(VALID, {"MODEL": str(work / "model"), "SOURCE1": [str(work / "pan.tif")],
                           "SOURCE2": [str(work / "xs.tif")], "OUTPUT": str(work / "result.tif")})
    assert not stale.exists() and not parts.exists() and alive.exists()


def test_overwriting_an_output_removes_its_old_sidecars(provider, work):
    import processing

    output = work / "result.tif"
    params = {"MODEL": str(work / "model"), "SOURCE1": [str(work / "pan.tif")], "SOURCE2": [str(work / "xs.tif")],
              "OUTPUT": str(output)}
    processing.run(ARTIFACT, params)
    (work / "result.tif.aux.xml").write_text("<PAMDataset><PAMRasterBand band='1'><Metadata>"
                                            "<MDI key='STATISTICS_MAXIMUM'>1</MDI></Metadata></PAMRasterBand>"
                                            "</PAMDataset>")
    (work / "result.tif.ovr").write_bytes(b"old overviews")
    processing.run(ARTIFACT, params)
    assert not (work / "result.tif.aux.xml").exists() and not (work / "result.tif.ovr").exists()


def test_integer_output_type_rounds_clips_and_says_so(provider, work):
    import processing

    feedback = recording_feedback()
    result = processing.run(VALID, {"MODEL": str(work / "model"), "SOURCE1": [str(work / "pan.tif")],
                                    "SOURCE2": [str(work / "xs.tif")], "DATA_TYPE": 2,
                                    "OUTPUT": str(work / "byte.tif")}, feedback=feedback)
    values = gdal.Open(result["OUTPUT"]).ReadAsArray()
    assert set(np.unique(values)) <= {0, 1} and (values == 1).any()  # rounded 0..1 probabilities, not truncated
    assert any("Output data type uint8 holds whole numbers" in line and "Choose float32" in line
               for line in feedback.lines)


# --- valid scenes that must run ---------------------------------------------------------------------------------

def test_saved_model_pb_given_as_the_model_runs(provider, work):
    import processing

    result = processing.run(VALID, {"MODEL": str(work / "model" / "saved_model.pb"),
                                    "SOURCE1": [str(work / "pan.tif")], "SOURCE2": [str(work / "xs.tif")],
                                    "OUTPUT": str(work / "result.tif")})
    assert gdal.Open(result["OUTPUT"]).RasterCount == 6


def test_single_source_without_georeferencing_runs_on_its_pixel_grid(provider, work, tf_models):
    import processing

    path = str(work / "raw.tif")
    ds = gdal.GetDriverByName("GTiff").Create(path, 100, 80, 1, gdal.GDT_Float32)
    ds.GetRasterBand(1).WriteArray(pan_data()[:80, :100].astype(np.float32))
    ds = None
    result = processing.run(ARTIFACT, single(work, tf_models, "plain", SOURCE1=[path], SOURCE1_RFIELD=32))
    out = gdal.Open(result["OUTPUT"])
    assert (out.RasterXSize, out.RasterYSize) == (100, 80)
    assert np.allclose(out.ReadAsArray()[0], pan_data()[:80, :100] / 100.0, atol=1e-4)


def test_int16_model_input_takes_values_that_fit(provider, work, tf_models):
    import processing

    result = processing.run(ARTIFACT, single(work, tf_models, "fixed_batch"))  # Auto batch: the model's 2
    values = gdal.Open(result["OUTPUT"]).ReadAsArray()
    assert np.allclose(values[0], pan_data() / 100.0, atol=1e-4)


# --- from Python: the obvious forms accepted, the others refused with the field -------------------------------

def api_refused(work, call, field, *fragments):
    from seamless_inference.engine import EngineError

    before = snapshot(work)
    with pytest.raises(EngineError) as error:
        call()
    print(f"\nMESSAGE: {error.value} (field {error.value.field})")
    assert error.value.field == field
    for fragment in fragments:
        assert fragment in str(error.value), f"{fragment!r} not in: {error.value}"
    assert snapshot(work) == before


@pytest.mark.parametrize("build, field, fragment", [
    (lambda w: __import__("seamless_inference.engine", fromlist=["Source"]).Source(123, 128), "sources",
     "a path or a list of paths"),
    (lambda w: __import__("seamless_inference.engine", fromlist=["Source"]).Source(str(w / "pan.tif"), "big"),
     "sources", "receptive field must be an integer"),
    (lambda w: __import__("seamless_inference.engine", fromlist=["Source"]).Source(str(w / "pan.tif"), 128.5),
     "sources", "whole pixels"),
    (lambda w: __import__("seamless_inference.engine", fromlist=["Source"]).Source(str(w / "pan.tif"), 128,
                                                                                  nodata="abc"),
     "sources", "must be a number"),
], ids=["paths_int", "rfield_text", "rfield_fraction", "nodata_text"])
def test_python_source_forms_refused(work, build, field, fragment):
    api_refused(work, lambda: build(work), field, fragment)


def test_python_request_forms_refused(work):
    from seamless_inference.engine import InferenceRequest, Source

    pan = Source(str(work / "pan.tif"), 128)
    api_refused(work, lambda: InferenceRequest(str(work / "model"), ["pan.tif"]), "sources", "Source values")
    api_refused(work, lambda: InferenceRequest(str(work / "model"), pan, efield="x"), "efield", "expression field")
    api_refused(work, lambda: InferenceRequest(str(work / "model"), pan, extent=(1, 2, 3)), "extent",
                "(xmin, ymin, xmax, ymax)")


def test_python_outputs_refused_before_running(work):
    from seamless_inference.engine import InferenceRequest, Source, run_inference
    from seamless_inference.engine.metrics import compare_rasters

    request = InferenceRequest(str(work / "model"), (Source(str(work / "pan.tif"), 128),
                                                     Source(str(work / "xs.tif"), 32)))
    api_refused(work, lambda: run_inference(request, str(work / "out.png")), "output_path", "must be a .tif")
    api_refused(work, lambda: run_inference(request, str(work / "xs.tif")), "output_path", "destroy the input")
    api_refused(work, lambda: run_inference(request, str(work / "model" / "variables" / "x.tif")), "output_path",
                "inside the model folder")
    api_refused(work, lambda: compare_rasters(str(work / "pan.tif"), str(work / "pan.tif"), str(work / "pan.tif")),
                "squared_error_path", "destroy the input")


def test_python_obvious_forms_run(work, tmp_path):
    """One path as a string, a square receptive field as an int, comma-separated names, saved_model.pb."""
    from seamless_inference.engine import InferenceRequest, Source, run_inference

    request = InferenceRequest(str(work / "model" / "saved_model.pb"),
                               (Source(str(work / "pan.tif"), 128), Source(str(work / "xs.tif"), 32)),
                               output_names="estimated_crop32", efield=64)
    result = run_inference(request, str(tmp_path / "api.tif"))
    assert result.plan.output_names == ("estimated_crop32",) and result.plan.efield == (64, 64)
    assert gdal.Open(str(tmp_path / "api.tif")).RasterCount == 6
