"""The documented limits of DTDL v3, in one place.

Values and where they come from (DTDL.v3.md unless noted):

* Interface text at most 1 MiB ("Interface"), not counting extended
  Interfaces or Component schemas even when inline.
* At most 100,000 elements in an Interface's ``contents`` hierarchy,
  counting everything under it (requests, responses, schemas, fields, enum
  values, map values, relationship properties) and what ``extends`` imports.
* ``extends``: at most 1024 Interfaces in the hierarchy, at most 10 levels.
* Complex schemas nest at most 5 levels ("Complex schema").
* ``name``: at most 64 characters, ``^[A-Za-z](?:[A-Za-z0-9_]*[A-Za-z0-9])?$``.
* ``displayName`` at most 64 characters; ``description`` and ``comment`` at
  most 512; ``@context`` entries at most 2048.
* DTMIs: 128 for an Interface ``@id``, 2048 for other elements (``_dtmi``).

A limit extension (the way DTDL's own "Onvif" extension raises limits) or a
test can pass a different :class:`Limits` to the parser.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["NAME_PATTERN", "V3_LIMITS", "Limits"]

#: ``name`` of every named element: starts with a letter, ends alphanumeric.
NAME_PATTERN = re.compile(r"[A-Za-z](?:[A-Za-z0-9_]*[A-Za-z0-9])?\Z")


@dataclass(frozen=True, slots=True, kw_only=True)
class Limits:
    max_interface_bytes: int = 1024 * 1024
    max_elements: int = 100_000
    max_extends_count: int = 1024
    max_extends_depth: int = 10
    max_schema_depth: int = 5
    max_name_length: int = 64
    max_display_name_length: int = 64
    max_description_length: int = 512
    max_comment_length: int = 512
    max_context_length: int = 2048
    max_interface_id_length: int = 128
    max_element_id_length: int = 2048


V3_LIMITS = Limits()
