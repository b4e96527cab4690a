"""A newcomer's first hour (issue 9): the client loop, and inputs that are refused.

Real processes: one local fleet (plant-a, central) drives the
``twinmesh entity``/``twinmesh conflicts`` loop as a person types it — read,
write with the context, a conflict from a split, resolve — plus the entity-id
grammar at the API, ``fleet link``/``status`` faults, and a plant node whose
mapping binds one modelled tag of several (the rest are reported once as
unmapped, never STALE). The config and CLI checks are pure and fast.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from _brokers import free_port
from node_helpers import Fleet, running_fleet, wait_until

from twinmesh.cli import build_parser
from twinmesh.node._config import ConfigError, load_config
from twinmesh.node.fleet._launch import FleetError, fleet_up

PUMP = "plant-a/line-1/pump-7"
FIELD = "nextMaintenanceDate"
MOTOR = "plant-a/line-1/motor-1"


def twinmesh(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        [sys.executable, "-m", "twinmesh", *args], capture_output=True, text=True, timeout=60
    )
    if check:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


# ---------------------------------------------------------------- one fleet


@pytest.fixture(scope="module")
def plant_fleet(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """plant-a (ingesting from an OPC UA server that is not there) and central."""
    root = tmp_path_factory.mktemp("newcomer")
    mapping = root / "opcua.toml"
    # One of the Motor model's telemetry is bound; the server never answers,
    # so that tag is expected and goes STALE, the unbound ones must not.
    mapping.write_text(
        f'[[node]]\nnode_id = "ns=2;s=motor-1.speed"\nentity = "{MOTOR}"\ntelemetry = "speed"\n'
    )
    telemetry = root / "telemetry.toml"
    telemetry.write_text(
        f"""[telemetry]
stale_factor = 2
[[telemetry.asset]]
entity = "{MOTOR}"
model = "dtmi:twinmesh:plant:Motor;1"
sample_interval = 0.1

[[adapter]]
kind = "opcua"
name = "line-1"
url = "opc.tcp://127.0.0.1:{free_port()}/nothing/"
mapping = "{mapping}"
"""
    )
    with running_fleet(root / "fleet", plants=1, telemetry={"plant-a": telemetry}) as fleet:
        yield fleet


def test_entity_and_conflicts_commands_read_write_conflict_resolve(plant_fleet: Fleet) -> None:
    fleet = plant_fleet
    d = str(fleet.dir)
    created = twinmesh(
        "entity",
        "create",
        PUMP,
        "--model",
        "dtmi:twinmesh:plant:Pump;1",
        "--node",
        "plant-a",
        "--dir",
        d,
    )
    assert json.loads(created.stdout)["home"] == "plant-a"
    fleet.wait_converged()

    # read: the field's value and context (viewer token from fleet.json)
    got = json.loads(twinmesh("entity", "get", PUMP, "--field", FIELD, "--dir", d).stdout)
    assert got["kind"] == "shared" and got["conflict"] is False
    # write with that context, at plant-a (operator token)
    twinmesh(
        "entity",
        "set",
        PUMP,
        FIELD,
        "2026-04-01",
        "--context",
        got["context"],
        "--node",
        "plant-a",
        "--dir",
        d,
    )
    fleet.wait_converged()
    # a stale context at central, then a split: concurrent writes on both sides
    stale = got["context"]
    fleet.split("plant-a")
    twinmesh("entity", "set", PUMP, FIELD, "2026-05-10", "--node", "plant-a", "--dir", d)
    twinmesh("entity", "set", PUMP, FIELD, "2026-06-15", "--context", stale, "--dir", d)
    fleet.heal()
    fleet.wait_converged()

    listed = twinmesh("conflicts", "list", "--dir", d).stdout
    assert f"{PUMP} {FIELD}" in listed and '"2026-05-10"' in listed and '"2026-06-15"' in listed
    assert "written at plant-a" in listed and "written at central" in listed
    # A viewer token cannot resolve: the command says which role it needs.
    viewer = fleet.info["tokens"]["viewer"]
    refused = twinmesh(
        "conflicts",
        "resolve",
        PUMP,
        FIELD,
        "2026-05-20",
        "--reason",
        "x",
        "--dir",
        d,
        "--token",
        viewer,
        check=False,
    )
    assert refused.returncode == 1 and "reviewer role" in refused.stderr
    # resolve with the reviewer token from fleet.json, by URL as a script would
    central = next(n["api"] for n in fleet.info["nodes"] if n["name"] == "central")
    reviewer = fleet.info["tokens"]["reviewer"]
    done = twinmesh(
        "conflicts",
        "resolve",
        PUMP,
        FIELD,
        "2026-05-20",
        "--reason",
        "agreed",
        "--url",
        central,
        "--token",
        reviewer,
    )
    assert json.loads(done.stdout)["value"] == "2026-05-20"
    fleet.wait_converged()
    assert (
        "no open conflicts" in twinmesh("conflicts", "list", "--node", "plant-a", "--dir", d).stdout
    )
    value = json.loads(twinmesh("entity", "get", PUMP, "--node", "plant-a", "--dir", d).stdout)
    assert value["fields"][FIELD]["value"] == "2026-05-20"


@pytest.mark.parametrize(
    ("entity_id", "reason"),
    [
        ("Pump 7!", "is not a node name"),
        ("plant-a/line 1/pump-7", "may hold only letters"),
        ("plant-a", "has no '/'"),
        ("plant-a//pump-7", "no empty segment"),
        ("plant-b/line-1/pump-8", "names plant-b as its site, but this node is plant-a"),
        ("_models/dtmi:x;1", "fleet-wide"),
        ("plant-a/_private", "reserved for the node"),
    ],
)
def test_entity_ids_outside_the_grammar_are_refused(
    plant_fleet: Fleet, entity_id: str, reason: str
) -> None:
    resp = plant_fleet.request(
        "plant-a", "POST", "/v1/entities", {"id": entity_id, "model": "dtmi:twinmesh:plant:Pump;1"}
    )
    assert resp.status == 422, resp.body
    assert resp.json["error"] == "bad-entity-id" and reason in resp.json["reason"]
    assert plant_fleet.request("plant-a", "GET", f"/v1/entities/{quote(entity_id)}").status == 404


def test_openapi_documents_the_entity_id_grammar(plant_fleet: Fleet) -> None:
    doc = plant_fleet.ok("plant-a", "GET", "/openapi.json")
    schema = doc["paths"]["/v1/entities"]["post"]["requestBody"]["content"]["application/json"]
    assert schema["schema"]["properties"]["id"]["pattern"].startswith("^[a-z0-9]")


def test_unbound_model_telemetry_is_unmapped_once_and_never_stale(plant_fleet: Fleet) -> None:
    def events() -> list[dict[str, Any]]:
        return plant_fleet.ok("plant-a", "GET", "/v1/telemetry/events?limit=10000")["events"]  # type: ignore[no-any-return]

    # The bound tag's server is not there: it is expected, so it goes STALE.
    wait_until(
        lambda: any(e["kind"] == "stale" and e["name"] == "speed" for e in events()),
        20,
        what="a STALE event for the bound but silent tag",
    )
    # Many sweeps later (every 0.1 s at least): nothing else is stale.
    seen = events()
    assert {e["name"] for e in seen if e["kind"] == "stale"} == {"speed"}
    unmapped = [e["name"] for e in seen if e["kind"] == "unmapped"]
    assert "speed" not in unmapped and len(unmapped) == len(set(unmapped)) >= 3
    tags = plant_fleet.ok("plant-a", "GET", "/v1/telemetry")["tags"]
    assert {t["name"] for t in tags if not t["mapped"]} == set(unmapped)


def test_fleet_link_sets_named_faults_requires_units_and_status_shows_them(
    plant_fleet: Fleet,
) -> None:
    d = str(plant_fleet.dir)
    out = twinmesh("fleet", "link", "plant-a", "central", "--loss", "5%", "--dir", d).stdout
    assert "plant-a->central: loss 5%" in out
    # --delay changes the delay only; the loss set before stays (said in the output).
    out = twinmesh("fleet", "link", "plant-a", "central", "--delay", "150ms", "--dir", d).stdout
    assert "plant-a->central: delay 150ms, loss 5%" in out
    assert "central->plant-a: delay 150ms, loss 5%" in out
    status = twinmesh("fleet", "status", "--dir", d).stdout
    assert "plant-a->central" in status and "delay 150ms, loss 5%" in status
    bare = twinmesh(
        "fleet", "link", "plant-a", "central", "--delay", "150", "--dir", d, check=False
    )
    assert bare.returncode == 1 and "with its unit" in bare.stderr
    loss = twinmesh("fleet", "link", "plant-a", "central", "--loss", "5", "--dir", d, check=False)
    assert loss.returncode == 1 and "write 5%" in loss.stderr
    out = twinmesh(
        "fleet", "link", "plant-a", "central", "--reset", "--jitter", "0.01s", "--dir", d
    ).stdout
    assert "plant-a->central: jitter 10ms" in out
    plant_fleet.heal()
    assert "link faults (0 of 2 links" in twinmesh("fleet", "status", "--dir", d).stdout


# ---------------------------------------------------------------- no processes


def test_fleet_up_reports_a_bad_telemetry_file_against_that_file(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[telemetry]\nstale_factr = 3\n")
    with pytest.raises(FleetError) as err:
        fleet_up(tmp_path / "fleet", plants=1, telemetry={"plant-a": bad})
    assert str(bad) in err.value.reason and "stale_factr" in err.value.reason
    assert "node.toml" not in err.value.reason
    bad.write_text("[gossip]\nfanout = 3\n")
    with pytest.raises(FleetError, match=r"bad.toml: unknown key gossip"):
        fleet_up(tmp_path / "fleet", plants=1, telemetry={"plant-a": bad})
    assert not (tmp_path / "fleet" / "fleet.json").exists()  # nothing was started


CONFIG = """
[node]
name = "plant-a"
data_dir = "data"
[api]
listen = "127.0.0.1:8401"
[gossip]
listen = "127.0.0.1:9401"
[tls]
ca = "ca.pem"
cert = "cert.pem"
key = "key.pem"
signing = "sig"
[auth]
token_secret_file = "secret"
[[peers]]
name = "central"
url = "https://127.0.0.1:9400"
"""


@pytest.mark.parametrize(
    ("edit", "path"),
    [
        (("[gossip]\n", "[gossip]\nfanuot = 3\n"), "gossip.fanuot"),
        (("[node]\n", "[node]\nrole_ = 'plant'\n"), "node.role_"),
        (("[api]\n", "[api]\nport = 1\n"), "api.port"),
        (("[tls]\n", "[tls]\nsigning_key = 'x'\n"), "tls.signing_key"),
        (("[auth]\n", "[auth]\ntoken = 'x'\n"), "auth.token"),
        (('name = "central"\n', 'name = "central"\nweight = 2\n'), "peers[0].weight"),
        (("[node]\n", "[nodes]\nx = 1\n[node]\n"), "nodes"),
    ],
)
def test_unknown_config_keys_are_refused_with_their_path(
    tmp_path: Path, edit: tuple[str, str], path: str
) -> None:
    config = tmp_path / "node.toml"
    config.write_text(CONFIG)
    assert load_config(config).fanout == 2
    config.write_text(CONFIG.replace(*edit, 1))
    with pytest.raises(ConfigError) as err:
        load_config(config)
    assert f"unknown key {path} " in err.value.reason and str(config) in err.value.reason


def _parsers(
    parser: argparse.ArgumentParser, path: str = "twinmesh"
) -> list[tuple[str, argparse.ArgumentParser]]:
    out = [(path, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                assert helps.get(name), f"{path} {name}: no help text"
                out += _parsers(sub, f"{path} {name}")
    return out


def test_every_cli_option_has_help_and_no_prefix_matching() -> None:
    missing = []
    for path, parser in _parsers(build_parser()):
        assert parser.allow_abbrev is False, path
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction | argparse._SubParsersAction):
                continue
            if action.option_strings == ["--version"]:
                continue
            if not action.help or action.help == argparse.SUPPRESS:
                missing.append(f"{path} {'/'.join(action.option_strings) or action.dest}")
    assert not missing, f"options without help: {missing}"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["fleet", "up", "--plant", "3"])
    assert build_parser().parse_args(["fleet", "up", "--plants", "3"]).plants == 3


@pytest.mark.parametrize(
    ("kind", "text", "path"),
    [
        ("mqtt", "uns_defualt = false\n", "uns_defualt"),
        (
            "mqtt",
            '[[rule]]\ntopic = "a/{t}"\nentity = "a/b"\ntelemetry = "{t}"\nunti = "K"\n',
            "rule[0].unti",
        ),
        (
            "opcua",
            '[subscription]\npublish_ms = 5\n[[node]]\nnode_id = "ns=2;s=x"\n'
            'entity = "a/b"\ntelemetry = "t"\n',
            "subscription.publish_ms",
        ),
        (
            "opcua",
            '[[node]]\nnode_id = "ns=2;s=x"\nentity = "a/b"\ntelemetry = "t"\nsampling = 1\n',
            "node[0].sampling",
        ),
    ],
)
def test_unknown_mapping_keys_are_refused_with_their_path(
    tmp_path: Path, kind: str, text: str, path: str
) -> None:
    from twinmesh.adapters import MappingError, load_node_bindings, load_topic_mapping

    file = tmp_path / "mapping.toml"
    file.write_text(text)
    load = load_topic_mapping if kind == "mqtt" else load_node_bindings
    with pytest.raises(MappingError, match=rf"unknown key\(s\) {re.escape(path)} "):
        load(file)


def test_fleet_up_refuses_assets_of_another_site(tmp_path: Path) -> None:
    """A plant's asset list fed to the wrong node would create twins with a wrong home."""
    other = tmp_path / "other.toml"
    other.write_text(
        '[[telemetry.asset]]\nentity = "plant-a/line-1/motor-1"\n'
        'model = "dtmi:twinmesh:plant:Motor;1"\n'
    )
    with pytest.raises(FleetError, match=r"names plant-a as its site, but this node is plant-b"):
        fleet_up(tmp_path / "fleet", plants=2, telemetry={"plant-b": other})
