"""FMU co-simulation on a plant node (FMI 2.0 / 3.0 co-simulation through FMPy)."""

from ._builtin import BuiltinFmus, CompilerMissing
from ._fmu import FmuError, FmuInfo, FmuStepError, Slave, VarInfo, inspect_fmu, sha256_file
from ._master import Master, MasterStats
from ._system import (
    ALGORITHMS,
    Connection,
    FmuEntry,
    System,
    SystemError_,
    SystemProblem,
    load_system,
)

__all__ = [
    "ALGORITHMS",
    "BuiltinFmus",
    "CompilerMissing",
    "Connection",
    "FmuEntry",
    "FmuError",
    "FmuInfo",
    "FmuStepError",
    "Master",
    "MasterStats",
    "Slave",
    "System",
    "SystemError_",
    "SystemProblem",
    "VarInfo",
    "inspect_fmu",
    "load_system",
    "sha256_file",
]
