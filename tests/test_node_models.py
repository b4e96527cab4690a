"""DTDL models replicate through the fleet like other shared state (real node processes).

* a model registered at one plant reaches every node, and twins of it can
  then be created anywhere and replicate;
* invalid models are refused with every error (path, rule, expected, found);
  changing a registered model in place is a 409 — new versions get new DTMIs;
  ``;1`` and ``;2`` live side by side;
* two different documents registered under one DTMI on both sides of a split
  become a conflict in the review queue; a replica that has neither adopts
  nothing until a reviewer resolves it, then adopts the chosen one.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from node_helpers import Fleet, running_fleet, wait_until

COMPRESSOR = {
    "@context": "dtmi:dtdl:context;3",
    "@id": "dtmi:acme:plant:Compressor;1",
    "@type": "Interface",
    "extends": "dtmi:twinmesh:plant:Asset;1",
    "contents": [
        {"@type": "Telemetry", "name": "dischargeTemperature", "schema": "double"},
        {"@type": "Property", "name": "ratedPressure", "schema": "double", "writable": True},
    ],
}


def post_model(fleet: Fleet, node: str, doc: Any) -> Any:
    return fleet.request(node, "POST", "/v1/models", doc)


def known(fleet: Fleet, node: str, dtmi: str) -> bool:
    return fleet.request(node, "GET", "/v1/models/" + quote(dtmi)).status == 200


def test_models_replicate_and_twins_of_them_follow(tmp_path: Path) -> None:
    with running_fleet(tmp_path / "fleet", plants=2) as fleet:
        dtmi = COMPRESSOR["@id"]
        assert not known(fleet, "central", dtmi)
        resp = post_model(fleet, "plant-a", COMPRESSOR)
        assert resp.status == 201, resp.body
        assert resp.json == {"registered": [dtmi], "unchanged": []}
        assert post_model(fleet, "plant-a", COMPRESSOR).json == {
            "registered": [],
            "unchanged": [dtmi],
        }
        for node in ("plant-b", "central"):
            wait_until(lambda n=node: known(fleet, n, dtmi), 20, what=f"{dtmi} at {node}")
        model = fleet.ok("central", "GET", "/v1/models/" + quote(dtmi))
        assert model["document"]["@id"] == dtmi and model["replicated"] and not model["shipped"]
        assert "ratedPressure" in fleet.ok("plant-b", "GET", "/v1/models")["models"][dtmi]

        # A twin of the new model, created at plant-b, reaches central.
        fleet.create("plant-b", "plant-b/line-1/compressor-1", dtmi)
        wait_until(
            lambda: (
                fleet.request(
                    "central", "GET", "/v1/entities/" + quote("plant-b/line-1/compressor-1")
                ).status
                == 200
            ),
            20,
            what="the twin at central",
        )

        # Changing ;1 in place is refused; ;2 lives beside it.
        changed = copy.deepcopy(COMPRESSOR)
        changed["contents"].append({"@type": "Telemetry", "name": "flow", "schema": "double"})
        resp = post_model(fleet, "central", changed)
        assert resp.status == 409 and resp.json["error"] == "model-changed"
        assert resp.json["errors"][0]["rule"] == "registry.immutable"
        changed["@id"] = "dtmi:acme:plant:Compressor;2"
        assert post_model(fleet, "central", changed).status == 201
        wait_until(lambda: known(fleet, "plant-a", "dtmi:acme:plant:Compressor;2"), 20)
        versions = fleet.ok("plant-a", "GET", "/v1/models/" + quote(dtmi))["versions"]
        assert versions == [dtmi, "dtmi:acme:plant:Compressor;2"]

        # Bad input: every error, each naming path, rule, expected and found.
        bad = {
            "@context": "dtmi:dtdl:context;3",
            "@id": "dtmi:acme:Bad;1",
            "@type": "Interface",
            "contents": [
                {"@type": "Telemetry", "name": "1st", "schema": "double"},
                {"@type": "Property", "name": "ok", "schema": "doubel"},
            ],
        }
        resp = post_model(fleet, "plant-a", bad)
        assert resp.status == 422 and resp.json["error"] == "invalid-model"
        errors = resp.json["errors"]
        assert len(errors) >= 2
        assert all({"path", "rule", "expected", "found"} <= set(e) for e in errors)
        assert not known(fleet, "plant-a", "dtmi:acme:Bad;1")
        assert fleet.request("plant-a", "POST", "/v1/models", raw=b"{nope").status == 400
        assert post_model(fleet, "plant-a", "just a string").status == 400
        assert post_model(fleet, "plant-a", COMPRESSOR | {"@id": "x"}).status == 422
        assert (
            fleet.request("plant-a", "POST", "/v1/models", COMPRESSOR, role="reviewer").status
            == 403
        )


def test_concurrent_different_documents_are_a_conflict_for_review(tmp_path: Path) -> None:
    with running_fleet(tmp_path / "fleet", plants=2) as fleet:
        dtmi = "dtmi:acme:plant:Mixer;1"
        doc_a = {
            "@context": "dtmi:dtdl:context;3",
            "@id": dtmi,
            "@type": "Interface",
            "contents": [{"@type": "Telemetry", "name": "torque", "schema": "double"}],
        }
        doc_b = copy.deepcopy(doc_a)
        doc_b["contents"][0]["name"] = "speed"
        fleet.split("plant-b")
        assert post_model(fleet, "plant-a", doc_a).status == 201
        assert post_model(fleet, "plant-b", doc_b).status == 201
        wait_until(lambda: known(fleet, "central", dtmi), 20, what="plant-a's document at central")
        fleet.heal()

        def conflict() -> dict[str, Any] | None:
            for c in fleet.ok("central", "GET", "/v1/conflicts")["conflicts"]:
                if c["entity"] == f"_models/{dtmi}":
                    return c  # type: ignore[no-any-return]
            return None

        c = wait_until(conflict, 20, what="the model conflict in central's queue")
        assert c["field"] == "document" and len(c["siblings"]) == 2
        wait_until(lambda: fleet.converged() is not None, 20, what="convergence")
        # Each side keeps the document it registered (registries are append-only);
        # the review queue says they disagree.
        doc_at = {
            n: fleet.ok(n, "GET", "/v1/models/" + quote(dtmi))["document"]["contents"][0]["name"]
            for n in ("plant-a", "plant-b")
        }
        assert doc_at == {"plant-a": "torque", "plant-b": "speed"}

        # A reviewer settles it at central; the resolution replicates.
        chosen = json.dumps(doc_a, sort_keys=True, separators=(",", ":"))
        resolved = next(s["value"] for s in c["siblings"] if '"torque"' in s["value"])
        resp = fleet.request(
            "central",
            "POST",
            "/v1/conflict/resolve",
            {
                "entity": c["entity"],
                "field": "document",
                "value": resolved,
                "context": c["context"],
                "reason": "plant-a's Mixer is the one in the catalogue",
            },
            role="reviewer",
        )
        assert resp.status == 200, resp.body
        assert json.loads(resolved) == json.loads(chosen)
        wait_until(lambda: conflict() is None, 20, what="the conflict to close")
