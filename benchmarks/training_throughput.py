"""PPO on CartPole-v1 through T.A.R.S. versus a plain Stable-Baselines3 script, alternating.

Both sides train with the same tuned hyperparameters (8 environments) for the same number of
steps, torch and SB3 already imported. The plain side is timed from building its environments
to the end of `learn`; the platform side from submitting the run to the API's queue until the run
is recorded as finished by a real `tars worker` process (Redis Streams, SQLite): queueing, every
episode stored and published, a checkpoint and one evaluation episode are all in its time.
Needs Redis; the given database is emptied first.

    .venv/bin/python benchmarks/training_throughput.py [--timesteps 100000] [--repeats 3]
        [--redis-url redis://127.0.0.1:6379/15]
    (`make install` brings all it needs)
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys

from _harness import emit, train_and_wait, worker_process

from tars.domain.tuning import tuned_defaults
from tars.services.training import TrainingRequest

PLAIN = """
import time
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
torch.set_num_threads(1)
params = {hyperparameters!r}
n_envs = params.pop("n_envs")
started = time.perf_counter()
env = make_vec_env("CartPole-v1", n_envs=n_envs, seed={seed})
PPO("MlpPolicy", env, seed={seed}, verbose=0, device="cpu", **params).learn({timesteps})
print(time.perf_counter() - started)
"""


def plain_run(timesteps: int, seed: int) -> float:
    code = PLAIN.format(hyperparameters=tuned_defaults("ppo", "CartPole-v1"), timesteps=timesteps, seed=seed)
    output = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    return float(output.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--timesteps", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args()

    platform_rates: list[float] = []
    plain_rates: list[float] = []
    with worker_process(args.redis_url) as stack:
        # Warm-up: the worker imports torch and SB3 with its first job, as the plain side does untimed.
        train_and_wait(stack.runtime, TrainingRequest(agent_id="ppo", timesteps=1_000, seed=99))
        for repeat in range(args.repeats):
            # Alternate which goes first, so drift in the machine's speed hits both alike.
            order = ("platform", "plain") if repeat % 2 == 0 else ("plain", "platform")
            for side in order:
                if side == "plain":
                    plain_rates.append(args.timesteps / plain_run(args.timesteps, repeat))
                else:
                    result = train_and_wait(
                        stack.runtime, TrainingRequest(agent_id="ppo", timesteps=args.timesteps, seed=repeat)
                    )
                    platform_rates.append(result["timesteps"] / result["seconds"])
    platform, plain = statistics.median(platform_rates), statistics.median(plain_rates)
    emit(
        {
            "benchmark": "training_throughput",
            "workload": f"PPO CartPole-v1, {args.timesteps} steps, tuned defaults (8 envs); platform: submit to finish",
            "repeats": args.repeats,
            "platform_steps_per_second": [round(r, 1) for r in platform_rates],
            "plain_sb3_steps_per_second": [round(r, 1) for r in plain_rates],
            "platform_median": round(platform, 1),
            "plain_sb3_median": round(plain, 1),
            "ratio": round(platform / plain, 3),
            "target_ratio": 0.95,
        }
    )


if __name__ == "__main__":
    main()
