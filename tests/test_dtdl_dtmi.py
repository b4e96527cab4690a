"""DTMI grammar: accept and reject cases from the DTMI spec and DTDL.v3.md."""

from __future__ import annotations

import pytest

from twinmesh.node.dtdl import (
    MAX_DTMI_LENGTH,
    MAX_USER_DTMI_LENGTH,
    dtmi_problem,
    is_dtmi,
    parse_dtmi,
)

VALID = [
    "dtmi:com:example:Thermostat;1",
    "dtmi:com:fabrikam:industrialProducts:airQualitySensor;1",
    "dtmi:foo_bar:baz33:qux;12",
    "dtmi:a;1",
    "dtmi:A1_b2:c;3",
    "dtmi:a:b",  # the version is optional in DTDL v3
    "dtmi:a;1.2",  # two-part version
    "dtmi:a;999999999",  # nine-digit major
    "dtmi:a;1.999999",  # six-digit minor
    "dtmi:a;10.10",
]

INVALID = [
    ("", "scheme"),
    ("DTMI:a;1", "scheme"),
    ("urn:a;1", "scheme"),
    ("dtmi:", "at least one path segment"),
    ("dtmi:;1", "at least one path segment"),
    ("dtmi:a::b;1", "empty"),
    ("dtmi:1a;1", "segment '1a'"),
    ("dtmi:a_;1", "segment 'a_'"),
    ("dtmi:a-b;1", "segment 'a-b'"),
    ("dtmi:a#frag;1", "segment 'a#frag'"),
    ("dtmi:a.b;1", "segment 'a.b'"),
    ("dtmi:a;", "major version"),
    ("dtmi:a;0", "major version"),
    ("dtmi:a;01", "major version"),
    ("dtmi:a;1234567890", "major version"),
    ("dtmi:a;1.", "minor version"),
    ("dtmi:a;1.0", "minor version"),
    ("dtmi:a;1.01", "minor version"),
    ("dtmi:a;1.1234567", "minor version"),
    ("dtmi:a;1;2", "major version"),
    ("dtmi:a;v1", "major version"),
    ("dtmi:_sys:a;1", "system DTMI"),
]


@pytest.mark.parametrize("text", VALID)
def test_valid_dtmis_are_accepted(text: str) -> None:
    assert dtmi_problem(text) is None
    assert is_dtmi(text)
    assert str(parse_dtmi(text)) == text


@pytest.mark.parametrize(("text", "reason"), INVALID)
def test_invalid_dtmis_are_refused_with_the_reason(text: str, reason: str) -> None:
    problem = dtmi_problem(text)
    assert problem is not None and reason in problem
    assert not is_dtmi(text)
    with pytest.raises(ValueError, match="not a valid DTMI"):
        parse_dtmi(text)


def test_non_strings_are_not_dtmis() -> None:
    assert dtmi_problem(7) == "a DTMI must be a string"
    assert not is_dtmi(None)


def test_system_segments_only_where_allowed() -> None:
    # DTMI spec: a segment starting with '_' makes a system DTMI; "_" alone is no segment.
    assert is_dtmi("dtmi:foo_bar:_16:baz33:qux;12", allow_system=True)
    assert not is_dtmi("dtmi:foo_bar:_16:baz33:qux;12")
    assert not is_dtmi("dtmi:_:a;1", allow_system=True)
    assert parse_dtmi("dtmi:a:_b1;1", allow_system=True).is_system


def test_length_limits() -> None:
    base = "dtmi:" + "a" * (MAX_USER_DTMI_LENGTH - len("dtmi:;1")) + ";1"
    assert len(base) == MAX_USER_DTMI_LENGTH and is_dtmi(base)
    longer = base.replace(";1", "a;1")
    assert not is_dtmi(longer)
    assert "at most 2048 characters" in (dtmi_problem(longer) or "")
    system = "dtmi:_" + "a" * (MAX_DTMI_LENGTH - len("dtmi:_;1")) + ";1"
    assert is_dtmi(system, allow_system=True)
    assert not is_dtmi(system + "1", allow_system=True)
    assert dtmi_problem("dtmi:" + "a" * 121 + ";1", max_length=128) is None
    assert dtmi_problem("dtmi:" + "a" * 122 + ";1", max_length=128) is not None


def test_required_version() -> None:
    assert dtmi_problem("dtmi:a:b", require_version=True) == (
        "a DTMI version (';1') is required here"
    )
    assert dtmi_problem("dtmi:a:b;1", require_version=True) is None


def test_parsed_parts_and_version_order() -> None:
    d = parse_dtmi("dtmi:twinmesh:plant:Pump;2.15")
    assert d.segments == ("twinmesh", "plant", "Pump")
    assert (d.path, d.major, d.minor, d.version) == ("dtmi:twinmesh:plant:Pump", 2, 15, "2.15")
    texts = ["dtmi:x;10", "dtmi:x;2.3", "dtmi:x", "dtmi:x;2", "dtmi:x;2.10"]
    ordered = sorted((parse_dtmi(t) for t in texts), key=lambda v: v.version_key())
    assert [str(v) for v in ordered] == [
        "dtmi:x",
        "dtmi:x;2",
        "dtmi:x;2.3",
        "dtmi:x;2.10",
        "dtmi:x;10",
    ]
    # Equivalence is case-sensitive.
    assert parse_dtmi("dtmi:a:B;1") != parse_dtmi("dtmi:a:b;1")
