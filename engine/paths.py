"""Output files that never harm a user's file: refused before any computation when they would replace an input,
the model, a device or a folder; written under a temporary name; sidecars of a replaced file removed; temporary
files of a killed run cleaned by the next run of the same output."""

import os
import re
import shutil
import stat
import tempfile
import uuid

from .errors import EngineError
from .raster import files_read, is_virtual

RASTER_EXTENSIONS = (".tif", ".tiff")  # what the engine writes: GeoTIFF only
REPORT_EXTENSIONS = (".html", ".htm")
SIDECARS = (".aux.xml", ".ovr", ".msk")  # GDAL's files beside a raster: statistics, overviews, masks
_NAME_MAX = 255
# a temporary file, its own sidecar (left alone when the file itself is gone), or a Dask run's parts folder
_PARTIAL = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)-[0-9a-f]{8}\.(?:partial(?P<ext>\.[A-Za-z]+)(?:\.aux\.xml)?"
                      r"|parts)$")


def check_output(path: str, field: str, inputs=(), model_dir: str | None = None,
                 extensions: tuple = RASTER_EXTENSIONS, what: str = "output") -> str:
    """Refuse an output path that the engine cannot write safely; returns it.

    Refused: no path, a GDAL virtual path, an extension the engine does not write, a folder that is missing or
    not writable, a folder or a device given as the file, any file GDAL reads for one of `inputs` (the input
    itself, a VRT's sources, recursively, its sidecars, the archive behind a /vsizip/ path; same resolved path
    or same inode), the model folder or a file inside it, and a name too long for the temporary name written
    first.
    """
    if not path:
        raise EngineError(f"No {what} path given; choose a file.", field)
    if is_virtual(path):
        raise EngineError(f"The {what} {path!r} is a GDAL virtual path (/vsi...), which GDAL reads but the plugin "
                          "does not write; choose a file on disk.", field)
    name = os.path.basename(path)
    if extensions and not name.lower().endswith(extensions):
        raise EngineError(f"The {what} {path!r} must be a {' or '.join(extensions)} file (the plugin writes "
                          f"{'GeoTIFF' if extensions == RASTER_EXTENSIONS else 'HTML'} only); change its "
                          "extension.", field)
    if os.path.isdir(path):
        raise EngineError(f"The {what} {path!r} is a folder; give a file name inside it.", field)
    if os.path.exists(path) and not stat.S_ISREG(os.stat(path).st_mode):
        raise EngineError(f"The {what} {path!r} is not a regular file (a device or a pipe); choose a file.", field)
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise EngineError(f"The folder of the {what} {folder!r} does not exist; create it or choose another path.",
                          field)
    if not writable(folder):
        raise EngineError(f"The folder of the {what} {folder!r} is not writable (read-only or no permission); "
                          "choose another path.", field)
    if len(temporary_name(name, "0" * 8).encode()) > _NAME_MAX:
        raise EngineError(f"The {what} file name is too long ({len(name.encode())} bytes; at most "
                          f"{_NAME_MAX - len(temporary_name('', '0' * 8).encode())}); shorten it.", field)
    target = os.path.realpath(path)
    for label, candidate in inputs:
        if not candidate:
            continue
        if _same_file(target, candidate):
            raise EngineError(f"The {what} {path!r} is {label}: writing it would destroy the input; choose "
                              "another path.", field)
        for read in files_read(candidate):
            if _same_file(target, read):
                raise EngineError(f"The {what} {path!r} is a file that {label} reads ({candidate!r} refers to "
                                  f"{read!r}): writing it would destroy the input; choose another path.", field)
    if model_dir and _inside(target, model_dir):
        raise EngineError(f"The {what} {path!r} is inside the model folder {model_dir!r}: writing it would "
                          "damage the model; choose a path outside it.", field)
    return path


def check_output_folder(path: str, field: str, inputs=(), model_dir: str | None = None,
                        what: str = "output folder") -> str:
    """Refuse a folder the engine would write files into: a file, a folder without a writable parent, a folder
    holding an input, the model folder or a folder inside it."""
    if not path:
        raise EngineError(f"No {what} given; choose a folder.", field)
    if os.path.exists(path) and not os.path.isdir(path):
        raise EngineError(f"The {what} {path!r} is a file, not a folder; choose a folder.", field)
    existing = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(existing):
        raise EngineError(f"The parent of the {what} {existing!r} does not exist; create it or choose another "
                          "folder.", field)
    if not writable(existing):
        raise EngineError(f"The {what} {existing!r} is not writable (read-only or no permission); choose another "
                          "folder.", field)
    target = os.path.realpath(path)
    if model_dir and _inside(target, model_dir):
        raise EngineError(f"The {what} {path!r} is the model folder or inside it: writing there would damage "
                          "the model; choose a folder outside it.", field)
    return path


def _inside(target: str, folder: str) -> bool:
    """True when the resolved `target` is `folder` or lies below it."""
    folder = os.path.realpath(folder)
    return target == folder or target.startswith(folder.rstrip(os.sep) + os.sep)


def writable(folder: str) -> bool:
    """True when a file can be created in `folder` (tried for real: root passes os.access on a read-only mount
    such as /proc)."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".seamless-write-check-"):
            return True
    except OSError:
        return False


def _same_file(target: str, candidate: str) -> bool:
    """Same resolved path, or the same file reached by a hard link."""
    if os.path.realpath(candidate) == target:
        return True
    try:
        return os.path.samefile(target, candidate)
    except OSError:  # one of them does not exist
        return False


def temporary_name(name: str, tag: str) -> str:
    """`.<name>.<pid>-<tag>.partial<ext>`: hidden, owned by this process (stale once the process is gone)."""
    ext = os.path.splitext(name)[1] or ".tif"
    return f".{name}.{os.getpid()}-{tag}.partial{ext}"


def parts_folder(path: str) -> str:
    """A new folder beside `path` for the parts of a distributed run (stale ones removed as partials are)."""
    remove_stale_partials(path)
    folder, name = os.path.split(os.path.abspath(path))
    return os.path.join(folder, f".{name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.parts")


def temporary_path(path: str) -> str:
    """A new temporary file beside `path`, after removing the stale ones of earlier, killed runs."""
    remove_stale_partials(path)
    folder = os.path.dirname(os.path.abspath(path))
    return os.path.join(folder, temporary_name(os.path.basename(path), uuid.uuid4().hex[:8]))


def remove_stale_partials(path: str) -> list:
    """Remove the temporary files of `path` left by runs whose process no longer exists (kill -9, power cut)."""
    folder, name = os.path.split(os.path.abspath(path))
    removed = []
    try:
        entries = os.listdir(folder)
    except OSError:
        return removed
    for entry in entries:
        match = _PARTIAL.match(entry)
        if not match or match["name"] != name or process_alive(int(match["pid"])):
            continue
        if entry.endswith(".parts"):  # the Dask backend's folder of part files
            shutil.rmtree(os.path.join(folder, entry), ignore_errors=True)
            removed.append(entry)
            continue
        for candidate in (entry, entry + ".aux.xml"):
            try:
                os.remove(os.path.join(folder, candidate))
                removed.append(candidate)
            except OSError:
                pass
    return removed


def process_alive(pid: int) -> bool:
    """True when the process runs (or cannot be told: on Windows os.kill(pid, 0) would end it)."""
    if pid == os.getpid() or os.name != "posix":
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    try:  # Linux: a killed process that its parent has not reaped yet (a zombie) is dead
        with open(f"/proc/{pid}/stat", "rb") as handle:
            return handle.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def replace_file(temp_path: str, path: str) -> None:
    """Move a finished temporary file onto `path` and remove the sidecars of the file it replaces (GDAL and
    QGIS would show the old statistics, overviews or mask with the new pixels)."""
    remove_sidecars(path)
    os.replace(temp_path, path)
    sidecar = temp_path + ".aux.xml"  # the temporary file's own statistics belong to the new file
    if os.path.exists(sidecar):
        os.replace(sidecar, path + ".aux.xml")
    remove_quietly(sidecar)


def remove_sidecars(path: str) -> None:
    """Remove GDAL's sidecar files of `path` (statistics, overviews, masks)."""
    for suffix in SIDECARS:
        candidate = path + suffix
        if os.path.isfile(candidate):
            try:
                os.remove(candidate)
            except FileNotFoundError:  # another run of the same output removed it first
                pass


def write_text(path: str, text: str, field: str, what: str = "report") -> str:
    """Write a text file (an HTML report) under a temporary name and rename it into place: a full disk or a
    failure leaves neither a half-written file nor the temporary one, and says so naming `field`."""
    temp = temporary_path(path)
    try:
        with open(temp, "w", encoding="utf-8") as handle:
            handle.write(text)
        replace_file(temp, path)
    except OSError as exc:
        remove_quietly(temp)
        raise EngineError(f"Writing the {what} {path!r} failed ({exc.strerror or exc}); is the disk full? Free "
                          "some space or choose another folder.", field) from exc
    return path


def remove_quietly(path: str) -> None:
    """Remove a file of this run's own making, if it is there."""
    try:
        os.remove(path)
    except OSError:
        pass
