"""deploy/prometheus: the rules and the configuration load, their unit tests pass, and every rule is
built on metrics that docs/metrics.md promises (a renamed metric would otherwise leave a panel or an
alert silently empty)."""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
PROMETHEUS = ROOT / "deploy" / "prometheus"
RULE_FILES = sorted((PROMETHEUS / "rules").glob("*.yml"))
UNIT_TESTS = sorted((PROMETHEUS / "tests").glob("*.yml"))
CATALOGUE = ROOT / "docs" / "metrics.md"

REQUIRED_RECORDINGS = {
    "tars:http_requests:rate1m",
    "tars:http_request_latency:p95:1m",
    "tars:evaluation_latency:p95:1m",
    "tars:slo_compliance:api_latency",
    "tars:slo_compliance:error_rate",
    "tars:slo_compliance:evaluation_success",
    "tars:insights_open:max",
}
# Not ours, and allowed: scrape health, rule health (the rule-failure alert), and prometheus_client's
# process metrics.
FOREIGN_METRICS = {"up", "prometheus_rule_evaluation_failures_total"}
FOREIGN_PREFIXES = ("prometheus_rule_group_", "process_")
# Labels Prometheus attaches to every scraped series.
TARGET_LABELS = {"job", "instance"}

PROMQL_KEYWORDS = {
    "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan",
    "by", "without", "on", "ignoring", "group_left", "group_right",
}  # fmt: skip
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_SELECTOR = re.compile(r"(?<![\w:.])([a-zA-Z_:][\w:]*)\s*\{([^}]*)\}")
_MATCHER = re.compile(r'([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)\s*(?:"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\')')
_GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)")
_IDENTIFIER = re.compile(r"(?<![\w:.])[a-zA-Z_:][\w:]*(?![\w:])")


@cache
def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.fail(
            "promtool is not installed. It is Debian's `prometheus` package (apt-get install prometheus; "
            ".ci/run installs it). These tests never skip: the rules would ship unchecked.",
            pytrace=False,
        )
    return path


def _promtool(*args: str) -> str:
    result = subprocess.run(
        [promtool(), *args], cwd=PROMETHEUS, capture_output=True, text=True, timeout=300, check=False
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"promtool {' '.join(args)} failed:\n{output}"
    return output


def _load(path: Path) -> dict[str, Any]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict), f"{path}: not a YAML mapping"
    return document


def _rules() -> Iterator[tuple[Path, dict[str, Any]]]:
    for path in RULE_FILES:
        for group in _load(path)["groups"]:
            for rule in group["rules"]:
                yield path, rule


def _recording_names() -> list[str]:
    return [rule["record"] for _, rule in _rules() if "record" in rule]


def _alerts() -> list[dict[str, Any]]:
    return [rule for _, rule in _rules() if "alert" in rule]


def grouping_labels(expr: str) -> set[str]:
    """The labels an expression aggregates or matches on (by, without, on, ignoring, group_*)."""
    found = _GROUPING.findall(_STRING.sub('""', expr))
    return {label.strip() for labels in found for label in labels.split(",") if label.strip()}


def metric_names(expr: str) -> dict[str, set[str]]:
    """The metric names a PromQL expression reads, each with the label names it matches on."""
    matched: dict[str, set[str]] = {}
    for name, matchers in _SELECTOR.findall(expr):
        if name.lower() not in PROMQL_KEYWORDS:
            matched.setdefault(name, set()).update(_MATCHER.findall(matchers))
    bare = _STRING.sub('""', expr)
    bare = re.sub(r"\{[^}]*\}", " ", bare)  # label matchers
    bare = re.sub(r"\[[^\]]*\]", " ", bare)  # ranges, subqueries
    bare = _GROUPING.sub(" ", bare)  # label lists of by/without/on/ignoring/group_*
    for found in _IDENTIFIER.finditer(bare):
        name = found.group()
        is_call = bare[found.end() :].lstrip().startswith("(")
        if not is_call and name.lower() not in PROMQL_KEYWORDS:
            matched.setdefault(name, set())
    return matched


@cache
def catalogue() -> dict[str, set[str]]:
    """Every series name docs/metrics.md promises, with its labels: a histogram is its _bucket (with
    `le`), _count and, unless the catalogue says there is none, _sum."""
    row = re.compile(r"^\|\s*`([a-zA-Z_:][\w:]*)`\s*\|\s*(\w+)\s*\|([^|]*)\|([^|]*)\|")
    series: dict[str, set[str]] = {}
    for line in CATALOGUE.read_text().splitlines():
        found = row.match(line)
        if found is None:
            continue
        name, kind, label_cell, meaning = found.groups()
        labels = {label.strip() for label in label_cell.split(",") if label.strip()}
        if kind == "histogram":
            series[f"{name}_bucket"] = labels | {"le"}
            series[f"{name}_count"] = labels
            if "no `_sum`" not in meaning:
                series[f"{name}_sum"] = labels
        else:
            series[name] = labels
    return series


def test_metric_names_are_read_from_promql() -> None:
    expr = """
        sum by (service, route) (rate(http_requests_total{code=~"5..", route!="/health"}[5m] offset 1h))
        / on (service) group_left sum without (le) (tars:http_requests:rate1m)
        or label_replace(up, "dst", "$1", "job", "(.*)") > bool 0.5e3
        and changes(process_start_time_seconds{job="tars-worker"}[15m:1m]) > 3
    """
    assert grouping_labels(expr) == {"service", "route", "le"}
    assert metric_names(expr) == {
        "http_requests_total": {"code", "route"},
        "tars:http_requests:rate1m": set(),
        "up": set(),
        "process_start_time_seconds": {"job"},
    }


def test_the_catalogue_is_read() -> None:
    names = catalogue()
    assert names["http_requests_total"] == {"service", "method", "route", "code", "version"}
    assert names["http_request_duration_seconds_bucket"] == {"service", "method", "route", "version", "le"}
    assert "http_request_duration_seconds_sum" in names
    assert "tars_evaluation_reward_bucket" in names
    assert "tars_evaluation_reward_sum" not in names  # its bounds are negative: there is none
    assert names["tars_ws_connections"] == set()
    assert len(names) >= 30


def test_rule_files_are_valid() -> None:
    assert len(RULE_FILES) >= 6
    _promtool("check", "rules", "--lint=all", "--lint-fatal", *(str(path) for path in RULE_FILES))


def test_configuration_is_valid_and_scrapes_the_local_stack() -> None:
    output = _promtool("check", "config", "--lint=all", "--lint-fatal", "prometheus.yml")
    assert f"{len(RULE_FILES)} rule files found" in output
    config = _load(PROMETHEUS / "prometheus.yml")
    assert config["global"]["evaluation_interval"] == "15s"
    assert config["rule_files"] == ["rules/*.yml"]
    targets = {
        job["job_name"]: [target for static in job["static_configs"] for target in static["targets"]]
        for job in config["scrape_configs"]
    }
    assert targets["tars-dashboard-api"] == ["127.0.0.1:3001"]
    assert targets["tars-orchestration"] == ["127.0.0.1:8094"]
    assert targets["tars-worker"] == ["127.0.0.1:9108"]
    assert targets["tars-insight-engine"] == ["127.0.0.1:8090"]
    assert targets["prometheus"] == ["127.0.0.1:9090"]  # the rule-failure alert reads its own metrics


@pytest.mark.parametrize("unit_test", UNIT_TESTS, ids=lambda path: path.name)
def test_rule_unit_tests_pass(unit_test: Path) -> None:
    _promtool("test", "rules", str(unit_test.relative_to(PROMETHEUS)))


def test_recording_rules() -> None:
    names = _recording_names()
    assert [name for name in names if not name.startswith("tars:")] == []
    assert [name for name, count in Counter(names).items() if count > 1] == []
    assert len(set(names)) >= 60
    assert REQUIRED_RECORDINGS - set(names) == set()


def test_every_alert_has_a_severity_and_says_what_happened() -> None:
    alerts = _alerts()
    assert len(alerts) >= 8
    for alert in alerts:
        assert alert.get("labels", {}).get("severity") in {"critical", "warning"}, alert["alert"]
        annotations = alert.get("annotations", {})
        assert annotations.get("summary") and annotations.get("description"), alert["alert"]


def test_every_alert_is_unit_tested_firing_and_quiet() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in UNIT_TESTS:
        for group in _load(path)["tests"]:
            for case in group.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    alerts = {alert["alert"] for alert in _alerts()}
    assert alerts - firing == set(), "never tested firing"
    assert alerts - quiet == set(), "never tested staying quiet"


def test_key_recording_rules_are_unit_tested() -> None:
    tested: set[str] = set()
    names = set(_recording_names())
    for path in UNIT_TESTS:
        for group in _load(path)["tests"]:
            for case in group.get("promql_expr_test", []):
                tested |= set(metric_names(case["expr"])) & names
                for pattern in re.findall(r'__name__=~"([^"]+)"', case["expr"]):
                    tested |= {name for name in names if re.fullmatch(pattern, name)}
    key = {name for name in names if ":p95:" in name or name.startswith("tars:slo_")}
    assert key - tested == set()


def test_rules_read_only_catalogued_metrics_and_labels() -> None:
    recorded = set(_recording_names())
    promised = catalogue()
    unknown: list[str] = []
    for path, rule in _rules():
        name = rule.get("record") or rule["alert"]
        used = metric_names(rule["expr"])
        assert used, f"{path.name}: {name}: no metric found in its expression"
        for metric, labels in used.items():
            if metric in recorded or metric in FOREIGN_METRICS or metric.startswith(FOREIGN_PREFIXES):
                continue
            if metric not in promised:
                unknown.append(f"{path.name}: {name} reads {metric}, which docs/metrics.md does not list")
            elif extra := labels - promised[metric] - TARGET_LABELS:
                unknown.append(f"{path.name}: {name} matches {metric} on {sorted(extra)}, which it does not have")
        # Over catalogued metrics alone, a grouping label must be one of theirs: `by (algorithm)` on
        # a worker metric (whose label is `algorithms`) would silently sum every worker into one.
        if used.keys() <= promised.keys():
            available = set().union(*(promised[metric] for metric in used)) | TARGET_LABELS
            if extra := grouping_labels(rule["expr"]) - available:
                unknown.append(f"{path.name}: {name} groups by {sorted(extra)}, which no metric it reads has")
    assert not unknown, "\n".join(unknown)
