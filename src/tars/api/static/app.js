"use strict";

// Reconnects by itself with exponential backoff and jitter, and re-subscribes to its channels.
class ReconnectingWebSocketClient {
  constructor(url, { token, channels, onEvent, onState, onReconnected }) {
    this.url = url;
    this.token = token;
    this.channels = channels;
    this.onEvent = onEvent;
    this.onState = onState;
    this.onReconnected = onReconnected || (() => {});
    this.attempt = 0;
    this.maxAttempts = 10;
    this.closedByUs = false;
    this.everConnected = false;
  }

  connect() {
    this.closedByUs = false;
    this.setState(this.attempt === 0 ? "connecting" : "reconnecting");
    const socket = new WebSocket(this.url);
    this.socket = socket;
    socket.onopen = () => socket.send(JSON.stringify({ type: "auth", token: this.token }));
    socket.onmessage = (message) => this.handle(JSON.parse(message.data));
    socket.onclose = () => {
      if (this.socket !== socket) return;
      if (this.closedByUs) { this.setState("disconnected"); return; }
      this.scheduleReconnect();
    };
  }

  handle(frame) {
    switch (frame.type) {
      case "authenticated":
        for (const channel of this.channels) {
          this.socket.send(JSON.stringify({ type: "subscribe", channel }));
        }
        if (this.everConnected) this.onReconnected();
        this.everConnected = true;
        this.attempt = 0;
        this.setState("connected");
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

  scheduleReconnect() {
    if (this.attempt >= this.maxAttempts) { this.setState("disconnected"); return; }
    const base = Math.min(30000, 250 * 2 ** this.attempt);
    const delay = Math.random() * base;
    this.attempt += 1;
    this.setState("reconnecting");
    setTimeout(() => this.connect(), delay);
  }

  retry() { this.attempt = 0; this.connect(); }

  close() { this.closedByUs = true; if (this.socket) this.socket.close(); }

  setState(state) { this.state = state; this.onState(state, this.attempt); }
}

const $ = (selector) => document.querySelector(selector);
let token = localStorage.getItem("tars.token");
let client = null;
const runRows = new Map();
const evaluationIds = new Set();
const MAX_EVALUATIONS = 200;

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

function cell(text, className) {
  const td = document.createElement("td");
  td.textContent = text == null ? "" : String(text);
  if (className) td.className = className;
  return td;
}

function time(value) { return value ? new Date(value).toLocaleTimeString() : ""; }

function renderRun(run) {
  let row = runRows.get(run.run_id);
  if (!row) {
    row = document.createElement("tr");
    row.dataset.runId = run.run_id;
    $("#runs tbody").prepend(row);
    runRows.set(run.run_id, row);
  }
  const previous = row.dataset.lastReward;
  const lastReward = run.reward != null ? run.reward.toFixed(1) : previous || "";
  row.dataset.lastReward = lastReward;
  row.replaceChildren(
    cell(run.run_id.slice(0, 8)),
    cell(run.agent_id),
    cell(run.environment || row.dataset.environment || ""),
    cell(run.status, `status-${run.status}`),
    cell(`${run.episodes_done ?? 0}/${run.episodes ?? "?"}`, "num"),
    cell(lastReward, "num"),
    cell(time(run.started_at || row.dataset.startedAt)),
  );
  if (run.environment) row.dataset.environment = run.environment;
  if (run.started_at) row.dataset.startedAt = run.started_at;
}

function renderEvaluation(evaluation, { fresh = false, append = false } = {}) {
  if (evaluationIds.has(evaluation.id)) return;
  evaluationIds.add(evaluation.id);
  const row = document.createElement("tr");
  row.dataset.evaluationId = evaluation.id;
  if (fresh) row.className = "fresh";
  row.append(
    cell(evaluation.id, "num"),
    cell(evaluation.agent_id),
    cell(evaluation.environment),
    cell(evaluation.region),
    cell(Number(evaluation.reward).toFixed(2), "num"),
    cell(evaluation.episode_length, "num"),
    cell(evaluation.run_id ? evaluation.run_id.slice(0, 8) : "—"),
    cell(time(evaluation.created_at)),
  );
  const body = $("#evaluations tbody");
  if (append) body.append(row); else body.prepend(row);
  while (body.rows.length > MAX_EVALUATIONS) body.lastElementChild.remove();
}

async function loadState() {
  const [runs, evaluations] = await Promise.all([
    api("/api/v1/runs?limit=50"),
    api("/api/v1/evaluations?limit=100"),
  ]);
  for (const run of runs.items.slice().reverse()) renderRun(run);
  for (const evaluation of evaluations.items) renderEvaluation(evaluation, { append: true });
}

function showDashboard(username) {
  $("#login-view").hidden = true;
  $("#dashboard-view").hidden = false;
  $("#logout").hidden = false;
  $("#user").textContent = username || "";
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  client = new ReconnectingWebSocketClient(`${scheme}://${location.host}/ws`, {
    token,
    channels: ["runs", "evaluations"],
    onEvent: (frame) => {
      if (frame.channel === "runs") renderRun(frame.data);
      else if (frame.channel === "evaluations") renderEvaluation(frame.data, { fresh: true });
    },
    onState: (state, attempt) => {
      const badge = $("#connection");
      badge.dataset.state = state;
      badge.textContent = state === "reconnecting" ? `reconnecting (${attempt})` : state;
      $("#retry").hidden = state !== "disconnected";
    },
    // Events sent while we were away are not replayed yet: reload what the database says.
    onReconnected: () => loadState().catch(console.error),
  });
  client.connect();
  loadState().catch((error) => console.error(error));
}

function showLogin() {
  $("#login-view").hidden = false;
  $("#dashboard-view").hidden = true;
  $("#logout").hidden = true;
  $("#user").textContent = "";
}

function logout() {
  token = null;
  localStorage.removeItem("tars.token");
  localStorage.removeItem("tars.user");
  if (client) client.close();
  showLogin();
}

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = new FormData(event.target);
  $("#login-error").textContent = "";
  try {
    const body = await api("/api/v1/auth/login", {
      method: "POST",
      body: JSON.stringify({ username: form.get("username"), password: form.get("password") }),
    });
    token = body.access_token;
    localStorage.setItem("tars.token", token);
    localStorage.setItem("tars.user", form.get("username"));
    showDashboard(form.get("username"));
  } catch (error) {
    $("#login-error").textContent = error.message;
  }
});
$("#logout").addEventListener("click", logout);
$("#retry").addEventListener("click", () => client && client.retry());

if (token) showDashboard(localStorage.getItem("tars.user")); else showLogin();
