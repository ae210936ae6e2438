"""The warm engine's client: a run sent to the user's resident engine process, or run here when it cannot be.

A script calling `qgis_process` over many scenes pays, on every call, QGIS's start, TensorFlow's import and the
model's load. With SEAMLESS_WARM_ENGINE set (1/on, or an idle time in seconds), the first call starts an engine
process (engine.warm_server) that keeps TensorFlow and the model, and every later call within the idle time only
sends it the request (JSON) and relays its log, progress and result: the call then pays QGIS's start and the
run. Cancel and signals are forwarded (the engine stops within a tile and leaves no output); an engine that
cannot be started, trusted or reached, or that dies, is replaced by a run here, which the log says.
"""

import json
import logging
import os
import socket
import subprocess
import time
from dataclasses import dataclass

from .classes import ClassEntry
from .dependencies import python_executable
from .errors import Cancelled, DependencyMissing, EngineError
from .paths import process_alive
from .records import InferenceResult
from .request import InferenceRequest, request_from_json, request_to_json
from .signals import Interrupted, signals_cancel
from .warm_link import (ENV_SWITCH, Channel, LinkError, check_peer, engine_key, idle_seconds, private_folder,
                        search_path, socket_path)

log = logging.getLogger(__name__)

START_TIMEOUT = 60.0  # seconds for a new engine to listen (it imports the engine, not TensorFlow, before)
CANCEL_TIMEOUT = 120.0  # seconds to wait for the engine to confirm a cancel (it checks between tiles)
GONE_TIMEOUT = 10.0  # seconds to wait for an engine that ended mid-run to be gone (its temporary file is removed then)
POLL = 0.1  # seconds between checks of the caller's cancel while the engine runs
# the engine process: this installation's Python with the caller's module folders, running warm_server.main after a
# fork, so that the engine is nobody's child (no zombie in a QGIS desktop, no ResourceWarning in the caller); the
# first process ends once the engine's modules are imported (an import error is its exit status)
BOOT = ("import importlib, json, os, sys; sys.path[:0] = json.loads(sys.argv[1]); "
        "server = importlib.import_module(sys.argv[2]); os.fork() and os._exit(0); server.main(sys.argv[3:])")


@dataclass(frozen=True)
class PlanSummary:
    """What a run through the warm engine tells of its plan (the plan itself stays in the engine process):
    the completed request, the output names and bands, the size, tile and batch, the output's kind."""

    request: InferenceRequest
    output_names: tuple
    band_names: tuple
    size: tuple
    tile: tuple
    batch: int
    kind: str | None = None  # what the output is, by the model card

    @property
    def bands(self) -> int:
        """Bands of the output."""
        return len(self.band_names)


class EngineGone(LinkError):
    """The engine closed the connection without an answer; `accepted`: after it had started the run."""

    def __init__(self, message: str, accepted: bool, pid: int | None = None):
        super().__init__(message)
        self.accepted, self.pid = accepted, pid


def warm_idle(idle: float | None = None) -> float | None:
    """The warm engine's idle time in seconds when it is asked for (`idle` > 0 wins over SEAMLESS_WARM_ENGINE),
    else None."""
    if idle:
        return float(idle)
    return idle_seconds(os.environ.get(ENV_SWITCH))


def run_inference_warm(request, output_path: str | None = None, progress=None, is_canceled=None, log_info=None,
                       idle: float | None = None, **options) -> InferenceResult:
    """`run_inference`, through the user's warm engine when one is asked for (`idle` seconds > 0, or the
    SEAMLESS_WARM_ENGINE variable), else here. The same arguments and result, except that the result's plan is
    a PlanSummary when the engine ran it. Falls back to a run here, said in the log, when the engine cannot be
    started or reached, or ends mid-run; a sink or a plan (objects of this process) always run here."""
    say = log_info or log.info
    seconds = warm_idle(idle)
    if not seconds or options.get("sink") is not None or options.get("plan") is not None:
        return run_here(request, output_path, progress, is_canceled, log_info, **options)
    try:
        if os.name != "posix" or not hasattr(socket, "AF_UNIX"):
            raise LinkError("it needs UNIX sockets and user ids, which this system lacks")
        return through_engine(request, output_path, progress, is_canceled, say, seconds, options)
    except LinkError as exc:
        say(f"Warm engine: not used ({exc}); running in this process.")
        deadline = time.monotonic() + GONE_TIMEOUT
        while getattr(exc, "pid", None) and process_alive(exc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)  # a killed engine closes its socket before it is gone: its partial is then stale
        return run_here(request, output_path, progress, is_canceled, log_info, **options)


def run_here(*args, **options) -> InferenceResult:
    """`run_inference` in this process. The pipeline (numpy, TensorFlow, the planning) is imported only then, so
    that a call the engine runs imports none of it here."""
    from .inference import run_inference

    return run_inference(*args, **options)


def through_engine(request, output_path, progress, is_canceled, say, seconds: float, options: dict):
    """The run by the engine (started if needed); LinkError when it cannot be."""
    folder, key = private_folder(), engine_key()
    path = socket_path(folder, key)
    table = options.get("class_table")
    call = {"cwd": os.getcwd(), "request": request_to_json(request), "output": output_path,
            "backend": options.get("backend"), "cluster": options.get("cluster"),
            "class_map": options.get("class_map"), "confidence": bool(options.get("confidence")),
            "class_table": None if table is None else [[e.value, e.name, list(e.color)] for e in table]}
    with signals_cancel(is_canceled) as canceled:
        for attempt in range(2):
            connection = connect_or_start(folder, key, path, seconds, say)
            try:
                return converse(connection, call, progress, canceled, say)
            except EngineGone as exc:
                if exc.accepted or attempt:  # mid-run, or twice: no third try
                    raise
            finally:
                connection.close()
    raise LinkError("unreachable")


def connect(path: str) -> socket.socket:
    """A connection to the engine listening on `path`, checked to run as this user."""
    connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        connection.connect(path)
        check_peer(connection)
    except BaseException:
        connection.close()
        raise
    return connection


def connect_or_start(folder: str, key: str, path: str, seconds: float, say) -> socket.socket:
    """A connection to the engine of `key`, which is started when none listens (one starter at a time: a lock
    file in the private folder)."""
    try:
        return connect(path)
    except (FileNotFoundError, ConnectionRefusedError):
        pass
    import fcntl  # noqa: PLC0415 (POSIX only, as the warm engine)

    descriptor = os.open(os.path.join(folder, f"engine-{key}.lock"), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX)
        try:
            return connect(path)  # another call started it while this one waited
        except (FileNotFoundError, ConnectionRefusedError):
            pass
        stop_engines(folder, keep=path)  # one engine per user: an engine of other code or settings ends
        process = start(folder, key, path, seconds)
        deadline = time.monotonic() + START_TIMEOUT
        try:
            status = process.wait(START_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            status = process.wait()
        if status:
            raise LinkError(f"the engine process failed at its start (exit {status}; see {log_path(folder, key)})")
        while time.monotonic() < deadline:
            try:
                connection = connect(path)
            except (FileNotFoundError, ConnectionRefusedError):
                time.sleep(0.05)
                continue
            say(f"Warm engine: started; it ends after {seconds:.0f} s without a call.")
            return connection
        raise LinkError(f"the engine process did not listen within {START_TIMEOUT:.0f} s (see "
                        f"{log_path(folder, key)})")
    finally:
        os.close(descriptor)


def log_path(folder: str, key: str) -> str:
    """The engine process's own output (its start, its calls, an unexpected error's traceback)."""
    return os.path.join(folder, f"engine-{key}.log")


def start(folder: str, key: str, path: str, seconds: float) -> subprocess.Popen:
    """The engine process, in a session of its own (a Ctrl-C in the caller's terminal is the caller's to
    forward), its output in the private folder."""
    python = python_executable()
    if python is None:
        raise LinkError("no Python interpreter of this installation was found to start it with")
    depth = __package__.count(".") + 1  # the folder above the plugin's package: importable as it is here
    top = os.path.abspath(__file__)
    for _ in range(depth + 1):
        top = os.path.dirname(top)
    paths = json.dumps([top] + search_path())
    output = os.open(log_path(folder, key), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))
    try:
        # bandit B603: an argv list without a shell: this installation's Python running the engine's own module
        return subprocess.Popen([python, "-c", BOOT, paths, f"{__package__}.warm_server", path, str(seconds)],
                                stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT, env=env,
                                cwd=folder, start_new_session=True)  # nosec B603
    except OSError as exc:
        raise LinkError(f"the engine process cannot start ({exc})") from exc
    finally:
        os.close(output)


def converse(connection: socket.socket, call: dict, progress, canceled, say) -> InferenceResult:
    """Send the call, relay what the engine says until its result; a cancel (or a signal to this process) is
    sent on, and the engine's confirmation awaited, so that its temporary file is gone when this returns."""
    channel = Channel(connection)
    try:
        channel.send(run=call)
    except OSError as exc:
        raise EngineGone(f"the engine closed the connection ({exc})", False) from exc
    accepted, cancel_sent, interrupted = None, None, None
    while True:
        try:
            message = channel.receive(POLL)
        except TimeoutError:
            message = {}
        except OSError as exc:
            raise EngineGone(f"the engine's connection failed ({exc})", bool(accepted), accepted) from exc
        if message is None and cancel_sent is not None:  # cancelled here, then the engine ended: nothing to redo
            raise interrupted or Cancelled("Cancelled: no output file was written.")
        if message is None:
            raise EngineGone("the engine ended " + ("mid-run" if accepted else "before it answered"), bool(accepted),
                             accepted)
        if "accepted" in message and not accepted:
            accepted = int(message["accepted"])  # the engine's pid
            say(f"Warm engine: pid {message['accepted']}, call {message.get('calls')}.")
        if "say" in message:
            say(str(message["say"]))
        if "progress" in message and progress:
            progress(float(message["progress"]))
        if "done" in message:
            return result_of(message["done"])
        if "error" in message:
            raise error_of(message, interrupted, accepted)
        if cancel_sent is None:
            try:
                stop = canceled()
            except Interrupted as exc:
                interrupted, stop = exc, True
            if stop:
                cancel_sent = time.monotonic()
                try:
                    channel.send(cancel=True)
                except OSError:
                    pass
        elif time.monotonic() - cancel_sent > CANCEL_TIMEOUT:  # the engine removes its files when it sees us gone
            raise interrupted or Cancelled("Cancelled: the warm engine did not confirm in time.")


def error_of(message: dict, interrupted: Exception | None, pid: int | None) -> Exception:
    """The engine's error as this process's exception; a stop of the engine itself is LinkError (run here)."""
    kind, text = message.get("kind"), str(message.get("error"))
    if kind == "Cancelled":
        return interrupted or Cancelled(text)
    if kind == "Stopped":
        return EngineGone(f"the engine was stopped mid-run ({text})", True, pid)
    if kind == "EngineError":
        return EngineError(text, message.get("field"))
    if kind == "DependencyMissing":
        return DependencyMissing(text)
    return RuntimeError(f"The warm engine failed: {text}")


def result_of(data: dict) -> InferenceResult:
    """The InferenceResult of the engine's result message (its plan as a PlanSummary)."""
    plan = data["plan"]
    summary = PlanSummary(request_from_json(plan["request"]), tuple(plan["output_names"]),
                          tuple(plan["band_names"]), tuple(plan["size"]),
                          tuple(plan["tile"]), int(plan["batch"]),
                          plan.get("kind") if plan.get("kind") in ("scores", "probabilities", "regression") else None)
    table = data.get("class_table")
    table = None if table is None else tuple(ClassEntry(int(v), str(n), tuple(color)) for v, n, color in table)
    return InferenceResult(data.get("path"), summary, data["tiles"], data["skipped"], data["seconds"], data["device"],
                           data.get("class_map"), data.get("display_band"), table)


def stop_engines(folder: str | None = None, keep: str | None = None) -> int:
    """Ask this user's engines (but the one on `keep`) to end; an engine mid-run ends after its run. Returns how
    many were asked."""
    try:
        folder = folder or private_folder()
    except LinkError:
        return 0
    asked = 0
    for name in sorted(os.listdir(folder)):
        path = os.path.join(folder, name)
        if not (name.startswith("engine-") and name.endswith(".sock")) or path == keep:
            continue
        try:
            connection = connect(path)
        except (OSError, LinkError):
            continue
        with connection:
            try:
                Channel(connection).send(stop=True)
                asked += 1
            except OSError:
                pass
    return asked
