"""make bench: speed and memory of the engine on a large scene, as ratios measured in one run.

Prints a table, writes bench/results/results.json and appends it to bench/results/history.jsonl. Not a test:
machines are noisy, so nothing here asserts a time; the ratios are what to compare over time (same machine,
same run). Speeds are the best of n runs after a warm-up (3; 2 for the tutorial's way and the sweep), as the
limit's: a busy machine only ever slows a run down. The cold row times one whole `tools/qgis_process run` of
valid-part inference (QGIS's and TensorFlow's start, the model's load and probe, the run, the write) against the
engine's warm time for the same request in-process.

    .venv/bin/python bench/bench.py            # 4096 x 4096 PAN scene; peak RSS at 4096 and 8192
    .venv/bin/python bench/bench.py --large    # peak RSS at 4096 and 16384 as well
"""

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
from osgeo import gdal

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / ".build" / "plugins"))
sys.path.insert(0, str(ROOT / "bench"))

from scene import make_scene  # noqa: E402

from seamless_inference.engine import OTBTF, InferenceRequest, Source, plan_inference, run_inference  # noqa: E402
from seamless_inference.engine.model import SavedModel  # noqa: E402
from seamless_inference.engine.planning import input_shapes  # noqa: E402
from seamless_inference.engine.sinks import NullSink  # noqa: E402

MODEL = str(ROOT / "sample" / "model")
QGIS_PROCESS = Path(ROOT / "tools" / "qgis_process")
WORK = ROOT / ".build" / "bench"
RESULTS = ROOT / "bench" / "results"


def request(pan, xs, output="estimated_crop32", **changes) -> InferenceRequest:
    """The seed's sources (PAN rfield 128, XS rfield 32) on a scene."""
    sources = (Source((str(pan),), (128, 128), "input_p"), Source((str(xs),), (32, 32), "input_xs"))
    return replace(InferenceRequest(MODEL, sources, output_names=(output,)), **changes)


def timed_run(req: InferenceRequest, path: Path | None, repeats: int = 3, class_map: Path | None = None) -> tuple:
    """(output Mpx/s, result) of the best of `repeats` runs after a first one that warms TensorFlow up for these
    shapes; best of n, as for the limit, because a shared machine only ever slows a run down. Each timed run
    writes a new file, as Processing's outputs are: replacing the previous 400 MB file would add the kernel's
    0.2-0.3 s of freeing it (measured) to the run. path None: the blocks are discarded (no write), or only the
    class map is written when `class_map` is given (1 byte a pixel instead of 4 a band)."""
    sink = NullSink() if path is None and class_map is None else None
    extra = {"class_map": str(class_map)} if class_map else {}
    run_inference(req, str(path) if path else None, sink=sink, **extra)
    best, result = 0.0, None
    for _ in range(repeats):
        for written in (path, class_map):
            if written:
                written.unlink()
        started = time.perf_counter()
        result = run_inference(req, str(path) if path else None, sink=sink, **extra)
        seconds = time.perf_counter() - started
        width, height = result.plan.size
        best = max(best, width * height / seconds / 1e6)
    return best, result


def model_speed(feeds: dict, output: str, repeats: int = 3) -> float:
    """The model alone on `feeds`, in output Mpx/s of `output` (best of n after a warm-up call)."""
    model = SavedModel.load(MODEL)
    model.run(feeds, [output])
    best = math.inf
    for _ in range(repeats):
        started = time.perf_counter()
        value = model.run(feeds, [output])[output]
        best = min(best, time.perf_counter() - started)
    return value.shape[0] * value.shape[1] * value.shape[2] / best / 1e6


def random_feeds(shapes: dict) -> dict:
    """Random inputs in the sample's value ranges, {placeholder: (n, h, w, c)}."""
    rng = np.random.default_rng(0)
    return {name: rng.uniform(100, 1600, shape).astype(np.float32) for name, shape in shapes.items()}


def limit(size: int = 2048) -> float:
    """The model's forward pass alone on one size x size tensor, raw output, in output Mpx/s. 2048 px is the
    largest within the memory goal of 1.5 GB (measured peak RSS 1.0 GB; 4096 px takes 2.7 GB)."""
    return model_speed(random_feeds({"input_p": (1, size, size, 1), "input_xs": (1, size // 4, size // 4, 4)}),
                       "estimated")


def on_tiles(req: InferenceRequest) -> float:
    """The model alone on a run's tiles (its tile shape and batch), in output Mpx/s: what the run could do
    if reading, writing and the pipeline cost nothing."""
    plan = plan_inference(req)
    shapes = input_shapes(plan)
    return model_speed(random_feeds(shapes), plan.output_names[0])


def distortion(pan, xs, limit_mpx: float) -> tuple:
    """(output Mpx/s of the whole sweep, measured / theoretical time at the limit's speed, the same at the model's
    own speed on R x R blocks). Theoretical time: each crop's cost (R / (R - 2c))^2 times its output pixels, at
    that speed. The second speed is what the model itself does on the blocks every crop must compute (batched
    as the sweep runs them): it leaves out the model's own loss on small tensors, which no engine can avoid."""
    from seamless_inference.engine.distortion import distortion_comparison

    crops = [0, 8, 16, 24, 32]
    base = request(pan, xs, output="estimated")
    distortion_comparison(base, 128, crops)  # warm up TensorFlow (oneDNN's kernels per shape) and the probe
    seconds = math.inf
    for _ in range(2):  # best of 2
        started = time.perf_counter()
        result = distortion_comparison(base, 128, crops)
        seconds = min(seconds, time.perf_counter() - started)
    blocks = on_tiles(replace(base, extent_mode=OTBTF, efield=(128, 128), tile_size=128))
    pixels = sum(r.output_pixels for r in result.crops)
    work = sum(r.theoretical_cost * r.output_pixels for r in result.crops) / 1e6
    return pixels / seconds / 1e6, seconds / (work / limit_mpx), seconds / (work / blocks), blocks


def peak_rss(size: int) -> float:
    """Peak RSS (MB) of a child process running the valid part (Full, Auto) on a size x size scene."""
    pan, xs = make_scene(size, WORK)
    out = WORK / f"rss_{size}.tif"
    # VmHWM, not getrusage: Linux keeps ru_maxrss across exec, so a child would report its parent's peak
    code = (f"import sys; sys.path.insert(0, {str(ROOT / 'bench')!r}); import bench; "
            f"from seamless_inference.engine import run_inference; "
            f"run_inference(bench.request({str(pan)!r}, {str(xs)!r}), {str(out)!r}); "
            f"print('RSS', [l.split()[1] for l in open('/proc/self/status') if l.startswith('VmHWM')][0])")
    run = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True,
                         env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    out.unlink(missing_ok=True)
    return int(run.stdout.split("RSS")[-1]) / 1024.0


def qgis_process_seconds(pan, xs, out: Path, timeout: float = 600.0) -> float:
    """Wall-clock seconds of ONE whole `tools/qgis_process run seamless:validpartinference` process on the scene,
    from start to exit, with the algorithm's defaults (no OUTPUT_NAMES: it measures the model and picks
    estimated_crop32 and efield 64). Raises RuntimeError when the process fails, times out or leaves no output."""
    command = [str(QGIS_PROCESS), "run", "seamless:validpartinference", "--", f"MODEL={MODEL}",
               f"SOURCE1={pan}", f"SOURCE2={xs}", f"OUTPUT={out}"]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    out.unlink(missing_ok=True)
    started = time.perf_counter()
    try:
        run = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise RuntimeError(f"qgis_process still running after {timeout:.0f} s") from exc
    seconds = time.perf_counter() - started
    if run.returncode != 0:
        tail = " | ".join((run.stderr or run.stdout).strip().splitlines()[-3:])
        raise RuntimeError(f"qgis_process exit code {run.returncode}: {tail}")
    if not out.exists():
        raise RuntimeError(f"qgis_process exited 0 but wrote no {out}")
    return seconds


def cold_start(pan, xs, warm_s: float | None = None) -> dict:
    """The cold row: one whole qgis_process run (seconds) against the engine's warm time for the same request
    in-process (`request(pan, xs)`, output estimated_crop32: best of 3 after a warm-up, as the other rows; pass
    warm_s to reuse the valid part's row). The wrapper runs once untimed first (`--version`), so the profile's
    one-time set-up (enabling the plugin) is not counted; QGIS's and TensorFlow's libraries are then in the page
    cache: cold means a new process, not a cold disk. A failed run gives None figures and cold_error, not a
    crashed bench."""
    if warm_s is None:
        mpx, result = timed_run(request(pan, xs), WORK / "warm.tif")
        (WORK / "warm.tif").unlink(missing_ok=True)
        warm_s = result.plan.size[0] * result.plan.size[1] / mpx / 1e6
    out = WORK / "cold.tif"
    record = {"cold_qgis_process_s": None, "warm_engine_s": warm_s, "cold_over_warm": None, "cold_error": None}
    try:
        subprocess.run([str(QGIS_PROCESS), "--version"], check=True, capture_output=True, timeout=120)
        cold_s = qgis_process_seconds(pan, xs, out)
        record.update(cold_qgis_process_s=cold_s, cold_over_warm=cold_s / warm_s)
    except (OSError, RuntimeError, subprocess.SubprocessError) as exc:
        record["cold_error"] = str(exc)
    finally:
        out.unlink(missing_ok=True)
    return record


OTBTF_ENV = ROOT / ".build" / "otbtf" / "env.sh"
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


def otbtf_environment() -> dict | None:
    """The variables `. .build/otbtf/env.sh` sets (`make otbtf`), or None when OTBTF is not built."""
    if not OTBTF_ENV.exists():
        return None
    run = subprocess.run(["bash", "-c", f'. "{OTBTF_ENV}" && env -0'], capture_output=True, check=True)
    return dict(item.split("=", 1) for item in run.stdout.decode().split("\0") if "=" in item)


def otbtf_rows(pan, xs, plugin: dict) -> dict:
    """Real OTBTF (pyotb's TensorflowModelServe, the seed's own calls, one fresh Python each) on the scene: the
    tutorial's valid part (estimated_crop32, efield 64) and artifact-prone run (estimated, efield 128). Warm = its
    write() alone (the plugin's warm rows: in-process after a warm-up); whole process = from start to exit (the
    plugin's: one qgis_process run). `plugin` holds the plugin's {valid, artifact} x {warm Mpx/s, whole s}."""
    env = otbtf_environment()
    if env is None:
        return {"otbtf_error": "OTBTF is not built (make otbtf)"}
    rows = {}
    for key, name, efield in (("valid", "estimated_crop32", 64), ("artifact", "estimated", 128)):
        out = WORK / f"otbtf_{key}.tif"
        started = time.perf_counter()
        run = subprocess.run([sys.executable, "-c", SEED_RUN, str(pan), str(xs), MODEL, str(out), name, str(efield)],
                             capture_output=True, text=True, env=dict(env, TF_CPP_MIN_LOG_LEVEL="2"), timeout=1800)
        whole = time.perf_counter() - started
        out.unlink(missing_ok=True)
        if run.returncode:
            return {"otbtf_error": f"OTBTF {key}: exit {run.returncode}: {run.stderr.strip()[-300:]}"}
        figures = json.loads([line for line in run.stdout.splitlines() if line.startswith("{")][-1])
        warm = figures["pixels"] / figures["run_s"] / 1e6
        whole_mpx = figures["pixels"] / whole / 1e6
        rows[f"otbtf {key}"] = {"warm_mpx_per_s": warm, "whole_process_s": whole, "whole_mpx_per_s": whole_mpx}
        rows[f"{key}/otbtf {key}, warm"] = plugin[key]["warm"] / warm
        if plugin[key].get("whole_mpx_per_s"):
            rows[f"{key}/otbtf {key}, whole process"] = plugin[key]["whole_mpx_per_s"] / whole_mpx
    return rows


def artifact_whole_process(pan, xs) -> float | None:
    """Output Mpx/s of one whole qgis_process artifact-prone run (defaults: estimated, 128 px blocks)."""
    out = WORK / "artifact_process.tif"
    command = [str(QGIS_PROCESS), "run", "seamless:artifactproneinference", "--", f"MODEL={MODEL}",
               f"SOURCE1={pan}", f"SOURCE2={xs}", f"OUTPUT={out}"]
    started = time.perf_counter()
    run = subprocess.run(command, capture_output=True, text=True, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"))
    seconds = time.perf_counter() - started
    if run.returncode or not out.exists():
        return None
    dataset = gdal.Open(str(out))
    pixels = dataset.RasterXSize * dataset.RasterYSize
    dataset = None
    out.unlink(missing_ok=True)
    return pixels / seconds / 1e6


def cluster_speed(pan, xs, workers: int = 2, repeats: int = 2) -> dict:
    """Output Mpx/s of the valid part on a local Dask cluster of `workers` processes (started once, warmed up by
    one run: the workers' TensorFlow import and model load are not counted), best of n; and the seconds to start
    the cluster. Same request as the in-process valid part's row."""
    import shutil
    import tempfile

    from seamless_inference.engine.backends.dask_local import start_local, stop_processes

    folder, processes = tempfile.mkdtemp(prefix="bench-dask-"), []
    try:
        started = time.perf_counter()
        client = start_local(workers, folder, processes)
        start_s = time.perf_counter() - started
        address = client.scheduler.address
        out = WORK / "cluster.tif"
        run_inference(request(pan, xs), str(out), cluster=address)
        best = 0.0
        for _ in range(repeats):
            started = time.perf_counter()
            result = run_inference(request(pan, xs), str(out), cluster=address)
            width, height = result.plan.size
            best = max(best, width * height / (time.perf_counter() - started) / 1e6)
        out.unlink(missing_ok=True)
        client.close()
        return {"mpx_per_s": best, "start_s": start_s, "workers": workers}
    except Exception as exc:  # noqa: BLE001 (a failed row, not a failed bench)
        return {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        stop_processes(processes)
        shutil.rmtree(folder, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=4096, help="PAN size of the throughput scene")
    parser.add_argument("--large", action="store_true", help="measure peak RSS on 16384 x 16384 too")
    parser.add_argument("--class-map-only", action="store_true",
                        help="only the limit and the class-map row (printed, not recorded)")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    pan, xs = make_scene(args.size, WORK)
    rows = {}
    rows["limit"] = limit()
    class_map, _ = timed_run(request(pan, xs), None, class_map=WORK / "class_map.tif")
    rows["valid part, class map alone (argmax, 1 byte a pixel)"] = class_map
    if args.class_map_only:
        tiles = on_tiles(request(pan, xs))
        print(f"limit {rows['limit']:.2f} Mpx/s, model alone on the tiles {tiles:.2f}, class map alone {class_map:.2f}"
              f": class map/limit {class_map / rows['limit']:.2f} (tiles/limit {tiles / rows['limit']:.2f})")
        return
    valid, result = timed_run(request(pan, xs), WORK / "valid_full.tif")
    rows["valid part, Full, Auto tiles"] = valid
    tutorial, _ = timed_run(request(pan, xs, extent_mode=OTBTF, tile_size=64, batch_size=1),
                            WORK / "valid_tutorial.tif", repeats=2)
    rows["valid part, OTBTF mode, 64 px blocks, batch 1 (tutorial)"] = tutorial
    artifact, _ = timed_run(request(pan, xs, output="estimated"), WORK / "artifact.tif")
    rows["artifact-prone, 128 px blocks"] = artifact
    sweep, theory, theory_blocks, blocks = distortion(pan, xs, rows["limit"])
    rows["distortion comparison, crops 0, 8, 16, 24, 32 (R 128)"] = sweep
    # the profile: where the valid part's time goes, one cost at a time
    profile = {"model alone on the valid part's tiles": on_tiles(request(pan, xs)),
               "valid part, blocks discarded (no GeoTIFF write)": timed_run(request(pan, xs), None)[0],
               "model alone on 128 px blocks, batched as the sweep": blocks}
    a = gdal.Open(str(WORK / "valid_full.tif")).ReadAsArray(32, 32, 1024, 1024)
    b = gdal.Open(str(WORK / "valid_tutorial.tif")).ReadAsArray(0, 0, 1024, 1024)
    same_pixels = float(np.abs(a - b).max())
    sizes = (4096, 16384) if args.large else (4096, 8192)
    rss = {size: peak_rss(size) for size in sizes}
    width, height = result.plan.size
    cold = cold_start(pan, xs, warm_s=width * height / valid / 1e6)  # the valid part's row is that warm time
    valid_pixels = width * height
    plugin = {"valid": {"warm": valid, "whole_mpx_per_s": valid_pixels / cold["cold_qgis_process_s"] / 1e6
                        if cold["cold_qgis_process_s"] else None},
              "artifact": {"warm": artifact, "whole_mpx_per_s": artifact_whole_process(pan, xs)}}
    otbtf = otbtf_rows(pan, xs, plugin)
    cluster = cluster_speed(pan, xs)
    unwritten = profile["valid part, blocks discarded (no GeoTIFF write)"]
    ratios = {"valid/limit": valid / rows["limit"], "valid/tutorial": valid / tutorial, "sweep/theory": theory,
              "sweep/theory at the model's speed on 128 px blocks": theory_blocks,
              "tiles/limit (margins, tile size)": profile["model alone on the valid part's tiles"] / rows["limit"],
              "no-write/tiles (reads, pipeline)": unwritten / profile["model alone on the valid part's tiles"],
              "valid/no-write (GeoTIFF write)": valid / unwritten,
              "class map alone/limit (to compare with tiles/limit)": class_map / rows["limit"]}
    if "mpx_per_s" in cluster:
        ratios["cluster local:2/valid (2 cores: the overhead)"] = cluster["mpx_per_s"] / valid
    print(f"\nScene {args.size} x {args.size} PAN + {args.size // 4} x {args.size // 4} XS, "
          f"{os.cpu_count()} CPU(s), device {result.device}, tile {result.plan.tile[0]}, batch {result.plan.batch}")
    print(f"{'run':60s} {'output Mpx/s':>12s}")
    for name, value in rows.items():
        print(f"{name:60s} {value:12.2f}")
    print("profile")
    for name, value in profile.items():
        print(f"  {name:58s} {value:12.2f}")
    print(f"{'cold start, valid part: estimated_crop32, efield 64':60s} {'seconds':>12s}")
    if cold["cold_error"]:
        print(f"  {'cold: whole qgis_process run FAILED':58s} {cold['cold_error']}")
    else:
        print(f"  {'cold: one whole qgis_process run, start to exit':58s} {cold['cold_qgis_process_s']:12.2f}")
    print(f"  {'warm: same request in-process, best of 3 after a warm-up':58s} {cold['warm_engine_s']:12.2f}")
    if not cold["cold_error"]:
        print(f"  {'cold/warm (start-up, model load and probe)':58s} {cold['cold_over_warm']:12.2f}")
    print(f"\nmax |valid Full - tutorial| on a 1024 px common window: {same_pixels:.2e}")
    for name, value in ratios.items():
        print(f"{name:52s} {value:6.2f}")
    for size, mb in rss.items():
        print(f"peak RSS, valid part on {size} x {size}: {mb:7.0f} MB")
    if "mpx_per_s" in cluster:
        print(f"valid part on a local Dask cluster of {cluster['workers']} workers: {cluster['mpx_per_s']:.2f} Mpx/s "
              f"(cluster started in {cluster['start_s']:.1f} s, not counted)")
    else:
        print(f"valid part on a local Dask cluster: FAILED {cluster['error']}")
    print("real OTBTF (pyotb TensorflowModelServe, the seed's calls)")
    for name, value in otbtf.items():
        if isinstance(value, dict):
            print(f"  {name:30s} warm {value['warm_mpx_per_s']:6.2f} Mpx/s, whole process "
                  f"{value['whole_process_s']:6.1f} s ({value['whole_mpx_per_s']:.2f} Mpx/s)")
        else:
            print(f"  {name:50s} {value if isinstance(value, str) else f'{value:6.2f}'}")
    record = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.node(), "cpus": os.cpu_count(),
              "device": result.device, "scene": args.size, "tile": result.plan.tile[0], "mpx_per_s": rows,
              "profile_mpx_per_s": profile,
              "ratios": ratios, "peak_rss_mb": {str(k): v for k, v in rss.items()},
              "max_abs_diff_valid_vs_tutorial": same_pixels, **cold, "otbtf": otbtf, "cluster": cluster,
              "plugin_whole_process_mpx_per_s": {k: v["whole_mpx_per_s"] for k, v in plugin.items()}}
    (RESULTS / "results.json").write_text(json.dumps(record, indent=2))
    with open(RESULTS / "history.jsonl", "a", encoding="utf-8") as history:  # one line per run, to compare
        history.write(json.dumps(record) + "\n")
    print(f"\nWrote {RESULTS / 'results.json'} and appended it to {RESULTS / 'history.jsonl'}")


if __name__ == "__main__":
    main()
