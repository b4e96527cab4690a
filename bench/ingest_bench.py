"""Plant ingestion benchmarks in one report: the telemetry buffer, the MQTT and OPC UA adapters.

    python bench/ingest_bench.py [--quick] [--json FILE]

Runs ``ingest_buffer.py``, ``ingest_mqtt.py`` and ``ingest_opcua.py`` (see their
docstrings for what is measured against what) with their default sizes, or
tiny ones with ``--quick``, and prints one ``figure | value | reference |
ratio | goal`` table (bench/README.md). Each part stays under a minute on two
cores.
"""

from __future__ import annotations

import argparse
import asyncio

import ingest_buffer
import ingest_mqtt
import ingest_opcua
from _report import Report


async def main() -> None:
    ap = argparse.ArgumentParser(
        allow_abbrev=False, description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    ap.add_argument("--quick", action="store_true", help="tiny sizes: proves it runs")
    ap.add_argument("--json", help="also write the rows as JSON to this file")
    args = ap.parse_args()
    report = Report("ingest")
    if args.quick:
        await ingest_buffer.measure(report, rows=2000, rounds=1, paced_seconds=0.2)
        await ingest_mqtt.measure(report, messages=200, rounds=1, rate=200, latency_seconds=0.3)
        await ingest_opcua.measure(report, variables=10, seconds=0.3, rounds=1, latency_seconds=0.4)
    else:
        await ingest_buffer.measure(report, rows=40_000, rounds=3)
        await ingest_mqtt.measure(report, messages=8000, rounds=3)
        await ingest_opcua.measure(report, variables=50, seconds=3.0, rounds=3)
    report.print()
    if args.json:
        report.write_json(args.json)


if __name__ == "__main__":
    asyncio.run(main())
