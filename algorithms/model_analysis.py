"""Model analysis: the receptive field and valid part of a SavedModel, read from its graph and measured."""

from qgis.core import (QgsProcessingOutputNumber, QgsProcessingOutputString, QgsProcessingParameterFile, QgsProcessingParameterFileDestination,
                       QgsProcessingParameterNumber, QgsProcessingParameterRasterLayer, QgsProcessingParameterString)

from ..engine import DependencyMissing, EngineError, analyse_model
from ..engine.reports import analysis_html
from .base import MAX_SOURCES, MODEL_HELP, SeamlessAlgorithm, in_engine_thread, layer_path

SIZE_DEFAULTS = (128, 32, 0)  # the seed's PAN 128 / XS 32


class ModelAnalysis(SeamlessAlgorithm):
    """Valid-size table, measured valid window, and the crop / fields to feed the inference algorithms."""

    REPORT_LABEL = "Model analysis report"
    ICON = "model_analysis.svg"
    FIELDS = {**{f"sources[{i}].rfield": f"SOURCE{i + 1}_SIZE" for i in range(MAX_SOURCES)},
              "output_names": "OUTPUT_NAME_BASE"}
    MODEL = "MODEL"
    OUTPUT_NAME_BASE = "OUTPUT_NAME_BASE"
    REPORT = "REPORT"
    CROP = "CROP"
    EFIELD = "EFIELD"
    RFIELD = "RFIELD"
    TOTAL_STRIDE = "TOTAL_STRIDE"
    OUTPUT_NAME = "OUTPUT_NAME"

    def name(self) -> str:
        """Stable id: seamless:modelanalysis."""
        return "modelanalysis"

    def displayName(self) -> str:  # noqa: N802
        """Toolbox name."""
        return self.tr("Model analysis (receptive field and valid part)")

    def initAlgorithm(self, config=None):  # noqa: N802
        """The model, the sources' sizes (and optional rasters), the output to analyse, the report."""
        self.addParameter(self.explained(QgsProcessingParameterFile(
            self.MODEL, self.tr("Model folder"), behavior=QgsProcessingParameterFile.Folder), MODEL_HELP))
        for index in range(1, MAX_SOURCES + 1):
            size = QgsProcessingParameterNumber(
                f"SOURCE{index}_SIZE", self.tr("Source {}: size").format(index),
                QgsProcessingParameterNumber.Integer, SIZE_DEFAULTS[index - 1], minValue=1 if index == 1 else 0)
            size.setHelp(self.tr("The receptive field, in pixels of source {}{}.").format(
                index, self.tr(" (0 = no such source)") if index > 1 else ""))
            self.addParameter(size if index < 3 else self.advanced(size))
        for index in range(1, MAX_SOURCES + 1):
            raster = QgsProcessingParameterRasterLayer(f"SOURCE{index}", self.tr("Source {}: raster").format(index),
                                                       optional=True)
            raster.setHelp(self.tr("Optional: its pixel size gives the sources' pixel ratios."))
            self.addParameter(self.advanced(raster))
        output = QgsProcessingParameterString(self.OUTPUT_NAME_BASE, self.tr("Output to analyse"), optional=True)
        output.setHelp(self.tr("Empty = the model's first output that is not a _cropN."))
        self.addParameter(output)
        self.addParameter(QgsProcessingParameterFileDestination(
            self.REPORT, self.tr(self.REPORT_LABEL), self.tr("HTML files (*.html)")))
        self.addOutput(QgsProcessingOutputString(self.OUTPUT_NAME, self.tr("Output name to serve")))
        self.addOutput(QgsProcessingOutputNumber(self.CROP, self.tr("Crop (output pixels a side)")))
        self.addOutput(QgsProcessingOutputNumber(self.RFIELD, self.tr("Receptive field (source 1 pixels)")))
        self.addOutput(QgsProcessingOutputNumber(self.EFIELD, self.tr("Expression field (output pixels)")))
        self.addOutput(QgsProcessingOutputNumber(self.TOTAL_STRIDE, self.tr("Total stride (source 1 pixels)")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        """Parameters in, one engine analysis, the report and the numbers out."""
        self.check_outputs(parameters, context)
        sizes = [self.parameterAsInt(parameters, f"SOURCE{i}_SIZE", context) for i in range(1, MAX_SOURCES + 1)]
        rasters = []
        for index in range(1, MAX_SOURCES + 1):
            layer = self.parameterAsRasterLayer(parameters, f"SOURCE{index}", context)
            rasters.append(layer_path(layer, f"SOURCE{index}") if layer else None)
        while rasters and rasters[-1] is None:
            rasters.pop()
        name = self.parameterAsString(parameters, self.OUTPUT_NAME_BASE, context).strip()
        try:
            analysis = in_engine_thread(analyse_model, self.parameterAsFile(parameters, self.MODEL, context),
                                        sizes, rasters or None, name or None)
        except (EngineError, DependencyMissing) as exc:
            raise self.fail(exc) from exc
        report = self.parameterAsFileOutput(parameters, self.REPORT, context)
        with open(report, "w", encoding="utf-8") as handle:
            handle.write(analysis_html(analysis))
        crop = analysis.recommended_crop()
        feedback.pushInfo(self.tr("{}: pixels lost to a tile border (left, top, right, bottom) {}, total stride {} px; "
                                  "serve {} (crop {}) with receptive field {} and expression field {}.").format(
            analysis.output_name, analysis.probe.lost, analysis.total_stride, analysis.recommended_output, crop,
            analysis.rfield, analysis.efield))
        for line in analysis.disagreements + (analysis.theory.issues if analysis.theory else ()):
            feedback.pushWarning(line)
        return {self.REPORT: report, self.OUTPUT_NAME: analysis.recommended_output, self.CROP: crop,
                self.RFIELD: analysis.rfield, self.EFIELD: analysis.efield,
                self.TOTAL_STRIDE: analysis.total_stride}
