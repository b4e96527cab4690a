"""Waiting on a condition inside asyncio tests (the async twin of node_helpers.wait_until).

Tests never sleep a fixed time and hope: they poll a predicate, yielding to
the event loop between polls, and fail with ``TimeoutError`` after ``timeout``.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["wait_until"]


async def wait_until(
    predicate: Callable[[], Any | Awaitable[Any]],
    timeout: float = 15.0,
    *,
    interval: float = 0.02,
) -> Any:
    """Poll ``predicate`` (sync or async) until it returns something truthy; return that."""
    async with asyncio.timeout(timeout):
        while True:
            value = predicate()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            await asyncio.sleep(interval)
