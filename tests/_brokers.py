"""Real peers for adapter tests and benchmarks: a mosquitto broker and an asyncua server.

Each runs as a separate process on a free loopback port, is started and stopped
explicitly (so tests can restart it mid-stream), and is waited for by
condition — the port accepts connections / the server prints READY — never by
a fixed sleep.

Run as a script, this module *is* the OPC UA test server::

    python tests/_brokers.py opcua --port 4840 --start 0 --period 0.02
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

__all__ = [
    "Mosquitto",
    "OpcUaServer",
    "find_mosquitto",
    "free_port",
    "make_opcua_certificates",
    "make_tls_certificates",
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
    """The mosquitto binary: on PATH, or in the sbin directories Debian installs it to."""
    found = shutil.which("mosquitto")
    if found:
        return found
    for candidate in ("/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"):
        if os.access(candidate, os.X_OK):
            return candidate
    return None


class Mosquitto:
    """A mosquitto broker process with a temporary config, persistence on disk.

    ``persistence`` keeps sessions and queued QoS 1 messages across a graceful
    restart (mosquitto writes its database on SIGTERM). ``max_queued`` bounds
    the messages held for an offline persistent client (mosquitto drops beyond
    it); ``max_inflight`` bounds unacknowledged QoS 1 messages in flight to a
    client (mosquitto.conf(5), max_inflight_messages; 0 = unlimited, default 20).
    """

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
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)

    def restart(self, timeout: float = 10.0) -> None:
        self.stop(timeout)
        self.start(timeout)

    def __enter__(self) -> Mosquitto:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


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
      ticks and Bad (BadSensorFailure) every tenth, Good otherwise

    Source timestamps are set by the "device" (this process) one millisecond
    *before* the server timestamp, so tests can tell them apart.
    """

    def __init__(
        self,
        workdir: Path,
        *,
        port: int | None = None,
        period: float = 0.02,
        secure: tuple[Path, Path] | None = None,
    ) -> None:
        self.workdir = workdir
        self.port = port or free_port()
        self.period = period
        self.secure = secure  # (server cert, server key): SignAndEncrypt only
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

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)

    def dv(value: float, status: int = ua.StatusCodes.Good) -> ua.DataValue:
        now = dt.datetime.now(dt.UTC)
        return ua.DataValue(
            Value=ua.Variant(value, ua.VariantType.Double),
            StatusCode=ua.StatusCode(status),
            SourceTimestamp=now - dt.timedelta(milliseconds=1),
            ServerTimestamp=now,
        )

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
            await vib.write_value(dv(args.start + n))
            if n % 10 == 0:
                status = ua.StatusCodes.BadSensorFailure
            elif n % 2:
                status = ua.StatusCodes.UncertainLastUsableValue
            else:
                status = ua.StatusCodes.Good
            await flow.write_value(dv(float(n), status))
            n += 1
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), args.period)


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    op = sub.add_parser("opcua", help="run the OPC UA test server")
    op.add_argument("--port", type=int, required=True)
    op.add_argument("--start", type=float, default=0.0)
    op.add_argument("--period", type=float, default=0.02)
    op.add_argument("--cert")
    op.add_argument("--key")
    op.add_argument("--wait-port-free", action="store_true")
    args = parser.parse_args()
    asyncio.run(_serve_opcua(args))


if __name__ == "__main__":
    _main()
