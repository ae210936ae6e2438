"""The engine on the sample model and the Toulouse pair: seamless valid part, artifacts where the seed says."""

import os
from dataclasses import replace

import numpy as np
import pytest
from conftest import MODEL, PAN, XS, seed_sources
from osgeo import gdal

from seamless_inference.engine import OTBTF, Cancelled, InferenceRequest, run_inference
from seamless_inference.engine.dependencies import import_tensorflow
from seamless_inference.engine.reading import SourceReader

VALID = InferenceRequest(str(MODEL), seed_sources(), output_names=("estimated_crop32",))
ARTIFACT = InferenceRequest(str(MODEL), seed_sources(), output_names=("estimated",))


def read(path):
    """(bands, rows, cols) float array of a raster."""
    return gdal.Open(str(path)).ReadAsArray().astype(np.float64)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """The valid part with Auto tiles (one 512 px tile over the sample)."""
    path = tmp_path_factory.mktemp("ref") / "valid.tif"
    result = run_inference(VALID, str(path))
    assert result.plan.exact and result.plan.tile == (512, 512)
    return read(path)


@pytest.mark.parametrize("tile", [64, 128, 256])
def test_valid_part_does_not_depend_on_the_tile_size(tmp_path, reference, tile):
    path = tmp_path / f"valid_{tile}.tif"
    run_inference(replace(VALID, tile_size=tile), str(path))
    assert np.abs(read(path) - reference).max() <= 1e-5


def test_valid_part_equals_one_model_call_over_the_padded_image(reference):
    """Independent of the engine's tiling: one signature call on the mirror-padded image, cropped by hand."""
    tf = import_tensorflow()
    signature = tf.saved_model.load(str(MODEL)).signatures["serving_default"]
    pan = SourceReader([str(PAN)]).read(-32, -32, 576, 576)   # 512 px of output + 2 x 32 px of margin
    xs = SourceReader([str(XS)]).read(-8, -8, 144, 144)
    out = signature(input_p=tf.constant(pan[None]), input_xs=tf.constant(xs[None]))["estimated_crop32"]
    expected = np.moveaxis(out.numpy()[0, :500, :500], -1, 0)
    assert expected.shape == reference.shape == (6, 500, 500)
    assert np.abs(expected - reference).max() <= 1e-5


def test_blocking_artifacts_are_exactly_at_the_block_borders(tmp_path, reference):
    """Raw output in 128 px blocks: wrong along every block border, exact inside the valid window [31, 111]."""
    path = tmp_path / "artifact.tif"
    result = run_inference(ARTIFACT, str(path))
    assert result.plan.tile == (128, 128) and result.plan.exact is False
    diff = np.abs(read(path) - reference).max(axis=0)
    for border in (128, 256, 384):
        assert diff[:, border - 1:border + 1].max() > 1e-3, f"no artifact at column {border}"
        assert diff[border - 1:border + 1, :].max() > 1e-3, f"no artifact at row {border}"
    for by in range(0, 384, 128):
        for bx in range(0, 384, 128):
            assert diff[by + 31:by + 112, bx + 31:bx + 112].max() <= 1e-5


def test_full_mode_covers_source_1_with_its_georeferencing(tmp_path):
    path = tmp_path / "valid.tif"
    run_inference(VALID, str(path))
    out, pan = gdal.Open(str(path)), gdal.Open(str(PAN))
    assert (out.RasterXSize, out.RasterYSize, out.RasterCount) == (500, 500, 6)
    assert out.GetGeoTransform() == pytest.approx(pan.GetGeoTransform())
    assert out.GetSpatialRef().IsSame(pan.GetSpatialRef())


def test_otbtf_mode_on_toulouse_starts_32_pixels_in_and_matches_full_mode(tmp_path, reference):
    """Exact arithmetic puts the efield-64 output at PAN pixel (32, 32), with identical pixels to Full mode."""
    path = tmp_path / "otbtf.tif"
    result = run_inference(replace(VALID, extent_mode=OTBTF), str(path))
    assert result.plan.tile[0] % 64 == 0  # exact output: Auto takes large tiles of whole efield blocks
    blocks = tmp_path / "otbtf_blocks.tif"  # the tutorial's way: one 64 px block per call
    run_inference(replace(VALID, extent_mode=OTBTF, tile_size=64, batch_size=1), str(blocks))
    assert np.abs(read(blocks) - read(path)).max() <= 1e-5
    out, pan = gdal.Open(str(path)), gdal.Open(str(PAN))
    gt, pgt = out.GetGeoTransform(), pan.GetGeoTransform()
    assert (out.RasterXSize, out.RasterYSize) == (384, 384)
    assert gt[0] == pytest.approx(pgt[0] + 32 * pgt[1]) and gt[3] == pytest.approx(pgt[3] + 32 * pgt[5])
    assert np.abs(read(path) - reference[:, 32:416, 32:416]).max() <= 1e-5


@pytest.fixture(scope="module")
def synthetic_1000(tmp_path_factory):
    """A 1000 px PAN / 250 px XS pair (the notes' worked example) mirrored from Toulouse, round origin."""
    folder = tmp_path_factory.mktemp("synthetic")
    paths = []
    for name, source, size, spacing in (("pan", PAN, 1000, 1.5), ("xs", XS, 250, 6.0)):
        data = gdal.Open(str(source)).ReadAsArray()
        data = data.reshape((-1,) + data.shape[-2:])
        data = np.concatenate([data, data[:, :, ::-1]], axis=2)
        data = np.concatenate([data, data[:, ::-1, :]], axis=1)[:, :size, :size]
        path = folder / f"{name}.tif"
        ds = gdal.GetDriverByName("GTiff").Create(str(path), size, size, data.shape[0], gdal.GDT_Int16)
        ds.SetGeoTransform((500000.0, spacing, 0.0, 4800000.0, 0.0, -spacing))
        ds.SetProjection(gdal.Open(str(PAN)).GetProjection())
        ds.WriteArray(data) if data.shape[0] == 1 else [ds.GetRasterBand(b + 1).WriteArray(data[b])
                                                         for b in range(data.shape[0])]
        ds = None
        paths.append(path)
    return paths


@pytest.mark.parametrize("request_, first_pixel", [(ARTIFACT, 0), (VALID, 32)])
def test_otbtf_mode_reproduces_the_worked_example(tmp_path, synthetic_1000, request_, first_pixel):
    """Section 1.2: efield 128 starts at PAN pixel 0, efield 64 at 32; both 896 x 896."""
    pan, xs = synthetic_1000
    path = tmp_path / "out.tif"
    run_inference(replace(request_, sources=seed_sources(pan, xs), extent_mode=OTBTF), str(path))
    out = gdal.Open(str(path))
    assert (out.RasterXSize, out.RasterYSize) == (896, 896)
    gt = out.GetGeoTransform()
    assert gt[0] == pytest.approx(500000.0 + 1.5 * first_pixel)
    assert gt[3] == pytest.approx(4800000.0 - 1.5 * first_pixel)
    assert gt[1] == pytest.approx(1.5) and gt[5] == pytest.approx(-1.5)


def test_extent_writes_the_same_pixels_as_the_whole_run(tmp_path, reference):
    pan = gdal.Open(str(PAN)).GetGeoTransform()
    x0, y0 = pan[0] + 100 * pan[1], pan[3] + 200 * pan[5]
    extent = (x0, y0 + 150 * pan[5], x0 + 120 * pan[1], y0)   # xmin, ymin, xmax, ymax
    path = tmp_path / "roi.tif"
    run_inference(replace(VALID, extent=extent), str(path))
    out = gdal.Open(str(path))
    assert (out.RasterXSize, out.RasterYSize) == (120, 150)
    assert out.GetGeoTransform()[0] == pytest.approx(x0) and out.GetGeoTransform()[3] == pytest.approx(y0)
    assert np.abs(read(path) - reference[:, 200:350, 100:220]).max() <= 1e-5


def test_cancel_stops_and_leaves_no_file(tmp_path):
    calls = []

    def cancel_after_first_batch():
        calls.append(1)
        return len(calls) > 2

    path = tmp_path / "cancelled.tif"
    with pytest.raises(Cancelled):
        run_inference(replace(VALID, tile_size=64, batch_size=1), str(path), is_canceled=cancel_after_first_batch)
    assert len(calls) == 3
    assert os.listdir(tmp_path) == []
