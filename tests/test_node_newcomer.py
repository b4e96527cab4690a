"""The newcomer flow from the README, as a test on real processes.

Fleet up (plant-a, plant-b, central); plant-a is split off; the same pump's
maintenance date is set at plant-a and at plant-b meanwhile; heal; central
shows the conflict with both siblings, their origins and authors, the
provisional value and the field's policy; a reviewer resolves it at central
with a reason; every node then shows the resolved value, no open conflict,
and the same audit entry.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

from node_helpers import running_fleet, wait_until

from twinmesh.node._tokens import Role, TokenIssuer

ENTITY = "plant-a/line-1/pump-7"
FIELD = "nextMaintenanceDate"


def test_newcomer_flow_split_conflict_resolve_everywhere(tmp_path: Path) -> None:
    """Split, concurrent edits, heal, review at central, resolution and audit everywhere."""
    with running_fleet(tmp_path / "fleet", plants=2) as fleet:
        fleet.create("plant-a", ENTITY)
        fleet.wait_converged()
        issuer = TokenIssuer((fleet.dir / "ca" / "token-secret").read_bytes())
        expires = 2**40
        alice = issuer.issue(Role.OPERATOR, "alice-at-plant-a", expires)
        bob = issuer.issue(Role.OPERATOR, "bob-at-plant-b", expires)
        carol = issuer.issue(Role.REVIEWER, "carol-central", expires)

        fleet.split("plant-a")
        ctx_a = fleet.entity("plant-a", ENTITY)["fields"][FIELD]["context"]
        ctx_b = fleet.entity("plant-b", ENTITY)["fields"][FIELD]["context"]
        resp = fleet.put_field("plant-a", ENTITY, FIELD, "2026-05-10", ctx_a, token=alice)
        assert resp.status == 200, resp.body
        resp = fleet.put_field("plant-b", ENTITY, FIELD, "2026-06-15", ctx_b, token=bob)
        assert resp.status == 200, resp.body
        wait_until(
            lambda: fleet.converged(["plant-b", "central"]),
            10,
            what="plant-b and central to agree while plant-a is away",
        )
        assert fleet.digest("plant-a") != fleet.digest("central")

        fleet.heal()
        fleet.wait_converged()

        conflicts = fleet.ok("central", "GET", "/v1/conflicts", role="viewer")["conflicts"]
        assert len(conflicts) == 1
        conflict = conflicts[0]
        assert (conflict["entity"], conflict["field"]) == (ENTITY, FIELD)
        assert conflict["policy"] == "min"
        assert conflict["home"] == "plant-a"
        by_origin = {s["origin"]: s for s in conflict["siblings"]}
        assert set(by_origin) == {"plant-a", "plant-b"}
        assert by_origin["plant-a"]["value"] == "2026-05-10"
        assert by_origin["plant-a"]["author"] == "alice-at-plant-a"
        assert by_origin["plant-b"]["value"] == "2026-06-15"
        assert by_origin["plant-b"]["author"] == "bob-at-plant-b"
        assert conflict["provisional"]["value"] == "2026-05-10"  # the sooner date
        for node in fleet.names:
            field = fleet.entity(node, ENTITY)["fields"][FIELD]
            assert (field["conflict"], field["value"]) == (True, "2026-05-10")

        resp = fleet.request(
            "central",
            "POST",
            "/v1/conflict/resolve",
            {
                "entity": ENTITY,
                "field": FIELD,
                "value": "2026-05-20",
                "context": conflict["context"],
                "reason": "agreed with plant-a: parts arrive on the 18th",
            },
            token=carol,
        )
        assert resp.status == 200, resp.body
        assert resp.json["fields"][FIELD]["value"] == "2026-05-20"

        fleet.wait_converged()
        for node in fleet.names:
            field = fleet.entity(node, ENTITY)["fields"][FIELD]
            assert (field["value"], field["conflict"], field["siblings"]) == (
                "2026-05-20",
                False,
                1,
            ), node
            assert fleet.ok(node, "GET", "/v1/conflicts", role="viewer")["conflicts"] == []
            assert (
                fleet.request(
                    node, "GET", f"/v1/conflict?entity={quote(ENTITY)}&field={FIELD}"
                ).status
                == 404
            )
            events = fleet.ok(node, "GET", "/v1/audit", role="viewer")["events"]
            assert len(events) == 1, (node, events)
            event = events[0]
            assert event["kind"] == "resolution"
            assert (event["entity"], event["field"], event["value"]) == (
                ENTITY,
                FIELD,
                "2026-05-20",
            )
            assert event["by"] == "carol-central" and event["at_node"] == "central"
            assert event["reason"] == "agreed with plant-a: parts arrive on the 18th"
            assert {(s["origin"], s["value"], s["author"]) for s in event["siblings"]} == {
                ("plant-a", "2026-05-10", "alice-at-plant-a"),
                ("plant-b", "2026-06-15", "bob-at-plant-b"),
            }
