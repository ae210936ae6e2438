"""The bad-input and fault catalogue, the cluster (CLUSTER): a bad address, a scheduler with no worker, workers that
cannot import the plugin or do not see the model's path, a model that fails on a worker, every worker killed
mid-run, a client killed with its `local:N` cluster, too many local workers (and a system out of processes). Each
ends in a message naming CLUSTER (or the parameter at fault) and the fix, with not one file created, changed or
left; the scheduler and workers are started exactly as the README says (test_cluster.ReadmeCluster)."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest
from conftest import PLUGINS
from test_bad_input_catalogue import ARTIFACT, VALID, refused, single, snapshot, tf_model
from test_bad_input_catalogue import work  # noqa: F401 (a fixture, used by its name)
from test_cluster import ReadmeCluster

distributed = pytest.importorskip("distributed")


@pytest.fixture()
def readme(tmp_path):
    """A scheduler started as the README says, without workers yet; stopped with everything it started."""
    folder = tmp_path / "cluster"
    folder.mkdir()
    cluster = ReadmeCluster(folder)
    yield cluster
    cluster.stop()


def cluster_params(work, address, **params):
    return {"CLUSTER": address, "OUTPUT": str(work / "result.tif"), **params}


def test_an_address_where_no_scheduler_answers(provider, work):
    refused(VALID, work, cluster_params(work, "tcp://127.0.0.1:9"), "No Dask scheduler answers at tcp://127.0.0.1:9",
            "dask scheduler", "[parameter CLUSTER]")


def test_neither_an_address_nor_local(provider, work):
    refused(VALID, work, cluster_params(work, "my-cluster"), "neither a scheduler address", "local:N",
            "[parameter CLUSTER]")


def test_a_scheduler_with_no_worker_is_waited_for_a_stated_time(provider, work, readme, monkeypatch):
    monkeypatch.setenv("SEAMLESS_CLUSTER_WAIT", "2")
    start = time.monotonic()
    refused(VALID, work, cluster_params(work, readme.address), f"The Dask scheduler at {readme.address} has no "
            "worker (waited 2 s)", f"dask worker {readme.address} --nthreads 1", f"PYTHONPATH={PLUGINS}",
            "SEAMLESS_CLUSTER_WAIT", "[parameter CLUSTER]")
    assert time.monotonic() - start < 60


def test_workers_that_cannot_import_the_plugin_say_how_to_start_them(provider, work, readme):
    readme.add_worker(pythonpath="")  # the README's command without its PYTHONPATH
    readme.client(1).close()
    refused(VALID, work, cluster_params(work, readme.address), "cannot import seamless_inference",
            "No module named 'seamless_inference'", f"`PYTHONPATH={PLUGINS} dask worker {readme.address} --nthreads 1`",
            "[parameter CLUSTER]")


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="/proc/self")
def test_workers_that_do_not_see_the_model_at_the_client_s_path(provider, work, readme, monkeypatch):
    """The same path that is not the same folder on a worker (another machine's mount): /proc/self/cwd is this
    process's working folder here (the work folder) and the worker's own there."""
    readme.add_worker()
    readme.client(1).close()
    monkeypatch.chdir(work)
    refused(VALID, work, cluster_params(work, readme.address, MODEL="/proc/self/cwd/model"), "The worker tcp://",
            "does not see /proc/self/cwd/model", "at the same path on every machine", "[parameter CLUSTER]")


def test_a_model_that_fails_on_a_worker_is_the_worker_s_own_message(provider, work, readme, tmp_path):
    readme.add_worker()
    readme.client(1).close()
    model = tf_model(tmp_path / "raises", "raises")
    refused(ARTIFACT, work, single(work, {"raises": model}, "raises", EFIELD=64, CLUSTER=readme.address),
            "model itself raised",
            "input out of the trained range", "[parameter MODEL]", defaults=False)


def test_every_worker_killed_mid_run(provider, work, readme, monkeypatch):
    """The README's worker (nanny and worker: its whole session) killed while it computes a part: the parts would
    wait for a worker forever; the run stops after SEAMLESS_CLUSTER_WAIT seconds instead."""
    monkeypatch.setenv("SEAMLESS_CLUSTER_WAIT", "3")
    worker = readme.add_worker()
    watcher = readme.client(1)
    killed = []

    def kill_when_busy():
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not any(watcher.processing().values()):
            time.sleep(0.2)
        os.killpg(worker.pid, signal.SIGKILL)
        killed.append(time.monotonic())

    thread = threading.Thread(target=kill_when_busy, daemon=True)
    thread.start()
    try:
        refused(VALID, work, cluster_params(work, readme.address), f"The Dask cluster {readme.address} lost every "
                "worker mid-run (none for 3 s", "start workers again", "[parameter CLUSTER]")
    finally:
        thread.join(timeout=10)
        watcher.close()
    assert killed


def test_too_many_local_workers(provider, work):
    cores = len(os.sched_getaffinity(0))
    refused(VALID, work, cluster_params(work, "local:999"), "asks for 999 worker processes",
            f"this machine has {cores} CPU core(s)", f"local:{cores}", "[parameter CLUSTER]")


KILLED_CLIENT = """
import sys
sys.path.insert(0, sys.argv[1])
from seamless_inference.engine import InferenceRequest, Source, run_inference
request = InferenceRequest(sys.argv[2], (Source((sys.argv[3],), (128, 128)), Source((sys.argv[4],), None)),
                           valid_part=True)
run_inference(request, sys.argv[5], cluster="local:1", log_info=lambda line: print(line, flush=True))
"""


def children_of_the_run(scratch) -> list:
    """Processes whose TMPDIR is in the run's `scratch` folder: the client, and its local cluster's scheduler and
    workers (whose TMPDIR is their folder in it)."""
    found, marker = [], f"TMPDIR={scratch}".encode()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            with open(f"/proc/{pid}/environ", "rb") as handle:
                if any(entry.startswith(marker) for entry in handle.read().split(b"\0")):
                    found.append(int(pid))
        except OSError:
            continue
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_a_killed_client_takes_its_local_cluster_along_and_the_next_run_cleans_up(work, tmp_path):
    """SIGKILL runs no `finally`: the local cluster's processes stop by themselves (their watchdog sees the
    parent gone), and what the killed run left (its cluster folder, its partial output) goes with the next run."""
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    # a measurement cache of its own: the client runs TensorFlow itself (the model's measurement) before the cluster
    env = dict(os.environ, TMPDIR=str(scratch), SEAMLESS_CACHE_DIR=str(tmp_path / "measurements"))
    before = snapshot(work)
    command = [sys.executable, "-c", KILLED_CLIENT, str(PLUGINS), str(work / "model"), str(work / "pan.tif"),
               str(work / "xs.tif"), str(work / "result.tif")]
    client = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in client.stdout:  # until the cluster runs the part
        lines.append(line)
        if line.startswith("Cluster local:1"):
            break
    children = children_of_the_run(scratch)
    assert len(children) == 3, lines  # the client, the scheduler and the worker
    client.kill()
    client.wait()
    deadline = time.monotonic() + 15
    while children_of_the_run(scratch) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert children_of_the_run(scratch) == []
    # the next run removes what the killed one left, and leaves only its output
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300, check=False)
    assert run.returncode == 0, run.stdout[-2000:]
    assert os.listdir(scratch) == []
    after = snapshot(work)
    assert {path for path in after if path not in before} == {str(work / "result.tif")}
    assert all(after[path] == digest for path, digest in before.items())


def test_a_system_out_of_processes_is_a_sentence_and_stops_what_started(work, tmp_path, monkeypatch):
    """The system refuses the third process (as at its process limit, the raw BlockingIOError the issue saw; root
    is not held to RLIMIT_NPROC, so the refusal is made here): the run says so, naming the cluster, and the
    scheduler and worker already started are stopped, their folder removed."""
    from seamless_inference.engine import EngineError, InferenceRequest, Source, run_inference
    from seamless_inference.engine.backends import dask_local

    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(dask_local.tempfile, "tempdir", None)  # TMPDIR read again
    started, popen = [], subprocess.Popen

    def limited(command, *args, **kwargs):  # subprocess.Popen is the module's: count the cluster's only
        if not any("distributed.cli" in str(word) for word in command):
            return popen(command, *args, **kwargs)
        if len(started) == 2:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        started.append(popen(command, *args, **kwargs))
        return started[-1]

    monkeypatch.setattr(dask_local.subprocess, "Popen", limited)
    request = InferenceRequest(str(work / "model"), (Source((str(work / "pan.tif"),), (128, 128)),
                                                     Source((str(work / "xs.tif"),), None)), valid_part=True)
    before = snapshot(work)
    with pytest.raises(EngineError, match="Could not start the local Dask cluster's 2 worker process") as error:
        run_inference(request, str(work / "result.tif"), cluster="local:2")
    assert error.value.field == "cluster" and "BlockingIOError" in str(error.value)
    assert "local:1" in str(error.value) and "2 started, now stopped" in str(error.value)
    assert all(process.poll() is not None for process in started)
    assert os.listdir(tmp_path / "tmp") == [] and snapshot(work) == before
