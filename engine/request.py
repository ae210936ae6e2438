"""What the user asked: the sources and TensorflowModelServe's parameters, plus the plugin's choices.

Plain immutable values, nothing derived: `engine.planning` validates them against the rasters and the model.
"""

from dataclasses import dataclass

FULL, OTBTF = "full", "otbtf"
EXTENT_MODES = (FULL, OTBTF)
MIRROR, ZEROS = "mirror", "zeros"
PADDINGS = (MIRROR, ZEROS)


@dataclass(frozen=True)
class Source:
    """One model input: rasters stacked as channels, receptive field (x, y) in its own pixels, placeholder.

    rfield None (or 0) for a source after the first: the same ground as source 1's receptive field, in this
    source's pixels (PAN 128 at 0.6 m gives XS 32 at 2.4 m).
    """

    paths: tuple
    rfield: tuple | None
    placeholder: str | None = None
    nodata: float | None = None


@dataclass(frozen=True)
class InferenceRequest:
    """Everything TensorflowModelServe takes, plus the plugin's extent mode, padding and tiling choices.

    output_names: empty = the model's raw output (its first output that is not a `_cropN`).
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


def source_names(count: int) -> list:
    """Display names matching the algorithms' parameters: 'source 1' ..."""
    return [f"source {i + 1}" for i in range(count)]
