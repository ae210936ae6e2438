"""OTB in a child process: whether pyotb and OTBTF are there, and every OTB call, without loading OTB here.

`import pyotb` loads all of OTB's applications, OTBTF's TensorFlow libraries among them; inside QGIS (desktop or
qgis_process, whose executable holds Debian's libprotobuf in the global symbol scope) that aborts the whole
application with "File already exists in database" (issue 13), whatever the import order. QGIS's own OTB
provider runs `otbcli` in a child process for the same kind of reason. Here each task runs
`engine/otb_child.py` in a plain Python of this installation (never QGIS's executable): OTB's progress lines
come back as progress, a cancel kills the child, and its answer is one JSON line.
"""

import importlib.util
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time

from .dependencies import python_executable
from .errors import Cancelled

CHILD = os.path.join(os.path.dirname(os.path.abspath(__file__)), "otb_child.py")
PREFIX_RESULT, PREFIX_ERROR = "@@result ", "@@error "
_PERCENT = re.compile(r"(\d{1,3})%")
_status: dict = {}
_status_lock = threading.Lock()


class OtbFailed(Exception):
    """The child raised: `kind` is the exception's type name, the message its text."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind


def run_task(task: dict, progress=None, is_canceled=None) -> dict:
    """Run one task of engine/otb_child.py in a child Python; its answer, or OtbFailed / Cancelled.

    progress(fraction) gets OTB's own percentages; is_canceled() is polled ten times a second and a cancel
    ends the child (SIGTERM, then SIGKILL) before raising Cancelled.
    """
    python = python_executable()
    if python is None:
        raise OtbFailed("RuntimeError", "no Python interpreter of this installation was found to run OTB in")
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep) + sys.path  # OTB's bindings, then this Python's
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(dict.fromkeys(p for p in paths if p)))
    # bandit B603: no shell, this installation's own Python running the engine's own otb_child.py; the task goes
    # through stdin as JSON, never into the command line
    child = subprocess.Popen([python, CHILD], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, env=env, start_new_session=True)  # nosec B603
    lines, latest = [], {}
    reader = threading.Thread(target=_read, args=(child.stdout, lines, latest), daemon=True)
    reader.start()
    try:
        child.stdin.write(json.dumps(task).encode())
        child.stdin.close()
        while child.poll() is None:
            if is_canceled and is_canceled():
                _stop(child)
                raise Cancelled("Cancelled by the user.")
            if progress and "percent" in latest:
                progress(latest.pop("percent") / 100.0)
            time.sleep(0.1)
    except BaseException:
        _stop(child)
        raise
    reader.join(timeout=10)
    for line in reversed(lines):
        if line.startswith(PREFIX_RESULT):
            return json.loads(line[len(PREFIX_RESULT):])
        if line.startswith(PREFIX_ERROR):
            error = json.loads(line[len(PREFIX_ERROR):])
            raise OtbFailed(error["type"], error["message"])
    tail = " | ".join(line for line in lines[-5:] if line.strip())
    raise OtbFailed("ChildDied", f"the OTB process ended with status {child.returncode} without an answer ({tail})")


def _read(stream, lines: list, latest: dict) -> None:
    """Collect the child's output as lines (OTB ends its progress lines with \\r), and its latest percentage."""
    pending = b""
    for chunk in iter(lambda: stream.read1(4096), b""):
        pending += chunk
        parts = re.split(rb"[\r\n]", pending)
        pending = parts.pop()
        for raw in parts:
            line = raw.decode("utf-8", "replace")
            lines.append(line)
            found = _PERCENT.findall(line)
            if found and "Writing" in line:
                latest["percent"] = min(100, int(found[-1]))
    if pending:
        lines.append(pending.decode("utf-8", "replace"))


def _stop(child: subprocess.Popen) -> None:
    """End the child and its own children (a session of their own): SIGTERM, then SIGKILL after 5 s."""
    if child.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(child.pid, sig)
            child.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue
        except ProcessLookupError:
            return


def otb_status(refresh: bool = False) -> dict:
    """{"pyotb": (True, what) or (False, why not), "otbtf": (True, what) or (False, why not)}, found in a child
    process once per process (refresh: again); nothing of OTB is loaded here."""
    with _status_lock:
        if refresh or not _status:
            _status.update(_find_status())
        return dict(_status)


def _find_status() -> dict:
    if importlib.util.find_spec("pyotb") is None:
        return {"pyotb": (False, "pyotb is not installed"), "otbtf": (False, "pyotb is not installed")}
    try:
        answer = run_task({"task": "status"})
    except OtbFailed as exc:
        why = (f"pyotb is installed but OTB was not found or could not be loaded ({exc.kind}: "
               f"{str(exc)[:300]})")
        return {"pyotb": (False, why), "otbtf": (False, why)}
    pyotb = (True, answer["pyotb"])
    if not answer["otbtf"]:
        return {"pyotb": pyotb, "otbtf": (False, f"{answer['pyotb']} is installed, but not OTBTF: pyotb has no "
                                                 "TensorflowModelServe")}
    return {"pyotb": pyotb, "otbtf": (True, f"{answer['pyotb']} has TensorflowModelServe")}


def otbtf_status(refresh: bool = False) -> tuple:
    """(True, what) when OTBTF's TensorflowModelServe is there for pyotb, else (False, why not)."""
    return otb_status(refresh)["otbtf"]
