"""Raster comparison: the seed's distortion measure (vector RMSE) and per-band errors, over the intersection."""

import html

from qgis.core import (QgsProcessingException, QgsProcessingOutputNumber, QgsProcessingOutputString,
                       QgsProcessingParameterBand, QgsProcessingParameterFileDestination,
                       QgsProcessingParameterRasterDestination, QgsProcessingParameterRasterLayer)

from ..engine import Cancelled, EngineError
from ..engine.metrics import Comparison, compare_rasters
from .base import SeamlessAlgorithm
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

    def name(self) -> str:
        """Stable id: seamless:rastercomparison."""
        return "rastercomparison"

    def displayName(self) -> str:  # noqa: N802 (QGIS API name)
        """Toolbox name."""
        return self.tr("Raster comparison (RMSE)")

    def shortHelpString(self) -> str:  # noqa: N802
        """Dialog help."""
        return self.tr(
            "<p>Measures how much an <b>image</b> differs from a <b>reference</b>, e.g. the artifact-prone output "
            "against the valid part, as the OTBTF tutorial's distortion comparison does.</p>"
            "<p>Only the <b>geographic intersection</b> of the two footprints is compared: OTBTF's artifact-prone "
            "and valid-part outputs are shifted by 32 pixels, so comparing by pixel index would be wrong. Both "
            "rasters must share the CRS, the pixel size and the pixel grid; pixels that are no-data in either "
            "raster are ignored and counted.</p>"
            "<p>With d<sub>b</sub> = image - reference in band b and N pixels compared:<br>"
            "<b>RMSE</b> (the tutorial's value, a <b>vector RMSE</b>) = sqrt( 1/N &Sigma;<sub>pixels</sub> "
            "&Sigma;<sub>b</sub> d<sub>b</sub>&sup2; ), the RMSE of the error vector over the bands;<br>"
            "<b>per-band RMSE</b> = sqrt( 1/N &Sigma;<sub>pixels</sub> d<sub>b</sub>&sup2; ), whose squares sum to "
            "RMSE&sup2;;<br><b>MAE</b> = mean of |d<sub>b</sub>| over pixels and bands; <b>max |error|</b> = the "
            "largest |d<sub>b</sub>|. All are in the rasters' value units.</p>"
            "<p>This equals pyotb's ExtractROI(mode fit, on the reference) + BandMathX "
            "<code>(im1-im2)*(im1-im2)'</code> (a matrix product: the sum over bands) + "
            "ComputeImagesStatistics, square root of the mean, but works when the image does not cover the "
            "whole reference, and streams any raster size. The optional squared-error raster holds "
            "&Sigma;<sub>b</sub> d<sub>b</sub>&sup2; per pixel on the intersection's grid: it shows where the "
            "blocking artifacts are, i.e. where the artifact-prone output departs from the valid part.</p>"
            "<p>Why they differ: a model sees a <b>receptive field</b> (rfield) of input for each block of the "
            "<b>expression field</b> (efield) it outputs; with <code>padding=\"same\"</code> the pixels near a "
            "block border come from zero padding. Keeping the <b>valid part</b>, efield = rfield - 2 x crop with "
            "a crop at least the polluted width, removes the artifacts. <i>Model analysis</i> gives that crop "
            "for any model; <i>Distortion comparison</i> measures every crop at once.</p>")

    def initAlgorithm(self, config=None):  # noqa: N802
        """Two rasters, optional bands, optional squared-error raster and HTML report; the numbers out."""
        self.addParameter(QgsProcessingParameterRasterLayer(self.REFERENCE, self.tr("Reference raster")))
        self.addParameter(QgsProcessingParameterRasterLayer(self.IMAGE, self.tr("Image to compare")))
        self.addParameter(QgsProcessingParameterBand(
            self.BANDS, self.tr("Bands to compare (the same numbers in both; empty = all)"),
            parentLayerParameterName=self.REFERENCE, optional=True, allowMultiple=True))
        self.addParameter(QgsProcessingParameterRasterDestination(
            self.SQUARED_ERROR, self.tr("Squared error (sum over bands, per pixel)"), optional=True,
            createByDefault=False))
        # an .html file destination becomes a QgsProcessingOutputHtml: the dialog opens it in the Results Viewer
        self.addParameter(QgsProcessingParameterFileDestination(
            self.REPORT, self.tr(self.REPORT_LABEL), self.tr("HTML files (*.html)"), optional=True,
            createByDefault=True))
        self.addOutput(QgsProcessingOutputNumber(self.RMSE, self.tr("RMSE (vector RMSE over the bands)")))
        self.addOutput(QgsProcessingOutputString(self.BAND_RMSE, self.tr("Per-band RMSE (comma separated)")))
        self.addOutput(QgsProcessingOutputNumber(self.MAE, self.tr("Mean absolute error")))
        self.addOutput(QgsProcessingOutputNumber(self.MAX_ABS_ERROR, self.tr("Maximum absolute error")))
        self.addOutput(QgsProcessingOutputNumber(self.PIXELS, self.tr("Pixels compared")))

    def raster_path(self, parameters, key: str, context) -> str:
        """The file behind a raster layer parameter (it must be read by GDAL)."""
        layer = self.parameterAsRasterLayer(parameters, key, context)
        if layer is None:
            raise QgsProcessingException(self.tr(f"No raster given [parameter {key}]."))
        if layer.providerType() != "gdal":
            raise QgsProcessingException(self.tr(
                f"{layer.name()} is not a raster file read by GDAL (provider {layer.providerType()}); save it as "
                f"a GeoTIFF first [parameter {key}]."))
        return layer.source().split("|")[0]

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        """Parameters in, one engine comparison, the numbers (and the optional files) out."""
        reference = self.raster_path(parameters, self.REFERENCE, context)
        image = self.raster_path(parameters, self.IMAGE, context)
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
        if squared:
            load_styled(context, squared, self.tr("Squared error"), 1, 0.0, comparison.max_squared_error or 1.0)
            results[self.SQUARED_ERROR] = squared
        if report:
            try:
                with open(report, "w", encoding="utf-8") as handle:
                    handle.write(report_html(comparison))
            except OSError as exc:
                raise QgsProcessingException(f"Cannot write the report {report!r} ({exc}) [parameter REPORT].")
            results[self.REPORT] = report
        return results


def report_html(comparison: Comparison) -> str:
    """The comparison as a small HTML page: the seed's vector RMSE first, then a table per band."""
    rows = "".join(f"<tr><td>{band}</td><td>{rmse:.6g}</td></tr>"
                   for band, rmse in zip(comparison.bands, comparison.band_rmse))
    lines = "".join(f"<p>{html.escape(line)}</p>" for line in comparison.summary().splitlines())
    return (f"<html><head><meta charset='utf-8'><title>Raster comparison</title></head><body>"
            f"<h2>Raster comparison</h2><p><b>Vector RMSE: {comparison.vector_rmse:.6g}</b> over "
            f"{comparison.pixels} pixels</p>{lines}"
            f"<table border='1' cellpadding='3'><tr><th>Band</th><th>RMSE</th></tr>{rows}</table></body></html>")
