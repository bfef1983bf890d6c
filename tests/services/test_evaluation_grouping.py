"""Single submissions made at once are stored together, and each is still answered for itself."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import orjson
import pytest

from tars.domain.errors import InvalidField
from tars.domain.evaluations import EvaluationScope, NewEvaluation
from tars.services.evaluations import Receipt
from tars.services.grouping import Grouped
from tars.services.runtime import Runtime


async def _submit_all(runtime: Runtime, submissions: list[NewEvaluation]) -> list[Receipt | BaseException]:
    await runtime.evaluations.start()  # the store's pool belongs to this event loop
    try:
        return await asyncio.gather(
            *(runtime.evaluations.submit_on_loop(item) for item in submissions), return_exceptions=True
        )
    finally:
        await runtime.evaluations.close()


def _rewards(runtime: Runtime) -> list[float]:
    history = asyncio.run(runtime.bus.history("agent:ppo", 0))
    return sorted(event.data["reward"] for event in history.events if event.type == "evaluation.created")


def test_concurrent_submissions_are_each_stored_refused_and_announced_for_themselves(runtime: Runtime) -> None:
    submissions = [NewEvaluation("ppo", "CartPole-v1", float(i), "us-west-2", duration_ms=5.0) for i in range(30)]
    submissions[7] = submissions[7]._replace(agent_id="nobody")
    submissions[12] = submissions[12]._replace(environment="Nowhere-v0")
    outcomes = asyncio.run(_submit_all(runtime, submissions))

    assert isinstance(outcomes[7], InvalidField) and outcomes[7].field == "agent_id"
    assert isinstance(outcomes[12], InvalidField) and outcomes[12].field == "environment"
    answers = [orjson.loads(o.body) for i, o in enumerate(outcomes) if i not in (7, 12) and isinstance(o, Receipt)]
    expected = [float(i) for i in range(30) if i not in (7, 12)]
    assert [answer["reward"] for answer in answers] == expected  # each caller got its own row
    assert len({answer["id"] for answer in answers}) == len(expected)
    assert _rewards(runtime) == expected  # one event each, none for the refused

    now = datetime.now(UTC)
    summary = runtime.evaluations.summary(
        EvaluationScope("ppo", None, None), now - timedelta(hours=2), now + timedelta(minutes=1), ["agent_id"]
    )
    [group] = summary.groups
    assert group.count == len(expected)  # the rollups took every stored one, once


@pytest.mark.parametrize("backend", ["distributed"], indirect=True)
def test_a_value_the_database_refuses_fails_only_its_own_submission(backend: str, runtime: Runtime) -> None:
    # INTEGER is 32 bits on PostgreSQL: the group's transaction fails, and each is then stored alone.
    submissions = [NewEvaluation("ppo", "CartPole-v1", float(i), "us-west-2", episode_length=10) for i in range(10)]
    submissions[3] = submissions[3]._replace(episode_length=2**40)
    outcomes = asyncio.run(_submit_all(runtime, submissions))
    assert [isinstance(outcome, Exception) for outcome in outcomes] == [i == 3 for i in range(10)]
    assert _rewards(runtime) == [float(i) for i in range(10) if i != 3]


def _grouped_by_tens(lanes: int) -> tuple[Grouped[int, int], list[list[int]], asyncio.Event]:
    """A handler that holds its first group until released, and refuses odd items."""
    groups: list[list[int]] = []
    release = asyncio.Event()

    async def handle(items: list[int]) -> list[int | Exception]:
        groups.append(items)
        if len(groups) <= lanes:
            await release.wait()
        return [ValueError(f"odd {item}") if item % 2 else item * 10 for item in items]

    return Grouped(handle, lanes=lanes), groups, release


def test_items_arriving_while_a_group_is_handled_form_the_next_group() -> None:
    async def scenario() -> tuple[list[int | BaseException], list[list[int]]]:
        grouped, groups, release = _grouped_by_tens(lanes=1)
        first = asyncio.ensure_future(grouped(0))
        await asyncio.sleep(0)  # the first group is taken
        rest = [asyncio.ensure_future(grouped(item)) for item in range(1, 6)]
        await asyncio.sleep(0)
        release.set()
        return await asyncio.gather(first, *rest, return_exceptions=True), groups

    outcomes, groups = asyncio.run(scenario())
    assert groups == [[0], [1, 2, 3, 4, 5]]
    assert outcomes[0] == 0 and outcomes[2] == 20 and outcomes[4] == 40
    assert [str(outcomes[i]) for i in (1, 3, 5)] == ["odd 1", "odd 3", "odd 5"]


def test_lanes_handle_that_many_groups_at_once_and_the_rest_wait_together() -> None:
    async def scenario() -> list[list[int]]:
        grouped, groups, release = _grouped_by_tens(lanes=2)
        first = []
        for item in (0, 2):
            first.append(asyncio.ensure_future(grouped(item)))
            for _ in range(3):  # its lane starts and takes it
                await asyncio.sleep(0)
        rest = [asyncio.ensure_future(grouped(item)) for item in (4, 6, 8)]
        await asyncio.sleep(0)
        assert groups == [[0], [2]]  # two lanes busy; the others wait for one
        release.set()
        assert await asyncio.gather(*first, *rest) == [0, 20, 40, 60, 80]
        return groups

    assert asyncio.run(scenario()) == [[0], [2], [4, 6, 8]]


def test_a_handler_that_raises_fails_its_whole_group_and_the_next_group_still_runs() -> None:
    async def handle(items: list[str]) -> list[str | Exception]:
        if "boom" in items:
            raise RuntimeError("the database went away")
        return [item.upper() for item in items]

    grouped: Grouped[str, str] = Grouped(handle)

    async def scenario() -> tuple[BaseException | str, str]:
        failed = await asyncio.gather(grouped("boom"), return_exceptions=True)
        return failed[0], await grouped("fine")

    failed, fine = asyncio.run(scenario())
    assert isinstance(failed, RuntimeError) and fine == "FINE"
