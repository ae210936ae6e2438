"""The real QGIS desktop under Xvfb: models/class_polygons.model3 opens in the Graphical Modeler and runs from there
(the dialog its Run button opens), and the class polygons land in the Layers panel styled by class, with the sample's
class names (issue 23's acceptance)."""

import pytest
from conftest import ROOT, SAMPLE
from desktop import NEEDS_DESKTOP, run_desktop

from seamless_inference.engine.class_map import read_class_table

pytestmark = [pytest.mark.slow, NEEDS_DESKTOP]

CLASSES_CSV = SAMPLE / "classes.csv"
MODEL3 = ROOT / "models" / "class_polygons.model3"


def test_the_model_runs_from_the_modeler_and_loads_styled_named_polygons(tmp_path):
    report, status, log = run_desktop(tmp_path, timeout=240, env_extra={
        "SEAMLESS_CLASSES": str(CLASSES_CSV), "SEAMLESS_MODEL3": str(MODEL3)}, script='''
        @step
        def open_modeler():
            from processing.modeler.ModelerDialog import ModelerDialog

            modeler = ModelerDialog.create()
            modeler.loadModel(os.environ["SEAMLESS_MODEL3"])
            modeler.show()
            model = modeler.model()
            report["children"] = sorted(model.childAlgorithms())
            report["valid"] = model.validate()[0]
            out = os.environ["SEAMLESS_OUT"]
            model.setDesignerParameterValues({
                "MODEL": os.environ["SEAMLESS_MODEL"], "SOURCE1": os.environ["SEAMLESS_PAN"],
                "SOURCE2": os.environ["SEAMLESS_XS"], "CLASS_TABLE": os.environ["SEAMLESS_CLASSES"], "MIN_AREA": 2.0,
                "polygons:POLYGONS": os.path.join(out, "polygons.gpkg"),
                "areas:AREAS": os.path.join(out, "areas.csv")})
            # what the Modeler's Run button opens: the model's own dialog, filled with the designer's values (its
            # modal exec() left out: QGIS 3.40 runs it from C++)
            from processing.gui.AlgorithmDialog import AlgorithmDialog

            dialog = AlgorithmDialog(model.create(), parent=modeler)
            dialog.setParameters(model.designerParameterValues())
            dialog.show()
            dialog.runAlgorithm()
            wait(dialog, modeler)


        def wait(dialog, modeler, waited=0):
            if (QgsApplication.taskManager().countActiveTasks() or not look()) and waited < 600:
                QTimer.singleShot(250, lambda: wait(dialog, modeler, waited + 1))
                return
            report["log"] = dialog.textLog.toPlainText()[-3000:] if hasattr(dialog, "textLog") else ""
            dialog.close()
            modeler.setDirty(False)
            modeler.close()
            finish()


        def look():
            """The layers loaded: each one's renderer and, for a categorised one, its categories."""
            from qgis.core import QgsCategorizedSymbolRenderer

            layers = list(QgsProject.instance().mapLayers().values())
            report["layers"] = {}
            for layer in layers:
                entry = {"source": layer.source(), "fields": [f.name() for f in layer.fields()]}
                renderer = layer.renderer() if layer.isSpatial() else None
                entry["renderer"] = renderer.type() if renderer else None
                if isinstance(renderer, QgsCategorizedSymbolRenderer):
                    entry["attribute"] = renderer.classAttribute()
                    entry["categories"] = [[c.value(), c.label(), c.symbol().color().name()]
                                           for c in renderer.categories()]
                report["layers"][layer.name()] = entry
            return len(layers) == 2
    ''')
    assert report["valid"] and len(report["children"]) == 12, report
    layers = report["layers"]
    assert sorted(layers) == ["AREAS", "POLYGONS"], (layers, report.get("log"))  # QGIS names them by output
    polygons = layers["POLYGONS"]
    assert polygons["renderer"] == "categorizedSymbol" and polygons["attribute"] == "class"
    expected = {e.value: (e.name, "#{:02x}{:02x}{:02x}".format(*e.color[:3])) for e in read_class_table(str(CLASSES_CSV))}
    assert {value: (label, color) for value, label, color in polygons["categories"]} == expected
    assert polygons["fields"] == ["fid", "class", "name", "area_m2", "area_ha"]
    assert layers["AREAS"]["fields"] == ["value", "name", "pixels", "area_m2", "area_ha", "share_pct"]
    assert status == 0, f"QGIS did not quit cleanly (exit status {status}):\n{log[-3000:]}"
