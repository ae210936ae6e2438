"""plugins.qgis.org takes the zip `make package` builds: it passes the site's upload validator and its security scan
(bandit, detect-secrets, file checks), and each check refuses a zip made bad on purpose. On a Python older than the
plugin's code needs, QGIS loads the plugin and it says why it does nothing.

What the site does, read in qgis/QGIS-Plugins-Website (formerly qgis/QGIS-Django), qgis-app/plugins/:
- validator.py, validator(): the upload is refused above 25 MB, for a name with `..` or a leading `/`, any `.pyc`,
  a `__MACOSX`, `.git` or `__pycache__` folder, a bad zip, no top folder, a top folder that is not an ASCII name
  (not a Python identifier, for a new plugin), no `__init__.py` or metadata.txt, a metadata.txt configparser
  cannot read (with interpolation: a `%` fails), a missing required key, a tracker/repository/homepage that is not
  an absolute URL or is the cookbook's placeholder (then unreachable: a HEAD request, not repeated here, offline),
  no `LICENSE` file at the plugin's root (since June 2024), an author with a slash;
- models.py: versions are stored in 32 characters (VersionField, QGVersionZeroForcedField);
- security_scanner.py + security_utils.py + tasks/run_security_scan.py: the zip is extracted, then
  `bandit -r <dir> -f json --quiet -t <enabled rules>` (all severities; `-ll` when no rule is configured) and
  `detect-secrets scan --all-files` in it; any finding of either blocks the version; .py files with an executable
  bit, hidden files and .exe/.dll/.so/.dylib/.bat/.sh/.ps1/.cmd files are reported;
- management/commands/data/bandit_rules.json: every bandit test runs but B109, B404, B410, B411.
The category list is QGIS's (QGIS-Documentation, pyqgis_developer_cookbook/plugins/plugins.rst).
"""

import ast
import configparser
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import PLUGINS, ROOT

MAX_UPLOAD_BYTES = 25_000_000  # PLUGIN_MAX_UPLOAD_SIZE
REQUIRED_METADATA = ("name", "description", "version", "qgisMinimumVersion", "author", "email", "about", "tracker",
                     "repository")  # PLUGIN_REQUIRED_METADATA
FORBIDDEN_FOLDERS = ("__MACOSX", ".git", "__pycache__")
PLACEHOLDER_URLS = {"tracker": "http://bugs", "repository": "http://repo", "homepage": "http://homepage"}
CATEGORIES = ("Raster", "Vector", "Database", "Mesh", "Web")
BOOLEAN_METADATA = ("experimental", "deprecated", "server", "hasProcessingProvider")
# the bandit rules the site leaves disabled and that bandit 1.9 still has (B109 and B410 are gone from it)
SITE_BANDIT_SKIPS = ("B404", "B411")
SUSPICIOUS_SUFFIXES = (".exe", ".dll", ".so", ".dylib", ".bat", ".sh", ".ps1", ".cmd")


def upload_problems(package: Path) -> list:
    """What plugins.qgis.org's upload validator refuses in a zip, in its order, as sentences (none: accepted); plus
    what QGIS's Plugin Manager and the site's database need of the same metadata (category, version formats)."""
    problems = []
    if package.stat().st_size > MAX_UPLOAD_BYTES:
        problems.append(f"the zip is {package.stat().st_size / 1e6:.1f} MB, the site takes 25 MB at most")
    with zipfile.ZipFile(package) as archive:
        names = archive.namelist()
        for name in names:
            parts = name.split("/")
            if ".." in name or name.startswith("/"):
                problems.append(f"{name}: path information")
            if ".pyc" in name:
                problems.append(f"{name}: a .pyc file")
            problems += [f"{name}: a {folder} folder" for folder in FORBIDDEN_FOLDERS if folder in parts]
        if archive.testzip() is not None:
            problems.append(f"bad zip: {archive.testzip()}")
        tops = sorted({name.split("/")[0] for name in names})
        if not names or "/" not in names[0] or len(tops) > 1:
            return problems + [f"the zip holds {tops} rather than one plugin folder first"]
        top = tops[0]
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9_-]+", top) or not re.fullmatch(r"[a-z_][a-z0-9_]*", top):
            problems.append(f"plugin folder {top!r}: a new plugin's folder is a lower-case Python identifier")
        for needed in ("__init__.py", "metadata.txt", "LICENSE"):
            if f"{top}/{needed}" not in names:
                problems.append(f"no {needed} in {top}/")
        if f"{top}/metadata.txt" not in names:
            return problems
        general, errors = metadata_of(archive.read(f"{top}/metadata.txt"))
        if errors:
            return problems + errors
        if general.get("icon") and f"{top}/{general['icon'].removeprefix('./')}" not in names:
            problems.append(f"icon {general['icon']!r} is not in the zip")
    return problems + metadata_problems(general)


def metadata_of(text: bytes) -> tuple:
    """metadata.txt's [general] section read as the site and QGIS's installer read it (configparser with its
    interpolation), and what stops them reading it."""
    parser = configparser.ConfigParser()
    parser.optionxform = str
    try:
        parser.read_string(text.decode("utf-8"))
        return dict(parser.items("general")), []
    except (UnicodeDecodeError, configparser.Error) as exc:
        return {}, [f"metadata.txt cannot be read: {exc}".splitlines()[0]]


def metadata_problems(general: dict) -> list:
    """The metadata rules: required keys, URLs, author, version formats, booleans, category."""
    problems = [f"metadata.txt lacks {key}" for key in REQUIRED_METADATA if not general.get(key, "").strip()]
    for key, placeholder in PLACEHOLDER_URLS.items():
        url = general.get(key, "").strip()
        parsed = urlparse(url)
        if (url or key != "homepage") and (url == placeholder or not (parsed.scheme and parsed.netloc)):
            problems.append(f"{key} {url!r} is not a URL")
    if "/" in general.get("author", ""):
        problems.append("the author has a slash")
    if not re.fullmatch(r"\d+(\.\d+){0,3}", general.get("version", "").strip()) or len(general["version"]) > 32:
        problems.append(f"version {general.get('version')!r} is not dotted numbers (32 characters at most)")
    versions = [general.get(key, "").strip() for key in ("qgisMinimumVersion", "qgisMaximumVersion")]
    if not all(re.fullmatch(r"\d+\.\d+(\.\d+)?", v) for v in versions if v) or not versions[0]:
        problems.append(f"QGIS versions {versions} are not x.y or x.y.z")
    elif versions[1] and tuple(map(int, versions[1].split("."))) < tuple(map(int, versions[0].split("."))):
        problems.append(f"qgisMaximumVersion {versions[1]} is below qgisMinimumVersion {versions[0]}")
    for key in BOOLEAN_METADATA:
        if key in general and general[key].strip().lower() not in ("true", "false", "yes", "no", "1", "0"):
            problems.append(f"{key}={general[key]!r} is not a boolean")
    if general.get("category") and general["category"].strip() not in CATEGORIES:
        problems.append(f"category {general['category']!r} is not one of QGIS's {', '.join(CATEGORIES)}")
    return problems


def scanner(module: str):
    """The scanner the site runs, from this Python (requirements.txt pins it); a failure when it is missing."""
    if importlib.util.find_spec(module) is None:
        pytest.fail(f"{module} is not installed: .venv/bin/python -m pip install -r requirements.txt")
    return [sys.executable, "-m", module]


def bandit_findings(folder: Path) -> list:
    """bandit over an extracted zip with the site's rules, every severity and confidence: 'file:line id text'."""
    run = subprocess.run([*scanner("bandit"), "-r", str(folder), "-f", "json", "--quiet",
                          "-s", ",".join(SITE_BANDIT_SKIPS)], capture_output=True, text=True, timeout=300,
                         check=False)
    report = json.loads(run.stdout)
    return ([f"{Path(r['filename']).relative_to(folder)}:{r['line_number']} {r['test_id']} {r['issue_text']}"
             for r in report["results"]] + [f"bandit could not read {e['filename']}: {e['reason']}"
                                            for e in report["errors"]])


def secrets_found(folder: Path) -> list:
    """detect-secrets over every file of an extracted zip, as the site runs it (with metadata.txt too, which the
    site now leaves out): 'file:line type'."""
    run = subprocess.run([*scanner("detect_secrets"), "scan", "--all-files", "."], cwd=folder, capture_output=True,
                         text=True, timeout=300, check=True)
    return [f"{name}:{secret['line_number']} {secret['type']}"
            for name, secrets in json.loads(run.stdout)["results"].items() for secret in secrets]


@pytest.fixture(scope="module")
def extracted(package, tmp_path_factory) -> Path:
    """The zip extracted as the site's scanner extracts it: the folder that holds seamless_inference/."""
    folder = tmp_path_factory.mktemp("extracted")
    with zipfile.ZipFile(package) as archive:
        archive.extractall(folder)
    return folder


def rewritten(package: Path, target: Path, top="seamless_inference", drop=(), add=None, metadata=None) -> Path:
    """A copy of the plugin zip with another plugin folder name, entries dropped or added (paths inside the plugin
    folder, or from the zip's root when they start with '/'), or metadata.txt's text changed by a function."""
    with zipfile.ZipFile(package) as source, zipfile.ZipFile(target, "w") as copy:
        for info in source.infolist():
            inside = info.filename.split("/", 1)[1]
            if inside in drop:
                continue
            data = source.read(info)
            if inside == "metadata.txt" and metadata:
                data = metadata(data.decode("utf-8")).encode("utf-8")
            copy.writestr(f"{top}/{inside}", data)
        for name, data in (add or {}).items():
            copy.writestr(name[1:] if name.startswith("/") else f"{top}/{name}", data)
    return target


def test_plugins_qgis_org_accepts_the_zip(package):
    assert upload_problems(package) == []
    with zipfile.ZipFile(package) as archive:
        general = metadata_of(archive.read("seamless_inference/metadata.txt"))[0]
        license_text = archive.read("seamless_inference/LICENSE").decode("utf-8")
    assert "GPL-2.0-or-later" in license_text and "GNU GENERAL PUBLIC LICENSE\n                       Version 2" in (
        license_text)
    # QGIS 4's plugin manager offers a plugin that declares Qt 6 support and a maximum of 4.x
    assert general["qgisMaximumVersion"] == "4.99" and general["supportsQt6"] == "True"
    about = general["about"]
    for dependency in ("TensorFlow", "pyotb", "OTBTF", "Dask distributed", "Python 3.10"):
        assert dependency in about, f"about does not state the external dependency {dependency}"
    assert "numpy<2" not in about, "numpy's major version follows QGIS's GDAL: no pin in about"
    assert general["version"] in general["changelog"], "the changelog has no line for this version"


@pytest.mark.parametrize("what, change, expected", [
    ("no LICENSE", {"drop": ["LICENSE"]}, "no LICENSE"),
    ("a .pyc", {"add": {"engine/grid.cpython-311.pyc": b"\0"}}, "a .pyc file"),
    ("a __pycache__", {"add": {"engine/__pycache__/grid.py": b""}}, "a __pycache__ folder"),
    ("a __MACOSX folder", {"add": {"/__MACOSX/seamless_inference/._plugin.py": b""}}, "a __MACOSX folder"),
    ("a .git folder", {"add": {".git/HEAD": b"ref: refs/heads/main\n"}}, "a .git folder"),
    ("a path out of the folder", {"add": {"../evil.py": b""}}, "path information"),
    ("a folder name with a space", {"top": "Seamless Inference"}, "lower-case Python identifier"),
    ("no tracker", {"metadata": lambda t: re.sub(r"\ntracker=.*", "", t)}, "lacks tracker"),
    ("a placeholder repository", {"metadata": lambda t: re.sub(r"\nrepository=.*", "\nrepository=http://repo", t)},
     "repository 'http://repo' is not a URL"),
    ("a category QGIS has not", {"metadata": lambda t: t.replace("category=Raster", "category=Analysis")},
     "category 'Analysis'"),
    ("a % in about", {"metadata": lambda t: t.replace("about=", "about=100% ")}, "cannot be read"),
    ("an icon not in the zip", {"drop": ["icons/seamless.svg"]}, "icon 'icons/seamless.svg'"),
    ("a maximum below the minimum", {"metadata": lambda t: t.replace("qgisMaximumVersion=4.99",
                                                                    "qgisMaximumVersion=3.16")}, "below"),
])
def test_the_validator_refuses_a_zip_made_bad(package, tmp_path, what, change, expected):
    bad = rewritten(package, tmp_path / "bad.zip", **change)
    problems = upload_problems(bad)
    assert any(expected in p for p in problems), f"{what}: {problems}"


def test_the_validator_refuses_a_zip_over_25_mb(package, tmp_path):
    big = rewritten(package, tmp_path / "big.zip", add={"sample/data/noise.bin": os.urandom(26_000_000)})
    assert any("25 MB at most" in p for p in upload_problems(big))


def test_bandit_finds_nothing_in_the_plugin_code(extracted):
    assert bandit_findings(extracted) == []


def test_detect_secrets_finds_nothing_in_the_zip(extracted):
    assert secrets_found(extracted) == []


def test_the_scanners_find_what_the_site_blocks(extracted, tmp_path):
    bad = tmp_path / "bad"
    shutil.copytree(extracted, bad)
    plugin = bad / "seamless_inference"
    (plugin / "engine" / "shell.py").write_text("import subprocess\n\n\ndef run(command):\n"
                                                "    return subprocess.run(command, shell=True)\n")
    # the key is put together here so that this test file holds no secret for a scanner to flag
    (plugin / "sample" / "deploy_key.pem").write_text("-----BEGIN " + "RSA PRIVATE KEY-----\nMIIEow\n")
    assert any(" B602 " in f for f in bandit_findings(bad))
    assert any("deploy_key.pem" in s and "Private Key" in s for s in secrets_found(bad))


def test_no_executable_hidden_or_binary_program_file(package):
    with zipfile.ZipFile(package) as archive:
        for info in archive.infolist():
            name = info.filename.rstrip("/").rsplit("/", 1)[-1]
            assert not (info.filename.endswith(".py") and (info.external_attr >> 16) & 0o111), info.filename
            assert not name.startswith("."), f"{info.filename}: a hidden file"
            assert not name.lower().endswith(SUSPICIOUS_SUFFIXES), f"{info.filename}: a program file"


def test_init_and_the_fallback_read_on_python_3_6():
    for name in ("__init__.py", "unsupported_python.py"):
        tree = ast.parse((ROOT / name).read_text(encoding="utf-8"), feature_version=(3, 6))
        relative = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level}
        # provider.profile (the dependencies folder on sys.path) and plugin: only after the version check
        assert relative <= {"plugin", "unsupported_python", "provider.profile"}, f"{name} imports {relative}"


def test_no_module_needs_a_python_newer_than_the_minimum(package):
    from seamless_inference import MINIMUM_PYTHON

    with zipfile.ZipFile(package) as archive:
        modules = [n for n in archive.namelist() if n.endswith(".py")]
        for name in modules:
            ast.parse(archive.read(name), filename=name, feature_version=MINIMUM_PYTHON)
    assert len(modules) > 40


@pytest.mark.slow
@pytest.mark.parametrize("start", ["startPlugin", "startProcessingPlugin"])
def test_on_an_older_python_qgis_loads_the_plugin_and_it_says_why(start):
    """QGIS's own plugin loading (qgis.utils), as the desktop starts a plugin (with a message bar) and as
    qgis_process does (no interface), on a Python that reports 3.9.5 and cannot import the plugin's other modules."""
    script = r"""
import importlib.abc, json, os, sys
from qgis.core import QgsApplication
from qgis.gui import QgsMessageBar
import qgis.utils

plugins, start = sys.argv[1:]
sys.path.insert(0, plugins)
app = QgsApplication([], True)
app.initQgis()
logged, attempts = [], []
QgsApplication.messageLog().messageReceived.connect(lambda text, tag, level: logged.append([tag, text]))


class Refuse(importlib.abc.MetaPathFinder):
    '''An older Python cannot import the plugin's other modules (their `str | None` annotations fail): any
    attempt fails here.'''

    def find_spec(self, name, path, target=None):
        if name.startswith(tuple("seamless_inference." + m for m in ("plugin", "engine", "provider", "algorithms"))):
            attempts.append(name)
            raise ImportError(name + ": not on this Python")


class Desktop:
    '''The part of the desktop's interface the plugin uses: QGIS's message bar.'''

    def __init__(self):
        self.bar = QgsMessageBar()

    def messageBar(self):
        return self.bar


sys.meta_path.insert(0, Refuse())
sys.version_info = (3, 9, 5, "final", 0)
qgis.utils.iface = Desktop() if start == "startPlugin" else None
started = qgis.utils.loadPlugin("seamless_inference") and getattr(qgis.utils, start)("seamless_inference")
report = {"started": started, "logged": logged, "attempts": attempts,
          "bar": [[i.title(), i.text()] for i in qgis.utils.iface.bar.items()] if qgis.utils.iface else None,
          "providers": [p.id() for p in QgsApplication.processingRegistry().providers()]}
print("REPORT " + json.dumps(report), flush=True)
os._exit(0)
"""
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    run = subprocess.run([sys.executable, "-c", script, str(PLUGINS), start], capture_output=True, text=True,
                         env=env, timeout=120, check=False)
    lines = [line for line in run.stdout.splitlines() if line.startswith("REPORT ")]
    assert lines, run.stdout[-2000:] + run.stderr[-2000:]
    report = json.loads(lines[0][len("REPORT "):])
    assert report["started"] is True, report
    assert report["attempts"] == [], "the fallback imported modules an older Python cannot run"
    assert "seamless" not in report["providers"]
    expected = "Seamless Inference needs Python 3.10 or newer, but this QGIS runs Python 3.9.5"
    told = [text for tag, text in report["logged"] if tag == "Seamless Inference" and text.startswith(expected)]
    assert len(told) == 1, report["logged"]
    if start == "startPlugin":
        assert [title for title, text in report["bar"] if text.startswith(expected)] == ["Seamless Inference"]
