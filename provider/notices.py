"""What the desktop user is told at plugin load: one message-bar notice when TensorFlow is missing."""

from ..engine.dependencies import install_hint, tensorflow_available


def notify_missing_tensorflow(iface) -> bool:
    """Show one warning in the message bar if TensorFlow is not importable; return True if shown."""
    if iface is None or tensorflow_available():
        return False
    from qgis.core import Qgis

    iface.messageBar().pushMessage(
        "Seamless Inference",
        "TensorFlow is not installed in QGIS's Python, so the algorithms cannot run yet. " + install_hint(),
        level=Qgis.Warning, duration=0)
    return True
