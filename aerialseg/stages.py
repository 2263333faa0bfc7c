"""Threads joined by bounded queues, for the predict pipeline's reader and writer.

A :class:`Stage` keeps the exception that ended it and sets the shared stop event, so the
other stages and the calling thread stop promptly instead of waiting on a queue that will
never move; :func:`put` and :func:`take` wait in short slices and notice the stop.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from typing import Any

__all__ = ["DONE", "Stopped", "Stage", "put", "take"]

DONE = object()  # end-of-stream marker


class Stopped(Exception):
    """Raised inside a stage when another stage failed or the run was interrupted."""


class Stage(threading.Thread):
    """A daemon thread running ``target``; on failure it keeps the exception and stops the others."""

    def __init__(self, target: Callable[[], None], stop: threading.Event, name: str):
        super().__init__(name=name, daemon=True)
        self._target_fn = target
        self._stop_event = stop
        self.error: BaseException | None = None

    def run(self) -> None:
        """Run the target; a failure is kept in ``error`` and stops the other stages."""
        try:
            self._target_fn()
        except Stopped:
            pass
        except BaseException as exc:  # handed to the calling thread, which re-raises it
            self.error = exc
            self._stop_event.set()


def put(q: queue.Queue, item: Any, stop: threading.Event) -> None:
    """Put, waiting for room; give up silently once the run is stopping."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return
        except queue.Full:
            continue


def take(q: queue.Queue, stop: threading.Event) -> Any:
    """Get the next item; raise :class:`Stopped` once the run is stopping and nothing is queued."""
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                raise Stopped from None
