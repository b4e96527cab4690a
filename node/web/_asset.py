"""The asset pages: the list of twins, and one twin with everything a plant
engineer asks about it — properties (desired beside reported), model, a chart
of its telemetry with what physics expected, quality flags, alerts with their
lineage, work orders, lifecycle, commands and history (time travel)."""

from __future__ import annotations

import datetime as dt
import math
from typing import TYPE_CHECKING, Any

from aiohttp import web

from twinmesh.crdt import MVRegister, ReplicaState

from .._api import _entity_json
from .._models import AUDIT_MODEL
from .._shared_models import MODEL_DOCUMENT
from .._tokens import Role
from ..commands import CommandError
from ..lifecycle import TRANSITIONS, LifecycleError
from ._app import Pages, _q
from ._chart import Point, Series, render_chart
from ._optional import alerts_for, cosim_status, service, work_orders_for
from ._session import Session

if TYPE_CHECKING:
    from .._node import Node

__all__ = ["add_asset_pages"]

WINDOWS = {"5m": 300, "15m": 900, "1h": 3600, "6h": 6 * 3600, "24h": 86400}
SUFFIXES = ("expected", "residual", "score")
_HIDDEN_MODELS = {AUDIT_MODEL, MODEL_DOCUMENT}


def _shown_unit(unit: str | None) -> str:
    """A unit as a person reads it: dimensionless quantities (UCUM "1", such as
    kurtosis or a ratio) show no unit rather than a stray "1"."""
    return "" if not unit or unit == "1" else unit


def _parse_at(text: str) -> int | None:
    """A time-travel instant from the form (``datetime-local``, read as UTC)."""
    if not text:
        return None
    if text.isdigit():
        return int(text)
    try:
        parsed = dt.datetime.fromisoformat(text)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=dt.UTC)
    return int(parsed.timestamp() * 1000)


def _tags_of(node: Node, entity_id: str) -> list[str]:
    svc = node.telemetry
    if svc is None:
        return []
    names = [n for (e, n) in svc.specs if e == entity_id]
    names += sorted(n for (e, n) in svc.latest if e == entity_id and n not in names)
    return names


async def _series(node: Node, entity_id: str, name: str, t0: float, t1: float) -> list[Point]:
    svc = node.telemetry
    assert svc is not None and svc.buffer is not None
    rows = await svc.buffer.samples(entity_id, name, t0, t1, limit=20_000)
    out = []
    for row in rows:
        v = row.sample.value
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        out.append(
            Point(t=row.sample.source_ts, v=float(v), flags=tuple(row.sample.quality.names()))
        )
    return out


def add_asset_pages(app: web.Application, pages: Pages) -> None:
    node = pages.node
    r = app.router

    @pages.page()
    async def assets(request: web.Request, session: Session) -> web.Response:
        q = request.query.get("q", "")
        plant = request.query.get("plant", "")
        conflicted = {c.entity for c in node.state.conflicts()}
        rows = []
        for e in sorted(node.state, key=lambda e: e.id):
            if e.header.model in _HIDDEN_MODELS or e.id.startswith("_"):
                continue
            if q and q not in e.id:
                continue
            if plant and e.header.home != plant:
                continue
            rows.append(
                {
                    "id": e.id,
                    "model": e.header.model,
                    "home": e.header.home,
                    "lifecycle": node.lifecycle.state(e.id).value,
                    "has_lifecycle": node.lifecycle.has_lifecycle(e.id),
                    "conflict": e.id in conflicted,
                }
            )
        homes = sorted({e.header.home for e in node.state if e.header.model not in _HIDDEN_MODELS})
        return pages.render(
            "assets.html", request, session, rows=rows, q=q, plant=plant, homes=homes
        )

    @pages.page()
    async def asset(request: web.Request, session: Session) -> web.Response:
        return await render_asset(request, session, request.query)

    async def render_asset(
        request: web.Request,
        session: Session,
        query: Any,
        error: str | None = None,
        status: int = 200,
    ) -> web.Response:
        entity_id = query.get("id", "")
        entity = node.state.entities.get(entity_id)
        if entity is None:
            return pages.refuse(
                request, session, 404, "Unknown asset", f"this node holds no twin {entity_id!r}"
            )
        view = _entity_json(entity)
        # ---- telemetry chart
        tags = _tags_of(node, entity_id)
        observed = [t for t in tags if "." not in t]
        window = query.get("window", "15m")
        if window not in WINDOWS:
            window = "15m"
        chosen = query.get("series", "")
        if chosen not in observed:
            chosen = observed[0] if observed else ""
        chart = None
        flags_seen: dict[str, int] = {}
        latest_rows = []
        if chosen and node.telemetry is not None and node.telemetry.buffer is not None:
            t1 = node.clock()
            t0 = t1 - WINDOWS[window]
            spec = node.telemetry.specs.get((entity_id, chosen))
            unit = _shown_unit(spec.unit if spec is not None else None)
            series = [
                Series(
                    label=chosen,
                    points=await _series(node, entity_id, chosen, t0, t1),
                    css="observed",
                )
            ]
            extras = []
            for suffix in SUFFIXES:
                # Co-simulation and scoring append their series to the buffer
                # directly, not through ingestion, so they are not in ``latest``:
                # ask the buffer for the window instead of the list of live tags.
                name = f"{chosen}.{suffix}"
                pts = await _series(node, entity_id, name, t0, t1)
                if pts:
                    (series if suffix == "expected" else extras).append(
                        Series(label=name, points=pts, css=suffix)
                    )
            # Data younger than the window: start the axis at the first sample
            # (said under the chart) instead of drawing mostly empty space.
            first = min((p.t for s in series + extras for p in s.points), default=t0)
            data_since = first if first > t0 + 0.05 * (t1 - t0) else None
            if data_since is not None:
                t0 = max(t0, first - 0.02 * (t1 - first))
            for p in series[0].points:
                for flag in p.flags:
                    flags_seen[flag] = flags_seen.get(flag, 0) + 1
            chart = {
                "main": render_chart(
                    title=f"{chosen} over the last {window}",
                    unit=unit,
                    series=series,
                    t0=t0,
                    t1=t1,
                    chart_id="chart-main",
                ),
                "extra": [
                    render_chart(
                        title=s.label,
                        unit=unit if s.css == "residual" else "",
                        series=[s],
                        t0=t0,
                        t1=t1,
                        chart_id=f"chart-{s.css}",
                    )
                    for s in extras
                ],
                "count": len(series[0].points),
                "data_since": data_since,
                "has_expected": len(series) > 1,
                "labels": [s.label for s in series + extras],
            }
        if node.telemetry is not None:
            for name in tags:
                sample = node.telemetry.latest.get((entity_id, name))
                spec = node.telemetry.specs.get((entity_id, name))
                v = sample.value if sample is not None else None
                latest_rows.append(
                    {
                        "name": name,
                        "value": None if isinstance(v, float) and not math.isfinite(v) else v,
                        "unit": _shown_unit(
                            (sample.unit if sample is not None else None)
                            or (spec.unit if spec else None)
                        ),
                        "flags": list(sample.quality.names()) if sample is not None else [],
                        "ts": sample.source_ts if sample is not None else None,
                        "range": (spec.minimum, spec.maximum) if spec is not None else None,
                    }
                )
        # ---- desired vs reported (commands)
        commands = service(node, "commands")
        desired = commands.desired_view(entity_id) if commands is not None else None
        command_rows = commands.history(entity_id) if commands is not None else None
        command_specs = commands.specs_for(entity_id) if commands is not None else None
        # ---- history (time travel)
        at_text = query.get("at", "")
        at_ms = _parse_at(at_text)
        past = None
        ops = []
        if node.store is not None:
            records = await node.store.ops(entity=entity_id)
            ops = [
                {
                    "at_ms": o.applied_ms,
                    "origin": o.origin,
                    "seq": o.seq,
                    "author": o.delta.author,
                    "field": o.delta.field or "(created)",
                }
                for o in records[-40:]
            ][::-1]
            if at_ms is not None:
                state = ReplicaState(node.config.name, node.schemas)
                replayed = [o for o in records if o.applied_ms <= at_ms]
                for o in replayed:
                    state.apply_many([o.delta])
                past = {
                    "at_ms": at_ms,
                    "ops": len(replayed),
                    "entity": _entity_json(state.entities[entity_id])
                    if entity_id in state.entities
                    else None,
                }
        lifecycle = node.lifecycle.state(entity_id)
        audit = [
            dict(v, id=k)
            for e in node.state
            if e.header.model == AUDIT_MODEL
            for k, v in e.value("events").items()
            if v.get("entity") == entity_id
        ]
        audit.sort(key=lambda ev: ev.get("at_ms", 0), reverse=True)
        conflicts = {c.field for c in node.state.conflicts() if c.entity == entity_id}
        return pages.render(
            "asset.html",
            request,
            session,
            status=status,
            error=error,
            notice=query.get("notice", ""),
            e=view,
            entity=entity,
            conflicts=conflicts,
            model=node.registry.models.get(entity.header.model),
            tags=observed,
            chosen=chosen,
            window=window,
            windows=list(WINDOWS),
            chart=chart,
            flags_seen=sorted(flags_seen.items()),
            latest=latest_rows,
            telemetry_here=node.telemetry is not None,
            alerts=alerts_for(node, entity=entity_id),
            orders=work_orders_for(node, entity=entity_id),
            cosim=cosim_status(node, entity_id),
            lifecycle=lifecycle.value,
            has_lifecycle=node.lifecycle.has_lifecycle(entity_id),
            next_states=sorted(s.value for s in TRANSITIONS[lifecycle]),
            archived=node.lifecycle.archived(entity_id),
            desired=desired,
            commands=command_rows,
            command_specs=command_specs,
            commands_here=commands is not None,
            at_text=at_text,
            past=past,
            ops=ops,
            audit=audit[:50],
            is_mv=lambda name: isinstance(entity.fields.get(name), MVRegister),
        )

    @pages.action(Role.OPERATOR)
    async def lifecycle_action(
        request: web.Request, session: Session, form: dict[str, str]
    ) -> web.Response:
        entity_id = form.get("entity", "")
        try:
            await node.lifecycle.transition(
                entity_id, form.get("to", ""), author=session.subject, reason=form.get("reason", "")
            )
        except LifecycleError as exc:
            return await render_asset(request, session, {"id": entity_id}, exc.reason, 422)
        return pages.redirect(
            f"/ui/asset?id={_q(entity_id)}&notice={_q('lifecycle changed')}#lifecycle"
        )

    @pages.action(Role.OPERATOR)
    async def command_action(
        request: web.Request, session: Session, form: dict[str, str]
    ) -> web.Response:
        entity_id = form.get("entity", "")
        try:
            value = float(form.get("value", "").strip())
        except ValueError:
            return await render_asset(
                request, session, {"id": entity_id}, "the value must be a number", 400
            )
        try:
            await node.commands.issue(
                entity_id, form.get("command", ""), value, by=session.subject, role=session.role
            )
        except CommandError as exc:
            return await render_asset(request, session, {"id": entity_id}, exc.reason, 422)
        return pages.redirect(f"/ui/asset?id={_q(entity_id)}&notice={_q('command sent')}#commands")

    @pages.action(Role.APPROVER)
    async def approve_action(
        request: web.Request, session: Session, form: dict[str, str]
    ) -> web.Response:
        entity_id = form.get("entity", "")
        try:
            await node.commands.approve(form.get("id", ""), by=session.subject, role=session.role)
        except CommandError as exc:
            return await render_asset(request, session, {"id": entity_id}, exc.reason, 422)
        return pages.redirect(
            f"/ui/asset?id={_q(entity_id)}&notice={_q('command approved')}#commands"
        )

    r.add_post("/ui/asset/command", command_action)
    r.add_post("/ui/asset/approve", approve_action)
    r.add_get("/ui/assets", assets)
    r.add_get("/ui/asset", asset)
    r.add_post("/ui/asset/lifecycle", lifecycle_action)
