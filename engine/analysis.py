"""One measurement of a model's border behaviour, shared by model analysis and inference, and the crop to serve.

`measure` runs the model (engine.probe) on random data at two scales, normalised data and raw digital numbers:
data that always excites the model, whatever the image holds (flat areas, no-data, water), so the measurement
is the same for every scene; a saturated softmax or dead ReLUs at one scale cannot hide a polluted pixel. It
reads the graph too (engine.graph) and keeps the larger loss: the theory can only over-estimate what a border
pollutes (it ignores zero weights), the measurement can only under-estimate it. The result is cached on the
loaded model, keyed by its fingerprint and the setup (output, placeholders, sizes, pixel ratios): model
analysis and valid-part inference of the same setup get the same object, from one call.
"""

from dataclasses import dataclass, field, replace
from fractions import Fraction
from math import ceil, gcd, lcm

import numpy as np

from . import measure_cache
from .card import card_measurement, read_card
from .errors import EngineError, source_field
from .graph import Theory, read_theory
from .measurement import DATA_SCALES, Measurement, Setup, recommended_crop  # noqa: F401 (public here too)
from .memory import check_memory
from .model import SavedModel, read_signature, split_crop
from .probe import ProbeResult, ProbeSource, probe_model
from .sizes import source_sizes


def measure(model: SavedModel, setup: Setup, tolerance: float = 1e-5, progress=None, card=None) -> Measurement:
    """The model's border behaviour for `setup`, measured once per model fingerprint and setup: cached on the
    loaded model, found in the model card (`card`, engine.card: written by Model analysis for this fingerprint),
    or on disk (engine.measure_cache) for the next process. progress(fraction) per model run. The answer's
    `origin` says where it came from."""
    key = (model.fingerprint, setup, tolerance)
    if key not in model.measurements:
        found = card_measurement(card, setup) if tolerance == 1e-5 else None
        if found is None:
            found = measure_cache.load(model.fingerprint, setup, tolerance)
            found = replace(found, origin="the measurement cache") if found else None
        if found is None:
            found = _measure(model, setup, tolerance, progress)
            measure_cache.store(model.fingerprint, setup, tolerance, found)
        model.measurements[key] = found
    return model.measurements[key]


def _measure(model: SavedModel, setup: Setup, tolerance: float, progress=None) -> Measurement:
    name, sizes = setup.output_name, setup.sizes
    channels = [model.signature.input(p).channels or 1 for p in setup.placeholders]
    # the probe cuts its windows from two random images of about 6 x 6 receptive fields per source (engine.probe)
    check_memory(sum(36 * 2 * 4 * w * h * c for (w, h), c in zip(sizes, channels)),
                 f"Measuring the model on a {sizes[0][0]} x {sizes[0][1]} px receptive field",
                 source_field(0, "rfield"),
                 "give a smaller receptive field (the model's training patch size, e.g. 128 to 512)")
    feeds = {p: np.zeros((1, s[1], s[0], model.signature.input(p).channels or 1), np.float32)
             for p, s in zip(setup.placeholders, sizes)}
    try:
        out = model.run(feeds, [name])[name]
    except EngineError as exc:
        raise EngineError(f"{exc} (sizes: " + ", ".join(f"{p} {s[0]}x{s[1]}" for p, s in zip(setup.placeholders, sizes))
                          + ")", exc.field) from exc
    base, crop = split_crop(name)
    crop = crop if model.signature.output(base) is None else 0  # a `_cropN` output measured without its raw output
    out_h, out_w = (v + 2 * crop if v else 0 for v in out.shape[1:3])
    pixel = tuple(Fraction(size, out) if out else Fraction(0) for size, out in zip(sizes[0], (out_w, out_h)))
    if not all(p and (p.numerator == 1 or p.denominator == 1) for p in pixel):
        raise EngineError(f"Output {name} is {out_w}x{out_h} px for a {sizes[0][0]}x{sizes[0][1]} px tile of source "
                          "1: not a whole ratio of it, so its pixels cannot be placed on the sources' grid (a model "
                          "with valid padding, or a global output?).", "output_names")
    # integer pixel steps on a common lattice for the probe: the finest of the sources' and the output's pixels
    units = [lcm(*(r[a].denominator for r in setup.ratios), pixel[a].denominator) for a in (0, 1)]
    steps = [tuple(int(r[a] * units[a]) for a in (0, 1)) for r in setup.ratios]
    out_step = tuple(int(pixel[a] * units[a]) for a in (0, 1))
    calls = [0]

    def run(feed):
        result = model.run(feed, [name])
        calls[0] += 1
        if progress:  # 8 runs a data scale when the stride is found at the first shift; the graph is last
            progress(min(calls[0] / (8 * len(DATA_SCALES) + 1), 0.95))
        return result

    results = [probe_model(run, _random_sources(model.signature, setup, steps, scale), out_step, name, tolerance)
               for scale in DATA_SCALES]
    probe = replace(results[0], lost=tuple(max(v) for v in zip(*(r.lost for r in results))),
                    stride=tuple(max(v) for v in zip(*(r.stride for r in results))))
    try:
        theory = read_theory(model.function, dict(zip(setup.placeholders, sizes)),
                             dict(zip(setup.placeholders, setup.ratios)))
    except Exception as exc:  # noqa: BLE001 (never let the theory stop the measurement)
        theory = Theory((), {}, (f"graph ({exc.__class__.__name__}: {exc})",), (), None)
    if progress:
        progress(1.0)
    return Measurement(setup, probe, theory, pixel)


def _random_sources(signature, setup: Setup, steps: list, scale: tuple) -> list:
    """ProbeSources cutting windows of one fixed random virtual image per source (variant 1: another one)."""
    probes = []
    for index, (name, size) in enumerate(zip(setup.placeholders, setup.sizes)):
        bands = signature.input(name).channels or 1
        dtype = signature.input(name).numpy_dtype
        cache = {}

        def make_input(width, height, variant, index=index, bands=bands, cache=cache, dtype=dtype):
            if (width, height, variant) not in cache:
                rng = np.random.default_rng((index, variant, int(scale[0])))
                data = rng.normal(scale[0], scale[1], (height, width, bands))
                if dtype.kind in "iu":  # an integer input: the same noise, within what the type holds
                    limits = np.iinfo(dtype)
                    low, high = max(limits.min, -1000), min(limits.max, 1000)
                    data = np.clip(np.rint(low + (high - low) * (data - scale[0] + 3 * scale[1]) / (6 * scale[1])),
                                   low, high)
                cache[(width, height, variant)] = data.astype(np.float32)
            return cache[(width, height, variant)]

        probes.append(ProbeSource(name, steps[index][0], steps[index][1], size, make_input))
    return probes


def valid_output(signature, measurement: Measurement, base: str) -> tuple:
    """(output name, engine crop) of the exact valid part of `base`: its smallest `_cropN` output that is exact
    and keeps tiles on the total-stride lattice, else `base` cropped by the engine."""
    crops = {c: n for c, n in signature.crops_of(base).items() if c}
    crop = measurement.crop_to_serve(crops)
    size = min(measurement.tile_output)
    if 2 * crop >= size:
        raise EngineError(f"No exact valid part fits a {size} px tile: the model loses {measurement.exact_crop} px "
                          f"on a side of each tile. Raise source 1's receptive field above "
                          f"{int(2 * crop * measurement.output_pixel[0])}.", source_field(0, "rfield"))
    return (crops[crop], 0) if crop in crops else (base, crop)


@dataclass(frozen=True)
class ModelAnalysis:
    """Receptive field and valid part of one output: the graph's table and windows, and the measurement.

    sizes: (w, h) per source in its own pixels; steps: (x, y) pixel size per source in source-1 pixels;
    measurement: engine.analysis.measure's answer for that setup, the one inference uses.
    """

    model_dir: str
    output_name: str
    placeholders: tuple
    sizes: tuple
    steps: tuple
    measurement: Measurement
    crops: dict                     # {crop: output name}, 0 = the analysed output itself
    notes: tuple = field(default_factory=tuple)
    working: "ModelAnalysis | None" = None  # the analysis at the smallest sizes with an exact valid part

    @property
    def theory(self) -> Theory | None:
        """The graph's table and windows."""
        return self.measurement.theory

    @property
    def probe(self) -> ProbeResult:
        """The measured valid window of the analysed output."""
        return self.measurement.probe

    @property
    def data(self) -> str:
        """What the measurement ran on."""
        return self.measurement.data

    @property
    def rfield(self) -> int:
        """Receptive field of source 1 (its pixels): the given size."""
        return self.sizes[0][0]

    @property
    def output_size(self) -> tuple:
        """(w, h) of the analysed output for one receptive-field tile (output pixels)."""
        return self.probe.tile_output

    @property
    def measured_window(self) -> tuple:
        """Exact output pixels measured: ((x_first, x_end), (y_first, y_end))."""
        return self.probe.valid_window

    @property
    def theory_window(self) -> tuple | None:
        """Exact output pixels by the graph, or None when it could not be followed."""
        return self.measurement.theory_window

    @property
    def theory_lost(self) -> tuple | None:
        """Pixels the graph says a tile border pollutes: (left, top, right, bottom)."""
        return self.measurement.theory_lost

    @property
    def exact_crop(self) -> int:
        """Smallest symmetric crop (output pixels a side) keeping only exact pixels: the larger of both answers."""
        return self.measurement.exact_crop

    @property
    def total_stride(self) -> int:
        """Measured total stride (source-1 pixels): tile origins must be multiples of it."""
        return self.measurement.total_stride

    @property
    def output_pixel(self) -> Fraction:
        """An output pixel in source-1 pixels."""
        return Fraction(self.rfield, self.output_size[0])

    def on_stride_lattice(self, crop: int) -> bool:
        """Whether efield = output size - 2 crop keeps OTBTF's tiles on the total-stride lattice."""
        return (2 * crop * self.output_pixel) % self.total_stride == 0

    def recommended_crop(self, available=None) -> int:
        """Smallest exact crop among `available` (default: the model's `_cropN` outputs) that leaves an
        expression field on the stride lattice; else the exact crop rounded up to the lattice (the engine then
        crops the raw output itself)."""
        return self.measurement.crop_to_serve(self.crops if available is None else available)

    @property
    def recommended_output(self) -> str:
        """The `_cropN` output to serve, or the analysed output when none is exact."""
        crop = self.recommended_crop()
        return self.crops.get(crop, self.output_name) if crop else self.output_name

    @property
    def efield(self) -> int:
        """Expression field (output pixels) for the recommended crop: output size - 2 x crop (0: none fits)."""
        return max(0, self.output_size[0] - 2 * self.recommended_crop())

    @property
    def disagreements(self) -> tuple:
        """Where the textbook, the graph and the measurement differ, in sentences."""
        out = []
        lost, size = self.probe.lost, self.output_size[0]
        theory_lost = self.theory_lost
        if self.theory is not None and theory_lost is None:
            out.append(f"The graph analysis could not follow {self.output_name} back to the inputs (see the ops "
                       "not interpreted): the measurement alone sets the crop.")
        elif theory_lost is not None and tuple(theory_lost) != tuple(lost):
            why = ("the measurement found fewer polluted pixels: the weights or these data hide some of the "
                   "border's influence, so the graph's larger crop is used"
                   if all(t >= m for t, m in zip(theory_lost, lost)) else
                   "the measurement found more polluted pixels than the graph explains: an op is read wrongly")
            out.append(f"The graph says {self.output_name} loses {tuple(theory_lost)} px (left, top, right, "
                       f"bottom) of a tile, the measurement {tuple(lost)}: {why}.")
        if self.theory is not None and self.theory.stride and self.theory.stride != self.total_stride:
            out.append(f"The graph's total stride is {self.theory.stride} px, the measured one "
                       f"{self.total_stride} px.")
        valid = size - lost[0] - lost[2]
        half = (size - valid) / 2
        if lost[0] != lost[2] or lost[1] != lost[3]:
            (x0, x1), _ = self.measured_window
            out.append(f"The textbook crop (x − valid)/2 = ({size} − {valid})/2 = {half:g} assumes a centred valid "
                       f"part, but the window is [{x0}, {x1 - 1}] (asymmetric): a symmetric crop must be ≥ "
                       f"{self.exact_crop}" + (f", so {ceil(half)} is not enough." if ceil(half) < self.exact_crop
                                              else "."))
        return tuple(out) + (self.theory.notes if self.theory else ())


def analyse_model(model_dir: str, sizes, rasters=None, output_name: str | None = None, tolerance: float = 1e-5,
                  placeholders=None, progress=None) -> ModelAnalysis:
    """Theory and measurement of `output_name` (default: the first output that is not a `_cropN`).

    sizes: per source an int or (w, h) in its own pixels, or {placeholder: size}; a source after the first may be
    None/0: it then covers source 1's ground (pixel-size ratio of the rasters, else of the model's static input
    shapes). placeholders: per source the model input it feeds (None: the inputs in alphabetical order, as OTBTF).
    rasters: optional path per source; their pixel-size ratios then apply (the measurement itself always runs
    on random data, as inference's: the same setup gives the same answer, from one call).
    When no exact valid part fits the given sizes, `working` holds the analysis at the smallest that fits.
    """
    signature = read_signature(model_dir)
    wanted = output_name or signature.base_outputs()[0]
    if signature.output(wanted) is None:
        raise EngineError(f"Output {wanted!r} is not in the model's signature; its outputs are: "
                          f"{', '.join(signature.output_names)}.", "output_names")
    base = split_crop(wanted)[0]
    base = base if signature.output(base) is not None else wanted
    model = SavedModel.load(model_dir)
    try:
        card = read_card(model_dir, signature, model.fingerprint)
    except EngineError:
        card = None  # a card that does not validate: the analysis measures (writing the card says what is wrong)

    def accepts(trial_sizes: dict) -> bool:
        feeds = {p: np.zeros((1, s[1], s[0], signature.input(p).channels or 1), np.float32)
                 for p, s in trial_sizes.items()}
        try:
            model.run(feeds, [base])
        except EngineError:
            return False
        return True

    placeholders, sizes, steps, notes = source_sizes(signature, sizes, rasters, placeholders, accepts)
    ratios = tuple(tuple(Fraction(s[a], steps[0][a]) for a in (0, 1)) for s in steps)

    def analysis(at_sizes, report=None):
        measured = measure(model, Setup(base, tuple(placeholders), tuple(at_sizes), ratios), tolerance, report, card)
        return ModelAnalysis(model_dir, base, tuple(placeholders), tuple(at_sizes), ratios, measured,
                             signature.crops_of(base), tuple(notes))

    found = analysis(sizes, progress)
    if found.efield > 0:
        return found
    # no exact pixel at this size: the smallest larger size (keeping the sources' ratios) that has some
    unit = lcm(found.total_stride, found.output_pixel.numerator,
               *(sizes[0][a] // gcd(sizes[0][a], s[a]) for s in sizes for a in (0, 1)))
    candidate = sizes[0][0]
    for _ in range(6):
        needed = 2 * found.recommended_crop() * found.output_pixel + 1
        candidate = max(candidate + 1, ceil(needed))
        candidate = -(-candidate // unit) * unit
        scaled = [tuple(int(s[a] * Fraction(candidate, sizes[0][0])) for a in (0, 1)) for s in sizes]
        try:
            found = analysis(scaled)
        except EngineError:
            continue
        if found.efield > 0:
            return replace(analysis(sizes), working=found)
    return analysis(sizes)
