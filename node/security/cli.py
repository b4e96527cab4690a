"""``twinmesh ca``: create the fleet CA and issue node certificates.

Exit codes: 0 done, 1 refused (CA missing or already there, node already issued,
bad name), 2 usage error (argparse).
"""

from __future__ import annotations

import argparse
import sys

from ._ca import DEFAULT_CA_DAYS, DEFAULT_NODE_DAYS, CAError, init_ca, issue_node

__all__ = ["register"]


def _cmd_init(args: argparse.Namespace) -> int:
    try:
        ca = init_ca(args.dir, fleet=args.name, days=args.days)
    except CAError as exc:
        print(f"twinmesh ca init: error: {exc.reason}", file=sys.stderr)
        return 1
    from pathlib import Path

    from .._signing import ensure_fleet_signing_key, ensure_token_secret

    ensure_fleet_signing_key(Path(args.dir))
    ensure_token_secret(Path(args.dir))
    print(f"created fleet CA {ca.fleet!r}")
    print(f"  certificate: {ca.cert_path}")
    print(f"  private key: {ca.key_path} (mode 0600; keep it off the plant nodes)")
    return 0


def _cmd_issue(args: argparse.Namespace) -> int:
    try:
        creds = issue_node(
            args.dir,
            args.node,
            ips=tuple(args.ip or ()),
            dns=tuple(args.dns or ()),
            days=args.days,
        )
    except CAError as exc:
        print(f"twinmesh ca issue: error: {exc.reason}", file=sys.stderr)
        return 1
    from pathlib import Path

    from .._signing import issue_signing_identity

    issue_signing_identity(Path(args.dir), creds.node, creds.cert_path.parent)
    print(f"issued node {creds.node!r}")
    print(f"  certificate: {creds.cert_path}")
    print(f"  private key: {creds.key_path} (mode 0600)")
    print(f"  fleet CA:    {creds.ca_cert_path}")
    print(f"  gossip signing identity (Ed25519): {creds.cert_path.parent}")
    return 0


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    ca = subparsers.add_parser(
        "ca",
        help="fleet certificate authority for node-to-node mutual TLS",
        description="Create the fleet CA and issue node certificates for mutual TLS.",
    )
    ca_sub = ca.add_subparsers(dest="ca_command", metavar="ACTION")

    def _help(_: argparse.Namespace) -> int:
        ca.print_help()
        return 2

    ca.set_defaults(handler=_help)

    init = ca_sub.add_parser("init", help="create a new fleet CA (refuses to overwrite one)")
    init.add_argument("--dir", required=True, help="folder for the CA (created if missing)")
    init.add_argument("--name", default="twinmesh", help="fleet name (default: %(default)s)")
    init.add_argument(
        "--days", type=int, default=DEFAULT_CA_DAYS, help="validity in days (default: %(default)s)"
    )
    init.set_defaults(handler=_cmd_init)

    issue = ca_sub.add_parser("issue", help="issue a certificate for one node")
    issue.add_argument("node", help="node name: a-z, 0-9 and '-', at most 63 characters")
    issue.add_argument("--dir", required=True, help="folder of the fleet CA")
    issue.add_argument(
        "--ip",
        action="append",
        metavar="ADDR",
        help="IP SAN for hostname verification; repeatable "
        "(with neither --ip nor --dns: 127.0.0.1 and localhost)",
    )
    issue.add_argument("--dns", action="append", metavar="NAME", help="DNS SAN; repeatable")
    issue.add_argument(
        "--days",
        type=int,
        default=DEFAULT_NODE_DAYS,
        help="validity in days (default: %(default)s)",
    )
    issue.set_defaults(handler=_cmd_issue)
