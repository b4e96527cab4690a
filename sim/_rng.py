"""One master seed, one independent PRNG per subsystem.

Each subsystem (network, workload, faults, every engine, ...) draws from its
own ``random.Random`` seeded by SHA-256 of the master seed and the
subsystem's name. Adding a draw in one subsystem then cannot shift the
sequence another one sees, so a change to, say, the workload mix leaves the
network's decisions for the same seed intact — the property FoundationDB's
simulator and TigerBeetle's VOPR rely on to keep seeds meaningful across
small code changes. Never the global ``random``: that would couple the run
to whatever else imported it.
"""

from __future__ import annotations

import hashlib
import random

__all__ = ["Rngs", "derive_seed"]


def derive_seed(master: int, name: str) -> int:
    """A 64-bit seed for subsystem ``name`` under ``master``."""
    digest = hashlib.sha256(f"twinmesh-sim/{master}/{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


class Rngs:
    """Hands out the per-subsystem generators of one run (each name once)."""

    __slots__ = ("_issued", "master")

    def __init__(self, master: int) -> None:
        self.master = master
        self._issued: set[str] = set()

    def get(self, name: str) -> random.Random:
        if name in self._issued:
            # Two users of one stream would make each depend on the other's draws.
            raise ValueError(f"the PRNG stream {name!r} was already handed out")
        self._issued.add(name)
        return random.Random(derive_seed(self.master, name))
