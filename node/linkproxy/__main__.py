"""``python -m twinmesh.node.linkproxy --config links.json --control-port N``.

Runs a :class:`ProxyHub` and its control API until SIGINT or SIGTERM. When both
are listening it prints one JSON line to stdout, e.g.
``{"control": "http://127.0.0.1:9000", "links": {"a->b": "127.0.0.1:17001"}}``,
so a launcher that asked for port 0 learns the real ports (and knows it is ready).

Exit codes: 0 stopped by a signal, 1 could not start (bad config, port in use),
2 usage error.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import signal
import sys
from collections.abc import Sequence

from twinmesh.crdt._errors import TwinmeshError

from ._control import ControlServer
from ._hub import ProxyHub, load_config

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        allow_abbrev=False,
        prog="python -m twinmesh.node.linkproxy",
        description="TCP proxies for the directed links of a local fleet, with fault injection.",
    )
    parser.add_argument("--config", required=True, help="JSON file listing the links")
    parser.add_argument("--control-host", default="127.0.0.1", help="loopback address for the API")
    parser.add_argument("--control-port", type=int, default=0, help="0 picks a free port")
    parser.add_argument("--seed", type=int, help="overrides the config's seed")
    return parser


async def _run(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    seed = config.seed if args.seed is None else args.seed
    hub = ProxyHub(config.links, rng=random.Random(seed))
    control = ControlServer(hub, host=args.control_host, port=args.control_port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    async with hub, control:
        ready = {
            "control": control.url,
            "links": {name: hub.describe(name)["listen"] for name in hub.links},
        }
        print(json.dumps(ready), flush=True)
        await stop.wait()
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        return asyncio.run(_run(args))
    except TwinmeshError as exc:
        print(f"linkproxy: error: {exc.reason}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"linkproxy: error: cannot listen: {exc.strerror or exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
