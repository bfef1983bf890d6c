"""The insights table's queries on real PostgreSQL with many insights: each served by an index."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from sqlalchemy import Engine, text

from tars.domain.insights import FindingKind, InsightFilter, Severity, StateFilter, Subject
from tars.storage import insights, migrate
from tars.storage.database import make_engine
from tests.insight_records import at
from tests.storage.test_index_migration import plan_of


@pytest.fixture
def engine(empty_postgres_url: str) -> Iterator[Engine]:
    built = make_engine(empty_postgres_url)
    migrate.upgrade(built)
    with built.begin() as connection:
        # 60,000 insights of 300 agents over ~40 days, nearly all resolved; a few hundred still open.
        connection.execute(
            text(
                "INSERT INTO insights (kind, severity, state, agent_id, environment, region, run_id, subject_key, "
                "first_seen_at, last_seen_at, resolved_at, evidence, confidence, impact, summary, recommendation, "
                "updated_at) "
                "SELECT (ARRAY['reward_regression','failure_rate_spike','learning_stall'])[1 + n % 3], "
                "(ARRAY['critical','warning','info'])[1 + (n / 3) % 3], "
                "CASE WHEN n % 200 = 0 THEN 'open' WHEN n % 200 = 1 THEN 'acknowledged' ELSE 'resolved' END, "
                "'agent-' || (n % 300), 'CartPole-v1', 'eu-west-1', 'run-' || (n % 5000), "
                '\'["agent-\' || (n % 300) || \'","CartPole-v1","eu-west-1","run-\' || n || \'"]\', '
                "now() - make_interval(mins => n), now() - make_interval(mins => n), "
                "CASE WHEN n % 200 > 1 THEN now() ELSE NULL END, '{}', 0.99, 0.2, 's', "
                '\'{"action": "investigate", "reason": "r", "parameters": {}}\', now() '
                "FROM generate_series(1, 60000) AS n"
            )
        )
        connection.execute(text("ANALYZE insights"))
    yield built
    built.dispose()


def test_each_list_filter_and_the_service_s_lookups_use_an_index(engine: Engine) -> None:
    cases = {
        "idx_insights_time": InsightFilter(),
        "idx_insights_agent_time": InsightFilter(agent_id="agent-7"),
        "idx_insights_run": InsightFilter(run_id="run-42"),
    }
    for index, where in cases.items():
        plan = plan_of(engine, lambda session, where=where: insights.read_page(session, where, limit=100, after=None))
        assert f'"Index Name": "{index}"' in plan, (index, plan)
        assert '"Seq Scan"' not in plan, (index, plan)
    for where in (
        InsightFilter(state=StateFilter.ACTIVE),
        InsightFilter(state=StateFilter.OPEN, severity=Severity.CRITICAL),
        InsightFilter(kind=FindingKind.LEARNING_STALL, since=at(0)),
        InsightFilter(state=StateFilter.RESOLVED),
    ):
        plan = plan_of(engine, lambda session, where=where: insights.read_page(session, where, limit=100, after=None))
        assert '"Seq Scan"' not in plan and '"Index Name": "idx_insights_' in plan, (where, plan)
    key = insights.subject_key(Subject("agent-7", "CartPole-v1", "eu-west-1", "run-7"))
    plan = plan_of(engine, lambda session: insights.unresolved(session, FindingKind.REWARD_REGRESSION, key))
    assert '"Index Name": "idx_insights_unresolved_subject"' in plan, plan
    plan = plan_of(engine, lambda session: insights.last_resolved_at(session, FindingKind.REWARD_REGRESSION, key))
    assert '"Seq Scan"' not in plan and '"Index Name": "idx_insights_' in plan, plan
    plan = plan_of(engine, insights.active_counts)
    assert '"Seq Scan"' not in plan, plan
