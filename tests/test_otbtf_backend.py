"""OTBTF through pyotb: the seed's two scripts as keyword arguments, the backend choice, and the OTB comparison.

Here pyotb is installed but OTB is not importable in the test process: Auto must pick TensorFlow quietly (the
OTB diagnosis is for whoever chose OTBTF).
OTB's Python bindings without OTBTF (`make otb`, .build/otb) are used in a child process with `.build/otb/env.sh`
sourced, which keeps this process free of OTB: there pyotb has ExtractROI, BandMathX and ComputeImagesStatistics
but no TensorflowModelServe. OTBTF itself (`make otbtf`, .build/otbtf) is tested for real in test_otbtf_real.py.
"""

import json
import os
import subprocess
import sys
from dataclasses import replace

import numpy as np
import pytest
from conftest import MODEL, PAN, PLUGINS, ROOT, XS, recording_feedback, seed_sources
from osgeo import gdal

from seamless_inference.engine import FULL, OTBTF, EngineError, InferenceRequest, plan_inference, run_inference
from seamless_inference.engine import otb_process
from seamless_inference.engine.backends import choose_backend
from seamless_inference.engine.backends.otbtf import PIXEL_TYPES, OtbtfBackend, pyotb_parameters
from seamless_inference.engine.otb_process import otb_status, otbtf_status
from seamless_inference.engine.sinks import GeoTiffSink, NullSink

ARTIFACT = "seamless:artifactproneinference"
OTB_ENV = ROOT / ".build" / "otb" / "env.sh"
OTB_UNAVAILABLE = ROOT / ".build" / "otb.unavailable"
ORIGIN = (500000.0, 5000000.0)  # OTBTF misregisters on pixel sizes float32 cannot hold, not on origins (findings 3)


def write_scene(folder, size: int, data=None) -> tuple:
    """A PAN (size² at 1 m) and XS ((size/4)² x 4 bands at 4 m) pair sharing a round upper-left corner.
    Without data the files are sparse: planning reads only their headers."""
    paths = []
    for name, scale, bands, source in (("pan", 1, 1, data and data[0]), ("xs", 4, 4, data and data[1])):
        path = str(folder / f"{name}.tif")
        ds = gdal.GetDriverByName("GTiff").Create(path, size // scale, size // scale, bands, gdal.GDT_Int16,
                                                  ["SPARSE_OK=TRUE", "TILED=YES"])
        ds.SetGeoTransform((ORIGIN[0], scale, 0.0, ORIGIN[1], 0.0, -scale))
        ds.SetProjection(gdal.Open(str(PAN)).GetProjection())
        if source is not None:
            ds.WriteRaster(0, 0, size // scale, size // scale, gdal.Open(source).ReadRaster())
        ds = None
        paths.append(path)
    return tuple(paths)


@pytest.fixture(scope="module")
def big_scene(tmp_path_factory):
    """A 4096² PAN / 1024² XS scene: large enough for the seed's box=2000:2000:1000:1000."""
    return write_scene(tmp_path_factory.mktemp("big"), 4096)


def seed_request(scene, output, efield, box_start):
    """The seed's request: PAN rfield 128, XS rfield 32, `output`, efield, and the extent of output pixels
    [box_start, box_start + 1000) in both axes (1 m pixels from the scene's corner)."""
    x0, y0 = ORIGIN[0] + box_start, ORIGIN[1] - box_start
    return InferenceRequest(str(MODEL), seed_sources(*scene), output_names=(output,), efield=(efield, efield),
                            extent=(x0, y0 - 1000, x0 + 1000, y0), extent_mode=OTBTF)


def seed_kwargs(scene, efield, output) -> dict:
    """The seed's pyotb.TensorflowModelServe(...) keyword arguments (otbtf-semantics.md 2.4)."""
    pan, xs = scene
    return {"n_sources": 2,
            "source1_il": [pan], "source1_rfieldx": 128, "source1_rfieldy": 128, "source1_placeholder": "input_p",
            "source2_il": [xs], "source2_rfieldx": 32, "source2_rfieldy": 32, "source2_placeholder": "input_xs",
            "model_dir": str(MODEL), "model_fullyconv": True,
            "output_efieldx": efield, "output_efieldy": efield, "output_names": output}


@pytest.fixture()
def fresh_status():
    """otb_status() computed again in the test, and again after it (the environment may have changed)."""
    otb_process._status.clear()
    yield
    otb_process._status.clear()


def otb_python(script: str, *args, timeout: int = 300) -> subprocess.CompletedProcess:
    """Run a Python script in a child process with OTB's bindings (.build/otb/env.sh) set up."""
    command = ["bash", "-c", f'. "{OTB_ENV}" && exec "$0" "$@"', sys.executable, "-c",
               f"import sys\nsys.path.insert(0, {str(PLUGINS)!r})\n" + script, *map(str, args)]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False,
                          env=dict(os.environ, PYOTB_LOGGER_LEVEL="WARNING", OTB_LOGGER_LEVEL="WARNING"))


def require_otb_bindings():
    if not OTB_ENV.exists():
        why = OTB_UNAVAILABLE.read_text().strip() if OTB_UNAVAILABLE.exists() else "run `make otb`"
        pytest.skip(f"OTB's Python bindings are not built in .build/otb: {why}")


def last_json(run: subprocess.CompletedProcess):
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads([line for line in run.stdout.splitlines() if line.startswith("{")][-1])


# --- the pure mapping: the seed's two scripts -------------------------------------------------------------------

def test_the_artifact_run_is_the_seed_first_pyotb_call(big_scene):
    request = seed_request(big_scene, "estimated", 128, 2000)
    plan = plan_inference(request, measure_model=False)
    assert (plan.out_x.size, plan.out_y.size) == (3968, 3968)  # 4096 - 128 + 1, snapped, + 127, truncated
    app, write = pyotb_parameters(plan, "/data/map_artifacts.tif")
    assert app == seed_kwargs(big_scene, 128, "estimated")
    assert write == {"path": "/data/map_artifacts.tif", "ext_fname": "box=2000:2000:1000:1000"}


def test_the_valid_run_is_the_seed_second_call_and_its_box_is_32_pixels_further(big_scene):
    # the valid output starts 32 PAN pixels further: the same box selects a ground area shifted by 32 m
    request = seed_request(big_scene, "estimated_crop32", 64, 2032)
    plan = plan_inference(request, measure_model=False)
    app, write = pyotb_parameters(plan, "/data/map_valid.tif")
    assert app == seed_kwargs(big_scene, 64, "estimated_crop32")
    assert write == {"path": "/data/map_valid.tif", "ext_fname": "box=2000:2000:1000:1000"}


def test_the_rest_of_the_request_maps_onto_otbtf_keys(big_scene):
    pan, xs = big_scene
    sources = (replace(seed_sources(pan, xs)[0], nodata=0.0), seed_sources(pan, xs)[1])
    request = InferenceRequest(str(MODEL), sources, output_names=("estimated_crop32",), efield=(64, 64),
                               extent_mode=OTBTF, tile_size=256, data_type="uint8", background=255.0)
    plan = plan_inference(request, measure_model=False)
    # several outputs of one size are stacked (a model with two heads): a list, as OTBTF's output.names
    app, write = pyotb_parameters(replace(plan, output_names=("estimated_crop32", "labels_crop32")))
    assert app["source1_nodata"] == 0.0 and "source2_nodata" not in app
    assert app["output_names"] == ["estimated_crop32", "labels_crop32"] and app["output_bv"] == 255.0
    assert (app["optim_tilesizex"], app["optim_tilesizey"]) == (256, 256)
    # the whole grid: no box; integer output: OTB's pixel type name and the engine's compression
    assert write == {"pixel_type": "uint8", "ext_fname": "gdal:co:COMPRESS=ZSTD&gdal:co:ZSTD_LEVEL=1"}
    assert PIXEL_TYPES == {"float32": "float", "float64": "double", "uint8": "uint8", "int16": "int16",
                                   "uint16": "uint16", "int32": "int32", "uint32": "uint32"}


def test_full_extent_mode_and_engine_crops_are_refused_with_the_parameter_at_fault(big_scene, tmp_path):
    full = replace(seed_request(big_scene, "estimated", 128, 2000), extent_mode=FULL)
    with pytest.raises(EngineError, match="OTBTF extent mode only; choose OTBTF, or the TensorFlow backend "
                                          "for Full") as error:
        run_inference(full, str(tmp_path / "out.tif"), backend="otbtf")
    assert error.value.field == "extent_mode" and os.listdir(tmp_path) == []
    cropped = replace(seed_request(big_scene, "estimated", 128, 2000), crop=16)
    with pytest.raises(EngineError, match="cannot crop") as error:
        pyotb_parameters(replace(plan_inference(replace(cropped, crop=0), measure_model=False), request=cropped))
    assert error.value.field == "crop"


def test_auto_takes_otbtf_only_when_installed_and_able(monkeypatch, big_scene):
    request, sink = seed_request(big_scene, "estimated", 128, 2000), GeoTiffSink(str(ROOT / "unused.tif"))
    monkeypatch.setattr(OtbtfBackend, "available",
                        lambda self: (True, "pyotb 2.2.1 with OTB has TensorflowModelServe"))
    chosen, reason = choose_backend("auto", request, sink)
    assert (chosen.name, reason) == ("OTBTF", "pyotb 2.2.1 with OTB has TensorflowModelServe")
    # OTBTF cannot run Full mode, nor write blocks to a sink: Auto takes TensorFlow without a word about OTB
    assert [(c.name, r) for c, r in (choose_backend("auto", replace(request, extent_mode=FULL), sink),
                                     choose_backend("auto", request, NullSink()))] == [("TensorFlow", "")] * 2
    assert choose_backend("tensorflow", request, sink)[0].name == "TensorFlow"
    with pytest.raises(EngineError) as error:
        choose_backend("otbtf", replace(request, extent_mode=FULL), sink)
    assert error.value.field == "extent_mode"
    monkeypatch.setattr(OtbtfBackend, "available", lambda self: (False, "pyotb is not installed"))
    chosen, reason = choose_backend("auto", request, sink)
    assert (chosen.name, reason) == ("TensorFlow", "")  # the OTB diagnosis only for whoever chose OTBTF
    with pytest.raises(EngineError, match="not available: pyotb is not installed.*OTBTF docker") as error:
        choose_backend("otbtf", request, sink)
    assert error.value.field == "backend"
    with pytest.raises(EngineError, match="Unknown backend"):
        choose_backend("onnx", request, sink)


# --- pyotb installed, OTB not importable (this process) --------------------------------------------------------

def no_otb_here():
    """Skip when OTB is there for pyotb (tests run inside an OTB environment)."""
    available = otb_status()["pyotb"]
    if available[0]:
        pytest.skip(f"OTB is there for pyotb ({available[1]})")
    return otbtf_status()


def test_finding_otb_never_imports_pyotb_nor_changes_this_process(fresh_status):
    environment, path = dict(os.environ), list(sys.path)
    available, reason = no_otb_here()
    assert not available and reason.startswith("pyotb is installed but OTB was not found"), reason
    assert "pyotb" not in sys.modules and "otbApplication" not in sys.modules
    assert dict(os.environ) == environment and sys.path == path
    assert otbtf_status() == (available, reason)  # cached


def test_a_bogus_otb_root_is_a_reason_not_an_exit(fresh_status, monkeypatch, tmp_path):
    # OTB_ROOT pointing at a prefix without OTB: `import pyotb` raises SystemExit, in the child only
    (tmp_path / "lib").mkdir()
    monkeypatch.setenv("OTB_ROOT", str(tmp_path))
    available, reason = otbtf_status()
    assert not available and "pyotb is installed but OTB" in reason and "SystemExit" in reason
    assert "pyotb" not in sys.modules


def test_the_provider_loads_with_a_backend_parameter_defaulting_to_auto(provider):
    algorithm = provider.algorithm("artifactproneinference")
    parameter = algorithm.parameterDefinition("BACKEND")
    assert parameter.defaultValue() == 0 and len(parameter.options()) == 3
    assert parameter.options()[0].startswith("Auto")


def params(output, **extra):
    return {"MODEL": str(MODEL), "SOURCE1": [str(PAN)], "SOURCE2": [str(XS)], "OUTPUT": str(output), **extra}


def test_auto_picks_tensorflow_and_says_so_in_one_plain_line(provider, tmp_path):
    import processing

    no_otb_here()
    feedback = recording_feedback()
    result = processing.run(ARTIFACT, params(tmp_path / "auto.tif", EXTENT_MODE=1), feedback=feedback)
    lines = [line for line in feedback.lines if line.startswith("Backend:")]
    assert lines == ["Backend: TensorFlow."], lines  # no OTB diagnosis for a user who never asked for OTBTF
    assert os.path.exists(result["OUTPUT"])


def test_forcing_otbtf_without_it_is_a_clear_error_naming_backend(provider, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    no_otb_here()
    with pytest.raises(QgsProcessingException, match=r"OTBTF backend is not available: pyotb is installed but "
                                                     r"OTB.*\[parameter BACKEND\]"):
        processing.run(ARTIFACT, params(tmp_path / "otbtf.tif", EXTENT_MODE=1, BACKEND=2))
    assert os.listdir(tmp_path) == []


# --- OTB without OTBTF (a child process with .build/otb/env.sh) -------------------------------------------------

@pytest.fixture(scope="module")
def sample_outputs(tmp_path_factory):
    """The sample's artifact-prone and valid-part outputs in both extent modes (OTBTF mode: 32 px apart)."""
    folder = tmp_path_factory.mktemp("outputs")
    paths = {}
    for mode in (FULL, OTBTF):
        for name in ("estimated", "estimated_crop32"):
            paths[mode, name] = str(folder / f"{mode}_{name}.tif")
            run_inference(InferenceRequest(str(MODEL), seed_sources(), output_names=(name,), extent_mode=mode),
                          paths[mode, name])
    return paths


COMPARE = """
import json, math
from seamless_inference.engine.metrics import compare_rasters
from seamless_inference.engine.otb_process import otbtf_status
from seamless_inference.engine.backends import choose_backend
from seamless_inference.engine.sinks import GeoTiffSink
from seamless_inference.engine import EngineError, InferenceRequest, Source
fields = ("vector_rmse", "band_rmse", "mae", "max_abs_error", "max_squared_error", "pixels", "window_reference",
          "window_image", "above_tolerance", "method")
pairs = []
for reference, image in zip(sys.argv[1::2], sys.argv[2::2]):
    results = {m: compare_rasters(reference, image, method=m, tolerance=0.01) for m in ("otb", "numpy")}
    pairs.append({m: {f: getattr(c, f) for f in fields} for m, c in results.items()})
auto = compare_rasters(sys.argv[1], sys.argv[2]).method
request = InferenceRequest("model", (Source((sys.argv[1],), (8, 8)),), extent_mode="otbtf")
sink = GeoTiffSink(sys.argv[1] + ".unused.tif")
try:
    choose_backend("otbtf", request, sink)
    forced = None
except EngineError as exc:
    forced = [str(exc), exc.field]
chosen, reason = choose_backend("auto", request, sink)
print(json.dumps({"pairs": pairs, "auto": auto, "status": otbtf_status(), "choice": [chosen.name, reason],
                  "forced": forced}))
"""


def test_the_otb_comparison_equals_numpy_also_over_different_extents(sample_outputs):
    require_otb_bindings()
    same = (sample_outputs[FULL, "estimated_crop32"], sample_outputs[FULL, "estimated"])
    shifted = (sample_outputs[OTBTF, "estimated_crop32"], sample_outputs[OTBTF, "estimated"])
    answer = last_json(otb_python(COMPARE, *same, *shifted, *shifted[::-1]))
    for pair in answer["pairs"]:
        otb, numpy = pair["otb"], pair["numpy"]
        assert (otb["method"], numpy["method"]) == ("otb", "numpy")
        for name in ("pixels", "window_reference", "window_image", "above_tolerance"):
            assert otb[name] == numpy[name], name
        for name in ("vector_rmse", "band_rmse", "mae", "max_abs_error", "max_squared_error"):
            assert np.allclose(otb[name], numpy[name], rtol=1e-6, atol=0), (name, otb[name], numpy[name])
    assert answer["pairs"][0]["numpy"]["pixels"] == 500 * 500
    assert answer["pairs"][1]["numpy"]["window_reference"] == [0, 0, 352, 352]  # the seed's helper would fail
    assert answer["pairs"][1]["numpy"]["window_image"] == [32, 32, 352, 352]
    assert answer["auto"] == "otb"  # OTB is available there: the seed's applications compute the comparison
    # pyotb with OTB but without OTBTF: Auto says so, forcing OTBTF names BACKEND
    available, reason = answer["status"]
    assert not available and "not OTBTF: pyotb has no TensorflowModelServe" in reason
    assert answer["choice"] == ["TensorFlow", ""]
    assert answer["forced"][1] == "backend" and "TensorflowModelServe" in answer["forced"][0]


def test_forcing_the_otb_comparison_without_otb_names_method(tmp_path, sample_outputs):
    no_otb_here()
    with pytest.raises(EngineError, match="OTB comparison cannot run: pyotb is installed but OTB") as error:
        from seamless_inference.engine.metrics import compare_rasters

        compare_rasters(sample_outputs[FULL, "estimated"], sample_outputs[FULL, "estimated_crop32"], method="otb")
    assert error.value.field == "method"
