"""Real signals sent to a real qgis_process mid-run: SIGTERM acts as a cancel (the temporary file removed, no
output, the process ends by the signal); kill -9 leaves a temporary file that the next run of the same output
removes."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import MODEL, QGIS_PROCESS, ROOT

sys.path.insert(0, str(ROOT / "bench"))
from scene import make_scene  # noqa: E402 (the bench's scene maker)


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    """A 2048 px PAN / 512 px XS scene: a valid-part run of 16 tiles of 512 px, several seconds long."""
    return make_scene(2048, tmp_path_factory.mktemp("scene"))


def start(scene, output: Path) -> subprocess.Popen:
    pan, xs = scene
    return subprocess.Popen([str(QGIS_PROCESS), "run", "seamless:validpartinference", "--", f"MODEL={MODEL}",
                             f"SOURCE1={pan}", f"SOURCE2={xs}", "TILE_SIZE=512", "BATCH_SIZE=1", f"OUTPUT={output}"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_partial(folder: Path, process: subprocess.Popen, timeout: float = 240) -> list:
    """The temporary files in `folder`, once the run has created one (it is then writing tiles)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [name for name in os.listdir(folder) if name.endswith(".partial.tif")]
        if found:
            return found
        assert process.poll() is None, process.communicate()[0][-3000:]
        time.sleep(0.05)
    process.kill()
    raise AssertionError("the run never started writing")


def test_sigterm_mid_run_cancels_and_leaves_nothing(scene, tmp_path):
    output = tmp_path / "out" / "result.tif"
    output.parent.mkdir()
    process = start(scene, output)
    wait_for_partial(output.parent, process)
    process.send_signal(signal.SIGTERM)
    log = process.communicate(timeout=240)[0]
    assert process.returncode == -signal.SIGTERM, log[-3000:]  # ended by the signal, as asked
    assert os.listdir(output.parent) == [], log[-3000:]  # no output, no temporary file


def test_kill_9_leaves_a_partial_that_the_next_run_removes(scene, tmp_path):
    output = tmp_path / "out" / "result.tif"
    output.parent.mkdir()
    process = start(scene, output)
    stale = wait_for_partial(output.parent, process)
    process.kill()
    process.wait(timeout=60)
    assert set(stale) <= set(os.listdir(output.parent))  # what SIGKILL cannot clean
    process = start(scene, output)
    log = process.communicate(timeout=600)[0]
    assert process.returncode == 0, log[-3000:]
    assert sorted(os.listdir(output.parent)) == ["result.tif"], log[-3000:]
