"""The OTBTF backend: pyotb's TensorflowModelServe, as the seed drives it, for GeoTIFF outputs in OTBTF mode.

The seed drives OTBTF with `pyotb.TensorflowModelServe(n_sources=..., source1_il=..., ...)` and
`write(path, ext_fname="box=x:y:w:h")` (otbtf-semantics.md 2.4, 3.2-3.3). `pyotb_parameters` maps a plan to
exactly those keyword arguments (a pure function); the backend runs them in a child process (OTB's libraries
never load into QGIS: engine.otb_process) and writes the output safely, correctly registered.
"""

from html import escape
import os
import tempfile

from osgeo import gdal

from ..dependencies import OTBTF_INSTALL_HINT
from ..errors import Cancelled, EngineError
from ..otb_process import OtbFailed, otbtf_status, run_task
from ..paths import replace_file, temporary_path
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
        """Run TensorflowModelServe in a child process (engine.otb_process) on the sources laid in an exact pixel
        space, into a temporary file that gets the true georeferencing and is renamed when complete."""
        available, reason = otbtf_status()
        if not available:
            raise EngineError(f"The OTBTF backend is not available: {reason}. {OTBTF_INSTALL_HINT}.", "backend")
        say, output_path = monitor.say, sink.path
        temp = temporary_path(output_path)
        width, height = plan.size
        say(f"OTBTF grid: {width} x {height} output pixels (window {plan.window} of the {plan.out_x.size} x "
            f"{plan.out_y.size} grid), expression field {plan.efield[0]} x {plan.efield[1]}.")
        say("OTBTF run: " + pyotb_script(*pyotb_parameters(plan, output_path)))
        say("OTB holds pixel sizes in single precision (0.6 m is read as 0.6000000238 m), which shifts its grid and "
            "can misregister the sources by a pixel: its sources are given as VRTs in an exact pixel space (pixel "
            f"sizes {', '.join(str(ax.step) for ax in plan.lattice.sources_x)}, origin 0) and the output gets the "
            "true georeferencing.")
        if monitor.canceled():
            raise Cancelled("Cancelled by the user.")
        try:
            with tempfile.TemporaryDirectory(prefix="seamless-otbtf-") as folder, gdal_session():
                app, write = pyotb_parameters(plan, temp, pixel_space_sources(plan, folder))
                try:
                    answer = run_task({"task": "serve", "app": app, "write": write}, monitor.progress,
                                      monitor.is_canceled)
                except OtbFailed as exc:
                    raise EngineError(f"OTBTF's TensorflowModelServe failed: {exc}", "backend") from exc
                if not answer["written"] or not os.path.exists(temp):
                    raise EngineError(f"OTBTF's TensorflowModelServe wrote no output for {output_path!r}.", "backend")
                if monitor.canceled():
                    raise Cancelled("Cancelled by the user.")
                _finish(temp, plan)
            replace_file(temp, output_path)
        finally:
            for leftover in (temp, temp + ".aux.xml", temp[:-4] + ".geom"):
                if os.path.exists(leftover):
                    os.remove(leftover)
        monitor.advance(1.0)
        blocks = -(-width // plan.efield[0]) * -(-height // plan.efield[1])
        return RunStats(blocks, 0, "OTBTF (pyotb TensorflowModelServe, in a child process)")


def pixel_space_sources(plan: Plan, folder: str) -> list:
    """Per source, its rasters as VRTs in the lattice's pixel space: pixel sizes the sources' exact integer
    ratio, source 1's corner at the origin. Single precision holds these exactly, so OTB computes its grid and
    pairs the sources as exactly as the engine does."""
    sources = []
    for index, (source, ax, ay) in enumerate(zip(plan.request.sources, plan.lattice.sources_x,
                                                 plan.lattice.sources_y)):
        paths = []
        if source.bands is not None or source.scale is not None or source.offset is not None:
            vrt = os.path.join(folder, f"source{index + 1}.vrt")
            _fed_vrt(vrt, source, (float(ax.offset), float(ax.step), 0.0, -float(ay.offset), 0.0, -float(ay.step)))
            sources.append([vrt])
            continue
        for number, path in enumerate(source.paths):
            vrt = os.path.join(folder, f"source{index + 1}_{number}.vrt")
            dataset = gdal.Translate(vrt, path, format="VRT")
            dataset.SetGeoTransform((float(ax.offset), float(ax.step), 0.0, -float(ay.offset), 0.0, -float(ay.step)))
            dataset = None
            paths.append(vrt)
        sources.append(paths)
    return sources


def _fed_vrt(vrt: str, source, geotransform: tuple) -> None:
    """One Float32 VRT of what the engine feeds from `source`: its chosen bands in order (over the stacked
    rasters), each scaled (ComplexSource ScaleRatio/ScaleOffset: value x scale + offset), in the pixel space."""
    datasets = [gdal.Open(p, gdal.GA_ReadOnly) for p in source.paths]
    stack = [(p, b) for p, ds in zip(source.paths, datasets) for b in range(1, ds.RasterCount + 1)]
    chosen = [stack[b - 1] for b in source.bands] if source.bands is not None else stack
    scales = _per_band(source.scale, 1.0, len(chosen))
    offsets = _per_band(source.offset, 0.0, len(chosen))
    width, height = datasets[0].RasterXSize, datasets[0].RasterYSize
    dataset = gdal.GetDriverByName("VRT").Create(vrt, width, height, 0)
    dataset.SetGeoTransform(geotransform)
    dataset.SetProjection(datasets[0].GetProjection())
    for channel, ((path, band), scale, offset) in enumerate(zip(chosen, scales, offsets), 1):
        dataset.AddBand(gdal.GDT_Float32)
        rect = f"xOff='0' yOff='0' xSize='{width}' ySize='{height}'"
        dataset.GetRasterBand(channel).SetMetadataItem("source_0", (
            f"<ComplexSource><SourceFilename relativeToVRT='0'>{escape(os.path.abspath(path))}</SourceFilename>"
            f"<SourceBand>{band}</SourceBand><SrcRect {rect}/><DstRect {rect}/>"
            f"<ScaleOffset>{offset!r}</ScaleOffset><ScaleRatio>{scale!r}</ScaleRatio></ComplexSource>"),
            "new_vrt_sources")
    dataset = None  # written when closed


def _per_band(values, default: float, count: int) -> list:
    values = values if values is not None else (default,)
    return list(values) * count if len(values) == 1 else list(values)


def fed_nodata(source) -> float | None:
    """The no-data value as OTBTF sees it through the fed VRT (scaled with the band), or None. Per-band scales
    that map it to different values cannot be given as one sourceN.nodata."""
    if source.nodata is None:
        return None
    count = max(len(source.scale or ()), len(source.offset or ()), 1)
    values = {source.nodata * s + o for s, o in zip(_per_band(source.scale, 1.0, count),
                                                    _per_band(source.offset, 0.0, count))}
    if len(values) > 1:
        raise EngineError("With per-band scales the no-data value maps to a different value in each band, which "
                          "OTBTF's one sourceN.nodata cannot take: choose the TensorFlow backend.", "backend")
    return values.pop()


def pyotb_parameters(plan: Plan, path: str | None = None, paths: list | None = None) -> tuple:
    """(TensorflowModelServe keyword arguments, write() keyword arguments) of a planned request, as the seed's
    pyotb scripts spell them ('_' for '.'); pure. The box is `plan.window` in OTBTF's output index space, and is
    given only when the window is not the whole OTBTF grid; `path` is the output file (left out when None);
    `paths`, per source, replaces its rasters (the pixel-space VRTs)."""
    request = plan.request
    refusal = otbtf_refusal(request)
    if refusal:
        raise EngineError(*refusal)
    app = {"n_sources": len(request.sources)}
    for index, (source, placeholder) in enumerate(zip(request.sources, plan.placeholders), 1):
        app[f"source{index}_il"] = list(paths[index - 1] if paths else source.paths)
        app[f"source{index}_rfieldx"], app[f"source{index}_rfieldy"] = (int(v) for v in source.rfield)
        app[f"source{index}_placeholder"] = placeholder
        if source.nodata is not None:
            app[f"source{index}_nodata"] = fed_nodata(source)
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


def _finish(path: str, plan: Plan) -> None:
    """Check that OTBTF wrote the exact plan's grid (in the pixel space), then give the file the true
    georeferencing and the engine's band names; refuse the output otherwise."""
    dataset = gdal.Open(path, gdal.GA_Update)
    try:
        got, size = dataset.GetGeoTransform(), (dataset.RasterXSize, dataset.RasterYSize)
        want = (plan.out_x.offset + plan.window[0] * plan.out_x.step, -(plan.out_y.offset + plan.window[1] *
                                                                         plan.out_y.step))
        if size != plan.size or abs(got[0] - want[0]) > 1e-6 or abs(got[3] - want[1]) > 1e-6:
            raise EngineError(f"OTBTF wrote {size[0]} x {size[1]} pixels from ({got[0]:g}, {-got[3]:g}) of its pixel "
                              f"space, not the exact grid's {plan.size[0]} x {plan.size[1]} from {want[0]}, "
                              f"{-want[1]}: its output is not registered as the request needs; use the TensorFlow "
                              "backend (it computes the OTBTF grid exactly).", "backend")
        dataset.SetGeoTransform(plan.geotransform)
        if plan.crs_wkt:
            dataset.SetProjection(plan.crs_wkt)
        if dataset.RasterCount == len(plan.band_names):
            for index, name in enumerate(plan.band_names):
                dataset.GetRasterBand(index + 1).SetDescription(name)
    finally:
        dataset = None
