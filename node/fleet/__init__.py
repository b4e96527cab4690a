"""A local fleet on loopback: real node processes, certificates, and a link
proxy per directed link so the WAN can be split and healed without root."""

from ._launch import FleetError, fleet_down, fleet_up, load_fleet

__all__ = ["FleetError", "fleet_down", "fleet_up", "load_fleet"]
