"""The fleet's FMU registry: content-addressed artifacts, replicated identities, deployments.

Theory of operation
-------------------
An FMU is named by the sha256 of its archive. Its *identity* (model name,
version, FMI version, GUID, model identifier, size, hash) replicates like a
DTDL model (node/_shared_models.py): one fleet-wide entity ``_fmus/<sha256>``
(home ``*``, creatable by any node) whose shared ``identity`` field holds the
canonical JSON. The identity is derived from the bytes alone, so two plants
registering the same archive write the same document and never conflict, and
a different archive is a different entity: an FMU never changes in place.

The *binary* stays where it was registered (raw artifacts, like telemetry,
do not ride gossip). A node that needs it asks a peer for it by hash over the
gossip port, i.e. the fleet's existing mutual-TLS channel
(``GET /v1/fmus/<sha256>/binary``; the peer's certificate must name the
node its header claims), and keeps it only if the bytes hash to the name
asked for. A binary that does not match is refused and the next peer tried.

*Deployments.* Each plant writes which FMUs each of its co-simulated assets
runs (system name and version, the asset's class = its twin's DTDL model;
per FMU instance: name, version, sha256)
into its own entity ``<node>/_cosim`` (a reported field: only that plant
writes it). Every node therefore sees every plant's versions, and
:func:`skew` lists FMU names that run in more than one version across the
fleet. A change of what an asset runs is also appended to that entity's
grow-only ``switches`` log (from, to, when): a twin never changes FMU
silently, and the op log keeps the history.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import os
import re
import ssl
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from twinmesh.crdt import (
    FLEET_HOME,
    EntitySchema,
    FieldKind,
    FieldSpec,
    MVRegister,
    Policy,
    ReplicaState,
    ValueType,
)

from .._tokens import Role
from ._fmu import FmuError, inspect_fmu

if TYPE_CHECKING:
    from .._node import Node

__all__ = [
    "COSIM_SCHEMAS",
    "DEPLOYMENT_MODEL",
    "FMU_MODEL",
    "FmuRegistry",
    "add_gossip_routes",
    "add_registry_routes",
    "deployment_entity",
    "fmu_entity",
    "skew",
]

log = logging.getLogger("twinmesh.node.cosim.registry")

FMU_MODEL = "dtmi:twinmesh:fleet:FmuArtifact;1"
DEPLOYMENT_MODEL = "dtmi:twinmesh:fleet:CosimDeployment;1"
COSIM_SCHEMAS = {
    FMU_MODEL: EntitySchema(
        model=FMU_MODEL,
        fields={
            "identity": FieldSpec(
                kind=FieldKind.SHARED,
                value_type=ValueType.STRING,
                policy=Policy.EARLIEST,
                description="canonical JSON of the FMU's identity, derived from its bytes",
            )
        },
    ),
    DEPLOYMENT_MODEL: EntitySchema(
        model=DEPLOYMENT_MODEL,
        fields={
            "running": FieldSpec(
                kind=FieldKind.REPORTED,
                value_type=ValueType.STRING,
                description="canonical JSON: asset -> system and FMUs (name, version, sha256)",
            ),
            "switches": FieldSpec(kind=FieldKind.LOG, description="FMU changes per asset"),
        },
    ),
}
_PREFIX = "_fmus/"
_SHA = re.compile(r"^[0-9a-f]{64}$")
MAX_FMU_BYTES = 64 * 1024 * 1024
NODE_HEADER = "X-Twinmesh-Node"


def fmu_entity(sha256: str) -> str:
    return _PREFIX + sha256


def deployment_entity(node: str) -> str:
    return f"{node}/_cosim"


def _canonical(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"))


def _register_value(state: ReplicaState, entity: str, name: str) -> list[str]:
    e = state.entities.get(entity)
    if e is None:
        return []
    reg = e.field(name)
    if isinstance(reg, MVRegister):
        return sorted({str(v) for v in reg.values()})
    value = e.value(name)
    return [] if value is None else [str(value)]


def registered(state: ReplicaState) -> dict[str, dict[str, Any]]:
    """sha256 -> identity, for every replicated FMU."""
    out: dict[str, dict[str, Any]] = {}
    for eid, e in state.entities.items():
        if eid.startswith(_PREFIX) and e.header.model == FMU_MODEL:
            docs = _register_value(state, eid, "identity")
            if len(docs) == 1:
                out[eid[len(_PREFIX) :]] = json.loads(docs[0])
    return out


def deployments(state: ReplicaState) -> dict[str, dict[str, Any]]:
    """node -> asset -> what it runs, for every plant that published it."""
    out: dict[str, dict[str, Any]] = {}
    for e in state.entities.values():
        if e.header.model == DEPLOYMENT_MODEL:
            value = e.value("running")
            if isinstance(value, str):
                out[e.header.home] = json.loads(value)
    return out


def switches(state: ReplicaState) -> dict[str, list[dict[str, Any]]]:
    """node -> the FMU switches its assets went through, oldest first (the grow-only log)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for e in state.entities.values():
        if e.header.model == DEPLOYMENT_MODEL and "switches" in e.fields:
            events = e.value("switches")
            if events:
                out[e.header.home] = sorted(
                    events.values(), key=lambda s: (s["at_ms"], s["asset"], s["instance"])
                )
    return out


def skew(deploys: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """FMU names that run in more than one version (or build) across the fleet."""
    seen: dict[str, dict[str, set[str]]] = {}
    for node, assets in deploys.items():
        for asset, d in assets.items():
            for fmu in d.get("fmus", {}).values():
                key = f"{fmu['version']} ({fmu['sha256'][:12]})"
                seen.setdefault(fmu["name"], {}).setdefault(key, set()).add(f"{node}:{asset}")
    return [
        {"fmu": name, "versions": {k: sorted(v) for k, v in sorted(versions.items())}}
        for name, versions in sorted(seen.items())
        if len(versions) > 1
    ]


class FmuRegistry:
    """This node's store of FMU binaries (by hash) and its writes to the registry."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.blobs = node.config.data_dir / "fmu-blobs"
        self.fetched = 0
        self.fetch_refusals: dict[str, int] = {}

    def blob(self, sha256: str) -> Path:
        return self.blobs / f"{sha256}.fmu"

    def has(self, sha256: str) -> bool:
        return self.blob(sha256).is_file()

    def _store(self, data: bytes) -> tuple[str, Path]:
        self.blobs.mkdir(parents=True, exist_ok=True)
        sha = hashlib.sha256(data).hexdigest()
        fd, tmp = tempfile.mkstemp(dir=self.blobs, suffix=".part")
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        path = self.blob(sha)
        os.replace(tmp, path)
        return sha, path

    def identity_of(self, data: bytes) -> dict[str, Any]:
        """Check an archive (raises FmuError) and its identity, without storing it."""
        with tempfile.TemporaryDirectory() as tmp:
            p = Path(tmp) / "upload.fmu"
            p.write_bytes(data)
            info = inspect_fmu(p)
        return {
            "sha256": info.sha256,
            "name": info.name,
            "version": info.version,
            "fmi_version": info.fmi_version,
            "guid": info.guid,
            "identifier": info.identifier,
            "size": len(data),
        }

    async def register(self, data: bytes, author: str) -> tuple[dict[str, Any], bool]:
        identity = await asyncio.to_thread(self.identity_of, data)
        await asyncio.to_thread(self._store, data)
        eid = fmu_entity(identity["sha256"])
        node = self.node
        new = eid not in node.state.entities
        if new:
            doc = _canonical(identity)
            await node.write_many(
                lambda s, _seqs: s.create(eid, FMU_MODEL, author=author, home=FLEET_HOME),
                lambda s, _seqs: s.write(
                    eid, "identity", doc, author=author, now_ms=int(node.clock() * 1000)
                ),
            )
        return identity, new

    async def publish_running(self, running: dict[str, Any]) -> list[dict[str, Any]]:
        """Record what this plant's assets run; returns the switches appended."""
        node = self.node
        eid = deployment_entity(node.config.name)
        doc = _canonical(running)
        now_ms = int(node.clock() * 1000)
        old_docs = _register_value(node.state, eid, "running")
        if old_docs == [doc]:
            return []
        old = json.loads(old_docs[0]) if old_docs else {}
        switches: list[dict[str, Any]] = []
        for asset, now_d in running.items():
            before = old.get(asset, {}).get("fmus", {})
            for inst, fmu in now_d["fmus"].items():
                prev = before.get(inst)
                if prev is not None and prev["sha256"] != fmu["sha256"]:
                    switches.append(
                        {"asset": asset, "instance": inst, "from": prev, "to": fmu, "at_ms": now_ms}
                    )
        mutators: list[Callable[[ReplicaState, list[int]], Any]] = []
        if eid not in node.state.entities:
            mutators.append(lambda s, _q: s.create(eid, DEPLOYMENT_MODEL, author="node"))
        mutators.append(lambda s, _q: s.write(eid, "running", doc, author="node", now_ms=now_ms))
        for sw in switches:
            key = f"{sw['asset']}:{sw['instance']}:{sw['to']['sha256'][:16]}:{now_ms}"
            mutators.append(
                lambda s, _q, k=key, e=sw: s.append(eid, "switches", k, e, author="node")
            )
        await node.write_many(*mutators)
        if switches:
            log.info("co-simulation FMU switches recorded: %s", switches)
        return switches

    async def fetch(self, sha256: str, ssl_context: ssl.SSLContext) -> dict[str, Any]:
        """Get a binary from the first peer that has it and whose bytes match the hash."""
        import aiohttp

        if self.has(sha256):
            return {"sha256": sha256, "from": None, "stored": str(self.blob(sha256))}
        node = self.node
        peers = [(p.name, p.url) for p in node.config.peers]
        tried: list[str] = []
        timeout = aiohttp.ClientTimeout(total=30)
        async with aiohttp.ClientSession(timeout=timeout) as session:
            for name, url in peers:
                try:
                    async with session.get(
                        f"{url}/v1/fmus/{sha256}/binary",
                        headers={NODE_HEADER: node.config.name},
                        ssl=ssl_context,
                    ) as resp:
                        if resp.status != 200:
                            tried.append(f"{name}: HTTP {resp.status}")
                            continue
                        data = await resp.content.read(MAX_FMU_BYTES + 1)
                except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                    tried.append(f"{name}: {exc}")
                    continue
                got = hashlib.sha256(data).hexdigest()
                if got != sha256:
                    self.fetch_refusals["hash-mismatch"] = (
                        self.fetch_refusals.get("hash-mismatch", 0) + 1
                    )
                    tried.append(f"{name}: sent bytes hashing to {got}, not {sha256}: refused")
                    log.warning("FMU from %s refused: hash %s, expected %s", name, got, sha256)
                    continue
                await asyncio.to_thread(self._store, data)
                self.fetched += 1
                return {"sha256": sha256, "from": name, "stored": str(self.blob(sha256))}
        raise LookupError("; ".join(tried) or "no peers configured")


def _error(status: int, error: str, reason: str) -> web.Response:
    return web.json_response({"error": error, "reason": reason}, status=status)


def add_registry_routes(
    routes: web.RouteTableDef, node: Node, require: Callable[[web.Request, Role], str]
) -> None:
    def registry() -> FmuRegistry:
        reg = getattr(node, "fmu_registry", None)
        if reg is None:
            reg = node.fmu_registry = FmuRegistry(node)  # type: ignore[attr-defined]
        return reg

    @routes.get("/v1/fmus")
    async def list_fmus(request: web.Request) -> web.Response:
        require(request, Role.VIEWER)
        reg = registry()
        deploys = deployments(node.state)
        fmus = registered(node.state)
        for sha, ident in fmus.items():
            ident["binary_here"] = reg.has(sha)
            users = [
                (n, a, d)
                for n, assets in deploys.items()
                for a, d in assets.items()
                if any(f["sha256"] == sha for f in d["fmus"].values())
            ]
            ident["running_at"] = sorted(f"{n}:{a}" for n, a, _ in users)
            ident["asset_classes"] = sorted(
                {d["asset_class"] for _, _, d in users if d.get("asset_class")}
            )
        return web.json_response(
            {
                "fmus": fmus,
                "plants": deploys,
                "skew": skew(deploys),
                "switches": switches(node.state),
            }
        )

    @routes.post("/v1/fmus")
    async def register_fmu(request: web.Request) -> web.Response:
        subject = require(request, Role.ADMIN)
        data = await request.read()
        if not data:
            return _error(
                400, "malformed-body", "the body is the FMU archive (application/octet-stream)"
            )
        if len(data) > MAX_FMU_BYTES:
            return _error(413, "body-too-large", f"FMUs are limited to {MAX_FMU_BYTES} bytes")
        try:
            identity, new = await registry().register(data, subject)
        except FmuError as exc:
            return _error(422, f"fmu-{exc.rule}", f"{exc.rule}: {exc.reason}")
        return web.json_response(identity | {"new": new}, status=201 if new else 200)

    @routes.get("/v1/fmus/{sha256}")
    async def get_fmu(request: web.Request) -> web.Response:
        require(request, Role.VIEWER)
        sha = request.match_info["sha256"]
        ident = registered(node.state).get(sha)
        if ident is None:
            return _error(404, "unknown-fmu", f"no FMU {sha[:80]} is registered in the fleet")
        return web.json_response(ident | {"binary_here": registry().has(sha)})

    @routes.post("/v1/fmus/{sha256}/fetch")
    async def fetch_fmu(request: web.Request) -> web.Response:
        require(request, Role.ADMIN)
        sha = request.match_info["sha256"]
        if not _SHA.match(sha):
            return _error(400, "bad-hash", "an FMU is named by 64 lowercase hex digits (sha256)")
        if sha not in registered(node.state):
            return _error(404, "unknown-fmu", f"no FMU {sha} is registered in the fleet")
        from ..security import client_ssl_context

        cfg = node.config
        ctx = client_ssl_context(cfg.ca, cfg.cert, cfg.key)
        try:
            result = await registry().fetch(sha, ctx)
        except LookupError as exc:
            return _error(502, "fetch-failed", f"no peer gave a binary matching {sha}: {exc}")
        return web.json_response(result)


def add_gossip_routes(app: web.Application, node: Node) -> None:
    """``GET /v1/fmus/<sha256>/binary`` on the mutual-TLS gossip port."""
    from ..security import PeerIdentityError, check_peer_identity

    async def binary(request: web.Request) -> web.StreamResponse:
        transport = request.transport
        ssl_object = transport.get_extra_info("ssl_object") if transport else None
        try:
            check_peer_identity(request.headers.get(NODE_HEADER, ""), ssl_object)
        except PeerIdentityError as exc:
            return _error(403, "peer-identity", exc.reason)
        sha = request.match_info["sha256"]
        if not _SHA.match(sha):
            return _error(400, "bad-hash", "64 lowercase hex digits")
        reg = getattr(node, "fmu_registry", None) or FmuRegistry(node)
        path = reg.blob(sha)
        if not path.is_file():
            return _error(404, "no-binary", f"{node.config.name} does not hold FMU {sha}")
        return web.FileResponse(path, headers={"Content-Type": "application/octet-stream"})

    app.router.add_get("/v1/fmus/{sha256}/binary", binary)


async def publish_deployment(node: Node) -> None:
    """At start-up: register the FMUs this plant runs (so peers can fetch them by hash)
    and record what each co-simulated asset runs, with any switch since last time."""
    cosim = node.cosim
    if cosim is None:
        return
    reg = getattr(node, "fmu_registry", None)
    if reg is None:
        reg = node.fmu_registry = FmuRegistry(node)  # type: ignore[attr-defined]
    try:
        for system in cosim.systems.values():
            for entry in system.fmus.values():
                if fmu_entity(entry.info.sha256) not in node.state.entities or not reg.has(
                    entry.info.sha256
                ):
                    await reg.register(entry.info.path.read_bytes(), "node")
        running = cosim.running()
        for asset, d in running.items():
            # The asset class (the twin's DTDL model): which classes use which FMU.
            e = node.state.entities.get(asset)
            d["asset_class"] = e.header.model if e is not None else None
        await reg.publish_running(running)
    except Exception:
        # The registry is a fleet view; a failure here must not stop ingest or co-simulation.
        log.exception("publishing this plant's FMU deployment failed")
