"""Real peers for adapter tests and benchmarks: MQTT brokers and an asyncua server.

MQTT: a mosquitto process where mosquitto is installed, else amqtt's pure-Python
broker in a child process (see :func:`select_mqtt_broker`).

Each runs as a separate process on a free loopback port, is started and stopped
explicitly (so tests can restart it mid-stream), and is waited for by
condition — the port accepts connections / the server prints READY — never by
a fixed sleep.

Run as a script, this module *is* the OPC UA test server and the amqtt broker::

    python tests/_brokers.py opcua --port 4840 --start 0 --period 0.02
    python tests/_brokers.py amqtt --port 1883
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

__all__ = [
    "MQTT_BROKERS",
    "AmqttBroker",
    "Mosquitto",
    "MqttBroker",
    "OpcUaServer",
    "find_mosquitto",
    "free_port",
    "make_mqtt_broker",
    "make_opcua_certificates",
    "make_tls_certificates",
    "mqtt_broker_missing",
    "mqtt_brokers",
    "select_mqtt_broker",
    "wait_port",
]

_THIS = Path(__file__).resolve()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_port(port: int, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
    """Poll until 127.0.0.1:port accepts a TCP connection (or the process died)."""
    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before listening")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout} s")
        time.sleep(0.01)


def find_mosquitto() -> str | None:
    """The mosquitto binary: on PATH, or in the sbin directories Debian installs it to.

    ``TWINMESH_MOSQUITTO_SBIN`` (directories, ``os.pathsep``-separated) replaces
    those sbin directories; set it empty, with a PATH that lacks mosquitto too,
    to test the amqtt fallback on a machine that has mosquitto.
    """
    found = shutil.which("mosquitto")
    if found:
        return found
    default = os.pathsep.join(("/usr/sbin", "/usr/local/sbin"))
    sbin = os.environ.get("TWINMESH_MOSQUITTO_SBIN", default)
    for directory in filter(None, sbin.split(os.pathsep)):
        candidate = os.path.join(directory, "mosquitto")
        if os.access(candidate, os.X_OK):
            return candidate
    return None


def _terminate(proc: subprocess.Popen[bytes] | None, timeout: float) -> None:
    """SIGTERM a broker process and wait; SIGKILL if it does not exit in time."""
    if proc is None or proc.poll() is not None:
        return
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


class Mosquitto:
    """A mosquitto broker process with a temporary config, persistence on disk.

    ``persistence`` keeps sessions and queued QoS 1 messages across a graceful
    restart (mosquitto writes its database on SIGTERM). ``max_queued`` bounds
    the messages held for an offline persistent client (mosquitto drops beyond
    it); ``max_inflight`` bounds unacknowledged QoS 1 messages in flight to a
    client (mosquitto.conf(5), max_inflight_messages; 0 = unlimited, default 20).
    """

    kind = "mosquitto"
    #: Broker features tests rely on that this broker lacks (see AmqttBroker.lacks): none.
    lacks: ClassVar[Mapping[str, str]] = {}

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        persistence: bool = True,
        max_queued: int = 100_000,
        max_inflight: int | None = None,
        users: dict[str, str] | None = None,
        tls: tuple[Path, Path, Path] | None = None,
    ) -> None:
        binary = find_mosquitto()
        if binary is None:
            raise FileNotFoundError("mosquitto is not installed (looked on PATH and in /usr/sbin)")
        self.binary = binary
        self.workdir = workdir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._next: subprocess.Popen[bytes] | None = None  # see prepare_restart
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "data").mkdir(exist_ok=True)
        self.conf = workdir / "mosquitto.conf"
        self.log = workdir / "mosquitto.log"
        lines = [
            f"listener {self.port} 127.0.0.1",
            "allow_anonymous true",
            f"persistence {'true' if persistence else 'false'}",
            f"persistence_location {workdir / 'data'}/",
            f"max_queued_messages {max_queued}",
            f"log_dest file {self.log}",
            "log_type error",
            "log_type warning",
            "log_type notice",
        ]
        if os.geteuid() == 0:
            # As root, mosquitto drops to user "mosquitto", which cannot write the
            # persistence file in a root-owned temporary directory: sessions would
            # then not survive a restart. A loopback test broker may stay root.
            lines.append("user root")
        if max_inflight is not None:  # None keeps mosquitto's default (20)
            lines.append(f"max_inflight_messages {max_inflight}")
        if tls is not None:
            ca, cert, key = tls
            lines += [f"cafile {ca}", f"certfile {cert}", f"keyfile {key}"]
        if users:
            passwd = workdir / "passwd"
            passwd.write_text("")
            tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
            for user, password in users.items():
                subprocess.run([tool, "-b", str(passwd), user, password], check=True)
            lines[1] = "allow_anonymous false"
            lines.append(f"password_file {passwd}")
        self.conf.write_text("\n".join(lines) + "\n")

    def start(self, timeout: float = 10.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("mosquitto already running")
        self.proc = subprocess.Popen(
            [self.binary, "-c", str(self.conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_port(self.port, timeout, self.proc)

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop: SIGTERM, which makes mosquitto save its persistence file."""
        _terminate(self.proc, timeout)

    def restart(self, timeout: float = 10.0) -> None:
        self.stop(timeout)
        self.start(timeout)

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


class AmqttBroker:
    """amqtt's pure-Python broker in a child process (this file run as a script).

    The fallback where mosquitto is not installed, with the interface tests use
    of :class:`Mosquitto`: ``port``, start/stop/restart, context manager,
    ``users`` and ``tls``. Sessions of clients with ``clean_session = 0`` are
    kept and QoS 1 messages queued for them while they are away, in the broker
    process's memory. What it lacks is in :attr:`lacks`, each checked against
    amqtt 0.12.1 with aiomqtt; besides those, it has no bound on the messages
    queued for an offline client (mosquitto's ``max_queued_messages``), marks
    messages it delivers from that queue RETAIN, and has no in-flight limit: it
    sends every QoS 1 message at once and drops any not acknowledged within 5 s.
    On a session resume it reads nothing from the client, SUBSCRIBE included,
    until the queued messages are acknowledged or those 5 s are up; a client
    that acknowledges only after its SUBACK (the adapter: PUBACK after commit)
    therefore resumes 5 s late, and its late PUBACKs find nothing pending.
    """

    kind = "amqtt"
    #: Feature tests rely on -> why amqtt cannot provide it (a test's skip reason).
    lacks: ClassVar[Mapping[str, str]] = {
        "mqtt5": "amqtt speaks MQTT 3.1.1 only: it refuses an MQTT 5 CONNECT"
        " (CONNACK reason 0x84, unsupported protocol version)",
        "restart_keeps_sessions": "amqtt keeps sessions and queued QoS 1 messages in memory"
        " only: a broker restart loses them (mosquitto persists them on SIGTERM)",
        "redelivery_on_resume": "amqtt discards an unacknowledged QoS 1 message when the"
        " connection closes instead of re-sending it when the session resumes (MQTT 3.1.1 §4.4)",
    }

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        users: dict[str, str] | None = None,
        tls: tuple[Path, Path, Path] | None = None,
    ) -> None:
        missing = mqtt_broker_missing(self.kind)
        if missing is not None:
            raise ModuleNotFoundError(missing)
        self.workdir = workdir
        self.port = port or free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        workdir.mkdir(parents=True, exist_ok=True)
        self.log = workdir / "amqtt.log"
        self.args = [sys.executable, str(_THIS), "amqtt", "--port", str(self.port)]
        if users:
            # A file, not argv: passwords stay out of the process list.
            users_file = workdir / "users.json"
            users_file.write_text(json.dumps(users))
            self.args += ["--users", str(users_file)]
        if tls is not None:
            ca, cert, key = tls
            self.args += ["--ca", str(ca), "--cert", str(cert), "--key", str(key)]

    def start(self, timeout: float = 30.0) -> None:
        """Spawn the broker; returns once it listens (a cold Python start is seconds when busy)."""
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("amqtt already running")
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                self.args, stdout=subprocess.DEVNULL, stderr=log, cwd=self.workdir
            )
        try:
            wait_port(self.port, timeout, self.proc)
        except (RuntimeError, TimeoutError) as exc:
            self.stop()
            raise RuntimeError(f"amqtt broker did not start ({exc}); see {self.log}") from exc

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM: the broker closes its sessions and exits (nothing is saved)."""
        _terminate(self.proc, timeout)

    def restart(self, timeout: float = 30.0) -> None:
        self.stop(timeout)
        self.start(timeout)

    def __enter__(self) -> AmqttBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


MqttBroker = Mosquitto | AmqttBroker
#: MQTT brokers tests can run against, by kind, in order of preference.
MQTT_BROKERS: Mapping[str, type[MqttBroker]] = {"mosquitto": Mosquitto, "amqtt": AmqttBroker}


def mqtt_broker_missing(kind: str) -> str | None:
    """Why MQTT broker ``kind`` cannot run on this machine, or None if it can."""
    if kind == "mosquitto":
        if find_mosquitto() is None:
            return "mosquitto is not installed (looked on PATH and in the sbin directories)"
        return None
    if kind == "amqtt":
        if importlib.util.find_spec("amqtt") is None:
            return "amqtt is not installed (it comes with the test extra: pip install -e '.[test]')"
        return None
    raise ValueError(f"unknown MQTT broker {kind!r} (known: {', '.join(MQTT_BROKERS)})")


def mqtt_brokers() -> list[str]:
    """The MQTT brokers to test against, best first.

    Every installed one; only the one ``TWINMESH_MQTT_BROKER`` names if it is
    set. Raises :class:`RuntimeError` if that one is unknown or not installed:
    asking for a broker and silently getting another (or none) would hide it.
    """
    forced = os.environ.get("TWINMESH_MQTT_BROKER", "")
    if forced:
        if forced not in MQTT_BROKERS:
            raise RuntimeError(
                f"TWINMESH_MQTT_BROKER={forced!r}: expected one of {', '.join(MQTT_BROKERS)}"
            )
        missing = mqtt_broker_missing(forced)
        if missing is not None:
            raise RuntimeError(f"TWINMESH_MQTT_BROKER={forced}, but {missing}")
        return [forced]
    return [kind for kind in MQTT_BROKERS if mqtt_broker_missing(kind) is None]


def select_mqtt_broker() -> str:
    """The MQTT broker: mosquitto when found, else amqtt; ``TWINMESH_MQTT_BROKER`` forces one."""
    usable = mqtt_brokers()
    if not usable:
        reasons = "; ".join(str(mqtt_broker_missing(kind)) for kind in MQTT_BROKERS)
        raise RuntimeError(f"no MQTT broker: {reasons}")
    return usable[0]


def make_mqtt_broker(kind: str, workdir: Path, **kwargs: Any) -> MqttBroker:
    """A broker of ``kind`` (see :data:`MQTT_BROKERS`), not started."""
    if kind not in MQTT_BROKERS:
        raise ValueError(f"unknown MQTT broker {kind!r} (known: {', '.join(MQTT_BROKERS)})")
    return MQTT_BROKERS[kind](workdir, **kwargs)


def make_tls_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throw-away CA and a server certificate for 127.0.0.1 / localhost (PEM files)."""
    import datetime as dt
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)

    def build(subject: str, issuer: x509.Name | None, signer: ec.EllipticCurvePrivateKey | None):
        key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)])
        builder = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(issuer or name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=2))
        )
        if signer is None:
            builder = builder.add_extension(x509.BasicConstraints(ca=True, path_length=0), True)
        else:
            builder = builder.add_extension(
                x509.SubjectAlternativeName(
                    [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
                ),
                False,
            )
        return key, builder.sign(signer or key, hashes.SHA256())

    ca_key, ca_cert = build("twinmesh test CA", None, None)
    srv_key, srv_cert = build("localhost", ca_cert.subject, ca_key)
    paths = (directory / "ca.pem", directory / "server.pem", directory / "server-key.pem")
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(srv_cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(
        srv_key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return paths


def make_opcua_certificates(directory: Path, app_uri: str, *, server: bool) -> tuple[Path, Path]:
    """A self-signed application certificate (DER) and key (PEM) per OPC UA Part 6 §6.2.2."""
    from asyncua.crypto.cert_gen import (
        dump_private_key_as_pem,
        generate_private_key,
        generate_self_signed_app_certificate,
    )
    from cryptography import x509
    from cryptography.hazmat.primitives.serialization import Encoding
    from cryptography.x509.oid import ExtendedKeyUsageOID

    directory.mkdir(parents=True, exist_ok=True)
    key = generate_private_key()
    use = ExtendedKeyUsageOID.SERVER_AUTH if server else ExtendedKeyUsageOID.CLIENT_AUTH
    cert = generate_self_signed_app_certificate(
        key,
        app_uri,
        {"organizationName": "twinmesh tests"},
        [x509.UniformResourceIdentifier(app_uri), x509.DNSName(socket.gethostname())],
        extended=[use],
        days=2,
    )
    stem = "server" if server else "client"
    cert_path, key_path = directory / f"{stem}-cert.der", directory / f"{stem}-key.pem"
    cert_path.write_bytes(cert.public_bytes(encoding=Encoding.DER))
    key_path.write_bytes(dump_private_key_as_pem(key))
    return cert_path, key_path


class OpcUaServer:
    """The asyncua test server (this file run as a script) in a child process.

    Nodes, in namespace ``urn:twinmesh:test``, all string node ids:

    * ``Pump7.Vibration``   Double mm/s, ``start + n`` at every tick (strictly increasing)
    * ``Pump7.Temperature`` Double °F, constant 212.0
    * ``Pump7.Flow``        Double, status Uncertain (UncertainLastUsableValue) on odd
      ticks and Bad (BadSensorFailure, no value) every tenth, Good otherwise

    Source timestamps are set by the "device" (this process) one millisecond
    *before* the server timestamp, so tests can tell them apart.

    ``history``: a SQLite file (asyncua ``HistorySQLite``) that ``Pump7.Vibration``
    and ``Pump7.Flow`` are historized into (``Historizing`` true, AccessLevel
    HistoryRead bit set, OPC UA Part 3 §5.6.2); ``Pump7.Temperature`` has no
    history. The file outlives the process, so a restarted server serves what
    its predecessor recorded. Each value is committed to the history *before*
    it is written to the address space, so every value a client can ever have
    seen is in the history, and a test knows exactly which values exist.
    (asyncua's ``historize_node_data_change`` records through an internal
    subscription and a fire-and-forget task instead: the last values before a
    stop may never reach the file.) ``history_page`` caps the values per
    HistoryRead response, so that reads need continuation points.

    ``variables`` > 0 adds the benchmark nodes: ``Bench.V0`` ... ``Bench.V{n-1}``
    (Double, all set to ``start + n`` at every tick, one source timestamp per
    tick) and ``Bench.Period`` (Double, writable): the tick period in seconds,
    re-read at every tick so a benchmark can change the rate of a running
    server; 0 writes as fast as the server can (yielding once per tick).
    """

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        period: float = 0.02,
        secure: tuple[Path, Path] | None = None,
        history: Path | None = None,
        history_page: int | None = None,
        variables: int = 0,
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.period = period
        self.secure = secure  # (server cert, server key): SignAndEncrypt only
        self.history = history
        self.history_page = history_page
        self.variables = variables
        self.proc: subprocess.Popen[bytes] | None = None
        self._next: subprocess.Popen[bytes] | None = None  # see prepare_restart
        workdir.mkdir(parents=True, exist_ok=True)

    @property
    def url(self) -> str:
        return f"opc.tcp://127.0.0.1:{self.port}/twinmesh/"

    def start(self, start_value: float = 0.0, timeout: float = 30.0) -> None:
        if self.proc is not None and self.proc.poll() is None:
            raise RuntimeError("OPC UA server already running")
        self.proc = self._spawn(start_value, wait_port_free=False)
        self._wait_for(b"READY", timeout)

    def prepare_restart(self, start_value: float) -> None:
        """Spawn the replacement for :meth:`restart` now, so its start-up overlaps the test.

        Call only while the current server is listening: the replacement binds
        as soon as the port is free.
        """
        if self._next is None:
            self._next = self._spawn(start_value, wait_port_free=True)

    def restart(self, start_value: float = 0.0, timeout: float = 30.0) -> None:
        """Replace the running server by a new process on the same port.

        The new process imports asyncua and builds its address space (seconds on
        a busy machine) while the old one still serves (or has been doing so since
        :meth:`prepare_restart`, whose ``start_value`` then wins); then the old one
        is stopped and the new one binds as soon as the port is free. Clients see
        a real restart — connection reset, sessions and subscriptions gone — with
        a short gap instead of a multi-second one.
        """
        old = self.proc
        new, self._next = self._next or self._spawn(start_value, wait_port_free=True), None
        self.proc = new
        self._wait_for(b"INITIALIZED", timeout)
        self.proc = old
        self.stop()
        self.proc = new
        self._wait_for(b"READY", timeout)

    def _spawn(self, start_value: float, *, wait_port_free: bool) -> subprocess.Popen[bytes]:
        args = [
            sys.executable,
            str(_THIS),
            "opcua",
            "--port",
            str(self.port),
            "--start",
            str(start_value),
            "--period",
            str(self.period),
        ]
        if self.secure is not None:
            args += ["--cert", str(self.secure[0]), "--key", str(self.secure[1])]
        if self.history is not None:
            args += ["--history", str(self.history)]
        if self.history_page is not None:
            args += ["--history-page", str(self.history_page)]
        if self.variables:
            args += ["--variables", str(self.variables)]
        if wait_port_free:
            args.append("--wait-port-free")
        return subprocess.Popen(
            args, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, cwd=self.workdir
        )

    def _wait_for(self, marker: bytes, timeout: float) -> None:
        """Read the child's stdout until ``marker`` (readline blocks; EOF if it died)."""
        deadline = time.monotonic() + timeout
        for line in self._lines():
            if line.strip() == marker:
                return
            if time.monotonic() > deadline:
                break
        self.stop()
        raise RuntimeError(f"the OPC UA test server never printed {marker.decode()}")

    def _lines(self) -> Iterator[bytes]:
        assert self.proc is not None and self.proc.stdout is not None
        yield from iter(self.proc.stdout.readline, b"")

    def stop(self, timeout: float = 10.0) -> None:
        if self._next is not None and self.proc is not self._next:
            # A prepared replacement that was never used must not outlive us.
            prepared, self._next = self._next, None
            running, self.proc = self.proc, prepared
            self.stop(timeout)
            self.proc = running
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
        self.proc = None

    def __enter__(self) -> OpcUaServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


async def _serve_opcua(args: argparse.Namespace) -> None:
    import datetime as dt

    from asyncua import Server, ua

    server = Server()
    await server.init()
    server.set_endpoint(f"opc.tcp://127.0.0.1:{args.port}/twinmesh/")
    server.set_server_name("twinmesh test server")
    if args.cert:
        await server.load_certificate(args.cert)
        await server.load_private_key(args.key)
        server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
    else:
        server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
    ns = await server.register_namespace("urn:twinmesh:test")
    pump = await server.nodes.objects.add_object(ua.NodeId("Pump7", ns), f"{ns}:Pump7")
    vib = await pump.add_variable(ua.NodeId("Pump7.Vibration", ns), f"{ns}:Vibration", 0.0)
    temp = await pump.add_variable(ua.NodeId("Pump7.Temperature", ns), f"{ns}:Temperature", 0.0)
    flow = await pump.add_variable(ua.NodeId("Pump7.Flow", ns), f"{ns}:Flow", 0.0)
    # Stamped with OPC UA's minimum DateTime as its server timestamp: "no server
    # time", as servers that set none (node-opcua) send it (Part 6 §5.2.2.5).
    no_server_ts = await pump.add_variable(
        ua.NodeId("Pump7.NoServerTime", ns), f"{ns}:NoServerTime", 0.0
    )
    bench = []
    period_node = None
    if args.variables:
        obj = await server.nodes.objects.add_object(ua.NodeId("Bench", ns), f"{ns}:Bench")
        for i in range(args.variables):
            bench.append(await obj.add_variable(ua.NodeId(f"Bench.V{i}", ns), f"{ns}:V{i}", 0.0))
        period_node = await obj.add_variable(
            ua.NodeId("Bench.Period", ns), f"{ns}:Period", float(args.period)
        )
        await period_node.set_writable()

    storage = None
    if args.history:
        from asyncua.server.history_sql import HistorySQLite

        class History(HistorySQLite):
            async def init(self) -> None:
                await super().init()
                # A commit per value: WAL + NORMAL survives the process being killed
                # (all a test needs) without an fsync per tick.
                await self._db.execute("PRAGMA journal_mode=WAL")
                await self._db.execute("PRAGMA synchronous=NORMAL")

            def _get_table_name(self, node_id: ua.NodeId) -> str:
                # asyncua 2.1 names tables f"{ns}_{identifier!r}", and its own
                # validate_table_name rejects the quotes a string node id brings.
                return f"{node_id.NamespaceIndex}_{node_id.Identifier}"

        kwargs = {"max_history_data_response_size": args.history_page} if args.history_page else {}
        storage = History(args.history, **kwargs)
        await storage.init()
        try:
            for node in (vib, flow):
                # What server.historize_node_data_change does, minus its recording
                # subscription (see OpcUaServer): the attributes clients check, the table.
                await node.write_attribute(ua.AttributeIds.Historizing, ua.DataValue(True))
                for attr in (ua.AttributeIds.AccessLevel, ua.AttributeIds.UserAccessLevel):
                    await node.set_attr_bit(attr, ua.AccessLevel.HistoryRead)
                await storage.new_historized_node(node.nodeid, None)
        except BaseException:
            await storage.stop()  # its thread would keep the process alive
            raise
        server.iserver.history_manager.set_storage(storage)  # stopped with the server

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)

    def dv(value: float, status: int = ua.StatusCodes.Good) -> ua.DataValue:
        now = dt.datetime.now(dt.UTC)
        if now.microsecond <= 1000:
            # HistorySQLite stores datetimes with isoformat(), which drops ".000000",
            # and sqlite3's TIMESTAMP converter cannot parse the result back.
            now += dt.timedelta(microseconds=1001 - now.microsecond)
        # A Bad value carries no value: the address space nulls it anyway (Part 4
        # §7.7.1), and the history must hold what subscribers see.
        bad = ua.StatusCode(status).is_bad()
        return ua.DataValue(
            Value=ua.Variant(None, ua.VariantType.Null)
            if bad
            else ua.Variant(value, ua.VariantType.Double),
            StatusCode=ua.StatusCode(status),
            SourceTimestamp=now - dt.timedelta(milliseconds=1),
            ServerTimestamp=now,
        )

    async def record(node: object, value: ua.DataValue) -> None:
        if storage is not None:
            await storage.save_node_value(node.nodeid, value)  # type: ignore[attr-defined]
        await node.write_value(value)  # type: ignore[attr-defined]

    print("INITIALIZED", flush=True)
    if args.wait_port_free:
        # Bind only once the previous server process has released the port.
        while not stop.is_set():
            with socket.socket() as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    probe.bind(("127.0.0.1", args.port))
                    break
                except OSError:
                    pass
            await asyncio.sleep(0.01)
    async with server:
        n = 0
        await temp.write_value(dv(212.0))
        print("READY", flush=True)
        while not stop.is_set():
            await record(vib, dv(args.start + n))
            if n % 10 == 0:
                status = ua.StatusCodes.BadSensorFailure
            elif n % 2:
                status = ua.StatusCodes.UncertainLastUsableValue
            else:
                status = ua.StatusCodes.Good
            await record(flow, dv(float(n), status))
            unstamped = dv(float(n))
            unstamped.ServerTimestamp = dt.datetime(1601, 1, 1, tzinfo=dt.UTC)
            await server.write_attribute_value(no_server_ts.nodeid, unstamped)  # as sent
            period = args.period
            if bench:
                tick = dv(args.start + n)
                for node in bench:
                    # The direct write skips access checks but fires the data changes.
                    await server.write_attribute_value(node.nodeid, tick)
                period = await period_node.read_value()
            n += 1
            if period > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), period)
            else:
                await asyncio.sleep(0)  # as fast as possible, but let clients be served


#: amqtt loads plugins by dotted name; _serve_amqtt puts the auth plugin class here.
_AmqttAuth: Any = None


def _amqtt_auth_plugin() -> type:
    """The broker's auth plugin (a function: amqtt is imported only in the broker process)."""
    import dataclasses
    import hmac

    from amqtt.plugins.base import BaseAuthPlugin

    class AmqttAuth(BaseAuthPlugin):
        """Accepts every client, or only ``users`` (name -> password) if given.

        Unlike amqtt's AnonymousAuthPlugin it does not mark clients anonymous:
        amqtt neither keeps an anonymous client's session nor queues messages
        for it while it is away, and persistent sessions are what the tests test.
        """

        @dataclasses.dataclass
        class Config:
            users: dict[str, str] | None = None

        async def authenticate(self, *, session: Any) -> bool:
            users = self.config.users
            if users is None:
                return True
            expected = users.get(session.username or "")
            return expected is not None and hmac.compare_digest(expected, session.password or "")

    return AmqttAuth


async def _serve_amqtt(args: argparse.Namespace) -> None:
    import logging

    from amqtt.broker import Broker

    global _AmqttAuth
    _AmqttAuth = _amqtt_auth_plugin()
    # Warnings (refused clients, PUBACK timeouts, dropped messages) go to stderr,
    # which AmqttBroker sends to amqtt.log in its workdir.
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s: %(message)s")
    listener: dict[str, Any] = {"type": "tcp", "bind": f"127.0.0.1:{args.port}"}
    if args.cert:
        listener.update(ssl=True, cafile=args.ca, certfile=args.cert, keyfile=args.key)
    users = json.loads(Path(args.users).read_text()) if args.users else None
    config = {
        "listeners": {"default": listener},
        # Our auth plugin only: amqtt's default set adds anonymous auth (see
        # AmqttAuth), $SYS topics and packet logging.
        "plugins": {f"{__name__}._AmqttAuth": {"users": users}},
    }
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    broker = Broker(config)
    await broker.start()
    await stop.wait()
    await broker.shutdown()


def _main() -> None:
    parser = argparse.ArgumentParser(allow_abbrev=False, description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    op = sub.add_parser("opcua", help="run the OPC UA test server")
    op.add_argument("--port", type=int, required=True, help="loopback port to serve on")
    op.add_argument("--start", type=float, default=0.0, help="first Vibration value")
    op.add_argument("--period", type=float, default=0.02, help="seconds between ticks")
    op.add_argument("--cert", help="server certificate: SignAndEncrypt only")
    op.add_argument("--key", help="server private key")
    op.add_argument("--wait-port-free", action="store_true", help="bind once the old server left")
    op.add_argument("--history", help="historize Vibration and Flow into this SQLite file")
    op.add_argument("--history-page", type=int, help="max values per HistoryRead response")
    op.add_argument("--variables", type=int, default=0, help="benchmark variables Bench.V<i>")
    mq = sub.add_parser("amqtt", help="run amqtt's MQTT 3.1.1 broker (see AmqttBroker)")
    mq.add_argument("--port", type=int, required=True, help="loopback port to serve on")
    mq.add_argument("--users", help="JSON file {user: password}; without it, anyone may connect")
    mq.add_argument("--ca", help="TLS: CA file (client certificates optional)")
    mq.add_argument("--cert", help="TLS: server certificate (PEM)")
    mq.add_argument("--key", help="TLS: server key (PEM)")
    args = parser.parse_args()
    asyncio.run(_serve_amqtt(args) if args.cmd == "amqtt" else _serve_opcua(args))


if __name__ == "__main__":
    _main()
