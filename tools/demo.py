"""make demo: the seed's two runs on the sample, through qgis_process, side by side in one picture.

1. prints the sample model's signature and the provider's algorithms (as qgis_process lists them);
2. runs Artifact-prone inference and Valid-part inference through /usr/bin/qgis_process.bin;
3. renders both outputs with QGIS's own map renderer (offscreen), same style, side by side, into
   output/demo.png (and docs/images/artifacts_vs_valid.png, the README's picture).
"""

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "output"
MODEL, PAN, XS = ROOT / "sample" / "model", ROOT / "sample" / "data" / "pan.tif", ROOT / "sample" / "data" / "xs.tif"
QGIS_PROCESS = ROOT / "tools" / "qgis_process"
sys.path.insert(0, str(ROOT / ".build" / "plugins"))


def qgis_process(*args) -> str:
    """Run tools/qgis_process, echo its log, stop on failure."""
    run = subprocess.run([str(QGIS_PROCESS), *map(str, args)], capture_output=True, text=True, check=False)
    if run.returncode:
        sys.exit(f"qgis_process {' '.join(map(str, args))} failed:\n{run.stdout}\n{run.stderr}")
    return run.stdout


def show_signature() -> None:
    from seamless_inference.engine import read_signature

    signature = read_signature(str(MODEL))
    print(f"Sample model {MODEL.relative_to(ROOT)} (signature {signature.key}):")
    for kind, tensors in (("input ", signature.inputs), ("output", signature.outputs)):
        for t in tensors:
            print(f"  {kind} {t.name:20s} {t.dtype:8s} {t.shape}")


def render(panels: list, target: Path) -> None:
    """Panels (path, band, min, max, caption) rendered by QGIS in gray and put side by side with captions."""
    from qgis.core import QgsApplication, QgsMapRendererParallelJob, QgsMapSettings, QgsRasterLayer
    from qgis.PyQt.QtCore import QSize, Qt
    from qgis.PyQt.QtGui import QColor, QFont, QImage, QPainter

    from seamless_inference.algorithms.styling import GrayStretch

    app = QgsApplication([], False)
    app.initQgis()
    size, caption = 500, 34
    canvas = QImage(len(panels) * (size + 10) - 10, size + caption, QImage.Format.Format_ARGB32)
    canvas.fill(QColor("white"))
    painter = QPainter(canvas)
    painter.setFont(QFont("Sans", 12))
    for index, (path, band, low, high, label) in enumerate(panels):
        layer = QgsRasterLayer(str(path), label)
        GrayStretch(int(band), float(low), float(high)).postProcessLayer(layer, None, None)
        settings = QgsMapSettings()
        settings.setLayers([layer])
        settings.setDestinationCrs(layer.crs())
        settings.setExtent(layer.extent())
        settings.setOutputSize(QSize(size, size))
        job = QgsMapRendererParallelJob(settings)
        job.start()
        job.waitForFinished()
        painter.drawImage(index * (size + 10), caption, job.renderedImage())
        painter.setPen(QColor("black"))
        painter.drawText(index * (size + 10), 0, size, caption, Qt.AlignmentFlag.AlignCenter, label)
    painter.end()
    canvas.save(str(target))
    sys.stdout.flush()
    os._exit(0)  # skip QGIS's teardown, which crashes on the layers still referenced here


def main() -> None:
    OUT.mkdir(exist_ok=True)
    show_signature()
    print("\nProvider 'seamless' as qgis_process lists it:")
    print("\n".join("  " + line.strip() for line in qgis_process("list").splitlines() if "seamless:" in line))
    outputs = {}
    for algorithm, name in (("artifactproneinference", "artifact_prone.tif"), ("validpartinference", "valid_part.tif")):
        target = OUT / name
        started = time.perf_counter()
        # the model and the images only: the sample's model card (sample/model/assets.extra/seamless.json) gives
        # the placeholders, receptive fields, output, classes and measurement
        extra = [f"CLASS_MAP={OUT / 'class_map.tif'}"] if algorithm == "validpartinference" else []
        log = qgis_process("run", f"seamless:{algorithm}", "--", f"MODEL={MODEL}", f"SOURCE1={PAN}",
                           f"SOURCE2={XS}", f"OUTPUT={target}", *extra)
        print(f"\nseamless:{algorithm} -> {target.relative_to(ROOT)} ({time.perf_counter() - started:.1f} s with "
              "QGIS and TensorFlow start-up):")
        print("\n".join("  " + line for line in log.splitlines() if line.startswith(
            ("source", "Classes", "Output:", "Measurement", "Valid part:", "Grid", "Measured", "Tiles", "Wrote"))))
        outputs[algorithm] = target
    import numpy as np
    from osgeo import gdal

    a, b = (gdal.Open(str(p)).ReadAsArray() for p in outputs.values())
    diff = np.abs(a - b).max(axis=0)
    print(f"\n|artifact-prone - valid part| over the 6 classes: {diff.max():.3f} at most, "
          f"{diff[:, 126:130].max():.3f} across the block border at column 128, "
          f"{diff[40:100, 40:100].max():.1e} inside the first block's valid part.")
    difference = OUT / "difference.tif"
    source = gdal.Open(str(outputs["validpartinference"]))
    ds = gdal.GetDriverByName("GTiff").Create(str(difference), diff.shape[1], diff.shape[0], 1, gdal.GDT_Float32)
    ds.SetGeoTransform(source.GetGeoTransform())
    ds.SetProjection(source.GetProjection())
    ds.WriteArray(diff.astype(np.float32))
    ds = None
    picture = OUT / "demo.png"
    panels = [(outputs["artifactproneinference"], 5, 0, 1, "Artifact-prone (128 px blocks), class 4"),
              (outputs["validpartinference"], 5, 0, 1, "Valid part (estimated_crop32), class 4"),
              (difference, 1, 0, 0.1, "|difference|, max over classes, 0..0.1")]
    # QGIS in a process of its own: initialising it after TensorFlow is loaded here crashes
    subprocess.run([sys.executable, __file__, "render", *[str(v) for panel in panels for v in panel],
                    str(picture)], check=True)
    shutil.copy(picture, ROOT / "docs" / "images" / "artifacts_vs_valid.png")
    print(f"\nPicture: {picture.relative_to(ROOT)} (QGIS map renderer; both outputs in the same style).")
    sys.stdout.flush()
    os._exit(0)  # QGIS + TensorFlow in one process crash in C++ destructors at exit (see tests/conftest.py)


if __name__ == "__main__":
    if sys.argv[1:2] == ["render"]:
        values = sys.argv[2:-1]
        render([values[i:i + 5] for i in range(0, len(values), 5)], Path(sys.argv[-1]))
    else:
        main()
