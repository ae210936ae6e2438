"""The inference backends behind one contract (engine.backends.base): this engine's TensorFlow pipeline and
OTBTF's TensorflowModelServe through pyotb; `choose_backend` picks one for a request and a sink."""

from ..dependencies import OTBTF_INSTALL_HINT
from ..errors import EngineError
from ..request import AUTO_BACKEND, BACKENDS, OTBTF_BACKEND, TENSORFLOW_BACKEND, InferenceRequest
from ..sinks import BlockSink
from .base import Backend, Monitor, RunStats, call_size
from .cluster import DaskBackend
from .otbtf import OtbtfBackend
from .tensorflow import TensorFlowBackend


def choose_backend(requested: str, request: InferenceRequest, sink: BlockSink, cluster: str | None = None) -> tuple:
    """(backend, reason or "") for "auto", "tensorflow" or "otbtf". Auto takes OTBTF when it is installed and can
    run the request into the sink, else TensorFlow; the reason says why, only where the user may care. Forcing
    OTBTF where it cannot run raises an EngineError naming `backend` (or the request's field at fault)."""
    if requested not in BACKENDS:
        raise EngineError(f"Unknown backend {requested!r}; choose one of {', '.join(BACKENDS)}.", "backend")
    if cluster and cluster.strip():
        if requested == OTBTF_BACKEND:
            raise EngineError("A cluster runs the TensorFlow backend; choose it (or Auto), or leave Cluster empty.",
                              "backend")
        dask = DaskBackend(cluster)
        refusal = dask.refusal(request, sink)
        if refusal:
            raise EngineError(*refusal)
        return dask, cluster.strip()
    tensorflow, otbtf = TensorFlowBackend(), OtbtfBackend()
    if requested == TENSORFLOW_BACKEND:
        return tensorflow, ""
    refusal = otbtf.refusal(request, sink)
    if refusal:  # OTBTF could not run it anyway: no need to look for OTB
        if requested == OTBTF_BACKEND:
            raise EngineError(*refusal)
        return tensorflow, ""
    available, reason = otbtf.available()
    if requested == OTBTF_BACKEND:
        if not available:
            raise EngineError(f"The OTBTF backend is not available: {reason}. {OTBTF_INSTALL_HINT}; or choose the "
                              "TensorFlow or Auto backend.", "backend")
        return otbtf, reason
    return (otbtf, reason) if available else (tensorflow, "")


__all__ = ["AUTO_BACKEND", "BACKENDS", "OTBTF_BACKEND", "TENSORFLOW_BACKEND", "Backend", "Monitor", "OtbtfBackend",
           "RunStats", "TensorFlowBackend", "DaskBackend", "call_size", "choose_backend"]
