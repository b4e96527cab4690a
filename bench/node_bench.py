"""Node benchmarks on real processes over loopback: durable API writes, gossip
throughput between two nodes, and convergence after a healed split.

Every figure is printed beside a reference measured in the same run (see
bench/README.md):

* **writes**: durable API writes/s (counter increments, each acknowledged
  only once group-committed to SQLite with ``synchronous=FULL``) from 16
  concurrent aiohttp clients with keep-alive, against the same load on a bare
  aiohttp endpoint (another process) that only reads the body and answers.
  Goal: ratio >= 0.5. Timed interleaved, best of N.
* **gossip**: plant-a is split off, N deltas are written there, the split is
  healed, and the time until central's version vector holds all of them is
  measured. Reported two ways: from the heal (includes waiting for the
  post-split back-off and the next round) and from the first delta seen at
  central to the last (the transfer itself). Reference: ``msgpack.unpackb``
  of the very batch bytes that crossed (the signed blobs and the delta
  payloads inside), the floor of any decoder.
* **convergence**: three plants + central; ``split plant-b`` for a while with
  edits on both sides; heal; time until all four report the same state
  digest, in gossip intervals. Goal: <= 3 intervals.

Loopback only; a temporary directory per fleet; every fleet is brought down.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import msgpack

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _report import Report, best_of_each

from twinmesh.crdt import decode_deltas, encode_deltas
from twinmesh.node.fleet import fleet_down, fleet_up
from twinmesh.sync import SyncConfig, seal_batch_bytes

T = TypeVar("T")
PUMP = "dtmi:twinmesh:plant:Pump;1"
CLIENTS = 16

_BARE_SERVER = """
import sys
from aiohttp import web

async def write(request):
    await request.read()
    return web.json_response({"ok": True})

app = web.Application()
app.router.add_post("/write", write)
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), print=None, access_log=None)
"""


# ------------------------------------------------------------------ plumbing


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def _bare_endpoint() -> Iterator[tuple[str, int]]:
    """A bare aiohttp server in its own process (as the node is): URL and pid."""
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-c", _BARE_SERVER, str(port)])
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError("the bare aiohttp endpoint did not start") from None
                time.sleep(0.02)
        yield f"http://127.0.0.1:{port}/write", proc.pid
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@contextlib.contextmanager
def _fleet(directory: Path, plants: int, interval: float) -> Iterator[dict[str, Any]]:
    info = fleet_up(directory, plants=plants, interval=interval)
    try:
        yield info
    finally:
        fleet_down(directory)


def _run(coro: Awaitable[T]) -> T:
    return asyncio.run(coro)  # type: ignore[arg-type]


def _api(info: dict[str, Any], node: str) -> str:
    return next(n["api"] for n in info["nodes"] if n["name"] == node)


def _headers(info: dict[str, Any], role: str = "admin") -> dict[str, str]:
    return {"Authorization": f"Bearer {info['tokens'][role]}"}


async def _call(
    session: aiohttp.ClientSession, method: str, url: str, body: Any = None, **kw: Any
) -> Any:
    async with session.request(method, url, json=body, **kw) as resp:
        data = await resp.read()
        if resp.status >= 300:
            raise RuntimeError(f"{method} {url}: {resp.status} {data[:200]!r}")
        return json.loads(data)


def _control(info: dict[str, Any], path: str, body: dict[str, Any]) -> None:
    """The link proxy's control API (plain blocking HTTP: callable inside a loop)."""
    req = urllib.request.Request(
        info["proxy"]["control"] + path,
        data=json.dumps(body).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        resp.read()


def _split(info: dict[str, Any], node: str) -> None:
    names = [n["name"] for n in info["nodes"]]
    for a in names:
        for b in names:
            if a != b and node in (a, b):
                _control(info, f"/links/{a}->{b}", {"down": True})


def _heal(info: dict[str, Any]) -> None:
    _control(info, "/links", {"down": False, "delay_ms": 0, "jitter_ms": 0, "loss": 0})


async def _digests(
    session: aiohttp.ClientSession, info: dict[str, Any], names: list[str]
) -> dict[str, dict[str, Any]]:
    got = await asyncio.gather(
        *(
            _call(session, "GET", _api(info, n) + "/v1/digest", headers=_headers(info, "viewer"))
            for n in names
        )
    )
    return dict(zip(names, got, strict=True))


def _wait_converged(info: dict[str, Any], timeout: float = 60) -> None:
    names = [n["name"] for n in info["nodes"]]

    async def go() -> None:
        async with aiohttp.ClientSession() as s:
            deadline = time.monotonic() + timeout
            while len({d["digest"] for d in (await _digests(s, info, names)).values()}) > 1:
                if time.monotonic() > deadline:
                    raise RuntimeError("the fleet did not converge")
                await asyncio.sleep(0.02)

    _run(go())


# ------------------------------------------------------------------ load


async def _load(
    urls: list[str], body: dict[str, Any], total: int, headers: dict[str, str]
) -> float:
    """``total`` POSTs from ``CLIENTS`` concurrent clients (one keep-alive
    connection each, client ``i`` posting to ``urls[i % len(urls)]``); wall
    seconds, connection set-up included."""
    connector = aiohttp.TCPConnector(limit=CLIENTS, force_close=False)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:
        per = [total // CLIENTS + (1 if i < total % CLIENTS else 0) for i in range(CLIENTS)]
        payload = json.dumps(body).encode()

        async def client(i: int) -> None:
            url = urls[i % len(urls)]
            for _ in range(per[i]):
                async with session.post(
                    url, data=payload, headers={"Content-Type": "application/json"}
                ) as resp:
                    await resp.read()
                    if resp.status != 200:
                        raise RuntimeError(f"{url}: HTTP {resp.status}")

        t0 = time.perf_counter()
        await asyncio.gather(*(client(i) for i in range(CLIENTS)))
        return time.perf_counter() - t0


def _pumps(info: dict[str, Any], node: str, prefix: str) -> list[str]:
    """One pump per client at ``node``; the URLs of their counter's ops."""

    async def go() -> list[str]:
        base = _api(info, node)
        urls = []
        async with aiohttp.ClientSession(headers=_headers(info)) as s:
            for i in range(CLIENTS):
                entity = f"{node}/{prefix}/pump-{i}"
                await _call(s, "POST", base + "/v1/entities", {"id": entity, "model": PUMP})
                urls.append(f"{base}/v1/entities/{entity}/fields/operatingHours/ops")
        return urls

    return _run(go())


INCREMENT = {"op": "increment", "amount": 1}


def _cpu_seconds(pid: int) -> float:
    """User + system CPU time of process ``pid`` (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _store_counters(info: dict[str, Any], node: str) -> tuple[float, float, float]:
    """The node's group-commit counters from /metrics: commits, rows, seconds."""
    with urllib.request.urlopen(_api(info, node) + "/metrics", timeout=10) as resp:
        text = resp.read().decode()
    got = {}
    for line in text.splitlines():
        name, _, value = line.partition(" ")
        if name.startswith("twinmesh_store_commit"):
            got[name] = float(value)
    return (
        got["twinmesh_store_commits_total"],
        got["twinmesh_store_commit_rows_total"],
        got["twinmesh_store_commit_seconds_total"],
    )


def _raw_commit_ms(directory: Path, rows: int, commits: int = 400) -> float:
    """Mean wall ms of one multi-row INSERT of ``rows`` op-sized rows committed
    on its own (WAL, synchronous=FULL: the WAL's fsync included) into the
    node's schema, in a file beside the node's, from this otherwise idle
    thread: what a group commit costs SQLite and the disk alone."""
    from twinmesh.node._store import _SCHEMA

    path = directory / "raw-commit-probe.sqlite"
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
        group = "(?, ?, ?, ?, ?, ?, ?)"
        sql = (
            "INSERT OR IGNORE INTO ops (origin, seq, entity, field, author, applied_ms, body)"
            " VALUES " + ", ".join([group] * rows)
        )
        body = b"x" * 90
        seq = 0
        t0 = time.perf_counter()
        for _ in range(commits):
            flat: list[Any] = []
            for i in range(rows):
                seq += 1
                flat += ["plant-a", seq, f"plant-a/w/pump-{i}", "operatingHours", "op", 0, body]
            db.execute(sql, flat)
        return 1e3 * (time.perf_counter() - t0) / commits
    finally:
        db.close()
        for suffix in ("", "-wal", "-shm"):
            Path(f"{path}{suffix}").unlink(missing_ok=True)


def bench_writes(
    report: Report,
    info: dict[str, Any],
    n: int,
    repeat: int,
    directory: Path | None = None,
    prefix: str = "writes",
) -> list[str]:
    urls = _pumps(info, "plant-a", prefix)
    node_pid = next(x["pid"] for x in info["nodes"] if x["name"] == "plant-a")
    cpu = {"node": float("inf"), "bare": float("inf")}
    commits = [0.0, 0.0, 0.0]

    def timed_cpu(key: str, pid: int, run: Callable[[], Any]) -> Callable[[], None]:
        def go() -> None:
            c0 = _cpu_seconds(pid)
            s0 = _store_counters(info, "plant-a") if key == "node" else None
            run()
            cpu[key] = min(cpu[key], (_cpu_seconds(pid) - c0) / n)
            if s0 is not None:
                s1 = _store_counters(info, "plant-a")
                for i in range(3):
                    commits[i] += s1[i] - s0[i]

        return go

    with _bare_endpoint() as (bare, bare_pid):
        _run(_load([bare], INCREMENT, CLIENTS * 4, {}))  # warm both
        _run(_load(urls, INCREMENT, CLIENTS * 4, _headers(info, "operator")))
        node_s, bare_s = best_of_each(
            timed_cpu(
                "node",
                node_pid,
                lambda: _run(_load(urls, INCREMENT, n, _headers(info, "operator"))),
            ),
            timed_cpu("bare", bare_pid, lambda: _run(_load([bare], INCREMENT, n, {}))),
            repeat=repeat,
        )
    node_rate, bare_rate = n / node_s, n / bare_s
    report.row(
        f"durable API writes/s, {CLIENTS} clients",
        node_rate,
        "/s",
        reference="bare aiohttp endpoint",
        ref_value=bare_rate,
        ref_unit="/s",
        goal=">= 0.5",
        met=node_rate / bare_rate >= 0.5,
        note=f"{n} counter increments per run, best of {repeat}, interleaved; "
        "each acknowledged after its group commit (WAL, synchronous=FULL)",
    )
    report.row(
        "server CPU per durable write",
        1e6 * cpu["node"],
        "us",
        reference="bare endpoint CPU per request",
        ref_value=1e6 * cpu["bare"],
        ref_unit="us",
        goal="none set (informational)",
        note="user+system CPU of the server process (all threads) per request, best run; "
        "less sensitive to a busy machine than the rates",
    )
    if directory is not None and commits[0]:
        per_commit = commits[1] / commits[0]
        raw_ms = _raw_commit_ms(directory, max(1, round(per_commit)))
        report.row(
            "group commit latency in the node",
            1e3 * commits[2] / commits[0],
            "ms",
            reference="raw SQLite commit, same rows",
            ref_value=raw_ms,
            ref_unit="ms",
            goal="none set (informational)",
            note=f"{per_commit:.1f} rows per commit over the timed node runs; the node's figure "
            "is the committer thread's wall time per commit (GIL and CPU waits included), "
            "the reference the same multi-row INSERT with its WAL fsync from an idle thread: "
            "their gap is what the commit waits for besides the disk",
        )
    return urls


def _link_accepted(info: dict[str, Any], links: list[str]) -> int:
    """Connections the link proxy has forwarded on ``links`` so far."""
    total = 0
    for link in links:
        with urllib.request.urlopen(info["proxy"]["control"] + "/links/" + link, timeout=10) as r:
            total += int(json.loads(r.read())["stats"]["accepted"])
    return total


def _batch_blobs(db_path: Path, origin: str, above: int, upto: int) -> list[bytes]:
    """The batch blobs that carry ``origin``'s deltas ``above+1..upto``, rebuilt
    from its op log as the engine seals them (``max_batch_deltas`` per batch):
    the engine seals a backlog only when a peer asks, and compacts the batches
    once every peer holds them, so the store cannot be read for them."""
    db = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        bodies = db.execute(
            "SELECT body FROM ops WHERE origin = ? AND seq > ? AND seq <= ? ORDER BY seq",
            (origin, above, upto),
        ).fetchall()
    finally:
        db.close()
    deltas = [decode_deltas(bytes(b))[0] for (b,) in bodies]
    size = SyncConfig().max_batch_deltas
    return [
        seal_batch_bytes(origin, above + 1 + i, len(chunk), encode_deltas(chunk))
        for i in range(0, len(deltas), size)
        if (chunk := deltas[i : i + size])
    ]


def bench_gossip(
    report: Report, info: dict[str, Any], urls: list[str], n: int, directory: Path
) -> None:
    names = ["plant-a", "central"]
    links = ["plant-a->central", "central->plant-a"]
    _wait_converged(info)

    async def vv(session: aiohttp.ClientSession) -> dict[str, int]:
        d = await _digests(session, info, names)
        return {k: int(v["vv"].get("plant-a", 0)) for k, v in d.items()}

    async def now_vv() -> dict[str, int]:
        async with aiohttp.ClientSession() as s:
            return await vv(s)

    start_vv = _run(now_vv())["central"]
    _split(info, "plant-a")
    _run(_load(urls, INCREMENT, n, _headers(info, "operator")))
    target = _run(now_vv())["plant-a"]

    async def catch_up() -> tuple[float, float]:
        async with aiohttp.ClientSession() as s:
            accepted = _link_accepted(info, links)
            _heal(info)
            t0 = time.perf_counter()
            t_conn = 0.0
            while True:
                if not t_conn and _link_accepted(info, links) > accepted:
                    t_conn = time.perf_counter() - t0
                seen = (await vv(s))["central"]
                now = time.perf_counter() - t0
                if seen >= target:
                    return now, t_conn or now
                if now > 120:
                    raise RuntimeError("central never caught up")
                await asyncio.sleep(0.002)

    total_s, conn_s = _run(catch_up())
    moved = target - start_vv
    blobs = _batch_blobs(
        directory / "plant-a" / "data" / "node.sqlite", "plant-a", start_vv, target
    )
    assert len(blobs) == -(-moved // SyncConfig().max_batch_deltas)

    def decode_all() -> None:
        for blob in blobs:
            items = msgpack.unpackb(blob)
            msgpack.unpackb(items[5])

    decode_s = min(_timed(decode_all) for _ in range(5))
    ref_rate = moved / decode_s
    nbytes = sum(len(b) for b in blobs)
    report.row(
        "gossip: deltas/s applied, first connection -> caught up",
        moved / (total_s - conn_s),
        "/s",
        reference="msgpack.unpackb same bytes",
        ref_value=ref_rate,
        ref_unit="/s",
        goal="none set (informational)",
        note=f"{moved} deltas ({nbytes / moved:.0f} B each in {len(blobs)} signed batches) "
        f"applied at central {total_s - conn_s:.2f} s after the first post-heal connection "
        "(mTLS handshake, verify, join, fsync included)",
    )
    report.row(
        "gossip: deltas/s applied, heal -> caught up",
        moved / total_s,
        "/s",
        reference="msgpack.unpackb same bytes",
        ref_value=ref_rate,
        ref_unit="/s",
        goal="none set (informational)",
        note=f"{total_s:.2f} s from the heal, of which {conn_s:.2f} s before the first "
        "connection: the post-split back-off / next round",
    )


def _timed(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def bench_convergence(
    report: Report, directory: Path, interval: float, splits: list[tuple[float, int]]
) -> None:
    """For each (split seconds, trials): split plant-b with edits on both sides,
    heal, time until all four digests agree."""
    with _fleet(directory, 3, interval) as info:
        names = [n["name"] for n in info["nodes"]]
        _wait_converged(info)
        trial = 0

        async def edits(session: aiohttp.ClientSession, trial: int, k: int) -> None:
            for node in names:
                base = _api(info, node)
                entity = f"{node}/conv-{trial}/pump-{k}"
                await _call(
                    session,
                    "POST",
                    base + "/v1/entities",
                    {"id": entity, "model": PUMP},
                    headers=_headers(info),
                )
                await _call(
                    session,
                    "POST",
                    f"{base}/v1/entities/{entity}/fields/tags/ops",
                    {"op": "add", "element": f"t{k}"},
                    headers=_headers(info),
                )

        async def during(trial: int, split_s: float) -> None:
            async with aiohttp.ClientSession() as s:
                t_end = time.monotonic() + split_s
                k = 0
                while time.monotonic() < t_end:
                    await edits(s, trial, k)
                    k += 1
                    await asyncio.sleep(interval / 2)

        async def heal_and_time() -> float:
            async with aiohttp.ClientSession() as s:
                _heal(info)
                t0 = time.perf_counter()
                while True:
                    d = await _digests(s, info, names)
                    if len({v["digest"] for v in d.values()}) == 1:
                        return time.perf_counter() - t0
                    if time.perf_counter() - t0 > 120:
                        raise RuntimeError("no convergence after heal")
                    await asyncio.sleep(0.005)

        for split_s, trials in splits:
            samples = []
            for _ in range(trials):
                trial += 1
                _split(info, "plant-b")
                _run(during(trial, split_s))
                samples.append(_run(heal_and_time()))
            worst = max(samples)
            report.row(
                f"heal -> same digest at 4 nodes, split {split_s:g} s (worst of {trials})",
                worst / interval,
                "intervals",
                reference="gossip interval",
                ref_value=interval,
                ref_unit="s",
                ratio=worst / interval,
                goal="<= 3 intervals",
                met=worst / interval <= 3,
                note=f"median {statistics.median(samples):.2f} s, worst {worst:.2f} s; edits "
                f"at all four nodes during the split; samples "
                + ", ".join(f"{x:.2f}" for x in samples)
                + " s",
            )


_PROFILE_PARTS = [
    ("whole API request (aiohttp + handler)", "RequestHandler._handle_request"),
    ("  our handler (middleware + field op)", "api_app.<locals>.observe"),
    ("    full-entity response (_entity_json)", "_entity_json"),
    ("      of which pycrdt text", "TextCrdt.text"),
    ("    write path (mutate, engine, store submit)", "Node.write_many"),
    ("    token check", "api_app.<locals>.require"),
    ("  response send (socket write)", "StreamResponse.write_eof"),
    ("group commit (event-loop side)", "Store._write_loop"),
    ("gossip serving/sealing", "gossip_app.<locals>.receive"),
    ("event loop idle (select)", "EpollSelector.select"),
]


def profile_node_writes(info: dict[str, Any], urls: list[str], n: int) -> str:
    """Where the node's event-loop thread spends its time under the write load
    (py-spy, sampling the real process)."""
    spy_bin = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(spy_bin).exists():
        return "py-spy is not installed (pip install py-spy): no profile of the node process"
    pid = next(x["pid"] for x in info["nodes"] if x["name"] == "plant-a")
    with tempfile.NamedTemporaryFile(suffix=".txt") as out:
        spy = subprocess.Popen(
            [
                spy_bin,
                "record",
                "--pid",
                str(pid),
                "--format",
                "raw",
                "-o",
                out.name,
                "--duration",
                "3",
                "--rate",
                "250",
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(0.5)  # let py-spy attach before the load starts (not a wait for state)
        _run(_load(urls, INCREMENT, n, _headers(info, "operator")))
        spy.wait(timeout=30)
        lines = Path(out.name).read_text().splitlines()
    total, incl = 0, dict.fromkeys([name for _, name in _PROFILE_PARTS], 0)
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not count.isdigit() or "run_forever" not in stack:
            continue  # only the event-loop thread
        total += int(count)
        for name in incl:
            if name + " (" in stack:
                incl[name] += int(count)
    if not total:
        return "py-spy recorded nothing (is ptrace allowed?)"
    parts = "; ".join(
        f"{label.strip()} {100 * incl[name] / total:.0f}%" for label, name in _PROFILE_PARTS
    )
    return f"py-spy, node event-loop thread ({total} samples, inclusive): {parts}"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        allow_abbrev=False, description=__doc__.splitlines()[0] if __doc__ else None
    )
    p.add_argument("--quick", action="store_true", help="tiny sizes: proves it runs")
    p.add_argument("--json", metavar="FILE", help="also write the rows as JSON")
    p.add_argument("--no-profile", action="store_true", help="skip profiling missed goals")
    p.add_argument("--interval", type=float, default=None, help="gossip interval, seconds")
    p.add_argument(
        "--only",
        choices=["writes", "gossip", "convergence"],
        action="append",
        help="run only this section (repeatable; default: all three)",
    )
    p.add_argument(
        "--runs",
        type=int,
        default=1,
        metavar="N",
        help="run the writes section N times on one fleet and print each ratio and the "
        "median (default: %(default)s)",
    )
    args = p.parse_args(argv)
    only = set(args.only or ["writes", "gossip", "convergence"])
    quick = args.quick
    interval = args.interval or (0.2 if quick else 0.5)
    report = Report("node (real processes, loopback)")
    with tempfile.TemporaryDirectory(prefix="twinmesh-node-bench-") as tmp:
        root = Path(tmp)
        if only & {"writes", "gossip"}:
            with _fleet(root / "two", 1, interval) as info:
                writes_n = 200 if quick else 2000
                urls = []
                for run in range(max(1, args.runs) if "writes" in only else 0):
                    urls = bench_writes(
                        report, info, writes_n, 1 if quick else 3, root / "two", f"writes{run}"
                    )
                if args.runs > 1 and "writes" in only:
                    ratios = [
                        r.value / r.ref_value
                        for r in report.rows
                        if r.figure.startswith("durable API writes/s") and r.value and r.ref_value
                    ]
                    report.note(
                        f"durable writes / bare over {len(ratios)} runs: median "
                        f"{statistics.median(ratios):.3f}, spread {min(ratios):.3f}-"
                        f"{max(ratios):.3f} (" + ", ".join(f"{x:.3f}" for x in ratios) + ")"
                    )
                if "gossip" in only:
                    urls = urls or _pumps(info, "plant-a", "gossip")
                    bench_gossip(report, info, urls, 300 if quick else 6000, root / "two")
                missed = [r for r in report.rows if r.met is False]
                if missed and urls and "writes" in only and not args.no_profile and not quick:
                    report.note(profile_node_writes(info, urls, 2000))
        if "convergence" in only:
            bench_convergence(
                report,
                root / "four",
                interval,
                [(1.0, 1)] if quick else [(2.0, 3), (8.0, 1)],
            )
    report.print()
    if args.json:
        report.write_json(args.json)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
