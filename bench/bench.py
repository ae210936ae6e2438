"""make bench: speed and memory of the engine on a large scene, as ratios measured in one run.

Prints a table, writes bench/results/results.json and appends it to bench/results/history.jsonl. Not a test:
machines are noisy, so nothing here asserts a time; the ratios are what to compare over time (same machine,
same run). Speeds are the best of n runs after a warm-up (3; 2 for the tutorial's way and the sweep), as the
limit's: a busy machine only ever slows a run down. The cold row times whole qgis_process runs of valid-part
inference (QGIS's and TensorFlow's start, the model's load and probe, the run, the write; the best of n, as every
whole process in bench/whole_process.py) against the engine's warm time for the same request in-process.

    .venv/bin/python bench/bench.py            # 4096 x 4096 PAN scene; peak RSS at 4096 and 8192
    .venv/bin/python bench/bench.py --large    # peak RSS at 4096 and 16384 as well
"""

import argparse
import json
import math
import os
import platform
import shutil
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
from whole_process import FLOOR_ROW, cold_steps, whole_process_table  # noqa: E402

from seamless_inference.engine import OTBTF, InferenceRequest, Source, plan_inference, run_inference  # noqa: E402
from seamless_inference.engine.model import SavedModel  # noqa: E402
from seamless_inference.engine.planning import input_shapes  # noqa: E402
from seamless_inference.engine.sinks import NullSink  # noqa: E402

MODEL = str(ROOT / "sample" / "model")
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


def otbtf_rows(whole: dict, plugin: dict) -> dict:
    """Real OTBTF's rows on the throughput scene, from the whole-process table's entry for it: the tutorial's valid
    part (estimated_crop32, efield 64) and artifact-prone run (estimated, efield 128). Warm = its write() alone
    (the plugin's warm rows: in-process after a warm-up); whole process = from start to exit (the plugin's: one
    cold qgis_process run). `plugin` holds the plugin's {valid, artifact} x {warm Mpx/s, whole Mpx/s}."""
    rows = {}
    for key in ("valid", "artifact"):
        figures = whole.get(f"otbtf {key}")
        if not isinstance(figures, dict):
            return {"otbtf_error": figures or "not measured"}
        rows[f"otbtf {key}"] = {k: figures[k] for k in ("warm_mpx_per_s", "whole_process_s", "whole_mpx_per_s")}
        rows[f"{key}/otbtf {key}, warm"] = plugin[key]["warm"] / figures["warm_mpx_per_s"]
        if plugin[key].get("whole_mpx_per_s"):
            rows[f"{key}/otbtf {key}, whole process"] = plugin[key]["whole_mpx_per_s"] / figures["whole_mpx_per_s"]
    return rows


def cold_record(whole: dict, warm_s: float) -> dict:
    """The cold row: one whole qgis_process valid-part run (seconds, from the table) against the engine's warm
    time for the same request in-process (the valid part's row); and the second call through the warm engine."""
    cold, second = whole.get("plugin valid, cold"), whole.get("plugin valid, warm engine 2nd call")
    record = {"cold_qgis_process_s": None, "warm_engine_s": warm_s, "cold_over_warm": None, "cold_error": None,
              "warm_engine_2nd_call_s": None}
    if isinstance(cold, dict):
        record.update(cold_qgis_process_s=cold["whole_process_s"], cold_over_warm=cold["whole_process_s"] / warm_s)
    else:
        record["cold_error"] = cold
    if isinstance(second, dict):
        record["warm_engine_2nd_call_s"] = second["whole_process_s"]
    return record


def print_whole(table: dict, steps: dict) -> None:
    """The whole-process table: seconds and Mpx/s per row and size, and the plugin/OTBTF ratios."""
    print("\nwhole processes, start to exit, best of n (qgis_process.bin; OTBTF: a fresh Python running the seed's "
          "pyotb calls)")
    floor = table.get("floor")
    if isinstance(floor, dict):
        print(f"  {FLOOR_ROW:50s} {floor['whole_process_s']:7.2f} s (best of {len(floor['runs'])})")
    else:
        print(f"  {FLOOR_ROW:50s} {floor}")
    for size, rows in table.items():
        if size == "floor":
            continue
        print(f"  {size} x {size} PAN")
        for name, value in rows.items():
            if isinstance(value, dict):
                print(f"    {name:48s} {value['whole_process_s']:7.2f} s {value['whole_mpx_per_s']:7.2f} Mpx/s")
            elif isinstance(value, float):
                print(f"    {name:48s} {value:7.2f}x")
            else:
                print(f"    {name:48s} {value}")
    print("one cold valid-part call, step by step (seconds; the steps in a fresh plain Python)")
    for name, value in steps.items():
        print(f"  {name:58s} {value:12.2f}" if isinstance(value, float) else f"  {name}: {value}")


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
    parser.add_argument("--whole-sizes", default="512,2048",
                        help="scene sizes of the whole-process table besides --size (comma separated)")
    parser.add_argument("--whole-only", action="store_true",
                        help="only the whole-process table and the cold call's steps (printed, not recorded)")
    parser.add_argument("--class-map-only", action="store_true",
                        help="only the limit and the class-map row (printed, not recorded)")
    args = parser.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    # a cache of this run (its children's too): the Auto tile's timings are taken now, on this quiet machine,
    # by the first run (a warm-up, not timed), not read from an earlier, maybe busy, one
    shutil.rmtree(WORK / "cache", ignore_errors=True)
    os.environ["SEAMLESS_CACHE_DIR"] = str(WORK / "cache")
    pan, xs = make_scene(args.size, WORK)
    whole_sizes = sorted({int(v) for v in args.whole_sizes.split(",") if v.strip()} | {args.size})
    if args.whole_only:
        table = whole_process_table({n: make_scene(n, WORK) for n in whole_sizes}, WORK)
        print_whole(table, cold_steps(pan, xs, WORK))
        return
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
    whole = whole_process_table({n: make_scene(n, WORK) for n in whole_sizes}, WORK)
    steps = cold_steps(pan, xs, WORK)
    here = whole[args.size]
    cold = cold_record(here, width * height / valid / 1e6)  # the valid part's row is that warm time
    plugin = {key: {"warm": speed, "whole_mpx_per_s": here[f"plugin {key}, cold"]["whole_mpx_per_s"]
                    if isinstance(here.get(f"plugin {key}, cold"), dict) else None}
              for key, speed in (("valid", valid), ("artifact", artifact))}
    otbtf = otbtf_rows(here, plugin)
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
        print(f"  {'cold: a whole qgis_process run, start to exit (best of n)':58s} "
              f"{cold['cold_qgis_process_s']:12.2f}")
    print(f"  {'warm: same request in-process, best of 3 after a warm-up':58s} {cold['warm_engine_s']:12.2f}")
    if not cold["cold_error"]:
        print(f"  {'cold/warm (start-up, model load and probe)':58s} {cold['cold_over_warm']:12.2f}")
    if cold["warm_engine_2nd_call_s"]:
        print(f"  {'second qgis_process call through the warm engine (best of n)':58s} "
              f"{cold['warm_engine_2nd_call_s']:12.2f}")
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
    print_whole(whole, steps)
    record = {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "machine": platform.node(), "cpus": os.cpu_count(),
              "device": result.device, "scene": args.size, "tile": result.plan.tile[0], "mpx_per_s": rows,
              "profile_mpx_per_s": profile,
              "ratios": ratios, "peak_rss_mb": {str(k): v for k, v in rss.items()},
              "max_abs_diff_valid_vs_tutorial": same_pixels, **cold, "otbtf": otbtf, "cluster": cluster,
              "whole_process": {str(k): v for k, v in whole.items()}, "cold_steps_s": steps,
              "plugin_whole_process_mpx_per_s": {k: v["whole_mpx_per_s"] for k, v in plugin.items()}}
    (RESULTS / "results.json").write_text(json.dumps(record, indent=2))
    with open(RESULTS / "history.jsonl", "a", encoding="utf-8") as history:  # one line per run, to compare
        history.write(json.dumps(record) + "\n")
    print(f"\nWrote {RESULTS / 'results.json'} and appended it to {RESULTS / 'history.jsonl'}")


if __name__ == "__main__":
    main()
