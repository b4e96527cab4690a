"""A discrete-event loop on a virtual clock.

Time is a float of simulated seconds that only moves when the loop pops the
next event off a heap; nothing sleeps, so an hour of a fleet's life runs in
however long its events take to compute (FoundationDB's simulator; Jepsen's
Maelstrom). Events at the same instant run in the order they were scheduled
(a sequence number breaks ties), which keeps runs reproducible.
"""

from __future__ import annotations

import heapq
import sys
from collections.abc import Callable
from typing import Any

__all__ = ["EventLoop"]


class EventLoop:
    __slots__ = ("_heap", "_seq", "now", "processed")

    def __init__(self) -> None:
        self.now = 0.0
        self._heap: list[tuple[float, int, Callable[..., None], tuple[Any, ...]]] = []
        self._seq = 0
        self.processed = 0

    def at(self, when: float, action: Callable[..., None], *args: Any) -> None:
        """Run ``action(*args)`` at virtual time ``when`` (never in the past)."""
        when = max(when, self.now)
        self._seq += 1
        heapq.heappush(self._heap, (when, self._seq, action, args))

    def after(self, delay: float, action: Callable[..., None], *args: Any) -> None:
        self.at(self.now + delay, action, *args)

    def next_time(self) -> float | None:
        return self._heap[0][0] if self._heap else None

    def run_until(
        self,
        end: float,
        stop: Callable[[], bool] | None = None,
        *,
        inclusive: bool = True,
        max_processed: int | None = None,
    ) -> bool:
        """Process events up to ``end`` (included unless ``inclusive`` is false);
        returns True if ``stop`` became true (checked after each event), False
        when time ran out. With ``max_processed``, also stops (returning False,
        the clock left where the last event put it) once ``processed`` reaches
        it: the caller's event budget, see ``sim/_budget.py``."""
        heap = self._heap
        pop = heapq.heappop
        limit = sys.maxsize if max_processed is None else max_processed
        while heap and (heap[0][0] <= end if inclusive else heap[0][0] < end):
            if self.processed >= limit:
                return False
            when, _, action, args = pop(heap)
            self.now = when
            action(*args)
            self.processed += 1
            if stop is not None and stop():
                return True
        self.now = max(self.now, end)
        return False
