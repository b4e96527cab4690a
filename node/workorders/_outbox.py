"""The work-order outbox: approved work orders to a maintenance system's webhook.

At least once, never silently lost: the home node of an approved work order
enqueues it in ``<data_dir>/outbox.sqlite`` (committed before any attempt),
POSTs it with an ``Idempotency-Key`` header (the work order id and "approved":
the same on every retry, so the receiver de-duplicates), and marks it
delivered only on a 2xx answer — then records the delivery in the work order's
replicated history. A failure (connection refused, timeout, 5xx, 408, 429)
retries with exponential back-off and seeded jitter up to ``backoff_max``; any
other 4xx means the receiver refuses this payload: it stops and says why in
the API and metrics. A restart resumes pending deliveries from the file.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
from dataclasses import dataclass
from typing import Any

import aiohttp
import aiosqlite

__all__ = ["Outbox", "WebhookSettings", "parse_webhook"]

log = logging.getLogger("twinmesh.node.outbox")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS deliveries (
    wo TEXT PRIMARY KEY, key TEXT NOT NULL, status TEXT NOT NULL, attempts INTEGER NOT NULL,
    next_at REAL NOT NULL, last_error TEXT, http_status INTEGER, delivered_at REAL
);
"""


@dataclass(frozen=True, slots=True, kw_only=True)
class WebhookSettings:
    url: str
    timeout: float = 5.0
    backoff_base: float = 0.5
    backoff_max: float = 30.0
    poll: float = 0.5


def parse_webhook(raw: Any) -> WebhookSettings | None:
    t = raw.get("webhook")
    if t is None:
        return None
    if not isinstance(t, dict):
        raise ValueError("[webhook] must be a table")
    unknown = sorted(set(t) - {"url", "timeout", "backoff_base", "backoff_max", "poll"})
    if unknown:
        raise ValueError(f"webhook.{unknown[0]}: unknown key")
    url = t.get("url")
    if not isinstance(url, str) or not url.startswith(("http://", "https://")):
        raise ValueError(f"webhook.url: expected an http(s):// URL, found {url!r}")
    kw: dict[str, float] = {}
    for k in ("timeout", "backoff_base", "backoff_max", "poll"):
        if k in t:
            v = t[k]
            if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= 3600:
                raise ValueError(f"webhook.{k}: expected seconds in (0, 3600], found {v!r}")
            kw[k] = float(v)
    return WebhookSettings(url=url, **kw)


class Outbox:
    def __init__(self, node: Any, settings: WebhookSettings) -> None:
        self.node = node
        self.settings = settings
        self.rng = random.Random(node.config.name)
        self.db: aiosqlite.Connection | None = None
        self.counters = {"delivered": 0, "failed_attempt": 0, "rejected": 0}
        self._rows: dict[str, dict[str, Any]] = {}
        self._task: asyncio.Task[None] | None = None
        self._session: aiohttp.ClientSession | None = None

    async def open(self) -> None:
        self.db = await aiosqlite.connect(self.node.config.data_dir / "outbox.sqlite")
        await self.db.execute("PRAGMA journal_mode=WAL")
        await self.db.executescript(_SCHEMA)
        await self.db.commit()
        for r in await self.db.execute_fetchall("SELECT * FROM deliveries"):
            self._rows[r[0]] = dict(
                zip(
                    (
                        "wo",
                        "key",
                        "status",
                        "attempts",
                        "next_at",
                        "last_error",
                        "http_status",
                        "delivered_at",
                    ),
                    r,
                    strict=True,
                )
            )

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="outbox")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()
        if self.db is not None:
            await self.db.close()

    def status(self) -> dict[str, Any]:
        by: dict[str, int] = {}
        for r in self._rows.values():
            by[r["status"]] = by.get(r["status"], 0) + 1
        return {"url": self.settings.url, "deliveries": by, "counters": dict(self.counters)}

    def delivery(self, wo_id: str) -> dict[str, Any] | None:
        return self._rows.get(wo_id)

    async def _save(self, row: dict[str, Any]) -> None:
        assert self.db is not None
        await self.db.execute(
            "INSERT INTO deliveries VALUES (?,?,?,?,?,?,?,?) ON CONFLICT (wo) DO UPDATE SET"
            " status=excluded.status, attempts=excluded.attempts, next_at=excluded.next_at,"
            " last_error=excluded.last_error, http_status=excluded.http_status,"
            " delivered_at=excluded.delivered_at",
            tuple(
                row[k]
                for k in (
                    "wo",
                    "key",
                    "status",
                    "attempts",
                    "next_at",
                    "last_error",
                    "http_status",
                    "delivered_at",
                )
            ),
        )
        await self.db.commit()
        self._rows[row["wo"]] = row

    async def step(self) -> None:
        me = self.node.config.name
        now = self.node.clock()
        for wo in self.node.work_orders.list():
            if wo["home"] != me or wo["id"] in self._rows:
                continue
            if wo["state"] in ("approved", "scheduled", "done") and not wo["conflict"]:
                await self._save(
                    {
                        "wo": wo["id"],
                        "key": f"{wo['id']}:approved",
                        "status": "pending",
                        "attempts": 0,
                        "next_at": now,
                        "last_error": None,
                        "http_status": None,
                        "delivered_at": None,
                    }
                )
        for row in list(self._rows.values()):
            if row["status"] == "pending" and row["next_at"] <= now:
                await self._deliver(dict(row))

    async def _deliver(self, row: dict[str, Any]) -> None:
        wo = self.node.work_orders.get(row["wo"])
        if wo is None:
            return
        payload = {
            "idempotency_key": row["key"],
            "work_order": wo,
            "alert": self.node.alerts.get(wo["alert"]) if wo.get("alert") else None,
        }
        if self._session is None:
            self._session = aiohttp.ClientSession()
        status: int | None = None
        error: str | None = None
        try:
            async with self._session.post(
                self.settings.url,
                data=json.dumps(payload, default=str),
                headers={"Idempotency-Key": row["key"], "Content-Type": "application/json"},
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
            ) as resp:
                status = resp.status
                await resp.read()
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            error = f"{type(exc).__name__}: {exc}"[:500]
        now = self.node.clock()
        row["attempts"] += 1
        row["http_status"] = status
        if status is not None and 200 <= status < 300:
            row.update(status="delivered", delivered_at=now, last_error=None)
            await self._save(row)
            self.counters["delivered"] += 1
            await self.node.work_orders.record_delivery(row["wo"], key=row["key"], status=status)
            return
        if status is not None and 400 <= status < 500 and status not in (408, 429):
            row.update(status="rejected", last_error=f"HTTP {status}: the receiver refused it")
            self.counters["rejected"] += 1
            await self._save(row)
            return
        self.counters["failed_attempt"] += 1
        delay = min(
            self.settings.backoff_base * 2 ** (row["attempts"] - 1), self.settings.backoff_max
        )
        row.update(
            next_at=now + delay * self.rng.uniform(0.8, 1.2), last_error=error or f"HTTP {status}"
        )
        await self._save(row)

    async def _run(self) -> None:
        while True:
            try:
                await self.step()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("outbox step failed")
            await asyncio.sleep(self.settings.poll)
