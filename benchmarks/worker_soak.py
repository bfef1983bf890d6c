"""One worker runs consecutive PPO jobs on CartPole-v1; does its memory grow?

Samples the resident memory of a real `tars worker` process (and any children it has) and
compares it with a plain SB3 script doing the same workload in one long-lived process (a new
model per job, as a naive worker would). The jobs-per-worker recycle limit stays off. Needs Redis
(the worker takes its jobs from Redis Streams); the given database is emptied first.

    .venv/bin/python benchmarks/worker_soak.py [--total-steps 1000000] [--steps-per-job 50000]
        [--redis-url redis://127.0.0.1:6379/15]
    (`make install` brings all it needs)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time

from _harness import MIB, RssSampler, emit, train_and_wait, worker_process

from tars.domain.tuning import tuned_defaults
from tars.services.training import TrainingRequest

PLAIN = """
import gc
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.env_util import make_vec_env
torch.set_num_threads(1)
for job in range({jobs}):
    params = {hyperparameters!r}
    n_envs = params.pop("n_envs")
    env = make_vec_env("CartPole-v1", n_envs=n_envs, seed=job)
    PPO("MlpPolicy", env, seed=job, verbose=0, device="cpu", **params).learn({steps})
    env.close()
    gc.collect()
    print("job", job, flush=True)
"""


def platform(jobs: int, steps: int, redis_url: str) -> dict[str, float]:
    with worker_process(redis_url) as stack, RssSampler(pid=stack.worker.pid) as sampler:
        ends: list[float] = []
        started = time.monotonic()
        for job in range(jobs):
            train_and_wait(stack.runtime, TrainingRequest(agent_id="ppo", timesteps=steps, seed=job))
            ends.append(time.monotonic() - started)
        children = len(stack.worker.children(recursive=True))
    return _summary(sampler, ends) | {"worker_children": children}


def plain(jobs: int, steps: int) -> dict[str, float]:
    code = PLAIN.format(jobs=jobs, steps=steps, hyperparameters=tuned_defaults("ppo", "CartPole-v1"))
    process = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    ends: list[float] = []
    with RssSampler(pid=process.pid) as sampler:
        started = time.monotonic()
        assert process.stdout is not None
        for _line in process.stdout:
            ends.append(time.monotonic() - started)
        process.wait()
    return _summary(sampler, ends)


def _summary(sampler: RssSampler, ends: list[float]) -> dict[str, float]:
    """RSS after warm-up (peak during the second job) and at the end (peak during the last)."""
    warm = [rss for at, rss in sampler.samples if ends[0] <= at < ends[1]]
    last = [rss for at, rss in sampler.samples if ends[-2] <= at <= ends[-1]]
    after_warmup, at_end = max(warm) / MIB, max(last) / MIB
    return {
        "rss_after_warmup_mib": round(after_warmup, 1),
        "rss_at_end_mib": round(at_end, 1),
        "rss_peak_mib": round(sampler.peak_mib(), 1),
        "growth_percent": round((at_end - after_warmup) / after_warmup * 100, 2),
        "seconds": round(ends[-1], 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--total-steps", type=int, default=1_000_000)
    parser.add_argument("--steps-per-job", type=int, default=50_000)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    args = parser.parse_args()
    jobs = max(3, args.total_steps // args.steps_per_job)
    ours = platform(jobs, args.steps_per_job, args.redis_url)
    theirs = plain(jobs, args.steps_per_job)
    emit(
        {
            "benchmark": "worker_soak",
            "workload": f"{jobs} consecutive PPO CartPole-v1 jobs x {args.steps_per_job} steps",
            "total_steps": jobs * args.steps_per_job,
            "platform": ours,
            "plain_sb3": theirs,
            "rss_ratio_at_end": round(ours["rss_at_end_mib"] / theirs["rss_at_end_mib"], 3),
            "targets": {"growth_percent": "< 2", "rss_ratio": "<= 1.1", "rss_mib": "< 400"},
        }
    )


if __name__ == "__main__":
    main()
