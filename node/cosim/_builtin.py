"""Our own FMUs on this machine: built once from C source, cached by source digest.

``builtin = "motor_thermal"`` in a system file resolves here (an FMI 2.0
build; ``"motor_thermal@fmi3"`` is the same model built as FMI 3.0). The cache key is
the digest of the FMU's C source, its shared header and its variable
declaration (:meth:`FmuSpec.digest`), so editing a model rebuilds it and an
unchanged model is never rebuilt (nor changes its sha256).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from .fmus import FMUS, CompilerMissing, build_fmu, split_builtin

__all__ = ["BuiltinFmus", "CompilerMissing", "default_cache_dir"]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "twinmesh" / "fmus"


class BuiltinFmus:
    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or default_cache_dir()
        self._lock = threading.Lock()

    def path(self, name: str) -> Path:
        base, fmi_version = split_builtin(name)
        spec = FMUS.get(base)
        if spec is None:
            raise LookupError(f"no builtin FMU {name!r} (have: {', '.join(sorted(FMUS))})")
        return self.directory / spec.digest(fmi_version)[:16] / f"{spec.identifier}.fmu"

    def resolve(self, name: str) -> Path:
        """The built FMU, building it first if needed (raises CompilerMissing)."""
        path = self.path(name)
        if path.exists():
            return path
        with self._lock:
            if not path.exists():
                base, fmi_version = split_builtin(name)
                build_fmu(FMUS[base], path.parent, fmi_version=fmi_version)
        return path

    def build_all(self) -> dict[str, Path]:
        return {name: self.resolve(name) for name in FMUS}
