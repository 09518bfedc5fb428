"""Judges and rewards, both ways round.

Training a judge with GRPO (`judge_training_reward`): the judge's completion is a
judgment; its reward is 1 when the strictly parsed verdict equals the label, plus a
format reward of 1 when the verdict parses at all:

    r = 1[parse(y) = label] + w_format · 1[parse(y) succeeds]

RM-R1 ("RM-R1: Reward Modeling as Reasoning", arXiv:2505.02387) and Think-RM
("Think-RM: Enabling Long-Horizon Reasoning in Generative Reward Models") train generative judges this way; the label travels with the judge
prompt as the record field `label`.

A judge as the RL loop's reward: `pointwise_judge_reward` wraps a `PointwiseJudge` (one
batched forward pass per chunk of completions); `PairwiseJudgeReward` turns a pairwise
judge into per-sample rewards, by comparison with a reference response or by win rate
within each group of G samples of one prompt (the Pairwise-RL paper: a generative
pairwise reward model trained and used with pairwise PPO); `GRMJudgeReward` samples one
DeepSeek-GRM judgment per completion (the judge re-solves, then scores) and rescales its
score to [0, 1].
"""

from __future__ import annotations

import collections
from typing import Sequence

import jax
import numpy as np

from rewardjax.judges import formats, grm
from rewardjax.judges.generative import GenerativeJudge
from rewardjax.judges.scoring import PairwiseJudge, PointwiseJudge
from rewardjax.rewards import CombinedReward, RewardModelReward, RewardSpec
from rewardjax.rewards._batch import check_batch


class VerdictMatch:
    """1.0 when the completion's strictly parsed verdict equals the record's `label`."""

    def __init__(self, choices: Sequence[str]):
        self.choices = tuple(choices)

    def __call__(self, prompts, completions, *, label, **_) -> list[float]:
        check_batch(prompts, completions, {"label": label}, source="VerdictMatch")
        return [float(formats.parse_verdict(c, choices=self.choices).choice == str(l))
                for c, l in zip(completions, label)]


class VerdictFormat:
    """1.0 when the completion's verdict parses strictly (`formats.parse_verdict`)."""

    def __init__(self, choices: Sequence[str]):
        self.choices = tuple(choices)

    def __call__(self, prompts, completions, **_) -> list[float]:
        return [float(formats.parse_verdict(c, choices=self.choices).ok) for c in completions]


class BothOrdersVerdictMatch:
    """Verdict match that needs both orders of a pair: records 2p and 2p + 1 of a batch
    are the two orders of one pair (same record field `pair`), each sampled G times in
    the RL loop's row order; sample g of either order gets

        r = 1[v(2p, g) = label(2p)] · 1[v(2p + 1, g) = label(2p + 1)]

    (both verdicts name the same, correct response). The samples of the two orders are
    independent, so E[r] = p_AB · p_BA, the probability that both orders are judged
    right: a judge that answers by position (p_AB = 1, p_BA = 0) earns 0 here and 1/2
    under `VerdictMatch`. RM-R1 (arXiv:2505.02387) trains on both orders of each pair
    with the plain verdict reward; coupling the two orders in one reward is this
    project's extension (docs/experiments/rm_r1.md).
    """

    def __init__(self, choices: Sequence[str], *, group_size: int):
        if group_size < 1:
            raise ValueError(f"BothOrdersVerdictMatch group_size must be >= 1, got {group_size}")
        self.match, self.group_size = VerdictMatch(choices), group_size

    def __call__(self, prompts, completions, *, label, pair, **_) -> list[float]:
        n = check_batch(prompts, completions, {"label": label, "pair": pair},
                        source="BothOrdersVerdictMatch")
        G = self.group_size
        if n % (2 * G):
            raise ValueError(f"BothOrdersVerdictMatch: {n} completions are not pairs of "
                             f"groups of {G} (expected a multiple of {2 * G})")
        first, second = (np.asarray(x, object).reshape(-1, 2, G) for x in (pair, label))
        if not (first[:, 0] == first[:, 1]).all():
            raise ValueError("BothOrdersVerdictMatch: records 2p and 2p + 1 must share the "
                             "field `pair` (the two orders of one pair)")
        ok = np.asarray(self.match(prompts, completions, label=label), np.float64).reshape(-1, 2, G)
        both = ok[:, 0] * ok[:, 1]
        return np.repeat(both[:, None], 2, axis=1).reshape(-1).tolist()


def judge_training_reward(choices: Sequence[str], *, format_weight: float = 0.5,
                          both_orders_group: int | None = None) -> CombinedReward:
    """The GRPO reward of a judge: "verdict" (match with `label`) + `format_weight` ·
    "format" (see the module docstring). Log `accuracy` from "verdict"
    (`RLConfig(accuracy_reward="verdict")`). With `both_orders_group` = G, "verdict"
    is `BothOrdersVerdictMatch` (records come as the two orders of each pair)."""
    match = (VerdictMatch(choices) if both_orders_group is None
             else BothOrdersVerdictMatch(choices, group_size=both_orders_group))
    specs = [RewardSpec(name="verdict", fn=match, isolation="inline",
                        timeout_s=None, per_sample=False)]
    if format_weight:
        specs.append(RewardSpec(name="format", fn=VerdictFormat(choices), weight=format_weight,
                                isolation="inline", timeout_s=None, per_sample=False))
    return CombinedReward(specs)


def pointwise_judge_reward(judge: PointwiseJudge) -> RewardModelReward:
    """r(x, y) = p(Yes | x, y) from `judge`, in chunks of its batch size."""
    return RewardModelReward(judge, batch_size=judge.batch_size)


class GRMJudgeReward:
    """r(x, y) = (S − lo) / (hi − lo) from one sampled DeepSeek-GRM judgment of y alone
    ("Inference-Time Scaling for Generalist Reward Modeling", arXiv:2504.02495):

        C ~ GRM(grm_prompt(x, [y])),   S = extract(C) in [lo, hi] = grm.SCORE_RANGE

    The judge writes its critique first (in the tiny task: notes y's answer, solves x
    itself, compares), so the score rests on a verification rather than a one-token
    guess. All completions of a call are judged in batched sampler calls. A judgment
    whose scores do not parse earns `failure_reward` (default 0, the bottom of the
    scale) and is counted by kind in `failures` (running totals; `judged` counts all
    judgments), never silently defaulted. With `temperature` 0 (the judge's default)
    the reward is deterministic; otherwise each call draws fresh keys from `seed`.
    """

    def __init__(self, judge: GenerativeJudge, *, failure_reward: float = 0.0, seed: int = 0):
        if judge.sampling.num_samples != 1:
            raise ValueError(f"GRMJudgeReward reads one judgment per completion; the judge "
                             f"samples num_samples={judge.sampling.num_samples}")
        self.judge, self.failure_reward = judge, float(failure_reward)
        self.failures: collections.Counter = collections.Counter()
        self.judged, self._calls, self._seed = 0, 0, seed

    def __call__(self, prompts, completions, **fields) -> np.ndarray:
        check_batch(prompts, completions, fields, source="GRMJudgeReward")
        key = (None if self.judge.sampling.temperature == 0
               else jax.random.fold_in(jax.random.key(self._seed), self._calls))
        self._calls += 1
        texts = self.judge.generate([grm.grm_prompt(p, [c]) for p, c in zip(prompts, completions)],
                                    key)
        low, high = grm.SCORE_RANGE
        out = np.full((len(texts),), self.failure_reward, np.float32)
        for i, (text,) in enumerate(texts):
            got = grm.parse_scores(text, num_responses=1)
            if got.ok:
                out[i] = (got.scores[0] - low) / (high - low)
            else:
                self.failures[got.failure] += 1
        self.judged += len(texts)
        return out

    def reset_counts(self) -> None:
        """Zero `failures` and `judged` (e.g. between a held-out check and RL)."""
        self.failures.clear()
        self.judged = 0


class PairwiseJudgeReward:
    """Per-sample rewards from a pairwise judge (both orders averaged, `PairwiseJudge`).

    mode "reference": r_i = P(y_i ≻ y_ref), y_ref the record field `reference`.
    mode "group": r_i = mean_{j ≠ i} P(y_i ≻ y_j) over the G samples of one prompt
      (rows b·G .. b·G + G − 1, the RL loop's order); every unordered pair is judged
      once in each order.
    """

    def __init__(self, judge: PairwiseJudge, *, mode: str = "group", group_size: int | None = None):
        if mode not in ("reference", "group"):
            raise ValueError(f"PairwiseJudgeReward mode must be 'reference' or 'group', got {mode!r}")
        if mode == "group" and (group_size is None or group_size < 2):
            raise ValueError(f"mode 'group' needs group_size >= 2, got {group_size}")
        self.judge, self.mode, self.group_size = judge, mode, group_size

    def __call__(self, prompts, completions, **fields) -> np.ndarray:
        required = ("reference",) if self.mode == "reference" else ()
        n = check_batch(prompts, completions, fields, required=required,
                        source="PairwiseJudgeReward")
        if self.mode == "reference":
            return self.judge(list(prompts), list(completions),
                              list(fields["reference"])).first_better.astype(np.float32)
        G = self.group_size
        if n % G:
            raise ValueError(f"PairwiseJudgeReward: {n} completions are not groups of {G}")
        iu, ju = np.triu_indices(G, k=1)
        rows_i = (np.arange(n // G)[:, None] * G + iu[None]).reshape(-1)
        rows_j = (np.arange(n // G)[:, None] * G + ju[None]).reshape(-1)
        p = self.judge([prompts[i] for i in rows_i], [completions[i] for i in rows_i],
                       [completions[j] for j in rows_j]).first_better
        wins = np.zeros((n,), np.float64)
        np.add.at(wins, rows_i, p)
        np.add.at(wins, rows_j, 1.0 - p)
        return (wins / (G - 1)).astype(np.float32)
