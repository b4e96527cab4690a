"""The demo's embedded MQTT broker: mosquitto when installed, else amqtt.

The README's one command installs the test extra, which brings amqtt (pure
Python), so a fresh laptop needs nothing else; where mosquitto is installed
(Debian: ``apt-get install mosquitto``) it is used instead, being the broker
plants actually run. amqtt is not a runtime dependency of twinmesh: a node
never runs a broker, only the demo does, and amqtt pulls in a dozen packages.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["Broker", "BrokerError", "start_broker"]


class BrokerError(RuntimeError):
    pass


def _mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    for directory in ("/usr/sbin", "/usr/local/sbin"):
        path = Path(directory) / "mosquitto"
        if path.is_file() and os.access(path, os.X_OK):
            return str(path)
    return None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class Broker:
    """A broker child process on a loopback port (its own session)."""

    def __init__(self, kind: str, proc: subprocess.Popen[bytes], port: int, log: Path) -> None:
        self.kind = kind
        self.proc = proc
        self.port = port
        self.log = log

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)


def start_broker(workdir: Path, *, prefer: str | None = None, timeout: float = 30.0) -> Broker:
    """Start mosquitto (or amqtt, or what ``prefer`` names) and wait until it listens."""
    workdir.mkdir(parents=True, exist_ok=True)
    port = _free_port()
    log = workdir / "broker.log"
    binary = _mosquitto()
    kind = prefer or ("mosquitto" if binary else "amqtt")
    if kind == "mosquitto":
        if binary is None:
            raise BrokerError("mosquitto is not installed")
        conf = workdir / "mosquitto.conf"
        conf.write_text(
            f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\nlog_dest stderr\n"
        )
        argv = [binary, "-c", str(conf)]
    elif kind == "amqtt":
        try:
            import amqtt  # noqa: F401
        except ImportError:
            raise BrokerError(
                "the demo needs an MQTT broker: install mosquitto, or amqtt "
                "(pip install -e '.[test]' brings it)"
            ) from None
        argv = [sys.executable, "-m", "twinmesh.node.demo._amqtt", "--port", str(port)]
    else:
        raise BrokerError(f"unknown broker {kind!r} (mosquitto or amqtt)")
    with log.open("ab") as out:
        proc = subprocess.Popen(argv, stdout=out, stderr=out, start_new_session=True)
    broker = Broker(kind, proc, port, log)
    deadline = time.monotonic() + timeout
    while not _listening(port):
        if proc.poll() is not None or time.monotonic() > deadline:
            broker.stop()
            raise BrokerError(f"the {kind} broker did not start; see {log}")
        time.sleep(0.05)
    return broker
