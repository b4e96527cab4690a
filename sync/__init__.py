"""twinmesh.sync."""
