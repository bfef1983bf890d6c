// The form that starts a training run (operators and admins only; the server checks the role too).

import { api } from "./api.js";
import { el, shortId } from "./dom.js";

/**
 * A form posting to POST /api/v1/train on this origin.
 * @param {{agents: () => {agent_id: string, algorithm: string, environment: string}[], agentId?: string,
 *          onStarted?: (run: {run_id: string, status: string}, agentId: string) => void}} options
 * @returns {{form: HTMLFormElement, refresh: () => void}}  refresh() re-reads the agent list
 */
export function trainForm({ agents, agentId, onStarted = () => {} }) {
  const agentSelect = el("select", { name: "agent_id", required: true });
  const amount = el("input", { name: "amount", type: "number", min: 1, step: 1, value: 50, required: true });
  const unit = el(
    "select",
    { name: "unit", "aria-label": "Unit" },
    el("option", { value: "episodes" }, "episodes"),
    el("option", { value: "timesteps" }, "timesteps"),
  );
  const submit = el("button", { type: "submit" }, "Start training");
  const outcome = el("p", { class: "outcome", role: "status" });
  const form = el(
    "form",
    { class: "train-form" },
    el("label", {}, "Agent", agentSelect),
    el("label", {}, "Stop after", el("span", { class: "amount" }, amount, unit)),
    submit,
    outcome,
  );

  function refresh() {
    const chosen = agentSelect.value || agentId;
    const options = agents().map((agent) =>
      el("option", { value: agent.agent_id }, `${agent.agent_id} (${agent.algorithm}, ${agent.environment})`),
    );
    agentSelect.replaceChildren(...options);
    if (chosen && agents().some((agent) => agent.agent_id === chosen)) agentSelect.value = chosen;
  }

  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    const count = Number(amount.value);
    if (!Number.isInteger(count) || count < 1) {
      outcome.className = "outcome error";
      outcome.textContent = "Give a whole number of episodes or timesteps.";
      return;
    }
    const chosenAgent = agentSelect.value;
    submit.disabled = true;
    outcome.className = "outcome";
    outcome.textContent = "Starting…";
    try {
      const run = await api("/api/v1/train", { method: "POST", body: { agent_id: chosenAgent, [unit.value]: count } });
      outcome.replaceChildren(
        `Run `,
        el("a", { href: `#/agents/${encodeURIComponent(chosenAgent)}`, "data-run-id": run.run_id }, shortId(run.run_id)),
        ` ${run.status}.`,
      );
      onStarted(run, chosenAgent);
    } catch (error) {
      outcome.className = "outcome error";
      outcome.textContent = `Could not start training: ${error.message}`;
    } finally {
      submit.disabled = false;
    }
  });

  refresh();
  return { form, refresh };
}
