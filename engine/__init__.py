"""The engine: OTBTF-style tiled inference, model introspection and metrics, without QGIS.

Usable from plain Python (`from seamless_inference.engine import ...`, or `import engine` from the plugin
folder); it never imports qgis. GDAL does the raster I/O; TensorFlow is imported only when a model runs, and
the engine's modules (numpy with them) when a name is first used.
One run goes request -> plan -> backend -> sink (docs/architecture.md).
"""

import importlib

# name -> the module that defines it: imported on first use (PEP 562), so that `import engine` (the provider, at
# QGIS's start) costs no numpy or pipeline import; a run imports what it needs
_MODULES = {
    "ModelAnalysis": "analysis", "analyse_model": "analysis", "BACKENDS": "request", "Cancelled": "errors",
    "DependencyMissing": "errors", "EngineError": "errors", "InferenceResult": "records", "run_inference": "inference",
    "OTBTF_CROPS": "model", "ModelSignature": "model", "cropped_tensor_name": "model", "read_signature": "model",
    "split_crop": "model", "Plan": "planning", "plan_inference": "planning", "COMPRESSIONS": "raster",
    "DATA_TYPES": "raster", "EXTENT_MODES": "request", "FULL": "request", "MIRROR": "request", "OTBTF": "request",
    "PADDINGS": "request", "ZEROS": "request", "InferenceRequest": "request", "Source": "request",
}


def __getattr__(name: str):
    """The engine's public names, each imported from its module on first use."""
    if name not in _MODULES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_MODULES[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list:
    """The public names, with those not imported yet."""
    return sorted(set(globals()) | set(_MODULES))


__all__ = [
    "ModelAnalysis", "analyse_model", "BACKENDS", "Cancelled", "DependencyMissing", "EngineError",
    "InferenceResult", "run_inference", "OTBTF_CROPS", "ModelSignature", "cropped_tensor_name", "read_signature",
    "split_crop", "Plan", "plan_inference", "COMPRESSIONS", "DATA_TYPES", "EXTENT_MODES", "FULL", "MIRROR",
    "OTBTF", "PADDINGS", "ZEROS", "InferenceRequest", "Source",
]
