"""How results look in the canvas: one post-processor names and styles every loaded output layer."""

from qgis.core import (QgsCategorizedSymbolRenderer, QgsContrastEnhancement, QgsPalettedRasterRenderer,
                       QgsProcessingContext, QgsProcessingLayerPostProcessorInterface, QgsRasterLayer,
                       QgsRendererCategory, QgsSingleBandGrayRenderer, QgsSymbol, QgsVectorLayer)
from qgis.PyQt.QtGui import QColor

_ALIVE = set()  # sip deletes unreferenced Python post-processors before QGIS calls them: held until they ran


class GrayStretch(QgsProcessingLayerPostProcessorInterface):
    """Single-band gray on one band, stretched from `minimum` to `maximum` (0..1 for softmax outputs)."""

    def __init__(self, band: int, minimum: float = 0.0, maximum: float = 1.0, name: str | None = None,
                 under: str | None = None):
        super().__init__()
        self.band, self.minimum, self.maximum, self.name = band, minimum, maximum, name
        self.under = under  # a class map's path: this layer goes unchecked under it (the class map is what shows)

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
        enhancement.setContrastEnhancementAlgorithm(
            QgsContrastEnhancement.ContrastEnhancementAlgorithm.StretchToMinimumMaximum)
        enhancement.setMinimumValue(self.minimum)
        enhancement.setMaximumValue(self.maximum)
        renderer.setContrastEnhancement(enhancement)
        layer.setRenderer(renderer)
        if self.name:
            layer.setName(self.name)
        node = tree_node(layer)
        if node is not None and self.under:
            node.setItemVisibilityChecked(False)
            siblings = node.parent().children()
            above = [i for i, n in enumerate(siblings) if getattr(n, "layer", lambda: None)() is not None
                     and n.layer().source() == self.under]  # QGIS loads outputs in the order of their paths
            if above and above[0] > siblings.index(node):
                move(node, above[0] + 1)
        layer.triggerRepaint()


def tree_node(layer):
    """The layer's node in its project's Layers panel, or None."""
    project = layer.project()
    return project.layerTreeRoot().findLayer(layer.id()) if project is not None else None


def move(node, index: int) -> None:
    """Move a Layers panel node to `index` among its siblings (counted before the move)."""
    parent = node.parent()
    parent.insertChildNode(index, node.clone())
    parent.removeChildNode(node)


def load_styled(context: QgsProcessingContext, output: str, name: str, band: int, minimum: float = 0.0,
                maximum: float = 1.0, under: str | None = None) -> None:
    """If the output is to be loaded, give it `name` and the gray `minimum`..`maximum` style on `band`; with
    `under` (the class map's path) it is loaded unchecked, under the class map."""
    if not context.willLoadLayerOnCompletion(output):
        return
    details = context.layerToLoadOnCompletionDetails(output)
    details.name = name
    details.forceName = True
    details.setPostProcessor(keep_alive(GrayStretch(band, minimum, maximum, name=name, under=under)))


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
        node = tree_node(layer)
        if node is not None and node.parent().children().index(node) != 0:
            move(node, 0)  # on top of its group: QGIS loads outputs in the order of their paths
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


def categorised(layer, field: str, classes: list) -> QgsCategorizedSymbolRenderer:
    """A categorised renderer of `field` for the layer's geometry: one symbol of the class colour and the class
    name per class [(value, (r, g, b, a), label)]; no outline (patches of one pixel would be all outline)."""
    categories = []
    for value, color, label in classes:
        symbol = QgsSymbol.defaultSymbol(layer.geometryType())
        symbol.setColor(QColor(*color))
        if symbol.symbolLayerCount() and hasattr(symbol.symbolLayer(0), "setStrokeColor"):
            symbol.symbolLayer(0).setStrokeColor(QColor(*color))  # the patch's own colour: no visible outline
        categories.append(QgsRendererCategory(value, symbol, label))
    return QgsCategorizedSymbolRenderer(field, categories)


class Categorised(QgsProcessingLayerPostProcessorInterface):
    """Categorised renderer on a class value field (class polygons): the class colours and names."""

    def __init__(self, field: str, classes: list):
        super().__init__()
        self.field, self.classes = field, classes  # [(value, (r, g, b, a), label)]

    def postProcessLayer(self, layer, context, feedback):  # noqa: N802 (QGIS API name)
        """Apply the renderer (the main thread calls this once the layer is in the project)."""
        _ALIVE.discard(self)
        if not isinstance(layer, QgsVectorLayer) or not layer.isSpatial():
            return
        layer.setRenderer(categorised(layer, self.field, self.classes))
        layer.triggerRepaint()


def load_categorised(context: QgsProcessingContext, output: str, field: str, classes: list) -> None:
    """If the output is to be loaded, style it by class: `field`'s values in the colours and names of `classes`
    [(value, (r, g, b, a), label)]."""
    if context.willLoadLayerOnCompletion(output):
        context.layerToLoadOnCompletionDetails(output).setPostProcessor(keep_alive(Categorised(field, classes)))


def save_default_style(output: str, field: str, classes: list) -> bool:
    """Save the categorised style into a GeoPackage output as its default style (the layer_styles table), so the
    file opens styled in any QGIS, after qgis_process too; other formats are left as they are. True when saved."""
    path = output.split("|")[0]
    if not path.lower().endswith(".gpkg"):
        return False
    layer = QgsVectorLayer(output, "classes", "ogr")
    if not layer.isValid() or not layer.isSpatial():
        return False
    layer.setRenderer(categorised(layer, field, classes))
    error = layer.saveStyleToDatabase("classes", "class colours (Seamless Inference)", True, "")
    del layer  # release the file
    return not error


def keep_alive(post_processor):
    """Hold a reference to a post-processor until QGIS has called it (sip would delete it otherwise)."""
    _ALIVE.add(post_processor)
    return post_processor
