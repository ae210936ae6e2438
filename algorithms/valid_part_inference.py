"""Valid-part inference: the cropped output, seamless, with crop and tiles derived from the model."""

from dataclasses import replace

from .base import InferenceAlgorithm
from .help import FIELDS


class ValidPartInference(InferenceAlgorithm):
    """Keeps only the exact centre of every block: no blocking artifacts, large tiles for speed."""

    ICON = "valid_part.svg"
    OUTPUT_NAMES_LABEL = ("Output name(s) in the signature, comma separated (empty = the smallest exact "
                          "_cropN output, measured on the model)")
    OUTPUT_LABEL = "Valid-part output"

    def name(self) -> str:
        """Stable id: seamless:validpartinference."""
        return "validpartinference"

    def displayName(self) -> str:  # noqa: N802
        """Toolbox name."""
        return self.tr("Valid-part inference")

    def shortHelpString(self) -> str:  # noqa: N802
        """Dialog help."""
        return self.tr(
            "<p>Runs a TensorFlow SavedModel over rasters like OTBTF's TensorflowModelServe and keeps only the "
            "<b>valid part</b> of each block, so the result is <b>seamless</b>. By default the plugin measures "
            "how many pixels the model's zero padding pollutes on each side of a block (31 and 16 of 128 for "
            "the sample model), picks the smallest exact <code>_cropN</code> output "
            "(<code>estimated_crop32</code>) and the expression field rfield - 2 x N (64), and in Full mode "
            "runs large tiles whose pixels are identical to OTBTF's 64 px blocks. If the model has no exact "
            "<code>_cropN</code> output, the plugin crops the raw output itself.</p>") + self.tr(FIELDS)

    def complete(self, request, feedback):
        """Default output: the smallest exact crop for these receptive fields, measured on the model."""
        if request.output_names and "_crop" in request.output_names[0]:
            return request
        from ..engine.inference import valid_part_output

        name, crop, probe = valid_part_output(request)
        feedback.pushInfo(f"Valid part: the model loses (left, top, right, bottom) {probe.lost} px of a "
                          f"{probe.rfield[0]} px block (total stride {probe.stride[0]}); using {name}"
                          + (f" cropped by {crop} px" if crop else "") + ".")
        return replace(request, output_names=(name,), crop=crop)

    def layer_name(self, plan) -> str:
        """e.g. 'estimated_crop32 - valid part'."""
        suffix = f" cropped {plan.request.crop}" if plan.request.crop else ""
        return f"{', '.join(plan.output_names)}{suffix} - valid part"
