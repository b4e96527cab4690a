"""Scenario files are validated with errors that name the file, the place,
what was expected and what was found."""

from __future__ import annotations

from pathlib import Path

import pytest

from twinmesh.sim import ScenarioError, load_scenario, parse_scenario
from twinmesh.sim._units import UnitError, parse_bytes, parse_duration, parse_rate

GOOD = """
[scenario]
name = "t"
duration = "10m"

[fleet]
plants = ["plant-a", "plant-b"]
central = "central"
"""


def _error(text: str) -> ScenarioError:
    with pytest.raises(ScenarioError) as info:
        parse_scenario(text, "scenarios/t.toml")
    return info.value


def test_a_minimal_scenario_gets_defaults() -> None:
    sc = parse_scenario(GOOD, "t.toml")
    assert sc.fleet.nodes == ("central", "plant-a", "plant-b")
    assert sc.duration == 600.0 and sc.sync.gossip_interval == 1.0
    assert sc.links.profile_for(sc.fleet, "plant-a", "central").latency == 0.040


@pytest.mark.parametrize(
    ("extra", "where", "expected", "found"),
    [
        (
            '[[faults]]\nkind = "isolate"\nplant = "plant-x"\nat = "1m"\nfor = "2m"\n',
            "faults[0].plant",
            "one of the fleet's nodes (central, plant-a, plant-b)",
            "'plant-x'",
        ),
        ('[[faults]]\nkind = "meteor"\nat = "1m"\n', "faults[0].kind", "a fault kind", "'meteor'"),
        (
            '[[faults]]\nkind = "isolate"\nplant = "plant-a"\nat = "1m"\n',
            "faults[0].for",
            "a value",
            "nothing",
        ),
        (
            '[[faults]]\nkind = "isolate"\nplant = "plant-a"\nat = "soon"\nfor = "1m"\n',
            "faults[0].at",
            "a duration such as",
            "'soon'",
        ),
        (
            '[[faults]]\nkind = "isolate"\nplant = "plant-a"\nat = "20m"\nfor = "1m"\n',
            "faults[0].at",
            "a time before the end of the safety phase",
            "'20m'",
        ),
        (
            '[[faults]]\nkind = "crash"\nplant = "plant-a"\nat = "1m"\nfor = "1m"\nskew = "1h"\n',
            "faults[0].skew",
            "one of the keys of a crash fault",
            "'skew'",
        ),
        (
            '[[faults]]\nkind = "partition"\ngroups = [["plant-a"], ["plant-a", "central"]]\n'
            'at = "1m"\nfor = "1m"\n',
            "faults[0].groups",
            "groups that do not share a node",
            None,
        ),
        (
            "[links.profiles.wan]\nloss = 1.5\n",
            "links.profiles.wan.loss",
            "a probability between 0 and 1",
            "1.5",
        ),
        ("[sync]\nfanout = 0\n", "sync.fanout", "an integer >= 1", "0"),
        ('[sync]\ngossip = "1s"\n', "sync.gossip", "one of the known keys", "'gossip'"),
        (
            "[workload.mix]\nteleport = 3\n",
            "workload.mix.teleport",
            "an operation kind",
            "'teleport'",
        ),
        (
            '[[workload.contested]]\nasset = "plant-a/pump-9"\nfield = "maintenance_date"\n'
            'writers = ["plant-a"]\nevery = "1m"\n',
            "workload.contested[0].asset",
            "an asset of the fleet",
            "'plant-a/pump-9'",
        ),
        (
            '[[workload.contested]]\nasset = "plant-a/pump-1"\nfield = "serial"\n'
            'writers = ["plant-a"]\nevery = "1m"\n',
            "workload.contested[0].field",
            "a shared field",
            "'serial'",
        ),
    ],
)
def test_errors_name_path_place_expectation_and_finding(
    extra: str, where: str, expected: str, found: str | None
) -> None:
    err = _error(GOOD + extra)
    text = str(err)
    assert text.startswith("scenarios/t.toml: ")
    assert err.where == where, text
    assert expected in err.expected, text
    if found is not None:
        assert text.endswith(f"found {found}"), text


def test_missing_and_malformed_files() -> None:
    assert _error("not toml = = =").where == "file"
    assert _error('[fleet]\nplants = ["a"]\n').where == "scenario"
    assert "scenario.duration" in str(
        _error('[scenario]\nname = "x"\n[fleet]\nplants = ["a", "b"]\n')
    )
    with pytest.raises(ScenarioError, match="a readable scenario file"):
        load_scenario(Path("/nonexistent/nowhere.toml"))


def test_numbered_fleet_and_sites() -> None:
    sc = parse_scenario(
        GOOD.replace(
            'plants = ["plant-a", "plant-b"]', 'plants = 12\nsites = [["central", "plant-03"]]'
        ),
        "t.toml",
    )
    assert sc.fleet.plants[0] == "plant-01" and len(sc.fleet.plants) == 12
    assert sc.links.profile_for(sc.fleet, "central", "plant-03").latency == 0.001  # LAN
    assert sc.links.profile_for(sc.fleet, "central", "plant-04").latency == 0.040  # WAN


def test_scaling_shrinks_the_schedule_not_the_physics() -> None:
    sc = parse_scenario(
        GOOD + '[sync]\nevict_after = "1h"\n'
        '[[faults]]\nkind = "isolate"\nplant = "plant-a"\nat = "2m"\nfor = "5m"\n',
        "t.toml",
    )
    q = sc.scaled(0.1)
    assert q.duration == 60.0 and q.faults[0].at == 12.0 and q.faults[0].duration == 30.0
    assert q.sync.evict_after == 360.0
    assert q.sync.gossip_interval == sc.sync.gossip_interval
    assert q.links == sc.links


def test_units() -> None:
    assert parse_duration("2h30m") == 9000.0
    assert parse_duration("150ms") == 0.15
    assert parse_duration("-1h", signed=True) == -3600.0
    assert parse_rate("2/min") == pytest.approx(1 / 30)
    assert parse_rate("1/30s") == pytest.approx(1 / 30)
    assert parse_bytes("64KiB") == 65536 and parse_bytes("10MB/s", per_second=True) == 10e6
    for bad in ("-1h", "1 fortnight", True, None):
        with pytest.raises(UnitError):
            parse_duration(bad)
    with pytest.raises(UnitError):
        parse_bytes("10MB/s")
