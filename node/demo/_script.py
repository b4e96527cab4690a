"""The demo's story, step by step, each with an expectation checked over HTTP.

Every step prints what happens, then checks what a person would see on the
pages, through the same HTTP API the pages use. A step whose endpoint does
not exist on this build (alerts come with scoring, commands with the command
path) fails with ``missing`` set and says which endpoint — it never passes by
pretending.
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ._plants import WORN_MOTOR, PlantProcess

__all__ = ["DemoContext", "StepResult", "run_script"]

FIELD = "nextMaintenanceDate"


@dataclass(frozen=True, slots=True, kw_only=True)
class StepResult:
    number: int
    title: str
    ok: bool
    detail: str
    missing: str | None = None  # the endpoint this build lacks, when that is why it failed


class StepFailed(Exception):
    def __init__(self, detail: str, missing: str | None = None) -> None:
        super().__init__(detail)
        self.detail = detail
        self.missing = missing


class HttpError(Exception):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"{status}: {body}")
        self.status = status
        self.body = body


class DemoContext:
    """The running demo as the script sees it: nodes, tokens, links, plants."""

    def __init__(
        self,
        fleet: dict[str, Any],
        plants: dict[str, PlantProcess],
        *,
        worn_plant: str,
        say: Callable[[str], None],
        pace: float,
        alert_timeout: float,
    ) -> None:
        self.fleet = fleet
        self.api = {n["name"]: n["api"] for n in fleet["nodes"]}
        self.tokens = fleet["tokens"]
        self.control = fleet["proxy"]["control"]
        self.plants = plants
        self.worn_plant = worn_plant
        self.motor = f"{worn_plant}/line-1/{WORN_MOTOR}"
        self.say = say
        self.pace = pace
        self.alert_timeout = alert_timeout
        self.alert_id: str | None = None
        self.conflict: dict[str, Any] | None = None

    def call(
        self, node: str, method: str, path: str, body: Any = None, role: str = "viewer"
    ) -> Any:
        req = urllib.request.Request(
            self.api[node] + path,
            data=None if body is None else json.dumps(body).encode(),
            method=method,
            headers={
                "Authorization": f"Bearer {self.tokens[role]}",
                "Content-Type": "application/json",
            },
        )
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw = resp.read()
                ctype = resp.headers.get("Content-Type", "")
                return json.loads(raw) if "json" in ctype else raw.decode(errors="replace")
        except urllib.error.HTTPError as exc:
            text = exc.read().decode(errors="replace")
            try:
                parsed: Any = json.loads(text)
            except ValueError:
                parsed = text
            raise HttpError(exc.code, parsed) from None

    def links(self, path: str, body: dict[str, Any]) -> None:
        req = urllib.request.Request(
            self.control + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=10):
            pass

    def digests(self) -> dict[str, str]:
        return {n: self.call(n, "GET", "/v1/digest")["digest"] for n in self.api}

    def wait(self, what: str, predicate: Callable[[], Any], timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise StepFailed(f"timed out after {timeout:.0f} s waiting for {what}")
            time.sleep(0.1)

    def endpoint(self, node: str, method: str, path: str, **params: str) -> Any:
        """Call an endpoint another issue provides; StepFailed(missing=...) if absent."""
        query = f"?{urllib.parse.urlencode(params)}" if params else ""
        try:
            return self.call(node, method, path + query)
        except HttpError as exc:
            if exc.status == 404 and _route_missing(exc.body):
                raise StepFailed(
                    f"{method} {path} does not exist on this build", missing=f"{method} {path}"
                ) from None
            raise


def _route_missing(body: Any) -> bool:
    # The API answers an unknown route with aiohttp's 404 (error "http"); a
    # known route with an unknown id answers with its own error name.
    return not isinstance(body, dict) or body.get("error") in (None, "http")


# ------------------------------------------------------------------ steps


def step_fleet(c: DemoContext) -> str:
    def healthy() -> bool:
        for name in c.plants:
            adapters = c.call(name, "GET", "/v1/adapters")["adapters"]
            if len(adapters) < 2 or not all(a["healthy"] for a in adapters):
                return False
        return True

    c.wait("every plant's OPC UA and MQTT adapters to connect", healthy, 60)

    def flowing() -> bool:
        for name in c.plants:
            for asset, tag in (
                (f"{name}/line-1/motor-1", "speed"),
                (f"{name}/line-1/pump-1", "flowRate"),
            ):
                q = urllib.parse.urlencode({"entity": asset, "name": tag, "limit": 1})
                if not c.call(name, "GET", f"/v1/telemetry/samples?{q}")["samples"]:
                    return False
        return True

    c.wait("readings over OPC UA (motor) and MQTT (pump) at every plant", flowing, 60)
    c.wait(
        f"central to hold {c.motor}",
        lambda: any(
            e["id"] == c.motor for e in c.call("central", "GET", "/v1/entities")["entities"]
        ),
        30,
    )
    return "every plant ingests its motor over OPC UA and its pump over MQTT; central sees them"


def step_pages(c: DemoContext) -> str:
    missing = []
    for name in c.api:
        try:
            page = c.call(name, "GET", "/ui/login")
        except HttpError as exc:
            if exc.status == 404:
                missing.append(name)
                continue
            raise
        if "<form" not in str(page):
            raise StepFailed(f"{name}: /ui/login is not a sign-in page")
    if missing:
        raise StepFailed(
            "no dashboard pages on this build (GET /ui/login is 404)", missing="GET /ui/login"
        )
    return "every node serves its dashboard and sign-in page"


def step_wear(c: DemoContext) -> str:
    plant = c.plants[c.worn_plant]

    def active() -> dict[str, Any] | None:
        for r in plant.truth():
            if r["kind"] == "bearing_wear" and r["status"] in ("active", "ended"):
                return r
        return None

    record = c.wait("the bearing fault to start at the plant", active, 90)

    def seen() -> list[dict[str, Any]]:
        q = urllib.parse.urlencode(
            {"entity": c.motor, "name": "vibrationKurtosis", "from": record["start"], "limit": 5}
        )
        return c.call(c.worn_plant, "GET", f"/v1/telemetry/samples?{q}")["samples"]  # type: ignore[no-any-return]

    samples = c.wait(f"{c.worn_plant} to receive the worn motor's vibration", seen, 30)
    since = time.strftime("%H:%M:%S", time.localtime(record["start"]))
    return (
        f"{c.motor}: outer-race wear from {since}; "
        f"{c.worn_plant} receives its vibration (kurtosis {samples[-1]['value']:.2f})"
    )


def step_split(c: DemoContext) -> str:
    for other in c.api:
        if other != c.worn_plant:
            c.links(f"/links/{c.worn_plant}->{other}", {"down": True})
            c.links(f"/links/{other}->{c.worn_plant}", {"down": True})
    return f"every link to and from {c.worn_plant} is down (twinmesh fleet split {c.worn_plant})"


def step_reschedule(c: DemoContext) -> str:
    dots = []
    for node, value in ((c.worn_plant, "2027-03-01"), ("central", "2027-03-15")):
        ctx = c.call(node, "GET", f"/v1/entities/{c.motor}")["fields"][FIELD]["context"]
        answer = c.call(
            node,
            "PUT",
            f"/v1/entities/{c.motor}/fields/{FIELD}",
            {"value": value, "context": ctx},
            role="operator",
        )
        dots.append(f"{node} sets {value}")
        if answer["fields"][FIELD]["value"] != value:
            raise StepFailed(f"{node} did not take the write: {answer['fields'][FIELD]}")
    d = c.digests()
    if d[c.worn_plant] == d["central"]:
        raise StepFailed("the split plant and central hold the same state during the split")
    return f"{FIELD}: {'; '.join(dots)} — concurrently, neither has seen the other"


def _alerts(c: DemoContext, node: str) -> list[dict[str, Any]]:
    data = c.endpoint(node, "GET", "/v1/alerts", entity=c.motor)
    alerts = data.get("alerts", data) if isinstance(data, dict) else data
    return [a for a in alerts if isinstance(a, dict) and a.get("entity") == c.motor]


def step_alert_stays(c: DemoContext) -> str:
    found = c.wait(
        f"an alert on {c.motor} at {c.worn_plant}",
        lambda: [a for a in _alerts(c, c.worn_plant) if a.get("state") != "cleared"],
        c.alert_timeout,
    )
    alert = found[0]
    c.alert_id = alert["id"]
    at_central = [a for a in _alerts(c, "central") if a.get("id") == c.alert_id]
    if at_central:
        raise StepFailed("central has the alert while the plant is cut off")
    diagnosis = alert.get("diagnosis", {})
    return (
        f"alert {alert['id']} ({alert.get('severity')}, {diagnosis.get('kind')}: "
        f"{diagnosis.get('label')}) raised at {c.worn_plant}; central does not have it"
    )


def step_heal(c: DemoContext) -> str:
    c.links("/links", {"down": False})
    return "every link is up again (twinmesh fleet heal)"


def step_conflict(c: DemoContext) -> str:
    def queued() -> dict[str, Any] | None:
        for conflict in c.call("central", "GET", "/v1/conflicts")["conflicts"]:
            if conflict["entity"] == c.motor and conflict["field"] == FIELD:
                origins = {s["origin"] for s in conflict["siblings"]}
                if origins == {c.worn_plant, "central"}:
                    return conflict  # type: ignore[no-any-return]
        return None

    conflict = c.wait("the conflict in central's review queue", queued, 30)
    c.conflict = conflict
    sides = ", ".join(f"{s['value']} from {s['origin']}" for s in conflict["siblings"])
    return (
        f"central's review queue: {c.motor}.{FIELD} — {sides}; provisional "
        f"{conflict['provisional']['value']} (policy {conflict['policy']})"
    )


def step_alert_arrives(c: DemoContext) -> str:
    if c.alert_id is None:
        _alerts(c, "central")  # says whether the endpoint exists at all
        raise StepFailed("no alert was raised at the plant, so none can arrive")
    alert = c.wait(
        f"alert {c.alert_id} at central",
        lambda: next((a for a in _alerts(c, "central") if a.get("id") == c.alert_id), None),
        30,
    )
    lineage = alert.get("lineage") or {}
    if not lineage:
        raise StepFailed(f"alert {c.alert_id} reached central without its lineage")
    return f"alert {c.alert_id} is at central with its lineage ({', '.join(sorted(lineage))})"


def step_command_refused(c: DemoContext) -> str:
    # POST /v1/commands {entity, command, value} (the command path, issue 14).
    body = {"entity": c.motor, "command": "setSpeedSetpoint", "value": 99999.0}
    try:
        answer = c.call("central", "POST", "/v1/commands", body, role="operator")
    except HttpError as exc:
        if exc.status in (404, 405) and _route_missing(exc.body):
            raise StepFailed(
                "POST /v1/commands does not exist on this build", missing="POST /v1/commands"
            ) from None
        if exc.status in (400, 409, 422):
            reason = exc.body.get("reason") if isinstance(exc.body, dict) else exc.body
            return f"setSpeedSetpoint 99999 rpm at central: refused ({exc.status}): {reason}"
        raise
    state = answer.get("state") if isinstance(answer, dict) else None
    if state in ("refused", "rejected"):
        return f"setSpeedSetpoint 99999 rpm: refused: {answer.get('reason')}"
    raise StepFailed(f"a command far outside the envelope was accepted: {answer}")


def step_resolve(c: DemoContext) -> str:
    conflict = c.conflict
    if conflict is None:
        raise StepFailed("no conflict to resolve")
    c.call(
        "central",
        "POST",
        "/v1/conflict/resolve",
        {
            "entity": c.motor,
            "field": FIELD,
            "value": "2027-03-08",
            "context": conflict["context"],
            "reason": "bearing wear at the plant: the earlier date, moved a week for the spare",
        },
        role="reviewer",
    )
    start = time.monotonic()
    c.wait("every node to converge", lambda: len(set(c.digests().values())) == 1, 30)
    waited = time.monotonic() - start
    for node in c.api:
        item = c.call(node, "GET", f"/v1/entities/{c.motor}")["fields"][FIELD]
        if item["value"] != "2027-03-08" or item["conflict"]:
            raise StepFailed(f"{node} shows {item} after convergence")
    return (
        f"a reviewer at central resolves it to 2027-03-08 with a reason; all {len(c.api)} "
        f"nodes hold the same state {waited:.1f} s later, conflict closed everywhere"
    )


STEPS: tuple[tuple[str, Callable[[DemoContext], str]], ...] = (
    ("three plants and central ops ingest their machines", step_fleet),
    ("dashboards and viewer sign-in", step_pages),
    ("a bearing starts to wear at plant B", step_wear),
    ("plant B's WAN drops", step_split),
    ("plant B and central both reschedule that motor's maintenance", step_reschedule),
    ("the alert raised at plant B during the outage stays at plant B", step_alert_stays),
    ("the WAN returns", step_heal),
    ("the conflict appears in central's review queue", step_conflict),
    ("the alert arrives at central with its lineage", step_alert_arrives),
    ("a command is refused by the envelope", step_command_refused),
    ("the conflict is resolved and every node converges", step_resolve),
)


def run_script(c: DemoContext) -> list[StepResult]:
    results: list[StepResult] = []
    for number, (title, fn) in enumerate(STEPS, 1):
        c.say(f"{number:2}. {title}")
        try:
            detail = fn(c)
            results.append(StepResult(number=number, title=title, ok=True, detail=detail))
            c.say(f"    ok    {detail}")
        except StepFailed as exc:
            results.append(
                StepResult(
                    number=number, title=title, ok=False, detail=exc.detail, missing=exc.missing
                )
            )
            c.say(f"    FAIL  {exc.detail}")
        except (HttpError, urllib.error.URLError, OSError, KeyError, ValueError) as exc:
            results.append(
                StepResult(
                    number=number, title=title, ok=False, detail=f"{type(exc).__name__}: {exc}"
                )
            )
            c.say(f"    FAIL  {type(exc).__name__}: {exc}")
        if c.pace:
            time.sleep(c.pace)
    return results
