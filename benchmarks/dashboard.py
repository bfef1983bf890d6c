"""The dashboard in Debian's Chromium: load time at a million evaluations, and reconnection.

A real `tars serve dashboard-api` on PostgreSQL and Redis, and the real page driven by Playwright.

    load: a fresh PostgreSQL database is filled with N evaluations (4 agents x 4 regions over ~30
        days; one INSERT ... SELECT FROM generate_series on a connection of its own, outside the
        5 s statement timeout the measured service keeps) and the overview is opened R times in a
        new browser context; prints the time from navigation start to the overview fully drawn
        (agents, runs, the latest evaluations on screen), and to the live feed connected.
    reconnect: the page stays open while evaluations are published every 20 ms and dashboard-api
        is restarted N times (SIGTERM, or SIGKILL with --kill); prints the time from the new
        process accepting connections to the page's client being connected again (p50/p95), and
        the evaluations the page's feed lost or received twice across all restarts.

    make bench-install     # once: the bench extra (Playwright) and Debian's chromium
    .venv/bin/python benchmarks/dashboard.py load [--evaluations 1000000] [--repeats 10]
    .venv/bin/python benchmarks/dashboard.py reconnect [--restarts 20] [--kill]
    (both take --redis-url, default redis://127.0.0.1:6379/15, which is emptied first,
    --postgres-admin-url, default postgresql://postgres@127.0.0.1:5432/postgres, and --database-prefix,
    default tars_bench_. Without chromium or Playwright the result says so: available false, reason.)
"""

from __future__ import annotations

import argparse
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from _harness import (
    add_postgres_arguments,
    emit,
    missing_command,
    missing_module,
    postgres_database,
    seed_evaluations,
    unavailable,
)
from live_feed import Dashboard, EvaluationPublisher, deployment, summary

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

# Debian's chromium, found on PATH: Playwright drives it and never downloads a browser of its own.
CHROMIUM = "chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
DATABASE = "dashboard"

SEED = """
INSERT INTO evaluations (agent_id, environment, region, reward, episode_length, duration_ms, status, created_at)
SELECT (ARRAY['dqn', 'a2c', 'ppo', 'ddpg'])[1 + i %% 4],
       CASE WHEN i %% 4 = 3 THEN 'Pendulum-v1' ELSE 'CartPole-v1' END,
       (ARRAY['us-west-2', 'us-east-1', 'eu-west-1', 'ap-southeast-1'])[1 + (i / 4) %% 4],
       CASE WHEN i %% 4 = 3 THEN -1500 + random() * 1400 ELSE random() * 500 END,
       1 + (random() * 499)::int,
       5 + random() * 45,
       'completed',
       now() - i * (interval '30 days' / %(count)s)
FROM generate_series(1, %(count)s) AS i
"""

# Counts every evaluation event the page's WebSocket receives, beside the page's own handling.
COUNT_FEED = """
window.__evaluationsSeen = [];
const NativeWebSocket = window.WebSocket;
window.WebSocket = function (...args) {
  const socket = new NativeWebSocket(...args);
  socket.addEventListener("message", (message) => {
    const frame = JSON.parse(message.data);
    if (frame.type === "event" && frame.channel === "evaluations") window.__evaluationsSeen.push(frame.data.id);
  });
  return socket;
};
window.WebSocket.prototype = NativeWebSocket.prototype;
Object.assign(window.WebSocket, NativeWebSocket);
"""

OVERVIEW_DRAWN = """
(expected) => {
  const drawn = document.querySelectorAll("[data-evaluation-id]").length >= expected.evaluations
    && document.querySelectorAll("[data-agent-id]").length >= expected.agents;
  if (drawn && window.__drawnAt === undefined) window.__drawnAt = performance.now();
  const live = window.tarsLive && window.tarsLive.state === "connected";
  if (live && window.__liveAt === undefined) window.__liveAt = performance.now();
  return drawn && live;
}
"""


@contextmanager
def chromium() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def open_overview(
    browser: Browser, dashboard: Dashboard, token: str, *, evaluations: int = 20, count_feed: bool = False
) -> Page:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    context.add_init_script(f"sessionStorage.setItem('tars.token', {token!r});")
    if count_feed:
        context.add_init_script(COUNT_FEED)
    page = context.new_page()
    page.goto(f"http://127.0.0.1:{dashboard.port}/#/")
    page.wait_for_function(OVERVIEW_DRAWN, arg={"evaluations": evaluations, "agents": 4}, polling="raf", timeout=60_000)
    return page


def load(args: argparse.Namespace) -> dict[str, Any]:
    with (
        postgres_database(args.postgres_admin_url, args.database_prefix + DATABASE) as database_url,
        deployment(args.redis_url, database_url) as (_runtime, dashboard, token),
    ):
        seeded = seed_evaluations(database_url, SEED, {"count": args.evaluations})
        dashboard.start()
        drawn: list[float] = []
        live: list[float] = []
        with chromium() as browser:
            open_overview(browser, dashboard, token).context.close()  # warm-up: first compile, caches
            for _ in range(args.repeats):
                page = open_overview(browser, dashboard, token)
                drawn.append(page.evaluate("window.__drawnAt"))
                live.append(page.evaluate("window.__liveAt"))
                page.context.close()
    return {
        "benchmark": "dashboard_load",
        "browser": "Debian chromium, headless",
        "evaluations_in_postgresql": args.evaluations,
        "seconds_to_seed": round(seeded, 1),
        "repeats": args.repeats,
        "overview_drawn_ms_from_navigation_start": summary(drawn),
        "live_feed_connected_ms_from_navigation_start": summary(live),
        "targets": {"overview_drawn_ms": "< 1000", "v1.0.1": "4500 ms at 5,000 evaluations"},
    }


def reconnect(args: argparse.Namespace) -> dict[str, Any]:
    reconnections: list[float] = []
    outages: list[float] = []
    with (
        postgres_database(args.postgres_admin_url, args.database_prefix + DATABASE) as database_url,
        deployment(args.redis_url, database_url) as (runtime, dashboard, token),
        chromium() as browser,
    ):
        dashboard.start()
        page = open_overview(browser, dashboard, token, evaluations=0, count_feed=True)
        publisher = EvaluationPublisher(runtime)
        publisher.start()
        for _ in range(args.restarts):
            page.wait_for_timeout(500)
            stopped_at = time.monotonic()
            dashboard.stop(kill=args.kill)
            page.wait_for_function("() => window.tarsLive.state !== 'connected'", polling="raf")
            ready_at = dashboard.start()
            page.wait_for_function("() => window.tarsLive.state === 'connected'", polling="raf", timeout=60_000)
            connected_at = time.monotonic()
            reconnections.append(max(0.0, connected_at - ready_at) * 1000)
            outages.append((connected_at - stopped_at) * 1000)
        page.wait_for_timeout(500)
        published = publisher.stop()
        page.wait_for_function("(n) => new Set(window.__evaluationsSeen).size >= n", arg=len(published), timeout=15_000)
        seen: list[int] = page.evaluate("window.__evaluationsSeen")
    return {
        "benchmark": "dashboard_reconnect",
        "client": "the page's ReconnectingWebSocketClient in Debian chromium",
        "restarts": args.restarts,
        "signal": "SIGKILL" if args.kill else "SIGTERM",
        "reconnect_ms_after_server_ready": summary(reconnections),
        "outage_ms_stop_to_resubscribed": summary(outages),
        "events_published": len(published),
        "events_lost": len(set(published) - set(seen)),
        "events_duplicated": len(seen) - len(set(seen)),
        "targets": {"reconnect_p95_ms": "< 1000", "events_lost": 0},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--redis-url", default="redis://127.0.0.1:6379/15")
    add_postgres_arguments(parser)
    commands = parser.add_subparsers(dest="command", required=True)
    opening = commands.add_parser("load")
    opening.add_argument("--evaluations", type=int, default=1_000_000)
    opening.add_argument("--repeats", type=int, default=10)
    restart = commands.add_parser("reconnect")
    restart.add_argument("--restarts", type=int, default=20)
    restart.add_argument("--kill", action="store_true", help="SIGKILL instead of SIGTERM")
    args = parser.parse_args()
    # The browser is what these measure: without it there is nothing to run, which the result says.
    reason = missing_module("playwright.sync_api") or missing_command(CHROMIUM, "chromium")
    if reason is not None:
        emit(unavailable(reason, benchmark=f"dashboard_{args.command}"))
        return
    emit(load(args) if args.command == "load" else reconnect(args))


if __name__ == "__main__":
    main()
