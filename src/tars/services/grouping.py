"""Concurrent calls on an event loop served together: one blocking call, in a worker thread, for all
the items that arrived while the previous one ran.

Single evaluations are submitted by many clients at once. Stored one per transaction, each paid a
thread hop, a commit and its hour's rollup row (locked by every one of them in turn, so commits
queued behind each other) — several times what storing the same rows together costs. A group is
handled as one unit of work: under load a commit carries dozens of items; alone, an item is handled
at once, as before. Each caller waits for its own outcome: its result, or the exception raised for
it, or for the whole group.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

from anyio import to_thread

Item = TypeVar("Item")
Result = TypeVar("Result")


class Grouped(Generic[Item, Result]):
    """``await grouped(item)``: ``handle`` takes a group of items and answers, for each in order, its
    result or the exception for it alone; an exception it raises fails the whole group."""

    def __init__(self, handle: Callable[[list[Item]], list[Result | Exception]]) -> None:
        self._handle = handle
        # Per event loop: the futures belong to the loop their callers wait on.
        self._queues: dict[asyncio.AbstractEventLoop, list[tuple[Item, asyncio.Future[Result]]]] = {}
        self._drains: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak references

    async def __call__(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[Result] = loop.create_future()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = []
            drain = loop.create_task(self._drain(loop, queue))
            self._drains.add(drain)
            drain.add_done_callback(self._drains.discard)
        queue.append((item, outcome))
        return await outcome

    async def _drain(self, loop: asyncio.AbstractEventLoop, queue: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            while queue:
                group = queue[:]
                del queue[:]
                await self._serve(group)
        finally:
            del self._queues[loop]
            for _, outcome in queue:  # left only when the drain was cancelled (the loop closing)
                outcome.cancel()

    async def _serve(self, group: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await to_thread.run_sync(self._handle, [item for item, _ in group])
        except BaseException as exc:
            for _, outcome in group:  # the whole group failed: each caller hears why
                if not outcome.done():
                    if isinstance(exc, Exception):
                        outcome.set_exception(exc)
                    else:
                        outcome.cancel()
            if not isinstance(exc, Exception):
                raise
            return
        for (_, outcome), result in zip(group, results, strict=True):
            if outcome.done():  # its caller went away (a client disconnecting)
                continue
            if isinstance(result, Exception):
                outcome.set_exception(result)
            else:
                outcome.set_result(result)
