"""``twinmesh demo``: three plants and central ops on loopback, each plant fed
by its own synthetic plant over OPC UA and MQTT, and a scripted story — wear,
a WAN split, concurrent edits, alerts, a refused command, review, convergence."""

from ._run import run_demo

__all__ = ["run_demo"]
