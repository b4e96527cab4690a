"""Plant adapters: OPC UA, MQTT (twinmesh.adapters)."""
