"""``twinmesh demo``: start everything, play the script, stop everything.

Order of start: the MQTT broker, the three synthetic plants (each writes the
``[telemetry]``/``[[adapter]]`` tables its node needs), then the fleet — three
plant nodes ingesting their plants and central ops — through ``fleet up``.
Every child runs in its own session, so a Ctrl-C in the terminal reaches
only this process, which then stops the fleet, the plants and the broker in
that reverse order: nothing is left running.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import Any

from ..fleet import fleet_down, fleet_up
from ._broker import Broker, start_broker
from ._plants import PlantProcess, start_plants
from ._script import DemoContext, StepResult, run_script

__all__ = ["run_demo"]

SITES = ["plant-a", "plant-b", "plant-c"]
WORN = "plant-b"
# Plant seconds: the wear begins after the plant node's scoring has learned the
# motor's healthy baseline (DEMO_SCORING's warm-up, at the plant's 0.5 s
# sample interval), as it would on a real line: a baseline learned on a
# bearing already wearing calls the wear normal.
WEAR_START = 45.0
#: Appended to each plant node's config: a warm-up of 40 frames (20 s of
#: plant time) instead of the default 120, so the story fits a few minutes.
DEMO_SCORING = "\n[scoring]\nwarmup = 40\n"


def _with_scoring(node_telemetry: Path) -> Path:
    """The plant's node-telemetry.toml plus the demo's [scoring] table, beside it."""
    out = node_telemetry.with_name("node-demo.toml")
    out.write_text(node_telemetry.read_text() + DEMO_SCORING)
    return out


class _Stop(Exception):
    pass


class _Signals:
    """SIGINT/SIGTERM become ``_Stop`` — but only where stopping is safe.

    While processes start (``deferring``) a signal is only noted: a Ctrl-C
    halfway through ``fleet up`` would leave nodes no fleet.json lists yet.
    (Not ``pthread_sigmask``: children inherit a blocked mask across exec, and
    would then ignore the SIGTERM that stops them.)"""

    def __init__(self) -> None:
        self.deferring = False
        self.pending: str | None = None

    def handler(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.deferring:
            self.pending = name
            return
        raise _Stop(name)

    def defer(self) -> None:
        self.deferring = True

    def allow(self) -> None:
        self.deferring = False
        if self.pending is not None:
            raise _Stop(self.pending)


def summary(results: list[StepResult]) -> str:
    passed = sum(r.ok for r in results)
    lines = [f"demo summary: {passed} of {len(results)} steps as expected"]
    for r in results:
        mark = "ok  " if r.ok else "FAIL"
        why = f" [missing on this build: {r.missing}]" if r.missing else ""
        lines.append(f"  {mark} {r.number:2}. {r.title}{why}")
        if not r.ok:
            lines.append(f"           {r.detail}")
    return "\n".join(lines)


def run_demo(
    directory: Path | None,
    *,
    headless: bool,
    duration: float | None,
    pace: float | None = None,
    alert_timeout: float = 90.0,
    interval: float = 0.5,
    say: Callable[[str], None] = print,
) -> int:
    owned = directory is None
    workdir = Path(tempfile.mkdtemp(prefix="twinmesh-demo-")) if owned else directory
    assert workdir is not None
    workdir = workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)
    signals = _Signals()
    previous = {s: signal.signal(s, signals.handler) for s in (signal.SIGINT, signal.SIGTERM)}
    broker: Broker | None = None
    plants: list[PlantProcess] = []
    fleet_started = False
    results: list[StepResult] = []
    code = 0
    try:
        say(f"twinmesh demo in {workdir} (Ctrl-C stops everything)")
        signals.defer()
        # TWINMESH_DEMO_BROKER=amqtt|mosquitto picks one (default: mosquitto if installed).
        broker = start_broker(workdir / "broker", prefer=os.environ.get("TWINMESH_DEMO_BROKER"))
        say(f"  MQTT broker: {broker.kind} on 127.0.0.1:{broker.port}")
        plants = start_plants(
            workdir, SITES, mqtt_port=broker.port, worn=WORN, wear_start=WEAR_START
        )
        say(f"  synthetic plants: {', '.join(p.site for p in plants)} (OPC UA + MQTT each)")
        fleet_started = True
        fleet = fleet_up(
            workdir / "fleet",
            plants=len(SITES),
            interval=interval,
            telemetry={p.site: _with_scoring(p.node_telemetry) for p in plants},
        )
        (workdir / "demo-processes.json").write_text(
            json.dumps(
                {
                    "broker": broker.proc.pid,
                    "plants": {p.site: p.proc.pid for p in plants},
                    "nodes": {n["name"]: n["pid"] for n in fleet["nodes"]},
                    "link_proxy": fleet["proxy"]["pid"],
                },
                indent=1,
            )
        )
        signals.allow()
        say("  nodes (dashboard, then API):")
        for node in fleet["nodes"]:
            say(f"    {node['name']:8} {node['api']}/ui/fleet   {node['api']}/v1/")
        say(f"  sign in at any node's {fleet['nodes'][-1]['api']}/ui/login with the viewer token:")
        say(f"    {fleet['tokens']['viewer']}")
        say(f"  (all tokens: {workdir / 'fleet' / 'fleet.json'})")
        context = DemoContext(
            fleet,
            {p.site: p for p in plants},
            worn_plant=WORN,
            say=say,
            pace=(0.0 if headless else 4.0) if pace is None else pace,
            alert_timeout=alert_timeout,
        )
        started = time.monotonic()
        results = run_script(context)
        say(summary(results))
        (workdir / "demo-summary.json").write_text(
            json.dumps(
                {
                    "ok": all(r.ok for r in results),
                    "seconds": round(time.monotonic() - started, 2),
                    "steps": [
                        {
                            "number": r.number,
                            "title": r.title,
                            "ok": r.ok,
                            "detail": r.detail,
                            "missing": r.missing,
                        }
                        for r in results
                    ],
                },
                indent=1,
            )
        )
        code = 0 if all(r.ok for r in results) else 1
        if not headless or duration:
            if duration:
                say(f"everything keeps running for {duration:g} s (Ctrl-C stops it sooner)")
                time.sleep(duration)
            else:
                say("everything keeps running for you to look around; Ctrl-C stops it")
                while True:
                    time.sleep(3600)
    except _Stop as stop:
        say(f"\n{stop}: stopping everything")
        code = code if results else 130
    except (RuntimeError, OSError) as exc:
        say(f"demo failed: {exc}; logs are in {workdir}")
        code = 2
    finally:
        signals.defer()  # a second Ctrl-C must not stop the teardown halfway
        try:
            _teardown(workdir, fleet_started, plants, broker, say)
        finally:
            for s, handler in previous.items():
                signal.signal(s, handler)
        if owned and code == 0:
            shutil.rmtree(workdir, ignore_errors=True)
    return code


def _teardown(
    workdir: Path,
    fleet_started: bool,
    plants: list[PlantProcess],
    broker: Broker | None,
    say: Callable[[str], None],
) -> None:
    stopped: list[Any] = []
    if fleet_started and (workdir / "fleet" / "fleet.json").exists():
        stopped += fleet_down(workdir / "fleet")
    for plant in plants:
        plant.stop()
        stopped.append(f"plant {plant.site}")
    if broker is not None:
        broker.stop()
        stopped.append(f"{broker.kind} broker")
    say("stopped: " + (", ".join(map(str, stopped)) or "nothing was running"))
