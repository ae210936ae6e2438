"""make screenshots: the README's pictures, taken from a real QGIS desktop under Xvfb.

    .venv/bin/python tools/screenshots.py [--out docs/images]

Starts `qgis` (the Debian desktop) under `xvfb-run` in a fresh profile of its own (.build/screenshots/profile),
with this checkout as an enabled plugin and the venv's TensorFlow, and runs this same file inside it (--code).
There it drives the GUI as a user would and grabs the widgets to PNG:

  toolbox.png              the Processing Toolbox, the Seamless Inference provider expanded
  valid_part_dialog.png    the Valid-part inference dialog at its default size, filled with the sample
  valid_part_log.png       the same dialog after the run (a background task, as the Run button does)
  canvas_both_outputs.png  the main window: artifact-prone output in the main map, valid part in a second map view
  canvas_class_map.png     the main window: the valid part's class map, the sample's six named classes in the panel
  distortion_report.png    the distortion comparison's HTML report (the Results Viewer entry, rendered)
  seed_workflow_model.png  models/seed_workflow.model3 open in the Graphical Modeler
  class_polygons_model.png models/class_polygons.model3 open in the Graphical Modeler
  class_polygons.png       the main window: that model's class polygons, styled by class, over the PAN image

`--only class_polygons` takes the last two only (the class polygons model run alone).

Artifact-prone inference and the distortion comparison run in the main thread (processing.runAndLoadResults
and processing.run, as from the Python console): a second TensorFlow run in QGIS's background task threads can
crash QGIS (tests/test_desktop.py::test_toolbox_runs_in_a_row_do_not_crash_qgis). The outputs of the runs go
to .build/screenshots/. A failing step is reported and QGIS quits; the command fails if a picture is missing
or QGIS does not exit cleanly (File > Exit; the exit status is printed).
"""

import json
import os
import signal
import subprocess
import sys
import time
import traceback
from pathlib import Path

# inside QGIS this file runs through exec() (qgis --code), without __file__
ROOT = Path(os.environ.get("SEAMLESS_ROOT") or Path(__file__).resolve().parents[1])
WORK = ROOT / ".build" / "screenshots"
SCREEN = (1600, 1000)
PICTURES = ("toolbox.png", "valid_part_dialog.png", "valid_part_log.png", "canvas_both_outputs.png",
            "canvas_class_map.png", "distortion_report.png", "seed_workflow_model.png", "class_polygons_model.png",
            "class_polygons.png")
ONLY = {"class_polygons": ("class_polygons_model.png", "class_polygons.png")}


# ---------------------------------------------------------------------------------------------------------------
# outside QGIS: set up a profile and start the desktop


def desktop_env(profile: Path) -> dict:
    """The environment of a desktop with this checkout enabled as a plugin and the venv's TensorFlow."""
    site = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-c",
                           "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    env = dict(os.environ, QGIS_CUSTOM_CONFIG_PATH=str(profile), QGIS_PLUGINPATH=str(ROOT / ".build" / "plugins"),
               PYTHONPATH=site, TF_CPP_MIN_LOG_LEVEL="2", QT_QPA_PLATFORM="xcb")
    env.pop("PYTHONHOME", None)
    return env


def write_profile(profile: Path) -> None:
    """A fresh profile: the plugin enabled, no question about temporary layers at exit, English UI."""
    ini = profile / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True, exist_ok=True)
    ini.write_text("[PythonPlugins]\nseamless_inference=true\n\n"
                   "[app]\naskToSaveMemoryLayers=false\n\n"
                   "[locale]\noverrideFlag=true\nuserLocale=en_US\n", encoding="utf-8")


def main() -> int:
    out = Path(sys.argv[sys.argv.index("--out") + 1]) if "--out" in sys.argv else ROOT / "docs" / "images"
    out = out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    if WORK.exists():
        import shutil

        shutil.rmtree(WORK)
    profile = WORK / "profile"
    write_profile(profile)
    (ROOT / ".build" / "plugins").mkdir(parents=True, exist_ok=True)
    if not (ROOT / ".build" / "plugins" / "seamless_inference").exists():
        (ROOT / ".build" / "plugins" / "seamless_inference").symlink_to(ROOT, target_is_directory=True)
    env = desktop_env(profile)
    only = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else ""
    pictures = ONLY[only] if only else PICTURES
    env.update(SEAMLESS_SCREENSHOTS_OUT=str(out), SEAMLESS_SCREENSHOTS_WORK=str(WORK), SEAMLESS_ROOT=str(ROOT),
               SEAMLESS_SCREENSHOTS_ONLY=only)
    report = WORK / "screenshots.json"
    command = ["xvfb-run", "-a", "-s", f"-screen 0 {SCREEN[0]}x{SCREEN[1]}x24", "qgis", "--nologo",
               "--noversioncheck", "--code", str(Path(__file__).resolve())]
    started = time.time()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                               start_new_session=True)
    try:
        log, _ = process.communicate(timeout=300)
        status = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # xvfb-run, Xvfb and QGIS, all started here
        log, status = process.communicate()[0], "timeout (300 s)"
    (WORK / "qgis.log").write_text(log, encoding="utf-8")
    steps = json.loads(report.read_text(encoding="utf-8")) if report.exists() else {}
    for name, outcome in steps.items():
        print(f"  {name}: {outcome}")
    print(f"QGIS desktop exit status: {status} after {time.time() - started:.0f} s (log: "
          f"{(WORK / 'qgis.log').relative_to(ROOT)})")
    missing = [p for p in pictures if not (out / p).exists() or (out / p).stat().st_mtime < started]
    if missing or status != 0:
        print(f"Missing pictures: {missing}" if missing else "QGIS did not exit cleanly.", file=sys.stderr)
        return 1
    print(f"Wrote {', '.join(pictures)} to {out}")
    return 0


# ---------------------------------------------------------------------------------------------------------------
# inside QGIS (run by --code): drive the GUI, step by step, from the event loop


def in_qgis() -> None:
    """Run the steps of `script()`: each yields seconds to wait, or a predicate to wait for (60 s at most)."""
    from qgis.PyQt.QtCore import QTimer
    from qgis.utils import iface

    out, work = Path(os.environ["SEAMLESS_SCREENSHOTS_OUT"]), Path(os.environ["SEAMLESS_SCREENSHOTS_WORK"])
    outcomes = {}
    only = os.environ.get("SEAMLESS_SCREENSHOTS_ONLY") == "class_polygons"
    steps = (class_polygons_script if only else script)(iface, out, work, outcomes)
    state = {"until": 0.0, "predicate": None, "deadline": 0.0}
    timer = QTimer()

    def finish(waited=0):
        """Write what happened, then File > Exit once no task runs (Exit would ask about running tasks)."""
        from qgis.core import QgsApplication, QgsProject

        timer.stop()
        if QgsApplication.taskManager().countActiveTasks() and waited < 30:
            QTimer.singleShot(500, lambda: finish(waited + 1))
            return
        (work / "screenshots.json").write_text(json.dumps(outcomes, indent=1), encoding="utf-8")
        QgsProject.instance().setDirty(False)
        iface.actionExit().trigger()

    def tick():
        now = time.monotonic()
        if state["predicate"] is not None:
            try:
                done = state["predicate"]()
            except Exception:  # noqa: BLE001 (reported, then the next step)
                done, outcomes["wait error"] = True, traceback.format_exc(limit=3)
            if not done and now < state["deadline"]:
                return
            if not done:
                outcomes.setdefault("timeouts", []).append(getattr(state["predicate"], "__doc__", "") or "wait")
            state["predicate"] = None
        if now < state["until"]:
            return
        try:
            wait = next(steps)
        except StopIteration:
            finish()
            return
        except Exception:  # noqa: BLE001
            outcomes["script error"] = traceback.format_exc()
            finish()
            return
        if callable(wait):
            state["predicate"], state["deadline"] = wait, now + 60
        else:
            state["until"] = now + float(wait)

    timer.timeout.connect(tick)
    timer.start(100)
    in_qgis.timer = timer  # keep the timer alive after this function returns


def report_view(path: Path, width: int = 1000):
    """An HTML report shown in a QTextBrowser (Qt 5 and Qt 6 alike: QtWebKit is gone in Qt 6), as tall as its
    page within 600..1300 px."""
    from qgis.PyQt.QtWidgets import QTextBrowser

    view = QTextBrowser()
    view.setHtml(path.read_text(encoding="utf-8"))
    view.resize(width, 900)
    view.document().setTextWidth(view.viewport().width())
    view.resize(width, min(1300, max(600, round(view.document().size().height()) + 10)))
    view.show()
    return view


def grab(widget, path: Path, outcomes: dict) -> None:
    """Save a widget as PNG and note its size."""
    pixmap = widget.grab()
    pixmap.save(str(path))
    outcomes[path.name] = f"{pixmap.width()}x{pixmap.height()}"


VALID_LAYER = "estimated_crop32 - valid part"
ARTIFACT_LAYER = "estimated - artifact-prone (128 px blocks)"
CLASS_LAYER = "estimated_crop32 - valid part - class map"


def run_dialog(dialog, what: str, done):
    """Press Run in an algorithm dialog (the run goes to a background task) and wait until `done()`."""
    from qgis.core import QgsApplication

    dialog.runAlgorithm()

    def finished():
        return bool(done()) and QgsApplication.taskManager().countActiveTasks() == 0

    finished.__doc__ = what
    yield finished
    yield 0.5


def script(iface, out: Path, work: Path, outcomes: dict):
    """The user's session: Toolbox, dialog, run, both outputs in the canvas, the reports, the model."""
    import processing
    import qgis.utils
    from qgis.core import QgsApplication, QgsMapThemeCollection, QgsProject, QgsRectangle
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtGui import QColor, QPainter, QPixmap
    from qgis.PyQt.QtWidgets import QAbstractItemView, QApplication, QDockWidget, QSplitter

    sample, model = ROOT / "sample" / "data", ROOT / "sample" / "model"
    project = QgsProject.instance()
    window = iface.mainWindow()
    window.setGeometry(0, 0, *SCREEN)
    window.show()
    yield 1.0
    processing_plugin = qgis.utils.plugins["processing"]
    results_dock = processing_plugin.resultsDock
    for name in ("Browser", "Browser2"):
        dock = window.findChild(QDockWidget, name)
        if dock:
            dock.hide()

    # 1. the Toolbox, the provider expanded and Valid-part inference selected
    toolbox = processing_plugin.toolbox
    toolbox.show()
    tree = toolbox.algorithmTree
    tree.collapseAll()
    items = tree.model()
    last = None
    for row in range(items.rowCount()):
        index = items.index(row, 0)
        if items.data(index) == "Seamless Inference":
            tree.setExpanded(index, True)
            for child in range(items.rowCount(index)):
                last = items.index(child, 0, index)
                algorithm = tree.algorithmForIndex(last)
                if algorithm and algorithm.id() == "seamless:validpartinference":
                    tree.setCurrentIndex(last)
    toolbox.setFloating(True)
    toolbox.resize(460, 520)
    yield 0.3
    if last is not None:
        tree.scrollTo(last, QAbstractItemView.ScrollHint.PositionAtBottom)
    yield 0.5
    grab(toolbox, out / "toolbox.png", outcomes)
    toolbox.setFloating(False)
    toolbox.hide()

    # 2. artifact-prone inference and the distortion comparison, as from the Python console (main thread)
    params = {"MODEL": str(model), "SOURCE1": [str(sample / "pan.tif")], "SOURCE2": [str(sample / "xs.tif")]}
    processing.runAndLoadResults("seamless:artifactproneinference", {
        **params, "DISPLAY_BAND": 5, "OUTPUT": str(work / "artifact.tif")})
    yield 0.5
    distortion = QgsApplication.processingRegistry().algorithmById("seamless:distortioncomparison")
    report = processing.run(distortion, {**params, "REPORT": str(work / "distortion.html")})["REPORT"]
    from processing.core.ProcessingResults import resultsList

    # what the algorithm dialog does with an HTML output
    resultsList.addResult(icon=distortion.icon(), name=distortion.outputDefinition("REPORT").description(),
                          timestamp=time.localtime(), result=report)
    yield 0.5

    # 3. the Valid-part inference dialog with the sample, then its log after the run (the Run button: a task).
    # The only run in a background task: a second TensorFlow run in QGIS's task threads can crash QGIS
    dialog = processing.createAlgorithmDialog("seamless:validpartinference", {
        **params, "DISPLAY_BAND": 5, "OUTPUT": str(work / "valid_part.tif"),
        "CLASS_MAP": str(work / "class_map.tif"), "CLASS_TABLE": str(ROOT / "sample" / "classes.csv")})
    dialog.show()  # at its default size, as a fresh profile opens it
    yield 1.0
    grab(dialog, out / "valid_part_dialog.png", outcomes)
    dialog.resize(1300, 800)  # wider for the log, whose lines are long
    yield 0.5
    splitter = dialog.findChild(QSplitter)
    if splitter:
        splitter.setSizes([820, 480])
    yield 0.5
    yield from run_dialog(dialog, "the valid part and its class map loaded",
                          lambda: project.mapLayersByName(VALID_LAYER) and project.mapLayersByName(CLASS_LAYER))
    grab(dialog, out / "valid_part_log.png", outcomes)
    dialog.close()
    del dialog

    # 4. the canvas: artifact-prone in the main map, the valid part in a second map view (a map theme)
    root = project.layerTreeRoot()
    valid, artifact = project.mapLayersByName(VALID_LAYER)[0], project.mapLayersByName(ARTIFACT_LAYER)[0]
    classes = project.mapLayersByName(CLASS_LAYER)[0]
    root.findLayer(classes.id()).setItemVisibilityChecked(False)  # its own picture, next
    for layer in (valid, artifact):
        root.findLayer(layer.id()).setItemVisibilityChecked(layer is valid)
    project.mapThemeCollection().insert("valid part", QgsMapThemeCollection.createThemeFromCurrentState(
        root, iface.layerTreeView().layerTreeModel()))
    for layer in (valid, artifact):
        root.findLayer(layer.id()).setItemVisibilityChecked(True)
    node = root.findLayer(artifact.id())  # on top: the main map shows the artifact-prone output
    root.insertChildNode(0, node.clone())
    root.removeChildNode(node)
    iface.layerTreeView().setCurrentLayer(artifact)
    results_dock.hide()
    view = iface.createNewMapCanvas("Valid part (second map view, theme 'valid part')")
    view.setTheme("valid part")
    dock = view.parent()
    while dock is not None and not isinstance(dock, QDockWidget):
        dock = dock.parent()
    if dock is not None:
        dock.setFloating(False)
        window.addDockWidget(Qt.DockWidgetArea.RightDockWidgetArea, dock)
        dock.show()
    yield 0.5
    layers_dock = window.findChild(QDockWidget, "Layers")
    if dock is not None and layers_dock is not None:
        window.resizeDocks([layers_dock, dock], [370, 620], Qt.Orientation.Horizontal)
    yield 0.5
    extent = QgsRectangle(artifact.extent())
    extent.scale(1.03)
    for canvas in (iface.mapCanvas(), view):
        canvas.setExtent(extent)
        canvas.refresh()
    yield 3.0
    grab(window, out / "canvas_both_outputs.png", outcomes)

    # 4b. the class map alone, on top, its six named colours in the Layers panel
    if dock is not None:
        dock.hide()
    for layer in (valid, artifact):
        root.findLayer(layer.id()).setItemVisibilityChecked(False)
    node = root.findLayer(classes.id())
    root.insertChildNode(0, node.clone())
    root.removeChildNode(node)
    node = root.findLayer(classes.id())
    node.setItemVisibilityChecked(True)
    node.setExpanded(True)
    iface.layerTreeView().setCurrentLayer(classes)
    iface.mapCanvas().setExtent(extent)
    iface.mapCanvas().refresh()
    yield 3.0
    grab(window, out / "canvas_class_map.png", outcomes)

    # 5. the distortion report: the Results Viewer's entry, and the page it opens
    results_dock.setFloating(True)
    results_dock.show()
    results_dock.resize(380, 900)
    web = report_view(work / "distortion.html")
    yield 0.5
    dock_picture, page = results_dock.grab(), web.grab()
    picture = QPixmap(dock_picture.width() + 12 + page.width(), max(dock_picture.height(), page.height()))
    picture.fill(QColor("white"))
    painter = QPainter(picture)
    painter.drawPixmap(0, 0, dock_picture)
    painter.fillRect(dock_picture.width() + 5, 0, 2, picture.height(), QColor("#999999"))
    painter.drawPixmap(dock_picture.width() + 12, 0, page)
    painter.end()
    picture.save(str(out / "distortion_report.png"))
    outcomes["distortion_report.png"] = f"{picture.width()}x{picture.height()}"
    web.close()
    results_dock.hide()

    # 6. the seed as one model in the Graphical Modeler
    from processing.modeler.ModelerDialog import ModelerDialog

    modeler = ModelerDialog.create()
    modeler.loadModel(str(ROOT / "models" / "seed_workflow.model3"))
    modeler.resize(1500, 860)
    modeler.show()
    yield 1.0
    modeler.view().fitInView(modeler.view().scene().itemsBoundingRect(), Qt.AspectRatioMode.KeepAspectRatio)
    yield 0.5
    grab(modeler, out / "seed_workflow_model.png", outcomes)
    invalid = [child.description() for child_id, child in modeler.model().childAlgorithms().items()
               if not modeler.model().validateChildAlgorithm(child_id)[0]]
    outcomes["model children that do not validate"] = invalid
    modeler.setDirty(False)
    modeler.close()
    outcomes["layers"] = [layer.name() for layer in root.findLayers()]
    yield from class_polygons_script(iface, out, work, outcomes)


def class_polygons_script(iface, out: Path, work: Path, outcomes: dict):
    """The class polygons model: open in the Graphical Modeler, then run (as from the Python console: the main
    thread) with its results loaded, the polygons over the PAN image."""
    import processing
    from processing.modeler.ModelerDialog import ModelerDialog
    from qgis.core import QgsApplication, QgsProcessingModelAlgorithm, QgsProject, QgsRasterLayer, QgsRectangle
    from qgis.PyQt.QtCore import Qt
    from qgis.PyQt.QtWidgets import QApplication, QDockWidget

    project = QgsProject.instance()
    project.removeAllMapLayers()
    window = iface.mainWindow()
    window.setGeometry(0, 0, *SCREEN)
    window.show()
    for name in ("Browser", "Browser2"):
        dock = window.findChild(QDockWidget, name)
        if dock:
            dock.hide()
    yield 1.0
    path = ROOT / "models" / "class_polygons.model3"
    modeler = ModelerDialog.create()
    modeler.loadModel(str(path))
    modeler.resize(1500, 900)
    modeler.show()
    yield 1.0
    modeler.view().fitInView(modeler.view().scene().itemsBoundingRect(), Qt.AspectRatioMode.KeepAspectRatio)
    yield 0.5
    grab(modeler, out / "class_polygons_model.png", outcomes)
    modeler.setDirty(False)
    modeler.close()

    model = QgsProcessingModelAlgorithm()
    model.fromFile(str(path))
    sample = ROOT / "sample"
    image = QgsRasterLayer(str(sample / "data" / "pan.tif"), "pan.tif")
    project.addMapLayer(image)
    processing.runAndLoadResults(model, {
        "MODEL": str(sample / "model"), "SOURCE1": str(sample / "data" / "pan.tif"),
        "SOURCE2": str(sample / "data" / "xs.tif"), "CLASS_TABLE": str(sample / "classes.csv"), "MIN_AREA": 2.0,
        "polygons:POLYGONS": str(work / "class_polygons.gpkg"), "areas:AREAS": str(work / "class_areas.csv")})
    yield 1.0
    root = project.layerTreeRoot()
    polygons = next((layer for layer in project.mapLayers().values()
                     if layer.source().split("|")[0].endswith("class_polygons.gpkg")), None)
    if polygons is not None:
        polygons.setOpacity(0.6)  # the image shows through
        node = root.findLayer(polygons.id())
        node.setExpanded(True)
        iface.layerTreeView().setCurrentLayer(polygons)
    extent = QgsRectangle(image.extent())
    extent.scale(1.03)
    iface.mapCanvas().setExtent(extent)
    iface.mapCanvas().refresh()
    yield 3.0
    grab(window, out / "class_polygons.png", outcomes)
    outcomes["class polygons layers"] = [layer.name() for layer in root.findLayers()]
    outcomes["polygons renderer"] = polygons.renderer().type() if polygons is not None else None
    outcomes["tasks still running"] = QgsApplication.taskManager().countActiveTasks()
    QApplication.processEvents()


if os.environ.get("SEAMLESS_SCREENSHOTS_OUT") and "qgis.utils" in sys.modules and \
        getattr(sys.modules["qgis.utils"], "iface", None) is not None:
    in_qgis()
elif __name__ == "__main__":
    sys.exit(main())
