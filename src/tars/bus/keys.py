"""Every Redis key, stream and channel name T.A.R.S. uses, in one place."""

JOBS_STREAM_PREFIX = "tars:jobs:"
WORKER_GROUP = "tars-workers"
EVENTS_CHANNEL = "tars:events"
WORKER_PREFIX = "tars:worker:"


def jobs_stream(algorithm: str) -> str:
    """One stream per agent family, so e.g. ppo-agent workers scale apart from the others."""
    return f"{JOBS_STREAM_PREFIX}{algorithm}"


def worker_key(worker_name: str) -> str:
    return f"{WORKER_PREFIX}{worker_name}"
