"""An auxiliary loss with per-row targets beside the RL objective.

`RLExtensions` has no point where the update's loss reads values known only at rollout
time: a verifier's label per completion, a class weight. LaSeR ("LaSeR: Reinforcement
Learning with Last-Token Self-Rewarding", arXiv:2510.14943) needs exactly that: an MSE
between the policy's own last-token score and each rollout's verifier reward, trained in
the same update as the policy loss. `AuxLossTrainer` is the RL trainer with one such
term:

    rollout ─ (as RLTrainer) ─► kept rows ─ targets(batch) ─► aux_targets [R, K]
    update: loss = rl objective(mb) + coef · aux.loss(policy params, mb)   (mb["aux_targets"])

The kept rows are read through the dense-reward point (a pass-through around any dense
reward already configured), so the targets line up with the rollout's rows whatever
the group filter or prompt rewriting did. Micro-batches add up exactly when `aux.loss`
returns its sum over the micro-batch's rows divided by `rows`, the minibatch's count.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import Any, Callable

import numpy as np

from rewardjax.train.rl import Rollout, RLTrainer, rl_loss
from rewardjax.train.rl_extensions import RLExtensions, RolloutBatch

# The rollout with one more per-row leaf, which `RLTrainer.update` slices into every
# minibatch like the others.
AuxRollout = collections.namedtuple("AuxRollout", Rollout._fields + ("aux_targets",))


@dataclasses.dataclass(frozen=True, kw_only=True)
class AuxiliaryLoss:
    """Attributes:
      targets: `RolloutBatch -> [R, K]` float32 values per kept row (the loss reads them
        as `mb["aux_targets"]`).
      loss: `(policy_params, mb, *, config, rows, **apply_kwargs) -> (loss, metrics)`:
        the micro-batch's summed per-row loss over `rows` (the minibatch's rows).
      coef: its weight next to the RL objective.
    """

    targets: Callable[[RolloutBatch], np.ndarray]
    loss: Callable[..., Any]
    coef: float = 1.0

    def __post_init__(self):
        if self.coef < 0:
            raise ValueError(f"AuxiliaryLoss.coef must be >= 0, got {self.coef}")


class _KeptRows:
    """The dense-reward point as a tap: remembers the kept rows' batch, then delegates."""

    def __init__(self, inner):
        self.inner, self.batch = inner, None

    def init(self, trainer, policy_params):
        return None if self.inner is None else self.inner.init(trainer, policy_params)

    def step(self, state, batch: RolloutBatch):
        self.batch = batch
        if self.inner is None:
            return state, np.zeros(batch.completion_mask.shape, np.float32), {}
        return self.inner.step(state, batch)


class AuxLossTrainer(RLTrainer):
    """`RLTrainer` whose update adds `aux.coef · aux.loss` (see the module docstring);
    every other argument is RLTrainer's."""

    def __init__(self, *, aux: AuxiliaryLoss, loss_fn: Callable = rl_loss,
                 extensions: RLExtensions | None = None, **kwargs):
        extensions = extensions or RLExtensions()
        self._tap = _KeptRows(extensions.dense)
        rl = kwargs["rl"]
        rows = rl.prompts_per_step * rl.group_size // rl.minibatches

        def combined(params, mb, *, config, rl, **apply_kwargs):
            loss, metrics = loss_fn(params, mb, config=config, rl=rl, **apply_kwargs)
            policy = params["policy"] if rl.uses_critic else params
            extra, aux_metrics = aux.loss(policy, mb, config=config, rows=rows, **apply_kwargs)
            return loss + aux.coef * extra, {**metrics, **aux_metrics, "loss/aux": extra}

        super().__init__(loss_fn=combined, extensions=dataclasses.replace(extensions, dense=self._tap),
                         **kwargs)
        self.aux = aux

    def rollout(self, state, step: int, ref_params=None):
        rollout, metrics = super().rollout(state, step, ref_params)
        targets = np.asarray(self.aux.targets(self._tap.batch), np.float32)
        R = rollout.tokens.shape[0]
        if targets.ndim != 2 or targets.shape[0] != R:
            raise ValueError(f"AuxiliaryLoss.targets returned shape {targets.shape}; expected "
                             f"[{R} rows, K]")
        return AuxRollout(*rollout, aux_targets=targets), metrics
