"""Raster comparison: the seed's distortion measure (vector RMSE) and per-band errors, over the intersection."""

import html

from qgis.core import (QgsProcessingOutputNumber, QgsProcessingOutputString,
                       QgsProcessingParameterBand, QgsProcessingParameterFileDestination,
                       QgsProcessingParameterRasterDestination, QgsProcessingParameterRasterLayer)

from ..engine import Cancelled, EngineError
from ..engine.paths import remove_quietly, write_text
from .base import SeamlessAlgorithm, layer_path
from .styling import load_styled


class RasterComparison(SeamlessAlgorithm):
    """Compares an image with a reference where they overlap: RMSE (vector and per band), MAE, max error."""

    REPORT_LABEL = "Raster comparison report"
    ICON = "raster_comparison.svg"
    REFERENCE = "REFERENCE"
    IMAGE = "IMAGE"
    BANDS = "BANDS"
    SQUARED_ERROR = "SQUARED_ERROR"
    REPORT = "REPORT"
    RMSE = "RMSE"
    BAND_RMSE = "BAND_RMSE"
    MAE = "MAE"
    MAX_ABS_ERROR = "MAX_ABS_ERROR"
    PIXELS = "PIXELS"
    FIELDS = {"squared_error_path": "SQUARED_ERROR"}

    def name(self) -> str:
        """Stable id: seamless:rastercomparison."""
        return "rastercomparison"

    def displayName(self) -> str:  # noqa: N802 (QGIS API name)
        """Toolbox name."""
        return self.tr("Raster comparison (RMSE)")

    def initAlgorithm(self, config=None):  # noqa: N802
        """Two rasters, optional bands, optional squared-error raster and HTML report; the numbers out."""
        self.addParameter(self.explained(QgsProcessingParameterRasterLayer(
            self.REFERENCE, self.tr("Reference raster")), "The reference, e.g. the valid-part output."))
        self.addParameter(self.explained(QgsProcessingParameterRasterLayer(
            self.IMAGE, self.tr("Image to compare")),
            "E.g. the artifact-prone output: the same CRS, pixel size and pixel grid as the reference."))
        self.addParameter(self.explained(QgsProcessingParameterBand(
            self.BANDS, self.tr("Bands"), parentLayerParameterName=self.REFERENCE, optional=True,
            allowMultiple=True), "The bands to compare, the same numbers in both rasters; empty = all."))
        self.addParameter(self.explained(QgsProcessingParameterRasterDestination(
            self.SQUARED_ERROR, self.tr("Squared error"), optional=True, createByDefault=False),
            "Per pixel, the sum over the bands of the squared difference: where the blocking artifacts are."))
        # an .html file destination becomes a QgsProcessingOutputHtml: the dialog opens it in the Results Viewer
        self.addParameter(QgsProcessingParameterFileDestination(
            self.REPORT, self.tr(self.REPORT_LABEL), self.tr("HTML files (*.html)"), optional=True,
            createByDefault=True))
        self.addOutput(QgsProcessingOutputNumber(self.RMSE, self.tr("RMSE (vector RMSE over the bands)")))
        self.addOutput(QgsProcessingOutputString(self.BAND_RMSE, self.tr("Per-band RMSE (comma separated)")))
        self.addOutput(QgsProcessingOutputNumber(self.MAE, self.tr("Mean absolute error")))
        self.addOutput(QgsProcessingOutputNumber(self.MAX_ABS_ERROR, self.tr("Maximum absolute error")))
        self.addOutput(QgsProcessingOutputNumber(self.PIXELS, self.tr("Pixels compared")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        """Parameters in, one engine comparison, the numbers (and the optional files) out."""
        from ..engine.metrics import compare_rasters  # the pipeline (numpy), when a run needs it

        self.check_outputs(parameters, context)
        reference = layer_path(self.parameterAsRasterLayer(parameters, self.REFERENCE, context), self.REFERENCE)
        image = layer_path(self.parameterAsRasterLayer(parameters, self.IMAGE, context), self.IMAGE)
        squared = self.parameterAsOutputLayer(parameters, self.SQUARED_ERROR, context) or None
        report = self.parameterAsFileOutput(parameters, self.REPORT, context) or None
        try:
            comparison = compare_rasters(reference, image, squared,
                                         self.parameterAsInts(parameters, self.BANDS, context) or None,
                                         progress=lambda f: feedback.setProgress(100.0 * f),
                                         is_canceled=feedback.isCanceled)
        except (EngineError, Cancelled) as exc:
            raise self.fail(exc) from exc
        for line in comparison.summary().splitlines():
            feedback.pushInfo(line)
        results = {self.RMSE: comparison.vector_rmse, self.MAE: comparison.mae,
                   self.MAX_ABS_ERROR: comparison.max_abs_error, self.PIXELS: comparison.pixels,
                   self.BAND_RMSE: ",".join(repr(v) for v in comparison.band_rmse)}
        if report:
            try:
                write_text(report, report_html(comparison), "report")  # a temporary name, renamed when complete
            except EngineError as exc:
                if squared:  # written before the report: a failed run leaves neither
                    remove_quietly(squared)
                raise self.fail(exc) from exc
            results[self.REPORT] = report
        if squared:
            load_styled(context, squared, self.tr("Squared error"), 1, 0.0, comparison.max_squared_error or 1.0)
            results[self.SQUARED_ERROR] = squared
        return results


def report_html(comparison) -> str:
    """The comparison (engine.metrics.Comparison) as a small HTML page: the seed's vector RMSE first, then a table
    per band."""
    rows = "".join(f"<tr><td>{band}</td><td>{rmse:.6g}</td></tr>"
                   for band, rmse in zip(comparison.bands, comparison.band_rmse))
    lines = "".join(f"<p>{html.escape(line)}</p>" for line in comparison.summary().splitlines())
    return (f"<html><head><meta charset='utf-8'><title>Raster comparison</title></head><body>"
            f"<h2>Raster comparison</h2><p><b>Vector RMSE: {comparison.vector_rmse:.6g}</b> over "
            f"{comparison.pixels} pixels</p>{lines}"
            f"<table border='1' cellpadding='3'><tr><th>Band</th><th>RMSE</th></tr>{rows}</table></body></html>")
