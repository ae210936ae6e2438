"""Model analysis: the receptive field and valid part of a SavedModel, read from its graph and measured."""

from qgis.core import (QgsProcessingOutputNumber, QgsProcessingOutputString, QgsProcessingParameterDefinition,
                       QgsProcessingParameterFile, QgsProcessingParameterFileDestination,
                       QgsProcessingParameterNumber, QgsProcessingParameterRasterLayer, QgsProcessingParameterString)

from ..engine import DependencyMissing, EngineError
from .base import MAX_SOURCES, SeamlessAlgorithm, in_engine_thread

SIZE_DEFAULTS = (128, 32, 0)  # the seed's PAN 128 / XS 32


def _advanced(parameter):
    parameter.setFlags(parameter.flags() | QgsProcessingParameterDefinition.FlagAdvanced)
    return parameter


class ModelAnalysis(SeamlessAlgorithm):
    """Valid-size table, measured valid window, and the crop / fields to feed the inference algorithms."""

    REPORT_LABEL = "Model analysis report"
    ICON = "model_analysis.svg"
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

    def shortHelpString(self) -> str:  # noqa: N802
        """Dialog help."""
        return self.tr(
            "<p>Tells which <code>_cropN</code> output and which expression field give a seamless mosaic, for "
            "any TensorFlow SavedModel and the sources' sizes (receptive fields; default the seed's PAN 128 / XS "
            "32).</p><p><b>From the graph</b>: every layer's kernel, stride, output size and <b>valid part</b> "
            "(the pixels computed without the zero padding of a tile's border): floor((x - k) / s) + 1 for a "
            "convolution or pooling, s x + s - k for a transposed convolution (TF \"same\"; otbtf's x s - k + 2 "
            "holds only for s = 2), the intersection of the operands for a skip sum, a shift for a crop. The "
            "exact window is propagated too: TF puts the odd padding pixel after the data, so the valid part is "
            "not centred ([31, 111] of 128 for the sample: (128 - 81) / 2 = 23.5 is not enough, a symmetric crop "
            "must be at least 31). Ops the analysis cannot read are named in the report.</p>"
            "<p><b>Measured</b>: the model runs on inputs that differ only outside a tile (random data, or the "
            "optional rasters, whose pixel-size ratios then apply); the output pixels that change are the ones "
            "a tile border pollutes, per side. The total stride is the smallest input shift that shifts the "
            "output identically.</p><p><b>Outputs</b>, for the Graphical Modeler: OUTPUT_NAME (the smallest "
            "exact <code>_cropN</code> output whose expression field keeps tiles on the total-stride lattice), "
            "CROP, RFIELD (source 1's size), EFIELD = RFIELD - 2 x CROP and TOTAL_STRIDE; connect them to the "
            "inference algorithms' output name, receptive and expression fields. The HTML report opens in the "
            "Results Viewer.</p><p><b>A SavedModel is code</b>: load only models you trust.</p>")

    def initAlgorithm(self, config=None):  # noqa: N802
        """The model, the sources' sizes (and optional rasters), the output to analyse, the report."""
        self.addParameter(QgsProcessingParameterFile(
            self.MODEL, self.tr("Model folder (TensorFlow SavedModel)"),
            behavior=QgsProcessingParameterFile.Folder))
        for index in range(1, MAX_SOURCES + 1):
            size = QgsProcessingParameterNumber(
                f"SOURCE{index}_SIZE",
                self.tr(f"Source {index}: size (receptive field, pixels of source {index}"
                        + ("; 0 = no such source)" if index > 1 else ")")),
                QgsProcessingParameterNumber.Integer, SIZE_DEFAULTS[index - 1], minValue=1 if index == 1 else 0)
            self.addParameter(size if index < 3 else _advanced(size))
        for index in range(1, MAX_SOURCES + 1):
            self.addParameter(_advanced(QgsProcessingParameterRasterLayer(
                f"SOURCE{index}", self.tr(f"Source {index}: raster (optional: its pixel size and data are used)"),
                optional=True)))
        self.addParameter(QgsProcessingParameterString(
            self.OUTPUT_NAME_BASE, self.tr("Output to analyse (empty = the model's first output that is not a "
                                           "_cropN)"), optional=True))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.REPORT, self.tr(self.REPORT_LABEL), self.tr("HTML files (*.html)")))
        self.addOutput(QgsProcessingOutputString(self.OUTPUT_NAME, self.tr("Output name to serve")))
        self.addOutput(QgsProcessingOutputNumber(self.CROP, self.tr("Crop (output pixels a side)")))
        self.addOutput(QgsProcessingOutputNumber(self.RFIELD, self.tr("Receptive field (source 1 pixels)")))
        self.addOutput(QgsProcessingOutputNumber(self.EFIELD, self.tr("Expression field (output pixels)")))
        self.addOutput(QgsProcessingOutputNumber(self.TOTAL_STRIDE, self.tr("Total stride (source 1 pixels)")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        """Parameters in, one engine analysis, the report and the numbers out."""
        from ..engine.receptive import analyse_model

        sizes = [self.parameterAsInt(parameters, f"SOURCE{i}_SIZE", context) for i in range(1, MAX_SOURCES + 1)]
        rasters = []
        for index in range(1, MAX_SOURCES + 1):
            layer = self.parameterAsRasterLayer(parameters, f"SOURCE{index}", context)
            rasters.append(layer.source().split("|")[0] if layer else None)
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
            handle.write(analysis.html())
        crop = analysis.recommended_crop()
        feedback.pushInfo(f"{analysis.output_name}: pixels lost to a tile border (left, top, right, bottom) "
                          f"{analysis.probe.lost}, total stride {analysis.total_stride} px; serve "
                          f"{analysis.recommended_output} (crop {crop}) with receptive field {analysis.rfield} "
                          f"and expression field {analysis.efield}.")
        for line in analysis.disagreements + (analysis.theory.issues if analysis.theory else ()):
            feedback.pushWarning(line)
        return {self.REPORT: report, self.OUTPUT_NAME: analysis.recommended_output, self.CROP: crop,
                self.RFIELD: analysis.rfield, self.EFIELD: analysis.efield,
                self.TOTAL_STRIDE: analysis.total_stride}
