"""Can this machine run a scenario on network namespaces with ``tc netem``?

Kernel-level faults (per-packet loss, duplication, reordering, delay
distributions) need Linux, root (CAP_NET_ADMIN, CAP_SYS_ADMIN for ``ip
netns``) and the ``sch_netem`` qdisc. The probe tries exactly what a run
would do — make a namespace of our own, bring its loopback up, put a netem
qdisc on it — and removes the namespace again, so its answer is the
machine's, not a guess from the kernel version.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

__all__ = ["netns_probe"]


def _run(*argv: str) -> tuple[bool, str]:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return False, str(exc)
    return proc.returncode == 0, (proc.stderr or proc.stdout).strip()


def netns_probe() -> tuple[bool, str]:
    """(usable, reason). Touches only a namespace it creates and deletes."""
    if not sys.platform.startswith("linux"):
        return False, f"network namespaces need Linux (this is {sys.platform})"
    if os.geteuid() != 0:
        return False, "network namespaces and tc need root (CAP_NET_ADMIN)"
    for tool in ("ip", "tc"):
        if shutil.which(tool) is None:
            return False, f"'{tool}' (iproute2) is not installed"
    ns = f"twinmesh-probe-{os.getpid()}"
    ok, why = _run("ip", "netns", "add", ns)
    if not ok:
        return False, f"cannot create a network namespace: {why}"
    try:
        ok, why = _run("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up")
        if not ok:
            return False, f"cannot configure a namespace: {why}"
        ok, why = _run(
            "ip",
            "netns",
            "exec",
            ns,
            "tc",
            "qdisc",
            "add",
            "dev",
            "lo",
            "root",
            "netem",
            "delay",
            "1ms",
        )
        if not ok:
            return False, f"tc netem is not available ({why}; the kernel lacks sch_netem?)"
    finally:
        _run("ip", "netns", "del", ns)
    return True, "network namespaces with tc netem are available"
