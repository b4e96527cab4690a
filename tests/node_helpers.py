"""Shared helpers for the node tests: a real fleet of node processes in a tmp dir.

Everything here talks to real processes over real loopback sockets:

* :func:`running_fleet` starts a fleet with ``twinmesh.node.fleet.fleet_up``
  and always stops it with ``fleet_down``, even when a test fails;
* :class:`Fleet` wraps ``fleet.json``: an HTTP helper that adds a role's
  token, digests, split/heal through the link proxy, ``/metrics`` parsed into
  numbers, and stop/kill/start of one node process;
* :func:`wait_until` polls a predicate: tests never sleep a fixed time and
  hope.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import ssl
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from twinmesh.node.fleet import fleet_down, fleet_up

__all__ = [
    "PUMP",
    "Fleet",
    "Prober",
    "Response",
    "gossip_post",
    "parse_metrics",
    "post_json_error",
    "running_fleet",
    "wait_until",
]

T = TypeVar("T")

PUMP = "dtmi:twinmesh:plant:Pump;1"
HTTP_TIMEOUT = 10.0
NODE_HEADER = "X-Twinmesh-Node"


def wait_until(
    predicate: Callable[[], T], timeout: float = 10.0, *, interval: float = 0.02, what: str = ""
) -> T:
    """Poll ``predicate`` until it returns something truthy; return that.

    Raises ``AssertionError`` naming ``what`` (and the last value seen) when
    ``timeout`` seconds pass first. Exceptions from the predicate propagate.
    """
    deadline = time.monotonic() + timeout
    last: T = predicate()
    while not last:
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or predicate}")
        time.sleep(interval)
        last = predicate()
    return last


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    headers: dict[str, str]

    @property
    def json(self) -> Any:
        return json.loads(self.body)


# ------------------------------------------------------------------ metrics

_SAMPLE = re.compile(
    r"^(?P<name>[a-zA-Z_:][a-zA-Z0-9_:]*)"
    r'(?:\{(?P<labels>(?:[^"}]|"(?:\\.|[^"\\])*")*)\})?'
    r" (?P<value>[-+]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][-+]?\d+)?|[-+]?Inf|NaN)"
    r"(?: -?\d+)?$"
)
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:\\.|[^"\\])*)"')


def parse_metrics(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Prometheus text exposition → ``{(name, labels): value}``.

    Strict: every line must be a comment (``# ...``), empty, or a sample
    ``name{labels} value``; anything else raises ``ValueError`` naming the line.
    """
    out: dict[tuple[str, frozenset[tuple[str, str]]], float] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        m = _SAMPLE.match(line)
        if m is None:
            raise ValueError(f"line {number} is not a Prometheus sample: {line!r}")
        labels_text = m.group("labels") or ""
        labels: list[tuple[str, str]] = []
        rest = labels_text
        while rest:
            lm = _LABEL.match(rest)
            if lm is None:
                raise ValueError(f"line {number}: bad labels {labels_text!r}")
            labels.append((lm.group(1), lm.group(2)))
            rest = rest[lm.end() :]
            if rest.startswith(","):
                rest = rest[1:]
            elif rest:
                raise ValueError(f"line {number}: bad labels {labels_text!r}")
        out[(m.group("name"), frozenset(labels))] = float(m.group("value"))
    return out


# ------------------------------------------------------------------ the fleet


class Fleet:
    """A running fleet (``fleet.json``) and ways to poke at it."""

    def __init__(self, directory: Path, info: dict[str, Any]) -> None:
        self.dir = directory
        self.info = info
        self.nodes: dict[str, dict[str, Any]] = {n["name"]: n for n in info["nodes"]}
        self.tokens: dict[str, str] = info["tokens"]
        self.interval: float = info["gossip_interval"]
        self._procs: dict[str, subprocess.Popen[bytes]] = {}

    @property
    def names(self) -> list[str]:
        return list(self.nodes)

    @property
    def plants(self) -> list[str]:
        return [n for n, v in self.nodes.items() if v["role"] == "plant"]

    def node_dir(self, name: str) -> Path:
        return self.dir / "ca" / "nodes" / name

    # -------------------------------------------------------------- HTTP

    def request(
        self,
        node: str,
        method: str,
        path: str,
        body: Any = None,
        *,
        role: str | None = "admin",
        token: str | None = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
        timeout: float = HTTP_TIMEOUT,
    ) -> Response:
        """One API request to ``node``; never raises on an HTTP error status."""
        url = urlsplit(self.nodes[node]["api"])
        headers = {"Content-Type": content_type}
        bearer = token if token is not None else (self.tokens[role] if role else None)
        if bearer is not None:
            headers["Authorization"] = f"Bearer {bearer}"
        data = raw if raw is not None else (None if body is None else json.dumps(body).encode())
        conn = http.client.HTTPConnection(url.hostname or "", url.port, timeout=timeout)
        try:
            conn.request(method, path, body=data, headers=headers)
            resp = conn.getresponse()
            return Response(resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()})
        finally:
            conn.close()

    def ok(self, node: str, method: str, path: str, body: Any = None, **kw: Any) -> Any:
        """A request that must succeed (2xx); its JSON body."""
        resp = self.request(node, method, path, body, **kw)
        assert 200 <= resp.status < 300, f"{method} {path} at {node}: {resp.status} {resp.body!r}"
        return resp.json

    def entity(self, node: str, entity: str) -> dict[str, Any]:
        return self.ok(node, "GET", "/v1/entities/" + quote(entity))  # type: ignore[no-any-return]

    def create(self, node: str, entity: str, model: str = PUMP) -> dict[str, Any]:
        return self.ok(node, "POST", "/v1/entities", {"id": entity, "model": model})  # type: ignore[no-any-return]

    def put_field(
        self, node: str, entity: str, field: str, value: Any, context: str | None, **kw: Any
    ) -> Response:
        return self.request(
            node,
            "PUT",
            f"/v1/entities/{quote(entity)}/fields/{field}",
            {"value": value, "context": context},
            **kw,
        )

    def digest(self, node: str) -> str:
        return self.ok(node, "GET", "/v1/digest", role="viewer")["digest"]  # type: ignore[no-any-return]

    def digests(self, names: list[str] | None = None) -> dict[str, str]:
        return {n: self.digest(n) for n in names or self.names}

    def converged(self, names: list[str] | None = None) -> str | None:
        """The common digest if every node (of ``names``) reports the same one."""
        seen = set(self.digests(names).values())
        return seen.pop() if len(seen) == 1 else None

    def wait_converged(self, timeout: float = 15.0, names: list[str] | None = None) -> str:
        return wait_until(
            lambda: self.converged(names), timeout, interval=0.05, what="equal digests"
        )

    def metrics(self, node: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
        resp = self.request(node, "GET", "/metrics", role=None)
        assert resp.status == 200
        return parse_metrics(resp.body.decode())

    def metric(self, node: str, name: str, **labels: str) -> float:
        """One sample (0 when the series does not exist yet)."""
        return self.metrics(node).get((name, frozenset(labels.items())), 0.0)

    # -------------------------------------------------------------- links

    def _control(self, path: str, body: dict[str, Any]) -> Any:
        req = urllib.request.Request(
            self.info["proxy"]["control"] + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(req, timeout=HTTP_TIMEOUT) as resp:
            return json.loads(resp.read())

    def split(self, node: str) -> None:
        """Cut ``node`` off from every other node (both directions)."""
        for a in self.names:
            for b in self.names:
                if a != b and node in (a, b):
                    self._control(f"/links/{a}->{b}", {"down": True})

    def heal(self) -> None:
        self._control("/links", {"down": False, "delay_ms": 0, "jitter_ms": 0, "loss": 0})

    # -------------------------------------------------------------- processes

    def pid(self, name: str) -> int:
        return int(self.nodes[name]["pid"])

    @staticmethod
    def _reap(pid: int, timeout: float) -> None:
        """Wait until process ``pid`` is gone (reaping it if it is our child)."""
        deadline = time.monotonic() + timeout
        while True:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return
            if time.monotonic() > deadline:
                raise AssertionError(f"process {pid} did not exit in {timeout} s")
            time.sleep(0.01)

    def stop(self, name: str, timeout: float = 15.0) -> None:
        """SIGTERM the node and wait until its process has exited."""
        pid = self.pid(name)
        os.kill(pid, signal.SIGTERM)
        self._reap(pid, timeout)

    def kill(self, name: str) -> None:
        """``kill -9`` the node, and wait until it is gone."""
        pid = self.pid(name)
        os.kill(pid, signal.SIGKILL)
        self._reap(pid, 10.0)

    def start(self, name: str, timeout: float = 30.0) -> None:
        """Start the node again from its config (``python -m twinmesh node run``)."""
        node = self.nodes[name]
        ready = self.dir / name / "ready.json"
        ready.unlink(missing_ok=True)
        with open(self.dir / name / "node.log", "ab") as log:
            proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "twinmesh",
                    "node",
                    "run",
                    "--config",
                    node["config"],
                    "--ready-file",
                    str(ready),
                ],
                stdout=log,
                stderr=log,
                start_new_session=True,
            )
        self._procs[name] = proc
        node["pid"] = proc.pid
        # fleet_down stops what fleet.json lists: keep it pointing at the new process.
        (self.dir / "fleet.json").write_text(json.dumps(self.info, indent=2))
        wait_until(
            lambda: ready.exists() or proc.poll() is not None,
            timeout,
            interval=0.02,
            what=f"{name} to start",
        )
        assert proc.poll() is None, f"{name} exited at start; see {self.dir / name / 'node.log'}"

    def restart(self, name: str) -> None:
        self.stop(name)
        self.start(name)


@contextlib.contextmanager
def running_fleet(
    directory: Path, *, plants: int, interval: float = 0.2, telemetry: dict[str, Path] | None = None
) -> Iterator[Fleet]:
    """A fleet of ``plants`` plants and central, converged on its start-up
    writes (each node's audit entity and asset twins); always brought down afterwards."""
    info = fleet_up(directory, plants=plants, interval=interval, telemetry=telemetry)
    fleet = Fleet(directory.resolve(), info)
    try:
        fleet.wait_converged(timeout=30)
        yield fleet
    finally:
        with contextlib.suppress(Exception):
            fleet.heal()
        fleet_down(directory)
        for proc in fleet._procs.values():
            with contextlib.suppress(Exception):
                proc.wait(timeout=5)


# ------------------------------------------------------------------ gossip (mTLS)


def gossip_post(
    fleet: Fleet,
    target: str,
    body: bytes,
    *,
    as_node: str,
    header: str | None = None,
    context: ssl.SSLContext | None = None,
    timeout: float = HTTP_TIMEOUT,
) -> Response:
    """POST ``body`` to ``target``'s gossip port directly (not through the link
    proxy) over mutual TLS with ``as_node``'s certificate from the fleet CA,
    claiming ``header`` (default: ``as_node``) in ``X-Twinmesh-Node``."""
    from twinmesh.node.security import client_ssl_context

    if context is None:
        own = fleet.node_dir(as_node)
        context = client_ssl_context(fleet.dir / "ca" / "ca.pem", own / "cert.pem", own / "key.pem")
    port = int(fleet.nodes[target]["gossip_port"])
    conn = http.client.HTTPSConnection("127.0.0.1", port, timeout=timeout, context=context)
    try:
        conn.request(
            "POST",
            "/v1/gossip",
            body=body,
            headers={
                NODE_HEADER: header if header is not None else as_node,
                "Content-Type": "application/msgpack",
            },
        )
        resp = conn.getresponse()
        return Response(resp.status, resp.read(), {k.lower(): v for k, v in resp.getheaders()})
    finally:
        conn.close()


def post_json_error(resp: Response) -> dict[str, Any]:
    """The ``{"error", "reason"}`` object of a refusal (asserts its shape)."""
    assert resp.headers.get("content-type", "").startswith("application/json"), resp.headers
    body = resp.json
    assert isinstance(body, dict) and set(body) >= {"error", "reason"}, body
    assert isinstance(body["reason"], str) and body["reason"], body
    return body


class Prober:
    """Keeps asking nodes for something harmless from a background thread, to
    show a node goes on serving others while it refuses bad input.

    Use as a context manager; :meth:`mark` returns how many probes have
    answered so far, :meth:`wait_past` waits until more have, and leaving the
    block asserts that every probe was answered with 200.
    """

    def __init__(self, fleet: Fleet, probes: list[tuple[str, str]]) -> None:
        self.fleet = fleet
        self.probes = probes  # (node, path) asked in turn, as a viewer
        self.answered = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="prober", daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            for node, path in self.probes:
                try:
                    resp = self.fleet.request(node, "GET", path, role="viewer", timeout=5)
                    if resp.status != 200:
                        self.failures.append(f"{node} {path}: {resp.status}")
                except OSError as exc:
                    self.failures.append(f"{node} {path}: {exc!r}")
                self.answered += 1

    def mark(self) -> int:
        return self.answered

    def wait_past(self, mark: int, n: int = 2) -> None:
        wait_until(lambda: self.answered >= mark + n, 10, what="probes to be answered")

    def __enter__(self) -> Prober:
        self._thread.start()
        self.wait_past(0, 1)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        assert not self.failures, f"a node stopped serving others: {self.failures[:5]}"
