"""Waiting for another process or task to do something: a condition checked until it holds,
with a bound. Tests never sleep to let time pass; they wait for what they need to see."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable


async def eventually(
    check: Callable[[], Awaitable[bool]], *, what: str, timeout_s: float = 60.0
) -> None:
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not await check():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout_s:.0f} s: {what}")
        await asyncio.sleep(0.02)  # yield to the worker being waited for
