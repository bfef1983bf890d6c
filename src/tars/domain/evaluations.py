"""What is known of an evaluation, whatever holds it (an ORM row, one just stored)."""

from __future__ import annotations

from typing import Protocol


class EvaluationFacts(Protocol):
    @property
    def agent_id(self) -> str: ...
    @property
    def environment(self) -> str: ...
    @property
    def region(self) -> str: ...
    @property
    def reward(self) -> float: ...
    @property
    def duration_ms(self) -> float | None: ...
    @property
    def status(self) -> str: ...
