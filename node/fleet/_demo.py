"""``twinmesh fleet demo``: the newcomer's walkthrough on real processes.

Starts a local fleet (three plants and central ops), cuts plant-a off, edits
the same maintenance date at plant-a and at central, heals, shows the
conflict at central with both siblings, resolves it there with a reason, and
shows every node converged with the resolution and its audit entry. Stops the
fleet at the end unless asked to keep it.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ._launch import fleet_down, fleet_up

__all__ = ["run_fleet_demo"]

PUMP = "plant-a/line-1/pump-7"
MODEL = "dtmi:twinmesh:plant:Pump;1"
FIELD = "nextMaintenanceDate"


class _Client:
    def __init__(self, fleet: dict[str, Any]) -> None:
        self.api = {n["name"]: n["api"] for n in fleet["nodes"]}
        self.tokens = fleet["tokens"]
        self.control = fleet["proxy"]["control"]

    def call(
        self, node: str, method: str, path: str, body: Any = None, role: str = "operator"
    ) -> Any:
        req = urllib.request.Request(
            self.api[node] + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={
                "Authorization": f"Bearer {self.tokens[role]}",
                "Content-Type": "application/json",
            },
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    def links(self, path: str, body: dict[str, Any]) -> None:
        req = urllib.request.Request(
            self.control + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10):
            pass

    def digests(self) -> dict[str, str]:
        return {n: self.call(n, "GET", "/v1/digest", role="viewer")["digest"] for n in self.api}


def _wait(predicate: Callable[[], bool], timeout: float) -> float:
    start = time.monotonic()
    while not predicate():
        if time.monotonic() - start > timeout:
            raise TimeoutError("the fleet did not converge in time")
        time.sleep(0.02)
    return time.monotonic() - start


def run_fleet_demo(
    directory: Path | None, *, keep: bool, say: Callable[[str], None] = print
) -> int:
    owned = directory is None
    workdir = Path(tempfile.mkdtemp(prefix="twinmesh-demo-")) if owned else directory
    assert workdir is not None
    interval = 0.5
    say(f"Starting three plants and central ops as real processes in {workdir} ...")
    fleet = fleet_up(workdir, plants=3, interval=interval)
    c = _Client(fleet)
    try:
        for node in fleet["nodes"]:
            say(f"  {node['name']:8} API {node['api']}")
        c.call("plant-a", "POST", "/v1/entities", {"id": PUMP, "model": MODEL})
        waited = _wait(lambda: len(set(c.digests().values())) == 1, 30)
        say(f"1. plant-a registers {PUMP}; every node has it after {waited:.2f} s.")

        names = list(c.api)
        for a in names:
            if a != "plant-a":
                c.links(f"/links/plant-a->{a}", {"down": True})
                c.links(f"/links/{a}->plant-a", {"down": True})
        say("2. The WAN to plant-a goes down (twinmesh fleet split plant-a).")
        for node, value, who in (
            ("plant-a", "2026-05-10", "plant-a"),
            ("central", "2026-06-15", "central"),
        ):
            ctx = c.call(node, "GET", f"/v1/entities/{PUMP}", role="viewer")["fields"][FIELD][
                "context"
            ]
            c.call(
                node, "PUT", f"/v1/entities/{PUMP}/fields/{FIELD}", {"value": value, "context": ctx}
            )
            say(f"   at {who:8} an engineer sets {FIELD} = {value}")
        d = c.digests()
        say(f"   plant-a and central now differ: {d['plant-a'][:12]} vs {d['central'][:12]}")

        c.links("/links", {"down": False})
        waited = _wait(lambda: len(set(c.digests().values())) == 1, 30)
        say(
            f"3. The WAN heals; all four nodes hold the same state after {waited:.2f} s "
            f"({waited / interval:.1f} gossip intervals)."
        )
        conflict = c.call("central", "GET", "/v1/conflicts", role="viewer")["conflicts"][0]
        say(f"   central's review queue: {conflict['entity']} . {conflict['field']}")
        for s in conflict["siblings"]:
            say(f"     {s['value']}  from {s['origin']:8} by {s['author']}")
        say(
            f"     provisional value {conflict['provisional']['value']} "
            f"(policy '{conflict['policy']}'), so work goes on meanwhile"
        )

        c.call(
            "central",
            "POST",
            "/v1/conflict/resolve",
            {
                "entity": PUMP,
                "field": FIELD,
                "value": "2026-05-20",
                "context": conflict["context"],
                "reason": "plant-a's date, moved for the spare-parts delivery",
            },
            role="reviewer",
        )
        say("4. A reviewer at central resolves it: 2026-05-20, with a reason.")
        waited = _wait(lambda: len(set(c.digests().values())) == 1, 30)
        say(f"5. Every node converged again after {waited:.2f} s:")
        for node in names:
            value = c.call(node, "GET", f"/v1/entities/{PUMP}", role="viewer")["fields"][FIELD][
                "value"
            ]
            open_conflicts = len(c.call(node, "GET", "/v1/conflicts", role="viewer")["conflicts"])
            audit = c.call(node, "GET", "/v1/audit", role="viewer")["events"]
            say(
                f"   {node:8} {FIELD} = {value}, open conflicts {open_conflicts}, "
                f'audit: {audit[-1]["by"]} — "{audit[-1]["reason"]}"'
            )
    except (urllib.error.URLError, TimeoutError, KeyError, IndexError) as exc:
        say(f"demo failed: {exc}; node logs are in {workdir}")
        fleet_down(workdir)
        return 1
    if keep:
        say(f"The fleet keeps running; stop it with: twinmesh fleet down --dir {workdir}")
    else:
        fleet_down(workdir)
        if owned:
            shutil.rmtree(workdir, ignore_errors=True)
        say("Fleet stopped.")
    return 0
