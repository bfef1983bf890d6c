"""Newest-first pages by (a moment, then id), which the evaluations and insights lists share."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Select, and_, or_
from sqlalchemy.orm import InstrumentedAttribute

from tars.domain.evaluations import Position


def newest_first(
    query: Select[Any],
    moment: InstrumentedAttribute[Any],
    row_id: InstrumentedAttribute[Any],
    *,
    since: datetime | None,
    until: datetime | None,
    after: Position | None,
    limit: int,
) -> Select[Any]:
    """``query`` within [since, until) on ``moment``, after ``after``, newest first: one more row than
    ``limit``, to know whether another page follows."""
    if since is not None:
        query = query.where(moment >= since)
    if until is not None:
        query = query.where(moment < until)
    if after is not None:
        query = query.where(or_(moment < after.created_at, and_(moment == after.created_at, row_id < after.id)))
    return query.order_by(moment.desc(), row_id.desc()).limit(limit + 1)
