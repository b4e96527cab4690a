"""twinmesh.crdt."""
