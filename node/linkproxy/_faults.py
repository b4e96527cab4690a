"""The faults one directed link can be told to inject, and their validation.

Why ``loss`` resets connections instead of dropping bytes: the proxy sits above
TCP. A lost segment on a real WAN is retransmitted by the kernel, so the
application never sees a gap; it sees latency and, when loss is bad enough,
a connection that resets or times out. Dropping bytes inside a byte pipe would
instead corrupt the stream (and TLS would abort on the first bad record), which
no real network does. So ``loss`` is the probability that a *new connection* is
reset as soon as it is accepted. A client that keeps one connection alive sees
loss only when it (re)connects; gossip under test should use short-lived or
short keep-alive connections so that every round takes its chance.

``delay_ms`` is a floor: each chunk is held ``delay_ms`` plus a uniform draw in
``[0, jitter_ms]``, never less, and never overtakes the chunk before it (TCP
delivers in order, so jitter shows up as bunching, not reordering).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from twinmesh.crdt._errors import LocalProtocolError

__all__ = ["FAULT_FIELDS", "FaultError", "LinkFaults"]

# Ten minutes: anything longer is a partition, and should be said with ``down``.
MAX_DELAY_MS = 600_000.0
FAULT_FIELDS = ("down", "delay_ms", "jitter_ms", "loss", "bandwidth_bytes_per_s")


class FaultError(LocalProtocolError):
    """A fault setting is out of range or of the wrong type; nothing was changed."""


def _is_number(value: object) -> bool:
    # bool is an int to Python, but ``"delay_ms": true`` is a mistake, not 1 ms.
    return isinstance(value, int | float) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkFaults:
    down: bool = False
    delay_ms: float = 0.0
    jitter_ms: float = 0.0
    loss: float = 0.0
    bandwidth_bytes_per_s: int | None = None  # None: unlimited

    def __post_init__(self) -> None:
        if not isinstance(self.down, bool):
            raise FaultError(f"down must be true or false, got {self.down!r}")
        for name in ("delay_ms", "jitter_ms"):
            value = getattr(self, name)
            if not _is_number(value) or not math.isfinite(value) or not 0 <= value <= MAX_DELAY_MS:
                raise FaultError(
                    f"{name} must be a number of milliseconds from 0 to {MAX_DELAY_MS:g}, "
                    f"got {value!r}"
                )
        if not _is_number(self.loss) or not 0.0 <= self.loss <= 1.0:
            raise FaultError(f"loss must be a probability from 0 to 1, got {self.loss!r}")
        rate = self.bandwidth_bytes_per_s
        if rate is not None and (not isinstance(rate, int) or isinstance(rate, bool) or rate < 1):
            raise FaultError(
                f"bandwidth_bytes_per_s must be a positive integer or null, got {rate!r}"
            )

    def updated(self, changes: object) -> LinkFaults:
        """A copy with the fields in a JSON object ``changes`` replaced (a partial update)."""
        if not isinstance(changes, Mapping):
            raise FaultError(f"faults must be a JSON object, got {type(changes).__name__}")
        unknown = sorted(str(key) for key in changes if key not in FAULT_FIELDS)
        if unknown:
            raise FaultError(
                f"unknown fault field(s) {', '.join(unknown)}; known: {', '.join(FAULT_FIELDS)}"
            )
        return dataclasses.replace(self, **{str(key): value for key, value in changes.items()})

    def to_json(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in FAULT_FIELDS}
