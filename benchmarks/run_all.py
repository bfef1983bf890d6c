"""Every benchmark in this folder, one after the other, each printing its JSON as it finishes; then a
summary of which ran, which reported something unavailable (a missing program, module or peer, with
the reason) and which failed. A script that fails does not stop the others.

By default each runs at a small size, a few minutes in all: a check that every benchmark works
on this machine, not figures to quote (those need each script's own defaults: --full, hours).

    make bench             # installs what they need (make bench-install), starts PostgreSQL and Redis, runs this
    .venv/bin/python benchmarks/run_all.py [--full] [--only dashboard-load,auth-cost]
        [--redis-url redis://127.0.0.1:6379/15] [--postgres-admin-url postgresql://...]
        [--database-prefix tars_bench_]
    (exits 1 if any benchmark failed; one reporting a missing program or peer is not a failure)
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Benchmark:
    script: str
    command: str | None  # the script's subcommand, if it has them
    small: list[str]  # arguments for a small run
    services: tuple[str, ...] = ()  # "redis", "postgres": the options the script takes for them


REDIS = ("redis",)
BOTH = ("redis", "postgres")
BENCHMARKS = {
    "learning": Benchmark("learning.py", None, ["--timesteps", "2000"]),
    "training-throughput": Benchmark("training_throughput.py", None, ["--timesteps", "4000", "--repeats", "1"], REDIS),
    "worker-soak": Benchmark("worker_soak.py", None, ["--total-steps", "6000", "--steps-per-job", "2000"], REDIS),
    "auth-cost": Benchmark("auth_cost.py", None, ["--keys", "200", "--requests", "1000"], BOTH),
    "live-feed-reconnect": Benchmark("live_feed.py", "reconnect", ["--restarts", "2"], REDIS),
    "live-feed-fanout": Benchmark("live_feed.py", "fanout", ["--clients", "50", "--events", "5", "--rate", "5"], REDIS),
    "dashboard-load": Benchmark("dashboard.py", "load", ["--evaluations", "20000", "--repeats", "2"], BOTH),
    "dashboard-reconnect": Benchmark("dashboard.py", "reconnect", ["--restarts", "2"], BOTH),
    "evaluations-api-latency": Benchmark(
        "evaluations_api.py",
        "latency",
        ["--evaluations", "20000", "--rate", "50", "--seconds", "2", "--warmup", "5"],
        BOTH,
    ),
    "evaluations-api-throughput": Benchmark(
        "evaluations_api.py", "throughput", ["--evaluations", "20000", "--connections", "8", "--seconds", "2"], BOTH
    ),
    "evaluations-api-ingest": Benchmark(
        "evaluations_api.py",
        "ingest",
        ["--evaluations", "20000", "--clients", "8", "--seconds", "2", "--floor-rows", "5000"],
        BOTH,
    ),
    "prometheus-panels": Benchmark("prometheus_panels.py", None, ["--hours", "1", "--repeats", "1"]),
    "insights": Benchmark("insights.py", None, ["--streams", "200", "--throughput-evaluations", "50000"]),
}


def command_line(benchmark: Benchmark, args: argparse.Namespace) -> list[str]:
    """The script's options for the services come before its subcommand, where its parser wants them."""
    line = [benchmark.script]
    if "redis" in benchmark.services:
        line += ["--redis-url", args.redis_url]
    if "postgres" in benchmark.services:
        line += ["--postgres-admin-url", args.postgres_admin_url, "--database-prefix", args.database_prefix]
    if benchmark.command is not None:
        line.append(benchmark.command)
    return line + ([] if args.full else benchmark.small)


def unavailable_parts(result: Any, path: str = "") -> Iterator[str]:
    """Where the result says something could not run here, and why."""
    if isinstance(result, dict):
        if result.get("available") is False and "reason" in result:
            yield f"{path or 'all'}: {result['reason']}"
        for key, value in result.items():
            yield from unavailable_parts(value, f"{path}.{key}" if path else key)


def run(name: str, command: list[str]) -> dict[str, Any]:
    print(f"\n== {name}: {' '.join(command)}", flush=True)
    started = time.monotonic()
    # stderr goes straight through (progress, warnings, a traceback); stdout is the JSON.
    completed = subprocess.run([sys.executable, *command], cwd=HERE, stdout=subprocess.PIPE, text=True)
    seconds = round(time.monotonic() - started, 1)
    print(completed.stdout, end="", flush=True)
    if completed.returncode != 0:
        return {"status": "failed", "exit_code": completed.returncode, "seconds": seconds}
    try:
        result = json.loads(completed.stdout)
    except ValueError:
        return {"status": "failed", "reason": "its output is not one JSON document", "seconds": seconds}
    missing = list(unavailable_parts(result))
    if result.get("available") is False:
        return {"status": "unavailable", "reason": result.get("reason"), "seconds": seconds}
    return {"status": "ran", "seconds": seconds} | ({"unavailable": missing} if missing else {})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="each script's own defaults (hours) instead of small runs")
    parser.add_argument("--only", help=f"comma-separated, of: {', '.join(BENCHMARKS)}")
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    parser.add_argument("--postgres-admin-url", default="postgresql://postgres@127.0.0.1:5432/postgres")
    parser.add_argument("--database-prefix", default="tars_bench_")
    args = parser.parse_args()
    chosen = list(BENCHMARKS) if args.only is None else [name.strip() for name in args.only.split(",")]
    unknown = [name for name in chosen if name not in BENCHMARKS]
    if unknown:
        parser.error(f"no benchmark named {', '.join(unknown)}; they are: {', '.join(BENCHMARKS)}")
    summary: dict[str, Any] = {}
    for name in chosen:
        summary[name] = run(name, command_line(BENCHMARKS[name], args))
    failed = [name for name, outcome in summary.items() if outcome["status"] == "failed"]
    print("\n== summary")
    print(json.dumps({"benchmark": "all", "size": "full" if args.full else "small", "results": summary}, indent=2))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
