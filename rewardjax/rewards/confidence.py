"""Verbalised confidence: parse it, reward it with a Brier term, measure its calibration.

"Beyond Binary Rewards: Training LMs to Reason About Their Uncertainty" (RLCR, Damani et
al., arXiv:2507.16806) has the policy state a confidence q in [0, 1] after its answer
and rewards

    R_RLCR(y, q) = 1[y ≡ y*] − (q − 1[y ≡ y*])²

correctness plus the negative Brier score, a bounded proper scoring rule: for a fixed
answer the expected reward is maximised at q = P(correct), so calibration is rewarded
without trading away accuracy. A completion whose confidence cannot be parsed counts
as q = 0 (the paper's extractor does the same); the parse failures are counted by
`ConfidenceParsed`.

In RL the two terms are two `RewardSpec`s of a `CombinedReward` (`rlcr_reward`), so the
trainer's `accuracy` still reads the answer term and both terms are logged.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Sequence

import numpy as np

from rewardjax.rewards._batch import check_batch
from rewardjax.rewards.combine import CombinedReward, RewardSpec
from rewardjax.rewards.math_answer import MathAnswerReward

CONFIDENCE_PREFIX = "Confidence: "
_CONFIDENCE = re.compile(r"Confidence:\s*(-?\d+(?:\.\d*)?|-?\.\d+)(%?)", re.IGNORECASE)


def parse_confidence(text: str) -> float | None:
    """The last `Confidence: x` of `text` as a probability, or None.

    x in [0, 1] is read as is, x in (1, 100] (or any x with a `%` sign) as a
    percentage; anything else (missing, negative, above 100) is None.

    >>> parse_confidence("Answer: 7\\nConfidence: 0.8"), parse_confidence("Confidence: 85%")
    (0.8, 0.85)
    """
    matches = _CONFIDENCE.findall(text)
    if not matches:
        return None
    number, percent = matches[-1]
    value = float(number)
    if percent or value > 1:
        value /= 100
    return value if 0.0 <= value <= 1.0 else None


def rlcr_reward(correct: Any, confidence: Any) -> np.ndarray:
    """RLCR's reward 1[correct] − (q − 1[correct])² (arXiv:2507.16806, Eq. 2).

    Args:
      correct: `[B]` booleans (or 0/1).
      confidence: `[B]` stated confidences q in [0, 1] (a parse failure as 0).

    Returns:
      `[B]` float32 rewards in [−1, 1].

    Example:
      >>> rlcr_reward([True, False, True], [0.8, 0.8, 0.0])
      array([ 0.96, -0.64,  0.  ], dtype=float32)
    """
    y = np.asarray(correct, np.float64).reshape(-1)
    q = np.asarray(confidence, np.float64).reshape(-1)
    if y.shape != q.shape:
        raise ValueError(f"rlcr_reward: correct has {y.shape[0]} values, confidence "
                         f"{q.shape[0]}; expected one confidence per answer")
    if np.any((q < 0) | (q > 1)) or not np.all(np.isfinite(q)):
        raise ValueError(f"rlcr_reward: confidence must be in [0, 1], got {q.tolist()}")
    return (y - (q - y) ** 2).astype(np.float32)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BrierConfidenceReward:
    """The Brier term of RLCR, −(q − 1[correct])², as a reward callable.

    `verifier(prompts, completions, **fields) > 0.5` decides correctness (default: the
    math-verify answer reward on the `answer` field); q is `parse_confidence` of the
    completion, 0 when it has none (arXiv:2507.16806's extractor).

    Example:
      >>> brier = BrierConfidenceReward()
      >>> brier(["q", "q"], ["Answer: 7\\nConfidence: 0.9", "Answer: 5"], answer=["7", "7"])
      array([-0.01,  0.  ], dtype=float32)
    """

    verifier: Callable[..., Any] = MathAnswerReward()

    def __call__(self, prompts: Sequence[Any], completions: Sequence[str], **fields: Any
                 ) -> np.ndarray:
        check_batch(prompts, completions, fields, source="BrierConfidenceReward")
        correct = np.asarray(self.verifier(prompts, completions, **fields), np.float64) > 0.5
        q = np.array([parse_confidence(c) or 0.0 for c in completions])
        return (0.0 - (q - correct) ** 2).astype(np.float32)


def confidence_parsed(prompts: Sequence[Any], completions: Sequence[str], **fields: Any
                      ) -> np.ndarray:
    """1 where the completion states a parseable confidence, else 0 (a weight-0 reward
    in `rlcr_reward`, so the parse rate is logged as `reward/parsed/mean`)."""
    check_batch(prompts, completions, fields, source="confidence_parsed")
    return np.array([parse_confidence(c) is not None for c in completions], np.float32)


def rlcr_combined_reward(verifier: Callable[..., Any] | None = None, *,
                         timeout_s: float = 10.0) -> CombinedReward:
    """RLCR's reward for `RLTrainer`: `answer` (weight 1) + `brier` (weight 1) + `parsed`
    (weight 0, logged), arXiv:2507.16806. `RLConfig.accuracy_reward="answer"` then
    reports accuracy from the answer term alone."""
    verifier = verifier or MathAnswerReward()
    return CombinedReward([
        RewardSpec(name="answer", fn=verifier, weight=1.0, fallback=0.0, isolation="thread",
                   timeout_s=timeout_s),
        RewardSpec(name="brier", fn=BrierConfidenceReward(verifier=verifier), weight=1.0,
                   fallback=-1.0, isolation="thread", timeout_s=timeout_s),
        RewardSpec(name="parsed", fn=confidence_parsed, weight=0.0, fallback=0.0,
                   isolation="inline", timeout_s=None),
    ])
