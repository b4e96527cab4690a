"""Node configuration, read from TOML and checked field by field.

Example (``twinmesh fleet up`` writes these)::

    [node]
    name = "plant-a"
    role = "plant"                 # or "central"
    data_dir = "plant-a/data"
    # clock_offset = 3600.0        # seconds added to the system clock (skew tests)

    [api]
    listen = "127.0.0.1:8401"

    [gossip]
    listen = "127.0.0.1:9401"
    interval = 1.0
    fanout = 2

    [tls]                          # the fleet CA and this node's certificate
    ca = "ca/ca.pem"
    cert = "ca/nodes/plant-a/cert.pem"
    key = "ca/nodes/plant-a/key.pem"
    signing = "ca/nodes/plant-a"   # Ed25519 gossip signing identity

    [auth]
    token_secret_file = "ca/token-secret"

    [[peers]]
    name = "plant-b"
    url = "https://127.0.0.1:9402"

Relative paths are relative to the config file. A plant node that ingests
telemetry adds ``[telemetry]`` and ``[[adapter]]`` tables, described in
``twinmesh.node.telemetry._settings``.

Every key is checked: an unknown table or key is an error naming its path
(``gossip.fanuot``), not a default silently used. The allowed tables are
``NODE_TABLES`` (``_config_keys.py``); a new table adds its name there and
checks its own keys with ``check_keys``.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ._config_keys import NODE_TABLES, ConfigError, check_keys, check_top_level
from .cosim._settings import CosimConfigError, CosimSettings, parse_cosim
from .telemetry._settings import TelemetryConfigError, TelemetrySettings, parse_telemetry

__all__ = ["NODE_TABLES", "ConfigError", "NodeConfig", "PeerConfig", "check_keys", "load_config"]

_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")

#: The keys each table parsed here may hold (NODE_TABLES lists the tables).
_KEYS: dict[str, frozenset[str]] = {
    "node": frozenset({"name", "role", "data_dir", "models", "max_body_bytes", "clock_offset"}),
    "api": frozenset({"listen"}),
    "gossip": frozenset({"listen", "interval", "fanout", "evict_after"}),
    "tls": frozenset({"ca", "cert", "key", "signing"}),
    "auth": frozenset({"token_secret_file"}),
}
_PEER_KEYS = frozenset({"name", "url"})


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerConfig:
    name: str
    url: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeConfig:
    name: str
    role: str
    data_dir: Path
    api_host: str
    api_port: int
    gossip_host: str
    gossip_port: int
    gossip_interval: float
    fanout: int
    ca: Path
    cert: Path
    key: Path
    signing_dir: Path
    token_secret_file: Path
    peers: tuple[PeerConfig, ...]
    models: tuple[Path, ...] = ()
    max_body_bytes: int = 4 * 1024 * 1024
    evict_after: float = 7 * 24 * 3600.0
    telemetry: TelemetrySettings | None = None  # [telemetry] and [[adapter]]; None: no ingest
    # Seconds added to the system clock for everything this node stamps (HLC
    # writes, tokens, gossip timers): the one way to run a skewed replica on a
    # machine whose clock all processes share (chaos clock faults).
    clock_offset: float = 0.0
    cosim: CosimSettings | None = None  # [cosim]; None: no co-simulation
    scoring: Any = None  # [scoring]: node.scoring._config (EngineConfig); None: defaults
    webhook: Any = None  # [webhook]: node.workorders._outbox (WebhookSettings); None: no outbox

    @property
    def gossip_url(self) -> str:
        return f"https://{self.gossip_host}:{self.gossip_port}"


def _get(table: dict[str, Any], key: str, kind: type, where: str, default: Any = ...) -> Any:
    if key not in table:
        if default is ...:
            raise ConfigError(f"{where}.{key}: required")
        return default
    value = table[key]
    if kind is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ConfigError(f"{where}.{key}: expected {kind.__name__}, found {value!r}")
    return value


def _listen(text: str, where: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"{where}: expected HOST:PORT, found {text!r}")
    return host, int(port)


def load_config(path: Path) -> NodeConfig:
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: not valid TOML: {exc}") from None
    base = path.parent

    def rel(p: str) -> Path:
        q = Path(p)
        return q if q.is_absolute() else (base / q).resolve()

    def table(name: str) -> dict[str, Any]:
        t = raw.get(name, {})
        if not isinstance(t, dict):
            raise ConfigError(f"[{name}] must be a table")
        check_keys(t, _KEYS[name], name)
        return t

    try:
        return _parse(raw, path, rel, table)
    except ConfigError as exc:
        if exc.reason.startswith(f"{path}:"):
            raise
        raise ConfigError(f"{path}: {exc.reason}") from None


def _parse(raw: dict[str, Any], path: Path, rel: Any, table: Any) -> NodeConfig:
    check_top_level(raw)

    node, api, gossip, tls, auth = (table(n) for n in ("node", "api", "gossip", "tls", "auth"))
    name = _get(node, "name", str, "node")
    if not _NAME.match(name):
        raise ConfigError(f"node.name: {name!r} is not a valid node name (a-z, 0-9, '-')")
    role = _get(node, "role", str, "node", "plant")
    if role not in ("plant", "central"):
        raise ConfigError(f"node.role: expected 'plant' or 'central', found {role!r}")
    api_host, api_port = _listen(_get(api, "listen", str, "api", "127.0.0.1:8400"), "api.listen")
    g_host, g_port = _listen(_get(gossip, "listen", str, "gossip"), "gossip.listen")
    interval = _get(gossip, "interval", float, "gossip", 1.0)
    if not 0.01 <= interval <= 3600:
        raise ConfigError(f"gossip.interval: expected 0.01..3600 seconds, found {interval}")
    fanout = _get(gossip, "fanout", int, "gossip", 2)
    if not 1 <= fanout <= 64:
        raise ConfigError(f"gossip.fanout: expected 1..64, found {fanout}")
    peers_raw = raw.get("peers", [])
    if not isinstance(peers_raw, list):
        raise ConfigError("peers: expected an array of tables [[peers]]")
    peers = []
    for i, p in enumerate(peers_raw):
        if not isinstance(p, dict):
            raise ConfigError(f"peers[{i}]: expected a table")
        check_keys(p, _PEER_KEYS, f"peers[{i}]")
        pname = _get(p, "name", str, f"peers[{i}]")
        url = _get(p, "url", str, f"peers[{i}]")
        if not url.startswith("https://"):
            raise ConfigError(
                f"peers[{i}].url: gossip is mutual TLS; expected https://, found {url!r}"
            )
        peers.append(PeerConfig(name=pname, url=url))
    models = node.get("models", [])
    if not isinstance(models, list) or not all(isinstance(m, str) for m in models):
        raise ConfigError("node.models: expected an array of paths")
    data_dir = rel(_get(node, "data_dir", str, "node"))
    clock_offset = _get(node, "clock_offset", float, "node", 0.0)
    if not -366 * 86400 <= clock_offset <= 366 * 86400:
        raise ConfigError(
            f"node.clock_offset: expected -1..1 year in seconds, found {clock_offset}"
        )
    try:
        telemetry = parse_telemetry(raw, rel=rel, data_dir=data_dir)
    except TelemetryConfigError as exc:
        raise ConfigError(str(exc)) from None
    try:
        cosim = parse_cosim(raw, rel=rel, data_dir=data_dir)
    except CosimConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    from .scoring._config import parse_scoring_tables

    try:
        scoring, webhook = parse_scoring_tables(raw)
    except ValueError as exc:
        raise ConfigError(f"{path}: {exc}") from None
    return NodeConfig(
        name=name,
        role=role,
        data_dir=data_dir,
        api_host=api_host,
        api_port=api_port,
        gossip_host=g_host,
        gossip_port=g_port,
        gossip_interval=interval,
        fanout=fanout,
        ca=rel(_get(tls, "ca", str, "tls")),
        cert=rel(_get(tls, "cert", str, "tls")),
        key=rel(_get(tls, "key", str, "tls")),
        signing_dir=rel(_get(tls, "signing", str, "tls")),
        token_secret_file=rel(_get(auth, "token_secret_file", str, "auth")),
        peers=tuple(peers),
        models=tuple(rel(m) for m in models),
        max_body_bytes=_get(node, "max_body_bytes", int, "node", 4 * 1024 * 1024),
        evict_after=_get(gossip, "evict_after", float, "gossip", 7 * 24 * 3600.0),
        telemetry=telemetry,
        clock_offset=clock_offset,
        cosim=cosim,
        scoring=scoring,
        webhook=webhook,
    )
