"""The child process that trains one job; talks to its worker only through a pipe."""

from __future__ import annotations

import os
import threading
import time
import traceback
from multiprocessing.connection import Connection
from typing import Any

from tars.domain.runs import TrainingJob
from tars.training.progress import ProgressMessage, TrainingDone, TrainingFailed

PARENT_CHECK_SECONDS = 1.0


def child_main(job_data: dict[str, Any], conn: Connection) -> None:
    _exit_with_parent(os.getppid())
    job = TrainingJob.from_dict(job_data)

    def send(message: ProgressMessage) -> None:
        conn.send(message)

    try:
        # Imported here: the parent never pays for torch, only the child that trains.
        from tars.training.runner import train_and_evaluate

        train_and_evaluate(job, send)
    except Exception as exc:
        detail = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        send(TrainingFailed(error=detail))
        traceback.print_exc()
    else:
        send(TrainingDone())
    finally:
        conn.close()


def _exit_with_parent(parent_pid: int) -> None:
    """A worker killed with SIGKILL cannot stop its child; the child notices and stops itself."""

    def watch() -> None:
        while True:
            time.sleep(PARENT_CHECK_SECONDS)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
