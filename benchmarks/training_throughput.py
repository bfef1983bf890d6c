"""PPO on CartPole-v1 through T.A.R.S. versus a plain Stable-Baselines3 script, alternating.

Both sides pay the same costs: a fresh Python process that imports torch and SB3, the same
tuned hyperparameters (8 environments), the same number of steps. The platform side also
stores every episode, a checkpoint and one evaluation episode, and publishes events.

    .venv/bin/python benchmarks/training_throughput.py [--timesteps 100000] [--repeats 3]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

from _harness import embedded_worker, emit, train_and_wait

from tars.domain.tuning import tuned_defaults
from tars.services.training import TrainingRequest

PLAIN = """
import sys
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
torch.set_num_threads(1)
params = {hyperparameters!r}
n_envs = params.pop("n_envs")
env = make_vec_env("CartPole-v1", n_envs=n_envs, seed=0)
PPO("MlpPolicy", env, seed=0, verbose=0, device="cpu", **params).learn({timesteps})
"""


def plain_run(timesteps: int) -> float:
    code = PLAIN.format(hyperparameters=tuned_defaults("ppo", "CartPole-v1"), timesteps=timesteps)
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], check=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--timesteps", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()

    platform_rates: list[float] = []
    plain_rates: list[float] = []
    with embedded_worker() as runtime:
        for repeat in range(args.repeats):
            # Alternate which goes first, so drift in the machine's speed hits both alike.
            order = ("platform", "plain") if repeat % 2 == 0 else ("plain", "platform")
            for side in order:
                if side == "plain":
                    plain_rates.append(args.timesteps / plain_run(args.timesteps))
                else:
                    result = train_and_wait(
                        runtime, TrainingRequest(agent_id="ppo", timesteps=args.timesteps, seed=repeat)
                    )
                    platform_rates.append(result["timesteps"] / result["seconds"])
    platform, plain = statistics.median(platform_rates), statistics.median(plain_rates)
    emit(
        {
            "benchmark": "training_throughput",
            "workload": f"PPO CartPole-v1, {args.timesteps} steps, tuned defaults (8 envs), fresh process each",
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
