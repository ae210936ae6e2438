"""What the algorithms share: ids, icons, help, error mapping, layer paths, and the TensorflowModelServe block."""

import os
import re
import sys
import tempfile
import threading
from contextlib import contextmanager

from qgis.core import (QgsProcessingAlgorithm, QgsProcessingException, QgsProcessingParameterBoolean,
                       QgsProcessingParameterEnum, QgsProcessingParameterExtent,
                       QgsProcessingParameterFile, QgsProcessingParameterFileDestination,
                       QgsProcessingParameterFolderDestination,
                       QgsProcessingParameterMultipleLayers, QgsProcessingParameterNumber,
                       QgsProcessingParameterRasterDestination, QgsProcessingParameterRasterLayer,
                       QgsProcessingParameterString, QgsProcessingUtils)
from qgis.PyQt.QtCore import QCoreApplication
from qgis.PyQt.QtGui import QIcon

from ..engine import (BACKENDS, COMPRESSIONS, DATA_TYPES, EXTENT_MODES, PADDINGS, Cancelled, DependencyMissing,
                      EngineError, InferenceRequest, Source)
from ..engine.card import read_card
from ..engine.classes import complete_table, read_class_table
from ..engine.paths import RASTER_EXTENSIONS, check_output, check_output_folder
from ..engine.raster import band_range
from ..engine.warm import run_inference_warm
from .compat import ADVANCED, DOUBLE, FOLDER, INTEGER, RASTER
from .help import SHORT_DESCRIPTION, SHORT_HELP
from .styling import load_classes, load_styled

ICONS = os.path.join(os.path.dirname(os.path.dirname(__file__)), "icons")
README_URL = "https://github.com/seamless-inference/seamless_inference#"
MAX_SOURCES = 3
SOURCE_DEFAULT_RFIELDS = (0, 0, 0)  # 0 = Auto: the model card's; else 128 for source 1 (the seed's PAN) and the ground
                                    # of source 1's for the others (XS 32 for the seed), as in Model analysis
FALLBACK_RFIELD = 128
RESAMPLINGS = ("nearest", "bilinear", "cubic", "cubicspline", "lanczos", "average")
_SOURCE_FIELD = re.compile(r"^sources\[(\d+)\](?:\.(\w+))?$")
_SOURCE_SUFFIXES = {"rfield": "_RFIELD", "placeholder": "_PLACEHOLDER", "nodata": "_NODATA", "bands": "_BANDS",
                    "scale": "_SCALE", "offset": "_OFFSET"}
_FIELD_PARAMETERS = {"model_dir": "MODEL", "output_path": "OUTPUT"}
MODEL_HELP = ("The TensorFlow SavedModel: the folder that holds saved_model.pb (what model.export() or "
              "tf.saved_model.save() wrote). A SavedModel is code: load only models you trust.")


def layer_path(layer, parameter: str) -> str:
    """The file GDAL reads for a raster layer, or a QgsProcessingException naming the parameter."""
    if layer is None:
        raise QgsProcessingException(QCoreApplication.translate("SeamlessInference", "No raster given [parameter {}].")
                                     .format(parameter))
    if layer.providerType() != "gdal":
        raise QgsProcessingException(QCoreApplication.translate(
            "SeamlessInference", "{} is not a raster file read by GDAL (provider {}); save it as a GeoTIFF first "
            "[parameter {}].").format(layer.name(), layer.providerType(), parameter))
    return layer.source().split("|")[0]


WARPED_VRT_NOTE = b"Creating Warped VRT."  # what QGIS's GDAL provider says opening a file with RPCs or GCPs


@contextmanager
def without_warped_vrt_note():
    """Drop QGIS's "Creating Warped VRT." from stderr while the block runs, keeping every other line.

    QGIS's GDAL provider says it (QgsLogger::warning) each time it opens a file carrying RPCs (a Pleiades pair:
    twice a run) as a layer, which Processing does to check a layer parameter. The plugin reads the files with
    GDAL by their geotransform, never through that warped VRT, so the note only misleads. A Qt message handler
    cannot be chained from Python (restoring would drop QGIS's own), hence stderr itself, for this block only.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            capture.seek(0)
            kept = b"".join(line for line in capture.read().splitlines(True) if WARPED_VRT_NOTE not in line)
            if kept:
                os.write(2, kept)


def in_engine_thread(function, *args, **kwargs):
    """Run `function` in a Python thread of its own and wait for it.

    QGIS runs Toolbox algorithms in pooled task threads and gives them a new Python thread state per task;
    TensorFlow keeps per-thread state, and its next call from a reused thread acquires the GIL with the dead
    state: QGIS segfaulted on the 2nd to 6th Toolbox run about 2 times in 3 (pybind11 gil_scoped_acquire in
    _pywrap_tf_session). A fresh thread per run fixed it (6 runs a session, 4 sessions out of 4), and unlike
    FlagNoThreading it keeps the dialog responsive. Feedback calls from this thread are queued signals.
    On the main thread (scripts, qgis_process) the function runs directly, so signals stay synchronous.
    """
    if threading.current_thread() is threading.main_thread():
        return function(*args, **kwargs)  # scripts, qgis_process, runAndLoadResults: never a pooled thread
    outcome = {}

    def target():
        try:
            outcome["value"] = function(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 (handed back to the calling thread)
            outcome["error"] = exc

    thread = threading.Thread(target=target, name="seamless-engine", daemon=True)
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["value"]


class SeamlessAlgorithm(QgsProcessingAlgorithm):
    """Base of the provider's algorithms: translation, ids, icon, help link, engine error mapping."""

    ICON = "seamless.svg"
    FIELDS = {}  # engine request field -> this algorithm's parameter, where the default rule does not fit

    def tr(self, text: str) -> str:
        """Translate a user-facing string."""
        return QCoreApplication.translate("SeamlessInference", text)

    def createInstance(self):  # noqa: N802 (QGIS API name)
        """A fresh instance of the same algorithm."""
        return type(self)()

    def group(self) -> str:
        """Toolbox group (all algorithms sit at the provider's top level)."""
        return ""

    def groupId(self) -> str:  # noqa: N802
        """No group."""
        return ""

    def icon(self) -> QIcon:
        """The algorithm's own icon."""
        return QIcon(os.path.join(ICONS, self.ICON))

    def helpUrl(self) -> str:  # noqa: N802
        """The algorithm's section of the README."""
        return README_URL + self.name()

    def shortHelpString(self) -> str:  # noqa: N802
        """Dialog help (algorithms/help.py)."""
        return self.tr(SHORT_HELP[self.name()])

    def shortDescription(self) -> str:  # noqa: N802
        """The Toolbox tooltip: one line (algorithms/help.py)."""
        return self.tr(SHORT_DESCRIPTION[self.name()])

    def advanced(self, parameter):
        """Mark a parameter Advanced and return it."""
        parameter.setFlags(parameter.flags() | ADVANCED)
        return parameter

    def explained(self, parameter, text: str):
        """Give a parameter its explanation (the dialog's tooltip and help panel), and return it."""
        parameter.setHelp(self.tr(text))
        return parameter

    def parameter_of(self, field: str | None) -> str | None:
        """This algorithm's parameter for an engine request field (sources[1].rfield -> SOURCE2_RFIELD), or None
        when it has none (as QGIS's invalidSourceError(parameters, name), errors name the dialog's own field)."""
        if not field:
            return None
        name = self.FIELDS.get(field)
        if name is None:
            match = _SOURCE_FIELD.match(field)
            if match:
                name = f"SOURCE{int(match[1]) + 1}" + _SOURCE_SUFFIXES.get(match[2] or "", "")
            else:
                name = _FIELD_PARAMETERS.get(field, field.upper())
        return name if self.parameterDefinition(name) is not None else None

    def check_outputs(self, parameters, context) -> None:
        """Before any computation: every output must be writable and must not replace an input, the model or
        another output (a report written after an hour of computing must not fail then)."""
        inputs, model_dir = [], None
        for definition in self.parameterDefinitions():
            name = definition.name()
            if isinstance(definition, QgsProcessingParameterFile) and \
                    definition.behavior() == FOLDER:
                model_dir = self.parameterAsFile(parameters, name, context) or None
            elif isinstance(definition, (QgsProcessingParameterRasterLayer, QgsProcessingParameterMultipleLayers)):
                for layer in self.parameterAsLayerList(parameters, name, context):
                    inputs.append((self.tr("the input {} ({})").format(definition.description(), name),
                                   layer.source().split("|")[0]))
        written = {}
        for definition in self.destinationParameterDefinitions():
            name = definition.name()
            try:
                if isinstance(definition, QgsProcessingParameterFolderDestination):
                    path = self.parameterAsString(parameters, name, context) if parameters.get(name) else ""
                    if path:
                        check_output_folder(path, name, inputs, model_dir, definition.description().lower())
                    continue
                if isinstance(definition, QgsProcessingParameterRasterDestination):
                    path, extensions = self.parameterAsOutputLayer(parameters, name, context), RASTER_EXTENSIONS
                elif isinstance(definition, QgsProcessingParameterFileDestination):
                    path, extensions = self.parameterAsFileOutput(parameters, name, context), ()
                else:
                    continue
                if not path:
                    continue
                check_output(path, name, inputs + [(self.tr("the output {}").format(other), p)
                                                   for other, p in written.items()],
                             model_dir, extensions, definition.description().lower())
                written[name] = path
            except EngineError as exc:
                raise QgsProcessingException(self.tr("{} [parameter {}]").format(exc, name)) from exc

    def checkParameterValues(self, parameters, context):  # noqa: N802
        """QGIS's check, which opens the layers given as files (they stay in the context for the run), without
        its "Creating Warped VRT." note."""
        with without_warped_vrt_note():
            self.add_virtual_layers(parameters, context)
            return super().checkParameterValues(parameters, context)

    def add_virtual_layers(self, parameters, context) -> None:
        """Rasters given by a GDAL virtual path (/vsizip/a.zip/pan.tif, /vsicurl/https://...), which QGIS's
        parameter check would refuse as files that do not exist (QGIS 3.22 looks for them on disk): loaded into
        the context's temporary layers, where QGIS then finds them by their source, as the layers they are."""
        from qgis.core import QgsRasterLayer

        for definition in self.parameterDefinitions():
            if not isinstance(definition, (QgsProcessingParameterRasterLayer, QgsProcessingParameterMultipleLayers)):
                continue
            value = parameters.get(definition.name())
            for item in value if isinstance(value, (list, tuple)) else [value]:
                if isinstance(item, str) and item.startswith("/vsi") and \
                        QgsProcessingUtils.mapLayerFromString(item, context, False) is None:
                    layer = QgsRasterLayer(item, os.path.basename(item), "gdal")
                    if layer.isValid():
                        context.temporaryLayerStore().addMapLayer(layer)

    def fail(self, exc: Exception) -> QgsProcessingException:
        """A QgsProcessingException naming the parameter at fault, from an engine error."""
        if isinstance(exc, Cancelled):
            return QgsProcessingException(self.tr("Cancelled: no output file was written."))
        parameter = self.parameter_of(exc.field) if isinstance(exc, EngineError) else None
        if parameter:
            return QgsProcessingException(self.tr("{} [parameter {}]").format(exc, parameter))
        return QgsProcessingException(str(exc))


class ModelAlgorithm(SeamlessAlgorithm):
    """The model folder and its sources (TensorflowModelServe's sourceN.il/rfield/placeholder, model.dir)."""

    MODEL = "MODEL"

    @staticmethod
    def source_key(index: int, suffix: str = "") -> str:
        """SOURCE1, SOURCE1_RFIELD, ... (index from 1)."""
        return f"SOURCE{index}{suffix}"

    def add_model_and_sources(self) -> None:
        """MODEL, then SOURCEn, SOURCEn_RFIELD, SOURCEn_PLACEHOLDER, SOURCEn_NODATA for n = 1..3."""
        self.addParameter(self.explained(QgsProcessingParameterFile(
            self.MODEL, self.tr("Model folder"), behavior=FOLDER), MODEL_HELP))
        for index in range(1, MAX_SOURCES + 1):
            optional = index > 1
            self.addParameter(self.explained(QgsProcessingParameterMultipleLayers(
                self.source_key(index), self.tr("Source {}: raster(s)").format(index), RASTER,
                optional=optional), "One or more rasters, stacked as the channels of one model input."))
            rfield = self.explained(QgsProcessingParameterNumber(
                self.source_key(index, "_RFIELD"), self.tr("Source {}: receptive field").format(index),
                INTEGER, SOURCE_DEFAULT_RFIELDS[index - 1], minValue=0),
                "The input block the model sees, in pixels of this source (0 = Auto: the model card's; without one, "
                + ("the same ground size as source 1's)." if index > 1 else "128)."))
            self.addParameter(rfield if index < 3 else self.advanced(rfield))
            placeholder = self.explained(QgsProcessingParameterString(
                self.source_key(index, "_PLACEHOLDER"), self.tr("Source {}: placeholder").format(index),
                optional=True), "The model input this source feeds (empty = the model card's; without one, the "
                "inputs in alphabetical order).")
            self.addParameter(self.advanced(placeholder))
            self.addParameter(self.advanced(self.explained(QgsProcessingParameterNumber(
                self.source_key(index, "_NODATA"), self.tr("Source {}: no-data value").format(index),
                DOUBLE, optional=True),
                "Tiles entirely no-data are skipped; output pixels over no-data get the background value (empty = "
                "the model card's, else the raster's).")))
            self.addParameter(self.advanced(self.explained(QgsProcessingParameterString(
                self.source_key(index, "_BANDS"), self.tr("Source {}: bands").format(index), optional=True),
                "The bands to feed, in the model's order, numbered from 1 over the source's rasters, e.g. 3,2,1 "
                "(empty = the model card's, else all).")))
            self.addParameter(self.advanced(self.explained(QgsProcessingParameterString(
                self.source_key(index, "_SCALE"), self.tr("Source {}: scale").format(index), optional=True),
                "Value fed to the model = raster value x scale + offset: one number, or one per fed band, comma "
                "separated, e.g. 0.0001 (empty = the model card's, else 1). No-data is recognised before scaling.")))
            self.addParameter(self.advanced(self.explained(QgsProcessingParameterString(
                self.source_key(index, "_OFFSET"), self.tr("Source {}: offset").format(index), optional=True),
                "Added after the scale: one number, or one per fed band (empty = the model card's, else 0).")))

    def nodata_value(self, parameters, key: str, context) -> float | None:
        """A no-data parameter: None when empty; text that is not a number is refused (QGIS would read 0)."""
        raw = parameters.get(key)
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return None
        if isinstance(raw, str):
            try:
                float(raw)
            except ValueError:
                raise QgsProcessingException(self.tr(
                    "The no-data value {!r} is not a number; give a number (e.g. 0 or -9999) or leave it empty to "
                    "use the raster's own [parameter {}].").format(raw, key)) from None
        return self.parameterAsDouble(parameters, key, context)

    def sources(self, parameters, context) -> list:
        """The sources given, as engine Sources (rasters must be GDAL files; a receptive field of 0 after the first
        source is left to the engine, which gives it the ground of source 1's)."""
        sources = []
        for index in range(1, MAX_SOURCES + 1):
            layers = self.parameterAsLayerList(parameters, self.source_key(index), context)
            if not layers:
                if index == 1:
                    raise QgsProcessingException(self.tr("Source 1 needs at least one raster [parameter SOURCE1]."))
                continue
            if len(sources) < index - 1:
                raise QgsProcessingException(self.tr(
                    "Source {} is given but source {} is not; fill the sources in order [parameter SOURCE{}].")
                    .format(index, index - 1, index - 1))
            paths = [layer_path(layer, self.source_key(index)) for layer in layers]
            rfield = self.parameterAsInt(parameters, self.source_key(index, "_RFIELD"), context)
            if rfield == 0 and index == 1 and not self.card_gives_rfield(parameters, context):
                rfield = FALLBACK_RFIELD
            placeholder = self.parameterAsString(parameters, self.source_key(index, "_PLACEHOLDER"), context)
            nodata_key = self.source_key(index, "_NODATA")
            nodata = self.nodata_value(parameters, nodata_key, context)
            bands = self.numbers(parameters, self.source_key(index, "_BANDS"), context, whole=True)
            scale = self.numbers(parameters, self.source_key(index, "_SCALE"), context)
            offset = self.numbers(parameters, self.source_key(index, "_OFFSET"), context)
            sources.append(Source(tuple(paths), (rfield, rfield) if rfield else None, placeholder.strip() or None,
                                  nodata, bands, scale, offset))
        return sources

    def card_gives_rfield(self, parameters, context) -> bool:
        """Whether the model's card gives source 1's receptive field (a card that does not validate is refused
        later, by the engine, with its key named)."""
        model_dir = self.parameterAsFile(parameters, self.MODEL, context)
        try:
            card = read_card(model_dir) if model_dir and os.path.isdir(model_dir) else None
        except EngineError:
            return True  # the engine names what is wrong with it
        return bool(card and card.sources and card.sources[0].rfield)

    def numbers(self, parameters, key: str, context, whole: bool = False) -> tuple | None:
        """A comma-separated list of numbers (band numbers when `whole`), or None when empty."""
        if self.parameterDefinition(key) is None:
            return None
        text = self.parameterAsString(parameters, key, context).strip()
        if not text:
            return None
        values = []
        for word in text.replace(";", ",").split(","):
            word = word.strip()
            try:
                values.append(int(word) if whole else float(word))
            except ValueError:
                raise QgsProcessingException(self.tr(
                    "{!r} is not {}; give {} separated by commas, e.g. {} [parameter {}].").format(
                    word, self.tr("a band number") if whole else self.tr("a number"),
                    self.tr("band numbers from 1") if whole else self.tr("one number or one per band"),
                    "3,2,1" if whole else "0.0001", key)) from None
            if whole and values[-1] < 1:
                raise QgsProcessingException(self.tr(
                    "Band {} does not exist: bands are numbered from 1 [parameter {}].").format(values[-1], key))
        return tuple(values)


class InferenceAlgorithm(ModelAlgorithm):
    """The TensorflowModelServe parameter block and run, shared by artifact-prone and valid-part inference."""

    OUTPUT_NAMES = "OUTPUT_NAMES"
    EFIELD = "EFIELD"
    SPCSCALE = "SPCSCALE"
    EXTENT = "EXTENT"
    EXTENT_MODE = "EXTENT_MODE"
    BACKEND = "BACKEND"
    CLUSTER = "CLUSTER"
    PADDING = "PADDING"
    TILE_SIZE = "TILE_SIZE"
    BATCH_SIZE = "BATCH_SIZE"
    DATA_TYPE = "DATA_TYPE"
    COMPRESSION = "COMPRESSION"
    DISPLAY_BAND = "DISPLAY_BAND"
    OUTPUT = "OUTPUT"
    CLASS_MAP = "CLASS_MAP"
    CLASS_TABLE = "CLASS_TABLE"
    CONFIDENCE = "CONFIDENCE"
    RESAMPLE = "RESAMPLE"
    WARM_ENGINE = "WARM_ENGINE"

    # option labels stay short (a combo box is as wide as its longest option); the explanation is the help
    EXTENT_MODE_LABELS = ("Full", "OTBTF")
    EXTENT_MODE_HELP = ("Full: the whole extent of source 1, with a virtual padding of the image beyond its edges. "
                        "OTBTF: TensorflowModelServe's grid (origin, size and truncation).")
    BACKEND_LABELS = ("Auto", "TensorFlow", "OTBTF")
    BACKEND_HELP = ("Auto: OTBTF (pyotb's TensorflowModelServe, in a child process) when pyotb has it and the "
                    "extent mode is OTBTF, else TensorFlow; the log says which. TensorFlow: this plugin's engine. "
                    "OTBTF: OTBTF extent mode only.")
    PADDING_LABELS = ("Mirror", "Zeros")
    DATA_TYPE_NAMES = tuple(DATA_TYPES)
    COMPRESSION_LABELS = ("Auto", "ZSTD", "DEFLATE", "None")
    COMPRESSION_HELP = ("Auto: ZSTD for integer types, none for float (lossless compression of probabilities saves "
                        "about 10 % for 2.6 times the write time).")

    def initAlgorithm(self, config=None):  # noqa: N802
        """The model, up to three sources, the output fields, the grid and tiling, the output raster."""
        self.add_model_and_sources()
        self.addParameter(self.explained(QgsProcessingParameterString(
            self.OUTPUT_NAMES, self.tr("Output name(s)"), optional=True), self.OUTPUT_NAMES_HELP))
        self.addParameter(self.explained(QgsProcessingParameterNumber(
            self.EFIELD, self.tr("Expression field"), INTEGER, 0, minValue=0),
            "The output block of one model run, in output pixels (0 = receptive field - 2 x crop)."))
        self.addParameter(self.explained(QgsProcessingParameterExtent(
            self.EXTENT, self.tr("Extent"), optional=True),
            "The region of interest, in any CRS (like OTBTF's box=, but geographic); empty = all of source 1."))
        self.addParameter(self.explained(QgsProcessingParameterEnum(
            self.EXTENT_MODE, self.tr("Extent mode"), [self.tr(s) for s in self.EXTENT_MODE_LABELS],
            defaultValue=0), self.EXTENT_MODE_HELP))
        self.addParameter(self.advanced(self.explained(QgsProcessingParameterEnum(
            self.BACKEND, self.tr("Backend"), [self.tr(s) for s in self.BACKEND_LABELS], defaultValue=0),
            self.BACKEND_HELP)))
        self.addParameter(self.advanced(self.explained(QgsProcessingParameterString(
            self.CLUSTER, self.tr("Cluster"), optional=True),
            "Empty = this process. A Dask scheduler address (tcp://host:8786) spreads the tiles over its workers, "
            "which must reach the model, the rasters and the output folder (its first worker is waited for 60 s, "
            "SEAMLESS_CLUSTER_WAIT); local or local:N starts N worker processes on this machine (at most one a "
            "CPU core). The pixels are the same.")))
        self.addParameter(self.advanced(self.explained(QgsProcessingParameterNumber(
            self.WARM_ENGINE, self.tr("Warm engine: idle time (s)"), INTEGER, 0, minValue=0),
            "For scripts calling qgis_process many times: run in a resident engine process of this user that keeps "
            "TensorFlow and the model loaded for this many seconds after a call, so that the next calls skip their "
            "import and load (same pixels). 0 = as the variable SEAMLESS_WARM_ENGINE says (off when unset).")))
        self.addParameter(self.advanced(self.explained(QgsProcessingParameterEnum(
            self.RESAMPLE, self.tr("Resample to the model's pixel size"),
            [self.tr("No: refuse a pixel size 10 % off the model card's")] + list(RESAMPLINGS), defaultValue=0),
            "When a source's pixel size is more than 10 % off the one its model card gives (pixel_size), the run "
            "is refused; a resampling here warps that source on the fly (a GDAL warped VRT) to the model's pixel "
            "size, and the output is then on the resampled grid (source 1's pixel size becomes the card's).")))
        self.addParameter(self.advanced(self.explained(QgsProcessingParameterNumber(
            self.SPCSCALE, self.tr("Output spacing scale"), DOUBLE, 1.0,
            minValue=0.0001), "Output pixel = source 1 pixel x scale (OTBTF's output.spcscale).")))
        self.addParameter(self.advanced(self.explained(QgsProcessingParameterEnum(
            self.PADDING, self.tr("Padding beyond the edges"), [self.tr(s) for s in self.PADDING_LABELS],
            defaultValue=0), "The virtual padding of the whole image beyond its edges (Full mode).")))
        self.addParameter(self.advanced(self.explained(QgsProcessingParameterNumber(
            self.TILE_SIZE, self.tr(self.TILE_SIZE_LABEL), INTEGER, 0, minValue=0),
            self.TILE_SIZE_HELP)))
        self.addParameter(self.advanced(self.explained(QgsProcessingParameterNumber(
            self.BATCH_SIZE, self.tr("Tiles per TensorFlow call"), INTEGER, 0,
            minValue=0), "0 = Auto: as many tiles as fit about 4 million input pixels.")))
        self.addParameter(self.advanced(self.explained(QgsProcessingParameterEnum(
            self.DATA_TYPE, self.tr("Output data type"), list(self.DATA_TYPE_NAMES), defaultValue=0),
            "The pixel type of the GeoTIFF (float32 by default).")))
        self.addParameter(self.advanced(self.explained(QgsProcessingParameterEnum(
            self.COMPRESSION, self.tr("Output compression"), [self.tr(s) for s in self.COMPRESSION_LABELS],
            defaultValue=0), self.COMPRESSION_HELP)))
        self.addParameter(self.explained(QgsProcessingParameterNumber(
            self.DISPLAY_BAND, self.tr("Band to display"), INTEGER, 0, minValue=0),
            "The band shown in the canvas (0 = Auto: the band with the most contrast on the first 512 x 512 "
            "output pixels)."))
        self.addParameter(self.explained(QgsProcessingParameterFile(
            self.CLASS_TABLE, self.tr("Class table"), optional=True,
            fileFilter="Class tables (*.csv *.qml *.clr *.txt)"),
            "The names and colours of the class map's classes: a CSV value,name,color (#rrggbb), a QGIS style "
            "(.qml, Paletted/Unique values) or a colour map (.clr: value r g b a name). Empty = the model card's "
            "classes, else class 0..N-1 in a qualitative palette. The sample's: sample/classes.csv."))
        self.addParameter(self.advanced(self.explained(QgsProcessingParameterBoolean(
            self.CONFIDENCE, self.tr("Class map confidence band"), defaultValue=False),
            "Band 2 of the class map: the winning class's score in percent (0..100).")))
        self.addParameter(self.explained(QgsProcessingParameterRasterDestination(
            self.OUTPUT, self.tr(self.OUTPUT_LABEL), optional=True, createByDefault=True),
            "The model's output (float scores). Skip it to write the class map alone."))
        self.addParameter(self.explained(QgsProcessingParameterRasterDestination(
            self.CLASS_MAP, self.tr("Class map"), optional=True, createByDefault=False),
            "The argmax of the output's bands (class scores, e.g. a softmax) as a Byte raster, one colour and name "
            "per class, computed in the same pass (TensorFlow backend in this process; not with OTBTF or a "
            "cluster). No-data = 255."))

    def request(self, parameters, context, sources) -> InferenceRequest:
        """The engine request of the parameters (output names left to the subclass's defaults)."""
        names = [n.strip() for n in self.parameterAsString(parameters, self.OUTPUT_NAMES, context).split(",")
                 if n.strip()]
        efield = self.parameterAsInt(parameters, self.EFIELD, context)
        extent = None
        if parameters.get(self.EXTENT) not in (None, ""):
            crs = self.parameterAsLayerList(parameters, self.source_key(1), context)[0].crs()
            rect = self.parameterAsExtent(parameters, self.EXTENT, context, crs)
            if rect.isNull() or rect.isEmpty():
                raise QgsProcessingException(self.tr(
                    "The extent {} has no area; draw a rectangle, or leave the extent empty for the whole of "
                    "source 1 [parameter EXTENT].").format(parameters.get(self.EXTENT)))
            extent = (rect.xMinimum(), rect.yMinimum(), rect.xMaximum(), rect.yMaximum())
        tile = self.parameterAsInt(parameters, self.TILE_SIZE, context)
        batch = self.parameterAsInt(parameters, self.BATCH_SIZE, context)
        return InferenceRequest(
            model_dir=self.parameterAsFile(parameters, self.MODEL, context),
            sources=tuple(sources), output_names=tuple(names), efield=(efield, efield) if efield else None,
            spcscale=self.parameterAsDouble(parameters, self.SPCSCALE, context), extent=extent,
            extent_mode=EXTENT_MODES[self.parameterAsEnum(parameters, self.EXTENT_MODE, context)],
            padding=PADDINGS[self.parameterAsEnum(parameters, self.PADDING, context)],
            tile_size=tile or None, batch_size=batch or None, valid_part=self.VALID_PART,
            resample=([None] + list(RESAMPLINGS))[self.parameterAsEnum(parameters, self.RESAMPLE, context)],
            data_type=self.DATA_TYPE_NAMES[self.parameterAsEnum(parameters, self.DATA_TYPE, context)],
            compression=COMPRESSIONS[self.parameterAsEnum(parameters, self.COMPRESSION, context)])

    def processAlgorithm(self, parameters, context, feedback):  # noqa: N802
        """Parameters in, one engine run, the output (named and styled) out."""
        self.check_outputs(parameters, context)
        output = self.parameterAsOutputLayer(parameters, self.OUTPUT, context) or None
        class_map = self.parameterAsOutputLayer(parameters, self.CLASS_MAP, context) or None
        if not output and not class_map:
            raise QgsProcessingException(self.tr("Nothing to write: give the output raster, the class map or both "
                                                 "[parameter OUTPUT]."))
        try:
            table_path = self.parameterAsFile(parameters, self.CLASS_TABLE, context)
            table = read_class_table(table_path) if table_path else None
            request = self.request(parameters, context, self.sources(parameters, context))
            backend = BACKENDS[self.parameterAsEnum(parameters, self.BACKEND, context)]
            cluster = self.parameterAsString(parameters, self.CLUSTER, context).strip() or None
            confidence = self.parameterAsBoolean(parameters, self.CONFIDENCE, context)
            idle = self.parameterAsInt(parameters, self.WARM_ENGINE, context)
            result = in_engine_thread(lambda: run_inference_warm(
                request, output, progress=lambda f: feedback.setProgress(100.0 * f),
                is_canceled=feedback.isCanceled, log_info=feedback.pushInfo, backend=backend, cluster=cluster,
                class_map=class_map, confidence=confidence, class_table=table, idle=idle))
        except (EngineError, Cancelled, DependencyMissing) as exc:
            raise self.fail(exc) from exc
        plan = result.plan
        name = self.layer_name(plan)
        if output:
            band = self.parameterAsInt(parameters, self.DISPLAY_BAND, context) or result.display_band or 1
            # scores and probabilities stretch 0..1; a regression (the model card says so) its own range
            low, high = band_range(output, band) if plan.kind == "regression" else (0.0, 1.0)
            load_styled(context, output, name, band, low, high, under=class_map)  # the class map is what shows
        if class_map:
            entries = complete_table(result.class_table, plan.bands)[0]
            load_classes(context, class_map, self.tr("{} - class map").format(name),
                         [(e.value, e.color, e.name) for e in entries])
        return {self.OUTPUT: output, self.CLASS_MAP: class_map}

    # what the subclasses set
    VALID_PART = False  # serve the measured valid part of the output
    OUTPUT_NAMES_HELP = "Outputs of the model's signature, comma separated (empty = the model's raw output)."
    TILE_SIZE_LABEL = "Tile size"
    TILE_SIZE_HELP = "Output pixels (0 = Auto)."
    OUTPUT_LABEL = "Output raster"

    def layer_name(self, plan) -> str:
        """The name of the layer loaded in the canvas."""
        return ", ".join(plan.output_names)
