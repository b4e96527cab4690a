"""A real node process ingesting from a real mosquitto and a real asyncua server.

The plant node of a one-plant fleet is reconfigured with ``[telemetry]`` and
two ``[[adapter]]`` tables and restarted. Then, through its HTTP API only:

* samples from both protocols land with units normalised and quality flags
  set (OUT_OF_RANGE on a rising vibration, STUCK on a frozen temperature,
  UNIT_CONVERTED on a psi reading, Bad/Uncertain OPC UA status codes);
* the asset's twin is created at its home and replicates to central;
* ``kill -9`` of the node while the broker keeps queueing, and a broker
  restart, lose no QoS 1 message and store none twice;
* silence on a tag raises a STALE event; ``/metrics`` and ``/v1/adapters``
  report it all.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode

import aiomqtt
import pytest
from _brokers import Mosquitto, OpcUaServer, find_mosquitto
from node_helpers import Fleet, running_fleet, wait_until

pytestmark = [
    pytest.mark.mosquitto,
    pytest.mark.skipif(
        find_mosquitto() is None,
        reason="needs mosquitto: the broker-restart check needs sessions that survive a broker"
        " restart, which amqtt does not keep",
    ),
]

ASSET = "plant-a/line-1/pump-7"
UNS = "plant-a/area-1/line-1/cell-1/pump-7"
PUMP = "dtmi:twinmesh:plant:Pump;1"
BASE_MS = 1_700_000_000_000  # 2023: these readings are "replayed history"


def publish(port: int, start: int, count: int, name: str = "dischargePressure") -> None:
    """QoS 1 readings ``start .. start+count-1`` (returns after every PUBACK).

    ``dischargePressure`` varies, every tenth reading in psi; ``suctionPressure``
    holds one value: a stuck transmitter."""

    async def body() -> None:
        async with aiomqtt.Client("127.0.0.1", port, timeout=5) as client:
            for i in range(start, start + count):
                payload: dict[str, Any] = {"value": 1.2, "timestamp": BASE_MS + i * 100}
                if name == "dischargePressure":
                    payload["value"] = 3.0 + (i % 7) * 0.1
                if name == "dischargePressure" and i % 10 == 0:
                    payload["value"], payload["unit"] = 50.0, "psi"  # 3.45 bar: converted
                await client.publish(f"{UNS}/{name}", json.dumps(payload).encode(), qos=1)

    asyncio.run(body())


def samples(fleet: Fleet, name: str, **query: Any) -> list[dict[str, Any]]:
    q = urlencode({"entity": ASSET, "name": name, "limit": 10000, **query})
    return fleet.ok("plant-a", "GET", f"/v1/telemetry/samples?{q}")["samples"]  # type: ignore[no-any-return]


@pytest.fixture
def plant(tmp_path: Path) -> Iterator[tuple[Fleet, Mosquitto, OpcUaServer]]:
    with (
        Mosquitto(tmp_path / "mosquitto") as broker,
        running_fleet(tmp_path / "fleet", plants=1) as fleet,
    ):
        server = OpcUaServer(tmp_path / "opcua", period=0.05)
        server.start()
        try:
            mapping = tmp_path / "opcua-mapping.toml"
            mapping.write_text(
                f"""
[subscription]
publishing_interval_ms = 50
sampling_interval_ms = 0
[[node]]
node_id = "ns=2;s=Pump7.Vibration"
entity = "{ASSET}"
telemetry = "vibrationRms"
unit = "mm/s"
[[node]]
node_id = "ns=2;s=Pump7.Temperature"
entity = "{ASSET}"
telemetry = "bearingTemperature"
unit = "degF"
[[node]]
node_id = "ns=2;s=Pump7.Flow"
entity = "{ASSET}"
telemetry = "flowRate"
unit = "m3/h"
"""
            )
            config = Path(fleet.nodes["plant-a"]["config"])
            fleet.stop("plant-a")
            config.write_text(
                config.read_text()
                + f"""
[telemetry]
stale_factor = 3
stuck_count = 5
stuck_window = 0.1
[[telemetry.asset]]
entity = "{ASSET}"
model = "{PUMP}"
sample_interval = 0.2

[[adapter]]
kind = "mqtt"
name = "uns"
host = "127.0.0.1"
port = {broker.port}
client_id = "twinmesh-plant-a-test"

[[adapter]]
kind = "opcua"
name = "line-1"
url = "{server.url}"
mapping = "{mapping}"
"""
            )
            fleet.start("plant-a")
            yield fleet, broker, server
        finally:
            server.stop()


def test_node_ingests_both_protocols_flags_faults_and_loses_nothing(
    plant: tuple[Fleet, Mosquitto, OpcUaServer],
) -> None:
    fleet, broker, _ = plant

    def adapters() -> dict[str, dict[str, Any]]:
        rows = fleet.ok("plant-a", "GET", "/v1/adapters")["adapters"]
        return {a["name"]: a for a in rows}

    wait_until(lambda: all(a["healthy"] for a in adapters().values()), 20, what="both adapters up")
    assert {a["kind"] for a in adapters().values()} == {"mqtt", "opcua"}

    # The twin exists at its home and replicates to central.
    twin = fleet.entity("plant-a", ASSET)
    assert (twin["model"], twin["home"]) == (PUMP, "plant-a")
    wait_until(
        lambda: fleet.request("central", "GET", "/v1/entities/" + quote(ASSET)).status == 200
    )

    # OPC UA: a rising vibration crosses the model's maximum (50 mm/s); the
    # temperature is in °F; flow carries status codes.
    vib = wait_until(
        lambda: [s for s in samples(fleet, "vibrationRms") if "OUT_OF_RANGE" in s["quality"]],
        30,
        what="vibration beyond the model's range",
    )
    assert vib[0]["value"] > 50 and vib[0]["unit"] == "mm/s"
    temps = wait_until(lambda: samples(fleet, "bearingTemperature"), 20, what="a temperature")
    assert temps[0]["value"] == pytest.approx(100.0)  # 212 °F normalised to the model's °C
    assert "UNIT_CONVERTED" in temps[0]["quality"]
    flows = wait_until(
        lambda: (
            (r := samples(fleet, "flowRate"))
            and {"BAD_STATUS", "UNCERTAIN"} <= {q for s in r for q in s["quality"]}
            and r
        ),
        20,
        what="flow with status codes",
    )
    assert any(s["value"] is None for s in flows if "BAD_STATUS" in s["quality"])

    # MQTT: 150 readings, the node killed after the first 50; the broker keeps
    # the persistent session's messages until the node is back.
    publish(broker.port, 0, 50)
    wait_until(lambda: len(samples(fleet, "dischargePressure")) == 50, 20, what="first 50")
    fleet.kill("plant-a")
    publish(broker.port, 50, 50)
    fleet.start("plant-a")
    broker.restart()  # and the broker goes down and comes back, sessions persisted
    publish(broker.port, 100, 50)
    rows = wait_until(
        lambda: (r := samples(fleet, "dischargePressure")) and len(r) >= 150 and r,
        40,
        what="all 150 MQTT readings",
    )
    stamps = [round(s["source_ts"] * 1000) for s in rows]
    assert stamps == [BASE_MS + i * 100 for i in range(150)]  # none lost, none twice
    converted = [s for s in rows if "UNIT_CONVERTED" in s["quality"]]
    assert len(converted) == 15 and converted[0]["value"] == pytest.approx(3.447, abs=1e-3)

    publish(broker.port, 0, 8, name="suctionPressure")
    stuck = wait_until(
        lambda: (r := samples(fleet, "suctionPressure")) and len(r) == 8 and r, 20, what="8 more"
    )
    assert ["STUCK" in s["quality"] for s in stuck] == [False] * 4 + [True] * 4

    # Silence on the MQTT tag (its samples stopped) is a STALE event.
    def stale() -> list[dict[str, Any]]:
        events = fleet.ok("plant-a", "GET", "/v1/telemetry/events")["events"]
        return [e for e in events if e["kind"] == "stale" and e["name"] == "dischargePressure"]

    wait_until(stale, 20, what="a STALE event for the silent tag")

    tags = {t["name"]: t for t in fleet.ok("plant-a", "GET", "/v1/telemetry")["tags"]}
    assert tags["vibrationRms"]["maximum"] == 50 and tags["vibrationRms"]["latest"] is not None
    assert tags["vibrationKurtosis"]["latest"] is None  # modelled, never reported
    assert tags["suctionPressure"]["latest"]["unit"] == "bar"  # as stored: the model's unit

    m = fleet.metrics("plant-a")
    assert m[("twinmesh_telemetry_samples_stored_total", frozenset())] > 0  # since the restart
    assert m[("twinmesh_telemetry_flag_total", frozenset({("flag", "STUCK")}))] > 0
    assert m[("twinmesh_adapter_up", frozenset({("adapter", "uns"), ("kind", "mqtt")}))] == 1
    wait_until(lambda: adapters()["line-1"]["healthy"], 20, what="OPC UA adapter healthy")


def test_telemetry_api_refuses_bad_queries_and_nodes_without_telemetry(tmp_path: Path) -> None:
    with running_fleet(tmp_path / "fleet", plants=1) as fleet:
        resp = fleet.request("plant-a", "GET", "/v1/telemetry")
        assert resp.status == 404 and resp.json["error"] == "no-telemetry"
        config = Path(fleet.nodes["plant-a"]["config"])
        fleet.stop("plant-a")
        config.write_text(
            config.read_text()
            + f'[[telemetry.asset]]\nentity = "{ASSET}"\nmodel = "{PUMP}"\nsample_interval = 1\n'
        )
        fleet.start("plant-a")
        for query, reason in [
            ("", "give entity and name"),
            ("?entity=a&name=b&from=soon", "from must be a number"),
            ("?after=-1", "after must be an integer"),
            ("?entity=a&name=b&limit=0", "limit must be an integer in 1..10000"),
        ]:
            resp = fleet.request("plant-a", "GET", f"/v1/telemetry/samples{query}")
            assert resp.status == 400, query
            assert reason in resp.json["reason"], resp.json
        resp = fleet.request(
            "plant-a", "GET", "/v1/telemetry/aggregates?entity=a&name=b&resolution=61"
        )
        assert resp.status == 400
        assert fleet.request("plant-a", "GET", "/v1/telemetry", role=None).status == 401
        assert fleet.ok("plant-a", "GET", "/v1/adapters") == {"adapters": []}
        # A node config naming a model nobody has refuses to start, saying why.
        fleet.stop("plant-a")
        config.write_text(config.read_text().replace(PUMP, "dtmi:twinmesh:plant:Pump;9"))
        with pytest.raises(AssertionError, match="exited at start"):
            fleet.start("plant-a", timeout=30)
        log = (fleet.dir / "plant-a" / "node.log").read_text()
        assert "no model dtmi:twinmesh:plant:Pump;9" in log
