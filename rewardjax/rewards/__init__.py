"""Reward functions for RL: `(prompts, completions, **record_fields) -> [B] float32`.

Exported here: verifiers, shaping, composition and isolation. The recipes' rewards are
imported from their modules (some need the trainer, which imports this package):
`scalar_rm` (a Bradley–Terry RM as a batched scorer for `RewardModelReward`),
`confidence` (RLCR), `probability` (RLPR, log-likelihood rewards, std filter), `dense`
(PRIME's online implicit PRM), `steps` (rule-based step rewards), `noise` (flipped rewards),
`progress` (PAV's progress under a prover), `self_reward` (LaSeR's last-token self-reward).
"""

from rewardjax.rewards.combine import CombinedReward, RewardOutput, RewardSpec
from rewardjax.rewards.isolation import Outcome, ProcessRunner, ThreadRunner
from rewardjax.rewards.math_answer import (
    MathAnswerReward,
    answers_match,
    extract_answer,
    extract_reference_answer,
    normalize_answer,
)
from rewardjax.rewards.model import RewardModelReward
from rewardjax.rewards.shaping import (
    THINK_ANSWER_PATTERN,
    FormatReward,
    LengthPenalty,
    OverlongPenalty,
    kimi_length_reward,
    linear_length_penalty,
    overlong_penalty,
)

__all__ = [
    "THINK_ANSWER_PATTERN",
    "CombinedReward",
    "FormatReward",
    "LengthPenalty",
    "MathAnswerReward",
    "Outcome",
    "OverlongPenalty",
    "ProcessRunner",
    "RewardModelReward",
    "RewardOutput",
    "RewardSpec",
    "ThreadRunner",
    "answers_match",
    "extract_answer",
    "extract_reference_answer",
    "kimi_length_reward",
    "linear_length_penalty",
    "normalize_answer",
    "overlong_penalty",
]
