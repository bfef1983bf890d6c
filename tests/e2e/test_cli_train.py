from __future__ import annotations

from collections.abc import Callable

import pytest

from tests.conftest import PASSWORD
from tests.e2e.conftest import Stack


@pytest.mark.slow
def test_train_follows_a_run_to_its_evaluation_summary(embedded_stack: Callable[..., Stack]) -> None:
    stack = embedded_stack()
    stack.create_user("trainer", "operator")
    login = stack.tars("login", "-u", "trainer", "--password-stdin", "--url", stack.orchestration_url, input=PASSWORD)
    assert login.returncode == 0, login.stderr
    result = stack.tars("train", "ppo", "--env", "CartPole-v1", "--episodes", "5", "--url", stack.orchestration_url)
    assert result.returncode == 0, result.stderr
    assert "succeeded: 3 evaluation episodes, mean reward" in result.stdout
    refused = stack.tars("train", "ddpg", "--env", "CartPole-v1", "--url", stack.orchestration_url)
    assert refused.returncode == 1
    assert "environment: ddpg needs a continuous action space" in refused.stderr
