"""The few panel kinds the T.A.R.S. dashboards use, with the house style in one place.

Each dashboard module says *what* it shows (title, PromQL, unit); how a panel looks is decided here,
so the dashboards stay consistent and a style change is one edit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from grafana_foundation_sdk.builders import common as common_builders
from grafana_foundation_sdk.builders import dashboard as dash
from grafana_foundation_sdk.builders import gauge as gauge_builders
from grafana_foundation_sdk.builders import stat as stat_builders
from grafana_foundation_sdk.builders import table as table_builders
from grafana_foundation_sdk.builders import timeseries as timeseries_builders
from grafana_foundation_sdk.builders.prometheus import Dataquery
from grafana_foundation_sdk.cog import builder as cogbuilder
from grafana_foundation_sdk.cog import variants as cogvariants
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common
from grafana_foundation_sdk.models import dashboard as models
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

# Every panel reads the datasource the viewer picked, so the same JSON serves any Grafana whatever
# its Prometheus datasource is called.
DATASOURCE = models.DataSourceRef(type_val="prometheus", uid="${datasource}")

FULL_WIDTH = 24

PanelBuilder = cogbuilder.Builder[models.Panel]
# Threshold steps: (None, base colour), then (value, colour from that value up).
Steps = Sequence[tuple[float | None, str]]


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass
class Section:
    """A row and the panels under it, laid out left to right, wrapping at the grid's width."""

    title: str
    panels: list[PanelBuilder] = field(default_factory=list)


def _targets(queries: Sequence[Query], *, instant: bool = False) -> list[cogbuilder.Builder[cogvariants.Dataquery]]:
    targets: list[cogbuilder.Builder[cogvariants.Dataquery]] = []
    for index, query in enumerate(queries):
        target = Dataquery().expr(query.expr).ref_id(chr(ord("A") + index))
        if query.legend:
            target.legend_format(query.legend)
        if instant:
            target.instant().format(PromQueryFormat.TABLE)
        else:
            target.range()
        targets.append(target)
    return targets


def _thresholds(steps: Steps) -> dash.ThresholdsConfig:
    return (
        dash.ThresholdsConfig()
        .mode(models.ThresholdsMode.ABSOLUTE)
        .steps([models.Threshold(value=value, color=color) for value, color in steps])
    )


GOOD_HIGH = ((None, "red"), (0.95, "orange"), (0.99, "green"))
BAD_HIGH = ((None, "green"), (0.01, "orange"), (0.05, "red"))
NEUTRAL = ((None, "blue"),)


def timeseries(
    title: str,
    *queries: Query,
    unit: str = "short",
    description: str = "",
    width: int = 8,
    height: int = 8,
    stacked: bool = False,
    min_value: float | None = None,
    max_value: float | None = None,
    lines: Sequence[str] = (),
    thresholds: Steps = (),
) -> timeseries_builders.Panel:
    """`lines` names series (by legend) drawn as an unstacked dashed line, e.g. a capacity to read
    the stacked series against; `thresholds`, if any, are drawn as dashed lines (an objective, a
    burn rate that pages)."""
    panel = (
        timeseries_builders.Panel()
        .title(title)
        .datasource(DATASOURCE)
        .targets(_targets(queries))
        .unit(unit)
        .span(width)
        .height(height)
        .line_width(1)
        .fill_opacity(25 if stacked else 10)
        .show_points(common.VisibilityMode.NEVER)
        .stacking(
            common_builders.StackingConfig().mode(common.StackingMode.NORMAL if stacked else common.StackingMode.NONE)
        )
        .legend(
            common_builders.VizLegendOptions()
            .display_mode(common.LegendDisplayMode.LIST)
            .placement(common.LegendPlacement.BOTTOM)
            .show_legend(True)
        )
        .tooltip(
            common_builders.VizTooltipOptions().mode(common.TooltipDisplayMode.MULTI).sort(common.SortOrder.DESCENDING)
        )
    )
    if description:
        panel.description(description)
    if min_value is not None:
        panel.min(min_value)
    if max_value is not None:
        panel.max(max_value)
    if thresholds:
        panel.thresholds(_thresholds(thresholds)).thresholds_style(
            common_builders.GraphThresholdsStyleConfig().mode(common.GraphTresholdsStyleMode.DASHED)
        )
    for name in lines:
        panel.override_by_name(
            name,
            [
                models.DynamicConfigValue(id_val="custom.stacking", value={"mode": "none", "group": "A"}),
                models.DynamicConfigValue(id_val="custom.fillOpacity", value=0),
                models.DynamicConfigValue(id_val="custom.lineStyle", value={"fill": "dash", "dash": [10, 10]}),
                models.DynamicConfigValue(id_val="color", value={"mode": "fixed", "fixedColor": "red"}),
            ],
        )
    return panel


def stat(
    title: str,
    *queries: Query,
    unit: str = "short",
    description: str = "",
    width: int = 4,
    height: int = 4,
    thresholds: Steps = NEUTRAL,
    decimals: int | None = None,
) -> stat_builders.Panel:
    panel = (
        stat_builders.Panel()
        .title(title)
        .datasource(DATASOURCE)
        .targets(_targets(queries))
        .unit(unit)
        .span(width)
        .height(height)
        .thresholds(_thresholds(thresholds))
        .color_mode(common.BigValueColorMode.VALUE)
        .graph_mode(common.BigValueGraphMode.AREA)
        .text_mode(common.BigValueTextMode.AUTO)
        .justify_mode(common.BigValueJustifyMode.AUTO)
        .orientation(common.VizOrientation.AUTO)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    if description:
        panel.description(description)
    if decimals is not None:
        panel.decimals(decimals)
    return panel


def gauge(
    title: str,
    *queries: Query,
    unit: str = "percentunit",
    description: str = "",
    min_value: float = 0,
    max_value: float = 1,
    width: int = 4,
    height: int = 6,
    thresholds: Steps = GOOD_HIGH,
) -> gauge_builders.Panel:
    panel = (
        gauge_builders.Panel()
        .title(title)
        .datasource(DATASOURCE)
        .targets(_targets(queries))
        .unit(unit)
        .min(min_value)
        .max(max_value)
        .span(width)
        .height(height)
        .thresholds(_thresholds(thresholds))
        .show_threshold_markers(True)
        .show_threshold_labels(False)
        .orientation(common.VizOrientation.AUTO)
        .reduce_options(common_builders.ReduceDataOptions().calcs(["lastNotNull"]).values(False))
    )
    if description:
        panel.description(description)
    return panel


def table(
    title: str,
    *queries: Query,
    columns: Sequence[str],
    unit: str = "short",
    description: str = "",
    width: int = 12,
    height: int = 8,
) -> table_builders.Panel:
    """Instant queries joined on their labels, one row per label set. `columns` names the value
    column of each query in order (Grafana calls them "Value #A", "Value #B", ...)."""
    if len(columns) != len(queries):
        raise ValueError(f"{title}: {len(queries)} queries but {len(columns)} column names")
    renames = {f"Value #{chr(ord('A') + index)}": name for index, name in enumerate(columns)}
    if len(queries) == 1:
        # A single query's value column has no "#A" suffix.
        renames = {"Value": columns[0]}
    panel = (
        table_builders.Panel()
        .title(title)
        .datasource(DATASOURCE)
        .targets(_targets(queries, instant=True))
        .unit(unit)
        .span(width)
        .height(height)
        .show_header(True)
        .cell_height(common.TableCellHeight.SM)
        .footer(common_builders.TableFooterOptions().show(False).reducer(["sum"]).count_rows(False))
        .with_transformation(models.DataTransformerConfig(id_val="merge", options={}))
        .with_transformation(
            models.DataTransformerConfig(
                id_val="organize",
                # Prometheus' own columns say nothing a reader of this table needs.
                options={"excludeByName": {"Time": True, "__name__": True}, "renameByName": renames},
            )
        )
    )
    if description:
        panel.description(description)
    return panel


def datasource_variable() -> dash.DatasourceVariable:
    return dash.DatasourceVariable("datasource").label("Prometheus").type("prometheus")


def label_values_variable(
    name: str,
    query: str,
    *,
    label: str,
    include_all: bool = False,
    sort: models.VariableSort = models.VariableSort.ALPHABETICAL_ASC,
) -> dash.QueryVariable:
    variable = (
        dash.QueryVariable(name)
        .label(label)
        .datasource(DATASOURCE)
        .query(query)
        # On every time-range change, so an agent or release that has just appeared can be picked.
        .refresh(models.VariableRefresh.ON_TIME_RANGE_CHANGED)
        .sort(sort)
    )
    if include_all:
        variable.multi(True).include_all(True).all_value(".*")
    return variable


def dashboard(
    uid: str,
    title: str,
    *,
    description: str,
    variables: Sequence[cogbuilder.Builder[models.VariableModel]],
    sections: Sequence[Section],
) -> models.Dashboard:
    builder = (
        dash.Dashboard(title)
        .uid(uid)
        .description(description)
        .tags(["tars", "generated"])
        # The code is the source: an edit saved in Grafana would be lost at the next provisioning.
        .readonly()
        .time("now-6h", "now")
        .refresh("1m")
        .timezone("browser")
        .tooltip(models.DashboardCursorSync.CROSSHAIR)
        .with_variable(datasource_variable())
    )
    for variable in variables:
        builder.with_variable(variable)
    for section in sections:
        _check_widths(section)
        builder.with_row(dash.Row(section.title))
        for panel in section.panels:
            builder.with_panel(panel)
    built = builder.build()
    # Grafana adds its built-in annotations to an empty list, but fails on a missing one.
    built.annotations = models.AnnotationContainer(list_val=[])
    # Ids in reading order, stable from one generation to the next, so the JSON diffs stay small.
    for number, item in enumerate(built.panels or [], start=1):
        item.id_val = number
    return built


def _check_widths(section: Section) -> None:
    # The SDK wraps to a new line only once a line is full, so a panel wider than what is left
    # would hang off the grid's edge: refuse it here rather than find it on screen.
    x = 0
    for panel in section.panels:
        built = panel.build()
        width = built.grid_pos.w if built.grid_pos else FULL_WIDTH
        if x + width > FULL_WIDTH:
            raise ValueError(f"{section.title}: {built.title!r} does not fit in the {FULL_WIDTH - x} columns left")
        x = (x + width) % FULL_WIDTH


def render(built: models.Dashboard) -> str:
    return JSONEncoder(sort_keys=True, indent=2, ensure_ascii=False).encode(built) + "\n"
