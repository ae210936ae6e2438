"""The engine's result records: plain values with no numpy, TensorFlow or GDAL behind them.

A model card (engine.card), a measurement (engine.measurement) and a run's result cross processes and reach the
plugin's algorithms; keeping their types here lets the provider load, and a run through the warm engine come
back, without importing the pipeline (numpy, the graph walk, the probe) in the calling process.
"""

from dataclasses import dataclass
from fractions import Fraction

@dataclass(frozen=True)
class Span:
    """One spatial axis of a tensor: size and valid window [first, end) in its pixels, pixel in source-1 px."""

    size: int
    first: int
    end: int
    step: Fraction = Fraction(1)

    @property
    def valid(self) -> int:
        """Number of exact pixels."""
        return max(0, self.end - self.first)


@dataclass(frozen=True)
class Geo:
    """The geometry of a feature map: spans along height (y) and width (x), their axes, the tensor's rank."""

    y: Span
    x: Span
    axes: tuple = (1, 2)
    rank: int = 4

    @property
    def size(self) -> tuple:
        """(width, height) in this tensor's pixels."""
        return self.x.size, self.y.size

    @property
    def window(self) -> tuple:
        """Exact pixels: ((x_first, x_end), (y_first, y_end))."""
        return (self.x.first, self.x.end), (self.y.first, self.y.end)


@dataclass(frozen=True)
class Layer:
    """One row of the valid-size table: a layer (name scope) and the geometry of its output.

    size: (w, h) output pixels; window: ((x_first, x_end), (y_first, y_end)) exact pixels; both None when the
    layer could not be interpreted. kernel and stride are (x, y) of its convolution or pooling, if any.
    """

    name: str
    operation: str
    kernel: tuple | None
    stride: tuple | None
    size: tuple | None
    window: tuple | None
    formula: str = ""

    @property
    def valid(self) -> tuple | None:
        """(w, h) of the valid window."""
        if self.window is None:
            return None
        return tuple(max(0, end - first) for first, end in self.window)


@dataclass(frozen=True)
class Theory:
    """What the graph says: the table, each signature output's geometry, what could not be read."""

    layers: tuple
    outputs: dict                 # signature output name -> Geo, or None when not interpreted
    issues: tuple                 # "OpType (node): reason"
    notes: tuple                  # textbook formulas that the index propagation corrects
    stride: int | None            # total stride in source-1 pixels (lcm of every tensor's pixel)


@dataclass(frozen=True)
class ProbeResult:
    """Measured border behaviour of one output for tiles of the given receptive field.

    `lost` = output pixels polluted by the tile border on (left, top, right, bottom); `stride` = (x, y) total
    stride in source-1 pixels; `tile_output` = (width, height) of the output for one receptive-field tile.
    """

    output_name: str
    rfield: tuple
    stride: tuple
    lost: tuple
    tile_output: tuple

    @property
    def exact_crop(self) -> int:
        """Smallest symmetric crop (output pixels on each side) that keeps only exact pixels."""
        return max(self.lost)

    @property
    def valid_window(self) -> tuple:
        """Exact output pixels of a tile: ((x_first, x_end), (y_first, y_end))."""
        left, top, right, bottom = self.lost
        return (left, self.tile_output[0] - right), (top, self.tile_output[1] - bottom)


@dataclass(frozen=True)
class InferenceResult:
    """What a run produced and how long it took."""

    path: str | None
    plan: object  # engine.planning.Plan, or engine.warm.PlanSummary through the warm engine
    tiles: int
    skipped: int
    seconds: float
    device: str
    class_map: str | None = None  # the class map's path, when one was asked
    display_band: int | None = None  # the output's band with the most contrast on its first tile (from 1)
    class_table: tuple | None = None  # the class map's classes: given, or the model card's
