// The evaluations explorer: filters and keyset pagination over GET /api/v1/evaluations. With a
// million rows it still asks for one page at a time (at most 100) and nothing else; the filters
// and the page live in the address (#/evaluations?agent_id=..&cursor=..) so a view can be shared.

import { ApiError, api } from "./api.js";
import { $, el, syncRows } from "./dom.js";
import { evaluationRow, evaluationsTable } from "./overview.js";
import { createdEvaluations, isEvaluationEvent, timeKey } from "./store.js";

const REGIONS = ["us-west-2", "us-east-1", "eu-west-1", "ap-southeast-1"];
const PAGE_SIZES = [25, 50, 100];
const FILTERS = ["agent_id", "environment", "region", "since", "until"];
const RANGES = [
  ["last hour", 3_600_000],
  ["last 24 hours", 86_400_000],
  ["last 7 days", 7 * 86_400_000],
];

/** The explorer's query from the part of the hash after "?". */
export function parseQuery(search) {
  const params = new URLSearchParams(search);
  const query = {};
  for (const name of [...FILTERS, "cursor"]) {
    const value = params.get(name);
    if (value) query[name] = value;
  }
  const limit = Number(params.get("limit"));
  query.limit = PAGE_SIZES.includes(limit) ? limit : PAGE_SIZES[1];
  return query;
}

export function queryHash(query) {
  const params = new URLSearchParams();
  for (const name of [...FILTERS, "limit", "cursor"]) if (query[name]) params.set(name, String(query[name]));
  const text = params.toString();
  return `#/evaluations${text ? `?${text}` : ""}`;
}

// <input type="datetime-local"> speaks local time without a zone; the API wants ISO 8601 with one.
function toLocalInput(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  const local = new Date(date.getTime() - date.getTimezoneOffset() * 60_000);
  return local.toISOString().slice(0, 16);
}

function fromLocalInput(value) {
  if (!value) return "";
  const date = new Date(value);
  return Number.isNaN(date.getTime()) ? "" : date.toISOString();
}

export class Explorer {
  constructor({ section, overview, environments, report }) {
    this.section = section;
    this.overview = overview;
    this.environments = environments;
    this.report = report;
    this.query = null;
    this.page = null;
    // Cursors of the pages before this one, for "Newer": keyset pagination only goes forward.
    this.newerCursors = [];
    this.newMatches = 0;
    this.request = 0;
    this.build();
    this.unlisten = overview.onAgents(() => this.fillAgents());
  }

  build() {
    const select = (name, label, options) =>
      el("label", {}, label, el("select", { name }, el("option", { value: "" }, "any"), options));
    this.form = el(
      "form",
      { class: "filters" },
      select("agent_id", "Agent", []),
      select("environment", "Environment", []),
      select("region", "Region", REGIONS.map((region) => el("option", { value: region }, region))),
      el("label", {}, "Since", el("input", { type: "datetime-local", name: "since" })),
      el("label", {}, "Until", el("input", { type: "datetime-local", name: "until" })),
      el(
        "label",
        {},
        "Per page",
        el("select", { name: "limit" }, PAGE_SIZES.map((size) => el("option", { value: size }, String(size)))),
      ),
      el(
        "div",
        { class: "filter-actions" },
        el("button", { type: "submit" }, "Apply"),
        el("button", { type: "button", class: "secondary", "data-action": "clear" }, "Clear"),
      ),
      el(
        "div",
        { class: "ranges" },
        RANGES.map(([label, span]) =>
          el("button", { type: "button", class: "link", "data-span": span }, label),
        ),
      ),
    );
    this.form.addEventListener("submit", (event) => {
      event.preventDefault();
      this.go(this.formQuery(), []);
    });
    this.form.addEventListener("click", (event) => {
      const target = event.target;
      if (!(target instanceof HTMLButtonElement)) return;
      if (target.dataset.action === "clear") {
        this.go({ limit: this.query ? this.query.limit : PAGE_SIZES[1] }, []);
      } else if (target.dataset.span) {
        const since = new Date(Date.now() - Number(target.dataset.span)).toISOString();
        this.go({ ...this.formQuery(), since, until: "" }, []);
      }
    });

    this.notice = el("button", { type: "button", class: "notice", hidden: true }, "");
    this.notice.addEventListener("click", () => this.go({ ...this.query, cursor: "" }, []));
    this.newest = el("button", { type: "button", class: "secondary", "data-page": "newest" }, "Newest");
    this.newer = el("button", { type: "button", class: "secondary", "data-page": "newer" }, "← Newer");
    this.older = el("button", { type: "button", class: "secondary", "data-page": "older" }, "Older →");
    this.position = el("span", { class: "muted page-number" });
    this.newest.addEventListener("click", () => this.go({ ...this.query, cursor: "" }, []));
    this.newer.addEventListener("click", () => {
      const cursors = this.newerCursors.slice();
      const cursor = cursors.pop();
      this.go({ ...this.query, cursor }, cursors);
    });
    this.older.addEventListener("click", () => {
      if (!this.page || !this.page.next_cursor) return;
      this.go({ ...this.query, cursor: this.page.next_cursor }, [...this.newerCursors, this.query.cursor || ""]);
    });
    this.status = el("p", { class: "empty", role: "status" });
    this.table = evaluationsTable("explorer-evaluations");
    this.section.replaceChildren(
      el(
        "section",
        { class: "card" },
        el("h2", {}, "Evaluations"),
        this.form,
        this.notice,
        el("div", { class: "scroll" }, this.table),
        this.status,
        el("div", { class: "pager" }, this.newest, this.newer, this.position, this.older),
      ),
    );
    this.fillAgents();
    this.fillEnvironments();
  }

  fillAgents() {
    const select = this.form.elements.agent_id;
    const chosen = (this.query && this.query.agent_id) || select.value;
    const ids = this.overview.agents.map((agent) => agent.agent_id);
    if (chosen && !ids.includes(chosen)) ids.push(chosen); // an agent deleted since still has evaluations
    select.replaceChildren(el("option", { value: "" }, "any"), ...ids.map((id) => el("option", { value: id }, id)));
    select.value = chosen || "";
  }

  async fillEnvironments() {
    try {
      const names = await this.environments();
      const select = this.form.elements.environment;
      const chosen = (this.query && this.query.environment) || select.value;
      if (chosen && !names.includes(chosen)) names.push(chosen);
      select.replaceChildren(el("option", { value: "" }, "any"), ...names.map((name) => el("option", { value: name }, name)));
      select.value = chosen || "";
    } catch (error) {
      this.report(`Could not load the environments: ${error.message}`);
    }
  }

  formQuery() {
    const form = this.form.elements;
    return {
      agent_id: form.agent_id.value,
      environment: form.environment.value,
      region: form.region.value,
      since: fromLocalInput(form.since.value),
      until: fromLocalInput(form.until.value),
      limit: Number(form.limit.value),
    };
  }

  go(query, newerCursors) {
    this.pendingCursors = newerCursors;
    const hash = queryHash(query);
    if (location.hash === hash) this.show(query);
    else location.hash = hash; // the router calls show()
  }

  /** Shows the page the address asks for. */
  async show(query) {
    const sameFilters = this.query && FILTERS.every((name) => (this.query[name] || "") === (query[name] || ""));
    // "Newer"/"Older" carry the way back; an address typed or shared does not, so "Newer" then
    // starts over at the newest page.
    if (this.pendingCursors !== undefined) this.newerCursors = this.pendingCursors;
    else if (!sameFilters || !query.cursor) this.newerCursors = [];
    this.pendingCursors = undefined;
    this.query = query;
    this.newMatches = 0;
    this.notice.hidden = true;
    const form = this.form.elements;
    form.agent_id.value = query.agent_id || "";
    this.fillAgents();
    form.environment.value = query.environment || "";
    form.region.value = query.region || "";
    form.since.value = query.since ? toLocalInput(query.since) : "";
    form.until.value = query.until ? toLocalInput(query.until) : "";
    form.limit.value = String(query.limit);

    const request = ++this.request;
    this.status.textContent = "Loading…";
    this.section.setAttribute("aria-busy", "true");
    let page;
    try {
      page = await api("/api/v1/evaluations", { query: { ...query } });
    } catch (error) {
      if (request !== this.request) return;
      this.section.removeAttribute("aria-busy");
      this.page = null;
      syncRows($("tbody", this.table), [], (evaluation) => evaluation.id, evaluationRow);
      this.status.textContent =
        error instanceof ApiError && error.status === 422 ? `Check the filters: ${error.message}` : `Could not load: ${error.message}`;
      this.drawPager();
      return;
    }
    if (request !== this.request) return; // a newer request is on its way
    this.section.removeAttribute("aria-busy");
    this.page = page;
    syncRows($("tbody", this.table), page.items, (evaluation) => evaluation.id, evaluationRow);
    this.status.textContent = page.items.length ? "" : "No evaluation matches these filters.";
    this.drawPager();
  }

  drawPager() {
    const onFirstPage = !this.query.cursor;
    this.newest.disabled = onFirstPage;
    this.newer.disabled = onFirstPage || this.newerCursors.length === 0;
    this.older.disabled = !this.page || !this.page.next_cursor;
    this.position.textContent = onFirstPage ? "newest page" : this.newerCursors.length ? `page ${this.newerCursors.length + 1}` : "";
  }

  /** A live evaluation: on the newest page, say how many new ones match instead of moving rows under the reader. */
  event(frame) {
    if (frame.channel !== "evaluations" || !isEvaluationEvent(frame.event) || !this.query || this.query.cursor) return;
    const matches = createdEvaluations(frame).filter((evaluation) => this.matches(evaluation)).length;
    if (!matches) return;
    this.newMatches += matches;
    this.notice.textContent = `${this.newMatches} new evaluation${this.newMatches === 1 ? "" : "s"} — show`;
    this.notice.hidden = false;
  }

  matches(evaluation) {
    const query = this.query;
    if (query.agent_id && evaluation.agent_id !== query.agent_id) return false;
    if (query.environment && evaluation.environment !== query.environment) return false;
    if (query.region && evaluation.region !== query.region) return false;
    const at = timeKey(evaluation.created_at);
    if (query.since && at < timeKey(query.since)) return false;
    if (query.until && at >= timeKey(query.until)) return false;
    return !(this.page && this.page.items.some((shown) => shown.id === evaluation.id));
  }

  stop() {
    this.request += 1;
    this.unlisten();
  }
}
