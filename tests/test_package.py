"""make package: the zip holds only the plugin, installs as the Plugin Manager does, runs from a fresh profile."""

import importlib.util
import os
import shutil
import subprocess
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT
from desktop import run_desktop
from osgeo import gdal

pytestmark = pytest.mark.slow

QGIS_PROCESS_BIN = "/usr/bin/qgis_process.bin"
INSTALLER_UNZIP = Path("/usr/share/qgis/python/pyplugin_installer/unzip.py")


def plugin_name(archive: zipfile.ZipFile) -> str:
    """The plugin name as the Plugin Manager's Install from ZIP finds it (QGIS 3.22 installer.py)."""
    metadata = sorted(f for f in archive.namelist() if f.endswith("metadata.txt"))
    assert metadata, "no metadata.txt: the Plugin Manager refuses the zip ('No root folder was found inside')"
    return os.path.split(metadata[0])[0]


def test_the_zip_holds_the_plugin_and_nothing_else(package):
    with zipfile.ZipFile(package) as archive:
        names = archive.namelist()
        assert plugin_name(archive) == "seamless_inference"
        assert archive.testzip() is None
    assert names[0] == "seamless_inference/"
    assert all(n.startswith("seamless_inference/") for n in names), [n for n in names if "/" not in n]
    files = {n[len("seamless_inference/"):] for n in names if not n.endswith("/")}
    for needed in ("metadata.txt", "__init__.py", "unsupported_python.py", "plugin.py", "LICENSE", "README.md",
                   "requirements.txt", "provider/provider.py", "provider/notices.py", "algorithms/base.py",
                   "engine/inference.py", "icons/seamless.svg", "sample/model/saved_model.pb", "sample/model/variables/variables.index",
                   "sample/data/pan.tif", "sample/data/xs.tif", "sample/data/README.md", "sample/model_card.md",
                   "sample/train_model.py", "models/seed_workflow.model3", "models/class_polygons.model3"):
        assert needed in files, f"{needed} is missing from {package.name}"
    for package_dir in ("provider", "algorithms", "engine"):  # every module of the plugin
        for module in (ROOT / package_dir).glob("*.py"):
            assert f"{package_dir}/{module.name}" in files, f"{package_dir}/{module.name} is missing"
    for icon in (ROOT / "icons").glob("*.svg"):
        assert f"icons/{icon.name}" in files
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    for picture in (f for f in files if f.startswith("docs/")):
        assert picture in readme, f"{picture} is packaged but README.md does not show it"
    unwanted = [f for f in files if f.split("/")[0] in ("tests", "tools", "bench", "output", "dist", ".build",
                                                          ".venv", ".git", ".ci", ".qgis-settings")
                or "__pycache__" in f or f.endswith((".pyc", ".partial.tif")) or "/." in "/" + f]
    assert not unwanted, f"not plugin files: {unwanted}"
    assert package.stat().st_size < 10e6, f"{package.stat().st_size / 1e6:.1f} MB"


def test_installed_from_the_zip_into_a_fresh_profile_it_runs_in_qgis_process(package, tmp_path):
    profile = tmp_path / "profile"
    plugins = profile / "profiles" / "default" / "python" / "plugins"
    # what Install from ZIP does: the installer's own unzip() into the profile's plugin folder
    spec = importlib.util.spec_from_file_location("qgis_plugin_installer_unzip", INSTALLER_UNZIP)
    installer_unzip = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(installer_unzip)
    installer_unzip.unzip(str(package), str(plugins))
    installed = plugins / "seamless_inference"
    assert (installed / "metadata.txt").is_file(), os.listdir(plugins)

    site = subprocess.run([str(ROOT / ".venv" / "bin" / "python"), "-c",
                           "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    env = {k: v for k, v in os.environ.items() if k not in ("QGIS_PLUGINPATH", "PYTHONPATH", "PYTHONHOME")}
    env.update(QGIS_CUSTOM_CONFIG_PATH=str(profile), PYTHONPATH=site, QT_QPA_PLATFORM="offscreen",
               TF_CPP_MIN_LOG_LEVEL="2")

    def qgis_process(*args):
        return subprocess.run([QGIS_PROCESS_BIN, *map(str, args)], capture_output=True, text=True, env=env,
                              timeout=300, check=False, cwd=tmp_path)

    enable = qgis_process("plugins", "enable", "seamless_inference")
    assert enable.returncode == 0, enable.stdout + enable.stderr
    listing = qgis_process("list")
    assert "seamless:validpartinference" in listing.stdout, listing.stdout[-2000:] + listing.stderr[-2000:]
    output = tmp_path / "valid.tif"
    run = qgis_process("run", "seamless:validpartinference", "--", f"MODEL={installed / 'sample' / 'model'}",
                       f"SOURCE1={installed / 'sample' / 'data' / 'pan.tif'}",
                       f"SOURCE2={installed / 'sample' / 'data' / 'xs.tif'}", f"OUTPUT={output}")
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "using estimated_crop32" in run.stdout
    dataset = gdal.Open(str(output))
    assert (dataset.RasterXSize, dataset.RasterYSize, dataset.RasterCount) == (500, 500, 6)
    assert dataset.GetRasterBand(1).GetDescription() == "estimated_crop32[0]"


def test_the_plugin_managers_install_from_zip_accepts_it(package, tmp_path):
    """The desktop's own installer (Plugins > Manage and Install Plugins > Install from ZIP) on a bare profile."""
    if not shutil.which("xvfb-run") or not shutil.which("qgis"):
        pytest.skip("needs xvfb-run and the QGIS desktop (make apt)")
    report, status, log = run_desktop(tmp_path, checkout_plugin=False, env_extra={"SEAMLESS_ZIP": str(package)},
                                      script='''
        @step
        def install():
            import pyplugin_installer

            report["before"] = "seamless_inference" in qgis.utils.available_plugins
            pyplugin_installer.instance().installFromZipFile(os.environ["SEAMLESS_ZIP"])
            import seamless_inference

            report["module"] = seamless_inference.__file__
            # where the installer puts plugins, by the API every version has (qgis.utils renamed its variable)
            report["home plugin path"] = QgsApplication.qgisSettingsDirPath().rstrip("/") + "/python/plugins"
            report["active plugins"] = list(qgis.utils.active_plugins)
            report["enabled"] = QgsSettings().value("PythonPlugins/seamless_inference", False, bool)
            provider = QgsApplication.processingRegistry().providerById("seamless")
            report["algorithms"] = sorted(a.id() for a in provider.algorithms()) if provider else []
            finish()
    ''')
    assert not report["before"]
    assert report["module"].startswith(report["home plugin path"] + "/seamless_inference/"), report["module"]
    assert "seamless_inference" in report["active plugins"] and report["enabled"]
    assert "seamless:validpartinference" in report["algorithms"] and len(report["algorithms"]) >= 5
    assert status == 0, f"exit status {status}:\n{log[-3000:]}"


def test_every_algorithm_has_its_readme_section_icon_help_and_upper_case_parameters(provider):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    algorithms = provider.algorithms()
    assert len(algorithms) >= 5
    icons = set()
    for algorithm in algorithms:
        anchor = algorithm.helpUrl().split("#", 1)[1]
        assert f"\n### {anchor}\n" in readme, f"README.md has no section '### {anchor}' for {algorithm.id()}"
        assert (ROOT / "icons" / algorithm.ICON).is_file() and not algorithm.icon().isNull()
        icons.add(algorithm.ICON)
        names = [p.name() for p in algorithm.parameterDefinitions()]
        names += [o.name() for o in algorithm.outputDefinitions()]
        assert all(name == name.upper() for name in names), f"{algorithm.id()}: {names}"
        text = algorithm.shortHelpString()
        assert "\n" not in text, f"{algorithm.id()}: QGIS's help panel makes a paragraph of every line"
        if algorithm.id() == "seamless:installdependencies":  # installs TensorFlow: no model, no fields
            assert "python/dependencies" in text and "Cancel" in text, f"{algorithm.id()}: {text}"
            continue
        if algorithm.id() == "seamless:classnames":  # names class values: the class polygons model's step
            assert "class_polygons.model3" in text and "gdal:sieve" in text, f"{algorithm.id()}: {text}"
            continue
        if algorithm.id() != "seamless:modelanalysis":
            assert "Model analysis" in text, f"{algorithm.id()}: no pointer to Model analysis in its help"
        assert "efield = rfield - 2 x" in text.lower(), f"{algorithm.id()}: no valid-part formula in its help"
    assert len(icons) == len(algorithms), "each algorithm has an icon of its own"
