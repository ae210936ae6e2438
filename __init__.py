"""Seamless Inference: a QGIS Processing provider for tiled TensorFlow inference without blocking artifacts."""


def classFactory(iface):  # noqa: N802 (QGIS API name)
    """Load the plugin class; iface is None under qgis_process, so it is not touched here."""
    from .plugin import SeamlessInferencePlugin

    return SeamlessInferencePlugin(iface)
