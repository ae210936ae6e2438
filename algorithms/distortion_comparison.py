"""Distortion comparison: RMSE of each cropping value against the exact result, and what each costs."""

import os

from qgis.core import (QgsCoordinateReferenceSystem, QgsFeature, QgsFeatureSink, QgsFields,
                       QgsProcessingContext, QgsProcessingException, QgsProcessingOutputNumber,
                       QgsProcessingParameterFeatureSink,
                       QgsProcessingParameterFileDestination, QgsProcessingParameterFolderDestination,
                       QgsProcessingParameterNumber, QgsProcessingParameterString)

from ..engine import Cancelled, DependencyMissing, EngineError, InferenceRequest
from ..engine.paths import remove_quietly
from .base import ModelAlgorithm, in_engine_thread
from .compat import DOUBLE, INTEGER, NO_GEOMETRY, field
from .styling import GrayStretch, keep_alive


class DistortionComparison(ModelAlgorithm):
    """For a receptive field R and crops c: tiled inference with efield R - 2c against the exact valid part."""

    REPORT_LABEL = "Distortion report"
    TABLE_LABEL = "RMSE per crop (table)"
    ICON = "distortion_comparison.svg"
    OUTPUT_NAMES = "OUTPUT_NAMES"
    RFIELD = "RFIELD"
    CROPS = "CROPS"
    TOLERANCE = "TOLERANCE"
    CHOSEN_CROP = "CHOSEN_CROP"
    REPORT = "REPORT"
    TABLE = "TABLE"
    ERROR_FOLDER = "ERROR_FOLDER"
    RMSE = "RMSE"
    FIELDS = {"extent": "SOURCE1", "error_folder": "ERROR_FOLDER"}

    def name(self) -> str:
        """Stable id: seamless:distortioncomparison."""
        return "distortioncomparison"

    def displayName(self) -> str:  # noqa: N802
        """Toolbox name."""
        return self.tr("Distortion comparison (cropping vs exactness vs cost)")

    def initAlgorithm(self, config=None):  # noqa: N802
        """The model and sources, R, the crops, the tolerance, the outputs."""
        self.add_model_and_sources()
        self.addParameter(self.explained(QgsProcessingParameterString(
            self.OUTPUT_NAMES, self.tr("Model output"), optional=True),
            "The raw (uncropped) output of the model's signature; empty = the model's first."))
        self.addParameter(self.explained(QgsProcessingParameterNumber(
            self.RFIELD, self.tr("Receptive field R"), INTEGER, 128, minValue=1),
            "In source 1 pixels; the other sources keep their ratio. Each crop c tiles by R - 2c."))
        self.addParameter(self.explained(QgsProcessingParameterString(
            self.CROPS, self.tr("Crops"), optional=True),
            "Comma separated, in output pixels a side; empty = 0 and every _cropN output that fits R."))
        self.addParameter(self.advanced(self.explained(QgsProcessingParameterNumber(
            self.TOLERANCE, self.tr("Error tolerance"), DOUBLE, 1e-4, minValue=0.0),
            "The report gives the share of pixels whose absolute error is above it.")))
        self.addParameter(self.explained(QgsProcessingParameterNumber(
            self.CHOSEN_CROP, self.tr("Chosen crop"), INTEGER, None, optional=True,
            minValue=0), "The crop whose RMSE is the RMSE output (a number, for the Graphical Modeler); empty = the "
            "measured crop (the exact reference's; added to the crops when it fits R). Otherwise one of Crops "
            "(with Crops empty, it is added to them)."))
        self.addParameter(QgsProcessingParameterFileDestination(
            self.REPORT, self.tr(self.REPORT_LABEL), self.tr("HTML files (*.html)")))
        self.addParameter(QgsProcessingParameterFeatureSink(
            self.TABLE, self.tr(self.TABLE_LABEL), optional=True, createByDefault=True))
        self.addParameter(self.explained(QgsProcessingParameterFolderDestination(
            self.ERROR_FOLDER, self.tr("Squared-error rasters"), optional=True, createByDefault=False),
            "A folder for one squared-error raster per crop (sum over bands), loaded stretched: the block grid "
            "shows."))
        self.addOutput(QgsProcessingOutputNumber(self.RMSE, self.tr("RMSE of the chosen crop")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        """Run every crop, compare, and write the report, the table and the error rasters."""
        from ..engine.distortion import default_crops, distortion_comparison  # the pipeline, when a run needs it
        from ..engine.reports import distortion_html

        self.check_outputs(parameters, context)
        try:
            sources = self.sources(parameters, context)
            names = [n.strip() for n in self.parameterAsString(parameters, self.OUTPUT_NAMES, context).split(",")
                     if n.strip()]
            request = InferenceRequest(self.parameterAsFile(parameters, self.MODEL, context), tuple(sources),
                                       output_names=tuple(names[:1]))
            rfield = self.parameterAsInt(parameters, self.RFIELD, context)
            text = self.parameterAsString(parameters, self.CROPS, context).strip()
            try:
                crops = [int(c) for c in text.replace(";", ",").split(",") if c.strip()] if text else \
                    in_engine_thread(default_crops, request.model_dir, rfield, names[0] if names else None)
            except ValueError as exc:
                raise EngineError(f"Crops must be whole numbers separated by commas (got {text!r}).",
                                  "crops") from exc
            measured = parameters.get(self.CHOSEN_CROP) in (None, "")
            if not measured:
                chosen = self.parameterAsInt(parameters, self.CHOSEN_CROP, context)
                if chosen not in crops and text:
                    raise QgsProcessingException(self.tr(
                        "Chosen crop {} is not among the crops {} given in Crops (CROPS): add it there, or leave "
                        "Chosen crop empty for the measured crop [parameter CHOSEN_CROP].").format(
                        chosen, ", ".join(map(str, crops))))
                if rfield - 2 * chosen < 1:
                    raise QgsProcessingException(self.tr(
                        "Chosen crop {} leaves no expression field of R = {} (R - 2 x crop); choose a crop below {} "
                        "[parameter CHOSEN_CROP].").format(chosen, rfield, (rfield + 1) // 2))
                if chosen not in crops:  # Crops left to its default: the chosen crop is measured too
                    crops = sorted(crops + [chosen])
            feedback.pushInfo(self.tr("Receptive field {}, crops {}.").format(rfield, crops))
            error_folder = None
            if parameters.get(self.ERROR_FOLDER):
                error_folder = self.parameterAsString(parameters, self.ERROR_FOLDER, context)
            report = self.parameterAsFileOutput(parameters, self.REPORT, context) or None
            made_folder = error_folder if error_folder and not os.path.isdir(error_folder) else None
            result = in_engine_thread(
                distortion_comparison, request, rfield, crops,
                self.parameterAsDouble(parameters, self.TOLERANCE, context), error_folder,
                progress=lambda f: feedback.setProgress(100.0 * f), is_canceled=feedback.isCanceled,
                log=feedback.pushInfo, with_measured=measured, report_path=report,
                report=lambda outcome: distortion_html(outcome, ["source 1"]))
        except (EngineError, Cancelled, DependencyMissing) as exc:
            raise self.fail(exc) from exc
        outputs = {}
        if report:
            outputs[self.REPORT] = report
        # what a table that cannot be written takes with it (the error folder last, when the sweep made it)
        written = [report] + [r.path for r in result.crops] + [made_folder]
        table = self.open_table(parameters, context, result.rfield, written)
        if table:
            outputs[self.TABLE] = self.fill_table(table, result, written)
            table = None  # the sink closes (its file complete) with its last reference, before the outputs load
        if error_folder:
            outputs[self.ERROR_FOLDER] = error_folder
            self.load_error_rasters(context, result)
        crop = result.measured_crop if measured else self.parameterAsInt(parameters, self.CHOSEN_CROP, context)
        chosen = result.result(crop)
        outputs[self.RMSE] = chosen.rmse if chosen else float("nan")
        if chosen is None:
            feedback.pushWarning(self.tr("Crop {} is not among {}{}: RMSE output is NaN.").format(
                crop, [r.crop for r in result.crops],
                self.tr(" (it leaves no expression field of R = {})").format(rfield) if measured else ""))
        else:
            feedback.pushInfo(self.tr("RMSE output: crop {}{}, {:.3g}.").format(
                crop, self.tr(" (the measured crop)") if measured else "", chosen.rmse))
        return outputs

    def open_table(self, parameters, context, rfield: int, written: list):
        """The table's sink, (sink, destination, fields), or None when not asked for. A sink QGIS cannot create
        (a full disk) is refused naming TABLE: its half-made file and the sweep's `written` files are removed."""
        fields = QgsFields()
        for name, kind in (("crop", int), ("efield", int), ("output", str), ("rmse", float), ("mae", float),
                           ("max_abs", float), ("share_above", float), ("cost", float), ("seconds", float),
                           ("s_per_mpx", float), ("pixels", int)):
            fields.append(field(name, kind))
        target = self.parameterAsOutputLayer(parameters, self.TABLE, context) or ""
        path = target.split("|")[0]
        existed = bool(path) and os.path.exists(path)
        try:
            sink, dest = self.parameterAsSink(parameters, self.TABLE, context, fields, NO_GEOMETRY,
                                              QgsCoordinateReferenceSystem())
        except QgsProcessingException as exc:
            discard(written + ([path, path + "-journal", path + "-wal", path + "-shm"] if path and not existed
                               else []))
            reason = str(exc).rsplit("failed: ", 1)[-1].rstrip(")")[:200]
            raise QgsProcessingException(self.tr(
                "Cannot create the table {} ({}); is the disk full? Free some space or choose another file "
                "[parameter TABLE].").format(path or target, reason)) from exc
        if sink is None:
            return None
        if context.willLoadLayerOnCompletion(dest):  # named for what it holds, in a model too (not "TABLE")
            details = context.layerToLoadOnCompletionDetails(dest)
            details.name = self.tr("RMSE per crop (R {})").format(rfield)
            details.forceName = True
        return sink, dest, fields

    def fill_table(self, table, result, written: list) -> str:
        """One feature (no geometry) per crop; a sink that refuses them (a full disk) removes the sweep's files."""
        sink, dest, fields = table
        for r in result.crops:
            feature = QgsFeature(fields)
            feature.setAttributes([r.crop, r.efield, r.output_name + (f" cropped {r.engine_crop}" if r.engine_crop
                                                                       else ""), r.rmse, r.mae, r.max_abs_error,
                                   r.share_above, r.theoretical_cost, r.seconds, r.seconds_per_mpx, r.pixels])
            if not sink.addFeature(feature, QgsFeatureSink.Flag.FastInsert):
                discard(written)
                raise QgsProcessingException(self.tr(
                    "Writing the table {} failed ({}); is the disk full? Free some space or choose another file "
                    "[parameter TABLE].").format(dest, sink.lastError() or "no reason given"))
        return dest

    def load_error_rasters(self, context, result) -> None:
        """Each squared-error raster into the project, stretched so the block grid shows."""
        for r in result.crops:
            if not r.path:
                continue
            name = self.tr("squared error, crop {} (R {})").format(r.crop, result.rfield)
            details = QgsProcessingContext.LayerDetails(name, context.project(), self.ERROR_FOLDER)
            details.forceName = True
            details.setPostProcessor(keep_alive(GrayStretch(1, 0.0, max(r.max_abs_error ** 2, 1e-12), name=name)))
            context.addLayerToLoadOnCompletion(r.path, details)


def discard(paths: list) -> None:
    """Remove the files (and an emptied folder) a run made, when a later output fails."""
    for path in paths:
        if path and os.path.isdir(path):
            try:
                os.rmdir(path)
            except OSError:
                pass
        elif path:
            remove_quietly(path)
