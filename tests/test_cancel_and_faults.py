"""Cancel at any point and a disk that fills up mid-run: a prompt stop, no output, no temporary file."""

import os
import subprocess
import sys
import time

import pytest
from conftest import MODEL, PAN, PLUGINS, XS

VALID = "seamless:validpartinference"


@pytest.mark.parametrize("at_percent", [10, 50, 90])
def test_cancel_stops_within_a_tile_and_leaves_nothing(provider, tmp_path, at_percent):
    import processing
    from qgis.core import QgsProcessingException, QgsProcessingFeedback

    class CancelAt(QgsProcessingFeedback):
        def __init__(self):
            super().__init__()
            self.cancelled_at = None
            self.progressChanged.connect(self.check)

        def check(self, value):
            if value >= at_percent and self.cancelled_at is None:
                self.cancelled_at = time.perf_counter()
                self.cancel()

    feedback = CancelAt()
    with pytest.raises(QgsProcessingException, match="Cancelled: no output file was written"):
        processing.run(VALID, {"MODEL": str(MODEL), "SOURCE1": [str(PAN)], "SOURCE2": [str(XS)],
                               "TILE_SIZE": 64, "BATCH_SIZE": 1, "OUTPUT": str(tmp_path / "out.tif")},
                       feedback=feedback)
    # 64 tiles of 1/64 each: the run stops at the next tile boundary after the request
    assert at_percent <= feedback.progress() < at_percent + 100 / 64 + 1e-6
    assert os.listdir(tmp_path) == []


DISK_FULL = f"""
import os, resource, signal, sys
sys.path.insert(0, {str(PLUGINS)!r})
from seamless_inference.engine import EngineError, InferenceRequest, Source, run_inference
request = InferenceRequest({str(MODEL)!r}, (Source(({str(PAN)!r},), (128, 128)), Source(({str(XS)!r},), (32, 32))),
                           output_names=("estimated_crop32",), tile_size=128)
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)   # a full disk: writes past 2 MB fail with EFBIG
resource.setrlimit(resource.RLIMIT_FSIZE, (2_000_000, 2_000_000))
try:
    run_inference(request, sys.argv[1])
except EngineError as error:
    print("ERROR", error.field, error)
"""


def test_disk_full_mid_run_reports_it_and_leaves_no_file(tmp_path):
    """The 6 MB output cannot fit under a 2 MB file-size limit (set in a child process)."""
    run = subprocess.run([sys.executable, "-c", DISK_FULL, str(tmp_path / "out.tif")], capture_output=True,
                         text=True, timeout=300, env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"), check=False)
    assert "ERROR output_path" in run.stdout, run.stdout + run.stderr[-2000:]
    assert "is the disk full?" in run.stdout
    assert os.listdir(tmp_path) == []
