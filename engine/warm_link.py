"""What the warm engine's client and server share: the user's private folder, the socket's name, and the messages.

The warm engine (engine.warm, engine.warm_server) is a resident process of one user that holds TensorFlow and the
loaded model between `qgis_process` calls. It is reached over a UNIX socket in a folder only that user can enter
(mode 0700, owned by the user, not a link: checked, never repaired), and each side checks the other's user id
(SO_PEERCRED) as well. Messages are JSON objects, one per line: what is read from a socket is data, never code
(no pickle: a message could otherwise run code in the reader).
"""

import hashlib
import json
import os
import socket
import stat
import sys
import tempfile

from .errors import EngineError

ENV_SWITCH = "SEAMLESS_WARM_ENGINE"  # 1/on: warm engine, default idle time; a number: its idle time in seconds
ENV_FOLDER = "SEAMLESS_WARM_DIR"  # where its socket lives (default: $XDG_RUNTIME_DIR or the temporary folder)
DEFAULT_IDLE = 600.0  # seconds the engine waits for the next call before it ends
MAX_MESSAGE = 1 << 20  # bytes: a request or a log line is far smaller; anything longer is refused
ON_WORDS = ("1", "on", "yes", "true")
OFF_WORDS = ("", "0", "off", "no", "false")


class LinkError(OSError):
    """The warm engine cannot be reached or trusted: the caller runs in process instead, and says why."""


def idle_seconds(value: str | None) -> float | None:
    """The idle time that SEAMLESS_WARM_ENGINE asks for, in seconds, or None (warm engine off).

    1, on, yes, true: the default (DEFAULT_IDLE); a number above 1: that many seconds; empty, 0, off: off."""
    text = (value or "").strip().lower()
    if text in OFF_WORDS:
        return None
    if text in ON_WORDS:
        return DEFAULT_IDLE
    try:
        seconds = float(text)
    except ValueError:
        raise EngineError(f"{ENV_SWITCH}={value!r} is neither on/off nor an idle time in seconds (e.g. 600).",
                          "warm_engine") from None
    return seconds if seconds > 1 else (DEFAULT_IDLE if seconds == 1 else None)


def private_folder() -> str:
    """The user's folder for the engine's socket, created 0700 if missing; LinkError when it exists but is not
    a real folder owned by this user that no one else can enter (it is never repaired: someone else may own it)."""
    base = os.environ.get(ENV_FOLDER)
    if not base:
        runtime = os.environ.get("XDG_RUNTIME_DIR")
        base = os.path.join(runtime, "seamless-inference") if runtime and os.path.isdir(runtime) else \
            os.path.join(tempfile.gettempdir(), f"seamless-inference-{os.getuid()}")
    try:
        os.mkdir(base, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise LinkError(f"cannot create {base} ({exc.strerror})") from exc
    info = os.lstat(base)
    if not stat.S_ISDIR(info.st_mode):
        raise LinkError(f"{base} is not a folder (a link or a file): remove it")
    if info.st_uid != os.getuid():
        raise LinkError(f"{base} belongs to user id {info.st_uid}, not to this user ({os.getuid()})")
    if info.st_mode & 0o077:
        raise LinkError(f"{base} can be entered by other users (mode {stat.S_IMODE(info.st_mode):o}); "
                        "chmod 700 it or remove it")
    return base


def engine_key() -> str:
    """What a running engine must share with its client: this engine's code (its files and their times), the
    Python, its paths and the variables that change a run. Another key is another engine: an upgraded plugin
    or another checkout never talks to an engine running older code."""
    digest = hashlib.sha256()
    here = os.path.dirname(os.path.abspath(__file__))
    for folder, _, names in sorted(os.walk(here)):
        for name in sorted(n for n in names if n.endswith(".py")):
            path = os.path.join(folder, name)
            digest.update(f"{path}:{os.stat(path).st_mtime_ns}\n".encode())
    digest.update(sys.executable.encode())
    digest.update(json.dumps(search_path()).encode())
    for name in sorted(os.environ):
        if name.startswith(("SEAMLESS_", "TF_", "GDAL_", "CPL_", "OMP_", "CUDA_")) and name != ENV_SWITCH:
            digest.update(f"{name}={os.environ[name]}\n".encode())
    return digest.hexdigest()[:16]


def search_path() -> list:
    """This Python's module folders (QGIS's profile adds TensorFlow's there), for the engine process."""
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep) + sys.path
    return [p for p in dict.fromkeys(paths) if p and os.path.isabs(p) and os.path.isdir(p)]


def socket_path(folder: str, key: str) -> str:
    """The socket of the engine of `key` in the user's folder."""
    return os.path.join(folder, f"engine-{key}.sock")


def check_peer(connection: socket.socket) -> None:
    """LinkError unless the other end of `connection` runs as this user (Linux's SO_PEERCRED; elsewhere the
    folder's permissions are the check)."""
    option = getattr(socket, "SO_PEERCRED", None)
    if option is None:
        return
    import struct  # noqa: PLC0415 (only here)

    pid, uid, _ = struct.unpack("3i", connection.getsockopt(socket.SOL_SOCKET, option, struct.calcsize("3i")))
    if uid != os.getuid():
        raise LinkError(f"the other end of the warm engine's socket runs as user id {uid} (pid {pid})")


class Channel:
    """JSON objects, one a line, over a connected socket."""

    def __init__(self, connection: socket.socket):
        self.connection = connection
        self.buffer = b""

    def send(self, **message) -> None:
        """Send one message (OSError when the other end is gone)."""
        self.connection.sendall(json.dumps(message).encode() + b"\n")

    def receive(self, timeout: float | None = None) -> dict | None:
        """The next message; None at the end of the stream; TimeoutError when none came within `timeout` s."""
        while b"\n" not in self.buffer:
            if len(self.buffer) > MAX_MESSAGE:
                raise LinkError("a message on the warm engine's socket is too long")
            self.connection.settimeout(timeout)
            try:
                data = self.connection.recv(65536)
            except socket.timeout as exc:
                raise TimeoutError from exc
            if not data:
                return None
            self.buffer += data
        line, self.buffer = self.buffer.split(b"\n", 1)
        try:
            message = json.loads(line)
        except ValueError as exc:
            raise LinkError(f"the warm engine's socket carried something else than JSON ({exc})") from exc
        if not isinstance(message, dict):
            raise LinkError("the warm engine's socket carried JSON that is not an object")
        return message
