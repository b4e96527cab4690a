"""Test-only hooks that make a node's crash windows wide on purpose (issue 17).

Read once, from the environment, when a :class:`~twinmesh.node._node.Node` is
built; absent (the default, and always in production) they cost one ``None``
check per local write. A test sets ``TWINMESH_TEST_COMMIT_HOLD`` to a
directory and steers the running node process through files in it — no
sleeping and hoping that a ``kill -9`` lands in the window:

* ``hold`` exists: a local write's commit waits after the write was joined in
  memory and before the store sees it; the node touches ``held`` when a commit
  is waiting and goes on once ``hold`` is removed (or is killed meanwhile).
* ``unsettled`` exists: reads do not wait for in-flight commits
  (``Node.settled`` returns at once) — the node as it was before issue 17, so
  a test can show the root fix (dots are never reissued) on its own.
* ``read-waiting`` is touched by the node when a read waits for a commit.
"""

from __future__ import annotations

import asyncio
import logging
import os
from pathlib import Path

__all__ = ["ENV_COMMIT_HOLD", "CommitHold", "commit_hold_from_env"]

log = logging.getLogger("twinmesh.node")

ENV_COMMIT_HOLD = "TWINMESH_TEST_COMMIT_HOLD"


class CommitHold:
    __slots__ = ("directory",)

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    async def before_commit(self) -> None:
        hold = self.directory / "hold"
        if not hold.exists():
            return
        (self.directory / "held").touch()
        while hold.exists():  # polling a file: test mode only
            await asyncio.sleep(0.01)

    def reads_unsettled(self) -> bool:
        return (self.directory / "unsettled").exists()

    def reader_waiting(self) -> None:
        (self.directory / "read-waiting").touch()


def commit_hold_from_env() -> CommitHold | None:
    raw = os.environ.get(ENV_COMMIT_HOLD)
    if not raw:
        return None
    log.warning("test hook %s=%s is active: commits may be held", ENV_COMMIT_HOLD, raw)
    return CommitHold(Path(raw))
