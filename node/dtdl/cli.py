"""``twinmesh model``: check DTDL v3 model files.

``twinmesh model validate PATH...`` reads every file (a directory stands for
the ``*.json`` files under it), parses them as one model set, so ``extends``
and Component references between the files resolve, and prints each error as
``file: path: message``, compiler style.

Exit codes: 0 every model valid, 1 at least one error, 2 usage error.
"""

from __future__ import annotations

import argparse
from typing import Any

from ._load import load_model_files

__all__ = ["register"]


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _validate(args: argparse.Namespace) -> int:
    result = load_model_files(args.paths)
    sources = sorted({m.source for m in result.models} | {e.source for e in result.errors})
    for error in result.errors:
        print(f"{error.source or '<input>'}: {error.path}: {error.message}")
    files = _plural(len(sources), "file")
    if result.errors:
        print(f"{_plural(len(result.errors), 'error')} in {files}")
        return 1
    print(f"ok: {_plural(len(result.models), 'interface')} in {files}, all valid DTDL v3")
    return 0


def register(subparsers: Any) -> None:
    group = subparsers.add_parser(
        "model",
        help="DTDL v3 models: validate model files",
        description="Work with the DTDL v3 models that define twins.",
    )
    sub = group.add_subparsers(dest="model_command", metavar="ACTION")
    validate = sub.add_parser(
        "validate",
        help="check DTDL v3 model files and print every error",
        description=(
            "Parse the given model files as one set (references between them resolve) and "
            "print every error as 'file: path: message'. Exit 0 if all are valid, else 1."
        ),
    )
    validate.add_argument(
        "paths", nargs="+", metavar="PATH", help="model file, or directory of *.json files"
    )
    validate.set_defaults(handler=_validate)
    group.set_defaults(handler=lambda _args: group.print_help() or 2)
