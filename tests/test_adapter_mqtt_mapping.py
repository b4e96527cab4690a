"""MQTT topic mapping and payload decoding (pure; no broker)."""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from twinmesh.adapters import (
    MappingError,
    Quality,
    TopicMapping,
    TopicRule,
    TopicTarget,
    load_topic_mapping,
)
from twinmesh.adapters.mqtt import PayloadError, decode_payload


def test_default_unified_namespace_mapping() -> None:
    m = TopicMapping()
    assert m.resolve("plant-a/area-1/line-1/cell-1/pump-7/vibration_rms") == TopicTarget(
        entity="plant-a/line-1/pump-7", name="vibration_rms"
    )
    assert m.resolve("plant-a/area-1/line-1/pump-7/vibration_rms") is None  # 5 levels
    assert m.resolve("/area-1/line-1/cell-1/pump-7/x") is None  # empty site: no twin path
    assert m.subscription_filters == ("+/+/+/+/+/+",)


def test_explicit_rules_first_match_wins_with_wildcards() -> None:
    m = TopicMapping(
        [
            TopicRule(
                topic="legacy/{asset}/temp_f",
                entity="plant-a/line-1/{asset}",
                telemetry="temperature",
                unit="degF",
            ),
            TopicRule(
                topic="plant-b/+/{line}/+/{asset}/#", entity="b/{line}/{asset}", telemetry="raw"
            ),
            TopicRule(topic="spb/{node}/{rest#}", entity="plant-c/{node}", telemetry="{rest}"),
        ]
    )
    assert m.resolve("legacy/pump-9/temp_f") == TopicTarget(
        entity="plant-a/line-1/pump-9", name="temperature", unit="degF"
    )
    # The explicit plant-b rule shadows the UNS default for 6-level plant-b topics.
    assert m.resolve("plant-b/a/l2/c/p1/flow") == TopicTarget(entity="b/l2/p1", name="raw")
    assert m.resolve("plant-b/a/l2/c/p1/deep/er") == TopicTarget(entity="b/l2/p1", name="raw")
    assert m.resolve("spb/edge-1/motor/speed") == TopicTarget(
        entity="plant-c/edge-1", name="motor/speed"
    )
    assert m.resolve("plant-a/area-1/line-1/cell-1/pump-7/x") == TopicTarget(
        entity="plant-a/line-1/pump-7", name="x"
    )
    assert m.subscription_filters == (
        "legacy/+/temp_f",
        "plant-b/+/+/+/+/#",
        "spb/+/#",
        "+/+/+/+/+/+",
    )


def test_bad_rules_are_refused() -> None:
    with pytest.raises(MappingError, match="uncaptured"):
        TopicRule(topic="a/{x}", entity="{y}", telemetry="t")
    with pytest.raises(MappingError, match="last level"):
        TopicRule(topic="a/#/b", entity="e", telemetry="t")
    with pytest.raises(MappingError, match="bad level"):
        TopicRule(topic="a/b+c", entity="e", telemetry="t")
    with pytest.raises(MappingError, match="at least one"):
        TopicMapping([], uns_default=False)


def test_mapping_files(tmp_path: Path) -> None:
    toml = tmp_path / "m.toml"
    toml.write_text(
        'uns_default = false\n[[rule]]\ntopic = "legacy/{a}/t"\nentity = "p/l/{a}"\n'
        'telemetry = "temperature"\nunit = "degF"\n'
    )
    js = tmp_path / "m.json"
    js.write_text(json.dumps({"rule": [{"topic": "x/{a}", "entity": "p/{a}", "telemetry": "v"}]}))
    t = load_topic_mapping(toml)
    assert t.resolve("legacy/p3/t") == TopicTarget(entity="p/l/p3", name="temperature", unit="degF")
    assert t.subscription_filters == ("legacy/+/t",)
    assert load_topic_mapping(js).subscription_filters == ("x/+", "+/+/+/+/+/+")
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\ntopic = "a"\n')
    with pytest.raises(MappingError, match=r"rule\[0\].*entity"):
        load_topic_mapping(bad)


@given(st.lists(st.text("abc-", min_size=1, max_size=5), min_size=6, max_size=6))
def test_uns_default_maps_every_six_level_topic(levels: list[str]) -> None:
    target = TopicMapping().resolve("/".join(levels))
    assert target == TopicTarget(entity=f"{levels[0]}/{levels[2]}/{levels[4]}", name=levels[5])


# -- payloads ---------------------------------------------------------------------------------


def test_json_payload_fields() -> None:
    d = decode_payload(
        b'{"value": 3.5, "timestamp": "2027-01-15T08:00:00Z", "quality": "Uncertain",'
        b' "unit": "mm/s", "id": 42}'
    )
    assert d.value == 3.5 and d.unit == "mm/s" and d.native_id == "42"
    assert d.timestamp == dt.datetime(2027, 1, 15, 8, tzinfo=dt.UTC).timestamp()
    assert d.quality == Quality.UNCERTAIN
    assert decode_payload(b'{"value": 1, "timestamp": 1800000000123}').timestamp == 1800000000.123
    naive = decode_payload(b'{"value": 1, "timestamp": "2027-01-15T08:00:00"}')
    assert naive.timestamp == d.timestamp  # no offset means UTC
    bad = decode_payload(b'{"value": null, "quality": "bad"}')
    assert math.isnan(float(bad.value)) and bad.quality == Quality.BAD_STATUS


@pytest.mark.parametrize(
    ("payload", "value"),
    [(b"21.5", 21.5), (b"7", 7), (b"true", True), (b'"RUNNING"', "RUNNING"), (b" -3e2 ", -300.0)],
)
def test_bare_scalars(payload: bytes, value: object) -> None:
    d = decode_payload(payload)
    assert d.value == value and type(d.value) is type(value)
    assert d.timestamp is None and d.quality == Quality.GOOD


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", "empty payload"),
        (b"\xff\xfe", "not UTF-8"),
        (b"RUNNING", "not JSON"),
        (b"{oops", "not JSON"),
        (b"NaN", "non-finite value"),
        (b"[1, 2]", "bad value type"),
        (b"null", "bad value type"),
        (b'{"timestamp": 1}', "missing value"),
        (b'{"value": null}', "missing value"),
        (b'{"value": {"a": 1}}', "bad value type"),
        (b'{"value": 1, "quality": "meh"}', "unknown quality"),
        (b'{"value": 1, "timestamp": "yesterday"}', "bad timestamp"),
        (b'{"value": 1, "timestamp": -5}', "bad timestamp"),
        (b'{"value": 1, "timestamp": 1800000000}', "bad timestamp"),  # seconds, not ms
        (b'{"value": 1, "timestamp": true}', "bad timestamp"),
        (b'{"value": 1, "unit": 3}', "bad unit"),
        (b'{"value": 1, "id": [1]}', "bad id"),
        (b"1" * 70000, "payload too large"),
        (b"[" * 60000, "not JSON"),  # nesting deeper than the recursion limit
    ],
)
def test_malformed_payloads_have_reasons(payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadError) as info:
        decode_payload(payload)
    assert info.value.reason == reason


@given(st.binary(max_size=200))
def test_decoder_never_crashes(payload: bytes) -> None:
    try:
        decode_payload(payload)
    except PayloadError as exc:
        assert exc.reason
