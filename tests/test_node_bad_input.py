"""Bad input against real node processes: each case is refused with a clear
JSON error and the right status, is counted in ``/metrics``, changes nothing
(the state digest and version vector stay put), and the node goes on serving
other clients throughout (a background prober must get 200 the whole time).

One fleet (plant-a + central) serves the whole module; every case targets
central. The fixtures create ``plant-a/line-1/pump-1`` (home plant-a) and give
it an open conflict on ``nextMaintenanceDate`` (two writes from the same
stale context), so the 409 case has something to refuse.
"""

from __future__ import annotations

import http.client
import json
import ssl
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

import msgpack
import pytest
from node_helpers import (
    Fleet,
    Prober,
    Response,
    gossip_post,
    post_json_error,
    running_fleet,
)

from twinmesh.crdt import ReplicaState, encode_deltas
from twinmesh.node._models import load_schemas
from twinmesh.node._signing import load_identity
from twinmesh.node._tokens import Role, TokenIssuer
from twinmesh.node.security import client_ssl_context, init_ca, issue_node
from twinmesh.sync import (
    Deltas,
    FleetAuthority,
    Identity,
    SignedBatch,
    encode_message,
    seal_batch_bytes,
)

TARGET = "central"
ENTITY = "plant-a/line-1/pump-1"
CONFLICTED = "plant-a/line-1/pump-2"
PUMP = "dtmi:twinmesh:plant:Pump;1"
API_REFUSALS = "twinmesh_api_refusals_total"
GOSSIP_REFUSALS = "twinmesh_gossip_refusals_total"


@dataclass(slots=True)
class World:
    fleet: Fleet
    conflict_context_one_sibling: str  # covers the first sibling only


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    with running_fleet(tmp_path_factory.mktemp("bad-input"), plants=1) as fleet:
        fleet.create("plant-a", ENTITY)
        fleet.create("plant-a", CONFLICTED)
        fleet.wait_converged()
        stale = fleet.entity(TARGET, CONFLICTED)["fields"]["nextMaintenanceDate"]["context"]
        first = fleet.put_field(TARGET, CONFLICTED, "nextMaintenanceDate", "2027-01-10", stale)
        assert first.status == 200, first.body
        one = first.json["fields"]["nextMaintenanceDate"]["context"]
        second = fleet.put_field(TARGET, CONFLICTED, "nextMaintenanceDate", "2027-02-20", stale)
        assert second.status == 200, second.body
        assert second.json["fields"]["nextMaintenanceDate"]["conflict"] is True
        fleet.wait_converged()
        yield World(fleet=fleet, conflict_context_one_sibling=one)


@pytest.fixture
def fleet(world: World) -> Fleet:
    return world.fleet


def _state(fleet: Fleet) -> tuple[str, dict[str, int]]:
    d = fleet.ok(TARGET, "GET", "/v1/digest", role="viewer")
    return d["digest"], d["vv"]


def refused(
    fleet: Fleet,
    send: Callable[[], Response],
    *,
    status: int,
    error: str | None,
    counters: list[tuple[str, dict[str, str]]],
    reason_has: str = "",
) -> dict[str, Any]:
    """Send one bad request at central while a prober keeps reading from both
    nodes; check status, the JSON error, the counters and the state."""
    before_state = _state(fleet)
    before = fleet.metrics(TARGET)
    with Prober(
        fleet, [(TARGET, "/v1/entities/" + quote(ENTITY)), ("plant-a", "/v1/digest")]
    ) as prober:
        mark = prober.mark()
        resp = send()
        prober.wait_past(mark)
    assert resp.status == status, (resp.status, resp.body[:300])
    body = post_json_error(resp)
    if error is not None:
        assert body["error"] == error, body
    assert reason_has.lower() in body["reason"].lower(), body
    after = fleet.metrics(TARGET)
    for name, labels in counters:
        key = (name, frozenset(labels.items()))
        assert after.get(key, 0) >= before.get(key, 0) + 1, f"{name}{labels} did not move"
    assert _state(fleet) == before_state, "a refused request changed the state"
    return body


def api_refusal(error: str) -> tuple[str, dict[str, str]]:
    return (API_REFUSALS, {"reason": error})


# ------------------------------------------------------------------ bodies


def test_malformed_json_body_is_400(fleet: Fleet) -> None:
    """A JSON body that does not parse: 400 malformed-body."""
    refused(
        fleet,
        lambda: fleet.request(
            TARGET,
            "PUT",
            f"/v1/entities/{quote(ENTITY)}/fields/nextMaintenanceDate",
            raw=b'{"value": "2027-01-01", "context": ',
        ),
        status=400,
        error="malformed-body",
        counters=[api_refusal("malformed-body")],
        reason_has="does not parse",
    )


def test_malformed_msgpack_body_is_400(fleet: Fleet) -> None:
    """A msgpack body (Content-Type application/msgpack) that does not parse: 400."""
    refused(
        fleet,
        lambda: fleet.request(
            TARGET,
            "POST",
            f"/v1/entities/{quote(ENTITY)}/fields/tags/ops",
            raw=b"\x82\xa2op\xa3add\xc1",  # 0xc1 is never valid msgpack
            content_type="application/msgpack",
        ),
        status=400,
        error="malformed-body",
        counters=[api_refusal("malformed-body")],
    )


def test_msgpack_body_is_accepted_when_well_formed(fleet: Fleet) -> None:
    """The control for the case above: the same op as valid msgpack succeeds."""
    resp = fleet.request(
        TARGET,
        "POST",
        f"/v1/entities/{quote(ENTITY)}/fields/tags/ops",
        raw=msgpack.packb({"op": "add", "element": "msgpack-ok"}),
        content_type="application/msgpack",
    )
    assert resp.status == 200, resp.body
    assert "msgpack-ok" in resp.json["fields"]["tags"]["value"]


def test_body_over_the_limit_is_413(fleet: Fleet) -> None:
    """A body over ``max_body_bytes`` (4 MiB by default): 413, not read whole."""
    big = json.dumps({"value": "x" * (4 * 1024 * 1024 + 10), "context": None}).encode()
    refused(
        fleet,
        lambda: fleet.request(
            TARGET,
            "PUT",
            f"/v1/entities/{quote(ENTITY)}/fields/displayLabel",
            raw=big,
        ),
        status=413,
        error="body-too-large",
        counters=[
            (
                "twinmesh_api_requests_total",
                {"route": "/v1/entities/{entity}/fields/{field}", "status": "413"},
            ),
            api_refusal("body-too-large"),
        ],
        reason_has="exceeded",
    )


# ------------------------------------------------------------------ gossip


def _identity(fleet: Fleet, name: str) -> Identity:
    return load_identity(name, fleet.node_dir(name))


def _forged_deltas(origin: str) -> bytes:
    """Well-formed encoded deltas made at ``origin`` (a new entity homed there)."""
    scratch = ReplicaState(origin, load_schemas())
    return encode_deltas([scratch.create(f"{origin}/forged/pump-9", PUMP, author="mallory")])


def _batch(
    origin: str,
    first: int,
    count: int,
    signer: Identity,
    *,
    claim_last: int | None = None,
) -> SignedBatch:
    blob = seal_batch_bytes(origin, first, count, _forged_deltas(origin) if count == 1 else b"")
    return SignedBatch(
        origin=origin,
        first=first,
        last=claim_last if claim_last is not None else first + count - 1,
        blob=blob,
        signature=signer.sign(blob),
    )


def _deltas_from_plant_a(fleet: Fleet, batch: SignedBatch) -> Response:
    message = encode_message(Deltas(sender="plant-a", batches=(batch,)))
    return gossip_post(fleet, TARGET, message, as_node="plant-a")


def _have(fleet: Fleet, origin: str) -> int:
    return int(_state(fleet)[1].get(origin, 0))


def _engine_refusal(kind: str) -> tuple[str, dict[str, str]]:
    return (GOSSIP_REFUSALS, {"reason": kind, "layer": "engine"})


def test_gossip_malformed_msgpack_is_400(fleet: Fleet) -> None:
    """Garbage to ``/v1/gossip`` over mTLS from a real member: 400 malformed-message,
    counted at the transport and in the engine."""
    refused(
        fleet,
        lambda: gossip_post(fleet, TARGET, b"\x93\xc1\xc1\xc1", as_node="plant-a"),
        status=400,
        error="malformed-message",
        counters=[
            (GOSSIP_REFUSALS, {"reason": "malformed-message", "layer": "transport"}),
            _engine_refusal("malformed-message"),
        ],
        reason_has="msgpack",
    )


def test_gossip_bad_signature_is_refused(fleet: Fleet) -> None:
    """A batch claiming plant-a's next deltas but signed with central's key
    (a relay forging another plant's write) is refused, nothing applied."""
    have = _have(fleet, "plant-a")
    batch = _batch("plant-a", have + 1, 1, _identity(fleet, "central"))
    refused(
        fleet,
        lambda: _deltas_from_plant_a(fleet, batch),
        status=422,
        error="batch-refused",
        counters=[_engine_refusal("bad-signature")],
        reason_has="bad-signature",
    )


def test_gossip_unknown_origin_is_refused(fleet: Fleet) -> None:
    """A batch from an origin that is no member of this fleet (a real Ed25519
    identity vouched for by another fleet's authority) is refused."""
    stranger = FleetAuthority().new_identity("plant-z")
    batch = _batch("plant-z", 1, 1, stranger)
    refused(
        fleet,
        lambda: _deltas_from_plant_a(fleet, batch),
        status=422,
        error="batch-refused",
        counters=[_engine_refusal("unknown-origin")],
        reason_has="unknown-origin",
    )


def test_gossip_sequence_gap_is_refused(fleet: Fleet) -> None:
    """A correctly signed batch of plant-a that skips a sequence number is refused."""
    have = _have(fleet, "plant-a")
    batch = _batch("plant-a", have + 2, 1, _identity(fleet, "plant-a"))
    refused(
        fleet,
        lambda: _deltas_from_plant_a(fleet, batch),
        status=422,
        error="batch-refused",
        counters=[_engine_refusal("sequence-gap")],
        reason_has="sequence-gap",
    )


def test_gossip_inflated_claim_is_refused(fleet: Fleet) -> None:
    """A batch whose unsigned claim (first..last) is wider than what plant-a
    signed — an inflated version vector — is refused before anything applies."""
    have = _have(fleet, "plant-a")
    batch = _batch("plant-a", have + 1, 1, _identity(fleet, "plant-a"), claim_last=have + 5)
    refused(
        fleet,
        lambda: _deltas_from_plant_a(fleet, batch),
        status=422,
        error="batch-refused",
        counters=[_engine_refusal("inflated-claim")],
        reason_has="inflated-claim",
    )


def test_gossip_peer_without_fleet_certificate_is_refused_at_tls(
    fleet: Fleet, tmp_path: Path
) -> None:
    """A client with a certificate from another CA (or none) never gets an
    HTTP exchange: the handshake fails. Nothing changes and the node serves on."""
    init_ca(tmp_path / "rogue-ca", fleet="rogue")
    rogue = issue_node(tmp_path / "rogue-ca", "plant-a")
    # Trusts our CA (so the client would accept the server) but presents a rogue cert.
    ctx = client_ssl_context(fleet.dir / "ca" / "ca.pem", rogue.cert_path, rogue.key_path)
    bare = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)  # no client certificate at all
    bare.load_verify_locations(fleet.dir / "ca" / "ca.pem")
    before_state = _state(fleet)
    before = fleet.metrics(TARGET)
    received = ("twinmesh_gossip_messages_total", frozenset({("direction", "received")}))
    with Prober(fleet, [(TARGET, "/v1/digest"), ("plant-a", "/healthz")]) as prober:
        for context in (ctx, bare):
            mark = prober.mark()
            message = encode_message(Deltas(sender="plant-a", batches=()))
            with pytest.raises((ssl.SSLError, ConnectionError, http.client.HTTPException)):
                gossip_post(fleet, TARGET, message, as_node="plant-a", context=context)
            prober.wait_past(mark)
    after = fleet.metrics(TARGET)
    assert _state(fleet) == before_state
    # Never reached the sync engine. (TLS refusals are not counted by the node:
    # the handshake fails inside asyncio's SSL transport, before any handler.)
    assert after[received] - before[received] < 10  # only real gossip from plant-a


def test_gossip_certificate_naming_another_node_is_403(fleet: Fleet) -> None:
    """plant-a's valid certificate with ``X-Twinmesh-Node: central``: 403 peer-identity."""
    message = encode_message(Deltas(sender="central", batches=()))
    refused(
        fleet,
        lambda: gossip_post(fleet, TARGET, message, as_node="plant-a", header="central"),
        status=403,
        error="peer-identity",
        counters=[(GOSSIP_REFUSALS, {"reason": "peer-identity", "layer": "transport"})],
        reason_has="issued to node 'plant-a'",
    )


def test_gossip_message_sender_other_than_certificate_is_refused(fleet: Fleet) -> None:
    """The header matches the certificate (plant-a) but the message claims to be
    from central: the engine refuses it as malformed (400)."""
    message = encode_message(Deltas(sender="central", batches=()))
    refused(
        fleet,
        lambda: gossip_post(fleet, TARGET, message, as_node="plant-a"),
        status=400,
        error="malformed-message",
        counters=[_engine_refusal("malformed-message")],
        reason_has="arrived from plant-a",
    )


# ------------------------------------------------------------------ API writes


def _put(fleet: Fleet, field: str, value: Any, **kw: Any) -> Callable[[], Response]:
    return lambda: fleet.put_field(TARGET, ENTITY, field, value, None, **kw)


def test_unknown_field_is_422(fleet: Fleet) -> None:
    """Writing a field the model does not have: 422 unknown-field."""
    refused(
        fleet,
        _put(fleet, "flowCapacity", 3.5),
        status=422,
        error="unknown-field",
        counters=[api_refusal("unknown-field")],
        reason_has="flowCapacity",
    )


def test_wrong_type_is_422(fleet: Fleet) -> None:
    """A number for a date field: 422 from the model's rules."""
    refused(
        fleet,
        _put(fleet, "nextMaintenanceDate", 20270101),
        status=422,
        error="refused",
        counters=[api_refusal("refused")],
        reason_has="nextMaintenanceDate",
    )


def test_reported_field_at_non_home_node_is_422(fleet: Fleet) -> None:
    """``serialNumber`` is reported state, written only at home (plant-a): central gets 422."""
    refused(
        fleet,
        _put(fleet, "serialNumber", "SN-1"),
        status=422,
        error="refused",
        counters=[api_refusal("refused")],
        reason_has="home",
    )


def test_reported_field_at_home_is_accepted(fleet: Fleet) -> None:
    """The control for the case above: plant-a itself may write it."""
    resp = fleet.put_field("plant-a", ENTITY, "serialNumber", "SN-1", None)
    assert resp.status == 200, resp.body
    assert resp.json["fields"]["serialNumber"]["value"] == "SN-1"
    fleet.wait_converged()


def test_resolution_not_covering_all_siblings_is_409(world: World) -> None:
    """A resolution whose context covers one sibling of two: 409 stale-resolution."""
    fleet = world.fleet
    refused(
        fleet,
        lambda: fleet.request(
            TARGET,
            "POST",
            "/v1/conflict/resolve",
            {
                "entity": CONFLICTED,
                "field": "nextMaintenanceDate",
                "value": "2027-01-15",
                "context": world.conflict_context_one_sibling,
                "reason": "split the difference",
            },
            role="reviewer",
        ),
        status=409,
        error="stale-resolution",
        counters=[api_refusal("stale-resolution")],
        reason_has="does not cover",
    )
    assert len(fleet.ok(TARGET, "GET", "/v1/conflicts")["conflicts"]) == 1


def test_unknown_entity_is_404(fleet: Fleet) -> None:
    """Writing to an entity nobody created: 404 unknown-entity."""
    refused(
        fleet,
        lambda: fleet.put_field(TARGET, "plant-a/line-9/ghost", "displayLabel", "x", None),
        status=404,
        error="unknown-entity",
        counters=[api_refusal("unknown-entity")],
        reason_has="ghost",
    )


# ------------------------------------------------------------------ tokens


def _secret(fleet: Fleet) -> bytes:
    return (fleet.dir / "ca" / "token-secret").read_bytes()


def test_missing_token_is_401(fleet: Fleet) -> None:
    """No Authorization header: 401 unauthenticated."""
    refused(
        fleet,
        _put(fleet, "displayLabel", "no token", role=None),
        status=401,
        error="unauthenticated",
        counters=[api_refusal("unauthenticated")],
        reason_has="missing",
    )


def test_forged_token_is_401(fleet: Fleet) -> None:
    """A viewer token edited to say admin (the MAC no longer matches): 401."""
    parts = fleet.tokens["viewer"].split(".")
    parts[1] = "admin"
    refused(
        fleet,
        _put(fleet, "displayLabel", "forged", token=".".join(parts)),
        status=401,
        error="unauthenticated",
        counters=[api_refusal("unauthenticated")],
        reason_has="signature",
    )


def test_token_from_another_secret_is_401(fleet: Fleet) -> None:
    """A well-formed admin token signed with some other secret: 401."""
    token = TokenIssuer(b"not-the-fleet-secret-at-all").issue(
        Role.ADMIN, "mallory", int(time.time()) + 3600
    )
    refused(
        fleet,
        _put(fleet, "displayLabel", "forged", token=token),
        status=401,
        error="unauthenticated",
        counters=[api_refusal("unauthenticated")],
    )


def test_expired_token_is_401(fleet: Fleet) -> None:
    """A genuine admin token (the fleet's own secret) that expired a minute ago: 401."""
    token = TokenIssuer(_secret(fleet)).issue(Role.ADMIN, "late", int(time.time()) - 60)
    refused(
        fleet,
        _put(fleet, "displayLabel", "too late", token=token),
        status=401,
        error="unauthenticated",
        counters=[api_refusal("unauthenticated")],
        reason_has="expired",
    )


def test_viewer_writing_is_403(fleet: Fleet) -> None:
    """A viewer may read but not write: 403 forbidden."""
    refused(
        fleet,
        _put(fleet, "displayLabel", "viewer was here", role="viewer"),
        status=403,
        error="forbidden",
        counters=[api_refusal("forbidden")],
        reason_has="operator",
    )


def test_operator_resolving_is_403(world: World) -> None:
    """An operator may write fields but not resolve conflicts: 403 forbidden."""
    fleet = world.fleet
    conflict = fleet.ok(
        TARGET,
        "GET",
        f"/v1/conflict?entity={quote(CONFLICTED)}&field=nextMaintenanceDate",
        role="viewer",
    )
    refused(
        fleet,
        lambda: fleet.request(
            TARGET,
            "POST",
            "/v1/conflict/resolve",
            {
                "entity": CONFLICTED,
                "field": "nextMaintenanceDate",
                "value": "2027-01-10",
                "context": conflict["context"],
                "reason": "operator thinks so",
            },
            role="operator",
        ),
        status=403,
        error="forbidden",
        counters=[api_refusal("forbidden")],
        reason_has="reviewer",
    )
