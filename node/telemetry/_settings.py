"""The ``[telemetry]`` and ``[[adapter]]`` parts of a node's config file.

Example (``twinmesh plant simulate`` writes the mapping and asset files)::

    [telemetry]
    buffer = "telemetry.sqlite"        # under node.data_dir unless absolute
    assets = "plant/assets.toml"       # [[asset]] entity, model, sample_interval
    raw_days = 7                       # raw samples; aggregates live longer
    stale_factor = 3.0                 # STALE after 3 x sample_interval of silence

    [[telemetry.asset]]                # assets may also be listed inline
    entity = "plant-a/line-1/motor-1"
    model = "dtmi:twinmesh:plant:Motor;1"
    sample_interval = 0.5

    [[adapter]]
    kind = "mqtt"
    name = "uns"
    host = "127.0.0.1"
    port = 1883
    client_id = "twinmesh-plant-a"     # the broker keys our persistent session by it
    mapping = "plant/mqtt-mapping.toml"

    [[adapter]]
    kind = "opcua"
    name = "line-1"
    url = "opc.tcp://127.0.0.1:4840/twinmesh/plant-a/"
    mapping = "plant/opcua-mapping.toml"

Every key is checked here, at start-up, with the key path in the message: a
typo (``sample_intervall``) is an error rather than a default silently used.
Secrets are never inline: ``password_file`` names a file. Mapping files are
loaded (and validated) now too, so a node never starts half-configured.
"""

from __future__ import annotations

import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from twinmesh.adapters import MappingError, TopicMapping, load_node_bindings, load_topic_mapping

from ._buffer import Retention
from ._quality import QualityConfig

__all__ = [
    "AdapterSpec",
    "AssetSpec",
    "TelemetryConfigError",
    "TelemetrySettings",
    "load_assets",
    "parse_telemetry",
]


class TelemetryConfigError(ValueError):
    """A telemetry or adapter setting is wrong; the message names the key."""


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetSpec:
    """A twin this node is home for, and how often its tags report."""

    entity: str
    model: str  # DTMI, version included
    #: Seconds between samples of each tag in normal operation; enables STALE events.
    sample_interval: float | None = None
    #: Telemetry that may legitimately hold one value (setpoints, states): no STUCK check.
    steady: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True, kw_only=True)
class AdapterSpec:
    """One configured adapter; ``config`` is an MqttConfig or OpcUaConfig."""

    kind: Literal["mqtt", "opcua"]
    name: str
    config: Any


@dataclass(frozen=True, slots=True, kw_only=True)
class TelemetrySettings:
    buffer: Path
    retention: Retention = field(default_factory=Retention)
    quality: QualityConfig = field(default_factory=QualityConfig)
    synchronous: Literal["FULL", "NORMAL"] = "FULL"
    assets: tuple[AssetSpec, ...] = ()
    adapters: tuple[AdapterSpec, ...] = ()
    #: Seconds between retention/aggregation passes over the buffer.
    compact_interval: float = 300.0
    #: Create the twin of every asset that does not exist yet (this node is its home).
    create_twins: bool = True


class _Table:
    """Typed, path-named access to one TOML table; unknown keys are errors."""

    def __init__(self, raw: Any, where: str) -> None:
        if not isinstance(raw, dict):
            raise TelemetryConfigError(f"{where}: expected a table, found {type(raw).__name__}")
        self.raw: dict[str, Any] = raw
        self.where = where
        self.used: set[str] = set()

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        self.used.add(key)
        if key not in self.raw:
            if default is ...:
                raise TelemetryConfigError(f"{self.where}.{key}: required")
            return default
        value = self.raw[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = " or ".join(k.__name__ for k in kinds)
            raise TelemetryConfigError(f"{self.where}.{key}: expected {names}, found {value!r}")
        return value

    def number(self, key: str, default: float, *, low: float, high: float) -> float:
        value = float(self.get(key, float, default))
        if not low <= value <= high:
            raise TelemetryConfigError(f"{self.where}.{key}: expected {low}..{high}, found {value}")
        return value

    def done(self) -> None:
        unknown = sorted(set(self.raw) - self.used)
        if unknown:
            raise TelemetryConfigError(f"{self.where}: unknown key(s) {', '.join(unknown)}")


def _asset(raw: Any, where: str) -> AssetSpec:
    t = _Table(raw, where)
    interval = t.get("sample_interval", float, None)
    if interval is not None and not 0 < interval <= 86400:
        raise TelemetryConfigError(
            f"{where}.sample_interval: expected 0..86400 seconds, found {interval}"
        )
    steady = t.get("steady", list, [])
    if not all(isinstance(s, str) for s in steady):
        raise TelemetryConfigError(f"{where}.steady: expected an array of telemetry names")
    spec = AssetSpec(
        entity=t.get("entity", str),
        model=t.get("model", str),
        sample_interval=interval,
        steady=tuple(steady),
    )
    # Written by `twinmesh plant simulate`, informational here.
    t.get("kind", str, "")
    t.get("protocol", str, "")
    t.done()
    return spec


def load_assets(path: Path) -> tuple[AssetSpec, ...]:
    """The ``[[asset]]`` tables of an assets file (TOML)."""
    try:
        raw = tomllib.loads(path.read_text())
    except OSError as exc:
        raise TelemetryConfigError(f"{path}: cannot read: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise TelemetryConfigError(f"{path}: not valid TOML: {exc}") from None
    assets = raw.get("asset", [])
    if not isinstance(assets, list):
        raise TelemetryConfigError(f"{path}: expected [[asset]] tables")
    return tuple(_asset(a, f"{path.name}: asset[{i}]") for i, a in enumerate(assets))


def _read_secret(path: Path, where: str) -> str:
    try:
        return path.read_text().strip()
    except OSError as exc:
        raise TelemetryConfigError(f"{where}: cannot read {path}: {exc.strerror}") from None


def _mqtt(t: _Table, name: str, rel: Callable[[str], Path]) -> Any:
    from twinmesh.adapters.mqtt import MqttConfig, MqttTls

    mapping_path = t.get("mapping", str, None)
    try:
        mapping = load_topic_mapping(rel(mapping_path)) if mapping_path else TopicMapping()
    except (MappingError, OSError) as exc:
        raise TelemetryConfigError(f"{t.where}.mapping: {exc}") from None
    password_file = t.get("password_file", str, None)
    tls = None
    if t.get("tls", bool, False):
        ca, cert, key = (t.get(k, str, None) for k in ("tls_ca", "tls_cert", "tls_key"))
        tls = MqttTls(
            ca_file=str(rel(ca)) if ca else None,
            cert_file=str(rel(cert)) if cert else None,
            key_file=str(rel(key)) if key else None,
        )
    protocol = t.get("protocol", str, "3.1.1")
    if protocol not in ("3.1.1", "5"):
        raise TelemetryConfigError(f"{t.where}.protocol: expected '3.1.1' or '5'")
    qos = int(t.number("qos", 1, low=0, high=1))
    port = int(t.number("port", 8883 if tls else 1883, low=1, high=65535))
    return MqttConfig(
        host=t.get("host", str),
        port=port,
        client_id=t.get("client_id", str, f"twinmesh-{name}"),
        username=t.get("username", str, None),
        password=_read_secret(rel(password_file), t.where) if password_file else None,
        tls=tls,
        protocol=protocol,  # type: ignore[arg-type]
        qos=qos,  # type: ignore[arg-type]
        mapping=mapping,
        keepalive=int(t.number("keepalive", 30, low=5, high=3600)),
        max_batch=int(t.number("max_batch", 1000, low=1, high=100_000)),
    )


def _opcua(t: _Table, rel: Callable[[str], Path]) -> Any:
    from twinmesh.adapters.opcua import OpcUaConfig, OpcUaSecurity

    try:
        mapping = load_node_bindings(rel(t.get("mapping", str)))
    except (MappingError, OSError) as exc:
        raise TelemetryConfigError(f"{t.where}.mapping: {exc}") from None
    url = t.get("url", str)
    if not url.startswith("opc.tcp://"):
        raise TelemetryConfigError(f"{t.where}.url: expected opc.tcp://HOST:PORT/..., found {url}")
    policy = t.get("security_policy", str, "None")
    security = None
    if policy != "None":
        if policy not in ("Basic256Sha256", "Aes128Sha256RsaOaep", "Aes256Sha256RsaPss"):
            raise TelemetryConfigError(f"{t.where}.security_policy: unknown policy {policy!r}")
        mode = t.get("security_mode", str, "SignAndEncrypt")
        if mode not in ("SignAndEncrypt", "Sign"):
            raise TelemetryConfigError(f"{t.where}.security_mode: expected SignAndEncrypt or Sign")
        server_cert = t.get("server_certificate", str, None)
        security = OpcUaSecurity(
            certificate=str(rel(t.get("certificate", str))),
            private_key=str(rel(t.get("private_key", str))),
            application_uri=t.get("application_uri", str),
            policy=policy,  # type: ignore[arg-type]
            mode=mode,  # type: ignore[arg-type]
            server_certificate=str(rel(server_cert)) if server_cert else None,
        )
    password_file = t.get("password_file", str, None)
    return OpcUaConfig(
        url=url,
        mapping=mapping,
        security=security,
        username=t.get("username", str, None),
        password=_read_secret(rel(password_file), t.where) if password_file else None,
        timeout=t.number("timeout", 4.0, low=0.1, high=300),
    )


def _adapter(raw: Any, where: str, rel: Callable[[str], Path]) -> AdapterSpec:
    t = _Table(raw, where)
    kind = t.get("kind", str)
    name = t.get("name", str, kind)
    if kind == "mqtt":
        config = _mqtt(t, name, rel)
    elif kind == "opcua":
        config = _opcua(t, rel)
    else:
        raise TelemetryConfigError(f"{where}.kind: expected 'mqtt' or 'opcua', found {kind!r}")
    t.done()
    return AdapterSpec(kind=kind, name=name, config=config)


def parse_telemetry(
    raw: Mapping[str, Any], *, rel: Callable[[str], Path], data_dir: Path
) -> TelemetrySettings | None:
    """Settings from a whole node config document; None when it has neither part."""
    if "telemetry" not in raw and "adapter" not in raw:
        return None
    t = _Table(raw.get("telemetry", {}), "telemetry")
    buffer = Path(t.get("buffer", str, "telemetry.sqlite"))
    assets: list[AssetSpec] = []
    assets_file = t.get("assets", str, None)
    if assets_file:
        assets += load_assets(rel(assets_file))
    inline = t.get("asset", list, [])
    assets += [_asset(a, f"telemetry.asset[{i}]") for i, a in enumerate(inline)]
    seen: set[str] = set()
    for a in assets:
        if a.entity in seen:
            raise TelemetryConfigError(f"telemetry: asset {a.entity} is listed twice")
        seen.add(a.entity)
    synchronous = t.get("synchronous", str, "FULL")
    if synchronous not in ("FULL", "NORMAL"):
        raise TelemetryConfigError("telemetry.synchronous: expected 'FULL' or 'NORMAL'")
    retention = Retention(
        raw_days=t.number("raw_days", 7.0, low=0.0, high=36500),
        minute_days=t.number("minute_days", 90.0, low=0.0, high=36500),
        hour_days=t.number("hour_days", 3650.0, low=0.0, high=36500),
    )
    quality = QualityConfig(
        future_tolerance=t.number("future_tolerance", 5.0, low=0.0, high=86400),
        stale_factor=t.number("stale_factor", 3.0, low=1.0, high=1000),
        stuck_count=int(t.number("stuck_count", 10, low=2, high=1_000_000)),
        stuck_window=t.number("stuck_window", 60.0, low=0.0, high=86400 * 30),
    )
    compact_interval = t.number("compact_interval", 300.0, low=0.1, high=86400)
    create_twins = t.get("create_twins", bool, True)
    t.done()
    adapters_raw = raw.get("adapter", [])
    if not isinstance(adapters_raw, list):
        raise TelemetryConfigError("adapter: expected an array of tables [[adapter]]")
    adapters = [_adapter(a, f"adapter[{i}]", rel) for i, a in enumerate(adapters_raw)]
    names = [a.name for a in adapters]
    for n in names:
        if names.count(n) > 1:
            raise TelemetryConfigError(f"adapter: two adapters are named {n!r}")
    return TelemetrySettings(
        buffer=buffer if buffer.is_absolute() else data_dir / buffer,
        retention=retention,
        quality=quality,
        synchronous=synchronous,
        assets=tuple(assets),
        adapters=tuple(adapters),
        compact_interval=compact_interval,
        create_twins=create_twins,
    )
