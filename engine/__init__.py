"""The engine: OTBTF-style tiled inference, model introspection and metrics, without QGIS.

Usable from plain Python (`from seamless_inference.engine import ...`, or `import engine` from the plugin
folder); it never imports qgis. GDAL does the raster I/O; TensorFlow is imported only when a model runs.
"""

from .errors import Cancelled, DependencyMissing, EngineError
from .inference import (EXTENT_MODES, FULL, OTBTF, PADDINGS, InferenceRequest, InferenceResult, Plan, Source,
                        plan_inference, run_inference)
from .model import OTBTF_CROPS, ModelSignature, cropped_tensor_name, read_signature, split_crop
from .raster import DATA_TYPES, MIRROR, ZEROS

__all__ = [
    "Cancelled", "DependencyMissing", "EngineError", "EXTENT_MODES", "FULL", "OTBTF", "PADDINGS",
    "InferenceRequest", "InferenceResult", "Plan", "Source", "plan_inference", "run_inference", "OTBTF_CROPS",
    "ModelSignature", "cropped_tensor_name", "read_signature", "split_crop", "DATA_TYPES", "MIRROR", "ZEROS",
]
