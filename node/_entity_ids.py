"""The entity-id grammar: what ``POST /v1/entities`` accepts as an id.

    entity-id = site 1*15( "/" segment )          ; at most 256 characters
    site      = [a-z0-9] *62[a-z0-9-]             ; a node name: the entity's home
    segment   = [A-Za-z0-9] *63[A-Za-z0-9._-]

Examples: ``plant-a/line-1/pump-7``, ``plant-a/area-1/line-1/cell-1/pump-7``,
``central/reviews/2026-q1``. The first segment names the site, the node that is
the entity's home: a node creates entities at home, so ``plant-b/line-1/pump-8``
is refused at plant-a instead of becoming a plant-a twin that says plant-b.

Fleet-wide entities (home ``*``, owned by no node) and per-node bookkeeping
live under reserved names that begin with ``_`` — ``_models/<dtmi>`` for shared
DTDL models, ``plant-a/_audit`` for a node's audit log. The nodes create
those themselves; the API refuses them, as a segment may not begin with ``_``.
Segments are letters, digits, ``.``, ``_`` and ``-``: ids appear in URL paths,
MQTT topics and file names, so spaces, ``?``, ``#``, ``%`` and ``+`` are out.
"""

from __future__ import annotations

import re

from twinmesh.crdt import LocalProtocolError

__all__ = ["ENTITY_ID_PATTERN", "EntityIdError", "check_entity_id"]

MAX_ID = 256
MAX_SEGMENTS = 16
_SITE = r"[a-z0-9][a-z0-9-]{0,62}"
_SEGMENT = r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}"
#: The grammar as one regular expression (also in the OpenAPI document).
ENTITY_ID_PATTERN = rf"^{_SITE}(/{_SEGMENT}){{1,{MAX_SEGMENTS - 1}}}$"
_ID = re.compile(ENTITY_ID_PATTERN)
_SITE_RE = re.compile(rf"^{_SITE}$")
_SEGMENT_RE = re.compile(rf"^{_SEGMENT}$")


class EntityIdError(LocalProtocolError):
    """An id outside the grammar, or one naming another site; the reason says which."""


def _why_not(entity_id: str) -> str:
    if not entity_id:
        return "an entity id is not empty"
    if len(entity_id) > MAX_ID:
        return f"an entity id has at most {MAX_ID} characters, this one {len(entity_id)}"
    parts = entity_id.split("/")
    if parts[0].startswith("_"):
        return (
            f"ids beginning with '_' ({parts[0]}/...) are fleet-wide or node bookkeeping,"
            " created by the nodes themselves"
        )
    if not _SITE_RE.match(parts[0]):
        return (
            f"the site {parts[0]!r} is not a node name (a-z, 0-9, '-'; up to 63);"
            " an id is SITE/NAME..., e.g. plant-a/line-1/pump-7"
        )
    if len(parts) < 2:
        return "an entity id is SITE/NAME..., e.g. plant-a/line-1/pump-7: it has no '/'"
    if len(parts) > MAX_SEGMENTS:
        return f"an entity id has at most {MAX_SEGMENTS} '/'-separated segments"
    for part in parts[1:]:
        if not part:
            return "an entity id has no empty segment ('//' or a trailing '/')"
        if part.startswith("_"):
            return f"segment {part!r}: names beginning with '_' are reserved for the node"
        if not _SEGMENT_RE.match(part):
            return (
                f"segment {part!r} may hold only letters, digits, '.', '_' and '-',"
                " begins with a letter or digit, and has at most 64 characters"
            )
    return "it does not match " + ENTITY_ID_PATTERN  # pragma: no cover - the checks above cover it


def check_entity_id(entity_id: str, *, home: str) -> None:
    """Raise :class:`EntityIdError` unless ``entity_id`` may be created at node ``home``."""
    if not _ID.match(entity_id):
        raise EntityIdError(f"entity id {entity_id!r} refused: {_why_not(entity_id)}")
    site = entity_id.partition("/")[0]
    if site != home:
        raise EntityIdError(
            f"entity id {entity_id!r} names {site} as its site, but this node is {home}:"
            f" a node creates entities at home ({home}/...); create it at {site}"
        )
