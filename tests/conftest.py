"""Shared fixtures: the plugin importable as `seamless_inference`, its provider registered, sample paths."""

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from osgeo import gdal

# the tests' own GDAL calls keep GDAL's default (errors as return values, as in QGIS), said explicitly: GDAL 3.10
# warns on the first call otherwise (the engine switches exceptions on inside its own calls only, raster.py)
gdal.DontUseExceptions()

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ROOT / ".build" / "plugins"
SAMPLE = ROOT / "sample"
MODEL = SAMPLE / "model"
PAN = SAMPLE / "data" / "pan.tif"
XS = SAMPLE / "data" / "xs.tif"
LABELS = SAMPLE / "data" / "labels.tif"
QGIS_PROCESS = ROOT / "tools" / "qgis_process"

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# the measurement cache of this test session only (children such as qgis_process inherit it): no test reads a
# measurement that older code stored
os.environ["SEAMLESS_CACHE_DIR"] = tempfile.mkdtemp(prefix="seamless-measurements-")
os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")
# pytest-qgis keeps this process's QGIS profile in <rootdir>/.qgis-settings (ignored by git) and exports it to every
# child; a QGIS a test starts gets a profile of its own instead (tools/qgis_process: .build/qgis-profile; the desktop
# and the package tests: their tmp_path), so that no run of the plugin writes into that one
os.environ.pop("QGIS_CUSTOM_CONFIG_PATH", None)
os.environ.pop("QGIS_OPTIONS_PATH", None)

# QGIS loads plugins by folder name: the checkout is exposed as .build/plugins/seamless_inference (make plugin)
if not (PLUGINS / "seamless_inference").exists():
    PLUGINS.mkdir(parents=True, exist_ok=True)
    (PLUGINS / "seamless_inference").symlink_to(ROOT, target_is_directory=True)
if str(PLUGINS) not in sys.path:
    sys.path.insert(0, str(PLUGINS))


@pytest.fixture(scope="session")
def provider(qgis_processing):
    """The `seamless` provider, registered through the plugin's own initProcessing()."""
    from qgis.core import QgsApplication

    from seamless_inference import classFactory

    plugin = classFactory(None)
    plugin.initProcessing()
    yield QgsApplication.processingRegistry().providerById("seamless")
    plugin.unload()


def seed_sources(pan=PAN, xs=XS):
    """The seed's two sources: PAN rfield 128, XS rfield 32 (engine Sources)."""
    from seamless_inference.engine import Source

    return (Source((str(pan),), (128, 128), "input_p"), Source((str(xs),), (32, 32), "input_xs"))


def qgis_process(*args, env=None, timeout=600):
    """Run tools/qgis_process (qgis_process.bin with this plugin enabled); returns the CompletedProcess."""
    full_env = dict(os.environ, **(env or {}))
    return subprocess.run([str(QGIS_PROCESS), *map(str, args)], capture_output=True, text=True, env=full_env,
                          timeout=timeout, check=False)


_EXIT_STATUS = {}


def pytest_sessionfinish(session, exitstatus):
    """Remember the exit status for pytest_unconfigure."""
    _EXIT_STATUS["status"] = int(exitstatus)


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config):
    """Leave without C++ static destructors: with QGIS initialised before TensorFlow loads a SavedModel, the
    process segfaults after Python has finished (seen with a 6-line script, pytest or not). Every result is
    reported by now; qgis_process does not show the crash, the tests of the desktop check it separately."""
    if "tensorflow" in sys.modules and "status" in _EXIT_STATUS:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_EXIT_STATUS["status"])


def recording_feedback():
    """A QgsProcessingFeedback that keeps what an algorithm says (`lines`: infos and warnings) and every progress
    value it reports (`values`)."""
    from qgis.core import QgsProcessingFeedback

    class Recording(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.lines, self.values = [], []

        def pushInfo(self, info):  # noqa: N802 (QGIS API name)
            self.lines.append(info)
            super().pushInfo(info)

        def pushWarning(self, warning):  # noqa: N802
            self.lines.append(warning)
            super().pushWarning(warning)

        def setProgress(self, progress):  # noqa: N802
            self.values.append(progress)
            super().setProgress(progress)

    return Recording()


@pytest.fixture(scope="session")
def package(tmp_path_factory) -> Path:
    """The zip `make package` builds (tools/package.py), once per session, into a temporary folder."""
    out = tmp_path_factory.mktemp("dist")
    run = subprocess.run([sys.executable, str(ROOT / "tools" / "package.py"), "--out", str(out)],
                         capture_output=True, text=True, timeout=120, check=False)
    assert run.returncode == 0, run.stdout + run.stderr
    (target,) = out.glob("seamless_inference-*.zip")
    version = next(line.split("=", 1)[1].strip() for line in (ROOT / "metadata.txt").read_text("utf-8").splitlines()
                   if line.startswith("version="))
    assert target.name == f"seamless_inference-{version}.zip", target.name  # named by metadata.txt's version
    return target
