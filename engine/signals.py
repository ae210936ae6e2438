"""A termination signal (SIGTERM, SIGINT, SIGHUP) during a run acts as a cancel: the run stops at its next check,
removes its temporary files and raises Cancelled, instead of dying with a half-written file on disk.

Python handles signals on the main thread only: scripts and qgis_process run the engine there; inside the QGIS
desktop the engine runs in a worker thread and QGIS itself owns the signals (a killed QGIS leaves a temporary
file that the next run of the same output removes, engine.paths.remove_stale_partials)."""

import signal
import threading
from contextlib import contextmanager

from .errors import Cancelled

_SIGNALS = tuple(getattr(signal, name) for name in ("SIGTERM", "SIGINT", "SIGHUP") if hasattr(signal, name))


class Interrupted(Cancelled):
    """A termination signal stopped the run."""


@contextmanager
def signals_cancel(is_canceled=None):
    """Yield an is_canceled() that is also True once a termination signal arrived; the previous handlers come
    back on exit, and the signal is then raised again to them if it came (the process ends as it was asked)."""
    if threading.current_thread() is not threading.main_thread():
        yield is_canceled
        return
    received = []

    def handler(signum, frame):
        received.append(signum)

    previous = {}
    for number in _SIGNALS:
        try:
            if signal.getsignal(number) is not signal.SIG_IGN:  # an ignored signal stays ignored
                previous[number] = signal.signal(number, handler)
        except (ValueError, OSError):  # not allowed here (an embedded interpreter): leave it
            pass

    def canceled():
        if received:
            raise Interrupted(f"Stopped by signal {signal.Signals(received[0]).name}: no output file was written.")
        return bool(is_canceled and is_canceled())

    try:
        yield canceled
    finally:
        for number, before in previous.items():
            signal.signal(number, signal.SIG_DFL if before is None else before)
        if received and previous.get(received[0]) in (None, signal.SIG_DFL):
            signal.raise_signal(received[0])  # the default action, as asked, now that the files are cleaned
        # a Python handler before ours (SIGINT's KeyboardInterrupt): Interrupted already reported the stop
