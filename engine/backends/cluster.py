"""The Dask backend: the plan's tiles spread over a Dask distributed cluster, the same pixels as in this process.

Work goes to the workers as parts: runs of adjacent tiles of one tile row (about PART_PIXELS output pixels), so
that scheduling costs little. Each worker loads the model once (SavedModel.load keeps it), reads the sources
itself from their paths (a shared file system, or GDAL's /vsicurl/, /vsis3/) and writes its part as a GeoTIFF
into a parts folder beside the output, which every worker and this client must reach. The client is never the
path of the pixels through Dask: when every part is there it builds a VRT of them and copies it into the
output GeoTIFF (renamed into place only then, as every output), and removes the parts. When every worker is on
this machine's loopback (`local[:N]`, or a cluster started here), the workers send their blocks back instead and
this process writes them as they come: the output is written once, as in-process. A worker lost mid-run
costs Dask a retry of its parts (each part is written under a temporary name: a retry rewrites it whole); a
cancel cancels the futures, tells running parts to stop after their batch, and removes every part.

CLUSTER: a scheduler address (tcp://host:8786) or `local` / `local:N`: a scheduler and N worker processes
started here, with a real Python (never QGIS's executable), on 127.0.0.1, stopped at the end of the run.
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid

from osgeo import gdal

from ..dependencies import import_distributed, python_executable
from ..errors import Cancelled, EngineError, source_field
from ..model import SavedModel
from ..paths import parts_folder
from ..planning import Plan, clip, runs, tiles
from ..raster import SourceReader, gdal_session
from ..request import InferenceRequest
from ..sinks import BlockSink, GeoTiffSink
from .base import Monitor, RunStats
from .tensorflow import GDAL_CACHE_BYTES, read_batch, run_batch, write_batch

PART_PIXELS = 4_000_000  # output pixels a part aims at: a few model calls, against ~10 ms of scheduling
LOOPBACK_BLOCKS = True   # workers all on this machine send their blocks back (False: part files, as elsewhere)
START_TIMEOUT = 120      # seconds for a local cluster's scheduler and workers to come up


class DaskBackend:
    """Valid-part and artifact-prone inference on a Dask cluster, into a GeoTIFF."""

    name = "Dask"
    measures = True

    def __init__(self, cluster: str):
        self.cluster = cluster.strip()

    def refusal(self, request: InferenceRequest, sink: BlockSink) -> tuple | None:
        """Workers write GeoTIFF parts: a GeoTIFF output only."""
        if not isinstance(sink, GeoTiffSink):
            return "A cluster writes GeoTIFF files only, not blocks to a sink; leave Cluster empty.", "cluster"
        return None

    def run(self, plan: Plan, sink: GeoTiffSink, monitor: Monitor) -> RunStats:
        """Compute the parts on the cluster: workers on this machine send their blocks back and this process writes
        them (one write of the output, as in-process); elsewhere they write part files that this process assembles
        (the pixels do not travel through it)."""
        distributed = import_distributed()
        parts, folder = split(plan), None
        count = sum(len(p) for p in parts)
        try:
            with connect(self.cluster, monitor.say) as client:
                addresses = list(client.scheduler_info()["workers"])
                workers = len(addresses)
                if not (LOOPBACK_BLOCKS and all(_on_this_machine(address) for address in addresses)):
                    folder = parts_folder(sink.path)
                    os.makedirs(folder)
                monitor.say(f"Cluster {self.cluster}: {workers} worker(s), {len(parts)} part(s) of "
                            f"{count} tile(s) of {plan.tile[0]} x {plan.tile[1]} px"
                            + (", parts written beside the output." if folder else ", blocks sent back here."))
                stop = distributed.Event(f"seamless-stop-{uuid.uuid4().hex}", client=client)
                run_id = uuid.uuid4().hex[:8]
                futures = [client.submit(compute_part, plan, part, os.path.join(folder, f"part{index:05d}.tif")
                                         if folder else None, stop.name, key=f"seamless-part-{run_id}-{index}",
                                         retries=2, pure=False)
                           for index, part in enumerate(parts)]
                if folder is None:
                    sink.open(plan)
                    try:
                        gather(client, futures, stop, monitor, lambda blocks: _write_blocks(sink, blocks),
                               [len(p) for p in parts])
                        if monitor.canceled():  # up to the rename
                            raise Cancelled("Cancelled by the user.")
                        sink.commit()
                    except BaseException:
                        sink.abort()
                        raise
                else:
                    gather(client, futures, stop, monitor, weights=[len(p) for p in parts])
                    if monitor.canceled():
                        raise Cancelled("Cancelled by the user.")
                    assemble([f.result() for f in futures], plan, sink)
        finally:
            if folder:
                shutil.rmtree(folder, ignore_errors=True)
        return RunStats(count, 0, f"Dask cluster {self.cluster}")


def _on_this_machine(address: str) -> bool:
    """Whether a worker's address is on this machine's loopback (local[:N], or a cluster started here)."""
    host = address.split("://")[-1].rsplit(":", 1)[0].strip("[]")
    return host in ("127.0.0.1", "localhost", "::1") or host.startswith("127.")


def _write_blocks(sink: GeoTiffSink, blocks: list) -> None:
    """A part's blocks, as a worker recorded them, into the output."""
    for x0, y0, block, mask, nodata in blocks:
        if nodata is not None:
            sink.declare_nodata(nodata)
        sink.write(x0, y0, block, mask)
    sink.flush()


def split(plan: Plan) -> list:
    """The plan's tiles as parts: its runs of adjacent tiles (planning.runs), cut to about PART_PIXELS output
    pixels each."""
    per_part = max(1, PART_PIXELS // (plan.tile[0] * plan.tile[1]))
    todo, parts = tiles(plan), []
    for first, count in runs(plan, todo):
        parts += [todo[start:min(start + per_part, first + count)] for start in range(first, first + count, per_part)]
    return parts


def gather(client, futures: list, stop, monitor: Monitor, each=None, weights=None) -> None:
    """Wait for the parts, reporting progress as they complete (by their `weights`, e.g. tiles, else one each) and
    handing each result to `each` (then dropping it from the cluster); a cancel or a failure stops everything."""
    pending, done = set(futures), 0
    weight = dict(zip(futures, weights or [1] * len(futures)))
    total = sum(weight.values()) or 1
    while pending:
        if monitor.canceled():
            stop.set()  # running parts stop after their batch
            client.cancel(futures, force=True)
            keys, deadline = {f.key for f in futures}, time.monotonic() + 60
            while keys & set(_running(client)) and time.monotonic() < deadline:
                time.sleep(0.2)
            raise Cancelled("Cancelled by the user.")
        finished = {f for f in pending if f.done()}
        if not finished:
            time.sleep(0.2)
            continue
        pending -= finished
        for future in finished:
            if future.status == "error":
                stop.set()
                client.cancel(futures, force=True)
                raise future.exception()
            if each is not None:
                each(future.result())
                future.release()
        done += sum(weight[f] for f in finished)
        monitor.advance(done / total)


def _running(client) -> list:
    """Keys of the tasks the workers are processing now."""
    return [key for keys in client.processing().values() for key in keys]


def compute_part(plan: Plan, part: list, path: str | None, stop_name: str):
    """On a worker: the part's tiles through the model (loaded once per worker), into a GeoTIFF of its window at
    `path` (returned), or, without a path, as the blocks to write: [(x0, y0, block, mask, no-data or None)]."""
    distributed = import_distributed()
    stop = distributed.Event(stop_name)
    model = SavedModel.load(plan.request.model_dir)
    with gdal_session(GDAL_CACHE_BYTES):
        readers = [SourceReader(list(s.paths), plan.request.padding, name, source_field(i), s.bands)
                   for i, (s, name) in enumerate(zip(plan.request.sources, plan.names))]
        if path is None:
            target = _Collect()
        else:
            (rows, _), first = clip(plan, *part[0])
            (_, cols), last = clip(plan, *part[-1])  # one tile row: the part spans first..last, one row high
            width, height = last[0] + cols.stop - cols.start - first[0], rows.stop - rows.start
            gt = plan.geotransform
            sink = GeoTiffSink(path, plan.request.data_type, "none")
            sink.create(width, height, plan.bands, (gt[0] + first[0] * gt[1], gt[1], 0.0, gt[3] + first[1] * gt[5],
                                                    0.0, gt[5]), plan.crs_wkt, list(plan.band_names))
            target = _Offset(sink, first)
        try:
            for start in range(0, len(part), plan.batch):
                if stop.is_set():
                    raise Cancelled("Cancelled by the user.")
                group = part[start:start + plan.batch]
                feeds, keep, masks = read_batch(plan, readers, group)
                outputs = run_batch(plan, model, feeds, keep) if keep else []
                write_batch(plan, target, group, keep, outputs, masks)
            return target.blocks if path is None else sink.commit()
        except BaseException:
            if path is not None:
                sink.abort()
            raise


class _Collect:
    """A sink that records the blocks, to send them back to the client."""

    def __init__(self):
        self.blocks, self.nodata = [], None

    def write(self, x0, y0, block, mask=None):
        self.blocks.append((x0, y0, block, mask, self.nodata))

    def declare_nodata(self, value):
        self.nodata = value

    def flush(self):
        """Nothing to flush."""


class _Offset:
    """A sink that places output-window coordinates into a part's own raster."""

    def __init__(self, sink: GeoTiffSink, origin: tuple):
        self.sink, self.origin = sink, origin

    def write(self, x0, y0, block, mask=None):
        self.sink.write(x0 - self.origin[0], y0 - self.origin[1], block, mask)

    def declare_nodata(self, value):
        self.sink.declare_nodata(value)

    def flush(self):
        self.sink.flush()


def assemble(paths: list, plan: Plan, sink: GeoTiffSink) -> None:
    """The parts, as one VRT, copied into the sink's temporary GeoTIFF and renamed into place."""
    with gdal_session(), tempfile.TemporaryDirectory(prefix="seamless-parts-") as folder:
        nodata = set()
        for path in paths:
            part = gdal.Open(path)  # held while its band is read: a band outliving its dataset crashes GDAL
            nodata.add(part.GetRasterBand(1).GetNoDataValue())
            part = None
        nodata.discard(None)
        vrt = gdal.BuildVRT(os.path.join(folder, "parts.vrt"), paths)
        vrt.FlushCache()
        vrt = None  # written to disk when closed
        sink.adopt(os.path.join(folder, "parts.vrt"), list(plan.band_names))
        sink.dataset.SetGeoTransform(plan.geotransform)  # the mosaic's is computed back from its extent: 1 ulp off
        if nodata:
            sink.declare_nodata(nodata.pop())
        sink.commit()


class connect:  # noqa: N801 (a context manager used as a function)
    """A Dask client of the cluster: an address, or `local[:N]` started here and stopped on exit."""

    def __init__(self, cluster: str, say):
        self.cluster, self.say, self.processes, self.client, self.folder = cluster, say, [], None, None

    def __enter__(self):
        distributed = import_distributed()
        if self.cluster.startswith(("tcp://", "tls://", "ucx://", "inproc://")):
            try:
                self.client = distributed.Client(self.cluster, timeout=15, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise EngineError(f"No Dask scheduler answers at {self.cluster} ({exc}); start one with `dask "
                                  "scheduler` and workers with `dask worker <address>`, or leave Cluster empty.",
                                  "cluster") from exc
            return self.client
        count = local_workers(self.cluster)
        self.folder = tempfile.mkdtemp(prefix="seamless-dask-")
        self.client = start_local(count, self.folder, self.processes)
        self.say(f"Started a local Dask cluster of {count} worker process(es) on 127.0.0.1.")
        return self.client

    def __exit__(self, *exc):
        if self.client is not None:
            self.client.close()
        stop_processes(self.processes)
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)
        return False


def local_workers(cluster: str) -> int:
    """N of `local:N` (`local`: one worker per CPU core)."""
    name, _, count = cluster.partition(":")
    if name != "local" or (count and not count.isdigit()) or count == "0":
        raise EngineError(f"Cluster {cluster!r} is neither a scheduler address (tcp://host:8786) nor local or "
                          "local:N (N worker processes on this machine); leave it empty to run here.", "cluster")
    return int(count) if count else max(1, os.cpu_count() or 1)


def worker_environment() -> dict:
    """This process's environment, with this Python's paths (the plugin, TensorFlow) for the workers."""
    paths = os.environ.get("PYTHONPATH", "").split(os.pathsep) + sys.path
    return dict(os.environ, PYTHONPATH=os.pathsep.join(dict.fromkeys(p for p in paths if p)),
                TF_CPP_MIN_LOG_LEVEL=os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2"))


def start_local(count: int, folder: str, processes: list):
    """A scheduler and `count` single-threaded worker processes on 127.0.0.1, started with a real Python."""
    distributed = import_distributed()
    python, env = python_executable(), worker_environment()
    # the workers share this machine's cores: TensorFlow's thread pools sized for one worker each
    threads = str(max(1, (os.cpu_count() or 1) // count))
    env.setdefault("TF_NUM_INTRAOP_THREADS", threads)
    env.setdefault("TF_NUM_INTEROP_THREADS", threads)
    if python is None:
        raise EngineError("No Python interpreter of this installation was found to start Dask workers with.",
                          "cluster")
    scheduler_file = os.path.join(folder, "scheduler.json")
    log = open(os.path.join(folder, "cluster.log"), "ab")  # noqa: SIM115 (closed with the folder)
    common = {"env": env, "stdout": log, "stderr": subprocess.STDOUT, "stdin": subprocess.DEVNULL,
              "start_new_session": True}
    # bandit B603: argv lists without a shell, this installation's own Python running Dask's modules with fixed
    # options; nothing in them comes from the user
    scheduler = subprocess.Popen([python, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port",
                                  "0", "--no-dashboard", "--scheduler-file", scheduler_file], **common)  # nosec B603
    processes.append(scheduler)
    for _ in range(count):
        worker = subprocess.Popen([python, "-m", "distributed.cli.dask_worker", "--scheduler-file", scheduler_file,
                                   "--nthreads", "1", "--nworkers", "1", "--no-dashboard", "--host", "127.0.0.1",
                                   "--memory-limit", "0"], **common)  # nosec B603
        processes.append(worker)
    deadline = time.monotonic() + START_TIMEOUT
    while not os.path.exists(scheduler_file) and time.monotonic() < deadline:
        time.sleep(0.1)
    client = distributed.Client(scheduler_file=scheduler_file, timeout=START_TIMEOUT, set_as_default=False)
    client.wait_for_workers(count, timeout=START_TIMEOUT)
    return client


def stop_processes(processes: list) -> None:
    """SIGTERM, then SIGKILL after 10 s, to each process's session."""
    for process in processes:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
    for process in processes:
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
