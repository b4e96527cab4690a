"""``/metrics`` in the Prometheus text exposition format (version 0.0.4)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._node import Node

__all__ = ["render_metrics"]


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_metrics(node: Node) -> str:
    engine, store, m = node.engine, node.store, node.metrics
    assert engine is not None and store is not None
    em = engine.metrics
    lines: list[str] = []

    def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
        lines.append(f"# HELP twinmesh_{name} {help_text}")
        lines.append(f"# TYPE twinmesh_{name} {kind}")
        for labels, value in samples:
            lines.append(f"twinmesh_{name}{labels} {value}")

    metric("gossip_rounds_total", "counter", "Gossip rounds started.", [("", em.rounds)])
    metric(
        "gossip_messages_total",
        "counter",
        "Sync messages by direction.",
        [
            ('{direction="sent"}', em.messages_sent),
            ('{direction="received"}', em.messages_received),
        ],
    )
    metric(
        "gossip_bytes_total",
        "counter",
        "Sync bytes by direction.",
        [('{direction="sent"}', em.bytes_sent), ('{direction="received"}', em.bytes_received)],
    )
    metric(
        "deltas_total",
        "counter",
        "Deltas by outcome.",
        [
            ('{outcome="sent"}', em.deltas_sent),
            ('{outcome="applied"}', em.deltas_received),
            ('{outcome="duplicate"}', em.deltas_duplicate),
            ('{outcome="refused"}', em.deltas_refused),
        ],
    )
    refusals = [
        (f'{{reason="{_label(k)}",layer="engine"}}', v) for k, v in sorted(em.refusals.items())
    ]
    refusals += [
        (f'{{reason="{_label(k)}",layer="transport"}}', v)
        for k, v in sorted(m.gossip_refusals.items())
    ]
    metric("gossip_refusals_total", "counter", "Refused gossip input by reason.", refusals)
    lag = engine.lag()
    metric(
        "peer_lag_deltas",
        "gauge",
        "Deltas a peer lacks from us (direction=to) or we lack from it (direction=from).",
        [(f'{{peer="{_label(p)}",direction="to"}}', a) for p, (a, _) in lag.items()]
        + [(f'{{peer="{_label(p)}",direction="from"}}', b) for p, (_, b) in lag.items()],
    )
    now = node.monotonic()  # engine contact times are monotonic
    metric(
        "peer_last_contact_seconds",
        "gauge",
        "Seconds since we last heard from a peer (-1: never).",
        [
            (f'{{peer="{_label(p)}"}}', -1 if t is None else round(now - t, 3))
            for p, t in engine.last_contact().items()
        ],
    )
    metric("store_commits_total", "counter", "Group commits.", [("", store.commits)])
    metric(
        "store_commit_rows_total",
        "counter",
        "Rows written by group commits.",
        [("", store.commit_rows_total)],
    )
    metric(
        "store_commit_seconds_total",
        "counter",
        "Time spent committing (divide by commits for the mean latency).",
        [("", round(store.commit_seconds_total, 6))],
    )
    metric("writes_total", "counter", "Durable local writes.", [("", m.writes)])
    metric(
        "api_requests_total",
        "counter",
        "API requests by route and status.",
        [
            (f'{{route="{_label(r)}",status="{s}"}}', n)
            for (r, s), n in sorted(m.api_requests.items())
        ],
    )
    metric(
        "api_seconds_total",
        "counter",
        "Time spent serving API requests, by route.",
        [(f'{{route="{_label(r)}"}}', round(t, 6)) for r, t in sorted(m.api_seconds.items())],
    )
    metric(
        "api_refusals_total",
        "counter",
        "Refused API requests by reason.",
        [(f'{{reason="{_label(k)}"}}', v) for k, v in sorted(m.api_refusals.items())],
    )
    metric(
        "conflicts_open",
        "gauge",
        "Open conflicts in the review queue.",
        [("", len(node.state.conflicts()))],
    )
    if node.telemetry is not None and node.telemetry.buffer is not None:
        _telemetry_metrics(node, metric)
    if node.cosim is not None:
        lines += node.cosim.metric_lines()
    from .scoring._api import scoring_metrics

    scoring_metrics(node, metric)
    return "\n".join(lines) + "\n"


_TELEMETRY_HELP = {
    "telemetry_samples_stored_total": ("counter", "Samples committed to the telemetry buffer."),
    "telemetry_samples_duplicate_total": (
        "counter",
        "Redelivered samples (same sample id) stored once and counted here.",
    ),
    "telemetry_commits_total": ("counter", "Telemetry buffer group commits."),
    "telemetry_appends_total": ("counter", "Batches handed to the telemetry buffer."),
    "telemetry_last_seq": ("gauge", "Sequence number of the newest stored sample."),
    "telemetry_flag_total": ("counter", "Stored samples carrying each data-quality flag."),
    "telemetry_rejects_total": ("counter", "Adapter input that could not become a sample."),
    "telemetry_events_total": ("counter", "Data-quality events (stale, stuck) by kind."),
}


def _telemetry_metrics(node: Node, metric: Any) -> None:
    svc = node.telemetry
    assert svc is not None and svc.buffer is not None
    grouped: dict[str, list[tuple[str, float]]] = {name: [] for name in _TELEMETRY_HELP}
    for key, value in svc.buffer.counters().items():
        name, brace, labels = key.partition("{")
        grouped.setdefault(name, []).append((brace + labels, value))
    for name, samples in grouped.items():
        kind, help_text = _TELEMETRY_HELP.get(name, ("untyped", name))
        metric(name, kind, help_text, samples)
    statuses = svc.statuses()

    def per_adapter(value: Any) -> list[tuple[str, float]]:
        return [
            (f'{{adapter="{_label(s.name)}",kind="{s.kind}"}}', float(value(s))) for s in statuses
        ]

    metric(
        "adapter_up", "gauge", "1 while the adapter is connected.", per_adapter(lambda s: s.healthy)
    )
    metric(
        "adapter_connects_total",
        "counter",
        "Successful connections.",
        per_adapter(lambda s: s.connects),
    )
    metric(
        "adapter_failures_total",
        "counter",
        "Sessions that ended in an error.",
        per_adapter(lambda s: s.failures),
    )
    metric(
        "adapter_samples_total",
        "counter",
        "Samples the adapter delivered and the buffer made durable.",
        per_adapter(lambda s: s.samples),
    )
    metric(
        "adapter_rejects_total",
        "counter",
        "Input the adapter rejected, by reason.",
        [
            (f'{{adapter="{_label(s.name)}",reason="{_label(r)}"}}', n)
            for s in statuses
            for r, n in sorted(s.rejects_by_reason.items())
        ],
    )
    now = node.clock()
    metric(
        "telemetry_tag_age_seconds",
        "gauge",
        "Seconds since the newest sample of each tag was received.",
        [
            (
                f'{{entity="{_label(e)}",name="{_label(n)}"}}',
                round(now - sample.received_ts, 3),
            )
            for (e, n), sample in sorted(svc.latest.items())
        ],
    )
