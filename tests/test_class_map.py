"""The class map: the argmax of the scores in the same pass, its table, its palette in QGIS, its refusals."""

import os
import shutil

import numpy as np
import pytest
from conftest import MODEL, PAN, SAMPLE, XS, qgis_process, seed_sources
from osgeo import gdal

from seamless_inference.engine import Cancelled, EngineError, InferenceRequest, Source, run_inference
from seamless_inference.engine.class_map import (CLASS_NODATA, complete_table, default_table, read_class_table,
                                                 score_warning)

VALID = "seamless:validpartinference"
ARTIFACT = "seamless:artifactproneinference"
CLASSES_CSV = SAMPLE / "classes.csv"
SAMPLE_NAMES = ["Shadow", "Bright surfaces", "Tile roofs", "Roads and dark roofs", "Buildings", "Vegetation"]


def valid_request(**changes):
    return InferenceRequest(str(MODEL), seed_sources(), valid_part=True, **changes)


def read(path):
    dataset = gdal.Open(str(path))
    return dataset.ReadAsArray()


def categories(path):
    """The class names GDAL reads (from the .aux.xml; GTiff's GetCategoryNames does not load it in GDAL 3.6)."""
    return gdal.Info(str(path), format="json")["bands"][0].get("categories")


@pytest.fixture(scope="module")
def one_run(tmp_path_factory):
    """Scores and class map (with confidence and the sample's table) written by one run of the sample."""
    folder = tmp_path_factory.mktemp("one_run")
    lines = []
    result = run_inference(valid_request(), str(folder / "scores.tif"), class_map=str(folder / "classes.tif"),
                           confidence=True, class_table=read_class_table(str(CLASSES_CSV)), log_info=lines.append)
    return folder, result, lines


def test_the_class_map_is_the_argmax_of_the_scores_written_in_the_same_run(one_run):
    folder, result, lines = one_run
    scores, classes = read(folder / "scores.tif"), read(folder / "classes.tif")
    assert result.class_map == str(folder / "classes.tif")
    assert classes.dtype == np.uint8 and classes.shape == (2,) + scores.shape[1:]
    assert np.array_equal(classes[0], np.argmax(scores, axis=0))
    assert np.array_equal(classes[1], np.rint(scores.max(axis=0) * 100).astype(np.uint8))  # confidence, %
    # and it is a land-cover map: the sample model reproduces its labels
    labels = read(SAMPLE / "data" / "labels.tif")
    assert (classes[0] == labels).mean() > 0.95
    assert sorted(os.listdir(folder)) == ["classes.tif", "classes.tif.aux.xml", "scores.tif"]  # no temporary file
    assert not any("Warning" in line for line in lines), lines  # softmax scores: no warning


def test_the_class_map_carries_the_table_as_colours_and_category_names(one_run):
    folder, _, _ = one_run
    dataset = gdal.Open(str(folder / "classes.tif"))
    band = dataset.GetRasterBand(1)
    assert band.DataType == gdal.GDT_Byte and band.GetNoDataValue() == CLASS_NODATA
    assert categories(folder / "classes.tif") == SAMPLE_NAMES
    colors = band.GetColorTable()
    assert [colors.GetColorEntry(i) for i in range(6)] == [e.color for e in read_class_table(str(CLASSES_CSV))]
    assert dataset.GetRasterBand(2).GetDescription() == "confidence (%)"


def test_the_display_band_is_the_one_with_the_most_contrast(one_run):
    folder, result, _ = one_run
    corner = read(folder / "scores.tif")[:, :512, :512]
    assert result.display_band == int(np.argmax(corner.std(axis=(1, 2)))) + 1
    assert result.display_band != 2  # the old fixed band: class 1, almost all black on the sample


def test_a_class_map_alone_writes_no_scores_and_the_same_classes(one_run, tmp_path):
    folder, _, _ = one_run
    result = run_inference(valid_request(), None, class_map=str(tmp_path / "alone.tif"))
    assert result.path is None and result.display_band is None
    assert sorted(os.listdir(tmp_path)) == ["alone.tif", "alone.tif.aux.xml"]
    alone = read(tmp_path / "alone.tif")
    assert alone.ndim == 2 and np.array_equal(alone, read(folder / "classes.tif")[0])
    # no table given: the sample's model card names the classes (sample/classes.csv's)
    assert categories(tmp_path / "alone.tif") == [e.name for e in read_class_table(str(CLASSES_CSV))]
    assert result.class_table == read_class_table(str(CLASSES_CSV))


def test_no_data_pixels_are_255_in_the_class_map(tmp_path):
    pan = tmp_path / "pan_hole.tif"
    gdal.Translate(str(pan), str(PAN))
    dataset = gdal.Open(str(pan), gdal.GA_Update)
    data = dataset.ReadAsArray()
    data[100:200, 100:200] = -1
    dataset.GetRasterBand(1).WriteArray(data)
    dataset = None
    sources = (Source((str(pan),), (128, 128), "input_p", nodata=-1), seed_sources()[1])
    run_inference(InferenceRequest(str(MODEL), sources, valid_part=True), None, class_map=str(tmp_path / "c.tif"),
                  confidence=True)
    classes = read(tmp_path / "c.tif")
    assert (classes[:, 100:200, 100:200] == CLASS_NODATA).all()
    assert (classes[0, :100] < 6).all() and (classes[1, :100] <= 100).all()


def test_cancel_leaves_neither_file(tmp_path):
    calls = []

    def cancel_at_second_batch():
        calls.append(1)
        return len(calls) > 1

    with pytest.raises(Cancelled):
        run_inference(valid_request(tile_size=64, batch_size=1), str(tmp_path / "scores.tif"),
                      class_map=str(tmp_path / "classes.tif"), is_canceled=cancel_at_second_batch)
    assert len(calls) == 2 and os.listdir(tmp_path) == []


def test_the_class_map_path_must_differ_from_the_output_and_the_inputs(tmp_path):
    with pytest.raises(EngineError, match="same file") as caught:
        run_inference(valid_request(), str(tmp_path / "a.tif"), class_map=str(tmp_path / "a.tif"))
    assert caught.value.field == "class_map"
    with pytest.raises(EngineError, match="destroy the input") as caught:
        run_inference(valid_request(), None, class_map=str(PAN))
    assert caught.value.field == "class_map"
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("backend, cluster, field", [("otbtf", None, "backend"), ("tensorflow", "local:1", "cluster")])
def test_otbtf_and_a_cluster_refuse_a_class_map_clearly(tmp_path, backend, cluster, field):
    with pytest.raises(EngineError, match="class map") as caught:
        run_inference(valid_request(), str(tmp_path / "a.tif"), class_map=str(tmp_path / "c.tif"), backend=backend,
                      cluster=cluster)
    assert caught.value.field == field and os.listdir(tmp_path) == []


@pytest.fixture(scope="module")
def plain_models(tmp_path_factory):
    """A one-convolution model on PAN with a 1-band output and a 3-band ReLU output (not probabilities)."""
    from seamless_inference.engine.dependencies import import_tensorflow

    tf = import_tensorflow()
    keras = tf.keras
    tf.random.set_seed(5)
    inputs = keras.Input((None, None, 1), name="x")
    scaled = keras.layers.Rescaling(1 / 30.0)(inputs)
    outputs = {"one": keras.layers.Conv2D(1, 3, padding="same")(scaled),
               "relu3": keras.layers.Conv2D(3, 3, padding="same", activation="relu")(scaled)}
    folder = tmp_path_factory.mktemp("plain") / "model"
    keras.Model(inputs, outputs).export(str(folder), format="tf_saved_model", verbose=False)
    return str(folder)


def plain_request(model, output):
    return InferenceRequest(model, (Source((str(PAN),), (64, 64), "x"),), output_names=(output,))


def test_a_one_band_output_is_refused_as_a_class_map(plain_models, tmp_path):
    with pytest.raises(EngineError, match="1 band: a class map needs one score per class") as caught:
        run_inference(plain_request(plain_models, "one"), str(tmp_path / "a.tif"), class_map=str(tmp_path / "c.tif"))
    assert caught.value.field == "class_map" and os.listdir(tmp_path) == []


def test_scores_that_are_not_probabilities_get_a_warning_and_still_their_argmax(plain_models, tmp_path):
    lines = []
    run_inference(plain_request(plain_models, "relu3"), str(tmp_path / "a.tif"), class_map=str(tmp_path / "c.tif"),
                  log_info=lines.append)
    warnings = [line for line in lines if line.startswith("Warning: class map")]
    assert len(warnings) == 1 and "not probabilities in [0, 1]" in warnings[0], lines
    assert np.array_equal(read(tmp_path / "c.tif"), np.argmax(read(tmp_path / "a.tif"), axis=0))


def test_score_warning_on_real_values():
    xs = gdal.Open(str(XS)).ReadAsArray().transpose(1, 2, 0).astype(np.float32)
    assert "not probabilities" in score_warning(xs, None)  # digital numbers
    scaled = xs / 1000.0  # in [0, 1] but not summing to 1
    assert "sum to" in score_warning(scaled, None)
    softmax = scaled / scaled.sum(axis=-1, keepdims=True)
    assert score_warning(softmax, None) is None


# --- class tables --------------------------------------------------------------------------------------------

def test_the_sample_table_names_its_six_classes():
    entries = read_class_table(str(CLASSES_CSV))
    assert [e.value for e in entries] == list(range(6)) and [e.name for e in entries] == SAMPLE_NAMES
    assert len({e.color for e in entries}) == 6 and all(len(e.color) == 4 for e in entries)


def test_a_clr_colour_map_is_read(tmp_path):
    path = tmp_path / "classes.clr"  # QGIS's "Export color map to file" of a paletted layer, and GDAL's
    path.write_text("# QGIS Generated Color Map Export File\nINTERPOLATION:EXACT\n"
                    "0 31 119 180 255 open water\n1 44 160 44 255 forest\n2 214 39 40 128 built\n", encoding="utf-8")
    entries = read_class_table(str(path))
    assert [(e.value, e.name, e.color) for e in entries] == [
        (0, "open water", (31, 119, 180, 255)), (1, "forest", (44, 160, 44, 255)), (2, "built", (214, 39, 40, 128))]


def test_a_qml_style_saved_by_qgis_is_read(qgis_new_project, tmp_path):
    from qgis.core import QgsPalettedRasterRenderer, QgsRasterLayer
    from qgis.PyQt.QtGui import QColor

    labels = tmp_path / "labels.tif"  # a copy: QGIS may write statistics next to it
    gdal.Translate(str(labels), str(SAMPLE / "data" / "labels.tif"))
    layer = QgsRasterLayer(str(labels), "labels")
    classes = [QgsPalettedRasterRenderer.Class(i, QColor(10 * i, 20 * i, 30 * i), f"label {i}") for i in range(6)]
    layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes))
    qml = tmp_path / "labels.qml"
    message, saved = layer.saveNamedStyle(str(qml))
    assert saved, message
    entries = read_class_table(str(qml))
    assert [(e.value, e.name, e.color) for e in entries] == [
        (i, f"label {i}", (10 * i, 20 * i, 30 * i, 255)) for i in range(6)]


@pytest.mark.parametrize("text, match", [("value,name,color\n0,water,blue\n", "not a colour"),
                                         ("0,water\n", "expected value,name,color"),
                                         ("0,a,#000000\n0,b,#ffffff\n", "twice"),
                                         ("value,name,color\n", "no class")])
def test_a_bad_csv_table_names_the_line_and_the_fix(tmp_path, text, match):
    path = tmp_path / "bad.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(EngineError, match=match) as caught:
        read_class_table(str(path))
    assert caught.value.field == "class_table"


def test_without_a_table_classes_get_default_names_and_distinct_colours():
    entries = default_table(12)
    assert [e.name for e in entries] == [f"class {i}" for i in range(12)]
    assert len({e.color for e in entries}) == 12
    full, missing, beyond = complete_table(read_class_table(str(CLASSES_CSV))[:4], 6)
    assert [e.name for e in full] == SAMPLE_NAMES[:4] + ["class 4", "class 5"] and missing == [4, 5]
    assert beyond == []


# --- in QGIS -------------------------------------------------------------------------------------------------

def params(**extra):
    return {"MODEL": str(MODEL), "SOURCE1": [str(PAN)], "SOURCE2": [str(XS)], **extra}


@pytest.mark.parametrize("scores_name, classes_name", [("scores.tif", "classes.tif"), ("a.tif", "z.tif")])
def test_the_class_map_loads_paletted_with_the_sample_names_over_auto_band_scores(provider, qgis_new_project,
                                                                                  tmp_path, scores_name, classes_name):
    """QGIS loads outputs in the order of their paths: either way the class map ends on top, the scores under it."""
    import processing
    from qgis.core import QgsPalettedRasterRenderer, QgsProject

    result = processing.runAndLoadResults(VALID, params(OUTPUT=str(tmp_path / scores_name),
                                                        CLASS_MAP=str(tmp_path / classes_name),
                                                        CLASS_TABLE=str(CLASSES_CSV)))
    layers = {layer.name(): layer for layer in QgsProject.instance().mapLayers().values()}
    classes = layers["estimated_crop32 - valid part - class map"]
    assert classes.source() == result["CLASS_MAP"] == str(tmp_path / classes_name)
    renderer = classes.renderer()
    assert isinstance(renderer, QgsPalettedRasterRenderer) and renderer.band() == 1
    expected = read_class_table(str(CLASSES_CSV))
    assert [(c.value, c.label, c.color.getRgb()) for c in renderer.classes()] == [
        (e.value, e.name, e.color) for e in expected]
    root = QgsProject.instance().layerTreeRoot()
    assert root.findLayers()[0].layer() is classes and root.findLayer(classes.id()).isVisible()  # on top, shown
    scores = layers["estimated_crop32 - valid part"]
    assert not root.findLayer(scores.id()).isVisible()  # loaded, unchecked: the class map is what shows
    corner = read(tmp_path / scores_name)[:, :512, :512]
    assert scores.renderer().usesBands() == [int(np.argmax(corner.std(axis=(1, 2)))) + 1]  # DISPLAY_BAND 0 = Auto


def test_the_class_map_alone_from_qgis_and_the_default_palette(provider, qgis_new_project, tmp_path):
    """A model without a card and no class table: class 0..N-1 in the qualitative palette."""
    import processing
    from qgis.core import QgsPalettedRasterRenderer, QgsProject

    model = tmp_path / "model"
    shutil.copytree(MODEL, model, ignore=shutil.ignore_patterns("assets.extra"))
    out = tmp_path / "out"
    out.mkdir()
    result = processing.runAndLoadResults(ARTIFACT, params(MODEL=str(model), OUTPUT=None,
                                                           CLASS_MAP=str(out / "classes.tif")))
    assert not result["OUTPUT"] and os.listdir(out) == ["classes.tif", "classes.tif.aux.xml"]
    [layer] = QgsProject.instance().mapLayers().values()
    renderer = layer.renderer()
    assert isinstance(renderer, QgsPalettedRasterRenderer)
    assert [c.label for c in renderer.classes()] == [f"class {i}" for i in range(6)]
    assert len({c.color.name() for c in renderer.classes()}) == 6


def test_qgis_refusals_name_the_parameter(provider, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="Nothing to write.*OUTPUT"):
        processing.run(VALID, params(OUTPUT=None))
    table = tmp_path / "bad.csv"
    table.write_text("0,water,blue\n", encoding="utf-8")
    with pytest.raises(QgsProcessingException, match="not a colour.*parameter CLASS_TABLE"):
        processing.run(VALID, params(OUTPUT=str(tmp_path / "a.tif"), CLASS_MAP=str(tmp_path / "c.tif"),
                                     CLASS_TABLE=str(table)))
    with pytest.raises(QgsProcessingException, match="parameter CLASS_MAP"):
        processing.run(VALID, params(OUTPUT=str(tmp_path / "a.tif"), CLASS_MAP=str(tmp_path / "a.tif")))
    assert os.listdir(tmp_path) == ["bad.csv"]


def test_qgis_process_writes_the_class_map_alone_when_output_is_empty(tmp_path):
    run = qgis_process("run", VALID, "--", f"MODEL={MODEL}", f"SOURCE1={PAN}", f"SOURCE2={XS}", "OUTPUT=",
                       f"CLASS_MAP={tmp_path / 'c.tif'}", f"CLASS_TABLE={CLASSES_CSV}")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert sorted(os.listdir(tmp_path)) == ["c.tif", "c.tif.aux.xml"]
    assert categories(tmp_path / "c.tif") == SAMPLE_NAMES
