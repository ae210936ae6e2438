"""The warm engine's process: TensorFlow and the loaded model kept between runs, one run at a time.

Started by engine.warm for the first call that asks for it (SEAMLESS_WARM_ENGINE), in a session of its own, with
this installation's Python; it listens on a UNIX socket in the user's private folder (engine.warm_link) and ends
after `idle` seconds without a call, on a stop message, or on SIGTERM/SIGINT/SIGHUP (a run in progress is then
cancelled, its temporary file removed). Each call is one connection: the request's fields as JSON, planned again
here (the client plans nothing), run by `run_inference` as in any process, so the pixels are the same; the log
lines and progress go back as they come, and a cancel message (or the client's end: killed, closed) stops the
run at its next check, within a tile, leaving no output.
"""

import os
import signal
import socket
import sys
import threading
import time
import traceback

from .classes import ClassEntry
from .errors import Cancelled, DependencyMissing, EngineError
from .inference import InferenceResult, run_inference
from .request import request_from_json, request_to_json
from .signals import Interrupted
from .warm_link import Channel, LinkError, check_peer, private_folder

FIRST_MESSAGE_TIMEOUT = 30.0  # seconds a connection has to say what it wants


def main(argv: list) -> None:
    """`socket path, idle seconds`: serve until idle, stopped or signalled; the socket is removed on the way out."""
    path, idle = argv[0], float(argv[1])
    if os.path.dirname(path) != private_folder():  # the folder checked again, by the process that listens
        raise LinkError(f"{path} is not in this user's private folder")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    if os.path.exists(path):  # a killed engine's socket: the client starting this one holds the start lock
        os.unlink(path)
    mask = os.umask(0o077)
    try:
        listener.bind(path)
    finally:
        os.umask(mask)
    listener.listen(16)
    owned = os.stat(path).st_ino
    state = {"busy": False}

    def stop(signum, frame):
        if not state["busy"]:
            raise SystemExit(f"warm engine: stopped by {signal.Signals(signum).name}")

    for number in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(number, stop)
    print(f"warm engine: pid {os.getpid()} listening on {path}, idle {idle:.0f} s", flush=True)
    calls = 0
    try:
        while True:
            listener.settimeout(idle)
            try:
                connection, _ = listener.accept()
            except socket.timeout:
                print(f"warm engine: {idle:.0f} s idle, ending", flush=True)
                return
            state["busy"] = True
            try:
                with connection:
                    calls += 1
                    outcome = serve(connection, calls, idle)
                    try:  # wakes the thread that listens for a cancel on it
                        connection.shutdown(socket.SHUT_RDWR)
                    except OSError:
                        pass
                if outcome == "stop":
                    return
            finally:
                state["busy"] = False
    finally:
        listener.close()
        try:
            if os.stat(path).st_ino == owned:  # not a newer engine's socket
                os.unlink(path)
        except OSError:
            pass


def serve(connection: socket.socket, calls: int, idle: float) -> str | None:
    """One call: a run, a ping or a stop. "stop" when the engine should end now."""
    connection.setblocking(True)
    try:
        check_peer(connection)
        channel = Channel(connection)
        message = channel.receive(FIRST_MESSAGE_TIMEOUT)
    except (OSError, TimeoutError) as exc:
        print(f"warm engine: a connection was dropped ({exc})", flush=True)
        return None
    if not message:
        return None
    if "stop" in message:
        print("warm engine: asked to stop", flush=True)
        reply(channel, stopping=os.getpid())
        return "stop"
    if "run" not in message:
        reply(channel, pong=os.getpid(), calls=calls)
        return None
    return run(channel, message["run"], calls, idle)


def run(channel: Channel, call: dict, calls: int, idle: float) -> str | None:
    """Run one request for a client; "stop" when a signal to this process interrupted it."""
    cancel = threading.Event()
    lock = threading.Lock()

    def send(**message):
        with lock:
            try:
                channel.send(**message)
            except OSError:  # the client is gone: nobody wants this output any more
                cancel.set()

    def listen():
        try:
            while not cancel.is_set():
                message = channel.receive()
                if message is None or "cancel" in message:
                    break
        except (OSError, TimeoutError):
            pass
        cancel.set()

    send(accepted=os.getpid(), calls=calls, idle=idle)
    threading.Thread(target=listen, name="warm-engine-client", daemon=True).start()
    started = time.perf_counter()
    outcome = None
    try:
        if not isinstance(call, dict):
            raise EngineError("The warm engine got a call that is not an object.", "request")
        os.chdir(call.get("cwd") or "/")  # the client's relative paths mean what they meant there
        request = request_from_json(call.get("request"))
        table = call.get("class_table")
        result = run_inference(request, call.get("output"), progress=lambda f: send(progress=f),
                               is_canceled=cancel.is_set, log_info=lambda text: send(say=text),
                               backend=call.get("backend") or "tensorflow", cluster=call.get("cluster"),
                               class_map=call.get("class_map"), confidence=bool(call.get("confidence")),
                               class_table=None if table is None else tuple(
                                   ClassEntry(int(v), str(n), tuple(int(c) for c in color)) for v, n, color in table))
        send(done=result_json(result))
    except Interrupted as exc:  # a signal to this process: the run is cancelled and the engine ends
        send(error=str(exc), kind="Stopped")
        outcome = "stop"
    except Cancelled as exc:
        send(error=str(exc), kind="Cancelled")
    except EngineError as exc:
        send(error=str(exc), kind="EngineError", field=exc.field)
    except DependencyMissing as exc:
        send(error=str(exc), kind="DependencyMissing")
    except Exception as exc:  # noqa: BLE001 (reported to the client, and the engine goes on)
        traceback.print_exc()
        send(error=f"{type(exc).__name__}: {exc}", kind="Error")
    finally:
        cancel.set()  # the listening thread ends with the connection
    print(f"warm engine: call {calls} ended in {time.perf_counter() - started:.1f} s", flush=True)
    return outcome


def reply(channel: Channel, **message) -> None:
    """Send, ignoring a client that is already gone."""
    try:
        channel.send(**message)
    except OSError:
        pass


def result_json(result: InferenceResult) -> dict:
    """What the client needs of the result: the written files, the plan's names and sizes, the device."""
    plan = result.plan
    table = None if result.class_table is None else [[e.value, e.name, list(e.color)] for e in result.class_table]
    summary = {"request": request_to_json(plan.request), "output_names": list(plan.output_names),
               "band_names": list(plan.band_names), "size": list(plan.size), "tile": list(plan.tile),
               "batch": plan.batch, "kind": plan.kind}
    return {"path": result.path, "tiles": result.tiles, "skipped": result.skipped, "seconds": result.seconds,
            "device": result.device, "class_map": result.class_map, "display_band": result.display_band,
            "class_table": table, "plan": summary}


if __name__ == "__main__":
    main(sys.argv[1:])
