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
    "twinmesh.node.chaos.cli",
    "twinmesh.node.demo.cli",
    "twinmesh.node.client.cli",
    "twinmesh.node.security.cli",
    "twinmesh.node.dtdl.cli",
    "twinmesh.node.cosim.cli",
    "twinmesh.sim.cli",
    "twinmesh.adapters.synthetic.cli",
)


class Parser(argparse.ArgumentParser):
    """An ArgumentParser without prefix matching: ``--plant 3`` is an error, not ``--plants``.

    Subparsers are made with the class of their parent (argparse's default
    ``parser_class``), so every group and subcommand inherits this.
    """

    def __init__(self, *args: object, **kwargs: object) -> None:
        kwargs.setdefault("allow_abbrev", False)
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
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
