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

CLUSTER: a scheduler address (tcp://host:8786), which must have a worker within SEAMLESS_CLUSTER_WAIT seconds
(WORKER_WAIT, 60), or `local` / `local:N`: a scheduler and N worker processes started here (dask_local.py), with
a real Python (never QGIS's executable), on 127.0.0.1, stopped at the end of the run. Before any part, every
worker must import this plugin and see the run's paths (check_workers); a part's failure is raised as the
worker's own error (worker_error), never as Dask's.
"""

import dataclasses
import json
import os
import shutil
import tempfile
import time
import uuid

from osgeo import gdal

from ..dependencies import import_distributed
from ..errors import Cancelled, DependencyMissing, EngineError, source_field
from ..model import SavedModel
from ..paths import parts_folder
from ..plan_json import plan_from_json, plan_to_json
from ..planning import Plan, clip, runs, tiles
from ..raster import gdal_session
from ..reading import SourceReader
from ..request import InferenceRequest
from ..sinks import BlockSink, GeoTiffSink
from .base import Monitor, RunStats
from .dask_local import local_workers, make_folder, start_local, stop_processes
from .tensorflow import GDAL_CACHE_BYTES, read_batch, run_batch, write_batch

PART_PIXELS = 4_000_000  # output pixels a part aims at: a few model calls, against ~10 ms of scheduling
LOOPBACK_BLOCKS = True   # workers all on this machine send their blocks back (False: part files, as elsewhere)
WORKER_WAIT = 60         # seconds a scheduler address may take to have a worker (SEAMLESS_CLUSTER_WAIT overrides)
PACKAGE = __name__.split(".")[0]  # this plugin's package, as the workers must import it: seamless_inference
# the folder holding the plugin's package: what a worker's PYTHONPATH must contain
PLUGINS_FOLDER = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
# Dask's scheduler unpickles every task it is given (distributed 2024.12 and later): a task naming this plugin's
# function would need the plugin importable by the scheduler too, which `dask scheduler` as the README starts it
# (or dask-jobqueue's) is not. A task is therefore the builtin eval of this fixed expression, the part as JSON text
# (engine.plan_json; never pickle: a worker turns only data into its plan): only the workers import the
# plugin, and a worker that cannot says so with its own ImportError.
TASK = "__import__('importlib').import_module(module).run_part(payload)"
CHECK = "__import__('importlib').import_module(module).worker_check(paths)"


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
        plan = absolute_paths(plan)  # the workers' working folder is not this process's
        parts, folder = split(plan), None
        count = sum(len(p) for p in parts)
        try:
            with connect(self.cluster, monitor.say) as client:
                addresses = list(client.scheduler_info()["workers"])
                workers = len(addresses)
                if not (LOOPBACK_BLOCKS and all(_on_this_machine(address) for address in addresses)):
                    folder = parts_folder(sink.path)
                check_workers(client, self.cluster, plan, os.path.dirname(folder) if folder else None)
                if folder:
                    os.makedirs(folder)
                monitor.say(f"Cluster {self.cluster}: {workers} worker(s), {len(parts)} part(s) of "
                            f"{count} tile(s) of {plan.tile[0]} x {plan.tile[1]} px"
                            + (", parts written beside the output." if folder else ", blocks sent back here."))
                stop = distributed.Event(f"seamless-stop-{uuid.uuid4().hex}", client=client)
                run_id, plan_json = uuid.uuid4().hex[:8], plan_to_json(plan)
                futures = [client.submit(eval, TASK, {"module": __name__, "payload": json.dumps(
                                             {"plan": plan_json, "part": part, "stop": stop.name,
                                              "path": os.path.join(folder, f"part{index:05d}.tif") if folder
                                              else None})},
                                         key=f"seamless-part-{run_id}-{index}", retries=2, pure=False)
                           for index, part in enumerate(parts)]
                weights, where = [len(p) for p in parts], self.cluster
                if folder is None:
                    sink.open(plan)
                    try:
                        gather(client, futures, stop, monitor, lambda blocks: _write_blocks(sink, blocks), weights,
                               where)
                        if monitor.canceled():  # up to the rename
                            raise Cancelled("Cancelled by the user.")
                        sink.commit()
                    except BaseException:
                        sink.abort()
                        raise
                else:
                    gather(client, futures, stop, monitor, weights=weights, where=where)
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


def gather(client, futures: list, stop, monitor: Monitor, each=None, weights=None, where: str = "") -> None:
    """Wait for the parts, reporting progress as they complete (by their `weights`, e.g. tiles, else one each) and
    handing each result to `each` (then dropping it from the cluster); a cancel or a failure stops everything, a
    failure raised as the worker's own error (worker_error), the cluster `where` named."""
    pending, done, alone = set(futures), 0, _Alone(client, worker_wait())
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
            if alone.too_long():  # the parts would wait for a worker forever
                stop.set()
                client.cancel(futures, force=True)
                raise EngineError(f"The Dask cluster {where} lost every worker mid-run (none for {alone.wait:g} s; "
                                  "SEAMLESS_CLUSTER_WAIT sets the wait): their log says why (killed? out of "
                                  "memory?); start workers again and rerun, or leave Cluster empty.", "cluster")
            time.sleep(0.2)
            continue
        pending -= finished
        for future in finished:
            if future.status in ("lost", "pending"):  # done a moment ago, its result since lost with its worker:
                pending.add(future)  # the scheduler computes it again
                continue
            if future.status != "finished":
                # the worker's error first: the cancel below drops it (exception() would then return None)
                error = future.exception() if future.status == "error" else None
                stop.set()
                client.cancel(futures, force=True)
                raise worker_error(error, where)
            if each is not None:
                each(future.result())
                future.release()
        done += sum(weight[f] for f in finished - pending)
        monitor.advance(done / total)


class _Alone:
    """Whether the cluster has had no worker for longer than `wait` seconds (asked of the scheduler once a
    second)."""

    def __init__(self, client, wait: float):
        self.client, self.wait, self.since, self.asked = client, wait, None, 0.0

    def too_long(self) -> bool:
        now = time.monotonic()
        if now - self.asked >= 1.0:
            self.asked = now
            self.since = None if self.client.nthreads() else (self.since or now)
        return self.since is not None and now - self.since > self.wait


def worker_error(error, cluster: str) -> BaseException:
    """A part's failure as the error to raise here: the engine's own errors as they are; anything else as an
    EngineError naming the cluster that says what the worker said (and the fix, where it is known)."""
    if isinstance(error, (EngineError, Cancelled)):
        return error
    if isinstance(error, ImportError) and (getattr(error, "name", None) or "").split(".")[0] == PACKAGE:
        return EngineError(cannot_import(cluster, error), "cluster")
    if isinstance(error, DependencyMissing):
        return EngineError(f"A worker of the Dask cluster {cluster} cannot run the model: {error}", "cluster")
    if error is None or not isinstance(error, BaseException):
        return EngineError(f"A part was lost on the Dask cluster {cluster} without its error ({error!r}): the "
                           "workers' or the scheduler's log says why; run again, or leave Cluster empty.", "cluster")
    if type(error).__name__ == "KilledWorker":
        return EngineError(f"The Dask workers of {cluster} died while computing a part, on every retry ({error}): "
                           "their log says why (memory? each worker needs the model and a batch of tiles); run "
                           "again with fewer or larger workers, or leave Cluster empty.", "cluster")
    return EngineError(f"A worker of the Dask cluster {cluster} failed on a part: {type(error).__name__}: "
                       f"{error}", "cluster")


def cannot_import(cluster: str, error: BaseException) -> str:
    """The message for workers that cannot import this plugin, with the command that starts one that can."""
    return (f"The worker(s) of the Dask cluster {cluster} cannot import {PACKAGE} ({type(error).__name__}: "
            f"{error}): start each worker with the folder that holds the plugin's {PACKAGE} folder on its "
            f"PYTHONPATH (here {PLUGINS_FOLDER}; the same plugin version on every machine): "
            f"`PYTHONPATH={PLUGINS_FOLDER} dask worker {cluster} --nthreads 1`.")


def absolute_paths(plan: Plan) -> Plan:
    """The plan with its model and source paths absolute, as this process sees them: a worker resolves a
    relative path from its own working folder. GDAL's virtual paths (/vsi...) and URLs stay as they are."""
    def absolute(path: str) -> str:
        return path if path.startswith("/vsi") or "://" in path else os.path.abspath(path)

    request = plan.request
    sources = tuple(dataclasses.replace(s, paths=tuple(absolute(p) for p in s.paths)) for s in request.sources)
    return dataclasses.replace(plan, request=dataclasses.replace(request, model_dir=absolute(request.model_dir),
                                                                 sources=sources))


def check_workers(client, cluster: str, plan: Plan, output_folder: str | None) -> None:
    """Before any part: every worker imports this plugin and sees the model, the rasters and (when workers write
    parts) the output's folder at the paths this process uses; else an EngineError naming the cluster."""
    paths = [plan.request.model_dir] + [p for s in plan.request.sources for p in s.paths
                                        if not p.startswith("/vsi") and "://" not in p]
    paths += [output_folder] if output_folder else []
    answers = client.run(eval, CHECK, {"module": __name__, "paths": paths}, on_error="return")
    for address, answer in sorted(answers.items()):
        if isinstance(answer, BaseException):
            if isinstance(answer, ImportError) and (answer.name or "").split(".")[0] == PACKAGE:
                raise EngineError(cannot_import(cluster, answer), "cluster")
            raise EngineError(f"The worker {address} of the Dask cluster {cluster} cannot load the plugin "
                              f"({type(answer).__name__}: {answer}); start it with the same Python packages as "
                              "this one (TensorFlow, GDAL), or leave Cluster empty.", "cluster")
        if answer:
            raise EngineError(f"The worker {address} of the Dask cluster {cluster} does not see {answer[0]}: "
                              "the model, the rasters and the output's folder must be at the same path on every "
                              "machine (a shared file system), or leave Cluster empty.", "cluster")


def worker_check(paths: list) -> list:
    """On a worker (check_workers): the paths of `paths` it does not see."""
    return [path for path in paths if not os.path.exists(path)]


def run_part(payload: str):
    """On a worker: the part the client sent as JSON (TASK: its plan, tiles, output part and stop event), computed
    by compute_part."""
    data = json.loads(payload)
    return compute_part(plan_from_json(data["plan"]), [tuple(tile) for tile in data["part"]], data["path"],
                        data["stop"])


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
    """A Dask client of the cluster: an address (with a worker, waited for up to SEAMLESS_CLUSTER_WAIT or
    WORKER_WAIT seconds), or `local[:N]` started here and stopped on exit."""

    def __init__(self, cluster: str, say):
        self.cluster, self.say, self.processes, self.client, self.folder = cluster, say, [], None, None

    def __enter__(self):
        try:
            return self._connect()
        except BaseException:
            self.__exit__()
            raise

    def _connect(self):
        distributed = import_distributed()
        if self.cluster.startswith(("tcp://", "tls://", "ucx://", "inproc://")):
            try:
                self.client = distributed.Client(self.cluster, timeout=15, set_as_default=False)
            except (OSError, TimeoutError) as exc:
                raise EngineError(f"No Dask scheduler answers at {self.cluster} ({exc}); start one with `dask "
                                  "scheduler` and workers with `dask worker <address>`, or leave Cluster empty.",
                                  "cluster") from exc
            wait = worker_wait()
            try:
                self.client.wait_for_workers(1, timeout=wait)
            except TimeoutError as exc:
                raise EngineError(f"The Dask scheduler at {self.cluster} has no worker (waited {wait:g} s): start "
                                  f"one on each machine, `PYTHONPATH={PLUGINS_FOLDER} dask worker {self.cluster} "
                                  "--nthreads 1` (SEAMLESS_CLUSTER_WAIT sets the wait, in seconds), or leave "
                                  "Cluster empty.", "cluster") from exc
            return self.client
        count = local_workers(self.cluster)
        self.folder = make_folder()
        self.client = start_local(count, self.folder, self.processes)
        self.say(f"Started a local Dask cluster of {count} worker process(es) on 127.0.0.1.")
        return self.client

    def __exit__(self, *exc):
        if self.client is not None:
            self.client.close()
            self.client = None
        stop_processes(self.processes)
        if self.folder:
            shutil.rmtree(self.folder, ignore_errors=True)
        return False


def worker_wait() -> float:
    """Seconds to wait for a scheduler's first worker: SEAMLESS_CLUSTER_WAIT, else WORKER_WAIT."""
    try:
        return max(0.0, float(os.environ.get("SEAMLESS_CLUSTER_WAIT", WORKER_WAIT)))
    except ValueError:
        return WORKER_WAIT
