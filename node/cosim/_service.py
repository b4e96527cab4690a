"""Co-simulation on a running node: one :class:`AssetCoupling` per configured asset.

Theory of operation
-------------------
The service is a consumer of the telemetry buffer like any other (write
before read, node/telemetry/_buffer.py): it waits for commits, reads the new
rows by cursor, hands each asset's samples to its coupling and appends the
expected and residual samples it answers back into the same buffer
(``adapter="cosim"``; its own rows are skipped on the way round). The
cursor starts at the end of the buffer when the node starts: a restarted
node begins a fresh co-simulation from the twin's state at that moment
instead of replaying history through the FMUs.

Our own FMUs are built on first use into ``cosim.fmu_dir`` (a few hundred
milliseconds with gcc, in a worker thread). Without a C compiler every asset
reports ``unavailable`` with the reason and the node goes on ingesting and
scoring without residuals. A system file that fails its checks leaves that
asset ``refused`` with every problem listed; the others run.

Lineage of every expected value goes to ``<data_dir>/cosim-lineage.sqlite``
(:mod:`._lineage`), committed before the samples it describes are appended,
so it survives a restart and is reachable for as long as it is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ._builtin import BuiltinFmus, CompilerMissing
from ._coupling import AssetCoupling, TagInfo
from ._lineage import LineageStore
from ._master import Master
from ._settings import CosimAsset, CosimSettings
from ._system import System, SystemError_, load_system
from ._whatif import WhatIfError, parse_whatif, run_whatif

__all__ = ["CosimService"]

log = logging.getLogger("twinmesh.node.cosim")


def _label(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class CosimService:
    def __init__(
        self,
        settings: CosimSettings,
        *,
        telemetry: Any,  # TelemetryService (its buffer and tag specs)
        data_dir: Path,
        clock: Callable[[], float] = time.time,
        desired: Callable[[str, str], float | None] | None = None,
    ) -> None:
        self.settings = settings
        #: (entity, DTDL command) -> its desired value at home (node/commands), or None
        self.desired = desired
        self._desired_at = -float("inf")
        self.telemetry = telemetry
        self.clock = clock
        self.builtins = BuiltinFmus(settings.fmu_dir)
        self.unzip_root = data_dir / "cosim-run"
        self.couplings: dict[str, AssetCoupling] = {}
        self.refused: dict[str, dict[str, Any]] = {}  # entity -> status of an asset that cannot run
        self.systems: dict[str, System] = {}
        self.unavailable: str | None = None
        self._task: asyncio.Task[None] | None = None
        self.derived = 0
        self.loop_seconds = 0.0  # thread CPU time spent in couplings
        self.whatifs = 0
        self.whatif_refusals = 0
        self.lineage = LineageStore(
            data_dir / "cosim-lineage.sqlite", retention_days=settings.lineage_days
        )
        self._runs: dict[str, int] = {}  # entity -> its lineage run this process
        self._pruned_at = -float("inf")

    # -- set-up --------------------------------------------------------------------------

    async def open(self) -> None:
        self.unzip_root.mkdir(parents=True, exist_ok=True)
        try:
            await asyncio.to_thread(self.builtins.build_all)
        except CompilerMissing as exc:
            self.unavailable = str(exc)
            log.warning("co-simulation unavailable: %s", exc)
        except RuntimeError as exc:
            self.unavailable = f"building our FMUs failed: {exc}"
            log.error("co-simulation unavailable: %s", exc)
        for asset in self.settings.assets:
            self._add_asset(asset)
        await self.lineage.open()
        started = self.clock()
        for entity, c in self.couplings.items():
            self._runs[entity] = await self.lineage.start_run(
                entity=entity,
                started_at=started,
                source=c.source,
                system=c.system.json(),
                fmus=[{"instance": n, **e.info.json()} for n, e in c.system.fmus.items()],
            )

    def _specs(self, entity: str) -> dict[str, TagInfo]:
        specs: Mapping[tuple[str, str], Any] = getattr(self.telemetry, "specs", {}) or {}
        return {
            name: TagInfo(unit=s.unit, minimum=s.minimum, maximum=s.maximum)
            for (e, name), s in specs.items()
            if e == entity
        }

    def _add_asset(self, asset: CosimAsset) -> None:
        def refuse(state: str, reason: str, problems: list[str] | None = None) -> None:
            self.refused[asset.entity] = {
                "entity": asset.entity,
                "state": state,
                "reason": reason,
                "problems": problems or [],
                "system": {"path": str(asset.system)},
            }
            log.warning("co-simulation of %s %s: %s", asset.entity, state, reason)

        if self.unavailable is not None:
            refuse("unavailable", self.unavailable)
            return
        try:
            system = load_system(asset.system, resolve_builtin=self.builtins.resolve)
        except SystemError_ as exc:
            refuse("refused", str(exc), [str(p) for p in exc.problems])
            return
        except CompilerMissing as exc:
            refuse("unavailable", str(exc))
            return
        overrides = {(f, v): x for f, v, x in asset.parameters}
        for f, v in overrides:
            entry = system.fmus.get(f)
            if entry is None or v not in entry.info.variables:
                refuse("refused", f"parameters: {f}.{v} is not a variable of {system.name}")
                return
        self.systems[asset.entity] = system

        def make(values: dict[tuple[str, str], float], sys: System = system) -> Master:
            return Master(
                sys,
                values={**overrides, **values},
                unzip_root=self.unzip_root,
                clock=time.thread_time,
            )

        coupling = AssetCoupling(
            entity=asset.entity,
            system=system,
            make_master=make,
            time_scale=asset.time_scale,
            input_timeout=self.settings.input_timeout,
            tags=self._specs(asset.entity),
            lineage_kept=self.settings.lineage_kept,
        )
        coupling.overrides = overrides  # type: ignore[attr-defined]
        self.couplings[asset.entity] = coupling
        if coupling.state == "refused":
            log.warning("co-simulation of %s refused: %s", asset.entity, coupling.reason)

    def start(self) -> None:
        if self.couplings and self.telemetry is not None:
            self._task = asyncio.create_task(self._run(), name="cosim")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None
        for c in self.couplings.values():
            c.close()
        await self.lineage.close()

    # -- the loop ----------------------------------------------------------------------

    async def _run(self) -> None:
        buffer = self.telemetry.buffer
        cursor = buffer.last_seq
        couplings = self.couplings
        while True:
            try:
                if not await buffer.wait_after(cursor, timeout=1.0):
                    continue
                rows = await buffer.read_after(cursor, 5000)
                if not rows:
                    continue
                cursor = rows[-1].seq
                started = time.thread_time()
                now = self.clock()
                self._follow_commands(now)
                derived = []
                for row in rows:
                    s = row.sample
                    if s.provenance.adapter == "cosim":
                        continue
                    c = couplings.get(s.entity)
                    if c is not None:
                        derived += c.offer(s, now)
                self.loop_seconds += time.thread_time() - started
                # Lineage first: whoever reads an expected value finds where it came from.
                for entity, c in couplings.items():
                    if c.new_lineage:
                        await self.lineage.add(self._runs[entity], entity, c.drain_lineage())
                if derived:
                    await buffer.append(derived)
                    self.derived += len(derived)
                if now - self._pruned_at > 60.0:
                    self._pruned_at = now
                    await self.lineage.prune(now)
            except asyncio.CancelledError:
                raise
            except Exception:
                # A bug of ours: say so loudly, keep the node (and the loop) going.
                log.exception("co-simulation loop failed; continuing")
                await asyncio.sleep(1.0)

    def _follow_commands(self, now: float) -> None:
        """Feed each commanded input the desired value of its command (at most
        twice a second: a command's state changes on a human's time scale)."""
        if self.desired is None or now - self._desired_at < 0.5:
            return
        self._desired_at = now
        for entity, c in self.couplings.items():
            for command in c.commanded:
                value = self.desired(entity, command)
                if value is not None and c.command(command, value):
                    log.info("co-simulation of %s follows %s = %g", entity, command, value)

    # -- reading -------------------------------------------------------------------------

    def status(self, entity_id: str) -> dict[str, Any] | None:
        """The JSON of ``GET /v1/assets/{id}/cosim``; None if the asset is not co-simulated."""
        c = self.couplings.get(entity_id)
        if c is not None:
            return c.status()
        return self.refused.get(entity_id)

    async def lineage_points(self, entity_id: str, ts: float | None) -> list[dict[str, Any]]:
        """Lineage points of an asset at ``ts`` (or its newest three), from the store:
        they outlive restarts and FMU switches, each naming the run (system, FMUs)
        that produced it."""
        if ts is None:
            return await self.lineage.latest(entity_id)
        return await self.lineage.at(entity_id, ts)

    def entities(self) -> list[str]:
        return sorted({*self.couplings, *self.refused})

    def running(self) -> dict[str, dict[str, Any]]:
        """Which FMUs (name, version, sha256) each asset runs: replicated for the fleet view."""
        out: dict[str, dict[str, Any]] = {}
        for entity, system in self.systems.items():
            out[entity] = {
                "system": system.name,
                "system_version": system.version,
                "fmus": {
                    n: {"name": e.info.name, "version": e.info.version, "sha256": e.info.sha256}
                    for n, e in system.fmus.items()
                },
            }
        return out

    def metric_lines(self) -> list[str]:
        lines: list[str] = []

        def metric(name: str, kind: str, help_text: str, samples: list[tuple[str, float]]) -> None:
            lines.append(f"# HELP twinmesh_cosim_{name} {help_text}")
            lines.append(f"# TYPE twinmesh_cosim_{name} {kind}")
            lines.extend(f"twinmesh_cosim_{name}{labels} {value}" for labels, value in samples)

        cs = sorted(self.couplings.items())
        e = lambda entity: f'{{entity="{_label(entity)}"}}'  # noqa: E731
        metric("steps_total", "counter", "Master steps by asset.", [(e(n), c.steps) for n, c in cs])
        metric(
            "overruns_total",
            "counter",
            "Batches the master stepped slower than real time.",
            [(e(n), c.overruns) for n, c in cs],
        )
        metric(
            "held_inputs",
            "gauge",
            "Inputs currently held (missing or flagged).",
            [(e(n), len(c.status()["held_inputs"])) for n, c in cs],
        )
        metric(
            "held_outputs_total",
            "counter",
            "Expected values computed while an input was held (stored UNCERTAIN).",
            [(e(n), c.held_outputs) for n, c in cs],
        )
        metric(
            "step_seconds_total",
            "counter",
            "CPU seconds spent in master steps.",
            [(e(n), round(c.master.stats.step_seconds if c.master else 0.0, 6)) for n, c in cs],
        )
        metric(
            "step_seconds_max",
            "gauge",
            "Longest master step, CPU seconds.",
            [(e(n), round(c.master.stats.max_step_seconds if c.master else 0.0, 6)) for n, c in cs],
        )
        metric(
            "failures_total",
            "counter",
            "Co-simulations stopped by an FMU error.",
            [(e(n), c.failures) for n, c in cs],
        )
        states = [(n, c.state) for n, c in cs] + [(n, r["state"]) for n, r in self.refused.items()]
        metric(
            "state",
            "gauge",
            "1 for the state each co-simulated asset is in.",
            [(f'{{entity="{_label(n)}",state="{s}"}}', 1) for n, s in sorted(states)],
        )
        metric(
            "derived_samples_total",
            "counter",
            "Expected and residual samples stored.",
            [("", self.derived)],
        )
        metric("whatif_runs_total", "counter", "What-if runs answered.", [("", self.whatifs)])
        return lines

    # -- what-if -----------------------------------------------------------------------------

    async def whatif(self, entity_id: str, body: Mapping[str, Any]) -> dict[str, Any]:
        c = self.couplings.get(entity_id)
        if c is None:
            if entity_id in self.refused:
                raise WhatIfError(409, "cosim-unavailable", self.refused[entity_id]["reason"])
            raise WhatIfError(404, "not-co-simulated", f"{entity_id} has no system file here")
        system = self.systems[entity_id]
        req = parse_whatif(body, system, max_horizon=self.settings.whatif_max_horizon)
        # The twin's current state: the latest good observations (as the live run starts).
        latest = {n: s for n, s in c._latest_initial.items()}
        missing = [n for n in c.initial if n not in latest] + [
            n for n in c.inputs if n not in c._last_good
        ]
        if missing:
            raise WhatIfError(
                409, "no-current-state", f"no good sample yet of {', '.join(sorted(set(missing)))}"
            )
        initial = {fv: float(latest[n].value) for n, fvs in c.initial.items() for fv in fvs}
        inputs_now = {n: c._last_good[n].value for n in c.inputs}
        overrides = dict(getattr(c, "overrides", {}))
        ranges = {name: (t.minimum, t.maximum) for name, t in c.tags.items()}

        def make(sys: System, values: dict[tuple[str, str], float], step: float) -> Master:
            return Master(
                dataclasses.replace(sys, step=step),
                values={**overrides, **values},
                unzip_root=self.unzip_root,
                clock=time.thread_time,
            )

        result = await asyncio.to_thread(
            run_whatif,
            system,
            req,
            make_master=make,
            initial=initial,
            inputs_now=inputs_now,
            ranges=ranges,
            cpu_seconds=self.settings.whatif_cpu_seconds,
            wall_seconds=self.settings.whatif_wall_seconds,
        )
        self.whatifs += 1
        result["entity"] = entity_id
        result["from"] = {
            "initial": {f"{f}.{v}": x for (f, v), x in initial.items()},
            "inputs": inputs_now,
        }
        return result
