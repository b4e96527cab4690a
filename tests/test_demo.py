"""``twinmesh demo`` end to end: broker, three synthetic plants, four nodes.

The headless run must play every step and every step must meet its
expectation (this build has every endpoint the script uses: scoring and
alerts, commands, pages); a step that fails makes the exit non-zero. A Ctrl-C
in the middle must stop every process the demo started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ALL_STEPS = set(range(1, 12))


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _all_pids(workdir: Path) -> list[int]:
    procs = json.loads((workdir / "demo-processes.json").read_text())
    return [
        procs["broker"],
        procs["link_proxy"],
        *procs["plants"].values(),
        *procs["nodes"].values(),
    ]


def test_demo_headless_plays_the_story(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "twinmesh", "demo", "--headless", "--dir", str(workdir)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    summary = json.loads((workdir / "demo-summary.json").read_text())
    steps = {s["number"]: s for s in summary["steps"]}
    assert len(steps) == 11, proc.stdout
    assert set(steps) == ALL_STEPS
    for number in sorted(ALL_STEPS):
        assert steps[number]["ok"], (steps[number], proc.stdout[-3000:])
    assert summary["ok"]
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "demo summary:" in proc.stdout
    for pid in _all_pids(workdir):
        assert _gone(pid), f"process {pid} still running after the demo"


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_stops_everything(tmp_path: Path) -> None:
    workdir = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "twinmesh", "demo", "--dir", str(workdir), "--pace", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert proc.stdout is not None
    seen = []
    deadline = time.monotonic() + 120
    for line in proc.stdout:
        seen.append(line)
        if line.lstrip().startswith("1. "):
            break
        assert time.monotonic() < deadline, "".join(seen)
    proc.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends
    rest, _ = proc.communicate(timeout=120)
    out = "".join(seen) + rest
    assert proc.returncode == 130, out
    assert "stopping everything" in out and "stopped:" in out
    for pid in _all_pids(workdir):
        assert _gone(pid), f"process {pid} still running after Ctrl-C:\n{out}"
