"""The child side of every OTB call: run as a script by engine.otb_process, in a Python process of its own.

`import pyotb` loads every OTB application, OTBTF's TensorFlow libraries included; in QGIS's process, whose
executable holds Debian's libprotobuf in the global symbol scope, that aborts QGIS ("File already exists in
database"). So pyotb is only ever imported here, in a plain Python, never in QGIS. This file imports nothing of
the engine: it reads one JSON task on stdin, prints OTB's own progress lines, and ends with one line
`@@result <json>` (or `@@error <json>`).
"""

import ast
import json
import os
import sys

PREFIX_RESULT, PREFIX_ERROR = "@@result ", "@@error "


def status(_task: dict) -> dict:
    """Whether pyotb imports with OTB, and whether it has OTBTF's TensorflowModelServe."""
    import pyotb  # noqa: PLC0415 (the point of this process)

    count = len(getattr(pyotb, "AVAILABLE_APPLICATIONS", ()) or ())
    return {"pyotb": f"pyotb {getattr(pyotb, '__version__', '?')} with OTB ({count} applications)",
            "otbtf": hasattr(pyotb, "TensorflowModelServe")}


def serve(task: dict) -> dict:
    """pyotb.TensorflowModelServe(**app).write(**write), as the seed calls it."""
    import pyotb  # noqa: PLC0415

    written = pyotb.TensorflowModelServe(**task["app"]).write(**task["write"])
    return {"written": bool(written)}


def _statistics(pyotb, images: list, expressions: list) -> dict:
    """{"mean": [...], "max": [...]} per expression: BandMathX over `images`, then ComputeImagesStatistics."""
    bands = pyotb.BandMathX({"il": images, "exp": ";".join(expressions)}, quiet=True)
    stats = pyotb.ComputeImagesStatistics({"il": [bands]}, quiet=True)
    values = {}
    for key in ("mean", "max"):
        value = stats[f"out.{key}"]
        values[key] = [float(v) if abs(float(v)) > 1e-300 else 0.0  # the maximum of an all-negative band
                       for v in (ast.literal_eval(value) if isinstance(value, str) else value)]
    return values


def statistics(task: dict) -> dict:
    """The seed's helper: ExtractROI fits the image on the reference, then the reference on that; BandMathX and
    ComputeImagesStatistics give each expression's mean or max, in two passes (OTB prints 6 significant digits:
    the second pass, over each quantity minus its first value, recovers full precision)."""
    import pyotb  # noqa: PLC0415

    fitted = pyotb.ExtractROI({"in": task["image"], "mode": "fit", "mode.fit.im": task["reference"]}, quiet=True)
    reference = pyotb.ExtractROI({"in": task["reference"], "mode": "fit", "mode.fit.im": fitted}, quiet=True)
    (width, height), origin, spacing = task["size"], task["origin"], task["spacing"]
    for roi in (fitted, reference):
        rows, cols = roi.shape[:2]
        transform = roi.transform  # (sx, 0, x0, 0, -sy, y0)
        if ((cols, rows) != (width, height) or abs(transform[2] - origin[0]) > 1e-3 * spacing[0]
                or abs(transform[5] - origin[1]) > 1e-3 * spacing[1]):
            return {"unsuitable": f"ExtractROI (mode fit) kept {cols} x {rows} pixels at ({transform[2]:.3f}, "
                                  f"{transform[5]:.3f}), not the intersection's {width} x {height} at "
                                  f"({origin[0]:.3f}, {origin[1]:.3f})"}
    images, expressions, wanted = [fitted, reference], task["expressions"], task["wanted"]
    first = _statistics(pyotb, images, expressions)
    offsets = [first[stat][i] * (1.0 - 1e-5 if stat == "max" else 1.0) for i, stat in wanted]
    residuals = _statistics(pyotb, images, [f"({expressions[i]})-({offset!r})"
                                            for (i, _), offset in zip(wanted, offsets)])
    return {"values": [max(0.0, offset + residuals[stat][k]) for k, ((_, stat), offset)
                       in enumerate(zip(wanted, offsets))]}


TASKS = {"status": status, "serve": serve, "statistics": statistics}


def main() -> int:
    """Run the task on stdin; the answer is the last line of stdout."""
    os.environ.setdefault("OTB_LOGGER_LEVEL", "INFO")  # OTB's "Writing ...: 45%" lines are the progress
    os.environ.setdefault("PYOTB_LOGGER_LEVEL", "WARNING")
    task = json.loads(sys.stdin.read())
    try:
        result = TASKS[task["task"]](task)
    except BaseException as exc:  # noqa: BLE001 (SystemExit from `import pyotb` without OTB included)
        lines = str(exc).strip().splitlines()
        print("\n" + PREFIX_ERROR + json.dumps({"type": type(exc).__name__, "message": " ".join(lines)[:2000]}),
              flush=True)
        return 1
    print("\n" + PREFIX_RESULT + json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
