"""The model card: what a model says about itself in `assets.extra/seamless.json`, so that an analyst gives only the
model and the images.

A SavedModel's `assets.extra/` folder travels with the model and is not loaded by the graph (TensorFlow's place
for such files). The card (JSON, `"version": 1`, schema in engine/seamless_card.schema.json) holds per source the
placeholder, the bands to take and in which order, the scaling (value given to the model = raster value x scale +
offset, or (value - mean) / std), the no-data value, the pixel size the model was trained at and the receptive
field; the outputs to serve and what they are; the classes (value, name, colour); and what Model analysis
measured, with the model's fingerprint. It is data: read as JSON, validated key by key with messages that name
the key and the fix, never run. Any parameter given explicitly wins over the card (`apply_card`).
"""

import json
import math
import os
import uuid
from dataclasses import dataclass, replace

from .classes import MAX_CLASSES, ClassEntry, hex_color
from .errors import EngineError
from .measurement import VERSION as MEASUREMENT_VERSION
from .measurement import Measurement, from_json, to_json

CARD_VERSION = 1
CARD_FOLDER = "assets.extra"
CARD_NAME = "seamless.json"
OUTPUT_KINDS = ("scores", "probabilities", "regression")
SOURCE_KEYS = ("name", "placeholder", "bands", "scale", "offset", "mean", "std", "nodata", "pixel_size",
               "receptive_field")
TOP_KEYS = ("version", "name", "description", "sources", "outputs", "classes", "measured")
MAX_BYTES = 4 * 1024 * 1024
SCHEMA = os.path.join(os.path.dirname(__file__), "seamless_card.schema.json")


@dataclass(frozen=True)
class CardSource:
    """One source as the card describes it; None where the card says nothing."""

    placeholder: str
    name: str | None = None
    bands: tuple | None = None
    scale: tuple | None = None
    offset: tuple | None = None
    nodata: float | None = None
    pixel_size: tuple | None = None
    rfield: tuple | None = None


@dataclass(frozen=True)
class ModelCard:
    """A validated card. raw: the JSON object as read (what an update keeps); measured: the measurements whose
    fingerprint and version match the model's (the others are dropped, with a note)."""

    path: str
    sources: tuple
    outputs: tuple            # ((name, kind), ...)
    classes: tuple | None     # ClassEntry values, sorted by value
    measured: tuple
    notes: tuple
    raw: dict


def fingerprint_text(fingerprint: str) -> str:
    """The model's fingerprint as the card writes it, "sha256:<16 hex digits>" (a bare hex string would look
    like a secret to the scanners plugins.qgis.org runs)."""
    return f"sha256:{fingerprint}"


def card_path(model_dir: str) -> str:
    """Where a model's card is: <model>/assets.extra/seamless.json."""
    return os.path.join(model_dir, CARD_FOLDER, CARD_NAME)


class _Invalid(Exception):
    """A key of the card that is wrong: (key, what is wrong and the fix)."""


def _fail(key: str, problem: str):
    raise _Invalid(key, problem)


def _number(value, key: str, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        _fail(key, f"{value!r} is not a number")
    if positive and value <= 0:
        _fail(key, f"{value!r} must be more than 0")
    return float(value)


def _numbers(value, key: str, positive: bool = False) -> tuple:
    """One number, or a non-empty list of numbers (one per band)."""
    if isinstance(value, list):
        if not value:
            _fail(key, "is an empty list; give one number, or one per band")
        return tuple(_number(v, f"{key}[{i}]", positive) for i, v in enumerate(value))
    return (_number(value, key, positive),)


def _pair(value, key: str, integer: bool) -> tuple:
    values = value if isinstance(value, list) else [value]
    if len(values) not in (1, 2):
        _fail(key, f"{value!r} must be one number or [x, y]")
    out = []
    for v in values:
        number = _number(v, key, positive=True)
        if integer and number != int(number):
            _fail(key, f"{v!r} must be a whole number of pixels")
        out.append(int(number) if integer else number)
    return tuple(out * 2 if len(out) == 1 else out)


def _text(value, key: str) -> str:
    if not isinstance(value, str) or not value.strip():
        _fail(key, f"{value!r} must be a non-empty text")
    return value.strip()


def _source(value, index: int, signature) -> CardSource:
    key = f"sources[{index}]"
    if not isinstance(value, dict):
        _fail(key, "must be an object such as {\"placeholder\": \"input_p\", \"bands\": [1]}")
    unknown = sorted(set(value) - set(SOURCE_KEYS))
    if unknown:
        _fail(f"{key}.{unknown[0]}", f"is not a key of a source; the keys are: {', '.join(SOURCE_KEYS)}")
    if "placeholder" not in value:
        _fail(f"{key}.placeholder", "is missing: name the model input this source feeds")
    placeholder = _text(value["placeholder"], f"{key}.placeholder")
    if signature is not None and signature.input(placeholder) is None:
        _fail(f"{key}.placeholder", f"{placeholder!r} is not an input of the model; its inputs are: "
                                    f"{', '.join(signature.input_names)}")
    bands = None
    if value.get("bands") is not None:
        raw = value["bands"]
        if not isinstance(raw, list) or not raw or any(isinstance(b, bool) or not isinstance(b, int) or b < 1
                                                       for b in raw):
            _fail(f"{key}.bands", f"{raw!r} must be a list of band numbers from 1, e.g. [3, 2, 1]")
        bands = tuple(raw)
    scale = offset = None
    if "mean" in value or "std" in value:
        if "scale" in value or "offset" in value:
            _fail(f"{key}.mean", "give either scale/offset or mean/std, not both")
        if "mean" not in value or "std" not in value:
            _fail(f"{key}.{'std' if 'mean' in value else 'mean'}", "is missing: mean and std go together")
        mean = _numbers(value["mean"], f"{key}.mean")
        std = _numbers(value["std"], f"{key}.std", positive=True)
        if len(mean) != len(std) and 1 not in (len(mean), len(std)):
            _fail(f"{key}.std", f"has {len(std)} values and mean {len(mean)}: give one per band, or one")
        count = max(len(mean), len(std))
        mean, std = (v * count if len(v) == 1 else v for v in (mean, std))
        scale, offset = tuple(1.0 / s for s in std), tuple(-m / s for m, s in zip(mean, std))
    else:
        if value.get("scale") is not None:
            scale = _numbers(value["scale"], f"{key}.scale")
            if 0.0 in scale:
                _fail(f"{key}.scale", "is 0: the model would see a constant; give the factor from raster values "
                                      "to the model's (e.g. 0.0001 for reflectance stored x 10000)")
        if value.get("offset") is not None:
            offset = _numbers(value["offset"], f"{key}.offset")
    for name, values in (("scale", scale), ("offset", offset)):
        if values and bands and len(values) not in (1, len(bands)):
            _fail(f"{key}.{name}", f"has {len(values)} values for {len(bands)} bands: give one, or one per band")
    nodata = None if value.get("nodata") is None else _number(value["nodata"], f"{key}.nodata")
    pixel = None if value.get("pixel_size") is None else _pair(value["pixel_size"], f"{key}.pixel_size", False)
    rfield = None
    if value.get("receptive_field") is not None:
        rfield = _pair(value["receptive_field"], f"{key}.receptive_field", True)
    name = None if value.get("name") is None else _text(value["name"], f"{key}.name")
    return CardSource(placeholder, name, bands, scale, offset, nodata, pixel, rfield)


def _outputs(value, signature) -> tuple:
    if not isinstance(value, list):
        _fail("outputs", "must be a list such as [{\"name\": \"estimated\", \"kind\": \"scores\"}]")
    found = []
    for index, entry in enumerate(value):
        key = f"outputs[{index}]"
        if not isinstance(entry, dict) or "name" not in entry:
            _fail(key, "must be an object with a name (and a kind: scores, probabilities or regression)")
        name = _text(entry["name"], f"{key}.name")
        if signature is not None and signature.output(name) is None:
            _fail(f"{key}.name", f"{name!r} is not an output of the model; its outputs are: "
                                 f"{', '.join(signature.output_names)}")
        kind = entry.get("kind", "scores")
        if kind not in OUTPUT_KINDS:
            _fail(f"{key}.kind", f"{kind!r} is not one of {', '.join(OUTPUT_KINDS)}")
        found.append((name, kind))
    return tuple(found)


def _classes(value) -> tuple:
    if not isinstance(value, list) or not value:
        _fail("classes", "must be a non-empty list such as [{\"value\": 0, \"name\": \"water\", \"color\": "
                         "\"#1f77b4\"}]")
    entries = []
    for index, entry in enumerate(value):
        key = f"classes[{index}]"
        if not isinstance(entry, dict) or not {"value", "name"} <= set(entry):
            _fail(key, "must be an object with value, name and color")
        number = entry["value"]
        if isinstance(number, bool) or not isinstance(number, int) or not 0 <= number < MAX_CLASSES:
            _fail(f"{key}.value", f"{number!r} must be a whole number 0..{MAX_CLASSES - 1} (the score band, from 0)")
        if any(e.value == number for e in entries):
            _fail(f"{key}.value", f"{number} is given twice; give each class one entry")
        try:
            color = hex_color(entry.get("color", ""), f"{key}.color")
        except EngineError:
            _fail(f"{key}.color", f"{entry.get('color')!r} is not a colour: write it #rrggbb (e.g. #2ca02c)")
        entries.append(ClassEntry(number, _text(entry["name"], f"{key}.name"), color))
    return tuple(sorted(entries, key=lambda e: e.value))


def _measured(value, fingerprint: str | None) -> tuple:
    """(measurements, notes): those of this model and engine version; a stale or foreign record is ignored."""
    if not isinstance(value, dict):
        _fail("measured", "must be an object written by Model analysis")
    if fingerprint is not None and value.get("fingerprint") != fingerprint_text(fingerprint):
        return (), (f"The model card's measurement is for another model (fingerprint {value.get('fingerprint')!r}, "
                    f"this model's {fingerprint!r}): it is ignored and the model measured again; run Model analysis "
                    "with Write the model card to update it.",)
    if value.get("version") != MEASUREMENT_VERSION:
        return (), (f"The model card's measurement is of another engine version ({value.get('version')!r}, this "
                    f"engine's {MEASUREMENT_VERSION}): it is ignored and the model measured again.",)
    records = value.get("measurements")
    if not isinstance(records, list):
        _fail("measured.measurements", "must be a list written by Model analysis")
    found = []
    for index, record in enumerate(records):
        try:
            found.append(replace(from_json(record), origin="the model card"))
        except (ValueError, TypeError, ZeroDivisionError) as exc:
            _fail(f"measured.measurements[{index}]", f"is not a measurement ({exc}); run Model analysis again")
    return tuple(found), ()


def read_card(model_dir: str, signature=None, fingerprint: str | None = None) -> ModelCard | None:
    """The model's card, validated (against `signature` when given), or None when the model has none.
    `fingerprint`: the model's; a measurement of another is dropped with a note. A bad card raises an EngineError
    naming the card's key and the fix (field model_dir)."""
    path = card_path(model_dir)
    if not os.path.isfile(path):
        return None
    try:
        if os.path.getsize(path) > MAX_BYTES:
            raise EngineError(f"The model card {path} is over {MAX_BYTES // 1024 // 1024} MB: not a model card; "
                              "delete it or write a card (README, Model card).", "model_dir")
        with open(path, encoding="utf-8-sig") as handle:
            raw = json.load(handle)
    except (ValueError, UnicodeDecodeError) as exc:
        raise EngineError(f"The model card {path} is not JSON ({exc}). Fix the card (its format: README, Model "
                          "card), or delete it to give every parameter yourself.", "model_dir") from None
    except OSError as exc:
        raise EngineError(f"The model card {path} cannot be read ({exc.strerror or exc}).", "model_dir") from exc
    return validate(raw, path, signature, fingerprint)


def validate(raw, path: str, signature=None, fingerprint: str | None = None) -> ModelCard:
    """A ModelCard from a card's JSON value, or an EngineError naming the key at fault and the fix."""
    try:
        if not isinstance(raw, dict):
            _fail("(file)", "must hold one JSON object {\"version\": 1, \"sources\": [...]}")
        if raw.get("version") != CARD_VERSION:
            _fail("version", f"{raw.get('version')!r} is not a card version this plugin reads ({CARD_VERSION}); "
                             "write \"version\": 1, or update the plugin")
        unknown = sorted(k for k in set(raw) - set(TOP_KEYS) if not k.startswith("x-"))
        if unknown:
            _fail(unknown[0], f"is not a key of a model card; the keys are: {', '.join(TOP_KEYS)} (and your own, "
                              "prefixed x-)")
        sources = raw.get("sources", [])
        if not isinstance(sources, list):
            _fail("sources", "must be a list, one entry per model input, in source order")
        sources = tuple(_source(s, i, signature) for i, s in enumerate(sources))
        placeholders = [s.placeholder for s in sources]
        for index, name in enumerate(placeholders):
            if name in placeholders[:index]:
                _fail(f"sources[{index}].placeholder", f"{name!r} is fed by source {placeholders.index(name) + 1} "
                                                       "already; each source feeds its own input")
        outputs = _outputs(raw["outputs"], signature) if raw.get("outputs") is not None else ()
        classes = _classes(raw["classes"]) if raw.get("classes") is not None else None
        measured, notes = ((), ()) if raw.get("measured") is None else _measured(raw["measured"], fingerprint)
    except _Invalid as exc:
        key, problem = exc.args
        raise EngineError(f"The model card {path}: {key} {problem}. Fix the card (its format: README, "
                          "Model card), or delete it to give every parameter yourself.", "model_dir") from None
    return ModelCard(path, sources, outputs, classes, measured, notes, raw)


def card_measurement(card: ModelCard | None, setup) -> Measurement | None:
    """The card's measurement of exactly this setup, or None."""
    return next((m for m in card.measured if m.setup == setup), None) if card else None


def apply_card(request, card: ModelCard | None) -> tuple:
    """(request, notes): the request with what it leaves empty taken from the card, and one note per value taken.
    Explicit values always win; sources beyond the card's are left as given."""
    if card is None:
        return request, ()
    notes, sources = [], []
    # receptive fields and placeholders go together across sources: source 1's receptive field given alone sizes
    # the others by their ground (as without a card), and one placeholder given means the user assigns them
    fields = ("bands", "scale", "offset", "nodata")
    if request.sources and request.sources[0].rfield is None:
        fields += ("rfield",)
    if not any(s.placeholder for s in request.sources):
        fields += ("placeholder",)
    for index, source in enumerate(request.sources):
        entry = card.sources[index] if index < len(card.sources) else None
        if entry is None:
            sources.append(source)
            continue
        taken = {}
        for field in ("placeholder", "rfield", "bands", "scale", "offset", "nodata"):
            value = getattr(entry, field)
            if field in fields and getattr(source, field) is None and value is not None:
                taken[field] = value
        if taken:
            sources.append(replace(source, **taken))
            notes.append(f"source {index + 1}: from the model card: " + ", ".join(
                f"{_LABELS[k]} {_show(v)}" for k, v in taken.items()) + ".")
        else:
            sources.append(source)
    request = replace(request, sources=tuple(sources))
    if not request.output_names and card.outputs:
        request = replace(request, output_names=(card.outputs[0][0],))
        notes.append(f"Output: {card.outputs[0][0]} ({card.outputs[0][1]}), from the model card.")
    return request, tuple(card.notes) + tuple(notes)


_LABELS = {"placeholder": "placeholder", "rfield": "receptive field", "bands": "bands", "scale": "scale",
           "offset": "offset", "nodata": "no-data value"}


def _show(value) -> str:
    if isinstance(value, tuple):
        return "(" + ", ".join(f"{v:g}" if isinstance(v, float) else str(v) for v in value) + ")"
    return f"{value:g}" if isinstance(value, float) else str(value)


def pixel_size_mismatch(card: ModelCard | None, index: int, spacing: tuple, tolerance: float = 0.10) -> str | None:
    """A sentence when source `index`'s pixel size (x, y) differs from the card's by more than `tolerance`."""
    if card is None or index >= len(card.sources) or card.sources[index].pixel_size is None:
        return None
    wanted = card.sources[index].pixel_size
    off = max(abs(s - w) / w for s, w in zip(spacing, wanted))
    if off <= tolerance:
        return None
    return (f"source {index + 1}'s pixels are {spacing[0]:g} x {spacing[1]:g} but the model was trained at "
            f"{wanted[0]:g} x {wanted[1]:g} (model card, sources[{index}].pixel_size): {off:.0%} apart")


def write_card(model_dir: str, analysis, classes: tuple | None = None, outputs: tuple | None = None) -> str:
    """Write or update the model's card from a Model analysis: the placeholders, receptive fields, the output to
    serve and the measurement (with the fingerprint), plus `classes` when given. Fields an author wrote are kept;
    a card that does not validate is refused (nothing is written). Returns the card's path."""
    from .model import fingerprint  # noqa: PLC0415 (model is listed above this module; no cycle)

    path = card_path(model_dir)
    existing = read_card(model_dir)
    raw = dict(existing.raw) if existing else {"version": CARD_VERSION}
    raw["version"] = CARD_VERSION
    sources = [dict(s) for s in raw.get("sources", [])]
    served = analysis.working or analysis  # the sizes that have an exact valid part
    for index, (placeholder, size) in enumerate(zip(served.placeholders, served.sizes)):
        if index >= len(sources):
            sources.append({})
        if sources[index].get("placeholder") not in (None, placeholder):
            sources[index] = {}  # the author's entry was for another input: this analysis's order wins
        sources[index]["placeholder"] = placeholder
        sources[index]["receptive_field"] = list(size) if size[0] != size[1] else size[0]
    raw["sources"] = sources[:len(served.placeholders)]
    if outputs is not None or not raw.get("outputs"):
        raw["outputs"] = [{"name": n, "kind": k} for n, k in (outputs or ((analysis.output_name, "scores"),))]
    if classes:
        raw["classes"] = [{"value": e.value, "name": e.name,
                           "color": "#" + "".join(f"{c:02x}" for c in (e.color if e.color[3] < 255 else e.color[:3]))}
                          for e in classes]
    runs = [analysis.measurement] + ([analysis.working.measurement] if analysis.working else [])
    raw["measured"] = {"fingerprint": fingerprint_text(fingerprint(model_dir)), "version": MEASUREMENT_VERSION,
                       "measurements": [to_json(m) for m in runs]}
    validate(raw, path)  # what is written reads back as a card (nothing is written otherwise)
    text = json.dumps(raw, indent=2) + "\n"
    folder = os.path.dirname(path)
    temp = os.path.join(folder, f".{CARD_NAME}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        os.makedirs(folder, exist_ok=True)
        with open(temp, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(temp, path)
    except OSError as exc:
        raise EngineError(f"The model card {path} cannot be written ({exc.strerror or exc}); is the model folder "
                          "writable, is the disk full?", "model_dir") from exc
    finally:
        if os.path.exists(temp):
            os.remove(temp)
    return path
