"""A measurement of a model's border behaviour as a value, and as JSON data.

`Setup` says what a measurement depends on, `Measurement` holds what it found (the probe and the graph's table).
Both travel between processes and machines, in the measurement cache (engine.measure_cache) and in a model card
(engine.card), always as JSON: `to_json` writes plain numbers, strings and lists, and `from_json` rebuilds the
values field by field, refusing anything else with a ValueError. Nothing read back can name a type or run code
(a pickle could: a crafted file in a shared cache folder ran a shell command, issue 24).
"""

from dataclasses import dataclass, field
from fractions import Fraction

from .records import Geo, Layer, ProbeResult, Span, Theory

VERSION = 2  # of the measurement and its JSON form: raise when either changes, older records are then ignored
DATA_SCALES = ((0.0, 1.0), (500.0, 250.0))  # random virtual images: normalised data and raw digital numbers
DATA_TEXT = "random normal noise, " + " and ".join(f"mean {m:g} std {s:g}" for m, s in DATA_SCALES)


@dataclass(frozen=True)
class Setup:
    """What a measurement depends on: the output measured, the placeholders in source order, each source's
    size (w, h) in its own pixels and pixel size (x, y) in source-1 pixels."""

    output_name: str
    placeholders: tuple
    sizes: tuple
    ratios: tuple


@dataclass(frozen=True)
class Measurement:
    """The border behaviour of one output for tiles of the setup's sizes: measured and read from the graph.

    probe: the measurement (the largest loss and stride over the data scales); theory: the graph's table and
    windows (None when the graph could not be read at all); output_pixel: (x, y) in source-1 pixels.
    origin: where this process got it ("measured", "the measurement cache", "the model card"): not compared.
    """

    setup: Setup
    probe: ProbeResult
    theory: Theory | None
    output_pixel: tuple
    data: str = DATA_TEXT
    origin: str = field(default="measured", compare=False)

    @property
    def tile_output(self) -> tuple:
        """(w, h) of the output for one tile of the setup's sizes (output pixels)."""
        return self.probe.tile_output

    @property
    def theory_window(self) -> tuple | None:
        """Exact output pixels by the graph, ((x_first, x_end), (y_first, y_end)), or None when not followed."""
        geo = self.theory.outputs.get(self.setup.output_name) if self.theory else None
        return geo.window if geo else None

    @property
    def theory_lost(self) -> tuple | None:
        """Pixels the graph says a tile border pollutes: (left, top, right, bottom), or None."""
        window = self.theory_window
        if window is None:
            return None
        (x0, x1), (y0, y1) = window
        w, h = self.theory.outputs[self.setup.output_name].size
        return (x0, y0, w - x1, h - y1) if x1 > x0 and y1 > y0 else (w, h, w, h)

    @property
    def lost(self) -> tuple:
        """Pixels polluted by a tile border, (left, top, right, bottom): the larger of both answers."""
        theory = self.theory_lost
        return self.probe.lost if theory is None else tuple(max(a, b) for a, b in zip(self.probe.lost, theory))

    @property
    def exact_crop(self) -> int:
        """Smallest symmetric crop (output pixels a side) that keeps only exact pixels."""
        return max(self.lost)

    @property
    def stride(self) -> tuple:
        """Measured total stride (x, y) in source-1 pixels: tile origins must be multiples of it."""
        return self.probe.stride

    @property
    def total_stride(self) -> int:
        """The larger total stride of both axes."""
        return max(self.probe.stride)

    def crop_to_serve(self, available) -> int:
        """The crop (output pixels a side) to serve among `available` crops: see `recommended_crop`."""
        return recommended_crop(available, self.exact_crop, self.total_stride, min(self.tile_output),
                                self.output_pixel[0])


def recommended_crop(available, exact_crop: int, stride: int, size: int, pixel=1) -> int:
    """The crop (output pixels a side) to serve: the smallest of `available` that keeps only exact pixels, leaves
    an expression field (2 x crop < `size`, the tile's output size) and keeps OTBTF-style tiles on the total-stride
    lattice (2 x crop x `pixel` a multiple of `stride`; `pixel` = an output pixel in source-1 pixels); when none
    does, the exact crop rounded up to that lattice (the engine then crops the raw output itself)."""
    def on_lattice(crop):
        return (2 * crop * pixel) % stride == 0

    fits = sorted(c for c in available if exact_crop <= c and 0 < c and 2 * c < size and on_lattice(c))
    if fits:
        return fits[0]
    crop = exact_crop
    while not on_lattice(crop):
        crop += 1
    return crop


# ---- JSON: written as plain values, read back field by field -----------------------------------------------------

def _fraction(value: Fraction) -> str:
    return f"{value.numerator}/{value.denominator}"


def _span(span: Span) -> dict:
    return {"size": span.size, "first": span.first, "end": span.end, "step": _fraction(Fraction(span.step))}


def setup_json(setup: Setup) -> dict:
    """A setup as plain JSON values."""
    return {"output": setup.output_name, "placeholders": list(setup.placeholders),
            "sizes": [list(s) for s in setup.sizes], "ratios": [[_fraction(r) for r in pair] for pair in setup.ratios]}


def to_json(measurement: Measurement) -> dict:
    """A measurement as plain JSON values (numbers, strings, lists, objects)."""
    probe, theory = measurement.probe, measurement.theory
    record = {"setup": setup_json(measurement.setup),
              "probe": {"output": probe.output_name, "rfield": list(probe.rfield), "stride": list(probe.stride),
                        "lost": list(probe.lost), "tile_output": list(probe.tile_output)},
              "output_pixel": [_fraction(p) for p in measurement.output_pixel], "data": measurement.data,
              "theory": None}
    if theory is not None:
        record["theory"] = {
            "layers": [{"name": layer.name, "operation": layer.operation, "kernel": _maybe_list(layer.kernel),
                        "stride": _maybe_list(layer.stride), "size": _maybe_list(layer.size),
                        "window": [list(w) for w in layer.window] if layer.window is not None else None,
                        "formula": layer.formula} for layer in theory.layers],
            "outputs": {name: None if geo is None else {"x": _span(geo.x), "y": _span(geo.y),
                                                        "axes": list(geo.axes), "rank": geo.rank}
                        for name, geo in theory.outputs.items()},
            "issues": list(theory.issues), "notes": list(theory.notes), "stride": theory.stride}
    return record


def _maybe_list(value):
    return None if value is None else list(value)


def _int(value, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{where}: expected an integer, got {value!r}")
    return value


def _text(value, where: str) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{where}: expected text, got {value!r}")
    return value


def _list(value, where: str, length: int | None = None) -> list:
    if not isinstance(value, list) or (length is not None and len(value) != length):
        raise ValueError(f"{where}: expected a list" + (f" of {length}" if length else "") + f", got {value!r}")
    return value


def _ints(value, where: str, length: int) -> tuple:
    return tuple(_int(v, where) for v in _list(value, where, length))


def _maybe_ints(value, where: str, length: int) -> tuple | None:
    return None if value is None else _ints(value, where, length)


def _object(value, where: str, keys) -> dict:
    if not isinstance(value, dict) or not set(keys) <= set(value):
        raise ValueError(f"{where}: expected an object with {', '.join(keys)}")
    return value


def fraction_of(value, where: str) -> Fraction:
    """A fraction written "a/b" (positive or zero)."""
    text = _text(value, where)
    numerator, _, denominator = text.partition("/")
    if not (numerator.isdigit() and denominator.isdigit() and int(denominator)):
        raise ValueError(f"{where}: expected a fraction a/b, got {value!r}")
    return Fraction(int(numerator), int(denominator))


def setup_of(value, where: str = "setup") -> Setup:
    """A Setup from its JSON values (ValueError when they are not one)."""
    record = _object(value, where, ("output", "placeholders", "sizes", "ratios"))
    placeholders = tuple(_text(p, where) for p in _list(record["placeholders"], where))
    sizes = tuple(_ints(s, f"{where}.sizes", 2) for s in _list(record["sizes"], where, len(placeholders)))
    ratios = tuple(tuple(fraction_of(r, f"{where}.ratios") for r in _list(pair, where, 2))
                   for pair in _list(record["ratios"], where, len(placeholders)))
    return Setup(_text(record["output"], where), placeholders, sizes, ratios)


def _span_of(value, where: str) -> Span:
    record = _object(value, where, ("size", "first", "end", "step"))
    return Span(_int(record["size"], where), _int(record["first"], where), _int(record["end"], where),
                fraction_of(record["step"], where))


def _theory_of(value, where: str = "theory") -> Theory | None:
    if value is None:
        return None
    record = _object(value, where, ("layers", "outputs", "issues", "notes", "stride"))
    layers = []
    for row in _list(record["layers"], where):
        row = _object(row, f"{where}.layers", ("name", "operation", "kernel", "stride", "size", "window", "formula"))
        window = row["window"]
        window = None if window is None else tuple(_ints(w, f"{where}.window", 2) for w in _list(window, where, 2))
        layers.append(Layer(_text(row["name"], where), _text(row["operation"], where),
                            _maybe_ints(row["kernel"], where, 2), _maybe_ints(row["stride"], where, 2),
                            _maybe_ints(row["size"], where, 2), window, _text(row["formula"], where)))
    outputs = {}
    for name, geo in _object(record["outputs"], where, ()).items():
        if geo is None:
            outputs[_text(name, where)] = None
            continue
        geo = _object(geo, f"{where}.outputs", ("x", "y", "axes", "rank"))
        outputs[name] = Geo(_span_of(geo["y"], where), _span_of(geo["x"], where), _ints(geo["axes"], where, 2),
                            _int(geo["rank"], where))
    stride = None if record["stride"] is None else _int(record["stride"], where)
    return Theory(tuple(layers), outputs, tuple(_text(i, where) for i in _list(record["issues"], where)),
                  tuple(_text(n, where) for n in _list(record["notes"], where)), stride)


def from_json(value) -> Measurement:
    """A Measurement from `to_json`'s values; ValueError for anything else (a damaged or foreign record)."""
    record = _object(value, "measurement", ("setup", "probe", "theory", "output_pixel", "data"))
    probe = _object(record["probe"], "probe", ("output", "rfield", "stride", "lost", "tile_output"))
    result = ProbeResult(_text(probe["output"], "probe"), _ints(probe["rfield"], "probe.rfield", 2),
                         _ints(probe["stride"], "probe.stride", 2), _ints(probe["lost"], "probe.lost", 4),
                         _ints(probe["tile_output"], "probe.tile_output", 2))
    pixel = tuple(fraction_of(p, "output_pixel") for p in _list(record["output_pixel"], "output_pixel", 2))
    return Measurement(setup_of(record["setup"]), result, _theory_of(record["theory"]), pixel,
                       _text(record["data"], "data"))
