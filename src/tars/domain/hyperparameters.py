"""The hyperparameters each algorithm accepts, their types and bounds, and the memory caps.

Names are Stable-Baselines3's constructor parameters (a test checks them against the real
signatures), plus two of T.A.R.S.'s own: ``n_envs`` (parallel environments) and ``noise_std``
(Gaussian action noise for the deterministic off-policy algorithms).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from tars.domain.errors import InvalidField

OWN_PARAMETERS = frozenset({"n_envs", "noise_std"})


@dataclass(frozen=True)
class Param:
    kind: type
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    nullable: bool = False
    choices: tuple[str, ...] = ()

    def check(self, name: str, value: Any) -> None:
        field = f"hyperparameters.{name}"
        if value is None:
            if not self.nullable:
                raise InvalidField(field, "must not be null")
            return
        if isinstance(value, str) and value in self.choices:
            return
        if self.kind is bool:
            if not isinstance(value, bool):
                raise InvalidField(field, "must be true or false")
            return
        if self.kind is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise InvalidField(field, f"must be an integer, not {type(value).__name__}")
        elif self.kind is float and (
            isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
        ):
            extra = f" or one of {', '.join(self.choices)}" if self.choices else ""
            raise InvalidField(field, f"must be a finite number{extra}, not {value!r}")
        elif self.kind is dict:
            if not isinstance(value, dict):
                raise InvalidField(field, "must be an object")
            return
        if self.minimum is not None:
            if self.exclusive_minimum and value <= self.minimum:
                raise InvalidField(field, f"must be greater than {self.minimum}")
            if not self.exclusive_minimum and value < self.minimum:
                raise InvalidField(field, f"must be at least {self.minimum}")
        if self.maximum is not None and value > self.maximum:
            raise InvalidField(field, f"must be at most {self.maximum}")


POSITIVE = Param(float, 0, exclusive_minimum=True)
FRACTION = Param(float, 0, 1, exclusive_minimum=True)
PROBABILITY = Param(float, 0, 1)
COUNT = Param(int, 1)

_COMMON = {
    "learning_rate": POSITIVE,
    "gamma": FRACTION,
    "stats_window_size": COUNT,
    "policy_kwargs": Param(dict),
    "n_envs": Param(int, 1, 64),
}
_ON_POLICY = {
    **_COMMON,
    "n_steps": COUNT,
    "gae_lambda": FRACTION,
    "ent_coef": Param(float, 0),
    "vf_coef": Param(float, 0),
    "max_grad_norm": POSITIVE,
    "normalize_advantage": Param(bool),
    "use_sde": Param(bool),
    "sde_sample_freq": Param(int, -1),
}
_OFF_POLICY = {
    **_COMMON,
    "buffer_size": COUNT,
    "learning_starts": Param(int, 0),
    "batch_size": COUNT,
    "tau": FRACTION,
    "train_freq": COUNT,
    "gradient_steps": Param(int, -1),
}
_CONTINUOUS_OFF_POLICY = {**_OFF_POLICY, "noise_std": Param(float, 0)}

ALGORITHM_PARAMETERS: dict[str, dict[str, Param]] = {
    "ppo": {
        **_ON_POLICY,
        "batch_size": COUNT,
        "n_epochs": COUNT,
        "clip_range": POSITIVE,
        "target_kl": Param(float, 0, exclusive_minimum=True, nullable=True),
    },
    "a2c": {**_ON_POLICY, "rms_prop_eps": POSITIVE, "use_rms_prop": Param(bool)},
    "dqn": {
        **_OFF_POLICY,
        "target_update_interval": COUNT,
        "exploration_fraction": FRACTION,
        "exploration_initial_eps": PROBABILITY,
        "exploration_final_eps": PROBABILITY,
        "max_grad_norm": POSITIVE,
    },
    # SB3's DDPG keeps a fixed episode-statistics window.
    "ddpg": {k: v for k, v in _CONTINUOUS_OFF_POLICY.items() if k != "stats_window_size"},
    "td3": {
        **_CONTINUOUS_OFF_POLICY,
        "policy_delay": COUNT,
        "target_policy_noise": Param(float, 0),
        "target_noise_clip": Param(float, 0),
    },
    "sac": {
        **_CONTINUOUS_OFF_POLICY,
        "ent_coef": Param(float, 0, exclusive_minimum=True, choices=("auto",)),
        "target_update_interval": COUNT,
        "use_sde": Param(bool),
    },
}

_POLICY_KWARGS = {"net_arch", "log_std_init", "ortho_init"}


@dataclass(frozen=True)
class MemoryLimits:
    """v1.0.1's memory settings: no buffer or in-process history may grow past these."""

    buffer_max_size: int = 10_000
    clear_frequency: int = 1_000


def validate_hyperparameters(algorithm: str, values: dict[str, Any]) -> None:
    """Refuse unknown, ill-typed or out-of-bounds parameters."""
    specs = ALGORITHM_PARAMETERS[algorithm]
    unknown = sorted(set(values) - set(specs))
    if unknown:
        raise InvalidField(
            f"hyperparameters.{unknown[0]}",
            f"{algorithm} has no parameter {', '.join(unknown)}; it takes {', '.join(sorted(specs))}",
        )
    for name, value in values.items():
        specs[name].check(name, value)
    if "policy_kwargs" in values:
        _check_policy_kwargs(values["policy_kwargs"])


def check_memory(algorithm: str, values: dict[str, Any], limits: MemoryLimits) -> None:
    """Refuse an effective configuration (defaults included) whose buffers pass the memory caps."""
    cap = limits.buffer_max_size
    n_envs = int(values.get("n_envs", 1))
    if "buffer_size" in ALGORITHM_PARAMETERS[algorithm] and int(values.get("buffer_size", cap + 1)) > cap:
        raise InvalidField("hyperparameters.buffer_size", f"the replay buffer may hold at most {cap} transitions")
    if "n_steps" in values and algorithm in ("ppo", "a2c") and int(values["n_steps"]) * n_envs > cap:
        raise InvalidField(
            "hyperparameters.n_steps", f"the rollout buffer n_steps x n_envs may hold at most {cap} transitions"
        )
    if int(values.get("stats_window_size", 0)) > limits.clear_frequency:
        raise InvalidField(
            "hyperparameters.stats_window_size", f"episode histories are bounded to {limits.clear_frequency}"
        )


def _check_policy_kwargs(value: dict[str, Any]) -> None:
    unknown = sorted(set(value) - _POLICY_KWARGS)
    if unknown:
        raise InvalidField("hyperparameters.policy_kwargs", f"unsupported keys {', '.join(unknown)}")
    arch = value.get("net_arch")
    if arch is not None and (
        not isinstance(arch, list)
        or not 1 <= len(arch) <= 8
        or not all(isinstance(n, int) and not isinstance(n, bool) and 1 <= n <= 4096 for n in arch)
    ):
        raise InvalidField("hyperparameters.policy_kwargs", "net_arch must be a list of 1-8 layer sizes (1-4096)")
    if "ortho_init" in value and not isinstance(value["ortho_init"], bool):
        raise InvalidField("hyperparameters.policy_kwargs", "ortho_init must be true or false")
    log_std = value.get("log_std_init")
    if log_std is not None and (isinstance(log_std, bool) or not isinstance(log_std, int | float)):
        raise InvalidField("hyperparameters.policy_kwargs", "log_std_init must be a number")
