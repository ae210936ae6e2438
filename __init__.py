"""Seamless Inference: a QGIS Processing provider for tiled TensorFlow inference without blocking artifacts.

This file stays readable by Python 3.6: on a Python older than MINIMUM_PYTHON, QGIS still loads the plugin, which
then says why it does nothing (unsupported_python.py) instead of failing with a traceback in the Plugin Manager.
"""

import sys

# The oldest Python the plugin's code runs on (vermin): annotations such as `str | None`, evaluated at import, and
# engine/planning.py's dataclass(kw_only=True) are 3.10's; an older Python parses them but stops at import with a
# TypeError. tests/test_publishable.py checks that no module needs newer syntax.
MINIMUM_PYTHON = (3, 10)


def classFactory(iface):  # noqa: N802 (QGIS API name)
    """Load the plugin class; iface is None under qgis_process, so it is not touched here. On a Python older than
    MINIMUM_PYTHON, a plugin that only says so, without importing the modules that Python cannot run. The
    profile's dependencies folder (the installer's) goes first on sys.path before anything imports numpy."""
    if sys.version_info < MINIMUM_PYTHON:
        from .unsupported_python import UnsupportedPython

        return UnsupportedPython(iface, MINIMUM_PYTHON)
    from .provider.profile import add_dependencies_folder

    add_dependencies_folder()  # what the installer put in this profile, found before the system's numpy
    from .plugin import SeamlessInferencePlugin

    return SeamlessInferencePlugin(iface)
