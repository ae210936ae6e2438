"""What the user asked: the sources and TensorflowModelServe's parameters, plus the plugin's choices.

Plain immutable values, nothing derived: `engine.planning` validates them against the rasters and the model.
"""

import dataclasses
import os
from dataclasses import dataclass

from .errors import EngineError

FULL, OTBTF = "full", "otbtf"
EXTENT_MODES = (FULL, OTBTF)
MIRROR, ZEROS = "mirror", "zeros"
PADDINGS = (MIRROR, ZEROS)
# the backends (engine.backends) by name: named here, with the request, so that naming one imports no backend
AUTO_BACKEND, TENSORFLOW_BACKEND, OTBTF_BACKEND = "auto", "tensorflow", "otbtf"
BACKENDS = (AUTO_BACKEND, TENSORFLOW_BACKEND, OTBTF_BACKEND)


@dataclass(frozen=True)
class Source:
    """One model input: rasters stacked as channels, receptive field (x, y) in its own pixels, placeholder.

    rfield None (or 0) for a source after the first: the same ground as source 1's receptive field, in this
    source's pixels (PAN 128 at 0.6 m gives XS 32 at 2.4 m).
    bands: the channels to feed, numbered from 1 over the stacked rasters, in the model's order (None: all).
    scale, offset: value fed to the model = raster value x scale + offset, one number or one per fed band
    (None: 1 and 0). No-data is recognised on the raster's own values, before scaling.
    """

    paths: tuple
    rfield: tuple | None
    placeholder: str | None = None
    nodata: float | None = None
    bands: tuple | None = None
    scale: tuple | None = None
    offset: tuple | None = None

    def __post_init__(self):
        """The obvious forms from Python: one path as a string, a square receptive field as one int."""
        paths = (self.paths,) if isinstance(self.paths, (str, os.PathLike)) else self.paths
        try:
            paths = tuple(os.fspath(p) for p in paths)
        except TypeError as exc:
            raise EngineError(f"Source paths must be a path or a list of paths (got {self.paths!r}).",
                              "sources") from exc
        object.__setattr__(self, "paths", paths)
        object.__setattr__(self, "rfield", pair(self.rfield, "receptive field", "sources"))
        if self.nodata is not None:
            object.__setattr__(self, "nodata", number(self.nodata, "no-data value", "sources"))
        if self.bands is not None:
            bands = (self.bands,) if isinstance(self.bands, int) else self.bands
            if not isinstance(bands, (tuple, list)) or not bands or \
                    any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in bands):
                raise EngineError(f"The bands must be band numbers from 1, e.g. (3, 2, 1) (got {self.bands!r}).",
                                  "sources")
            object.__setattr__(self, "bands", tuple(bands))
        for name in ("scale", "offset"):
            value = getattr(self, name)
            if value is not None:
                values = (value,) if isinstance(value, (int, float)) else value
                try:
                    values = tuple(number(v, name, "sources") for v in values)
                except TypeError as exc:
                    raise EngineError(f"The {name} must be a number or one number per band (got {value!r}).",
                                      "sources") from exc
                if not values:
                    raise EngineError(f"The {name} must be a number or one number per band (got {value!r}).",
                                      "sources")
                object.__setattr__(self, name, values)


@dataclass(frozen=True)
class InferenceRequest:
    """Everything TensorflowModelServe takes, plus the plugin's extent mode, padding and tiling choices.

    output_names: empty = the model's raw output (its first output that is not a `_cropN`).
    resample: a source whose pixel size differs from the model card's by more than 10 % is refused, unless this
    names a GDAL resampling (nearest, bilinear, cubic, cubicspline, lanczos, average): the source is then warped
    on the fly to the card's pixel size (a VRT), and the output is on that grid.
    use_card: take what the request leaves empty from the model card (assets.extra/seamless.json), if any.
    valid_part: serve the valid part of that output: its smallest `_cropN` that keeps only exact pixels,
    measured on the model, or the raw output cropped by the engine when the model has none fitting.
    efield: output pixels (x, y); None = source 1's receptive field minus twice the output's crop (`_cropN`).
    extent: (xmin, ymin, xmax, ymax) in source 1's CRS, like OTBTF's box= but geographic; None = everything.
    tile_size: output pixels; None = Auto (large tiles when the output is exact, else the efield, as OTBTF).
    crop: output pixels the engine drops on each side of the model's output, on top of any `_cropN` of the
    output name: lets a model without `_cropN` outputs (or with none fitting) give its valid part.
    """

    model_dir: str
    sources: tuple
    output_names: tuple = ()
    efield: tuple | None = None
    spcscale: float = 1.0
    extent: tuple | None = None
    extent_mode: str = FULL
    padding: str = MIRROR
    tile_size: int | None = None
    batch_size: int | None = None
    data_type: str = "float32"
    background: float = 0.0
    crop: int = 0
    compression: str = "auto"
    valid_part: bool = False
    resample: str | None = None
    use_card: bool = True

    def __post_init__(self):
        """The obvious forms from Python: one source, comma-separated output names, a square efield as an int,
        the saved_model.pb file for its folder."""
        model_dir = os.fspath(self.model_dir) if self.model_dir is not None else ""
        if os.path.basename(model_dir) == "saved_model.pb" and os.path.isfile(model_dir):
            model_dir = os.path.dirname(model_dir) or "."
        object.__setattr__(self, "model_dir", model_dir)
        sources = (self.sources,) if isinstance(self.sources, Source) else self.sources
        if not all(isinstance(s, Source) for s in sources):
            raise EngineError("sources must be Source values (Source(paths, rfield)), one per model input.",
                              "sources")
        object.__setattr__(self, "sources", tuple(sources))
        names = self.output_names
        if isinstance(names, str):
            names = [n.strip() for n in names.split(",") if n.strip()]
        object.__setattr__(self, "output_names", tuple(names or ()))
        object.__setattr__(self, "efield", pair(self.efield, "expression field", "efield"))
        if self.extent is not None:
            try:
                extent = tuple(float(v) for v in self.extent)
            except (TypeError, ValueError) as exc:
                raise EngineError(f"The extent must be (xmin, ymin, xmax, ymax) (got {self.extent!r}).",
                                  "extent") from exc
            if len(extent) != 4:
                raise EngineError(f"The extent must be (xmin, ymin, xmax, ymax) (got {self.extent!r}).", "extent")
            object.__setattr__(self, "extent", extent)


def pair(value, what: str, field: str) -> tuple | None:
    """(x, y) integers from an int, a pair, or None/0 (not given)."""
    if value is None:
        return None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = (value, value)
    try:
        x, y = value
        result = (int(x), int(y))
    except (TypeError, ValueError) as exc:
        raise EngineError(f"The {what} must be an integer or an (x, y) pair of integers (got {value!r}).",
                          field) from exc
    if result != (x, y):
        raise EngineError(f"The {what} must be whole pixels (got {value!r}).", field)
    return None if result == (0, 0) else result


def number(value, what: str, field: str) -> float:
    """A float, or a clear error for text such as 'abc'."""
    try:
        return float(value)
    except (TypeError, ValueError) as exc:
        raise EngineError(f"The {what} must be a number (got {value!r}).", field) from exc


def source_names(count: int) -> list:
    """Display names matching the algorithms' parameters: 'source 1' ..."""
    return [f"source {i + 1}" for i in range(count)]


def request_to_json(request: InferenceRequest) -> dict:
    """The request's fields as plain JSON values (sources as objects of their own fields)."""
    return dataclasses.asdict(request)


def plain(value, what: str = "A request"):
    """A value read as JSON as the engine's values hold it: lists as tuples, scalars as they are; an EngineError
    for anything else (an object where a plain value belongs). `what` says whose value it is."""
    if isinstance(value, list):
        return tuple(plain(v, what) for v in value)
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    raise EngineError(f"{what} read as JSON holds a value of type {type(value).__name__}.", "request")


def request_from_json(data: dict) -> InferenceRequest:
    """The request from `request_to_json`'s form, field by field: unknown fields are refused, lists become
    tuples, and InferenceRequest's and Source's own checks run on what came."""
    def fields_of(kind, values) -> dict:
        if not isinstance(values, dict):
            raise EngineError(f"A request read as JSON has a {kind.__name__} that is not an object.", "request")
        known = {f.name for f in dataclasses.fields(kind)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise EngineError(f"A request read as JSON has unknown {kind.__name__} fields: "
                              f"{', '.join(unknown)}.", "request")
        return values

    data = dict(fields_of(InferenceRequest, data))
    sources = data.pop("sources", ())
    if not isinstance(sources, (list, tuple)):
        raise EngineError("A request read as JSON has sources that are not a list.", "request")
    sources = tuple(Source(**{k: plain(v) for k, v in fields_of(Source, s).items()}) for s in sources)
    return InferenceRequest(sources=sources, **{k: plain(v) for k, v in data.items()})
