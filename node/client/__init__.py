"""``twinmesh entity`` and ``twinmesh conflicts``: a small HTTP client of a node's API.

The read -> write-with-context -> conflict -> resolve loop without curl. The
node's URL and a token come from a fleet directory's ``fleet.json``
(``--dir`` and ``--node``) or are given (``--url``, ``--token``, or the
``TWINMESH_URL`` / ``TWINMESH_TOKEN`` environment variables).
"""

from ._http import ApiError, NodeClient, client_from_args

__all__ = ["ApiError", "NodeClient", "client_from_args"]
