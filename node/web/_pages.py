"""The pages: sign-in, fleet (live), review queue and conflicts, alerts, work
orders, models and audit. The asset page is in ``_asset.py``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import urllib.parse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp_jinja2
from aiohttp import web

from twinmesh.crdt import LocalProtocolError, MVRegister, ValueType

from .._api import decode_context, encode_context
from .._models import AUDIT_MODEL
from .._tokens import Role
from ._app import SECURITY_HEADERS, Pages
from ._fleet import fleet_rows
from ._optional import alerts_for, cosim_status, service, work_orders_for
from ._resolve import ResolveError, resolve_conflict
from ._session import Session, SessionError, check_origin

if TYPE_CHECKING:
    from .._node import Node

__all__ = ["add_pages"]

AGES = {"": None, "1h": 3600, "24h": 86400, "7d": 7 * 86400}


def _safe_next(target: str) -> str:
    # Only our own pages: never "//evil.example" or "https://...".
    if target.startswith("/ui/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/ui/fleet"


def parse_value(text: str, vtype: ValueType) -> Any:
    """A value typed into the resolve form, as the field's type wants it."""
    text = text.strip()
    if vtype is ValueType.DOUBLE:
        return float(text)
    if vtype is ValueType.INTEGER:
        return int(text)
    if vtype is ValueType.BOOLEAN:
        if text.lower() not in ("true", "false"):
            raise ValueError("expected true or false")
        return text.lower() == "true"
    if vtype is ValueType.ANY:
        try:
            return json.loads(text)
        except ValueError:
            return text
    return text


def audit_events(node: Node) -> list[dict[str, Any]]:
    events = []
    for e in node.state:
        if e.header.model == AUDIT_MODEL:
            events += [dict(v, id=k) for k, v in e.value("events").items()]
    events.sort(key=lambda ev: (ev.get("at_ms", 0), ev["id"]), reverse=True)
    return events


def add_pages(app: web.Application, pages: Pages) -> None:
    node = pages.node
    r = app.router

    # ------------------------------------------------------------ sign-in

    async def root(request: web.Request) -> web.Response:
        return pages.redirect("/ui/fleet")

    async def login_form(request: web.Request) -> web.Response:
        return pages.render(
            "login.html",
            request,
            pages.sessions.get(request),
            next=_safe_next(request.query.get("next", "")),
            error=None,
        )

    async def login(request: web.Request) -> web.Response:
        form = await request.post()
        token = form.get("token")
        target = _safe_next(str(form.get("next", "")))
        try:
            check_origin(request)
            if not isinstance(token, str) or not token.strip():
                raise SessionError("paste your access token")
            session = pages.sessions.sign_in(token)
        except SessionError as exc:
            return pages.render("login.html", request, None, 401, next=target, error=exc.reason)
        response = pages.redirect(target)
        pages.sessions.set_cookie(request, response, session)
        return response

    @pages.action(Role.VIEWER)
    async def logout(request: web.Request, session: Session, form: dict[str, str]) -> web.Response:
        pages.sessions.sign_out(session)
        response = pages.redirect("/ui/login")
        response.del_cookie("twinmesh_session", path="/")
        return response

    # ------------------------------------------------------------ fleet

    def fleet_context() -> dict[str, Any]:
        return {
            "rows": fleet_rows(node, pages.watch),
            "alerts_available": service(node, "alerts") is not None,
            "gossip_interval": node.config.gossip_interval,
        }

    @pages.page()
    async def fleet(request: web.Request, session: Session) -> web.Response:
        return pages.render("fleet.html", request, session, **fleet_context())

    @pages.page()
    async def fleet_live(request: web.Request, session: Session) -> web.StreamResponse:
        """Server-sent events: the fleet table's rows, re-rendered on every change
        of state and at least once a second (ages move on)."""
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", **SECURITY_HEADERS}
        )
        await response.prepare(request)
        pages.streams.add(response)
        env_render = app[_ENV_KEY].get_template("_fleet_rows.html")
        try:
            await response.write(b"retry: 1000\n\n")
            while not pages.closing:
                html = env_render.render(
                    now=node.clock(), me=node.config.name, session=session, **fleet_context()
                )
                data = "".join(f"data: {line}\n" for line in html.splitlines() or [""])
                await response.write(f"event: rows\n{data}\n".encode())
                pages.watch.changed.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(pages.watch.changed.wait(), timeout=1.0)
                if pages.sessions.get(request) is None:
                    break  # signed out or expired: stop streaming
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            pages.streams.discard(response)
        return response

    # ------------------------------------------------------------ review queue

    def conflict_rows(plant: str, asset: str, field: str, age: str) -> list[dict[str, Any]]:
        now_ms = node.clock() * 1000
        older = AGES.get(age)
        rows = []
        for c in node.state.conflicts():
            if plant and c.home != plant:
                continue
            if asset and asset not in c.entity:
                continue
            if field and c.field != field:
                continue
            oldest = min(s.time.wall_ms for s in c.siblings)
            if older is not None and now_ms - oldest < older * 1000:
                continue
            rows.append({"c": c, "oldest_ms": oldest, "age_s": (now_ms - oldest) / 1000})
        rows.sort(key=lambda row: row["oldest_ms"])
        return rows

    @pages.page()
    async def review(request: web.Request, session: Session) -> web.Response:
        q = request.query
        plant, asset, field, age = (q.get(k, "") for k in ("plant", "asset", "field", "age"))
        every = node.state.conflicts()
        return pages.render(
            "review.html",
            request,
            session,
            rows=conflict_rows(plant, asset, field, age if age in AGES else ""),
            plants=sorted({c.home for c in every}),
            fields=sorted({c.field for c in every}),
            total=len(every),
            f={"plant": plant, "asset": asset, "field": field, "age": age},
            ages=list(AGES),
        )

    def find_conflict(entity: str, field: str) -> Any:
        for c in node.state.conflicts():
            if c.entity == entity and c.field == field:
                return c
        return None

    def audit_entry(entry_id: str) -> dict[str, Any] | None:
        for e in node.state:
            if e.header.model == AUDIT_MODEL:
                found = e.value("events").get(entry_id)
                if found is not None:
                    return dict(found, id=entry_id)
        return None

    @pages.page()
    async def conflict(request: web.Request, session: Session) -> web.Response:
        q = request.query
        return render_conflict(
            request, session, q.get("entity", ""), q.get("field", ""), q.get("done", "")
        )

    def render_conflict(
        request: web.Request,
        session: Session,
        entity_id: str,
        field: str,
        done_id: str,
        error: str | None = None,
        status: int = 200,
    ) -> web.Response:
        entity = node.state.entities.get(entity_id)
        c = find_conflict(entity_id, field) if entity is not None else None
        done = audit_entry(done_id) if done_id else None
        if c is None and done is None:
            return pages.refuse(
                request,
                session,
                404,
                "No open conflict",
                f"{entity_id}.{field} has no open conflict on this node "
                "(it may have been resolved already; see the audit log).",
            )
        spec = entity.schema.fields.get(field) if entity is not None else None
        return pages.render(
            "conflict.html",
            request,
            session,
            status=status,
            c=c,
            entity_id=entity_id,
            field=field,
            spec=spec,
            context=encode_context(c.context) if c is not None else "",
            done=done,
            error=error,
            current=entity.value(field) if entity is not None and spec is not None else None,
        )

    @pages.action(Role.REVIEWER)
    async def resolve(request: web.Request, session: Session, form: dict[str, str]) -> web.Response:
        entity_id = form.get("entity", "")
        field = form.get("field", "")
        back = f"/ui/conflict?entity={_q(entity_id)}&field={_q(field)}"

        async def again(error: str, status: int) -> web.Response:
            return render_conflict(request, session, entity_id, field, "", error, status)

        entity = node.state.entities.get(entity_id)
        if entity is None or field not in entity.schema.fields:
            return pages.refuse(request, session, 404, "Unknown field", f"no {entity_id}.{field}")
        state = entity.fields.get(field)
        if not isinstance(state, MVRegister) or not state.is_conflict():
            return pages.refuse(
                request, session, 404, "No open conflict", f"{entity_id}.{field} is not in conflict"
            )
        choice = form.get("choice", "")
        try:
            if choice == "custom":
                value = parse_value(form.get("custom", ""), entity.schema.fields[field].value_type)
            elif choice.startswith("dot:"):
                picked = [s for s in state.siblings.values() if str(s.dot) == choice[4:]]
                if not picked:
                    return await again("that sibling is gone; read the conflict again", 409)
                value = picked[0].value
            else:
                return await again("choose one of the values, or enter one", 400)
        except ValueError as exc:
            return await again(f"the value you entered does not parse: {exc}", 400)
        try:
            ctx = decode_context(form.get("context", ""))
        except web.HTTPBadRequest:
            return await again("the form's context does not decode; reload the page", 400)
        try:
            entry_id = await resolve_conflict(
                node, entity, field, value, ctx, form.get("reason", ""), author=session.subject
            )
        except ResolveError as exc:
            return await again(exc.reason, exc.status)
        except LocalProtocolError as exc:
            return await again(f"refused: {exc.reason}", 422)
        return pages.redirect(back + "&done=" + _q(entry_id))

    # ------------------------------------------------------------ alerts, work orders

    @pages.page()
    async def alerts(request: web.Request, session: Session) -> web.Response:
        q = request.query
        filters = {k: q.get(k) or None for k in ("plant", "entity", "severity", "state")}
        found = alerts_for(node, **filters)
        return pages.render(
            "alerts.html",
            request,
            session,
            alerts=found,
            f={k: v or "" for k, v in filters.items()},
        )

    @pages.page()
    async def alert(request: web.Request, session: Session) -> web.Response:
        svc = service(node, "alerts")
        if svc is None:
            return pages.render("alerts.html", request, session, alerts=None, f={})
        try:
            found = svc.get(request.query.get("id", ""))
        except Exception:
            found = None
        if found is None:
            return pages.refuse(request, session, 404, "No such alert", "no alert with that id")
        return pages.render("alert.html", request, session, a=found)

    @pages.page()
    async def workorders(request: web.Request, session: Session) -> web.Response:
        q = request.query
        filters = {k: q.get(k) or None for k in ("plant", "entity", "state")}
        return pages.render(
            "workorders.html",
            request,
            session,
            orders=work_orders_for(node, **filters),
            f={k: v or "" for k, v in filters.items()},
        )

    # ------------------------------------------------------------ registries, audit

    @pages.page()
    async def models(request: web.Request, session: Session) -> web.Response:
        use: dict[str, dict[str, int]] = {}
        fmus: dict[str, dict[str, Any]] = {}
        cosim_here = service(node, "cosim") is not None
        for e in node.state:
            use.setdefault(e.header.model, {}).setdefault(e.header.home, 0)
            use[e.header.model][e.header.home] += 1
            if cosim_here:
                status = cosim_status(node, e.id)
                if isinstance(status, dict):
                    for fmu in _fmus_of(status):
                        key = f"{fmu.get('name')}@{fmu.get('sha256', '')}"
                        row = fmus.setdefault(key, dict(fmu, assets=[]))
                        row["assets"].append(e.id)
        rows = []
        for dtmi in sorted(node.registry):
            model = node.registry.models.get(dtmi)
            rows.append(
                {
                    "dtmi": dtmi,
                    "name": _display_name(model),
                    "version": dtmi.rsplit(";", 1)[-1] if ";" in dtmi else "",
                    "use": sorted(use.get(dtmi, {}).items()),
                    "fields": len(node.schemas[dtmi].fields) if dtmi in node.schemas else 0,
                }
            )
        return pages.render(
            "models.html",
            request,
            session,
            models=rows,
            refused=sorted(node.shared_models.refused.items()),
            fmus=list(fmus.values()) if cosim_here else None,
        )

    @pages.page()
    async def audit(request: web.Request, session: Session) -> web.Response:
        entity = request.query.get("entity", "")
        events = [e for e in audit_events(node) if not entity or e.get("entity") == entity]
        return pages.render(
            "audit.html", request, session, events=events[:500], entity=entity, total=len(events)
        )

    async def static_file(request: web.Request) -> web.StreamResponse:
        name = request.match_info["name"]
        path = _STATIC / name
        if name not in _STATIC_FILES or not path.is_file():
            return web.Response(status=404, text="not found")
        response = web.FileResponse(path, headers={"Cache-Control": "max-age=300"})
        return response

    r.add_get("/", root)
    r.add_get("/ui", root)
    r.add_get("/ui/", root)
    r.add_get("/ui/login", login_form)
    r.add_post("/ui/login", login)
    r.add_post("/ui/logout", logout)
    r.add_get("/ui/fleet", fleet)
    r.add_get("/ui/fleet/live", fleet_live)
    r.add_get("/ui/review", review)
    r.add_get("/ui/conflict", conflict)
    r.add_post("/ui/conflict/resolve", resolve)
    r.add_get("/ui/alerts", alerts)
    r.add_get("/ui/alert", alert)
    r.add_get("/ui/workorders", workorders)
    r.add_get("/ui/models", models)
    r.add_get("/ui/audit", audit)
    r.add_get("/ui/static/{name}", static_file)


def _q(value: Any) -> str:
    return urllib.parse.quote(str(value), safe="")


def _fmus_of(status: dict[str, Any]) -> list[dict[str, Any]]:
    found = status.get("fmus") or status.get("lineage", {}).get("fmus") or []
    if isinstance(status.get("fmu"), dict):
        found = [status["fmu"], *found]
    return [f for f in found if isinstance(f, dict)]


def _display_name(model: Any) -> str:
    name = getattr(model, "display_name", None)
    return str(getattr(name, "text", "") or "")


_ENV_KEY = aiohttp_jinja2.APP_KEY
_STATIC = Path(__file__).resolve().parent / "static"
_STATIC_FILES = frozenset({"app.css", "live.js"})
