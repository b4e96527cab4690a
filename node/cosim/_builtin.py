"""Our own FMUs on this machine: built once from C source, cached by source digest.

``builtin = "motor_thermal"`` in a system file resolves here. The cache key is
the digest of the FMU's C source, its shared header and its variable
declaration (:meth:`FmuSpec.digest`), so editing a model rebuilds it and an
unchanged model is never rebuilt (nor changes its sha256).
"""

from __future__ import annotations

import os
import threading
from pathlib import Path

from .fmus import FMUS, CompilerMissing, build_fmu

__all__ = ["BuiltinFmus", "CompilerMissing", "default_cache_dir"]


def default_cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "twinmesh" / "fmus"


class BuiltinFmus:
    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or default_cache_dir()
        self._lock = threading.Lock()

    def path(self, name: str) -> Path:
        spec = FMUS.get(name)
        if spec is None:
            raise LookupError(f"no builtin FMU {name!r} (have: {', '.join(sorted(FMUS))})")
        return self.directory / spec.digest()[:16] / f"{spec.identifier}.fmu"

    def resolve(self, name: str) -> Path:
        """The built FMU, building it first if needed (raises CompilerMissing)."""
        path = self.path(name)
        if path.exists():
            return path
        with self._lock:
            if not path.exists():
                build_fmu(FMUS[name], path.parent)
        return path

    def build_all(self) -> dict[str, Path]:
        return {name: self.resolve(name) for name in FMUS}
