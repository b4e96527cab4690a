"""twinmesh.node."""
