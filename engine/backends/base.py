"""The backend contract: can it serve this request into this sink, and run a plan into it."""

from dataclasses import dataclass
from math import prod
from typing import Callable, Protocol

from ..planning import BATCH_PIXELS, Plan, input_shapes
from ..request import InferenceRequest
from ..sinks import BlockSink


@dataclass(frozen=True)
class Monitor:
    """What a run reports to and asks of its caller: progress(fraction), is_canceled() -> bool, say(text)."""

    progress: Callable | None = None
    is_canceled: Callable | None = None
    say: Callable = print

    def canceled(self) -> bool:
        """True when the caller asked to stop."""
        return bool(self.is_canceled and self.is_canceled())

    def advance(self, fraction: float) -> None:
        """Report progress (0..1)."""
        if self.progress:
            self.progress(fraction)


PROGRESS_STEPS = 24  # TensorFlow calls an Auto-batched run of enough tiles is cut into: progress moves per call
MIN_CALL_PIXELS = BATCH_PIXELS // 32  # and at least this many input pixels a call: 8 of the sample's 128 px tiles,
                                      # as fast a tile as 229 (about 2 ms each on CPU); 4 cost 50 % more


def call_size(plan: Plan, count: int) -> int:
    """Tiles per TensorFlow call for `count` tiles: the plan's batch when given, else (Auto) its capacity cut so
    that the run takes about PROGRESS_STEPS calls, each of at least MIN_CALL_PIXELS input pixels."""
    if plan.request.batch_size:
        return plan.batch
    per_tile = sum(prod(shape[1:3]) for shape in input_shapes(plan).values())
    return max(1, min(plan.batch, max(-(-MIN_CALL_PIXELS // per_tile), -(-count // PROGRESS_STEPS))))


@dataclass(frozen=True)
class RunStats:
    """What a backend did: tiles (or blocks) computed, tiles skipped as no-data, where the model ran."""

    tiles: int
    skipped: int
    device: str


class Backend(Protocol):
    """An inference backend."""

    name: str
    measures: bool  # whether it needs the plan's measurement (tiles on the stride lattice, exactness)

    def refusal(self, request: InferenceRequest, sink: BlockSink) -> tuple | None:
        """(reason, field) when it cannot run this request into this sink as asked, else None."""

    def run(self, plan: Plan, sink: BlockSink, monitor: Monitor) -> RunStats:
        """Compute the plan's output into the sink (opened, written, committed; aborted on failure)."""
