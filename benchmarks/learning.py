"""Does each built-in agent learn its default environment with its tuned defaults?

Trains through the same code the worker runs (tars.training.runner), then evaluates 10
deterministic, seeded episodes.

    .venv/bin/python benchmarks/learning.py [--agents ppo,dqn,a2c,ddpg] [--timesteps N]
    (`make install` brings all it needs; --timesteps replaces every agent's budget, e.g. for a quick
    check that the script runs: below the budgets an agent is not expected to reach its goal)
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from _harness import emit

from tars.domain.agents import BUILTIN_AGENTS
from tars.domain.progress import EvaluationFinished, ModelSaved, ProgressMessage
from tars.domain.runs import TrainingJob
from tars.domain.tuning import tuned_defaults
from tars.training.runner import run_job

# Step budgets after the RL Baselines3 Zoo (DQN: 60k, as its replay buffer is capped at 10k); the goals.
BUDGETS = {"ppo": 100_000, "dqn": 60_000, "a2c": 500_000, "ddpg": 20_000}
GOALS = {"CartPole-v1": 475.0, "Pendulum-v1": -200.0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--agents", default=",".join(BUDGETS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--timesteps", type=int, help="instead of each agent's budget")
    args = parser.parse_args()
    results = []
    for spec in BUILTIN_AGENTS:
        if spec.agent_id not in args.agents.split(","):
            continue
        messages: list[ProgressMessage] = []
        job = TrainingJob(
            run_id=spec.agent_id,
            agent_id=spec.agent_id,
            algorithm=spec.algorithm,
            environment=spec.environment,
            episodes=None,
            timesteps=args.timesteps or BUDGETS[spec.algorithm],
            evaluation_episodes=10,
            seed=args.seed,
            hyperparameters=tuned_defaults(spec.algorithm, spec.environment),
        )
        started = time.perf_counter()
        with tempfile.TemporaryDirectory() as folder:
            run_job(job, messages.append, Path(folder) / "model.zip")
        rewards = [m.reward for m in messages if isinstance(m, EvaluationFinished)]
        steps = next(m.timesteps for m in messages if isinstance(m, ModelSaved))
        mean = statistics.fmean(rewards)
        results.append(
            {
                "agent": spec.agent_id,
                "environment": spec.environment,
                "steps": steps,
                "mean_reward": round(mean, 1),
                "std_reward": round(statistics.pstdev(rewards), 1),
                "goal": GOALS[spec.environment],
                "reached": mean >= GOALS[spec.environment],
                "seconds": round(time.perf_counter() - started, 1),
            }
        )
    emit({"benchmark": "learning", "seed": args.seed, "results": results})


if __name__ == "__main__":
    main()
