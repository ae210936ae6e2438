"""Rasters carrying RPCs (a Pleiades pair) run without QGIS's "Creating Warped VRT." in the output: the plugin
reads them by their geotransform, the note only misleads."""

import shutil

import pytest
from conftest import MODEL, PAN, XS
from osgeo import gdal

RPC = {"LINE_OFF": "250", "SAMP_OFF": "250", "LAT_OFF": "43.6", "LONG_OFF": "1.44", "HEIGHT_OFF": "150",
       "LINE_SCALE": "250", "SAMP_SCALE": "250", "LAT_SCALE": "0.003", "LONG_SCALE": "0.004", "HEIGHT_SCALE": "500",
       "LINE_NUM_COEFF": " ".join(["0", "0", "-1"] + ["0"] * 17), "LINE_DEN_COEFF": " ".join(["1"] + ["0"] * 19),
       "SAMP_NUM_COEFF": " ".join(["0", "1"] + ["0"] * 18), "SAMP_DEN_COEFF": " ".join(["1"] + ["0"] * 19)}


@pytest.fixture(scope="module")
def rpc_pair(tmp_path_factory):
    """Copies of the sample's PAN and XS with RPC metadata, as Pleiades products carry."""
    folder = tmp_path_factory.mktemp("rpc")
    paths = []
    for source in (PAN, XS):
        path = folder / source.name
        shutil.copy(source, path)
        dataset = gdal.Open(str(path), gdal.GA_Update)
        dataset.SetMetadata(RPC, "RPC")
        dataset = None
        assert gdal.Open(str(path)).GetMetadata("RPC")
        paths.append(str(path))
    return paths


@pytest.mark.parametrize("algorithm, params", [
    ("seamless:modelanalysis", {"SOURCE2_SIZE": 32}),
    ("seamless:validpartinference", {"OUTPUT": "out.tif"})])
def test_no_warped_vrt_note_and_the_same_numbers(provider, tmp_path, capfd, rpc_pair, algorithm, params):
    import processing

    params = {key: str(tmp_path / value) if key == "OUTPUT" else value for key, value in params.items()}
    common = {"MODEL": str(MODEL), "REPORT": str(tmp_path / "report.html"), **params}
    capfd.readouterr()
    with_rpc = processing.run(algorithm, {**common, "SOURCE1": [rpc_pair[0]], "SOURCE2": [rpc_pair[1]]})
    captured = capfd.readouterr()
    assert "Creating Warped VRT" not in captured.err + captured.out
    if algorithm == "seamless:modelanalysis":
        plain = processing.run(algorithm, {**common, "SOURCE1": [str(PAN)], "SOURCE2": [str(XS)]})
        assert {k: with_rpc[k] for k in ("CROP", "EFIELD", "OUTPUT_NAME")} == {
            k: plain[k] for k in ("CROP", "EFIELD", "OUTPUT_NAME")}
    else:
        assert gdal.Open(with_rpc["OUTPUT"]).GetGeoTransform() == gdal.Open(str(PAN)).GetGeoTransform()


def test_other_stderr_lines_still_show(provider, capfd):
    import os

    from seamless_inference.algorithms.base import without_warped_vrt_note

    capfd.readouterr()
    with without_warped_vrt_note():
        os.write(2, b"Logged warning: Creating Warped VRT.\nsomething else\n")
    assert capfd.readouterr().err == "something else\n"
