"""Progress as a person feels it: every algorithm moves its bar through many values as the work gets done (tiles
written, blocks compared, crops swept, probe runs), not 0 then 100."""

import numpy as np
import pytest
from conftest import MODEL, PAN, XS, recording_feedback

SOURCES = {"MODEL": str(MODEL), "SOURCE1": [str(PAN)], "SOURCE2": [str(XS)]}


def run(algorithm, params):
    import processing

    feedback = recording_feedback()
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


@pytest.fixture(scope="module")
def scene_2000(tmp_path_factory):
    """A 2000 px PAN (and its 500 px XS): the sample repeated 4 x 4 times, on the sample's grid."""
    from osgeo import gdal

    folder = tmp_path_factory.mktemp("scene2000")
    paths = []
    for path in (PAN, XS):
        source = gdal.Open(str(path))
        data = source.ReadAsArray()
        data = np.tile(data, (4, 4)) if data.ndim == 2 else np.tile(data, (1, 4, 4))
        target = folder / path.name
        out = gdal.GetDriverByName("GTiff").Create(str(target), data.shape[-1], data.shape[-2],
                                                   source.RasterCount, source.GetRasterBand(1).DataType)
        out.SetGeoTransform(source.GetGeoTransform())
        out.SetProjection(source.GetProjection())
        out.WriteRaster(0, 0, data.shape[-1], data.shape[-2], data.tobytes())
        out = None
        paths.append(str(target))
    return paths


def test_artifact_prone_on_a_2000_px_scene_advances_call_by_call(provider, tmp_path, scene_2000):
    _, feedback = run("seamless:artifactproneinference", {"MODEL": str(MODEL), "SOURCE1": [scene_2000[0]],
                                                           "SOURCE2": [scene_2000[1]], "BACKEND": 1,
                                                           "OUTPUT": str(tmp_path / "a.tif")})
    check(feedback.values, 20)  # 256 blocks of the 128 px efield, 8 a TensorFlow call (it was 2 calls: 0, 50, 100)


def test_raster_comparison_advances_per_block_of_rows(provider, tmp_path):
    _, feedback = run("seamless:rastercomparison", {"REFERENCE": str(PAN), "IMAGE": str(PAN),
                                                    "REPORT": str(tmp_path / "r.html")})
    check(feedback.values, 20)  # 500 rows in blocks of 16


def test_distortion_comparison_advances_inside_each_crop(provider, tmp_path):
    _, feedback = run("seamless:distortioncomparison", {**SOURCES, "SOURCE1_RFIELD": 64, "SOURCE2_RFIELD": 0,
                                                        "RFIELD": 64,
                                                        "CROPS": "0,8,16,24", "REPORT": str(tmp_path / "d.html")})
    check(feedback.values, 20)  # the reference, then crops 0, 8, 16 and 24 (efields 64, 48, 32, 16), call by call


def test_model_analysis_advances_per_probe_run(provider, tmp_path):
    _, feedback = run("seamless:modelanalysis", {"MODEL": str(MODEL), "SOURCE1_SIZE": 192,  # not measured before
                                                 "REPORT": str(tmp_path / "m.html")})
    check(feedback.values, 8)
