"""Every Redis key, stream and channel name T.A.R.S. uses, in one place."""

JOBS_STREAM = "tars:jobs"
WORKER_GROUP = "tars-workers"
EVENTS_CHANNEL = "tars:events"
WORKER_HEARTBEAT_PREFIX = "tars:worker:"


def worker_heartbeat_key(worker_name: str) -> str:
    return f"{WORKER_HEARTBEAT_PREFIX}{worker_name}"
