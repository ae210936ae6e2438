"""QGIS 3.22 to 4.x in one place: the scoped enums where the running QGIS has them, the 3.22 names where not.

QGIS 3.30 moved the WKB types into `Qgis`, 3.36 the Processing enums (`Qgis.ProcessingSourceType`, ...), 3.38 made
`QgsField` take a `QMetaType.Type`; QGIS 4 (Qt 6) drops the old names. Every other module names the constants
below, so this is the only module that spells both (tests/test_qt6_forms.py refuses the old names elsewhere).
"""

from qgis.core import (Qgis, QgsField, QgsProcessing, QgsProcessingAlgorithm, QgsProcessingFeatureSource,
                       QgsProcessingParameterDefinition, QgsProcessingParameterFile, QgsProcessingParameterNumber,
                       QgsWkbTypes)
from qgis.PyQt.QtCore import QMetaType, QVariant


def _scoped(enum: str, member: str, before):
    """`Qgis.<enum>.<member>` where this QGIS has that enum, else `before()` (the QGIS 3.22 name, looked up only
    there: QGIS 4 no longer has it)."""
    scoped = getattr(Qgis, enum, None)
    return getattr(scoped, member) if scoped is not None else before()


RASTER = _scoped("ProcessingSourceType", "Raster", lambda: QgsProcessing.SourceType.TypeRaster)
VECTOR_ANY = _scoped("ProcessingSourceType", "Vector", lambda: QgsProcessing.SourceType.TypeVector)  # tables too
INTEGER = _scoped("ProcessingNumberParameterType", "Integer", lambda: QgsProcessingParameterNumber.Type.Integer)
DOUBLE = _scoped("ProcessingNumberParameterType", "Double", lambda: QgsProcessingParameterNumber.Type.Double)
FOLDER = _scoped("ProcessingFileParameterBehavior", "Folder", lambda: QgsProcessingParameterFile.Behavior.Folder)
ADVANCED = _scoped("ProcessingParameterFlag", "Advanced",
                   lambda: QgsProcessingParameterDefinition.Flag.FlagAdvanced)
SUPPORTS_BATCH = _scoped("ProcessingAlgorithmFlag", "SupportsBatch",
                         lambda: QgsProcessingAlgorithm.Flag.FlagSupportsBatch)
SKIP_GEOMETRY_CHECKS = _scoped("ProcessingFeatureSourceFlag", "SkipGeometryValidityChecks",
                               lambda: QgsProcessingFeatureSource.Flag.FlagSkipGeometryValidityChecks)
NO_GEOMETRY = _scoped("WkbType", "NoGeometry", lambda: QgsWkbTypes.Type.NoGeometry)

# QgsField(name, QMetaType.Type) exists from QGIS 3.38 (and is the only form on Qt 6); before, QVariant.Type
FIELD_TAKES_METATYPE = Qgis.QGIS_VERSION_INT >= 33800


def field(name: str, kind: type) -> QgsField:
    """A field holding Python `kind` values (int, float or str), typed the way the running QGIS takes it."""
    if FIELD_TAKES_METATYPE:
        return QgsField(name, {int: QMetaType.Type.Int, float: QMetaType.Type.Double,
                               str: QMetaType.Type.QString}[kind])
    return QgsField(name, {int: QVariant.Type.Int, float: QVariant.Type.Double, str: QVariant.Type.String}[kind])
