"""Choosing one answer among N candidates: best-of-N, majority vote, weighted vote.

These return the chosen answer (and candidate); `rewardjax.eval.selection` scores a
selection rule by accuracy. Both follow the same tie rules: when several candidates
(or answers) share the best score (or vote total), the *choice* here is the tied one
that comes first (lowest candidate index, or the answer whose first vote comes first:
`tie_break="first"` of `eval.selection.best_of_n_accuracy`), and `Choice.tied` lists
all of them, so a caller can give the credit `eval.selection` gives by expectation
(the fraction of tied ones that are right).

Candidates without an answer (`None`, e.g. no "Answer:" line) never win a vote while
some candidate has one: self-consistency (arXiv:2203.11171) votes over parsed answers.
"""

from __future__ import annotations

from typing import Hashable, NamedTuple, Sequence

import numpy as np

from rewardjax.eval import selection as eval_selection


class Choice(NamedTuple):
    """The chosen candidate `index` and its `answer`; `tied`: every answer (votes) or
    candidate index (best-of-N) that tied with it, the choice first."""

    index: int
    answer: Hashable
    tied: tuple


def _check(answers: Sequence, scores=None, name: str = "") -> np.ndarray | None:
    if len(answers) == 0:
        raise ValueError(f"{name}: no candidates")
    if scores is None:
        return None
    s = np.asarray(scores, np.float64).reshape(-1)
    if s.shape[0] != len(answers):
        raise ValueError(f"{name}: {s.shape[0]} scores for {len(answers)} candidates")
    if np.any(np.isnan(s)):
        raise ValueError(f"{name}: scores contain NaN")
    return s


def best_of_n(answers: Sequence[Hashable], scores: Sequence[float]) -> Choice:
    """The candidate with the highest score (Cobbe et al., "Training Verifiers to Solve
    Math Word Problems", arXiv:2110.14168); ties go to the lowest index.

    >>> best_of_n(["4", "5", "6"], [0.2, 0.9, 0.9])
    Choice(index=1, answer='5', tied=(1, 2))
    """
    s = _check(answers, scores, "best_of_n")
    top = np.flatnonzero(s == s.max())
    return Choice(index=int(top[0]), answer=answers[int(top[0])], tied=tuple(int(i) for i in top))


def _vote(answers: Sequence[Hashable], weights: np.ndarray, name: str) -> Choice:
    if np.any(weights < 0):
        raise ValueError(f"{name}: weights must be non-negative (e.g. probabilities), got "
                         f"{weights.min()}")
    has = [a is not None for a in answers]
    pool = [i for i, h in enumerate(has) if h] or list(range(len(answers)))
    totals: dict[Hashable, float] = {}
    first: dict[Hashable, int] = {}
    for i in pool:
        totals[answers[i]] = totals.get(answers[i], 0.0) + float(weights[i])
        first.setdefault(answers[i], i)
    best = max(totals.values())
    tied = sorted((a for a, t in totals.items() if t == best), key=lambda a: first[a])
    return Choice(index=first[tied[0]], answer=tied[0], tied=tuple(tied))


def majority_vote(answers: Sequence[Hashable]) -> Choice:
    """The most frequent answer (self-consistency, Wang et al., arXiv:2203.11171).

    >>> majority_vote(["4", "5", "5", None, None, None]).answer
    '5'
    """
    _check(answers, None, "majority_vote")
    return _vote(answers, np.ones(len(answers)), "majority_vote")


def weighted_vote(answers: Sequence[Hashable], scores: Sequence[float]) -> Choice:
    """The answer with the largest total score (Li et al., "Making Large Language Models
    Better Reasoners with Step-Aware Verifier", arXiv:2206.02336).

    >>> weighted_vote(["4", "4", "5"], [0.2, 0.3, 0.9]).answer
    '5'
    """
    return _vote(answers, _check(answers, scores, "weighted_vote"), "weighted_vote")


def expected_credit(choice: Choice, answers: Sequence[Hashable], correct: Sequence[bool], *,
                    by: str) -> float:
    """The credit `eval.selection` gives this choice: the fraction of its ties that are
    right (`by="index"` for best-of-N ties, `"answer"` for vote ties)."""
    ok = np.asarray(correct, bool)
    if by == "index":
        return float(np.mean(ok[list(choice.tied)]))
    if by != "answer":
        raise ValueError(f"by must be 'index' or 'answer', got {by!r}")
    return float(np.mean([np.mean(ok[[i for i, a in enumerate(answers) if a == t]])
                          for t in choice.tied]))


def selection_accuracies(answers: Sequence[Sequence[Hashable]], correct: Sequence[Sequence[bool]],
                         scores: dict[str, Sequence[Sequence[float]]]) -> dict[str, float]:
    """Accuracy of majority vote and of best-of-N / weighted vote for each named score,
    by `eval.selection`'s rules (ties by expectation). Unanswered candidates are left
    out of the votes, as `majority_vote` does (a prompt with none keeps them all)."""
    keep = [[i for i, a in enumerate(ans) if a is not None] or list(range(len(ans)))
            for ans in answers]
    pick = lambda rows: [[row[i] for i in k] for row, k in zip(rows, keep)]  # noqa: E731
    out = {"majority": eval_selection.majority_vote_accuracy(pick(answers), pick(correct))}
    for name, s in scores.items():
        out[f"best_of_n/{name}"] = eval_selection.best_of_n_accuracy(np.asarray(s), np.asarray(correct))
        out[f"weighted/{name}"] = eval_selection.weighted_vote_accuracy(pick(answers), pick(correct),
                                                                       pick(s))
    return out
