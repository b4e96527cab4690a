"""Mappings from source addresses (MQTT topics, OPC UA nodes) to twin telemetry.

MQTT: unified namespace by default
----------------------------------
Topics follow the ISA-95 "unified namespace" layout
``site/area/line/cell/asset/tag``. Twin ids are ``site/line/asset``
(ARCHITECTURE.md, "Data model"), so the default rule is::

    {site}/{area}/{line}/{cell}/{asset}/{tag}  ->  entity {site}/{line}/{asset}, telemetry {tag}

    plant-a/area-1/line-1/cell-1/pump-7/vibration_rms
        -> entity "plant-a/line-1/pump-7", telemetry "vibration_rms"

Area and cell are organisational levels the twin path leaves out. A plant
whose line names repeat across areas writes an explicit rule instead
(``entity = "{site}/{area}-{line}/{asset}"``).

Explicit rules come first, in file order; the first match wins, and the
default applies only when no rule matched (it can be switched off). A
pattern level is a literal, ``+`` (any one level, not captured),
``{name}`` (one level, captured), or — last only — ``#`` / ``{name#}`` (the
rest of the topic, MQTT 3.1.1 §4.7.1.2). ``entity`` and ``telemetry`` are
templates over the captured names. A rule may give the ``unit`` a payload
without a unit is in. The broker subscription filters are derived from the
patterns (``{name}`` → ``+``, ``{name#}`` → ``#``).

OPC UA: explicit node bindings
------------------------------
Each binding names a node by id (``ns=2;s=Pump7.Vibration``, OPC UA Part 6
§5.3.1.10 string form) or by browse path from the Objects folder
(``2:Pump7/2:Vibration``, each element ``namespaceIndex:BrowseName``), and
the twin entity, telemetry name and unit it feeds, plus per-node sampling
interval and queue size (Part 4 §5.12.1.2 / §5.12.1.4).

Both load from TOML or JSON (by file suffix); see :func:`load_topic_mapping`
and :func:`load_node_bindings` for the schema.
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = [
    "DEFAULT_UNS_RULE",
    "CommandBinding",
    "MappingError",
    "MqttCommandBinding",
    "NodeBinding",
    "OpcUaMapping",
    "TopicMapping",
    "TopicRule",
    "TopicTarget",
    "load_node_bindings",
    "load_topic_mapping",
]

_VAR = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_SEGMENT_VAR = re.compile(r"^\{([A-Za-z_][A-Za-z0-9_]*)(#?)\}$")
_CACHE_LIMIT = 65536
#: OPC UA DataChangeTrigger names (Part 4 §7.22.2) and their enumeration values.
TRIGGERS = {"status": 0, "status-value": 1, "status-value-timestamp": 2}


class MappingError(ValueError):
    """A mapping file or rule is invalid; ``reason`` says where and why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicTarget:
    """Where one MQTT topic's readings go."""

    entity: str
    name: str
    unit: str | None = None  # the unit to assume when the payload names none


@dataclass(frozen=True, slots=True, kw_only=True)
class TopicRule:
    """One topic pattern and the twin telemetry it maps to."""

    topic: str
    entity: str
    telemetry: str
    unit: str | None = None
    _levels: tuple[tuple[str, str], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        levels: list[tuple[str, str]] = []  # (kind, text): lit / any / var / rest / restvar
        parts = self.topic.split("/")
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            m = _SEGMENT_VAR.match(part)
            if part == "+":
                levels.append(("any", ""))
            elif part == "#":
                if not last:
                    raise MappingError(f"rule {self.topic!r}: '#' must be the last level")
                levels.append(("rest", ""))
            elif m is not None:
                if m.group(2):
                    if not last:
                        raise MappingError(f"rule {self.topic!r}: '{{x#}}' must be the last level")
                    levels.append(("restvar", m.group(1)))
                else:
                    levels.append(("var", m.group(1)))
            elif any(c in part for c in "+#{}"):
                raise MappingError(f"rule {self.topic!r}: bad level {part!r}")
            else:
                levels.append(("lit", part))
        captured = {text for kind, text in levels if kind in ("var", "restvar")}
        for template in (self.entity, self.telemetry):
            missing = set(_VAR.findall(template)) - captured
            if missing:
                raise MappingError(
                    f"rule {self.topic!r}: template {template!r} uses uncaptured {sorted(missing)}"
                )
        object.__setattr__(self, "_levels", tuple(levels))

    @property
    def subscription_filter(self) -> str:
        """The MQTT topic filter that covers this rule."""
        out = []
        for kind, text in self._levels:
            if kind == "lit":
                out.append(text)
            elif kind in ("any", "var"):
                out.append("+")
            else:
                out.append("#")
        return "/".join(out)

    def match(self, topic: str) -> TopicTarget | None:
        parts = topic.split("/")
        captures: dict[str, str] = {}
        for i, (kind, text) in enumerate(self._levels):
            if kind in ("rest", "restvar"):
                # MQTT '#' also matches the parent level itself ("a/#" matches "a").
                if kind == "restvar":
                    captures[text] = "/".join(parts[i:])
                break
            if i >= len(parts):
                return None
            if kind == "lit" and parts[i] != text:
                return None
            if kind == "var":
                captures[text] = parts[i]
        else:
            if len(parts) != len(self._levels):
                return None
        entity = _VAR.sub(lambda m: captures[m.group(1)], self.entity)
        name = _VAR.sub(lambda m: captures[m.group(1)], self.telemetry)
        if not name or any(not level for level in entity.split("/")):
            return None  # an empty topic level would make an invalid twin path
        return TopicTarget(entity=entity, name=name, unit=self.unit)


DEFAULT_UNS_RULE = TopicRule(
    topic="{site}/{area}/{line}/{cell}/{asset}/{tag}",
    entity="{site}/{line}/{asset}",
    telemetry="{tag}",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class MqttCommandBinding:
    """Where the home plant publishes a twin's command over MQTT, and hears back.

    The request goes to ``topic``; the device answers on ``topic + "/ack"``
    (``reply_topic``). Both are plain topics (no wildcards): one device, one command.
    """

    topic: str
    entity: str
    command: str

    def __post_init__(self) -> None:
        if any(c in self.topic for c in "+#{}") or not all(self.topic.split("/")):
            raise MappingError(
                f"command topic {self.topic!r}: a plain topic (no wildcards, no empty level)"
            )

    @property
    def reply_topic(self) -> str:
        return self.topic + "/ack"


class TopicMapping:
    """Ordered topic rules plus the optional unified-namespace default, and the
    topics commands go out on (``[[command]]``)."""

    def __init__(
        self,
        rules: Sequence[TopicRule] = (),
        *,
        uns_default: bool = True,
        commands: Sequence[MqttCommandBinding] = (),
    ) -> None:
        self.rules: tuple[TopicRule, ...] = tuple(rules) + (
            (DEFAULT_UNS_RULE,) if uns_default else ()
        )
        if not self.rules:
            raise MappingError("a topic mapping needs at least one rule or the UNS default")
        self._cache: dict[str, TopicTarget | None] = {}
        self.commands: tuple[MqttCommandBinding, ...] = tuple(commands)
        seen: set[tuple[str, str]] = set()
        for c in self.commands:
            if (c.entity, c.command) in seen:
                raise MappingError(f"command {c.entity} {c.command} is bound twice")
            seen.add((c.entity, c.command))

    @property
    def subscription_filters(self) -> tuple[str, ...]:
        """Distinct filters to subscribe to, in rule order."""
        return tuple(dict.fromkeys(rule.subscription_filter for rule in self.rules))

    def resolve(self, topic: str) -> TopicTarget | None:
        """The target for ``topic``, or ``None`` when no rule maps it."""
        try:
            return self._cache[topic]
        except KeyError:
            pass
        target = next((t for rule in self.rules if (t := rule.match(topic)) is not None), None)
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()  # topics are bounded in practice; this caps a pathological source
        self._cache[topic] = target
        return target

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TopicMapping:
        """``{"uns_default": bool, "rule": [{"topic", "entity", "telemetry", "unit"?}],
        "command": [{"topic", "entity", "command"}]}``."""
        _only(data, ("rule", "uns_default", "command"), "")
        rules = []
        for i, raw in enumerate(_list_of_tables(data, "rule")):
            _only(raw, ("topic", "entity", "telemetry", "unit"), f"rule[{i}]")
            try:
                rules.append(
                    TopicRule(
                        topic=_str(raw, "topic"),
                        entity=_str(raw, "entity"),
                        telemetry=_str(raw, "telemetry"),
                        unit=_opt_str(raw, "unit"),
                    )
                )
            except MappingError as exc:
                raise MappingError(f"rule[{i}]: {exc.reason}") from None
        uns = data.get("uns_default", True)
        if not isinstance(uns, bool):
            raise MappingError("uns_default must be true or false")
        commands = []
        for i, raw in enumerate(_list_of_tables(data, "command")):
            _only(raw, ("topic", "entity", "command"), f"command[{i}]")
            try:
                commands.append(
                    MqttCommandBinding(
                        topic=_str(raw, "topic"),
                        entity=_str(raw, "entity"),
                        command=_str(raw, "command"),
                    )
                )
            except MappingError as exc:
                raise MappingError(f"command[{i}]: {exc.reason}") from None
        return cls(rules, uns_default=uns, commands=commands)


@dataclass(frozen=True, slots=True, kw_only=True)
class CommandBinding:
    """Where the home plant writes a twin's command: an OPC UA Variable (the
    setpoint) that the command's value is written to."""

    node_id: str
    entity: str
    command: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NodeBinding:
    """One OPC UA node and the twin telemetry it feeds."""

    node_id: str | None = None  # "ns=2;s=Pump7.Vibration"
    browse_path: tuple[str, ...] = ()  # ("2:Pump7", "2:Vibration"), from the Objects folder
    entity: str
    telemetry: str
    unit: str | None = None  # the unit the server delivers in
    sampling_interval_ms: float | None = None  # None: the mapping's default
    queue_size: int | None = None

    def __post_init__(self) -> None:
        if (self.node_id is None) == (not self.browse_path):
            raise MappingError(
                f"{self.entity}/{self.telemetry}: give exactly one of node_id or browse_path"
            )
        for element in self.browse_path:
            ns, sep, name = element.partition(":")
            if not sep or not ns.isdigit() or not name:
                raise MappingError(
                    f"{self.entity}/{self.telemetry}: browse path element {element!r}"
                    " is not 'namespaceIndex:BrowseName'"
                )

    @property
    def address(self) -> str:
        """The source address recorded in provenance."""
        return self.node_id if self.node_id is not None else "/".join(self.browse_path)


@dataclass(frozen=True, slots=True, kw_only=True)
class OpcUaMapping:
    """All bindings of one OPC UA adapter, with subscription defaults."""

    bindings: tuple[NodeBinding, ...]
    publishing_interval_ms: float = 250.0
    sampling_interval_ms: float = 100.0
    queue_size: int = 10
    #: DataChangeTrigger (Part 4 §7.22.2). "status-value-timestamp" reports every
    #: new device reading, even one repeating the last value: a stuck transmitter
    #: then arrives as a run of identical readings (STUCK), not as silence (STALE),
    #: and the buffer holds every reading the device made, as a historian would.
    trigger: str = "status-value-timestamp"
    #: ``[[command]]`` tables: commands the home plant sends through this adapter.
    commands: tuple[CommandBinding, ...] = ()

    def __post_init__(self) -> None:
        if not self.bindings:
            raise MappingError("an OPC UA mapping needs at least one [[node]]")
        if self.trigger not in TRIGGERS:
            raise MappingError(
                f"subscription.trigger: expected one of {', '.join(TRIGGERS)},"
                f" found {self.trigger!r}"
            )
        seen: set[tuple[str, str]] = set()
        for b in self.bindings:
            if (b.entity, b.telemetry) in seen:
                raise MappingError(f"{b.entity}/{b.telemetry} is bound twice")
            seen.add((b.entity, b.telemetry))

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OpcUaMapping:
        """``{"subscription": {...intervals...}, "node": [{node_id|browse_path, entity, ...}]}``."""
        _only(data, ("subscription", "node", "command"), "")
        sub = data.get("subscription", {})
        if not isinstance(sub, Mapping):
            raise MappingError("[subscription] must be a table")
        _only(
            sub,
            ("publishing_interval_ms", "sampling_interval_ms", "queue_size", "trigger"),
            "subscription",
        )
        bindings = []
        for i, raw in enumerate(_list_of_tables(data, "node")):
            _only(raw, _NODE_KEYS, f"node[{i}]")
            path = raw.get("browse_path", ())
            if isinstance(path, str):
                path = tuple(p for p in path.split("/") if p)
            if not isinstance(path, Sequence) or not all(isinstance(p, str) for p in path):
                raise MappingError(f"node[{i}]: browse_path must be a string or list of strings")
            try:
                bindings.append(
                    NodeBinding(
                        node_id=_opt_str(raw, "node_id"),
                        browse_path=tuple(path),
                        entity=_str(raw, "entity"),
                        telemetry=_str(raw, "telemetry"),
                        unit=_opt_str(raw, "unit"),
                        sampling_interval_ms=_opt_num(raw, "sampling_interval_ms"),
                        queue_size=_opt_int(raw, "queue_size"),
                    )
                )
            except MappingError as exc:
                raise MappingError(f"node[{i}]: {exc.reason}") from None
        publishing = _opt_num(sub, "publishing_interval_ms")
        sampling = _opt_num(sub, "sampling_interval_ms")
        queue = _opt_int(sub, "queue_size")
        # Absent keys keep the dataclass defaults; 0 is a real value (Part 4
        # §5.12.1.2: sampling interval 0 asks for the fastest rate).
        overrides: dict[str, Any] = {
            k: v
            for k, v in (
                ("publishing_interval_ms", publishing),
                ("sampling_interval_ms", sampling),
                ("queue_size", queue),
                ("trigger", _opt_str(sub, "trigger")),
            )
            if v is not None
        }
        commands = []
        for i, raw in enumerate(_list_of_tables(data, "command")):
            _only(raw, ("node_id", "entity", "command"), f"command[{i}]")
            try:
                commands.append(
                    CommandBinding(
                        node_id=_str(raw, "node_id"),
                        entity=_str(raw, "entity"),
                        command=_str(raw, "command"),
                    )
                )
            except MappingError as exc:
                raise MappingError(f"command[{i}]: {exc.reason}") from None
        return cls(bindings=tuple(bindings), commands=tuple(commands), **overrides)


def load_topic_mapping(path: str | Path) -> TopicMapping:
    """Load a :class:`TopicMapping` from a ``.toml`` or ``.json`` file.

    TOML example::

        uns_default = true
        [[rule]]
        topic = "legacy/{asset}/temp_f"
        entity = "plant-a/line-1/{asset}"
        telemetry = "temperature"
        unit = "degF"
    """
    return TopicMapping.from_dict(_load(path))


def load_node_bindings(path: str | Path) -> OpcUaMapping:
    """Load an :class:`OpcUaMapping` from a ``.toml`` or ``.json`` file.

    TOML example::

        [subscription]
        publishing_interval_ms = 250
        sampling_interval_ms = 100
        queue_size = 10

        [[node]]
        node_id = "ns=2;s=Pump7.Vibration"
        entity = "plant-a/line-1/pump-7"
        telemetry = "vibration_rms"
        unit = "mm/s"

        [[node]]
        browse_path = "2:Pump7/2:Temperature"
        entity = "plant-a/line-1/pump-7"
        telemetry = "temperature"
        unit = "degF"
        sampling_interval_ms = 500
    """
    return OpcUaMapping.from_dict(_load(path))


def _load(path: str | Path) -> Mapping[str, Any]:
    p = Path(path)
    try:
        if p.suffix == ".toml":
            with p.open("rb") as f:
                return tomllib.load(f)
        if p.suffix == ".json":
            data = json.loads(p.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise MappingError(f"{p}: the top level must be an object")
            return data
    except (OSError, ValueError) as exc:
        if isinstance(exc, MappingError):
            raise
        raise MappingError(f"{p}: {exc}") from exc
    raise MappingError(f"{p}: mapping files are .toml or .json")


_NODE_KEYS = (
    "node_id",
    "browse_path",
    "entity",
    "telemetry",
    "unit",
    "sampling_interval_ms",
    "queue_size",
)


def _only(raw: Mapping[str, Any], keys: Sequence[str], where: str) -> None:
    """Refuse keys not in ``keys``: a typo (``unti``) must not be silently ignored."""
    unknown = sorted(str(k) for k in raw if k not in keys)
    if unknown:
        paths = ", ".join(f"{where}.{k}" if where else k for k in unknown)
        raise MappingError(f"unknown key(s) {paths} (known: {', '.join(sorted(keys))})")


def _list_of_tables(data: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    items = data.get(key, [])
    if not isinstance(items, list) or not all(isinstance(x, Mapping) for x in items):
        raise MappingError(f"{key!r} must be a list of tables")
    return items


def _str(raw: Mapping[str, Any], key: str) -> str:
    value = raw.get(key)
    if not isinstance(value, str) or not value:
        raise MappingError(f"{key!r} must be a non-empty string")
    return value


def _opt_str(raw: Mapping[str, Any], key: str) -> str | None:
    return None if raw.get(key) is None else _str(raw, key)


def _opt_num(raw: Mapping[str, Any], key: str) -> float | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise MappingError(f"{key!r} must be a non-negative number")
    return float(value)


def _opt_int(raw: Mapping[str, Any], key: str) -> int | None:
    value = raw.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise MappingError(f"{key!r} must be a non-negative integer")
    return value
