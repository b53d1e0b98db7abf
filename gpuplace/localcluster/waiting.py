"""Polling helper for eventually-consistent things (scheduling, webhook registration), and a coroutine
run to completion from sync code."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class WaitTimeoutError(TimeoutError):
    pass


async def wait_until(
    probe: Callable[[], Awaitable[T]],
    *,
    within: float = 30.0,
    interval: float = 0.2,
    what: str = "condition",
) -> T:
    """Await ``probe()`` until it returns a truthy value (for at most ``within`` seconds); return it.

    Exceptions from the probe count as "not yet"; the last one is chained to the timeout error.
    """
    deadline = time.monotonic() + within
    last_exc: BaseException | None = None
    last_value: T | None = None
    while True:
        try:
            last_value = await probe()
            if last_value:
                return last_value
        except Exception as exc:  # a probe that fails is simply not satisfied yet
            last_exc = exc
        if time.monotonic() >= deadline:
            raise WaitTimeoutError(
                f"timed out after {within:.0f}s waiting for {what} (last value {last_value!r})"
            ) from last_exc
        await asyncio.sleep(interval)


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, even when the caller's thread runs an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()
