"""The model analysis algorithm inside QGIS: the seed's numbers for the modeler, the report, the errors."""

import pytest
from conftest import MODEL, PAN, XS

ANALYSIS = "seamless:modelanalysis"
SEED_NUMBERS = {"OUTPUT_NAME": "estimated_crop32", "CROP": 32, "RFIELD": 128, "EFIELD": 64, "TOTAL_STRIDE": 16}


def test_it_is_listed_with_help_and_icon(provider):
    algorithm = provider.algorithm("modelanalysis")
    assert algorithm is not None and algorithm.displayName() == "Model analysis (receptive field and valid part)"
    assert "valid part" in algorithm.shortHelpString() and not algorithm.icon().isNull()
    assert {o.name() for o in algorithm.outputDefinitions()} >= set(SEED_NUMBERS) | {"REPORT"}
    assert algorithm.outputDefinition("REPORT").type() == "outputHtml"  # shown in the Results Viewer


def test_defaults_give_the_seed_numbers_and_a_report_with_the_table(provider, tmp_path):
    import processing

    result = processing.run(ANALYSIS, {"MODEL": str(MODEL), "REPORT": str(tmp_path / "report.html")})
    assert {key: result[key] for key in SEED_NUMBERS} == SEED_NUMBERS
    page = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert "<table" in page and "valid output size" in page
    for cell in ("<td>conv1</td>", "<td>63</td>", "<td>conv_xs</td>", "<td>81</td>", "[31, 111]"):
        assert cell in page


def test_rasters_give_the_pixel_ratio(provider, tmp_path):
    import processing

    result = processing.run(ANALYSIS, {"MODEL": str(MODEL), "SOURCE1": str(PAN), "SOURCE2": str(XS),
                                       "SOURCE2_SIZE": 0, "REPORT": str(tmp_path / "report.html")})
    assert {key: result[key] for key in SEED_NUMBERS} == SEED_NUMBERS


def test_a_source_size_of_0_follows_source_1_as_in_inference(provider, tmp_path):
    import processing

    result = processing.run(ANALYSIS, {"MODEL": str(MODEL), "SOURCE2_SIZE": 0, "REPORT": str(tmp_path / "r.html")})
    assert {key: result[key] for key in SEED_NUMBERS} == SEED_NUMBERS  # XS 32: the only ratio the model takes


def test_a_placeholder_that_is_not_an_input_names_the_parameter(provider, tmp_path):
    import processing
    from qgis.core import QgsProcessingException

    with pytest.raises(QgsProcessingException, match="input_p, input_xs.*SOURCE1_PLACEHOLDER"):
        processing.run(ANALYSIS, {"MODEL": str(MODEL), "SOURCE1_PLACEHOLDER": "pan",
                                  "REPORT": str(tmp_path / "r.html")})
