"""Training anomalies of one run, from the episodes its worker reports (``EpisodeFinished``: reward,
and in ``metrics`` the latest SB3 losses, entropy and env-steps/s).

Five conditions, each a rule on robust statistics of the run's own history (docs/insights.md):
non-finite losses, value-loss explosion, entropy collapse, learning stall, and env-steps/s below the
agent's earlier runs. Positions in findings are episode numbers.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, replace

from tars.domain.insights import (
    Action,
    Evidence,
    Finding,
    FindingKind,
    FindingState,
    Recommendation,
    Severity,
    Subject,
)
from tars.domain.progress import EpisodeFinished

# The SB3 logger values the worker reports (tars.training.callbacks), by the name it reports them under.
LOSSES = ("loss", "policy_loss", "value_loss", "entropy_loss", "actor_loss", "critic_loss")
VALUE_LOSSES = ("value_loss", "critic_loss")  # on-policy critics, off-policy critics


@dataclass(frozen=True)
class TrainingSettings:
    # Finite losses in this many episodes in a row clear a non-finite-loss finding.
    finite_to_clear: int = 20
    # Value loss: an explosion is ``explosion_factor`` x the median of the last ``loss_window`` values
    # before it, for ``sustain`` episodes; it clears below a tenth of that.
    loss_window: int = 50
    min_loss_history: int = 10
    explosion_factor: float = 100.0
    sustain: int = 3
    # Entropy: collapsed when the median of the last ``entropy_window`` episodes is below the first
    # ``entropy_window``'s by ``collapse_share`` of its magnitude (and at least ``min_collapse_nats``),
    # while the reward has not improved; clears when entropy is back over half that drop.
    entropy_window: int = 20
    collapse_share: float = 0.9
    min_collapse_nats: float = 0.3
    # Learning stall: the mean reward over ``reward_window`` episodes has not beaten its best by
    # ``min_improvement`` (of the best's magnitude or the rewards' spread) for ``patience`` episodes.
    reward_window: int = 50
    patience: int = 200
    min_improvement: float = 0.05
    # Env-steps/s: below the median of the agent's earlier runs by ``min_throughput_drop`` and by 3
    # robust standard deviations (MAD), once the run is past ``throughput_warmup`` episodes.
    min_throughput_drop: float = 0.3
    min_throughput_runs: int = 3
    throughput_warmup: int = 10


class TrainingAnomalies:
    """Watches one training run.

    ``target_reward``: a mean reward at which the run counts as solved (Gymnasium's
    ``spec.reward_threshold``: 475 for CartPole-v1); a solved run neither stalls nor collapses.
    ``throughput_history``: the env-steps/s of the agent's earlier runs (``steps_per_second`` of
    each at its end), for the throughput rule.
    """

    def __init__(
        self,
        subject: Subject,
        *,
        target_reward: float | None = None,
        throughput_history: Sequence[float] = (),
        settings: TrainingSettings | None = None,
    ) -> None:
        self.subject = subject
        self.settings = settings = settings or TrainingSettings()
        self.target_reward = target_reward
        self._history = [value for value in throughput_history if math.isfinite(value) and value > 0]
        self._open: dict[FindingKind, Finding] = {}  # the latest finding of each open condition
        self._finite_streak = 0
        self._values: deque[float] = deque(maxlen=settings.loss_window)  # value losses before any explosion
        self._high_streak = 0
        self._low_streak = 0
        self._early_entropy: list[float] = []
        self._recent_entropy: deque[float] = deque(maxlen=settings.entropy_window)
        self._rewards: deque[float] = deque(maxlen=settings.reward_window)
        self._early_reward: float | None = None
        self._best: float | None = None
        self._best_at = 0
        self._episodes = 0
        self.steps_per_second: float | None = None

    def observe(self, episodes: Sequence[EpisodeFinished]) -> list[Finding]:
        findings: list[Finding] = []
        for episode in episodes:
            self._episodes += 1
            metrics = episode.metrics
            self._non_finite(episode, findings)
            self._value_loss(episode, findings)
            if math.isfinite(episode.reward):
                self._rewards.append(episode.reward)
            self._stall(episode, findings)
            self._entropy(episode, findings)
            speed = metrics.get("steps_per_second")
            if speed is not None and math.isfinite(speed):
                self.steps_per_second = speed
                self._throughput(episode, findings)
        return findings

    # Each rule: update its state, then open, update or resolve its finding.

    def _non_finite(self, episode: EpisodeFinished, findings: list[Finding]) -> None:
        bad = sorted(name for name in LOSSES if name in episode.metrics and not math.isfinite(episode.metrics[name]))
        kind = FindingKind.NON_FINITE_LOSS
        if bad:
            self._finite_streak = 0
            if kind not in self._open:
                evidence: dict[str, Evidence] = {"losses": ", ".join(bad), "timesteps": episode.timesteps}
                findings.append(
                    self._finding(
                        kind,
                        FindingState.OPEN,
                        episode,
                        Severity.CRITICAL,
                        evidence,
                        confidence=1.0,
                        impact=1.0,
                        summary=f"{', '.join(bad)} became non-finite at episode {episode.episode}",
                        recommendation=Recommendation(
                            Action.RETRAIN,
                            "diverged: retrain with a lower learning rate (and gradient clipping)",
                            {"run_id": self.subject.run_id, "learning_rate_factor": 0.3},
                        ),
                    )
                )
            return
        self._finite_streak += 1
        if kind in self._open and self._finite_streak >= self.settings.finite_to_clear:
            findings.append(self._resolved(kind, episode, f"losses finite for {self._finite_streak} episodes"))

    def _value_loss(self, episode: EpisodeFinished, findings: list[Finding]) -> None:
        settings = self.settings
        value = next((episode.metrics[name] for name in VALUE_LOSSES if name in episode.metrics), None)
        if value is None or not math.isfinite(value):
            return
        kind = FindingKind.VALUE_LOSS_EXPLOSION
        baseline = statistics.median(self._values) if len(self._values) >= settings.min_loss_history else None
        if baseline is None or baseline <= 0:
            self._values.append(abs(value))
            return
        ratio = abs(value) / baseline
        if kind not in self._open:
            self._high_streak = self._high_streak + 1 if ratio >= settings.explosion_factor else 0
            if self._high_streak < settings.sustain:
                if ratio < settings.explosion_factor:
                    self._values.append(abs(value))
                return
            evidence: dict[str, Evidence] = {
                "value_loss": value,
                "baseline_median": baseline,
                "ratio": ratio,
                "factor": settings.explosion_factor,
                "episodes_sustained": self._high_streak,
                "window": len(self._values),
            }
            findings.append(
                self._finding(
                    kind,
                    FindingState.OPEN,
                    episode,
                    Severity.CRITICAL if ratio >= 100 * settings.explosion_factor else Severity.WARNING,
                    evidence,
                    confidence=min(1.0, math.log10(ratio) / (2 * math.log10(settings.explosion_factor))),
                    impact=ratio,
                    summary=f"value loss {ratio:,.0f}x its recent median since episode {episode.episode}",
                    recommendation=Recommendation(
                        Action.RETRAIN,
                        "the critic is diverging: retrain with a lower learning rate or clipped gradients",
                        {"run_id": self.subject.run_id, "learning_rate_factor": 0.3, "max_grad_norm": 0.5},
                    ),
                    first_seen=episode.episode - settings.sustain + 1,
                ),
            )
            return
        self._low_streak = self._low_streak + 1 if ratio < settings.explosion_factor / 10 else 0
        if self._low_streak >= settings.sustain:
            self._low_streak = self._high_streak = 0
            findings.append(self._resolved(kind, episode, f"value loss back to {ratio:.1f}x its median"))

    def _stall(self, episode: EpisodeFinished, findings: list[Finding]) -> None:
        settings = self.settings
        if len(self._rewards) < settings.reward_window:
            return
        mean = statistics.fmean(self._rewards)
        if self._early_reward is None:
            self._early_reward = mean
        margin = settings.min_improvement * max(abs(self._best or 0.0), statistics.pstdev(self._rewards), 1e-9)
        kind = FindingKind.LEARNING_STALL
        if self._best is None or mean >= self._best + margin or self._solved(mean):
            self._best, self._best_at = max(mean, self._best if self._best is not None else mean), self._episodes
            if kind in self._open:
                findings.append(self._resolved(kind, episode, f"mean reward improved to {mean:.1f}"))
            return
        waited = self._episodes - self._best_at
        if kind in self._open or waited < settings.patience:
            return
        evidence: dict[str, Evidence] = {
            "best_mean_reward": self._best,
            "best_at_episode": episode.episode - waited,
            "recent_mean_reward": mean,
            "episodes_without_improvement": waited,
            "min_improvement": margin,
            "reward_window": settings.reward_window,
            "target_reward": self.target_reward,
        }
        findings.append(
            self._finding(
                kind,
                FindingState.OPEN,
                episode,
                Severity.INFO,
                evidence,
                confidence=min(1.0, waited / (2 * settings.patience)),
                impact=waited,
                summary=f"no improvement in {waited} episodes (best mean reward {self._best:.1f})",
                recommendation=Recommendation(
                    Action.RETRAIN,
                    "learning has stalled below its target: retrain with tuned hyperparameters or more exploration",
                    {"run_id": self.subject.run_id},
                ),
                first_seen=episode.episode - waited,
            ),
        )

    def _entropy(self, episode: EpisodeFinished, findings: list[Finding]) -> None:
        settings = self.settings
        loss = episode.metrics.get("entropy_loss")  # SB3 logs minus the mean entropy
        if loss is None or not math.isfinite(loss):
            return
        if len(self._early_entropy) < settings.entropy_window:
            self._early_entropy.append(-loss)
            return
        self._recent_entropy.append(-loss)
        if len(self._recent_entropy) < settings.entropy_window:
            return
        initial, current = statistics.median(self._early_entropy), statistics.median(self._recent_entropy)
        needed = max(settings.collapse_share * abs(initial), settings.min_collapse_nats)
        fallen = initial - current
        kind = FindingKind.ENTROPY_COLLAPSE
        recent_reward = statistics.fmean(self._rewards) if self._rewards else None
        improving = (
            recent_reward is not None
            and self._early_reward is not None
            and recent_reward > self._early_reward + settings.min_improvement * max(abs(self._early_reward), 1e-9)
        )
        solved = recent_reward is not None and self._solved(recent_reward)
        if kind in self._open:
            if fallen < needed / 2 or solved:
                findings.append(self._resolved(kind, episode, f"entropy back to {current:.3f}"))
            return
        if fallen < needed or improving or solved:
            return
        evidence: dict[str, Evidence] = {
            "initial_entropy": initial,
            "entropy": current,
            "fallen": fallen,
            "needed": needed,
            "window": settings.entropy_window,
            "recent_mean_reward": recent_reward,
            "early_mean_reward": self._early_reward,
        }
        findings.append(
            self._finding(
                kind,
                FindingState.OPEN,
                episode,
                Severity.WARNING,
                evidence,
                confidence=min(1.0, fallen / needed / 1.5),
                impact=fallen / max(abs(initial), 1e-9),
                summary=f"policy entropy fell from {initial:.3f} to {current:.3f} without the reward improving",
                recommendation=Recommendation(
                    Action.RETRAIN,
                    "the policy stopped exploring before it learned: retrain with an entropy bonus",
                    {"run_id": self.subject.run_id, "ent_coef": 0.01},
                ),
            )
        )

    def _throughput(self, episode: EpisodeFinished, findings: list[Finding]) -> None:
        settings = self.settings
        if len(self._history) < settings.min_throughput_runs or self._episodes < settings.throughput_warmup:
            return
        assert self.steps_per_second is not None
        median = statistics.median(self._history)
        spread = 1.4826 * statistics.median(abs(value - median) for value in self._history)
        spread = max(spread, 0.05 * median)  # identical history: a robust z needs some spread
        drop = (median - self.steps_per_second) / median
        z = (median - self.steps_per_second) / spread
        kind = FindingKind.THROUGHPUT_DROP
        if kind in self._open:
            if drop < settings.min_throughput_drop / 2:
                findings.append(self._resolved(kind, episode, f"env-steps/s back to {self.steps_per_second:.0f}"))
            return
        if drop < settings.min_throughput_drop or z < 3:
            return
        evidence: dict[str, Evidence] = {
            "steps_per_second": self.steps_per_second,
            "history_median": median,
            "history_runs": len(self._history),
            "robust_z": z,
            "relative_drop": drop,
        }
        findings.append(
            self._finding(
                kind,
                FindingState.OPEN,
                episode,
                Severity.WARNING,
                evidence,
                confidence=min(1.0, z / 6),
                impact=drop,
                summary=f"{self.steps_per_second:,.0f} env-steps/s, {drop:.0%} below the agent's usual {median:,.0f}",
                recommendation=Recommendation(
                    Action.INVESTIGATE,
                    "training runs slower than this agent's earlier runs: look at the worker's host and load",
                    {"run_id": self.subject.run_id},
                ),
            )
        )

    def _solved(self, mean_reward: float) -> bool:
        return self.target_reward is not None and mean_reward >= self.target_reward

    # Records.

    def _finding(
        self,
        kind: FindingKind,
        state: FindingState,
        episode: EpisodeFinished,
        severity: Severity,
        evidence: dict[str, Evidence],
        *,
        confidence: float,
        impact: float,
        summary: str,
        recommendation: Recommendation,
        first_seen: int | None = None,
    ) -> Finding:
        opened = self._open.get(kind)
        finding = Finding(
            kind=kind,
            state=state,
            severity=severity,
            subject=self.subject,
            first_seen=opened.first_seen if opened else first_seen if first_seen is not None else episode.episode,
            last_seen=episode.episode,
            evidence=evidence,
            confidence=max(0.0, min(1.0, confidence)),
            impact=float(impact),
            summary=summary,
            recommendation=recommendation,
        )
        self._open[kind] = finding
        return finding

    def _resolved(self, kind: FindingKind, episode: EpisodeFinished, summary: str) -> Finding:
        """The open finding, resolved: its severity, evidence and recommendation as last seen."""
        opened = self._open.pop(kind)
        return replace(opened, state=FindingState.RESOLVED, last_seen=episode.episode, summary=summary)
