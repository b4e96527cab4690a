"""``twinmesh node run``: start a node process and keep it serving until told to stop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import signal
import sys
import time
from pathlib import Path

from aiohttp import web

from twinmesh.crdt import ReplicaState, state_digest

from ._api import _entity_json, api_app
from ._config import NodeConfig, load_config
from ._gossip import GossipClient, gossip_app
from ._models import load_registry, load_schemas
from ._node import Node
from ._shared_models import SharedModels
from ._store import Store
from ._tokens import TokenIssuer
from .security import client_ssl_context, server_ssl_context

__all__ = ["history", "run_node"]

log = logging.getLogger("twinmesh.node")


class _JsonLogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "ts": round(record.created, 3),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        return json.dumps(entry)


def setup_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_JsonLogFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    # asyncua logs every subscription publish at INFO: megabytes of node.log a minute.
    logging.getLogger("asyncua").setLevel(max(root.level, logging.WARNING))


async def run_node(config: NodeConfig, *, ready_file: Path | None = None) -> int:
    offset = config.clock_offset
    node = Node(config, clock=(lambda: time.time() + offset) if offset else time.time)
    await node.open()
    tokens = TokenIssuer(config.token_secret_file.read_bytes())
    api_runner = web.AppRunner(api_app(node, tokens), access_log=None)
    gossip_runner = web.AppRunner(gossip_app(node), access_log=None)
    await api_runner.setup()
    await gossip_runner.setup()
    api_site = web.TCPSite(api_runner, config.api_host, config.api_port)
    gossip_site = web.TCPSite(
        gossip_runner,
        config.gossip_host,
        config.gossip_port,
        ssl_context=server_ssl_context(config.ca, config.cert, config.key),
    )
    await api_site.start()
    await gossip_site.start()
    client = GossipClient(node, client_ssl_context(config.ca, config.cert, config.key))
    node.start()  # adapters connect once the API can already report their state
    gossip_task = asyncio.create_task(client.run(), name="gossip")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    ready = {
        "node": config.name,
        "role": config.role,
        "api": f"http://{config.api_host}:{config.api_port}",
        "gossip": config.gossip_url,
        "digest": state_digest(node.state),
        "adapters": [a.name for a in node.telemetry.adapters] if node.telemetry else [],
    }
    log.info("ready %s", json.dumps(ready))
    if ready_file is not None:
        ready_file.write_text(json.dumps(ready))
    fatal = asyncio.create_task(node.wait_fatal())
    waiter = asyncio.create_task(stop.wait())
    done, _ = await asyncio.wait({fatal, waiter, gossip_task}, return_when=asyncio.FIRST_COMPLETED)
    code = 0
    for task in done:
        if task is not waiter and task.exception() is not None:
            log.critical("node stopping on error: %r", task.exception())
            code = 1
    for task in (fatal, waiter, gossip_task):
        task.cancel()
        with contextlib.suppress(BaseException):
            await task
    await api_runner.cleanup()
    await gossip_runner.cleanup()
    await node.close()
    return code


async def history(config: NodeConfig, entity: str, at_ms: int) -> dict[str, object]:
    """The entity as this node held it at ``at_ms``, rebuilt from the op log."""
    store = await Store.open(config.data_dir / "node.sqlite")
    try:
        registry = load_registry(config.models)
        schemas = load_schemas(registry=registry)
        # Replicated models first (immutable, so their whole log): the entity may use one.
        models = ReplicaState(config.name, schemas)
        for op in await store.ops():
            if op.delta.entity.startswith("_models/"):
                models.apply_many([op.delta])
        SharedModels(registry, schemas, shipped=frozenset()).adopt(models)
        state = ReplicaState(config.name, schemas)
        ops = await store.ops(entity=entity, until_ms=at_ms)
        for op in ops:
            state.apply_many([op.delta])
    finally:
        await store.close()
    if entity not in state.entities:
        raise LookupError(f"{entity} did not exist at this node at that time")
    out = _entity_json(state.entity(entity))
    out["as_of_ms"] = at_ms
    out["ops_replayed"] = len(ops)
    return out


def load(path: str) -> NodeConfig:
    return load_config(Path(path))
