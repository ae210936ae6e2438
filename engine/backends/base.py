"""The backend contract: can it serve this request into this sink, and run a plan into it."""

from dataclasses import dataclass
from typing import Callable, Protocol

from ..planning import Plan
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
