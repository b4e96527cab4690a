"""A command to an MQTT-ingested pump, end to end, and the divergence alert.

Real components: mosquitto, ``twinmesh plant simulate`` (one pump publishing
over MQTT, whose device answers commands on its command topic and whose
drive's flow controller follows the setpoint), and a one-plant fleet whose
plant node ingests that pump. Through the nodes' HTTP API only:

* a command issued at central runs at plant-a, goes out over MQTT, is
  acknowledged by the device (audited) and confirmed by the pump's flow
  telemetry — the same desired-vs-reported path as OPC UA;
* someone changes the setpoint at the machine (published straight to the
  device's topic, as a local HMI would): reported leaves desired, and after the
  model's grace period an ordinary alert opens (node.alerts; it replicates to
  central) and clears when the flow is back.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiomqtt
import pytest
from _brokers import Mosquitto, find_mosquitto
from node_helpers import Fleet, running_fleet, wait_until
from plant_process import PlantProcess

pytestmark = [
    pytest.mark.mosquitto,
    pytest.mark.skipif(find_mosquitto() is None, reason="needs mosquitto"),
]

PUMP = "plant-a/line-1/pump-1"
PLANT = """
[plant]
site = "plant-a"
seed = 3
sample_interval = 0.2
out = "out"

[mqtt]
port = {port}
client_id = "twinmesh-sim-commands"

[[asset]]
name = "pump-1"
kind = "pump"
line = "line-1"
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Fleet, int]]:
    base = tmp_path_factory.mktemp("mqtt-commands")
    with Mosquitto(base / "mosquitto") as broker:
        config = base / "plant" / "plant.toml"
        config.parent.mkdir()
        config.write_text(PLANT.format(port=broker.port))
        plant = PlantProcess(config)
        try:
            telemetry = {"plant-a": plant.file("node_telemetry")}
            with running_fleet(base / "fleet", plants=1, telemetry=telemetry) as fleet:
                yield fleet, broker.port
        finally:
            plant.stop()


def rows(fleet: Fleet, node: str) -> dict[str, Any]:
    return fleet.ok(node, "GET", f"/v1/commands?entity={urllib.parse.quote(PUMP)}")  # type: ignore[no-any-return]


def state_of(fleet: Fleet, node: str, cid: str) -> dict[str, Any] | None:
    return next((r for r in rows(fleet, node)["commands"] if r["id"] == cid), None)


def wait_state(fleet: Fleet, node: str, cid: str, state: str, timeout: float = 40) -> Any:
    return wait_until(
        lambda: (r := state_of(fleet, node, cid)) is not None and r["state"] == state and r,
        timeout,
        interval=0.1,
        what=f"command {cid[:8]} {state} at {node}",
    )


def divergence_alerts(fleet: Fleet, node: str) -> list[dict[str, Any]]:
    alerts = fleet.ok(node, "GET", f"/v1/alerts?entity={urllib.parse.quote(PUMP)}")["alerts"]
    return [a for a in alerts if str(a.get("key", "")).startswith("divergence:")]


SHOTS = Path(os.environ.get("TWINMESH_SCREENSHOTS", Path(__file__).parent.parent / "screenshots"))


def screenshots(fleet: Fleet, pages: dict[str, str]) -> None:
    """Screenshots of pages at plant-a for a person to look at (needs the OS chromium)."""
    if not os.path.exists("/usr/bin/chromium"):
        return
    sync_api = pytest.importorskip("playwright.sync_api")
    base = fleet.nodes["plant-a"]["api"]
    SHOTS.mkdir(parents=True, exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu"],
        )
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 860})
            page.goto(base + "/ui/login")
            page.fill("#token", fleet.tokens["operator"])
            page.click("button[type=submit]")
            page.wait_for_url("**/ui/fleet")
            for name, path in pages.items():
                page.goto(base + path)
                page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)
        finally:
            browser.close()


def override_at_the_machine(port: int, topic: str, value: float) -> None:
    """A setpoint written at the machine, bypassing the twin (a local HMI)."""

    async def go() -> None:
        async with aiomqtt.Client("127.0.0.1", port, identifier="local-hmi") as c:
            body = {
                "id": f"hmi-{time.time_ns()}",
                "value": value,
                "expires": int(time.time() * 1000) + 30_000,
            }
            await c.publish(topic, json.dumps(body).encode(), qos=1)

    asyncio.run(go())


def test_mqtt_command_is_acknowledged_confirmed_and_divergence_is_an_alert(
    setup: tuple[Fleet, int],
) -> None:
    fleet, port = setup
    wait_until(
        lambda: any(
            a["name"] == "mqtt" and a["state"] == "connected"
            for a in fleet.ok("plant-a", "GET", "/v1/adapters")["adapters"]
        ),
        30,
        what="the MQTT adapter",
    )
    wait_until(
        lambda: (
            rows(fleet, "plant-a")["desired"]
            and rows(fleet, "plant-a")["desired"][0]["reported"] is not None
        ),
        30,
        what="the pump's reported flow",
    )

    def send(value: float, **extra: Any) -> Any:
        body = {"entity": PUMP, "command": "setFlowSetpoint", "value": value, **extra}
        return fleet.request("central", "POST", "/v1/commands", body, role="operator")

    # The model's envelope (DTDL Setpoint on the pump's Command) refuses, with its numbers.
    refused = send(200)
    assert refused.status == 422, refused.json
    assert "outside the safe envelope 40..150 m3/h" in refused.json["reason"]
    # Above the model's highRiskAbove: waits for an approver (here it expires first,
    # so it does not hold the pump's queue).
    risky = send(140, ttl_s=1)
    assert risky.json["high_risk"]

    issued = send(95, ramp_s=12)
    assert issued.status == 202, issued.json
    cid = issued.json["id"]
    wait_state(fleet, "plant-a", risky.json["id"], "expired")
    done = wait_state(fleet, "plant-a", cid, "confirmed")
    assert "flowRate reported" in done["reason"]
    wait_state(fleet, "central", cid, "confirmed")
    audit = fleet.ok("plant-a", "GET", "/v1/audit")["events"]
    (delivered,) = [
        e for e in audit if e.get("command_id") == cid and e["kind"] == "command-delivered"
    ]
    topic = "plant-a/area-1/line-1/cell-1/pump-1/cmd/setFlowSetpoint"
    assert delivered["reason"] == f"acknowledged by the device on {topic}/ack"
    (row,) = rows(fleet, "plant-a")["desired"]
    assert row["desired"] == 95 and row["state"] == "in-sync"

    # The setpoint changed at the machine: reported leaves desired; after the
    # model's 3 s grace an ordinary alert opens, with the command as lineage.
    override_at_the_machine(port, topic, 65.0)
    alert = wait_until(
        lambda: [a for a in divergence_alerts(fleet, "plant-a") if a["state"] == "open"],
        30,
        interval=0.2,
        what="the divergence alert",
    )[0]
    assert alert["severity"] == "warning" and alert["plant"] == "plant-a"
    assert alert["diagnosis"]["kind"] == "machine" and "flowRate" in alert["diagnosis"]["evidence"]
    assert alert["lineage"]["command_id"] == cid and alert["lineage"]["desired"] == 95
    assert alert["rule"].startswith("|flowRate − desired| > 4 m3/h")
    assert rows(fleet, "plant-a")["desired"][0]["state"] == "diverged"
    wait_until(
        lambda: any(a["id"] == alert["id"] for a in divergence_alerts(fleet, "central")),
        30,
        what="the alert to replicate to central",
    )
    q = urllib.parse.quote(PUMP)
    screenshots(
        fleet,
        {
            "asset-pump-diverged": f"/ui/asset?id={q}&series=flowRate&window=5m",
            "alerts-divergence": "/ui/alerts",
        },
    )
    # Put back at the machine: the alert clears by itself.
    override_at_the_machine(port, topic, 95.0)
    wait_until(
        lambda: fleet.ok("plant-a", "GET", f"/v1/alerts/{alert['id']}")["state"] == "cleared",
        30,
        interval=0.2,
        what="the divergence alert to clear",
    )
    kinds = [e["kind"] for e in fleet.ok("plant-a", "GET", "/v1/audit")["events"]]
    assert "divergence" in kinds and "divergence-cleared" in kinds
