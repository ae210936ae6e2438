"""Writes models/seed_workflow.model3: the whole seed as one Graphical Modeler model, built with the API.

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
    from qgis.core import (QgsProcessingModelAlgorithm, QgsProcessingModelChildAlgorithm,
                           QgsProcessingModelChildParameterSource as Src, QgsProcessingModelOutput,
                           QgsProcessingModelParameter, QgsProcessingParameterFile, QgsProcessingParameterNumber,
                           QgsProcessingParameterRasterLayer)
    from qgis.PyQt.QtCore import QPointF, QSizeF

    from seamless_inference.algorithms.compat import FOLDER, INTEGER

    model = QgsProcessingModelAlgorithm("Seed workflow", "Seamless Inference", "seamlessinference")
    # QGIS 3.40 builds 'Version2' models, whose outputs are named after their descriptions (validpart_output);
    # a Version1 model keeps child:OUTPUT (valid_part:OUTPUT), the names users' scripts pass, and every QGIS from
    # 3.22 on loads it with them; 3.22 knows no versions and ignores the key
    variant = model.toVariant()
    variant["internal_version"] = "Version1"
    model.loadVariant(variant)
    inputs = (
        (QgsProcessingParameterFile("MODEL", "Model folder", behavior=FOLDER), 120),
        (QgsProcessingParameterRasterLayer("SOURCE1", "Source 1 (PAN)"), 340),
        (QgsProcessingParameterRasterLayer("SOURCE2", "Source 2 (XS)"), 560),
        (QgsProcessingParameterNumber("SOURCE1_RFIELD", "Source 1 receptive field", INTEGER, 128, minValue=1), 780),
        (QgsProcessingParameterNumber("SOURCE2_RFIELD", "Source 2 receptive field", INTEGER, 32, minValue=0), 1000),
    )
    for definition, x in inputs:
        component = QgsProcessingModelParameter(definition.name())
        component.setPosition(QPointF(x, 60))
        component.setSize(QSizeF(200, 30))
        model.addModelParameter(definition, component)

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
    for child_id, algorithm_id, description, (x, y), parameter_sources, outputs in children:
        child = QgsProcessingModelChildAlgorithm(algorithm_id)
        if child.algorithm() is None:
            raise SystemExit(f"{algorithm_id} is not registered: is the provider up to date?")
        child.setChildId(child_id)
        child.setDescription(description)
        child.setPosition(QPointF(x, y))
        child.setSize(QSizeF(280, 30))
        for definition in child.algorithm().parameterDefinitions():  # the rest at its default, as the Modeler does
            if not definition.isDestination() and definition.name() not in parameter_sources:
                parameter_sources[definition.name()] = static(definition.defaultValue())
        for name, parameter_source in parameter_sources.items():  # setParameterSources() segfaults in 3.22
            child.addParameterSources(name, parameter_source)
        model_outputs = {}
        for index, (name, output_description) in enumerate(outputs):
            output = QgsProcessingModelOutput(name, output_description)
            output.setChildId(child_id)
            output.setChildOutputName(name)
            output.setMandatory(False)
            output.setPosition(QPointF(x + 40 + 230 * index, y + 75))
            output.setSize(QSizeF(200, 30))
            model_outputs[name] = output
        child.setModelOutputs(model_outputs)
        model.addChildAlgorithm(child)
    model.setParameterOrder(["MODEL", "SOURCE1", "SOURCE1_RFIELD", "SOURCE2", "SOURCE2_RFIELD"])
    model.setHelpContent(HELP)
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

    plugin = classFactory(None)
    plugin.initProcessing()
    model = build()
    TARGET.parent.mkdir(exist_ok=True)
    if not model.toFile(str(TARGET)):
        raise SystemExit(f"Cannot write {TARGET}")
    print(f"Wrote {TARGET.relative_to(ROOT)}: inputs {[p.name() for p in model.parameterDefinitions()]}")
    sys.stdout.flush()
    os._exit(0)  # skip QGIS's teardown (nothing to clean up; it can crash on the provider's Python objects)


if __name__ == "__main__":
    main()
