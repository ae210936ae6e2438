"""Optional heavy dependencies, imported lazily: TensorFlow (with an install hint for each platform when missing)
and pyotb with OTB (the OTBTF backend and the OTB comparison path).

pyotb is never imported at module level: `import pyotb` raises SystemExit when OTB is missing (SystemError in an
interactive console), and when OTB's libraries are on disk without their Python bindings (Debian's otb-bin) it
loads every library of OTB's prefix into the process with ctypes and changes the environment (GDAL_DRIVER_PATH,
PROJ_LIB, ...), then fails with OSError. So `import_pyotb` tries that case in a child Python first, imports in
this process only what is known to import, restores the environment after a failure, and caches the answer.
"""

import importlib
import importlib.util
import os
import platform
import shutil
import subprocess
import sys
import threading

from .errors import DependencyMissing

TENSORFLOW_REQUIREMENT = '"tensorflow-cpu==2.21.*" "numpy<2"'


def install_hint(system: str | None = None) -> str:
    """The command that installs TensorFlow into QGIS's own Python on this platform (Debian, Windows, macOS)."""
    system = system or platform.system()
    if system == "Windows":
        return ("In the OSGeo4W Shell: python -m pip install " + TENSORFLOW_REQUIREMENT)
    if system == "Darwin":
        return ("/Applications/QGIS.app/Contents/MacOS/bin/python3 -m pip install --user "
                '"tensorflow==2.21.*" "numpy<2"  (macOS has no tensorflow-cpu wheel)')
    return ("python3 -m pip install --user --break-system-packages " + TENSORFLOW_REQUIREMENT
            + "  (Debian/Ubuntu; numpy<2 keeps Debian's GDAL bindings working)")


def all_hints() -> str:
    """The install command of every platform (the user may read this on another machine)."""
    return "; ".join(f"{name}: {install_hint(system)}" for name, system in
                     (("Debian/Ubuntu", "Linux"), ("Windows", "Windows"), ("macOS", "Darwin")))


def tensorflow_available() -> bool:
    """True when TensorFlow can be found, without importing it (cheap enough for plugin start-up)."""
    return importlib.util.find_spec("tensorflow") is not None


def import_tensorflow():
    """Import TensorFlow, or raise DependencyMissing with the platform's install command.

    Inside QGIS (desktop and qgis_process) the executable links Debian's libprotobuf into the global symbol
    scope; TensorFlow's own protobuf then resolves to it and aborts ("File already exists in database").
    RTLD_DEEPBIND makes TensorFlow's libraries use their own symbols first. Measured: without it
    qgis_process.bin dies at `import tensorflow`; with it the model runs.
    """
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    flags = sys.getdlopenflags() if hasattr(sys, "getdlopenflags") else None
    try:
        if flags is not None and hasattr(os, "RTLD_DEEPBIND"):
            sys.setdlopenflags(flags | os.RTLD_DEEPBIND)
        tf = importlib.import_module("tensorflow")
    except Exception as exc:  # ImportError, but also a broken numpy ABI or a missing native library
        raise DependencyMissing(
            f"TensorFlow cannot be imported in this Python ({sys.executable}, {exc.__class__.__name__}: {exc}). "
            f"Install it into QGIS's Python: {install_hint()}. Elsewhere: {all_hints()}") from exc
    finally:
        if flags is not None:
            sys.setdlopenflags(flags)
    return tf


# what a failed `import pyotb` raises: SystemExit/SystemError (OTB not found), ImportError, AttributeError, OSError
# (ctypes loading OTB's prefix), RuntimeError; never let one of them end QGIS or unload the provider
PYOTB_ERRORS = (Exception, SystemExit)
OTBTF_INSTALL_HINT = ("To use it, run QGIS where OTB 9 with the OTBTF module and pyotb are installed (the OTBTF "
                      "docker images, or OTB built with the OTBTF remote module, plus `pip install pyotb`), with OTB's "
                      "Python bindings (otbApplication) on PYTHONPATH or OTB_ROOT set to OTB's prefix")
_PROBE = ("try:\n    import pyotb\nexcept BaseException as exc:\n"
          "    print('\\n@@ ' + type(exc).__name__ + ': ' + str(exc).strip())\n"
          "else:\n    print('\\n@@ ok')\n")
_cache: dict = {}
_lock = threading.Lock()  # Processing runs algorithms in worker threads


def import_pyotb(refresh: bool = False) -> tuple:
    """(pyotb module or None, reason): pyotb with OTB, imported safely once per process (refresh: again)."""
    with _lock:
        if refresh:
            _cache.clear()
        if "pyotb" not in _cache:
            _cache["pyotb"] = _import_pyotb()
        return _cache["pyotb"]


def _import_pyotb() -> tuple:
    if "pyotb" in sys.modules:
        return sys.modules["pyotb"], _describe(sys.modules["pyotb"])
    if importlib.util.find_spec("pyotb") is None:
        return None, "pyotb is not installed"
    if (not os.environ.get("OTB_ROOT") and "otbApplication" not in sys.modules
            and importlib.util.find_spec("otbApplication") is None):
        # pyotb would scan the disk and ctypes-load what it finds into this process: try it in a child first
        failure = _probe_in_child()
        if failure:
            return None, failure
    saved_env, saved_path = dict(os.environ), list(sys.path)
    ps1 = sys.__dict__.pop("ps1", None)  # in an interactive console pyotb raises SystemError (older: asks)
    os.environ.setdefault("OTB_LOGGER_LEVEL", "WARNING")  # OTB logs every app's INFO lines to the console
    quiet_pyotb = "PYOTB_LOGGER_LEVEL" not in os.environ
    if quiet_pyotb:
        os.environ["PYOTB_LOGGER_LEVEL"] = "WARNING"
    try:
        import pyotb  # noqa: PLC0415 (lazy on purpose)
    except PYOTB_ERRORS as exc:
        _restore_environment(saved_env)
        sys.path[:] = saved_path
        for name in [m for m in sys.modules if m == "pyotb" or m.startswith("pyotb.")]:
            del sys.modules[name]
        return None, f"pyotb is installed but OTB was not found or could not be loaded ({_error(exc)})"
    finally:
        if ps1 is not None:
            sys.ps1 = ps1
        if quiet_pyotb:
            os.environ.pop("PYOTB_LOGGER_LEVEL", None)
    return pyotb, _describe(pyotb)


def _describe(pyotb) -> str:
    count = len(getattr(pyotb, "AVAILABLE_APPLICATIONS", ()) or ())
    return f"pyotb {getattr(pyotb, '__version__', '?')} with OTB ({count} applications)"


def _error(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0] if text else ''}".rstrip(": ")


def _restore_environment(saved: dict) -> None:
    for key in [k for k in os.environ if k not in saved]:
        del os.environ[key]
    for key, value in saved.items():
        if os.environ.get(key) != value:
            os.environ[key] = value


def python_executable() -> str | None:
    """A Python interpreter of this installation (inside QGIS, sys.executable is QGIS itself)."""
    if os.path.basename(sys.executable or "").lower().startswith("python"):
        return sys.executable
    version = f"{sys.version_info.major}.{sys.version_info.minor}"
    for folder in (os.path.join(sys.exec_prefix, "bin"), sys.exec_prefix):
        for name in (f"python{version}", f"python{sys.version_info.major}", "python", "python.exe"):
            if os.path.isfile(os.path.join(folder, name)):
                return os.path.join(folder, name)
    return shutil.which(f"python{version}") or shutil.which("python3")


def _probe_in_child() -> str | None:
    """None when `import pyotb` works in a child Python with this environment, else why it does not."""
    python = python_executable()
    if python is None:
        return ("pyotb is installed but OTB's Python bindings (otbApplication) are not importable and no Python "
                "interpreter was found to check pyotb's own search safely")
    env = dict(os.environ, PYOTB_LOGGER_LEVEL="CRITICAL", OTB_LOGGER_LEVEL="WARNING",
               PYTHONPATH=os.pathsep.join(p for p in sys.path if p))
    try:
        run = subprocess.run([python, "-c", _PROBE], capture_output=True, text=True, env=env, timeout=120,
                             stdin=subprocess.DEVNULL, check=False)
    except (OSError, subprocess.SubprocessError) as exc:
        return f"pyotb is installed but checking it failed ({_error(exc)})"
    answers = [line[3:] for line in run.stdout.splitlines() if line.startswith("@@ ")]
    if answers and answers[-1] == "ok":
        return None
    detail = answers[-1] if answers else (run.stderr.strip().splitlines() or [f"exit status {run.returncode}"])[-1]
    return (f"pyotb is installed but OTB was not found: its Python bindings (otbApplication) are not importable "
            f"and pyotb's own search failed ({detail})")


def otbtf_status(refresh: bool = False) -> tuple:
    """(True, why) when pyotb imports with OTB and has TensorflowModelServe, else (False, why not); cached."""
    pyotb, reason = import_pyotb(refresh)
    if pyotb is None:
        return False, reason
    try:
        present = hasattr(pyotb, "TensorflowModelServe")
    except PYOTB_ERRORS:
        present = False
    if not present:
        return False, f"{reason} is installed, but not OTBTF: pyotb has no TensorflowModelServe"
    return True, f"{reason} has TensorflowModelServe"
