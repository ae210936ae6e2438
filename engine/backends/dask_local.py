"""`local` / `local:N`: a Dask scheduler and N worker processes started on this machine for one run, that die
with the process that started them.

The children run under a watchdog (WATCHED): each polls its parent's pid and exits as soon as the parent is gone, so
that a client killed with SIGKILL (which runs no `finally`) does not leave a scheduler and workers running
(measured: gone 2.2 s after the kill). Everything they write (Dask's scratch space, TensorFlow's temporary files,
the scheduler file, their log) goes into one folder `seamless-dask-<client pid>-*` of the temporary folder, which
the run removes; a folder whose client is dead is what a killed run left, and the next local cluster removes it.
"""

import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

from ..dependencies import import_distributed, python_executable
from ..errors import EngineError
from ..paths import process_alive

START_TIMEOUT = 120  # seconds for a local cluster's scheduler and workers to come up
FOLDER_PREFIX = "seamless-dask-"

# The child's entry point: a watchdog thread, then Dask's own command line module. It ends the child when the
# parent pid it was given is no longer its parent (the parent died: the child was re-parented), within a second.
# At once: Dask's graceful stop (SIGTERM) took 13 s, a worker waiting on its running part and on a client that
# is gone; what the child leaves is in the run's folder, which the next run removes.
WATCHED = """
import os, runpy, sys, threading, time
parent, module = int(sys.argv[1]), sys.argv[2]

def watch():
    while os.getppid() == parent:
        time.sleep(0.5)
    os._exit(1)

threading.Thread(target=watch, daemon=True).start()
sys.argv = [module] + sys.argv[3:]
runpy.run_module(module, run_name="__main__", alter_sys=True)
"""


def cores() -> int:
    """The CPU cores this process may use (its affinity where the system tells it)."""
    try:
        return len(os.sched_getaffinity(0)) or 1
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def local_workers(cluster: str) -> int:
    """N of `local:N` (`local`: one worker per CPU core); more workers than cores are refused: each loads
    TensorFlow and the model, and extra ones would only share the same cores (or exhaust the processes the
    system allows, seen as a raw BlockingIOError)."""
    name, _, count = cluster.partition(":")
    if name != "local" or (count and (not count.isdigit() or int(count) == 0)):
        raise EngineError(f"Cluster {cluster!r} is neither a scheduler address (tcp://host:8786) nor local or "
                          "local:N (N worker processes on this machine); leave it empty to run here.", "cluster")
    available = cores()
    if count and int(count) > available:
        raise EngineError(f"Cluster {cluster!r} asks for {int(count)} worker processes, but this machine has "
                          f"{available} CPU core(s): local:N takes at most one worker a core (local:{available}; "
                          "each worker loads TensorFlow and the model, and more would only share the same cores). "
                          "For more workers, start them on other machines and give the scheduler's address.",
                          "cluster")
    return int(count) if count else available


def worker_environment(folder: str) -> dict:
    """This process's environment, with this Python's paths (the plugin, TensorFlow) for the workers, and the
    run's folder as their temporary folder."""
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep) + sys.path
    return dict(os.environ, PYTHONPATH=os.pathsep.join(dict.fromkeys(p for p in paths if p)),
                TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"),
                TMPDIR=folder, TEMP=folder, TMP=folder)


def remove_stale_folders(root: str | None = None) -> list:
    """Remove the folders of local clusters whose client is no longer running (a killed run's); returns them."""
    root = root or tempfile.gettempdir()
    removed = []
    try:
        names = os.listdir(root)
    except OSError:
        return removed
    for name in names:
        found = re.fullmatch(re.escape(FOLDER_PREFIX) + r"(\d+)-\w+", name)
        if found and not process_alive(int(found.group(1))):
            shutil.rmtree(os.path.join(root, name), ignore_errors=True)
            removed.append(name)
    return removed


def make_folder() -> str:
    """The run's folder for its local cluster (the children's temporary folder), after removing killed runs'."""
    remove_stale_folders()
    return tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-")


def start_local(count: int, folder: str, processes: list):
    """A scheduler and `count` single-threaded worker processes on 127.0.0.1, started with a real Python under
    the watchdog, writing only into `folder`; returns the client. The processes are appended to `processes` as
    they start, so that the caller stops them (and removes the folder) whatever happens."""
    distributed = import_distributed()
    python = python_executable()
    if python is None:
        raise EngineError("No Python interpreter of this installation was found to start Dask workers with.",
                          "cluster")
    env = worker_environment(folder)
    # the workers share this machine's cores: TensorFlow's thread pools sized for one worker each
    threads = str(max(1, cores() // count))
    env.setdefault("TF_NUM_INTRAOP_THREADS", threads)
    env.setdefault("TF_NUM_INTEROP_THREADS", threads)
    scheduler_file = os.path.join(folder, "scheduler.json")
    with open(os.path.join(folder, "cluster.log"), "ab") as log:
        common = {"env": env, "stdout": log, "stderr": subprocess.STDOUT, "stdin": subprocess.DEVNULL,
                  "start_new_session": True, "cwd": folder}
        watched = [python, "-c", WATCHED, str(os.getpid())]
        # bandit B603: argv lists without a shell, this installation's own Python running Dask's modules with
        # fixed options; nothing in them comes from the user. No nanny: each worker is this process's child, so
        # the watchdog covers it (a nanny's worker would be a grandchild)
        commands = [watched + ["distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard", "--scheduler-file", scheduler_file]]
        commands += [watched + ["distributed.cli.dask_worker", "--scheduler-file", scheduler_file, "--nthreads", "1",
                                "--no-nanny", "--no-dashboard", "--host", "127.0.0.1", "--memory-limit", "0",
                                "--local-directory", folder]] * count
        try:
            for command in commands:
                processes.append(subprocess.Popen(command, **common))  # nosec B603
        except OSError as exc:  # BlockingIOError: the system allows no more processes; out of memory
            raise EngineError(f"Could not start the local Dask cluster's {len(commands) - 1} worker process(es) "
                              f"({exc.__class__.__name__}: {exc}; {len(processes)} started, now stopped): ask for "
                              "fewer workers (local:1), or leave Cluster empty to run here.", "cluster") from exc
    deadline = time.monotonic() + START_TIMEOUT
    while not os.path.exists(scheduler_file) and time.monotonic() < deadline:
        if processes[0].poll() is not None:
            break
        time.sleep(0.1)
    try:
        client = distributed.Client(scheduler_file=scheduler_file, timeout=START_TIMEOUT, set_as_default=False)
        client.wait_for_workers(count, timeout=START_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        raise EngineError(f"The local Dask cluster did not come up in {START_TIMEOUT} s ({exc}); its log said: "
                          f"{log_tail(folder)}. Leave Cluster empty to run here.", "cluster") from exc
    return client


def log_tail(folder: str, size: int = 600) -> str:
    """The end of the local cluster's log, for a message."""
    try:
        with open(os.path.join(folder, "cluster.log"), "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - size))
            return handle.read().decode("utf-8", "replace").strip() or "nothing"
    except OSError:
        return "nothing"


def stop_processes(processes: list) -> None:
    """SIGTERM, then SIGKILL after 10 s, to each process's session."""
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
