"""Help text shared by the inference algorithms: the fields, the valid part, where we differ from OTBTF."""

FIELDS = """
<h3>Receptive field, expression field, valid part</h3>
<p><b>Receptive field</b> (rfield, per source, in pixels of that source): the input block the model sees for
one output block. <b>Expression field</b> (efield, in output pixels): the output block it produces. A fully
convolutional model built with <code>padding="same"</code> returns as many pixels as it gets, but the pixels
near the block border are computed from zero padding: tiling that raw output gives <b>blocking artifacts</b>.
Outputs named <code>&lt;name&gt;_cropN</code> (otbtf's ModelBase) drop N pixels on each side; with
<b>efield = rfield - 2 x N</b> each block keeps only its <b>valid part</b> and the mosaic is seamless when N is
at least the number of pixels the padding pollutes. For a convolution of kernel k and stride s the valid size
is floor((x - k) / s) + 1; for a transposed convolution s x x + s - k (TF "same"); the plugin measures it on
the model itself (stride and polluted pixels per side) and logs it.</p>
<h3>Extent modes</h3>
<p><b>Full</b> (default, differs from OTBTF): the output covers all of source 1; beyond the image edges the
input is a virtual mirror (or zero) padding of the whole image, so every pixel is defined and no pixel depends
on the tiling. Tiles start on multiples of the model's total stride. <b>OTBTF</b>: TensorflowModelServe's grid:
the output starts floor(rfield/2) - floor(efield/2) pixels into source 1, covers the centres where every
receptive field fits, and is truncated to whole efield blocks, computed in exact integer arithmetic (OTBTF's
floating-point snapping can misregister sources on non-round origins; this plugin does not).</p>
<h3>Other differences from TensorflowModelServe</h3>
<p>The extent is geographic (in source 1's CRS), not an index box; several tiles go through TensorFlow in
one call; outputs are written under a temporary name and renamed when complete. Receptive and expression
fields are square here (OTBTF's x/y pairs are equal).</p>
<h3>Model analysis</h3>
<p><b>Model analysis</b> (seamless:modelanalysis) reports, for any SavedModel and receptive fields, the valid size
of every layer, the measured valid window, the total stride, and the crop and expression field to use
(efield = rfield - 2 x crop); in the Graphical Modeler connect its outputs to these fields (the plugin's
models/seed_workflow.model3 does).</p>
<p><b>A SavedModel is code</b>: TensorFlow runs what it contains. Load only models you trust.</p>
"""
# QGIS's help panel makes a paragraph of every line of a help string: one line
FIELDS = " ".join(FIELDS.split())
