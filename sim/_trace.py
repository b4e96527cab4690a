"""The run's trace: an incremental SHA-256 over every event that matters.

Every delivered and dropped message (with its bytes), every write, every
fault transition goes into the hash in the order it happens. Two runs of one
seed must give the same digest; a difference means something outside the
seed (wall clock, hash-seed-dependent iteration, global random) leaked into
the run — the determinism check FoundationDB runs on every simulation seed.
Messages are hashed, not stored, so a run of millions of messages costs no
memory; the few records the report needs (faults) are kept separately.
"""

from __future__ import annotations

import hashlib

__all__ = ["Trace"]


class Trace:
    __slots__ = ("_hash", "events")

    def __init__(self) -> None:
        self._hash = hashlib.sha256()
        self.events = 0

    def record(self, t: float, kind: str, *fields: object, data: bytes = b"") -> None:
        # repr(float) is exact and stable, so equal runs hash equal bytes.
        head = "|".join((repr(t), kind, *(str(f) for f in fields)))
        self._hash.update(head.encode())
        self._hash.update(len(data).to_bytes(4, "big"))
        if data:
            self._hash.update(data)
        self._hash.update(b"\n")
        self.events += 1

    def hexdigest(self) -> str:
        return self._hash.hexdigest()
