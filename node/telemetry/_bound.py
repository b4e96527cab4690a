"""Which modelled tags some adapter mapping can feed, and which none can.

A model lists every telemetry a kind of machine may report; a plant wires up
some of them. A tag that no mapping binds is not *expected*, so silence from
it is no fault: it must not raise STALE (a node started with a partial
mapping would otherwise report every unwired tag stale, forever). It is
reported once as ``unmapped`` instead, so a forgotten binding is still seen.

OPC UA bindings name their ``(entity, telemetry)`` exactly. An MQTT rule may
use topic variables in its entity and telemetry templates, so it binds every
tag its templates can produce; the unified-namespace default
(``{site}/{line}/{asset}``, ``{tag}``) can produce any tag of a three-segment
entity. "Can bind" errs towards bound: a tag wrongly counted bound can still
go STALE (today's behaviour); one wrongly counted unbound would hide a fault.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from twinmesh.adapters import OpcUaMapping, TopicMapping

from ._settings import AdapterSpec

__all__ = ["unmapped_tags"]

_VAR = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")


def _template_regex(template: str, topic: str) -> re.Pattern[str]:
    """A regex matching every string ``template`` yields for topics matching ``topic``."""
    out, pos = [], 0
    for m in _VAR.finditer(template):
        out.append(re.escape(template[pos : m.start()]))
        # {x#} in the topic captures the rest of the topic, slashes included.
        out.append(".+" if "{" + m.group(1) + "#}" in topic else "[^/]+")
        pos = m.end()
    out.append(re.escape(template[pos:]))
    return re.compile("".join(out))


def _bindable(adapters: Iterable[AdapterSpec]) -> tuple[set[tuple[str, str]], list[Any]]:
    exact: set[tuple[str, str]] = set()
    patterns: list[tuple[re.Pattern[str], re.Pattern[str]]] = []
    for spec in adapters:
        mapping = getattr(spec.config, "mapping", None)
        if isinstance(mapping, OpcUaMapping):
            exact |= {(b.entity, b.telemetry) for b in mapping.bindings}
        elif isinstance(mapping, TopicMapping):
            for rule in mapping.rules:
                patterns.append(
                    (
                        _template_regex(rule.entity, rule.topic),
                        _template_regex(rule.telemetry, rule.topic),
                    )
                )
    return exact, patterns


def unmapped_tags(
    specs: Mapping[tuple[str, str], object], adapters: Iterable[AdapterSpec]
) -> list[tuple[str, str]]:
    """The modelled tags (keys of ``specs``) that no adapter's mapping can feed, sorted."""
    exact, patterns = _bindable(adapters)
    return sorted(
        tag
        for tag in specs
        if tag not in exact
        and not any(e.fullmatch(tag[0]) and n.fullmatch(tag[1]) for e, n in patterns)
    )
