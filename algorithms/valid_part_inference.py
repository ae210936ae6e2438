"""Valid-part inference: the cropped output, seamless, with crop and tiles derived from the model."""

from .base import InferenceAlgorithm


class ValidPartInference(InferenceAlgorithm):
    """Keeps only the exact centre of every block: no blocking artifacts, large tiles for speed."""

    ICON = "valid_part.svg"
    VALID_PART = True
    FIELDS = {"crop": "OUTPUT_NAMES"}
    OUTPUT_NAMES_HELP = ("Outputs of the model's signature, comma separated (empty = the smallest exact _cropN "
                         "output, measured on the model).")
    OUTPUT_LABEL = "Valid-part output"

    def name(self) -> str:
        """Stable id: seamless:validpartinference."""
        return "validpartinference"

    def displayName(self) -> str:  # noqa: N802
        """Toolbox name."""
        return self.tr("Valid-part inference")

    def layer_name(self, plan) -> str:
        """e.g. 'estimated_crop32 - valid part'."""
        suffix = self.tr(" cropped {}").format(plan.request.crop) if plan.request.crop else ""
        return self.tr("{}{} - valid part").format(", ".join(plan.output_names), suffix)
