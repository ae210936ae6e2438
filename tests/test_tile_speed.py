"""Auto tiles of an exact output are the cheapest by the speeds the model showed on this machine, timed once and
kept as JSON beside the measurement cache; the choice changes no pixel beyond float32 rounding (oneDNN may sum a
convolution in another order for another input size, on some CPUs: 0 here, 1.5e-12 on CI's machine)."""

import json
import sys

import numpy as np
import pytest
from conftest import MODEL, ROOT, seed_sources
from osgeo import gdal

from seamless_inference.engine import InferenceRequest, plan_inference, run_inference

sys.path.insert(0, str(ROOT / "bench"))
from scene import make_scene  # noqa: E402 (the bench's scene maker)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    return make_scene(2048, tmp_path_factory.mktemp("scene"))


def valid(scene, **changes):
    return InferenceRequest(str(MODEL), seed_sources(*scene), output_names=("estimated_crop32",), **changes)


def timings(folder) -> dict:
    """{path: the tile's source 1 input width} of the timings kept in the cache folder."""
    found = {}
    for path in folder.glob("tile-speed-*.json"):
        found[path] = json.loads(path.read_text())["shapes"]["input_p"][2]
    return found


def test_the_auto_tile_follows_the_timings_kept_on_disk(scene, tmp_path, monkeypatch):
    monkeypatch.setenv("SEAMLESS_CACHE_DIR", str(tmp_path / "cache"))
    first = plan_inference(valid(scene))  # times the nominal tiles once (real TensorFlow calls)
    kept = timings(tmp_path / "cache")
    assert len(kept) == 2, kept  # 1024 and 2048 px tiles: the two nominal sizes this scene's candidates are near
    assert any(note.startswith("Tiles: ") and "measured once, cached" in note for note in first.notes)
    for fast in sorted(set(kept.values())):  # each nominal tile made ten times faster than the other in turn
        for path, width in kept.items():
            path.write_text(json.dumps({"seconds_per_pixel": 1e-8 if width == fast else 1e-7,
                                        "shapes": {"input_p": [1, width, width, 1]}}))
        plan = plan_inference(valid(scene))
        assert abs(plan.tile[0] + 64 - fast) <= 64 * 4, (plan.tile, fast)  # input = tile + the margins
    assert timings(tmp_path / "cache") == kept  # read back, never timed again


def test_a_damaged_timing_is_timed_again(scene, tmp_path, monkeypatch):
    monkeypatch.setenv("SEAMLESS_CACHE_DIR", str(tmp_path / "cache"))
    plan_inference(valid(scene))
    for path in timings(tmp_path / "cache"):
        path.write_text('{"seconds_per_pixel": "import os"}')
    plan_inference(valid(scene))
    assert all(isinstance(json.loads(p.read_text())["seconds_per_pixel"], float) for p in timings(tmp_path / "cache"))


def test_the_chosen_tile_gives_the_pixels_of_any_other(scene, tmp_path):
    chosen = run_inference(valid(scene), str(tmp_path / "auto.tif"))
    other = 1024 if chosen.plan.tile[0] != 1024 else 2048
    run_inference(valid(scene, tile_size=other), str(tmp_path / "other.tif"))
    a, b = (gdal.Open(str(tmp_path / f"{n}.tif")).ReadAsArray() for n in ("auto", "other"))
    assert a.shape == b.shape and np.abs(a - b).max() <= 1e-5  # oneDNN: tile-size rounding, as test_inference
