"""Concurrent calls on an event loop served together: one call of a handler for all the items that
arrived while the previous one ran.

Single evaluations are submitted by many clients at once. Stored one per transaction, each paid a
statement, a commit and its hour's rollup row (locked by every one of them in turn, so commits
queued behind each other) — several times what storing the same rows together costs. A group is
handled as one unit of work: under load a commit carries dozens of items; alone, an item is handled
at once, as before. Each caller waits for its own outcome: its result, or the exception raised for
it, or for the whole group.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


class Grouped(Generic[Item, Result]):
    """``await grouped(item)``: ``handle`` takes a group of items and answers, for each in order, its
    result or the exception for it alone; an exception it raises fails the whole group.

    Up to ``lanes`` groups are handled at once, so one group's waits (a commit, a round trip to
    Redis) overlap another's work; items that arrive while every lane is busy wait for the first
    lane to come free, and go together.
    """

    def __init__(self, handle: Callable[[list[Item]], Awaitable[list[Result | Exception]]], *, lanes: int = 1) -> None:
        self._handle = handle
        self._lanes = lanes
        # Per event loop: the futures belong to the loop their callers wait on.
        self._queues: dict[asyncio.AbstractEventLoop, _Queue[Item, Result]] = {}
        self._tasks: set[asyncio.Task[None]] = set()  # held: the loop keeps only weak references

    async def __call__(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        outcome: asyncio.Future[Result] = loop.create_future()
        queue = self._queues.get(loop)
        if queue is None:
            queue = self._queues[loop] = _Queue()
        queue.waiting.append((item, outcome))
        if queue.busy < self._lanes:
            queue.busy += 1
            lane = loop.create_task(self._lane(loop, queue))
            self._tasks.add(lane)
            lane.add_done_callback(self._tasks.discard)
        return await outcome

    async def _lane(self, loop: asyncio.AbstractEventLoop, queue: _Queue[Item, Result]) -> None:
        try:
            while queue.waiting:
                group = queue.waiting[:]
                del queue.waiting[:]
                await self._serve(group)
        finally:
            queue.busy -= 1
            if queue.busy == 0:
                del self._queues[loop]
                for _, outcome in queue.waiting:  # left only when the lane was cancelled (the loop closing)
                    outcome.cancel()

    async def _serve(self, group: list[tuple[Item, asyncio.Future[Result]]]) -> None:
        try:
            results = await self._handle([item for item, _ in group])
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


class _Queue(Generic[Item, Result]):
    def __init__(self) -> None:
        self.waiting: list[tuple[Item, asyncio.Future[Result]]] = []
        self.busy = 0  # lanes serving this loop's items now
