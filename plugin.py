"""The plugin object QGIS creates: it registers the Processing provider, in the desktop and in qgis_process."""

from qgis.core import QgsApplication

from .provider.provider import SeamlessProvider


class SeamlessInferencePlugin:
    """Registers the `seamless` Processing provider; has no GUI of its own beyond the Toolbox."""

    def __init__(self, iface):
        self.iface = iface
        self.provider = None

    def initProcessing(self):  # noqa: N802 (QGIS API name)
        """Called by qgis_process and QGIS Server, and by initGui in the desktop."""
        if self.provider is None:
            self.provider = SeamlessProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self):  # noqa: N802 (QGIS API name)
        """Desktop start-up: register the provider, and say once if TensorFlow is missing."""
        self.initProcessing()
        from .provider.notices import notify_missing_tensorflow

        notify_missing_tensorflow(self.iface)

    def unload(self):
        """Remove the provider when the plugin is disabled or reloaded."""
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
