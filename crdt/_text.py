"""Collaborative text backed by pycrdt (the maintained Python binding of Yrs,
the Rust port of Yjs; YATA, Nicolaescu et al., GROUP 2016).

Our state is the Yrs document encoded as one v1 update; a delta is the update
an edit produced. Joining applies one update to the other. Yrs encodes a
document's structs client by client in a fixed order, so equal documents give
equal bytes whatever order the updates arrived in (checked by the property
tests) — which our digest relies on. Yrs buffers updates whose causal
predecessors are missing and integrates them when they arrive, so deltas may be
joined in any order.

Each twinmesh replica edits as a fixed Yrs client id derived from its replica
id, so the same replica always continues its own sequence.
"""

from __future__ import annotations

import hashlib
from typing import Any

import pycrdt

from ._errors import LocalProtocolError, RemoteProtocolError

__all__ = ["TextCrdt", "yrs_client_id"]

_ROOT = "text"
_EMPTY: bytes = pycrdt.Doc().get_update()


def _is_yrs_failure(exc: BaseException) -> bool:
    """pycrdt raises bare ValueError/RuntimeError kinds for bad updates, and a
    Rust panic inside Yrs (some malformed updates trigger one) surfaces as
    pyo3's ``PanicException``, which derives from BaseException, not Exception."""
    return isinstance(exc, Exception) or type(exc).__name__ == "PanicException"


def _with_pending(doc: pycrdt.Doc[Any], *updates: bytes) -> bytes:
    """``doc``'s canonical update, plus whatever of ``updates`` Yrs still holds back.

    Yrs buffers structs whose causal predecessors are missing (and deletions of
    items it has not seen) but ``get_update`` leaves that buffer out, so a delta
    joined ahead of its predecessors would silently vanish. The raw part the
    document has not integrated is the input's diff against the document's
    state vector beyond the document's own diff (which is only its delete set);
    keep it merged into the update until the predecessors arrive, after which
    the document integrates it and the update is canonical again.
    """
    integrated = doc.get_update()
    state = doc.get_state()
    rest = pycrdt.get_update(pycrdt.merge_updates(*updates), state)
    if rest == pycrdt.get_update(integrated, state):
        return integrated
    return pycrdt.merge_updates(integrated, rest)


def _canonical(update: bytes) -> tuple[bytes, pycrdt.Doc[Any]]:
    """``update`` re-encoded by a fresh document that integrates it at once.

    Yrs squashes adjacent runs of one client into one block only when they
    are integrated in the same transaction, so merging the same updates in a
    different order can leave an equal document split into different blocks:
    equal text, different bytes, different ``state_digest`` (found by the
    partition simulator: ``twinmesh sim swarm --seeds 1 --start 294``). A
    fresh document integrating the whole update in one transaction squashes
    every adjacent run, which depends on the document alone."""
    doc: pycrdt.Doc[Any] = pycrdt.Doc()
    doc.get(_ROOT, type=pycrdt.Text)
    doc.apply_update(update)
    return _with_pending(doc, update), doc


def yrs_client_id(replica: str) -> int:
    """A stable 52-bit Yrs client id for a replica (fits JavaScript's safe integers)."""
    digest = hashlib.blake2b(replica.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") >> 12


class TextCrdt:
    __slots__ = ("_doc", "_update")

    def __init__(self, update: bytes = b"") -> None:
        self._update = update or _EMPTY
        self._doc: pycrdt.Doc[Any] | None = None  # built lazily from _update

    @classmethod
    def checked(cls, update: bytes) -> TextCrdt:
        """Build from untrusted bytes: the update must apply to an empty document."""
        doc: pycrdt.Doc[Any] = pycrdt.Doc()
        doc.get(_ROOT, type=pycrdt.Text)
        try:
            doc.apply_update(update)
        except BaseException as exc:
            if not _is_yrs_failure(exc):
                raise
            raise RemoteProtocolError(f"text update does not decode: {exc}") from None
        return cls(update)

    @property
    def update(self) -> bytes:
        """The whole document as one canonical Yrs v1 update."""
        return self._update

    def _document(self, client_id: int | None = None) -> pycrdt.Doc[Any]:
        doc: pycrdt.Doc[Any] = (
            pycrdt.Doc(client_id=client_id) if client_id is not None else pycrdt.Doc()
        )
        doc.get(_ROOT, type=pycrdt.Text)
        if self._update:
            doc.apply_update(self._update)
        return doc

    def text(self) -> str:
        if self._doc is None:
            self._doc = self._document()
        return str(self._doc.get(_ROOT, type=pycrdt.Text))

    def _edit(self, replica: str, index: int, delete: int, insert: str) -> TextCrdt:
        doc = self._document(yrs_client_id(replica))
        text = doc.get(_ROOT, type=pycrdt.Text)
        current = str(text)
        length = len(current)
        if not 0 <= index <= length or delete < 0 or index + delete > length:
            raise LocalProtocolError(
                f"text edit at {index} deleting {delete} is outside a text of length {length}"
            )
        # Our indices count characters; pycrdt's count UTF-8 bytes.
        start = len(current[:index].encode())
        end = start + len(current[index : index + delete].encode())
        before = doc.get_state()
        with doc.transaction():
            if delete:
                del text[start:end]
            if insert:
                text.insert(start, insert)
        return TextCrdt(doc.get_update(before))

    def insert(self, index: int, content: str, *, replica: str) -> TextCrdt:
        return self._edit(replica, index, 0, content)

    def delete(self, index: int, length: int, *, replica: str) -> TextCrdt:
        return self._edit(replica, index, length, "")

    def replace(self, content: str, *, replica: str) -> TextCrdt:
        """A delta that replaces the whole text (what a simple form submit does)."""
        current = self.text()
        # Keep the common prefix and suffix so concurrent edits elsewhere survive.
        start = 0
        limit = min(len(current), len(content))
        while start < limit and current[start] == content[start]:
            start += 1
        end = 0
        while (
            end < limit - start
            and current[len(current) - 1 - end] == content[len(content) - 1 - end]
        ):
            end += 1
        return self._edit(
            replica, start, len(current) - start - end, content[start : len(content) - end]
        )

    def copy(self) -> TextCrdt:
        return TextCrdt(self._update)

    def merge(self, other: TextCrdt) -> None:
        # Always re-encode, even for equal or empty input: a delta's bytes are
        # not in canonical form until they have been through a document.
        try:
            doc = self._document()
            doc.apply_update(other._update)
            update, doc = _canonical(_with_pending(doc, self._update, other._update))
        except BaseException as exc:
            if not _is_yrs_failure(exc):
                raise
            raise RemoteProtocolError(f"text update does not decode: {exc}") from None
        self._update = update
        self._doc = doc

    def join(self, other: TextCrdt) -> TextCrdt:
        new = self.copy()
        new.merge(other)
        return new

    def __eq__(self, other: object) -> bool:
        if isinstance(other, TextCrdt):
            return self._update == other._update
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TextCrdt({self.text()!r})"
