"""Help text of every algorithm (QGIS core keeps it apart from the classes too: shortHelp), and the text
shared by the algorithms that run a model: the fields, the valid part, where we differ from OTBTF."""

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
<h3>Model card</h3>
<p>A model may describe itself in <code>assets.extra/seamless.json</code> (the <b>model card</b>, README: Model
card): placeholders, receptive fields, bands, scaling, no-data, pixel size, output and classes. Whatever a
parameter leaves empty (or 0 for the receptive fields) comes from it, the log lists each value taken, and a
parameter given always wins. <b>Beyond OTBTF</b> (which feeds every band as it is): <b>bands</b> choose and order
the channels fed, and <b>scale</b>/<b>offset</b> transform them (value fed = raster value x scale + offset; no-data
is recognised before); the OTBTF backend gets a VRT that does the same. A source more than 10 % off the card's
pixel size is refused; <b>Resample to the model's pixel size</b> warps it on the fly, and the output is then on the
resampled grid.</p>
<h3>Model analysis</h3>
<p><b>Model analysis</b> (seamless:modelanalysis) reports, for any SavedModel and receptive fields, the valid size
of every layer, the measured valid window, the total stride, and the crop and expression field to use
(efield = rfield - 2 x crop); in the Graphical Modeler connect its outputs to these fields (the plugin's
models/seed_workflow.model3 does).</p>
<p><b>A SavedModel is code</b>: TensorFlow runs what it contains. Load only models you trust.</p>
"""
# QGIS's help panel makes a paragraph of every line of a help string: one line
FIELDS = " ".join(FIELDS.split())

CLASS_MAP = """
<h3>Class map</h3>
<p>For a segmentation model whose output is class scores (a softmax: one band per class), <b>Class map</b> also
writes the winning class of each pixel (the argmax, class values 0..N-1, no-data 255) as a Byte raster, computed
from the same blocks in the same pass: no second run, no second read of the scores. It loads with one colour and
one name per class from the <b>Class table</b> (CSV <code>value,name,color</code> with #rrggbb, a QGIS .qml style
of a paletted layer, or a .clr colour map <code>value r g b a name</code>; the sample's is
<code>sample/classes.csv</code>); without a table the classes are "class 0..N-1" in a qualitative palette.
<b>Confidence band</b> (advanced) adds band 2: the winning score in percent. Skip the output raster to write the
class map alone (1 byte a pixel instead of 4 per class). A 1-band output is refused; scores outside [0, 1] or not
summing to 1 get a warning in the log (the map is still their argmax). The class map is computed by this
plugin's TensorFlow pipeline in QGIS's process: with the OTBTF backend or a cluster it is refused (choose
TensorFlow or Auto, leave Cluster empty). <b>Band to display</b> 0 (Auto) shows the output band with the most
contrast on its first 512 x 512 pixels.</p>
"""
CLASS_MAP = " ".join(CLASS_MAP.split())

# QGIS's help panel makes a paragraph of every line of a help string: each text is one line
SHORT_HELP = {
    'artifactproneinference': (
        "<p>Runs a TensorFlow SavedModel over rasters like OTBTF's TensorflowModelServe in fully convolutional mode "
        'and writes its <b>raw output</b> block by block. With the defaults (source 1 PAN rfield 128, source 2 XS '
        "rfield 32, output <code>estimated</code>, efield 128) it reproduces the OTBTF tutorial's first run: each 128"
        ' px block is computed on its own, so the zero padding inside the network shows as a grid of <b>blocking '
        'artifacts</b>. Compare with <i>Valid-part inference</i>.</p>'
    ) + CLASS_MAP + FIELDS,
    'validpartinference': (
        "<p>Runs a TensorFlow SavedModel over rasters like OTBTF's TensorflowModelServe and keeps only the <b>valid "
        'part</b> of each block, so the result is <b>seamless</b>. By default the plugin measures how many pixels the'
        " model's zero padding pollutes on each side of a block (31 and 16 of 128 for the sample model), picks the "
        'smallest exact <code>_cropN</code> output (<code>estimated_crop32</code>) and the expression field rfield - '
        "2 x N (64), and in Full mode runs large tiles whose pixels are identical to OTBTF's 64 px blocks. If the "
        'model has no exact <code>_cropN</code> output, the plugin crops the raw output itself.</p>'
    ) + CLASS_MAP + FIELDS,
    'distortioncomparison': (
        '<p>How far is each cropping value from the exact result, and what does it cost? For a receptive field R '
        "(source 1 pixels; the other sources keep their ratio) and each crop c, the model runs as OTBTF's "
        'TensorflowModelServe does (OTBTF grid, blocks of the expression field R - 2c, output '
        '<code>&lt;name&gt;_crop&lt;c&gt;</code>, or the raw output cropped by the plugin when the model has no such '
        'output; c = 0 is the raw output). Each result is compared with the exact valid part over their common '
        "geographic extent (different crops start at different pixels): RMSE (the seed's vector RMSE over bands), "
        'mean and max absolute error, share of pixels above the tolerance, theoretical cost (R / (R - '
        '2c))<sup>2</sup> and measured time. Outputs: an HTML report with a plot, a table layer, the RMSE of the '
        'chosen crop (empty: the measured one, the exact reference\'s; for the Graphical Modeler) and optionally one squared-error raster per crop, on which the block'
        " grid shows. Crops of the valid part that tile by an expression field that is not a multiple of the model's "
        'total stride are not exact even when large enough: their blocks change stride phase.</p><p>The exact '
        "reference is computed once into a file in the system's temporary folder (24 bytes a pixel for a 6-band "
        "output), deleted at the end; each crop's blocks are compared with it as they come out of the model, so no "
        'crop output is written. Output pixels over source no-data are left out of both; unlike comparing written '
        'rasters, a valid pixel whose value equals the no-data value (a softmax band at exactly 0) is kept.</p>'
    ) + FIELDS,
    'rastercomparison': (
        '<p>Measures how much an <b>image</b> differs from a <b>reference</b>, e.g. the artifact-prone output against'
        " the valid part, as the OTBTF tutorial's distortion comparison does.</p><p>Only the <b>geographic "
        "intersection</b> of the two footprints is compared: OTBTF's artifact-prone and valid-part outputs are "
        'shifted by 32 pixels, so comparing by pixel index would be wrong. Both rasters must share the CRS, the pixel'
        ' size and the pixel grid; pixels that are no-data in either raster are ignored and counted.</p><p>With '
        "d<sub>b</sub> = image - reference in band b and N pixels compared:<br><b>RMSE</b> (the tutorial's value, a "
        '<b>vector RMSE</b>) = sqrt( 1/N &Sigma;<sub>pixels</sub> &Sigma;<sub>b</sub> d<sub>b</sub>&sup2; ), the RMSE'
        ' of the error vector over the bands;<br><b>per-band RMSE</b> = sqrt( 1/N &Sigma;<sub>pixels</sub> '
        'd<sub>b</sub>&sup2; ), whose squares sum to RMSE&sup2;;<br><b>MAE</b> = mean of |d<sub>b</sub>| over pixels '
        "and bands; <b>max |error|</b> = the largest |d<sub>b</sub>|. All are in the rasters' value units.</p><p>This"
        " equals pyotb's ExtractROI(mode fit, on the reference) + BandMathX <code>(im1-im2)*(im1-im2)'</code> (a "
        'matrix product: the sum over bands) + ComputeImagesStatistics, square root of the mean, but works when the '
        'image does not cover the whole reference, and streams any raster size. The optional squared-error raster '
        "holds &Sigma;<sub>b</sub> d<sub>b</sub>&sup2; per pixel on the intersection's grid: it shows where the "
        'blocking artifacts are, i.e. where the artifact-prone output departs from the valid part.</p><p>Why they '
        'differ: a model sees a <b>receptive field</b> (rfield) of input for each block of the <b>expression '
        'field</b> (efield) it outputs; with <code>padding="same"</code> the pixels near a block border come from '
        'zero padding. Keeping the <b>valid part</b>, efield = rfield - 2 x crop with a crop at least the polluted '
        'width, removes the artifacts. <i>Model analysis</i> gives that crop for any model; <i>Distortion '
        'comparison</i> measures every crop at once.</p>'
    ),
    'modelanalysis': (
        '<p>Tells which <code>_cropN</code> output and which expression field give a seamless mosaic, for any '
        "TensorFlow SavedModel and the sources' sizes (receptive fields; default the seed's PAN 128, and a size "
        "of 0 follows source 1's ground as in the inference algorithms: by the rasters' pixel sizes, else the "
        "model's input shapes, else the first ratio 1, 1/2, 1/4 ... the model accepts). Each source feeds its "
        "placeholder (empty = the inputs in alphabetical order).</p><p><b>From the graph</b>: every layer's kernel, "
        "stride, output size and <b>valid part</b> (the "
        "pixels computed without the zero padding of a tile's border): floor((x - k) / s) + 1 for a convolution or "
        'pooling, s x + s - k for a transposed convolution (TF "same"; otbtf\'s x s - k + 2 holds only for s = 2), the'
        ' intersection of the operands for a skip sum, a shift for a crop. The exact window is propagated too: TF '
        'puts the odd padding pixel after the data, so the valid part is not centred ([31, 111] of 128 for the '
        'sample: (128 - 81) / 2 = 23.5 is not enough, a symmetric crop must be at least 31). Ops the analysis cannot '
        'read are named in the report.</p><p><b>Measured</b>: the model runs on inputs that differ only outside a '
        'tile (random data at two scales, normalised and raw digital numbers, so that no image content can hide a '
        'polluted pixel; the optional rasters give the pixel-size ratios); the output pixels that change are the '
        'ones a tile border pollutes, per side. The total stride is the smallest input shift that shifts the output '
        'identically. Valid-part inference uses this very measurement, for the same sizes.</p><p><b>Outputs</b>, for the Graphical Modeler: OUTPUT_NAME (the smallest '
        'exact <code>_cropN</code> output whose expression field keeps tiles on the total-stride lattice), CROP, '
        "RFIELD (source 1's size), EFIELD = RFIELD - 2 x CROP and TOTAL_STRIDE; connect them to the inference "
        "algorithms' output name, receptive and expression fields. When the size given keeps no exact pixel (a "
        'stride-32 model at 128 px), the log names the smallest size that does and the outputs are for it. The HTML '
        'report opens in the Results Viewer.</p><p><b>Write the model card</b> writes or updates '
        '<code>assets.extra/seamless.json</code> in the model folder: the placeholders, sizes and output analysed and '
        "this measurement with the model's fingerprint (and the classes of the optional class table), keeping what "
        'an author wrote; inference then needs only the model and the images and measures nothing on another '
        'machine (README: Model card).</p><p><b>A SavedModel is code</b>: load only models you trust.</p>'
    ),
    'installdependencies': (
        "<p>Installs TensorFlow for the Python QGIS runs, with pip run by that very Python, into this QGIS "
        "profile's own folder <code>python/dependencies</code> (QPIP's convention), which the plugin puts first on "
        "Python's path when it loads: never into the system's Python, no terminal needed. numpy stays on the "
        "version QGIS's GDAL was built with (1.x on QGIS 3.22 / Debian 12, 2.x on QGIS 3.40+). tensorflow-cpu on "
        "Linux and Windows, tensorflow on macOS, tensorflow[and-cuda] on Linux when nvidia-smi lists an NVIDIA GPU. "
        "The first install downloads about 600 MB and takes 1.6 GB. <b>Cancel</b> stops pip and leaves the folder "
        "as it was. When QGIS has already imported another numpy (QGIS 3.22 on Debian 12), the log says to restart "
        "QGIS once; otherwise the algorithms run at once.</p><p><b>Status</b> lists what the folder holds and which "
        "TensorFlow and numpy the plugin would use; <b>Remove</b> deletes the folder (the plugin then says "
        "TensorFlow is missing again). From a terminal: <code>qgis_process run seamless:installdependencies</code>."
        "</p>"
    ),
    'classnames': (
        "<p>Names the class values of polygons or of an area table: copies the features with a <code>name</code> "
        "field after the class value field, from the class table. The table is the <b>class table</b> file when "
        "given (CSV <code>value,name,color</code>, a QGIS paletted style .qml or a colour map .clr), else the "
        "<b>class map</b>'s own (the inference algorithms write it into the GeoTIFF); values it does not name are "
        "'class N'. Polygons are styled on load with a categorised renderer in the class colours, which is also "
        "saved as the GeoPackage's default style (the file opens styled later). It is the step of "
        "<code>models/class_polygons.model3</code> that no QGIS algorithm does: the model sieves, polygonises and "
        "measures with gdal:sieve, gdal:polygonize, native:rasterlayeruniquevaluesreport and "
        "native:collect and native:refactorfields.</p>"
    ),
}

# the Toolbox tooltip (QgsProcessingAlgorithm.shortDescription): one line each
SHORT_DESCRIPTION = {
    'artifactproneinference': "Runs a SavedModel block by block and keeps its raw output, as OTBTF's "
                              "TensorflowModelServe: blocking artifacts.",
    'validpartinference': "Runs a SavedModel and keeps the valid part of every block: a seamless output.",
    'distortioncomparison': "RMSE and cost of each crop against the exact valid part.",
    'rastercomparison': "RMSE, MAE and max error of an image against a reference, where they overlap.",
    'modelanalysis': "Which _cropN output and expression field give a seamless mosaic with a SavedModel.",
    'installdependencies': "Installs TensorFlow into this QGIS profile, for the Python QGIS runs; or says what is "
                           "installed, or removes it.",
    'classnames': "Adds the class names to polygons or an area table of a class map; styles polygons by class.",
}
