"""Install dependencies: TensorFlow for the Python QGIS runs, into this QGIS profile's own folder (Install, Status,
Remove), from the Toolbox, a script or qgis_process."""

from qgis.core import (QgsProcessingException, QgsProcessingOutputBoolean, QgsProcessingOutputString,
                       QgsProcessingParameterEnum)

from ..engine import Cancelled, DependencyMissing
from ..engine.installer import InstallFailed, install, module_in_use, remove, requirements, status_lines
from ..provider.profile import dependencies_folder
from .base import SeamlessAlgorithm


class InstallDependencies(SeamlessAlgorithm):
    """pip, run by QGIS's own Python, into <profile>/python/dependencies; or what is there; or its removal."""

    ICON = "install_dependencies.svg"
    MODE = "MODE"
    FOLDER = "FOLDER"
    TENSORFLOW = "TENSORFLOW"
    NUMPY = "NUMPY"
    RESTART = "RESTART"
    MODES = ("Install", "Status", "Remove")

    def name(self) -> str:
        """Stable id: seamless:installdependencies."""
        return "installdependencies"

    def displayName(self) -> str:  # noqa: N802
        """Toolbox name."""
        return self.tr("Install dependencies (TensorFlow)")

    def initAlgorithm(self, config=None):  # noqa: N802
        """The mode; the folder, the TensorFlow and numpy in use and whether to restart, out."""
        self.addParameter(self.explained(QgsProcessingParameterEnum(
            self.MODE, self.tr("Mode"), [self.tr(m) for m in self.MODES], defaultValue=0),
            "Install: pip installs TensorFlow into this profile's python/dependencies folder. Status: what is "
            "installed there, and which TensorFlow and numpy the plugin would use. Remove: delete that folder."))
        self.addOutput(QgsProcessingOutputString(self.FOLDER, self.tr("Dependencies folder")))
        self.addOutput(QgsProcessingOutputString(self.TENSORFLOW, self.tr("TensorFlow version in use")))
        self.addOutput(QgsProcessingOutputString(self.NUMPY, self.tr("numpy version in use")))
        self.addOutput(QgsProcessingOutputBoolean(self.RESTART, self.tr("QGIS must restart")))

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        """Install, report or remove; a QgsProcessingException with the cause and the fix when pip fails."""
        mode = self.MODES[self.parameterAsEnum(parameters, self.MODE, context)]
        folder = dependencies_folder()
        restart = ""
        try:
            if mode == "Install":
                result = install(folder, progress=lambda f: feedback.setProgress(100.0 * f),
                                 is_canceled=feedback.isCanceled, log_info=feedback.pushInfo,
                                 requirement=requirements())
                feedback.pushInfo(self.tr("Installed {} packages into {}.").format(len(result.packages), folder))
                restart = result.restart
            elif mode == "Remove":
                restart = remove(folder)
                feedback.pushInfo(self.tr("Removed {}.").format(folder))
        except Cancelled as exc:
            raise QgsProcessingException(self.tr("Cancelled: pip was stopped and {} is as it was.")
                                         .format(folder)) from exc
        except InstallFailed as exc:
            if exc.tail:
                feedback.reportError(self.tr("pip's last lines:") + "\n" + exc.tail, False)
            raise QgsProcessingException(str(exc)) from exc
        except (DependencyMissing, OSError) as exc:
            raise QgsProcessingException(self.tr("{} Nothing was changed in {}.").format(exc, folder)) from exc
        for line in status_lines(folder):
            feedback.pushInfo(line)
        if restart:
            feedback.pushWarning(self.tr("Restart QGIS before running the algorithms: {}.").format(restart))
        elif mode == "Install":
            feedback.pushInfo(self.tr("The algorithms can run now, without restarting QGIS."))
        return {self.FOLDER: folder, self.TENSORFLOW: module_in_use("tensorflow")[0],
                self.NUMPY: module_in_use("numpy")[0], self.RESTART: bool(restart)}
