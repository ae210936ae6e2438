"""Output grids and input windows: OTBTF's worked example, Full mode, alignment errors (no TensorFlow)."""

import numpy as np
import pytest

from seamless_inference.engine import EngineError
from seamless_inference.engine import grid as g
from seamless_inference.engine.reading import mirror_index

PAN = g.RasterGrid(1000, 1000, 500000.0, 4800000.0, 1.5, 1.5)
XS = g.RasterGrid(250, 250, 500000.0, 4800000.0, 6.0, 6.0)


def test_lattice_puts_xs_on_the_pan_grid():
    lattice = g.build_lattice([PAN, XS])
    assert lattice.unit_x == 1.5
    assert lattice.sources_x == (g.Axis(0, 1, 1000), g.Axis(0, 4, 250))
    assert (lattice.out_step_x, lattice.out_step_y) == (1, 1)


@pytest.mark.parametrize("efield, first_pixel", [(128, 0), (64, 32)])
def test_otbtf_mode_reproduces_the_worked_example(efield, first_pixel):
    """Section 1.2: efield 128 starts at PAN pixel 0, efield 64 at 32; both 896 px wide."""
    lattice = g.build_lattice([PAN, XS])
    axis = g.otbtf_axis(lattice.sources_x, [128, 32], 1, efield, ["pan", "xs"], "x")
    assert axis == g.Axis(first_pixel, 1, 896)


def test_otbtf_mode_on_non_round_origins_keeps_pan_and_xs_registered():
    """The Toulouse case (findings 3): exact integers give origin (32, 32), where OTBTF snapped to (36, 33)."""
    pan = g.RasterGrid(500, 500, 374149.98, 4829183.99, 0.6, 0.6)
    xs = g.RasterGrid(125, 125, 374149.98, 4829183.99, 2.4, 2.4)
    lattice = g.build_lattice([pan, xs])
    x = g.otbtf_axis(lattice.sources_x, [128, 32], 1, 64, ["pan", "xs"], "x")
    y = g.otbtf_axis(lattice.sources_y, [128, 32], 1, 64, ["pan", "xs"], "y")
    assert (x.offset, y.offset) == (32, 32)
    assert (x.size, y.size) == (384, 384)


def test_input_windows_follow_otbtf_padding():
    """Section 1.3: an efield-64 block reads 128 PAN and 32 XS pixels, starting 32 PAN / 8 XS before it."""
    lattice = g.build_lattice([PAN, XS])
    out = g.Axis(32, 1, 896)
    assert g.input_window(out, 0, 64, lattice.sources_x[0], 128, 64, "pan", "x") == (0, 128)
    assert g.input_window(out, 0, 64, lattice.sources_x[1], 32, 64, "xs", "x") == (0, 32)
    # a tile of 4 blocks reads tile + rfield - efield
    assert g.input_window(out, 64, 256, lattice.sources_x[0], 128, 64, "pan", "x") == (64, 320)


def test_full_mode_covers_the_whole_image():
    lattice = g.build_lattice([PAN, XS])
    assert g.full_axis(lattice.sources_x[0], 1) == g.Axis(0, 1, 1000)
    assert g.full_axis(lattice.sources_x[0], 4) == g.Axis(0, 4, 250)


def test_tile_lattice_keeps_the_stride_phase():
    lattice = g.build_lattice([PAN, XS])
    out = g.full_axis(lattice.sources_x[0], 1)
    base, step = g.tile_lattice(out, lattice.sources_x, [128, 32], 64, 16)
    assert step == 16 and base % 16 == 0


def test_non_integer_spacing_ratio_is_refused():
    xs = g.RasterGrid(250, 250, 500000.0, 4800000.0, 5.0, 5.0)
    with pytest.raises(EngineError, match="ratio must be an integer"):
        g.build_lattice([PAN, xs])


def test_misaligned_grid_is_refused_with_the_offset():
    xs = g.RasterGrid(250, 250, 500000.7, 4800000.0, 6.0, 6.0)
    with pytest.raises(EngineError, match="not aligned"):
        g.build_lattice([PAN, xs])


def test_otbtf_mode_explains_why_an_image_smaller_than_the_rfield_gives_nothing():
    small = g.RasterGrid(100, 100, 0.0, 0.0, 1.0, 1.0)
    lattice = g.build_lattice([small])
    with pytest.raises(EngineError, match="smaller than the receptive fields") as error:
        g.otbtf_axis(lattice.sources_x, [128], 1, 64, ["pan"], "x")
    assert error.value.field == "extent_mode"


def test_mirror_padding_reflects_without_repeating_the_edge():
    assert mirror_index(np.arange(-3, 7), 5).tolist() == [3, 2, 1, 0, 1, 2, 3, 4, 3, 2]
    assert mirror_index(np.arange(-2, 3), 1).tolist() == [0, 0, 0, 0, 0]
