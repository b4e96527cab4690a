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
        except Exception as exc:  # pycrdt raises several exception kinds
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
        length = len(str(text))
        if not 0 <= index <= length or delete < 0 or index + delete > length:
            raise LocalProtocolError(
                f"text edit at {index} deleting {delete} is outside a text of length {length}"
            )
        before = doc.get_state()
        with doc.transaction():
            if delete:
                del text[index : index + delete]
            if insert:
                text.insert(index, insert)
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
        doc = self._document()
        try:
            doc.apply_update(other._update)
        except Exception as exc:  # pycrdt raises bare ValueError/RuntimeError kinds
            raise RemoteProtocolError(f"text update does not decode: {exc}") from None
        self._update = doc.get_update()
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
