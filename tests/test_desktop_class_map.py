"""The real QGIS desktop under Xvfb: a valid-part run from the algorithm dialog writes a class map, which lands in
the Layers panel with the sample's six named colours (issue 15's acceptance)."""

import numpy as np
import pytest
from conftest import SAMPLE
from desktop import NEEDS_DESKTOP, run_desktop
from osgeo import gdal

from seamless_inference.engine.class_map import read_class_table

pytestmark = [pytest.mark.slow, NEEDS_DESKTOP]

CLASSES_CSV = SAMPLE / "classes.csv"


def test_a_valid_part_run_from_the_dialog_puts_the_named_class_map_in_the_layers_panel(tmp_path):
    report, status, log = run_desktop(tmp_path, timeout=180, env_extra={"SEAMLESS_CLASSES": str(CLASSES_CSV)},
                                      script='''
        @step
        def open_dialog():
            import processing

            params = {"MODEL": os.environ["SEAMLESS_MODEL"], "SOURCE1": [os.environ["SEAMLESS_PAN"]],
                      "SOURCE2": [os.environ["SEAMLESS_XS"]],
                      "OUTPUT": os.path.join(os.environ["SEAMLESS_OUT"], "scores.tif"),
                      "CLASS_MAP": os.path.join(os.environ["SEAMLESS_OUT"], "classes.tif"),
                      "CLASS_TABLE": os.environ["SEAMLESS_CLASSES"]}
            dialog = processing.createAlgorithmDialog("seamless:validpartinference", params)
            dialog.show()
            dialog.runAlgorithm()  # the Run button: a background task
            wait(dialog)


        def wait(dialog, waited=0):
            if (QgsApplication.taskManager().countActiveTasks() or not look()) and waited < 240:
                QTimer.singleShot(250, lambda: wait(dialog, waited + 1))
                return
            report["log"] = dialog.textLog.toPlainText()[-3000:] if hasattr(dialog, "textLog") else ""
            dialog.close()
            finish()


        def look():
            """What the Layers panel shows: each layer's renderer and, for a paletted one, its legend."""
            from qgis.core import QgsPalettedRasterRenderer

            nodes = QgsProject.instance().layerTreeRoot().findLayers()
            report["tree"] = [node.name() for node in nodes]
            for node in nodes:
                layer = node.layer()
                renderer = layer.renderer()
                entry = {"source": layer.source(), "visible": node.isVisible(), "renderer": renderer.type()}
                if isinstance(renderer, QgsPalettedRasterRenderer):
                    entry["classes"] = [[c.value, c.label, c.color.name()] for c in renderer.classes()]
                    entry["legend"] = [item[0] for item in renderer.legendSymbologyItems()]
                    view = iface.layerTreeView()
                    model = view.layerTreeModel()
                    entry["legend nodes in the panel"] = [n.data(0) for n in model.layerLegendNodes(node)]
                else:
                    entry["band"] = renderer.usesBands()
                report[node.name()] = entry
            return len(nodes) == 2
    ''')
    name = "estimated_crop32 - valid part - class map"
    assert name in report["tree"], (report["tree"], report.get("log"))
    layer = report[name]
    expected = read_class_table(str(CLASSES_CSV))
    assert [tuple(c) for c in layer["classes"]] == [
        (e.value, e.name, "#{:02x}{:02x}{:02x}".format(*e.color[:3])) for e in expected]
    assert layer["renderer"] == "paletted" and layer["visible"]
    names = [e.name for e in expected]
    assert layer["legend"] == names  # six named colours, under the band's title in the panel:
    assert layer["legend nodes in the panel"] == ["Band 1: class (Palette)"] + names
    assert report["tree"][0] == name  # on top of the Layers panel
    scores = report["estimated_crop32 - valid part"]
    assert not scores["visible"]  # loaded unchecked: the class map is what shows
    assert scores["renderer"] == "singlebandgray" and scores["band"] == [5]  # Auto: the most contrasted band
    classes = gdal.Open(layer["source"]).ReadAsArray()
    assert np.array_equal(classes, np.argmax(gdal.Open(scores["source"]).ReadAsArray(), axis=0))
    assert status == 0, f"QGIS did not quit cleanly (exit status {status}):\n{log[-3000:]}"
