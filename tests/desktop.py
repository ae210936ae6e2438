"""The real QGIS desktop under Xvfb, for the tests that need it: `run_desktop` starts `qgis` in a profile of its own
on a script and returns what the script saw (a helper, not a test module)."""

import json
import os
import shutil
import signal
import subprocess
import textwrap

import pytest
from conftest import MODEL, PAN, PLUGINS, ROOT, XS

NEEDS_DESKTOP = pytest.mark.skipif(not shutil.which("xvfb-run") or not shutil.which("qgis"),
                                   reason="needs xvfb-run and the QGIS desktop (make apt)")

# run inside QGIS before the test's own script: `report` collects, `finish()` writes it and quits
PRELUDE = '''
import json, os, traceback
import qgis.utils
from qgis.core import QgsApplication, QgsProject, QgsSettings
from qgis.PyQt.QtCore import QTimer
from qgis.utils import iface
report = {"errors": []}


def finish(waited=0):
    """Write the report, then File > Exit once no task runs (Exit asks about running tasks)."""
    if QgsApplication.taskManager().countActiveTasks() and waited < 30:
        QTimer.singleShot(500, lambda: finish(waited + 1))
        return
    report["tasks running at exit"] = QgsApplication.taskManager().countActiveTasks()
    with open(os.environ["SEAMLESS_DESKTOP_RESULT"], "w", encoding="utf-8") as handle:
        json.dump(report, handle, indent=1)
    QgsProject.instance().setDirty(False)
    QgsSettings().setValue("askToSaveMemoryLayers", False, QgsSettings.Section.App)  # outputs in /tmp are "temporary"
    iface.actionExit().trigger()


def step(function):
    """Run a step from the event loop; a failure is reported, then QGIS quits."""
    def run():
        try:
            function()
        except Exception:
            report["errors"].append(traceback.format_exc())
            finish()
    QTimer.singleShot(500, run)
'''


def run_desktop(tmp_path, script: str, with_tensorflow: bool = True, checkout_plugin: bool = True,
                timeout: int = 180, env_extra: dict | None = None):
    """Start the desktop on `script` (after PRELUDE); return (report, exit status, log). With checkout_plugin,
    this checkout is the plugin (QGIS_PLUGINPATH=.build/plugins) and is enabled; without, the profile is bare."""
    profile = tmp_path / "profile"
    ini = profile / "profiles" / "default" / "QGIS" / "QGIS3.ini"
    ini.parent.mkdir(parents=True, exist_ok=True)  # a second start in the same profile keeps what it holds
    ini.write_text("[PythonPlugins]\nseamless_inference=true\n" if checkout_plugin else "", encoding="utf-8")
    code = tmp_path / "desktop_script.py"
    code.write_text(PRELUDE + textwrap.dedent(script), encoding="utf-8")
    result = tmp_path / "desktop_result.json"
    result.unlink(missing_ok=True)  # never a former start's report
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "QT_QPA_PLATFORM")}
    env.pop("QGIS_PLUGINPATH", None)
    env.update(QGIS_CUSTOM_CONFIG_PATH=str(profile), TF_CPP_MIN_LOG_LEVEL="2", SEAMLESS_DESKTOP_RESULT=str(result),
               SEAMLESS_MODEL=str(MODEL), SEAMLESS_PAN=str(PAN), SEAMLESS_XS=str(XS), SEAMLESS_OUT=str(tmp_path),
               **(env_extra or {}))
    if checkout_plugin:
        env["QGIS_PLUGINPATH"] = str(PLUGINS)
    if with_tensorflow:
        site = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-c",
                               "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                              capture_output=True, text=True, check=True).stdout.strip()
        env["PYTHONPATH"] = site
    process = subprocess.Popen(["xvfb-run", "-a", "-s", "-screen 0 1280x1024x24", "qgis", "--nologo",
                                "--noversioncheck", "--code", str(code)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.STDOUT, text=True, start_new_session=True, cwd=tmp_path)
    try:
        log, _ = process.communicate(timeout=timeout)
        status = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # xvfb-run, Xvfb and QGIS: the session started here
        log, _ = process.communicate()
        status = "timeout"
    (tmp_path / "desktop.log").write_text(log, encoding="utf-8")
    report = json.loads(result.read_text(encoding="utf-8")) if result.exists() else None
    assert report is not None, f"QGIS wrote no result (exit status {status}); its log:\n{log[-4000:]}"
    assert not report["errors"], "\n".join(report["errors"])
    return report, status, log
