"""``twinmesh fleet up/down``: start and stop a local fleet.

Layout of the fleet directory::

    DIR/ca/                 fleet CA, signing key, token secret; nodes/NAME/ per node
    DIR/NAME/node.toml      each node's config; DIR/NAME/data/ its store
    DIR/NAME/node.log       its structured log
    DIR/links.json          the link proxy's config (one link per directed pair)
    DIR/fleet.json          what scripts need: nodes, API URLs, pids, tokens

Node-to-node traffic goes through the link proxy: node X reaches Y's gossip
port through the proxy link ``X->Y``. Split and heal act on those links.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from twinmesh.crdt import LocalProtocolError

from .._signing import ensure_fleet_signing_key, ensure_token_secret, issue_signing_identity
from .._tokens import Role, TokenIssuer
from ..security import init_ca, issue_node

__all__ = ["FleetError", "fleet_down", "fleet_up", "load_fleet", "spawn_node"]

TOKEN_DAYS = 365
READY_TIMEOUT = 60.0


_NODE_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class FleetError(LocalProtocolError):
    pass


@dataclass(frozen=True, slots=True, kw_only=True)
class _Planned:
    name: str
    role: str
    api_port: int
    gossip_port: int


def _free_ports(n: int) -> list[int]:
    socks, ports = [], []
    try:
        for _ in range(n):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            socks.append(s)
            ports.append(s.getsockname()[1])
    finally:
        for s in socks:
            s.close()
    return ports


def _plant_names(plants: int) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    return [f"plant-{letters[i]}" if i < 26 else f"plant-{i + 1}" for i in range(plants)]


#: The tables a ``--telemetry`` file may add to a plant node's config: what the
#: plant simulator writes (telemetry, adapters, co-simulation) and the scoring.
_APPENDABLE_TABLES = ("telemetry", "adapter", "cosim", "scoring", "webhook")


def _check_telemetry_file(path: Path, text: str, node_dir: Path) -> None:
    """Validate a ``--telemetry`` file on its own, so an error names the user's file.

    It is appended to the node's generated ``node.toml``, whose directory
    ``node_dir`` relative paths in it resolve against (``twinmesh plant
    simulate`` writes absolute ones). Checked here with the node's own parser,
    so whatever would stop the node stops ``fleet up`` first, with this path.
    """
    import tomllib

    from .._config_keys import ConfigError, check_keys
    from .._models import load_registry
    from ..cosim._settings import CosimConfigError, parse_cosim
    from ..telemetry import TelemetryConfigError, check_asset_ids, parse_telemetry, tag_specs

    try:
        raw = tomllib.loads(text)
        check_keys(raw, _APPENDABLE_TABLES, "")
        rel = lambda p: Path(p) if Path(p).is_absolute() else (node_dir / p).resolve()  # noqa: E731
        settings = parse_telemetry(raw, rel=rel, data_dir=node_dir / "data")
        if settings is None:
            raise TelemetryConfigError("has neither [telemetry] nor [[adapter]] tables")
        parse_cosim(raw, rel=rel, data_dir=node_dir / "data")
        tag_specs(settings.assets, load_registry())
        check_asset_ids(settings, home=node_dir.name)
    except tomllib.TOMLDecodeError as exc:
        raise FleetError(f"--telemetry {path}: not valid TOML: {exc}") from None
    except ConfigError as exc:
        raise FleetError(f"--telemetry {path}: {exc.reason}") from None
    except (TelemetryConfigError, CosimConfigError) as exc:
        raise FleetError(f"--telemetry {path}: {exc}") from None


def load_fleet(directory: Path) -> dict[str, Any]:
    path = directory / "fleet.json"
    try:
        return json.loads(path.read_text())  # type: ignore[no-any-return]
    except FileNotFoundError:
        raise FleetError(
            f"no fleet in {directory} (no fleet.json); run 'twinmesh fleet up'"
        ) from None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _write_node_config(
    directory: Path,
    node: _Planned,
    peers: list[tuple[str, int]],
    interval: float,
    clock_offset: float = 0.0,
) -> Path:
    ca = directory / "ca"
    own = ca / "nodes" / node.name
    lines = [
        "[node]",
        f'name = "{node.name}"',
        f'role = "{node.role}"',
        f'data_dir = "{directory / node.name / "data"}"',
        *([f"clock_offset = {float(clock_offset)!r}"] if clock_offset else []),
        "",
        "[api]",
        f'listen = "127.0.0.1:{node.api_port}"',
        "",
        "[gossip]",
        f'listen = "127.0.0.1:{node.gossip_port}"',
        f"interval = {interval}",
        "fanout = 2",
        "",
        "[tls]",
        f'ca = "{ca / "ca.pem"}"',
        f'cert = "{own / "cert.pem"}"',
        f'key = "{own / "key.pem"}"',
        f'signing = "{own}"',
        "",
        "[auth]",
        f'token_secret_file = "{ca / "token-secret"}"',
        "",
    ]
    for name, port in peers:
        lines += ["[[peers]]", f'name = "{name}"', f'url = "https://127.0.0.1:{port}"', ""]
    path = directory / node.name / "node.toml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    return path


def fleet_up(
    directory: Path,
    *,
    plants: int = 3,
    interval: float = 1.0,
    seed: int = 0,
    telemetry: dict[str, Path] | None = None,
    plant_names: list[str] | None = None,
    clock_offsets: dict[str, float] | None = None,
) -> dict[str, Any]:
    """Create (first time) and start a fleet; returns what fleet.json holds.

    ``telemetry`` maps a plant node to a file of ``[telemetry]``/``[[adapter]]``
    tables (``twinmesh plant simulate`` writes ``node-telemetry.toml``) that is
    appended to that node's config: the node then ingests the plant.
    ``plant_names`` replaces plant-a, plant-b, ... (a scenario's own names);
    ``clock_offsets`` sets ``node.clock_offset`` per node (skewed clocks).
    """
    if plant_names is not None:
        plants = len(plant_names)
        bad = [n for n in plant_names if not _NODE_NAME.match(n) or n == "central"]
        if bad or len(set(plant_names)) != plants:
            raise FleetError(f"plant names must be distinct node names, not {bad or plant_names}")
    if not 1 <= plants <= 26:
        raise FleetError("a local fleet has 1..26 plants")
    plant_list = list(plant_names) if plant_names is not None else _plant_names(plants)
    offsets = dict(clock_offsets or {})
    extra: dict[str, str] = {}
    directory = directory.resolve()
    for node_name, path in (telemetry or {}).items():
        if node_name not in plant_list:
            raise FleetError(f"--telemetry {node_name}=...: no plant {node_name} in this fleet")
        try:
            text = path.read_text()
        except OSError as exc:
            raise FleetError(f"--telemetry {node_name}={path}: {exc.strerror}") from None
        _check_telemetry_file(path, text, directory / node_name)
        extra[node_name] = "\n" + text
    if (directory / "fleet.json").exists():
        running = load_fleet(directory)
        if any(_alive(n["pid"]) for n in running["nodes"]):
            raise FleetError(
                f"a fleet is already running in {directory}; 'twinmesh fleet down' first"
            )
    directory.mkdir(parents=True, exist_ok=True)
    ca = directory / "ca"
    names = [*plant_list, "central"]
    unknown = sorted(set(offsets) - set(names))
    if unknown:
        raise FleetError(f"clock offsets for nodes not in this fleet: {', '.join(unknown)}")
    if not (ca / "ca.pem").exists():
        init_ca(ca, fleet="twinmesh-local")
        ensure_fleet_signing_key(ca)
        ensure_token_secret(ca)
    for name in names:
        if not (ca / "nodes" / name / "cert.pem").exists():
            creds = issue_node(ca, name)
            issue_signing_identity(ca, name, creds.cert_path.parent)
    ports = _free_ports(2 * len(names) + len(names) * (len(names) - 1))
    planned = [
        _Planned(
            name=n,
            role="central" if n == "central" else "plant",
            api_port=ports[2 * i],
            gossip_port=ports[2 * i + 1],
        )
        for i, n in enumerate(names)
    ]
    link_ports = iter(ports[2 * len(names) :])
    links: list[dict[str, Any]] = []
    peer_ports: dict[str, list[tuple[str, int]]] = {n: [] for n in names}
    for src in planned:
        for dst in planned:
            if src is dst:
                continue
            port = next(link_ports)
            links.append(
                {
                    "name": f"{src.name}->{dst.name}",
                    "listen": f"127.0.0.1:{port}",
                    "upstream": f"127.0.0.1:{dst.gossip_port}",
                }
            )
            peer_ports[src.name].append((dst.name, port))
    (directory / "links.json").write_text(json.dumps({"seed": seed, "links": links}, indent=1))
    env = dict(os.environ)
    proxy_log = open(directory / "linkproxy.log", "ab")  # noqa: SIM115 - handed to the child
    proxy = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "twinmesh.node.linkproxy",
            "--config",
            str(directory / "links.json"),
        ],
        stdout=subprocess.PIPE,
        stderr=proxy_log,
        start_new_session=True,
        env=env,
    )
    assert proxy.stdout is not None
    line = proxy.stdout.readline()
    try:
        control = json.loads(line)["control"]
    except (ValueError, KeyError):
        proxy.kill()
        raise FleetError(
            f"the link proxy did not start; see {directory / 'linkproxy.log'}"
        ) from None
    processes = []
    for node in planned:
        config = _write_node_config(
            directory, node, peer_ports[node.name], interval, offsets.get(node.name, 0.0)
        )
        if node.name in extra:
            with config.open("a") as f:
                f.write(extra[node.name])
        proc, ready = spawn_node(directory / node.name, config)
        processes.append((node, proc, ready))
    deadline = time.monotonic() + READY_TIMEOUT
    for node, proc, ready in processes:
        while not ready.exists():
            if proc.poll() is not None or time.monotonic() > deadline:
                for _, p, _ in processes:
                    with contextlib.suppress(ProcessLookupError):
                        p.kill()
                proxy.kill()
                raise FleetError(
                    f"{node.name} did not start; see {directory / node.name / 'node.log'}"
                )
            time.sleep(0.05)
    issuer = TokenIssuer((ca / "token-secret").read_bytes())
    expires = int(time.time()) + TOKEN_DAYS * 86400
    fleet = {
        "dir": str(directory),
        "gossip_interval": interval,
        "proxy": {"pid": proxy.pid, "control": control},
        "nodes": [
            {
                "name": node.name,
                "role": node.role,
                "api": f"http://127.0.0.1:{node.api_port}",
                "gossip_port": node.gossip_port,
                "config": str(directory / node.name / "node.toml"),
                "pid": proc.pid,
            }
            for node, proc, _ in processes
        ],
        "tokens": {
            role.name.lower(): issuer.issue(role, f"local-{role.name.lower()}", expires)
            for role in Role
        },
    }
    (directory / "fleet.json").write_text(json.dumps(fleet, indent=2))
    return fleet


def spawn_node(
    node_dir: Path, config: Path, prefix: tuple[str, ...] = ()
) -> tuple[subprocess.Popen[bytes], Path]:
    """Start ``twinmesh node run`` for one node (its own session, so a
    process-group signal reaches only it); returns the process and the ready
    file it writes once it serves. Used by ``fleet up`` and by restarts.
    ``prefix`` runs it through a command that execs it (``ip netns exec NS``)."""
    ready = node_dir / "ready.json"
    ready.unlink(missing_ok=True)
    with open(node_dir / "node.log", "ab") as log:
        proc = subprocess.Popen(
            [
                *prefix,
                sys.executable,
                "-m",
                "twinmesh",
                "node",
                "run",
                "--config",
                str(config),
                "--ready-file",
                str(ready),
            ],
            stdout=log,
            stderr=log,
            start_new_session=True,
        )
    return proc, ready


def _stop(pid: int, timeout: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while _alive(pid) and time.monotonic() < deadline:
        with contextlib.suppress(ChildProcessError):
            os.waitpid(pid, os.WNOHANG)
        time.sleep(0.05)
    if _alive(pid):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)


def fleet_down(directory: Path) -> list[str]:
    fleet = load_fleet(directory.resolve())
    stopped = []
    for node in fleet["nodes"]:
        if _alive(node["pid"]):
            _stop(node["pid"])
            stopped.append(node["name"])
    if _alive(fleet["proxy"]["pid"]):
        _stop(fleet["proxy"]["pid"])
        stopped.append("link proxy")
    return stopped
