"""Dense (token-level) rewards for the RL loop's `RLExtensions.dense` point.

`ImplicitPRMReward` is PRIME's implicit process reward model ("Process Reinforcement
through Implicit Rewards", arXiv:2502.01456): a language model π_φ, initialised like
the frozen reference π_ref from the SFT policy, whose token rewards are

    r_φ(y_t) = β log π_φ(y_t | y_<t) / π_ref(y_t | y_<t)

and which is trained online, on each step's rollouts, with the cross-entropy loss of
its outcome reward r_φ(y) = Σ_t r_φ(y_t) against the verifier's 0/1 label ("Free
Process Rewards without Process Labels", arXiv:2412.01981). Its `TrainState` is placed
on the trainer's mesh by the same rules as the policy and is checkpointed by the RL
loop beside the policy's.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from rewardjax.losses import prm as prm_losses
from rewardjax.models import ModelConfig
from rewardjax.train import placement as placement_lib
from rewardjax.train.rl import teacher_forced_logprobs
from rewardjax.train.rl_extensions import RolloutBatch
from rewardjax.train.state import OptimizerConfig, TrainState, init_state, make_train_step, split_micro

UPDATES = ("before", "after", "none")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ImplicitPRMConfig:
    """PRIME's online implicit PRM.

    Attributes:
      beta: β of r_φ = β log π_φ/π_ref (PRIME: 0.05).
      optimizer: the PRM's own optimizer (PRIME: lr 1e-6 on 7B, like the policy).
      update: "before" — train on the rollout, then score it with the updated PRM;
        "after" — score with the PRM that has not yet seen the rollout, then train;
        "none" — a frozen implicit PRM.
      micro_batches: gradient accumulation of the PRM's update.
    """

    beta: float = 0.05
    optimizer: OptimizerConfig = OptimizerConfig(lr=1e-6, total_steps=1000, min_lr_ratio=1.0)
    update: str = "after"
    micro_batches: int = 1

    def __post_init__(self):
        if self.beta <= 0:
            raise ValueError(f"ImplicitPRMConfig.beta must be > 0, got {self.beta}")
        if self.update not in UPDATES:
            raise ValueError(f"ImplicitPRMConfig.update must be one of {UPDATES}, "
                             f"got {self.update!r}")
        if self.micro_batches <= 0:
            raise ValueError(f"ImplicitPRMConfig.micro_batches must be > 0, "
                             f"got {self.micro_batches}")


def _prm_loss(params, mb, *, config: ModelConfig, T: int, beta: float):
    logp = teacher_forced_logprobs(params, mb["tokens"], mb["mask"], config=config, T=T)
    loss_b, metrics = prm_losses.implicit_prm_ce_loss(logp, mb["ref_logp"], mb["completion_mask"],
                                                      mb["outcome"], beta=beta)
    return jnp.mean(loss_b), metrics


class ImplicitPRMReward:
    """(b, d) PRIME's implicit PRM as the RL loop's dense reward, updated online.

    `init` copies the policy's params into the PRM's `TrainState` (placed on the
    trainer's mesh) and keeps the frozen reference (the same SFT params); `step` scores
    the rollout's completion tokens and trains on its outcome labels, in the order
    `config.update` names.
    """

    def __init__(self, config: ImplicitPRMConfig = ImplicitPRMConfig()):
        self.config = config
        self.reference = None
        self._update = None
        self._logp = None
        self._placement = None

    def init(self, trainer, policy_params) -> TrainState:
        cfg = self.config
        T = trainer.rl.max_new_tokens
        self._placement = trainer.placement
        self.reference = policy_params
        optimizer = cfg.optimizer.make()
        state = init_state(jax.tree.map(jnp.array, policy_params), optimizer)
        shardings = None
        if self._placement is not None:
            state, shardings = self._placement.state(state, optimizer)
        loss = functools.partial(_prm_loss, config=trainer.config, T=T, beta=cfg.beta)
        self._update = make_train_step(loss, optimizer, config=cfg.optimizer, accumulate="mean",
                                       placement=self._placement, state_sharding=shardings)
        self._logp = jax.jit(functools.partial(teacher_forced_logprobs, config=trainer.config, T=T))
        return state

    def _token_logp(self, params, batch: RolloutBatch) -> np.ndarray:
        with placement_lib.context(self._placement):
            return np.asarray(self._logp(params, batch.tokens, batch.mask))

    def step(self, state: TrainState, batch: RolloutBatch):
        cfg = self.config
        cmask = np.asarray(batch.completion_mask, bool)
        ref_logp = self._token_logp(self.reference, batch) * cmask
        mb = {"tokens": batch.tokens, "mask": batch.mask, "completion_mask": cmask,
              "ref_logp": ref_logp.astype(np.float32),
              "outcome": np.asarray(batch.correct, np.float32).reshape(-1)}
        metrics = {}

        def train(state):
            state, m = self._update(state, split_micro(mb, cfg.micro_batches))
            m = jax.device_get(m)
            metrics.update({"prm/loss": float(m["loss"]), "prm/accuracy": float(m["prm/accuracy"])})
            return state

        if cfg.update == "before":
            state = train(state)
        logp = self._token_logp(state.params, batch)
        rewards = cfg.beta * (logp - ref_logp) * cmask
        if cfg.update == "after":
            state = train(state)
        outcome = rewards.sum(-1)
        correct = mb["outcome"] > 0.5
        metrics["prm/reward_mean"] = float(outcome.mean())
        # before its first update the PRM equals the reference, so every reward is 0
        metrics["prm/outcome_accuracy"] = float(np.mean((outcome > 0) == correct))
        return state, rewards.astype(np.float32), metrics
