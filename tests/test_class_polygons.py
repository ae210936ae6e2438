"""models/class_polygons.model3: from class scores to map products (class polygons and an area table), run through
qgis_process as a user would; and the class names step (engine/class_names.py, seamless:classnames)."""

import csv
import importlib.util
import sqlite3

import numpy as np
import pytest
from conftest import MODEL, PAN, ROOT, SAMPLE, XS, qgis_process, seed_sources
from osgeo import gdal, ogr

from seamless_inference.engine import InferenceRequest, run_inference
from seamless_inference.engine.class_map import read_class_table
from seamless_inference.engine.class_names import class_entries, entry_of, raster_classes

MODEL3 = ROOT / "models" / "class_polygons.model3"
CLASSES_CSV = SAMPLE / "classes.csv"
CHILDREN = {"valid_part": "seamless:validpartinference", "pixel_size": "native:rasterlayerproperties",
            "sieve": "gdal:sieve", "polygonize": "gdal:polygonize", "split": "native:extractbyexpression",
            "dissolve": "native:collect", "merge": "native:mergevectorlayers", "polygon_areas": "native:refactorfields",
            "polygons": "seamless:classnames", "area_report": "native:rasterlayeruniquevaluesreport",
            "area_table": "native:refactorfields", "areas": "seamless:classnames"}
PIXEL_AREA = 0.6 * 0.6  # the sample's PAN grid, which the valid part keeps


def load_model3(path=MODEL3):
    from qgis.core import QgsProcessingModelAlgorithm

    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(path)), f"{path} does not load"
    return model


def test_the_model_chains_the_class_map_into_qgis_and_gdal_algorithms(provider):
    model = load_model3()
    children = model.childAlgorithms()
    assert {child_id: child.algorithmId() for child_id, child in children.items()} == CHILDREN
    for child_id in children:
        ok, issues = model.validateChildAlgorithm(child_id)
        assert ok, f"{child_id}: {issues} (regenerate the model: .venv/bin/python tools/make_model3.py)"
    assert [p.name() for p in model.parameterDefinitions() if not p.isDestination()] == [
        "MODEL", "SOURCE1", "SOURCE2", "CLASS_TABLE", "MIN_AREA", "DISSOLVE"]
    assert {p.name() for p in model.parameterDefinitions() if p.isDestination()} == {
        "polygons:POLYGONS", "areas:AREAS"}  # Version1: the names users' scripts pass
    (threshold,) = children["sieve"].parameterSources()["THRESHOLD"]
    assert "@MIN_AREA" in threshold.expression() and "pixel_size" in [d.childId for d in
                                                                      children["sieve"].dependencies()]


def test_the_committed_model_is_what_make_model3_builds(provider, tmp_path):
    spec = importlib.util.spec_from_file_location("make_model3", ROOT / "tools" / "make_model3.py")
    make_model3 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_model3)
    fresh = tmp_path / "class_polygons.model3"
    assert make_model3.build_class_polygons().toFile(str(fresh))
    assert load_model3(fresh).toVariant() == load_model3().toVariant(), \
        "models/class_polygons.model3 is stale: run .venv/bin/python tools/make_model3.py"


def test_a_class_map_names_its_classes_and_a_class_table_takes_precedence(tmp_path):
    path = str(tmp_path / "classes.tif")
    dataset = gdal.GetDriverByName("GTiff").Create(path, 4, 4, 1, gdal.GDT_Byte)
    band = dataset.GetRasterBand(1)
    band.SetNoDataValue(255)
    colors = gdal.ColorTable()
    colors.SetColorEntry(0, (10, 20, 30, 255))
    colors.SetColorEntry(2, (40, 50, 60, 255))
    band.SetColorTable(colors)
    band.SetCategoryNames(["water", "", "forest"])
    dataset = band = None
    assert [(e.value, e.name, e.color) for e in raster_classes(path)] == [
        (0, "water", (10, 20, 30, 255)), (2, "forest", (40, 50, 60, 255))]
    assert class_entries(path, str(CLASSES_CSV)) == read_class_table(str(CLASSES_CSV))
    assert class_entries(str(tmp_path / "missing.tif"), None) == ()
    entries = raster_classes(path)
    assert entry_of(entries, 2.0).name == "forest" and entry_of(entries, "1").name == "class 1"


def sieved_counts(class_map: str, threshold: int) -> dict:
    """Pixels per class of the class map sieved as gdal:sieve does (4-connected, no-data masked)."""
    source = gdal.Open(class_map)
    memory = gdal.GetDriverByName("MEM").CreateCopy("", source)
    band = memory.GetRasterBand(1)
    gdal.SieveFilter(band, band.GetMaskBand(), band, threshold, 4)
    values = band.ReadAsArray()
    return {int(v): int(n) for v, n in zip(*np.unique(values[values != 255], return_counts=True))}


def polygons_of(path):
    """[(class, name, area_m2, area_ha, geometry area)] of the class polygons."""
    dataset = ogr.Open(str(path))  # held while its layer is read (GDAL frees the layer with it)
    return [(f["class"], f["name"], f["area_m2"], f["area_ha"], f.GetGeometryRef().GetArea())
            for f in dataset.GetLayer(0)]


def run_model(tmp_path, *extra):
    polygons, areas = tmp_path / "p.gpkg", tmp_path / "a.csv"
    run = qgis_process("run", MODEL3, "--", f"MODEL={MODEL}", f"SOURCE1={PAN}", f"SOURCE2={XS}", *extra,
                       f"polygons:POLYGONS={polygons}", f"areas:AREAS={areas}")
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    with open(areas, newline="", encoding="utf-8") as handle:
        table = list(csv.DictReader(handle))
    return polygons, table, run.stdout + run.stderr


@pytest.mark.slow
def test_qgis_process_makes_named_polygons_and_an_area_table_that_add_up_to_the_scene(tmp_path):
    polygons, table, log = run_model(tmp_path, f"CLASS_TABLE={CLASSES_CSV}", "MIN_AREA=2")
    names = {e.value: e.name for e in read_class_table(str(CLASSES_CSV))}
    # the sieve's threshold is the unit in pixels, rounded up: 2 m2 / 0.36 m2 -> 6 pixels
    assert "gdal_sieve.py -st 6 -4" in log
    rows = polygons_of(polygons)
    assert rows and all(names[c] == name for c, name, *_ in rows)  # the sample's class names
    assert min(area for *_, area in rows) >= 2.0  # no patch under the minimum mapping unit
    for _, _, area_m2, area_ha, geometry in rows:
        assert area_m2 == pytest.approx(geometry) and area_ha == pytest.approx(area_m2 / 10000)
    scene = 500 * 500 * PIXEL_AREA
    assert sum(r[2] for r in rows) == pytest.approx(scene, rel=0.01)  # the whole scene is mapped

    # the table: one row per class, the sieved map's pixels times the pixel area; polygons and table agree
    engine = tmp_path / "classes.tif"
    run_inference(InferenceRequest(str(MODEL), seed_sources(), output_names=("estimated_crop32",)), None,
                  class_map=str(engine))
    counts = sieved_counts(str(engine), 6)
    assert [int(r["value"]) for r in table] == sorted(counts)
    for row in table:
        value = int(row["value"])
        assert row["name"] == names[value] and int(row["pixels"]) == counts[value]
        assert float(row["area_m2"]) == pytest.approx(counts[value] * PIXEL_AREA, rel=1e-9)
        assert float(row["area_ha"]) == pytest.approx(counts[value] * PIXEL_AREA / 10000, rel=1e-9)
        assert sum(r[2] for r in rows if r[0] == value) == pytest.approx(float(row["area_m2"]), rel=1e-6)
    assert sum(float(r["share_pct"]) for r in table) == pytest.approx(100.0)
    assert sum(int(r["pixels"]) for r in table) == 500 * 500  # the sieve moves pixels between classes only

    # styled on load: a categorised style of the class colours, the GeoPackage's default
    with sqlite3.connect(polygons) as db:
        (qml, default), = db.execute("SELECT styleQML, useAsDefault FROM layer_styles").fetchall()
    assert default and 'type="categorizedSymbol"' in qml and 'attr="class"' in qml
    assert all(f'label="{names[c]}"' in qml for c in {r[0] for r in rows})


@pytest.mark.slow
def test_without_a_sieve_the_table_is_the_class_maps_pixel_counts_and_dissolved_polygons_match_it(tmp_path):
    """MIN_AREA 0 keeps every patch; without a class table the names are the class map's own, which the sample's
    model card gave it (MODEL, SOURCE1, SOURCE2 and the outputs are enough); DISSOLVE gives one multipolygon per
    class, of the table's area."""
    names = {e.value: e.name for e in read_class_table(str(CLASSES_CSV))}
    polygons, table, log = run_model(tmp_path, "MIN_AREA=0", "DISSOLVE=true")
    engine = tmp_path / "classes.tif"
    run_inference(InferenceRequest(str(MODEL), seed_sources(), output_names=("estimated_crop32",)), None,
                  class_map=str(engine))
    values = gdal.Open(str(engine)).ReadAsArray()
    counts = dict(zip(*np.unique(values, return_counts=True)))
    assert {int(r["value"]): int(r["pixels"]) for r in table} == {int(v): int(n) for v, n in counts.items()}
    for row in table:
        assert float(row["area_m2"]) == pytest.approx(int(row["pixels"]) * PIXEL_AREA, rel=1e-9)
        assert row["name"] == names[int(row["value"])]
    rows = polygons_of(polygons)
    assert sorted(r[0] for r in rows) == sorted(int(r["value"]) for r in table)  # one feature per class
    areas = {int(r["value"]): float(r["area_m2"]) for r in table}
    for value, name, area_m2, _, geometry in rows:
        assert name == names[value] and area_m2 == pytest.approx(areas[value], rel=1e-6)
    assert sum(r[2] for r in rows) == pytest.approx(500 * 500 * PIXEL_AREA, rel=1e-6)


def test_classnames_names_a_table_and_refuses_a_bad_class_table_naming_the_parameter(provider, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    table = tmp_path / "counts.csv"
    table.write_text("value,count\n0,5\n7,2\n", encoding="utf-8")
    out = tmp_path / "named.csv"
    processing.run("seamless:classnames", {"INPUT": str(table), "FIELD": "value", "CLASS_TABLE": str(CLASSES_CSV),
                                           "OUTPUT": str(out)})
    with open(out, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["value"], r["name"], r["count"]) for r in rows] == [("0", "Shadow", "5"), ("7", "class 7", "2")]
    again = tmp_path / "again.csv"  # a table named before: its names are given anew, in place
    processing.run("seamless:classnames", {"INPUT": str(out), "FIELD": "value", "OUTPUT": str(again)})
    with open(again, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    assert [(r["value"], r["name"], r["count"]) for r in rows] == [("0", "class 0", "5"), ("7", "class 7", "2")]
    bad = tmp_path / "bad.csv"
    bad.write_text("0,water,blue\n", encoding="utf-8")
    with pytest.raises(QgsProcessingException, match=r"not a colour.*\[parameter CLASS_TABLE\]"):
        processing.run("seamless:classnames", {"INPUT": str(table), "FIELD": "value", "CLASS_TABLE": str(bad),
                                               "OUTPUT": str(tmp_path / "never.csv")})
    assert not (tmp_path / "never.csv").exists()
