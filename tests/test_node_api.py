"""The node's HTTP surface on a real fleet (plant-a, plant-b, central).

* ETag semantics: a write carrying a stale context keeps what its writer did
  not see (siblings, a conflict); a fresh context overwrites.
* ``/openapi.json`` has the OpenAPI 3.1 shape and documents exactly the
  routes the aiohttp router serves.
* ``/metrics`` parses as Prometheus text and moves with writes.
* ``/v1/feed`` (server-sent events) delivers an event after a local write and
  after a write gossiped in from another node.
* ``/v1/fleet`` lists every member with reachability and lag, and shows a
  split-off node unreachable (and its unsent write as lag) until healed.
"""

from __future__ import annotations

import contextlib
import json
import queue
import re
import socket
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote, urlsplit

import jsonschema
import pytest
from node_helpers import PUMP, Fleet, parse_metrics, running_fleet, wait_until

from twinmesh.node._api import api_app
from twinmesh.node._config import load_config
from twinmesh.node._node import Node
from twinmesh.node._tokens import TokenIssuer

FIELD = "nextMaintenanceDate"


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    with running_fleet(tmp_path_factory.mktemp("api"), plants=2) as fleet:
        yield fleet


def _field(fleet: Fleet, node: str, entity: str, name: str = FIELD) -> dict[str, Any]:
    return fleet.entity(node, entity)["fields"][name]  # type: ignore[no-any-return]


# ------------------------------------------------------------------ ETag semantics


def test_stale_context_creates_a_conflict_fresh_context_overwrites(fleet: Fleet) -> None:
    """Same node: a write with the context read *before* another write does not
    overwrite it — both values stay as siblings; a write with the context read
    after both replaces both."""
    entity = "plant-a/line-1/etag-1"
    fleet.create("plant-a", entity)
    stale = _field(fleet, "plant-a", entity)["context"]

    first = fleet.put_field("plant-a", entity, FIELD, "2027-03-01", stale)
    assert first.status == 200, first.body
    assert first.json["fields"][FIELD]["conflict"] is False

    second = fleet.put_field("plant-a", entity, FIELD, "2027-04-01", stale)
    assert second.status == 200, second.body
    after = second.json["fields"][FIELD]
    assert after["conflict"] is True and after["siblings"] == 2
    conflict = fleet.ok(
        "plant-a", "GET", f"/v1/conflict?entity={quote(entity)}&field={FIELD}", role="viewer"
    )
    assert sorted(s["value"] for s in conflict["siblings"]) == ["2027-03-01", "2027-04-01"]
    assert after["value"] == "2027-03-01"  # provisional: the sooner date (policy min)

    fresh = after["context"]
    third = fleet.put_field("plant-a", entity, FIELD, "2027-05-01", fresh)
    assert third.status == 200, third.body
    final = third.json["fields"][FIELD]
    assert final["conflict"] is False and final["siblings"] == 1
    assert final["value"] == "2027-05-01"

    # A fresh context for an ordinary update overwrites without a conflict, too.
    fourth = fleet.put_field("plant-a", entity, FIELD, "2027-06-01", final["context"])
    assert fourth.json["fields"][FIELD] | {"context": None} == {
        **final,
        "value": "2027-06-01",
        "context": None,
    }
    fleet.wait_converged()
    for node in fleet.names:
        seen = _field(fleet, node, entity)
        assert (seen["value"], seen["conflict"]) == ("2027-06-01", False)


def test_context_read_at_another_node_goes_stale_when_gossip_brings_news(fleet: Fleet) -> None:
    """plant-b reads the field, plant-a then writes it and gossip brings that
    write to plant-b; plant-b's write with its (now stale) context becomes a
    sibling beside plant-a's, on every node, instead of erasing it."""
    entity = "plant-a/line-1/etag-2"
    fleet.create("plant-a", entity)
    fleet.wait_converged()
    read_at_b = _field(fleet, "plant-b", entity)["context"]
    ctx_a = _field(fleet, "plant-a", entity)["context"]
    assert fleet.put_field("plant-a", entity, FIELD, "2027-07-01", ctx_a).status == 200
    wait_until(
        lambda: _field(fleet, "plant-b", entity)["value"] == "2027-07-01",
        10,
        what="plant-a's write at plant-b",
    )
    resp = fleet.put_field("plant-b", entity, FIELD, "2027-08-01", read_at_b)
    assert resp.status == 200, resp.body
    fleet.wait_converged()
    for node in fleet.names:
        conflict = fleet.ok(
            node, "GET", f"/v1/conflict?entity={quote(entity)}&field={FIELD}", role="viewer"
        )
        assert {(s["origin"], s["value"]) for s in conflict["siblings"]} == {
            ("plant-a", "2027-07-01"),
            ("plant-b", "2027-08-01"),
        }


# ------------------------------------------------------------------ OpenAPI


def _served_routes(fleet: Fleet) -> set[tuple[str, str]]:
    """(path template, method) for every route of the node's real aiohttp app."""
    config = load_config(fleet.dir / "central" / "node.toml")
    app = api_app(Node(config), TokenIssuer(config.token_secret_file.read_bytes()))
    routes = set()
    for resource in app.router.resources():
        for route in resource:
            if route.method not in ("HEAD", "*"):
                routes.add((resource.canonical, route.method.lower()))
    return routes


_METHODS = {"get", "put", "post", "delete", "patch", "head", "options", "trace"}


def _refs(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str):
                yield v
            else:
                yield from _refs(v)
    elif isinstance(node, list):
        for v in node:
            yield from _refs(v)


def test_openapi_is_3_1_and_documents_every_served_route(fleet: Fleet) -> None:
    """``/openapi.json`` is an OpenAPI 3.1 document (required fields, operation
    shape, path parameters declared, JSON-Schema-2020-12 schemas, every $ref
    and security scheme resolves), and its (path, method) pairs are exactly
    those the aiohttp router serves."""
    resp = fleet.request("central", "GET", "/openapi.json", role=None)
    assert resp.status == 200
    doc = resp.json
    assert re.fullmatch(r"3\.1\.\d+", doc["openapi"])
    assert isinstance(doc["info"]["title"], str) and isinstance(doc["info"]["version"], str)
    schemes = doc["components"]["securitySchemes"]
    documented = set()
    for path, item in doc["paths"].items():
        assert path.startswith("/"), path
        for method, op in item.items():
            assert method in _METHODS, (path, method)
            documented.add((path, method))
            assert op["responses"], (path, method)
            for code, response in op["responses"].items():
                assert re.fullmatch(r"[1-5](\d\d|XX)|default", code), (path, code)
                assert isinstance(response["description"], str)
                for media in response.get("content", {}).values():
                    jsonschema.Draft202012Validator.check_schema(media.get("schema", {}))
            declared = {p["name"] for p in op.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"\{(\w+)\}", path)), (path, method)
            for p in op.get("parameters", []):
                assert p["in"] in ("path", "query", "header", "cookie")
                assert p["in"] != "path" or p["required"] is True
            if "requestBody" in op:
                for media, body in op["requestBody"]["content"].items():
                    assert "/" in media
                    jsonschema.Draft202012Validator.check_schema(body["schema"])
            for requirement in op.get("security", []):
                assert set(requirement) <= set(schemes)
    for ref in _refs(doc):
        target: Any = doc
        assert ref.startswith("#/"), ref
        for part in ref[2:].split("/"):
            target = target[part]
    served = _served_routes(fleet)
    assert served - documented == set(), "served but not documented"
    assert documented - served == set(), "documented but not served"


# ------------------------------------------------------------------ /metrics


def test_metrics_parse_as_prometheus_text_and_move_with_writes(fleet: Fleet) -> None:
    """Every line of ``/metrics`` is a comment or ``name{labels} value``; every
    sample belongs to a metric announced by ``# TYPE``; a write moves
    ``twinmesh_writes_total`` and the per-route request counter."""
    text = fleet.request("plant-a", "GET", "/metrics", role=None).body.decode()
    samples = parse_metrics(text)  # raises on any line that is neither
    types = dict(
        re.findall(r"^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$", text, re.M)
    )
    assert types
    for name, _labels in samples:
        assert name in types, f"{name} has no # TYPE"
        assert types[name] != "counter" or name.endswith("_total"), name
    before = samples[("twinmesh_writes_total", frozenset())]
    fleet.create("plant-a", "plant-a/line-2/metrics-1")
    after = fleet.metrics("plant-a")
    assert after[("twinmesh_writes_total", frozenset())] == before + 1
    key = ("twinmesh_api_requests_total", frozenset({("route", "/v1/entities"), ("status", "201")}))
    assert after[key] >= samples.get(key, 0) + 1


# ------------------------------------------------------------------ /v1/feed


class _FeedReader:
    """Reads one SSE stream on a thread; events (parsed ``data:`` lines) go to a
    queue. Plain HTTP/1.0 on a socket, so the stream is not chunk-framed and
    each event is seen the moment it is written."""

    def __init__(self, fleet: Fleet, node: str) -> None:
        url = urlsplit(fleet.nodes[node]["api"])
        self.sock = socket.create_connection((url.hostname or "", url.port or 80), timeout=20)
        self.sock.sendall(
            b"GET /v1/feed HTTP/1.0\r\nAuthorization: Bearer "
            + fleet.tokens["viewer"].encode()
            + b"\r\n\r\n"
        )
        self.file = self.sock.makefile("rb")
        status = self.file.readline()
        assert status.split()[1] == b"200", status
        headers = {}
        while (line := self.file.readline().strip()) != b"":
            key, _, value = line.decode().partition(":")
            headers[key.strip().lower()] = value.strip()
        assert headers["content-type"].startswith("text/event-stream"), headers
        self.events: queue.Queue[dict[str, Any]] = queue.Queue()
        self.opened = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.opened.wait(10), "the feed never sent its opening comment"

    def _run(self) -> None:
        try:
            for raw in self.file:
                line = raw.decode().rstrip("\n")
                if line.startswith(":"):
                    self.opened.set()
                elif line.startswith("data: "):
                    self.events.put(json.loads(line[6:]))
        except (OSError, ValueError):
            pass  # closed by the test

    def next_matching(self, **want: Any) -> dict[str, Any]:
        while True:
            event = self.events.get(timeout=10)
            if all(event.get(k) == v for k, v in want.items()):
                return event

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self.thread.join(timeout=5)


def test_feed_delivers_an_event_after_a_write(fleet: Fleet) -> None:
    """A subscriber at plant-a gets a ``write`` event for a write made there,
    and a ``delta`` event when a write made at plant-b arrives by gossip."""
    reader = _FeedReader(fleet, "plant-a")
    try:
        fleet.create("plant-a", "plant-a/line-3/feed-1")
        event = reader.next_matching(type="write", entity="plant-a/line-3/feed-1")
        assert event["origin"] == "plant-a" and event["field"] is None
        fleet.create("plant-b", "plant-b/line-3/feed-2")
        event = reader.next_matching(type="delta", entity="plant-b/line-3/feed-2")
        assert event["origin"] == "plant-b"
    finally:
        reader.close()


# ------------------------------------------------------------------ /v1/fleet


def _members(fleet: Fleet, node: str) -> dict[str, dict[str, Any]]:
    view = fleet.ok(node, "GET", "/v1/fleet", role="viewer")
    assert view["node"] == node
    return {m["name"]: m for m in view["members"]}


def test_fleet_view_shows_members_reachability_lag_and_a_split(fleet: Fleet) -> None:
    """Every node lists every other member as reachable with zero lag; after
    ``split plant-b`` central marks plant-b unreachable (others stay
    reachable) and plant-b, which wrote meanwhile, reports central lacking
    that delta; after heal all is reachable again with no lag."""
    fleet.wait_converged()
    for node in fleet.names:
        members = wait_until(
            lambda node=node: (
                m
                if set(m := _members(fleet, node)) == set(fleet.names) - {node}
                and all(v["reachable"] for v in m.values())
                else None
            ),
            10,
            what=f"{node} to see every member reachable",
        )
        for m in members.values():
            assert m["address"].startswith("https://")
            assert isinstance(m["deltas_it_lacks_from_us"], int)
            assert isinstance(m["deltas_we_lack_from_it"], int)
            assert isinstance(m["last_contact_s_ago"], float | int)
    try:
        fleet.split("plant-b")
        fleet.create("plant-b", "plant-b/line-4/lag-1")
        wait_until(
            lambda: not _members(fleet, "central")["plant-b"]["reachable"],
            15,
            what="central to see plant-b unreachable",
        )
        central_view = _members(fleet, "central")
        assert central_view["plant-a"]["reachable"] is True

        # plant-b's own view flips on its own clock, a moment apart from central's.
        def b_sees_nobody() -> dict[str, Any] | None:
            view = _members(fleet, "plant-b")
            return None if any(m["reachable"] for m in view.values()) else view

        b_view = wait_until(
            b_sees_nobody,
            15,
            what="plant-b to see every other member unreachable",
        )
        assert b_view["central"]["deltas_it_lacks_from_us"] >= 1
    finally:
        fleet.heal()
    fleet.wait_converged()
    wait_until(
        lambda: all(
            m["reachable"]
            and m["deltas_it_lacks_from_us"] == 0
            and m["deltas_we_lack_from_it"] == 0
            for m in _members(fleet, "central").values()
        ),
        15,
        what="central to see everyone reachable with no lag",
    )


def test_models_endpoint_lists_the_pump(fleet: Fleet) -> None:
    """``/v1/models`` shows the pump's shared maintenance date and its policy."""
    models = fleet.ok("central", "GET", "/v1/models", role="viewer")["models"]
    assert models[PUMP][FIELD] == {"kind": "shared", "type": "date", "policy": "min"}


def test_only_admins_manage_members(fleet: Fleet) -> None:
    """``POST /v1/members`` needs the admin role (a reviewer gets 403), checks
    its input, and re-points a known member at the address it is given."""
    central = next(n for n in fleet.nodes if n == "central")
    plant = fleet.plants[0]
    current = {m["name"]: m["address"] for m in fleet.ok(central, "GET", "/v1/fleet")["members"]}[
        plant
    ]
    denied = fleet.request(
        central, "POST", "/v1/members", {"name": plant, "url": current}, role="reviewer"
    )
    assert denied.status == 403 and denied.json["error"] == "forbidden"
    bad = fleet.request(central, "POST", "/v1/members", {"name": plant, "url": "http://x:1"})
    assert bad.status == 400 and bad.json["error"] == "bad-url"
    bad_name = fleet.request(central, "POST", "/v1/members", {"name": "Bad Name", "url": current})
    assert bad_name.status == 400 and bad_name.json["error"] == "bad-name"
    ok = fleet.ok(central, "POST", "/v1/members", {"name": plant, "url": current})
    assert ok == {"name": plant, "url": current, "status": "dialling"}
    after = {m["name"]: m["address"] for m in fleet.ok(central, "GET", "/v1/fleet")["members"]}
    assert after[plant] == current
