"""models/seed_workflow.model3: the whole seed as one Graphical Modeler model, run on the sample."""

import importlib.util
import re

import numpy as np
import pytest
from conftest import MODEL, PAN, ROOT, XS, qgis_process, seed_sources
from osgeo import gdal

from seamless_inference.engine import InferenceRequest, run_inference

MODEL3 = ROOT / "models" / "seed_workflow.model3"
CHILDREN = {"analysis": "seamless:modelanalysis", "artifact_prone": "seamless:artifactproneinference",
            "valid_part": "seamless:validpartinference", "comparison": "seamless:rastercomparison",
            "distortion": "seamless:distortioncomparison"}


def load_model3(path=MODEL3):
    from qgis.core import QgsProcessingModelAlgorithm

    model = QgsProcessingModelAlgorithm()
    assert model.fromFile(str(path)), f"{path} does not load"
    return model


def test_the_model_is_the_seed_wired_through_model_analysis(provider):
    model = load_model3()
    children = model.childAlgorithms()
    assert {child_id: child.algorithmId() for child_id, child in children.items()} == CHILDREN
    for child_id in children:
        ok, issues = model.validateChildAlgorithm(child_id)
        assert ok, f"{child_id}: {issues} (regenerate the model: .venv/bin/python tools/make_model3.py)"
    assert [p.name() for p in model.parameterDefinitions() if not p.isDestination()] == [
        "MODEL", "SOURCE1", "SOURCE1_RFIELD", "SOURCE2", "SOURCE2_RFIELD"]

    def source(child_id, parameter):
        (value,) = children[child_id].parameterSources()[parameter]
        return value.outputChildId(), value.outputName()

    # crop and expression field of the valid part come from the model analysis, as does the distortion's R
    assert source("valid_part", "OUTPUT_NAMES") == ("analysis", "OUTPUT_NAME")
    assert source("valid_part", "EFIELD") == ("analysis", "EFIELD")
    assert source("distortion", "RFIELD") == ("analysis", "RFIELD")
    assert source("distortion", "CHOSEN_CROP") == ("analysis", "CROP")
    assert source("comparison", "REFERENCE") == ("valid_part", "OUTPUT")
    assert source("comparison", "IMAGE") == ("artifact_prone", "OUTPUT")


def test_the_committed_model_keeps_its_public_output_names(provider):
    """QGIS 3.40 names a Version2 model's outputs after their descriptions (validpart_output); the committed model
    is Version1, so every QGIS gives users' scripts the child:OUTPUT names (valid_part:OUTPUT)."""
    model = load_model3()  # held: the definitions belong to it
    names = {p.name() for p in model.parameterDefinitions() if p.isDestination()}
    assert {"valid_part:OUTPUT", "artifact_prone:OUTPUT", "analysis:REPORT", "comparison:REPORT",
            "distortion:REPORT"} <= names, names


def test_the_committed_model_is_what_make_model3_builds(provider, tmp_path):
    spec = importlib.util.spec_from_file_location("make_model3", ROOT / "tools" / "make_model3.py")
    make_model3 = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_model3)
    fresh = tmp_path / "seed_workflow.model3"
    assert make_model3.build().toFile(str(fresh))
    assert load_model3(fresh).toVariant() == load_model3().toVariant(), \
        "models/seed_workflow.model3 is stale (a parameter changed?): run .venv/bin/python tools/make_model3.py"


@pytest.mark.slow
def test_qgis_process_runs_the_seed_on_the_sample(tmp_path):
    out = {name: tmp_path / name for name in ("artifact.tif", "valid.tif", "analysis.html", "comparison.html",
                                              "distortion.html")}
    run = qgis_process("run", MODEL3, "--", f"MODEL={MODEL}", f"SOURCE1={PAN}", f"SOURCE2={XS}",
                       f"artifact_prone:OUTPUT={out['artifact.tif']}", f"valid_part:OUTPUT={out['valid.tif']}",
                       f"analysis:REPORT={out['analysis.html']}", f"comparison:REPORT={out['comparison.html']}",
                       f"distortion:REPORT={out['distortion.html']}")
    log = run.stdout + run.stderr
    assert run.returncode == 0, log[-4000:]
    # each of the five children wrote its output (QGIS's own summary line is worded differently across versions)
    assert all(path.exists() for path in out.values()), [p.name for p in out.values() if not p.exists()]

    # the analysis chose estimated_crop32 and efield 64; the valid part used them and is exact
    assert "serve estimated_crop32 (crop 32) with receptive field 128 and expression field 64" in log
    valid = gdal.Open(str(out["valid.tif"]))
    assert valid.GetRasterBand(1).GetDescription() == "estimated_crop32[0]"
    engine = tmp_path / "engine.tif"
    run_inference(InferenceRequest(str(MODEL), seed_sources(), output_names=("estimated_crop32",)), str(engine))
    assert np.abs(valid.ReadAsArray() - gdal.Open(str(engine)).ReadAsArray()).max() == 0.0

    # the raster comparison is the seed's vector RMSE between the two outputs (same grid in Full mode)
    artifact = gdal.Open(str(out["artifact.tif"])).ReadAsArray().astype(np.float64)
    difference = artifact - valid.ReadAsArray().astype(np.float64)
    expected = np.sqrt(np.mean(np.sum(difference ** 2, axis=0)))
    reported = float(re.search(r"Vector RMSE: ([0-9.e+-]+)", out["comparison.html"].read_text()).group(1))
    assert expected > 0.01 and reported == pytest.approx(expected, rel=1e-5)

    # the distortion comparison: the raw output is far from exact, the analysis's crop is exact
    rmse = {int(c): float(v) for c, v in re.findall(r"crop +(\d+) \(efield +\d+, [^)]*\): RMSE ([0-9.e+-]+)", log)}
    assert rmse.keys() >= {0, 32} and rmse[0] > 0.01 and rmse[32] < 1e-5, rmse
    assert "estimated_crop32" in out["analysis.html"].read_text() and "<img" in out["distortion.html"].read_text()
