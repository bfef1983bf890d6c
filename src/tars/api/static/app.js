"use strict";

// Reconnects by itself with exponential backoff and jitter, and re-subscribes to its channels.
// It reports "connected" only once the server has confirmed every subscription, so nothing
// published after that moment can be missed; onReady then reloads what was published before.
class ReconnectingWebSocketClient {
  constructor(url, { token, channels, onEvent, onState, onReady, onUnauthenticated }) {
    this.url = url;
    this.token = token;
    this.channels = channels;
    this.onEvent = onEvent;
    this.onState = onState;
    this.onReady = onReady || (() => {});
    this.onUnauthenticated = onUnauthenticated || (() => {});
    this.attempt = 0;
    this.maxAttempts = 10;
    this.closedByUs = false;
    this.pending = null;
    this.timer = null;
  }

  connect() {
    clearTimeout(this.timer);
    this.closedByUs = false;
    this.pending = null;
    this.setState(this.attempt === 0 ? "connecting" : "reconnecting");
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.onopen = () => socket.send(JSON.stringify({ type: "auth", token: this.token }));
    socket.onmessage = (message) => {
      if (this.socket !== socket) return;
      let frame;
      try { frame = JSON.parse(message.data); } catch { console.warn("not JSON:", message.data); return; }
      this.handle(frame);
    };
    socket.onclose = (event) => {
      if (this.socket !== socket) return;
      if (this.closedByUs) { this.setState("disconnected"); return; }
      if (event.code === 1008 && event.reason === "unauthenticated") {
        // The token expired or was revoked: retrying with it cannot work.
        this.closedByUs = true;
        this.setState("disconnected");
        this.onUnauthenticated();
        return;
      }
      this.scheduleReconnect();
    };
  }

  handle(frame) {
    switch (frame.type) {
      case "authenticated":
        if (this.pending) break; // already subscribing
        this.pending = new Set(this.channels);
        for (const channel of this.channels) {
          this.socket.send(JSON.stringify({ type: "subscribe", channel }));
        }
        if (this.pending.size === 0) this.ready();
        break;
      case "subscribed":
        if (this.pending && this.pending.delete(frame.channel) && this.pending.size === 0) this.ready();
        break;
      case "ping":
        this.socket.send(JSON.stringify({ type: "pong" }));
        break;
      case "event":
        this.onEvent(frame);
        break;
      case "error":
        console.warn("server:", frame.message);
        break;
    }
  }

  ready() {
    this.attempt = 0;
    this.setState("connected");
    this.onReady();
  }

  scheduleReconnect() {
    if (this.attempt >= this.maxAttempts) { this.setState("disconnected"); return; }
    const base = Math.min(30000, 250 * 2 ** this.attempt);
    const delay = Math.random() * base;
    this.attempt += 1;
    this.setState("reconnecting");
    this.timer = setTimeout(() => this.connect(), delay);
  }

  retry() { this.attempt = 0; this.connect(); }

  close() {
    clearTimeout(this.timer);
    this.closedByUs = true;
    if (this.socket) this.socket.close();
  }

  setState(state) { this.state = state; this.onState(state, this.attempt); }
}

const $ = (selector) => document.querySelector(selector);
const TERMINAL = new Set(["succeeded", "failed"]);
const MAX_EVALUATIONS = 200;
let token = localStorage.getItem("tars.token");
let client = null;
const runRows = new Map();
const evaluationIds = new Set();
// Live events are numbered as they arrive, so a snapshot requested before an event cannot undo it.
let liveSequence = 0;
const runSequence = new Map();
let loadsStarted = 0;
let loadApplied = 0;

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { "Content-Type": "application/json", ...(token ? { Authorization: `Bearer ${token}` } : {}) },
  });
  if (response.status === 401 && path !== "/api/v1/auth/login") { logout(); throw new Error("unauthorized"); }
  if (!response.ok) {
    const body = await response.json().catch(() => ({}));
    throw new Error(typeof body.detail === "string" ? body.detail : `HTTP ${response.status}`);
  }
  return response.json();
}

function cell(field, text, className) {
  const td = document.createElement("td");
  td.dataset.field = field;
  td.textContent = text == null ? "" : String(text);
  if (className) td.className = className;
  return td;
}

function time(value) {
  if (!value) return "";
  const date = new Date(value);
  const sameDay = date.toDateString() === new Date().toDateString();
  return sameDay ? date.toLocaleTimeString() : date.toLocaleString();
}

function statusCell(status) {
  const td = cell("status", "", "status-cell");
  const badge = document.createElement("span");
  badge.className = `status status-${status}`;
  badge.textContent = status;
  td.append(badge);
  return td;
}

function episodesCell(done, total) {
  const td = cell("episodes", "", "num");
  const wrapper = document.createElement("span");
  wrapper.className = "episodes";
  if (total) {
    const bar = document.createElement("progress");
    bar.max = total;
    bar.value = Math.min(done, total);
    bar.setAttribute("aria-hidden", "true");
    wrapper.append(bar);
  }
  const text = document.createElement("span");
  text.textContent = `${done}/${total ?? "?"}`;
  wrapper.append(text);
  td.append(wrapper);
  return td;
}

// Newest first: a row goes before the first row that is older than it.
function insertOrdered(body, row, isNewer) {
  for (const other of body.rows) {
    if (isNewer(row, other)) { body.insertBefore(row, other); return; }
  }
  body.append(row);
}

function renderRun(run) {
  let row = runRows.get(run.run_id);
  if (!row) {
    row = document.createElement("tr");
    row.dataset.runId = run.run_id;
    row.dataset.createdAt = run.created_at || new Date().toISOString();
    insertOrdered($("#runs tbody"), row, (a, b) => a.dataset.createdAt >= b.dataset.createdAt);
    runRows.set(run.run_id, row);
  }
  const stored = row.dataset;
  if (run.environment) stored.environment = run.environment;
  if (run.started_at) stored.startedAt = run.started_at;
  if (run.reward != null) stored.lastReward = Number(run.reward).toFixed(1);
  else if (!run.episodes_done && !TERMINAL.has(run.status)) delete stored.lastReward; // (re)started from scratch
  if (run.error !== undefined) stored.error = run.error || "";
  const done = run.episodes_done ?? 0;
  stored.status = run.status;
  row.title = stored.error || "";
  row.replaceChildren(
    cell("run", run.run_id.slice(0, 8), "mono"),
    cell("agent", run.agent_id),
    cell("environment", stored.environment || ""),
    statusCell(run.status),
    episodesCell(done, run.episodes),
    cell("last-reward", stored.lastReward || "", "num"),
    cell("started", time(stored.startedAt)),
  );
  if (stored.error) {
    const detail = document.createElement("div");
    detail.className = "run-error";
    detail.textContent = stored.error;
    row.cells[3].append(detail);
  }
  updateEmpty();
}

function liveRun(run) {
  runSequence.set(run.run_id, ++liveSequence);
  renderRun(run);
}

function renderEvaluation(evaluation, { fresh = false } = {}) {
  if (evaluationIds.has(evaluation.id)) return;
  evaluationIds.add(evaluation.id);
  const row = document.createElement("tr");
  row.dataset.evaluationId = evaluation.id;
  if (evaluation.run_id) row.dataset.runId = evaluation.run_id;
  if (fresh) row.className = "fresh";
  row.append(
    cell("id", evaluation.id, "num"),
    cell("agent", evaluation.agent_id),
    cell("environment", evaluation.environment),
    cell("region", evaluation.region),
    cell("reward", Number(evaluation.reward).toFixed(2), "num"),
    cell("length", evaluation.episode_length, "num"),
    cell("run", evaluation.run_id ? evaluation.run_id.slice(0, 8) : "—", "mono"),
    cell("at", time(evaluation.created_at)),
  );
  const body = $("#evaluations tbody");
  insertOrdered(body, row, (a, b) => Number(a.dataset.evaluationId) > Number(b.dataset.evaluationId));
  while (body.rows.length > MAX_EVALUATIONS) {
    evaluationIds.delete(Number(body.lastElementChild.dataset.evaluationId));
    body.lastElementChild.remove();
  }
  updateEmpty();
}

function updateEmpty() {
  $("#runs-empty").hidden = runRows.size > 0;
  $("#evaluations-empty").hidden = evaluationIds.size > 0;
}

async function loadState() {
  const load = ++loadsStarted;
  const seen = liveSequence;
  const [runs, evaluations] = await Promise.all([
    api("/api/v1/runs?limit=50"),
    api("/api/v1/evaluations?limit=100"),
  ]);
  if (load < loadApplied || !token) return; // a newer snapshot is already shown, or we logged out
  loadApplied = load;
  for (const run of runs.items) {
    const current = runRows.get(run.run_id);
    // An event that arrived after this snapshot was asked for may be newer than it.
    if ((runSequence.get(run.run_id) ?? 0) > seen) continue;
    // A finished run cannot start again; a snapshot saying otherwise is older than what we show.
    if (current && TERMINAL.has(current.dataset.status) && !TERMINAL.has(run.status)) continue;
    renderRun(run);
  }
  for (const evaluation of evaluations.items) renderEvaluation(evaluation);
}

function clearTables() {
  $("#runs tbody").replaceChildren();
  $("#evaluations tbody").replaceChildren();
  runRows.clear();
  evaluationIds.clear();
  runSequence.clear();
  updateEmpty();
}

function showDashboard(username) {
  $("#login-view").hidden = true;
  $("#dashboard-view").hidden = false;
  $("#connection").hidden = false;
  $("#logout").hidden = false;
  $("#user").textContent = username || "";
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  client = new ReconnectingWebSocketClient(`${scheme}://${location.host}/ws`, {
    token,
    channels: ["runs", "evaluations"],
    onEvent: (frame) => {
      if (frame.channel === "runs") liveRun(frame.data);
      else if (frame.channel === "evaluations") renderEvaluation(frame.data, { fresh: true });
    },
    onState: (state, attempt) => {
      const badge = $("#connection");
      badge.dataset.state = state;
      badge.textContent = state === "reconnecting" ? `reconnecting (${attempt})` : state;
      $("#retry").hidden = state !== "disconnected" || !token;
    },
    // Subscribed: whatever happened before now (or while we were away) is in the database.
    onReady: () => loadState().catch((error) => console.warn("could not load:", error.message)),
    onUnauthenticated: () => logout("Your session has expired; log in again."),
  });
  client.connect();
  // Show what there is straight away, even if the live feed is slow to come up.
  loadState().catch((error) => console.warn("could not load:", error.message));
}

function showLogin(message = "") {
  $("#login-view").hidden = false;
  $("#dashboard-view").hidden = true;
  $("#connection").hidden = true;
  $("#logout").hidden = true;
  $("#retry").hidden = true;
  $("#user").textContent = "";
  $("#login-error").textContent = message;
  $("#login-form input[name=username]").focus();
}

function logout(message = "") {
  token = null;
  localStorage.removeItem("tars.token");
  localStorage.removeItem("tars.user");
  if (client) { client.close(); client = null; }
  clearTables();
  showLogin(typeof message === "string" ? message : "");
}

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const formElement = event.target;
  const form = new FormData(formElement);
  const button = formElement.querySelector("button[type=submit]");
  $("#login-error").textContent = "";
  button.disabled = true;
  try {
    const body = await api("/api/v1/auth/login", {
      method: "POST",
      body: JSON.stringify({ username: form.get("username"), password: form.get("password") }),
    });
    token = body.access_token;
    localStorage.setItem("tars.token", token);
    localStorage.setItem("tars.user", form.get("username"));
    formElement.reset();
    showDashboard(form.get("username"));
  } catch (error) {
    $("#login-error").textContent = error.message;
  } finally {
    button.disabled = false;
  }
});
$("#logout").addEventListener("click", () => logout());
$("#retry").addEventListener("click", () => client && client.retry());

updateEmpty();
if (token) showDashboard(localStorage.getItem("tars.user")); else showLogin();
