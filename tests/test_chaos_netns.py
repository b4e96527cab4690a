"""``twinmesh chaos run --netns``: the fleet on Linux network namespaces.

Real namespaces, real veth pairs, real sockets and (in the slow test) real
node processes; skipped with the probe's reason where the machine does not
allow namespaces (not Linux, not root, no iproute2).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from node_helpers import parse_metrics, wait_until

from twinmesh.node.chaos._backends import NetnsBackend
from twinmesh.node.chaos._netns import netns_probe
from twinmesh.node.chaos._nsnet import NsNet, sweep

ROOT = Path(__file__).resolve().parent.parent
PROBE = netns_probe()
pytestmark = pytest.mark.skipif(not PROBE.namespaces, reason=f"--netns: {PROBE.reason}")

SERVER = (
    "import socket,sys\n"
    "s=socket.socket();s.setsockopt(socket.SOL_SOCKET,socket.SO_REUSEADDR,1)\n"
    "s.bind(('0.0.0.0',9400));s.listen();print('up',flush=True)\n"
    "while True:\n c,a=s.accept();c.sendall(a[0].encode());c.close()\n"
)


def _ours() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [ln.split()[0] for ln in out.splitlines() if f"twinmesh-{os.getpid()}-" in ln]


def _dial(net: NsNet, a: str, b: str) -> str:
    """What a sees when it dials b: b's view of a's address, or the error."""
    code = (
        "import socket\ntry:\n"
        f" s=socket.create_connection(('{net.addr(b, a, 'listen')}',9400),timeout=0.6)\n"
        " print(s.recv(64).decode())\n"
        "except OSError as e:\n print(type(e).__name__)\n"
    )
    cmd = [*net.exec_prefix(a), sys.executable, "-c", code]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.strip()


def test_directed_cuts_isolation_and_heal_at_the_kernel() -> None:
    net = NsNet(names=("plant-a", "plant-b", "central"))
    net.up()
    servers = []
    try:
        for n in net.names:
            p = subprocess.Popen(
                [*net.exec_prefix(n), sys.executable, "-c", SERVER],
                stdout=subprocess.PIPE,
                text=True,
            )
            assert p.stdout is not None and p.stdout.readline().strip() == "up"
            servers.append(p)
        src_a = net.addr("plant-a", "plant-b", "src")
        assert _dial(net, "plant-a", "plant-b") == src_a  # a opens from its src address
        net.apply([("plant-a->plant-b", {"down": True})])
        # One-way: a's connections to b time out (silent drop at b), b's to a work.
        assert _dial(net, "plant-a", "plant-b") == "TimeoutError"
        assert _dial(net, "plant-b", "plant-a") == net.addr("plant-b", "plant-a", "src")
        net.apply(
            [
                ("plant-b->plant-a", {"down": True}),
                ("plant-a->central", {"down": True}),
                ("central->plant-a", {"down": True}),
            ]
        )
        assert net.wan_up == {"plant-a": False, "plant-b": True, "central": True}
        assert _dial(net, "plant-a", "central") != net.addr("plant-a", "central", "src")
        assert _dial(net, "central", "plant-b") == net.addr("central", "plant-b", "src")
        net.apply([("plant-b->central", {"bandwidth_bytes_per_s": 50_000})])
        qdisc = subprocess.run(
            ["tc", "-n", net.ns("plant-b"), "qdisc", "show", "dev", net.dev("plant-b", "central")],
            capture_output=True,
            text=True,
        ).stdout
        assert "tbf" in qdisc or "netem" in qdisc
        net.heal()
        assert all(net.wan_up.values()) and not net.down_links
        assert _dial(net, "plant-a", "plant-b") == src_a
        assert _dial(net, "central", "plant-a") == net.addr("central", "plant-a", "src")
        assert net.counters()["cuts"] == 4 and net.counters()["cables_pulled"] == 1
    finally:
        for p in servers:
            p.kill()
        net.down()
    assert _ours() == []
    for p in servers:
        assert p.wait(timeout=10) is not None


def test_the_sweep_removes_what_a_dead_run_left_and_nothing_else() -> None:
    dead = subprocess.Popen(["true"])
    dead.wait()
    stale, live = f"twinmesh-{dead.pid}-0", f"twinmesh-{os.getppid()}-9"
    for ns in (stale, live):
        subprocess.run(["ip", "netns", "add", ns], check=True)
    subprocess.run(
        [
            "ip",
            "link",
            "add",
            f"tm{dead.pid}m0",
            "type",
            "veth",
            "peer",
            "name",
            "x",
            "netns",
            live,
        ],
        check=True,
    )
    inside = subprocess.Popen(["ip", "netns", "exec", stale, "sleep", "300"])
    try:
        removed = sweep()
        assert stale in removed and f"tm{dead.pid}m0" in removed and live not in removed
        assert inside.wait(timeout=10) != 0  # killed, not left running in a deleted namespace
        listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
        assert stale not in listed and live in listed
    finally:
        inside.kill()
        subprocess.run(["ip", "netns", "del", live], check=False)
        subprocess.run(["ip", "netns", "del", stale], check=False)


def test_a_fleet_that_fails_to_start_leaves_no_namespace(tmp_path: Path) -> None:
    (tmp_path / "ca").mkdir()
    (tmp_path / "ca" / "ca.pem").write_text("not a certificate")  # issuing a node fails
    backend = NetnsBackend(netem=PROBE.netem)
    with pytest.raises(Exception):  # noqa: B017 - whatever the CA raises, it must clean up
        backend.up(tmp_path, plant_names=["plant-a"], interval=0.3, seed=1)
    assert _ours() == []


@pytest.mark.slow
def test_chaos_run_on_namespaces_with_kernel_cuts_and_crashes(tmp_path: Path) -> None:
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "twinmesh",
            "chaos",
            "run",
            str(ROOT / "scenarios" / "crash-during-sync.toml"),
            "--duration",
            "8",
            "--out",
            str(out),
            "--netns",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    report = json.loads((out / "report.json").read_text())
    assert report["backend"] == "netns" and report["ok"]
    assert all(v["ok"] and v["checks"] > 0 for v in report["checkers"].values()), report
    assert len(report["crashes"]) == 3
    net = report["figures"]["network"]
    assert net["cuts"] > 0 and net["cables_pulled"] > 0 and net["packets"] > 0
    mapping = "\n".join(report["mapping"])
    assert "isolate: KERNEL" in mapping and "crash: kill -9" in mapping
    fleet = json.loads((out / "fleet" / "fleet.json").read_text())
    assert not set(fleet["netns"].values()) & set(_listed())
    for pid in [n["pid"] for n in fleet["nodes"]]:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)


def _listed() -> list[str]:
    out = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    return [ln.split()[0] for ln in out.splitlines() if ln.strip()]


def _call(url: str, token: str, body: dict | None = None) -> tuple[int, dict]:
    import urllib.error
    import urllib.request

    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, method="GET" if body is None else "POST")
    req.add_header("Authorization", f"Bearer {token}")
    req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, {}


def test_nodes_in_namespaces_gossip_over_the_veths_and_stop_when_cut(tmp_path: Path) -> None:
    backend = NetnsBackend(netem=PROBE.netem)
    info = backend.up(tmp_path, plant_names=["plant-a"], interval=0.2, seed=1)
    try:
        api = {n["name"]: n["api"] for n in info["nodes"]}
        tok = info["tokens"]
        digest = lambda n: _call(api[n] + "/v1/digest", tok["viewer"])[1]["digest"]  # noqa: E731

        def rounds(node: str) -> float:
            with urllib.request.urlopen(api[node] + "/metrics", timeout=5) as resp:
                metrics = parse_metrics(resp.read().decode())
            return metrics[("twinmesh_gossip_rounds_total", frozenset())]

        backend.net.apply(
            [("central->plant-a", {"down": True}), ("plant-a->central", {"down": True})]
        )  # type: ignore[union-attr]
        body = {"id": "plant-a/pump-1", "model": "dtmi:twinmesh:demo:Pump;1"}
        assert _call(api["plant-a"] + "/v1/entities", tok["operator"], body)[0] == 201
        # Cut in the kernel: ten gossip rounds of both nodes later, nothing crossed.
        since = {n: rounds(n) for n in ("plant-a", "central")}
        wait_until(
            lambda: all(rounds(n) >= since[n] + 10 for n in since),
            timeout=30,
            what="ten gossip rounds at both nodes while cut",
        )
        assert digest("plant-a") != digest("central")
        backend.net.heal()  # type: ignore[union-attr]
        wait_until(
            lambda: digest("plant-a") == digest("central"),
            timeout=30,
            what="the write to reach central over the healed veth",
        )
    finally:
        backend.down(tmp_path)
    assert _ours() == []
