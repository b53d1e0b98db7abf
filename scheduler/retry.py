"""Calls to the API server that must eventually work before the process can go on (start-up and
take-over reads): retried with a doubling delay, each failure logged."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


async def until_it_works(
    what: str, call: Callable[[], Awaitable[T]], log: logging.Logger, *, first: float = 0.2, most: float = 5.0
) -> T:
    """`await call()` until it returns, sleeping `first` seconds after the first failure, doubling up to
    `most`; each failure is logged as "<what> failed". Cancellation passes through."""
    delay = first
    while True:
        try:
            return await call()
        except Exception as e:
            log.warning("%s failed: %r; retrying in %.1fs", what, e, delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, most)
