"""Helpers for the co-simulation tests: our FMUs built for real, and altered copies.

Altered copies are real archives with one thing changed (the platform of the
binary, the interface, the model description), so each refusal is tested
against exactly the defect it names.
"""

from __future__ import annotations

import re
import zipfile
from collections.abc import Callable
from pathlib import Path

from twinmesh.node.cosim import BuiltinFmus

SYSTEM = Path(__file__).parent.parent / "node" / "cosim" / "systems" / "motor.toml"


def builtins(directory: Path) -> BuiltinFmus:
    b = BuiltinFmus(directory)
    b.build_all()
    return b


def rewrite(
    src: Path,
    dst: Path,
    *,
    rename: dict[str, str] | None = None,
    md: Callable[[str], str] | None = None,
    drop: tuple[str, ...] = (),
) -> Path:
    """Copy an FMU archive with entries renamed/dropped and the model description edited."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for item in zin.infolist():
            if item.filename in drop:
                continue
            data = zin.read(item.filename)
            if item.filename == "modelDescription.xml" and md is not None:
                data = md(data.decode()).encode()
            zout.writestr((rename or {}).get(item.filename, item.filename), data)
    return dst


def model_exchange_only(text: str) -> str:
    return re.sub(
        r"<CoSimulation (modelIdentifier=\"\w+\")[^>]*>.*?</CoSimulation>",
        r"<ModelExchange \1/>",
        text,
        flags=re.S,
    )


def system_text(**replace: str) -> str:
    text = SYSTEM.read_text()
    for old, new in replace.items():
        text = text.replace(old, new)
    return text
