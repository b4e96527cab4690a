"""``plant.toml``: the synthetic plant's layout, physics parameters and fault schedule.

Every key is checked at load time. An error names the key path
(``asset[2].fault[0].telemetry``) and says what was expected and what was
found; an unknown key is an error, not a silently ignored typo. See the
shipped ``plant.toml`` for a commented example of every setting.

Layout::

    [plant]    site, area, seed, sample_interval, time_scale, ambient_temperature, out
    [opcua]    endpoint, security, certificate, private_key, application_uri,
               history, history_count
    [mqtt]     host, port, client_id, username, password_file, tls, tls_ca,
               tls_cert, tls_key, tls_check_hostname, keepalive, queue_limit,
               inflight, publish_timeout
    [[asset]]  name, kind, line, area, cell, model, protocol, sample_interval
      [asset.params]   physics parameters of the kind (MotorParams, PumpParams, CncParams)
      [[asset.fault]]  id, kind, start, duration, ramp, telemetry, severity, offset

Times in ``[[asset.fault]]`` are simulated seconds since the start (equal to
wall seconds unless ``time_scale`` is set); ``sample_interval`` is wall
seconds between readings of each tag.
"""

from __future__ import annotations

import dataclasses
import math
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlsplit

from ._faults import FAULT_KINDS, Fault
from ._models import DEFAULT_MODELS, kind_telemetry
from ._physics import CncParams, MotorParams, PumpParams

__all__ = [
    "AssetConfig",
    "MqttSettings",
    "OpcUaSettings",
    "PlantConfig",
    "PlantConfigError",
    "load_config",
    "parse_config",
]

Protocol = Literal["opcua", "mqtt"]
MachineParams = MotorParams | PumpParams | CncParams

_PARAMS: Mapping[str, type[MachineParams]] = {
    "motor": MotorParams,
    "pump": PumpParams,
    "cnc": CncParams,
}
#: Motors and CNC machines have PLCs with OPC UA servers; pumps are retrofitted
#: with wireless sensors that publish to the plant's MQTT broker.
_DEFAULT_PROTOCOL: Mapping[str, Protocol] = {"motor": "opcua", "pump": "mqtt", "cnc": "opcua"}
# One level of a twin path and of an MQTT topic: no '/', no MQTT wildcards.
_LEVEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
_SECURITY = ("None", "Basic256Sha256_SignAndEncrypt")
# Parameters that divide something or set a time scale: zero is meaningless.
_POSITIVE = re.compile(
    r"(period|time_constant|correlation|response|rated_|supply_frequency|poles|"
    r"wear_limit|taylor_|tool_diameter|max_speed|vanes|flutes|balls)"
)
_RATIOS = ("magnetising_current", "bearing_ratio", "rated_slip", "constant_loss_share")


class PlantConfigError(ValueError):
    """``plant.toml`` is wrong; ``key`` is the path of the offending key."""

    def __init__(self, key: str, message: str) -> None:
        super().__init__(f"{key}: {message}")
        self.key = key
        self.message = message


@dataclass(frozen=True, slots=True, kw_only=True)
class OpcUaSettings:
    endpoint: str = "opc.tcp://127.0.0.1:4840/twinmesh/plant/"
    security: Literal["None", "Basic256Sha256_SignAndEncrypt"] = "None"
    certificate: Path | None = None  # server application instance certificate (DER/PEM)
    private_key: Path | None = None  # PEM
    application_uri: str = "urn:twinmesh:plant:simulator"
    history: bool = False  # historize every variable (HistoryRead), kept in the out dir
    history_count: int = 3600  # values kept per variable; 0 keeps everything

    @property
    def host(self) -> str:
        return urlsplit(self.endpoint).hostname or "0.0.0.0"

    @property
    def port(self) -> int:
        return urlsplit(self.endpoint).port or 4840


@dataclass(frozen=True, slots=True, kw_only=True)
class MqttSettings:
    host: str = "127.0.0.1"
    port: int = 1883
    client_id: str = "twinmesh-plant-simulator"
    username: str | None = None
    password: str | None = None  # read from password_file
    tls: bool = False
    tls_ca: Path | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_check_hostname: bool = True
    keepalive: int = 30
    #: Readings held while the broker is unreachable (device store-and-forward);
    #: beyond it the oldest are dropped and counted.
    queue_limit: int = 100_000
    inflight: int = 20  # QoS 1 publishes awaiting PUBACK at once (mosquitto's default)
    publish_timeout: float = 10.0  # s to wait for a PUBACK before reconnecting


@dataclass(frozen=True, slots=True, kw_only=True)
class AssetConfig:
    name: str  # unique in the plant; the OPC UA object and the UNS asset level
    kind: Literal["motor", "pump", "cnc"]
    site: str
    area: str
    line: str
    cell: str
    model: str  # DTMI
    protocol: Protocol
    sample_interval: float  # wall seconds between readings of each tag
    params: MachineParams
    faults: tuple[Fault, ...] = ()

    @property
    def entity(self) -> str:
        """The twin id: ``site/line/asset`` (ARCHITECTURE.md, "Data model")."""
        return f"{self.site}/{self.line}/{self.name}"

    @property
    def topic_prefix(self) -> str:
        """Unified namespace ``site/area/line/cell/asset``; tags are the next level."""
        return f"{self.site}/{self.area}/{self.line}/{self.cell}/{self.name}"

    @property
    def telemetry(self) -> tuple[str, ...]:
        return tuple(kind_telemetry(self.kind))


@dataclass(frozen=True, slots=True, kw_only=True)
class PlantConfig:
    site: str
    area: str = "area-1"
    seed: int = 0
    sample_interval: float = 0.5
    time_scale: float = 1.0  # simulated seconds per wall second
    ambient_temperature: float = 25.0  # °C
    out: Path
    opcua: OpcUaSettings = dataclasses.field(default_factory=OpcUaSettings)
    mqtt: MqttSettings = dataclasses.field(default_factory=MqttSettings)
    assets: tuple[AssetConfig, ...]
    source: Path | None = None  # the file it was loaded from

    @property
    def namespace_uri(self) -> str:
        return f"urn:twinmesh:plant:{self.site}"

    def with_overrides(self, *, out: Path | None = None, seed: int | None = None) -> PlantConfig:
        changes: dict[str, Any] = {}
        if out is not None:
            changes["out"] = out
        if seed is not None:
            changes["seed"] = seed
        return dataclasses.replace(self, **changes)

    def assets_on(self, protocol: str) -> tuple[AssetConfig, ...]:
        return tuple(a for a in self.assets if a.protocol == protocol)


# -- typed, path-named access --------------------------------------------------------------


def _describe(value: Any) -> str:
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "an array"
    return f"{value!r} ({type(value).__name__})"


class _Table:
    """One TOML table: typed getters whose errors name the key; unknown keys are errors."""

    def __init__(self, raw: Any, where: str) -> None:
        if not isinstance(raw, dict):
            raise PlantConfigError(where, f"expected a table, found {_describe(raw)}")
        self.raw: dict[str, Any] = raw
        self.where = where
        self.used: set[str] = set()

    def key(self, name: str) -> str:
        return f"{self.where}.{name}" if self.where else name

    def has(self, name: str) -> bool:
        return name in self.raw

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        self.used.add(name)
        if name not in self.raw:
            if default is ...:
                raise PlantConfigError(self.key(name), "required, missing")
            return default
        value = self.raw[name]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if float in kinds and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
            names = " or ".join(_TYPE_NAMES.get(k, k.__name__) for k in kinds)
            raise PlantConfigError(self.key(name), f"expected {names}, found {_describe(value)}")
        return value

    def number(
        self, name: str, default: Any = ..., *, low: float, high: float, low_open: bool = False
    ) -> float:
        value = float(self.get(name, float, default))
        too_low = value <= low if low_open else value < low
        if not math.isfinite(value) or too_low or value > high:
            bracket = "(" if low_open else "["
            raise PlantConfigError(
                self.key(name), f"expected a number in {bracket}{low:g}, {high:g}], found {value:g}"
            )
        return value

    def integer(self, name: str, default: Any = ..., *, low: int, high: int) -> int:
        value = self.get(name, int, default)
        if not low <= value <= high:
            raise PlantConfigError(
                self.key(name), f"expected an integer in [{low}, {high}], found {value}"
            )
        return int(value)

    def level(self, name: str, default: Any = ...) -> str:
        value = self.get(name, str, default)
        if not _LEVEL.match(value):
            raise PlantConfigError(
                self.key(name),
                "expected a name of letters, digits, '.', '_' or '-' (it becomes a twin id "
                f"and MQTT topic level), found {value!r}",
            )
        return str(value)

    def choice(self, name: str, options: tuple[str, ...], default: Any = ...) -> str:
        value = self.get(name, str, default)
        if value not in options:
            raise PlantConfigError(
                self.key(name),
                f"expected one of {', '.join(repr(o) for o in options)}, found {value!r}",
            )
        return str(value)

    def done(self) -> None:
        unknown = sorted(set(self.raw) - self.used)
        if unknown:
            raise PlantConfigError(
                self.key(unknown[0]),
                f"unknown key; known keys here: {', '.join(sorted(self.used))}",
            )


_TYPE_NAMES = {
    str: "a string",
    float: "a number",
    int: "an integer",
    bool: "true or false",
    dict: "a table",
    list: "an array",
}


# -- sections --------------------------------------------------------------------------------


def _path(t: _Table, name: str, base: Path) -> Path | None:
    value = t.get(name, str, None)
    if value is None:
        return None
    path = Path(value) if Path(value).is_absolute() else base / value
    if not path.is_file():
        raise PlantConfigError(t.key(name), f"expected a readable file, found none at {path}")
    return path


def _opcua(raw: Any, site: str, base: Path) -> OpcUaSettings:
    t = _Table(raw, "opcua")
    endpoint = t.get("endpoint", str, f"opc.tcp://127.0.0.1:4840/twinmesh/{site}/")
    parts = urlsplit(endpoint)
    try:
        port = parts.port
    except ValueError:
        port = None
    if parts.scheme != "opc.tcp" or not parts.hostname or port is None:
        raise PlantConfigError(
            "opcua.endpoint", f"expected opc.tcp://HOST:PORT/PATH, found {endpoint!r}"
        )
    security = t.choice("security", _SECURITY, "None")
    secure = security != "None"
    certificate = _path(t, "certificate", base)
    private_key = _path(t, "private_key", base)
    if secure and (certificate is None or private_key is None):
        missing = "certificate" if certificate is None else "private_key"
        raise PlantConfigError(t.key(missing), f"required when security = {security!r}")
    settings = OpcUaSettings(
        endpoint=endpoint,
        security=security,  # type: ignore[arg-type]
        certificate=certificate,
        private_key=private_key,
        application_uri=t.get("application_uri", str, f"urn:twinmesh:plant:{site}:simulator"),
        history=t.get("history", bool, False),
        history_count=t.integer("history_count", 3600, low=0, high=100_000_000),
    )
    t.done()
    return settings


def _mqtt(raw: Any, site: str, base: Path) -> MqttSettings:
    t = _Table(raw, "mqtt")
    password_file = _path(t, "password_file", base)
    tls = t.get("tls", bool, False)
    settings = MqttSettings(
        host=t.get("host", str, "127.0.0.1"),
        port=t.integer("port", 8883 if tls else 1883, low=1, high=65535),
        client_id=t.get("client_id", str, f"twinmesh-sim-{site}"),
        username=t.get("username", str, None),
        password=password_file.read_text(encoding="utf-8").strip() if password_file else None,
        tls=tls,
        tls_ca=_path(t, "tls_ca", base),
        tls_cert=_path(t, "tls_cert", base),
        tls_key=_path(t, "tls_key", base),
        tls_check_hostname=t.get("tls_check_hostname", bool, True),
        keepalive=t.integer("keepalive", 30, low=5, high=3600),
        queue_limit=t.integer("queue_limit", 100_000, low=1, high=100_000_000),
        inflight=t.integer("inflight", 20, low=1, high=65535),
        publish_timeout=t.number("publish_timeout", 10.0, low=0.1, high=600.0),
    )
    if not tls and any(x is not None for x in (settings.tls_ca, settings.tls_cert)):
        raise PlantConfigError("mqtt.tls", "expected true when tls_ca or tls_cert is given")
    t.done()
    return settings


def _params(raw: Any, kind: str, where: str) -> MachineParams:
    cls = _PARAMS[kind]
    t = _Table(raw, where)
    values: dict[str, Any] = {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for name in t.raw:
        if name not in fields:
            raise PlantConfigError(
                t.key(name), f"unknown {kind} parameter; known: {', '.join(sorted(fields))}"
            )
        if fields[name].type in ("int", int):
            values[name] = t.integer(name, low=1, high=1000)
        else:
            values[name] = t.number(name, low=0.0, high=1e9, low_open=bool(_POSITIVE.search(name)))
        if _POSITIVE.search(name) and values[name] <= 0:
            raise PlantConfigError(t.key(name), f"expected a positive number, found {values[name]}")
        if name in _RATIOS and not values[name] < 1.0:
            raise PlantConfigError(t.key(name), f"expected a share below 1, found {values[name]}")
    if kind == "motor" and values.get("poles", 2) % 2:
        raise PlantConfigError(t.key("poles"), f"expected an even number, found {values['poles']}")
    params = cls(**values)
    if isinstance(params, PumpParams) and params.shutoff_head <= 1.0:
        raise PlantConfigError(
            t.key("shutoff_head"),
            f"expected more than 1 (x rated head), found {params.shutoff_head}",
        )
    if isinstance(params, CncParams) and params.new_tool_wear >= params.wear_limit:
        raise PlantConfigError(
            t.key("new_tool_wear"),
            f"expected less than wear_limit ({params.wear_limit}), found {params.new_tool_wear}",
        )
    return params


def _fault(raw: Any, where: str, *, asset: str, kind: str, index: int) -> Fault:
    t = _Table(raw, where)
    fault_kind = t.choice("kind", FAULT_KINDS)
    tags = tuple(kind_telemetry(kind))
    start = t.number("start", low=0.0, high=1e9)
    duration = t.number("duration", low=0.0, high=1e9, low_open=True)
    ramp = 0.0
    if fault_kind in ("bearing_wear", "cooling_failure", "sensor_drift"):
        ramp = t.number("ramp", 0.0, low=0.0, high=duration)
    telemetry: str | None = None
    if fault_kind in ("sensor_drift", "stuck_sensor", "dropout"):
        required = ... if fault_kind != "dropout" else None
        telemetry = t.get("telemetry", str, required)
        if telemetry is not None and telemetry not in tags:
            raise PlantConfigError(
                t.key("telemetry"),
                f"expected a telemetry of a {kind} ({', '.join(tags)}), found {telemetry!r}",
            )
    elif t.has("telemetry"):
        raise PlantConfigError(
            t.key("telemetry"),
            f"a {fault_kind} acts on the machine, so it names no telemetry; found "
            f"{t.raw['telemetry']!r}",
        )
    severity = 1.0
    if fault_kind == "bearing_wear":
        severity = t.number("severity", 1.0, low=0.0, high=1.0, low_open=True)
    elif fault_kind == "cooling_failure":
        severity = t.number("severity", 0.9, low=0.0, high=0.99, low_open=True)
    offset = 0.0
    if fault_kind == "sensor_drift":
        offset = t.number("offset", low=-1e9, high=1e9)
        if offset == 0.0:
            raise PlantConfigError(t.key("offset"), "expected a non-zero offset, found 0")
    fault_id = t.get("id", str, f"{asset}-{fault_kind.replace('_', '-')}-{index + 1}")
    if not fault_id:
        raise PlantConfigError(t.key("id"), "expected a non-empty string, found ''")
    t.done()
    return Fault(
        id=fault_id,
        kind=fault_kind,  # type: ignore[arg-type]
        start=start,
        duration=duration,
        ramp=ramp,
        telemetry=telemetry,
        severity=severity,
        offset=offset,
    )


def _asset(raw: Any, where: str, plant: _Plant) -> AssetConfig:
    t = _Table(raw, where)
    name = t.level("name")
    kind = t.choice("kind", tuple(_PARAMS))
    model = t.get("model", str, DEFAULT_MODELS[kind])
    if not model.startswith("dtmi:") or ";" not in model:
        raise PlantConfigError(
            t.key("model"), f"expected a DTMI with a version (dtmi:...;1), found {model!r}"
        )
    protocol = t.choice("protocol", ("opcua", "mqtt"), _DEFAULT_PROTOCOL[kind])
    interval = t.number("sample_interval", plant.sample_interval, low=0.01, high=3600.0)
    faults_raw = t.get("fault", list, [])
    asset = AssetConfig(
        name=name,
        kind=kind,  # type: ignore[arg-type]
        site=plant.site,
        area=t.level("area", plant.area),
        line=t.level("line", "line-1"),
        cell=t.level("cell", "cell-1"),
        model=model,
        protocol=protocol,  # type: ignore[arg-type]
        sample_interval=interval,
        params=_params(t.get("params", dict, {}), kind, f"{where}.params"),
        faults=tuple(
            _fault(f, f"{where}.fault[{i}]", asset=name, kind=kind, index=i)
            for i, f in enumerate(faults_raw)
        ),
    )
    t.done()
    return asset


@dataclass(frozen=True, slots=True, kw_only=True)
class _Plant:
    site: str
    area: str
    sample_interval: float


def parse_config(raw: Mapping[str, Any], *, base: Path, source: Path | None = None) -> PlantConfig:
    """A :class:`PlantConfig` from a parsed TOML document; relative paths resolve from ``base``."""
    top = _Table(dict(raw), "")
    p = _Table(top.get("plant", dict), "plant")
    site = p.level("site")
    plant = _Plant(
        site=site,
        area=p.level("area", "area-1"),
        sample_interval=p.number("sample_interval", 0.5, low=0.01, high=3600.0),
    )
    seed = p.get("seed", int, 0)
    time_scale = p.number("time_scale", 1.0, low=0.0, high=10_000.0, low_open=True)
    ambient = p.number("ambient_temperature", 25.0, low=-40.0, high=60.0)
    stem = source.stem if source is not None else "plant"
    out_raw = p.get("out", str, f"{stem}-out")
    out = Path(out_raw) if Path(out_raw).is_absolute() else base / out_raw
    p.done()
    opcua = _opcua(top.get("opcua", dict, {}), site, base)
    mqtt = _mqtt(top.get("mqtt", dict, {}), site, base)
    assets_raw = top.get("asset", list)
    if not assets_raw:
        raise PlantConfigError("asset", "expected at least one [[asset]], found none")
    assets = tuple(_asset(a, f"asset[{i}]", plant) for i, a in enumerate(assets_raw))
    top.done()
    names: dict[str, int] = {}
    fault_ids: dict[str, str] = {}
    for i, a in enumerate(assets):
        if a.name in names:
            raise PlantConfigError(
                f"asset[{i}].name",
                f"expected a name unique in the plant (it names the OPC UA object), "
                f"found {a.name!r} again (first at asset[{names[a.name]}])",
            )
        names[a.name] = i
        for j, f in enumerate(a.faults):
            if f.id in fault_ids:
                raise PlantConfigError(
                    f"asset[{i}].fault[{j}].id",
                    f"expected a unique fault id, found {f.id!r} again ({fault_ids[f.id]})",
                )
            fault_ids[f.id] = f"asset[{i}].fault[{j}]"
    return PlantConfig(
        site=site,
        area=plant.area,
        seed=seed,
        sample_interval=plant.sample_interval,
        time_scale=time_scale,
        ambient_temperature=ambient,
        out=out,
        opcua=opcua,
        mqtt=mqtt,
        assets=assets,
        source=source,
    )


def load_config(path: str | Path) -> PlantConfig:
    """Read and validate ``plant.toml``. Raises :class:`PlantConfigError`."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise PlantConfigError(str(p), f"cannot read: {exc.strerror}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PlantConfigError(str(p), f"not valid TOML: {exc}") from None
    return parse_config(raw, base=p.resolve().parent, source=p)
