"""Where this QGIS profile keeps what the installer puts in (`<profile>/python/dependencies`, the QPIP plugin's
convention), and putting it first on sys.path when the plugin loads.

Imported by classFactory before any module of the plugin imports numpy: the folder's numpy (the one TensorFlow
was installed with) must be the one found first. Measured on QGIS 3.22, desktop and qgis_process alike: numpy is
not imported yet when classFactory runs.
"""

import importlib
import os
import sys


def dependencies_folder() -> str:
    """The folder of this QGIS profile that the installer fills: QgsApplication.qgisSettingsDirPath() +
    python/dependencies."""
    from qgis.core import QgsApplication

    return os.path.join(QgsApplication.qgisSettingsDirPath(), "python", "dependencies")


def add_dependencies_folder() -> str | None:
    """Put the profile's dependencies folder first on sys.path if it exists; return it (None when it does not)."""
    folder = dependencies_folder()
    if not os.path.isdir(folder):
        return None
    if folder not in sys.path:
        sys.path.insert(0, folder)
        importlib.invalidate_caches()
    return folder
