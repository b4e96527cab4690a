"""twinmesh's own motor FMUs: their variables, and building them from C source.

Theory of operation
-------------------
Each FMU is one C file here (``motor_<part>.c``): the model alone (its
outputs and its step). The FMI API around it is one shared header per FMI
version: ``fmi2_slave.h`` (FMI 2.0) or ``fmi3_slave.h`` (FMI 3.0), so every
model builds as an FMI 2.0 and as an FMI 3.0 co-simulation FMU from the same
source (``fmi_version``; builtin names ``motor_thermal`` and
``motor_thermal@fmi3``). Its variables are declared once, in :data:`FMUS`
below; from that one declaration :func:`model_description` writes
``modelDescription.xml`` (FMI 2.0 §2.2 / FMI 3.0 §2.4, with unit definitions
and the ModelStructure's output dependencies) and :func:`vars_header` the C
header of value references and start values (which then includes the slave
header of the version built), so the XML and the binary can never disagree on
a value reference.

:func:`write_source_fmu` packs a *source FMU* (FMI 2.0 §2.3: ``sources/`` and
a ``<SourceFiles>`` list, no binary; FMI 3.0 §2.5.1:
``sources/buildDescription.xml``). :func:`build_fmu` compiles it with the
system C compiler into a *binary FMU* for this platform
(``binaries/linux64/<modelIdentifier>.so``, FMI 2.0 §2.3;
``binaries/x86_64-linux/...``, FMI 3.0 §2.5.1.2). The FMI headers
come from the FMPy package (``fmpy/c-code``), so building needs no internet,
only a C compiler; without one :class:`CompilerMissing` says so plainly.
Archives are written with fixed timestamps and entry order, so rebuilding the
same sources with the same compiler gives the same sha256.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

__all__ = [
    "FMUS",
    "CompilerMissing",
    "FmuSpec",
    "Var",
    "build_all",
    "build_fmu",
    "find_compiler",
    "fmi_headers",
    "model_description",
    "split_builtin",
    "vars_header",
    "write_source_fmu",
]

HERE = Path(__file__).parent
VERSION = "1.0.0"
FMI_VERSIONS = ("2.0", "3.0")
_SLAVE_HEADER = {"2.0": "fmi2_slave.h", "3.0": "fmi3_slave.h"}
_BINARY_DIR = {"2.0": "linux64", "3.0": "x86_64-linux"}
_BUILTIN_SUFFIX = {"@fmi2": "2.0", "@fmi3": "3.0"}
_ZIP_TIME = (2024, 1, 1, 0, 0, 0)


class CompilerMissing(RuntimeError):
    """No C compiler on this machine: our FMUs cannot be built here."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Var:
    name: str
    causality: str  # parameter | input | output
    start: float
    unit: str
    description: str
    variability: str = ""  # default: fixed for parameters, continuous otherwise
    depends_on: tuple[str, ...] = ()  # outputs: inputs with direct feedthrough

    @property
    def var_variability(self) -> str:
        return self.variability or ("fixed" if self.causality == "parameter" else "continuous")


@dataclass(frozen=True, slots=True, kw_only=True)
class FmuSpec:
    identifier: str
    description: str
    variables: tuple[Var, ...]
    #: The model's own version (modelDescription ``version``): bumped when its
    #: variables or their meaning change, so a registry reader sees it without
    #: comparing hashes.
    version: str = VERSION

    @property
    def source(self) -> Path:
        return HERE / f"{self.identifier}.c"

    def digest(self, fmi_version: str = "2.0") -> str:
        """Hash of everything the FMU is made of (its GUID derives from it)."""
        h = hashlib.sha256()
        for path in (self.source, HERE / _SLAVE_HEADER[fmi_version]):
            h.update(path.read_bytes())
        h.update(repr(self).encode())
        if fmi_version != "2.0":
            h.update(f"fmi{fmi_version}".encode())
        return h.hexdigest()

    def guid(self, fmi_version: str = "2.0") -> str:
        """The FMI 2.0 guid / FMI 3.0 instantiationToken."""
        d = self.digest(fmi_version)
        return f"{{{d[0:8]}-{d[8:12]}-{d[12:16]}-{d[16:20]}-{d[20:32]}}}"


#: Unit definitions (FMI 2.0 §2.2.2): SI base-unit exponents, factor, offset,
#: so that an importer can tell which units convert into each other.
UNITS: dict[str, dict[str, float]] = {
    "%": {"factor": 0.01},
    "1": {},
    "A": {"A": 1},
    "Hz": {"s": -1},
    "rpm": {"s": -1, "rad": 1, "factor": 0.10471975511965977},
    "N.m": {"kg": 1, "m": 2, "s": -2},
    "W": {"kg": 1, "m": 2, "s": -3},
    "s": {"s": 1},
    "K": {"K": 1},
    "degC": {"K": 1, "offset": 273.15},
    "Hz/s": {"s": -2},
}

FMUS: dict[str, FmuSpec] = {
    "motor_electrical": FmuSpec(
        identifier="motor_electrical",
        description="Induction motor, electrical: speed, current and torque from load and supply",
        variables=(
            Var(name="load", causality="input", start=70.0, unit="%", description="shaft load"),
            Var(
                name="frequency",
                causality="input",
                start=50.0,
                unit="Hz",
                description="supply frequency",
            ),
            Var(
                name="speed",
                causality="output",
                start=0.0,
                unit="rpm",
                description="shaft speed",
                depends_on=("load", "frequency"),
            ),
            Var(
                name="current",
                causality="output",
                start=0.0,
                unit="A",
                description="phase current",
                depends_on=("load", "frequency"),
            ),
            Var(
                name="torque",
                causality="output",
                start=0.0,
                unit="N.m",
                description="shaft torque",
                depends_on=("load", "frequency"),
            ),
            Var(
                name="rated_current", causality="parameter", start=28.5, unit="A", description="I_N"
            ),
            Var(
                name="magnetising_share",
                causality="parameter",
                start=0.35,
                unit="1",
                description="no-load current / rated current",
            ),
            Var(name="poles", causality="parameter", start=4.0, unit="1", description="poles"),
            Var(
                name="rated_slip",
                causality="parameter",
                start=0.027,
                unit="1",
                description="slip at rated load",
            ),
            Var(
                name="rated_frequency",
                causality="parameter",
                start=50.0,
                unit="Hz",
                description="nameplate frequency",
            ),
            Var(
                name="rated_power",
                causality="parameter",
                start=15000.0,
                unit="W",
                description="rated shaft power",
            ),
            Var(
                name="max_load",
                causality="parameter",
                start=200.0,
                unit="%",
                description="upper end of the model's validity",
            ),
        ),
    ),
    "motor_thermal": FmuSpec(
        identifier="motor_thermal",
        description="Induction motor, thermal: lumped first-order winding temperature",
        variables=(
            Var(
                name="current", causality="input", start=0.0, unit="A", description="phase current"
            ),
            Var(
                name="ambient",
                causality="input",
                start=25.0,
                unit="degC",
                description="cooling air temperature",
            ),
            Var(
                name="windingTemperature",
                causality="output",
                start=25.0,
                unit="degC",
                description="average winding temperature",
            ),
            Var(
                name="rated_current", causality="parameter", start=28.5, unit="A", description="I_N"
            ),
            Var(
                name="rated_rise",
                causality="parameter",
                start=75.0,
                unit="K",
                description="winding temperature rise at rated load",
            ),
            Var(
                name="constant_loss_share",
                causality="parameter",
                start=0.3,
                unit="1",
                description="core and friction share of rated losses",
            ),
            Var(
                name="tau",
                causality="parameter",
                start=900.0,
                unit="s",
                description="thermal time constant",
            ),
            Var(
                name="cooling_gain",
                causality="parameter",
                start=1.0,
                unit="1",
                description="R_th growth from lost cooling, 1 / (1 - loss); 1 = healthy",
            ),
            Var(
                name="T_start",
                causality="parameter",
                start=25.0,
                unit="degC",
                description="winding temperature at the start",
            ),
        ),
    ),
    "motor_controller": FmuSpec(
        identifier="motor_controller",
        description="Soft starter / VFD: supply frequency ramps to the speed setpoint",
        # 1.1.0: the setpoint is the shaft speed (slip compensation from the
        # load input and rated_slip); <= 0 means line-fed.
        version="1.1.0",
        variables=(
            Var(
                name="speedSetpoint",
                causality="input",
                start=1500.0,
                unit="rpm",
                description="shaft speed asked for (<= 0: none, run at f_start)",
            ),
            Var(
                name="load",
                causality="input",
                start=0.0,
                unit="%",
                description="load, for slip compensation",
            ),
            Var(
                name="frequency",
                causality="output",
                start=50.0,
                unit="Hz",
                description="supply frequency",
            ),
            Var(name="poles", causality="parameter", start=4.0, unit="1", description="poles"),
            Var(
                name="rated_slip",
                causality="parameter",
                start=0.0,
                unit="1",
                description="slip at 100 % load for slip compensation (0: none)",
            ),
            Var(
                name="ramp_rate",
                causality="parameter",
                start=10.0,
                unit="Hz/s",
                description="frequency ramp limit",
            ),
            Var(
                name="max_frequency",
                causality="parameter",
                start=60.0,
                unit="Hz",
                description="drive's frequency limit",
            ),
            Var(
                name="f_start",
                causality="parameter",
                start=50.0,
                unit="Hz",
                description="output frequency at the start (50: already running)",
            ),
        ),
    ),
}


def split_builtin(name: str) -> tuple[str, str]:
    """``"motor_thermal@fmi3"`` -> ``("motor_thermal", "3.0")``; no suffix is FMI 2.0."""
    base, at, suffix = name.partition("@")
    if not at:
        return name, "2.0"
    version = _BUILTIN_SUFFIX.get(at + suffix)
    if version is None:
        raise LookupError(
            f"builtin {name!r}: the suffix names the FMI version, @fmi2 or @fmi3 (found @{suffix})"
        )
    return base, version


def _num(x: float) -> str:
    return repr(float(x))


def _unit_lines(spec: FmuSpec, *extra: str) -> list[str]:
    lines = ["  <UnitDefinitions>"]
    for unit in sorted({v.unit for v in spec.variables} | set(extra)):
        base = UNITS[unit]
        attrs = " ".join(
            f'{k}="{_num(v) if k in ("factor", "offset") else int(v)}"' for k, v in base.items()
        )
        lines.append(f'    <Unit name="{unit}"><BaseUnit {attrs}/></Unit>')
    lines.append("  </UnitDefinitions>")
    return lines


def model_description(spec: FmuSpec, *, source_files: bool, fmi_version: str = "2.0") -> str:
    """modelDescription.xml for ``spec``; value reference = declaration index."""
    if fmi_version == "3.0":
        return _model_description3(spec)
    used = sorted({v.unit for v in spec.variables})
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        "<fmiModelDescription",
        '  fmiVersion="2.0"',
        f'  modelName="{spec.identifier}"',
        f'  guid="{spec.guid()}"',
        f"  description={quoteattr(spec.description)}",
        f'  version="{spec.version}"',
        '  generationTool="twinmesh"',
        '  variableNamingConvention="flat"',
        '  numberOfEventIndicators="0">',
        f'  <CoSimulation modelIdentifier="{spec.identifier}"'
        ' canHandleVariableCommunicationStepSize="true"'
        ' canGetAndSetFMUstate="false" canSerializeFMUstate="false"'
        ' providesDirectionalDerivative="false">',
    ]
    if source_files:
        lines += [
            "    <SourceFiles>",
            f'      <File name="{spec.identifier}.c"/>',
            "    </SourceFiles>",
        ]
    lines += ["  </CoSimulation>", "  <UnitDefinitions>"]
    for unit in used:
        base = UNITS[unit]
        attrs = " ".join(
            f'{k}="{_num(v) if k in ("factor", "offset") else int(v)}"' for k, v in base.items()
        )
        lines.append(f'    <Unit name="{unit}"><BaseUnit {attrs}/></Unit>')
    lines += ["  </UnitDefinitions>", "  <ModelVariables>"]
    for vr, v in enumerate(spec.variables):
        # Outputs are calculated (FMI 2.0 Table: causality output, initial calculated: no start).
        initial = {"parameter": ' initial="exact"', "output": ' initial="calculated"'}.get(
            v.causality, ""
        )
        lines.append(
            f'    <ScalarVariable name="{v.name}" valueReference="{vr}"'
            f' causality="{v.causality}" variability="{v.var_variability}"{initial}'
            f" description={quoteattr(v.description)}>"
        )
        start = "" if v.causality == "output" else f' start="{_num(v.start)}"'
        lines.append(f'      <Real unit="{v.unit}"{start}/>')
        lines.append("    </ScalarVariable>")
    lines += ["  </ModelVariables>", "  <ModelStructure>", "    <Outputs>"]
    index = {v.name: i + 1 for i, v in enumerate(spec.variables)}  # 1-based (FMI 2.0 §2.2.8)
    for v in spec.variables:
        if v.causality == "output":
            deps = " ".join(str(index[d]) for d in v.depends_on)
            kinds = " ".join("dependent" for _ in v.depends_on)
            lines.append(
                f'      <Unknown index="{index[v.name]}" dependencies="{deps}"'
                f' dependenciesKind="{kinds}"/>'
            )
    lines += ["    </Outputs>", "    <InitialUnknowns>"]
    for v in spec.variables:
        if v.causality == "output":
            lines.append(f'      <Unknown index="{index[v.name]}"/>')
    lines += ["    </InitialUnknowns>", "  </ModelStructure>", "</fmiModelDescription>", ""]
    return "\n".join(lines)


def _model_description3(spec: FmuSpec) -> str:
    """FMI 3.0 §2.4: typed variable elements, value references in ModelStructure,
    instantiationToken; the build description lives in sources/ (§2.5.1)."""
    lines = [
        '<?xml version="1.0" encoding="UTF-8"?>',
        "<fmiModelDescription",
        '  fmiVersion="3.0"',
        f'  modelName="{spec.identifier}"',
        f'  instantiationToken="{spec.guid("3.0")}"',
        f"  description={quoteattr(spec.description)}",
        f'  version="{spec.version}"',
        '  generationTool="twinmesh"',
        '  variableNamingConvention="flat">',
        f'  <CoSimulation modelIdentifier="{spec.identifier}"'
        ' canHandleVariableCommunicationStepSize="true"'
        ' canGetAndSetFMUState="false" canSerializeFMUState="false"'
        ' providesDirectionalDerivatives="false" providesAdjointDerivatives="false"/>',
        *_unit_lines(spec, "s"),
        "  <ModelVariables>",
        # FMI 3.0 §2.4.7.4: exactly one independent variable; its value reference
        # follows the model's (fmi3_slave.h answers it with the FMU's time).
        f'    <Float64 name="time" valueReference="{len(spec.variables)}"'
        ' causality="independent" variability="continuous" unit="s"'
        ' description="simulation time"/>',
    ]
    for vr, v in enumerate(spec.variables):
        initial = {"parameter": ' initial="exact"', "output": ' initial="calculated"'}.get(
            v.causality, ""
        )
        start = "" if v.causality == "output" else f' start="{_num(v.start)}"'
        lines.append(
            f'    <Float64 name="{v.name}" valueReference="{vr}"'
            f' causality="{v.causality}" variability="{v.var_variability}"{initial}'
            f' unit="{v.unit}"{start} description={quoteattr(v.description)}/>'
        )
    lines += ["  </ModelVariables>", "  <ModelStructure>"]
    vrs = {v.name: i for i, v in enumerate(spec.variables)}
    outputs = [v for v in spec.variables if v.causality == "output"]
    for v in outputs:
        deps = " ".join(str(vrs[d]) for d in v.depends_on)
        kinds = " ".join("dependent" for _ in v.depends_on)
        lines.append(
            f'    <Output valueReference="{vrs[v.name]}" dependencies="{deps}"'
            f' dependenciesKind="{kinds}"/>'
        )
    lines += [f'    <InitialUnknown valueReference="{vrs[v.name]}"/>' for v in outputs]
    lines += ["  </ModelStructure>", "</fmiModelDescription>", ""]
    return "\n".join(lines)


def build_description(spec: FmuSpec) -> str:
    """sources/buildDescription.xml (FMI 3.0 §2.5.1.1): how to compile the source FMU."""
    return "\n".join(
        [
            '<?xml version="1.0" encoding="UTF-8"?>',
            '<fmiBuildDescription fmiVersion="3.0">',
            f'  <BuildConfiguration modelIdentifier="{spec.identifier}">',
            '    <SourceFileSet language="C99">',
            f'      <SourceFile name="{spec.identifier}.c"/>',
            "    </SourceFileSet>",
            '    <Library name="m"/>',
            "  </BuildConfiguration>",
            "</fmiBuildDescription>",
            "",
        ]
    )


def vars_header(spec: FmuSpec, fmi_version: str = "2.0") -> str:
    lines = [
        f"/* Generated from twinmesh.node.cosim.fmus.FMUS[{spec.identifier!r}]"
        f" for FMI {fmi_version}; do not edit. */",
        f'#define MODEL_GUID "{spec.guid(fmi_version)}"',
        f"#define N_REALS {len(spec.variables)}",
    ]
    lines += [f"#define VR_{v.name} {i}" for i, v in enumerate(spec.variables)]
    lines.append("static void model_defaults(double *r) {")
    lines += [f"    r[{i}] = {_num(v.start)}; /* {v.name} */" for i, v in enumerate(spec.variables)]
    lines += ["}", f'#include "{_SLAVE_HEADER[fmi_version]}"', ""]
    return "\n".join(lines)


def fmi_headers(fmi_version: str = "2.0") -> Path:
    """The FMI 2.0 / 3.0 C headers FMPy ships (``fmpy/c-code``)."""
    import fmpy

    path = Path(fmpy.__file__).parent / "c-code"
    header = f"fmi{fmi_version[0]}Functions.h"
    if not (path / header).exists():
        raise CompilerMissing(
            f"the FMI {fmi_version} headers ({header}) are not in {path} (is FMPy installed?)"
        )
    return path


def find_compiler() -> str:
    """The C compiler: $CC, else cc, else gcc. Raises :class:`CompilerMissing`."""
    for name in (os.environ.get("CC"), "cc", "gcc"):
        if name and (found := shutil.which(name)):
            return found
    raise CompilerMissing(
        "no C compiler found (looked for $CC, cc and gcc). twinmesh builds its motor FMUs from"
        " C source: install one (Debian/Ubuntu: apt-get install gcc) and run"
        " `twinmesh cosim build-fmus`. Until then the node ingests and scores telemetry"
        " without expected values or residuals."
    )


def _zip(path: Path, files: dict[str, bytes]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in sorted(files):
            info = zipfile.ZipInfo(name, date_time=_ZIP_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, files[name])
    os.replace(tmp, path)


def _sources(spec: FmuSpec, fmi_version: str = "2.0") -> dict[str, bytes]:
    header = _SLAVE_HEADER[fmi_version]
    files = {
        f"sources/{spec.identifier}.c": spec.source.read_bytes(),
        f"sources/{spec.identifier}_vars.h": vars_header(spec, fmi_version).encode(),
        f"sources/{header}": (HERE / header).read_bytes(),
    }
    if fmi_version == "3.0":
        files["sources/buildDescription.xml"] = build_description(spec).encode()
    return files


def write_source_fmu(spec: FmuSpec, out_dir: Path, *, fmi_version: str = "2.0") -> Path:
    """The source FMU (no binary): ``<out_dir>/<identifier>-source.fmu``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / f"{spec.identifier}-source.fmu"
    files = _sources(spec, fmi_version)
    files["modelDescription.xml"] = model_description(
        spec, source_files=True, fmi_version=fmi_version
    ).encode()
    _zip(path, files)
    return path


def build_fmu(
    spec: FmuSpec, out_dir: Path, *, compiler: str | None = None, fmi_version: str = "2.0"
) -> Path:
    """Compile ``spec`` into ``<out_dir>/<identifier>.fmu`` (binary for this platform + sources)."""
    if fmi_version not in FMI_VERSIONS:
        raise ValueError(f"FMI {fmi_version}: we build {' and '.join(FMI_VERSIONS)}")
    cc = compiler or find_compiler()
    headers = fmi_headers(fmi_version)
    out_dir.mkdir(parents=True, exist_ok=True)
    sources = _sources(spec, fmi_version)
    with tempfile.TemporaryDirectory(prefix="twinmesh-fmu-") as tmp:
        src = Path(tmp)
        for name, data in sources.items():
            if name.endswith((".c", ".h")):
                (src / Path(name).name).write_bytes(data)
        so = src / f"{spec.identifier}.so"
        cmd = [
            cc,
            "-shared",
            "-fPIC",
            "-O2",
            "-std=c99",
            "-D_DEFAULT_SOURCE",  # M_PI under -std=c99
            "-fvisibility=default",
            f"-I{src}",
            f"-I{headers}",
            "-o",
            str(so),
            str(src / f"{spec.identifier}.c"),
            "-lm",  # libm explicitly: exp, hypot, sqrt
        ]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            raise RuntimeError(
                f"compiling {spec.identifier}.c failed ({' '.join(cmd)}):\n{proc.stderr}"
            )
        binary = so.read_bytes()
    files = dict(sources)
    files["modelDescription.xml"] = model_description(
        spec, source_files=True, fmi_version=fmi_version
    ).encode()
    files[f"binaries/{_BINARY_DIR[fmi_version]}/{spec.identifier}.so"] = binary
    path = out_dir / f"{spec.identifier}.fmu"
    _zip(path, files)
    return path


def build_all(out_dir: Path, *, compiler: str | None = None) -> dict[str, Path]:
    """Build every FMU of :data:`FMUS` into ``out_dir``; name -> path."""
    cc = compiler or find_compiler()
    return {name: build_fmu(spec, out_dir, compiler=cc) for name, spec in FMUS.items()}
