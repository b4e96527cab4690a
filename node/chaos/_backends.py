"""Where a chaos run's faults are applied: the fleet's link proxies, or the
kernel on network namespaces (``--netns``). Both give the harness the same
fleet description (``fleet.json``'s keys) and the same four verbs: set links,
heal all, counters, tear down; and they say how each fault kind was mapped.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import aiohttp

from twinmesh.sim._scenario import Scenario

from .._signing import ensure_fleet_signing_key, ensure_token_secret, issue_signing_identity
from .._tokens import Role, TokenIssuer
from ..fleet import fleet_down, fleet_up
from ..fleet._launch import READY_TIMEOUT, TOKEN_DAYS, spawn_node
from ..security import init_ca, issue_node
from ._nsnet import NsNet

__all__ = ["NetnsBackend", "ProxyBackend"]

HEALED = {"down": False, "delay_ms": 0, "jitter_ms": 0, "loss": 0, "bandwidth_bytes_per_s": None}
API_PORT = 8400
GOSSIP_PORT = 9400


class ProxyBackend:
    """The fleet's TCP link proxies on loopback (``twinmesh fleet up``)."""

    name = "proxy"

    def __init__(self) -> None:
        self.control = ""

    def up(self, directory: Path, **kw: Any) -> dict[str, Any]:
        info = fleet_up(directory, **kw)
        self.control = info["proxy"]["control"]
        return info

    def spawn(self, node_dir: Path, config: Path, name: str) -> Any:
        return spawn_node(node_dir, config)

    async def apply(self, session: aiohttp.ClientSession, links: Any) -> None:
        for name, faults in links:
            async with session.post(f"{self.control}/links/{name}", json=faults) as resp:
                if resp.status != 200:
                    raise RuntimeError(f"link proxy refused {name}: {await resp.text()}")

    async def heal(self, session: aiohttp.ClientSession) -> None:
        async with session.post(f"{self.control}/links", json=HEALED) as resp:
            resp.raise_for_status()

    async def counters(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        async with session.get(f"{self.control}/links") as resp:
            links = (await resp.json())["links"]
        return {
            "backend": "proxy",
            "connections": sum(link["stats"]["accepted"] for link in links),
            "refused_down": sum(link["stats"]["refused_down"] for link in links),
            "reset_by_loss": sum(link["stats"]["reset_by_loss"] for link in links),
            "cut": sum(link["stats"]["cut"] for link in links),
            "bytes": sum(
                link["stats"]["bytes_to_upstream"] + link["stats"]["bytes_to_client"]
                for link in links
            ),
        }

    def down(self, directory: Path) -> None:
        fleet_down(directory)

    def mapping(self, scenario: Scenario, notes: tuple[str, ...]) -> tuple[str, ...]:
        return notes


def _node_config(
    directory: Path, name: str, net: NsNet, interval: float, clock_offset: float
) -> Path:
    ca = directory / "ca"
    own = ca / "nodes" / name
    lines = [
        "[node]",
        f'name = "{name}"',
        f'role = "{"central" if name == "central" else "plant"}"',
        f'data_dir = "{directory / name / "data"}"',
        *([f"clock_offset = {float(clock_offset)!r}"] if clock_offset else []),
        "",
        "[api]",
        f'listen = "{net.lan(name)}:{API_PORT}"',
        "",
        "[gossip]",
        # Every WAN address of this namespace; peers dial their pair's listen address.
        f'listen = "0.0.0.0:{GOSSIP_PORT}"',
        f"interval = {interval}",
        "fanout = 2",
        "",
        "[tls]",
        f'ca = "{ca / "ca.pem"}"',
        f'cert = "{own / "cert.pem"}"',
        f'key = "{own / "key.pem"}"',
        f'signing = "{own}"',
        "",
        "[auth]",
        f'token_secret_file = "{ca / "token-secret"}"',
        "",
    ]
    for peer in net.names:
        if peer != name:
            url = f"https://{net.addr(peer, name, 'listen')}:{GOSSIP_PORT}"
            lines += ["[[peers]]", f'name = "{peer}"', f'url = "{url}"', ""]
    path = directory / name / "node.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, sig)


class NetnsBackend:
    """One network namespace per node, a veth pair per pair (``_nsnet.py``)."""

    name = "netns"

    def __init__(self, *, netem: bool) -> None:
        self.netem = netem
        self.net: NsNet | None = None
        self.pids: dict[str, int] = {}

    def up(
        self,
        directory: Path,
        *,
        plant_names: list[str],
        interval: float,
        seed: int,
        clock_offsets: dict[str, float] | None = None,
    ) -> dict[str, Any]:
        del seed  # nothing random here: the kernel draws netem's loss itself
        directory = directory.resolve()
        directory.mkdir(parents=True, exist_ok=True)
        names = (*plant_names, "central")
        net = NsNet(names=names, netem=self.netem)
        self.net = net
        net.up()
        try:
            return self._start(directory, net, names, interval, clock_offsets or {})
        except BaseException:
            self.down(directory)  # nothing left behind when a node does not start
            raise

    def _start(
        self,
        directory: Path,
        net: NsNet,
        names: tuple[str, ...],
        interval: float,
        offsets: dict[str, float],
    ) -> dict[str, Any]:
        ca = directory / "ca"
        if not (ca / "ca.pem").exists():
            init_ca(ca, fleet="twinmesh-netns")
            ensure_fleet_signing_key(ca)
            ensure_token_secret(ca)
        for name in names:
            if not (ca / "nodes" / name / "cert.pem").exists():
                creds = issue_node(ca, name, ips=net.listen_addresses(name), dns=("localhost",))
                issue_signing_identity(ca, name, creds.cert_path.parent)
        started = []
        for name in names:
            config = _node_config(directory, name, net, interval, offsets.get(name, 0.0))
            proc, ready = self.spawn(directory / name, config, name)
            started.append((name, proc, ready, config))
        deadline = time.monotonic() + READY_TIMEOUT
        for name, proc, ready, _ in started:
            while not ready.exists():
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(
                        f"{name} did not start in its namespace; see {directory / name}/node.log"
                    )
                time.sleep(0.05)
        issuer = TokenIssuer((ca / "token-secret").read_bytes())
        expires = int(time.time()) + TOKEN_DAYS * 86400
        info = {
            "dir": str(directory),
            "gossip_interval": interval,
            "netns": {n: net.ns(n) for n in names},
            "nodes": [
                {
                    "name": name,
                    "role": "central" if name == "central" else "plant",
                    "api": f"http://{net.lan(name)}:{API_PORT}",
                    "gossip_port": GOSSIP_PORT,
                    "config": str(config),
                    "pid": proc.pid,
                }
                for name, proc, _, config in started
            ],
            "tokens": {
                role.name.lower(): issuer.issue(role, f"local-{role.name.lower()}", expires)
                for role in Role
            },
        }
        (directory / "fleet.json").write_text(json.dumps(info, indent=2))
        return info

    def spawn(self, node_dir: Path, config: Path, name: str) -> Any:
        assert self.net is not None
        proc, ready = spawn_node(node_dir, config, prefix=tuple(self.net.exec_prefix(name)))
        self.pids[name] = proc.pid
        return proc, ready

    async def apply(self, session: aiohttp.ClientSession, links: Any) -> None:
        del session
        assert self.net is not None
        self.net.apply(list(links))

    async def heal(self, session: aiohttp.ClientSession) -> None:
        del session
        assert self.net is not None
        self.net.heal()

    async def counters(self, session: aiohttp.ClientSession) -> dict[str, Any]:
        del session
        assert self.net is not None
        return {"backend": "netns", **self.net.counters()}

    def down(self, directory: Path) -> None:
        del directory
        for pid in self.pids.values():
            _kill_group(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for pid in self.pids.values():
            while time.monotonic() < deadline:
                try:
                    done, _ = os.waitpid(pid, os.WNOHANG)
                except ChildProcessError:
                    break
                if done:
                    break
                time.sleep(0.02)
            _kill_group(pid, signal.SIGKILL)
        if self.net is not None:
            self.net.down()  # also kills anything still inside a namespace

    def mapping(self, scenario: Scenario, notes: tuple[str, ...]) -> tuple[str, ...]:
        """The proxy notes rewritten for the kernel: what netns applies, and how."""
        kinds = {f.kind for f in scenario.faults}
        out = [
            "netns: one network namespace per node; a veth pair per pair of nodes (the WAN); "
            "clients reach each node's API over its own veth to the root namespace"
        ]
        cuts = sorted(
            kinds
            & {"isolate", "partition", "halves", "majorities-ring", "bridge", "one-way", "flapping"}
        )
        if cuts:
            out.append(
                f"{', '.join(cuts)}: KERNEL — link a->b down = a blackhole route to a's "
                "source address in b's namespace (a's connections to b time out; b's to a "
                "work); a node down on every link also has its WAN veths set down"
            )
        if kinds & {"clog", "swizzle"}:
            out.append(
                "clog/swizzle: APPROXIMATED as kernel cuts (blackhole routes) — the simulator "
                "holds messages and delivers them on release; TCP retransmits or gives up"
            )
        if "crash" in kinds:
            out.append("crash: kill -9 of the node's process group inside its namespace")
        out += [n for n in notes if n.startswith(("clock:", "clock-jump:"))]
        applied = ("latency", "tail", "loss") if self.netem else ()
        for note in notes:
            head = note.split(":", 1)[0]
            if not head.startswith(("latency", "loss", "duplicate")):
                continue
            if head.startswith(applied):
                out.append(
                    f"{head}: KERNEL — tc netem on the source's veth (delay + uniform jitter "
                    "of the tail's scale, per-packet loss that TCP retransmits)"
                )
            elif head.startswith("duplicate"):
                out.append(
                    f"{head}: NOT APPLIED — the plan's link settings carry no duplication, "
                    "reordering or queue bound"
                )
            else:
                out.append(
                    f"{head}: NOT APPLIED — this kernel has no sch_netem, so no "
                    f"{'delay or jitter' if head == 'latency' else 'loss'} is injected "
                    "(the links run at veth speed)"
                )
        bw = any(p.bandwidth for p in scenario.links.profiles.values()) or any(
            "bandwidth" in dict(f.link_changes) for f in scenario.faults if f.kind == "link"
        )
        if bw:
            out.append(
                "bandwidth: KERNEL — "
                + ("netem rate" if self.netem else "tc tbf")
                + " on the source's veth"
            )
        return tuple(out)
