"""`tars train` following its run to the end: the live feed's channel of the run says what happens
as it happens; the orchestration service's run record fills in what the feed cannot.

The run record is read when the feed has subscribed (what happened before the subscription is not
replayed to a new subscriber), when the feed says the channel was reset, when the run has ended
(its full record is the command's result), and every few seconds while the feed cannot be reached.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

import click

from tars.cli.client import Credentials, NoAnswer
from tars.client.live import LiveEvent, ReconnectingWebSocketClient, State
from tars.domain.events import EventType
from tars.domain.runs import RunStatus

if TYPE_CHECKING:
    from rich.console import Console

log = logging.getLogger(__name__)

# How often the run record is read while the live feed cannot be reached.
FALLBACK_CHECK_SECONDS = 2.0
FINISHED = frozenset(status.value for status in RunStatus if status.finished)
# Events after which the run starts over (a new attempt discards the previous one's progress).
_STARTS_OVER = (EventType.RUN_QUEUED, EventType.RUN_STARTED)
_ENDS = (EventType.RUN_SUCCEEDED, EventType.RUN_FAILED, EventType.RUN_CANCELLED)


# `tars train`'s exit status when it could not follow its run to the end (1: the run failed, was
# cancelled or was refused; 2: click's, a usage error).
EXIT_LOST_TRACK = 3


class LostTrack(click.ClickException):
    """The run could not be followed to its end: nothing answered for too long, or the services
    refused us. The run itself may well go on."""

    exit_code = EXIT_LOST_TRACK


@dataclass
class Progress:
    """What a person following the run is shown."""

    run_id: str
    status: str = RunStatus.QUEUED.value
    worker: str | None = None
    episodes: int | None = None
    episodes_done: int = 0
    timesteps: int | None = None
    timesteps_done: int = 0
    last_reward: float | None = None
    steps_per_second: float | None = None
    feed: State = State.CONNECTING
    # True while the run is followed by reading its record, the feed being out of reach.
    checking: bool = False

    def apply(self, data: dict[str, Any], *, starts_over: bool = False) -> None:
        """A run record, or the data of a run event. Counts only grow, unless the run starts over:
        a record read while events arrive may be older than the last of them."""
        self.status = str(data.get("status") or self.status)
        self.worker = data.get("worker") or self.worker
        for target in ("episodes", "timesteps"):
            if target in data:
                setattr(self, target, data[target])
        for count in ("episodes_done", "timesteps_done"):
            if count in data:
                value = int(data[count] or 0)
                setattr(self, count, value if starts_over else max(value, getattr(self, count)))
        if data.get("reward") is not None:
            self.last_reward = float(data["reward"])
        elif data.get("rewards"):
            self.last_reward = float(data["rewards"][-1])
        elif starts_over:
            self.last_reward = None
        speed = (data.get("metrics") or {}).get("steps_per_second")
        if speed is not None:
            self.steps_per_second = float(speed)


class View(Protocol):
    def update(self, progress: Progress) -> None: ...

    def close(self) -> None: ...


class SilentView:
    """--json: nothing but the record at the end."""

    def update(self, progress: Progress) -> None:
        pass

    def close(self) -> None:
        pass


class PlainView:
    """Not a terminal: a line when the run starts training and one if the feed is lost, no more."""

    def __init__(self) -> None:
        self._said_running = False
        self._said_checking = False

    def update(self, progress: Progress) -> None:
        if progress.status == RunStatus.RUNNING.value and not self._said_running:
            self._said_running = True
            click.echo(f"run {progress.run_id} running" + (f" on {progress.worker}" if progress.worker else ""))
        if progress.checking and not self._said_checking:
            self._said_checking = True
            click.echo(
                f"the live feed is out of reach: checking run {progress.run_id} every {FALLBACK_CHECK_SECONDS:g} s",
                err=True,
            )

    def close(self) -> None:
        pass


class TerminalView:
    """A terminal: a live bar of timesteps (of episodes when the run stops on episodes alone), the
    episodes, the last episode's reward, env-steps/s and the time followed."""

    def __init__(self, console: Console) -> None:
        from rich.progress import BarColumn, TextColumn, TimeElapsedColumn
        from rich.progress import Progress as Bar

        def text(field: str) -> TextColumn:
            return TextColumn(f"{{task.fields[{field}]}}", markup=False)

        self._bar = Bar(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            *(text(field) for field in ("done", "episodes", "reward", "speed")),
            TimeElapsedColumn(),
            console=console,
            refresh_per_second=8,
        )
        self._task = self._bar.add_task("", total=None, done="", episodes="", reward="", speed="")
        self._started = False

    def update(self, progress: Progress) -> None:
        total: int | None
        if progress.timesteps:
            total, completed = progress.timesteps, progress.timesteps_done
            done = f"{progress.timesteps_done:,}/{progress.timesteps:,} timesteps"
        else:
            total, completed = progress.episodes, progress.episodes_done
            done = f"{progress.timesteps_done:,} timesteps"
        episodes = f"{progress.episodes_done:,}" + (f"/{progress.episodes:,}" if progress.episodes else "")
        description = f"run {progress.run_id} {progress.status}"
        if progress.status not in FINISHED:
            if progress.checking:
                description += " (live feed out of reach)"
            elif progress.feed is State.RECONNECTING:
                description += " (live feed reconnecting)"
        self._bar.update(
            self._task,
            total=total,
            completed=completed,
            description=description,
            done=done,
            episodes=f"{episodes} episodes",
            reward="" if progress.last_reward is None else f"last reward {progress.last_reward:,.1f}",
            speed="" if progress.steps_per_second is None else f"{progress.steps_per_second:,.0f} steps/s",
        )
        if not self._started:  # not before: its first frame would be an empty bar
            self._started = True
            self._bar.start()

    def close(self) -> None:
        self._bar.stop()  # the last state stays on the screen, above the result line


class RunFollower:
    """Follows one run on the live feed until it ends and returns its final record.

    ``read_run`` reads the run's record (blocking; it raises ``NoAnswer`` when the service cannot
    answer now). ``give_up_after``: seconds without a working feed or an answer from the service
    before ``LostTrack``.
    """

    def __init__(
        self,
        progress: Progress,
        view: View,
        feed_url: str,
        credentials: Credentials,
        read_run: Callable[[], dict[str, Any]],
        give_up_after: float,
    ) -> None:
        self.progress = progress
        self._view = view
        self._feed_url = feed_url
        self._credentials = credentials
        self._read_run = read_run
        self._give_up_after = give_up_after
        self._changed = asyncio.Event()
        self._read_now = False
        self._ended = False
        self._refresh_tried_for: str | None = None
        self._last_error = "no answer yet"

    async def follow(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        client = ReconnectingWebSocketClient(
            self._feed_url,
            self._credentials.token,
            [f"run:{self.progress.run_id}"],
            on_event=self._on_event,
            on_reset=self._on_reset,
            on_state=self._on_state,
        )
        feed = self._open(client)
        answered = loop.time()  # when the feed last worked, or the service last answered
        next_check = answered + FALLBACK_CHECK_SECONDS  # the feed has that long to connect
        catching_up = False  # a read is due that the feed cannot stand in for
        live = False  # the feed tells all there is to know
        try:
            while True:
                self._changed.clear()
                if feed.done():
                    feed = await self._reopen(client, feed)
                now = loop.time()
                if live:  # until whatever woke us: reading starts only if the feed stays away
                    answered, next_check = now, now + FALLBACK_CHECK_SECONDS
                if self._read_now:
                    self._read_now, catching_up, next_check = False, True, now
                live = not feed.done() and client.state is State.CONNECTED and not catching_up
                if not live and now >= next_check:
                    run = await self._read()
                    if run is not None:
                        answered = loop.time()
                        self.progress.apply(run, starts_over=run["status"] == RunStatus.QUEUED.value)
                        if run["status"] in FINISHED:
                            return run
                        catching_up = self._ended  # the feed said it ended: its record will say so too
                    elif loop.time() - answered >= self._give_up_after:
                        raise LostTrack(
                            f"lost track of run {self.progress.run_id}: neither the live feed ({self._feed_url}) "
                            f"nor the orchestration service answered for {self._give_up_after:g} s "
                            f"({self._last_error}); the run may still be going on"
                        )
                    self.progress.checking = feed.done() or client.state is not State.CONNECTED
                    self._view.update(self.progress)
                    next_check = loop.time() + FALLBACK_CHECK_SECONDS
                    live = not feed.done() and client.state is State.CONNECTED and not catching_up
                timeout = None if live else max(0.0, next_check - loop.time())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._changed.wait(), timeout)
        finally:
            await client.stop()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(feed, 1.0)

    async def _reopen(self, client: ReconnectingWebSocketClient, feed: asyncio.Task[None]) -> asyncio.Task[None]:
        """The feed client returns only when the server refused its token (an access token that ran
        out): open it again with a fresh one, if the login can be refreshed."""
        if not feed.cancelled() and (error := feed.exception()) is not None:
            self._last_error = f"live feed: {error!r}"
        if self._credentials.token == client.token and client.token != self._refresh_tried_for:
            self._refresh_tried_for = client.token
            with contextlib.suppress(click.ClickException):
                await asyncio.to_thread(self._credentials.refresh)
        if self._credentials.token == client.token:
            return feed  # followed by reading the record from now on
        client.token = self._credentials.token
        return self._open(client)

    def _open(self, client: ReconnectingWebSocketClient) -> asyncio.Task[None]:
        feed = asyncio.create_task(client.run())
        feed.add_done_callback(lambda _: self._changed.set())  # however it ended, the loop must look
        return feed

    async def _read(self) -> dict[str, Any] | None:
        try:
            return await asyncio.to_thread(self._read_run)
        except NoAnswer as exc:
            self._last_error = exc.message
            return None
        except click.ClickException as exc:  # refused (401, 403) or gone (404): asking again cannot help
            raise LostTrack(f"lost track of run {self.progress.run_id}: {exc.message}") from exc

    def _on_state(self, state: State, attempt: int) -> None:
        self.progress.feed = state
        if state is State.CONNECTED:
            # Subscribed: what happened before is in the record, what happens next comes as events.
            self._read_now = True
            self.progress.checking = False
        self._view.update(self.progress)
        self._changed.set()

    def _on_reset(self, channel: str) -> None:
        self._read_now = True  # the feed cannot replay what we missed; the record has it
        self._changed.set()

    def _on_event(self, event: LiveEvent) -> None:
        if not event.event.startswith("run."):
            return  # the run's evaluations: its summary is in the final record
        self.progress.apply(event.data, starts_over=event.event in _STARTS_OVER)
        if event.event in _ENDS:
            self._ended = self._read_now = True
            self._changed.set()
        self._view.update(self.progress)


def duration_seconds(run: dict[str, Any]) -> float | None:
    """Seconds the run trained: from its start (or its creation, if it never started) to its end."""
    began, ended = run.get("started_at") or run.get("created_at"), run.get("finished_at")
    if not began or not ended:
        return None
    return (datetime.fromisoformat(ended) - datetime.fromisoformat(began)).total_seconds()


def run_summary(run: dict[str, Any]) -> dict[str, Any]:
    """The run record `--json` prints: the API's, without the reward of every episode, with the last
    one, the evaluation's mean reward and the duration."""
    summary = {key: value for key, value in run.items() if key != "rewards"}
    rewards = run.get("rewards") or []
    summary["last_reward"] = rewards[-1] if rewards else None
    summary["mean_reward"] = (run.get("evaluation") or {}).get("mean_reward")
    summary["duration_seconds"] = duration_seconds(run)
    return summary


def _count(number: int, noun: str) -> str:
    return f"{number:,} {noun}" + ("" if number == 1 else "s")


def result_line(run: dict[str, Any]) -> str:
    """One line that says how the run ended."""
    run_id, status = run["run_id"], run["status"]
    seconds = duration_seconds(run)
    took = "" if seconds is None else f" in {seconds:,.1f} s"
    done = f"{_count(int(run['timesteps_done']), 'timestep')}, {_count(int(run['episodes_done']), 'episode')}"
    if status == RunStatus.SUCCEEDED.value:
        evaluation = run.get("evaluation")
        reward = ""
        if evaluation:
            episodes = _count(int(evaluation["episodes"]), "evaluation episode")
            reward = f", mean reward {evaluation['mean_reward']:,.2f} over {episodes}"
        return f"run {run_id} succeeded: {done}{reward}{took}"
    if status == RunStatus.FAILED.value:
        return f"run {run_id} failed: {run.get('error') or 'no reason recorded'}"
    return f"run {run_id} {status} after {done}{took}"
