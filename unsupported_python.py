"""The plugin QGIS gets on a Python older than the plugin's code needs: it says so once and registers nothing.

Like __init__.py, this module stays readable by Python 3.6 and imports none of the plugin's other modules, which
an older Python cannot run: the user reads a sentence in the message bar, not a traceback in the Plugin Manager.
"""

import sys

TITLE = "Seamless Inference"


def message(minimum, running=None):
    """The sentence the user reads: the Python the plugin needs (a (major, minor) tuple) and the one QGIS runs."""
    running = tuple(running or sys.version_info)[:3]
    return ("{} needs Python {}.{} or newer, but this QGIS runs Python {}: its algorithms are not available. "
            "Use a QGIS whose Python is {}.{} or newer (Help > About shows it), such as QGIS 3.40 LTR or newer."
            ).format(TITLE, minimum[0], minimum[1], ".".join(str(part) for part in running), minimum[0], minimum[1])


class UnsupportedPython:
    """What classFactory returns on an older Python: initGui (desktop) and initProcessing (qgis_process) tell the
    user once, in the message bar when QGIS has one and always in the message log; no provider is registered."""

    def __init__(self, iface, minimum):
        self.iface = iface
        self.text = message(minimum)
        self.told = False

    def initGui(self):  # noqa: N802 (QGIS API name)
        """Desktop start-up: say why the plugin does nothing."""
        self.tell()

    def initProcessing(self):  # noqa: N802 (QGIS API name)
        """qgis_process start-up (it prints the message log): say why the algorithms are missing."""
        self.tell()

    def unload(self):
        """Nothing was registered, so nothing is removed."""

    def tell(self):
        """The message, once: in the message log, and in the message bar when there is an interface."""
        if self.told:
            return
        self.told = True
        from qgis.core import Qgis, QgsMessageLog

        critical = getattr(Qgis, "MessageLevel", Qgis).Critical
        QgsMessageLog.logMessage(self.text, TITLE, critical)
        if self.iface is not None:
            self.iface.messageBar().pushMessage(TITLE, self.text, critical, 0)
