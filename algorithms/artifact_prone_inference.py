"""Artifact-prone inference: the raw model output tiled block by block, as the seed's first script."""

from dataclasses import replace

from .base import InferenceAlgorithm
from .help import FIELDS


class ArtifactProneInference(InferenceAlgorithm):
    """The uncropped output in blocks of one expression field: shows the blocking artifacts."""

    ICON = "artifact_prone.svg"
    OUTPUT_NAMES_LABEL = "Output name(s) in the signature, comma separated (empty = the model's raw output)"
    TILE_SIZE_LABEL = "Block size (output pixels; 0 = the expression field, as OTBTF)"
    OUTPUT_LABEL = "Artifact-prone output"

    def name(self) -> str:
        """Stable id: seamless:artifactproneinference."""
        return "artifactproneinference"

    def displayName(self) -> str:  # noqa: N802
        """Toolbox name."""
        return self.tr("Artifact-prone inference")

    def shortHelpString(self) -> str:  # noqa: N802
        """Dialog help."""
        return self.tr(
            "<p>Runs a TensorFlow SavedModel over rasters like OTBTF's TensorflowModelServe in fully "
            "convolutional mode and writes its <b>raw output</b> block by block. With the defaults (source 1 "
            "PAN rfield 128, source 2 XS rfield 32, output <code>estimated</code>, efield 128) it reproduces the "
            "OTBTF tutorial's first run: each 128 px block is computed on its own, so the zero padding inside "
            "the network shows as a grid of <b>blocking artifacts</b>. Compare with <i>Valid-part "
            "inference</i>.</p>") + self.tr(FIELDS)

    def complete(self, request, feedback):
        """Default output: the model's raw (uncropped) output."""
        if not request.output_names:
            from ..engine import read_signature

            base = read_signature(request.model_dir).base_outputs()[0]
            feedback.pushInfo(f"Output: {base} (the model's raw output).")
            request = replace(request, output_names=(base,))
        return request

    def layer_name(self, plan) -> str:
        """e.g. 'estimated - artifact-prone (128 px blocks)'."""
        return f"{', '.join(plan.output_names)} - artifact-prone ({plan.tile[0]} px blocks)"
