"""The bad-input and fault catalogue, round three (issue 24): a user's raster reached through a VRT or an error
folder never overwritten, GDAL virtual paths read as inputs and never written, class tables in the common
encodings and their mistakes named by line, the distortion comparison's crops and chosen crop said plainly, a run
that loses a race on its output leaving nothing, and a full disk under every output of every algorithm: a
message that names the parameter and the fix, and not one file created, changed or left.

The full disk is real: a 1 MB tmpfs filled to its last byte (root only; skipped elsewhere, and said)."""

import functools
import http.server
import os
import re
import shutil
import subprocess
import sys
import threading
import zipfile

import pytest
from conftest import MODEL, PAN, PLUGINS, SAMPLE, XS
from osgeo import gdal
from test_bad_input_catalogue import (ANALYSIS, ARTIFACT, COMPARISON, DISTORTION, VALID, api_refused, refused,
                                      snapshot, work)

__all__ = ["work"]  # the catalogue's fixture, used here


def build_vrt(path, sources) -> str:
    """A VRT mosaic of `sources`, closed (written) before it is used."""
    dataset = gdal.BuildVRT(str(path), [str(s) for s in sources])
    dataset.FlushCache()
    dataset = None
    return str(path)


# --- a user's file reached through a VRT -------------------------------------------------------------------------

def test_output_that_a_vrt_source_points_to(provider, work):
    shutil.copy(PAN, work / "pan_src.tif")
    build_vrt(work / "pan.vrt", [work / "pan_src.tif"])
    refused(VALID, work, {"SOURCE1": [str(work / "pan.vrt")], "OUTPUT": str(work / "pan_src.tif")},
            "is a file that the input", "refers to", "pan_src.tif", "destroy the input", "[parameter OUTPUT]")


def test_output_that_a_nested_vrt_points_to(provider, work):
    """A VRT of a VRT (relative paths), given to Artifact-prone inference: the innermost raster is protected."""
    (work / "deep").mkdir()
    shutil.copy(XS, work / "deep" / "xs_src.tif")
    build_vrt(work / "deep" / "xs.vrt", [work / "deep" / "xs_src.tif"])
    build_vrt(work / "outer.vrt", [work / "deep" / "xs.vrt"])
    refused(ARTIFACT, work, {"SOURCE2": [str(work / "outer.vrt")], "OUTPUT": str(work / "deep" / "xs_src.tif")},
            "xs_src.tif", "destroy the input", "[parameter OUTPUT]")


def test_class_map_that_a_vrt_source_points_to(provider, work):
    shutil.copy(PAN, work / "pan_src.tif")
    build_vrt(work / "pan.vrt", [work / "pan_src.tif"])
    refused(VALID, work, {"SOURCE1": [str(work / "pan.vrt")], "CLASS_MAP": str(work / "pan_src.tif")},
            "destroy the input", "[parameter CLASS_MAP]")


def test_squared_error_that_the_reference_vrt_points_to(provider, work):
    shutil.copy(PAN, work / "ref_src.tif")
    build_vrt(work / "ref.vrt", [work / "ref_src.tif"])
    refused(COMPARISON, work, {"REFERENCE": str(work / "ref.vrt"), "IMAGE": str(work / "pan.tif"),
                               "SQUARED_ERROR": str(work / "ref_src.tif")}, "destroy the input",
            "[parameter SQUARED_ERROR]", defaults=False)


def test_python_output_that_a_vrt_source_points_to(work):
    from seamless_inference.engine import InferenceRequest, Source, run_inference

    shutil.copy(PAN, work / "pan_src.tif")
    build_vrt(work / "pan.vrt", [work / "pan_src.tif"])
    request = InferenceRequest(str(work / "model"), (Source(str(work / "pan.vrt"), 128),
                                                     Source(str(work / "xs.tif"), 32)))
    api_refused(work, lambda: run_inference(request, str(work / "pan_src.tif")), "output_path", "refers to",
                "destroy the input")


# --- the distortion comparison's error folder: every file it will receive, checked before computing ----------

def test_error_folder_holding_an_input_of_a_squared_error_name(provider, work):
    (work / "ef").mkdir()
    shutil.copy(PAN, work / "ef" / "squared_error_crop16.tif")
    refused(DISTORTION, work, {"SOURCE1": [str(work / "ef" / "squared_error_crop16.tif")], "CROPS": "0,16",
                               "REPORT": str(work / "r.html"), "ERROR_FOLDER": str(work / "ef")},
            "squared_error_crop16.tif", "destroy the input", "[parameter ERROR_FOLDER]")


def test_error_folder_holding_the_measured_crops_name(provider, work):
    """The measured crop (32) joins the crops after the measurement: its file is checked before computing too."""
    (work / "ef").mkdir()
    shutil.copy(PAN, work / "ef" / "squared_error_crop32.tif")
    refused(DISTORTION, work, {"SOURCE1": [str(work / "ef" / "squared_error_crop32.tif")], "CROPS": "0",
                               "REPORT": str(work / "r.html"), "ERROR_FOLDER": str(work / "ef")},
            "squared_error_crop32.tif", "destroy the input", "[parameter ERROR_FOLDER]")


# --- GDAL virtual paths: inputs, never outputs ----------------------------------------------------------------------

@pytest.fixture()
def zipped(work):
    """pan.tif and xs.tif inside work/data.zip, as /vsizip/ paths."""
    archive = work / "data.zip"
    with zipfile.ZipFile(archive, "w") as handle:
        handle.write(PAN, "pan.tif")
        handle.write(XS, "xs.tif")
    return f"/vsizip/{archive}/pan.tif", f"/vsizip/{archive}/xs.tif"


class RangeHandler(http.server.SimpleHTTPRequestHandler):
    """A static file server that answers byte ranges, as GDAL's /vsicurl/ needs (Python's own does not)."""

    def do_GET(self):  # noqa: N802 (http.server's name)
        ranged = re.match(r"bytes=(\d+)-(\d*)", self.headers.get("Range", ""))
        path = self.translate_path(self.path)
        if not ranged or not os.path.isfile(path):
            return super().do_GET()
        with open(path, "rb") as handle:
            data = handle.read()
        first, last = int(ranged[1]), int(ranged[2] or len(data) - 1)
        last = min(last, len(data) - 1)
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {first}-{last}/{len(data)}")
        self.send_header("Content-Length", str(last - first + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.wfile.write(data[first:last + 1])
        return None

    def log_message(self, *args):
        """Quiet."""


@pytest.fixture()
def served(work):
    """work/ over HTTP on 127.0.0.1 (byte ranges answered): the base URL of /vsicurl/ paths."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0),
                                             functools.partial(RangeHandler, directory=str(work)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"/vsicurl/http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_vsicurl_sources_run(provider, work, served, tmp_path):
    import processing

    result = processing.run(ARTIFACT, {"MODEL": str(work / "model"), "SOURCE1": [f"{served}/pan.tif"],
                                       "SOURCE2": [f"{served}/xs.tif"], "OUTPUT": str(tmp_path / "curl.tif")})
    direct = processing.run(ARTIFACT, {"MODEL": str(work / "model"), "SOURCE1": [str(PAN)], "SOURCE2": [str(XS)],
                                       "OUTPUT": str(tmp_path / "direct.tif")})
    assert (gdal.Open(result["OUTPUT"]).ReadAsArray() == gdal.Open(direct["OUTPUT"]).ReadAsArray()).all()


def test_vsicurl_missing_file_is_not_found(work, served):
    from seamless_inference.engine import InferenceRequest, Source, plan_inference

    request = InferenceRequest(str(work / "model"), (Source(f"{served}/nope.tif", 128),))
    api_refused(work, lambda: plan_inference(request), "sources[0]", "raster file not found", "nope.tif")


def test_vsizip_sources_run_as_their_files(provider, work, zipped, tmp_path):
    import processing

    result = processing.run(VALID, {"MODEL": str(work / "model"), "SOURCE1": [zipped[0]], "SOURCE2": [zipped[1]],
                                    "OUTPUT": str(tmp_path / "zipped.tif")})
    direct = processing.run(VALID, {"MODEL": str(work / "model"), "SOURCE1": [str(PAN)], "SOURCE2": [str(XS)],
                                    "OUTPUT": str(tmp_path / "direct.tif")})
    assert (gdal.Open(result["OUTPUT"]).ReadAsArray() == gdal.Open(direct["OUTPUT"]).ReadAsArray()).all()


def test_vsizip_sources_from_python(work, zipped, tmp_path):
    from seamless_inference.engine import InferenceRequest, Source, run_inference

    request = InferenceRequest(str(work / "model"), (Source(zipped[0], 128), Source(zipped[1], 32)),
                               output_names="estimated_crop32")
    result = run_inference(request, str(tmp_path / "api.tif"))
    assert gdal.Open(result.path).RasterCount == 6


def test_vsizip_reference_in_raster_comparison(provider, work, zipped):
    import processing

    result = processing.run(COMPARISON, {"REFERENCE": zipped[0], "IMAGE": str(work / "pan.tif")})
    assert result["RMSE"] == 0 and result["PIXELS"] == 250000


def test_missing_member_of_a_zip_is_not_found(work, zipped):
    from seamless_inference.engine import InferenceRequest, Source, plan_inference

    missing = zipped[0].replace("pan.tif", "nope.tif")
    request = InferenceRequest(str(work / "model"), (Source(missing, 128), Source(zipped[1], 32)))
    api_refused(work, lambda: plan_inference(request), "sources[0]", "raster file not found", "nope.tif")


def test_vsimem_output_is_refused(work):
    from seamless_inference.engine import InferenceRequest, Source, run_inference

    request = InferenceRequest(str(work / "model"), (Source(str(work / "pan.tif"), 128),
                                                     Source(str(work / "xs.tif"), 32)))
    api_refused(work, lambda: run_inference(request, "/vsimem/out.tif"), "output_path", "GDAL virtual path",
                "choose a file on disk")


@pytest.mark.parametrize("algorithm, parameter", [(VALID, "OUTPUT"), (ARTIFACT, "CLASS_MAP"),
                                                  (COMPARISON, "SQUARED_ERROR")])
def test_vsi_output_is_refused_in_every_algorithm(provider, work, zipped, algorithm, parameter):
    params = {parameter: "/vsimem/out.tif"}
    if algorithm == COMPARISON:
        params.update(REFERENCE=zipped[0], IMAGE=str(work / "pan.tif"))
    refused(algorithm, work, params, "GDAL virtual path", "choose a file on disk", f"[parameter {parameter}]",
            defaults=algorithm != COMPARISON)


def test_output_that_is_the_zip_an_input_reads_from(work, zipped):
    from seamless_inference.engine.paths import check_output

    os.rename(work / "data.zip", work / "data.tif")  # GDAL reads a zip by its content, whatever its name
    vsi = zipped[0].replace("data.zip", "data.tif")
    api_refused(work, lambda: check_output(str(work / "data.tif"), "output_path", [("a raster of source 1", vsi)]),
                "output_path", "destroy the input")


# --- class tables: the common encodings read, mistakes named by line ------------------------------------------------

@pytest.mark.parametrize("encoding", ["utf-8", "utf-8-sig", "latin-1", "cp1252", "utf-16"])
def test_class_table_csv_in_a_common_encoding(tmp_path, encoding):
    from seamless_inference.engine.class_map import read_class_table

    path = tmp_path / "classes.csv"
    path.write_bytes("value,name,color\n0,forêt,#2ca02c\n1,bâti – dense,#d62728\n".encode(encoding)
                     if encoding == "cp1252" else
                     "value,name,color\n0,forêt,#2ca02c\n1,bâti dense,#d62728\n".encode(encoding))
    names = [entry.name for entry in read_class_table(str(path))]
    assert names[0] == "forêt" and names[1].startswith("bâti")


def qml(work, entries: str):
    path = work / "classes.qml"
    path.write_text("<!DOCTYPE qgis>\n<qgis>\n <pipe>\n  <rasterrenderer type=\"paletted\">\n   <colorPalette>\n"
                    + entries + "   </colorPalette>\n  </rasterrenderer>\n </pipe>\n</qgis>\n", encoding="utf-8")
    return str(path)


def test_class_table_qml_with_a_value_that_is_not_a_number(provider, work):
    path = qml(work, '    <paletteEntry value="0" color="#1f77b4" alpha="255" label="water"/>\n'
                     '    <paletteEntry value="abc" color="#2ca02c" alpha="255" label="forest"/>\n')
    refused(VALID, work, {"CLASS_MAP": str(work / "classes.tif"), "CLASS_TABLE": path}, "classes.qml, line 7",
            "value is 'abc', not a number", "[parameter CLASS_TABLE]")


def test_class_table_qml_with_an_alpha_that_is_not_a_number(provider, work):
    path = qml(work, '    <paletteEntry value="0" color="#1f77b4" alpha="opaque" label="water"/>\n')
    refused(VALID, work, {"CLASS_MAP": str(work / "classes.tif"), "CLASS_TABLE": path}, "classes.qml, line 6",
            "alpha is 'opaque', not a number", "0..255", "[parameter CLASS_TABLE]")


def test_class_table_qml_with_an_alpha_out_of_range(provider, work):
    path = qml(work, '    <paletteEntry value="0" color="#1f77b4" alpha="300" label="water"/>\n')
    refused(VALID, work, {"CLASS_MAP": str(work / "classes.tif"), "CLASS_TABLE": path}, "classes.qml, line 6",
            "0..255", "[parameter CLASS_TABLE]")


def test_class_table_with_binary_junk_names_its_line(provider, work):
    (work / "classes.csv").write_bytes(b"0,water,#1f77b4\n\x001,\x00forest,#2ca02c\n")
    refused(VALID, work, {"CLASS_MAP": str(work / "classes.tif"), "CLASS_TABLE": str(work / "classes.csv")},
            "classes.csv, line 2", "expected value,name,color", "[parameter CLASS_TABLE]")


def test_class_table_with_a_field_too_large_for_csv(provider, work):
    (work / "classes.csv").write_text('0,"' + "x" * 200000 + '",#1f77b4\n', encoding="utf-8")
    refused(VALID, work, {"CLASS_MAP": str(work / "classes.tif"), "CLASS_TABLE": str(work / "classes.csv")},
            "is not a CSV file", "field larger than field limit", "[parameter CLASS_TABLE]")


def test_class_table_clr_with_a_colour_out_of_range(provider, work):
    (work / "classes.clr").write_text("0 31 119 180 255 water\n1 44 300 44 255 forest\n", encoding="utf-8")
    refused(VALID, work, {"CLASS_MAP": str(work / "classes.tif"), "CLASS_TABLE": str(work / "classes.clr")},
            "classes.clr, line 2", "out of range", "0..255", "[parameter CLASS_TABLE]")


def test_class_table_csv_with_a_bad_colour_names_its_line(provider, work):
    (work / "classes.csv").write_bytes("value,name,color\n0,forêt,#2ca02c\n1,bâti,rouge\n".encode("latin-1"))
    refused(VALID, work, {"CLASS_MAP": str(work / "classes.tif"), "CLASS_TABLE": str(work / "classes.csv")},
            "classes.csv, line 3", "'rouge' is not a colour", "[parameter CLASS_TABLE]")


# --- the distortion comparison's crops and chosen crop -----------------------------------------------------------

def test_crops_off_source_2s_grid_say_which_can_be_measured(provider, work):
    message = refused(DISTORTION, work, {"CROPS": "0,1,16", "REPORT": str(work / "r.html")},
                      "Crop(s) 1 cannot be measured with R = 128", "blocks of R - 2c output pixels (126)",
                      "between the pixels of source 2", "crops that can be measured with this R: 0, 4, 8",
                      "[parameter CROPS]")
    assert "tile sizes" not in message


def test_chosen_crop_outside_the_crops_is_refused(provider, work):
    refused(DISTORTION, work, {"CROPS": "0,16", "CHOSEN_CROP": 8, "REPORT": str(work / "r.html")},
            "Chosen crop 8 is not among the crops 0, 16", "CROPS", "[parameter CHOSEN_CROP]")


def test_chosen_crop_beyond_the_receptive_field_is_refused(provider, work):
    refused(DISTORTION, work, {"CHOSEN_CROP": 64, "REPORT": str(work / "r.html")}, "leaves no expression field",
            "below 64", "[parameter CHOSEN_CROP]")


def test_chosen_crop_with_default_crops_is_measured(provider, work, tmp_path):
    import processing

    result = processing.run(DISTORTION, {"MODEL": str(work / "model"), "SOURCE1": [str(work / "pan.tif")],
                                         "SOURCE2": [str(work / "xs.tif")], "RFIELD": 64, "CROPS": "",
                                         "CHOSEN_CROP": 8, "REPORT": str(tmp_path / "r.html")})
    assert result["RMSE"] == result["RMSE"] and result["RMSE"] > 0  # measured: a number, not NaN


# --- two runs racing on one output --------------------------------------------------------------------------------

RACE = f"""
import sys
sys.path.insert(0, {str(PLUGINS)!r})
from seamless_inference.engine import InferenceRequest, Source, run_inference
request = InferenceRequest({str(MODEL)!r}, (Source({str(PAN)!r}, 128), Source({str(XS)!r}, 32)),
                           output_names="estimated_crop32")
run_inference(request, sys.argv[1], class_map=sys.argv[2])
print("WROTE")
"""


def test_runs_racing_on_one_output_leave_only_the_output(tmp_path):
    """Three processes write the same output and class map at once: whoever renames last wins, and no run (a
    loser included) leaves its temporary files or its sidecars' temporary files."""
    output, classes = tmp_path / "out.tif", tmp_path / "classes.tif"
    (tmp_path / "out.tif.aux.xml").write_text("<PAMDataset/>")  # a sidecar each run removes: the race's hot spot
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    runs = [subprocess.Popen([sys.executable, "-c", RACE, str(output), str(classes)], stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env) for _ in range(3)]
    outputs = [run.communicate(timeout=600) for run in runs]
    assert all("WROTE" in out for out, _ in outputs), [err[-2000:] for _, err in outputs]
    assert sorted(os.listdir(tmp_path)) == ["classes.tif", "classes.tif.aux.xml", "out.tif"]
    assert gdal.Open(str(output)).RasterCount == 6


# --- a full disk under every output of every algorithm ---------------------------------------------------------------

@pytest.fixture()
def full(work):
    """work/full: a 1 MB tmpfs filled to the last byte (files can still be created, not written): a real ENOSPC."""
    folder = work / "full"
    folder.mkdir()
    if os.geteuid() != 0:
        pytest.skip("a full disk is a small tmpfs, which only root can mount")
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(folder)], capture_output=True,
                             text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    with open(folder / "filler", "wb", buffering=0) as handle:
        try:
            while True:
                handle.write(b"\0" * 4096)
        except OSError:  # ENOSPC: full
            pass
    yield folder
    subprocess.run(["umount", str(folder)], check=False)


def inference(work, full, **params) -> dict:
    return {"MODEL": str(work / "model"), "SOURCE1": [str(work / "pan.tif")], "SOURCE2": [str(work / "xs.tif")],
            **params}


@pytest.mark.parametrize("algorithm", [VALID, ARTIFACT])
def test_disk_full_under_the_output(provider, work, full, algorithm):
    refused(algorithm, work, inference(work, full, OUTPUT=str(full / "out.tif")), "is the disk full?",
            "[parameter OUTPUT]")


@pytest.mark.parametrize("algorithm", [VALID, ARTIFACT])
def test_disk_full_under_the_class_map(provider, work, full, algorithm, tmp_path):
    """The scores' file is on another disk: it goes too (both are renamed together, or neither)."""
    other = tmp_path / "other"
    other.mkdir()
    refused(algorithm, work, inference(work, full, OUTPUT=str(other / "scores.tif"),
                                       CLASS_MAP=str(full / "classes.tif")), "is the disk full?",
            "[parameter CLASS_MAP]")
    assert os.listdir(other) == []


def test_disk_full_under_the_class_map_alone(provider, work, full):
    refused(VALID, work, inference(work, full, OUTPUT=None, CLASS_MAP=str(full / "classes.tif")), "is the disk full?",
            "[parameter CLASS_MAP]")


def test_disk_full_under_the_model_analysis_report(provider, work, full):
    refused(ANALYSIS, work, {"MODEL": str(work / "model"), "REPORT": str(full / "r.html")}, "Writing the report",
            "is the disk full?", "[parameter REPORT]", defaults=False)


def test_disk_full_under_the_distortion_report(provider, work, full):
    refused(DISTORTION, work, {"CROPS": "32", "REPORT": str(full / "r.html")}, "Writing the report",
            "is the disk full?", "[parameter REPORT]")


def test_disk_full_under_the_distortion_report_takes_the_error_rasters_with_it(provider, work, full, tmp_path):
    """The error rasters (another disk, a folder that exists) are renamed only with the report: none is left."""
    other = tmp_path / "ef"
    other.mkdir()
    refused(DISTORTION, work, {"CROPS": "32", "REPORT": str(full / "r.html"), "ERROR_FOLDER": str(other)},
            "Writing the report", "is the disk full?", "[parameter REPORT]")
    assert os.listdir(other) == []


def test_disk_full_under_the_distortion_error_folder(provider, work, full):
    """The folder is made by the run and goes with it, with the report (no half-made r.html, no ef/)."""
    refused(DISTORTION, work, {"CROPS": "32", "REPORT": str(full / "r.html"), "ERROR_FOLDER": str(full / "ef")},
            "is the disk full?", "[parameter ERROR_FOLDER]")


def test_disk_full_under_the_squared_error(provider, work, full):
    refused(COMPARISON, work, {"REFERENCE": str(work / "pan.tif"), "IMAGE": str(work / "pan.tif"),
                               "SQUARED_ERROR": str(full / "se.tif")}, "is the disk full?",
            "[parameter SQUARED_ERROR]", defaults=False)


def test_disk_full_under_the_comparison_report(provider, work, full, tmp_path):
    """The squared error, written first on another disk, goes with the report that failed."""
    other = tmp_path / "other"
    other.mkdir()
    refused(COMPARISON, work, {"REFERENCE": str(work / "pan.tif"), "IMAGE": str(work / "pan.tif"),
                               "SQUARED_ERROR": str(other / "se.tif"), "REPORT": str(full / "r.html")},
            "Writing the report", "is the disk full?", "[parameter REPORT]", defaults=False)
    assert os.listdir(other) == []


def test_disk_full_under_the_distortion_table(provider, work, full, tmp_path):
    other = tmp_path / "other"
    other.mkdir()
    refused(DISTORTION, work, {"CROPS": "32", "REPORT": str(other / "r.html"), "TABLE": str(full / "t.gpkg")},
            "is the disk full?", "[parameter TABLE]")
    assert os.listdir(other) == []


def test_an_orphan_sidecar_of_a_dead_runs_partial_is_removed_by_the_next_run(provider, work):
    """A dead run's temporary file's own .aux.xml, left alone (its file already renamed or removed)."""
    import processing

    orphan = work / ".result.tif.999999999-0badc0de.partial.tif.aux.xml"
    orphan.write_text("<PAMDataset/>")
    processing.run(ARTIFACT, {"MODEL": str(work / "model"), "SOURCE1": [str(work / "pan.tif")],
                              "SOURCE2": [str(work / "xs.tif")], "OUTPUT": str(work / "result.tif")})
    assert not orphan.exists()


def test_cancelled_distortion_leaves_no_table_report_or_error_folder(provider, work):
    """The table file is created before the sweep: a cancel removes it with everything else."""
    import processing
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    class CancelAtTheReference(QgsProcessingFeedback):
        def pushInfo(self, info):  # noqa: N802 (QGIS API name)
            if info.startswith("Reference:"):
                self.cancel()

    before = snapshot(work)
    with pytest.raises(QgsProcessingException, match="Cancelled"):
        processing.run(DISTORTION, {"MODEL": str(work / "model"), "SOURCE1": [str(work / "pan.tif")],
                                    "SOURCE2": [str(work / "xs.tif")], "CROPS": "32", "REPORT": str(work / "r.html"),
                                    "TABLE": str(work / "t.csv"), "ERROR_FOLDER": str(work / "ef")},
                       feedback=CancelAtTheReference())
    assert snapshot(work) == before


def test_disk_full_under_the_class_names_output(provider, work, full, tmp_path):
    """seamless:classnames (issue 23's one step of our own in class_polygons.model3) on a full disk."""
    counts = tmp_path / "counts.csv"
    counts.write_text("value,pixels\n0,10\n1,5\n", encoding="utf-8")
    refused("seamless:classnames", work, {"INPUT": str(counts), "FIELD": "value",
                                          "CLASS_TABLE": str(SAMPLE / "classes.csv"),
                                          "OUTPUT": str(full / "named.gpkg")},
            "is the disk full?", "[parameter OUTPUT]", defaults=False)


def test_disk_full_under_the_model_card(provider, work, tmp_path):
    """Model analysis writing the card into a model folder whose disk is full: named, the old card kept whole."""
    if os.geteuid() != 0:
        pytest.skip("a full disk is a small tmpfs, which only root can mount")
    disk = work / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(disk)], capture_output=True,
                             text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        shutil.copytree(work / "model", disk / "model")
        with open(disk / "filler", "wb", buffering=0) as handle:
            try:
                while True:
                    handle.write(b"\0" * 4096)
            except OSError:  # ENOSPC: full
                pass
        refused(ANALYSIS, work, {"MODEL": str(disk / "model"), "WRITE_CARD": True,
                                 "REPORT": str(tmp_path / "r.html")},
                "The model card", "cannot be written", "is the disk full?", "[parameter MODEL]", defaults=False)
        assert not (tmp_path / "r.html").exists()
    finally:
        subprocess.run(["umount", str(disk)], check=False)
