"""seamless:installdependencies installs TensorFlow for QGIS's own Python into the profile's python/dependencies,
from the real package index, with the real pip and qgis_process: the plugin then runs there, the system's Python is
untouched; a cancelled or failed install leaves the folder as it was, with a message naming the cause."""

import importlib.util
import os
import re
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import MODEL, PAN, PLUGINS, QGIS_PROCESS, ROOT, XS, qgis_process
from osgeo import gdal

from seamless_inference.engine.dependencies import TENSORFLOW, TENSORFLOW_MACOS, tensorflow_version
from seamless_inference.engine import Cancelled
from seamless_inference.engine.installer import PARTIAL, InstallFailed, install, numpy_pin, remove_stale, requirements

# QGIS's Python as an analyst's before installing TensorFlow: no venv, no user site-packages
NO_TENSORFLOW = {"SEAMLESS_NO_VENV": "1", "PYTHONNOUSERSITE": "1"}


def profile_env(profile: Path, **extra) -> dict:
    """tools/qgis_process's environment for a fresh profile, QGIS's Python without TensorFlow."""
    return {**NO_TENSORFLOW, "QGIS_CUSTOM_CONFIG_PATH": str(profile), **extra}


def dependencies(profile: Path) -> Path:
    """The folder the installer fills in a profile made by QGIS_CUSTOM_CONFIG_PATH."""
    return profile / "profiles" / "default" / "python" / "dependencies"


def leftovers(profile: Path) -> list:
    """Temporary folders of the installer beside the dependencies folder."""
    parent = dependencies(profile).parent
    return [name for name in os.listdir(parent) if name.startswith(PARTIAL)] if parent.is_dir() else []


def test_tensorflow_is_pinned_once_in_requirements_txt_which_the_installer_readme_and_zip_share():
    version = tensorflow_version()
    lines = (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
    assert f"tensorflow-cpu=={version}" in lines
    assert TENSORFLOW == f"tensorflow-cpu=={version}" and TENSORFLOW_MACOS == f"tensorflow=={version}"
    assert requirements("Linux", gpu=False)[0] == f"tensorflow-cpu=={version}"
    assert requirements("Windows", gpu=True)[0] == f"tensorflow-cpu=={version}"
    assert requirements("Darwin", gpu=False)[0] == f"tensorflow=={version}"  # no tensorflow-cpu wheel on macOS
    assert requirements("Linux", gpu=True)[0] == f"tensorflow[and-cuda]=={version}"
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert f'"tensorflow-cpu=={version}"' in readme and f'"tensorflow=={version}"' in readme
    spec = importlib.util.spec_from_file_location("package", ROOT / "tools" / "package.py")
    package = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(package)
    assert "requirements.txt" in package.plugin_files()  # the zip ships what the installer reads


def test_numpy_stays_the_one_qgis_imported_when_tensorflow_takes_it_else_on_gdals_major():
    assert numpy_pin("1.24.2") == "numpy<2"  # Debian 12: TensorFlow needs 1.26, GDAL's bindings 1.x
    assert numpy_pin("1.26.4") == "numpy==1.26.4"
    assert numpy_pin("2.2.4") == "numpy==2.2.4"  # Debian 13, QGIS 3.40+: the numpy already imported, no restart
    assert numpy_pin(None) in ("numpy<2", "numpy>=2,<3", "numpy")



def running(text: str) -> list:
    """The pids whose command line holds `text` (read from /proc: a minimal Debian has no pgrep)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            command = (Path("/proc") / entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:  # not a process, or one that just ended
            continue
        if entry.isdigit() and int(entry) != os.getpid() and text in command:
            found.append(int(entry))
    return found

@pytest.mark.slow
def test_qgis_process_installs_into_the_profile_then_valid_part_runs_there(tmp_path):
    profile = tmp_path / "profile"
    env = profile_env(profile)
    before = qgis_process("run", "seamless:installdependencies", "--", "MODE=1", env=env)
    assert before.returncode == 0, before.stdout + before.stderr
    assert "nothing installed" in before.stdout and "TensorFlow the plugin would use: none found" in before.stdout
    # the real index (and pip's cache: no --no-cache-dir), pip run by QGIS's own Python
    install = qgis_process("run", "seamless:installdependencies", env=env, timeout=1800)
    log = install.stdout + install.stderr
    assert install.returncode == 0, log[-4000:]
    folder = dependencies(profile)
    assert (folder / "tensorflow").is_dir() and (folder / "numpy").is_dir(), log[-3000:]
    assert f"Installing {requirements()[0]}" in log and "with /usr/bin/python3" in log
    assert "--break-system-packages" not in log and "Traceback" not in log
    assert leftovers(profile) == []
    # the same profile, a new qgis_process: the folder is first on sys.path, TensorFlow comes from it, and numpy
    # too, unless QGIS had imported its own before the plugin loaded (QGIS 3.40) at the very version installed
    status = qgis_process("run", "seamless:installdependencies", "--", "MODE=1", env=env)
    assert f"TensorFlow the plugin would use: {tensorflow_version().rstrip('*')}" in status.stdout, status.stdout
    assert f"from {folder}/tensorflow" in status.stdout, status.stdout
    numpy_version, numpy_path = re.search(r"numpy the plugin would use: (\S+) from (\S+)", status.stdout).groups()
    installed = next(p.name[len("numpy-"):-len(".dist-info")] for p in folder.glob("numpy-*.dist-info"))
    assert numpy_path.startswith(f"{folder}/numpy") or numpy_version == installed, status.stdout
    output = tmp_path / "valid.tif"
    run = qgis_process("run", "seamless:validpartinference", "--", f"MODEL={MODEL}", f"SOURCE1={PAN}",
                       f"SOURCE2={XS}", f"OUTPUT={output}", env=env)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    assert "using estimated_crop32" in run.stdout
    same = tmp_path / "same.tif"  # the project's venv, which the other tests use: the same pixels
    reference = qgis_process("run", "seamless:validpartinference", "--", f"MODEL={MODEL}", f"SOURCE1={PAN}",
                             f"SOURCE2={XS}", f"OUTPUT={same}")
    assert reference.returncode == 0, reference.stderr[-3000:]
    assert np.abs(gdal.Open(str(output)).ReadAsArray() - gdal.Open(str(same)).ReadAsArray()).max() == 0.0
    clean = {**os.environ, "PYTHONNOUSERSITE": "1", "PYTHONPATH": ""}
    system = subprocess.run(["/usr/bin/python3", "-c", "import tensorflow"], capture_output=True, text=True,
                            env=clean, check=False)
    assert system.returncode != 0 and "No module named 'tensorflow'" in system.stderr
    # the folder after the system's packages instead of before: the notice sees the system's numpy (1.24 on
    # Debian 12) too old for TensorFlow, without importing TensorFlow
    behind = subprocess.run(["/usr/bin/python3", "-c", f"import sys; sys.path.insert(0, {str(PLUGINS)!r}); "
                             f"sys.path.append({str(folder)!r}); import numpy; "
                             "from seamless_inference.engine.dependencies import tensorflow_problem; "
                             "print(numpy.__version__); print(tensorflow_problem())"],
                            capture_output=True, text=True, env=clean, check=True).stdout.splitlines()
    system_numpy, problem = behind[0], (behind[1:] or [""])[0]
    old_numpy = tuple(map(int, system_numpy.split(".")[:2])) < (1, 26)
    assert problem == (f"numpy {system_numpy} in QGIS's Python is older than TensorFlow needs (1.26)"
                       if old_numpy else ""), behind
    # Remove: the folder goes, and the plugin says again how to install TensorFlow
    removed = qgis_process("run", "seamless:installdependencies", "--", "MODE=2", env=env)
    assert removed.returncode == 0 and not folder.exists() and leftovers(profile) == [], removed.stdout
    again = qgis_process("run", "seamless:validpartinference", "--", f"MODEL={MODEL}", f"SOURCE1={PAN}",
                         f"SOURCE2={XS}", f"OUTPUT={tmp_path / 'after.tif'}", env=env)
    assert again.returncode != 0 and "TensorFlow cannot be imported" in again.stdout + again.stderr


@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["Ctrl-C", "SIGTERM"])
def test_stopping_qgis_process_while_pip_runs_leaves_the_folder_as_it_was(tmp_path, signum):
    profile = tmp_path / "profile"
    folder = dependencies(profile)
    folder.mkdir(parents=True)
    (folder / "marker.txt").write_text("installed before", encoding="utf-8")
    env = {**os.environ, **profile_env(profile)}
    process = subprocess.Popen([str(QGIS_PROCESS), "run", "seamless:installdependencies"], env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    seen = []
    for line in process.stdout:  # pip has started collecting packages: the signal acts as Cancel
        seen.append(line)
        if line.startswith(("Collecting ", "Processing ")):
            time.sleep(1)
            process.send_signal(signum)
            break
    log = "".join(seen) + process.communicate(timeout=300)[0]
    assert process.returncode != 0, log[-3000:]
    if signum == signal.SIGINT:  # qgis_process reports the cancel; SIGTERM then ends it, as asked, once clean
        assert "Cancelled: pip was stopped" in log, log[-3000:]
    else:
        assert process.returncode == -signal.SIGTERM, (process.returncode, log[-3000:])
    assert sorted(os.listdir(folder)) == ["marker.txt"], log[-3000:]
    assert (folder / "marker.txt").read_text(encoding="utf-8") == "installed before"
    assert leftovers(profile) == []
    assert "Traceback" not in log
    assert not running(f"--target {folder.parent}/"), "pip still runs after qgis_process ended"


@pytest.mark.slow
def test_an_unreachable_package_index_gives_the_cause_and_the_fix(tmp_path):
    profile = tmp_path / "profile"
    # this machine's pip configuration (a local mirror, find-links) cleared: only a port nothing listens on
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    env.update(profile_env(profile), PIP_CONFIG_FILE=os.devnull, PIP_INDEX_URL="http://127.0.0.1:9/simple",
               PIP_RETRIES="0")
    run = subprocess.run([str(QGIS_PROCESS), "run", "seamless:installdependencies"], env=env, capture_output=True,
                         text=True, timeout=600, check=False)
    log = run.stdout + run.stderr
    assert run.returncode != 0
    assert "failed: the package index http://127.0.0.1:9/simple cannot be reached; check the network connection" \
        in log, log[-3000:]
    assert "Traceback" not in log
    assert not dependencies(profile).exists() and leftovers(profile) == []


def test_a_cancel_from_the_caller_stops_pip_and_leaves_the_folder_as_it_was(tmp_path):
    """The dialog's Cancel (feedback.isCanceled) as the engine sees it: pip stopped once it collects packages."""
    folder = tmp_path / "python" / "dependencies"
    folder.mkdir(parents=True)
    (folder / "marker.txt").write_text("installed before", encoding="utf-8")
    lines = []
    with pytest.raises(Cancelled):
        install(str(folder), log_info=lines.append, python="/usr/bin/python3",
                is_canceled=lambda: any(line.startswith(("Collecting ", "Processing ")) for line in lines))
    assert any(line.startswith(("Collecting ", "Processing ")) for line in lines), lines
    assert sorted(os.listdir(folder)) == ["marker.txt"] and os.listdir(folder.parent) == ["dependencies"]


def test_a_python_without_pip_gives_the_cause_and_the_fix(tmp_path):
    python = tmp_path / "nopip" / "bin" / "python3"
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", str(tmp_path / "nopip")], check=True)
    folder = tmp_path / "python" / "dependencies"
    with pytest.raises(InstallFailed) as failed:
        install(str(folder), log_info=lambda line: None, python=str(python))
    message = str(failed.value)
    assert f"QGIS's Python ({python}) has no pip" in message and "apt install python3-pip" in message, message
    assert "No module named pip" in failed.value.tail
    assert os.listdir(folder.parent) == []  # neither the folder nor a temporary one


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="mounts a small tmpfs for the profile (root only)")
def test_a_disk_too_small_is_refused_before_pip_runs(tmp_path):
    small = tmp_path / "small"
    small.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(small)], capture_output=True,
                             text=True, check=False)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        run = qgis_process("run", "seamless:installdependencies", env=profile_env(small / "profile"))
        log = run.stdout + run.stderr
        assert run.returncode != 0
        assert "needs about 2.5 GB on the disk of" in log and "free some space and install again" in log, log[-3000:]
        assert "Traceback" not in log and not dependencies(small / "profile").exists()
        assert leftovers(small / "profile") == []
    finally:
        subprocess.run(["umount", str(small)], check=False)


NO_RESTART_SCRIPT = """
import sys
sys.path.insert(0, {plugins!r})
import numpy  # imported before the install, as QGIS does; TensorFlow takes this version
from seamless_inference.engine import InferenceRequest, run_inference
from seamless_inference.engine.installer import install
result = install({folder!r}, log_info=lambda line: None)
import tensorflow
from conftest import seed_sources
run_inference(InferenceRequest({model!r}, seed_sources(), output_names=("estimated_crop32",)), {output!r})
print(repr(result.restart), numpy.__version__, tensorflow.__file__, sys.modules["numpy"].__file__)
"""


@pytest.mark.slow
def test_when_the_imported_numpy_fits_the_same_process_runs_the_model_without_a_restart(tmp_path):
    """The venv's numpy 1.26 is imported first: the installer pins it, puts the folder first on sys.path, and
    TensorFlow then imports from the folder and runs the model in the same process."""
    folder, output = tmp_path / "python" / "dependencies", tmp_path / "valid.tif"
    script = NO_RESTART_SCRIPT.format(plugins=str(PLUGINS), folder=str(folder), model=str(MODEL), output=str(output))
    run = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-c", script], capture_output=True, text=True,
                         cwd=ROOT / "tests", timeout=1800, check=False)
    assert run.returncode == 0, run.stderr[-3000:]
    restart, numpy_version, tensorflow_file, numpy_file = run.stdout.split()[-4:]
    assert restart == "''" and tensorflow_file.startswith(str(folder)), run.stdout
    assert (folder / f"numpy-{numpy_version}.dist-info").is_dir()  # the version imported, pinned
    assert not numpy_file.startswith(str(folder))  # still the one imported first: nothing to restart
    assert gdal.Open(str(output)).RasterXSize == gdal.Open(str(PAN)).RasterXSize  # Full mode: all of PAN


def test_an_install_removes_the_temporary_folders_of_ended_processes_only(tmp_path):
    ended = subprocess.Popen(["true"])
    ended.wait()
    (tmp_path / f"{PARTIAL}{ended.pid}-killed.partial" / "numpy").mkdir(parents=True)  # a killed install's
    (tmp_path / f"{PARTIAL}{os.getpid()}-running.partial").mkdir()  # an install still running
    remove_stale(str(tmp_path / "dependencies"))
    assert os.listdir(tmp_path) == [f"{PARTIAL}{os.getpid()}-running.partial"]


@pytest.mark.slow
def test_the_notice_sees_a_numpy_that_qgis_gdal_was_not_built_with(tmp_path):
    """numpy 2 (installed here from the index) found before the venv's TensorFlow, under Debian 12's GDAL built
    for numpy 1.x: the notice's check says so; under QGIS 3.40's GDAL (numpy 2) it sees nothing."""
    numpy2 = tmp_path / "numpy2"
    subprocess.run(["/usr/bin/python3", "-m", "pip", "install", "-q", "--target", str(numpy2), "numpy>=2,<3"],
                   check=True, capture_output=True, env={**os.environ, "PIP_ROOT_USER_ACTION": "ignore"})
    site = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-c",
                           "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    run = subprocess.run(["/usr/bin/python3", "-c", "from seamless_inference.engine.dependencies import "
                          "tensorflow_problem; import numpy, osgeo; print(numpy.__version__); "
                          "print(tensorflow_problem())"], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONNOUSERSITE": "1", "PYTHONPATH": f"{numpy2}:{site}:{PLUGINS}"})
    version, problem = run.stdout.splitlines()[-2:]
    system = subprocess.run(["/usr/bin/python3", "-c", "import numpy; print(numpy.__version__)"], text=True,
                            capture_output=True, env={**os.environ, "PYTHONNOUSERSITE": "1", "PYTHONPATH": ""},
                            check=True).stdout.strip()
    if system.startswith("1."):  # Debian 12: GDAL's bindings were built for numpy 1.x
        assert problem.startswith(f"numpy {version} in QGIS's Python is not the one QGIS's GDAL was built with"), (
            run.stdout + run.stderr[-2000:])
    else:
        assert problem == "", problem
