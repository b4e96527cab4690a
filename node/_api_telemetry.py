"""The telemetry part of the REST API: what the plant's adapters stored, and their health.

Raw telemetry stays in the plant (ARCHITECTURE.md), so these routes answer
from this node's buffer only. Times are epoch seconds (floats), values are
in the model's unit after normalisation, and every sample carries its
quality flags by name, so a reader sees *why* a value is suspect instead of
not seeing it at all.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from twinmesh.adapters import AdapterStatus, Sample

from ._tokens import Role

if TYPE_CHECKING:
    from ._node import Node

__all__ = ["add_telemetry_routes", "sample_json"]

_MAX_LIMIT = 10_000


def sample_json(sample: Sample, seq: int | None = None) -> dict[str, Any]:
    value = sample.value
    out: dict[str, Any] = {
        "entity": sample.entity,
        "name": sample.name,
        # NaN (a Bad reading without a value) is not JSON; null says "no value".
        "value": None if isinstance(value, float) and not math.isfinite(value) else value,
        "unit": sample.unit,
        "source_ts": sample.source_ts,
        "server_ts": sample.server_ts,
        "received_ts": sample.received_ts,
        "quality": list(sample.quality.names()),
        "adapter": sample.provenance.adapter,
        "source": sample.provenance.source,
        "id": sample.sample_id,
    }
    if seq is not None:
        out["seq"] = seq
    return out


def adapter_json(status: AdapterStatus) -> dict[str, Any]:
    return {
        "name": status.name,
        "kind": status.kind,
        "state": status.state.value,
        "healthy": status.healthy,
        "connected_since": status.connected_since,
        "last_error": status.last_error,
        "connects": status.connects,
        "failures": status.failures,
        "next_retry_in": status.next_retry_in,
        "samples": status.samples,
        "rejects": status.rejects,
        "rejects_by_reason": status.rejects_by_reason,
        "details": status.details,
    }


def _bad_query(reason: str) -> web.HTTPBadRequest:
    return web.HTTPBadRequest(
        text=json.dumps({"error": "bad-query", "reason": reason}), content_type="application/json"
    )


def _float(request: web.Request, key: str, default: float) -> float:
    raw = request.query.get(key)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if math.isnan(value):
        raise _bad_query(f"{key} must be a number, found {raw[:40]!r}")
    return value


def _int(request: web.Request, key: str, default: int, low: int, high: int) -> int:
    raw = request.query.get(key)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise _bad_query(f"{key} must be an integer in {low}..{high}, found {raw[:40]!r}")
    return int(raw)


def add_telemetry_routes(
    routes: web.RouteTableDef, node: Node, require: Callable[[web.Request, Role], str]
) -> None:
    def service() -> Any:
        if node.telemetry is None or node.telemetry.buffer is None:
            raise web.HTTPNotFound(
                text='{"error": "no-telemetry", "reason": "this node ingests no telemetry '
                '(no [telemetry] or [[adapter]] in its config)"}',
                content_type="application/json",
            )
        return node.telemetry

    @routes.get("/v1/adapters")
    async def adapters(request: web.Request) -> web.Response:
        require(request, Role.VIEWER)
        svc = service()
        return web.json_response({"adapters": [adapter_json(s) for s in svc.statuses()]})

    @routes.get("/v1/telemetry")
    async def tags(request: web.Request) -> web.Response:
        """Every known tag: its model spec and newest sample."""
        require(request, Role.VIEWER)
        svc = service()
        keys = sorted(set(svc.specs) | set(svc.latest))
        unmapped = set(svc.unmapped)
        out = []
        for key in keys:
            spec = svc.specs.get(key)
            latest = svc.latest.get(key)
            out.append(
                {
                    "entity": key[0],
                    "name": key[1],
                    "unit": spec.unit if spec else None,
                    "minimum": spec.minimum if spec else None,
                    "maximum": spec.maximum if spec else None,
                    "expected_interval": spec.expected_interval if spec else None,
                    "modelled": spec is not None,
                    "mapped": key not in unmapped,
                    "latest": sample_json(latest) if latest else None,
                }
            )
        return web.json_response({"tags": out, "last_seq": svc.buffer.last_seq})

    @routes.get("/v1/telemetry/samples")
    async def samples(request: web.Request) -> web.Response:
        """Raw samples of one tag by source time (``from`` inclusive, ``to`` exclusive),
        or, with ``after=SEQ``, every tag's samples in commit order (a cursor)."""
        require(request, Role.VIEWER)
        svc = service()
        limit = _int(request, "limit", 1000, 1, _MAX_LIMIT)
        if "after" in request.query:
            after = _int(request, "after", 0, 0, 2**63 - 1)
            rows = await svc.buffer.read_after(after, limit)
        else:
            entity = request.query.get("entity", "")
            name = request.query.get("name", "")
            if not entity or not name:
                return web.json_response(
                    {
                        "error": "bad-query",
                        "reason": "give entity and name (one tag), or after=SEQ (all tags)",
                    },
                    status=400,
                )
            rows = await svc.buffer.samples(
                entity,
                name,
                _float(request, "from", -math.inf),
                _float(request, "to", math.inf),
                limit=limit,
                newest_first=request.query.get("order") == "desc",
            )
        return web.json_response(
            {
                "samples": [sample_json(r.sample, r.seq) for r in rows],
                "last_seq": svc.buffer.last_seq,
            }
        )

    @routes.get("/v1/telemetry/events")
    async def events(request: web.Request) -> web.Response:
        """Quality events (STALE, STUCK, ...) after id ``after``."""
        require(request, Role.VIEWER)
        svc = service()
        rows = await svc.buffer.events(
            _int(request, "after", 0, 0, 2**63 - 1), _int(request, "limit", 1000, 1, _MAX_LIMIT)
        )
        return web.json_response(
            {
                "events": [
                    {
                        "id": r.id,
                        "kind": r.event.kind.value,
                        "entity": r.event.entity,
                        "name": r.event.name,
                        "at": r.event.at,
                        "detail": r.event.detail,
                    }
                    for r in rows
                ]
            }
        )

    @routes.get("/v1/telemetry/rejects")
    async def rejects(request: web.Request) -> web.Response:
        """Input the adapters could not turn into samples, and why."""
        require(request, Role.VIEWER)
        svc = service()
        rows = await svc.buffer.rejects(
            _int(request, "after", 0, 0, 2**63 - 1), _int(request, "limit", 1000, 1, _MAX_LIMIT)
        )
        return web.json_response(
            {
                "rejects": [
                    {
                        "id": r.id,
                        "adapter": r.reject.adapter,
                        "source": r.reject.source,
                        "reason": r.reject.reason,
                        "detail": r.reject.detail,
                        "payload": r.reject.payload[:256].decode("utf-8", "replace"),
                        "received_ts": r.reject.received_ts,
                    }
                    for r in rows
                ]
            }
        )

    @routes.get("/v1/telemetry/aggregates")
    async def aggregates(request: web.Request) -> web.Response:
        """Per-minute (``resolution=60``) or per-hour (3600) aggregates of one tag."""
        require(request, Role.VIEWER)
        svc = service()
        entity = request.query.get("entity", "")
        name = request.query.get("name", "")
        resolution = _int(request, "resolution", 60, 60, 3600)
        if not entity or not name or resolution not in (60, 3600):
            return web.json_response(
                {"error": "bad-query", "reason": "give entity, name and resolution 60 or 3600"},
                status=400,
            )
        rows = await svc.buffer.aggregates(
            entity,
            name,
            resolution,
            _float(request, "from", -math.inf),
            _float(request, "to", math.inf),
        )
        return web.json_response(
            {
                "aggregates": [
                    {
                        "bucket": a.bucket,
                        "count": a.count,
                        "good": a.good,
                        "flagged": a.flagged,
                        "min": a.min,
                        "max": a.max,
                        "mean": a.mean,
                        "last": a.last,
                        "last_ts": a.last_ts,
                    }
                    for a in rows
                ]
            }
        )
