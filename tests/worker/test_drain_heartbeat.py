"""While a worker drains on shutdown, its heartbeat keeps its pace instead of spinning."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any, cast

from tars.domain.jobs import Delivery
from tars.domain.workers import WorkerStatus
from tars.worker.loop import Recorder, Worker


class BusyQueue:
    """A queue whose receive() holds its slot until released, like a slot still finishing a job."""

    def __init__(self) -> None:
        self.release_slot = threading.Event()
        self.receiving = threading.Event()

    def receive(self, consumer: str, timeout: float) -> Delivery | None:
        self.receiving.set()
        self.release_slot.wait(30)
        return None


def test_a_draining_worker_beats_at_its_usual_pace_until_its_slots_are_done(tmp_path: Path) -> None:
    queue = BusyQueue()
    beats: list[WorkerStatus] = []
    worker = Worker(
        "drainer",
        cast(Any, queue),
        cast(Recorder, None),
        artifact_dir=tmp_path,
        keep_alive_every=1.0,
        shutdown_grace=30.0,
        heartbeat_every=0.2,
        on_heartbeat=beats.append,
    )
    worker.start()
    try:
        assert queue.receiving.wait(5)  # the slot is busy: stopping now has something to drain
        worker.stop()
        draining_from = len(beats)
        time.sleep(1.0)  # the window the pace is counted over
        during_drain = len(beats) - draining_from
        assert 2 <= during_drain <= 8, f"{during_drain} heartbeats in 1 s at one per 0.2 s"
        assert beats[-1].state == "draining"
    finally:
        queue.release_slot.set()
    started = time.monotonic()
    worker.join(5)
    assert time.monotonic() - started < 1.0, "the heartbeat should end as soon as the slots are done"
