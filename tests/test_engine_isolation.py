"""The engine is a library of its own: it never imports qgis, and works from plain Python."""

import subprocess
import sys
from pathlib import Path

from conftest import MODEL, PAN, PLUGINS, ROOT, XS

SCRIPT = f"""
import sys
sys.path.insert(0, {str(PLUGINS)!r})
from seamless_inference.engine import InferenceRequest, Source, run_inference, read_signature
signature = read_signature({str(MODEL)!r})
request = InferenceRequest({str(MODEL)!r}, (Source(({str(PAN)!r},), (128, 128)), Source(({str(XS)!r},), (32, 32))),
                           output_names=("estimated_crop32",))
result = run_inference(request, sys.argv[1])
assert not [m for m in sys.modules if m == "qgis" or m.startswith("qgis.")], "the engine imported qgis"
print("OK", result.plan.size, result.plan.exact)
"""


def test_engine_runs_from_plain_python_without_qgis_with_the_toolbox_pixels(provider, tmp_path):
    import numpy as np
    import processing
    from osgeo import gdal

    run = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "out.tif")], capture_output=True,
                         text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "OK (500, 500) True" in run.stdout
    toolbox = processing.run("seamless:validpartinference", {
        "MODEL": str(MODEL), "SOURCE1": [str(PAN)], "SOURCE2": [str(XS)], "OUTPUT": str(tmp_path / "qgis.tif")})
    a, b = (gdal.Open(str(p)).ReadAsArray() for p in (tmp_path / "out.tif", toolbox["OUTPUT"]))
    assert np.abs(a - b).max() == 0.0


def test_no_engine_module_imports_qgis():
    for path in Path(ROOT, "engine").rglob("*.py"):
        for line in path.read_text(encoding="utf-8").splitlines():
            stripped = line.strip()
            assert not stripped.startswith(("import qgis", "from qgis")), f"{path}: {line}"


THREADED_IMPORT = """
import sys, threading
sys.path.insert(0, sys.argv[1])
from seamless_inference.engine.dependencies import import_tensorflow
found, errors = [], []
def first_import():
    try:
        found.append(import_tensorflow().saved_model.load)
    except BaseException as exc:
        errors.append(repr(exc))
threads = [threading.Thread(target=first_import) for _ in range(4)]
[t.start() for t in threads]
[t.join() for t in threads]
print(len(found), errors)
"""


def test_four_threads_importing_tensorflow_first_all_get_it():
    """Two runs started together in a fresh QGIS import TensorFlow from two threads: none may see it half made."""
    run = subprocess.run([sys.executable, "-c", THREADED_IMPORT, str(PLUGINS)], capture_output=True, text=True,
                         timeout=300, check=False)
    assert run.stdout.strip().splitlines()[-1] == "4 []", run.stdout + run.stderr
