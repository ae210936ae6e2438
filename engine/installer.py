"""Installs what the plugin needs (TensorFlow, with the numpy QGIS's GDAL takes) for the Python QGIS runs, with
pip, into a folder of its own: `<QGIS profile>/python/dependencies` (the QPIP plugin's convention, so both
coexist), never the system's site-packages and never with --break-system-packages.

pip's `--target` puts every dependency into that folder, numpy included, whatever the system has; the folder goes
first on sys.path when the plugin loads, as the project's venv goes first on PYTHONPATH in its tests (TensorFlow
2.21 needs numpy>=1.26: Debian 12's 1.24 must not be found first). pip writes into a temporary folder beside it
(`.dependencies-*.partial`); renames swap it in, so a cancelled or failed install leaves the folder as it was.
"""

import importlib
import importlib.metadata
import os
import platform
import queue
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import urllib.error
import urllib.request
from dataclasses import dataclass

from .dependencies import (NUMPY_FOR_TENSORFLOW, module_in_use, numpy_requirement, python_executable,
                           tensorflow_version, version_tuple)
from .errors import Cancelled, DependencyMissing
from .paths import process_alive
from .signals import signals_cancel

NEEDED_BYTES = 2_500_000_000  # measured: TensorFlow 2.21 with its dependencies takes 1.6 GB once unpacked
PARTIAL = ".dependencies-"
PIP_TAIL = 15  # pip's last lines that go into a failure's log


class InstallFailed(RuntimeError):
    """pip could not install; the message names the cause and the fix, `tail` holds pip's last lines."""

    def __init__(self, message: str, tail: str = ""):
        super().__init__(message)
        self.tail = tail


@dataclass(frozen=True)
class InstallResult:
    """What an install left: the folder, the packages in it (name, version), and whether QGIS must restart."""

    folder: str
    packages: tuple
    restart: str  # why QGIS must restart before the algorithms can use it ("" when it need not)


def activate(folder: str) -> bool:
    """Put the folder first on sys.path (if it exists) so its packages win over the system's; True if it is."""
    if not os.path.isdir(folder):
        return False
    if folder not in sys.path:
        sys.path.insert(0, folder)
        importlib.invalidate_caches()
    return True


def deactivate(folder: str) -> None:
    """Take the folder off sys.path."""
    while folder in sys.path:
        sys.path.remove(folder)
    importlib.invalidate_caches()


def has_nvidia_gpu() -> bool:
    """True when nvidia-smi lists a GPU."""
    smi = shutil.which("nvidia-smi")
    if not smi:
        return False
    try:
        run = subprocess.run([smi, "-L"], capture_output=True, text=True, timeout=20, check=False)  # nosec B603
    except (OSError, subprocess.SubprocessError):
        return False
    return run.returncode == 0 and "GPU" in run.stdout


def loaded_numpy() -> str | None:
    """The version of the numpy this process has imported already (None if none)."""
    module = sys.modules.get("numpy")
    return getattr(module, "__version__", None) if module is not None else None


def numpy_pin(loaded: str | None = None) -> str:
    """The numpy to install: the very version already imported when TensorFlow takes it (nothing to restart then),
    else the major version QGIS's GDAL was built with (numpy_requirement)."""
    if loaded and re.fullmatch(r"\d+\.\d+\.\d+", loaded) and version_tuple(loaded) >= NUMPY_FOR_TENSORFLOW:
        return f"numpy=={loaded}"  # a release PyPI has (not a distribution's own build: 1.26.4+ds, 2.3.0rc1)
    return numpy_requirement(loaded)


def requirements(system: str | None = None, gpu: bool | None = None, numpy: str | None = None) -> tuple:
    """pip's requirements for a platform: tensorflow-cpu on Linux and Windows, tensorflow on macOS (no -cpu
    wheel), tensorflow[and-cuda] on Linux with an NVIDIA GPU; and numpy_pin of `numpy` (default: the numpy this
    process has imported)."""
    system = system or platform.system()
    if system == "Darwin":
        name = "tensorflow"
    elif system == "Linux" and (has_nvidia_gpu() if gpu is None else gpu):
        name = "tensorflow[and-cuda]"
    else:
        name = "tensorflow-cpu"
    return f"{name}=={tensorflow_version()}", numpy_pin(numpy or loaded_numpy())


def packages(folder: str) -> tuple:
    """(name, version) of each distribution in the folder, sorted by name."""
    if not os.path.isdir(folder):
        return ()
    found = {(d.metadata["Name"], d.version) for d in importlib.metadata.distributions(path=[folder])}
    return tuple(sorted(found, key=lambda p: p[0].lower()))


def status_lines(folder: str) -> list:
    """What is installed where, and which TensorFlow and numpy this Python would use, as lines for a log."""
    installed = packages(folder)
    lines = [f"Folder: {folder} ({'on' if folder in sys.path else 'not on'} sys.path), "
             + (f"{len(installed)} packages: " + ", ".join(f"{n} {v}" for n, v in installed)
                if installed else "nothing installed")]
    for name in ("tensorflow", "numpy"):
        version, location = module_in_use(name)
        used = f"{version or 'unknown version'} from {location}" if location else "none found"
        lines.append(f"{'TensorFlow' if name == 'tensorflow' else 'numpy'} the plugin would use: {used}"
                     + (" (imported)" if name in sys.modules else ""))
    lines.append(f"Python: {python_executable()} {platform.python_version()}")
    return lines


def remove_stale(folder: str) -> None:
    """Remove what an install killed before its clean-up left beside the folder: the temporary folders of
    processes that are gone (`.dependencies-<pid>-...`; another QGIS installing at the same time keeps its own)."""
    parent = os.path.dirname(folder)
    if not os.path.isdir(parent):
        return
    for name in os.listdir(parent):
        match = re.match(re.escape(PARTIAL) + r"(\d+)-", name)
        if match and not process_alive(int(match[1])):
            shutil.rmtree(os.path.join(parent, name), ignore_errors=True)


def work_folder(parent: str, suffix: str) -> str:
    """A new temporary folder beside the dependencies folder, named for this process."""
    return tempfile.mkdtemp(prefix=f"{PARTIAL}{os.getpid()}-", suffix=suffix, dir=parent)


def progress_of(line: str, collected: int) -> tuple:
    """(fraction done or None, packages seen so far) after a line of pip's output: resolving and downloading up
    to 0.6 (a TensorFlow install collects about 35 packages), unpacking 0.7, done 0.95."""
    text = line.strip()
    if text.startswith(("Collecting ", "Processing ")):
        collected += 1
        return min(0.6, 0.6 * collected / 40), collected
    if text.startswith("Installing collected packages"):
        return 0.7, collected
    if text.startswith("Successfully installed"):
        return 0.95, collected
    return None, collected


_CAUSES = (
    (("No module named pip",),
     "QGIS's Python ({executable}) has no pip", "install pip for it (Debian/Ubuntu: sudo apt install python3-pip; "
     "elsewhere: python -m ensurepip --user, with QGIS's Python) and install again"),
    (("No space left on device", "Errno 28"),
     "the disk is full", "free about {need} GB on the disk of {folder} and install again"),
    (("NewConnectionError", "Failed to establish a new connection", "Connection refused", "Max retries exceeded",
      "Temporary failure in name resolution", "Name or service not known", "ConnectTimeout", "Read timed out",
      "ProxyError", "SSLError", "Could not fetch URL", "Network is unreachable"),
     "{unreachable} cannot be reached",
     "check the network connection (and pip's proxy or index settings: PIP_INDEX_URL, pip.conf) and install again"),
    (("from versions: none", "No matching distribution found"),
     "the package index has no {requirement} for this Python ({python})",
     "check that the index is reachable and serves TensorFlow for Python {python} (pip's index settings), or "
     "install by hand (README: Install into QGIS desktop)"),
)


def unreachable_indexes(lines: list) -> list:
    """The http(s) package indexes pip looked in ("Looking in indexes: ...") that do not answer: with no retry
    left, pip says only that no version was found, as if the index had no TensorFlow."""
    urls = [url.rstrip(",") for line in lines if line.startswith("Looking in indexes:")
            for url in line.split(":", 1)[1].split()]
    dead = []
    for url in urls:
        if not url.startswith(("http://", "https://")):
            continue
        try:
            with urllib.request.urlopen(url.rstrip("/") + "/pip/", timeout=15):  # nosec B310  # http(s) only
                pass
        except urllib.error.HTTPError:
            pass  # it answers (a 404 for an unknown project is an answer)
        except (OSError, ValueError):
            dead.append(url.split("@")[-1] if "@" in url else url)  # no credentials in the message
    return dead


def failure(lines: list, returncode: int, requirement: str, folder: str, executable: str = "") -> InstallFailed:
    """The InstallFailed that names the cause of pip's failure, from its output, and the fix."""
    tail = "\n".join(line.rstrip() for line in lines[-PIP_TAIL:])
    text = "\n".join(lines)
    unreachable = "the network or the package index"
    if "from versions: none" in text:
        dead = unreachable_indexes(lines)
        if dead:
            text += "\nNewConnectionError"  # the cause below: the index cannot be reached
            unreachable = f"the package index {', '.join(dead)}"
    values = {"need": round(NEEDED_BYTES / 1e9, 1), "folder": folder, "requirement": requirement,
              "python": platform.python_version(), "executable": executable, "unreachable": unreachable}
    for markers, cause, fix in _CAUSES:
        if any(marker in text for marker in markers):
            return InstallFailed(f"Installing {requirement} failed: {cause.format(**values)}; "
                                 f"{fix.format(**values)}. Nothing was changed in {folder}.", tail)
    return InstallFailed(f"pip failed (exit status {returncode}) installing {requirement}; its last lines are in "
                         f"the log. Nothing was changed in {folder}.", tail)


def run_pip(command: list, progress, is_canceled, log_info, temporary: str) -> tuple:
    """Run pip, each line of its output to log_info and progress, its temporary files in `temporary`; (exit
    status, lines). On cancel (or any interruption, KeyboardInterrupt included) pip is stopped before this
    returns or raises."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", PIP_NO_INPUT="1", PIP_PROGRESS_BAR="off",
               PIP_ROOT_USER_ACTION="ignore",  # --target is no system install: no "running pip as root" warning
               TMPDIR=temporary, TEMP=temporary, TMP=temporary)
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                               text=True, errors="replace", env=env)  # nosec B603  # QGIS's Python, pip
    lines, collected = [], 0
    output = queue.Queue()

    def read():
        for line in process.stdout:
            output.put(line)
        output.put(None)

    reader = threading.Thread(target=read, name="seamless-pip-output", daemon=True)
    reader.start()
    try:
        while True:
            if is_canceled():
                raise Cancelled("Cancelled: pip was stopped; the dependencies folder is as it was.")
            try:
                line = output.get(timeout=0.2)
            except queue.Empty:
                continue
            if line is None:
                break
            line = line.rstrip("\n")
            lines.append(line)
            if line.strip() and "is ignored: it is neither a file nor a directory" not in line:
                log_info(line)
            fraction, collected = progress_of(line, collected)
            if fraction is not None:
                progress(fraction)
        return process.wait(), lines
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        reader.join(timeout=5)
        process.stdout.close()


def swap_in(partial: str, folder: str) -> None:
    """Replace the folder by the freshly installed one, by renames (the old one is removed after)."""
    parent = os.path.dirname(folder)
    trash = work_folder(parent, ".old")
    if os.path.exists(folder):
        os.rename(folder, os.path.join(trash, "dependencies"))
    try:
        os.rename(partial, folder)
    except OSError:
        if os.path.exists(os.path.join(trash, "dependencies")):
            os.rename(os.path.join(trash, "dependencies"), folder)
        raise
    shutil.rmtree(trash, ignore_errors=True)  # files a running process holds (Windows) go at the next install


def restart_reason(folder: str) -> str:
    """Why this process cannot use the installed folder without a restart ("" when it can)."""
    if "tensorflow" in sys.modules:
        return "TensorFlow is imported in this QGIS already"
    loaded = loaded_numpy()
    installed = dict((n.lower(), v) for n, v in packages(folder)).get("numpy")
    if loaded and installed and loaded != installed:
        return f"QGIS has imported numpy {loaded} already, and TensorFlow needs the installed numpy {installed}"
    return ""


def install(folder: str, progress=lambda fraction: None, is_canceled=lambda: False, log_info=print,
            python: str | None = None, requirement: tuple | None = None) -> InstallResult:
    """pip-install `requirement` (default: requirements()) with QGIS's own Python into a temporary folder beside
    `folder`, then swap it in and put it on sys.path; InstallFailed (cause and fix) or Cancelled leave the
    folder as it was and no temporary folder behind."""
    python = python or python_executable()
    if not python:
        raise DependencyMissing(f"No Python interpreter found in {sys.prefix} to run pip with; install by hand "
                                "(README: Install into QGIS desktop).")
    requirement = tuple(requirement or requirements())
    parent = os.path.dirname(folder)
    os.makedirs(parent, exist_ok=True)
    remove_stale(folder)
    free = shutil.disk_usage(parent).free
    if free < NEEDED_BYTES:
        raise InstallFailed(f"Installing {requirement[0]} needs about {NEEDED_BYTES / 1e9:.1f} GB on the disk of "
                            f"{parent}, which has {free / 1e9:.1f} GB free; free some space and install again. "
                            f"Nothing was changed in {folder}.")
    if "[and-cuda]" in requirement[0]:
        log_info("nvidia-smi lists an NVIDIA GPU: installing TensorFlow with its CUDA libraries "
                 f"({requirement[0]}, several GB)")
    log_info(f"Installing {' '.join(requirement)} with {python} into {folder}")
    # SIGTERM, SIGINT, SIGHUP (qgis_process, scripts) act as a cancel; the signal's own action comes after the
    # temporary folder is gone
    with signals_cancel(is_canceled) as canceled:
        # pip unpacks into its temporary folder, then moves into --target: both beside the folder, on the disk
        # checked above (a small /tmp does not fail it), renames rather than copies, and removed with it
        work = work_folder(parent, ".partial")
        try:
            target, temporary = os.path.join(work, "dependencies"), os.path.join(work, "tmp")
            os.mkdir(temporary)
            command = [python, "-m", "pip", "install", "--target", target, "--disable-pip-version-check",
                       "--no-input", "--progress-bar", "off", *requirement]
            returncode, lines = run_pip(command, progress, canceled or (lambda: False), log_info, temporary)
            if returncode != 0:
                raise failure(lines, returncode, requirement[0], folder, python)
            swap_in(target, folder)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    activate(folder)
    importlib.invalidate_caches()
    progress(1.0)
    return InstallResult(folder, packages(folder), restart_reason(folder))


def remove(folder: str) -> str:
    """Remove the folder and take it off sys.path; returns why a restart is needed ("" when not)."""
    reason = ""
    for name in ("tensorflow", "numpy"):
        module = sys.modules.get(name)
        if module is not None and str(getattr(module, "__file__", "")).startswith(folder + os.sep):
            reason = f"{name} from {folder} is imported in this QGIS"
            break
    deactivate(folder)
    if os.path.exists(folder):
        trash = work_folder(os.path.dirname(folder), ".old")
        os.rename(folder, os.path.join(trash, "dependencies"))
        shutil.rmtree(trash, ignore_errors=True)
    return reason
