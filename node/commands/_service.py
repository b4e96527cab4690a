"""Commands on a running node: issue and approve anywhere, execute at home only.

Theory of operation
-------------------
*Issue* (any node, operator role): the node checks what it can know — the
twin exists and is not archived, the model has the command, the value is in
the envelope — signs the record (``_record.py``) and appends it to its own
command log. A high-risk value is marked so.

*Approve* (any node, approver role, not the issuer): a signed approval record
in the approver's node's log.

*Execute* (the asset's home plant only), every ``interval`` (100 ms): per
asset, the oldest command without a final outcome is the head of that asset's
queue; nothing behind it runs before it is final. The head is checked again
here, where the truth is: the issuer's signature against its fleet-vouched
key, the issuer's role, expiry, lifecycle, envelope, rate against the
*reported* value (telemetry), approval by a second person for high-risk ones.
Then "executing" is made durable, the value is written through the adapter
the asset's telemetry comes from (an OPC UA Write of the setpoint, or an
MQTT publish on the device's command topic answered on its ack topic), the
device's acknowledgement is audited, and the command stays executing until
the machine's telemetry shows the value (confirmed) or the ramp time plus a
timeout passes (failed). Each step is an outcome in the home's log and an
entry in its audit log.

*At most once*: the command id is the key. A record carried twice, replayed
or re-appended under another log key finds its outcome and does nothing; a
command found executing after a restart is failed, not re-sent.

*Reconciliation*: the desired value (the last confirmed command) is compared
with the reported value every tick; out of tolerance for longer than the
model's grace period raises an ordinary alert through ``node.alerts`` (it
replicates, and shows on the alert and asset pages) once per episode, and
clears it when reported is back within tolerance; both are audited.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .._models import AUDIT_ENTITY
from .._tokens import Role
from ..alerts._tracker import alert_id
from ._log import COMMANDS_ENTITY, COMMANDS_MODEL
from ._record import Approval, CommandError, CommandRecord, new_command_id
from ._safety import CommandSpec, check_request, load_specs
from ._states import FINAL, CommandState

if TYPE_CHECKING:
    from .._node import Node

__all__ = ["CommandService"]

_log = logging.getLogger("twinmesh.node.commands")

S = CommandState
DEFAULT_TTL_S = 300.0
DEFAULT_RAMP_S = 10.0
MAX_TTL_S = 24 * 3600.0


@dataclass(slots=True)
class _Executing:
    started: float
    record: CommandRecord
    spec: CommandSpec


@dataclass(slots=True)
class _Divergence:
    since: float | None = None
    alerted: bool = False
    alert: str | None = None  # the open alert's id (node.alerts)


class CommandService:
    def __init__(self, node: Node, *, interval: float = 0.1) -> None:
        self.node = node
        self.interval = interval
        try:
            self.specs = load_specs(node.registry)
        except CommandError as exc:
            _log.error("commands: %s; no commands on this node", exc.reason)
            self.specs = {}
        self._executing: dict[str, _Executing] = {}  # command id -> in flight here
        self._divergence: dict[tuple[str, str], _Divergence] = {}
        self._task: asyncio.Task[None] | None = None
        self._lock = asyncio.Lock()
        self.ticks = 0

    # ---------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        me = self.node.config.name
        if COMMANDS_ENTITY(me) not in self.node.state.entities:
            await self.node.write(
                lambda s: s.create(COMMANDS_ENTITY(me), COMMANDS_MODEL, author="node")
            )
        # A divergence alert left open by the last run is cleared by this one.
        alerts = getattr(self.node, "alerts", None)
        for a in alerts.list() if alerts is not None else []:
            key = a.get("key") or ""
            if (
                key.startswith("divergence:")
                and a["state"] != "cleared"
                and a.get("raised_by") == me
                and isinstance(a.get("entity"), str)
            ):
                self._divergence[(a["entity"], key.removeprefix("divergence:"))] = _Divergence(
                    since=self.node.clock(), alerted=True, alert=a["id"]
                )
        # At most once: whatever was executing when this node stopped is not re-sent.
        for record, state, _ in self._outcomes().values():
            if state is S.EXECUTING and self._home_of(record.entity) == me:
                await self._outcome(
                    record, S.FAILED, "the home node restarted while it ran; not re-sent"
                )

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="commands")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task

    # ---------------------------------------------------------------- reading

    def _events(self) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for e in self.node.state:
            if e.header.model == COMMANDS_MODEL:
                out += [dict(v, _key=k, _log=e.id) for k, v in e.value("events").items()]
        return out

    def _home_of(self, entity_id: str) -> str | None:
        e = self.node.state.entities.get(entity_id)
        return None if e is None else e.header.home

    def _records(self) -> dict[str, tuple[CommandRecord, bytes]]:
        """Every command, once per id (the first seen in log order)."""
        found: dict[str, tuple[CommandRecord, bytes]] = {}
        for ev in sorted(self._events(), key=lambda ev: (ev.get("issued_ms", 0), ev["_key"])):
            if ev.get("kind") != "command":
                continue
            try:
                record, sig = CommandRecord.from_event(ev)
            except CommandError:
                continue
            found.setdefault(record.id, (record, sig))
        return found

    def _approvals(self) -> dict[str, list[tuple[Approval, bytes]]]:
        out: dict[str, list[tuple[Approval, bytes]]] = {}
        for ev in self._events():
            if ev.get("kind") == "approval":
                try:
                    a, sig = Approval.from_event(ev)
                except CommandError:
                    continue
                out.setdefault(a.command_id, []).append((a, sig))
        return out

    def _outcome_events(self) -> dict[str, list[dict[str, Any]]]:
        out: dict[str, list[dict[str, Any]]] = {}
        for ev in self._events():
            if ev.get("kind") == "outcome" and isinstance(ev.get("command_id"), str):
                out.setdefault(ev["command_id"], []).append(ev)
        for evs in out.values():
            evs.sort(key=lambda ev: (ev.get("at_ms", 0), ev.get("seq", 0)))
        return out

    def _outcomes(self) -> dict[str, tuple[CommandRecord, CommandState, dict[str, Any]]]:
        """Per command id: its record, the home's latest state and that outcome event.
        Only the asset's home writes outcomes that count."""
        records = self._records()
        out = {}
        for cid, evs in self._outcome_events().items():
            if cid not in records:
                continue
            record = records[cid][0]
            home = self._home_of(record.entity)
            valid = [ev for ev in evs if ev.get("at_node") == home]
            final = [ev for ev in valid if ev.get("state") in {s.value for s in FINAL}]
            chosen = (final or valid or [None])[0 if final else -1]
            if chosen is None:
                continue
            try:
                out[cid] = (record, CommandState(chosen["state"]), chosen)
            except ValueError:
                continue
        return out

    def spec_of(self, entity_id: str, command: str) -> CommandSpec | None:
        e = self.node.state.entities.get(entity_id)
        return None if e is None else self.specs.get((e.header.model, command))

    def specs_for(self, entity_id: str) -> list[dict[str, Any]]:
        e = self.node.state.entities.get(entity_id)
        if e is None:
            return []
        return [
            {
                "name": s.name,
                "label": s.label,
                "unit": s.unit,
                "minimum": s.minimum,
                "maximum": s.maximum,
                "rate": s.max_rate,
                "high_risk": s.high_risk,
                "high_risk_above": s.high_risk_above,
            }
            for (model, _), s in sorted(self.specs.items())
            if model == e.header.model
        ]

    def _reported(self, entity_id: str, tag: str) -> tuple[float | None, float | None]:
        svc = self.node.telemetry
        if svc is None or self._home_of(entity_id) != self.node.config.name:
            return None, None
        sample = svc.latest.get((entity_id, tag))
        if sample is None or not isinstance(sample.value, int | float):
            return None, None
        value = float(sample.value)
        return (value if math.isfinite(value) else None), sample.source_ts

    def view_state(self, record: CommandRecord, now_ms: int) -> tuple[str, str]:
        """(state, why) as this node sees it, also where no outcome has arrived yet."""
        done = self._outcomes().get(record.id)
        if done is not None:
            return done[1].value, str(done[2].get("reason", ""))
        home = self._home_of(record.entity)
        if now_ms >= record.expires_ms:
            return S.EXPIRED.value, f"not run: its time-to-live passed before {home} ran it"
        if record.high_risk and not any(
            a.by != record.by for a, _ in self._approvals().get(record.id, [])
        ):
            return S.AWAITING_APPROVAL.value, "needs a second person with the approver role"
        return "waiting", f"waiting for {home} to run it (expires {record.expires_ms // 1000})"

    def history(self, entity_id: str) -> list[dict[str, Any]]:
        now_ms = int(self.node.clock() * 1000)
        approvals = self._approvals()
        rows = []
        for record, _ in self._records().values():
            if record.entity != entity_id:
                continue
            state, why = self.view_state(record, now_ms)
            rows.append(
                {
                    "id": record.id,
                    "name": record.command,
                    "value": record.value,
                    "by": record.by,
                    "issued_at": record.issuer_node,
                    "issued_ms": record.issued_ms,
                    "expires_ms": record.expires_ms,
                    "high_risk": record.high_risk,
                    "approved_by": ", ".join(
                        sorted({a.by for a, _ in approvals.get(record.id, [])})
                    ),
                    "state": state,
                    "reason": why,
                    "css": {
                        "confirmed": "ok",
                        "refused": "bad",
                        "failed": "bad",
                        "expired": "bad",
                        "awaiting-approval": "warn",
                    }.get(state, "info"),
                }
            )
        rows.sort(key=lambda r: (r["issued_ms"], r["id"]), reverse=True)
        return rows

    def desired_view(self, entity_id: str) -> list[dict[str, Any]]:
        """Desired (the last command the home confirmed or is executing) beside reported."""
        rows = []
        outcomes = self._outcomes()
        for spec_row in self.specs_for(entity_id):
            spec = self.spec_of(entity_id, spec_row["name"])
            assert spec is not None
            desired = None
            latest = -1
            for record, state, _ in outcomes.values():
                if (
                    record.entity == entity_id
                    and record.command == spec.name
                    and state in (S.CONFIRMED, S.EXECUTING)
                    and record.issued_ms > latest
                ):
                    desired, latest = record.value, record.issued_ms
            reported, ts = self._reported(entity_id, spec.confirm)
            div = self._divergence.get((entity_id, spec.name))
            if desired is None:
                state = "no command yet"
            elif reported is None:
                state = "reported at the home plant"
            elif abs(reported - desired) <= spec.tolerance:
                state = "in-sync"
            elif div is not None and div.alerted:
                state = "diverged"
            else:
                state = "converging"
            rows.append(
                {
                    "name": f"{spec.name} → {spec.confirm}",
                    "desired": desired,
                    "reported": None if reported is None else round(reported, 1),
                    "reported_ts": ts,
                    "unit": spec.unit,
                    "state": state,
                    "since": None
                    if div is None or div.since is None
                    else self.node.clock() - div.since,
                }
            )
        return rows

    # ---------------------------------------------------------------- writing

    async def _append(
        self, event: dict[str, Any], key: str, *, audit: dict[str, Any] | None
    ) -> None:
        me = self.node.config.name
        mutators = [lambda s, _: s.append(COMMANDS_ENTITY(me), "events", key, event, author="node")]
        if audit is not None:
            mutators.append(
                lambda s, seqs: s.append(
                    AUDIT_ENTITY(me), "events", f"{me}:{seqs[0]}", audit, author=audit["by"]
                )
            )
        await self.node.write_many(*mutators)

    async def _append_audit(self, audit: dict[str, Any], key: str) -> None:
        me = self.node.config.name
        await self.node.write(
            lambda s: s.append(AUDIT_ENTITY(me), "events", f"{me}:{key}", audit, author=audit["by"])
        )

    async def issue(
        self,
        entity_id: str,
        command: str,
        value: Any,
        *,
        by: str,
        role: Role,
        ramp_s: float | None = None,
        ttl_s: float | None = None,
    ) -> dict[str, Any]:
        """Check, sign and log a command; ``CommandError`` says why it was refused."""
        node = self.node
        if role < Role.OPERATOR:
            raise CommandError("sending a command needs the operator role")
        entity = node.state.entities.get(entity_id)
        if entity is None:
            raise CommandError(f"no twin {entity_id!r}")
        if node.lifecycle.archived(entity_id):
            raise CommandError(f"{entity_id} is decommissioned: archived twins take no commands")
        spec = self.specs.get((entity.header.model, command))
        if spec is None:
            raise CommandError(
                f"model {entity.header.model} has no command {command!r} that may be sent"
            )
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise CommandError(f"{command} needs a number ({spec.unit})")
        ramp = DEFAULT_RAMP_S if ramp_s is None else float(ramp_s)
        ttl = DEFAULT_TTL_S if ttl_s is None else float(ttl_s)
        if not (math.isfinite(ramp) and 0 <= ramp <= 3600):
            raise CommandError("ramp_s must be 0..3600 seconds")
        if not (math.isfinite(ttl) and 1 <= ttl <= MAX_TTL_S):
            raise CommandError(f"ttl_s must be 1..{MAX_TTL_S:.0f} seconds")
        reported, _ = self._reported(entity_id, spec.confirm)
        check_request(spec, float(value), reported=reported, ramp_s=ramp)  # again at home
        now_ms = int(node.clock() * 1000)
        record = CommandRecord(
            id=new_command_id(),
            entity=entity_id,
            command=command,
            value=float(value),
            ramp_s=ramp,
            issuer_node=node.config.name,
            by=by,
            role=role.name.lower(),
            issued_ms=now_ms,
            expires_ms=now_ms + int(ttl * 1000),
            high_risk=spec.is_high_risk(float(value)),
        )
        event = record.to_event(record.sign(node.identity.private_key))
        await self._append(
            event,
            f"cmd:{record.id}",
            audit=self._audit(record, "command-issued", by, f"{command} = {value:g} {spec.unit}"),
        )
        return event

    async def approve(self, command_id: str, *, by: str, role: Role) -> None:
        if role < Role.APPROVER:
            raise CommandError("approving a high-risk command needs the approver role")
        found = self._records().get(command_id)
        if found is None:
            raise CommandError(f"no command {command_id!r}")
        record = found[0]
        if record.by == by:
            raise CommandError("the person who issued a command cannot also approve it")
        if not record.high_risk:
            raise CommandError("this command needs no approval")
        state, _ = self.view_state(record, int(self.node.clock() * 1000))
        if state in {s.value for s in FINAL}:
            raise CommandError(f"the command is already {state}")
        now_ms = int(self.node.clock() * 1000)
        approval = Approval(
            command_id=command_id,
            by=by,
            role=role.name.lower(),
            at_node=self.node.config.name,
            at_ms=now_ms,
        )
        event = approval.to_event(approval.sign(self.node.identity.private_key))
        await self._append(
            event,
            f"appr:{command_id}:{self.node.config.name}:{now_ms}",
            audit=self._audit(record, "command-approved", by, ""),
        )

    def _audit(self, record: CommandRecord, kind: str, by: str, reason: str) -> dict[str, Any]:
        return {
            "kind": kind,
            "entity": record.entity,
            "field": record.command,
            "value": record.value,
            "command_id": record.id,
            "reason": reason,
            "by": by,
            "at_node": self.node.config.name,
            "at_ms": int(self.node.clock() * 1000),
        }

    async def _outcome(self, record: CommandRecord, state: CommandState, reason: str) -> None:
        now_ms = int(self.node.clock() * 1000)
        event = {
            "kind": "outcome",
            "command_id": record.id,
            "state": state.value,
            "reason": reason,
            "at_node": self.node.config.name,
            "at_ms": now_ms,
        }
        await self._append(
            event,
            f"out:{record.id}:{state.value}",
            audit=self._audit(record, f"command-{state.value}", "node", reason),
        )

    # ---------------------------------------------------------------- executing at home

    def _verified_issuer(self, record: CommandRecord, signature: bytes) -> str | None:
        """Why the record must not run (signature, issuer, role), or None."""
        node = self.node
        engine = node.engine
        if record.issuer_node == node.config.name:
            credential = node.identity.credential
        else:
            member = engine.members.get(record.issuer_node) if engine is not None else None
            if member is None:
                return f"issuer {record.issuer_node} is not a member of this fleet"
            credential = member.credential
        if not credential.verify(node.fleet_public_key) or credential.replica != record.issuer_node:
            return f"issuer {record.issuer_node}'s key is not vouched for by the fleet"
        if not record.verify(credential.public_key, signature):
            return "the signature does not verify: the command was altered or forged"
        try:
            role = Role.parse(record.role)
        except Exception:
            return f"unknown issuer role {record.role!r}"
        if role < Role.OPERATOR:
            return f"the issuer's role {record.role} may not send commands"
        return None

    def _approved(self, record: CommandRecord) -> bool:
        engine = self.node.engine
        for a, sig in self._approvals().get(record.id, []):
            if a.by == record.by:
                continue
            try:
                if Role.parse(a.role) < Role.APPROVER:
                    continue
            except Exception:
                continue
            if a.at_node == self.node.config.name:
                cred = self.node.identity.credential
            else:
                member = engine.members.get(a.at_node) if engine is not None else None
                if member is None:
                    continue
                cred = member.credential
            if cred.verify(self.node.fleet_public_key) and a.verify(cred.public_key, sig):
                return True
        return False

    def _adapter_for(self, entity_id: str, command: str) -> Any | None:
        svc = self.node.telemetry
        if svc is None:
            return None
        for adapter in svc.adapters:
            finder = getattr(adapter, "command_node", None)
            if finder is not None and finder(entity_id, command) is not None:
                return adapter
        return None

    async def tick(self) -> None:
        """One pass of the executor and the reconciliation (every ``interval``)."""
        async with self._lock:
            await self._execute()
            await self._reconcile()
            self.ticks += 1

    async def _execute(self) -> None:
        me = self.node.config.name
        now = self.node.clock()
        now_ms = int(now * 1000)
        outcomes = self._outcomes()
        heads: dict[str, tuple[CommandRecord, bytes]] = {}
        for record, sig in sorted(
            self._records().values(), key=lambda rs: (rs[0].issued_ms, rs[0].id)
        ):
            if self._home_of(record.entity) != me:
                continue
            done = outcomes.get(record.id)
            if done is not None and done[1] in FINAL:
                continue  # at most once: whatever carries this id again does nothing
            heads.setdefault(record.entity, (record, sig))  # per-asset queue, in order
        for entity_id, (record, sig) in heads.items():
            state = outcomes.get(record.id, (None, S.ISSUED, None))[1]
            if state is S.EXECUTING:
                await self._confirm(record, now)
                continue
            if now_ms >= record.expires_ms:
                await self._outcome(
                    record, S.EXPIRED, "its time-to-live passed before it could run"
                )
                continue
            why = self._verified_issuer(record, sig)
            if why is None and self.node.lifecycle.archived(entity_id):
                why = f"{entity_id} is decommissioned: archived twins take no commands"
            spec = self.spec_of(entity_id, record.command)
            if why is None and spec is None:
                why = f"no command {record.command!r} may be sent to this model"
            if why is None:
                assert spec is not None
                reported, _ = self._reported(entity_id, spec.confirm)
                try:
                    check_request(spec, record.value, reported=reported, ramp_s=record.ramp_s)
                except CommandError as exc:
                    why = exc.reason
            if why is not None:
                await self._outcome(record, S.REFUSED, why)
                continue
            assert spec is not None
            if (record.high_risk or spec.is_high_risk(record.value)) and not self._approved(record):
                if state is not S.AWAITING_APPROVAL:
                    await self._outcome(
                        record,
                        S.AWAITING_APPROVAL,
                        "high risk: needs a second person with the approver role",
                    )
                continue
            adapter = self._adapter_for(entity_id, record.command)
            if adapter is None:
                await self._outcome(
                    record,
                    S.REFUSED,
                    f"no adapter on {me} can send {record.command} to {entity_id}",
                )
                continue
            # Durable before the device is touched: a crash now can never send it twice.
            await self._outcome(record, S.EXECUTING, f"sending through {adapter.name}")
            self._executing[record.id] = _Executing(started=now, record=record, spec=spec)
            try:
                said = await adapter.send_command(
                    entity_id,
                    record.command,
                    record.value,
                    command_id=record.id,
                    expires_ms=record.expires_ms,
                )
            except Exception as exc:
                self._executing.pop(record.id, None)
                await self._outcome(
                    record, S.FAILED, f"the write through {adapter.name} failed: {exc}"
                )
                continue
            # The device's acknowledgement (OPC UA Write status, MQTT ack): audited,
            # but the command stays executing until the telemetry shows the value.
            await self._append_audit(
                self._audit(record, "command-delivered", "node", str(said or adapter.name)),
                f"delivered:{record.id}",
            )

    async def _confirm(self, record: CommandRecord, now: float) -> None:
        run = self._executing.get(record.id)
        if run is None:
            await self._outcome(record, S.FAILED, "lost track of it (restart); not re-sent")
            return
        reported, ts = self._reported(record.entity, run.spec.confirm)
        if (
            reported is not None
            and ts is not None
            and ts >= run.started
            and abs(reported - record.value) <= run.spec.tolerance
        ):
            self._executing.pop(record.id, None)
            await self._outcome(
                record,
                S.CONFIRMED,
                f"{run.spec.confirm} reported {reported:.1f} {run.spec.unit} "
                f"after {now - run.started:.1f} s",
            )
            return
        if now - run.started > record.ramp_s + run.spec.confirm_timeout:
            self._executing.pop(record.id, None)
            shown = "nothing" if reported is None else f"{reported:.1f} {run.spec.unit}"
            await self._outcome(
                record,
                S.FAILED,
                f"the machine did not reach {record.value:g} {run.spec.unit} within "
                f"{record.ramp_s + run.spec.confirm_timeout:.0f} s ({run.spec.confirm} "
                f"reported {shown}); check the drive",
            )

    def desired_value(self, entity_id: str, name: str) -> float | None:
        """The value the machine was last told for command ``name`` (executing
        or confirmed), None if none: what the co-simulation expects it to do."""
        return self._desired(entity_id, name)[0]

    def _desired(self, entity_id: str, name: str) -> tuple[float | None, str | None]:
        """The desired value of command ``name`` (the last confirmed or executing
        one) and that command's id."""
        desired, cid, latest = None, None, -1
        for record, state, _ in self._outcomes().values():
            if (
                record.entity == entity_id
                and record.command == name
                and state in (S.CONFIRMED, S.EXECUTING)
                and record.issued_ms > latest
            ):
                desired, cid, latest = record.value, record.id, record.issued_ms
        return desired, cid

    async def _reconcile(self) -> None:
        me = self.node.config.name
        now = self.node.clock()
        for row_entity in {r.entity for r, _ in self._records().values()}:
            if self._home_of(row_entity) != me:
                continue
            e = self.node.state.entities.get(row_entity)
            if e is None:
                continue
            for (model, name), spec in self.specs.items():
                if e.header.model != model:
                    continue
                desired, cid = self._desired(row_entity, name)
                executing = any(x.record.entity == row_entity for x in self._executing.values())
                reported, ts = self._reported(row_entity, spec.confirm)
                key = (row_entity, name)
                div = self._divergence.setdefault(key, _Divergence())
                off = (
                    desired is not None
                    and reported is not None
                    and not executing
                    and abs(reported - desired) > spec.tolerance
                )
                if not off:
                    if div.alerted:
                        await self._divergence_alert(
                            row_entity,
                            spec,
                            div,
                            "clear",
                            f"{spec.confirm} back at {desired:g} {spec.unit}",
                            desired=desired,
                            reported=reported,
                            reported_ts=ts,
                            command_id=cid,
                        )
                    self._divergence[key] = _Divergence()
                    continue
                assert desired is not None and reported is not None
                if div.since is None:
                    div.since = now
                if not div.alerted and now - div.since >= spec.divergence_grace:
                    div.alerted = True
                    await self._divergence_alert(
                        row_entity,
                        spec,
                        div,
                        "open",
                        f"{spec.confirm} is {reported:.1f} {spec.unit}, desired {desired:g} "
                        f"{spec.unit}, for {now - div.since:.0f} s: not following; check the drive",
                        desired=desired,
                        reported=reported,
                        reported_ts=ts,
                        command_id=cid,
                    )

    async def _divergence_alert(
        self,
        entity_id: str,
        spec: CommandSpec,
        div: _Divergence,
        kind: str,
        text: str,
        *,
        desired: float | None,
        reported: float | None,
        reported_ts: float | None,
        command_id: str | None,
    ) -> None:
        """Raise (``open``) or clear a divergence as an ordinary alert in this
        node's alert log (node.alerts), so it replicates, shows on the alert pages
        and the asset page, and can be acknowledged like any other; the audit log
        keeps its line too."""
        me = self.node.config.name
        now = self.node.clock()
        key = f"divergence:{spec.name}"
        if kind == "open" or div.alert is None:
            div.alert = alert_id(me, entity_id, key, now)
        plant = entity_id.split("/", 1)[0]
        alerts = self.node.alerts  # type: ignore[attr-defined]
        policy = alerts.policy()
        off = None if desired is None or reported is None else abs(reported - desired)
        event: dict[str, Any] = {
            "id": f"{div.alert}:{kind}:{now:.6f}",
            "alert": div.alert,
            "type": kind,
            "state": "open" if kind == "open" else "cleared",
            "at": round(now, 6),
            "recorded_at": round(now, 6),
            "node": me,
            "by": "commands",
            "entity": entity_id,
            "plant": plant,
            "model": spec.model,
            "key": key,
            # Warning, not high: the machine is running, just not where it was told.
            "severity": "warning",
            # How many tolerances reported is off desired (1 = at the edge).
            "score": None if off is None else round(off / max(spec.tolerance, 1e-9), 3),
            "rule": (
                f"|{spec.confirm} − desired| > {spec.tolerance:g} {spec.unit} "
                f"for {spec.divergence_grace:g} s"
                if kind == "open"
                else f"|{spec.confirm} − desired| <= {spec.tolerance:g} {spec.unit}"
            ),
            "policy_version": policy.version,
            "owner": policy.owner(plant=plant, model=spec.model),
            "runbook": (
                f"{spec.label}: the machine does not hold its setpoint. Check the drive, "
                "and whether someone changed the setpoint at the machine."
            ),
            "diagnosis": {
                "kind": "machine",
                "label": f"not following {spec.name}",
                "tag": spec.confirm,
                "confidence": 1.0,
                "evidence": text,
                "action": "check the drive",
                "detectors": {},
            },
        }
        if kind == "open":
            event["lineage"] = {
                "source": "commands reconciliation (desired vs reported)",
                "command_id": command_id,
                "desired": desired,
                "reported": reported,
                "reported_ts": reported_ts,
                "unit": spec.unit,
                "since": div.since,
            }
        await alerts.ensure_log()
        await alerts.record([event])
        now_ms = int(now * 1000)
        audit = {
            "kind": "divergence" if kind == "open" else "divergence-cleared",
            "entity": entity_id,
            "field": spec.name,
            "reason": text,
            "alert": div.alert,
            "by": "node",
            "at_node": me,
            "at_ms": now_ms,
        }
        await self._append_audit(audit, f"{audit['kind']}:{entity_id}:{now_ms}")

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self.tick()
            except asyncio.CancelledError:
                raise
            except Exception:
                _log.exception("commands: tick failed")
