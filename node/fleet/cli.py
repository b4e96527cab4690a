"""CLI group ``twinmesh fleet``: a local fleet you can split."""

from __future__ import annotations

import argparse
import json
import re
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from twinmesh.crdt import LocalProtocolError

__all__ = ["register"]

DEFAULT_DIR = ".twinmesh-fleet"


def _control(fleet: dict[str, Any], path: str, body: dict[str, Any] | None = None) -> Any:
    url = fleet["proxy"]["control"] + path
    data = None if body is None else json.dumps(body).encode()
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        raise LocalProtocolError(
            f"link proxy refused: {exc.read().decode(errors='replace')}"
        ) from None
    except urllib.error.URLError as exc:
        raise LocalProtocolError(
            f"link proxy not reachable ({exc.reason}); is the fleet up?"
        ) from None


def _names(fleet: dict[str, Any]) -> list[str]:
    return [n["name"] for n in fleet["nodes"]]


def _check_node(fleet: dict[str, Any], name: str) -> None:
    if name not in _names(fleet):
        raise LocalProtocolError(
            f"no node {name!r} in this fleet (nodes: {', '.join(_names(fleet))})"
        )


def _links_of(fleet: dict[str, Any], node: str) -> list[str]:
    return [f"{a}->{b}" for a in _names(fleet) for b in _names(fleet) if a != b and node in (a, b)]


def _duration_ms(text: str, option: str) -> float:
    # A unit is required: a bare "150" could mean ms or s, and guessing wrong
    # is a 1000x fault.
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(ms|s)", text.strip())
    if not m:
        raise LocalProtocolError(
            f"{option} {text!r}: expected a duration with its unit, like 150ms or 0.2s"
        )
    value = float(m.group(1))
    return value * 1000 if m.group(2) == "s" else value


def _fraction(text: str) -> float:
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(%)?", text.strip())
    if not m:
        raise LocalProtocolError(f"--loss {text!r}: expected a percentage like 5% or 0.05")
    value = float(m.group(1))
    if m.group(2):
        return value / 100
    if value > 1:
        raise LocalProtocolError(
            f"--loss {text!r}: a bare number is a fraction from 0 to 1; for percent write {text}%"
        )
    return value


def _describe_faults(faults: dict[str, Any]) -> str:
    """A link's faults, the ones not at their defaults, in the units the CLI takes."""
    parts = []
    if faults.get("down"):
        parts.append("down")
    if faults.get("delay_ms"):
        parts.append(f"delay {faults['delay_ms']:g}ms")
    if faults.get("jitter_ms"):
        parts.append(f"jitter {faults['jitter_ms']:g}ms")
    if faults.get("loss"):
        parts.append(f"loss {faults['loss'] * 100:g}%")
    if faults.get("bandwidth_bytes_per_s"):
        parts.append(f"bandwidth {faults['bandwidth_bytes_per_s']} B/s")
    return ", ".join(parts) or "no faults"


def _up(args: argparse.Namespace) -> int:
    from ._launch import fleet_up

    telemetry: dict[str, Path] = {}
    for item in args.telemetry or ():
        node, sep, path = item.partition("=")
        if not sep or not node or not path:
            raise LocalProtocolError(f"--telemetry expects NODE=FILE, not {item!r}")
        telemetry[node] = Path(path)
    fleet = fleet_up(
        Path(args.dir), plants=args.plants, interval=args.interval, telemetry=telemetry
    )
    print(f"fleet up in {fleet['dir']} (gossip every {fleet['gossip_interval']} s):")
    for node in fleet["nodes"]:
        print(f"  {node['name']:10} {node['role']:8} API {node['api']}   pid {node['pid']}")
    print(f"  link proxy control {fleet['proxy']['control']}")
    print(f"tokens and URLs for scripts: {Path(fleet['dir']) / 'fleet.json'}")
    return 0


def _down(args: argparse.Namespace) -> int:
    from ._launch import fleet_down

    stopped = fleet_down(Path(args.dir))
    print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"))
    return 0


def _split(args: argparse.Namespace) -> int:
    from ._launch import load_fleet

    fleet = load_fleet(Path(args.dir))
    _check_node(fleet, args.node)
    for link in _links_of(fleet, args.node):
        _control(fleet, f"/links/{link}", {"down": True})
    print(f"{args.node} is cut off from every other node (heal with 'twinmesh fleet heal')")
    return 0


def _heal(args: argparse.Namespace) -> int:
    from ._launch import load_fleet

    fleet = load_fleet(Path(args.dir))
    _control(fleet, "/links", {"down": False, "delay_ms": 0, "jitter_ms": 0, "loss": 0})
    print("every link is up, with no delay or loss")
    return 0


def _link(args: argparse.Namespace) -> int:
    from ._launch import load_fleet

    fleet = load_fleet(Path(args.dir))
    _check_node(fleet, args.a)
    _check_node(fleet, args.b)
    if args.a == args.b:
        raise LocalProtocolError(f"a link joins two different nodes, not {args.a} to itself")
    # Without --reset a change is a partial update: the faults named are set,
    # the others keep their current values. --reset clears them all first.
    change: dict[str, Any] = (
        {"down": False, "delay_ms": 0, "jitter_ms": 0, "loss": 0} if args.reset else {}
    )
    if args.delay is not None:
        change["delay_ms"] = _duration_ms(args.delay, "--delay")
    if args.jitter is not None:
        change["jitter_ms"] = _duration_ms(args.jitter, "--jitter")
    if args.loss is not None:
        change["loss"] = _fraction(args.loss)
    if args.down:
        change["down"] = True
    if args.up:
        change["down"] = False
    if not change:
        raise LocalProtocolError(
            "say what to change: --delay, --jitter, --loss, --down, --up or --reset"
        )
    links = [f"{args.a}->{args.b}"] + ([] if args.one_way else [f"{args.b}->{args.a}"])
    for link in links:
        now = _control(fleet, f"/links/{link}", change)
        print(f"{link}: {_describe_faults(now['faults'])}")
    return 0


def _status(args: argparse.Namespace) -> int:
    from ._launch import load_fleet

    fleet = load_fleet(Path(args.dir))
    token = fleet["tokens"]["viewer"]
    for node in fleet["nodes"]:
        req = urllib.request.Request(
            node["api"] + "/v1/digest", headers={"Authorization": f"Bearer {token}"}
        )
        try:
            with urllib.request.urlopen(req, timeout=5) as resp:
                digest = json.loads(resp.read())["digest"][:16]
        except (urllib.error.URLError, OSError) as exc:
            digest = f"unreachable ({exc})"
        print(f"  {node['name']:10} digest {digest}")
    links = _control(fleet, "/links")["links"]
    faulty = [link for link in links if _describe_faults(link["faults"]) != "no faults"]
    down = [link["name"] for link in faulty if link["faults"]["down"]]
    print("  links down: " + (", ".join(down) if down else "none"))
    print(f"  link faults ({len(faulty)} of {len(links)} links have any):")
    for link in faulty:
        print(f"    {link['name']:22} {_describe_faults(link['faults'])}")
    return 0


def _demo(args: argparse.Namespace) -> int:
    from ._demo import run_fleet_demo

    return run_fleet_demo(Path(args.dir) if args.dir else None, keep=args.keep)


def _guard(fn: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(fn(args))
        except LocalProtocolError as exc:
            print(f"twinmesh fleet: {exc.reason}", file=sys.stderr)
            return 1

    return run


def register(subparsers: Any) -> None:
    group = subparsers.add_parser(
        "fleet", help="a local fleet of real node processes you can split"
    )
    sub = group.add_subparsers(dest="fleet_command", metavar="SUBCOMMAND")

    def add(name: str, fn: Any, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--dir", default=DEFAULT_DIR, help="fleet directory (default: %(default)s)")
        p.set_defaults(handler=_guard(fn))
        return p

    up = add("up", _up, "start N plants and a central ops node on loopback")
    up.add_argument(
        "--plants", type=int, default=3, help="how many plant nodes, 1..26 (default: %(default)s)"
    )
    up.add_argument(
        "--interval",
        type=float,
        default=1.0,
        help="gossip interval in seconds (default: %(default)s)",
    )
    up.add_argument(
        "--telemetry",
        action="append",
        metavar="NODE=FILE",
        help="append FILE's [telemetry]/[[adapter]] tables to NODE's config, e.g. "
        "plant-a=plant-out/node-telemetry.toml from 'twinmesh plant simulate' (repeatable); "
        "FILE is checked first and errors name it; relative paths in it resolve against "
        "DIR/NODE",
    )
    add("down", _down, "stop everything 'fleet up' started")
    split = add("split", _split, "cut one node off from all others")
    split.add_argument("node", help="the node to cut off, e.g. plant-b")
    add("heal", _heal, "bring every link back, clear delay and loss")
    link = add(
        "link",
        _link,
        "change faults on the links between two nodes: the faults named are set, the others"
        " keep their values (--reset clears them first); prints each link's faults after",
    )
    link.add_argument("a", help="one end of the link, a node name (e.g. plant-a)")
    link.add_argument("b", help="the other end (e.g. central)")
    link.add_argument("--delay", help="added one-way delay, with its unit: 150ms or 0.15s")
    link.add_argument("--jitter", help="extra random delay up to this, with its unit: 20ms")
    link.add_argument(
        "--loss",
        help="probability a new connection is reset: 5%% or the fraction 0.05",
    )
    updown = link.add_mutually_exclusive_group()
    updown.add_argument("--down", action="store_true", help="cut the link (a partition)")
    updown.add_argument("--up", action="store_true", help="bring the link back up")
    link.add_argument(
        "--reset", action="store_true", help="clear every fault first, then apply the others"
    )
    link.add_argument("--one-way", action="store_true", help="only the a->b direction")
    add("status", _status, "each node's state digest, and every link's current faults")
    demo = sub.add_parser(
        "demo", help="walkthrough: split, edit on both sides, heal, review, resolve, converge"
    )
    demo.add_argument("--dir", help="fleet directory (default: a new temporary one)")
    demo.add_argument("--keep", action="store_true", help="leave the fleet running afterwards")
    demo.set_defaults(handler=_guard(_demo))
    group.set_defaults(handler=lambda _a: group.print_help() or 2)
