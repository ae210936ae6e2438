"""Run a request: request -> plan -> backend -> sink, in that order and once each.

`run_inference` checks the output, chooses the backend, builds the plan once (engine.planning) and has the
backend compute it into a sink: a GeoTIFF renamed into place when complete (engine.sinks), or any block sink
(the distortion comparison compares blocks in memory). Memory is bounded by the tile and batch sizes.
"""

import logging
import time
from dataclasses import dataclass

import numpy as np

from .backends import TENSORFLOW_BACKEND, Monitor, call_size, choose_backend
from .model import SavedModel
from .planning import Plan, input_shapes, plan_inference, tiles
from .raster import gdal_session
from .request import InferenceRequest
from .sinks import BlockSink, GeoTiffSink, check_output_path

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class InferenceResult:
    """What a run produced and how long it took."""

    path: str | None
    plan: Plan
    tiles: int
    skipped: int
    seconds: float
    device: str


def run_inference(request: InferenceRequest, output_path: str | None = None, progress=None, is_canceled=None,
                  log_info=None, backend: str = TENSORFLOW_BACKEND, sink: BlockSink | None = None,
                  plan: Plan | None = None, cluster: str | None = None) -> InferenceResult:
    """Run a request tile by tile into `output_path` (GeoTIFF); progress(fraction), is_canceled() -> bool.

    backend: "tensorflow" (this engine), "otbtf" (pyotb's TensorflowModelServe, OTBTF extent mode only) or
    "auto" (OTBTF when installed and able to run the request); the choice is logged in one line.
    sink: instead of a GeoTIFF, a BlockSink (engine.sinks) that receives the output blocks; output_path is then
    unused. plan: the request's plan when the caller already built it (`plan_inference(request)`): not built again.
    cluster: run the tiles on a Dask cluster, `tcp://host:8786` or `local[:N]` (engine.backends.cluster); the
    pixels are the same as here.
    """
    started = time.perf_counter()
    say = log_info or log.info
    with gdal_session():
        if sink is None:
            check_output_path(request, output_path)
            sink = GeoTiffSink(output_path, request.data_type, request.compression)
        chosen, reason = choose_backend(backend, request, sink, cluster)
        say(f"Backend: {chosen.name}" + (f" ({reason})." if reason else "."))
        if plan is None:
            plan = plan_inference(request, measure_model=chosen.measures)
        for note in plan.notes:
            say(note)
        stats = chosen.run(plan, sink, Monitor(progress, is_canceled, say))
    seconds = time.perf_counter() - started
    width, height = plan.size
    path = getattr(sink, "path", None)
    say(f"Wrote {path or 'the output'} in {seconds:.1f} s ({width * height / max(seconds, 1e-9) / 1e6:.2f} Mpx/s "
        "of output" + (f", {stats.skipped} empty tile(s) skipped" if stats.skipped else "") + ").")
    return InferenceResult(path, plan, stats.tiles, stats.skipped, seconds, stats.device)


def warm_up(request: InferenceRequest) -> Plan:
    """One TensorFlow call on zeros of a batch's shape, so that a timed run does not pay for the first call of a
    new input shape (oneDNN builds its kernels per shape); nothing when that shape already ran. Returns the plan,
    for the run that follows."""
    model = SavedModel.load(request.model_dir)
    plan = plan_inference(request, model)
    batch = min(call_size(plan, len(tiles(plan))), len(tiles(plan)))
    feeds = {name: np.zeros((batch,) + shape[1:], np.float32) for name, shape in input_shapes(plan).items()}
    if not model.has_run(feeds, list(plan.output_names)):
        model.run(feeds, list(plan.output_names))
    return plan
