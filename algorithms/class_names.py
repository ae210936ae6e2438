"""Class names: the step of the class polygons model that no QGIS algorithm does, naming and colouring class values.

Polygons from gdal:polygonize and area tables from native:rasterlayeruniquevaluesreport carry class values only;
this copies their features with a `name` field after the value field, from the class table (the class map's own,
or a file), and styles polygons on load as a categorised renderer of the class colours (also saved as the
GeoPackage's default style, so the file opens styled anywhere later).
"""

import os

from qgis.core import (QgsFeature, QgsFeatureRequest, QgsFeatureSink, QgsFields, QgsProcessingException,
                       QgsProcessingParameterFeatureSink, QgsProcessingParameterFeatureSource,
                       QgsProcessingParameterField, QgsProcessingParameterFile, QgsProcessingParameterRasterLayer)

from ..engine import EngineError
from ..engine.class_names import class_entries, entry_of
from .base import SeamlessAlgorithm, layer_path
from .compat import NO_GEOMETRY, SKIP_GEOMETRY_CHECKS, VECTOR_ANY, field
from .styling import load_categorised, save_default_style


class ClassNames(SeamlessAlgorithm):
    """Copies features (polygons or table rows) adding the name of their class value; polygons styled by class."""

    ICON = "class_names.svg"
    INPUT = "INPUT"
    FIELD = "FIELD"
    CLASS_MAP = "CLASS_MAP"
    CLASS_TABLE = "CLASS_TABLE"
    OUTPUT = "OUTPUT"
    NAME_FIELD = "name"

    def name(self) -> str:
        """Stable id: seamless:classnames."""
        return "classnames"

    def displayName(self) -> str:  # noqa: N802 (QGIS API name)
        """Toolbox name."""
        return self.tr("Class names and colours (polygons, tables)")

    def initAlgorithm(self, config=None):  # noqa: N802
        """Features with a class value field, the class map and/or a class table; the named features out."""
        self.addParameter(self.explained(QgsProcessingParameterFeatureSource(
            self.INPUT, self.tr("Polygons or table with class values"), [VECTOR_ANY]),
            "E.g. gdal:polygonize's polygons of a class map, or native:rasterlayeruniquevaluesreport's table."))
        self.addParameter(self.explained(QgsProcessingParameterField(
            self.FIELD, self.tr("Class value field"), "class", self.INPUT),
            "The field holding the class values (the class map's pixel values)."))
        self.addParameter(self.explained(QgsProcessingParameterRasterLayer(
            self.CLASS_MAP, self.tr("Class map"), optional=True),
            "A class map written by the inference algorithms: its own class table (names and colours) is used."))
        self.addParameter(self.explained(QgsProcessingParameterFile(
            self.CLASS_TABLE, self.tr("Class table"), optional=True,
            fileFilter="Class tables (*.csv *.qml *.clr *.txt)"),
            "Names and colours: a CSV value,name,color, a QGIS paletted style (.qml) or a colour map (.clr); it "
            "takes precedence over the class map's own. Values no table names are 'class N'."))
        self.addParameter(QgsProcessingParameterFeatureSink(self.OUTPUT, self.tr("Named classes"), VECTOR_ANY))

    def write_failed(self, reason: str, target: str, existed: bool) -> QgsProcessingException:
        """The output could not be written: what was made of it removed (a file that was not there before, and
        GeoPackage's journals), and a message that names the parameter, short (OGR quotes its whole SQL)."""
        if not existed and os.path.isfile(target):
            for leftover in (target, target + "-journal", target + "-wal", target + "-shm"):
                if os.path.exists(leftover):
                    os.remove(leftover)
        full = any(k in reason for k in ("disk is full", "No space left", "ENOSPC"))
        said = "database or disk is full" if full else (reason.splitlines() or [""])[0][:300]
        return QgsProcessingException(self.tr("Writing {} failed ({}){} [parameter OUTPUT].").format(
            target, said, self.tr("; is the disk full?") if full else ""))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        """Copy the features with the class name after the value field; style polygons by class."""
        source = self.parameterAsSource(parameters, self.INPUT, context)
        if source is None:
            raise QgsProcessingException(self.tr("No features given [parameter INPUT]."))
        value_field = self.parameterAsString(parameters, self.FIELD, context) or "class"
        index = source.fields().lookupField(value_field)
        if index < 0:
            raise QgsProcessingException(self.tr("The input has no field {!r}; fields: {} [parameter FIELD].").format(
                value_field, ", ".join(source.fields().names())))
        class_map = self.parameterAsRasterLayer(parameters, self.CLASS_MAP, context)
        try:
            entries = class_entries(layer_path(class_map, self.CLASS_MAP) if class_map else None,
                                    self.parameterAsFile(parameters, self.CLASS_TABLE, context) or None)
        except EngineError as exc:
            raise self.fail(exc) from exc
        named = source.fields().lookupField(self.NAME_FIELD)  # a `name` already there is filled anew, in place
        fields = QgsFields()
        for position, existing in enumerate(source.fields()):
            fields.append(existing)
            if position == index and named < 0:
                fields.append(field(self.NAME_FIELD, str))
        target = self.parameterAsOutputLayer(parameters, self.OUTPUT, context).split("|")[0]
        existed = os.path.exists(target)
        try:
            sink, destination = self.parameterAsSink(parameters, self.OUTPUT, context, fields, source.wkbType(),
                                                     source.sourceCrs())
        except QgsProcessingException as exc:  # e.g. OGR's "database or disk is full", with its whole SQL
            raise self.write_failed(str(exc), target, existed) from exc
        if sink is None:
            raise QgsProcessingException(self.invalidSinkError(parameters, self.OUTPUT))
        total, present, batch = source.featureCount() or 1, {}, []
        step = max(1, total // 100)  # progress every 1 %: a signal per feature costs more than the copy
        # geometries are copied untouched: GEOS validity checks on every patch took 9 in 10 of the time
        for number, feature in enumerate(source.getFeatures(QgsFeatureRequest(), SKIP_GEOMETRY_CHECKS)):
            attributes = feature.attributes()
            value = attributes[index]
            name = None
            if value is not None and value != "":
                entry = present.get(value)
                if entry is None:
                    entry = present[value] = entry_of(entries, value)
                name = entry.name
            out = QgsFeature(fields)
            out.setGeometry(feature.geometry())
            if named < 0:
                attributes = attributes[:index + 1] + [name] + attributes[index + 1:]
            else:
                attributes[named] = name
            out.setAttributes(attributes)
            batch.append(out)
            if number % step == 0:
                if feedback.isCanceled():
                    break
                if not sink.addFeatures(batch, QgsFeatureSink.Flag.FastInsert):
                    error = sink.lastError()
                    del sink
                    raise self.write_failed(error, target, existed)
                batch = []
                feedback.setProgress(100.0 * number / total)
        written = sink.addFeatures(batch, QgsFeatureSink.Flag.FastInsert)
        error = sink.lastError()
        del sink  # the file is complete (QGIS writes it when the sink goes)
        if not written:
            raise self.write_failed(error, target, existed)
        found = sorted({e.value: e for e in present.values()}.values(), key=lambda e: e.value)
        feedback.pushInfo(self.tr("Classes: {}").format(", ".join(f"{e.value} {e.name}" for e in found)))
        if source.wkbType() != NO_GEOMETRY:
            classes = [(e.value, e.color, e.name) for e in found]
            save_default_style(destination, value_field, classes)
            load_categorised(context, destination, value_field, classes)
        return {self.OUTPUT: destination}
