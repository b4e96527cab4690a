"""CLI groups ``twinmesh entity`` (create, get, set) and ``twinmesh conflicts`` (list, resolve).

Which token each step needs: reading an entity or the review queue needs the
viewer role, creating an entity or writing a field the operator role, resolving a conflict the
reviewer role. From a fleet directory the client picks that token from
``fleet.json``; ``--token`` overrides it (``TWINMESH_TOKEN`` too).
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ._http import ApiError, NodeClient, client_from_args

__all__ = ["parse_value", "register"]


def parse_value(text: str) -> Any:
    """A field value from the command line: JSON if it parses (5, true, null, "x", [1]),
    else the text as a string (2026-05-10, Team B)."""
    try:
        return json.loads(text)
    except ValueError:
        return text


def _client(args: argparse.Namespace, role: str) -> NodeClient:
    return client_from_args(
        url=args.url, token=args.token, fleet_dir=args.dir, node=args.node, role=role
    )


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


def _entity_create(args: argparse.Namespace) -> int:
    _print(_client(args, "operator").create(args.entity, args.model))
    return 0


def _entity_get(args: argparse.Namespace) -> int:
    entity = _client(args, "viewer").entity(args.entity)
    if args.field is None:
        _print(entity)
        return 0
    fields = entity["fields"]
    if args.field not in fields:
        raise ApiError(f"{args.entity} has no field {args.field!r} (fields: {', '.join(fields)})")
    _print(fields[args.field])
    return 0


def _entity_set(args: argparse.Namespace) -> int:
    client = _client(args, "operator")
    context = args.context
    if args.blind:
        context = None
    elif context is None:
        # The context of what this node shows now: an overwrite of that, which
        # still becomes a conflict with writes this node has not seen.
        field = client.entity(args.entity)["fields"].get(args.field, {})
        context = field.get("context")
    after = client.write(args.entity, args.field, parse_value(args.value), context)
    _print(after["fields"][args.field])
    return 0


def _sibling_line(s: dict[str, Any]) -> str:
    return f"{json.dumps(s['value'])} (written at {s['origin']} by {s['author']})"


def _conflicts_list(args: argparse.Namespace) -> int:
    conflicts = _client(args, "viewer").conflicts()
    if args.json:
        _print(conflicts)
        return 0
    if not conflicts:
        print("no open conflicts")
    for c in conflicts:
        print(f"{c['entity']} {c['field']} (policy {c['policy']}, home {c['home']}):")
        for s in c["siblings"]:
            print(f"  sibling     {_sibling_line(s)}")
        print(f"  provisional {json.dumps(c['provisional']['value'])}")
    return 0


def _conflicts_resolve(args: argparse.Namespace) -> int:
    client = _client(args, "reviewer")
    context = args.context
    if context is None:
        # Resolve exactly the siblings shown now: if another arrives before the
        # POST, the node answers 409 stale-resolution and nothing changes.
        conflict = client.conflict(args.entity, args.field)
        context = conflict["context"]
        for s in conflict["siblings"]:
            print(f"resolving sibling {_sibling_line(s)}", file=sys.stderr)
    after = client.resolve(args.entity, args.field, parse_value(args.value), context, args.reason)
    _print(after["fields"][args.field])
    return 0


def _guard(fn: Any, group: str) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(fn(args))
        except ApiError as exc:
            print(f"twinmesh {group}: {exc.reason}", file=sys.stderr)
            return 1

    return run


def _target(p: argparse.ArgumentParser, role: str) -> None:
    p.add_argument(
        "--dir",
        help="fleet directory whose fleet.json gives URL and token (default: .twinmesh-fleet)",
    )
    p.add_argument("--node", help="which node of the fleet to ask (default: central)")
    p.add_argument("--url", help="the node's API URL instead, e.g. http://127.0.0.1:8400")
    p.add_argument(
        "--token", help=f"bearer token ({role} role or higher; default: from fleet.json)"
    )


def register(subparsers: Any) -> None:
    ent = subparsers.add_parser("entity", help="create and read a twin, write one of its fields")
    sub = ent.add_subparsers(dest="entity_command", metavar="SUBCOMMAND")
    new = sub.add_parser("create", help="create a twin at the node asked (its home)")
    new.add_argument(
        "entity", help="entity id SITE/NAME..., SITE the node's name: plant-a/line-1/pump-7"
    )
    new.add_argument(
        "--model", required=True, help="its DTDL model, e.g. dtmi:twinmesh:plant:Pump;1"
    )
    _target(new, "operator")
    new.set_defaults(handler=_guard(_entity_create, "entity"))
    get = sub.add_parser("get", help="an entity's fields, with each shared field's context")
    get.add_argument("entity", help="entity id, e.g. plant-a/line-1/pump-7")
    get.add_argument("--field", help="print only this field (its value, context, siblings)")
    _target(get, "viewer")
    get.set_defaults(handler=_guard(_entity_get, "entity"))
    put = sub.add_parser(
        "set",
        help="write a field with a context: a stale one makes a conflict, never an overwrite",
    )
    put.add_argument("entity", help="entity id, e.g. plant-a/line-1/pump-7")
    put.add_argument("field", help="field name, e.g. nextMaintenanceDate")
    put.add_argument("value", help='new value: JSON (5, true, "x") or else a plain string')
    ctx = put.add_mutually_exclusive_group()
    ctx.add_argument(
        "--context",
        help="the context token 'entity get' showed (default: read it from the node just now)",
    )
    ctx.add_argument(
        "--blind", action="store_true", help="write with no context (concurrent with everything)"
    )
    _target(put, "operator")
    put.set_defaults(handler=_guard(_entity_set, "entity"))
    ent.set_defaults(handler=lambda _a: ent.print_help() or 2)

    con = subparsers.add_parser("conflicts", help="the review queue: list and resolve conflicts")
    csub = con.add_subparsers(dest="conflicts_command", metavar="SUBCOMMAND")
    ls = csub.add_parser("list", help="open conflicts with their siblings and provisional value")
    ls.add_argument("--json", action="store_true", help="print the API's JSON, contexts included")
    _target(ls, "viewer")
    ls.set_defaults(handler=_guard(_conflicts_list, "conflicts"))
    res = csub.add_parser("resolve", help="settle a conflict with a value and a reason (audited)")
    res.add_argument("entity", help="entity id of the conflict")
    res.add_argument("field", help="field of the conflict")
    res.add_argument("value", help='the settled value: JSON (5, true, "x") or else a string')
    res.add_argument("--reason", required=True, help="why, for the audit log")
    res.add_argument(
        "--context",
        help="the conflict's context from 'conflicts list --json' (default: read it just now)",
    )
    _target(res, "reviewer")
    res.set_defaults(handler=_guard(_conflicts_resolve, "conflicts"))
    con.set_defaults(handler=lambda _a: con.print_help() or 2)
