"""Valid-part inference on a Dask cluster: a real scheduler and real worker processes on this machine, started
exactly as the README's recipe says (`dask scheduler --port P`, `PYTHONPATH=<plugins> dask worker tcp://... --nthreads
1`); the same pixels as in this process, a lost worker costs a retry, a cancel leaves nothing."""

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections import Counter

import numpy as np
import pytest
from conftest import MODEL, PAN, PLUGINS, ROOT, XS, qgis_process
from osgeo import gdal

from seamless_inference.engine import (Cancelled, EngineError, InferenceRequest, Source, plan_inference,
                                       run_inference)
from seamless_inference.engine.backends.dask_local import stop_processes

distributed = pytest.importorskip("distributed")
DASK = shutil.which("dask", path=os.path.dirname(sys.executable)) or shutil.which("dask")


def readme_recipe() -> tuple:
    """The README's two commands (section "Beyond one machine"): (scheduler argv, worker PYTHONPATH, worker argv),
    read from the README itself, so that these tests run what it says."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    scheduler = re.search(r"^(dask scheduler .*?)(?:\s+#.*)?$", text, re.MULTILINE).group(1).split()
    worker = re.search(r"^PYTHONPATH=(\S+) (dask worker .*?)(?:\s+#.*)?$", text, re.MULTILINE)
    return scheduler, worker.group(1), worker.group(2).split()


def test_the_readme_recipe_is_the_one_these_tests_start():
    assert readme_recipe() == (["dask", "scheduler", "--port", "8786"], "/shared/qgis-plugins",
                               ["dask", "worker", "tcp://scheduler-host:8786", "--nthreads", "1"])


class ReadmeCluster:
    """A scheduler and workers started with the README's commands (readme_recipe: the venv's dask, a free port of
    this machine for 8786, 127.0.0.1 for scheduler-host, .build/plugins for /shared/qgis-plugins); each process in
    a session of its own (stop() ends them all, nanny and worker)."""

    def __init__(self, folder, pythonpath=str(PLUGINS)):
        self.folder, self.pythonpath, self.processes = folder, pythonpath, []
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.address = f"tcp://127.0.0.1:{self.port}"
        self.log = open(folder / "cluster.log", "ab")  # noqa: SIM115 (closed by stop)
        self.scheduler = self.start(self.readme(readme_recipe()[0]), os.environ)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    break
            time.sleep(0.2)

    def readme(self, command: list) -> list:
        """A README command with this machine's dask, port and address."""
        values = {"dask": DASK, "8786": str(self.port), "tcp://scheduler-host:8786": self.address}
        return [values.get(word, word) for word in command]

    def start(self, command, env):
        env = dict(env, TMPDIR=str(self.folder))  # Dask's scratch space with the test's files, even when killed
        process = subprocess.Popen(command, env=env, stdout=self.log, stderr=self.log, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
        self.processes.append(process)
        return process

    def add_worker(self, pythonpath=None):
        """The README's worker command; its PYTHONPATH is the folder that holds the plugin's folder (or what
        `pythonpath` says), nothing else."""
        env = dict(os.environ, PYTHONPATH=self.pythonpath if pythonpath is None else pythonpath)
        return self.start(self.readme(readme_recipe()[2]), env)

    def client(self, workers: int):
        client = distributed.Client(self.address, timeout=60, set_as_default=False)
        client.wait_for_workers(workers, timeout=120)
        return client

    def stop(self):
        stop_processes(self.processes)
        self.log.close()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A scheduler and two workers as the README starts them (each with its nanny: a killed worker restarts)."""
    readme = ReadmeCluster(tmp_path_factory.mktemp("cluster"))
    for _ in range(2):
        readme.add_worker()
    client = readme.client(2)
    yield readme.address, client
    client.close()
    readme.stop()


def multi_tile_scene(folder, size=1024) -> tuple:
    """The sample mirrored into a size x size PAN / (size / 4)^2 XS scene (bench/scene.py)."""
    sys.path.insert(0, str(ROOT / "bench"))
    from scene import make_scene

    return tuple(str(p) for p in make_scene(size, folder))


def request(pan, xs, **changes) -> InferenceRequest:
    return InferenceRequest(str(MODEL), (Source((str(pan),), (128, 128)), Source((str(xs),), None)), valid_part=True,
                            **changes)


def assert_same_raster(a_path, b_path):
    a, b = gdal.Open(str(a_path)), gdal.Open(str(b_path))
    assert (a.RasterXSize, a.RasterYSize, a.RasterCount) == (b.RasterXSize, b.RasterYSize, b.RasterCount)
    assert a.GetGeoTransform() == b.GetGeoTransform() and a.GetProjection() == b.GetProjection()
    assert np.abs(a.ReadAsArray() - b.ReadAsArray()).max() <= 1e-6
    assert [a.GetRasterBand(i + 1).GetDescription() for i in range(a.RasterCount)] == \
        [b.GetRasterBand(i + 1).GetDescription() for i in range(b.RasterCount)]


def leftovers(folder) -> list:
    return [name for name in os.listdir(folder) if "parts" in name or "partial" in name]


@pytest.fixture(params=["blocks sent back", "part files"])
def mode(request, monkeypatch):
    """Both ways a cluster returns its pixels: blocks sent back (workers on this machine) or part files on the
    shared storage (workers elsewhere; forced here, the workers being on 127.0.0.1)."""
    from seamless_inference.engine.backends import cluster as backend

    monkeypatch.setattr(backend, "LOOPBACK_BLOCKS", request.param == "blocks sent back")
    return request.param


def test_a_part_s_plan_travels_as_json_and_comes_back_equal():
    """Workers get their part as JSON text (never pickle): the plan comes back equal, measurement included, and
    anything but plan_to_json's form is refused."""
    from seamless_inference.engine.plan_json import plan_from_json, plan_to_json

    plan = plan_inference(request(PAN, XS))
    data = json.loads(json.dumps(plan_to_json(plan)))
    assert plan.measurement is not None and plan_from_json(data) == plan
    with pytest.raises(EngineError, match="command"):
        plan_from_json(dict(data, command="rm -rf /"))
    with pytest.raises(EngineError, match="type dict"):
        plan_from_json(dict(data, names=[{"__reduce__": "os.system"}]))
    with pytest.raises(EngineError, match="damaged grid"):
        plan_from_json(dict(data, out_x={"offset": 0}))


@pytest.mark.slow
@pytest.mark.parametrize("scene", ["sample", "multi-tile"])
def test_the_cluster_gives_the_in_process_pixels(cluster, tmp_path, scene, mode):
    address, _ = cluster
    pan, xs = (PAN, XS) if scene == "sample" else multi_tile_scene(tmp_path / "scene")
    changes = {} if scene == "sample" else {"tile_size": 256}
    here, there = tmp_path / "here.tif", tmp_path / "there.tif"
    run_inference(request(pan, xs, **changes), str(here))
    lines, progress = [], []
    result = run_inference(request(pan, xs, **changes), str(there), cluster=address, log_info=lines.append,
                           progress=progress.append)
    assert_same_raster(here, there)
    assert lines[0] == f"Backend: Dask ({address})." and result.device == f"Dask cluster {address}"
    assert progress[-1] == 1.0 and progress == sorted(progress)  # completed parts: increasing to 1
    assert not leftovers(tmp_path)


@pytest.mark.slow
def test_a_worker_killed_mid_run_costs_a_retry_not_the_run(cluster, tmp_path, monkeypatch, mode):
    from seamless_inference.engine.backends import cluster as backend

    address, client = cluster
    pan, xs = multi_tile_scene(tmp_path / "scene")
    here, there = tmp_path / "here.tif", tmp_path / "there.tif"
    run_inference(request(pan, xs, tile_size=128), str(here))
    monkeypatch.setattr(backend, "PART_PIXELS", 128 * 128 * 2)  # many small parts: some are on the victim
    pids = client.run(os.getpid)  # the worker processes, under their nannies
    victim = sorted(pids.values())[0]
    killed = []

    def kill_once(fraction):
        if not killed and fraction > 0:
            os.kill(victim, signal.SIGKILL)
            killed.append(fraction)

    run_inference(request(pan, xs, tile_size=128), str(there), cluster=address, progress=kill_once)
    client.wait_for_workers(2, timeout=120)  # its nanny restarts it: the next test gets two workers again
    assert killed and killed[0] < 1.0
    assert_same_raster(here, there)
    assert not leftovers(tmp_path)


@pytest.mark.slow
def test_a_result_lost_with_its_worker_after_it_was_done_is_waited_for_again(cluster, tmp_path):
    """The race CI met: parts done when the client looked, then lost with the worker that held them before the
    client read them. The scheduler computes them again; the client waits for them instead of failing the run."""
    from seamless_inference.engine.backends.base import Monitor
    from seamless_inference.engine.backends.cluster import gather

    _, client = cluster
    slow = tmp_path / "recomputing-is-slow"  # a part computed again takes 3 s: its status stays visibly not done
    task = "__import__('time').sleep(3 if __import__('os').path.exists(slow) else 0) or i * 3"
    run = uuid.uuid4().hex[:8]
    futures = [client.submit(eval, task, {"slow": str(slow), "i": i}, key=f"lost-{run}-{i}", pure=False)
               for i in range(8)]
    [f.result() for f in futures]  # all done, each result still held by its worker
    slow.touch()
    pids, seen, got = client.run(os.getpid), [], []

    def each(value):
        got.append(value)
        if not seen:  # while the first result is read: kill the worker that holds most of the others
            holders = client.who_has([f for f in futures if f.status == "finished"])
            counts = Counter(address for addresses in holders.values() for address in addresses)
            os.kill(pids[counts.most_common(1)[0][0]], signal.SIGKILL)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and not seen:
                seen.extend(f.key for f in futures if f.status in ("lost", "pending"))
                time.sleep(0.05)

    stop = distributed.Event(f"seamless-stop-{run}", client=client)
    gather(client, futures, stop, Monitor(say=lambda _: None), each)
    client.wait_for_workers(2, timeout=120)  # its nanny restarts it: the next test gets two workers again
    assert seen, "no result was lost: the race was not reproduced"
    assert sorted(got) == [i * 3 for i in range(8)]


@pytest.mark.slow
def test_relative_paths_are_the_client_s_not_the_workers(cluster, tmp_path, monkeypatch):
    """The workers' working folder is not the client's: relative paths are resolved here, before they travel."""
    address, _ = cluster
    for path in (PAN, XS):
        shutil.copy(path, tmp_path)
    monkeypatch.chdir(tmp_path)
    run_inference(request("pan.tif", "xs.tif"), "here.tif")
    run_inference(request("pan.tif", "xs.tif"), "there.tif", cluster=address)
    assert_same_raster(tmp_path / "here.tif", tmp_path / "there.tif")
    assert not leftovers(tmp_path)


@pytest.mark.slow
def test_cancel_leaves_no_part_no_output_and_no_running_task(cluster, tmp_path, monkeypatch, mode):
    from seamless_inference.engine.backends import cluster as backend

    address, client = cluster
    monkeypatch.setattr(backend, "PART_PIXELS", 128 * 128)  # one tile a part: the run is still going on
    pan, xs = multi_tile_scene(tmp_path / "scene")
    out = tmp_path / "out" / "cancelled.tif"
    out.parent.mkdir()
    seen = []
    with pytest.raises(Cancelled):
        run_inference(request(pan, xs, tile_size=128), str(out), cluster=address, progress=seen.append,
                      is_canceled=lambda: bool(seen))
    assert seen and seen[-1] < 1.0 and os.listdir(out.parent) == []
    assert not any(client.processing().values())  # nothing of the run still runs on the workers


def test_a_bad_cluster_is_a_sentence_naming_it(tmp_path):
    from seamless_inference.engine import EngineError

    for cluster, words in (("nowhere", "neither a scheduler address"), ("local:0", "neither a scheduler address"),
                           ("tcp://127.0.0.1:9", "No Dask scheduler answers")):
        with pytest.raises(EngineError, match=words) as error:
            run_inference(request(PAN, XS), str(tmp_path / "out.tif"), cluster=cluster)
        assert error.value.field == "cluster" and os.listdir(tmp_path) == []


@pytest.mark.slow
def test_local_2_through_qgis_process_gives_the_same_pixels(tmp_path):
    here = tmp_path / "here.tif"
    run_inference(request(PAN, XS), str(here))
    there = tmp_path / "there.tif"
    run = qgis_process("run", "seamless:validpartinference", "--", f"MODEL={MODEL}", f"SOURCE1={PAN}",
                       f"SOURCE2={XS}", "CLUSTER=local:2", f"OUTPUT={there}")
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-2000:]
    assert "Backend: Dask (local:2)." in run.stdout + run.stderr
    assert_same_raster(here, there)
    assert not leftovers(tmp_path)


WITHOUT_DASK = """
import sys
sys.modules["distributed"] = None  # as if Dask were not installed
sys.path.insert(0, sys.argv[1])
from seamless_inference.engine import DependencyMissing, InferenceRequest, Source, run_inference
request = InferenceRequest(sys.argv[2], (Source((sys.argv[3],), (128, 128)), Source((sys.argv[4],), None)))
run_inference(request, sys.argv[5])  # here: no Dask needed
try:
    run_inference(request, sys.argv[5] + ".cluster.tif", cluster="local:2")
except DependencyMissing as exc:
    print("MISSING", exc)
"""


def test_without_dask_the_engine_runs_and_a_cluster_says_how_to_install_it(tmp_path):
    run = subprocess.run([sys.executable, "-c", WITHOUT_DASK, str(PLUGINS), str(MODEL), str(PAN), str(XS),
                          str(tmp_path / "out.tif")], capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "MISSING A cluster needs Dask's distributed" in run.stdout and 'pip install "dask[distributed]"' in run.stdout
    assert sorted(os.listdir(tmp_path)) == ["out.tif"]
