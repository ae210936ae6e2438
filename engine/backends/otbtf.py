"""The OTBTF backend: pyotb's TensorflowModelServe, as the seed drives it, for GeoTIFF outputs in OTBTF mode.

The seed drives OTBTF with `pyotb.TensorflowModelServe(n_sources=..., source1_il=..., ...)` and
`write(path, ext_fname="box=x:y:w:h")` (otbtf-semantics.md 2.4, 3.2-3.3). `pyotb_parameters` maps a plan to
exactly those keyword arguments (a pure function); the backend runs them and writes the output safely.
"""

import os
import uuid

from osgeo import gdal

from ..dependencies import OTBTF_INSTALL_HINT, PYOTB_ERRORS, import_pyotb, otbtf_status
from ..errors import Cancelled, EngineError
from ..planning import Plan
from ..raster import creation_options, gdal_session
from ..request import OTBTF, InferenceRequest
from ..sinks import BlockSink, GeoTiffSink
from .base import Monitor, RunStats

# OTB's writer pixel types (pyotb `pixel_type=`) for the engine's data types
PIXEL_TYPES = {"float32": "float", "float64": "double", "uint8": "uint8", "int16": "int16", "uint16": "uint16",
               "int32": "int32", "uint32": "uint32"}


def otbtf_refusal(request: InferenceRequest) -> tuple | None:
    """(message, field) when OTBTF's TensorflowModelServe cannot run this request as asked, else None."""
    if request.extent_mode != OTBTF:
        return ("The OTBTF backend supports the OTBTF extent mode only; choose OTBTF, or the TensorFlow backend "
                "for Full.", "extent_mode")
    if request.crop:
        return (f"The OTBTF backend cannot crop the model's output ({request.crop} px a side asked); choose a "
                "`_cropN` output without extra crop, or the TensorFlow backend.", "crop")
    return None


class OtbtfBackend:
    """pyotb's TensorflowModelServe: OTBTF extent mode, `_cropN` outputs as they are, into a GeoTIFF."""

    name = "OTBTF"
    measures = False

    def refusal(self, request: InferenceRequest, sink: BlockSink) -> tuple | None:
        """OTBTF writes files itself, in its own grid, without an engine crop."""
        if not isinstance(sink, GeoTiffSink):
            return "The OTBTF backend writes GeoTIFF files only, not blocks to a sink.", "backend"
        return otbtf_refusal(request)

    def available(self) -> tuple:
        """(True, why) when pyotb imports with OTB and has TensorflowModelServe, else (False, why not)."""
        return otbtf_status()

    def run(self, plan: Plan, sink: GeoTiffSink, monitor: Monitor) -> RunStats:
        """Run TensorflowModelServe into a temporary file renamed when complete; the written size and origin are
        checked against the exact plan (warning logged)."""
        available, reason = otbtf_status()
        if not available:
            raise EngineError(f"The OTBTF backend is not available: {reason}. {OTBTF_INSTALL_HINT}.", "backend")
        pyotb, say, output_path = import_pyotb()[0], monitor.say, sink.path
        temp = os.path.join(os.path.dirname(os.path.abspath(output_path)),
                            f".{os.path.basename(output_path)}.{uuid.uuid4().hex[:8]}.partial.tif")
        app_kwargs, write_kwargs = pyotb_parameters(plan, temp)
        width, height = plan.size
        say(f"OTBTF grid: {width} x {height} output pixels (window {plan.window} of the {plan.out_x.size} x "
            f"{plan.out_y.size} grid), expression field {plan.efield[0]} x {plan.efield[1]}.")
        say("OTBTF run: " + pyotb_script(app_kwargs, dict(write_kwargs, path=output_path)))
        if monitor.canceled():
            raise Cancelled("Cancelled by the user.")
        try:
            try:
                written = pyotb.TensorflowModelServe(**app_kwargs).write(**write_kwargs)
            except PYOTB_ERRORS as exc:
                raise EngineError(f"OTBTF's TensorflowModelServe failed: {str(exc).strip()}", "backend") from exc
            if not written or not os.path.exists(temp):
                raise EngineError(f"OTBTF's TensorflowModelServe wrote no output for {output_path!r}.", "backend")
            if monitor.canceled():
                raise Cancelled("Cancelled by the user.")
            _finish(temp, plan, say)
            os.replace(temp, output_path)
        finally:
            for leftover in (temp, temp + ".aux.xml", temp[:-4] + ".geom"):
                if os.path.exists(leftover):
                    os.remove(leftover)
        monitor.advance(1.0)
        blocks = -(-width // plan.efield[0]) * -(-height // plan.efield[1])
        return RunStats(blocks, 0, "OTBTF (pyotb TensorflowModelServe)")


def pyotb_parameters(plan: Plan, path: str | None = None) -> tuple:
    """(TensorflowModelServe keyword arguments, write() keyword arguments) of a planned request, as the seed's
    pyotb scripts spell them ('_' for '.'); pure. The box is `plan.window` in OTBTF's output index space, and is
    given only when the window is not the whole OTBTF grid; `path` is the output file (left out when None)."""
    request = plan.request
    refusal = otbtf_refusal(request)
    if refusal:
        raise EngineError(*refusal)
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


def _finish(path: str, plan: Plan, say) -> None:
    """Name the bands as the TensorFlow backend does, and warn when OTBTF's grid differs from the exact plan
    (TensorflowModelServe snaps its extent onto the source grids in floating point: findings.md 3)."""
    names = plan.band_names
    with gdal_session():
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
            "source grids in floating point, and OTB holds pixel sizes in single precision (0.6 m is read as "
            "0.6000000238), which can also misregister the sources by a pixel; the TensorFlow backend computes "
            "the OTBTF grid exactly.")
