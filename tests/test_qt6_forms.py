"""Ready for QGIS 4 (Qt 6) while running on QGIS 3.22 (Qt 5): the plugin's, tools', tests' and bench's Python holds
no form that only Qt 5 or only QGIS 3 accepts (what QGIS's scripts/pyqt5_to_pyqt6 rewrites or warns about), the
QGIS 3.22 spellings live in algorithms/compat.py only, and the Qt-facing helpers run under PyQt6."""

import ast
import enum
import functools
import importlib
import importlib.util
import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
FOLDERS = ("provider", "algorithms", "engine", "tools", "tests", "bench")
COMPAT = ROOT / "algorithms" / "compat.py"  # the one module that may name the QGIS 3.22 spellings
BINDINGS = ("qgis.PyQt.QtCore", "qgis.PyQt.QtGui", "qgis.PyQt.QtWidgets", "qgis.PyQt.QtNetwork", "qgis.PyQt.QtXml",
            "qgis.core", "qgis.gui")

# QGIS 3.22 names of the enums QGIS 3.30 / 3.36 moved into Qgis (QGIS 4 drops the old names): class -> (the old
# attributes, the enum to use); both the unscoped members and the 3.22 enum itself (QgsProcessing.SourceType...)
MOVED_QGIS_ENUMS = {
    "Qgis": ("Info|Warning|Critical|Success|NoLevel", "Qgis.MessageLevel"),
    "QgsProcessing": ("SourceType|Type[A-Z]\\w*", "Qgis.ProcessingSourceType"),
    "QgsProcessingParameterNumber": ("Type|Integer|Double", "Qgis.ProcessingNumberParameterType"),
    "QgsProcessingParameterFile": ("Behavior|File|Folder", "Qgis.ProcessingFileParameterBehavior"),
    "QgsProcessingParameterDefinition": ("Flags?|Flag[A-Z]\\w*", "Qgis.ProcessingParameterFlag"),
    "QgsProcessingAlgorithm": ("Flags?|Flag[A-Z]\\w*", "Qgis.ProcessingAlgorithmFlag"),
    "QgsProcessingProvider": ("Flags?|Flag[A-Z]\\w*", "Qgis.ProcessingProviderFlag"),
    "QgsProcessingFeatureSource": ("Flags?|Flag[A-Z]\\w*", "Qgis.ProcessingFeatureSourceFlag"),
    "QgsProcessingParameterField": ("DataType|Any|Numeric|String|DateTime|Binary|Boolean",
                                    "Qgis.ProcessingFieldParameterDataType"),
    "QgsProcessingParameterDateTime": ("Type|DateTime|Date|Time", "Qgis.ProcessingDateTimeParameterDataType"),
    "QgsWkbTypes": ("[A-Z]\\w*", "Qgis.WkbType or Qgis.GeometryType"),
    "QgsMapLayerType": ("[A-Z]\\w*", "Qgis.LayerType"),
}
GONE_IN_QT6 = {  # names Qt 6 removed: what to use instead
    "qApp": "QApplication.instance()",
    "QRegExp": "QRegularExpression",
    "QDesktopWidget": "QScreen (QApplication.screens())",
    "QWebView": "QTextBrowser (QtWebKit is gone in Qt 6)",
}


@functools.lru_cache(maxsize=None)
def qt_and_qgis_classes() -> dict:
    """{name: class} of the Qt and QGIS bindings this Python has (PyQt5 on QGIS 3.22), to tell an enum member."""
    classes = {}
    for module in BINDINGS:
        try:
            classes.update((k, v) for k, v in vars(importlib.import_module(module)).items() if isinstance(v, type))
        except ImportError:
            continue
    return classes


def is_enum_member(value) -> bool:
    """A member of a Qt or QGIS enum: a Python enum (PyQt6, QGIS's scoped enums) or a sip enum (PyQt5)."""
    return isinstance(value, enum.Enum) or type(type(value)).__name__ == "enumtype"


def embedded_scripts(tree) -> list:
    """(line of the opening quotes, source) of the string constants that are Python scripts of several lines
    (what the desktop tests run inside QGIS); str.format templates are read with their doubled braces halved."""
    scripts = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value.count("\n") > 1:
            text = textwrap.dedent(node.value)
            for source in (text, text.replace("{{", "{").replace("}}", "}")):
                try:
                    ast.parse(source)
                except SyntaxError:
                    continue
                scripts.append((node.lineno, source))
                break
    return scripts


def qt5_only_forms(source: str, name: str, compat: bool = False, scripts: bool = True) -> list:
    """'name:line: form -> what to write' for every Qt 5-only or QGIS 3-only form in `source`, and in the scripts
    it holds as strings; `compat`: the module allowed to name the QGIS 3.22 spellings and QVariant."""
    tree = ast.parse(source)
    found = []

    def hit(node, form: str, instead: str):
        found.append(f"{name}:{node.lineno}: {form} -> {instead}")

    classes = qt_and_qgis_classes()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            modules = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
            for module in modules:
                if module.split(".")[0] in ("PyQt5", "PyQt6", "sip"):
                    hit(node, f"import {module}", "qgis.PyQt (from qgis.PyQt import sip)")
                elif "QtWebKit" in module:
                    hit(node, f"import {module}", "QTextBrowser (QtWebKit is gone in Qt 6)")
                elif module == "qgis.PyQt.Qt":
                    hit(node, "qgis.PyQt.Qt", "qgis.PyQt.QtCore (qgis.PyQt.Qt is gone in Qt 6)")
                elif module.endswith("resources_rc"):
                    hit(node, f"import {module}", "icons by file path (compiled resources are gone in Qt 6)")
            for alias in node.names:
                if alias.name in GONE_IN_QT6:
                    hit(node, f"import {alias.name}", GONE_IN_QT6[alias.name])
        elif isinstance(node, ast.FunctionDef) and node.name == "exec_":
            hit(node, "def exec_", "def exec")
        elif isinstance(node, ast.Name) and node.id == "QVariant" and not compat:
            hit(node, "QVariant", "QMetaType; a field: algorithms.compat.field (QVariant types are gone in Qt 6)")
        elif isinstance(node, ast.Name) and node.id in GONE_IN_QT6 and isinstance(node.ctx, ast.Load):
            hit(node, node.id, GONE_IN_QT6[node.id])
        elif isinstance(node, ast.Attribute):
            if node.attr == "exec_":
                hit(node, ".exec_", ".exec()")
            elif node.attr == "width" and isinstance(node.value, ast.Call) and \
                    getattr(node.value.func, "attr", None) == "fontMetrics":
                hit(node, "fontMetrics().width", "fontMetrics().horizontalAdvance")
            if not isinstance(node.value, ast.Name):
                continue
            owner, attr = node.value.id, node.attr
            moved = MOVED_QGIS_ENUMS.get(owner)
            if moved and re.fullmatch(moved[0], attr):
                if not compat:
                    hit(node, f"{owner}.{attr}", f"{moved[1]} (through algorithms/compat.py where 3.22 lacks it)")
                continue
            value = getattr(classes.get(owner), attr, None)
            if is_enum_member(value):
                hit(node, f"{owner}.{attr}", f"{type(value).__qualname__}.{attr} (scoped enum)")
    if scripts:
        for first, script in embedded_scripts(tree):
            for line in qt5_only_forms(script, name, compat, scripts=False):  # "name:n: ..." -> the file's line
                place, rest = line[len(name) + 1:].split(":", 1)
                found.append(f"{name}:{first + int(place) - 1}:{rest}")
    return found


def python_files() -> list:
    """The plugin root's .py files and every .py under the scanned folders."""
    files = sorted(ROOT.glob("*.py"))
    for folder in FOLDERS:
        files += sorted(p for p in (ROOT / folder).rglob("*.py") if "__pycache__" not in p.parts)
    return files


def test_no_qt5_only_form_in_the_plugin_tools_tests_or_bench():
    found = []
    for path in python_files():
        # this file's own strings are the forms it rejects and the PyQt6 shim: its code is scanned, not them
        found += qt5_only_forms(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)), path == COMPAT,
                                scripts=path != Path(__file__).resolve())
    assert not found, "\n".join(found)


def test_the_scan_sees_every_folder_and_the_bindings():
    names = {str(p.relative_to(ROOT)) for p in python_files()}
    assert {"plugin.py", "provider/notices.py", "algorithms/compat.py", "engine/dependencies.py",
            "tools/screenshots.py", "tests/test_desktop.py", "bench/bench.py"} <= names
    classes = qt_and_qgis_classes()
    assert {"Qt", "QMessageBox", "Qgis", "QgsProcessingParameterNumber"} <= set(classes)
    assert is_enum_member(classes["Qt"].AlignmentFlag.AlignCenter)


# the Qt 5-only forms, one a line, each alone must be caught: a text file, so that no scan of the code meets them
REJECTED = (Path(__file__).parent / "qt5_only_forms.txt").read_text(encoding="utf-8").splitlines()
IN_A_SCRIPT = '''
PRELUDE = """
from qgis.PyQt.QtCore import Qt
role = Qt.DisplayRole
"""
'''
ACCEPTED = '''
from qgis.PyQt import sip
from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtWidgets import QMessageBox, QTextBrowser
box = QMessageBox(QMessageBox.Icon.Warning, "t", "x", QMessageBox.StandardButton.Close, None)
box.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
model.data(index, Qt.ItemDataRole.ToolTipRole)
box.exec()
QgsMessageLog.logMessage("text", "tag", Qgis.MessageLevel.Warning)
version, output = Qgis.QGIS_VERSION_INT, QgsProcessing.TEMPORARY_OUTPUT
registry = QgsApplication.processingRegistry()
sink.addFeature(feature, QgsFeatureSink.Flag.FastInsert)
number = QgsProcessingParameterNumber("N", "n", compat.INTEGER)
name = QgsWkbTypes.displayString(compat.NO_GEOMETRY)
'''


def test_the_scan_rejects_each_qt5_only_form_and_accepts_the_scoped_ones():
    assert REJECTED and all(REJECTED)  # the file read, no blank line
    missed = [line for line in REJECTED if not qt5_only_forms(line, "snippet")]
    assert not missed, missed
    assert qt5_only_forms(IN_A_SCRIPT, "snippet") == [
        "snippet:4: Qt.DisplayRole -> Qt.ItemDataRole.DisplayRole (scoped enum)"]
    assert not qt5_only_forms(ACCEPTED, "snippet")
    assert qt5_only_forms("field = QgsField('crop', QVariant.Type.Int)", "compat.py", compat=True) == []


def test_compat_names_what_the_running_qgis_takes():
    from qgis.core import QgsProcessingParameterFile, QgsProcessingParameterNumber, QgsWkbTypes

    from seamless_inference.algorithms import compat

    assert QgsProcessingParameterNumber("N", "n", compat.DOUBLE).dataType() == compat.DOUBLE
    assert QgsProcessingParameterFile("F", "f", behavior=compat.FOLDER).behavior() == compat.FOLDER
    assert QgsWkbTypes.displayString(compat.NO_GEOMETRY) == "NoGeometry"
    fields = [compat.field(kind.__name__, kind) for kind in (int, float, str)]
    assert [type(f.convertCompatible("3")) for f in fields] == [int, float, str]
    assert [f.name() for f in fields if f.isNumeric()] == ["int", "float"]


# qgis.PyQt as PyQt6, and the plugin's packages without their __init__ (which register with QGIS): what a Qt 6
# QGIS gives the Qt-facing helpers, minus QGIS itself
PYQT6_SHIM = """
import sys, types
from pathlib import Path
from PyQt6 import QtCore, QtGui, QtWidgets
root = Path(sys.argv[1])
for name, module in (("qgis", None), ("qgis.PyQt", None), ("qgis.PyQt.QtCore", QtCore), ("qgis.PyQt.QtGui", QtGui),
                     ("qgis.PyQt.QtWidgets", QtWidgets), ("seamless_inference", root),
                     ("seamless_inference.provider", root / "provider"), ("seamless_inference.engine", root / "engine"),
                     ("seamless_inference.tools", root / "tools")):
    if not isinstance(module, types.ModuleType):
        package = types.ModuleType(name)
        package.__path__ = [str(module)] if module else []
        module = package
    sys.modules[name] = module
"""
PYQT6_CHECK = """
import json
from seamless_inference.provider.notices import show_details
from seamless_inference.tools.screenshots import report_view
from PyQt6.QtCore import Qt
from PyQt6.QtGui import QColor
from PyQt6.QtWidgets import QApplication, QMessageBox
app = QApplication([])
box = show_details(None, "pip install tensorflow")
view = report_view(Path(sys.argv[2]), 400)
app.processEvents()
image = view.grab().toImage()
red = sum(image.pixelColor(x, y) == QColor("red") for x in range(image.width()) for y in range(image.height()))
print(json.dumps({
    "qt": QtCore.QT_VERSION_STR, "icon": box.icon() == QMessageBox.Icon.Warning,
    "buttons": box.standardButtons() == QMessageBox.StandardButton.Close,
    "selectable": bool(box.textInteractionFlags() & Qt.TextInteractionFlag.TextSelectableByMouse),
    "deleted on close": box.testAttribute(Qt.WidgetAttribute.WA_DeleteOnClose), "modal": box.isModal(),
    "report text": "Distortion comparison" in view.toPlainText(), "plot pixels": red}))
"""
# 20 x 10 px of pure red, embedded as the reports embed their plots
RED_PNG = "iVBORw0KGgoAAAANSUhEUgAAABQAAAAKCAIAAAA7N+mxAAAAFUlEQVR4nGP4z8BANiJf56jmEaMZADFExzl02osRAAAAAElFTkSuQmCC"


@pytest.mark.skipif(importlib.util.find_spec("PyQt6") is None,
                    reason="PyQt6 is not installed in this Python (pip install PyQt6): the Qt 6 run of the "
                           "Qt-facing helpers needs it")
def test_the_qt_facing_helpers_run_under_pyqt6(tmp_path):
    import json

    report = tmp_path / "report.html"
    report.write_text(f'<html><body><h2>Distortion comparison</h2><p><img src="data:image/png;base64,{RED_PNG}"/>'
                      "</p></body></html>", encoding="utf-8")
    run = subprocess.run([sys.executable, "-c", PYQT6_SHIM + PYQT6_CHECK, str(ROOT), str(report)],
                         capture_output=True, text=True, timeout=120, check=False,
                         env=dict(os.environ, QT_QPA_PLATFORM="offscreen"))
    assert run.returncode == 0, run.stderr[-3000:]
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen.pop("qt").startswith("6.")
    assert seen == {"icon": True, "buttons": True, "selectable": True, "deleted on close": True, "modal": False,
                    "report text": True, "plot pixels": 200}
