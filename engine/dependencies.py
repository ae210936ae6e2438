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
import re
import shutil
import sys
import threading
import warnings

from .errors import DependencyMissing

# TensorFlow's version is pinned once, in requirements.txt (the project's venv, this module, the installer and the
# README read it; the plugin zip ships it)
REQUIREMENTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "requirements.txt")


def tensorflow_version(path: str = REQUIREMENTS) -> str:
    """The version specifier of TensorFlow in requirements.txt's `tensorflow-cpu==...` line ("2.21.*")."""
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            match = re.match(r"\s*tensorflow-cpu\s*==\s*(\S+)", line)
            if match:
                return match[1]
    raise DependencyMissing(f"{path} pins no tensorflow-cpu version (a line tensorflow-cpu==X.Y.*): reinstall the "
                            "plugin")


TENSORFLOW = f"tensorflow-cpu=={tensorflow_version()}"
TENSORFLOW_MACOS = f"tensorflow=={tensorflow_version()}"  # macOS has no tensorflow-cpu wheel
_PLATFORMS = (("Debian/Ubuntu", "Linux"), ("Windows", "Windows"), ("macOS", "Darwin"))


def numpy_requirement(version: str | None = None) -> str:
    """pip's requirement that keeps numpy on the major version QGIS's own GDAL bindings were built with: the major
    of the numpy given, else of the one this Python imports (1.x on Debian 12 / QGIS 3.22; 2.x on Debian 13, QGIS
    3.40+, OSGeo4W and macOS builds). TensorFlow 2.21 takes either, so pip never crosses it; crossing it breaks
    `osgeo.gdal_array` (numpy 2 under bindings built for 1.x) or cannot install (no numpy 1.x for Python 3.13)."""
    if version is None:
        try:
            import numpy  # noqa: PLC0415 (only for its version)
        except ImportError:
            return "numpy"
        version = numpy.__version__
    major = int(version.split(".")[0])
    return "numpy<2" if major < 2 else f"numpy>={major},<{major + 1}"


def tensorflow_requirement(system: str | None = None, numpy_version: str | None = None) -> str:
    """The quoted pip requirements for TensorFlow on a platform, numpy held to its major version."""
    tensorflow = TENSORFLOW_MACOS if (system or platform.system()) == "Darwin" else TENSORFLOW
    return f'"{tensorflow}" "{numpy_requirement(numpy_version)}"'


def install_command(system: str | None = None) -> str:
    """The command that installs TensorFlow into QGIS's own Python on a platform (Debian, Windows, macOS); on this
    platform it names this very interpreter (`python3` on PATH may be another Python than QGIS's) and keeps its
    numpy's major version; another platform's command assumes a QGIS 3.40+ (numpy 2)."""
    system = system or platform.system()
    here = system == platform.system()
    requirement = tensorflow_requirement(system, None if here else "2")
    if system == "Windows":
        return "python -m pip install " + requirement
    if system == "Darwin":
        return "/Applications/QGIS.app/Contents/MacOS/bin/python3 -m pip install --user " + requirement
    if not here:
        return f"/usr/bin/python3 -m pip install --user --break-system-packages {requirement}"
    python = python_executable() or "python3"
    if sys.prefix != sys.base_prefix:  # a virtual environment: no --user there
        return f"{python} -m pip install {requirement}"
    return f"{python} -m pip install --user --break-system-packages {requirement}"


_NOTES = {"Windows": "in the OSGeo4W Shell", "Darwin": "macOS has no tensorflow-cpu wheel",
          "Linux": "numpy stays on the major version QGIS's GDAL was built with"}


def install_hint(system: str | None = None) -> str:
    """The install command of a platform and why it reads so, on one line."""
    system = system or platform.system()
    note = _NOTES.get(system)
    return install_command(system) + (f"  ({note})" if note else "")


def other_hints(system: str | None = None) -> str:
    """The install command of every other platform (the user may read this on another machine)."""
    system = system or platform.system()
    return "; ".join(f"{name}: {install_hint(other)}" for name, other in _PLATFORMS if other != system)


def tensorflow_missing_text(folder: str | None = None, problem: str = "") -> str:
    """What the desktop notice's Details say: the interpreter QGIS runs (and `problem`, when TensorFlow is there
    but cannot run), the installer (into `folder`, the QGIS profile's) and, as a fallback, the one command."""
    version = ".".join(map(str, sys.version_info[:3]))
    note = _NOTES.get(platform.system())
    installer = (f"Click Install to install it for this Python into this QGIS profile's folder {folder} (about "
                 "600 MB to download the first time; the same as the algorithm Install dependencies). "
                 if folder else "")
    cannot = f": {problem}" if problem and "not installed" not in problem else ", which cannot import TensorFlow"
    return (f"QGIS runs Python {version} ({python_executable() or sys.prefix}){cannot}. "
            f"{installer}By hand, install it into that Python, then restart QGIS:\n\n{install_command()}"
            + (f"\n\n({note})" if note else ""))


def tensorflow_available() -> bool:
    """True when TensorFlow can be found, without importing it (cheap enough for plugin start-up)."""
    return importlib.util.find_spec("tensorflow") is not None


NUMPY_FOR_TENSORFLOW = (1, 26)  # TensorFlow 2.21's Requires-Dist numpy>=1.26.0
_DISTRIBUTIONS = {"tensorflow": {"tensorflow", "tensorflow-cpu", "tensorflow-macos"}}


def version_tuple(version: str) -> tuple:
    """(major, minor) of a version string ("2.21.0" -> (2, 21); "2.21.*" -> (2, 21))."""
    return tuple(int(part) for part in re.findall(r"\d+", version)[:2])


def module_in_use(name: str) -> tuple:
    """(version, folder) of the module this Python has imported or would import, found without importing it;
    ("", "") when there is none, ("", folder) when its distribution's version is unknown."""
    import importlib.metadata  # noqa: PLC0415 (only here)

    module = sys.modules.get(name)
    if module is not None and getattr(module, "__file__", None):
        return getattr(module, "__version__", ""), os.path.dirname(module.__file__)
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        return "", ""
    folder = list(spec.submodule_search_locations)[0]
    wanted = _DISTRIBUTIONS.get(name, {name})
    for dist in importlib.metadata.distributions(path=[os.path.dirname(folder)]):
        if (dist.metadata["Name"] or "").lower().replace("_", "-") in wanted:
            return dist.version, folder
    return "", folder


def tensorflow_problem() -> str:
    """Why TensorFlow cannot run the algorithms in this Python, seen without importing it ("" when nothing is
    seen): missing, older than requirements.txt's version, with a numpy older than it needs, or a numpy QGIS's
    GDAL was not built with."""
    version, folder = module_in_use("tensorflow")
    if not folder:
        return "TensorFlow is not installed in QGIS's Python"
    wanted = version_tuple(tensorflow_version())
    if version and version_tuple(version) < wanted:
        return f"TensorFlow {version} in QGIS's Python is older than {'.'.join(map(str, wanted))}"
    numpy_version = module_in_use("numpy")[0]
    if numpy_version and version_tuple(numpy_version) < NUMPY_FOR_TENSORFLOW:
        return (f"numpy {numpy_version} in QGIS's Python is older than TensorFlow needs "
                f"({'.'.join(map(str, NUMPY_FOR_TENSORFLOW))})")
    return gdal_numpy_problem()


def gdal_numpy_problem() -> str:
    """Why GDAL's numpy bindings (osgeo.gdal_array) cannot run with the numpy this Python imports, e.g. numpy 2
    under bindings built for 1.x ("" when they can, or when there is no GDAL); imports numpy and GDAL."""
    if importlib.util.find_spec("osgeo") is None:
        return ""
    try:
        importlib.import_module("osgeo.gdal_array")
    except ImportError as exc:
        version = module_in_use("numpy")[0]
        return f"numpy {version} in QGIS's Python is not the one QGIS's GDAL was built with ({exc})"
    return ""


class _Unneeded:
    """An import finder that refuses, while TensorFlow is being imported, the packages it imports only for Keras:
    `import tensorflow` imports Keras eagerly ("so that optimizers register"), which brings matplotlib, rich and
    PIL, and TensorFlow's own legacy Keras brings scipy and h5py, each import guarded by TensorFlow. Serving a
    SavedModel's signature needs none of them: measured, 880 modules and 64 MB of RSS fewer (558 -> 494 MB after
    the import). Only real imports are refused (TensorFlow's `importlib.util.find_spec` probes still find them),
    and only during the import: anyone may import Keras afterwards."""

    NAMES = ("keras", "scipy", "h5py", "matplotlib")

    def __init__(self):
        self.thread = threading.get_ident()  # QGIS's other threads may import matplotlib meanwhile: theirs go

    def find_spec(self, name, path=None, target=None):
        """Refuse a real import of NAMES (called from the import system's _find_and_load), in the importing thread."""
        if name.partition(".")[0] in self.NAMES and threading.get_ident() == self.thread and \
                sys._getframe(2).f_code.co_name == "_find_and_load_unlocked":
            raise ModuleNotFoundError(f"{name}: not imported to serve a SavedModel", name=name)
        return None


def import_tensorflow():
    """Import TensorFlow, or raise DependencyMissing with the platform's install command.

    Keras and the packages TensorFlow imports only for it are left out of the import (_Unneeded), unless they
    are already imported or SEAMLESS_TF_KERAS=1.

    Inside QGIS (desktop and qgis_process) the executable links Debian's libprotobuf into the global symbol
    scope; TensorFlow's own protobuf then resolves to it and aborts ("File already exists in database").
    RTLD_DEEPBIND makes TensorFlow's libraries use their own symbols first. Measured: without it
    qgis_process.bin dies at `import tensorflow`; with it the model runs.
    """
    if _imported.get("tensorflow") is not None:
        return _imported["tensorflow"]
    # one import at a time: two runs started together in a fresh QGIS would otherwise see the module half
    # initialised ("partially initialized module", or a _DeadlockError in importlib) and fail
    with _import_lock:
        if _imported.get("tensorflow") is None:
            _imported["tensorflow"] = _import_tensorflow()
    return _imported["tensorflow"]


_import_lock = threading.Lock()
_imported = {}


def _import_tensorflow():
    if "tensorflow" in sys.modules and getattr(sys.modules["tensorflow"], "saved_model", None) is not None:
        return sys.modules["tensorflow"]  # imported by someone else (the user's script, another plugin)
    flags = sys.getdlopenflags() if hasattr(sys, "getdlopenflags") else None
    unneeded = None if "keras" in sys.modules or os.environ.get("SEAMLESS_TF_KERAS") == "1" else _Unneeded()
    try:
        if flags is not None and hasattr(os, "RTLD_DEEPBIND"):
            sys.setdlopenflags(flags | os.RTLD_DEEPBIND)
        if unneeded:
            sys.meta_path.insert(0, unneeded)
        tf = importlib.import_module("tensorflow")
        # autograph's gast passes Python 3.13 keywords it deprecates, a DeprecationWarning per converted node on
        # qgis_process's stderr (QGIS shows DeprecationWarnings): TensorFlow's business, not the user's
        warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"gast(\.|$)")
    except Exception as exc:  # ImportError, but also a broken numpy ABI or a missing native library
        raise DependencyMissing(
            f"TensorFlow cannot be imported in this Python ({python_executable()}, {exc.__class__.__name__}: "
            f"{exc}). Install it with the algorithm Install dependencies (TensorFlow), from the Toolbox or "
            "`qgis_process run seamless:installdependencies`, or by hand into QGIS's Python: "
            f"{install_hint()}. Elsewhere: {other_hints()}") from exc
    finally:
        if unneeded in sys.meta_path:
            sys.meta_path.remove(unneeded)
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
    """The Python interpreter running this code, as a program children can start. Inside QGIS, sys.executable is
    QGIS itself or whatever `python3` PATH finds first (seen: a pyenv shim, another Python than QGIS's 3.11), so
    it counts only when it lies in this Python's prefix; else pythonX.Y in the prefix (checked to exist)."""
    major, minor = sys.version_info[:2]
    folders = []
    for prefix in dict.fromkeys((sys.prefix, sys.exec_prefix)):  # a venv's prefix, then the base's
        folders += [os.path.join(prefix, "bin"), prefix]  # POSIX prefix/bin; Windows prefix/python.exe
    executable = os.path.abspath(sys.executable) if sys.executable else ""
    if os.path.basename(executable).lower().startswith("python") and os.path.dirname(executable) in folders:
        return executable
    for folder in folders:
        for name in (f"python{major}.{minor}", f"python{major}", "python", "python.exe"):
            path = os.path.join(folder, name)
            if os.path.isfile(path) and os.access(path, os.X_OK):
                return path
    return shutil.which(f"python{major}.{minor}") or shutil.which(f"python{major}")
