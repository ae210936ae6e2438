"""make package: the plugin zip for the Plugin Manager (Plugins > Manage and Install Plugins > Install from ZIP).

    .venv/bin/python tools/package.py [--out dist]   ->   dist/seamless_inference-<version>.zip

The zip holds one folder, `seamless_inference/` (QGIS names the plugin after the folder that holds
metadata.txt), with only what the plugin needs at run time: metadata.txt, __init__.py, unsupported_python.py,
plugin.py, requirements.txt (the TensorFlow version the installer pins), provider/, algorithms/, engine/, icons/,
the sample (model, data and their README, model card, training script), models/ (the seed as a .model3),
README.md, the pictures README.md shows, and LICENSE (plugins.qgis.org refuses a zip without it). Never tests/,
tools/, bench/, the venv, build folders, caches or anything git ignores. Entries are sorted and dated 1980-01-01,
so the same tree gives the same zip. tests/test_publishable.py checks the zip as plugins.qgis.org's upload
validator and security scan do.
"""

import argparse
import configparser
import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = "seamless_inference"
FILES = ("metadata.txt", "__init__.py", "unsupported_python.py", "plugin.py", "README.md", "LICENSE",
         "requirements.txt")  # requirements.txt: the TensorFlow pin the installer reads
FOLDERS = ("provider", "algorithms", "engine", "icons", "sample", "models")
SKIP_PARTS = {"__pycache__", ".pytest_cache", ".ipynb_checkpoints"}
SKIP_SUFFIXES = (".pyc", ".pyo", ".partial.tif", "~")
# plugins.qgis.org's PLUGIN_REQUIRED_METADATA (qgis-app/plugins/validator.py)
REQUIRED_METADATA = ("name", "description", "version", "qgisMinimumVersion", "author", "email", "about", "tracker",
                     "repository")
DATE = (1980, 1, 1, 0, 0, 0)


def metadata() -> dict:
    """The [general] section of metadata.txt, checked for the keys plugins.qgis.org requires and for the files it
    names (icon) or needs (LICENSE)."""
    parser = configparser.ConfigParser(interpolation=None)
    parser.optionxform = str  # keys are case-sensitive (qgisMinimumVersion)
    parser.read(ROOT / "metadata.txt", encoding="utf-8")
    general = dict(parser["general"])
    missing = [key for key in REQUIRED_METADATA if not general.get(key, "").strip()]
    if missing:
        raise SystemExit(f"metadata.txt lacks {', '.join(missing)}")
    if not (ROOT / general.get("icon", "")).is_file():
        raise SystemExit(f"metadata.txt names the icon {general.get('icon')!r}, which does not exist")
    if not (ROOT / "LICENSE").is_file():
        raise SystemExit("LICENSE is missing: plugins.qgis.org refuses a plugin zip without one")
    return general


def readme_pictures() -> list:
    """The files under docs/ that README.md shows (relative paths)."""
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return sorted({m for m in re.findall(r"\((docs/[^)\s]+)\)", text) if (ROOT / m).is_file()})


def git_ignored(paths: list) -> set:
    """The paths git ignores (none when this is not a git checkout)."""
    if not paths or not (ROOT / ".git").exists():
        return set()
    run = subprocess.run(["git", "check-ignore", "--no-index", "--stdin"], cwd=ROOT, capture_output=True,
                         text=True, input="\n".join(paths), check=False)
    return set(run.stdout.split("\n")) - {""}


def plugin_files() -> list:
    """Paths relative to the checkout, sorted, of everything the zip holds."""
    candidates = [name for name in FILES if (ROOT / name).is_file()]
    for folder in FOLDERS:
        for path in sorted((ROOT / folder).rglob("*")):
            relative = path.relative_to(ROOT)
            if (path.is_file() and not SKIP_PARTS.intersection(relative.parts)
                    and not any(part.startswith(".") for part in relative.parts)
                    and not path.name.endswith(SKIP_SUFFIXES)):
                candidates.append(relative.as_posix())
    candidates += readme_pictures()
    ignored = git_ignored(candidates)
    return sorted(path for path in candidates if path not in ignored)


def build(out: Path) -> Path:
    """Write <out>/seamless_inference-<version>.zip and return its path."""
    version = metadata()["version"]
    files = plugin_files()
    out.mkdir(parents=True, exist_ok=True)
    target = out / f"{PLUGIN}-{version}.zip"
    partial = target.with_suffix(".zip.partial")
    folders = sorted({"/".join(Path(f).parts[:i]) for f in files for i in range(1, len(Path(f).parts))})
    with zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as archive:
        # the plugin folder first: QGIS takes the plugin's name from the folder of metadata.txt
        for folder in ["", *folders]:
            info = zipfile.ZipInfo(f"{PLUGIN}/{folder}/" if folder else f"{PLUGIN}/", DATE)
            info.external_attr = (0o40755 << 16) | 0x10
            archive.writestr(info, b"")
        for name in files:
            info = zipfile.ZipInfo(f"{PLUGIN}/{name}", DATE)
            info.external_attr = 0o100644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, (ROOT / name).read_bytes())
    partial.replace(target)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=ROOT / "dist", help="folder of the zip (default dist/)")
    target = build(parser.parse_args().out.resolve())
    with zipfile.ZipFile(target) as archive:
        names = [n for n in archive.namelist() if not n.endswith("/")]
    size = target.stat().st_size
    print(f"{target} ({len(names)} files, {size / 1e6:.2f} MB): Plugins > Manage and Install Plugins > "
          "Install from ZIP")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
