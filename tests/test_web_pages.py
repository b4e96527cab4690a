"""The pages, in a real browser against a real fleet.

Real components only: a fleet of node processes (plant-a, plant-b, central)
over loopback with mutual TLS and a link proxy, plant-a fed by the synthetic
plant's OPC UA server (``twinmesh plant simulate``, one motor), and headless
Chromium from the OS (``/usr/bin/chromium``) driven by Playwright — never a
downloaded browser. Access rules are checked over plain HTTP as well (an
attacker has no browser manners). A screenshot of every page goes to
``TWINMESH_SCREENSHOTS`` (default: ``screenshots/`` in the worktree, ignored by
git) so a person can look at them.
"""

from __future__ import annotations

import http.client
import json
import os
import re
import select
import signal
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _brokers import free_port
from node_helpers import Fleet, running_fleet, wait_until

CHROMIUM = "/usr/bin/chromium"
pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason="needs the OS chromium (apt-get install chromium)"
)
playwright_sync = pytest.importorskip("playwright.sync_api")

SHOTS = Path(os.environ.get("TWINMESH_SCREENSHOTS", Path(__file__).parent.parent / "screenshots"))
MOTOR = "plant-a/line-1/motor-1"
PLANT = """
[plant]
site = "plant-a"
seed = 5
sample_interval = 0.2
out = "out"

[opcua]
endpoint = "opc.tcp://127.0.0.1:{port}/twinmesh/plant-a/"
history = false

[[asset]]
name = "motor-1"
kind = "motor"
line = "line-1"
"""
XSS = '<script>document.title="pwned"</script><img src=x onerror=alert(1)>'


class Plant:
    """``twinmesh plant simulate`` (OPC UA only) in a child process."""

    def __init__(self, config: Path) -> None:
        self.log = config.parent / "plant.log"
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "twinmesh", "plant", "simulate", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=open(self.log, "ab"),  # noqa: SIM115 - the child owns it
            start_new_session=True,
        )
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, self.log.read_text()
            if select.select([self.proc.stdout], [], [], 0.5)[0]:
                line = self.proc.stdout.readline().decode()
                if line.startswith("READY "):
                    self.ready: dict[str, Any] = json.loads(line[6:])
                    return
        raise AssertionError("the plant did not print READY")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Fleet]:
    base = tmp_path_factory.mktemp("web")
    config = base / "plant" / "plant.toml"
    config.parent.mkdir()
    config.write_text(PLANT.format(port=free_port()))
    plant = Plant(config)
    try:
        # Ingestion and co-simulation of the motor (node-cosim.toml): the asset page's
        # chart has the physics' expected series beside the observed one.
        files = plant.ready["files"]
        extra = base / "node-extra.toml"
        extra.write_text(
            Path(files["node_telemetry"]).read_text() + "\n" + Path(files["node_cosim"]).read_text()
        )
        telemetry = {"plant-a": extra}
        with running_fleet(base / "fleet", plants=2, telemetry=telemetry) as f:
            yield f
    finally:
        plant.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with playwright_sync.sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=[
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--no-first-run",
            ],
        )
        try:
            yield b
        finally:
            b.close()


def shot(page: Any, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def signed_in(browser: Any, fleet: Fleet, node: str, role: str = "admin") -> Any:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(15_000)
    page.goto(fleet.nodes[node]["api"] + "/ui/fleet")
    assert "/ui/login" in page.url  # not signed in: sent to the sign-in page
    page.fill("#token", fleet.tokens[role])
    page.click("button[type=submit]")
    page.wait_for_url(re.compile(r".*/ui/fleet$"))
    return page


# ------------------------------------------------------------------ plain HTTP


class Client:
    """A cookie-keeping HTTP client that behaves like nothing but HTTP."""

    def __init__(self, fleet: Fleet, node: str) -> None:
        url = urllib.parse.urlsplit(fleet.nodes[node]["api"])
        self.host, self.port = url.hostname or "", url.port or 80
        self.origin = f"http://{self.host}:{self.port}"
        self.cookie = ""

    def req(
        self, method: str, path: str, form: dict[str, str] | None = None, **headers: str
    ) -> tuple[int, dict[str, str], str]:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        h = dict(headers)
        if self.cookie:
            h["Cookie"] = self.cookie
        body = None
        if form is not None:
            body = urllib.parse.urlencode(form)
            h["Content-Type"] = "application/x-www-form-urlencoded"
        try:
            conn.request(method, path, body=body, headers=h)
            resp = conn.getresponse()
            out = resp.read().decode()
            return resp.status, {k.lower(): v for k, v in resp.getheaders()}, out
        finally:
            conn.close()

    def sign_in(self, token: str) -> dict[str, str]:
        status, headers, _ = self.req("POST", "/ui/login", {"token": token, "next": "/ui/fleet"})
        assert status == 303, status
        self.cookie = headers["set-cookie"].split(";")[0]
        return headers

    def csrf(self, path: str) -> str:
        status, _, body = self.req("GET", path)
        assert status == 200, (status, body[:300])
        m = re.search(r'name="csrf" value="([^"]+)"', body)
        assert m, "no CSRF token in the page's forms"
        return m.group(1)


def make_conflict(fleet: Fleet, entity: str, field: str, a: Any, b: Any) -> None:
    """Concurrent writes of ``field`` at plant-a (split off) and at central."""
    ctx = fleet.entity("central", entity)["fields"][field]["context"]
    fleet.split("plant-a")
    try:
        assert fleet.put_field("plant-a", entity, field, a, ctx).status == 200
        assert fleet.put_field("central", entity, field, b, ctx).status == 200
    finally:
        fleet.heal()
    wait_until(
        lambda: all(fleet.entity(n, entity)["fields"][field]["conflict"] for n in fleet.names),
        30,
        what=f"the {field} conflict to reach every node",
    )


def test_access_sessions_csrf_roles_and_escaping(fleet: Fleet) -> None:
    c = Client(fleet, "central")
    # Not signed in: every page sends you to sign in; an action is refused.
    status, headers, _ = c.req("GET", "/ui/review")
    assert status == 303 and headers["location"].startswith("/ui/login")
    assert c.req("POST", "/ui/conflict/resolve", {"entity": "x"})[0] == 401
    # A forged token is refused with the reason; no cookie is set.
    status, headers, body = c.req("POST", "/ui/login", {"token": "tm1.admin.x.9999999999.bad"})
    assert status == 401 and "set-cookie" not in headers and "refused" in body
    # The session cookie is HttpOnly and SameSite=Strict and holds no token.
    cookie = c.sign_in(fleet.tokens["viewer"])["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert fleet.tokens["viewer"] not in cookie
    # An open redirect through ?next= goes nowhere but our pages.
    other = Client(fleet, "central")
    status, headers, _ = other.req(
        "POST", "/ui/login", {"token": fleet.tokens["viewer"], "next": "//evil.example/"}
    )
    assert status == 303 and headers["location"] == "/ui/fleet"

    # Attacker-controlled text (an entity's label and a conflict's values) is escaped.
    entity = "plant-b/line-1/pump-xss"
    fleet.create("plant-b", entity)
    fleet.put_field("plant-b", entity, "displayLabel", XSS, None)
    fleet.wait_converged(30)
    make_conflict(fleet, entity, "responsibleTeam", XSS, "team <b>bold</b>")
    for path in (
        f"/ui/asset?id={urllib.parse.quote(entity)}",
        "/ui/review",
        f"/ui/conflict?entity={urllib.parse.quote(entity)}&field=responsibleTeam",
    ):
        status, headers, body = c.req("GET", path)
        assert status == 200, (path, status)
        assert "<script>document.title" not in body and "<img src=x" not in body, path
        assert "&lt;script&gt;" in body, path
        assert "script-src 'self'" in headers["content-security-policy"]

    # A viewer sees the conflict but may not resolve it: the server says no.
    page = f"/ui/conflict?entity={urllib.parse.quote(entity)}&field=responsibleTeam"
    conflict = fleet.ok("central", "GET", f"/v1/conflict?entity={entity}&field=responsibleTeam")
    token = c.csrf("/ui/fleet")  # the sign-out form carries it for every role
    form = {
        "entity": entity,
        "field": "responsibleTeam",
        "context": conflict["context"],
        "choice": "custom",
        "custom": "maintenance",
        "reason": "viewer tries",
        "csrf": token,
    }
    status, _, body = c.req("POST", "/ui/conflict/resolve", form)
    assert status == 403 and "reviewer role" in body

    r = Client(fleet, "central")
    r.sign_in(fleet.tokens["reviewer"])
    good = r.csrf(page)
    # CSRF: no token, a wrong token, or a form posted from another site are refused.
    assert r.req("POST", "/ui/conflict/resolve", {**form, "csrf": ""})[0] == 403
    assert r.req("POST", "/ui/conflict/resolve", {**form, "csrf": good[::-1]})[0] == 403
    status, _, body = r.req(
        "POST", "/ui/conflict/resolve", {**form, "csrf": good}, Origin="http://evil.example"
    )
    assert status == 403 and "another site" in body
    # A reason is required.
    status, _, body = r.req(
        "POST", "/ui/conflict/resolve", {**form, "csrf": good, "reason": "  "}, Origin=r.origin
    )
    assert status == 400 and "reason" in body
    assert fleet.entity("central", entity)["fields"]["responsibleTeam"]["conflict"]
    # The real thing, from our own origin with the session's token, works.
    status, headers, _ = r.req(
        "POST",
        "/ui/conflict/resolve",
        {**form, "csrf": good, "reason": "<i>ok</i>"},
        Origin=r.origin,
    )
    assert status == 303 and "done=" in headers["location"]
    status, _, body = r.req("GET", headers["location"])
    assert status == 200 and "&lt;i&gt;ok&lt;/i&gt;" in body and "<i>ok</i>" not in body
    # Signing out ends the session on the server, not only in the browser.
    stale = r.cookie
    assert r.req("POST", "/ui/logout", {"csrf": good}, Origin=r.origin)[0] == 303
    r.cookie = stale
    assert r.req("GET", "/ui/fleet")[0] == 303


def test_lifecycle_transitions_and_archive(fleet: Fleet) -> None:
    entity = "plant-b/line-1/pump-old"
    fleet.create("plant-b", entity)

    def move(to: str, role: str = "operator") -> Any:
        return fleet.request(
            "plant-b",
            "POST",
            "/v1/lifecycle",
            {"entity": entity, "to": to, "reason": "test"},
            role=role,
        )

    assert move("out-of-service", role="viewer").status == 403
    refused = move("decommissioned")  # in service → decommissioned skips out of service
    assert refused.status == 422
    assert "in-service" in refused.json["reason"] and "decommissioned" in refused.json["reason"]
    assert move("out-of-service").status == 200
    assert move("decommissioned").status == 200
    assert fleet.entity("plant-b", entity)["fields"]["lifecycle"]["value"] == "decommissioned"
    final = move("in-service")
    assert final.status == 422 and "final" in final.json["reason"]
    # Archived: read-only through the API, history kept.
    resp = fleet.put_field("plant-b", entity, "displayLabel", "again", None)
    assert resp.status == 422 and resp.json["error"] == "archived"
    audit = fleet.ok("plant-b", "GET", "/v1/audit")["events"]
    assert [e["to"] for e in audit if e.get("entity") == entity] == [
        "out-of-service",
        "decommissioned",
    ]


def test_fleet_page_goes_red_when_split_and_green_when_healed(fleet: Fleet, browser: Any) -> None:
    page = signed_in(browser, fleet, "central")
    row = page.locator('tr[data-node="plant-b"]')
    row.wait_for()
    page.locator('tr[data-node="plant-b"][data-state="reachable"]').wait_for(timeout=30_000)
    page.wait_for_selector("#live-status:has-text('Live: updated')")
    shot(page, "fleet-healthy")
    fleet.split("plant-b")
    try:
        # No reload: the row changes through the live feed.
        page.locator('tr[data-node="plant-b"][data-state="split"]').wait_for(timeout=30_000)
        assert "SPLIT" in row.inner_text() and "unreachable since" in row.inner_text()
        assert row.locator(".badge.bad").count() == 1
        shot(page, "fleet-split")
    finally:
        fleet.heal()
    page.locator('tr[data-node="plant-b"][data-state="reachable"]').wait_for(timeout=30_000)
    assert "REACHABLE" in row.inner_text()
    page.context.close()


def test_resolve_a_conflict_in_the_browser_reaches_every_node(fleet: Fleet, browser: Any) -> None:
    entity = "plant-a/line-1/pump-9"
    fleet.create("plant-a", entity)
    fleet.wait_converged(30)
    make_conflict(fleet, entity, "nextMaintenanceDate", "2027-03-01", "2027-02-15")
    page = signed_in(browser, fleet, "central", role="reviewer")
    page.goto(fleet.nodes["central"]["api"] + "/ui/review?plant=plant-a")
    shot(page, "review-queue")
    page.click(f"a[href*='{urllib.parse.quote(entity, safe='')}'].button")
    page.wait_for_selector("form.resolve")
    assert page.locator("article.sibling").count() == 2
    # Provisional meanwhile: the sooner date (policy min), though it was written last.
    main = page.inner_text("main")
    assert "min" in main and "2027-02-15" in main
    conflict = fleet.ok("central", "GET", f"/v1/conflict?entity={entity}&field=nextMaintenanceDate")
    assert conflict["provisional"]["value"] == "2027-02-15"
    shot(page, "conflict")
    page.check("input[name=choice][value=custom]")
    page.fill("input[name=custom]", "2027-02-20")
    page.fill("#reason", "Agreed with both plants: the 20th fits the shutdown window")
    page.keyboard.press("Tab")
    page.click("form.resolve button[type=submit]")
    page.wait_for_selector("#resolved")
    text = page.inner_text("#resolved")
    assert "2027-02-20" in text and "shutdown window" in text and "local-reviewer" in text
    shot(page, "conflict-resolved")
    wait_until(
        lambda: all(
            not (f := fleet.entity(n, entity)["fields"]["nextMaintenanceDate"])["conflict"]
            and f["value"] == "2027-02-20"
            for n in fleet.names
        ),
        30,
        what="the resolution to reach every node",
    )
    audit = fleet.ok("plant-b", "GET", "/v1/audit")["events"]
    assert any(e.get("entity") == entity and e.get("value") == "2027-02-20" for e in audit)
    page.context.close()


def test_asset_page_has_a_chart_and_every_page_renders(fleet: Fleet, browser: Any) -> None:
    wait_until(
        lambda: (
            len(
                fleet.ok(
                    "plant-a", "GET", f"/v1/telemetry/samples?entity={MOTOR}&name=speed&limit=50"
                )["samples"]
            )
            >= 20
        ),
        30,
        what="the motor's speed samples",
    )
    page = signed_in(browser, fleet, "plant-a", role="operator")
    base = fleet.nodes["plant-a"]["api"]
    page.goto(f"{base}/ui/asset?id={urllib.parse.quote(MOTOR)}&series=speed&window=5m")
    line = page.locator("svg#chart-main polyline.observed")
    assert line.count() == 1
    assert len(line.get_attribute("points").split()) >= 20
    assert "speed" in page.inner_text("#telemetry")
    shot(page, "asset-motor")
    # The co-simulated expectation, dashed beside the observation, and its residual.
    wait_until(
        lambda: (
            len(
                fleet.ok(
                    "plant-a",
                    "GET",
                    f"/v1/telemetry/samples?entity={MOTOR}&name=windingTemperature.expected"
                    "&limit=50",
                )["samples"]
            )
            >= 20
        ),
        40,
        what="the motor's co-simulated winding temperature",
    )
    page.goto(f"{base}/ui/asset?id={urllib.parse.quote(MOTOR)}&series=windingTemperature&window=5m")
    assert page.locator("svg#chart-main polyline.expected").count() == 1
    assert page.locator("svg#chart-residual").count() == 1
    assert "running" in page.inner_text("#cosim-summary")
    shot(page, "asset-motor-cosim")
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.locator("#telemetry").screenshot(path=str(SHOTS / "asset-motor-cosim-telemetry.png"))
    # Keyboard: the chart controls and the lifecycle form are reachable by Tab.
    page.focus("select[name=series]")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.name") == "window"
    # Time travel: the twin as it was before it existed, then now.
    page.goto(f"{base}/ui/asset?id={urllib.parse.quote(MOTOR)}&at=1000#history")
    assert "did not exist" in page.inner_text("#history")
    for name, path in [
        ("assets", "/ui/assets"),
        ("alerts", "/ui/alerts"),
        ("workorders", "/ui/workorders"),
        ("models", "/ui/models"),
        ("audit", "/ui/audit"),
        ("fleet-plant-a", "/ui/fleet"),
    ]:
        page.goto(base + path)
        assert page.locator("main h1").count() == 1, path
        shot(page, name)
    page.goto(base + "/ui/login")
    shot(page, "login")
    page.context.close()


# ------------------------------------------------------------------ commands


def command_state(fleet: Fleet, node: str, entity: str, cid: str) -> dict[str, Any] | None:
    rows = fleet.ok(node, "GET", f"/v1/commands?entity={urllib.parse.quote(entity)}")["commands"]
    return next((r for r in rows if r["id"] == cid), None)


def wait_state(
    fleet: Fleet, node: str, cid: str, state: str, timeout: float = 30
) -> dict[str, Any]:
    return wait_until(
        lambda: (
            (r := command_state(fleet, node, MOTOR, cid)) is not None and r["state"] == state and r
        ),
        timeout,
        interval=0.1,
        what=f"command {cid[:8]} to be {state} at {node}",
    )


def test_command_path_safety_approval_confirmation_replay_and_expiry(
    fleet: Fleet, browser: Any
) -> None:
    def send(node: str, value: Any, role: str = "operator", **extra: Any) -> Any:
        body = {"entity": MOTOR, "command": "setSpeedSetpoint", "value": value, **extra}
        return fleet.request(node, "POST", "/v1/commands", body, role=role)

    wait_until(
        lambda: fleet.ok("plant-a", "GET", "/v1/adapters")["adapters"][0]["state"] == "connected",
        30,
        what="the OPC UA adapter",
    )
    # The envelope, the rate limit and roles refuse, with reasons.
    refused = send("central", 5000)
    assert (
        refused.status == 422
        and "outside the safe envelope 300..1800 rpm" in refused.json["reason"]
    )
    assert send("central", 1200, role="viewer").status == 403
    fast = send("plant-a", 1000, ramp_s=0.5)  # at home the reported speed is known
    assert fast.status == 422 and "the limit is 100 rpm/s" in fast.json["reason"]

    # High risk (above base speed): waits for a second person, approved in the page.
    issued = send("central", 1560)
    assert issued.status == 202 and issued.json["high_risk"]
    cid = issued.json["id"]
    wait_state(fleet, "plant-a", cid, "awaiting-approval")
    own = fleet.request("central", "POST", "/v1/commands/approve", {"id": cid}, role="operator")
    assert own.status == 403
    page = signed_in(browser, fleet, "plant-a", role="approver")
    base = fleet.nodes["plant-a"]["api"]
    page.goto(f"{base}/ui/asset?id={urllib.parse.quote(MOTOR)}#commands")
    page.click(f"tr[data-command='{cid}'] button")
    page.wait_for_selector("text=command approved")
    # Confirmed by the machine's telemetry (the plant's physics followed the setpoint).
    done = wait_state(fleet, "plant-a", cid, "confirmed", timeout=40)
    assert "speed reported" in done["reason"] and done["approved_by"] == "local-approver"
    wait_state(fleet, "central", cid, "confirmed")
    page.goto(f"{base}/ui/asset?id={urllib.parse.quote(MOTOR)}&series=speed&window=5m")
    assert "in sync" in page.inner_text("#props")
    shot(page, "asset-motor-commands")
    page.context.close()

    # Replay: the same signed record appended again does nothing; an altered one is refused.
    event = dict(issued.json)
    log = "central/_commands"
    for key, ev in (("cmd:replay", event), ("cmd:forged", {**event, "id": "f" * 32})):
        fleet.ok(
            "central",
            "POST",
            f"/v1/entities/{log}/fields/events/ops",
            {"op": "append", "id": key, "event": ev},
        )
    forged = wait_state(fleet, "plant-a", "f" * 32, "refused")
    assert "signature does not verify" in forged["reason"]
    audit = fleet.ok("plant-a", "GET", "/v1/audit")["events"]
    runs = [e for e in audit if e.get("command_id") == cid and e["kind"] == "command-executing"]
    assert len(runs) == 1  # at most once

    # Sent to a split plant: waits visibly, then expires instead of firing later.
    fleet.split("plant-a")
    try:
        late = send("central", 1450, ttl_s=2)
        assert late.status == 202
        lid = late.json["id"]
        first = command_state(fleet, "central", MOTOR, lid)
        assert first is not None and first["state"] == "waiting" and "plant-a" in first["reason"]
        wait_state(fleet, "central", lid, "expired", timeout=10)
    finally:
        fleet.heal()
    gone = wait_state(fleet, "plant-a", lid, "expired")
    assert "time-to-live" in gone["reason"]
    audit = fleet.ok("plant-a", "GET", "/v1/audit")["events"]
    assert not [e for e in audit if e.get("command_id") == lid and e["kind"] == "command-executing"]

    # Decommissioned twins take no commands.
    old = "plant-b/line-1/pump-gone"
    fleet.create("plant-b", old)
    for to in ("out-of-service", "decommissioned"):
        fleet.ok("plant-b", "POST", "/v1/lifecycle", {"entity": old, "to": to, "reason": "t"})
    resp = fleet.request(
        "plant-b",
        "POST",
        "/v1/commands",
        {"entity": old, "command": "setSpeedSetpoint", "value": 1000},
        role="operator",
    )
    assert resp.status == 422 and "decommissioned" in resp.json["reason"]


# ------------------------------------------------------------------ alarm limits


def limit_alerts(fleet: Fleet, node: str) -> list[dict[str, Any]]:
    rows = fleet.ok(node, "GET", f"/v1/alerts?entity={urllib.parse.quote(MOTOR)}")["alerts"]
    return [a for a in rows if a["key"] == "limit:vibrationAlarmThreshold"]


def set_threshold(fleet: Fleet, node: str, value: float) -> None:
    field = fleet.entity(node, MOTOR)["fields"]["vibrationAlarmThreshold"]
    resp = fleet.put_field(node, MOTOR, "vibrationAlarmThreshold", value, field["context"])
    assert resp.status == 200, resp.json


def test_a_limit_set_at_central_alarms_at_the_plant_and_clears_with_hysteresis(
    fleet: Fleet, browser: Any
) -> None:
    """The motor's model marks vibrationAlarmThreshold an AlarmLimit on vibrationRms.
    Central ops lowers it below what the healthy motor reads (~1 mm/s): the limit
    replicates, plant-a's readings cross it, an alert opens there with the limit
    and the reading in its lineage and reaches central; raised again, it clears."""
    wait_until(
        lambda: fleet.ok("plant-a", "GET", f"/v1/telemetry?entity={urllib.parse.quote(MOTOR)}"),
        30,
        what="motor telemetry",
    )
    set_threshold(fleet, "central", 0.25)
    opened = wait_until(
        lambda: [a for a in limit_alerts(fleet, "plant-a") if a["state"] == "open"],
        30,
        interval=0.2,
        what="a limit alert at plant-a",
    )[0]
    assert opened["raised_by"] == "plant-a" and opened["severity"] == "warning"
    assert opened["rule"] == "vibrationRms > 0.25 mm/s", opened["rule"]
    lineage = opened["lineage"]
    assert lineage["limit"] == 0.25 and lineage["direction"] == "above"
    (sensor,) = lineage["sensors"]
    assert sensor["tag"] == "vibrationRms" and sensor["value"] > 0.25
    wait_until(
        lambda: any(a["id"] == opened["id"] for a in limit_alerts(fleet, "central")),
        30,
        what="the limit alert at central",
    )
    page = signed_in(browser, fleet, "central", role="viewer")
    page.goto(fleet.nodes["central"]["api"] + "/ui/alerts")
    assert "vibrationRms &gt; 0.25" in page.content() or "vibrationRms > 0.25" in page.inner_text(
        "main"
    )
    shot(page, "alerts-limit")
    page.context.close()

    set_threshold(fleet, "central", 40.0)
    cleared = wait_until(
        lambda: (
            next(a for a in limit_alerts(fleet, "plant-a") if a["id"] == opened["id"])["state"]
            == "cleared"
        ),
        30,
        interval=0.2,
        what="the limit alert to clear at plant-a",
    )
    assert cleared
    # One open and one clear: a reading near the limit does not flap the alert.
    events = next(a for a in limit_alerts(fleet, "plant-a") if a["id"] == opened["id"])["events"]
    assert [e["type"] for e in events] == ["open", "clear"]
