"""qgis_process.bin (QGIS 3.22, 3.40) loads the plugin, runs it with the same pixels, and copes without TensorFlow."""

import numpy as np
import pytest
from conftest import MODEL, PAN, XS, qgis_process, seed_sources
from osgeo import gdal

from seamless_inference.engine import InferenceRequest, run_inference
from seamless_inference.engine.dependencies import tensorflow_requirement

pytestmark = pytest.mark.slow


def test_qgis_process_lists_the_provider():
    listing = qgis_process("list")
    assert listing.returncode == 0, listing.stderr
    assert "seamless:validpartinference\tValid-part inference" in listing.stdout
    assert "seamless:artifactproneinference\tArtifact-prone inference" in listing.stdout


def test_qgis_process_gives_the_engine_pixels(tmp_path):
    output = tmp_path / "valid.tif"
    run = qgis_process("run", "seamless:validpartinference", "--", f"MODEL={MODEL}", f"SOURCE1={PAN}",
                       f"SOURCE2={XS}", f"OUTPUT={output}")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "using estimated_crop32" in run.stdout
    # no warning of TensorFlow's own on the user's terminal (Python 3.13: autograph's gast, one per node); QGIS
    # 3.22's own sip.setapi() warning is not ours
    warnings = [line for line in run.stderr.splitlines() if "Warning" in line and "setapi()" not in line]
    assert not warnings, warnings
    engine = tmp_path / "engine.tif"
    run_inference(InferenceRequest(str(MODEL), seed_sources(), output_names=("estimated_crop32",)), str(engine))
    a, b = (gdal.Open(str(p)).ReadAsArray() for p in (output, engine))
    assert np.abs(a - b).max() == 0.0


def test_without_tensorflow_the_provider_loads_and_says_how_to_install_it(tmp_path):
    # QGIS's Python as an analyst's before installing TensorFlow: no venv, no user site-packages
    env = {"SEAMLESS_NO_VENV": "1", "PYTHONNOUSERSITE": "1", "QGIS_CUSTOM_CONFIG_PATH": str(tmp_path / "profile")}
    listing = qgis_process("list", env=env)
    assert listing.returncode == 0, listing.stderr
    assert "seamless:validpartinference" in listing.stdout
    output = tmp_path / "valid.tif"
    run = qgis_process("run", "seamless:validpartinference", "--", f"MODEL={MODEL}", f"SOURCE1={PAN}",
                       f"SOURCE2={XS}", f"OUTPUT={output}", env=env)
    assert "TensorFlow cannot be imported" in run.stdout + run.stderr, (
        "no 'TensorFlow cannot be imported' message (is TensorFlow installed for QGIS's own Python?):\n"
        + run.stdout[-2000:] + run.stderr[-2000:])
    assert run.returncode != 0
    # numpy held to the major of QGIS's own (the venv's is the same): "numpy<2" on Debian 12, numpy 2 on Debian 13
    assert f"pip install --user --break-system-packages {tensorflow_requirement()}" in run.stdout + run.stderr
    assert not output.exists()
