"""Digital Twin Model Identifiers (DTMI).

Grammar (DTMI spec, "Formal ABNF"; DTDL v3, "Digital Twin Model Identifier")::

    dtmi      = "dtmi" ":" dtpath [ ";" dtver ]
    dtpath    = dtseg *( ":" dtseg )
    dtseg     = dtuserseg / dtsysseg
    dtuserseg = ALPHA [ *( ALPHA / DIGIT / "_" ) ( ALPHA / DIGIT ) ]
    dtsysseg  = "_" *( ALPHA / DIGIT / "_" ) ( ALPHA / DIGIT )
    dtver     = digitnz 0*8DIGIT [ "." digitnz 0*5DIGIT ]

A version is optional; when present it is ``major`` (1-9 digits, no leading
zero) or ``major.minor`` (minor 1-6 digits, no leading zero, so never ``.0``).
Equivalence is case-sensitive. Lengths: any DTMI at most 4096 characters, a
user DTMI at most 2048, an Interface's ``@id`` at most 128. Model documents
may only use *user* DTMIs (no segment starting with ``_``), and the prefixes
``dtmi:dtdl:`` and ``dtmi:standard:`` are reserved for the language.

Rather than one big regular expression we check piece by piece so a refusal
can say *which* piece is wrong.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "MAX_DTMI_LENGTH",
    "MAX_INTERFACE_DTMI_LENGTH",
    "MAX_USER_DTMI_LENGTH",
    "RESERVED_PREFIXES",
    "Dtmi",
    "dtmi_problem",
    "is_dtmi",
    "parse_dtmi",
]

MAX_DTMI_LENGTH = 4096
MAX_USER_DTMI_LENGTH = 2048
MAX_INTERFACE_DTMI_LENGTH = 128
RESERVED_PREFIXES = ("dtmi:dtdl:", "dtmi:standard:")

_USER_SEGMENT = re.compile(r"[A-Za-z](?:[A-Za-z0-9_]*[A-Za-z0-9])?\Z")
_SYSTEM_SEGMENT = re.compile(r"_[A-Za-z0-9_]*[A-Za-z0-9]\Z")
_MAJOR = re.compile(r"[1-9][0-9]{0,8}\Z")
_MINOR = re.compile(r"[1-9][0-9]{0,5}\Z")


@dataclass(frozen=True, slots=True, kw_only=True)
class Dtmi:
    """A parsed DTMI. ``str(dtmi)`` gives back the exact text."""

    segments: tuple[str, ...]
    major: int | None = None
    minor: int | None = None

    @property
    def path(self) -> str:
        """The identifier without its version: ``dtmi:twinmesh:plant:Pump``."""
        return "dtmi:" + ":".join(self.segments)

    @property
    def version(self) -> str | None:
        if self.major is None:
            return None
        return str(self.major) if self.minor is None else f"{self.major}.{self.minor}"

    @property
    def is_system(self) -> bool:
        return any(seg.startswith("_") for seg in self.segments)

    def version_key(self) -> tuple[int, int]:
        """Sort key for versions of one path; an unversioned DTMI sorts first."""
        return (self.major or 0, self.minor or 0)

    def __str__(self) -> str:
        version = self.version
        return self.path if version is None else f"{self.path};{version}"


def dtmi_problem(
    text: object,
    *,
    max_length: int = MAX_USER_DTMI_LENGTH,
    allow_system: bool = False,
    require_version: bool = False,
) -> str | None:
    """Why ``text`` is not an acceptable DTMI, or ``None`` if it is."""
    if not isinstance(text, str):
        return "a DTMI must be a string"
    if not text.startswith("dtmi:"):
        return "a DTMI starts with the scheme 'dtmi:' (lowercase)"
    if len(text) > max_length:
        return f"a DTMI here is at most {max_length} characters, this one has {len(text)}"
    body = text[5:]
    path, sep, version = body.partition(";")
    if not path:
        return "a DTMI needs at least one path segment after 'dtmi:'"
    for segment in path.split(":"):
        if _USER_SEGMENT.match(segment):
            continue
        if _SYSTEM_SEGMENT.match(segment):
            if not allow_system:
                return f"segment {segment!r} starts with '_' (system DTMI), not allowed in models"
            continue
        if not segment:
            return "a DTMI path segment is empty"
        return (
            f"segment {segment!r} must hold only letters, digits and '_', "
            "start with a letter and not end with '_'"
        )
    if not sep:
        return "a DTMI version (';1') is required here" if require_version else None
    major, dot, minor = version.partition(".")
    if not _MAJOR.match(major):
        return f"version {version!r}: the major version is 1 to 9 digits with no leading zero"
    if dot and not _MINOR.match(minor):
        return f"version {version!r}: the minor version is 1 to 6 digits with no leading zero"
    return None


def is_dtmi(text: object, *, allow_system: bool = False) -> bool:
    limit = MAX_DTMI_LENGTH if allow_system else MAX_USER_DTMI_LENGTH
    return dtmi_problem(text, max_length=limit, allow_system=allow_system) is None


def parse_dtmi(text: str, *, allow_system: bool = False) -> Dtmi:
    """Parse a DTMI; raise ``ValueError`` naming the broken rule if it is not one."""
    limit = MAX_DTMI_LENGTH if allow_system else MAX_USER_DTMI_LENGTH
    problem = dtmi_problem(text, max_length=limit, allow_system=allow_system)
    if problem is not None:
        raise ValueError(f"{text!r} is not a valid DTMI: {problem}")
    path, _, version = text[5:].partition(";")
    major: int | None = None
    minor: int | None = None
    if version:
        major_text, _, minor_text = version.partition(".")
        major = int(major_text)
        minor = int(minor_text) if minor_text else None
    return Dtmi(segments=tuple(path.split(":")), major=major, minor=minor)
