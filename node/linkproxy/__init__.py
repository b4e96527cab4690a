"""Link proxy: one fault-injecting TCP proxy per directed node-to-node link.

Lets an operator split and heal the WAN of a local fleet, and add delay, jitter,
connection loss and a bandwidth cap, on real processes and without root.
"""

from ._control import ControlServer, control_app
from ._faults import FAULT_FIELDS, FaultError, LinkFaults
from ._hub import HubConfig, LinkConfigError, LinkSpec, ProxyHub, load_config, parse_config
from ._proxy import LinkProxy, LinkStats

__all__ = [
    "FAULT_FIELDS",
    "ControlServer",
    "FaultError",
    "HubConfig",
    "LinkConfigError",
    "LinkFaults",
    "LinkProxy",
    "LinkSpec",
    "LinkStats",
    "ProxyHub",
    "control_app",
    "load_config",
    "parse_config",
]
