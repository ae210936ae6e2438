"""Optional heavy dependencies: TensorFlow, imported lazily with an install hint for each platform when missing;
a real Python interpreter for child processes; what to install for the OTBTF backend.

pyotb is never imported in this process: `import pyotb` raises SystemExit when OTB is missing, loads every
library of OTB's prefix with ctypes when only OTB's libraries are there, and with OTBTF installed it aborts
QGIS (engine.otb_process runs it in a child process instead).
"""

import importlib
import importlib.util
import os
import platform
import shutil
import sys

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


def import_distributed():
    """Dask's distributed, for the Dask backend (CLUSTER), or DependencyMissing with the install command."""
    try:
        return importlib.import_module("distributed")
    except ImportError as exc:
        raise DependencyMissing(f"A cluster needs Dask's distributed, which this Python ({sys.executable}) cannot "
                                f"import ({exc}); install it: python3 -m pip install \"dask[distributed]\", or "
                                "leave Cluster empty to run here.") from exc


OTBTF_INSTALL_HINT = ("To use it, run QGIS where OTB 9 with the OTBTF module and pyotb are installed (the OTBTF "
                      "docker images, or OTB built with the OTBTF remote module, plus `pip install pyotb`), with OTB's "
                      "Python bindings (otbApplication) on PYTHONPATH or OTB_ROOT set to OTB's prefix")


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
