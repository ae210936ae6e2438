"""Artifact-prone inference: the raw model output tiled block by block, as the seed's first script."""

from .base import InferenceAlgorithm


class ArtifactProneInference(InferenceAlgorithm):
    """The uncropped output in blocks of one expression field: shows the blocking artifacts."""

    ICON = "artifact_prone.svg"
    OUTPUT_NAMES_HELP = "Outputs of the model's signature, comma separated (empty = the model's raw output)."
    TILE_SIZE_LABEL = "Block size"
    TILE_SIZE_HELP = "Output pixels (0 = the expression field, as OTBTF)."
    OUTPUT_LABEL = "Artifact-prone output"

    def name(self) -> str:
        """Stable id: seamless:artifactproneinference."""
        return "artifactproneinference"

    def displayName(self) -> str:  # noqa: N802
        """Toolbox name."""
        return self.tr("Artifact-prone inference")

    def layer_name(self, plan) -> str:
        """e.g. 'estimated - artifact-prone (128 px blocks)'."""
        return self.tr("{} - artifact-prone ({} px blocks)").format(", ".join(plan.output_names), plan.tile[0])
