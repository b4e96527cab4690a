"""HTTP routes, OpenAPI paths and /metrics lines for scoring, alerts and work orders."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from aiohttp import web

from twinmesh.crdt import LocalProtocolError

from .._tokens import Role
from ..alerts._policy import PolicyError
from ._engine import DETECTORS
from ._features import FEATURE_SET

__all__ = ["add_scoring_routes", "openapi_paths", "scoring_metrics"]


def _err(status: int, error: str, reason: str) -> web.Response:
    return web.json_response({"error": error, "reason": reason}, status=status)


async def _json_body(request: web.Request) -> dict[str, Any]:
    try:
        data = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "bad-json", "reason": "the body is not JSON"}),
            content_type="application/json",
        ) from None
    if not isinstance(data, dict):
        raise web.HTTPBadRequest(
            text=json.dumps({"error": "bad-body", "reason": "expected a JSON object"}),
            content_type="application/json",
        )
    return data


def add_scoring_routes(routes: web.RouteTableDef, node: Any, require: Callable[..., str]) -> None:
    add_scoring_asset_routes(routes, node, require)

    @routes.get("/v1/alerts")
    async def list_alerts(request: web.Request) -> web.Response:
        require(request, Role.VIEWER)
        q = request.query
        alerts = node.alerts.list(
            entity=q.get("entity"),
            plant=q.get("plant"),
            severity=q.get("severity"),
            state=q.get("state"),
        )
        return web.json_response({"alerts": alerts, "policy_version": node.alerts.policy().version})

    @routes.get("/v1/alerts/policy")
    async def get_policy(request: web.Request) -> web.Response:
        require(request, Role.VIEWER)
        p = node.alerts.policy()
        return web.json_response({"version": p.version, "document": json.loads(p.document)})

    @routes.put("/v1/alerts/policy")
    async def put_policy(request: web.Request) -> web.Response:
        who = require(request, Role.OPERATOR)
        data = await _json_body(request)
        try:
            p = await node.alerts.set_policy(data, author=who)
        except PolicyError as exc:
            return _err(400, "bad-policy", str(exc))
        return web.json_response({"version": p.version, "document": json.loads(p.document)})

    @routes.get("/v1/alerts/{id}")
    async def get_alert(request: web.Request) -> web.Response:
        require(request, Role.VIEWER)
        a = node.alerts.get(request.match_info["id"])
        if a is None:
            return _err(404, "unknown-alert", f"no alert {request.match_info['id']!r}")
        return web.json_response(a)

    async def act(request: web.Request) -> web.Response:
        who = require(request, Role.OPERATOR)
        note = ""
        if request.can_read_body:
            note = str((await _json_body(request)).get("note", ""))
        try:
            a = await node.alerts.act(
                request.match_info["id"], request.path.rsplit("/", 1)[1], by=who, note=note
            )
        except KeyError:
            return _err(404, "unknown-alert", f"no alert {request.match_info['id']!r}")
        except LocalProtocolError as exc:
            return _err(409, "bad-transition", exc.reason)
        return web.json_response(a)

    for action in ("ack", "clear"):
        routes.post(f"/v1/alerts/{{id}}/{action}")(act)

    @routes.get("/v1/workorders")
    async def list_wo(request: web.Request) -> web.Response:
        require(request, Role.VIEWER)
        q = request.query
        return web.json_response(
            {
                "work_orders": node.work_orders.list(state=q.get("state"), asset=q.get("asset")),
                "precision": node.work_orders.precision(),
                "outbox": node.outbox.status() if node.outbox is not None else None,
            }
        )

    @routes.get("/v1/workorders/{plant}/{wo}")
    async def get_wo(request: web.Request) -> web.Response:
        require(request, Role.VIEWER)
        wo_id = f"{request.match_info['plant']}/workorders/{request.match_info['wo']}"
        wo = node.work_orders.get(wo_id)
        if wo is None:
            return _err(404, "unknown-work-order", f"no work order {wo_id!r}")
        if node.outbox is not None:
            wo["delivery"] = node.outbox.delivery(wo_id)
        return web.json_response(wo)

    async def transition(request: web.Request) -> web.Response:
        who = require(request, Role.OPERATOR)
        data = await _json_body(request) if request.can_read_body else {}
        wo_id = f"{request.match_info['plant']}/workorders/{request.match_info['wo']}"
        try:
            wo = await node.work_orders.transition(
                wo_id,
                request.path.rsplit("/", 1)[1],
                by=who,
                outcome=data.get("outcome"),
                note=data.get("note", ""),
                scheduled_for=data.get("scheduled_for"),
            )
        except KeyError:
            return _err(404, "unknown-work-order", f"no work order {wo_id!r}")
        except LocalProtocolError as exc:
            return _err(409, "bad-transition", exc.reason)
        return web.json_response(wo)

    for action in ("approve", "schedule", "complete", "cancel"):
        routes.post(f"/v1/workorders/{{plant}}/{{wo}}/{action}")(transition)

    @routes.get("/v1/scoring")
    async def scoring(request: web.Request) -> web.Response:
        require(request, Role.VIEWER)
        svc = node.scoring
        body: dict[str, Any] = {
            "feature_set": FEATURE_SET.describe(),
            "detectors": list(DETECTORS),
            "policy_version": node.alerts.policy().version,
        }
        if svc is not None:
            eng = svc.engine
            body["engine"] = eng.config.describe()
            body["assets"] = [eng.describe(e) for e in sorted(eng.assets)]
            body["samples_scored"] = svc.samples
            body["lag_seconds"] = round(svc.lag(), 3)
            body["alert_latency_seconds"] = svc.alert_latency()
            body["decision_latency_seconds"] = svc.decision_latency()
            body["cpu_seconds"] = round(svc.cpu_seconds, 3)
        return web.json_response(body)


def add_scoring_asset_routes(
    routes: web.RouteTableDef, node: Any, require: Callable[..., str]
) -> None:
    """One asset's baseline, detectors and retrains; an operator's retrain."""

    @routes.get("/v1/scoring/assets/{entity:.+}")
    async def asset(request: web.Request) -> web.Response:
        require(request, Role.VIEWER)
        entity = request.match_info["entity"]
        got = node.scoring.engine.describe(entity) if node.scoring is not None else None
        if got is None:
            return _err(404, "unknown-asset", f"no scored asset {entity!r} on this node")
        got["feature_set"] = FEATURE_SET.version
        return web.json_response(got)

    @routes.post("/v1/scoring/retrain/{entity:.+}")
    async def retrain(request: web.Request) -> web.Response:
        who = require(request, Role.OPERATOR)
        entity = request.match_info["entity"]
        data = await _json_body(request) if request.can_read_body else {}
        reason = data.get("reason", "")
        if not isinstance(reason, str) or not 0 < len(reason) <= 500:
            return _err(400, "bad-reason", "reason: a string of 1..500 characters is required")
        svc = node.scoring
        if svc is None or not svc.engine.retrain(
            entity, reason=f"{reason} (by {who})", at=node.clock()
        ):
            return _err(404, "unknown-asset", f"no scored asset {entity!r} on this node")
        await svc.persist_now()
        return web.json_response(svc.engine.describe(entity))


def openapi_paths(
    op: Any, path_param: Any, query_param: Any, auth: tuple[int, ...]
) -> dict[str, Any]:
    alert_filters = [query_param(n, False) for n in ("entity", "plant", "severity", "state")]
    wo = [path_param("plant"), path_param("wo")]
    return {
        "/v1/alerts": {
            "get": op(
                "Alerts (filter by asset, plant, severity, state)",
                "viewer",
                "the alerts",
                *auth,
                params=alert_filters,
            )
        },
        "/v1/alerts/policy": {
            "get": op("The alert policy in force and its version", "viewer", "the policy", *auth),
            "put": op(
                "Replace the alert policy (version must increase)",
                "operator",
                "the new policy",
                400,
                *auth,
                body={"type": "object"},
            ),
        },
        "/v1/alerts/{id}": {
            "get": op(
                "One alert with its events and full lineage",
                "viewer",
                "the alert",
                *auth,
                404,
                params=[path_param("id")],
            )
        },
        "/v1/alerts/{id}/ack": {
            "post": op(
                "Acknowledge an alert",
                "operator",
                "the alert",
                *auth,
                404,
                409,
                params=[path_param("id")],
            )
        },
        "/v1/alerts/{id}/clear": {
            "post": op(
                "Clear an alert",
                "operator",
                "the alert",
                *auth,
                404,
                409,
                params=[path_param("id")],
            )
        },
        "/v1/workorders": {
            "get": op(
                "Work orders, detector precision, outbox",
                "viewer",
                "the work orders",
                *auth,
                params=[query_param("state", False), query_param("asset", False)],
            )
        },
        "/v1/workorders/{plant}/{wo}": {
            "get": op(
                "One work order and its delivery", "viewer", "the work order", *auth, 404, params=wo
            )
        },
        **{
            f"/v1/workorders/{{plant}}/{{wo}}/{a}": {
                "post": op(
                    f"Work order transition: {a}",
                    "operator",
                    "the work order",
                    400,
                    *auth,
                    404,
                    409,
                    params=wo,
                )
            }
            for a in ("approve", "schedule", "complete", "cancel")
        },
        "/v1/scoring/assets/{entity}": {
            "get": op(
                "One asset's baseline, detectors, model version and retrains with reasons",
                "viewer",
                "the asset's scoring state",
                *auth,
                404,
                params=[path_param("entity")],
            )
        },
        "/v1/scoring/retrain/{entity}": {
            "post": op(
                "Relearn an asset's baseline from a fresh warm-up (reason recorded)",
                "operator",
                "the asset's scoring state",
                400,
                *auth,
                404,
                params=[path_param("entity")],
                body={"type": "object", "properties": {"reason": {"type": "string"}}},
            )
        },
        "/v1/scoring": {
            "get": op(
                "Feature set, detector and model versions, baselines, retrains with reasons",
                "viewer",
                "scoring status",
                *auth,
            )
        },
    }


def scoring_metrics(node: Any, metric: Callable[..., None]) -> None:
    svc = node.scoring
    if svc is not None:
        metric(
            "scoring_samples_total", "counter", "Samples consumed by scoring.", [("", svc.samples)]
        )
        metric(
            "scoring_frames_total",
            "counter",
            "Frames (one asset, one source time) scored.",
            [("", svc.engine.frames_scored)],
        )
        metric(
            "scoring_lag_seconds",
            "gauge",
            "now - receive time of the newest sample scored.",
            [("", round(svc.lag(), 3))],
        )
        for name, latency, what in (
            ("alert", svc.alert_latency(), "its alert durable in the log (last 10,000 alerts)"),
            ("decision", svc.decision_latency(), "its frame's verdict durable (last 10,000)"),
        ):
            metric(
                f"scoring_{name}_latency_seconds",
                "summary",
                f"Sample received -> {what}.",
                [
                    ('{quantile="0.5"}', latency["p50"]),
                    ('{quantile="0.99"}', latency["p99"]),
                    ("_count", latency["count"]),
                ],
            )
        metric(
            "scoring_cpu_seconds_total",
            "counter",
            "CPU time spent scoring (features, detectors, diagnosis, alert policy).",
            [("", round(svc.cpu_seconds, 3))],
        )
        metric(
            "scoring_retrains_total",
            "counter",
            "Baselines learned (warm-up and drift).",
            [("", len(svc.engine.retrains))],
        )
    counts = node.alerts.counts()
    metric(
        "alerts",
        "gauge",
        "Alerts by state.",
        [(f'{{state="{k}"}}', v) for k, v in sorted(counts.items())],
    )
    ob = node.outbox
    if ob is not None:
        st = ob.counters
        metric(
            "webhook_deliveries_total",
            "counter",
            "Work-order webhook deliveries by outcome.",
            [(f'{{outcome="{k}"}}', v) for k, v in sorted(st.items())],
        )
