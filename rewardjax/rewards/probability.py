"""Verifier-free rewards read from the policy's own probability of the reference answer.

RLPR ("RLPR: Extrapolating RLVR to General Domains without Verifiers", Yu et al.,
arXiv:2506.18254): the response o = z ‖ y has its answer y replaced by the reference y*;
the reward is the policy's mean token probability of y* after its own reasoning z,
debiased by the same probability with no reasoning and clipped below at 0:

    r  = (1/|y*|) Σ_t π_θ(y*_t | x, z, y*_<t),     r' = same with z empty
    r̂  = max(r − r', 0)                            (≤ 1 since r ≤ 1)

and prompts whose rewards vary too little are dropped: a group is kept when its reward
std is at least β·EMA of the batches' mean group std (EMA ratio 0.99; β = 0.9–1.0 in the
released scripts, the EMA starting at the first batch's mean).

The log-likelihood variant ("Likelihood-Based Reward Designs for General LLM Reasoning",
arXiv:2602.03979) rewards Σ_t log π_θ(y*_t | x, z, y*_<t) instead of the mean probability.

Both read `RLExtensions.probes` log-probs: `rlpr_extensions` builds the probes (the
reasoning with its answer cut, then the reference answer; and the answer alone), the
reward transform and the filter.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, Mapping

import numpy as np

from rewardjax.train.rl_extensions import GroupFilter, ProbeLogProbs, Probes, RLExtensions

MODES = ("probability", "log_likelihood")


def mean_token_probability(logp, target_mask) -> np.ndarray:
    """(1/|y|) Σ_t exp(log p_t) over the target's tokens: `[..., K]` -> `[...]`."""
    m = np.asarray(target_mask, bool)
    p = np.where(m, np.exp(np.asarray(logp, np.float64)), 0.0)
    return (p.sum(-1) / np.maximum(m.sum(-1), 1)).astype(np.float32)


def sequence_log_likelihood(logp, target_mask) -> np.ndarray:
    """Σ_t log p_t over the target's tokens: `[..., K]` -> `[...]`."""
    return np.where(np.asarray(target_mask, bool), np.asarray(logp), 0.0).sum(-1).astype(np.float32)


def debiased_probability_reward(with_reasoning, without_reasoning) -> np.ndarray:
    """RLPR's r̂ = max(r − r', 0) (arXiv:2506.18254): the probability the reasoning adds
    to the reference answer over the answer alone.

    Example:
      >>> debiased_probability_reward(np.array([0.9, 0.2]), np.array([0.5, 0.5]))
      array([0.4, 0. ], dtype=float32)
    """
    return np.maximum(np.asarray(with_reasoning) - np.asarray(without_reasoning), 0.0).astype(
        np.float32)


def answer_swap_probes(answer_marker: str = "Answer:") -> Callable[[Mapping, str], list]:
    """Probe texts of RLPR: (reasoning, reference answer line) and ("", reference line).

    The reasoning z is the completion up to its last `answer_marker` (the whole
    completion when it has none); the target is `answer_marker + " " + record answer`.
    """
    def texts(fields: Mapping, completion: str) -> list[tuple[str, str]]:
        cut = completion.rfind(answer_marker)
        reasoning = completion if cut < 0 else completion[:cut]
        target = f"{answer_marker} {fields['answer']}"
        return [(reasoning, target), ("", target)]
    return texts


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProbabilityReward:
    """The reward transform: probe 0 (after the reasoning) against probe 1 (answer alone).

    mode="probability": RLPR's debiased mean token probability; "log_likelihood": the
    reference answer's log-likelihood after the reasoning (no debiasing).
    """

    mode: str = "probability"

    def __post_init__(self):
        if self.mode not in MODES:
            raise ValueError(f"ProbabilityReward.mode must be one of {MODES}, got {self.mode!r}")

    def __call__(self, batch, probes: ProbeLogProbs) -> np.ndarray:
        shape = batch.rewards.shape
        if self.mode == "log_likelihood":
            return sequence_log_likelihood(probes.policy[0], probes.target_mask[0]).reshape(shape)
        p = mean_token_probability(probes.policy, probes.target_mask)
        return debiased_probability_reward(p[0], p[1]).reshape(shape)


def std_filter(*, beta: float = 1.0, ema: float = 0.99) -> GroupFilter:
    """RLPR's standard-deviation filter: keep a group when its reward std ≥ β·m, m the
    EMA (ratio `ema`) of the batches' mean group std, started at the first batch's."""
    if beta < 0 or not 0 <= ema < 1:
        raise ValueError(f"std_filter needs beta >= 0 and 0 <= ema < 1, got {beta}, {ema}")

    def keep(state, rewards):
        std = np.asarray(rewards, np.float64).std(-1)
        m = float(state["ema"])
        m = std.mean() if math.isnan(m) else ema * m + (1 - ema) * std.mean()
        return {"ema": np.asarray(m, np.float32)}, std >= beta * m

    return GroupFilter(keep=keep, init=lambda: {"ema": np.asarray(np.nan, np.float32)})


def rlpr_extensions(*, mode: str = "probability", max_tokens: int = 48, beta: float = 1.0,
                    ema: float = 0.99, answer_marker: str = "Answer:",
                    filter_groups: bool = True) -> RLExtensions:
    """The loop's extensions for RLPR (or its log-likelihood variant): probes, reward,
    and (with `filter_groups`) the std filter."""
    return RLExtensions(
        probes=Probes(texts=answer_swap_probes(answer_marker), num_probes=2,
                      max_tokens=max_tokens),
        reward_transform=ProbabilityReward(mode=mode),
        group_filter=std_filter(beta=beta, ema=ema) if filter_groups else None)
