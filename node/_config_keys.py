"""Unknown-key checks shared by every table of a node's config file.

A typo in a config (``fanuot = 3`` under ``[gossip]``) must be an error that
names the key path, not a default silently used. :data:`NODE_TABLES` is the
one place that says which top-level tables a node config may have; a package
that adds a table (``[cosim]``, ``[scoring]``, ``[webhook]``, ``[web]``,
``[commands]``) adds its name there and checks its own keys with
:func:`check_keys` (or its own typed reader that refuses unknown keys).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from twinmesh.crdt import LocalProtocolError

__all__ = ["NODE_TABLES", "ConfigError", "check_keys", "check_top_level"]

#: Top-level keys of a node config. ``telemetry`` and ``adapter`` are parsed in
#: ``node/telemetry/_settings.py``; every other table in ``node/_config.py``.
NODE_TABLES: frozenset[str] = frozenset(
    {
        "node",
        "api",
        "gossip",
        "tls",
        "auth",
        "peers",
        "telemetry",
        "adapter",
        "cosim",  # node/cosim/_settings.py
        "scoring",  # node/scoring/_config.py
        "webhook",  # node/workorders/_outbox.py
    }
)


class ConfigError(LocalProtocolError):
    """The configuration file is wrong; the reason names the key."""


def check_keys(table: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    """Refuse any key of ``table`` not in ``allowed``; ``where`` is the table's path.

    The message names the full key path (``gossip.fanuot``) and the keys that
    are known there, so the fix is obvious from the error alone.
    """
    known = set(allowed)
    unknown = sorted(str(k) for k in table if k not in known)
    if unknown:
        paths = ", ".join(f"{where}.{k}" if where else k for k in unknown)
        raise ConfigError(
            f"unknown key{'s' if len(unknown) > 1 else ''} {paths}"
            f" (known{' in [' + where + ']' if where else ''}: {', '.join(sorted(known))})"
        )


def check_top_level(raw: Mapping[str, Any], tables: Iterable[str] = NODE_TABLES) -> None:
    """Refuse a top-level key that is not one of the node's tables."""
    check_keys(raw, tables, "")
