"""Can this machine run a scenario on network namespaces, and with ``tc netem``?

Kernel-level cuts need Linux, root (CAP_NET_ADMIN, CAP_SYS_ADMIN for ``ip
netns``), iproute2 and veth pairs; kernel-level delay and loss also need the
``sch_netem`` qdisc. The probe tries exactly what a run does — makes a
namespace of its own with a veth pair, brings it up, puts a netem qdisc on
it — and removes it again, so its answer is the machine's, not a guess from
the kernel version. Without netem a run still goes ahead (the report's mapping
says which link faults were not applied); without namespaces it cannot.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass

__all__ = ["NetnsProbe", "netns_probe"]


@dataclass(frozen=True, slots=True, kw_only=True)
class NetnsProbe:
    namespaces: bool  # namespaces + veth pairs work: kernel cuts and isolation
    netem: bool  # tc netem works on a veth: kernel delay, jitter, loss
    reason: str


def _run(*argv: str) -> tuple[bool, str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    return proc.returncode == 0, (proc.stderr or proc.stdout).strip()


def netns_probe() -> NetnsProbe:
    """Touches only a namespace it creates and deletes."""

    def no(reason: str) -> NetnsProbe:
        return NetnsProbe(namespaces=False, netem=False, reason=reason)

    if not sys.platform.startswith("linux"):
        return no(f"network namespaces need Linux (this is {sys.platform})")
    if os.geteuid() != 0:
        return no("network namespaces and tc need root (CAP_NET_ADMIN)")
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return no(f"'{tool}' (iproute2) is not installed")
    ns = f"twinmesh-probe-{os.getpid()}"
    ok, why = _run("ip", "netns", "add", ns)
    if not ok:
        return no(f"cannot create a network namespace: {why}")
    try:
        for argv in (
            ("ip", "-n", ns, "link", "set", "lo", "up"),
            ("ip", "-n", ns, "link", "add", "p0", "type", "veth", "peer", "name", "p1"),
            ("ip", "-n", ns, "link", "set", "p0", "up"),
            ("ip", "-n", ns, "link", "set", "p1", "up"),
        ):
            ok, why = _run(*argv)
            if not ok:
                return no(f"cannot configure a namespace ({' '.join(argv[3:])}): {why}")
        ok, why = _run("tc", "-n", ns, "qdisc", "add", "dev", "p0", "root", "netem", "delay", "1ms")
        if not ok:
            return NetnsProbe(
                namespaces=True,
                netem=False,
                reason="network namespaces and veth pairs work; tc netem does not "
                f"({why}; the kernel lacks sch_netem): cuts and crashes at the kernel, "
                "delay/jitter/loss not applied (see the report's mapping)",
            )
    finally:
        _run("ip", "netns", "del", ns)
    return NetnsProbe(
        namespaces=True, netem=True, reason="network namespaces with tc netem are available"
    )
