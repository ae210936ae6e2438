"""The real OTBTF 4.2.2 TensorflowModelServe (`make otbtf`, .build/otbtf): it never aborts QGIS, its pixels are
correctly registered on pixel sizes float32 cannot hold, and the seed's own pyotb calls run and agree.

`make test` builds it when ../shared has the build tool (CI puts ../shared beside the clone); without it the
reason is in .build/otbtf.unavailable and these tests skip with it.
"""

import itertools
import json
import os
import subprocess
import sys

import numpy as np
import pytest
from conftest import MODEL, PAN, ROOT, XS, qgis_process, seed_sources
from osgeo import gdal

from seamless_inference.engine import FULL, OTBTF, InferenceRequest, run_inference
from seamless_inference.engine import otb_process
from seamless_inference.engine.metrics import compare_rasters

OTBTF_ENV = ROOT / ".build" / "otbtf" / "env.sh"
OTBTF_UNAVAILABLE = ROOT / ".build" / "otbtf.unavailable"


def otbtf_environment() -> dict:
    """The variables OTBTF's env.sh sets (OTB's Python bindings, OTBTF's application path), or skip."""
    if not OTBTF_ENV.exists():
        why = OTBTF_UNAVAILABLE.read_text().strip() if OTBTF_UNAVAILABLE.exists() else "run `make otbtf`"
        pytest.skip(f"OTBTF is not built in .build/otbtf: {why}")
    run = subprocess.run(["bash", "-c", f'. "{OTBTF_ENV}" && env -0'], capture_output=True, check=True)
    after = dict(item.split("=", 1) for item in run.stdout.decode().split("\0") if "=" in item)
    return {k: v for k, v in after.items() if os.environ.get(k) != v and not k.startswith(("SHLVL", "_"))}


@pytest.fixture()
def otbtf(monkeypatch):
    """This process's environment as `. .build/otbtf/env.sh` leaves it (pyotb itself only loads in children)."""
    for key, value in otbtf_environment().items():
        monkeypatch.setenv(key, value)
    otb_process._status.clear()
    available, reason = otb_process.otbtf_status()
    assert available, reason
    yield reason
    otb_process._status.clear()


def scene(folder, spacing: float, origin: tuple) -> tuple:
    """The sample's PAN and XS pixels re-anchored: PAN pixels of `spacing`, XS of 4 x `spacing`, at `origin`."""
    paths = []
    for name, source, scale in (("pan", PAN, 1), ("xs", XS, 4)):
        path = str(folder / f"{name}.tif")
        dataset = gdal.Translate(path, str(source))
        dataset.SetGeoTransform((origin[0], spacing * scale, 0.0, origin[1], 0.0, -spacing * scale))
        dataset = None
        paths.append(path)
    return tuple(paths)


SCENES = {"sample pair, 0.6 / 2.4 m at Toulouse's origin": None,
          "0.5 / 2.0 m at a round origin": (0.5, (500000.0, 5000000.0)),
          "0.6 / 2.4 m at a round origin": (0.6, (500000.0, 5000000.0)),
          "0.6 / 2.4 m at a non-round origin": (0.6, (374149.3, 4829183.7))}


@pytest.mark.slow
@pytest.mark.parametrize("name", SCENES)
def test_otbtf_and_tensorflow_backends_give_the_same_registered_pixels(otbtf, tmp_path, name):
    pan, xs = (PAN, XS) if SCENES[name] is None else scene(tmp_path, *SCENES[name])
    for output, efield in (("estimated", 128), ("estimated_crop32", 64)):
        request = InferenceRequest(str(MODEL), seed_sources(pan, xs), output_names=(output,), efield=(efield,) * 2,
                                   extent_mode=OTBTF)
        paths = [str(tmp_path / f"{output}_{backend}.tif") for backend in ("tensorflow", "otbtf")]
        lines = []
        for path, backend in zip(paths, ("tensorflow", "otbtf")):
            run_inference(request, path, backend=backend, log_info=lines.append)
        assert "Backend: OTBTF (" in " ".join(lines) and not any(line.startswith("Warning") for line in lines)
        a, b = (gdal.Open(p) for p in paths)
        assert (a.RasterXSize, a.RasterYSize, a.RasterCount) == (b.RasterXSize, b.RasterYSize, b.RasterCount)
        assert np.allclose(a.GetGeoTransform(), b.GetGeoTransform(), rtol=0, atol=1e-9)
        assert a.GetProjection() == b.GetProjection()
        assert b.GetRasterBand(6).GetDescription() == f"{output}[5]"
        assert np.abs(a.ReadAsArray() - b.ReadAsArray()).max() <= 1e-5, (name, output)
    assert not [f for f in os.listdir(tmp_path) if "partial" in f or f.endswith(".vrt")]


@pytest.mark.slow
def test_the_otbtf_valid_part_is_one_pass_of_the_model(otbtf, tmp_path):
    """OTBTF's estimated_crop32 blocks equal the Full-mode valid part (one pass of the model over the padded
    image, test_inference.py) wherever both are defined."""
    valid = str(tmp_path / "full_valid.tif")
    run_inference(InferenceRequest(str(MODEL), seed_sources(), valid_part=True, extent_mode=FULL), valid)
    otbtf_path = str(tmp_path / "otbtf_valid.tif")
    run_inference(InferenceRequest(str(MODEL), seed_sources(), output_names=("estimated_crop32",), efield=(64, 64),
                                   extent_mode=OTBTF), otbtf_path, backend="otbtf")
    comparison = compare_rasters(valid, otbtf_path, method="numpy")
    assert comparison.pixels == 384 * 384 and comparison.max_abs_error <= 1e-5


SEED = """
import json, math, sys
import pyotb

def compute_rmse_value(ref, img):
    # the seed's helper: ExtractROI fit, BandMathX (a matrix product: the sum over bands), statistics
    roi = pyotb.ExtractROI({"in": img, "mode": "fit", "mode.fit.im": ref})
    squared = pyotb.BandMathX({"il": [roi, ref], "exp": "(im1-im2)*(im1-im2)'"})
    stats = pyotb.ComputeImagesStatistics({"il": [squared]})
    return math.sqrt(float(stats["out.mean"][0]))

pan, xs, model, folder, other = sys.argv[1:6]
runs = {"map_artifacts.tif": ("estimated", 128), "map_valid.tif": ("estimated_crop32", 64)}
for path, (name, efield) in runs.items():
    infer = pyotb.TensorflowModelServe(n_sources=2,
        source1_il=pan, source1_rfieldx=128, source1_rfieldy=128, source1_placeholder="input_p",
        source2_il=xs, source2_rfieldx=32, source2_rfieldy=32, source2_placeholder="input_xs",
        model_dir=model, model_fullyconv=True, output_efieldx=efield, output_efieldy=efield, output_names=name)
    infer.write(f"{folder}/{path}")
print(json.dumps({"rmse": compute_rmse_value(f"{folder}/map_valid.tif", other)}))
"""


@pytest.mark.slow
def test_the_seed_own_pyotb_calls_run_and_agree_with_the_plugin(otbtf, tmp_path):
    """The seed's two TensorflowModelServe calls and its compute_rmse_value, run as the seed wrote them, on a
    scene whose pixel sizes OTB holds exactly (0.5 / 2.0 m): the plugin's pixels and RMSE are the same."""
    pan, xs = scene(tmp_path, 0.5, (500000.0, 5000000.0))
    artifacts = str(tmp_path / "plugin_full_artifacts.tif")  # covers the valid part's footprint: the helper works
    run_inference(InferenceRequest(str(MODEL), seed_sources(pan, xs), output_names=("estimated",), efield=(128, 128),
                                   tile_size=128), artifacts)
    run = subprocess.run([sys.executable, "-c", SEED, pan, xs, str(MODEL), str(tmp_path), artifacts],
                         capture_output=True, text=True, timeout=600, check=False, env=dict(os.environ))
    assert run.returncode == 0, run.stderr[-3000:]
    seed_rmse = json.loads([line for line in run.stdout.splitlines() if line.startswith("{")][-1])["rmse"]
    for name, output, efield in (("map_artifacts.tif", "estimated", 128), ("map_valid.tif", "estimated_crop32", 64)):
        mine = str(tmp_path / f"plugin_{name}")
        run_inference(InferenceRequest(str(MODEL), seed_sources(pan, xs), output_names=(output,), efield=(efield,) * 2,
                                       extent_mode=OTBTF), mine)
        assert compare_rasters(str(tmp_path / name), mine, method="numpy").max_abs_error <= 1e-5, name
    plugin = compare_rasters(str(tmp_path / "map_valid.tif"), artifacts, method="numpy")
    assert plugin.vector_rmse > 1e-3  # the blocking artifacts show
    assert plugin.vector_rmse == pytest.approx(seed_rmse, rel=1e-5)


@pytest.mark.slow
def test_no_backend_extent_mode_or_output_name_combination_aborts_qgis_process(tmp_path):
    """With OTBTF's environment, every combination through qgis_process succeeds or stops with a message; none
    ends by a signal (before the fix: exit 134, "File already exists in database", whenever pyotb loaded)."""
    env = otbtf_environment()
    failures = []
    combinations = itertools.product(("artifactproneinference", "validpartinference"), (0, 1, 2), (0, 1),
                                     ("", "estimated_crop32"))
    for index, (algorithm, backend, mode, names) in enumerate(combinations):
        output = tmp_path / f"out{index}.tif"
        args = ["run", f"seamless:{algorithm}", "--", f"MODEL={MODEL}", f"SOURCE1={PAN}", f"SOURCE2={XS}",
                f"BACKEND={backend}", f"EXTENT_MODE={mode}", f"OUTPUT={output}"]
        if names:
            args += [f"OUTPUT_NAMES={names}", "EFIELD=64"]
        run = qgis_process(*args, env=env)
        case = (algorithm, backend, mode, names, run.returncode)
        if run.returncode < 0 or run.returncode > 128:
            failures.append(case + (run.stderr[-500:],))
        elif run.returncode == 0:
            assert output.exists(), case
        else:  # a refusal: a sentence naming the parameter, and no file
            assert "[parameter" in run.stderr + run.stdout and not output.exists(), case + (run.stderr[-800:],)
    assert not failures, failures
