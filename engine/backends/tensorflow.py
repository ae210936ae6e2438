"""The TensorFlow backend: the plan's tiles streamed through the SavedModel in batches, into a block sink.

A three-stage pipeline: the next batch is read (GDAL, with the virtual padding of the whole image) and the last
one written while TensorFlow computes; GDAL and TensorFlow release the GIL, and at most three batches are in
memory, so memory is bounded by the tile and batch sizes, never by the image size.
"""

from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .. import grid as g
from ..errors import Cancelled, EngineError, source_field
from ..model import SavedModel
from ..planning import Plan, clip, runs, tiles
from ..preparing import fed_values
from ..raster import gdal_session
from ..reading import SourceReader
from ..request import InferenceRequest
from ..sinks import BlockSink
from .base import Monitor, RunStats, call_size

GDAL_CACHE_BYTES = 64 << 20  # GDAL's block cache during a run: it keeps written blocks until full, so a larger
                             # one makes peak RSS grow with the image (GDAL's default, 5 % of RAM: 1.0 GB at 4096 px,
                             # 1.7 GB at 16384 px; 256 MB: 1.06 and 1.30 GB); 64 MB is as fast


class TensorFlowBackend:
    """This engine: any request, any sink."""

    name = "TensorFlow"
    measures = True

    def refusal(self, request: InferenceRequest, sink: BlockSink) -> tuple | None:
        """It runs every request."""
        return None

    def run(self, plan: Plan, sink: BlockSink, monitor: Monitor) -> RunStats:
        """Stream the plan's tiles through the model into `sink`."""
        request, say = plan.request, monitor.say
        model = SavedModel.load(request.model_dir)
        width, height = plan.size
        say(f"Model {request.model_dir}: inputs {', '.join(plan.placeholders)}; output(s) "
            f"{', '.join(plan.output_names)} ({plan.bands} band(s)); running on {model.device}.")
        say(f"Grid ({request.extent_mode} mode): {width} x {height} output pixels of "
            f"{plan.out_x.step * plan.lattice.unit_x:g} x {plan.out_y.step * plan.lattice.unit_y:g} map units, "
            f"expression field {plan.efield[0]} x {plan.efield[1]}, receptive fields "
            f"{', '.join(f'{n} {s.rfield[0]}x{s.rfield[1]}' for n, s in zip(plan.names, request.sources))}.")
        measurement = plan.measurement
        if measurement:
            say(f"Measured: total stride {measurement.stride[0]} px, pixels lost to tile borders "
                f"(left, top, right, bottom) {measurement.lost} for a {measurement.setup.sizes[0][0]} px tile; "
                f"exact crop {measurement.exact_crop} px; output crop {plan.crop} px -> "
                f"{'exact (seamless)' if plan.exact else 'NOT exact (blocking artifacts)'}.")
        todo = tiles(plan)
        size = call_size(plan, len(todo))
        say(f"Tiles: {len(todo)} of {plan.tile[0]} x {plan.tile[1]} output pixels, up to {size} per TensorFlow call.")
        batches = [todo[i:i + size] for i in range(0, len(todo), size)]
        skipped, calls = 0, 0

        with gdal_session(GDAL_CACHE_BYTES):
            readers = [SourceReader(list(s.paths), request.padding, name, source_field(i), s.bands)
                       for i, (s, name) in enumerate(zip(request.sources, plan.names))]
            with ThreadPoolExecutor(1, "seamless-read") as reading, ThreadPoolExecutor(1, "seamless-write") as writing:
                try:
                    sink.open(plan)  # inside: a sink that fails half-open (one file of two created) is aborted
                    pending_read = reading.submit(read_batch, plan, readers, batches[0])
                    pending_write = None
                    for index, group in enumerate(batches):
                        if monitor.canceled():
                            raise Cancelled("Cancelled by the user.")
                        feeds, keep, masks = pending_read.result()
                        if index + 1 < len(batches):
                            pending_read = reading.submit(read_batch, plan, readers, batches[index + 1])
                        skipped += len(group) - len(keep)
                        outputs = run_batch(plan, model, feeds, keep) if keep else []
                        calls += bool(keep)
                        if pending_write is not None:
                            pending_write.result()
                            # the tiles written so far, reported from this thread: the caller's feedback
                            # signals are synchronous only from it (a queued one waits for the end of the run)
                            monitor.advance(index * size / len(todo))
                        pending_write = writing.submit(write_batch, plan, sink, group, keep, outputs, masks)
                    if pending_write is not None:
                        pending_write.result()
                    if monitor.canceled():  # up to the rename: a cancel during the last batch is a cancel
                        raise Cancelled("Cancelled by the user.")
                    monitor.advance(1.0)
                    sink.commit()
                    say(f"Ran {len(todo) - skipped} tile(s) in {calls} TensorFlow call(s) of up to {size} "
                        f"tile(s)" + (f"; {skipped} tile(s) all no-data skipped." if skipped else "."))
                except BaseException:
                    reading.shutdown(wait=True, cancel_futures=True)
                    writing.shutdown(wait=True, cancel_futures=True)
                    sink.abort()
                    raise
        return RunStats(len(todo), skipped, model.device)


def write_batch(plan: Plan, sink: BlockSink, group, keep, outputs, masks) -> None:
    """Write the part of each tile of `group` inside the output window, a run of adjacent tiles at a time:
    the background for skipped tiles and for the pixels masked as no-data (the mask goes to the writer too)."""
    background = np.float32(plan.request.background)
    slot = {tile: position for position, tile in enumerate(keep)}  # tile index -> its row in `outputs`
    for first, count in runs(plan, group):
        blocks, block_masks, origin = [], [], None
        for index in range(first, first + count):
            (rows, cols), position = clip(plan, *group[index])
            origin = origin or position
            shape = (rows.stop - rows.start, cols.stop - cols.start)
            if index in slot:
                blocks.append(outputs[slot[index]][rows, cols])
                block_masks.append(None if masks[index] is None else masks[index][rows, cols])
            else:
                blocks.append(np.full(shape + (plan.bands,), background, np.float32))
                block_masks.append(np.ones(shape, bool))
        block = blocks[0] if count == 1 else np.concatenate(blocks, axis=1)
        mask = None
        if any(m is not None for m in block_masks):
            mask = np.concatenate([np.zeros(b.shape[:2], bool) if m is None else m
                                   for b, m in zip(blocks, block_masks)], axis=1)
            block = np.where(mask[..., np.newaxis], background, block)
            sink.declare_nodata(plan.request.background)
        if block.size:
            sink.write(origin[0], origin[1], block, mask)
    sink.flush()  # to disk now, in this thread, rather than all at once when the file is closed


def read_batch(plan: Plan, readers, group) -> tuple:
    """Inputs {placeholder: (n, h, w, c)} for the tiles of `group` that are not entirely no-data, the indices
    of those tiles, and per tile a (tile_h, tile_w) mask of output pixels over no-data (or None).

    As OTBTF, a tile is skipped when a source's whole input is its no-data value. Beyond OTBTF, output pixels
    whose source pixels are no-data (or NaN/inf, which are fed as the no-data value or 0) are masked.
    """
    lattice, request = plan.lattice, plan.request
    inputs = [[None] * len(readers) for _ in group]  # per tile, per source: (data, x, y, no bad pixel)
    for first, count in runs(plan, group):
        for s, (source, reader) in enumerate(zip(request.sources, readers)):
            windows = [g.input_window(plan.out_x, group[i][0], plan.tile[0], lattice.sources_x[s],
                                      source.rfield[0], plan.efield[0], plan.names[s], "x")
                       for i in range(first, first + count)]
            y, h = g.input_window(plan.out_y, group[first][1], plan.tile[1], lattice.sources_y[s],
                                  source.rfield[1], plan.efield[1], plan.names[s], "y")
            left = windows[0][0]
            strip = reader.read(left, y, windows[-1][0] + windows[-1][1] - left, h)  # one read for the run
            clean = bool(np.isfinite(strip).all()) and (source.nodata is None or not (strip == source.nodata).any())
            for i, (x, w) in zip(range(first, first + count), windows):
                inputs[i][s] = (strip[:, x - left:x - left + w], x, y, clean)
    per_source = [[] for _ in readers]
    keep, masks = [], []
    for index, (tx, ty) in enumerate(group):
        tile_arrays, mask, empty = [], None, False
        for s, source in enumerate(request.sources):
            data, x, y, clean = inputs[index][s]
            if clean:  # the usual case: checked once for the whole run
                tile_arrays.append(data)
                continue
            bad = ~np.isfinite(data)
            if source.nodata is not None:
                if np.all(data == source.nodata):
                    empty = True
                bad |= data == source.nodata
            if bad.all():
                empty = True
            elif bad.any():
                data = np.where(np.isfinite(data), data, np.float32(source.nodata or 0.0))
                under = bad.any(axis=-1)[np.ix_(source_under(plan.out_y, ty, plan.tile[1], lattice.sources_y[s], y),
                                                source_under(plan.out_x, tx, plan.tile[0], lattice.sources_x[s], x))]
                mask = under if mask is None else mask | under
            tile_arrays.append(data)
        masks.append(mask)
        if not empty:
            keep.append(index)
            for s, data in enumerate(tile_arrays):
                per_source[s].append(data)
    # the model's values: band selection was read (SourceReader), scaling applied after the no-data checks
    feeds = {plan.placeholders[s]: fed_values(np.stack(arrays), request.sources[s])
             for s, arrays in enumerate(per_source) if arrays}
    return feeds, keep, masks


def source_under(out: g.Axis, start: int, length: int, src: g.Axis, window_start: int) -> np.ndarray:
    """For output pixels [start, start + length), the index (in the read window) of the source pixel under
    each output pixel's centre."""
    centres = 2 * (out.offset + (start + np.arange(length)) * out.step) + out.step  # in half units
    return (centres - 2 * src.offset) // (2 * src.step) - window_start


def run_batch(plan: Plan, model: SavedModel, feeds: dict, keep: list) -> list:
    """One TensorFlow call; returns one (tile_h, tile_w, bands) array per kept tile."""
    results = model.run(feeds, list(plan.output_names), {p: source_field(i) for i, p in enumerate(plan.placeholders)})
    stacked = []
    extra = plan.request.crop
    for name in plan.output_names:
        value = results[name]
        if extra:
            value = value[:, extra:value.shape[1] - extra, extra:value.shape[2] - extra]
        if value.shape[1:3] != (plan.tile[1], plan.tile[0]):
            shapes = ", ".join(f"{k} {v.shape[1]}x{v.shape[2]}" for k, v in feeds.items())
            raise EngineError(
                f"The model returned {value.shape[2]}x{value.shape[1]} pixels of {name} for inputs {shapes}, "
                f"but the tile needs {plan.tile[0]}x{plan.tile[1]} (expression field {plan.efield[0]}). "
                f"TensorflowModelServe would stop with \"Error occurred during tensor to image conversion\": "
                f"check the receptive fields, the expression field (receptive field - 2 x crop of "
                f"{name}) and the spacing scale.", "efield")
        stacked.append(value)
    merged = np.concatenate(stacked, axis=-1) if len(stacked) > 1 else stacked[0]
    return [merged[i] for i in range(len(keep))]
