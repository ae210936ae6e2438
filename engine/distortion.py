"""Distortion comparison: how far each cropping value is from the exact result, against what it costs.

For a receptive field R and each crop c, the model runs as OTBTF would (OTBTF extent mode, blocks of one
expression field R - 2c), so that every crop shows the border pollution it really leaves; each output is then
compared with the exact reference (the seamless valid part) over their common geographic extent: outputs of
different crops start at different pixels (otbtf-semantics.md 1.2). Theoretical cost: (R / (R - 2c))^2 pixels
computed per output pixel.
"""

import os
import tempfile
import time
from dataclasses import dataclass, replace

from .errors import EngineError
from .inference import OTBTF, InferenceRequest, run_inference, valid_part_output, warm_up
from .metrics import compare_rasters
from .model import OTBTF_CROPS, cropped_tensor_name, read_signature, split_crop


@dataclass(frozen=True)
class CropResult:
    """One crop's distortion and cost. Errors in output value units; cost in computed pixels per output pixel."""

    crop: int
    efield: int
    output_name: str      # the model output used
    engine_crop: int      # pixels the engine cropped itself (the model has no such `_cropN` output)
    rmse: float           # the seed's vector RMSE against the reference
    band_rmse: tuple
    mae: float
    max_abs_error: float
    share_above: float    # share of compared pixels where some band's |error| exceeds the tolerance
    pixels: int
    theoretical_cost: float
    seconds: float
    output_pixels: int
    path: str | None      # the squared-error raster, when asked for

    @property
    def seconds_per_mpx(self) -> float:
        """Measured time per million output pixels."""
        return self.seconds / max(self.output_pixels, 1) * 1e6


@dataclass(frozen=True)
class DistortionResult:
    """All crops, the reference they were compared with, and what the reference was."""

    rfield: int
    reference_output: str
    reference_crop: int
    tolerance: float
    crops: tuple

    def result(self, crop: int) -> CropResult | None:
        """The row of one crop value."""
        return next((r for r in self.crops if r.crop == crop), None)


def default_crops(model_dir: str, rfield: int, base: str | None = None) -> list:
    """0 (the raw output) and every `_cropN` of the model's output that fits the receptive field."""
    signature = read_signature(model_dir)
    base = base or signature.base_outputs()[0]
    crops = [c for c in signature.crops_of(base) if rfield - 2 * c > 0]
    return sorted(set([0] + crops))


def _reference(request: InferenceRequest, base: str) -> tuple:
    """The exact valid part's (output, engine crop, probe, request): with the given receptive fields, or larger
    ones when those leave no exact pixel (e.g. PAN 64: the sample loses 31 px per side). In Full mode with Auto
    tiles the valid part does not depend on the receptive field, only on the crop being exact."""
    error = None
    for factor in (1, 2, 4):
        sources = tuple(replace(s, rfield=(s.rfield[0] * factor, s.rfield[1] * factor)) for s in request.sources)
        larger = replace(request, sources=sources, output_names=(base,))
        try:
            return (*valid_part_output(larger), larger)
        except EngineError as exc:
            error = exc
    raise error


def distortion_comparison(request: InferenceRequest, rfield: int, crops: list, tolerance: float = 1e-5,
                          error_folder: str | None = None, progress=None, is_canceled=None, log=None,
                          work_folder: str | None = None) -> DistortionResult:
    """Run every crop with receptive field `rfield` (source 1 pixels) and compare it with the exact valid part.

    The other sources' receptive fields keep their ratio to source 1's. `error_folder`, when given, receives
    one squared-error raster per crop (`squared_error_crop<c>.tif`), on which the block grid shows.
    """
    say = log or (lambda text: None)
    if rfield < 1:
        raise EngineError(f"The receptive field must be positive (got {rfield}).", "RFIELD")
    crops = sorted(set(int(c) for c in crops))
    for crop in crops:
        if crop < 0 or rfield - 2 * crop < 1:
            raise EngineError(f"Crop {crop} leaves no expression field of a {rfield} px receptive field "
                              f"(efield = rfield - 2 x crop); use crops below {(rfield + 1) // 2}.", "CROPS")
    ratio = [s.rfield[0] / request.sources[0].rfield[0] for s in request.sources]
    sources = tuple(replace(s, rfield=(max(1, round(rfield * r)),) * 2) for s, r in zip(request.sources, ratio))
    base_request = replace(request, sources=sources, efield=None, tile_size=None, crop=0)
    signature = read_signature(request.model_dir)
    base = split_crop(request.output_names[0])[0] if request.output_names else signature.base_outputs()[0]
    if signature.output(base) is None:
        raise EngineError(f"The distortion comparison needs the model's raw output {base!r} (or give its name).",
                          "OUTPUT_NAMES")
    steps = len(crops) + 1
    with tempfile.TemporaryDirectory(prefix="seamless-distortion-", dir=work_folder) as folder:
        reference_name, reference_crop, probe, reference_request = _reference(base_request, base)
        say(f"Reference: {reference_name}" + (f" cropped by {reference_crop} px" if reference_crop else "")
            + f", Full mode (exact: the model loses {probe.lost} px of a {probe.rfield[0]} px block).")
        reference = os.path.join(folder, "reference.tif")
        run_inference(replace(reference_request, output_names=(reference_name,), crop=reference_crop), reference,
                      is_canceled=is_canceled, log_info=lambda text: None)
        if progress:
            progress(1 / steps)
        rows = []
        for index, crop in enumerate(crops):
            model_crops = signature.crops_of(base)
            name, engine_crop = (model_crops[crop], 0) if crop in model_crops else (base, crop)
            path = os.path.join(folder, f"crop{crop}.tif")
            efield = rfield - 2 * crop
            crop_request = replace(base_request, output_names=(name,), crop=engine_crop, extent_mode=OTBTF,
                                   efield=(efield, efield), tile_size=efield)
            warm_up(crop_request)
            started = time.perf_counter()
            result = run_inference(crop_request, path, is_canceled=is_canceled, log_info=lambda text: None)
            seconds = time.perf_counter() - started
            error_path = os.path.join(error_folder, f"squared_error_crop{crop}.tif") if error_folder else None
            comparison = compare_rasters(reference, path, error_path, tolerance=tolerance, is_canceled=is_canceled,
                                         method="numpy")  # OTB's path is 20x slower for the same number
            width, height = result.plan.size
            rows.append(CropResult(crop, efield, name, engine_crop, comparison.vector_rmse, comparison.band_rmse,
                                   comparison.mae, comparison.max_abs_error,
                                   comparison.above_tolerance / comparison.pixels, comparison.pixels,
                                   (rfield / efield) ** 2, seconds, width * height, error_path))
            say(f"crop {crop:3d} (efield {efield:3d}, {name}{f' cropped {engine_crop}' if engine_crop else ''}): "
                f"RMSE {comparison.vector_rmse:.3g}, max |error| {comparison.max_abs_error:.3g}, "
                f"cost {(rfield / efield) ** 2:.2f}, {seconds:.2f} s")
            if progress:
                progress((index + 2) / steps)
    return DistortionResult(rfield, reference_name, reference_crop, tolerance, tuple(rows))


__all__ = ["CropResult", "DistortionResult", "default_crops", "distortion_comparison", "OTBTF_CROPS",
           "cropped_tensor_name"]
