"""The provider inside a real QGIS (pytest-qgis): ids, defaults, same pixels as the engine, canvas loading."""

import os

import numpy as np
import pytest
from conftest import MODEL, PAN, XS, seed_sources
from osgeo import gdal

from seamless_inference.engine import InferenceRequest, run_inference

VALID = "seamless:validpartinference"
ARTIFACT = "seamless:artifactproneinference"


def params(output, **extra):
    """Only the rasters and the model folder: the defaults reproduce the seed's runs."""
    return {"MODEL": str(MODEL), "SOURCE1": [str(PAN)], "SOURCE2": [str(XS)], "OUTPUT": str(output), **extra}


def read(path):
    return gdal.Open(str(path)).ReadAsArray().astype(np.float64)


def test_provider_lists_its_algorithms(provider):
    assert provider.id() == "seamless" and provider.name() == "Seamless Inference"
    ids = sorted(a.id() for a in provider.algorithms())
    assert ids == sorted([ARTIFACT, VALID, "seamless:distortioncomparison", "seamless:rastercomparison",
                          "seamless:modelanalysis", "seamless:installdependencies",
                          "seamless:classnames"])
    for algorithm in provider.algorithms():
        assert algorithm.shortHelpString() and not algorithm.icon().isNull()


def test_valid_part_defaults_pick_the_exact_crop_and_match_the_engine(provider, tmp_path):
    import processing

    result = processing.run(VALID, params(tmp_path / "valid.tif"))
    engine = tmp_path / "engine.tif"
    run_inference(InferenceRequest(str(MODEL), seed_sources(), output_names=("estimated_crop32",)), str(engine))
    out = gdal.Open(result["OUTPUT"])
    assert out.GetRasterBand(1).GetDescription() == "estimated_crop32[0]"
    assert np.abs(read(result["OUTPUT"]) - read(engine)).max() == 0.0


def test_artifact_prone_defaults_are_the_seed_first_run(provider, tmp_path):
    import processing

    result = processing.run(ARTIFACT, params(tmp_path / "artifact.tif"))
    engine = tmp_path / "engine.tif"
    run_inference(InferenceRequest(str(MODEL), seed_sources(), output_names=("estimated",)), str(engine))
    assert np.abs(read(result["OUTPUT"]) - read(engine)).max() == 0.0


@pytest.mark.parametrize("algorithm, name", [(ARTIFACT, "estimated - artifact-prone (128 px blocks)"),
                                             (VALID, "estimated_crop32 - valid part")])
def test_loaded_layers_are_named_and_styled(provider, qgis_new_project, tmp_path, algorithm, name):
    import processing
    from qgis.core import QgsContrastEnhancement, QgsSingleBandGrayRenderer

    processing.runAndLoadResults(algorithm, params(tmp_path / "out.tif"))
    layers = qgis_new_project.mapLayersByName(name)
    assert len(layers) == 1, [layer.name() for layer in qgis_new_project.mapLayers().values()]
    renderer = layers[0].renderer()
    assert isinstance(renderer, QgsSingleBandGrayRenderer)
    assert renderer.grayBand() == 5  # Auto: the most contrasted band on the sample (band 2 is almost all black)
    enhancement = renderer.contrastEnhancement()
    stretch = QgsContrastEnhancement.ContrastEnhancementAlgorithm.StretchToMinimumMaximum
    assert enhancement.contrastEnhancementAlgorithm() == stretch
    assert (enhancement.minimumValue(), enhancement.maximumValue()) == (0.0, 1.0)


def test_cancel_mid_run_returns_promptly_and_leaves_no_file(provider, tmp_path):
    import processing
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    class CancelAtTenPercent(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.progressChanged.connect(lambda value: value >= 10 and self.cancel())

    feedback = CancelAtTenPercent()
    output = tmp_path / "cancelled.tif"
    with pytest.raises(QgsProcessingException, match="Cancelled"):
        processing.run(VALID, params(output, TILE_SIZE=64, BATCH_SIZE=1), feedback=feedback)
    assert feedback.progress() < 20  # stopped within a tile of the 10 % mark (64 tiles of 1.6 %)
    assert os.listdir(tmp_path) == []


def test_wrong_output_name_lists_the_model_outputs(provider, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="estimated_crop32") as error:
        processing.run(ARTIFACT, params(tmp_path / "x.tif", OUTPUT_NAMES="prediction"))
    assert "OUTPUT_NAMES" in str(error.value)
    assert os.listdir(tmp_path) == []


def test_raster_outputs_offer_geotiff_only(provider):
    """The file pickers offer what the engine writes (a .png would be refused, not written as GeoTIFF bytes)."""
    from qgis.core import QgsProcessingParameterRasterDestination

    for algorithm in provider.algorithms():
        for definition in algorithm.destinationParameterDefinitions():
            if isinstance(definition, QgsProcessingParameterRasterDestination):
                assert definition.defaultFileExtension() == "tif", algorithm.id()
                offered = [f for f in definition.createFileFilter().split(";;") if not f.startswith("All files")]
                assert offered and all("*.tif" in f for f in offered), offered
