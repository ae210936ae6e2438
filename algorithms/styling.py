"""How results look in the canvas: one post-processor names and styles every loaded output layer."""

from qgis.core import (QgsContrastEnhancement, QgsPalettedRasterRenderer, QgsProcessingContext,
                       QgsProcessingLayerPostProcessorInterface, QgsRasterLayer, QgsSingleBandGrayRenderer)
from qgis.PyQt.QtGui import QColor

_ALIVE = set()  # sip deletes unreferenced Python post-processors before QGIS calls them: held until they ran


class GrayStretch(QgsProcessingLayerPostProcessorInterface):
    """Single-band gray on one band, stretched from `minimum` to `maximum` (0..1 for softmax outputs)."""

    def __init__(self, band: int, minimum: float = 0.0, maximum: float = 1.0, name: str | None = None):
        super().__init__()
        self.band, self.minimum, self.maximum, self.name = band, minimum, maximum, name

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS API name)
        """Apply the renderer (the main thread calls this once the layer is in the project)."""
        _ALIVE.discard(self)  # QGIS calls a post-processor once: release it (the frame holds it until we return)
        if not isinstance(layer, QgsRasterLayer):
            return
        band = self.band if 1 <= self.band <= layer.bandCount() else 1
        if band != self.band:
            feedback.pushWarning(f"Band {self.band} does not exist in {layer.name()}; showing band 1.")
        renderer = QgsSingleBandGrayRenderer(layer.dataProvider(), band)
        enhancement = QgsContrastEnhancement(layer.dataProvider().dataType(band))
        enhancement.setContrastEnhancementAlgorithm(QgsContrastEnhancement.StretchToMinimumMaximum)
        enhancement.setMinimumValue(self.minimum)
        enhancement.setMaximumValue(self.maximum)
        renderer.setContrastEnhancement(enhancement)
        layer.setRenderer(renderer)
        if self.name:
            layer.setName(self.name)
        layer.triggerRepaint()


def load_styled(context: QgsProcessingContext, output: str, name: str, band: int, minimum: float = 0.0,
                maximum: float = 1.0) -> None:
    """If the output is to be loaded, give it `name` and the gray `minimum`..`maximum` style on `band`."""
    if not context.willLoadLayerOnCompletion(output):
        return
    details = context.layerToLoadOnCompletionDetails(output)
    details.name = name
    details.forceName = True
    details.setPostProcessor(keep_alive(GrayStretch(band, minimum, maximum, name=name)))


class Palette(QgsProcessingLayerPostProcessorInterface):
    """Paletted renderer on band 1 (a class map): one colour and one name per class value."""

    def __init__(self, classes: list, name: str | None = None):
        super().__init__()
        self.classes, self.name = classes, name  # [(value, (r, g, b, a), label)]

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS API name)
        """Apply the renderer (the main thread calls this once the layer is in the project)."""
        _ALIVE.discard(self)
        if not isinstance(layer, QgsRasterLayer):
            return
        classes = [QgsPalettedRasterRenderer.Class(value, QColor(*color), label)
                   for value, color, label in self.classes]
        layer.setRenderer(QgsPalettedRasterRenderer(layer.dataProvider(), 1, classes))
        if self.name:
            layer.setName(self.name)
        layer.triggerRepaint()


def load_classes(context: QgsProcessingContext, output: str, name: str, classes: list) -> None:
    """If the class map is to be loaded, give it `name` and a paletted style of `classes`
    [(value, (r, g, b, a), label)]."""
    if not context.willLoadLayerOnCompletion(output):
        return
    details = context.layerToLoadOnCompletionDetails(output)
    details.name = name
    details.forceName = True
    details.setPostProcessor(keep_alive(Palette(classes, name=name)))


def keep_alive(post_processor):
    """Hold a reference to a post-processor until QGIS has called it (sip would delete it otherwise)."""
    _ALIVE.add(post_processor)
    return post_processor
