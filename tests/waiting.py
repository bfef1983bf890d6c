"""Waiting for a condition instead of sleeping: poll until it holds, or fail saying what was awaited."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")


# What was awaited, for the failure: a text, or a function that tells it then (the state it ended in).
Message = str | Callable[[], str] | None


def _describe(condition: object, message: Message) -> str:
    if callable(message):
        return message()
    return message or getattr(condition, "__qualname__", None) or repr(condition)


def eventually(condition: Callable[[], T], timeout: float = 10.0, interval: float = 0.02, message: Message = None) -> T:
    """Call ``condition`` until it returns something truthy, and return that. Fails after ``timeout``
    seconds with ``message`` (or the condition's name) and the last value seen; whatever the
    condition raises (a process that died) fails at once."""
    deadline = time.monotonic() + timeout
    while True:
        last = condition()
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout} s for {_describe(condition, message)}; last seen: {last!r}")
        time.sleep(interval)


async def eventually_async(
    condition: Callable[[], Awaitable[T] | T], timeout: float = 10.0, interval: float = 0.02, message: Message = None
) -> T:
    """``eventually`` for a test's event loop: the condition may be a coroutine function."""
    deadline = time.monotonic() + timeout
    while True:
        result = condition()
        last: T = await result if inspect.isawaitable(result) else result  # type: ignore[assignment]
        if last:
            return last
        if time.monotonic() >= deadline:
            raise AssertionError(f"waited {timeout} s for {_describe(condition, message)}; last seen: {last!r}")
        await asyncio.sleep(interval)
