"""The `seamless` Processing provider: it only lists the algorithms (ids are a stable public API)."""

import os

from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from ..algorithms.artifact_prone_inference import ArtifactProneInference
from ..algorithms.class_names import ClassNames
from ..algorithms.distortion_comparison import DistortionComparison
from ..algorithms.install_dependencies import InstallDependencies
from ..algorithms.model_analysis import ModelAnalysis
from ..algorithms.raster_comparison import RasterComparison
from ..algorithms.valid_part_inference import ValidPartInference

ICONS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "icons")


def plugin_version() -> str:
    """The version in metadata.txt."""
    path = os.path.join(os.path.dirname(ICONS), "metadata.txt")
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            if line.startswith("version="):
                return line.split("=", 1)[1].strip()
    return ""


class SeamlessProvider(QgsProcessingProvider):
    """Seamless Inference: OTBTF-style TensorFlow inference without blocking artifacts."""

    ALGORITHMS = (ArtifactProneInference, ValidPartInference, DistortionComparison, RasterComparison, ModelAnalysis,
                  InstallDependencies, ClassNames)

    def id(self) -> str:  # noqa: A003 (QGIS API name)
        """Stable id: .model3 files and scripts name algorithms `seamless:<name>`."""
        return "seamless"

    def name(self) -> str:
        """Name shown in the Toolbox."""
        return "Seamless Inference"

    def longName(self) -> str:  # noqa: N802
        """Name with version."""
        return f"Seamless Inference {plugin_version()}"

    def icon(self) -> QIcon:
        """Provider icon."""
        return QIcon(os.path.join(ICONS, "seamless.svg"))

    def versionInfo(self) -> str:  # noqa: N802
        """Plugin version, shown in the Processing options."""
        return plugin_version()

    def supportedOutputRasterLayerExtensions(self) -> list:  # noqa: N802
        """GeoTIFF only: the dialogs' file pickers offer what the engine writes (other extensions are refused)."""
        return ["tif", "tiff"]

    def loadAlgorithms(self) -> None:  # noqa: N802
        """New instances every time (re-adding stored instances crashes sip)."""
        for algorithm in self.ALGORITHMS:
            self.addAlgorithm(algorithm())
