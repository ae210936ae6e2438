"""Run a request: request -> plan -> backend -> sink, in that order and once each.

`run_inference` checks the output, chooses the backend, builds the plan once (engine.planning) and has the
backend compute it into a sink: a GeoTIFF renamed into place when complete (engine.sinks), or any block sink
(the distortion comparison compares blocks in memory). Memory is bounded by the tile and batch sizes.
"""

import logging
import os
import time

import numpy as np

from .backends import OTBTF_BACKEND, TENSORFLOW_BACKEND, Monitor, call_size, choose_backend
from .card import read_card
from .class_map import ClassMapSink, most_contrast_band
from .errors import EngineError
from .model import SavedModel
from .planning import Plan, input_shapes, plan_inference, tiles
from .raster import gdal_session
from .records import InferenceResult
from .request import InferenceRequest
from .signals import signals_cancel
from .sinks import BlockSink, GeoTiffSink, check_output_path

log = logging.getLogger(__name__)


def run_inference(request: InferenceRequest, output_path: str | None = None, progress=None, is_canceled=None,
                  log_info=None, backend: str = TENSORFLOW_BACKEND, sink: BlockSink | None = None,
                  plan: Plan | None = None, cluster: str | None = None, class_map: str | None = None,
                  confidence: bool = False, class_table: tuple | None = None) -> InferenceResult:
    """Run a request tile by tile into `output_path` (GeoTIFF); progress(fraction), is_canceled() -> bool.

    backend: "tensorflow" (this engine), "otbtf" (pyotb's TensorflowModelServe, OTBTF extent mode only) or
    "auto" (OTBTF when installed and able to run the request); the choice is logged in one line.
    sink: instead of a GeoTIFF, a BlockSink (engine.sinks) that receives the output blocks; output_path is then
    unused. plan: the request's plan when the caller already built it (`plan_inference(request)`): not built again.
    cluster: run the tiles on a Dask cluster, `tcp://host:8786` or `local[:N]` (engine.backends.cluster); the
    pixels are the same as here.
    class_map: also write the argmax of the output (class scores) as a Byte GeoTIFF there, in the same pass
    (engine.class_map), with its score in percent as band 2 when `confidence`; class_table: its classes
    (`read_class_table`; None: the model card's, if any). output_path may then be None: the class map alone.
    TensorFlow backend, in process.
    """
    started = time.perf_counter()
    say = log_info or log.info
    with gdal_session(), signals_cancel(is_canceled) as is_canceled:
        if class_map and class_table is None and request.use_card:
            card = read_card(request.model_dir) if os.path.isdir(request.model_dir or "") else None
            if card is not None and card.classes:
                class_table = card.classes
                say(f"Classes: {len(card.classes)}, from the model card.")
        if sink is None and class_map:
            sink = class_map_sink(request, output_path, class_map, confidence, class_table, backend, cluster, say)
        elif sink is None:
            if not output_path:
                raise EngineError("No output path given; give one (or a class map).", "output_path")
            check_output_path(request, output_path)
            sink = GeoTiffSink(output_path, request.data_type, request.compression)
        chosen, reason = choose_backend(backend, request, sink, cluster)
        say(f"Backend: {chosen.name}" + (f" ({reason})." if reason else "."))
        if plan is None:
            plan = plan_inference(request, measure_model=chosen.measures)
        for note in plan.notes:
            say(note)
        stats = chosen.run(plan, sink, Monitor(progress, is_canceled, say))
        for note in getattr(sink, "notes", ()):
            say(note)
    seconds = time.perf_counter() - started
    width, height = plan.size
    path = getattr(sink, "path", None)
    written = " and ".join(p for p in (path, class_map) if p) or "the output"
    say(f"Wrote {written} in {seconds:.1f} s ({width * height / max(seconds, 1e-9) / 1e6:.2f} Mpx/s "
        "of output" + (f", {stats.skipped} empty tile(s) skipped" if stats.skipped else "") + ").")
    display_band = most_contrast_band(path) if path and output_path and plan.bands > 1 else None
    return InferenceResult(path, plan, stats.tiles, stats.skipped, seconds, stats.device, class_map, display_band,
                           class_table)


def class_map_sink(request: InferenceRequest, output_path: str | None, class_map: str, confidence: bool,
                   class_table: tuple | None, backend: str, cluster: str | None, say) -> ClassMapSink:
    """The sink of a run with a class map: the scores (when output_path is given) and their argmax, one pass.
    Only this process's TensorFlow pipeline feeds it (OTBTF and the cluster write their own files)."""
    if backend == OTBTF_BACKEND:
        raise EngineError("The class map is computed while TensorFlow streams the output; the OTBTF backend writes "
                          "its own file: choose the TensorFlow or Auto backend, or leave Class map empty.", "backend")
    if cluster and cluster.strip():
        raise EngineError("The class map is computed while this process streams the output, not on a cluster: "
                          "leave Cluster empty, or leave Class map empty.", "cluster")
    check_output_path(request, class_map, "class_map")
    scores = None
    if output_path:
        check_output_path(request, output_path)
        if os.path.realpath(output_path) == os.path.realpath(class_map):
            raise EngineError("The class map and the output are the same file; give the class map another path.",
                              "class_map")
        scores = GeoTiffSink(output_path, request.data_type, request.compression)
    return ClassMapSink(class_map, scores, confidence, class_table, request.compression, say)


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
