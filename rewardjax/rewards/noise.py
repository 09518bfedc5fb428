"""Rewards flipped at random, to measure how RL degrades with a wrong verifier.

"The Climb Carves Wisdom Deeper Than the Summit: On the Noisy Rewards in Learning to
Reason" (Lv et al., arXiv:2505.22653): each 0/1 outcome reward is replaced by its
opposite with probability p, independently per sample, and pass@1 is read against p.
"""

from __future__ import annotations

import dataclasses

import numpy as np


def flip_rewards(rewards, p: float, rng: np.random.Generator) -> np.ndarray:
    """0/1 rewards with each one flipped (r -> 1 − r) with probability `p`.

    Args:
      rewards: any shape of rewards in {0, 1}.
      p: the flip probability, in [0, 1].
      rng: the source of the flips.

    Example:
      >>> flip_rewards(np.array([1., 0.]), 1.0, np.random.default_rng(0))
      array([0., 1.], dtype=float32)
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"flip probability p must be in [0, 1], got {p}")
    r = np.asarray(rewards, np.float32)
    if np.any((r != 0) & (r != 1)):
        raise ValueError(f"flip_rewards takes 0/1 rewards, got values {np.unique(r)[:5]}")
    return np.where(rng.random(r.shape) < p, 1.0 - r, r).astype(np.float32)


@dataclasses.dataclass(frozen=True, kw_only=True)
class NoisyRewards:
    """An `RLExtensions.reward_transform` flipping the batch's 0/1 rewards with
    probability `p`; the flips are a pure function of (seed, step), so a resumed run
    sees the same noise."""

    p: float
    seed: int = 0

    def __post_init__(self):
        if not 0.0 <= self.p <= 1.0:
            raise ValueError(f"NoisyRewards.p must be in [0, 1], got {self.p}")

    def __call__(self, batch, probes=None) -> np.ndarray:
        return flip_rewards(batch.rewards, self.p, np.random.default_rng([self.seed, batch.step]))
