// The overview: active insights, runs in progress with their live progress, agents, recent runs and
// the latest evaluations. It holds the state of the `runs`, `evaluations` and `insights` channels for
// the whole page (the header and the other pages read it too), so it lives as long as the session.

import { api } from "./api.js";
import { $, agentLink, cell, coalesce, el, progressOf, reward, shortId, statusBadge, syncRows, time } from "./dom.js";
import { InsightsPanel } from "./insights-panel.js";
import { LiveCollection, Reloader, createdEvaluations, isEvaluationEvent } from "./store.js";

export const RECENT_RUNS = 20; // GET /api/v1/runs?limit=20: what "Recent runs" shows
export const LATEST_EVALUATIONS = 20; // GET /api/v1/evaluations?limit=20
const IN_PROGRESS_LIMIT = 100; // per status, queued and running
const IN_PROGRESS = new Set(["queued", "running"]);

export class Overview {
  /** `operator`: whether the user may act (acknowledge, dismiss); the server checks the role too. */
  constructor({ section, report, operator = false }) {
    this.section = section;
    this.report = report;
    this.channels = ["runs", "evaluations", "insights"];
    this.runs = new LiveCollection({
      keyOf: (run) => run.run_id,
      limit: RECENT_RUNS,
      retain: (run) => IN_PROGRESS.has(run.status),
    });
    this.evaluations = new LiveCollection({ keyOf: (evaluation) => evaluation.id, limit: LATEST_EVALUATIONS });
    // The reward of each run's latest episode: only events carry it (a run from REST has none yet).
    this.lastRewards = new Map();
    // run_id -> sequence of its latest restart: its earlier attempt's evaluations are gone.
    this.restarted = new Map();
    this.freshEvaluations = new Set();
    this.agents = [];
    this.render = coalesce(() => this.draw());
    this.agentListeners = new Set();
    this.insights = new InsightsPanel({ root: section, report, operator, render: this.render });

    this.runsLoader = new Reloader(
      () =>
        Promise.all([
          api("/api/v1/runs", { query: { limit: RECENT_RUNS } }),
          api("/api/v1/runs", { query: { status: "running", limit: IN_PROGRESS_LIMIT } }),
          api("/api/v1/runs", { query: { status: "queued", limit: IN_PROGRESS_LIMIT } }),
        ]),
      (pages, asked) => {
        this.runs.applySnapshot(pages.flatMap((page) => page.items), asked);
        this.render();
      },
      { onError: (error) => report(`Could not load the runs: ${error.message}`) },
    );
    this.evaluationsLoader = new Reloader(
      () => api("/api/v1/evaluations", { query: { limit: LATEST_EVALUATIONS } }),
      (page, asked) => {
        this.evaluations.applySnapshot(page.items, asked, {
          accept: (evaluation) => !((this.restarted.get(evaluation.run_id) ?? 0) > asked),
        });
        // A restart this snapshot already reflects need not be remembered any longer.
        for (const [runId, seq] of this.restarted) if (seq <= asked) this.restarted.delete(runId);
        this.render();
      },
      { onError: (error) => report(`Could not load the evaluations: ${error.message}`) },
    );
    this.agentsLoader = new Reloader(
      () => api("/api/v1/agents"),
      (body) => {
        this.agents = body.items;
        this.render();
        for (const listener of this.agentListeners) listener(this.agents);
      },
      { onError: (error) => report(`Could not load the agents: ${error.message}`) },
    );
  }

  /** The train forms and the explorer list the agents: they hear when the list is (re)loaded. */
  onAgents(listener) {
    this.agentListeners.add(listener);
    return () => this.agentListeners.delete(listener);
  }

  load() {
    this.runsLoader.request();
    this.evaluationsLoader.request();
    this.agentsLoader.request();
    this.insights.load();
  }

  stop() {
    this.runsLoader.cancel();
    this.evaluationsLoader.cancel();
    this.agentsLoader.cancel();
    this.insights.stop();
  }

  refreshAgents() {
    this.agentsLoader.request();
  }

  /** The live feed says this channel must come from REST again. */
  reload(channel) {
    if (channel === "runs") this.runsLoader.request();
    if (channel === "evaluations") this.evaluationsLoader.request();
    if (channel === "insights") this.insights.load();
  }

  event(frame, seq) {
    if (frame.channel === "runs") this.runEvent(frame.event, frame.data, seq);
    else if (frame.channel === "evaluations" && isEvaluationEvent(frame.event)) {
      for (const evaluation of createdEvaluations(frame)) {
        this.evaluations.apply(evaluation, seq);
        this.freshEvaluations.add(evaluation.id);
      }
    } else if (!this.insights.event(frame, seq)) return;
    this.render();
  }

  runEvent(type, run, seq) {
    if (type === "run.started") {
      // A new attempt starts from scratch: the server deleted what an earlier attempt recorded.
      this.lastRewards.delete(run.run_id);
      this.restarted.set(run.run_id, seq);
      let removed = false;
      for (const evaluation of this.evaluations.all()) {
        if (evaluation.run_id === run.run_id) {
          this.evaluations.remove(evaluation.id, seq);
          removed = true;
        }
      }
      // Older evaluations now belong among the latest; only REST knows which.
      if (removed) this.evaluationsLoader.request();
    }
    if (type === "run.progress" && typeof run.reward === "number") this.lastRewards.set(run.run_id, run.reward);
    const known = this.runs.has(run.run_id);
    this.runs.apply(run, seq);
    if (!known && !run.created_at && this.runs.loaded) {
      // Progress of a run in progress that the loaded snapshot did not hold (there were more than
      // it lists): fetch the rest of it, once; later events overlay it. Before the first snapshot
      // there is no need: the snapshot brings it.
      const single = new Reloader(
        () => api(`/api/v1/runs/${encodeURIComponent(run.run_id)}`),
        (detail, asked) => {
          const { rewards, metrics, evaluation, has_model, ...summary } = detail;
          this.runs.applySnapshot([summary], asked, { partial: true });
          this.render();
        },
        { onError: (error) => this.report(`Could not load run ${shortId(run.run_id)}: ${error.message}`) },
      );
      single.request();
    }
    for (const runId of this.lastRewards.keys()) if (!this.runs.has(runId)) this.lastRewards.delete(runId);
  }

  inProgress() {
    return this.runs.all().filter((run) => IN_PROGRESS.has(run.status));
  }

  draw() {
    const fresh = new Set(this.freshEvaluations);
    this.freshEvaluations.clear();
    if (this.section.hidden) return;
    this.insights.draw();
    const active = this.inProgress();
    syncRows($("#active-runs tbody", this.section), active, (run) => run.run_id, (row, run) => {
      row.dataset.runId = run.run_id;
      row.dataset.status = run.status;
      row.dataset.episodesDone = run.episodes_done ?? 0;
      row.dataset.timestepsDone = run.timesteps_done ?? 0;
      row.replaceChildren(
        cell("run", shortId(run.run_id), "mono"),
        cell("agent", agentLink(run.agent_id)),
        cell("environment", run.environment),
        cell("status", statusBadge(run.status)),
        cell("progress", progressOf(run), "num"),
        cell("timesteps", String(run.timesteps_done ?? 0), "num"),
        cell("last-reward", reward(this.lastRewards.get(run.run_id), 1), "num"),
        cell("started", time(run.started_at)),
      );
    });
    $("#active-runs-empty", this.section).hidden = active.length > 0;

    const counts = new Map();
    for (const run of active) counts.set(run.agent_id, (counts.get(run.agent_id) ?? 0) + 1);
    syncRows($("#agents tbody", this.section), this.agents, (agent) => agent.agent_id, (row, agent) => {
      row.dataset.agentId = agent.agent_id;
      row.replaceChildren(
        cell("agent", agentLink(agent.agent_id)),
        cell("algorithm", agent.algorithm),
        cell("environment", agent.environment),
        cell("in-progress", String(counts.get(agent.agent_id) ?? 0), "num"),
      );
    });

    const recent = this.runs.values();
    syncRows($("#runs tbody", this.section), recent, (run) => run.run_id, (row, run) => {
      row.dataset.runId = run.run_id;
      row.dataset.status = run.status;
      row.dataset.episodesDone = run.episodes_done ?? 0;
      row.dataset.timestepsDone = run.timesteps_done ?? 0;
      row.title = run.error || "";
      const status = cell("status", statusBadge(run.status));
      if (run.error) status.append(el("div", { class: "run-error" }, run.error));
      row.replaceChildren(
        cell("run", shortId(run.run_id), "mono"),
        cell("agent", agentLink(run.agent_id)),
        cell("environment", run.environment),
        status,
        cell("episodes", progressOf(run), "num"),
        cell("created", time(run.created_at)),
        cell("finished", time(run.finished_at)),
      );
    });
    $("#runs-empty", this.section).hidden = recent.length > 0;

    const evaluations = this.evaluations.values();
    syncRows(
      $("#evaluations tbody", this.section),
      evaluations,
      (evaluation) => evaluation.id,
      (row, evaluation) => evaluationRow(row, evaluation),
      { isNew: (evaluation) => fresh.has(evaluation.id) },
    );
    $("#evaluations-empty", this.section).hidden = evaluations.length > 0;
  }
}

/** An empty table of evaluations, its head matching evaluationRow's cells. */
export function evaluationsTable(id) {
  return el(
    "table",
    { id },
    el(
      "thead",
      {},
      el(
        "tr",
        {},
        ["#", "Agent", "Environment", "Region", "Reward", "Length", "Run", "At"].map((label, index) =>
          el("th", { class: [0, 4, 5].includes(index) ? "num" : undefined }, label),
        ),
      ),
    ),
    el("tbody"),
  );
}

/** One evaluation as a table row; the overview, the agent page and the explorer show them alike. */
export function evaluationRow(row, evaluation) {
  row.dataset.evaluationId = evaluation.id;
  if (evaluation.run_id) row.dataset.runId = evaluation.run_id;
  row.replaceChildren(
    cell("id", String(evaluation.id), "num"),
    cell("agent", agentLink(evaluation.agent_id)),
    cell("environment", evaluation.environment),
    cell("region", evaluation.region),
    cell("reward", reward(evaluation.reward), "num"),
    cell("length", evaluation.episode_length == null ? "" : String(evaluation.episode_length), "num"),
    cell("run", shortId(evaluation.run_id), "mono"),
    cell("at", time(evaluation.created_at)),
  );
}
