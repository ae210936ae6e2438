"""The real QGIS desktop under Xvfb: the plugin loads, runs and styles its output, says how to install TensorFlow.

Each test starts `qgis` (Debian's desktop) under `xvfb-run` in a profile of its own with the plugin enabled,
runs a script in it (--code) that writes what it saw to a JSON file, and quits through File > Exit; the test
asserts on that file and on QGIS's exit status.
"""

import os
import re
import subprocess

import numpy as np
import pytest
from desktop import NEEDS_DESKTOP, run_desktop
from osgeo import gdal

pytestmark = [pytest.mark.slow, NEEDS_DESKTOP]

# what the notice must tell QGIS's Python to run, numpy held to the major version QGIS's GDAL uses (its {})
INSTALL_COMMAND = 'pip install --user --break-system-packages "tensorflow-cpu==2.21.*" "{}"'


def test_valid_part_runs_from_the_desktop_and_loads_styled(tmp_path):
    report, status, log = run_desktop(tmp_path, '''
        @step
        def run():
            import processing
            from qgis.core import QgsSingleBandGrayRenderer

            report["active plugins"] = list(qgis.utils.active_plugins)
            provider = QgsApplication.processingRegistry().providerById("seamless")
            report["algorithms"] = sorted(a.id() for a in provider.algorithms()) if provider else []
            result = processing.runAndLoadResults("seamless:validpartinference", {
                "MODEL": os.environ["SEAMLESS_MODEL"], "SOURCE1": [os.environ["SEAMLESS_PAN"]],
                "SOURCE2": [os.environ["SEAMLESS_XS"]],
                "OUTPUT": os.path.join(os.environ["SEAMLESS_OUT"], "valid.tif")})
            report["output"] = result["OUTPUT"]
            layers = QgsProject.instance().layerTreeRoot().findLayers()
            report["tree"] = [node.name() for node in layers]
            for node in layers:
                renderer = node.layer().renderer()
                gray = isinstance(renderer, QgsSingleBandGrayRenderer)
                enhancement = renderer.contrastEnhancement() if gray else None
                report[node.name()] = {
                    "source": node.layer().source(), "visible": node.isVisible(),
                    "renderer": renderer.type(), "band": renderer.usesBands(),
                    "stretch": [enhancement.minimumValue(), enhancement.maximumValue()] if enhancement else None}
            report["message bar"] = [[w.title(), w.text()] for w in iface.messageBar().items()]
            batch()


        def batch():
            """Every algorithm's batch dialog builds; two rows of valid-part inference run (main thread)."""
            from processing.gui.BatchAlgorithmDialog import BatchAlgorithmDialog
            from processing.tools import dataobjects
            from seamless_inference.algorithms.compat import SUPPORTS_BATCH

            registry = QgsApplication.processingRegistry()
            batch_flag = SUPPORTS_BATCH
            report["batch flags"] = {algorithm: bool(registry.algorithmById(algorithm).flags() & batch_flag)
                                     for algorithm in report["algorithms"]}
            for algorithm in report["algorithms"]:
                dialog = BatchAlgorithmDialog(registry.createAlgorithmById(algorithm), parent=iface.mainWindow())
                dialog.close()
            dialog = BatchAlgorithmDialog(registry.createAlgorithmById("seamless:validpartinference"),
                                          parent=iface.mainWindow())
            dialog.show()
            panel, context = dialog.mainWidget(), dataobjects.createContext()
            panel.addRow()  # a new dialog has one row
            values = {"MODEL": os.environ["SEAMLESS_MODEL"], "SOURCE1": [os.environ["SEAMLESS_PAN"]],
                      "SOURCE2": [os.environ["SEAMLESS_XS"]]}
            for row, tile in enumerate((0, 128)):
                for name, value in {**values, "TILE_SIZE": tile}.items():
                    panel.wrappers[row][panel.parameter_to_column[name]].setParameterValue(value, context)
                panel.tblParameters.cellWidget(row + 1, panel.parameter_to_column["OUTPUT"]).setValue(
                    os.path.join(os.environ["SEAMLESS_OUT"], f"batch{row}.tif"))
            dialog.runAlgorithm()
            out = os.environ["SEAMLESS_OUT"]
            report["batch outputs"] = [os.path.join(out, f"batch{row}.tif") for row in (0, 1)]
            report["batch log"] = dialog.textLog.toPlainText()[-2000:] if hasattr(dialog, "textLog") else ""
            dialog.close()
            finish()
    ''')
    assert "seamless_inference" in report["active plugins"]
    assert "seamless:validpartinference" in report["algorithms"] and len(report["algorithms"]) >= 5
    assert report["tree"][0] == "estimated_crop32 - valid part", report["tree"]
    layer = report["estimated_crop32 - valid part"]
    assert layer["source"] == report["output"] and layer["visible"]
    assert (layer["renderer"], layer["band"], layer["stretch"]) == ("singlebandgray", [5], [0.0, 1.0]), layer
    assert report["message bar"] == [], report["message bar"]  # no notice and no Python error
    assert all(report["batch flags"].values()), report["batch flags"]
    reference = gdal.Open(report["output"]).ReadAsArray()
    for output in report["batch outputs"]:  # two batch rows, Auto and 128 px tiles: the same pixels
        assert os.path.exists(output), report["batch log"]
        assert np.abs(gdal.Open(output).ReadAsArray() - reference).max() < 1e-5  # oneDNN: tile-size rounding
    assert status == 0, f"QGIS did not quit cleanly after the runs (exit status {status}):\n{log[-3000:]}"


def test_without_tensorflow_one_notice_gives_the_install_command(tmp_path):
    """Without TensorFlow: one short message-bar line (the bar cuts a text after two lines) whose Details name
    QGIS's own interpreter (sys.executable is QGIS, or what PATH finds) and give the install command once."""
    # QGIS's Python as an analyst's before installing TensorFlow: no venv, no user site-packages
    report, status, log = run_desktop(tmp_path, with_tensorflow=False, env_extra={"PYTHONNOUSERSITE": "1"},
                                      script='''
        @step
        def look():
            import importlib.util
            import sys
            from qgis.PyQt.QtWidgets import QApplication, QMessageBox, QPushButton

            report["tensorflow importable"] = importlib.util.find_spec("tensorflow") is not None
            report["active plugins"] = list(qgis.utils.active_plugins)
            provider = QgsApplication.processingRegistry().providerById("seamless")
            report["algorithms"] = sorted(a.id() for a in provider.algorithms()) if provider else []
            items = iface.messageBar().items()
            report["message bar"] = [[w.title(), w.text()] for w in items]
            report["python"] = [sys.exec_prefix, *sys.version_info[:2]]
            import numpy
            report["numpy"] = numpy.__version__
            buttons = [b for w in items for b in w.findChildren(QPushButton) if b.text() == "Details"]
            report["details buttons"] = len(buttons)
            if buttons:
                buttons[0].click()
                QApplication.processEvents()
                boxes = [b for b in QApplication.topLevelWidgets() if isinstance(b, QMessageBox) and b.isVisible()]
                report["details"] = [b.text() for b in boxes]
                for box in boxes:
                    box.close()
            finish()
    ''')
    assert not report["tensorflow importable"], "TensorFlow is importable in QGIS's own Python: no notice to check"
    assert "seamless_inference" in report["active plugins"]
    assert "seamless:validpartinference" in report["algorithms"] and len(report["algorithms"]) >= 5
    assert len(report["message bar"]) == 1, report["message bar"]
    title, text = report["message bar"][0]
    assert title == "Seamless Inference" and "TensorFlow" in text and len(text) < 100 and "pip" not in text, text
    assert report["details buttons"] == 1
    (details,) = report["details"]
    exec_prefix, major, minor = report["python"]
    # QGIS's own interpreter, by whatever name it runs under (/usr/bin/python3.11 on Debian 12, /usr/bin/python3
    # on Debian 13): a program in QGIS's prefix that is the same Python version
    python = re.search(r"(\S+) -m pip install", details).group(1)
    assert os.path.dirname(python) == os.path.join(exec_prefix, "bin") and os.access(python, os.X_OK), details
    version = subprocess.run([python, "-c", "import sys; print(*sys.version_info[:2])"], capture_output=True,
                             text=True, check=True).stdout.split()
    assert version == [str(major), str(minor)], (python, version)
    numpy_pin = "numpy<2" if report["numpy"].startswith("1.") else "numpy>=2,<3"
    assert details.count(f"{python} -m {INSTALL_COMMAND.format(numpy_pin)}") == 1, details
    assert details.count("pip install") == 1 and "shims" not in details, details
    assert "Traceback" not in log and "Traceback" not in details
    assert status == 0, f"exit status {status}:\n{log[-3000:]}"


DIALOGS = {"validpartinference": ("MODEL", "SOURCE1", "SOURCE2"),
           "artifactproneinference": ("MODEL", "SOURCE1", "SOURCE2"),
           "distortioncomparison": ("MODEL", "SOURCE1", "SOURCE2"),
           "modelanalysis": ("MODEL",), "rastercomparison": ("REFERENCE", "IMAGE"), "installdependencies": (),
           "classnames": ("CLASS_TABLE",)}


def test_every_dialog_fits_its_default_size_without_a_horizontal_scrollbar(tmp_path):
    """Each algorithm's dialog as the Toolbox opens it in a fresh profile: no horizontal scrollbar in the parameters
    panel (Advanced Parameters folded or not), the "..." buttons the tutorial tells users to click in view; the
    Toolbox tooltip is the algorithm's one-line short description."""
    report, status, log = run_desktop(tmp_path, checkout_plugin=True, script=f'''
        DIALOGS = {DIALOGS!r}


        @step
        def look():
            import processing
            from qgis.PyQt import sip
            from qgis.PyQt.QtCore import QModelIndex, QPoint, Qt
            from qgis.PyQt.QtWidgets import QApplication, QGroupBox, QScrollArea, QToolButton
            from qgis.gui import QgsCollapsibleGroupBoxBasic

            def settle():
                for _ in range(20):
                    QApplication.processEvents()

            def panel_state(dialog):
                (area,) = [a for a in dialog.mainWidget().findChildren(QScrollArea) if a.isVisible()]
                viewport = area.viewport()
                buttons = {{}}
                for name in DIALOGS[algorithm]:
                    widget = dialog.mainWidget().wrappers[name].wrappedWidget()
                    dots = [b for b in widget.findChildren(QToolButton) if b.isVisible() and b.text() in ("…", "...")]
                    buttons[name] = [[b.mapTo(viewport, QPoint(0, 0)).x(), b.width(), viewport.width()] for b in dots]
                return {{"horizontal scrollbar": area.horizontalScrollBar().isVisible(), "buttons": buttons,
                        "content width": area.widget().minimumSizeHint().width(), "viewport": viewport.width()}}

            registry = QgsApplication.processingRegistry()
            report["dialogs"] = {{}}
            for algorithm in DIALOGS:
                dialog = processing.createAlgorithmDialog("seamless:" + algorithm, {{}})
                dialog.show()
                settle()
                state = {{"size": [dialog.width(), dialog.height()], "folded": panel_state(dialog)}}
                dialog.grab().save(os.path.join(os.environ["SEAMLESS_OUT"], algorithm + ".png"))
                for box in dialog.findChildren(QGroupBox):
                    if box.metaObject().className() == "QgsCollapsibleGroupBox":  # Advanced Parameters
                        sip.cast(box, QgsCollapsibleGroupBoxBasic).setCollapsed(False)
                settle()
                state["unfolded"] = panel_state(dialog)
                report["dialogs"][algorithm] = state
                dialog.close()

            # the Toolbox's tooltip of each algorithm
            tree = qgis.utils.plugins["processing"].toolbox.algorithmTree
            report["tooltips"], report["short descriptions"] = {{}}, {{}}

            def walk(parent):
                for row in range(tree.model().rowCount(parent)):
                    index = tree.model().index(row, 0, parent)
                    algorithm = tree.algorithmForIndex(index)
                    if algorithm is not None and algorithm.provider().id() == "seamless":
                        report["tooltips"][algorithm.name()] = tree.model().data(index, Qt.ItemDataRole.ToolTipRole)
                        report["short descriptions"][algorithm.name()] = algorithm.shortDescription()
                    walk(index)

            walk(QModelIndex())
            finish()
    ''')
    assert sorted(report["dialogs"]) == sorted(DIALOGS)
    for algorithm, state in report["dialogs"].items():
        for fold in ("folded", "unfolded"):
            panel = state[fold]
            assert not panel["horizontal scrollbar"], (
                f"{algorithm} ({fold}, dialog {state['size']}): the parameters need {panel['content width']} px, "
                f"the panel shows {panel['viewport']} px; see {tmp_path / (algorithm + '.png')}")
            for name, buttons in panel["buttons"].items():
                assert len(buttons) == 1, f"{algorithm}: {name} has no single visible '...' button: {buttons}"
                (x, width, viewport) = buttons[0]
                assert 0 <= x and x + width <= viewport, f"{algorithm}: {name}'s '...' button is out of view: {x}"
    assert sorted(report["tooltips"]) == sorted(DIALOGS), report["tooltips"]
    for algorithm, tooltip in report["tooltips"].items():
        short = report["short descriptions"][algorithm]
        assert short and "\n" not in short and len(short) <= 120, (algorithm, short)
        assert short in tooltip, (algorithm, tooltip)
    assert status == 0, f"exit status {status}:\n{log[-3000:]}"


TOOLBOX_RUNS = ("validpartinference", "artifactproneinference", "distortioncomparison", "validpartinference",
                "distortioncomparison", "artifactproneinference")


def test_toolbox_runs_in_a_row_do_not_crash_qgis(tmp_path):
    """Six runs through the Toolbox's dialogs, as a user clicks Run: background tasks, one after the other."""
    report, status, log = run_desktop(tmp_path, timeout=150, script=f'''
        from qgis.PyQt.QtCore import QModelIndex
        RUNS = {list(TOOLBOX_RUNS)!r}
        report["done"] = []


        def toolbox_run(index):
            if index == len(RUNS):
                report["layers"] = sorted(layer.name() for layer in QgsProject.instance().mapLayers().values())
                finish()
                return
            algorithm = "seamless:" + RUNS[index]
            output = os.path.join(os.environ["SEAMLESS_OUT"], f"run{{index}}")
            params = {{"MODEL": os.environ["SEAMLESS_MODEL"], "SOURCE1": [os.environ["SEAMLESS_PAN"]],
                      "SOURCE2": [os.environ["SEAMLESS_XS"]]}}
            if "distortion" in algorithm:
                params["REPORT"] = output + ".html"
            else:
                params["OUTPUT"] = output + ".tif"
            toolbox = qgis.utils.plugins["processing"].toolbox
            tree = toolbox.algorithmTree

            def find(parent):
                for row in range(tree.model().rowCount(parent)):
                    child = tree.model().index(row, 0, parent)
                    found = tree.algorithmForIndex(child)
                    if found is not None and found.id() == algorithm:
                        return child
                    child = find(child)
                    if child is not None:
                        return child

            tree.setCurrentIndex(find(QModelIndex()))

            def press_run():
                from processing.gui.AlgorithmDialog import AlgorithmDialog

                dialog = [w for w in iface.mainWindow().findChildren(AlgorithmDialog) if w.isVisible()][0]
                dialog.setParameters(params)
                dialog.runAlgorithm()

                def wait():
                    written = os.path.exists(output + (".html" if "distortion" in algorithm else ".tif"))
                    if written and QgsApplication.taskManager().countActiveTasks() == 0:
                        timer.stop()
                        report["done"].append(algorithm)
                        QTimer.singleShot(300, dialog.close)
                timer = QTimer()
                timer.timeout.connect(wait)
                timer.start(200)
                press_run.timer = timer

            QTimer.singleShot(800, press_run)
            toolbox.executeAlgorithm()  # modal, as a double click in the Toolbox: returns when the dialog closes
            QTimer.singleShot(300, lambda: toolbox_run(index + 1))


        step(lambda: toolbox_run(0))
    ''')
    assert len(report["done"]) == len(TOOLBOX_RUNS), report["done"]
    assert "RMSE per crop (R 128)" in report["layers"], report["layers"]  # the distortion table, not "TABLE"
    assert status == 0, f"QGIS crashed (exit status {status}) after {report['done']}:\n{log[-3000:]}"
