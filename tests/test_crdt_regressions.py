"""Minimal reproductions of bugs the property suites found in ``crdt/``.

Each fixed bug keeps its test as a regression guard.
"""

from __future__ import annotations

import itertools

import msgpack
import pytest
from crdt_strategies import ENTITY_IDS, MODEL, SCHEMAS

from twinmesh.crdt import (
    LocalProtocolError,
    RemoteProtocolError,
    ReplicaState,
    TextCrdt,
    decode_state,
    encode_state,
    state_digest,
)

TWIN = ENTITY_IDS[0]


def _replica(name: str = "plant-a") -> ReplicaState:
    state = ReplicaState(name, SCHEMAS)
    state.create(TWIN, MODEL, author="x")
    return state


# ---------------------------------------------------------------- fixed


def test_text_delta_joined_before_its_predecessor_is_kept() -> None:
    """Fixed in _text.py (TextCrdt.merge): Yrs buffers an update whose causal
    predecessors are missing, but ``Doc.get_update()`` leaves that buffer out,
    so re-encoding after the join dropped the delta for good. Joining
    'hello' then ' world' in the order (second, first) gave 'hello'."""
    a = TextCrdt()
    first = a.insert(0, "hello", replica="a")
    second = a.join(first).insert(5, " world", replica="a")
    delete = a.join(first).join(second).delete(0, 2, replica="b")
    results = set()
    for order in itertools.permutations([first, second, delete]):
        text = TextCrdt()
        for delta in order:
            text = text.join(delta)
        results.add((text.text(), text.update))
    assert results == {("llo world", a.join(first).join(second).join(delete).update)}


def test_text_indices_count_characters_not_utf8_bytes() -> None:
    """Fixed in _text.py (TextCrdt._edit): pycrdt indexes text by UTF-8 byte
    offset, ours by character. Deleting character 1 of 'é✓' raised pyo3's
    PanicException (a BaseException) and deleting character 0 removed both."""
    text = TextCrdt()
    text = text.join(text.insert(0, "é✓x", replica="a"))
    assert text.join(text.delete(0, 1, replica="a")).text() == "✓x"
    assert text.join(text.delete(1, 1, replica="a")).text() == "éx"
    assert text.join(text.insert(2, "_", replica="a")).text() == "é✓_x"
    assert text.join(text.replace("é_✓x", replica="a")).text() == "é_✓x"


def test_malformed_text_update_that_panics_yrs_is_refused() -> None:
    """Fixed in _text.py (TextCrdt.merge/checked): this update passes
    ``TextCrdt.checked`` but makes Yrs panic when joined into a non-empty
    document; the panic surfaced as pyo3's PanicException, a BaseException
    that ``except Exception`` let escape from ``ReplicaState.apply``."""
    state = TextCrdt()
    state = state.join(state.insert(0, "hello world", replica="a"))
    hostile = TextCrdt.checked(bytes.fromhex("0100e4ecd69c9ef18302010005"))
    with pytest.raises(RemoteProtocolError):
        state.join(hostile)


def test_lone_surrogate_value_is_refused_before_it_makes_the_state_unencodable() -> None:
    """Fixed in _schema.py (check_plain_value): a str holding a lone surrogate
    passed the value check, and then every later ``encode_state`` of that
    replica raised UnicodeEncodeError (msgpack cannot encode it)."""
    state = _replica()
    with pytest.raises(LocalProtocolError, match="surrogate"):
        state.write(TWIN, "owner", "\ud800", author="x", now_ms=1)
    with pytest.raises(LocalProtocolError, match="surrogate"):
        state.write(TWIN, "value", {"\udc00": 1}, author="x", now_ms=1)
    encode_state(state)


def test_snapshot_cannot_carry_a_value_in_a_never_written_reported_field() -> None:
    """Fixed in _codec.py (_decode_field, REPORTED): decode_state accepted
    ``[value, 0, writer, None]`` — a register never written (seq 0) that still
    shows a value — so a snapshot could plant reported state no home wrote."""
    raw = ["twinmesh/state", 1, [[TWIN, MODEL, "plant-a", [["serial", 1, ["SN-X", 0, "", None]]]]]]
    with pytest.raises(RemoteProtocolError, match="never written"):
        decode_state(msgpack.packb(raw), replica="me", schemas=SCHEMAS)


# ---------------------------------------------------------------- found later


def test_set_elements_refuse_booleans() -> None:
    """_orset.py keys entries by the element in a dict, where 1 == True and
    hash(1) == hash(True): adding 1 at one replica and True at another made
    one entry whose key was whichever arrived first, so two replicas with the
    same deltas encoded differently. Booleans are now refused as set elements,
    locally and on the wire."""
    a = _replica("plant-a")
    with pytest.raises(LocalProtocolError):
        a.add(TWIN, "tags", True, author="x")
    b = _replica("plant-b")
    b.add(TWIN, "tags", 1, author="x")
    wire = msgpack.unpackb(encode_state(b))
    wire[2][0][3][0][2][1][0][0] = True  # the element of the one set entry
    with pytest.raises(RemoteProtocolError):
        decode_state(msgpack.packb(wire), replica="c", schemas=SCHEMAS)


def test_snapshot_with_a_conflicting_header_is_refused_whole() -> None:
    """_state.py ReplicaState.merge: joining a peer's snapshot in which a twin
    has another home than ours raises LocalProtocolError (it is the peer's
    fault: RemoteProtocolError) — after the twins sorting before it were
    already merged, so the state is left half-joined."""
    ours = ReplicaState("plant-b", SCHEMAS)
    ours.create("z/9", MODEL, author="x")
    theirs = ReplicaState("plant-a", SCHEMAS)
    theirs.create("a/1", MODEL, author="x")
    theirs.create("z/9", MODEL, author="x")
    snapshot = decode_state(encode_state(theirs), replica="plant-b", schemas=SCHEMAS)
    before = state_digest(ours)
    with pytest.raises(RemoteProtocolError):
        ours.merge(snapshot)
    assert state_digest(ours) == before


def test_identifiers_with_lone_surrogates_are_refused() -> None:
    """_state.py create/append: entity ids and log event ids are plain str
    checks only; one holding a lone surrogate is accepted and every later
    ``encode_state`` of the replica raises UnicodeEncodeError."""
    state = _replica()
    with pytest.raises(LocalProtocolError):
        state.append(TWIN, "alerts", "\ud800", {"a": 1}, author="x")
    encode_state(state)
