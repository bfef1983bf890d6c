"""Every Redis key, stream and channel name T.A.R.S. uses, in one place."""

JOBS_STREAM_PREFIX = "tars:jobs:"
WORKER_GROUP = "tars-workers"
EVENTS_CHANNEL_PREFIX = "tars:events:live:"
EVENT_LOG_PREFIX = "tars:events:log:"
EVENT_SEQUENCE_PREFIX = "tars:events:seq:"
WORKER_PREFIX = "tars:worker:"


def jobs_stream(algorithm: str) -> str:
    """One stream per agent family, so e.g. ppo-agent workers scale apart from the others."""
    return f"{JOBS_STREAM_PREFIX}{algorithm}"


def worker_key(worker_name: str) -> str:
    return f"{WORKER_PREFIX}{worker_name}"


def event_log(channel: str) -> str:
    """A channel's replay window: a stream whose entry ids are the event ids (``<id>-0``)."""
    return f"{EVENT_LOG_PREFIX}{channel}"


def event_sequence(channel: str) -> str:
    """A channel's latest event id."""
    return f"{EVENT_SEQUENCE_PREFIX}{channel}"


def events_channel(database: int) -> str:
    """The pub/sub channel that announces events. Pub/sub ignores Redis database numbers, so the
    number is in the name: two deployments on one server, in two databases, stay apart."""
    return f"{EVENTS_CHANNEL_PREFIX}{database}"


# Rate-limit counters (kept by the `limits` library under this prefix: rate_limit:{LIMITER/...}).
RATE_LIMIT_PREFIX = "rate_limit"

AUTH_INVALIDATIONS_PREFIX = "tars:auth:invalidations:"


def auth_invalidations(database: int) -> str:
    """The pub/sub channel on which replicas tell each other to forget cached credentials."""
    return f"{AUTH_INVALIDATIONS_PREFIX}{database}"


# Replicas of a service that split work by leases (the insight engine's agents): each replica's
# registration (a key with a TTL), the set naming them (read instead of scanning the keyspace), and
# one lease per unit of work.
LEASES_PREFIX = "tars:leases:"


def replica_key(group: str, replica: str) -> str:
    return f"{LEASES_PREFIX}{group}:replica:{replica}"


def replica_names(group: str) -> str:
    return f"{LEASES_PREFIX}{group}:replicas"


def lease_key(group: str, unit: str) -> str:
    return f"{LEASES_PREFIX}{group}:lease:{unit}"
