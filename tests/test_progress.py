"""Progress as a person feels it: every algorithm moves its bar through many values as the work gets done (tiles
written, blocks compared, crops swept, probe runs), not 0 then 100."""

import pytest
from conftest import MODEL, PAN, XS

SOURCES = {"MODEL": str(MODEL), "SOURCE1": [str(PAN)], "SOURCE2": [str(XS)]}


class Recording:
    """A QgsProcessingFeedback keeping every progress value and log line."""

    def __new__(cls):
        from qgis.core import QgsProcessingFeedback

        class Feedback(QgsProcessingFeedback):
            def __init__(self):
                super().__init__()
                self.values, self.lines = [], []

            def setProgress(self, progress):  # noqa: N802 (QGIS API name)
                self.values.append(progress)
                super().setProgress(progress)

            def pushInfo(self, info):  # noqa: N802
                self.lines.append(info)
                super().pushInfo(info)

        return Feedback()


def run(algorithm, params):
    import processing

    feedback = Recording()
    result = processing.run(algorithm, params, feedback=feedback)
    return result, feedback


def check(values, at_least):
    assert len(set(values)) >= at_least, values
    assert values == sorted(values), values  # it never goes back
    assert 0 < values[0] < 100 and values[-1] == pytest.approx(100.0), values


def test_valid_part_advances_per_tile_written(provider, tmp_path):
    _, feedback = run("seamless:validpartinference", {**SOURCES, "TILE_SIZE": 16, "OUTPUT": str(tmp_path / "v.tif")})
    check(feedback.values, 20)  # 1024 tiles in 32 rows of 16 px
    ran = [line for line in feedback.lines if "TensorFlow call" in line]
    assert any(line.startswith("Ran 1024 tile(s) in ") for line in ran), ran  # what ran, not a capacity


def test_artifact_prone_advances_per_tile_written(provider, tmp_path):
    _, feedback = run("seamless:artifactproneinference", {**SOURCES, "EXTENT_MODE": 0, "TILE_SIZE": 16,
                                                           "OUTPUT": str(tmp_path / "a.tif")})
    check(feedback.values, 20)


def test_raster_comparison_advances_per_block_of_rows(provider, tmp_path):
    _, feedback = run("seamless:rastercomparison", {"REFERENCE": str(PAN), "IMAGE": str(PAN),
                                                    "REPORT": str(tmp_path / "r.html")})
    check(feedback.values, 20)  # 500 rows in blocks of 16


def test_distortion_comparison_advances_inside_each_crop(provider, tmp_path):
    _, feedback = run("seamless:distortioncomparison", {**SOURCES, "SOURCE1_RFIELD": 64, "SOURCE2_RFIELD": 0,
                                                        "RFIELD": 64,
                                                        "CROPS": "0,16", "REPORT": str(tmp_path / "d.html")})
    check(feedback.values, 20)  # the reference, then crops 0 and 16 (efields 64 and 32) row by row


def test_model_analysis_advances_per_probe_run(provider, tmp_path):
    _, feedback = run("seamless:modelanalysis", {"MODEL": str(MODEL), "SOURCE1_SIZE": 192,  # not measured before
                                                 "REPORT": str(tmp_path / "m.html")})
    check(feedback.values, 8)
