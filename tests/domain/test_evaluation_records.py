"""One record per evaluation: the table, COPY rows and the API answer all follow `Evaluation`."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import get_args

import pytest

from tars.api.schemas import EvaluationOut, EvaluationPageOut
from tars.domain.errors import InvalidField
from tars.domain.evaluations import EVALUATION_FIELDS, Evaluation, Position, decode_cursor, encode_cursor
from tars.domain.regions import REGIONS, Region
from tars.storage.tables import EvaluationRow


def test_the_tables_columns_are_the_records_fields_in_order() -> None:
    # COPY writes each Evaluation as it is, column by column.
    assert tuple(column.name for column in EvaluationRow.__table__.columns) == EVALUATION_FIELDS


def test_the_api_answer_is_derived_from_the_record() -> None:
    assert tuple(EvaluationOut.model_fields) == Evaluation._fields
    assert all(field.is_required() for field in EvaluationOut.model_fields.values())
    items = EvaluationPageOut.model_json_schema()["properties"]["items"]
    assert items["items"]["$ref"].endswith("/EvaluationOut")


def test_regions_are_declared_once() -> None:
    assert get_args(Region) == REGIONS and len(set(REGIONS)) == len(REGIONS)


def test_a_cursor_is_the_position_it_was_made_from() -> None:
    position = Position(datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), 42)
    assert decode_cursor(encode_cursor(position)) == position
    with pytest.raises(InvalidField):
        decode_cursor("not-a-cursor")
