"""``twinmesh plant simulate`` in a child process, waited for by its READY line."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

__all__ = ["PlantProcess"]


class PlantProcess:
    def __init__(self, config: Path, timeout: float = 60.0) -> None:
        self.log = config.parent / "plant.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "twinmesh", "plant", "simulate", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=open(self.log, "ab"),  # noqa: SIM115 - the child owns it
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            if select.select([self.proc.stdout], [], [], 0.5)[0]:
                line = self.proc.stdout.readline().decode()
                if line.startswith("READY "):
                    self.ready: dict[str, Any] = json.loads(line[6:])
                    return
        self.stop()
        raise AssertionError("the plant did not print READY")

    def file(self, key: str) -> Path:
        return Path(self.ready["files"][key])

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
