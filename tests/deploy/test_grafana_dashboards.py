"""The Grafana dashboards: generated from code, committed as JSON, and querying only what exists.

Every name a query reads must be a metric in docs/metrics.md or a `tars:*` recording rule in
deploy/prometheus/rules: a dashboard on a metric nobody exports shows "No data" and nothing fails.
"""

from __future__ import annotations

import importlib.util
import json
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
GRAFANA = ROOT / "deploy" / "grafana"
DASHBOARDS = GRAFANA / "dashboards"
RULES = ROOT / "deploy" / "prometheus" / "rules"
METRICS_DOC = ROOT / "docs" / "metrics.md"

UIDS = ("tars-overview", "tars-agents", "tars-database", "tars-canary")

Dashboard = dict[str, Any]
Panel = dict[str, Any]

# Everything in a PromQL expression that is followed by "(" and is not a metric.
FUNCTIONS = frozenset(
    {"sum", "avg", "min", "max", "count", "group", "stddev", "stdvar", "topk", "bottomk", "quantile", "count_values"}
    | {"rate", "irate", "increase", "delta", "idelta", "deriv", "predict_linear", "resets", "changes"}
    | {"histogram_quantile", "abs", "ceil", "floor", "round", "exp", "ln", "log2", "log10", "sqrt", "sgn"}
    | {"clamp", "clamp_min", "clamp_max", "absent", "vector", "scalar", "time", "timestamp", "sort", "sort_desc"}
    | {"label_replace", "label_join", "absent_over_time", "present_over_time", "last_over_time"}
    | {"avg_over_time", "min_over_time", "max_over_time", "sum_over_time", "count_over_time", "quantile_over_time"}
)
KEYWORDS = frozenset(
    {"and", "or", "unless", "bool", "offset", "by", "without", "on", "ignoring", "group_left", "group_right"}
    | {"Inf", "NaN", "inf", "nan"}
)
GROUPING = re.compile(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")
IDENTIFIER = re.compile(r"(?<![\w.:])([A-Za-z_:][\w:]*)(\s*\()?")
LABEL_VALUES = re.compile(r"^label_values\((?:(?P<selector>.+),\s*)?(?P<label>\w+)\)$")


def _load_generator() -> ModuleType:
    spec = importlib.util.spec_from_file_location("tars_grafana_generate", GRAFANA / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@cache
def dashboards() -> dict[str, Dashboard]:
    return {uid: json.loads((DASHBOARDS / f"{uid}.json").read_text(encoding="utf-8")) for uid in UIDS}


@cache
def documented_metrics() -> frozenset[str]:
    """The backticked first column of docs/metrics.md's tables; a histogram brings its series."""
    names: set[str] = set()
    for line in METRICS_DOC.read_text(encoding="utf-8").splitlines():
        row = re.match(r"^\|\s*`([a-zA-Z_:][\w:]*)`\s*\|\s*(\w+)\s*\|(.*)$", line)
        if row is None:
            continue
        name, kind, rest = row.groups()
        if kind == "histogram":
            series = {"_bucket", "_sum", "_count"}
            if "no `_sum`" in rest:
                series.discard("_sum")  # the catalogue says this one is not exported
            names.update(name + suffix for suffix in series)
        else:
            names.add(name)
    assert len(names) > 20, f"docs/metrics.md's tables were not understood: {sorted(names)}"
    return frozenset(names)


@cache
def recording_rules() -> frozenset[str]:
    """The `record:` names of deploy/prometheus/rules/*.yml."""
    records: set[str] = set()
    for path in sorted(RULES.glob("*.yml")):
        for group in (yaml.safe_load(path.read_text(encoding="utf-8")) or {}).get("groups", []):
            records.update(rule["record"] for rule in group.get("rules", []) if "record" in rule)
    return frozenset(records)


def metric_names(expr: str) -> set[str]:
    """The metric (and rule) names a PromQL expression reads. Unknown functions fail loudly rather
    than pass as metrics."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)  # label values and regexes
    text = re.sub(r"\$\{?\w+\}?", "", text)  # Grafana variables ($__rate_interval, $agent_id)
    text = re.sub(r"\{[^}]*\}", "", text)  # label matchers
    text = re.sub(r"\[[^\]]*\]", "", text)  # ranges
    text = GROUPING.sub("", text)  # label lists of by (...), on (...)
    names = set()
    for name, call in IDENTIFIER.findall(text):
        if call:
            assert name in FUNCTIONS, f"unknown PromQL function {name!r} in {expr!r}"
        elif name not in KEYWORDS:
            names.add(name)
    return names


def panels(dashboard: Dashboard) -> Iterator[Panel]:
    """Every panel, rows included, and the panels inside collapsed rows."""
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def queries(dashboard: Dashboard) -> Iterator[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable."""
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            yield panel["title"], target["expr"]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            match = LABEL_VALUES.match(variable["query"])
            assert match, f"variable {variable['name']}: not a label_values() query: {variable['query']!r}"
            if match["selector"]:
                yield f"variable {variable['name']}", match["selector"]


def test_promql_names_are_read_from_expressions() -> None:
    expr = (
        'histogram_quantile(0.95, sum by (le, route) (rate(http_request_duration_seconds_bucket{version="$v",'
        ' route=~"/api/.+"}[$__rate_interval]))) / on (route) group_left tars:x:rate5m offset 1h > bool 1e3'
    )
    assert metric_names(expr) == {"http_request_duration_seconds_bucket", "tars:x:rate5m"}
    with pytest.raises(AssertionError, match="unknown PromQL function"):
        metric_names("tars_ws_connections(1)")


def test_committed_json_is_what_the_code_generates() -> None:
    assert _load_generator().main(["--check"]) == 0, "run: python deploy/grafana/generate.py"


def test_check_fails_on_a_stale_or_extra_file(tmp_path: Path) -> None:
    generate = _load_generator()
    assert generate.main(["--output", str(tmp_path)]) == 0
    assert generate.main(["--check", "--output", str(tmp_path)]) == 0
    (tmp_path / "tars-canary.json").write_text("{}", encoding="utf-8")
    assert generate.main(["--check", "--output", str(tmp_path)]) == 1
    assert generate.main(["--output", str(tmp_path)]) == 0
    (tmp_path / "removed-dashboard.json").write_text("{}", encoding="utf-8")
    assert generate.main(["--check", "--output", str(tmp_path)]) == 1


def test_the_four_dashboards_exist_with_unique_panel_ids_and_titles() -> None:
    assert sorted(path.stem for path in DASHBOARDS.glob("*.json")) == sorted(UIDS)
    for uid, dashboard in dashboards().items():
        assert dashboard["uid"] == uid
        all_panels = list(panels(dashboard))
        ids = [panel["id"] for panel in all_panels]
        titles = [panel["title"] for panel in all_panels]
        assert len(ids) == len(set(ids)), f"{uid}: duplicate panel ids"
        assert all(isinstance(id_, int) and id_ > 0 for id_ in ids), f"{uid}: panels without an id"
        duplicates = sorted({title for title in titles if titles.count(title) > 1})
        assert not duplicates, f"{uid}: duplicate panel titles {duplicates}"
        for panel in all_panels:
            if panel["type"] != "row":
                assert panel.get("targets"), f"{uid}: {panel['title']!r} has no query"
                ref_ids = [target["refId"] for target in panel["targets"]]
                assert len(set(ref_ids)) == len(ref_ids) and all(ref_ids), f"{uid}: {panel['title']!r} refIds"


def test_every_dashboard_reads_a_prometheus_datasource_variable() -> None:
    for uid, dashboard in dashboards().items():
        variables = {variable["name"]: variable for variable in dashboard["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource", uid
        assert variables["datasource"]["query"] == "prometheus", uid
        for panel in panels(dashboard):
            if panel["type"] != "row":
                assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, (uid, panel["title"])
        for variable in variables.values():
            if variable["type"] == "query":
                assert variable["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, (uid, variable)


def test_overview_has_at_least_60_panels_all_on_defined_recording_rules() -> None:
    overview = dashboards()["tars-overview"]
    visualisations = [panel for panel in panels(overview) if panel["type"] != "row"]
    assert len(visualisations) >= 60
    defined = recording_rules()
    raw: dict[str, set[str]] = {}
    undefined: dict[str, set[str]] = {}
    for where, expr in queries(overview):
        for name in metric_names(expr):
            if not name.startswith("tars:"):
                raw.setdefault(name, set()).add(where)
            elif name not in defined:
                undefined.setdefault(name, set()).add(where)
    assert not raw and not undefined, (
        f"tars-overview reads raw metrics, not recording rules: {_listing(raw)}\n"
        f"and rules not defined in {RULES}: {_listing(undefined)}"
    )


def section(dashboard: Dashboard, title: str) -> list[Panel]:
    """The panels under the row titled `title`, up to the next row."""
    found: list[Panel] | None = None
    for panel in dashboard["panels"]:
        if panel["type"] == "row":
            if found is not None:
                break
            if panel["title"] == title:
                found = list(panel.get("panels", []))  # a collapsed row holds its panels
        elif found is not None:
            found.append(panel)
    assert found, f"{dashboard['uid']}: no row {title!r}, or nothing under it"
    return found


def test_overview_shows_open_insights_by_kind_and_severity_and_the_critical_ones() -> None:
    """The insights row reads the recording rule that counts each insight once across insight-engine
    replicas (deploy/prometheus/rules/recording-insights.yml), never the raw gauge they each export."""
    rule = "tars:insights_open:max"
    assert rule in recording_rules()
    insights = section(dashboards()["tars-overview"], "Insights")
    targets = [(panel, target) for panel in insights for target in panel["targets"]]
    assert targets and all(metric_names(target["expr"]) == {rule} for _, target in targets), targets
    by_kind_and_severity = [
        panel
        for panel, target in targets
        if panel["type"] == "timeseries" and {"{{kind}}", "{{severity}}"} <= set(target.get("legendFormat", "").split())
    ]
    assert by_kind_and_severity, "no series per kind and severity"
    critical = {panel["type"] for panel, target in targets if 'severity="critical"' in target["expr"]}
    assert {"stat", "table"} <= critical, critical


@pytest.mark.parametrize("uid", ["tars-agents", "tars-database", "tars-canary"])
def test_dashboards_read_only_documented_metrics_or_defined_rules(uid: str) -> None:
    allowed = documented_metrics() | recording_rules()
    unknown: dict[str, set[str]] = {}
    for where, expr in queries(dashboards()[uid]):
        for name in metric_names(expr) - allowed:
            unknown.setdefault(name, set()).add(where)
    assert not unknown, f"{uid} reads metrics neither in docs/metrics.md nor recorded: {_listing(unknown)}"


def test_agents_dashboard_is_per_agent() -> None:
    agents = dashboards()["tars-agents"]
    variables = {variable["name"]: variable for variable in agents["templating"]["list"]}
    assert variables["agent_id"]["query"] == "label_values(tars_evaluations_total, agent_id)"
    for panel in panels(agents):
        for target in panel.get("targets", []):
            assert '$agent_id"' in target["expr"], f"{panel['title']!r} ignores the agent chosen"


def test_canary_dashboard_separates_series_by_version() -> None:
    canary = dashboards()["tars-canary"]
    variables = {variable["name"]: variable for variable in canary["templating"]["list"]}
    for name in ("stable", "canary"):
        assert variables[name]["query"] == "label_values(http_requests_total, version)"
    for panel in panels(canary):
        if panel["type"] == "row":
            continue
        releases: set[str] = set()
        for target in panel["targets"]:
            found = set(re.findall(r'version="\$\{?(stable|canary)\}?"', target["expr"]))
            assert found, f"{panel['title']!r}: a query not split by version: {target['expr']!r}"
            releases |= found
        assert releases == {"stable", "canary"}, f"{panel['title']!r} shows only {releases}"


def test_provisioning_points_at_the_dashboards_and_prometheus() -> None:
    provisioning = GRAFANA / "provisioning"
    datasources = yaml.safe_load((provisioning / "datasources" / "prometheus.yml").read_text(encoding="utf-8"))
    [prometheus] = datasources["datasources"]
    assert (prometheus["type"], prometheus["url"]) == ("prometheus", "http://127.0.0.1:9090")
    providers = yaml.safe_load((provisioning / "dashboards" / "tars.yml").read_text(encoding="utf-8"))
    [provider] = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"], "the provider names no folder"


def _listing(found: dict[str, set[str]]) -> str:
    return "".join(f"\n  {name}  (in {', '.join(sorted(where))})" for name, where in sorted(found.items()))
