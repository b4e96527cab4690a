"""twinmesh.sim."""
