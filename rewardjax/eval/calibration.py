"""Expected calibration error: of a Bradley–Terry reward model's preference probabilities,
and of a policy's stated confidences."""

from __future__ import annotations

from typing import Any

import numpy as np

from rewardjax.eval._checks import as_float_array, non_empty, same_shape


def preference_probability(scores_chosen: Any, scores_rejected: Any) -> np.ndarray:
    """Bradley–Terry probability that the chosen response is preferred, σ(r_c − r_r)."""
    r_c = as_float_array(scores_chosen, "scores_chosen", ndim=1)
    r_r = as_float_array(scores_rejected, "scores_rejected", ndim=1)
    same_shape(r_c, "scores_chosen", r_r, "scores_rejected")
    delta = r_c - r_r
    # Split by sign so exp never overflows for large reward gaps.
    e = np.exp(-np.abs(delta))
    return np.where(delta >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def expected_calibration_error(
    scores_chosen: Any, scores_rejected: Any, *, num_bins: int = 10
) -> float:
    """Top-label ECE of the preference probabilities p = σ(r_c − r_r), equal-width bins.

    The model predicts "chosen is preferred" when p > 1/2 and "rejected" otherwise,
    with confidence c = max(p, 1 − p); a prediction is correct iff p > 1/2 (a tie,
    p = 1/2, counts as wrong, like pairwise accuracy). With M bins
    B_m = ((m−1)/M, m/M] (c = 0 would fall in the first bin):

      ECE = Σ_m |B_m|/N · | acc(B_m) − conf(B_m) |

    where acc and conf are the mean correctness and mean confidence in the bin
    (Guo et al., "On Calibration of Modern Neural Networks", arXiv:1706.04599). Since
    c ≥ 1/2, only the upper half of the bins is populated. Folding p into the
    predicted class is what lets overconfidence show: the label is always "chosen", so
    a plain reliability diagram of p alone would only measure underconfidence.

    Args:
      scores_chosen: `[B]` reward of the preferred response.
      scores_rejected: `[B]` reward of the dispreferred response.
      num_bins: keyword-only number M of equal-width bins on [0, 1].

    Returns:
      ECE in [0, 1].

    Example:
      >>> round(expected_calibration_error([2.0, 2.0], [0.0, 4.0], num_bins=10), 4)
      0.3808
    """
    if num_bins < 1:
        raise ValueError(f"num_bins = {num_bins}: expected a positive integer")
    p = preference_probability(scores_chosen, scores_rejected)
    non_empty(p.size, "expected_calibration_error")
    return _binned_ece(np.maximum(p, 1.0 - p), (p > 0.5).astype(np.float64), num_bins)


def confidence_ece(confidence: Any, correct: Any, *, num_bins: int = 10) -> float:
    """Expected calibration error of stated confidences, equal-width bins on [0, 1].

        ECE = Σ_m |B_m|/N · | acc(B_m) − conf(B_m) |,   B_m = ((m−1)/M, m/M]

    (q = 0 falls in the first bin), the ECE RLCR ("Beyond Binary Rewards: Training LMs to
    Reason About Their Uncertainty", arXiv:2507.16806) reports, after Guo et al.
    (arXiv:1706.04599). Unlike `expected_calibration_error` (a preference probability
    folded into its predicted class), q here is already the probability that the answer
    is right.

    Example:
      >>> round(confidence_ece([0.9, 0.9, 0.2, 0.2], [1, 0, 0, 0]), 4)
      0.3
    """
    if num_bins < 1:
        raise ValueError(f"num_bins = {num_bins}: expected a positive integer")
    q = as_float_array(confidence, "confidence").reshape(-1)
    y = as_float_array(correct, "correct").reshape(-1)
    if q.shape != y.shape or q.size == 0:
        raise ValueError(f"confidence_ece: confidence has {q.size} values and correct "
                         f"{y.size}; expected the same non-zero number")
    if np.any((q < 0) | (q > 1)):
        raise ValueError(f"confidence_ece: confidence must be in [0, 1], got "
                         f"min {q.min()}, max {q.max()}")
    return _binned_ece(q, y, num_bins)


def _binned_ece(conf: np.ndarray, correct: np.ndarray, num_bins: int) -> float:
    bins = np.clip(np.ceil(conf * num_bins).astype(np.int64) - 1, 0, num_bins - 1)
    # |Σ_bin (acc − conf)| / N equals |B_m|/N · |acc(B_m) − conf(B_m)|.
    gap = np.bincount(bins, weights=correct - conf, minlength=num_bins)
    return float(np.abs(gap).sum() / conf.size)
