"""Reward-model metrics and benchmark scorers (host-side numpy functions)."""

from rewardjax.eval.calibration import (
    confidence_ece,
    expected_calibration_error,
    preference_probability,
)
from rewardjax.eval.pairwise import pairwise_accuracy, pairwise_correct, subset_accuracy
from rewardjax.eval.processbench import (
    ProcessBenchScores,
    first_error_index,
    first_error_indices,
    processbench_average_f1,
    processbench_scores,
)
from rewardjax.eval.rewardbench import (
    REWARDBENCH_EXAMPLE_COUNTS,
    REWARDBENCH_PRIOR_SETS,
    REWARDBENCH_SECTIONS,
    rewardbench_overall_score,
    rewardbench_prior_sets_score,
    rewardbench_scores,
    rewardbench_section_scores,
)
from rewardjax.eval.rewardbench2 import (
    RB2_SUBSETS,
    TiesPrompt,
    TiesScore,
    parse_ties_id,
    rewardbench2_accuracy,
    rewardbench2_overall_score,
    rewardbench2_results,
    rewardbench2_ties_score,
)
from rewardjax.eval.selection import (
    best_of_n_accuracy,
    majority_vote_accuracy,
    weighted_vote_accuracy,
)

__all__ = [
    "ProcessBenchScores",
    "RB2_SUBSETS",
    "REWARDBENCH_EXAMPLE_COUNTS",
    "REWARDBENCH_PRIOR_SETS",
    "REWARDBENCH_SECTIONS",
    "TiesPrompt",
    "TiesScore",
    "best_of_n_accuracy",
    "confidence_ece",
    "expected_calibration_error",
    "first_error_index",
    "first_error_indices",
    "majority_vote_accuracy",
    "pairwise_accuracy",
    "pairwise_correct",
    "parse_ties_id",
    "preference_probability",
    "processbench_average_f1",
    "processbench_scores",
    "rewardbench2_accuracy",
    "rewardbench2_overall_score",
    "rewardbench2_results",
    "rewardbench2_ties_score",
    "rewardbench_overall_score",
    "rewardbench_prior_sets_score",
    "rewardbench_scores",
    "rewardbench_section_scores",
    "subset_accuracy",
    "weighted_vote_accuracy",
]
