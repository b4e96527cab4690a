"""CLI group ``twinmesh plant``: run the synthetic plant.

``twinmesh plant simulate --config plant.toml [--out DIR] [--duration SECONDS] [--seed N]``

Serves the plant's OPC UA assets, publishes its MQTT assets, writes the
mapping, asset and ground-truth files into the output directory, prints
``READY {json}`` on stdout once serving, and runs until SIGINT/SIGTERM or
``--duration``. Exit status: 0 after a normal stop, 2 for a bad config or
usage (the message names the key), 1 if the plant cannot run (e.g. the OPC UA
port is taken).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from pathlib import Path
from typing import Any

__all__ = ["register"]


def _simulate(args: argparse.Namespace) -> int:
    from ._config import PlantConfigError, load_config

    try:
        config = load_config(args.config)
    except PlantConfigError as exc:
        print(f"twinmesh plant: {exc}", file=sys.stderr)
        return 2
    if args.duration is not None and not args.duration > 0:
        print(
            f"twinmesh plant: --duration: expected seconds > 0, found {args.duration}",
            file=sys.stderr,
        )
        return 2
    config = config.with_overrides(out=Path(args.out) if args.out else None, seed=args.seed)
    logging.basicConfig(
        level=logging.WARNING if args.quiet else logging.INFO,
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("asyncua").setLevel(logging.WARNING)  # chatty at INFO
    if config.opcua.security == "None":
        # It warns that policy None signs and encrypts nothing: chosen, so not news.
        logging.getLogger("asyncua.server.server").setLevel(logging.ERROR)

    from ._run import simulate

    async def main() -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        summary = await simulate(config, duration=args.duration, stop=stop)
        logging.getLogger("twinmesh.plant").info(
            "stopped: %d ticks, %d OPC UA writes, MQTT %d published, %d dropped, %d unsent",
            summary.ticks,
            summary.opcua_writes,
            summary.mqtt_published,
            summary.mqtt_dropped,
            summary.mqtt_unsent,
        )

    try:
        asyncio.run(main())
    except OSError as exc:
        print(f"twinmesh plant: cannot run: {exc}", file=sys.stderr)
        return 1
    return 0


def register(subparsers: Any) -> None:
    group = subparsers.add_parser(
        "plant",
        help="synthetic plant: OPC UA and MQTT machines with scheduled faults",
        description="A synthetic plant of motors, pumps and a CNC machine to run nodes against.",
    )
    sub = group.add_subparsers(dest="plant_command", metavar="ACTION")
    sim = sub.add_parser(
        "simulate",
        help="serve the plant over OPC UA and MQTT until stopped",
        description=(
            "Run the plant described by a plant.toml: an OPC UA server and an MQTT publisher "
            "with realistic machine physics and the configured faults. Writes mapping, asset "
            "and ground-truth files to the output directory and prints 'READY {json}'."
        ),
    )
    sim.add_argument("--config", required=True, metavar="FILE", help="the plant.toml to run")
    sim.add_argument(
        "--out", metavar="DIR", help="output directory (default: plant.out in the config)"
    )
    sim.add_argument(
        "--duration", type=float, metavar="SECONDS", help="stop after this many wall seconds"
    )
    sim.add_argument("--seed", type=int, help="master seed (default: plant.seed in the config)")
    sim.add_argument("--quiet", action="store_true", help="log warnings and errors only")
    sim.set_defaults(handler=_simulate)
    group.set_defaults(handler=lambda _args: group.print_help() or 2)
