// Insights as the pages show them: what the insight engine found (docs/insights.md), in words, and
// where each began on an agent's chart of evaluations. The overview's panel is insights-panel.js.

import { agentLink, el, shortId, time } from "./dom.js";
import { timeKey } from "./store.js";

const EVENTS = new Set(["insight.opened", "insight.updated", "insight.resolved", "insight.acknowledged", "insight.dismissed"]);
// What wants attention: what `state=active` lists and the open-insights gauge counts.
const ACTIVE = new Set(["open", "acknowledged"]);

const percent = (value) => `${Math.round(value * 100)} %`;

// Each kind's name, and its impact in its own unit (larger is worse; docs/insights.md, "impact").
const KINDS = {
  reward_regression: ["reward regression", (v) => `${percent(v)} below baseline`],
  region_divergence: ["region divergence", (v) => `${percent(v)} below other regions`],
  model_regression: ["model regression", (v) => `${percent(v)} below previous run`],
  non_finite_loss: ["non-finite loss", () => "loss not finite"],
  value_loss_explosion: ["value-loss explosion", (v) => `× ${Number(v.toPrecision(3))}`],
  entropy_collapse: ["entropy collapse", (v) => `${percent(v)} of entropy lost`],
  learning_stall: ["learning stall", (v) => `${Math.round(v)} episodes without progress`],
  throughput_drop: ["throughput drop", (v) => `${percent(v)} slower`],
  failure_rate_spike: ["failure-rate spike", (v) => `+${Math.round(v * 100)} points failing`],
  duration_p95_rise: ["duration p95 rise", (v) => `p95 +${percent(v)}`],
};
const ACTIONS = { retrain: "Retrain", rollback: "Roll back", investigate_region: "Investigate region", investigate: "Investigate" };

/** Whether a live event is about an insight (`insight.opened`, `.updated`, `.resolved`, ...). */
export function isInsightEvent(type) {
  return EVENTS.has(type);
}

export function isActive(insight) {
  return ACTIVE.has(insight.state);
}

export function kindName(kind) {
  return KINDS[kind] ? KINDS[kind][0] : String(kind).replace(/_/g, " ");
}

export function impactText(insight) {
  const value = insight.impact;
  if (typeof value !== "number" || !Number.isFinite(value)) return "—";
  return KINDS[insight.kind] ? KINDS[insight.kind][1](value) : String(Number(value.toPrecision(3)));
}

/** 1 − p, shown without ever rounding up to a certainty: 0.9999 is "99.9 %". */
export function confidenceText(confidence) {
  if (typeof confidence !== "number" || !Number.isFinite(confidence)) return "—";
  return `${(Math.floor(confidence * 1000) / 10).toFixed(1)} %`;
}

export function severityBadge(severity) {
  return el("span", { class: `severity severity-${severity}` }, severity);
}

/** The agent (a link), then the environment, region and run the insight concerns. */
export function subjectOf(insight) {
  const parts = [insight.environment, insight.region, insight.run_id && `run ${shortId(insight.run_id)}`].filter(Boolean);
  return el("span", { class: "subject" }, agentLink(insight.agent_id), parts.length ? ` · ${parts.join(" · ")}` : "");
}

export function recommendationOf(insight) {
  const { action, reason, parameters = {} } = insight.recommendation || {};
  const named = Object.entries(parameters)
    .filter(([, value]) => value !== null && value !== undefined)
    .map(([name, value]) => `${name.replace(/_/g, " ")} ${value}`);
  return el(
    "span",
    { class: "recommendation" },
    el("strong", {}, ACTIONS[action] || String(action || "—")),
    named.length ? ` (${named.join(", ")})` : "",
    reason ? `: ${reason}` : "",
  );
}

/** The state, who put it there, and their note. */
export function stateOf(insight) {
  const by = insight.state === "acknowledged" ? insight.acknowledged_by : insight.state === "dismissed" ? insight.dismissed_by : null;
  return el(
    "span",
    { class: "insight-state" },
    el("span", { class: `status status-${insight.state}` }, insight.state),
    by ? ` by ${by}` : "",
    insight.note ? el("span", { class: "note" }, insight.note) : null,
  );
}

/** One line a person can read: what, how bad, since when, and what has been done. */
export function describe(insight) {
  const state = insight.state === "open" ? "" : ` [${insight.state}]`;
  return `${insight.severity} ${kindName(insight.kind)}: ${insight.summary} (since ${time(insight.first_seen_at)})${state}`;
}

/**
 * Markers for a chart of `evaluations` (oldest first, evaluation n at x = n): each insight at the
 * evaluation its condition began with (the engine dates a condition by the evaluation where it
 * began), or between two, by time. An insight that began outside the evaluations shown is drawn
 * only while active, at the nearer end, and says so.
 */
export function evaluationMarkers(insights, evaluations) {
  const times = evaluations.map((evaluation) => timeKey(evaluation.created_at));
  const last = times.length - 1;
  const markers = [];
  if (last < 0) return markers;
  for (const insight of insights) {
    const began = timeKey(insight.first_seen_at);
    let x;
    let where = "";
    if (began < times[0]) {
      x = 1;
      where = " — began before the evaluations shown";
    } else if (began > times[last]) {
      x = last + 1;
      where = " — began after the latest evaluation shown";
    } else {
      const after = times.findIndex((at) => at >= began);
      x = after === 0 || times[after] === began ? after + 1 : after + (began - times[after - 1]) / (times[after] - times[after - 1]);
    }
    if (where && !isActive(insight)) continue;
    markers.push({
      x,
      label: describe(insight) + where,
      className: `severity-${insight.severity} state-${insight.state}`,
      attributes: { "data-insight-id": insight.id, "data-severity": insight.severity, "data-kind": insight.kind },
    });
  }
  return markers;
}

/** The agent page's list of its active insights: the markers' text, for everyone. */
export function insightItem(insight) {
  return el(
    "li",
    { dataset: { insightId: insight.id, severity: insight.severity, state: insight.state } },
    severityBadge(insight.severity),
    " ",
    el("strong", {}, kindName(insight.kind)),
    ` ${insight.summary} `,
    el("span", { class: "muted" }, `since ${time(insight.first_seen_at)}`),
    " ",
    stateOf(insight),
  );
}
