"""The child process that trains one job; talks to its worker only through a pipe."""

from __future__ import annotations

import os
import signal
import threading
import time
import traceback
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from tars.domain.progress import ProgressMessage, TrainingDone, TrainingFailed
from tars.domain.runs import TrainingJob
from tars.worker.resources import error_detail

PARENT_CHECK_SECONDS = 1.0


def child_main(job_data: dict[str, Any], model_path: str, conn: Connection) -> None:
    _leave_signals_to_the_worker()
    _exit_with_parent(os.getppid())
    job = TrainingJob.from_dict(job_data)

    def send(message: ProgressMessage) -> None:
        try:
            conn.send(message)
        except OSError:
            # The worker stopped listening (cancelled, shutting down, or gone): stop at once.
            os._exit(0)

    try:
        # Imported here: the parent never pays for torch, only the child that trains.
        from tars.training.runner import run_job

        run_job(job, send, Path(model_path))
    except Exception as exc:
        send(TrainingFailed(error=error_detail(exc)))
        traceback.print_exc()
    else:
        send(TrainingDone())
    finally:
        conn.close()


def _leave_signals_to_the_worker() -> None:
    """Ignore SIGINT and SIGTERM: they are for the worker, which drains or hands back the job.

    Ctrl-C in a terminal, and a service manager stopping a process group, signal this process
    along with its worker; dying of them would fail a run the worker means to finish or requeue.
    The worker stops this process with SIGKILL when it must.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def _exit_with_parent(parent_pid: int) -> None:
    """A worker killed with SIGKILL cannot stop its child; the child notices and stops itself."""

    def watch() -> None:
        while True:
            time.sleep(PARENT_CHECK_SECONDS)
            if os.getppid() != parent_pid:
                os._exit(1)

    threading.Thread(target=watch, name="parent-watch", daemon=True).start()
