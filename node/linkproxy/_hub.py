"""Many named links in one process, and the config file that lists them.

A local fleet of N nodes needs N*(N-1) directed links; one process holding all
of them keeps the fleet launcher simple and gives the operator one control API.

Config (JSON)::

    {"seed": 7,
     "links": [{"name": "plant-a->plant-b",
                "listen": "127.0.0.1:17001", "upstream": "127.0.0.1:8002",
                "faults": {"delay_ms": 40}}]}

``seed`` feeds one hub ``random.Random``; each link gets its own generator seeded
from it in config order, so a link's draws do not depend on traffic elsewhere.
"""

from __future__ import annotations

import dataclasses
import json
import os
import random
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from twinmesh.crdt._errors import LocalProtocolError

from ._faults import FaultError, LinkFaults
from ._proxy import LinkProxy

__all__ = ["HubConfig", "LinkConfigError", "LinkSpec", "ProxyHub", "load_config", "parse_config"]

# Room for "plant-a->plant-b" style names; nothing that needs escaping in a log line.
LINK_NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._>-]{0,127}$")


class LinkConfigError(LocalProtocolError):
    """The link configuration is malformed or names an unknown link; nothing was changed."""


@dataclass(frozen=True, slots=True, kw_only=True)
class LinkSpec:
    name: str
    listen_host: str
    listen_port: int
    upstream_host: str
    upstream_port: int
    faults: LinkFaults = field(default_factory=LinkFaults)


@dataclass(frozen=True, slots=True, kw_only=True)
class HubConfig:
    links: tuple[LinkSpec, ...]
    seed: int = 0


def _parse_address(value: object, where: str) -> tuple[str, int]:
    if not isinstance(value, str):
        raise LinkConfigError(f"{where} must be a 'host:port' string, got {value!r}")
    host, sep, port_text = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host  # [::1]:80
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise LinkConfigError(
            f"{where} must be 'host:port' with a port from 0 to 65535, got {value!r}"
        )
    return host, int(port_text)


def parse_config(data: object) -> HubConfig:
    if not isinstance(data, Mapping):
        raise LinkConfigError("config must be a JSON object with a 'links' list")
    unknown = sorted(set(data) - {"links", "seed"})
    if unknown:
        raise LinkConfigError(f"unknown config key(s) {', '.join(unknown)}; known: links, seed")
    seed = data.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise LinkConfigError(f"seed must be an integer, got {seed!r}")
    raw_links = data.get("links")
    if not isinstance(raw_links, list):
        raise LinkConfigError("config must have a 'links' list")
    links: list[LinkSpec] = []
    names: set[str] = set()
    listens: set[tuple[str, int]] = set()
    for i, raw in enumerate(raw_links):
        where = f"links[{i}]"
        if not isinstance(raw, Mapping):
            raise LinkConfigError(f"{where} must be an object")
        extra = sorted(set(raw) - {"name", "listen", "upstream", "faults"})
        if extra:
            raise LinkConfigError(f"{where}: unknown key(s) {', '.join(extra)}")
        name = raw.get("name")
        if not isinstance(name, str) or not LINK_NAME_PATTERN.fullmatch(name):
            raise LinkConfigError(
                f"{where}.name must be 1-128 characters of letters, digits, '.', '_', '-', '>', "
                f"got {name!r}"
            )
        if name in names:
            raise LinkConfigError(f"{where}: duplicate link name {name!r}")
        listen = _parse_address(raw.get("listen"), f"{where}.listen")
        upstream = _parse_address(raw.get("upstream"), f"{where}.upstream")
        if listen[1] != 0 and listen in listens:
            raise LinkConfigError(f"{where}: listen address {listen[0]}:{listen[1]} used twice")
        try:
            faults = LinkFaults().updated(raw.get("faults", {}))
        except FaultError as exc:
            raise LinkConfigError(f"{where}.faults: {exc.reason}") from exc
        names.add(name)
        listens.add(listen)
        links.append(
            LinkSpec(
                name=name,
                listen_host=listen[0],
                listen_port=listen[1],
                upstream_host=upstream[0],
                upstream_port=upstream[1],
                faults=faults,
            )
        )
    return HubConfig(links=tuple(links), seed=seed)


def load_config(path: str | os.PathLike[str]) -> HubConfig:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise LinkConfigError(f"cannot read link config {path}: {exc.strerror}") from exc
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise LinkConfigError(f"link config {path} is not valid JSON: {exc}") from exc
    return parse_config(data)


def _address_text(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class ProxyHub:
    """Runs named :class:`LinkProxy` instances together and changes their faults by name."""

    def __init__(self, links: Sequence[LinkSpec], *, rng: random.Random) -> None:
        self._links: dict[str, LinkProxy] = {}
        for spec in links:
            if spec.name in self._links:
                raise LinkConfigError(f"duplicate link name {spec.name!r}")
            self._links[spec.name] = LinkProxy(
                spec.listen_host,
                spec.listen_port,
                spec.upstream_host,
                spec.upstream_port,
                rng=random.Random(rng.getrandbits(64)),
                faults=spec.faults,
                name=spec.name,
            )

    @property
    def links(self) -> Mapping[str, LinkProxy]:
        return dict(self._links)

    def link(self, name: str) -> LinkProxy:
        try:
            return self._links[name]
        except KeyError:
            known = ", ".join(sorted(self._links)) or "none"
            raise LinkConfigError(f"no link named {name!r}; known links: {known}") from None

    async def start(self) -> None:
        started: list[LinkProxy] = []
        try:
            for proxy in self._links.values():
                await proxy.start()
                started.append(proxy)
        except BaseException:
            # All or nothing: a half-started hub would hold ports nobody can release.
            for proxy in started:
                await proxy.stop()
            raise

    async def stop(self) -> None:
        for proxy in self._links.values():
            await proxy.stop()

    async def __aenter__(self) -> ProxyHub:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    def update(self, names: Sequence[str], changes: object) -> None:
        """Apply a partial fault update to several links, all or none."""
        proxies = [self.link(name) for name in names]
        new = [proxy.faults.updated(changes) for proxy in proxies]  # validate all first
        for proxy, faults in zip(proxies, new, strict=True):
            proxy.set_faults(faults)

    def describe(self, name: str) -> dict[str, Any]:
        proxy = self.link(name)
        return {
            "name": name,
            "listen": _address_text(*proxy.address),
            "upstream": _address_text(*proxy.upstream),
            "faults": proxy.faults.to_json(),
            "stats": dataclasses.asdict(proxy.stats),
        }

    def describe_all(self) -> list[dict[str, Any]]:
        return [self.describe(name) for name in self._links]
