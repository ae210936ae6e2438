"""Whole processes, start to exit: the plugin's `qgis_process` runs (cold, and the second call through the warm
engine) against real OTBTF's (the seed's pyotb calls, one fresh Python each) at several scene sizes; QGIS's own
floor (qgis_process running a native algorithm on 10 x 10 pixels); and what one cold call pays, step by step. Used
by bench.py; every figure is wall-clock seconds of one process, the best of REPEATS on both sides (a busy machine
only slows a process down), or Mpx/s of its output (the two sides' grids differ by a few percent: OTBTF truncates to
whole expression fields). qgis_process.bin runs directly, in the environment tools/qgis_process sets, so that the
wrapper script's own time is not counted."""

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from osgeo import gdal

ROOT = Path(__file__).resolve().parents[1]
MODEL = str(ROOT / "sample" / "model")
QGIS_PROCESS = ROOT / "tools" / "qgis_process"
QGIS_PROCESS_BIN = "/usr/bin/qgis_process.bin"  # what tools/qgis_process runs
REPEATS = {512: 3, 2048: 3}  # whole processes per row and size, the best kept; 2 at other sizes
FLOOR_ROW = "QGIS's floor: native:createconstantrasterlayer, 10 x 10 px"
OTBTF_ENV = ROOT / ".build" / "otbtf" / "env.sh"
ALGORITHMS = {"valid": "seamless:validpartinference", "artifact": "seamless:artifactproneinference"}
OTBTF_OUTPUTS = {"valid": ("estimated_crop32", 64), "artifact": ("estimated", 128)}  # the seed's two runs

SEED_RUN = """
import json, sys, time
started = time.perf_counter()
try:  # pyotb raises SystemExit without OTB: a clear exit, not a traceback
    import pyotb
except (ImportError, SystemExit, SystemError) as exc:
    sys.exit(f"pyotb with OTBTF is not importable: {type(exc).__name__}: {exc}")
imported = time.perf_counter()
pan, xs, model, path, name, efield = sys.argv[1:7]
infer = pyotb.TensorflowModelServe(n_sources=2,
    source1_il=pan, source1_rfieldx=128, source1_rfieldy=128, source1_placeholder="input_p",
    source2_il=xs, source2_rfieldx=32, source2_rfieldy=32, source2_placeholder="input_xs",
    model_dir=model, model_fullyconv=True, output_efieldx=int(efield), output_efieldy=int(efield), output_names=name)
infer.write(path)
print(json.dumps({"import_s": imported - started, "run_s": time.perf_counter() - imported,
                  "pixels": infer.shape[0] * infer.shape[1]}))
"""

# one cold call's costs, each step timed in a fresh plain Python as the algorithm runs them (no QGIS)
STEPS = """
import json, sys, time
t = [time.perf_counter()]
sys.path.insert(0, sys.argv[1])
from seamless_inference.engine import InferenceRequest, Source, plan_inference, run_inference
t.append(time.perf_counter())
from seamless_inference.engine.dependencies import import_tensorflow
import_tensorflow()
t.append(time.perf_counter())
from seamless_inference.engine.model import SavedModel
SavedModel.load(sys.argv[2])
t.append(time.perf_counter())
sources = (Source((sys.argv[3],), 128, "input_p"), Source((sys.argv[4],), 32, "input_xs"))
request = InferenceRequest(sys.argv[2], sources, output_names=("estimated_crop32",))
plan = plan_inference(request)
t.append(time.perf_counter())
run_inference(request, sys.argv[5], plan=plan)
t.append(time.perf_counter())
names = ("plugin's engine import", "TensorFlow import", "model load", "planning", "run and write")
print(json.dumps({n: b - a for n, a, b in zip(names, t, t[1:])}))
"""


def otbtf_environment() -> dict | None:
    """The variables `. .build/otbtf/env.sh` sets (`make otbtf`), or None when OTBTF is not built."""
    if not OTBTF_ENV.exists():
        return None
    run = subprocess.run(["bash", "-c", f'. "{OTBTF_ENV}" && env -0'], capture_output=True, check=True)
    return dict(item.split("=", 1) for item in run.stdout.decode().split("\0") if "=" in item)


def otbtf_process(env: dict, pan, xs, kind: str, out: Path) -> dict:
    """One real OTBTF run in a fresh Python: its write() alone (warm) and start to exit (whole process)."""
    name, efield = OTBTF_OUTPUTS[kind]
    started = time.perf_counter()
    run = subprocess.run([sys.executable, "-c", SEED_RUN, str(pan), str(xs), MODEL, str(out), name, str(efield)],
                         capture_output=True, text=True, env=dict(env, TF_CPP_MIN_LOG_LEVEL="2"), timeout=1800)
    whole = time.perf_counter() - started
    out.unlink(missing_ok=True)
    if run.returncode:
        raise RuntimeError(f"OTBTF {kind}: exit {run.returncode}: {run.stderr.strip()[-300:]}")
    figures = json.loads([line for line in run.stdout.splitlines() if line.startswith("{")][-1])
    return {"warm_mpx_per_s": figures["pixels"] / figures["run_s"] / 1e6, "whole_process_s": whole,
            "whole_mpx_per_s": figures["pixels"] / whole / 1e6, "pixels": figures["pixels"]}


def qgis_environment() -> dict:
    """The environment tools/qgis_process runs qgis_process.bin in (its profile, plugin folder, the venv's
    packages), read once through the script itself."""
    run = subprocess.run([str(QGIS_PROCESS), "-0"], capture_output=True, check=True, timeout=120,
                         env=dict(os.environ, SEAMLESS_QGIS_PROCESS="env"))
    return dict(item.split("=", 1) for item in run.stdout.decode().split("\0") if "=" in item)


def qgis_run(arguments: list, out: Path, what: str, env: dict, timeout: float = 600.0) -> tuple:
    """(seconds, stdout) of one whole qgis_process.bin run, start to exit; RuntimeError when it fails, times out or
    leaves no output."""
    out.unlink(missing_ok=True)
    started = time.perf_counter()
    try:
        run = subprocess.run([QGIS_PROCESS_BIN, *arguments], capture_output=True, text=True, timeout=timeout,
                             env=dict(env, TF_CPP_MIN_LOG_LEVEL="2"))
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"qgis_process still running after {timeout:.0f} s") from exc
    seconds = time.perf_counter() - started
    if run.returncode != 0 or not out.exists():
        tail = " | ".join((run.stderr or run.stdout).strip().splitlines()[-3:])
        raise RuntimeError(f"qgis_process {what}: exit code {run.returncode}: {tail}")
    return seconds, run.stdout


def floor_process(env: dict, out: Path) -> dict:
    """QGIS's floor: one whole qgis_process run of a native algorithm on 10 x 10 pixels (QGIS's start, the
    profile's plugins loaded, the algorithm's set-up, exit), the least any qgis_process call costs here."""
    seconds, _ = qgis_run(["run", "native:createconstantrasterlayer", "--", "EXTENT=0,10,0,10 [EPSG:32631]",
                           "TARGET_CRS=EPSG:32631", "PIXEL_SIZE=1", "NUMBER=1", f"OUTPUT={out}"], out, "floor", env)
    out.unlink(missing_ok=True)
    return {"whole_process_s": seconds, "whole_mpx_per_s": 100 / seconds / 1e6, "pixels": 100}


def plugin_process(pan, xs, kind: str, out: Path, env: dict, timeout: float = 600.0) -> dict:
    """One whole qgis_process run of valid-part or artifact-prone inference with the algorithm's defaults, start to
    exit; RuntimeError when it fails, times out or leaves no output."""
    seconds, stdout = qgis_run(["run", ALGORITHMS[kind], "--", f"MODEL={MODEL}", f"SOURCE1={pan}", f"SOURCE2={xs}",
                                f"OUTPUT={out}"], out, kind, env, timeout)
    dataset = gdal.Open(str(out))
    pixels = dataset.RasterXSize * dataset.RasterYSize
    dataset = None
    out.unlink(missing_ok=True)
    return {"whole_process_s": seconds, "whole_mpx_per_s": pixels / seconds / 1e6, "pixels": pixels,
            "warm_engine": "Warm engine: pid" in stdout}


def warm_folder(work: Path) -> Path:
    """A private folder (0700) for the bench's warm engine, emptied first."""
    folder = work / "warm-engine"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(mode=0o700, parents=True)
    os.chmod(folder, 0o700)
    return folder


def stop_warm_engine(folder: Path) -> None:
    """Ask the bench's warm engine to end (it would after its idle time anyway)."""
    sys.path.insert(0, str(ROOT / ".build" / "plugins"))
    from seamless_inference.engine.warm import stop_engines  # noqa: PLC0415

    stop_engines(str(folder))


def whole_process_table(scenes: dict, work: Path) -> dict:
    """{size: {row: figures}} for each scene {size: (pan, xs)}: OTBTF valid/artifact, the plugin's cold
    qgis_process valid/artifact, and its second call through the warm engine (the first call of each kind, at
    each size, starts or warms the engine and is not counted: a script over a folder of scenes pays it once),
    each the best of REPEATS; the ratios plugin/OTBTF of output Mpx/s per row, and the ratio a run costing
    nothing would reach (QGIS's floor, table["floor"], in place of the plugin's artifact-prone run). A failed row
    is an "error" string, not a crashed bench."""
    otbtf_env = otbtf_environment()
    qgis_env = qgis_environment()
    folder = warm_folder(work)
    warm = dict(qgis_env, SEAMLESS_WARM_ENGINE="600", SEAMLESS_WARM_DIR=str(folder))
    subprocess.run([QGIS_PROCESS_BIN, "--version"], capture_output=True, timeout=120, env=qgis_env)  # set-up
    table = {}
    attempt({}, "floor, warm-up", floor_process, qgis_env, work / "floor.tif")  # QGIS's files read once, not timed
    attempt(table, "floor", best_of, 3, floor_process, qgis_env, work / "floor.tif")
    try:
        for size, (pan, xs) in scenes.items():
            rows = table[size] = {}
            out = work / f"whole_{size}.tif"
            n = REPEATS.get(size, 2)
            for kind in ("valid", "artifact"):
                if otbtf_env is None:
                    rows[f"otbtf {kind}"] = "OTBTF is not built (make otbtf)"
                else:
                    attempt(rows, f"otbtf {kind}", best_of, n, otbtf_process, otbtf_env, pan, xs, kind, out)
                attempt(rows, f"plugin {kind}, cold", best_of, n, plugin_process, pan, xs, kind, out, qgis_env)
                attempt(rows, f"plugin {kind}, warm engine 1st call", plugin_process, pan, xs, kind, out, warm)
                attempt(rows, f"plugin {kind}, warm engine 2nd call", best_of, n, plugin_process, pan, xs, kind, out,
                        warm)
                otbtf = rows.get(f"otbtf {kind}")
                for way in ("cold", "warm engine 2nd call"):
                    plugin = rows.get(f"plugin {kind}, {way}")
                    if isinstance(otbtf, dict) and isinstance(plugin, dict):
                        rows[f"{kind}/otbtf {kind}, whole process, {way}"] = \
                            plugin["whole_mpx_per_s"] / otbtf["whole_mpx_per_s"]
            otbtf, plugin, floor = rows.get("otbtf artifact"), rows.get("plugin artifact, cold"), table.get("floor")
            if isinstance(otbtf, dict) and isinstance(floor, dict):
                pixels = plugin["pixels"] if isinstance(plugin, dict) else otbtf["pixels"]
                rows["artifact/otbtf artifact, whole process, a run costing nothing (QGIS's floor)"] = \
                    pixels / floor["whole_process_s"] / 1e6 / otbtf["whole_mpx_per_s"]
    finally:
        stop_warm_engine(folder)
    return table


def best_of(n: int, function, *args) -> dict:
    """The figures of the fastest of n whole processes (function(*args) -> {"whole_process_s": ...}), with "runs":
    every run's seconds."""
    runs = [function(*args) for _ in range(n)]
    best = min(runs, key=lambda r: r["whole_process_s"])
    return dict(best, runs=[round(r["whole_process_s"], 3) for r in runs])


def attempt(rows: dict, name: str, function, *args) -> None:
    """rows[name] = function(*args), or the failure's text."""
    try:
        rows[name] = function(*args)
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        rows[name] = f"FAILED {exc}"


def cold_steps(pan, xs, work: Path) -> dict:
    """Seconds of each step of one cold valid-part call in a fresh plain Python (engine import, TensorFlow import,
    model load, planning with the cached measurement, run and write), and of QGIS's own start and exit with the
    plugin loaded (`qgis_process list`), the part a qgis_process call adds."""
    out = work / "steps.tif"
    run = subprocess.run([sys.executable, "-c", STEPS, str(ROOT / ".build" / "plugins"), MODEL, str(pan), str(xs),
                          str(out)], capture_output=True, text=True, timeout=600,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    out.unlink(missing_ok=True)
    if run.returncode:
        return {"error": run.stderr.strip()[-300:]}
    steps = json.loads(run.stdout.strip().splitlines()[-1])
    env = qgis_environment()
    started = time.perf_counter()
    listing = subprocess.run([QGIS_PROCESS_BIN, "list"], capture_output=True, timeout=120, env=env)
    if listing.returncode == 0:
        steps = {"QGIS start and exit, plugin loaded (qgis_process list)": time.perf_counter() - started, **steps}
    return steps
