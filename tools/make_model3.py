"""Writes models/seed_workflow.model3 (the whole seed as one Graphical Modeler model, built with the API) and
models/class_polygons.model3 (class polygons and an area table from a segmentation model, see build_class_polygons).

    .venv/bin/python tools/make_model3.py        (make model3)

The model takes the SavedModel folder, the PAN and XS rasters and their receptive fields, then:
  analysis        seamless:modelanalysis            which _cropN output and expression field are exact
  artifact_prone  seamless:artifactproneinference   the raw output in blocks of the receptive field
  valid_part      seamless:validpartinference       OUTPUT_NAMES and EFIELD taken from the analysis
  comparison      seamless:rastercomparison         artifact-prone against the valid part (the seed's RMSE)
  distortion      seamless:distortioncomparison     every crop against the exact valid part, R from the analysis
Model outputs are named after the child outputs, so qgis_process takes e.g. `valid_part:OUTPUT=valid.tif`.
Parameter names, child ids and output names are a public API (users' scripts and copies of the model use them).
"""

import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = ROOT / "models" / "seed_workflow.model3"
CLASS_POLYGONS = ROOT / "models" / "class_polygons.model3"
MIN_AREA = 2.0  # the class polygons' default minimum mapping unit, m2: 6 pixels of the sample's 0.6 m
sys.path.insert(0, str(ROOT / ".build" / "plugins"))
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

HELP = {
    "ALG_DESC": (
        "The OTBTF tutorial's seed in one model, on any fully convolutional SavedModel with two sources. "
        "Model analysis measures how many output pixels a tile border pollutes and picks the smallest exact "
        "_cropN output and its expression field (efield = rfield - 2 x crop); artifact-prone inference tiles "
        "the raw output in blocks of the receptive field (blocking artifacts); valid-part inference serves the "
        "output and expression field the analysis chose (seamless); raster comparison gives the seed's RMSE "
        "between the two over their common extent; distortion comparison gives the RMSE of every crop against "
        "the exact valid part, with its cost. With the sample: estimated_crop32, efield 64, crop 32."),
    "ALG_CREATOR": "Seamless Inference contributors",
    "ALG_HELP_CREATOR": "Seamless Inference contributors",
    "ALG_VERSION": "1",
    "HELP_URL": "https://github.com/seamless-inference/seamless_inference#tutorial-the-seed-in-qgis",
    "MODEL": "The TensorFlow SavedModel folder (sample/model in the plugin folder). A SavedModel is code: "
             "load only models you trust.",
    "SOURCE1": "Source 1, e.g. the PAN image (sample/data/pan.tif).",
    "SOURCE2": "Source 2, e.g. the XS image (sample/data/xs.tif).",
    "SOURCE1_RFIELD": "Receptive field of source 1 in its pixels (128 for the seed).",
    "SOURCE2_RFIELD": "Receptive field of source 2 in its pixels (32 for the seed: same ground size as 128 PAN "
                      "pixels).",
    "analysis:REPORT": "Model analysis report (valid size of every layer, measured valid window).",
    "artifact_prone:OUTPUT": "The raw output tiled in blocks of the receptive field: blocking artifacts.",
    "valid_part:OUTPUT": "The valid part: seamless.",
    "comparison:REPORT": "Raster comparison report: the seed's RMSE of artifact-prone against valid part.",
    "comparison:SQUARED_ERROR": "Squared error per pixel: the block grid of the artifact-prone output.",
    "distortion:REPORT": "Distortion report: RMSE of every crop against the exact valid part, and its cost.",
    "distortion:TABLE": "RMSE, errors and cost of every crop, one row per crop (the report as a table).",
}


def build():
    """The model (QGIS must be initialised and the `seamless` provider registered)."""
    from qgis.core import (QgsProcessingModelChildParameterSource as Src, QgsProcessingParameterFile,
                           QgsProcessingParameterNumber, QgsProcessingParameterRasterLayer)

    from seamless_inference.algorithms.compat import FOLDER, INTEGER

    model = new_model("Seed workflow")
    inputs = (
        (QgsProcessingParameterFile("MODEL", "Model folder", behavior=FOLDER), 120),
        (QgsProcessingParameterRasterLayer("SOURCE1", "Source 1 (PAN)"), 340),
        (QgsProcessingParameterRasterLayer("SOURCE2", "Source 2 (XS)"), 560),
        (QgsProcessingParameterNumber("SOURCE1_RFIELD", "Source 1 receptive field", INTEGER, 128, minValue=1), 780),
        (QgsProcessingParameterNumber("SOURCE2_RFIELD", "Source 2 receptive field", INTEGER, 32, minValue=0), 1000),
    )
    add_inputs(model, inputs)

    def param(name):
        return [Src.fromModelParameter(name)]

    def child_output(child, name):
        return [Src.fromChildOutput(child, name)]

    def static(value):
        return [Src.fromStaticValue(value)]

    sources = {"MODEL": param("MODEL"), "SOURCE1": param("SOURCE1"), "SOURCE2": param("SOURCE2"),
               "SOURCE1_RFIELD": param("SOURCE1_RFIELD"), "SOURCE2_RFIELD": param("SOURCE2_RFIELD")}
    children = (
        ("analysis", "seamless:modelanalysis", "Model analysis", (200, 200),
         {"MODEL": param("MODEL"), "SOURCE1_SIZE": param("SOURCE1_RFIELD"),
          "SOURCE2_SIZE": param("SOURCE2_RFIELD"), "SOURCE1": param("SOURCE1"), "SOURCE2": param("SOURCE2")},
         (("REPORT", "Model analysis report"),)),
        ("artifact_prone", "seamless:artifactproneinference", "Artifact-prone inference", (760, 200),
         dict(sources), (("OUTPUT", "Artifact-prone output"),)),
        ("valid_part", "seamless:validpartinference", "Valid-part inference",
         (200, 400),
         {**sources, "OUTPUT_NAMES": child_output("analysis", "OUTPUT_NAME"),
          "EFIELD": child_output("analysis", "EFIELD")},
         (("OUTPUT", "Valid-part output"),)),
        ("comparison", "seamless:rastercomparison", "Raster comparison", (600, 580),
         {"REFERENCE": child_output("valid_part", "OUTPUT"), "IMAGE": child_output("artifact_prone", "OUTPUT")},
         (("REPORT", "Raster comparison report"), ("SQUARED_ERROR", "Squared error (the block grid)"))),
        ("distortion", "seamless:distortioncomparison", "Distortion comparison",
         (1000, 400),
         {**sources, "RFIELD": child_output("analysis", "RFIELD"), "CHOSEN_CROP": child_output("analysis", "CROP"),
          "CROPS": static("")},
         (("REPORT", "Distortion report"), ("TABLE", "RMSE per crop (table)"))),
    )
    add_children(model, children)
    model.setParameterOrder(["MODEL", "SOURCE1", "SOURCE1_RFIELD", "SOURCE2", "SOURCE2_RFIELD"])
    model.setHelpContent(HELP)
    return finished(model)


CLASS_POLYGONS_HELP = {
    "ALG_DESC": (
        "From class scores to map products: valid-part inference writes the class map (the argmax of the scores, "
        "seamless); gdal:sieve merges the patches smaller than the minimum mapping unit into their largest "
        "neighbour (its threshold in pixels: the unit divided by the class map's pixel area, rounded up, so no "
        "patch left is smaller); gdal:polygonize makes one polygon per patch (native:collect one multipolygon per "
        "class, with DISSOLVE); native:refactorfields gives each its area; native:rasterlayeruniquevaluesreport counts the pixels of each class on the sieved map; "
        "seamless:classnames names the classes (the class table, or the class map's own) and styles the polygons "
        "in the class colours. Polygons and table describe the same sieved map: their areas agree, and add up to "
        "the mapped area (no-data left out)."),
    "ALG_CREATOR": "Seamless Inference contributors",
    "ALG_HELP_CREATOR": "Seamless Inference contributors",
    "ALG_VERSION": "1",
    "HELP_URL": "https://github.com/seamless-inference/seamless_inference#class_polygonsmodel3",
    "MODEL": "The TensorFlow SavedModel folder of a segmentation model (class scores, e.g. a softmax; sample/model "
             "in the plugin folder). A SavedModel is code: load only models you trust.",
    "SOURCE1": "Source 1, e.g. the PAN image (sample/data/pan.tif).",
    "SOURCE2": "Source 2, e.g. the XS image (sample/data/xs.tif).",
    "MIN_AREA": "Minimum mapping unit in square metres (map units squared): smaller patches are merged into their "
                "largest neighbour. 0 keeps every patch.",
    "CLASS_TABLE": "Names and colours of the classes: CSV value,name,color, QGIS .qml or .clr (the sample's: "
                   "sample/classes.csv). Empty = class 0..N-1 in a qualitative palette.",
    "DISSOLVE": "One multipolygon per class instead of one polygon per patch.",
    "polygons:POLYGONS": "One polygon per patch of the sieved class map (or per class, with DISSOLVE): class value, class name, area in m2 and "
                         "ha; styled in the class colours (also the GeoPackage's default style).",
    "areas:AREAS": "One row per class present: value, name, pixel count, area in m2 and ha, share of the mapped "
                   "area in percent (no-data left out).",
}


def build_class_polygons():
    """The class polygons model (QGIS's Processing, its GDAL provider and `seamless` must be registered)."""
    from qgis.core import (QgsProcessingModelChildParameterSource as Src, QgsProcessingParameterBoolean,
                           QgsProcessingParameterFile, QgsProcessingParameterNumber, QgsProcessingParameterRasterLayer)
    from seamless_inference.algorithms.compat import DOUBLE, FOLDER

    # field types of native:refactorfields' mapping, as numbers: QVariant::Type and QMetaType::Type (QGIS 3.38+,
    # Qt 6) give these three the same values, so the model reads the same on every QGIS
    integer, long_integer, double = 2, 4, 6

    model = new_model("Class polygons and areas")
    add_inputs(model, (
        (QgsProcessingParameterFile("MODEL", "Model folder", behavior=FOLDER), 120),
        (QgsProcessingParameterRasterLayer("SOURCE1", "Source 1 (PAN)"), 340),
        (QgsProcessingParameterRasterLayer("SOURCE2", "Source 2 (XS)"), 560),
        (QgsProcessingParameterFile("CLASS_TABLE", "Class table", optional=True,
                                    fileFilter="Class tables (*.csv *.qml *.clr *.txt)"), 780),
        (QgsProcessingParameterNumber("MIN_AREA", "Minimum mapping unit (m2)", DOUBLE, MIN_AREA, minValue=0), 1000),
        (QgsProcessingParameterBoolean("DISSOLVE", "One (multi)polygon per class", False), 1220),
    ))

    def param(name):
        return [Src.fromModelParameter(name)]

    def child_output(child, name):
        return [Src.fromChildOutput(child, name)]

    def static(value):
        return [Src.fromStaticValue(value)]

    def fields(*mapping):  # native:refactorfields' FIELDS_MAPPING: (name, field type, expression)
        return static([{"name": name, "type": kind, "length": 0, "precision": 0, "expression": expression}
                       for name, kind, expression in mapping])

    class_map = child_output("valid_part", "CLASS_MAP")
    children = (
        ("valid_part", "seamless:validpartinference", "Valid-part inference (class map)", (200, 180),
         {"MODEL": param("MODEL"), "SOURCE1": param("SOURCE1"), "SOURCE2": param("SOURCE2"),
          "CLASS_TABLE": param("CLASS_TABLE")}, ()),
        ("pixel_size", "native:rasterlayerproperties", "Pixel size", (560, 260), {"INPUT": class_map}, ()),
        # gdal_sieve merges regions of fewer pixels than the threshold: ceil(MIN_AREA / pixel area) leaves none
        # smaller than MIN_AREA (rounded to 1e-6 first: 2 m2 of 0.2 m pixels is 50 pixels, not 51); a parameter
        # left out (qgis_process) is a null variable in QGIS 3.22, hence the default again
        ("sieve", "gdal:sieve", "Sieve (minimum mapping unit)", (200, 340),
         {"INPUT": class_map, "THRESHOLD": [Src.fromExpression(
             f"max(1, ceil(round(coalesce(@MIN_AREA, {MIN_AREA}) / (@Pixel_size_PIXEL_WIDTH * @Pixel_size_PIXEL_HEIGHT), "
             "6)))")]}, (),
         ("pixel_size",)),
        ("polygonize", "gdal:polygonize", "Polygonize", (200, 420),
         {"INPUT": child_output("sieve", "OUTPUT"), "FIELD": static("class")}, ()),
        # one feature per class or per patch: the split sends every patch to native:collect (a multipolygon per
        # class) or past it, the merge takes both (one of them empty); no patch is held in memory unless DISSOLVE
        ("split", "native:extractbyexpression", "Dissolve or not", (200, 500),
         {"INPUT": child_output("polygonize", "OUTPUT"),
          "EXPRESSION": [Src.fromExpression("if(coalesce(@DISSOLVE, false), 'TRUE', 'FALSE')")]}, ()),
        ("dissolve", "native:collect", "One multipolygon per class", (560, 580),
         {"INPUT": child_output("split", "OUTPUT"), "FIELD": static(["class"])}, ()),
        ("merge", "native:mergevectorlayers", "Patches or classes", (200, 660),
         {"LAYERS": [Src.fromChildOutput("dissolve", "OUTPUT"), Src.fromChildOutput("split", "FAIL_OUTPUT")],
          "CRS": static(None)}, ()),
        ("polygon_areas", "native:refactorfields", "Polygon areas", (200, 740),
         {"INPUT": child_output("merge", "OUTPUT"), "FIELDS_MAPPING": fields(
             ("class", integer, '"class"'), ("area_m2", double, "area($geometry)"),
             ("area_ha", double, "area($geometry) / 10000"))}, ()),
        ("polygons", "seamless:classnames", "Class names (polygons)", (200, 820),
         {"INPUT": child_output("polygon_areas", "OUTPUT"), "FIELD": static("class"), "CLASS_MAP": class_map,
          "CLASS_TABLE": param("CLASS_TABLE")}, (("POLYGONS", "Class polygons", "OUTPUT"),)),
        ("area_report", "native:rasterlayeruniquevaluesreport", "Pixels per class", (920, 420),
         {"INPUT": child_output("sieve", "OUTPUT"), "BAND": static(1)}, ()),
        ("area_table", "native:refactorfields", "Class areas", (920, 580),
         {"INPUT": child_output("area_report", "OUTPUT_TABLE"), "FIELDS_MAPPING": fields(
             ("value", integer, '"value"'), ("pixels", long_integer, '"count"'),
             ("area_m2", double, '"m2"'), ("area_ha", double, '"m2" / 10000'),
             ("share_pct", double, '100.0 * "count" / sum("count")'))}, ()),
        ("areas", "seamless:classnames", "Class names (areas)", (920, 740),
         {"INPUT": child_output("area_table", "OUTPUT"), "FIELD": static("value"), "CLASS_MAP": class_map,
          "CLASS_TABLE": param("CLASS_TABLE")}, (("AREAS", "Class areas (table)", "OUTPUT"),)),
    )
    add_children(model, children)
    model.setParameterOrder(["MODEL", "SOURCE1", "SOURCE2", "CLASS_TABLE", "MIN_AREA", "DISSOLVE"])
    model.setHelpContent(CLASS_POLYGONS_HELP)
    return finished(model)


def new_model(name: str):
    """An empty Version1 model (see below why) named `name`."""
    from qgis.core import QgsProcessingModelAlgorithm

    model = QgsProcessingModelAlgorithm(name, "Seamless Inference", "seamlessinference")
    # QGIS 3.40 builds 'Version2' models, whose outputs are named after their descriptions (validpart_output);
    # a Version1 model keeps child:OUTPUT (valid_part:OUTPUT), the names users' scripts pass, and every QGIS from
    # 3.22 on loads it with them; 3.22 knows no versions and ignores the key
    variant = model.toVariant()
    variant["internal_version"] = "Version1"
    model.loadVariant(variant)
    return model


def add_inputs(model, inputs) -> None:
    """Model inputs [(parameter definition, x)], in a row at the top of the canvas."""
    from qgis.core import QgsProcessingModelParameter
    from qgis.PyQt.QtCore import QPointF, QSizeF

    for definition, x in inputs:
        component = QgsProcessingModelParameter(definition.name())
        component.setPosition(QPointF(x, 60))
        component.setSize(QSizeF(200, 30))
        model.addModelParameter(definition, component)


def add_children(model, children) -> None:
    """Child algorithms [(child id, algorithm id, description, (x, y), {parameter: sources}, ((output key,
    description[, child output]), ...)[, (child ids it waits for)])]: unset parameters at their defaults, as the
    Modeler does; each output key becomes the model output `child id:key`. A child whose expression reads another
    child's output names it among those it waits for (QGIS orders children by their parameter sources only)."""
    from qgis.core import (QgsProcessingModelChildAlgorithm, QgsProcessingModelChildDependency,
                           QgsProcessingModelChildParameterSource as Src, QgsProcessingModelOutput)
    from qgis.PyQt.QtCore import QPointF, QSizeF

    for child_id, algorithm_id, description, (x, y), parameter_sources, outputs, *waits in children:
        child = QgsProcessingModelChildAlgorithm(algorithm_id)
        if waits:
            child.setDependencies([QgsProcessingModelChildDependency(other) for other in waits[0]])
        if child.algorithm() is None:
            raise SystemExit(f"{algorithm_id} is not registered: is the provider up to date?")
        child.setChildId(child_id)
        child.setDescription(description)
        child.setPosition(QPointF(x, y))
        child.setSize(QSizeF(280, 30))
        for definition in child.algorithm().parameterDefinitions():  # the rest at its default, as the Modeler does
            if not definition.isDestination() and definition.name() not in parameter_sources:
                parameter_sources[definition.name()] = [Src.fromStaticValue(definition.defaultValue())]
        for name, parameter_source in parameter_sources.items():  # setParameterSources() segfaults in 3.22
            child.addParameterSources(name, parameter_source)
        model_outputs = {}
        for index, (name, output_description, *child_output) in enumerate(outputs):
            output = QgsProcessingModelOutput(name, output_description)
            output.setChildId(child_id)
            output.setChildOutputName(child_output[0] if child_output else name)
            output.setMandatory(False)
            output.setPosition(QPointF(x + 40 + 230 * index, y + 75))
            output.setSize(QSizeF(200, 30))
            model_outputs[name] = output
        child.setModelOutputs(model_outputs)
        model.addChildAlgorithm(child)


def finished(model):
    """The model's destination parameters made, and checked: every child validates."""
    model.updateDestinationParameters()
    problems = [f"{child_id}: {issue}" for child_id in model.childAlgorithms()
                for issue in model.validateChildAlgorithm(child_id)[1]]
    if problems:
        raise SystemExit("The model does not validate:\n" + "\n".join(problems))
    return model


def main() -> None:
    from qgis.core import QgsApplication

    app = QgsApplication([], False)
    app.initQgis()
    from seamless_inference import classFactory

    sys.path.append(QgsApplication.pkgDataPath() + "/python/plugins")  # QGIS's Processing: gdal:, native:
    from processing.core.Processing import Processing

    Processing.initialize()
    plugin = classFactory(None)
    plugin.initProcessing()
    TARGET.parent.mkdir(exist_ok=True)
    from qgis.core import QgsProcessingModelAlgorithm

    def loaded(path):
        model = QgsProcessingModelAlgorithm()
        return model.toVariant() if model.fromFile(str(path)) else None

    for target, model in ((TARGET, build()), (CLASS_POLYGONS, build_class_polygons())):
        fresh = target.with_suffix(".new.model3")
        model.toFile(str(fresh))
        if target.exists() and loaded(target) == loaded(fresh):
            fresh.unlink()  # Qt orders XML attributes anew each run: an unchanged model keeps its file
            print(f"{target.relative_to(ROOT)} is up to date")
            continue
        fresh.unlink()
        if not model.toFile(str(target)):
            raise SystemExit(f"Cannot write {target}")
        print(f"Wrote {target.relative_to(ROOT)}: inputs {[p.name() for p in model.parameterDefinitions()]}")
    sys.stdout.flush()
    os._exit(0)  # skip QGIS's teardown (nothing to clean up; it can crash on the provider's Python objects)


if __name__ == "__main__":
    main()
