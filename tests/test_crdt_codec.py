"""The wire and disk codec: canonical round trips, and untrusted input refused cleanly.

Round trips: decode(encode(x)) equals x and re-encodes to the same bytes, for
replica states and delta batches from random workloads.

Fuzzing: random bytes, mutated valid encodings (bit flips, truncation,
splices, insertions), random msgpack structures of the right general shape,
and a structured sweep that puts a wrong type or size at every position of
valid messages. The only exception allowed out of ``decode_state`` /
``decode_deltas`` — and out of ``apply`` for whatever decoded — is
``RemoteProtocolError``: a peer's bad bytes must never crash a node.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterator
from functools import cache
from typing import Any

import msgpack
import pytest
from crdt_strategies import (
    ENTITY_IDS,
    MODEL,
    SCHEMAS,
    Simulation,
    Workload,
    scaled,
    workloads,
)
from hypothesis import given
from hypothesis import strategies as st

from twinmesh.crdt import (
    DELTAS_VERSION,
    FORMAT_VERSION,
    CausalContext,
    DecodeLimits,
    Delta,
    RemoteProtocolError,
    ReplicaState,
    decode_deltas,
    decode_state,
    encode_deltas,
    encode_state,
)
from twinmesh.crdt._codec import encode_deltas_v1

# ---------------------------------------------------------------- corpus


@cache
def _corpus() -> tuple[ReplicaState, tuple[Delta, ...]]:
    """A small state touching every field kind and encoding feature: a conflict,
    a context with a dot cloud, set removes, counter decrements, text edits
    from two replicas, a log, a label and reported state — and its deltas."""
    a, b = ReplicaState("plant-a", SCHEMAS), ReplicaState("plant-b", SCHEMAS)
    twin = ENTITY_IDS[0]
    log = [a.create(twin, MODEL, author="setup")]
    b.apply(log[0])
    log += [
        a.write(twin, "owner", "alice", author="ann", now_ms=10),
        a.write(twin, "owner", "alina", author="ann", now_ms=11, context=CausalContext()),
        b.write(twin, "vibration_limit", 4.5, author="bo", now_ms=12),
        b.write(twin, "value", {"k": [1, None, b"\x01"], "f": -0.5}, author="bo", now_ms=13),
        a.write(twin, "serial", "SN-1", author="plc", now_ms=14),
        b.write(twin, "label", "P-7", author="bo", now_ms=15),
        a.add(twin, "tags", "seal", author="ann"),
        b.add(twin, "tags", 7, author="bo"),
        b.remove(twin, "tags", 7, author="bo"),
        a.increment(twin, "starts", 5, author="plc"),
        b.increment(twin, "starts", -2, author="plc"),
        a.edit_text(twin, "notes", index=0, insert="check seal", author="ann"),
        a.append(twin, "alerts", "plant-a-1", {"severity": "high", "score": 93}, author="det"),
    ]
    for d in log[1:]:
        (b if d.origin == "plant-a" else a).apply(d)
    log.append(b.edit_text(twin, "notes", index=6, delete=4, insert="bearing", author="bo"))
    a.apply(log[-1])
    return a, tuple(log)


def _populated() -> ReplicaState:
    return _corpus()[0].copy("central")


def _valid_state() -> bytes:
    data: bytes = encode_state(_corpus()[0])
    return data


def _valid_batch() -> bytes:
    data: bytes = encode_deltas(list(_corpus()[1]))
    return data


def _refused_or_decoded(decode: Callable[[bytes], Any], data: Any) -> Any | None:
    """Decode, allowing only RemoteProtocolError (with a reason) to escape."""
    try:
        return decode(data)
    except RemoteProtocolError as exc:
        assert exc.reason
        return None
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # a Rust panic is a BaseException, not an Exception
        raise AssertionError(f"decoder raised {type(exc).__name__}: {exc}") from exc


def _decode_state(data: bytes) -> ReplicaState:
    return decode_state(data, replica="me", schemas=SCHEMAS)


def _check_decoded_state(state: ReplicaState | None) -> None:
    """Whatever a decoder accepts is a state it can re-encode stably."""
    if state is None:
        return
    again = encode_state(state)
    assert encode_state(_decode_state(again)) == again


def _check_decoded_batch(deltas: list[Delta] | None) -> None:
    """Whatever decodes either applies or is refused by the rules — on an empty
    replica and on one holding the same twin — never anything else."""
    if deltas is None:
        return
    again = encode_deltas(deltas)
    assert encode_deltas(decode_deltas(again)) == again
    for target in (ReplicaState("me", SCHEMAS), _populated()):
        _check_batch_apply(target, deltas)
        for delta in deltas:
            _refused_or_decoded(target.apply, delta)
        encode_state(target)


def _check_batch_apply(target: ReplicaState, deltas: list[Delta]) -> None:
    """``apply_many`` (the batch check with its per-batch memos) takes a batch
    exactly when every delta passes ``check`` against the state before it and
    the batch gives each entity one header; refused, it changes nothing;
    taken, it ends where joining the deltas one by one ends."""
    before = encode_state(target)
    batch = target.copy()
    accepted = _refused_or_decoded(lambda ds: batch.apply_many(ds) or True, deltas) is not None
    headers: dict[str, tuple[str, str]] = {}
    expected = True
    for d in deltas:
        if _refused_or_decoded(lambda x: target.check(x) or True, d) is None:
            expected = False
        if headers.setdefault(d.entity, (d.model, d.home)) != (d.model, d.home):
            expected = False
    assert accepted == expected
    if not accepted:
        assert encode_state(batch) == before  # never half-applied
        return
    one_by_one = target.copy()
    for d in deltas:
        one_by_one.apply(d)
    assert encode_state(batch) == encode_state(one_by_one)


def _probe(data: bytes) -> None:
    _check_decoded_state(_refused_or_decoded(_decode_state, data))
    _check_decoded_batch(_refused_or_decoded(decode_deltas, data))


# ---------------------------------------------------------------- round trips


@scaled(0.75)
@given(workloads())
def test_states_round_trip_to_equal_states_and_equal_bytes(workload: Workload) -> None:
    """encode_state is canonical and decode_state its exact inverse, for every
    replica's state mid-workload (conflicts, clouds, pending text and all)."""
    sim = Simulation(workload.replicas).run(workload.ops)
    for replica in sim.replicas:
        data = encode_state(replica)
        decoded = _decode_state(data)
        assert decoded.same_state(replica)
        assert encode_state(decoded) == data


@scaled(0.75)
@given(workloads(), st.integers(0, 2**32 - 1))
def test_delta_batches_round_trip_to_equal_deltas_and_equal_bytes(
    workload: Workload, seed: int
) -> None:
    """Any batch of deltas, in any order, decodes to equal deltas (interned
    strings restored) and re-encodes to the same bytes."""
    sim = Simulation(workload.replicas).run(workload.ops)
    rng = random.Random(seed)
    batch = [d for d in sim.log if rng.random() < 0.7]
    rng.shuffle(batch)
    data = encode_deltas(batch)
    decoded = decode_deltas(data)
    assert decoded == batch
    assert encode_deltas(decoded) == data


def test_field_delta_with_its_dot_is_small_on_the_wire() -> None:
    """The interning claim in the codec's docstring: in a batch, a shared-field
    delta costs well under 64 bytes once the strings are in the table."""
    a = ReplicaState("plant-a", SCHEMAS)
    a.create(ENTITY_IDS[0], MODEL, author="x")
    deltas = [
        a.write(ENTITY_IDS[0], "owner", "alice", author="x", now_ms=1_780_000_000_000 + n)
        for n in range(50)
    ]
    one, many = len(encode_deltas(deltas[:1])), len(encode_deltas(deltas))
    assert (many - one) / 49 < 64


# ---------------------------------------------------------------- byte fuzzing


@given(st.binary(max_size=300))
def test_random_bytes_are_refused_cleanly(data: bytes) -> None:
    """Noise is refused with RemoteProtocolError by both decoders."""
    _probe(data)


def test_non_bytes_and_oversized_input_are_refused() -> None:
    """Wrong Python types and messages beyond the limits never reach msgpack."""
    bads: list[Any] = [None, "twinmesh/state", 5, [b"x"]]
    for bad in bads:
        with pytest.raises(RemoteProtocolError):
            decode_state(bad, replica="me", schemas=SCHEMAS)
        with pytest.raises(RemoteProtocolError):
            decode_deltas(bad)
    with pytest.raises(RemoteProtocolError, match="exceeds"):
        decode_deltas(_valid_batch(), limits=DecodeLimits(max_bytes=64))
    with pytest.raises(RemoteProtocolError):
        decode_deltas(_valid_batch(), limits=DecodeLimits(max_items=3))
    with pytest.raises(RemoteProtocolError):
        decode_state(
            _valid_state(), replica="me", schemas=SCHEMAS, limits=DecodeLimits(max_string=4)
        )
    with pytest.raises(RemoteProtocolError, match="larger than"):
        decode_state(
            _valid_state(), replica="me", schemas=SCHEMAS, limits=DecodeLimits(max_value_bytes=4)
        )
    with pytest.raises(RemoteProtocolError, match="format version"):
        decode_deltas(msgpack.packb(["twinmesh/deltas", DELTAS_VERSION + 1, [], []]))
    with pytest.raises(RemoteProtocolError, match="format version"):
        decode_deltas(msgpack.packb(["twinmesh/deltas", 0, [], []]))
    # Arrays nested 5,000 deep (written by hand: msgpack's packer refuses to),
    # in both formats' framing.
    deep = b"\x91" * 5_000 + b"\x90"
    for version in (FORMAT_VERSION, DELTAS_VERSION):
        parts: list[Any] = ["twinmesh/deltas", version, []]
        header = b"".join(msgpack.packb(x) for x in parts)
        with pytest.raises(RemoteProtocolError):
            decode_deltas(b"\x94" + header + b"\x91" + deep)
        with pytest.raises(RemoteProtocolError):
            decode_deltas(b"\x94" + header + b"\x91\x9b\x00" + b"\x00" * 9 + deep)
    # A format-2 batch beyond max_items in an inner array.
    with pytest.raises(RemoteProtocolError):
        decode_deltas(_valid_batch(), limits=DecodeLimits(max_items=1))


@scaled(0.5)
@given(workloads(), st.integers(0, 2**32 - 1))
def test_format_1_batches_still_decode_to_the_same_deltas(workload: Workload, seed: int) -> None:
    """Stores and relayed signed batches from before format 2 hold format-1
    bodies: they decode to exactly the deltas format 2 carries."""
    sim = Simulation(workload.replicas).run(workload.ops)
    rng = random.Random(seed)
    batch = [d for d in sim.log if rng.random() < 0.7]
    old, new = encode_deltas_v1(batch), encode_deltas(batch)
    assert old != new or not batch
    assert decode_deltas(old) == decode_deltas(new) == batch


def test_format_2_written_with_a_longer_header_is_still_format_2() -> None:
    """A peer's encoder may spell the header differently (str8 tag, array16):
    the batch is decoded by what it says, not by its first bytes."""
    top = msgpack.unpackb(_valid_batch(), raw=False)
    tag = b"\xd9" + bytes([len(top[0])]) + top[0].encode()
    body = b"".join(msgpack.packb(x, use_bin_type=True) for x in top[1:])
    odd = b"\xdc\x00\x04" + tag + body
    assert odd != _valid_batch()
    assert decode_deltas(odd) == decode_deltas(_valid_batch())


MUTATIONS = st.sampled_from(("flip", "truncate", "splice", "insert", "repeat", "overwrite"))


def _mutate(data: bytes, other: bytes, how: str, rng: random.Random) -> bytes:
    buf = bytearray(data)
    if not buf:  # truncated to nothing already
        return bytes([rng.randrange(256)])
    at = rng.randrange(len(buf))
    if how == "flip":
        for _ in range(rng.randint(1, 4)):
            buf[rng.randrange(len(buf))] ^= 1 << rng.randrange(8)
    elif how == "truncate":
        del buf[at:]
    elif how == "splice":
        buf = buf[:at] + other[rng.randrange(len(other)) :]
    elif how == "insert":
        buf[at:at] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
    elif how == "repeat":
        end = min(len(buf), at + rng.randint(1, 16))
        buf[at:at] = buf[at:end]
    else:
        buf[at] = rng.choice((0x00, 0x7F, 0xC0, 0xC1, 0xC2, 0xC3, 0xCF, 0xD3, 0xDD, 0xFF))
    return bytes(buf)


@scaled(3)
@given(st.booleans(), MUTATIONS, st.integers(0, 2**32 - 1))
def test_mutated_valid_encodings_are_refused_or_decode_consistently(
    state_first: bool, how: str, seed: int
) -> None:
    """Valid messages with bits flipped, cut short, spliced with the other kind
    of message, grown or overwritten: refused, or decoded into something that
    re-encodes stably and that ``apply`` accepts or refuses by the rules."""
    rng = random.Random(seed)
    a, b = (_valid_state(), _valid_batch()) if state_first else (_valid_batch(), _valid_state())
    data = a
    for _ in range(rng.randint(1, 3)):
        data = _mutate(data, b, how, rng)
    _probe(data)


# ---------------------------------------------------------------- structure fuzzing

NAMES = st.sampled_from(
    (
        "",
        "plant-a",
        "plant-b",
        MODEL,
        ENTITY_IDS[0],
        "owner",
        "tags",
        "notes",
        "serial",
        "starts",
        "label",
        "alerts",
        "value",
        "lifecycle",
        "dtmi:x;1",
    )
)
ATOMS = st.one_of(
    st.none(),
    st.booleans(),
    NAMES,
    st.binary(max_size=6),
    st.integers(-2, 8),
    st.sampled_from((2**32 + 1, 2**63, 2**64 - 1, -(2**63))),
    st.floats(allow_nan=True, allow_infinity=True),
)
SHAPES = st.recursive(ATOMS, lambda inner: st.lists(inner, max_size=7), max_leaves=40)


@given(st.lists(SHAPES, max_size=4))
def test_random_state_shaped_msgpack_is_refused_cleanly(entities: list[Any]) -> None:
    """Well-formed msgpack with the state's header and random nested content."""
    _probe(msgpack.packb(["twinmesh/state", FORMAT_VERSION, entities], use_bin_type=True))


@given(st.lists(NAMES, max_size=8), st.lists(st.lists(SHAPES, min_size=5, max_size=8), max_size=4))
def test_random_delta_shaped_msgpack_is_refused_cleanly(
    strings: list[str], rows: list[list[Any]]
) -> None:
    """Well-formed msgpack with a batch header, a string table and 5- to 8-item
    rows of random content, so decoding gets past the framing."""
    for row in rows:
        for i in range(min(5, len(row))):
            if isinstance(row[i], str):
                row[i] = 0
    data = msgpack.packb(["twinmesh/deltas", FORMAT_VERSION, strings, rows], use_bin_type=True)
    _probe(data)


@given(
    st.lists(NAMES, max_size=8),
    st.lists(
        st.tuples(st.integers(0, 8), st.lists(SHAPES, min_size=4, max_size=11)),
        max_size=4,
    ),
)
def test_random_format_2_shaped_msgpack_is_refused_cleanly(
    strings: list[str], rows: list[tuple[int, list[Any]]]
) -> None:
    """Format 2's framing and row tags (one out of range) with random content,
    so the typed decoder and the checks after it both see it."""
    body = [[code, *items] for code, items in rows]
    for row in body:
        for i in range(1, min(7, len(row))):
            if isinstance(row[i], str):
                row[i] = 0
    _probe(msgpack.packb(["twinmesh/deltas", DELTAS_VERSION, strings, body], use_bin_type=True))


WRONG_VALUES: tuple[Any, ...] = (
    None,
    True,
    False,
    -1,
    0,
    1,
    7,
    2**63,
    2**64 - 1,
    1.5,
    math.nan,
    math.inf,
    "",
    "x",
    "dtmi:nope;1",
    b"",
    b"\x00\x01",
    [],
    [0],
    [[]],
    ["x", 1],
    {},
    {"a": 1},
)


def _positions(obj: Any, path: tuple[int, ...] = ()) -> Iterator[tuple[int, ...]]:
    yield path
    if isinstance(obj, list):
        for i, item in enumerate(obj):
            yield from _positions(item, (*path, i))
    elif isinstance(obj, dict):
        for i, key in enumerate(obj):
            yield from _positions(obj[key], (*path, i))


def _replace(obj: Any, path: tuple[int, ...], new: Any) -> Any:
    """A copy of ``obj`` with the node at ``path`` replaced by ``new``."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(obj, list):
        return [(_replace(x, rest, new) if i == head else x) for i, x in enumerate(obj)]
    return {k: (_replace(v, rest, new) if i == head else v) for i, (k, v) in enumerate(obj.items())}


def _variants(node: Any) -> Iterator[Any]:
    """Wrong types and sizes to put in ``node``'s place."""
    yield from WRONG_VALUES
    if isinstance(node, list):
        yield node[:-1]
        yield [*node, node[-1] if node else 0]
        yield [node]
    if isinstance(node, bytes):
        yield node[: len(node) // 2]


def _sweep(data: bytes) -> int:
    top = msgpack.unpackb(data, raw=False, strict_map_key=False)
    count = 0
    for path in _positions(top):
        node = top
        for i in path:
            node = node[i] if isinstance(node, list) else list(node.values())[i]
        for variant in _variants(node):
            mutated = _replace(top, path, variant)
            _probe(msgpack.packb(mutated, use_bin_type=True))
            count += 1
    return count


@pytest.mark.parametrize("which", ["state", "deltas"])
def test_every_position_of_a_valid_message_tolerates_a_wrong_type_or_size(which: str) -> None:
    """The structured sweep: for every node of a valid message (every header
    item, name, counter, context, sibling, value, text update), substitute each
    of a set of wrong types and sizes, plus shortened, lengthened and wrapped
    arrays — each variant is refused or decodes to something consistent."""
    data = _valid_state() if which == "state" else _valid_batch()
    assert _sweep(data) > 500


@scaled(1)
@given(st.booleans(), st.data())
def test_random_positions_of_valid_messages_with_random_content(
    state_first: bool, data: st.DataObject
) -> None:
    """Like the sweep, but the substitute is any random msgpack shape, at up to
    three positions at once."""
    raw = _valid_state() if state_first else _valid_batch()
    top = msgpack.unpackb(raw, raw=False)
    paths = list(_positions(top))
    for _ in range(data.draw(st.integers(1, 3), label="edits")):
        path = data.draw(st.sampled_from(paths), label="path")
        value = data.draw(SHAPES, label="value")
        top = _replace(top, path, value)
        paths = list(_positions(top))
    _probe(msgpack.packb(top, use_bin_type=True))
