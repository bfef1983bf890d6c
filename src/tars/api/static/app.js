// The dashboard: login, then a single page with hash routes —
//   #/                    overview (active insights, runs, agents, evaluations)
//   #/agents/<agent_id>   one agent's training and evaluation curves
//   #/evaluations?...     the evaluations explorer
// Every page reads REST for what was before and the live feed (live.js) for what comes after.

import { api, canOperate, currentToken, forgetToken, login, logout as endSession, readSession, whenUnauthorized } from "./api.js";
import { AgentPage } from "./agent.js";
import { $ } from "./dom.js";
import { Explorer, parseQuery } from "./explorer.js";
import { CONNECTED, DISCONNECTED, FIRST_SUBSCRIPTION, RECONNECTING, ReconnectingWebSocketClient } from "./live.js";
import { Overview } from "./overview.js";
import { nextSequence } from "./store.js";
import { trainForm } from "./training.js";

let session = null;
let live = null;
let overview = null;
let page = null; // the AgentPage or Explorer shown, if any
let environments = null;
// The train forms shown ("overview", "page"), each with how to refresh its list of agents.
const trainForms = new Map();
// How long the overview waits for the live feed before showing its first snapshot anyway.
const FEED_GRACE_MS = 1000;

let noticeTimer = null;

/** A problem the user should know about (a failed load), shown for a few seconds. */
function report(message) {
  const notice = $("#notice");
  notice.textContent = message;
  notice.hidden = !message;
  clearTimeout(noticeTimer);
  if (message) noticeTimer = setTimeout(() => (notice.hidden = true), 8_000);
}

function showConnection(state, attempt) {
  const badge = $("#connection");
  badge.dataset.state = state;
  badge.textContent = state === RECONNECTING ? `reconnecting (attempt ${attempt})` : state;
  // Once the client has given up, the state itself becomes the way to try again.
  badge.hidden = state === DISCONNECTED;
  $("#retry").hidden = state !== DISCONNECTED;
  if (state === CONNECTED) report("");
}

function environmentNames() {
  if (!environments) {
    environments = api("/api/v1/environments").then((body) => body.items.map((item) => item.environment));
    environments.catch(() => (environments = null)); // ask again next time
  }
  return environments.then((names) => names.slice());
}

/** The train form for operators and admins; nothing for viewers. */
function trainFormFor(agentId) {
  if (!canOperate(session)) return null;
  const { form, refresh } = trainForm({ agents: () => overview.agents, agentId });
  trainForms.set(agentId === undefined ? "overview" : "page", refresh);
  return form;
}

function startSession() {
  session = readSession();
  if (!session) return showLogin();
  $("#login-view").hidden = true;
  $("#dashboard-view").hidden = false;
  $("#session").hidden = false;
  $("#user").textContent = session.username;
  $("#role").textContent = session.role;

  overview = new Overview({ section: $("#overview-page"), report, operator: canOperate(session) });
  overview.onAgents(() => trainForms.forEach((refresh) => refresh()));
  $("#overview-train").replaceChildren();
  const form = trainFormFor(undefined);
  $("#overview-train-card").hidden = !form;
  if (form) $("#overview-train").append(form);

  // One snapshot of the overview, taken once the feed has confirmed its subscriptions, so that
  // nothing published between the two is missed, and the server answers one set of queries, not
  // two. If the feed is slow to come up, the page shows what there is without waiting for it
  // (and reloads when the feed is up, as the client then asks).
  let initialLoad = setTimeout(loadOverviewOnce, FEED_GRACE_MS);
  function loadOverviewOnce() {
    if (initialLoad === null) return;
    clearTimeout(initialLoad);
    initialLoad = null;
    overview.load();
  }

  const scheme = location.protocol === "https:" ? "wss" : "ws";
  live = new ReconnectingWebSocketClient({
    url: `${scheme}://${location.host}/ws`,
    token: currentToken,
    channels: overview.channels,
    onEvent: (frame) => {
      const seq = nextSequence();
      overview.event(frame, seq);
      if (page) page.event(frame, seq);
    },
    onReset: (channel, cause) => {
      const overviewWaits = initialLoad !== null && cause === FIRST_SUBSCRIPTION;
      if (overview.channels.includes(channel) && !overviewWaits) overview.reload(channel);
      if (page && page.channel === channel) page.reload();
    },
    onStateChange: (state, attempt) => {
      if (state === CONNECTED) loadOverviewOnce();
      showConnection(state, attempt);
    },
    onUnauthenticated: () => logout("Your session has ended; log in again."),
    onRevoked: (reason) => logout(reason ? `Signed out: access revoked (${reason}).` : "Signed out: access revoked."),
  });
  window.tarsLive = live;
  live.start();
  route();
}

function leavePage() {
  if (!page) return;
  page.stop();
  if (page.channel) live.unsubscribe(page.channel);
  trainForms.delete("page");
  page = null;
}

function route() {
  if (!session) return;
  const [path, search = ""] = (location.hash || "#/").slice(1).split("?");
  const agentMatch = /^\/agents\/([^/]+)$/.exec(path);
  for (const link of document.querySelectorAll("nav a")) {
    link.classList.toggle("active", link.dataset.route === (agentMatch ? "" : path === "/evaluations" ? "evaluations" : "overview"));
  }
  $("#overview-page").hidden = true;
  $("#agent-page").hidden = true;
  $("#evaluations-page").hidden = true;

  if (agentMatch) {
    const agentId = decodeURIComponent(agentMatch[1]);
    if (!(page instanceof AgentPage && page.agentId === agentId)) {
      leavePage();
      page = new AgentPage({ section: $("#agent-page"), agentId, report, trainFormFor });
      if (page.channel) live.subscribe(page.channel);
      page.load();
    }
    $("#agent-page").hidden = false;
    document.title = `${agentId} · T.A.R.S.`;
  } else if (path === "/evaluations") {
    if (!(page instanceof Explorer)) {
      leavePage();
      page = new Explorer({ section: $("#evaluations-page"), overview, environments: environmentNames, report });
    }
    $("#evaluations-page").hidden = false;
    document.title = "Evaluations · T.A.R.S.";
    page.show(parseQuery(search));
  } else {
    // Agents come and go without events: coming back to the overview lists them again.
    if (page) overview.refreshAgents();
    leavePage();
    $("#overview-page").hidden = false;
    document.title = "T.A.R.S. dashboard";
    overview.render();
  }
}

function showLogin(message = "") {
  $("#login-view").hidden = false;
  $("#dashboard-view").hidden = true;
  $("#session").hidden = true;
  $("#login-error").textContent = message;
  $("#login-form input[name=username]").focus();
}

function logout(message = "") {
  forgetToken();
  leavePage();
  if (live) live.stop();
  if (overview) overview.stop();
  live = null;
  window.tarsLive = null;
  overview = null;
  session = null;
  trainForms.clear();
  for (const id of ["#insights", "#active-runs", "#agents", "#runs", "#evaluations"]) $(`${id} tbody`).replaceChildren();
  showLogin(message);
}

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  const formElement = event.target;
  const form = new FormData(formElement);
  const button = formElement.querySelector("button[type=submit]");
  $("#login-error").textContent = "";
  button.disabled = true;
  try {
    await login(String(form.get("username")), String(form.get("password")));
    formElement.reset();
    startSession();
  } catch (error) {
    $("#login-error").textContent = error.message;
  } finally {
    button.disabled = false;
  }
});
$("#logout").addEventListener("click", async () => {
  await endSession();
  logout();
});
$("#retry").addEventListener("click", () => live && live.retry());
window.addEventListener("hashchange", route);
whenUnauthorized((message) => logout(message));

startSession();
