"""OTBTF through pyotb: the second inference backend, used when OTB with the OTBTF module is installed.

The seed drives OTBTF with `pyotb.TensorflowModelServe(n_sources=..., source1_il=..., ...)` and
`write(path, ext_fname="box=x:y:w:h")` (otbtf-semantics.md 2.4, 3.2-3.3). `pyotb_parameters` maps an engine
request to exactly those keyword arguments (a pure function); `run_otbtf` runs them and writes the output safely.

pyotb is never imported at module level: `import pyotb` raises SystemExit when OTB is missing (SystemError in an
interactive console), and when OTB's libraries are on disk without their Python bindings (Debian's otb-bin) it
loads every library of OTB's prefix into the process with ctypes and changes the environment (GDAL_DRIVER_PATH,
PROJ_LIB, ...), then fails with OSError. So `import_pyotb` tries that case in a child Python first, imports in
this process only what is known to import, restores the environment after a failure, and caches the answer.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid

from .errors import Cancelled, EngineError
from .inference import OTBTF, InferenceRequest, InferenceResult, Plan, _check_output_path, plan_inference
from .raster import creation_options

AUTO_BACKEND, TENSORFLOW_BACKEND, OTBTF_BACKEND = "auto", "tensorflow", "otbtf"
BACKENDS = (AUTO_BACKEND, TENSORFLOW_BACKEND, OTBTF_BACKEND)
BACKEND_NAMES = {TENSORFLOW_BACKEND: "TensorFlow", OTBTF_BACKEND: "OTBTF"}
# OTB's writer pixel types (pyotb `pixel_type=`) for the engine's data types
PIXEL_TYPES = {"float32": "float", "float64": "double", "uint8": "uint8", "int16": "int16", "uint16": "uint16",
               "int32": "int32", "uint32": "uint32"}
INSTALL_HINT = ("To use it, run QGIS where OTB 9 with the OTBTF module and pyotb are installed (the OTBTF docker "
                "images, or OTB built with the OTBTF remote module, plus `pip install pyotb`), with OTB's Python "
                "bindings (otbApplication) on PYTHONPATH or OTB_ROOT set to OTB's prefix")
# what a failed `import pyotb` raises: SystemExit/SystemError (OTB not found), ImportError, AttributeError, OSError
# (ctypes loading OTB's prefix), RuntimeError; never let one of them end QGIS or unload the provider
PYOTB_ERRORS = (Exception, SystemExit)
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


def _python() -> str | None:
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
    python = _python()
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


def otbtf_unsupported(request: InferenceRequest) -> tuple | None:
    """(message, parameter) when OTBTF's TensorflowModelServe cannot run this request as asked, else None."""
    if request.extent_mode != OTBTF:
        return ("the OTBTF backend supports the OTBTF extent mode only; choose OTBTF, or the TensorFlow backend "
                "for Full", "EXTENT_MODE")
    if request.crop:
        return (f"the OTBTF backend cannot crop the model's output ({request.crop} px a side asked); choose a "
                "`_cropN` output without extra crop, or the TensorFlow backend", "CROP")
    return None


def choose_backend(requested: str, request: InferenceRequest | None = None) -> tuple:
    """(backend, reason) for "auto", "tensorflow" or "otbtf"; Auto takes OTBTF when it is installed and can run
    `request`. Forcing OTBTF where it cannot run raises an EngineError naming BACKEND (or the request's field)."""
    if requested not in BACKENDS:
        raise EngineError(f"Unknown backend {requested!r}; choose one of {', '.join(BACKENDS)}.", "BACKEND")
    if requested == TENSORFLOW_BACKEND:
        return TENSORFLOW_BACKEND, "as requested"
    available, reason = otbtf_status()
    unsupported = otbtf_unsupported(request) if request is not None else None
    if requested == OTBTF_BACKEND:
        if not available:
            raise EngineError(f"The OTBTF backend is not available: {reason}. {INSTALL_HINT}; or choose the "
                              "TensorFlow or Auto backend.", "BACKEND")
        if unsupported:
            raise EngineError(unsupported[0][0].upper() + unsupported[0][1:] + ".", unsupported[1])
        return OTBTF_BACKEND, f"as requested: {reason}"
    if not available:
        return TENSORFLOW_BACKEND, reason
    if unsupported:
        return TENSORFLOW_BACKEND, f"OTBTF is installed but {unsupported[0]}"
    return OTBTF_BACKEND, reason


def pyotb_parameters(request: InferenceRequest, plan: Plan, path: str | None = None) -> tuple:
    """(TensorflowModelServe keyword arguments, write() keyword arguments) of a planned request, as the seed's
    pyotb scripts spell them ('_' for '.'); pure. The box is `plan.window` in OTBTF's output index space, and is
    given only when the window is not the whole OTBTF grid; `path` is the output file (left out when None)."""
    unsupported = otbtf_unsupported(request)
    if unsupported:
        raise EngineError(unsupported[0][0].upper() + unsupported[0][1:] + ".", unsupported[1])
    app = {"n_sources": len(request.sources)}
    for index, (source, placeholder) in enumerate(zip(request.sources, plan.placeholders), 1):
        app[f"source{index}_il"] = list(source.paths)
        app[f"source{index}_rfieldx"], app[f"source{index}_rfieldy"] = (int(v) for v in source.rfield)
        app[f"source{index}_placeholder"] = placeholder
        if source.nodata is not None:
            app[f"source{index}_nodata"] = source.nodata
    app["model_dir"] = request.model_dir
    app["model_fullyconv"] = True
    app["output_names"] = plan.output_names[0] if len(plan.output_names) == 1 else list(plan.output_names)
    app["output_efieldx"], app["output_efieldy"] = plan.efield
    if request.spcscale != 1:
        app["output_spcscale"] = request.spcscale
    if request.background:
        app["output_bv"] = request.background
    if request.tile_size:
        app["optim_tilesizex"], app["optim_tilesizey"] = plan.tile
    write = {"path": path} if path else {}
    if PIXEL_TYPES[request.data_type] != "float":  # OTB's default
        write["pixel_type"] = PIXEL_TYPES[request.data_type]
    x0, y0, x1, y1 = plan.window
    extended = [] if plan.window == (0, 0, plan.out_x.size, plan.out_y.size) else [f"box={x0}:{y0}:{x1 - x0}:{y1 - y0}"]
    extended += [f"gdal:co:{option}" for option in creation_options(request.compression, request.data_type)]
    if extended:
        write["ext_fname"] = "&".join(extended)
    return app, write


def pyotb_script(app: dict, write: dict) -> str:
    """The pyotb code of a run, to log: what a user would type to reproduce it outside QGIS."""
    args = ", ".join(f"{k}={v!r}" for k, v in app.items())
    path = write.get("path")
    rest = ", ".join(f"{k}={v!r}" for k, v in write.items() if k != "path")
    return f"pyotb.TensorflowModelServe({args}).write({', '.join(filter(None, [repr(path) if path else '', rest]))})"


def run_otbtf(request: InferenceRequest, output_path: str, log=None, progress=None,
              is_canceled=None) -> InferenceResult:
    """Run a request through pyotb's TensorflowModelServe into `output_path`: written under a temporary name and
    renamed when complete; the written size and origin are checked against the exact plan (warning logged)."""
    started = time.perf_counter()
    say = log or (lambda text: None)
    unsupported = otbtf_unsupported(request)
    if unsupported:
        raise EngineError(unsupported[0][0].upper() + unsupported[0][1:] + ".", unsupported[1])
    available, reason = otbtf_status()
    if not available:
        raise EngineError(f"The OTBTF backend is not available: {reason}. {INSTALL_HINT}.", "BACKEND")
    pyotb = import_pyotb()[0]
    _check_output_path(request, output_path)
    folder = os.path.dirname(os.path.abspath(output_path))
    if not os.path.isdir(folder) or not os.access(folder, os.W_OK):
        raise EngineError(f"The output folder {folder!r} does not exist or is not writable; choose another path.",
                          "OUTPUT")
    plan = plan_inference(request, measure=False)
    temp = os.path.join(folder, f".{os.path.basename(output_path)}.{uuid.uuid4().hex[:8]}.partial.tif")
    app_kwargs, write_kwargs = pyotb_parameters(request, plan, temp)
    width, height = plan.size
    say(f"OTBTF grid: {width} x {height} output pixels (window {plan.window} of the {plan.out_x.size} x "
        f"{plan.out_y.size} grid), expression field {plan.efield[0]} x {plan.efield[1]}.")
    say("OTBTF run: " + pyotb_script(app_kwargs, dict(write_kwargs, path=output_path)))
    if is_canceled and is_canceled():
        raise Cancelled("Cancelled by the user.")
    try:
        try:
            written = pyotb.TensorflowModelServe(**app_kwargs).write(**write_kwargs)
        except PYOTB_ERRORS as exc:
            raise EngineError(f"OTBTF's TensorflowModelServe failed: {str(exc).strip()}", "BACKEND") from exc
        if not written or not os.path.exists(temp):
            raise EngineError(f"OTBTF's TensorflowModelServe wrote no output for {output_path!r}.", "BACKEND")
        if is_canceled and is_canceled():
            raise Cancelled("Cancelled by the user.")
        _finish(temp, plan, say)
        os.replace(temp, output_path)
    finally:
        for leftover in (temp, temp + ".aux.xml", temp[:-4] + ".geom"):
            if os.path.exists(leftover):
                os.remove(leftover)
    if progress:
        progress(1.0)
    seconds = time.perf_counter() - started
    blocks = -(-width // plan.efield[0]) * -(-height // plan.efield[1])
    say(f"Wrote {output_path} with OTBTF in {seconds:.1f} s ({width * height / max(seconds, 1e-9) / 1e6:.2f} "
        "Mpx/s of output).")
    return InferenceResult(output_path, plan, blocks, 0, seconds, "OTBTF (pyotb TensorflowModelServe)")


def _finish(path: str, plan: Plan, say) -> None:
    """Name the bands as the TensorFlow backend does, and warn when OTBTF's grid differs from the exact plan
    (TensorflowModelServe snaps its extent onto the source grids in floating point: findings.md 3)."""
    from osgeo import gdal  # noqa: PLC0415

    from .model import read_signature  # noqa: PLC0415

    signature = read_signature(plan.request.model_dir)
    names = []
    for name in plan.output_names:
        count = signature.output(name).channels or 1
        names += [name] if count == 1 else [f"{name}[{c}]" for c in range(count)]
    dataset = gdal.Open(path, gdal.GA_Update)
    try:
        if dataset.RasterCount == len(names):
            for index, name in enumerate(names):
                dataset.GetRasterBand(index + 1).SetDescription(name)
        got, want = dataset.GetGeoTransform(), plan.geotransform
        size = (dataset.RasterXSize, dataset.RasterYSize)
    finally:
        dataset = None
    dx, dy = (round((got[0] - want[0]) / want[1], 3) + 0.0, round((got[3] - want[3]) / want[5], 3) + 0.0)  # no -0
    if size != plan.size or abs(dx) > 1e-3 or abs(dy) > 1e-3:
        say(f"Warning: OTBTF wrote {size[0]} x {size[1]} pixels starting ({dx:+.3f}, {dy:+.3f}) output pixels from "
            f"the exact grid's {plan.size[0]} x {plan.size[1]}: TensorflowModelServe snaps its extent onto the "
            "source grids in floating point (with non-round origins it can also misregister the sources by a "
            "pixel); the TensorFlow backend computes the OTBTF grid exactly.")
