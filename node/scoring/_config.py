"""``[scoring]`` and ``[webhook]`` tables of a node's config; every key checked."""

from __future__ import annotations

from typing import Any

from ..workorders._outbox import WebhookSettings, parse_webhook
from ._engine import DETECTORS, EngineConfig

__all__ = ["parse_scoring_tables"]

_INTS = ("warmup", "drift_window", "dropout_frames")
_FLOATS = ("drift_limit", "stale_after", "relation_r2")


def parse_scoring_tables(raw: dict[str, Any]) -> tuple[EngineConfig | None, WebhookSettings | None]:
    t = raw.get("scoring")
    cfg = None
    if t is not None:
        if not isinstance(t, dict):
            raise ValueError("[scoring] must be a table")
        unknown = sorted(set(t) - set(_INTS) - set(_FLOATS) - {"detectors"})
        if unknown:
            raise ValueError(f"scoring.{unknown[0]}: unknown key")
        kw: dict[str, Any] = {}
        for k in _INTS:
            if k in t:
                v = t[k]
                if isinstance(v, bool) or not isinstance(v, int) or not 1 <= v <= 10**6:
                    raise ValueError(f"scoring.{k}: expected an integer 1..1000000, found {v!r}")
                kw[k] = v
        for k in _FLOATS:
            if k in t:
                v = t[k]
                if isinstance(v, bool) or not isinstance(v, int | float) or not 0 < v <= 1e6:
                    raise ValueError(f"scoring.{k}: expected a positive number, found {v!r}")
                if k == "relation_r2" and v > 1:
                    raise ValueError(
                        f"scoring.relation_r2: expected a share in (0, 1], found {v!r}"
                    )
                kw[k] = float(v)
        if "detectors" in t:
            d = t["detectors"]
            if not isinstance(d, list) or not all(x in DETECTORS for x in d):
                raise ValueError(f"scoring.detectors: expected a list drawn from {list(DETECTORS)}")
            kw["detectors"] = tuple(d)
        cfg = EngineConfig(**kw)
    return cfg, parse_webhook(raw)
