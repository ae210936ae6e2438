"""The real QGIS desktop under Xvfb, its Python without TensorFlow: the notice's Details offer Install, which runs
the installer's dialog into the profile's folder; QGIS started again, the algorithms run and no notice shows."""

import os

import pytest
from desktop import NEEDS_DESKTOP, run_desktop
from osgeo import gdal

pytestmark = [pytest.mark.slow, NEEDS_DESKTOP]

NO_USER_SITE = {"PYTHONNOUSERSITE": "1"}  # QGIS's Python as an analyst's before installing TensorFlow


def test_the_notices_install_button_installs_then_the_algorithms_run(tmp_path):
    report, status, log = run_desktop(tmp_path, with_tensorflow=False, env_extra=NO_USER_SITE, timeout=1500,
                                      script='''
        import importlib.util
        from qgis.PyQt.QtWidgets import QApplication, QMessageBox, QPushButton, QTextEdit


        @step
        def click_install():
            report["tensorflow importable"] = importlib.util.find_spec("tensorflow") is not None
            items = iface.messageBar().items()
            report["message bar"] = [[w.title(), w.text()] for w in items]
            (details,) = [b for w in items for b in w.findChildren(QPushButton) if b.text() == "Details"]
            details.click()
            QApplication.processEvents()
            (box,) = [b for b in QApplication.topLevelWidgets() if isinstance(b, QMessageBox) and b.isVisible()]
            report["details"] = box.text()
            (install,) = [b for b in box.buttons() if b.text() == "Install"]
            install.click()  # opens the installer's dialog and runs it
            QApplication.processEvents()
            wait()


        def wait(waited=0, idle=0):
            """Until the installer's task has ended and its dialog has its results (or 2 s idle: it failed)."""
            from seamless_inference.provider import notices

            (dialog,) = notices._DIALOGS
            idle = 0 if QgsApplication.taskManager().countActiveTasks() else idle + 1
            if not dialog.results() and idle < 4 and waited < 2400:
                QTimer.singleShot(500, lambda: wait(waited + 1, idle))
                return
            report["results"] = {k: v for k, v in (dialog.results() or {}).items()}
            report["message bar after"] = [[w.title(), w.text()] for w in iface.messageBar().items()]
            report["log"] = "\\n".join(t.toPlainText() for t in dialog.findChildren(QTextEdit))
            dialog.close()
            finish()
    ''')
    assert not report["tensorflow importable"], "TensorFlow is importable in QGIS's own Python: nothing to install"
    assert len(report["message bar"]) == 1 and "Click Install" in report["details"], report["details"]
    folder = tmp_path / "profile" / "profiles" / "default" / "python" / "dependencies"
    results = report["results"]
    assert results.get("FOLDER") == str(folder), report["log"][-4000:]
    assert (folder / "tensorflow").is_dir() and (folder / "numpy").is_dir(), report["log"][-4000:]
    assert "Successfully installed" in report["log"] and "Traceback" not in report["log"]
    # QGIS 3.22 on Debian 12 has imported numpy 1.24 before the click: the log says to restart, once
    restarts = report["log"].count("Restart QGIS")
    assert restarts == (1 if results["RESTART"] else 0), report["log"][-3000:]
    # the notice has gone; in its place, one line says to restart when QGIS must
    restart = [["Seamless Inference", "TensorFlow is installed: restart QGIS to use it."]]
    ours = [item for item in report["message bar after"] if item[0] == "Seamless Inference"]  # QGIS's "Task
    assert ours == (restart if results["RESTART"] else []), report["message bar after"]  # complete" aside
    assert status == 0, f"exit status {status}:\n{log[-3000:]}"

    # QGIS started again in the same profile: no notice, and the Processing algorithms run
    report, status, log = run_desktop(tmp_path, with_tensorflow=False, env_extra=NO_USER_SITE, script='''
        @step
        def run():
            import importlib.util
            import processing

            report["message bar"] = [[w.title(), w.text()] for w in iface.messageBar().items()]
            report["tensorflow"] = importlib.util.find_spec("tensorflow").origin
            result = processing.runAndLoadResults("seamless:validpartinference", {
                "MODEL": os.environ["SEAMLESS_MODEL"], "SOURCE1": [os.environ["SEAMLESS_PAN"]],
                "SOURCE2": [os.environ["SEAMLESS_XS"]],
                "OUTPUT": os.path.join(os.environ["SEAMLESS_OUT"], "valid.tif")})
            report["output"] = result["OUTPUT"]
            report["tree"] = [node.name() for node in QgsProject.instance().layerTreeRoot().findLayers()]
            analysis = processing.run("seamless:modelanalysis", {
                "MODEL": os.environ["SEAMLESS_MODEL"],
                "REPORT": os.path.join(os.environ["SEAMLESS_OUT"], "analysis.html")})
            report["crop"] = analysis["CROP"]
            finish()
    ''')
    assert report["message bar"] == [], report["message bar"]
    assert report["tensorflow"].startswith(str(folder)), report["tensorflow"]
    assert report["tree"] == ["estimated_crop32 - valid part"], report["tree"]
    assert gdal.Open(report["output"]).RasterXSize > 0 and report["crop"] == 32
    assert os.path.exists(tmp_path / "analysis.html")
    assert status == 0, f"exit status {status}:\n{log[-3000:]}"
