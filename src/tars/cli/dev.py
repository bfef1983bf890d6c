"""`tars dev`: tools for development, demos and benchmarks."""

from __future__ import annotations

import time

import click

from tars.domain.errors import TarsError
from tars.settings import Settings


@click.group()
def dev() -> None:
    """Development tools."""


@dev.command("seed")
@click.option("--evaluations", "count", type=click.IntRange(min=1), required=True, help="How many to add")
@click.option("--days", type=click.FloatRange(min=0.001), default=30.0, show_default=True, help="Spread over")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed")
@click.pass_obj
def seed(settings: Settings, count: int, days: float, seed: int) -> None:
    """Add realistic evaluations: every built-in agent in every region over the last DAYS."""
    from tars.wiring.database import open_seeder

    try:
        with open_seeder(settings) as seeder:
            started = time.perf_counter()
            loaded = seeder.seed(count, days=days, seed=seed)
            elapsed = time.perf_counter() - started
    except TarsError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"added {loaded:,} evaluations in {elapsed:.1f} s ({loaded / max(elapsed, 1e-9):,.0f}/s)")
