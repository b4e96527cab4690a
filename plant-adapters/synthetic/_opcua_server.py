"""The plant's OPC UA server (asyncua): one Object per asset, one Double Variable per tag.

Address space
-------------
Namespace URI ``urn:twinmesh:plant:<site>`` (its index, normally 2, is written
into ``opcua-mapping.toml``). Under the Objects folder, per asset on OPC UA::

    Object    ns=<idx>;s=<asset>              BrowseName <idx>:<asset>
      Variable ns=<idx>;s=<asset>.<tag>       BrowseName <idx>:<tag>, Double

``<asset>`` is the asset's name from plant.toml (``motor-1``), ``<tag>`` the
DTDL telemetry name (``windingTemperature``), e.g. ``ns=2;s=motor-1.speed``.
String node ids (OPC UA Part 6 §5.3.1.10) are stable across restarts, so a
client's mapping and the server's history keep matching.

Each reading is written as a ``DataValue``: Double variant, status Good,
``SourceTimestamp`` = when the device measured it (the tick's wall time),
``ServerTimestamp`` = when the server got it (Part 4 §7.7.3-§7.7.4). A
dropout writes nothing, so subscribers see silence.

History
-------
With ``history = true`` every variable is historized (Part 11, HistoryRead of
raw data) into ``opcua-history.sqlite`` in the output directory through
asyncua's ``HistorySQLite``: it survives a restart of the simulator, so a
client can backfill a gap across one. ``history_count`` bounds the values kept
per variable. The store runs SQLite in WAL mode with ``synchronous=NORMAL``:
asyncua commits once per value, and a full fsync each time would cost more
than the simulation; a crash of this process still loses nothing committed.

Security
--------
``security = "None"`` (lab default) or ``"Basic256Sha256_SignAndEncrypt"``
with the server's application instance certificate and private key (Part 2
§6, Part 4 §5.5.2). The certificate's subjectAltName URI must equal
``application_uri``. Client certificates are not validated (lab use).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Sequence
from pathlib import Path

from asyncua import ua
from asyncua.server.history_sql import HistorySQLite
from asyncua.server.server import Server

from ._config import AssetConfig, OpcUaSettings

__all__ = ["HISTORY_FILE", "SETPOINTS", "PlantOpcUaServer", "node_id"]

#: Writable setpoint Variables per asset kind: (variable name, DTDL command).
#: A client (the home plant's node) writes the value; the simulator's physics follows.
SETPOINTS: dict[str, tuple[str, str]] = {"motor": ("speedSetpoint", "setSpeedSetpoint")}

_log = logging.getLogger(__name__)

HISTORY_FILE = "opcua-history.sqlite"


def node_id(namespace_index: int, asset: str, telemetry: str) -> str:
    """The string form of a tag's node id, as written to ``opcua-mapping.toml``."""
    return f"ns={namespace_index};s={asset}.{telemetry}"


class _HistoryStore(HistorySQLite):
    def _get_table_name(self, node_id: ua.NodeId) -> str:
        # asyncua 2.1 names tables f"{ns}_{identifier!r}": a string identifier's
        # repr carries quotes, which its own validate_table_name rejects, so string
        # node ids could not be historized at all. Our identifiers are
        # "<asset>.<tag>" with asset names limited to [A-Za-z0-9._-] by the config.
        return f"{node_id.NamespaceIndex}_{node_id.Identifier!s}"

    async def init(self) -> None:
        await super().init()
        # HistorySQLite keeps its aiosqlite connection in ``_db``; see the module docstring.
        await self._db.execute("PRAGMA journal_mode=WAL")
        await self._db.execute("PRAGMA synchronous=NORMAL")


def _utc(ts: float) -> dt.datetime:
    return dt.datetime.fromtimestamp(ts, dt.UTC)


class PlantOpcUaServer:
    """Build with :meth:`setup`, seed values with :meth:`write`, then :meth:`start`."""

    def __init__(
        self,
        settings: OpcUaSettings,
        *,
        site: str,
        namespace_uri: str,
        assets: Sequence[AssetConfig],
        out: Path,
    ) -> None:
        self.settings = settings
        self.site = site
        self.namespace_uri = namespace_uri
        self.assets = tuple(assets)
        self.out = out
        self.namespace_index = -1
        self._server: Server | None = None
        self._nodes: dict[tuple[str, str], ua.NodeId] = {}
        self._setpoints: dict[str, ua.NodeId] = {}

    @property
    def endpoint(self) -> str:
        return self.settings.endpoint

    async def setup(self) -> None:
        """Create the server and its address space; nothing listens yet."""
        s = self.settings
        server = Server()
        if s.history:
            server.iserver.history_manager.set_storage(_HistoryStore(str(self.out / HISTORY_FILE)))
        await server.init()
        server.set_endpoint(s.endpoint)
        server.set_server_name(f"twinmesh synthetic plant {self.site}")
        await server.set_application_uri(s.application_uri)
        if s.security == "None":
            server.set_security_policy([ua.SecurityPolicyType.NoSecurity])
        else:
            assert s.certificate is not None and s.private_key is not None
            await server.load_certificate(str(s.certificate))
            await server.load_private_key(str(s.private_key))
            server.set_security_policy([ua.SecurityPolicyType.Basic256Sha256_SignAndEncrypt])
        idx = await server.register_namespace(self.namespace_uri)
        self.namespace_index = idx
        objects = server.nodes.objects
        # Until the first reading the value is "waiting for initial data" (Part 4 §7.39).
        waiting = ua.DataValue(
            Value=ua.Variant(0.0, ua.VariantType.Double),
            StatusCode=ua.StatusCode(ua.StatusCodes.BadWaitingForInitialData),
        )
        for asset in self.assets:
            obj = await objects.add_object(
                ua.NodeId(asset.name, idx), ua.QualifiedName(asset.name, idx)
            )
            for tag in asset.telemetry:
                nid = ua.NodeId(f"{asset.name}.{tag}", idx)
                await obj.add_variable(
                    nid, ua.QualifiedName(tag, idx), ua.Variant(0.0, ua.VariantType.Double)
                )
                await server.write_attribute_value(nid, waiting)
                self._nodes[(asset.name, tag)] = nid
            if asset.kind in SETPOINTS:
                var_name, _ = SETPOINTS[asset.kind]
                nid = ua.NodeId(f"{asset.name}.{var_name}", idx)
                var = await obj.add_variable(
                    nid,
                    ua.QualifiedName(var_name, idx),
                    ua.Variant(math.nan, ua.VariantType.Double),
                )
                await var.set_writable()
                self._setpoints[asset.name] = nid
        self._server = server

    async def start(self) -> None:
        """Listen on the endpoint; then start historizing (it needs a running server)."""
        assert self._server is not None, "setup() first"
        await self._server.start()
        if self.settings.history:
            nodes = [self._server.get_node(nid) for nid in self._nodes.values()]
            await self._server.historize_node_data_change(
                nodes, period=None, count=self.settings.history_count
            )
        _log.info("OPC UA server listening on %s", self.settings.endpoint)

    async def write(
        self, asset: str, telemetry: str, value: float, *, source_ts: float, server_ts: float
    ) -> None:
        assert self._server is not None
        dv = ua.DataValue(
            Value=ua.Variant(float(value), ua.VariantType.Double),
            StatusCode=ua.StatusCode(ua.StatusCodes.Good),
            SourceTimestamp=_utc(source_ts),
            ServerTimestamp=_utc(server_ts),
        )
        await self._server.write_attribute_value(self._nodes[(asset, telemetry)], dv)

    async def setpoint(self, asset: str) -> float | None:
        """The setpoint a client last wrote for ``asset`` (None: none written)."""
        nid = self._setpoints.get(asset)
        if nid is None or self._server is None:
            return None
        value = self._server.read_attribute_value(nid).Value.Value  # local, synchronous
        return float(value) if isinstance(value, int | float) and math.isfinite(value) else None

    async def stop(self) -> None:
        if self._server is not None:
            server, self._server = self._server, None
            await server.stop()
