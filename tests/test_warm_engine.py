"""The warm engine (SEAMLESS_WARM_ENGINE): qgis_process calls that reuse one resident engine process give the same
pixels as a run in process; a killed engine is replaced by the next call; a cancel or SIGTERM of the calling
process stops the engine's run and leaves no output; a folder others can enter is refused (the run happens here)."""

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import MODEL, PAN, PLUGINS, QGIS_PROCESS, ROOT, XS, qgis_process, seed_sources
from osgeo import gdal

from seamless_inference.engine import EngineError, InferenceRequest, Source, run_inference
from seamless_inference.engine.request import request_from_json, request_to_json
from seamless_inference.engine.warm import run_inference_warm, stop_engines
from seamless_inference.engine.warm_link import LinkError, idle_seconds, private_folder

sys.path.insert(0, str(ROOT / "bench"))
from scene import make_scene  # noqa: E402 (the bench's scene maker)

VALID = "seamless:validpartinference"
STARTED = re.compile(r"Warm engine: started;")
CALL = re.compile(r"Warm engine: pid (\d+), call (\d+)\.")


@pytest.fixture
def warm(tmp_path):
    """The variables of a warm engine of 120 s idle in a private folder of this test; the engine is stopped after."""
    folder = tmp_path / "warm"
    folder.mkdir(mode=0o700)
    env = {"SEAMLESS_WARM_ENGINE": "120", "SEAMLESS_WARM_DIR": str(folder)}
    yield env
    stop_engines(str(folder))


def pixels(path) -> np.ndarray:
    return gdal.Open(str(path)).ReadAsArray()


def valid_part(output, *extra, env=None):
    return qgis_process("run", VALID, "--", f"MODEL={MODEL}", f"SOURCE1={PAN}", f"SOURCE2={XS}", *extra,
                        f"OUTPUT={output}", env=env)


def engine_pid(log: str) -> int:
    """The pid of the engine that served a call, from its log line."""
    match = CALL.search(log)
    assert match, log[-3000:]
    return int(match[1])


# -- without QGIS or TensorFlow: the request's JSON form, the switch, the folder

def test_a_request_goes_as_json_and_comes_back_equal():
    request = InferenceRequest(str(MODEL), (Source((str(PAN),), 128, "input_p", nodata=0, bands=(1,), scale=0.5),
                                            Source((str(XS),), None, offset=(1, 2, 3, 4))),
                               output_names="estimated_crop32", efield=64, extent=(1, 2, 3, 4), valid_part=True)
    text = json.dumps(request_to_json(request))
    assert request_from_json(json.loads(text)) == request


def test_a_request_with_unknown_fields_or_objects_is_refused():
    data = json.loads(json.dumps(request_to_json(InferenceRequest(str(MODEL), seed_sources()))))
    with pytest.raises(EngineError, match="unknown InferenceRequest fields: command"):
        request_from_json(dict(data, command="rm -rf /"))
    data["sources"][0]["paths"] = [{"__reduce__": "os.system"}]
    with pytest.raises(EngineError, match="type dict"):
        request_from_json(data)


def test_the_switch_reads_on_off_and_an_idle_time():
    assert idle_seconds(None) is None and idle_seconds("0") is None and idle_seconds("off") is None
    assert idle_seconds("1") == idle_seconds("on") == 600.0
    assert idle_seconds("45") == 45.0
    with pytest.raises(EngineError, match="SEAMLESS_WARM_ENGINE"):
        idle_seconds("soon")


def test_a_folder_others_can_enter_is_refused_and_the_run_happens_here(tmp_path, monkeypatch):
    folder = tmp_path / "open"
    folder.mkdir(mode=0o755)
    os.chmod(folder, 0o755)
    monkeypatch.setenv("SEAMLESS_WARM_DIR", str(folder))
    with pytest.raises(LinkError, match="can be entered by other users"):
        private_folder()
    lines = []
    result = run_inference_warm(InferenceRequest(str(MODEL), seed_sources(), output_names=("estimated_crop32",)),
                                str(tmp_path / "out.tif"), log_info=lines.append, idle=30)
    assert any("Warm engine: not used" in line and "running in this process" in line for line in lines), lines
    assert result.path == str(tmp_path / "out.tif") and os.listdir(folder) == []


# -- qgis_process through the engine

@pytest.mark.slow
def test_second_and_later_calls_reuse_the_engine_with_the_same_pixels(warm, tmp_path):
    engine = tmp_path / "engine.tif"
    run_inference(InferenceRequest(str(MODEL), seed_sources(), output_names=("estimated_crop32",)), str(engine))
    runs = []
    for call in (1, 2):
        output = tmp_path / f"warm{call}.tif"
        run = valid_part(output, env=warm)
        assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
        assert f", call {call}." in run.stdout, run.stdout[-3000:]
        assert "using estimated_crop32" in run.stdout  # the engine's log lines reach the caller
        assert np.array_equal(pixels(output), pixels(engine))
        runs.append(run.stdout)
    assert STARTED.search(runs[0]) and not STARTED.search(runs[1])  # started by the first call, kept
    assert engine_pid(runs[0]) == engine_pid(runs[1]) != os.getpid()
    folder = Path(warm["SEAMLESS_WARM_DIR"])
    assert oct(folder.stat().st_mode & 0o777) == "0o700"
    sockets = [p for p in folder.iterdir() if p.name.endswith(".sock")]
    assert len(sockets) == 1 and sockets[0].stat().st_mode & 0o077 == 0


@pytest.mark.slow
def test_a_killed_engine_is_replaced_by_the_next_call(warm, tmp_path):
    first = valid_part(tmp_path / "one.tif", env=warm)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    pid = engine_pid(first.stdout)
    os.kill(pid, signal.SIGKILL)  # its socket stays behind, refusing connections
    deadline = time.monotonic() + 30
    while Path(f"/proc/{pid}").exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    second = valid_part(tmp_path / "two.tif", env=warm)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert STARTED.search(second.stdout) and engine_pid(second.stdout) != pid, second.stdout[-3000:]
    assert np.array_equal(pixels(tmp_path / "one.tif"), pixels(tmp_path / "two.tif"))


# A script's process: QGIS and its Processing framework first (what QGIS imports itself is not the plugin's cost),
# then the plugin's provider, then one valid-part run through the warm engine. Prints what the plugin made this
# process import: numpy or TensorFlow imported from the plugin's code, and the engine's pipeline modules.
THIN_CALLER = r"""
import json, os, sys, traceback
plugins, model, pan, xs, output = sys.argv[1:]
sys.path.insert(0, plugins)
sys.path.insert(0, "/usr/share/qgis/python/plugins")  # QGIS's processing
from qgis.core import QgsApplication, QgsProcessingFeedback
app = QgsApplication([], False)
app.initQgis()
from processing.core.Processing import Processing
import processing
Processing.initialize()
plugin_dir = os.path.realpath(os.path.join(plugins, "seamless_inference"))
by_plugin = []

class Watch:
    # notes numpy or TensorFlow when the plugin's own code is what imports it first
    def find_spec(self, name, path=None, target=None):
        if name in ("numpy", "tensorflow") and name not in sys.modules:
            frames = [f.filename for f in traceback.extract_stack()]
            if any(os.path.realpath(f).startswith(plugin_dir + os.sep) for f in frames):
                by_plugin.append(name)
        return None

numpy_before = "numpy" in sys.modules  # imported by QGIS itself
sys.meta_path.insert(0, Watch())
pipeline = ("inference", "planning", "model", "analysis", "backends", "sinks", "reading", "graph", "probe",
            "distortion", "metrics", "class_map", "preparing", "sizes", "tile_speed")

def pipeline_modules():
    return sorted(m for m in sys.modules if m.split(".")[:2] == ["seamless_inference", "engine"]
                  and len(m.split(".")) > 2 and m.split(".")[2] in pipeline)

from seamless_inference import classFactory
plugin = classFactory(None)  # kept: it owns the provider
plugin.initProcessing()
provider = sorted(by_plugin) + pipeline_modules()
lines = []

class Feedback(QgsProcessingFeedback):
    def pushInfo(self, info):
        lines.append(info)

result = processing.run("seamless:validpartinference", {"MODEL": model, "SOURCE1": pan, "SOURCE2": xs,
                                                         "OUTPUT": output}, feedback=Feedback())
run = sorted(set(by_plugin)) + pipeline_modules()
print(json.dumps({"provider": provider, "run": run, "ok": os.path.exists(result["OUTPUT"]),
                  "numpy_before": numpy_before, "engine": any("Warm engine: pid" in line for line in lines)}),
      flush=True)
os._exit(0)  # QGIS's teardown after TensorFlow's may crash (the run in process); the result is out
"""


@pytest.mark.slow
def test_a_call_through_the_engine_imports_no_pipeline_in_the_caller(warm, tmp_path):
    """The provider loads, and a run through the warm engine goes, without the plugin importing numpy, TensorFlow
    or the pipeline's modules in the calling process: the second call of a script pays QGIS's start and the run,
    not the imports. (What QGIS imports itself, numpy on some versions, is not counted.)"""
    output = tmp_path / "out.tif"
    run = subprocess.run([sys.executable, "-c", THIN_CALLER, str(PLUGINS), str(MODEL), str(PAN), str(XS), str(output)],
                         capture_output=True, text=True, timeout=600, env=dict(os.environ, QT_QPA_PLATFORM="offscreen",
                                                                              **warm), check=False)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    found = json.loads(run.stdout.strip().splitlines()[-1])
    assert found["ok"] and found["engine"] and output.exists(), found
    assert found["provider"] == [] and found["run"] == [], found
    in_process = subprocess.run([sys.executable, "-c", THIN_CALLER, str(PLUGINS), str(MODEL), str(PAN), str(XS),
                                 str(tmp_path / "here.tif")], capture_output=True, text=True, timeout=600,
                                env=dict(os.environ, QT_QPA_PLATFORM="offscreen", SEAMLESS_WARM_ENGINE="0"),
                                check=False)
    assert in_process.returncode == 0, in_process.stdout[-3000:] + in_process.stderr[-3000:]
    here = json.loads(in_process.stdout.strip().splitlines()[-1])
    # the same watch sees the pipeline when the run happens in this process: the check can fail
    assert not here["engine"] and "seamless_inference.engine.inference" in here["run"], here
    assert "numpy" in here["run"] or here["numpy_before"], here
    assert np.array_equal(pixels(output), pixels(tmp_path / "here.tif"))


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A 2048 px PAN / 512 px XS scene: 16 tiles of 512 px, one a TensorFlow call, several seconds long."""
    return make_scene(2048, tmp_path_factory.mktemp("scene"))


def start(scene, output: Path, env: dict) -> subprocess.Popen:
    pan, xs = scene
    return subprocess.Popen([str(QGIS_PROCESS), "run", VALID, "--", f"MODEL={MODEL}", f"SOURCE1={pan}",
                             f"SOURCE2={xs}", "TILE_SIZE=512", "BATCH_SIZE=1", f"OUTPUT={output}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=dict(os.environ, **env))


def wait_for_partial(folder: Path, process: subprocess.Popen, timeout: float = 240) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [name for name in os.listdir(folder) if name.endswith(".partial.tif")]
        if found:
            return found
        assert process.poll() is None, process.communicate()[0][-3000:]
        time.sleep(0.05)
    process.kill()
    raise AssertionError("the run never started writing")


def ping(warm) -> int:
    """The pid of the engine listening in the test's folder (it answers a ping)."""
    folder = Path(warm["SEAMLESS_WARM_DIR"])
    (path,) = [p for p in folder.iterdir() if p.name.endswith(".sock")]
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as connection:
        connection.settimeout(30)
        connection.connect(str(path))
        connection.sendall(b'{"ping": true}\n')
        return json.loads(connection.makefile().readline())["pong"]


@pytest.mark.slow
def test_sigterm_to_the_caller_stops_the_engines_run_and_leaves_nothing(warm, scene, tmp_path):
    output = tmp_path / "out" / "result.tif"
    output.parent.mkdir()
    process = start(scene, output, warm)
    wait_for_partial(output.parent, process)  # written by the engine, under its own pid
    process.send_signal(signal.SIGTERM)
    engine = ping(warm)  # (a process ended by a signal leaves its buffered log unprinted)
    log = process.communicate(timeout=240)[0]
    assert process.returncode == -signal.SIGTERM, log[-3000:]  # ended by the signal, as asked
    assert os.listdir(output.parent) == [], log[-3000:]  # the engine removed its temporary file first
    again = valid_part(tmp_path / "next.tif", env=warm)  # and serves the next call
    assert again.returncode == 0 and engine_pid(again.stdout) == engine, again.stdout[-3000:]


@pytest.mark.slow
def test_an_engine_killed_mid_run_leaves_the_call_to_finish_here(warm, scene, tmp_path):
    output = tmp_path / "out" / "result.tif"
    output.parent.mkdir()
    first = valid_part(tmp_path / "first.tif", env=warm)  # the engine is up
    pid = engine_pid(first.stdout)
    process = start(scene, output, warm)
    wait_for_partial(output.parent, process)
    os.kill(pid, signal.SIGKILL)
    log = process.communicate(timeout=600)[0]
    assert process.returncode == 0, log[-3000:]
    assert "Warm engine: not used (the engine ended mid-run); running in this process." in log, log[-3000:]
    assert sorted(os.listdir(output.parent)) == ["result.tif"], log[-3000:]  # the engine's partial removed


def test_a_cancel_through_the_engine_stops_within_a_tile(provider, warm, scene, tmp_path, monkeypatch):
    import processing
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    for name, value in warm.items():
        monkeypatch.setenv(name, value)

    class CancelAt(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.lines = []
            self.progressChanged.connect(self.check)

        def pushInfo(self, info):  # noqa: N802 (QGIS API name)
            self.lines.append(info)

        def check(self, value):
            if value >= 50:
                self.cancel()

    feedback = CancelAt()
    pan, xs = scene
    with pytest.raises(QgsProcessingException, match="Cancelled: no output file was written"):
        processing.run(VALID, {"MODEL": str(MODEL), "SOURCE1": [str(pan)], "SOURCE2": [str(xs)],
                               "TILE_SIZE": 512, "BATCH_SIZE": 1, "OUTPUT": str(tmp_path / "out.tif")},
                       feedback=feedback)
    assert any(CALL.search(line) for line in feedback.lines), feedback.lines  # the engine ran it
    # 16 tiles of 1/16 each: the engine stops at its next tile boundary after the cancel reaches it (the tile it
    # may have begun while the message crossed the socket: at most one more)
    assert 50 <= feedback.progress() <= 50 + 2 * 100 / 16 + 1e-6
    assert sorted(os.listdir(tmp_path)) == ["warm"]
