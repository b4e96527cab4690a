"""``twinmesh score evaluate``: the detection-quality table for a plant file."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any


def _evaluate(args: argparse.Namespace) -> int:
    import sys

    from ...adapters.synthetic import PlantConfigError
    from ._evaluate import main_evaluate

    try:
        table = main_evaluate(
            Path(args.config),
            seeds=args.seeds,
            variants=args.variants,
            duration=args.duration,
            tail=args.tail,
            as_json=args.json,
            first_seed=args.first_seed,
            cosim=not args.no_cosim,
        )
    except PlantConfigError as exc:
        # A wrong path or a bad plant file is the user's to fix: one line, no traceback.
        print(f"twinmesh score evaluate: {exc}", file=sys.stderr)
        return 2
    print(table)
    return 0


def _api_command(build: Any, role: str) -> Any:
    """A handler calling the node through NodeClient; a refusal is one line."""

    def run(args: argparse.Namespace) -> int:
        import json
        import sys

        from ..client import ApiError, client_from_args

        try:
            client = client_from_args(
                url=args.url, token=args.token, fleet_dir=args.dir, node=args.node, role=role
            )
            method, path, body = build(args)
            print(json.dumps(client.call(method, path, body), indent=2))
        except ApiError as exc:
            print(f"twinmesh score: {exc.reason}", file=sys.stderr)
            return 1
        return 0

    return run


def _target(p: Any, role: str) -> None:
    p.add_argument("--dir", help="fleet directory whose fleet.json gives URL and token")
    p.add_argument("--node", help="which node of the fleet to ask (default: central)")
    p.add_argument("--url", help="the node's API URL instead, e.g. http://127.0.0.1:8400")
    p.add_argument("--token", help=f"bearer token ({role} role or higher)")


def _q(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="/")


def _alerts_query(a: argparse.Namespace) -> tuple[str, str, None]:
    from urllib.parse import urlencode

    q = {k: v for k in ("entity", "plant", "severity", "state") if (v := getattr(a, k))}
    return "GET", "/v1/alerts" + (f"?{urlencode(q)}" if q else ""), None


def register(subparsers: Any) -> None:
    group = subparsers.add_parser(
        "score", help="anomaly scoring: evaluate detectors; assets, alerts, retrain on a node"
    )
    sub = group.add_subparsers(dest="score_command", metavar="SUBCOMMAND")
    ev = sub.add_parser(
        "evaluate",
        help="recall, lead time, false alerts per healthy asset-day and sensor labelling,"
        " per fault type, over seeds (and altered copies of the plant)",
    )
    ev.add_argument("--config", required=True, help="plant.toml of the synthetic plant")
    ev.add_argument("--seeds", type=int, default=3, help="seeds per plant file (default 3)")
    ev.add_argument("--first-seed", type=int, default=1, help="the first seed (default 1)")
    ev.add_argument(
        "--variants",
        type=int,
        default=2,
        help="altered copies of the plant written to a temp dir (default 2)",
    )
    ev.add_argument(
        "--duration",
        type=float,
        default=None,
        help="stream seconds per run (default: last fault end + --tail)",
    )
    ev.add_argument(
        "--tail",
        type=float,
        default=1800.0,
        help="healthy seconds after the last fault (default 1800)",
    )
    ev.add_argument(
        "--no-cosim",
        action="store_true",
        help="score without co-simulating the motors (default: their FMUs run, as on a node)",
    )
    ev.add_argument("--json", action="store_true", help="print the table as JSON")
    ev.set_defaults(handler=_evaluate)

    asset = sub.add_parser(
        "asset", help="an asset's baseline, detectors, model version and retrains (lineage)"
    )
    asset.add_argument("entity", help="asset id, e.g. plant-a/line-1/motor-1")
    _target(asset, "viewer")
    asset.set_defaults(
        handler=_api_command(
            lambda a: ("GET", f"/v1/scoring/assets/{_q(a.entity)}", None), "viewer"
        )
    )
    lst = sub.add_parser("alerts", help="list alerts (filter by asset, plant, severity, state)")
    for k, text in (
        ("entity", "only this asset's alerts, e.g. plant-a/line-1/motor-1"),
        ("plant", "only alerts raised by this plant"),
        ("severity", "only this severity: info, warning, high or critical"),
        ("state", "only alerts in this state: open, acknowledged or cleared"),
    ):
        lst.add_argument(f"--{k}", help=text)
    _target(lst, "viewer")
    lst.set_defaults(handler=_api_command(_alerts_query, "viewer"))
    one = sub.add_parser("alert", help="one alert with its events and full lineage")
    one.add_argument("id", help="alert id, as `twinmesh score alerts` lists it")
    _target(one, "viewer")
    one.set_defaults(
        handler=_api_command(lambda a: ("GET", f"/v1/alerts/{_q(a.id)}", None), "viewer")
    )
    for action, text in (("ack", "acknowledge an alert"), ("clear", "clear an alert")):
        p = sub.add_parser(action, help=text)
        p.add_argument("id", help="alert id, as `twinmesh score alerts` lists it")
        p.add_argument("--note", default="", help="a note recorded with the event")
        _target(p, "operator")
        p.set_defaults(
            handler=_api_command(
                lambda a, action=action: (
                    "POST",
                    f"/v1/alerts/{_q(a.id)}/{action}",
                    {"note": a.note},
                ),
                "operator",
            )
        )
    rt = sub.add_parser(
        "retrain", help="relearn an asset's baseline from a fresh warm-up (reason recorded)"
    )
    rt.add_argument("entity", help="asset id, e.g. plant-a/line-1/motor-1")
    rt.add_argument("--reason", required=True, help="why (recorded with the new model version)")
    _target(rt, "operator")
    rt.set_defaults(
        handler=_api_command(
            lambda a: ("POST", f"/v1/scoring/retrain/{_q(a.entity)}", {"reason": a.reason}),
            "operator",
        )
    )
    group.set_defaults(handler=lambda a: group.print_help() or 2)
