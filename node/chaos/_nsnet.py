"""A fleet's network made of Linux network namespaces: one per node, a veth
pair per pair of nodes (the WAN), a veth pair per node to the root namespace
(the plant's own LAN: its clients and the harness reach its API there).

Why a full mesh of veth pairs rather than one bridge: a directed link then
has a device of its own (the source's end of the pair), so per-link shaping
needs only a root qdisc on it (``tbf`` for bandwidth, ``netem`` for delay and
loss) and no tc classifier — which this development kernel does not have.

Directed cuts follow the link proxies' meaning, which is the only one TCP can
give a one-way fault: link ``a->b`` down means connections *a opens to b* fail,
while b's connections to a still work. Each end of a pair has two addresses,
``src`` (primary: the kernel picks it as the source of what the node opens)
and ``listen`` (what the peer dials). ``a->b`` down puts a blackhole route to
a's ``src`` address in b's namespace: a's SYN reaches b, b's answer is
dropped — a silent drop at the far end, as on a real split WAN (timeouts, not
refusals) — while b's own connections (``b.src -> a.listen``) are untouched.
A node whose every link is down also has its WAN devices set down (the cable
pulled: its connections fail at once).

Every name carries the owner's pid (``twinmesh-<pid>-<i>``, ``tm<pid>m<i>``):
``sweep()`` removes what a dead owner left — namespaces, the processes still
inside them, root-side devices — and never touches a live owner's.
Only iproute2 (``ip``, ``tc``) is used; traffic never leaves the machine (no
route from any namespace leads anywhere but the fleet's own devices).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import signal
import subprocess
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["NsError", "NsNet", "shaping", "sweep"]

_NS = re.compile(r"^twinmesh-(?:probe-)?(\d+)(?:-\d+)?$")
_ROOT_DEV = re.compile(r"^tm(\d+)m\d+$")
_LOCK = Path("/run/twinmesh-netns.lock")
_WAN_BASE = int(ipaddress.IPv4Address("172.16.0.0"))


class NsError(RuntimeError):
    """A namespace command failed; the message names the command and the kernel's reason."""


def _run(argv: Sequence[str], *, stdin: str | None = None, check: bool = True) -> str:
    proc = subprocess.run(
        list(argv), input=stdin, capture_output=True, text=True, timeout=30, check=False
    )
    if check and proc.returncode != 0:
        raise NsError(f"{' '.join(argv)}: {(proc.stderr or proc.stdout).strip()}")
    return proc.stdout


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _kill_inside(ns: str) -> None:
    out = _run(["ip", "netns", "pids", ns], check=False)
    for word in out.split():
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(word), signal.SIGKILL)


def sweep(*, own: bool = True) -> list[str]:
    """Remove namespaces and root devices of dead owners (and of this process
    when ``own``: a run starting here ended, or it would still hold them)."""
    removed = []
    me = os.getpid()
    for line in _run(["ip", "netns", "list"], check=False).splitlines():
        name = line.split()[0] if line.split() else ""
        m = _NS.match(name)
        if not m:
            continue
        pid = int(m.group(1))
        if _alive(pid) and not (own and pid == me):
            continue
        _kill_inside(name)
        _run(["ip", "netns", "del", name], check=False)
        removed.append(name)
    for line in _run(["ip", "-o", "link", "show"], check=False).splitlines():
        parts = line.split(":")
        if len(parts) < 2:
            continue
        dev = parts[1].strip().split("@")[0]
        m = _ROOT_DEV.match(dev)
        if m and (not _alive(int(m.group(1))) or (own and int(m.group(1)) == me)):
            _run(["ip", "link", "del", dev], check=False)
            removed.append(dev)
    return removed


def shaping(faults: dict[str, Any], *, netem: bool) -> list[str] | None:
    """The root qdisc (tc arguments after ``root``) for a link's faults, or
    None for none. With netem: delay, jitter, loss and rate in one qdisc;
    without: only a bandwidth cap (tbf) — the rest is reported as not applied."""
    delay = float(faults.get("delay_ms") or 0)
    jitter = float(faults.get("jitter_ms") or 0)
    loss = float(faults.get("loss") or 0)
    rate = faults.get("bandwidth_bytes_per_s")
    if netem and (delay or jitter or loss or rate):
        args = ["netem"]
        if delay or jitter:
            args += ["delay", f"{delay:g}ms"] + ([f"{jitter:g}ms"] if jitter else [])
        if loss:
            args += ["loss", f"{100 * loss:g}%"]
        if rate:
            args += ["rate", f"{int(rate) * 8}bit"]
        return args
    if rate:
        burst = max(int(rate) // 10, 16 * 1024)
        return ["tbf", "rate", f"{int(rate) * 8}bit", "burst", str(burst), "latency", "2s"]
    return None


@dataclass(slots=True)
class NsNet:
    """The namespaces of one run. ``up()`` builds them; ``down()`` removes all."""

    names: tuple[str, ...]
    netem: bool = False
    pid: int = field(default_factory=os.getpid)
    octet: int = 0  # the root-side LAN is 10.<octet>.<i>.0/30
    down_links: set[tuple[str, str]] = field(default_factory=set)
    shaped: dict[tuple[str, str], list[str] | None] = field(default_factory=dict)
    wan_up: dict[str, bool] = field(default_factory=dict)
    cuts: int = 0  # blackhole routes added over the run
    cables_pulled: int = 0  # times a node's WAN veths were set down

    def ns(self, name: str) -> str:
        return f"twinmesh-{self.pid}-{self.names.index(name)}"

    def dev(self, src: str, dst: str) -> str:
        """src's end of the pair to dst (a name inside src's namespace)."""
        return f"w{self.names.index(dst)}"

    def _pair(self, a: str, b: str) -> int:
        i, j = sorted((self.names.index(a), self.names.index(b)))
        n = len(self.names)
        return i * n + j

    def addr(self, node: str, peer: str, role: str) -> str:
        """node's ``src`` or ``listen`` address on its pair with peer."""
        base = _WAN_BASE + 8 * self._pair(node, peer)
        first = self.names.index(node) < self.names.index(peer)
        offset = {("src", True): 1, ("listen", True): 2, ("src", False): 3, ("listen", False): 4}
        return str(ipaddress.IPv4Address(base + offset[(role, first)]))

    def lan(self, node: str) -> str:
        """The node's address on its LAN to the root namespace (its API)."""
        return f"10.{self.octet}.{self.names.index(node)}.2"

    def listen_addresses(self, node: str) -> tuple[str, ...]:
        return tuple(self.addr(node, p, "listen") for p in self.names if p != node)

    def _pick_octet(self) -> int:
        used = _run(["ip", "-4", "-o", "addr", "show"], check=False)
        used += _run(["ip", "-4", "route", "show", "table", "all"], check=False)
        for octet in range(200, 255):
            if not re.search(rf"\b10\.{octet}\.", used):
                return octet
        raise NsError("no free 10.X.0.0/16 (X in 200..254) for the fleet's LAN")

    def up(self) -> None:
        if len(self.names) > 250:
            raise NsError("a namespace fleet has at most 250 nodes")
        sweep()
        _LOCK.parent.mkdir(parents=True, exist_ok=True)
        with open(_LOCK, "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # two runs must not pick the same LAN
            try:
                self.octet = self._pick_octet()
                self._build()
            except BaseException:
                self.down()
                raise
        for n in self.names:
            self.wan_up[n] = True

    def _build(self) -> None:
        for i, n in enumerate(self.names):
            ns = self.ns(n)
            _run(["ip", "netns", "add", ns])
            root_dev = f"tm{self.pid}m{i}"
            peer = ["peer", "name", "lan", "netns", ns]
            _run(["ip", "link", "add", root_dev, "type", "veth", *peer])
            _run(["ip", "addr", "add", f"10.{self.octet}.{i}.1/30", "dev", root_dev])
            _run(["ip", "link", "set", root_dev, "up"])
            _run(
                ["ip", "-n", ns, "-batch", "-"],
                stdin=f"link set lo up\naddr add {self.lan(n)}/30 dev lan\nlink set lan up\n",
            )
        for a in self.names:
            for b in self.names:
                if self.names.index(a) >= self.names.index(b):
                    continue
                _run(
                    [
                        "ip",
                        "link",
                        "add",
                        self.dev(a, b),
                        "netns",
                        self.ns(a),
                        "type",
                        "veth",
                        "peer",
                        "name",
                        self.dev(b, a),
                        "netns",
                        self.ns(b),
                    ]
                )
        for a in self.names:
            cmds = []
            for b in self.names:
                if a == b:
                    continue
                dev = self.dev(a, b)
                # src first: the primary address is the source of what a opens.
                cmds += [
                    f"addr add {self.addr(a, b, 'src')}/29 dev {dev}",
                    f"addr add {self.addr(a, b, 'listen')}/29 dev {dev}",
                    f"link set {dev} up",
                ]
            _run(["ip", "-n", self.ns(a), "-batch", "-"], stdin="\n".join(cmds) + "\n")

    def exec_prefix(self, node: str) -> list[str]:
        return ["ip", "netns", "exec", self.ns(node)]

    def apply(self, links: Iterable[tuple[str, dict[str, Any]]]) -> None:
        """Set directed links (``"a->b"``, proxy fault dicts) at the kernel."""
        routes: dict[str, list[str]] = {}
        qdiscs: dict[str, list[str]] = {}
        for name, faults in links:
            a, b = name.split("->", 1)
            key = (a, b)
            down = bool(faults.get("down"))
            if down and key not in self.down_links:
                self.down_links.add(key)
                self.cuts += 1
                routes.setdefault(b, []).append(
                    f"route replace blackhole {self.addr(a, b, 'src')}/32"
                )
            elif not down and key in self.down_links:
                self.down_links.discard(key)
                routes.setdefault(b, []).append(f"route del blackhole {self.addr(a, b, 'src')}/32")
            shape = shaping(faults, netem=self.netem)
            if self.shaped.get(key) != shape:
                dev = self.dev(a, b)
                if shape is None:
                    qdiscs.setdefault(a, []).append(f"qdisc del dev {dev} root")
                else:
                    qdiscs.setdefault(a, []).append(
                        f"qdisc replace dev {dev} root {' '.join(shape)}"
                    )
                self.shaped[key] = shape
        for node, cmds in routes.items():
            _run(["ip", "-n", self.ns(node), "-batch", "-"], stdin="\n".join(cmds) + "\n")
        for node, cmds in qdiscs.items():
            _run(["tc", "-n", self.ns(node), "-batch", "-"], stdin="\n".join(cmds) + "\n")
        self._cables()

    def _cables(self) -> None:
        """A node cut off on every link has its WAN devices down (cable pulled)."""
        for n in self.names:
            mine = [(a, b) for a in self.names for b in self.names if a != b and n in (a, b)]
            up = not mine or not all(k in self.down_links for k in mine)
            if up != self.wan_up.get(n, True):
                state = "up" if up else "down"
                cmds = [f"link set {self.dev(n, p)} {state}" for p in self.names if p != n]
                _run(["ip", "-n", self.ns(n), "-batch", "-"], stdin="\n".join(cmds) + "\n")
                self.wan_up[n] = up
                self.cables_pulled += not up

    def heal(self) -> None:
        self.apply(
            (f"{a}->{b}", {"down": False})
            for a in self.names
            for b in self.names
            if a != b and ((a, b) in self.down_links or self.shaped.get((a, b)))
        )

    def counters(self) -> dict[str, int]:
        """Bytes and packets the WAN devices sent, and blackholed links now."""
        sent_bytes = sent_packets = 0
        for n in self.names:
            raw = _run(["ip", "-n", self.ns(n), "-j", "-s", "link", "show"], check=False)
            for dev in json.loads(raw or "[]"):
                if re.fullmatch(r"w\d+", str(dev.get("ifname", ""))):
                    tx = dev.get("stats64", {}).get("tx", {})
                    sent_bytes += int(tx.get("bytes", 0))
                    sent_packets += int(tx.get("packets", 0))
        return {
            "bytes": sent_bytes,
            "packets": sent_packets,
            "cuts": self.cuts,
            "cables_pulled": self.cables_pulled,
        }

    def down(self) -> None:
        """Remove every namespace and device of this run, killing what runs inside."""
        for i, n in enumerate(self.names):
            ns = self.ns(n)
            _kill_inside(ns)
            _run(["ip", "netns", "del", ns], check=False)
            _run(["ip", "link", "del", f"tm{self.pid}m{i}"], check=False)
