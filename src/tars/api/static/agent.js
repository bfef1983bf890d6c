// One agent: the training reward of its latest run, live, and the reward of its latest evaluations
// with markers where its insights began, from the channel `agent:<id>`. The page exists while it is
// shown; leaving it unsubscribes.

import { ApiError, api } from "./api.js";
import { lineChart, rollingMean } from "./charts.js";
import { $, cell, coalesce, el, progressOf, reward, shortId, statusBadge, syncRows, time } from "./dom.js";
import { evaluationMarkers, insightItem, isActive, isInsightEvent } from "./insights.js";
import { evaluationRow, evaluationsTable } from "./overview.js";
import { LiveCollection, Reloader, RewardSeries, createdEvaluations, isEvaluationEvent } from "./store.js";

const AGENT_RUNS = 10; // GET /api/v1/runs?agent_id=..&limit=10
const AGENT_EVALUATIONS = 100; // GET /api/v1/evaluations?agent_id=..&limit=100: the curve's points
const AGENT_INSIGHTS = 100; // GET /api/v1/insights?agent_id=..&limit=100: the newest, in any state
const SMOOTHING = 10; // episodes in the rolling mean of the training curve
// What the API accepts as an agent id; anything else in the address names no agent.
const AGENT_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$/;

export class AgentPage {
  constructor({ section, agentId, report, trainFormFor }) {
    this.section = section;
    this.agentId = agentId;
    this.valid = AGENT_ID.test(agentId);
    this.channel = this.valid ? `agent:${agentId}` : null;
    this.report = report;
    this.agent = null;
    this.missing = false;
    this.runs = new LiveCollection({ keyOf: (run) => run.run_id, limit: AGENT_RUNS });
    this.evaluations = new LiveCollection({ keyOf: (evaluation) => evaluation.id, limit: AGENT_EVALUATIONS });
    this.insights = new LiveCollection({
      keyOf: (insight) => insight.id,
      limit: AGENT_INSIGHTS,
      timeOf: (insight) => insight.first_seen_at,
    });
    this.restarted = new Map();
    this.series = null; // the training rewards of the latest run
    this.seriesLoader = null;
    this.metrics = null;
    this.render = coalesce(() => this.draw());

    this.loader = new Reloader(
      () => {
        const id = encodeURIComponent(agentId);
        return Promise.all([
          api(`/api/v1/agents/${id}`).catch((error) => {
            if (error instanceof ApiError && error.status === 404) return null;
            throw error;
          }),
          api("/api/v1/runs", { query: { agent_id: agentId, limit: AGENT_RUNS } }),
          api("/api/v1/evaluations", { query: { agent_id: agentId, limit: AGENT_EVALUATIONS } }),
          api("/api/v1/insights", { query: { agent_id: agentId, limit: AGENT_INSIGHTS } }),
        ]);
      },
      ([agent, runs, evaluations, insights], asked) => {
        this.agent = agent;
        this.missing = agent === null;
        this.runs.applySnapshot(runs.items, asked);
        this.evaluations.applySnapshot(evaluations.items, asked, {
          accept: (evaluation) => !((this.restarted.get(evaluation.run_id) ?? 0) > asked),
        });
        for (const [runId, seq] of this.restarted) if (seq <= asked) this.restarted.delete(runId);
        this.insights.applySnapshot(insights.items, asked);
        // The latest run's rewards are reloaded too: the reset may have hidden some of its episodes.
        this.followLatestRun({ reload: true });
        this.render();
      },
      { onError: (error) => report(`Could not load agent ${agentId}: ${error.message}`) },
    );

    section.replaceChildren(this.skeleton(trainFormFor));
  }

  skeleton(trainFormFor) {
    const form = trainFormFor(this.agentId);
    return el(
      "div",
      { class: "agent-page", "data-agent-id": this.agentId },
      el(
        "div",
        { class: "page-title" },
        el("a", { href: "#/" }, "← Overview"),
        el("h2", {}, "Agent ", el("span", { class: "agent-name" }, this.agentId)),
        el("span", { class: "agent-facts" }),
      ),
      el("p", { class: "error missing", hidden: true }, `There is no agent ${this.agentId}.`),
      el(
        "section",
        { class: "card" },
        el("h3", {}, "Training reward ", el("span", { class: "latest-run muted" })),
        el("div", { class: "chart-box", id: "training-chart" }),
        el("dl", { class: "metrics" }),
      ),
      el(
        "section",
        { class: "card" },
        el(
          "h3",
          {},
          `Evaluation reward `,
          el("span", { class: "muted" }, `(latest ${AGENT_EVALUATIONS}; flags mark where insights began, coloured by severity)`),
        ),
        el("div", { class: "chart-box", id: "evaluation-chart" }),
        el("h4", { id: "agent-insights-heading" }, "Active insights"),
        el("ul", { class: "insight-list", id: "agent-insights", "aria-labelledby": "agent-insights-heading" }),
        el("p", { class: "empty", id: "agent-insights-empty" }, "No active insights for this agent."),
      ),
      form ? el("section", { class: "card" }, el("h3", {}, "Start training"), form) : null,
      el(
        "section",
        { class: "card" },
        el("h3", {}, "Runs"),
        el(
          "div",
          { class: "scroll" },
          el(
            "table",
            { id: "agent-runs" },
            el(
              "thead",
              {},
              el(
                "tr",
                {},
                ["Run", "Status", "Progress", "Created", "Finished"].map((label, index) =>
                  el("th", { class: index === 2 ? "num" : undefined }, label),
                ),
              ),
            ),
            el("tbody"),
          ),
        ),
        el("p", { class: "empty", id: "agent-runs-empty" }, "This agent has not trained yet."),
      ),
      el(
        "section",
        { class: "card" },
        el("h3", {}, "Latest evaluations"),
        el(
          "div",
          { class: "scroll" },
          evaluationsTable("agent-evaluations"),
        ),
        el("p", { class: "empty", id: "agent-evaluations-empty" }, "No evaluations of this agent yet."),
      ),
    );
  }

  load() {
    if (this.valid) this.loader.request();
    else {
      this.missing = true;
      this.render();
    }
  }

  reload() {
    if (this.valid) this.loader.request();
  }

  stop() {
    this.loader.cancel();
    if (this.seriesLoader) this.seriesLoader.cancel();
  }

  event(frame, seq) {
    if (frame.channel !== this.channel) return;
    const data = frame.data;
    if (isEvaluationEvent(frame.event)) {
      for (const evaluation of createdEvaluations(frame)) this.evaluations.apply(evaluation, seq);
    } else if (isInsightEvent(frame.event)) {
      this.insights.apply(data, seq);
    } else if (frame.event.startsWith("run.")) {
      // A run this page does not know, once its runs are loaded, is older than the ones it shows
      // (a newer one would have come with its `run.queued` event): not the page's business.
      if (!this.runs.has(data.run_id) && !data.created_at && this.runs.loaded) return;
      if (frame.event === "run.started") {
        // A new attempt: the server deleted the earlier attempt's episodes and evaluations.
        this.restarted.set(data.run_id, seq);
        let removed = false;
        for (const evaluation of this.evaluations.all()) {
          if (evaluation.run_id === data.run_id) {
            this.evaluations.remove(evaluation.id, seq);
            removed = true;
          }
        }
        if (removed) this.loader.request();
        if (this.series && this.series.runId === data.run_id) this.series.restart(seq);
      }
      this.runs.apply(data, seq);
      this.followLatestRun({ reload: false });
      if (frame.event === "run.progress" && this.series && this.series.runId === data.run_id) {
        this.series.progress(data.episodes_done, data.reward, seq);
        if (data.metrics) this.metrics = data.metrics;
      }
    }
    this.render();
  }

  // The curve follows the agent's newest run; when a newer one appears, its rewards are loaded.
  followLatestRun({ reload }) {
    const latest = this.runs.values()[0];
    if (!latest) {
      if (this.seriesLoader) this.seriesLoader.cancel();
      this.series = null;
      return;
    }
    if (this.series && this.series.runId === latest.run_id) {
      if (reload) this.seriesLoader.request();
      return;
    }
    if (this.seriesLoader) this.seriesLoader.cancel();
    const series = new RewardSeries(latest.run_id);
    this.series = series;
    this.metrics = null;
    this.seriesLoader = new Reloader(
      () => api(`/api/v1/runs/${encodeURIComponent(latest.run_id)}`),
      (detail, asked) => {
        series.applySnapshot(detail.rewards, asked);
        if (detail.metrics && !this.metrics) this.metrics = detail.metrics;
        this.render();
      },
      { onError: (error) => this.report(`Could not load run ${shortId(latest.run_id)}: ${error.message}`) },
    );
    this.seriesLoader.request();
  }

  draw() {
    const root = this.section;
    $(".missing", root).hidden = !this.missing;
    if (this.agent) {
      $(".agent-facts", root).textContent = `${this.agent.algorithm} on ${this.agent.environment}${this.agent.builtin ? " · built in" : ""}`;
    }

    const latest = this.runs.values()[0];
    const label = $(".latest-run", root);
    label.replaceChildren();
    if (latest) {
      label.append(`(run ${shortId(latest.run_id)} `, statusBadge(latest.status), ` `, progressOf(latest), `)`);
    }
    const rewards = this.series ? this.series.values() : [];
    const points = [];
    rewards.forEach((value, index) => {
      if (value !== null) points.push({ x: index + 1, y: value });
    });
    const training = $("#training-chart", root);
    training.dataset.runId = this.series ? this.series.runId : "";
    lineChart(
      training,
      [
        { name: "episode reward", className: "raw", points },
        { name: `mean of ${SMOOTHING}`, className: "smooth", points: rollingMean(points, SMOOTHING) },
      ],
      { xLabel: "episode", yLabel: "reward", integerX: true, empty: latest ? "No episode has finished yet." : "No training run yet." },
    );
    const metrics = $(".metrics", root);
    metrics.replaceChildren(
      ...Object.entries(this.metrics || {}).flatMap(([name, value]) => [
        el("dt", {}, name.replace(/_/g, " ")),
        el("dd", {}, typeof value === "number" ? Number(value.toPrecision(4)).toString() : String(value)),
      ]),
    );

    const evaluations = this.evaluations.values();
    const oldestFirst = evaluations.slice().reverse();
    const evaluationChart = $("#evaluation-chart", root);
    lineChart(
      evaluationChart,
      [
        {
          name: "evaluation reward",
          className: "evaluation",
          dots: true,
          points: oldestFirst.map((evaluation, index) => ({
            x: index + 1,
            y: evaluation.reward,
            label: `#${evaluation.id}: ${reward(evaluation.reward)} (${evaluation.environment}, ${time(evaluation.created_at)})`,
          })),
        },
      ],
      {
        xLabel: "evaluation, oldest to newest",
        yLabel: "reward",
        integerX: true,
        empty: "No evaluations yet.",
        markers: evaluationMarkers(this.insights.values(), oldestFirst),
        markerName: "insight began",
      },
    );
    const active = this.insights.values().filter(isActive);
    $("#agent-insights", root).replaceChildren(...active.map(insightItem));
    $("#agent-insights-empty", root).hidden = active.length > 0;

    const runs = this.runs.values();
    syncRows($("#agent-runs tbody", root), runs, (run) => run.run_id, (row, run) => {
      row.dataset.runId = run.run_id;
      row.dataset.status = run.status;
      row.dataset.episodesDone = run.episodes_done ?? 0;
      row.dataset.timestepsDone = run.timesteps_done ?? 0;
      const status = cell("status", statusBadge(run.status));
      if (run.error) status.append(el("div", { class: "run-error" }, run.error));
      row.replaceChildren(
        cell("run", shortId(run.run_id), "mono"),
        status,
        cell("episodes", progressOf(run), "num"),
        cell("created", time(run.created_at)),
        cell("finished", time(run.finished_at)),
      );
    });
    $("#agent-runs-empty", root).hidden = runs.length > 0;
    syncRows($("#agent-evaluations tbody", root), evaluations, (evaluation) => evaluation.id, evaluationRow);
    $("#agent-evaluations-empty", root).hidden = evaluations.length > 0;
  }
}
