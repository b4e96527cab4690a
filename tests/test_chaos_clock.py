"""A node's clock offset (node.clock_offset), and the chaos CLI's refusals.

The clock offset is how a chaos run skews one replica when every process
shares the system clock. It must reach everything the node stamps; the token
check is the cheapest witness: a token with 30 minutes left is expired to a
node whose clock runs an hour ahead, and valid to its neighbour.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from twinmesh.node._config import ConfigError, load_config
from twinmesh.node._tokens import Role, TokenIssuer
from twinmesh.node.fleet import fleet_down, fleet_up

ROOT = Path(__file__).resolve().parent.parent


def _status(url: str, token: str) -> int:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return int(resp.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def test_a_node_runs_on_its_configured_clock_offset(tmp_path: Path) -> None:
    fleet = fleet_up(tmp_path / "fleet", plants=1, clock_offsets={"plant-a": 3600.0})
    try:
        issuer = TokenIssuer((tmp_path / "fleet" / "ca" / "token-secret").read_bytes())
        token = issuer.issue(Role.VIEWER, "half-hour", int(time.time()) + 1800)
        api = {n["name"]: n["api"] for n in fleet["nodes"]}
        assert _status(api["plant-a"] + "/v1/digest", token) == 401
        assert _status(api["central"] + "/v1/digest", token) == 200
    finally:
        fleet_down(tmp_path / "fleet")
    text = (tmp_path / "fleet" / "plant-a" / "node.toml").read_text()
    assert "clock_offset = 3600.0" in text
    assert "clock_offset" not in (tmp_path / "fleet" / "central" / "node.toml").read_text()


def test_clock_offset_is_checked(tmp_path: Path) -> None:
    for bad, why in (('"1h"', "expected float"), ("1e9", "expected -1..1 year")):
        cfg = tmp_path / "node.toml"
        cfg.write_text(
            f'[node]\nname = "a"\ndata_dir = "d"\nclock_offset = {bad}\n'
            '[gossip]\nlisten = "127.0.0.1:1"\n'
        )
        with pytest.raises(ConfigError, match=why):
            load_config(cfg)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["scenarios/nope.toml"], "a readable scenario file"),
        (["scenarios/wan-split.toml", "--duration", "1"], "--duration must be 2..3600"),
        (["scenarios/fleet-50.toml"], "at most 26"),
    ],
)
def test_chaos_cli_refuses_with_a_reason(argv: list[str], message: str) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "twinmesh", "chaos", "run", *argv],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr


def test_netns_says_why_it_cannot_run() -> None:
    from twinmesh.node.chaos._netns import netns_probe

    if netns_probe().namespaces:
        pytest.skip("this machine can run --netns; tests/test_chaos_netns.py runs it")
    proc = subprocess.run(
        [sys.executable, "-m", "twinmesh", "chaos", "run", "scenarios/wan-split.toml", "--netns"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 3
    assert "--netns" in proc.stderr and len(proc.stderr.strip()) > 30
