"""SavedModel introspection and execution: names, dtypes and shapes are read from the signature.

Keras 2 exports name outputs after layers, Keras 3 after the outputs dict's keys (otbtf-semantics.md 2.2),
so nothing here guesses a name: the signature is the truth, as for OTBTF's TensorflowModelServe.
"""

import hashlib
import os
import re
import threading
from dataclasses import dataclass

import numpy as np

from .dependencies import import_tensorflow
from .errors import EngineError

SERVE_TAG = "serve"
DEFAULT_SIGNATURE = "serving_default"
OTBTF_CROPS = (16, 32, 64, 96, 128)  # otbtf ModelBase's default inference_cropping

_CROP_PATTERN = re.compile(r"^(?P<base>.+)_crop(?P<crop>\d+)$")


def cropped_tensor_name(name: str, crop: int) -> str:
    """otbtf's naming convention for the output cropped by `crop` pixels on each side."""
    return f"{name}_crop{crop}"


def split_crop(name: str) -> tuple:
    """(base name, crop) of an output name; crop 0 for a name without `_cropN`."""
    match = _CROP_PATTERN.match(name)
    return (match["base"], int(match["crop"])) if match else (name, 0)


@dataclass(frozen=True)
class TensorInfo:
    """A signature entry: key, dtype name, shape (None for unknown dimensions; None for unknown rank)."""

    name: str
    dtype: str
    shape: tuple | None

    @property
    def channels(self) -> int | None:
        """Channels of this tensor as OTBTF counts them: rank 1 or 3 -> 1, rank 4 -> last dimension."""
        if self.shape is None:
            return None
        if len(self.shape) in (1, 3):
            return 1
        return self.shape[-1]

    @property
    def numpy_dtype(self) -> np.dtype:
        """The numpy type that feeds it (bfloat16, which numpy lacks, is fed as float32)."""
        return np.dtype(np.float32 if self.dtype == "bfloat16" else self.dtype)

    @property
    def batch(self) -> int | None:
        """The fixed batch dimension it was exported with, or None (any)."""
        return self.shape[0] if self.shape else None


@dataclass(frozen=True)
class ModelSignature:
    """The inputs and outputs of one signature of a SavedModel."""

    model_dir: str
    key: str
    inputs: tuple
    outputs: tuple

    @property
    def input_names(self) -> list:
        """Input keys in alphabetical order: OTBTF's default assignment of sources to placeholders."""
        return sorted(t.name for t in self.inputs)

    @property
    def output_names(self) -> list:
        """Output keys in alphabetical order."""
        return sorted(t.name for t in self.outputs)

    def input(self, name: str) -> TensorInfo:
        """The input called `name` (OTBTF matches the part of a key before any ':')."""
        return _find(self.inputs, name)

    def output(self, name: str) -> TensorInfo | None:
        """The output called `name`, or None."""
        return _find(self.outputs, name)

    def fixed_batch(self, names) -> int | None:
        """The batch size that the inputs `names` were exported with, or None when any size goes."""
        return next((i.batch for i in map(self.input, names) if i.batch is not None), None)

    def crops_of(self, base: str) -> dict:
        """{crop: output name} for `base` itself (crop 0) and each of its `_cropN` outputs."""
        crops = {}
        for name in self.output_names:
            stem, crop = split_crop(name)
            if stem == base or name == base:
                crops[crop if name != base else 0] = name
        return dict(sorted(crops.items()))

    def band_names(self, output_names) -> list:
        """One name per output band: `name` for a one-band output, `name[c]` for each channel of the others."""
        names = []
        for name in output_names:
            count = self.output(name).channels or 1
            names += [name] if count == 1 else [f"{name}[{c}]" for c in range(count)]
        return names

    def base_outputs(self) -> list:
        """Output names that are not `_cropN` variants of another output."""
        names = set(self.output_names)
        return [n for n in self.output_names if not (split_crop(n)[1] and split_crop(n)[0] in names)]


def _find(tensors, name):
    for tensor in tensors:
        if tensor.name == name or tensor.name.split(":")[0] == name:
            return tensor
    return None


def check_model_dir(model_dir: str) -> None:
    """Refuse what is not a SavedModel folder, with the reason and the fix."""
    if not model_dir:
        raise EngineError("No model folder given; choose the SavedModel folder (the one holding "
                          "saved_model.pb).", "model_dir")
    if os.path.isfile(model_dir) and model_dir.endswith((".keras", ".h5", ".hdf5")):
        raise EngineError(f"{model_dir!r} is a Keras model file, not a SavedModel folder; export it with "
                          "model.export('folder') (Keras 3) or model.save('folder') (Keras 2).", "model_dir")
    if not os.path.isdir(model_dir):
        raise EngineError(f"The model folder {model_dir!r} does not exist.", "model_dir")
    if not os.path.isfile(os.path.join(model_dir, "saved_model.pb")):
        raise EngineError(f"{model_dir!r} is not a SavedModel folder: it has no saved_model.pb. Choose the "
                          "folder that model.export() or tf.saved_model.save() wrote.", "model_dir")


def _tensor_info(name, proto, tf):
    dtype = tf.dtypes.as_dtype(proto.dtype).name
    if proto.tensor_shape.unknown_rank:
        return TensorInfo(name, dtype, None)
    shape = tuple(None if d.size < 0 else int(d.size) for d in proto.tensor_shape.dim)
    return TensorInfo(name, dtype, shape)


def read_signature(model_dir: str, tag: str = SERVE_TAG) -> ModelSignature:
    """Read a SavedModel's signature (serving_default, else the first) without loading its variables."""
    check_model_dir(model_dir)
    tf = import_tensorflow()
    from tensorflow.core.protobuf import saved_model_pb2

    proto = saved_model_pb2.SavedModel()
    with open(os.path.join(model_dir, "saved_model.pb"), "rb") as handle:
        try:
            proto.ParseFromString(handle.read())
        except Exception as exc:
            raise EngineError(f"{model_dir!r}: saved_model.pb cannot be parsed ({exc}).", "model_dir") from exc
    graphs = [g for g in proto.meta_graphs if tag in g.meta_info_def.tags]
    if not graphs:
        tags = sorted({t for g in proto.meta_graphs for t in g.meta_info_def.tags})
        raise EngineError(f"The SavedModel in {model_dir!r} has no '{tag}' tag set (it has: "
                          f"{', '.join(tags) or 'none'}); export it for serving.", "model_dir")
    signatures = {k: v for k, v in graphs[0].signature_def.items() if not k.startswith("__")}
    if not signatures:
        raise EngineError(f"The SavedModel in {model_dir!r} has no signature; export it with a serving "
                          "signature (model.export() or tf.saved_model.save(..., signatures=...)).", "model_dir")
    key = DEFAULT_SIGNATURE if DEFAULT_SIGNATURE in signatures else sorted(signatures)[0]
    sig = signatures[key]
    inputs = tuple(_tensor_info(k, v, tf) for k, v in sorted(sig.inputs.items()))
    outputs = tuple(_tensor_info(k, v, tf) for k, v in sorted(sig.outputs.items()))
    return ModelSignature(model_dir, key, inputs, outputs)


class SavedModel:
    """A loaded SavedModel signature that maps numpy inputs to numpy outputs."""

    _cache: dict = {}
    _lock = threading.Lock()

    def __init__(self, signature: ModelSignature, function, device: str, fingerprint: str = ""):
        self.signature = signature
        self.function = function
        self.device = device
        self.fingerprint = fingerprint
        self.measurements = {}  # engine.analysis.measure's cache: this model's measurements, by setup
        self._runners = {}
        self._shapes = set()  # (outputs, input shapes) already run: oneDNN has built their kernels

    @staticmethod
    def _shape_key(feeds: dict, output_names: list) -> tuple:
        return tuple(output_names), tuple(sorted((k, v.shape) for k, v in feeds.items()))

    def has_run(self, feeds: dict, output_names: list) -> bool:
        """True when a call with these input shapes and outputs already ran (the next one is warm)."""
        return self._shape_key(feeds, output_names) in self._shapes

    def _runner(self, keys: tuple):
        """A tf.function returning only `keys`: TensorFlow then prunes the other outputs' work (the sample's
        signature copies its raw output into five `_cropN` outputs; asking for one is 1.75x faster)."""
        if keys not in self._runners:
            tf = import_tensorflow()
            function = self.function
            specs = {k: tf.TensorSpec(v.shape, v.dtype) for k, v in function.structured_input_signature[1].items()}

            # no autograph (nothing here for it to convert): it would write its converted source into the
            # temporary folder, a file a killed process leaves behind
            @tf.function(input_signature=[specs], autograph=False)
            def run(inputs):
                results = function(**inputs)
                return [results[k] for k in keys]

            self._runners[keys] = run
        return self._runners[keys]

    @classmethod
    def load(cls, model_dir: str) -> "SavedModel":
        """Load (or reuse, while the folder is unchanged) the model in `model_dir`."""
        signature = read_signature(model_dir)
        stamp = (os.path.abspath(model_dir), os.path.getmtime(os.path.join(model_dir, "saved_model.pb")))
        with cls._lock:
            if stamp in cls._cache:
                return cls._cache[stamp]
            tf = import_tensorflow()
            try:
                loaded = tf.saved_model.load(model_dir, tags=[SERVE_TAG])
            except Exception as exc:
                raise EngineError(f"TensorFlow cannot load the SavedModel in {model_dir!r}: {exc}", "model_dir") from exc
            function = loaded.signatures[signature.key]
            function._keep_alive = loaded  # the concrete function does not own the loaded object
            gpus = tf.config.list_physical_devices("GPU")
            device = f"GPU ({', '.join(g.name for g in gpus)})" if gpus else "CPU"
            model = cls(signature, function, device, fingerprint(model_dir))
            cls._cache.clear()  # keep one model: they can be large
            cls._cache[stamp] = model
            return model

    def run(self, feeds: dict, output_names: list, fields: dict | None = None) -> dict:
        """Run the signature on {placeholder: (n, h, w, c) array}; return {name: (n, h, w, c) float32}.

        Inputs are cast to the placeholder's type: integer types refuse values that do not fit them (uint8 would
        wrap 300 to 44). A model exported with a fixed batch dimension gets batches of exactly that size.
        `fields`: {placeholder: request field} for the errors.
        """
        fields = fields or {}
        arrays = {self.signature.input(name).name: cast_input(array, self.signature.input(name), fields.get(name))
                  for name, array in feeds.items()}
        count = len(next(iter(arrays.values())))
        step = self.signature.fixed_batch(feeds) or count
        parts = []
        for start in range(0, count, step):
            chunk = {k: v[start:start + step] for k, v in arrays.items()}
            short = step - len(next(iter(chunk.values())))
            if short:  # the last, partial batch of a fixed-batch model: padded with copies of its last tile
                chunk = {k: np.concatenate([v] + [v[-1:]] * short) for k, v in chunk.items()}
            result = self._run_once(chunk, output_names, fields)
            parts.append({k: v[:len(v) - short] for k, v in result.items()})
        if len(parts) == 1:
            return parts[0]
        return {name: np.concatenate([p[name] for p in parts]) for name in output_names}

    def _run_once(self, arrays: dict, output_names: list, fields: dict) -> dict:
        tf = import_tensorflow()
        tensors = {name: tf.convert_to_tensor(array) for name, array in arrays.items()}
        keys = tuple(self.signature.output(n).name for n in output_names)
        try:
            results = dict(zip(keys, self._runner(keys)(tensors)))
            self._shapes.add(self._shape_key(arrays, output_names))
        except Exception as exc:
            shapes = ", ".join(f"{k} {tuple(v.shape)}" for k, v in tensors.items())
            message, field = explain_failure(exc, shapes, self.signature, fields)
            raise EngineError(message, field) from exc
        out = {}
        for name, key in zip(output_names, keys):
            value = np.asarray(results[key])
            if value.ndim == 3:
                value = value[..., np.newaxis]
            elif value.ndim == 2:
                value = value[:, np.newaxis, np.newaxis, :]
            out[name] = value.astype(np.float32, copy=False)
        return out


def cast_input(array: np.ndarray, info: TensorInfo, field: str | None) -> np.ndarray:
    """`array` as the placeholder's type; an integer type refuses values outside its range, and rounds."""
    dtype = info.numpy_dtype
    if dtype.kind not in "iu":
        return array.astype(dtype, copy=False)
    limits = np.iinfo(dtype)
    low, high = (float(array.min()), float(array.max())) if array.size else (0.0, 0.0)
    if low < limits.min or high > limits.max or not np.isfinite([low, high]).all():
        raise EngineError(f"The model's input {info.name!r} is {dtype.name} ({limits.min} to {limits.max}) but the "
                          f"raster values go from {low:g} to {high:g}: they would wrap around. Rescale the raster "
                          f"to {limits.min}..{limits.max} first (e.g. Raster calculator or gdal_translate -scale), or "
                          "give the raster the model was trained on.", field)
    return np.rint(array).astype(dtype)


def explain_failure(exc: Exception, shapes: str, signature: ModelSignature, fields: dict) -> tuple:
    """(message, field) for a TensorFlow failure: the common causes recognised, with their fix. `fields`:
    {placeholder: request field}; shape errors are blamed on the first source's receptive field."""
    text, first = str(exc), _first_line(exc)
    rfield = next(iter(fields.values()), "sources[0]") + ".rfield"
    if isinstance(exc, MemoryError) or any(k in text for k in ("ResourceExhausted", "OOM when allocating",
                                                               "out of memory", "Unable to allocate")):
        return (f"The model ran out of memory on input tensors {shapes}; give a smaller batch size (BATCH_SIZE, "
                "e.g. 1) or tile size (TILE_SIZE).", "batch_size")
    assertion = "assertion failed" in text or "Assert" in first  # the model's own check: its text says "Invalid"
    if not assertion and any(k in text for k in ("incompatible", "input_signature", "Incompatible shapes",
                                                 "Dimensions must be", "ConcatOp", "does not match", "mismatch",
                                                 "must be", "Invalid", "invalid", "shape")):
        fixed = [f"{i.name} {i.shape[2]}x{i.shape[1]}" for i in map(signature.input, signature.input_names)
                 if i.shape is not None and len(i.shape) == 4 and None not in i.shape[1:3]]
        if fixed:
            return (f"The model takes inputs of a fixed size ({', '.join(fixed)}) and got {shapes}: use the OTBTF "
                    "extent mode with receptive fields of that size and an expression field and tile size equal to "
                    f"its output (TensorFlow: {first}).", rfield)
        return (f"The model failed on input tensors {shapes} (TensorFlow: {first}). Check the receptive fields: a "
                "strided network needs input sizes that are multiples of its total stride (Model analysis measures "
                "it; 16 for the sample), and the placeholders.", rfield)
    return (f"The model itself raised an error on input tensors {shapes} (TensorFlow: {first}); the inputs fit "
            "its signature, so look at the model's own checks of its input values or ranges.", "model_dir")


def fingerprint(model_dir: str) -> str:
    """A digest of the SavedModel's graph and variable index: equal digests, equal models (whatever the folder)."""
    digest = hashlib.sha256()
    for name in ("saved_model.pb", os.path.join("variables", "variables.index")):
        path = os.path.join(model_dir, name)
        if os.path.isfile(path):
            with open(path, "rb") as handle:
                digest.update(handle.read())
    return digest.hexdigest()[:16]


def _first_line(exc: Exception) -> str:
    """The line of a TensorFlow error that says what went wrong (its first line is often only
    "Graph execution error:")."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    for line in lines:
        if any(key in line for key in ("Incompatible shapes", "Dimensions must be", "ConcatOp", "must be",
                                       "Invalid", "invalid", "does not match", "mismatch")):
            return line[:300]
    useful = [line for line in lines if not line.startswith(("Detected at node", "File ", "Graph execution error",
                                                             "Stack trace", "[["))]
    return (useful[-1] if useful else lines[0] if lines else exc.__class__.__name__)[:300]
