"""The engine: OTBTF-style tiled inference, model introspection and metrics, without QGIS.

Usable from plain Python (`from seamless_inference.engine import ...`, or `import engine` from the plugin
folder); it never imports qgis. GDAL does the raster I/O; TensorFlow is imported only when a model runs.
One run goes request -> plan -> backend -> sink (docs/architecture.md).
"""

from .analysis import ModelAnalysis, analyse_model
from .backends import BACKENDS
from .errors import Cancelled, DependencyMissing, EngineError
from .inference import InferenceResult, run_inference
from .model import OTBTF_CROPS, ModelSignature, cropped_tensor_name, read_signature, split_crop
from .planning import Plan, plan_inference
from .raster import COMPRESSIONS, DATA_TYPES
from .request import EXTENT_MODES, FULL, MIRROR, OTBTF, PADDINGS, ZEROS, InferenceRequest, Source

__all__ = [
    "ModelAnalysis", "analyse_model", "BACKENDS", "Cancelled", "DependencyMissing", "EngineError",
    "InferenceResult", "run_inference", "OTBTF_CROPS", "ModelSignature", "cropped_tensor_name", "read_signature",
    "split_crop", "Plan", "plan_inference", "COMPRESSIONS", "DATA_TYPES", "EXTENT_MODES", "FULL", "MIRROR",
    "OTBTF", "PADDINGS", "ZEROS", "InferenceRequest", "Source",
]
