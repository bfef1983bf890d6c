// Small DOM helpers shared by the pages. Text always goes in as textContent, never as HTML.

export const $ = (selector, root = document) => root.querySelector(selector);

/** An element with attributes (`class`, `data-*`, `hidden`, ...) and children (nodes or text). */
export function el(tag, attributes = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "dataset") Object.assign(node.dataset, value);
    else if (value === true) node.setAttribute(name, "");
    else node.setAttribute(name, String(value));
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null || child === false) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

/** A table cell named by `data-field`, so tests and styles can find it. */
export function cell(field, content, className) {
  return el("td", { "data-field": field, class: className }, content ?? "");
}

export function time(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  return date.toDateString() === new Date().toDateString() ? date.toLocaleTimeString() : date.toLocaleString();
}

export function shortId(id) {
  return id ? String(id).slice(0, 8) : "—";
}

export function reward(value, digits = 2) {
  return typeof value === "number" && Number.isFinite(value) ? value.toFixed(digits) : "—";
}

export function statusBadge(status) {
  return el("span", { class: `status status-${status}` }, status);
}

export function agentLink(agentId) {
  return el("a", { href: `#/agents/${encodeURIComponent(agentId)}` }, agentId);
}

/** Done out of total, with a bar when the total is known: episodes, or timesteps when that is the limit. */
export function progressOf(run) {
  const byEpisodes = run.episodes != null || run.timesteps == null;
  const done = byEpisodes ? run.episodes_done ?? 0 : run.timesteps_done ?? 0;
  const total = byEpisodes ? run.episodes : run.timesteps;
  const wrapper = el("span", { class: "progress" });
  if (total) {
    const bar = el("progress", { max: total, "aria-hidden": "true" });
    bar.value = Math.min(done, total);
    wrapper.append(bar);
  }
  wrapper.append(el("span", {}, `${done}/${total ?? "?"}${byEpisodes ? "" : " steps"}`));
  return wrapper;
}

/**
 * Makes `tbody` hold one row per item, in order, reusing the row of an item it already shows (so
 * a row being read or highlighted is not replaced) and filling it with `fill(row, item)`.
 */
export function syncRows(tbody, items, keyOf, fill, { isNew } = {}) {
  const existing = new Map();
  for (const row of tbody.rows) existing.set(row.dataset.key, row);
  let previous = null;
  for (const item of items) {
    const key = String(keyOf(item));
    let row = existing.get(key);
    if (row) existing.delete(key);
    else {
      row = el("tr", { dataset: { key } });
      if (isNew && isNew(item)) row.classList.add("fresh");
    }
    fill(row, item);
    const wanted = previous ? previous.nextSibling : tbody.firstChild;
    if (row !== wanted) tbody.insertBefore(row, wanted);
    previous = row;
  }
  for (const row of existing.values()) row.remove();
}

/** Runs `work` once before the next frame, however often it is asked for until then. */
export function coalesce(work) {
  let scheduled = false;
  return () => {
    if (scheduled) return;
    scheduled = true;
    requestAnimationFrame(() => {
      scheduled = false;
      work();
    });
  };
}
