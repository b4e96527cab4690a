"""Parsing the human units scenario files use: durations, rates, byte sizes.

Scenario files are read by people and, later, by the real-network harness,
so values are written the way an operator would say them ("40ms", "2h",
"1/30s", "512KiB") rather than as simulator floats.
"""

from __future__ import annotations

import re

__all__ = ["UnitError", "parse_bytes", "parse_duration", "parse_rate"]


class UnitError(ValueError):
    """``expected`` says what would have been accepted."""

    def __init__(self, expected: str) -> None:
        super().__init__(expected)
        self.expected = expected


_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "min": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|min|s|m|h|d)")
_DURATION_RE = re.compile(r"^\s*([+-]?)\s*((?:\d+(?:\.\d+)?\s*(?:ms|min|s|m|h|d)\s*)+)$")
_DURATION_HELP = 'a duration such as "150ms", "30s", "10m", "2h30m" or "3d", or a number of seconds'


def parse_duration(value: object, *, signed: bool = False) -> float:
    """Seconds from ``"40ms"``, ``"2h30m"``, ``"-30m"`` (when ``signed``) or a number."""
    if isinstance(value, bool):
        raise UnitError(_DURATION_HELP)
    if isinstance(value, int | float):
        seconds = float(value)
    elif isinstance(value, str):
        match = _DURATION_RE.match(value)
        if not match:
            raise UnitError(_DURATION_HELP)
        seconds = sum(
            float(n) * _DURATION_UNITS[unit] for n, unit in _DURATION_PART.findall(match.group(2))
        )
        if match.group(1) == "-":
            seconds = -seconds
    else:
        raise UnitError(_DURATION_HELP)
    if seconds < 0 and not signed:
        raise UnitError("a duration of zero or more")
    return seconds


_RATE_HELP = 'a rate such as "2/min", "1/30s", "10/h" or a number per second'


def parse_rate(value: object) -> float:
    """Events per second from ``"2/min"``, ``"1/30s"`` or a number."""
    if isinstance(value, bool):
        raise UnitError(_RATE_HELP)
    if isinstance(value, int | float):
        rate = float(value)
    elif isinstance(value, str) and "/" in value:
        count, _, per = value.partition("/")
        per = per.strip()
        try:
            n = float(count)
        except ValueError:
            raise UnitError(_RATE_HELP) from None
        if per in ("s", "sec"):
            span = 1.0
        elif per == "min":
            span = 60.0
        elif per == "h":
            span = 3600.0
        elif per == "d":
            span = 86400.0
        else:
            try:
                span = parse_duration(per)
            except UnitError:
                raise UnitError(_RATE_HELP) from None
        if span <= 0:
            raise UnitError(_RATE_HELP)
        rate = n / span
    else:
        raise UnitError(_RATE_HELP)
    if rate < 0:
        raise UnitError("a rate of zero or more")
    return rate


_BYTES_UNITS = {
    "": 1,
    "b": 1,
    "kb": 1000,
    "kib": 1024,
    "mb": 1000**2,
    "mib": 1024**2,
    "gb": 1000**3,
    "gib": 1024**3,
}
_BYTES_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?i?[bB]?)\s*(/s)?\s*$")
_BYTES_HELP = 'a size such as 65536, "64KiB" or "10MB" (rates: "10MB/s")'


def parse_bytes(value: object, *, per_second: bool = False) -> float:
    if isinstance(value, bool):
        raise UnitError(_BYTES_HELP)
    if isinstance(value, int | float):
        size = float(value)
    elif isinstance(value, str):
        match = _BYTES_RE.match(value)
        if not match or (match.group(3) and not per_second):
            raise UnitError(_BYTES_HELP)
        size = float(match.group(1)) * _BYTES_UNITS[match.group(2).lower()]
    else:
        raise UnitError(_BYTES_HELP)
    if size <= 0:
        raise UnitError("a size greater than zero")
    return size
