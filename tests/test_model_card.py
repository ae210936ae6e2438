"""The model card (assets.extra/seamless.json): with one, MODEL + SOURCE1..n + OUTPUT are enough; what a parameter
gives wins; Model analysis writes it and a new machine then measures nothing; bad cards are refused by key.

The acceptance model is the sample behind other placeholder names (`pan_image`, `ms_image`), fed imagery as a
vendor might deliver it: bands in another order, UInt16 holding 2 x DN + 200."""

import json
import os
import shutil

import numpy as np
import pytest
from conftest import MODEL, PAN, SAMPLE, XS, qgis_process, recording_feedback
from osgeo import gdal
from rasters import write_raster
from test_bad_input_catalogue import snapshot

from seamless_inference.engine import InferenceRequest, Source, run_inference
from seamless_inference.engine.card import SCHEMA, card_path, read_card
from seamless_inference.engine.class_map import read_class_table
from seamless_inference.engine.errors import EngineError

VALID = "seamless:validpartinference"
ANALYSIS = "seamless:modelanalysis"
NAMES = ["Ombre", "Surfaces claires", "Tuiles", "Routes", "Bâtiments", "Végétation"]
COLORS = ["#101030", "#fafafa", "#b04030", "#707070", "#d0a050", "#20a020"]


@pytest.fixture(scope="module")
def renamed(tmp_path_factory):
    """The sample model with inputs `pan_image` and `ms_image` (a tf.Module calling its signature), no card."""
    from seamless_inference.engine.dependencies import import_tensorflow

    tf = import_tensorflow()
    loaded = tf.saved_model.load(str(MODEL))
    serving = loaded.signatures["serving_default"]

    class Renamed(tf.Module):
        def __init__(self):
            super().__init__()
            self.inner = loaded

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 1], tf.float32, name="pan_image"),
                                      tf.TensorSpec([None, None, None, 4], tf.float32, name="ms_image")])
        def serve(self, pan_image, ms_image):
            return serving(input_p=pan_image, input_xs=ms_image)

    module = Renamed()
    folder = tmp_path_factory.mktemp("renamed") / "model"
    tf.saved_model.save(module, str(folder), signatures={"serving_default": module.serve})
    return folder


def delivered(folder):
    """PAN as band 2 of a UInt16 pair (band 1 a constant), XS with its bands reversed, both 2 x DN + 200."""
    pan = gdal.Open(str(PAN)).ReadAsArray().astype(np.int64)
    xs = gdal.Open(str(XS)).ReadAsArray().astype(np.int64)
    coded_pan = np.stack([np.full_like(pan, 7), 2 * pan + 200]).astype(np.uint16)
    coded_xs = (2 * xs[::-1] + 200).astype(np.uint16)
    assert (2 * pan + 200).max() < 65536 and (2 * xs + 200).min() >= 0
    return (uint16_raster(folder / "pan_delivered.tif", coded_pan, PAN),
            uint16_raster(folder / "xs_delivered.tif", coded_xs, XS))


def uint16_raster(path, data, like) -> str:
    """A UInt16 GeoTIFF of (bands, rows, cols) on the grid of `like`."""
    model = gdal.Open(str(like))
    dataset = gdal.GetDriverByName("GTiff").Create(str(path), data.shape[2], data.shape[1], data.shape[0],
                                                   gdal.GDT_UInt16)
    dataset.SetGeoTransform(model.GetGeoTransform())
    dataset.SetProjection(model.GetProjection())
    for band in range(data.shape[0]):
        dataset.GetRasterBand(band + 1).WriteArray(data[band])
    dataset = None
    return str(path)


def card(**changes) -> dict:
    """The acceptance card: bands and scaling of the delivered imagery, its classes."""
    value = {"version": 1, "name": "renamed sample",
             "sources": [{"name": "PAN", "placeholder": "pan_image", "bands": [2], "scale": 0.5, "offset": -100,
                          "pixel_size": 0.6, "receptive_field": 128},
                         {"name": "XS", "placeholder": "ms_image", "bands": [4, 3, 2, 1], "scale": 0.5,
                          "offset": -100, "pixel_size": 2.4, "receptive_field": 32}],
             "outputs": [{"name": "estimated", "kind": "probabilities"}],
             "classes": [{"value": i, "name": n, "color": c} for i, (n, c) in enumerate(zip(NAMES, COLORS))]}
    value.update(changes)
    return value


def with_card(model, folder, value) -> str:
    """A copy of `model` carrying `value` as its card (text as given when `value` is a str)."""
    target = folder / "with_card"
    shutil.copytree(model, target)
    path = card_path(str(target))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w", encoding="utf-8") as handle:
        handle.write(value if isinstance(value, str) else json.dumps(value))
    return str(target)


def pixels(path) -> np.ndarray:
    dataset = gdal.Open(str(path))
    return dataset.ReadAsArray()


def categories(path) -> list:
    """The class names GDAL reads (from the .aux.xml; GTiff's GetCategoryNames does not load it in GDAL 3.6)."""
    return gdal.Info(str(path), format="json")["bands"][0].get("categories")


def test_a_card_alone_gives_the_explicit_runs_pixels_and_the_class_names(provider, renamed, tmp_path):
    import processing

    explicit = tmp_path / "explicit.tif"
    processing.run(VALID, {"MODEL": str(renamed), "SOURCE1": [str(PAN)], "SOURCE2": [str(XS)],
                           "SOURCE1_RFIELD": 128, "SOURCE2_RFIELD": 32, "SOURCE1_PLACEHOLDER": "pan_image",
                           "SOURCE2_PLACEHOLDER": "ms_image", "OUTPUT_NAMES": "estimated", "OUTPUT": str(explicit)})
    pan, xs = delivered(tmp_path)
    model = with_card(renamed, tmp_path, card())
    feedback = recording_feedback()
    result = processing.run(VALID, {"MODEL": model, "SOURCE1": [pan], "SOURCE2": [xs],
                                    "OUTPUT": str(tmp_path / "card.tif"), "CLASS_MAP": str(tmp_path / "classes.tif")},
                            feedback=feedback)
    difference = np.abs(pixels(result["OUTPUT"]) - pixels(explicit))
    assert difference.max() <= 1e-5, difference.max()
    assert categories(result["CLASS_MAP"]) == NAMES
    log = "\n".join(feedback.lines)
    for said in ("source 1: from the model card: placeholder pan_image, receptive field (128, 128), bands (2), "
                 "scale (0.5), offset (-100)", "source 2: from the model card", "bands (4, 3, 2, 1)",
                 "Output: estimated (probabilities), from the model card", "Classes: 6, from the model card"):
        assert said in log, said


def test_explicit_parameters_win_over_the_card(provider, renamed, tmp_path):
    """The card says scale 0.5 and offset -100: given here, scale 1 and offset 0 feed PAN's coded values as they
    are, and the other values still come from the card."""
    import processing

    pan, xs = delivered(tmp_path)
    model = with_card(renamed, tmp_path, card())
    feedback = recording_feedback()
    processing.run(VALID, {"MODEL": model, "SOURCE1": [pan], "SOURCE2": [xs], "SOURCE1_BANDS": "2",
                           "SOURCE1_SCALE": "1", "SOURCE1_OFFSET": "0", "OUTPUT": str(tmp_path / "a.tif")},
                   feedback=feedback)
    log = "\n".join(feedback.lines)
    assert "source 1: from the model card: placeholder pan_image, receptive field (128, 128)." in log
    assert "bands (2)" not in log  # given, so not from the card
    again = run_inference(InferenceRequest(model, (Source(pan, None, bands=2, scale=0.5, offset=-100),
                                                   Source(xs, None)), valid_part=True), str(tmp_path / "b.tif"))
    assert not np.array_equal(pixels(tmp_path / "a.tif"), pixels(again.path))  # scale 1 differs from 0.5


def test_band_selection_and_scaling_without_a_card(renamed, tmp_path):
    """The engine's own capabilities, from Python: the same pixels as the original imagery."""
    pan, xs = delivered(tmp_path)
    plain = run_inference(InferenceRequest(str(renamed), (Source(str(PAN), 128, "pan_image"),
                                                          Source(str(XS), 32, "ms_image")), valid_part=True),
                          str(tmp_path / "plain.tif"))
    coded = run_inference(InferenceRequest(str(renamed), (
        Source(pan, 128, "pan_image", bands=(2,), scale=0.5, offset=-100),
        Source(xs, 32, "ms_image", bands=(4, 3, 2, 1), scale=(0.5,) * 4, offset=(-100,) * 4)), valid_part=True),
        str(tmp_path / "coded.tif"))
    assert np.abs(pixels(plain.path) - pixels(coded.path)).max() <= 1e-5


def test_mean_and_std_are_a_scale_and_offset(tmp_path):
    folder = with_card(MODEL, tmp_path, card(sources=[
        {"placeholder": "input_p", "mean": 300, "std": 2}, {"placeholder": "input_xs", "mean": [1, 2, 3, 4],
                                                             "std": [2, 4, 5, 8]}], outputs=None, classes=None))
    found = read_card(folder)
    assert found.sources[0].scale == (0.5,) and found.sources[0].offset == (-150.0,)
    assert found.sources[1].scale == (0.5, 0.25, 0.2, 0.125) and found.sources[1].offset == (-0.5, -0.5, -0.6, -0.5)


def test_a_card_written_by_model_analysis_needs_no_probe_on_another_machine(provider, renamed, tmp_path):
    """Model analysis writes the card (keeping the author's bands and scaling); inference in a new process with an
    empty measurement cache says the measurement came from the card, and stores none."""
    import processing

    model = with_card(renamed, tmp_path, card())
    result = processing.run(ANALYSIS, {"MODEL": model, "SOURCE1": [str(PAN)], "SOURCE2": [str(XS)],
                                       "SOURCE1_SIZE": 128, "SOURCE1_PLACEHOLDER": "pan_image",
                                       "SOURCE2_PLACEHOLDER": "ms_image", "WRITE_CARD": True,
                                       "REPORT": str(tmp_path / "report.html")})
    assert result["CARD"] == card_path(model)
    written = json.loads(open(result["CARD"], encoding="utf-8").read())
    assert written["sources"][0]["bands"] == [2] and written["sources"][1]["scale"] == 0.5  # the author's, kept
    assert written["measured"]["measurements"][0]["probe"]["lost"] == [31, 31, 16, 16]
    pan, xs = delivered(tmp_path)
    cache = tmp_path / "another-machine-cache"
    run = qgis_process("run", VALID, "--", f"MODEL={model}", f"SOURCE1={pan}", f"SOURCE2={xs}",
                       f"OUTPUT={tmp_path / 'out.tif'}", env={"SEAMLESS_CACHE_DIR": str(cache)})
    assert run.returncode == 0, run.stdout + run.stderr
    assert "Measurement of estimated: from the model card (no probe run)." in run.stdout
    assert not cache.exists() or not os.listdir(cache)  # nothing measured, so nothing stored


def test_a_card_of_another_model_is_ignored_with_a_note(renamed, tmp_path):
    value = json.loads((MODEL / "assets.extra" / "seamless.json").read_text())  # the sample's: another fingerprint
    value["sources"] = [dict(s, placeholder=p) for s, p in zip(value["sources"], ("pan_image", "ms_image"))]
    model = with_card(renamed, tmp_path, value)
    lines = []
    run_inference(InferenceRequest(model, (Source(str(PAN), None), Source(str(XS), None)), valid_part=True),
                  str(tmp_path / "out.tif"), log_info=lines.append)
    assert any("measurement is for another model" in line for line in lines)
    assert not any("from the model card (no probe run)" in line for line in lines)


def test_the_sample_card_validates_against_the_shipped_schema():
    import jsonschema
    schema = json.loads(open(SCHEMA, encoding="utf-8").read())
    jsonschema.Draft202012Validator.check_schema(schema)
    jsonschema.validate(json.loads((MODEL / "assets.extra" / "seamless.json").read_text()), schema)
    jsonschema.validate(card(), schema)
    assert read_card(str(MODEL)).classes == read_class_table(str(SAMPLE / "classes.csv"))


BAD_CARDS = {
    "not JSON": ("{version: 1,", ["is not JSON"]),
    "unknown version": (card(version=7), ["version 7 is not a card version"]),
    "a placeholder the model lacks": (card(sources=[{"placeholder": "input_p"}]),
                                      ["sources[0].placeholder 'input_p' is not an input of the model",
                                       "pan_image"]),
    "classes with duplicate values": (card(classes=[{"value": 1, "name": "a", "color": "#000000"},
                                                    {"value": 1, "name": "b", "color": "#ffffff"}]),
                                      ["classes[1].value 1 is given twice"]),
    "a scale of 0": (card(sources=[dict(card()["sources"][0], scale=0), card()["sources"][1]]),
                     ["sources[0].scale is 0"]),
    "a band that does not exist": (card(sources=[dict(card()["sources"][0], bands=[3]), card()["sources"][1]]),
                                   ["band 3 is asked by the model card (sources[0].bands) but the source has 2 band(s)",
                                    "[parameter SOURCE1_BANDS]"]),
    "a typo in a key": (card(sources=[dict(card()["sources"][0], scal=2), card()["sources"][1]]),
                        ["sources[0].scal is not a key of a source"]),
}


@pytest.mark.parametrize("case", BAD_CARDS)
def test_bad_cards_are_refused_naming_the_key_and_nothing_is_written(provider, renamed, tmp_path, case):
    value, fragments = BAD_CARDS[case]
    work = tmp_path / "work"
    work.mkdir()
    pan, xs = delivered(work)
    model = with_card(renamed, work, value)
    import processing
    from qgis.core import QgsProcessingException

    parameter = [] if "parameter" in fragments[-1] else ["[parameter MODEL]"]
    before = snapshot(work)

    with pytest.raises(QgsProcessingException) as error:
        processing.run(VALID, {"MODEL": model, "SOURCE1": [pan], "SOURCE2": [xs], "OUTPUT": str(work / "o.tif"),
                               "CLASS_MAP": str(work / "c.tif")})
    for fragment in fragments + parameter:
        assert fragment in str(error.value), f"{fragment!r} not in {error.value}"
    assert snapshot(work) == before


def test_a_pixel_size_off_the_card_is_refused_or_resampled(provider, renamed, tmp_path):
    """PAN at 0.5 m and XS at 2.0 m for a model trained at 0.6 / 2.4: refused with the figures; with a resampling
    named, warped to the card's pixel size, and the output is on that grid."""
    import processing
    from qgis.core import QgsProcessingException

    pan, xs = (gdal.Open(str(p)).ReadAsArray() for p in (PAN, XS))
    transform = gdal.Open(str(PAN)).GetGeoTransform()
    origin = (transform[0], transform[3])
    pan = write_raster(tmp_path / "pan05.tif", pan[np.newaxis], origin=origin, spacing=0.5)
    xs = write_raster(tmp_path / "xs20.tif", xs, origin=origin, spacing=2.0)
    model = with_card(renamed, tmp_path, card(sources=[dict(s, bands=None, scale=None, offset=None)
                                                       for s in card()["sources"]]))
    params = {"MODEL": model, "SOURCE1": [pan], "SOURCE2": [xs], "OUTPUT": str(tmp_path / "out.tif")}
    with pytest.raises(QgsProcessingException) as error:
        processing.run(VALID, params)
    for fragment in ("source 1's pixels are 0.5 x 0.5 but the model was trained at 0.6 x 0.6", "17% apart",
                     "[parameter SOURCE1]"):
        assert fragment in str(error.value)
    assert not os.path.exists(params["OUTPUT"])
    result = processing.run(VALID, dict(params, RESAMPLE=2))  # bilinear
    transform = gdal.Open(result["OUTPUT"]).GetGeoTransform()
    assert transform[1] == pytest.approx(0.6) and transform[5] == pytest.approx(-0.6)


def test_the_sample_card_makes_the_demo_need_only_the_model_and_the_images(provider, tmp_path):
    import processing

    feedback = recording_feedback()
    processing.run(VALID, {"MODEL": str(MODEL), "SOURCE1": [str(PAN)], "SOURCE2": [str(XS)],
                           "OUTPUT": str(tmp_path / "out.tif"), "CLASS_MAP": str(tmp_path / "classes.tif")},
                   feedback=feedback)
    assert categories(tmp_path / "classes.tif") == [e.name for e in read_class_table(str(SAMPLE / "classes.csv"))]
    assert any(line.startswith("Measurement of estimated: from the model card") for line in feedback.lines)


def test_a_bad_card_is_an_engine_error_from_python(tmp_path):
    model = with_card(MODEL, tmp_path, card(version="1"))
    with pytest.raises(EngineError) as error:
        read_card(model)
    assert error.value.field == "model_dir" and "version '1'" in str(error.value)


@pytest.mark.slow
@pytest.mark.parametrize("backend", ["otbtf", "cluster"])
def test_every_backend_feeds_the_selected_and_scaled_bands(renamed, tmp_path, monkeypatch, backend):
    """OTBTF (through a VRT that selects and scales) and the Dask workers (the engine's own code) on the coded
    imagery give this process's pixels on the original imagery."""
    from seamless_inference.engine import OTBTF

    if backend == "otbtf":
        from test_otbtf_real import otbtf_environment

        from seamless_inference.engine import otb_process

        for key, value in otbtf_environment().items():
            monkeypatch.setenv(key, value)
        otb_process._status.clear()
    pan, xs = delivered(tmp_path)
    plain = (Source(str(PAN), 128, "pan_image"), Source(str(XS), 32, "ms_image"))
    coded = (Source(pan, 128, "pan_image", bands=2, scale=0.5, offset=-100),
             Source(xs, 32, "ms_image", bands=(4, 3, 2, 1), scale=0.5, offset=-100))
    common = {"output_names": ("estimated_crop32",), "efield": (64, 64), "extent_mode": OTBTF, "use_card": False}
    reference = run_inference(InferenceRequest(str(renamed), plain, **common), str(tmp_path / "reference.tif"))
    lines = []
    options = {"backend": "otbtf"} if backend == "otbtf" else {"cluster": "local:1"}
    other = run_inference(InferenceRequest(str(renamed), coded, **common), str(tmp_path / "other.tif"),
                          log_info=lines.append, **options)
    assert any(line.startswith("Backend: OTBTF" if backend == "otbtf" else "Backend: Dask") for line in lines), lines
    assert np.abs(pixels(reference.path) - pixels(other.path)).max() <= 1e-5
    if backend == "otbtf":
        otb_process._status.clear()


def test_a_regression_output_is_stretched_over_its_own_range(provider, qgis_new_project, tmp_path):
    """The card says the output is a regression: the canvas stretch is its values' range, not 0..1."""
    import processing
    from qgis.core import QgsProject
    from test_bad_input_catalogue import tf_model

    plain = tf_model(tmp_path / "plain", "plain")  # y = (x, -x) / 100: PAN / 100 is about 1..16
    model = with_card(plain, tmp_path, {"version": 1, "sources": [{"placeholder": "x", "receptive_field": 64}],
                                        "outputs": [{"name": "y", "kind": "regression"}]})
    out = tmp_path / "y.tif"
    processing.runAndLoadResults(VALID, {"MODEL": model, "SOURCE1": [str(PAN)], "DISPLAY_BAND": 1,
                                         "OUTPUT": str(out)})
    [layer] = QgsProject.instance().mapLayers().values()
    enhancement = layer.renderer().contrastEnhancement()
    values = pixels(out)[0]
    assert values.min() > 0.5 and values.max() > 5
    assert enhancement.minimumValue() == pytest.approx(values.min(), rel=1e-3)
    assert enhancement.maximumValue() == pytest.approx(values.max(), rel=1e-3)
