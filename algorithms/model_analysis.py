"""Model analysis: the receptive field and valid part of a SavedModel, read from its graph and measured."""

from qgis.core import (QgsProcessingOutputFile, QgsProcessingOutputNumber, QgsProcessingOutputString,
                       QgsProcessingParameterBoolean, QgsProcessingParameterFile, QgsProcessingParameterFileDestination,
                       QgsProcessingParameterMultipleLayers, QgsProcessingParameterNumber,
                       QgsProcessingParameterString)

from ..engine.card import write_card
from ..engine.classes import read_class_table
from ..engine.errors import DependencyMissing, EngineError
from ..engine.paths import write_text
from .base import MAX_SOURCES, MODEL_HELP, ModelAlgorithm, in_engine_thread, layer_path
from .compat import FOLDER, INTEGER, RASTER

SIZE_DEFAULTS = (128, 0, 0)  # 0: the ground of source 1 (the seed: PAN 128 -> XS 32)


class ModelAnalysis(ModelAlgorithm):
    """Valid-size table, measured valid window, and the crop / fields to feed the inference algorithms."""

    REPORT_LABEL = "Model analysis report"
    ICON = "model_analysis.svg"
    FIELDS = {**{f"sources[{i}].rfield": f"SOURCE{i + 1}_SIZE" for i in range(MAX_SOURCES)},
              "output_names": "OUTPUT_NAME_BASE"}
    OUTPUT_NAME_BASE = "OUTPUT_NAME_BASE"
    REPORT = "REPORT"
    CROP = "CROP"
    EFIELD = "EFIELD"
    RFIELD = "RFIELD"
    TOTAL_STRIDE = "TOTAL_STRIDE"
    OUTPUT_NAME = "OUTPUT_NAME"
    WRITE_CARD = "WRITE_CARD"
    CLASS_TABLE = "CLASS_TABLE"
    CARD = "CARD"

    def name(self) -> str:
        """Stable id: seamless:modelanalysis."""
        return "modelanalysis"

    def displayName(self) -> str:  # noqa: N802
        """Toolbox name."""
        return self.tr("Model analysis (receptive field and valid part)")

    def initAlgorithm(self, config=None):  # noqa: N802
        """The model, per source its optional rasters, size and placeholder, the output to analyse, the report."""
        self.addParameter(self.explained(QgsProcessingParameterFile(
            self.MODEL, self.tr("Model folder"), behavior=FOLDER), MODEL_HELP))
        for index in range(1, MAX_SOURCES + 1):
            raster = self.advanced(self.explained(QgsProcessingParameterMultipleLayers(
                self.source_key(index), self.tr("Source {}: raster(s)").format(index), RASTER,
                optional=True), "Optional, as in the inference algorithms: the pixel size of the first raster "
                "gives this source's pixel-size ratio to source 1 (give one for every source or for none)."))
            self.addParameter(raster)
            size = self.explained(QgsProcessingParameterNumber(
                self.source_key(index, "_SIZE"), self.tr("Source {}: size").format(index),
                INTEGER, SIZE_DEFAULTS[index - 1], minValue=1 if index == 1 else 0),
                "The receptive field analysed, in pixels of this source" + (
                    " (0 = the same ground size as source 1's: by the rasters' pixel sizes, else by the model's "
                    "input shapes)." if index > 1 else "."))
            self.addParameter(size if index < 3 else self.advanced(size))
            placeholder = self.explained(QgsProcessingParameterString(
                self.source_key(index, "_PLACEHOLDER"), self.tr("Source {}: placeholder").format(index),
                optional=True), "The model input this source feeds (empty = the inputs in alphabetical order).")
            self.addParameter(self.advanced(placeholder))
        output = QgsProcessingParameterString(self.OUTPUT_NAME_BASE, self.tr("Output to analyse"), optional=True)
        output.setHelp(self.tr("Empty = the model's first output that is not a _cropN."))
        self.addParameter(output)
        self.addParameter(QgsProcessingParameterFileDestination(
            self.REPORT, self.tr(self.REPORT_LABEL), self.tr("HTML files (*.html)")))
        self.addParameter(self.explained(QgsProcessingParameterBoolean(
            self.WRITE_CARD, self.tr("Write the model card"), defaultValue=False),
            "Write (or update) the model's card, <model>/assets.extra/seamless.json: the placeholders, sizes and "
            "output analysed, and this measurement with the model's fingerprint, so that inference needs only the "
            "model and the images and measures nothing on another machine. What an author wrote in it (bands, "
            "scaling, pixel sizes, classes) is kept."))
        self.addParameter(self.advanced(self.explained(QgsProcessingParameterFile(
            self.CLASS_TABLE, self.tr("Class table for the model card"), optional=True,
            fileFilter="Class tables (*.csv *.qml *.clr *.txt)"),
            "Classes to write into the model card (CSV value,name,color, .qml or .clr), with Write the model card.")))
        self.addOutput(QgsProcessingOutputFile(self.CARD, self.tr("Model card")))
        self.addOutput(QgsProcessingOutputString(self.OUTPUT_NAME, self.tr("Output name to serve")))
        self.addOutput(QgsProcessingOutputNumber(self.CROP, self.tr("Crop (output pixels a side)")))
        self.addOutput(QgsProcessingOutputNumber(self.RFIELD, self.tr("Receptive field (source 1 pixels)")))
        self.addOutput(QgsProcessingOutputNumber(self.EFIELD, self.tr("Expression field (output pixels)")))
        self.addOutput(QgsProcessingOutputNumber(self.TOTAL_STRIDE, self.tr("Total stride (source 1 pixels)")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        """Parameters in, one engine analysis, the report and the numbers out."""
        from ..engine.analysis import analyse_model  # the pipeline (numpy, the graph walk), when a run needs it
        from ..engine.reports import analysis_html

        self.check_outputs(parameters, context)
        sizes = [self.parameterAsInt(parameters, self.source_key(i, "_SIZE"), context)
                 for i in range(1, MAX_SOURCES + 1)]
        placeholders = [self.parameterAsString(parameters, self.source_key(i, "_PLACEHOLDER"), context).strip()
                        or None for i in range(1, MAX_SOURCES + 1)]
        rasters = []
        for index in range(1, MAX_SOURCES + 1):
            layers = self.parameterAsLayerList(parameters, self.source_key(index), context)
            rasters.append(layer_path(layers[0], self.source_key(index)) if layers else None)
        while rasters and rasters[-1] is None:
            rasters.pop()
        while placeholders and placeholders[-1] is None:
            placeholders.pop()
        name = self.parameterAsString(parameters, self.OUTPUT_NAME_BASE, context).strip()
        try:
            analysis = in_engine_thread(
                analyse_model, self.parameterAsFile(parameters, self.MODEL, context), sizes, rasters or None,
                name or None, placeholders=placeholders, progress=lambda f: feedback.setProgress(100.0 * f))
            card = None
            if self.parameterAsBoolean(parameters, self.WRITE_CARD, context):
                table_path = self.parameterAsFile(parameters, self.CLASS_TABLE, context)
                classes = read_class_table(table_path) if table_path else None
                card = write_card(analysis.model_dir, analysis, classes)  # validated, then renamed into place
                feedback.pushInfo(self.tr("Model card written: {}.").format(card))
            report = self.parameterAsFileOutput(parameters, self.REPORT, context)
            write_text(report, analysis_html(analysis), "report")  # a temporary name, renamed when complete
        except (EngineError, DependencyMissing) as exc:
            raise self.fail(exc) from exc
        for line in analysis.notes:
            feedback.pushInfo(line)
        feedback.pushInfo(self.tr("Sources: {}.").format(", ".join(
            f"{p} {s[0]}x{s[1]}" for p, s in zip(analysis.placeholders, analysis.sizes))))
        feedback.pushInfo(self.tr("{}: pixels lost to a tile border (left, top, right, bottom) {}, total stride {} px; "
                                  "serve {} (crop {}) with receptive field {} and expression field {}.").format(
            analysis.output_name, analysis.probe.lost, analysis.total_stride, analysis.recommended_output,
            analysis.recommended_crop(), analysis.rfield, analysis.efield))
        for line in analysis.disagreements + (analysis.theory.issues if analysis.theory else ()):
            feedback.pushWarning(line)
        served = analysis
        if analysis.working is not None:
            served = analysis.working
            feedback.pushWarning(self.tr(
                "No exact pixel fits a {} px tile of source 1: the model loses {} px on a side of it. Use {}: "
                "sizes {}, serve {} (crop {}), expression field {}. The outputs are for that size.").format(
                analysis.rfield, analysis.exact_crop, served.rfield,
                ", ".join(f"{p} {s[0]}" for p, s in zip(served.placeholders, served.sizes)),
                served.recommended_output, served.recommended_crop(), served.efield))
        elif analysis.efield == 0:
            feedback.pushWarning(self.tr(
                "No exact pixel fits a {} px tile of source 1 (the model loses {} px on a side of it), and no "
                "size up to 64 times larger gave one: EFIELD is 0.").format(analysis.rfield, analysis.exact_crop))
        return {self.REPORT: report, self.CARD: card, self.OUTPUT_NAME: served.recommended_output,
                self.CROP: served.recommended_crop(), self.RFIELD: served.rfield, self.EFIELD: served.efield,
                self.TOTAL_STRIDE: served.total_stride}
