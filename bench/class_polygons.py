"""Peak memory and time of models/class_polygons.model3 on a large scene, and the part each step takes.

    nice .venv/bin/python bench/class_polygons.py [SIZE]     (8192 by default: an 8192 x 8192 class map)

Mirrors the sample into a SIZE x SIZE PAN + SIZE/4 XS scene (bench/scene.py), then runs the model in a child
process (QGIS, its Processing, this plugin), as qgis_process would, and samples every 0.2 s the resident memory of
that process and of the processes it starts (gdal_sieve.py and gdal_polygonize.py run as children). Each step's
time is read from the model's own log ("Running <child> [i/n]", "OK. Execution took ..."). Prints one line per
step (seconds, peak RSS of the whole tree while it ran) and writes them to bench/results/class_polygons.json.
"""

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))


def tree_rss(pid: int) -> int:
    """Resident bytes of a process and all its descendants."""
    import psutil

    try:
        process = psutil.Process(pid)
        members = [process] + process.children(recursive=True)
    except psutil.NoSuchProcess:
        return 0
    total = 0
    for member in members:
        try:
            total += member.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def child(pan: str, xs: str, out: str) -> None:
    """Inside the measured process: run the model, printing each log line with its time since the start."""
    from qgis.core import QgsApplication, QgsProcessingContext, QgsProcessingFeedback, QgsProcessingModelAlgorithm

    app = QgsApplication([], False)
    app.initQgis()
    sys.path.append(QgsApplication.pkgDataPath() + "/python/plugins")
    from processing.core.Processing import Processing

    Processing.initialize()
    sys.path.insert(0, str(ROOT / ".build" / "plugins"))
    from seamless_inference import classFactory

    plugin = classFactory(None)  # held: the provider goes with it
    plugin.initProcessing()
    started = time.monotonic()

    class Timed(QgsProcessingFeedback):
        def say(self, text):
            print(f"@{time.monotonic() - started:9.2f} {text}", flush=True)

        # setProgressText: the model's "Running <child> [i/n]"
        pushInfo = pushDebugInfo = pushCommandInfo = pushConsoleInfo = pushWarning = reportError = \
            setProgressText = lambda self, text, *rest: self.say(text)  # noqa: E731

    model = QgsProcessingModelAlgorithm()
    model.fromFile(str(ROOT / "models" / "class_polygons.model3"))
    context = QgsProcessingContext()
    context.setLogLevel(QgsProcessingContext.LogLevel.Verbose)  # the model says "Running <child> [i/n]" at each step
    ok, results = model.run({"MODEL": str(ROOT / "sample" / "model"), "SOURCE1": pan, "SOURCE2": xs,
                             "CLASS_TABLE": str(ROOT / "sample" / "classes.csv"),
                             "polygons:POLYGONS": os.path.join(out, "polygons.gpkg"),
                             "areas:AREAS": os.path.join(out, "areas.csv")}, context, Timed())
    print(f"@{time.monotonic() - started:9.2f} DONE {ok} {results}", flush=True)
    sys.stdout.flush()
    os._exit(0 if ok else 1)


def main() -> None:
    from scene import make_scene

    size = int(sys.argv[1]) if len(sys.argv) > 1 else 8192
    folder = ROOT / ".build" / "bench"
    pan, xs = make_scene(size, folder)
    out = folder / f"class_polygons_{size}"
    out.mkdir(parents=True, exist_ok=True)
    for name in ("polygons.gpkg", "areas.csv"):
        (out / name).unlink(missing_ok=True)
    site = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-c",
                           "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen", TF_CPP_MIN_LOG_LEVEL="2", PYTHONPATH=site,
               QGIS_CUSTOM_CONFIG_PATH=str(folder / "qgis-profile"))
    process = subprocess.Popen(["/usr/bin/python3", __file__, "--child", str(pan), str(xs), str(out)], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    samples = []  # (seconds, bytes)
    started = time.monotonic()

    def sample():
        while process.poll() is None:
            samples.append((time.monotonic() - started, tree_rss(process.pid)))
            time.sleep(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    lines = [(time.monotonic() - started, line.rstrip()) for line in process.stdout]
    process.wait()
    sampler.join()
    total = time.monotonic() - started
    log = [text for _, text in lines]
    (out / "log.txt").write_text("\n".join(log), encoding="utf-8")
    # the steps: from "Running <child description>" (or the first line) to the next step's start
    marks = [(float(text[1:11]), text.split("Running ", 1)[1].rsplit(" [", 1)[0]) for at, text in lines
             if text.startswith("@") and "Running " in text and text.endswith("]")]
    offset = total - float(next(text[1:11] for _, text in reversed(lines) if text.startswith("@")))
    marks = [(0.0, "start (QGIS, Processing, plugin)")] + [(at + offset, name) for at, name in marks] + \
        [(total, "end")]
    steps = []
    for (begin, name), (end, _) in zip(marks, marks[1:]):
        peak = max((rss for at, rss in samples if begin <= at <= end + 0.25), default=0)  # a sample at least
        steps.append({"step": name, "seconds": round(end - begin, 2), "peak_rss_mb": round(peak / 2 ** 20)})
    result = {"size": size, "class_map_pixels": size * size, "seconds": round(total, 1),
              "peak_rss_mb": round(max((rss for _, rss in samples), default=0) / 2 ** 20),
              "exit_status": process.returncode, "steps": steps}
    if (out / "polygons.gpkg").exists():
        from osgeo import ogr

        dataset = ogr.Open(str(out / "polygons.gpkg"))
        result["polygons"] = dataset.GetLayer(0).GetFeatureCount()
        dataset = None
    for step in steps:
        print(f"{step['step']:<40} {step['seconds']:8.1f} s  peak {step['peak_rss_mb']:6d} MB")
    print(f"total {result['seconds']} s, peak RSS {result['peak_rss_mb']} MB, {result.get('polygons')} polygons, "
          f"exit status {process.returncode}")
    if process.returncode:
        print("\n".join(log[-30:]))
    results = ROOT / "bench" / "results"
    results.mkdir(exist_ok=True)
    (results / "class_polygons.json").write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    if "--child" in sys.argv:
        child(*sys.argv[sys.argv.index("--child") + 1:][:3])
    else:
        main()
