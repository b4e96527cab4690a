"""The one command line: ``twinmesh``.

Each subcommand group lives with the code it drives and registers itself here
through ``_GROUPS``: a module path whose ``register(subparsers)`` adds its
parsers. Imports are lazy so ``twinmesh --help`` stays fast and a group whose
optional runtime pieces are missing cannot break the others.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from twinmesh import __version__

# (module, group name) — the module has ``register(subparsers) -> None``.
_GROUPS: tuple[str, ...] = (
    "twinmesh.crdt.cli",
    "twinmesh.node.cli",
    "twinmesh.node.scoring.cli",
    "twinmesh.node.fleet.cli",
    "twinmesh.node.security.cli",
    "twinmesh.node.dtdl.cli",
    "twinmesh.sim.cli",
    "twinmesh.adapters.synthetic.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="twinmesh",
        description="Federated industrial digital twins: CRDT merge, gossip, partition tests.",
    )
    parser.add_argument("--version", action="version", version=f"twinmesh {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module_name in _GROUPS:
        importlib.import_module(module_name).register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help()
        return 2
    result = handler(args)
    return int(result or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
