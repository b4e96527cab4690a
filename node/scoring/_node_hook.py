"""Wiring scoring, alerts and work orders into a node (a few lines in _node.py call this).

A node always has ``node.alerts`` and ``node.work_orders`` (central ops reads
the replicated logs and approves work orders); ``node.scoring`` exists only on
a node that ingests telemetry. The webhook outbox runs where ``[webhook]`` is
configured.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..alerts._service import AlertService
from ..workorders._service import WorkOrderService
from ._engine import EngineConfig
from ._service import ScoringService

if TYPE_CHECKING:
    from .._node import Node

__all__ = ["ScoringHooks", "attach_scoring"]


class ScoringHooks:
    def __init__(self, node: Any) -> None:
        self.node = node
        self.scoring: ScoringService | None = None
        self.limits: Any = None  # node/limits: AlarmLimit checks (they raise alerts too)
        self.outbox: Any = None

    async def open(self) -> None:
        node = self.node
        if node.telemetry is not None:
            cfg = getattr(node.config, "scoring", None) or EngineConfig()
            self.scoring = ScoringService(node, node.alerts, config=cfg)
            node.scoring = self.scoring
            await self.scoring.open()
            from ..limits import LimitService

            self.limits = LimitService(node)
            node.limits = self.limits
            await self.limits.open()
        webhook = getattr(node.config, "webhook", None)
        if webhook is not None:
            from ..workorders._outbox import Outbox

            self.outbox = Outbox(node, webhook)
            node.outbox = self.outbox
            await self.outbox.open()

    def start(self) -> None:
        if self.scoring is not None:
            self.scoring.start()
        if self.limits is not None:
            self.limits.start()
        if self.outbox is not None:
            self.outbox.start()

    async def close(self) -> None:
        if self.scoring is not None:
            await self.scoring.close()
        if self.limits is not None:
            await self.limits.close()
        if self.outbox is not None:
            await self.outbox.close()


def attach_scoring(node: Node) -> None:
    models: dict[str, str] = {}
    if node.telemetry is not None:
        models = {a.entity: a.model for a in node.telemetry.settings.assets}
    alerts = AlertService(node, model_of=lambda e: models.get(e, ""))
    node.alerts = alerts  # type: ignore[attr-defined]
    node.work_orders = WorkOrderService(node)  # type: ignore[attr-defined]
    node.scoring = None  # type: ignore[attr-defined]
    node.limits = None  # type: ignore[attr-defined]
    node.outbox = None  # type: ignore[attr-defined]
    alerts.on_event.append(node.work_orders.on_alert_event)  # type: ignore[attr-defined]
    node.scoring_hooks = ScoringHooks(node)  # type: ignore[attr-defined]
