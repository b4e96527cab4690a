"""``twinmesh model validate``: exit codes and compiler-style output."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import pytest

from twinmesh.node.dtdl.cli import register

MODELS = Path(__file__).resolve().parent.parent / "plant-adapters" / "synthetic" / "models"


def run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="twinmesh")
    register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(list(argv))
    return int(args.handler(args))


def write(path: Path, content: Any) -> str:
    path.write_text(content if isinstance(content, str) else json.dumps(content))
    return str(path)


def iface(dtmi: str, **extra: Any) -> dict[str, Any]:
    return {"@context": "dtmi:dtdl:context;3", "@id": dtmi, "@type": "Interface", **extra}


def test_shipped_models_validate(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("model", "validate", str(MODELS)) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert out == ["ok: 7 interfaces in 7 files, all valid DTDL v3"]


def test_errors_are_printed_one_per_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = write(
        tmp_path / "bad.json",
        iface(
            "dtmi:t:Bad;1",
            contents=[
                {"@type": "Property", "name": "1speed", "schema": "double"},
                {"@type": "Telemetry", "name": "flow", "schema": "byte"},
            ],
        ),
    )
    assert run("model", "validate", bad) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith(f'{bad}: dtmi:t:Bad;1 / contents[0] (name "1speed") / name: ')
    assert lines[0].endswith("[name.pattern]")
    assert lines[1].startswith(f'{bad}: dtmi:t:Bad;1 / contents[1] (name "flow") / schema: ')
    assert lines[-1] == "2 errors in 1 file"


def test_references_between_files_on_the_command_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = write(tmp_path / "base.json", iface("dtmi:t:Base;1"))
    derived = write(tmp_path / "derived.json", iface("dtmi:t:Derived;1", extends="dtmi:t:Base;1"))
    assert run("model", "validate", base, derived) == 0
    assert "ok: 2 interfaces in 2 files" in capsys.readouterr().out
    assert run("model", "validate", derived) == 1
    out = capsys.readouterr().out
    assert f"{derived}: dtmi:t:Derived;1 / extends[0]: " in out
    assert "[extends.unresolved]" in out


def test_a_file_may_hold_an_array(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    both = write(
        tmp_path / "both.json",
        [iface("dtmi:t:Base;1"), iface("dtmi:t:Derived;1", extends="dtmi:t:Base;1")],
    )
    assert run("model", "validate", both) == 0
    assert "ok: 2 interfaces in 1 file," in capsys.readouterr().out


def test_unreadable_input(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broken = write(tmp_path / "broken.json", "{ not json")
    missing = str(tmp_path / "missing.json")
    assert run("model", "validate", broken, missing) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].startswith(f"{broken}: (document): cannot read JSON: ")
    assert lines[0].endswith("[json]")
    assert lines[1].startswith(f"{missing}: (document): cannot read model file: ")
    assert lines[-1] == "2 errors in 2 files"


def test_usage_errors_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        run("model", "validate")
    assert info.value.code == 2
    assert run("model") == 2  # the group alone prints its help
    assert "validate" in capsys.readouterr().out
