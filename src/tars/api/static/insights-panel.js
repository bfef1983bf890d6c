// The overview's active insights (open and acknowledged), newest first: GET /api/v1/insights?state=active,
// then the `insights` channel. A resolved or dismissed insight leaves the list. Operators get
// Acknowledge and Dismiss, with an optional note; the server checks the role too.

import { ApiError, api } from "./api.js";
import { $, el, syncRows, time } from "./dom.js";
import {
  confidenceText,
  impactText,
  isActive,
  isInsightEvent,
  kindName,
  recommendationOf,
  severityBadge,
  stateOf,
  subjectOf,
} from "./insights.js";
import { LiveCollection, Reloader, nextSequence, timeKey } from "./store.js";

export const ACTIVE_INSIGHTS = 100; // GET /api/v1/insights?state=active&limit=100
// Each cell: its fields (`data-field`), the column's class.
const COLUMNS = [
  [["severity"]],
  [["kind", "summary"], "wrap wide"],
  [["subject"], "wrap"],
  [["first-seen"]],
  [["impact", "confidence"], "wrap"],
  [["recommendation"], "wrap"],
  [["state"], "wrap"],
];

export class InsightsPanel {
  /**
   * @param {{root: HTMLElement, report: (message: string) => void, operator: boolean, render: () => void}} options
   *   `root` holds #insights (a table whose head matches COLUMNS, and an Actions column), #insights-empty and
   *   #insights-count; `render` redraws the page (coalesced), which then calls draw().
   */
  constructor({ root, report, operator, render }) {
    this.root = root;
    this.report = report;
    this.operator = operator;
    this.render = render;
    this.insights = new LiveCollection({
      keyOf: (insight) => insight.id,
      limit: ACTIVE_INSIGHTS,
      timeOf: (insight) => insight.first_seen_at,
    });
    this.more = false; // the snapshot had a next page: some active insights are not shown
    this.fresh = new Set();
    this.loader = new Reloader(
      () => api("/api/v1/insights", { query: { state: "active", limit: ACTIVE_INSIGHTS } }),
      (page, asked) => {
        this.insights.applySnapshot(page.items, asked);
        this.more = page.next_cursor !== null;
        render();
      },
      { onError: (error) => report(`Could not load the insights: ${error.message}`) },
    );
    $("#insights .actions", root).hidden = !operator;
  }

  load() {
    this.loader.request();
  }

  stop() {
    this.loader.cancel();
  }

  /** Applies an `insight.*` frame; false for any other. */
  event(frame, seq) {
    if (frame.channel !== "insights" || !isInsightEvent(frame.event)) return false;
    this.change(frame.data, seq);
    if (frame.event === "insight.opened") this.fresh.add(frame.data.id);
    return true;
  }

  change(insight, seq) {
    if (isActive(insight)) {
      this.insights.apply(insight, seq);
      return;
    }
    const loading = this.loader.requested > this.loader.applied;
    // Remembered while a snapshot is out, so that it cannot bring the insight back.
    if (this.insights.has(insight.id) || loading) this.insights.remove(insight.id, seq);
    // One that was not shown now fits in the list: only REST knows which.
    if (this.more) this.loader.request();
  }

  draw() {
    const fresh = new Set(this.fresh);
    this.fresh.clear();
    const items = this.insights.values();
    syncRows(
      $("#insights tbody", this.root),
      items,
      (insight) => insight.id,
      (row, insight) => this.fill(row, insight),
      { isNew: (insight) => fresh.has(insight.id) },
    );
    $("#insights-empty", this.root).hidden = items.length > 0;
    $("#insights-count", this.root).textContent = items.length ? `(${items.length}${this.more ? "+" : ""})` : "";
  }

  fill(row, insight) {
    if (row.cells.length === 0) {
      for (const [fields, className] of COLUMNS) {
        const parts = fields.map((field) => el("div", { "data-field": field }));
        row.append(el("td", { class: className }, parts.length === 1 ? parts[0] : parts));
      }
      if (this.operator) row.append(el("td", { "data-field": "actions" }, this.actions(insight.id)));
    }
    row.dataset.insightId = insight.id;
    row.dataset.severity = insight.severity;
    row.dataset.kind = insight.kind;
    row.dataset.state = insight.state;
    const show = (field, ...content) => $(`[data-field="${field}"]`, row).replaceChildren(...content);
    show("severity", severityBadge(insight.severity));
    show("kind", el("strong", {}, kindName(insight.kind)));
    show("subject", subjectOf(insight));
    show("summary", insight.summary);
    show("first-seen", el("time", { datetime: insight.first_seen_at }, time(insight.first_seen_at)));
    show("confidence", `confidence ${confidenceText(insight.confidence)}`);
    show("impact", impactText(insight));
    show("recommendation", recommendationOf(insight));
    show("state", stateOf(insight));
  }

  // Made once per row and kept as the row is updated, so a note being typed survives live updates.
  actions(id) {
    const note = el("input", { name: "note", maxlength: 500, placeholder: "Note (optional)", "aria-label": `Note on insight ${id}` });
    const outcome = el("span", { class: "outcome", role: "status" });
    const buttons = ["Acknowledge", "Dismiss"].map((label) =>
      el("button", { type: "button", class: label === "Dismiss" ? "secondary" : undefined }, label),
    );
    const act = async (action, verb) => {
      const text = note.value.trim();
      buttons.forEach((button) => (button.disabled = true));
      outcome.className = "outcome";
      outcome.textContent = "";
      try {
        const insight = await api(`/api/v1/insights/${id}/${action}`, { method: "POST", body: text ? { note: text } : {} });
        note.value = "";
        outcome.textContent = `${verb}.`;
        // The live feed brings the same change; this shows it at once, unless something newer came first.
        const shown = this.insights.get(id);
        if (shown && timeKey(shown.updated_at) <= timeKey(insight.updated_at)) this.change(insight, nextSequence());
        this.render();
      } catch (error) {
        outcome.className = "outcome error";
        outcome.textContent = `Could not ${action}: ${error.message}`;
        // Resolved (409) or gone (404) meanwhile: the list is out of date.
        if (error instanceof ApiError && (error.status === 409 || error.status === 404)) this.loader.request();
      } finally {
        buttons.forEach((button) => (button.disabled = false));
      }
    };
    buttons[0].addEventListener("click", () => act("acknowledge", "Acknowledged"));
    buttons[1].addEventListener("click", () => act("dismiss", "Dismissed"));
    return el("div", { class: "insight-actions", role: "group", "aria-label": `Act on insight ${id}` }, note, ...buttons, outcome);
  }
}
