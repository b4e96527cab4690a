"""Anti-entropy messages: frozen dataclasses with a versioned msgpack encoding.

Three message kinds carry the push-pull exchange (ARCHITECTURE.md, "Sync
protocol"):

1. ``Digest``: "here is what I have" (a version vector) plus a 16-byte hash
   of the sender's member set.
2. ``Deltas``: the signed batches the other side lacks, optionally with the
   sender's own vector so the receiver can answer with what *it* has that
   the sender lacks (the third step), and ``more`` when a byte limit cut the
   backlog into chunks.
3. ``Snapshot``: the whole state, for a peer behind the compaction horizon,
   with ``proofs``: origin-signed batches that bound what the state may claim
   (each origin's latest batch, and the batch behind each reported value;
   ``_engine`` says what they prove and what a relay is still trusted for).

Membership travels the way the data does: a summary every time, the full
thing only when the summaries differ. Version 1 put every member's
credential (~115 bytes each) in every digest, which at 50 plants was most
of every message and most of the bytes per write; the exchange of a short
fingerprint before the full set is the digest idea of van Renesse et al.,
"Efficient reconciliation and flow control for anti-entropy protocols"
(LADIS 2008), applied to the member set. ``members_hash`` is BLAKE2b-128
over the canonical (sorted) list of fleet-vouched credentials — addresses
and last-contact times are per-node hints, left out so that nodes that
route to a peer differently (a proxy, a NAT) still agree. A message that
carries a member list also carries the hash of exactly that list; a list
that names a replica twice or does not match its hash is refused.

Vectors travel the same way (version 4): a digest, or the vector in a
reply, may hold only the entries that changed since the sender last told
this receiver (``partial``), with ``total`` — the sum of the whole vector mod
2**64 — so the receiver can tell whether its merged copy is the whole thing
(copies only lag, so equal sums mean equal vectors) and, if not, ask for a
whole one with ``resync``. Snapshots always carry whole vectors.

``decode_message`` checks every field; anything malformed raises
``RemoteProtocolError`` with a reason.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import msgpack

from twinmesh.crdt import RemoteProtocolError, VersionVector

from ._identity import MemberCredential

__all__ = [
    "BATCH_TAG",
    "Deltas",
    "Digest",
    "MemberInfo",
    "Message",
    "SignedBatch",
    "Snapshot",
    "decode_message",
    "encode_message",
    "members_hash",
    "open_batch",
    "seal_batch_bytes",
    "vector_total",
]

SYNC_TAG = "twinmesh/sync"
BATCH_TAG = "twinmesh/batch"
# 2: digests carry a member-set hash; lists only when the hashes differ.
# 3: snapshots carry origin-signed proofs.
# 4: vectors in digests and replies may be partial: only the entries that
#    changed since the sender last told this peer, with the full vector's
#    total as a checksum; ``resync`` asks the peer for its full vector.
VERSION = 4
# Signed batches did not change with the messages around them: version 1
# batches persisted by a node (or relayed by an older one) stay valid.
BATCH_VERSION = 1
MEMBERS_TAG = "twinmesh/members"
MEMBERS_HASH_BYTES = 16
MAX_NAME = 256
TOTAL_MASK = 2**64 - 1
_U63 = 2**63 - 1


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedBatch:
    """Deltas ``first..last`` of ``origin``, as the origin signed them.

    ``origin``, ``first`` and ``last`` are an unsigned claim, for routing; the
    receiver checks it against the signed ``blob`` (a claim wider than what
    was signed is an inflated version vector and is refused).
    """

    origin: str
    first: int
    last: int
    blob: bytes
    signature: bytes

    @property
    def count(self) -> int:
        return self.last - self.first + 1


@dataclass(frozen=True, slots=True, kw_only=True)
class MemberInfo:
    credential: MemberCredential
    address: str
    last_contact: float  # sender's clock, seconds; informational


@dataclass(frozen=True, slots=True, kw_only=True)
class Digest:
    sender: str
    vv: VersionVector
    # True: ``vv`` holds only the entries that changed since the sender last
    # told this receiver its vector; ``total`` is the sum of the full vector.
    partial: bool = False
    total: int | None = None
    # "Your last partial vector did not add up here: send me your full one."
    resync: bool = False
    # The sender's member set, hashed (``members_hash``); None: not told.
    members_hash: bytes | None = None
    # The full set, sent when the receiver's hash was different or unknown.
    members: tuple[MemberInfo, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class Deltas:
    sender: str
    batches: tuple[SignedBatch, ...]
    digest: VersionVector | None = None  # set: "and here is mine, send me what I lack"
    more: bool = False  # the backlog did not fit; ask again
    members_hash: bytes | None = None  # as in Digest
    members: tuple[MemberInfo, ...] = ()  # as in Digest
    partial: bool = False  # as in Digest, for ``digest``
    total: int | None = None  # as in Digest, for ``digest``
    resync: bool = False  # as in Digest


@dataclass(frozen=True, slots=True, kw_only=True)
class Snapshot:
    sender: str
    vv: VersionVector
    state: bytes  # twinmesh.crdt.encode_state
    digest: VersionVector | None = None
    proofs: tuple[SignedBatch, ...] = ()  # origin-signed batches vouching for vv and reported state


Message = Digest | Deltas | Snapshot


def members_hash(credentials: Iterable[MemberCredential]) -> bytes:
    """The fingerprint of a member set: equal sets, equal hashes, on every node.

    Order-independent (sorted by replica); a set naming one replica twice has
    no canonical form and is the caller's error."""
    ordered = sorted(credentials, key=lambda c: c.replica)
    canonical = [[c.replica, c.public_key, c.fleet_signature] for c in ordered]
    packed = msgpack.packb([MEMBERS_TAG, 1, canonical], use_bin_type=True)
    return hashlib.blake2b(packed, digest_size=MEMBERS_HASH_BYTES).digest()


def seal_batch_bytes(origin: str, first: int, count: int, payload: bytes) -> bytes:
    """The bytes an origin signs for a batch of its deltas."""
    return msgpack.packb(  # type: ignore[no-any-return]
        [BATCH_TAG, BATCH_VERSION, origin, first, count, payload], use_bin_type=True
    )


def open_batch(blob: bytes) -> tuple[str, int, int, bytes]:
    """(origin, first, count, encoded deltas) from a signed blob."""
    try:
        items = msgpack.unpackb(blob, raw=False, max_ext_len=0)
    except Exception as exc:
        raise RemoteProtocolError(f"batch does not decode: {exc}") from None
    if not (isinstance(items, list) and len(items) == 6 and items[0] == BATCH_TAG):
        raise RemoteProtocolError("batch: not a twinmesh batch")
    if items[1] != BATCH_VERSION:
        raise RemoteProtocolError(f"batch: version {items[1]!r} not supported")
    origin, first, count, payload = items[2:]
    _name(origin, "batch.origin")
    _int(first, "batch.first", lo=1)
    _int(count, "batch.count", lo=1)
    if not isinstance(payload, bytes):
        raise RemoteProtocolError("batch.payload: expected bytes")
    return origin, first, count, payload


# ------------------------------------------------------------------ encoding


def _vv_out(vv: VersionVector) -> list[Any]:
    return [x for pair in vv.items_sorted() for x in pair]


def _claim_out(message: Digest | Deltas) -> list[Any]:
    """[partial, total, resync]: how to read the message's vector."""
    total = message.total
    if total is None:
        vv = message.vv if isinstance(message, Digest) else message.digest
        total = 0 if vv is None else vector_total(vv)
    return [message.partial, total, message.resync]


def vector_total(vv: VersionVector) -> int:
    """The checksum a partial vector is sent with: the full vector's sum, mod 2**64.

    A receiver's copy of a peer's vector only ever lags the true one entry by
    entry (vectors grow; it merges what it was told), so equal sums mean
    equal vectors: a lost or reordered partial vector shows as a smaller sum."""
    return sum(vv.values()) & TOTAL_MASK


def _member_out(m: MemberInfo) -> list[Any]:
    c = m.credential
    return [c.replica, c.public_key, c.fleet_signature, m.address, m.last_contact]


def _hash_out(message: Digest | Deltas) -> bytes | None:
    # A list without a hash gets the hash of that list: what a receiver checks.
    if message.members_hash is None and message.members:
        return members_hash(m.credential for m in message.members)
    return message.members_hash


def encode_message(message: Message) -> bytes:
    body: list[Any]
    if isinstance(message, Digest):
        body = [
            "digest",
            message.sender,
            _vv_out(message.vv),
            _hash_out(message),
            [_member_out(m) for m in message.members],
            _claim_out(message),
        ]
    elif isinstance(message, Deltas):
        body = [
            "deltas",
            message.sender,
            [[b.origin, b.first, b.last, b.blob, b.signature] for b in message.batches],
            None if message.digest is None else _vv_out(message.digest),
            message.more,
            _hash_out(message),
            [_member_out(m) for m in message.members],
            _claim_out(message),
        ]
    else:
        body = [
            "snapshot",
            message.sender,
            _vv_out(message.vv),
            message.state,
            None if message.digest is None else _vv_out(message.digest),
            [[b.origin, b.first, b.last, b.blob, b.signature] for b in message.proofs],
        ]
    return msgpack.packb([SYNC_TAG, VERSION, *body], use_bin_type=True)  # type: ignore[no-any-return]


# ------------------------------------------------------------------ decoding


def _fail(reason: str) -> RemoteProtocolError:
    return RemoteProtocolError(reason)


def _name(obj: Any, where: str) -> str:
    if not isinstance(obj, str) or not obj or len(obj) > MAX_NAME:
        raise _fail(f"{where}: expected a name of 1..{MAX_NAME} characters")
    return obj


def _int(obj: Any, where: str, *, lo: int = 0, hi: int = _U63) -> int:
    if not isinstance(obj, int) or isinstance(obj, bool) or not lo <= obj <= hi:
        raise _fail(f"{where}: expected an integer in {lo}..{hi}, got {obj!r}")
    return obj


def _bytes(obj: Any, where: str, *, size: int | None = None) -> bytes:
    if not isinstance(obj, bytes) or (size is not None and len(obj) != size):
        want = "bytes" if size is None else f"{size} bytes"
        raise _fail(f"{where}: expected {want}")
    return obj


def _array(obj: Any, where: str, length: int | None = None) -> list[Any]:
    if not isinstance(obj, list) or (length is not None and len(obj) != length):
        want = "an array" if length is None else f"an array of {length}"
        raise _fail(f"{where}: expected {want}")
    return obj


def _vv_in(obj: Any, where: str) -> VersionVector:
    flat = _array(obj, where)
    if len(flat) % 2:
        raise _fail(f"{where}: odd number of items")
    # Every message carries a vector with an entry per member: check them in
    # bulk (type() is, so bool is no int) and fall back to the entry-by-entry
    # walk below only to name what is wrong.
    names = flat[0::2]
    counts = flat[1::2]
    if (
        all(type(r) is str and 0 < len(r) <= MAX_NAME for r in names)
        and all(type(n) is int and 0 < n <= _U63 for n in counts)
        and len(set(names)) == len(names)
    ):
        return VersionVector(dict(zip(names, counts, strict=True)))
    entries: dict[str, int] = {}
    for i in range(0, len(flat), 2):
        r = _name(flat[i], f"{where}[{i}]")
        if r in entries:
            raise _fail(f"{where}: replica {r} appears twice")
        entries[r] = _int(flat[i + 1], f"{where}[{i + 1}]", lo=1)
    return VersionVector(entries)


def _member_in(obj: Any, where: str) -> MemberInfo:
    replica, key, sig, address, last = _array(obj, where, 5)
    if not isinstance(last, int | float) or isinstance(last, bool):
        raise _fail(f"{where}.last_contact: expected a number")
    if not isinstance(address, str) or len(address) > 1024:
        raise _fail(f"{where}.address: expected a string")
    return MemberInfo(
        credential=MemberCredential(
            replica=_name(replica, f"{where}.replica"),
            public_key=_bytes(key, f"{where}.public_key", size=32),
            fleet_signature=_bytes(sig, f"{where}.fleet_signature", size=64),
        ),
        address=address,
        last_contact=float(last),
    )


def _members_in(hash_raw: Any, members_raw: Any) -> tuple[bytes | None, tuple[MemberInfo, ...]]:
    """The (hash, list) pair of a Digest or Deltas, checked against each other."""
    claimed = (
        None if hash_raw is None else _bytes(hash_raw, "members_hash", size=MEMBERS_HASH_BYTES)
    )
    members = tuple(
        _member_in(m, f"members[{i}]") for i, m in enumerate(_array(members_raw, "members"))
    )
    if members:
        names = {m.credential.replica for m in members}
        if len(names) != len(members):
            raise _fail("members: a replica appears twice in the list")
        if claimed is None:
            raise _fail("members: a member list without its members_hash")
        if members_hash(m.credential for m in members) != claimed:
            raise _fail("members: the list does not match its members_hash")
    return claimed, members


def _claim_in(raw: Any, where: str) -> tuple[bool, int, bool]:
    partial, total, resync = _array(raw, where, 3)
    if not isinstance(partial, bool) or not isinstance(resync, bool):
        raise _fail(f"{where}: partial and resync must be booleans")
    return partial, _int(total, f"{where}.total", hi=TOTAL_MASK), resync


def _batch_in(raw: Any, i: int) -> SignedBatch:
    # The common case in one expression (type() is: bool is no int); the
    # checks one by one, with a reason, only when something is off.
    if type(raw) is list and len(raw) == 5:
        origin, first, last, blob, sig = raw
        if (
            type(origin) is str
            and 0 < len(origin) <= MAX_NAME
            and type(first) is int
            and type(last) is int
            and 1 <= first <= last <= _U63
            and type(blob) is bytes
            and type(sig) is bytes
            and len(sig) == 64
        ):
            return SignedBatch(origin=origin, first=first, last=last, blob=blob, signature=sig)
    w = f"batches[{i}]"
    origin, first, last, blob, sig = _array(raw, w, 5)
    first_n = _int(first, f"{w}.first", lo=1)
    last_n = _int(last, f"{w}.last", lo=first_n)
    return SignedBatch(
        origin=_name(origin, f"{w}.origin"),
        first=first_n,
        last=last_n,
        blob=_bytes(blob, f"{w}.blob"),
        signature=_bytes(sig, f"{w}.signature", size=64),
    )


def decode_message(data: bytes, *, max_bytes: int = 8 * 1024 * 1024) -> Message:
    """Parse one message from untrusted bytes, or raise ``RemoteProtocolError``."""
    if not isinstance(data, bytes | bytearray | memoryview):
        raise _fail("expected bytes")
    if len(data) > max_bytes:
        raise _fail(f"message of {len(data)} bytes exceeds the limit of {max_bytes}")
    try:
        items = msgpack.unpackb(
            data,
            raw=False,
            max_ext_len=0,
            max_str_len=64 * 1024,
            max_array_len=1_000_000,
            max_map_len=0,
        )
    except Exception as exc:
        raise _fail(f"not valid msgpack: {type(exc).__name__}: {exc}") from None
    if not isinstance(items, list) or len(items) < 4 or items[0] != SYNC_TAG:
        raise _fail("not a twinmesh sync message")
    if items[1] != VERSION:
        raise _fail(f"sync message version {items[1]!r} not supported (we speak {VERSION})")
    kind, sender = items[2], _name(items[3], "sender")
    rest = items[4:]
    if kind == "digest":
        vv_raw, hash_raw, members_raw, claim_raw = _array(rest, "digest", 4)
        vv = _vv_in(vv_raw, "vv")
        claimed, members = _members_in(hash_raw, members_raw)
        partial, total, resync = _claim_in(claim_raw, "digest.claim")
        return Digest(
            sender=sender,
            vv=vv,
            members_hash=claimed,
            members=members,
            partial=partial,
            total=total,
            resync=resync,
        )
    if kind == "deltas":
        batches_raw, digest_raw, more, hash_raw, members_raw, claim_raw = _array(rest, "deltas", 6)
        batches = [_batch_in(raw, i) for i, raw in enumerate(_array(batches_raw, "batches"))]
        if not isinstance(more, bool):
            raise _fail("deltas.more: expected a boolean")
        digest = None if digest_raw is None else _vv_in(digest_raw, "digest")
        claimed, members = _members_in(hash_raw, members_raw)
        partial, total, resync = _claim_in(claim_raw, "deltas.claim")
        return Deltas(
            sender=sender,
            batches=tuple(batches),
            digest=digest,
            more=more,
            members_hash=claimed,
            members=members,
            partial=partial,
            total=total,
            resync=resync,
        )
    if kind == "snapshot":
        vv_raw, state, digest_raw, proofs_raw = _array(rest, "snapshot", 4)
        digest = None if digest_raw is None else _vv_in(digest_raw, "digest")
        proofs = [_batch_in(raw, i) for i, raw in enumerate(_array(proofs_raw, "proofs"))]
        return Snapshot(
            sender=sender,
            vv=_vv_in(vv_raw, "vv"),
            state=_bytes(state, "snapshot.state"),
            digest=digest,
            proofs=tuple(proofs),
        )
    raise _fail(f"unknown sync message kind {kind!r}")
