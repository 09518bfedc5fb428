"""Generative reward models: a language model that judges in text.

    formats.py     judge prompts (pointwise, pairwise, first error; principle / rubric
                   conditioning) and strict verdict parsing with counted failures
    scoring.py     one-forward-pass judges: p(Yes) pointwise, both-order pairwise with
                   its position bias
    grm.py         DeepSeek-GRM: pointwise judgments with principles, critique and
                   scores, strict score parsing, k-sample score voting, the meta RM
    generative.py  sampled judgments (rationale, then verdict), k-vote, meta-RM-guided
                   vote, BR-RM's two-turn rollout
    rewards.py     GRPO reward for training a judge (verdict match + format); judges as
                   the RL loop's reward (pointwise, pairwise vs reference / group win rate)
    traces.py      the arithmetic task as a rationale teacher
    training.py    GRPO on a judge (the RL loop with judge prompts and labels), the
                   solver warm start, per-token SFT weights on the deciding tokens

A judge is the backbone's own LM head: no new parameters, so SFT (`recipes.sft_warm_start`
on `Trace.sft_example()`s) and GRPO (`train.rl.RLTrainer` with `judge_training_reward`)
train it like any policy, on the same mesh.
"""

from rewardjax.judges.formats import (FAILURES, NO_ERROR_CHOICE, PAIRWISE_CHOICES,
                                      POINTWISE_CHOICES, VERDICT_PREFIX, Conditioning,
                                      ParsedBatch, Verdict, first_error_choices,
                                      first_error_prompt, judgment_text, pairwise_prompt,
                                      parse_verdict, parse_verdicts, pointwise_prompt)
from rewardjax.judges.generative import (GenerativeJudge, Judgments, PairwiseVotes, TwoTurn,
                                         meta_guided_vote, pairwise_accuracy, pairwise_votes,
                                         two_turn_judgments, vote)
from rewardjax.judges.grm import (SCORE_FAILURES, SCORES_PREFIX, GRMSamples, MetaRMConfig,
                                  Scores, agrees, best_credit, grm_prompt, grm_trace,
                                  meta_rm_records, meta_rm_scores, parse_scores, sample_scores,
                                  scaling_curve, score_texts, train_meta_rm, vote_scores)
from rewardjax.judges.rewards import (BothOrdersVerdictMatch, GRMJudgeReward, PairwiseJudgeReward,
                                      VerdictFormat, VerdictMatch,
                                      judge_training_reward, pointwise_judge_reward)
from rewardjax.judges.scoring import (PairwiseJudge, PairwiseScores, PointwiseJudge,
                                      encode_forced, verdict_token_ids)
from rewardjax.judges.traces import (FIRST_ERROR_DECIDING, PAIRWISE_DECIDING, Trace,
                                     first_error_trace, pairwise_trace, pairwise_traces,
                                     pointwise_trace)
from rewardjax.judges.training import (deciding_token_weights, judge_grpo_trainer,
                                       solver_warm_start)
