"""``twinmesh cosim whatif`` answers bad input and an absent node with a reason, not a traceback."""

from __future__ import annotations

import socket
import subprocess
import sys


def _whatif(*extra: str) -> subprocess.CompletedProcess[str]:
    with socket.socket() as s:  # a loopback port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return subprocess.run(
        [sys.executable, "-m", "twinmesh", "cosim", "whatif", "plant-a/line-1/motor-1",
         "--api", f"http://127.0.0.1:{port}", "--token", "t", "--horizon", "7200", *extra],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip


def test_a_node_that_is_not_there_is_named_not_a_traceback() -> None:
    proc = _whatif()
    assert proc.returncode == 1, proc.stderr
    assert "not reachable" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_parameter_that_is_not_a_number_is_refused_before_calling() -> None:
    proc = _whatif("--param", "thermal.cooling_gain=fast")
    assert proc.returncode == 2, proc.stderr
    assert "expected FMU.VARIABLE=NUMBER" in proc.stderr
    assert "Traceback" not in proc.stderr
