"""twinmesh: federated industrial digital twins.

The subpackages are the repository's top-level folders, linked in here so that
everything installs under one namespace (the README's "Architecture map").
"""

__version__ = "0.1.0"
__all__ = ["__version__"]
