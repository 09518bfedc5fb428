"""DeepSeek-GRM: a pointwise generative reward model scaled at inference time by voting.

"Inference-Time Scaling for Generalist Reward Modeling" (Liu et al., arXiv:2504.02495).
The GRM reads a query and n >= 1 responses, writes principles and a critique, and ends
with one score per response; k judgments are sampled in parallel and voted:

    C_j ~ GRM(x, y_1..y_n),  (S_1j .. S_nj) = extract(C_j)      j = 1..k, S in [1, 10]
    S*_i = sum_j S_ij                                            voting (`vote_scores`)
    S*_i = sum_{j in top k_meta by meta RM} S_ij                 meta-RM-guided voting

Voting sums rather than averages, so the reward space grows k-fold and ties between
responses become rarer (the paper's argument for it). A judgment whose scores do not
parse (`parse_scores`) votes nothing and is counted by kind, never defaulted. The meta
RM is a pointwise scalar RM on (prompt, judgment), trained with BCE on the GRM's own
samples, labelled by the paper's rejective-sampling rule (`agrees`); it is an ORM over
`data.records.StepSolution` records with the whole judgment as one step, trained and
read by `train.prm`.

    grm_prompt, parse_scores        the format; `grm_trace` the arithmetic teacher's judgment
    sample_scores                   k judgments per prompt -> [N, k, n] scores (NaN: failed)
    vote_scores, best_credit        the votes and the accuracy they give
    agrees, train_meta_rm, meta_rm_scores   the meta RM
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import re
from typing import NamedTuple, Sequence

import jax
import numpy as np

from rewardjax.data import pipeline as pl
from rewardjax.data.records import StepSolution
from rewardjax.data.synthetic import arithmetic
from rewardjax.judges import formats
from rewardjax.judges.generative import GenerativeJudge, meta_guided_vote
from rewardjax.judges.traces import Trace
from rewardjax.recipes.backbone import Backbone
from rewardjax.recipes.warm_start import sync_schedule
from rewardjax.train import prm
from rewardjax.train import reward_model as rm
from rewardjax.train.loop import make_batch_fn, run_stage
from rewardjax.train.metrics import LogConfig
from rewardjax.train.state import OptimizerConfig

SCORES_PREFIX = "Scores:"
SCORE_RANGE = (1, 10)  # the paper's discrete scores
PRINCIPLE = "Principle: the final answer must equal the solved answer."

# Why a judgment's scores did not parse; every failure is one of these.
SCORE_FAILURES = ("empty", "missing_scores", "multiple_scores", "scores_not_last",
                  "scores_not_at_line_start", "wrong_count", "not_an_integer", "out_of_range")
_INTEGER = re.compile(r"[0-9]+")


def grm_prompt(question: str, responses: Sequence[str], *,
               conditioning: formats.Conditioning = formats.NONE) -> str:
    """The pointwise GRM's input: the query and n >= 1 numbered responses, each to be
    scored 1-10 (DeepSeek-GRM, arXiv:2504.02495, takes single, paired and multiple
    responses in one format)."""
    if not responses:
        raise ValueError("grm_prompt needs at least one response")
    listed = "".join(f"Response {i}:\n{r}\n" for i, r in enumerate(responses, 1))
    scores = ", ".join(f"s{i}" for i in range(1, len(responses) + 1))
    low, high = SCORE_RANGE
    return (f"{conditioning.render()}Question: {question}\n{listed}Write principles, "
            f"critique each response, and end with '{SCORES_PREFIX} {scores}' (integers "
            f"{low}-{high}).")


class Scores(NamedTuple):
    """A parsed judgment: one score per response (None on failure), the text before the
    scores line, and the failure kind (one of `SCORE_FAILURES`, None when parsed)."""

    scores: tuple[int, ...] | None
    rationale: str
    failure: str | None

    @property
    def ok(self) -> bool:
        return self.failure is None


def parse_scores(text: str, *, num_responses: int, score_range: tuple[int, int] = SCORE_RANGE
                 ) -> Scores:
    """The scores of a GRM judgment, strictly (DeepSeek-GRM's f_extract, arXiv:2504.02495).

    Accepted: `SCORES_PREFIX` occurs exactly once, at the start of the last non-empty
    line, followed by exactly `num_responses` comma-separated unsigned integers within
    `score_range` and nothing else. Failures, in the order they are checked: "empty",
    "missing_scores", "multiple_scores", "scores_not_last", "scores_not_at_line_start",
    "wrong_count", "not_an_integer", "out_of_range".

    Example:
      >>> parse_scores("1: 6 right\\nScores: 9", num_responses=1)
      Scores(scores=(9,), rationale='1: 6 right', failure=None)
      >>> parse_scores("Scores: 9, 11", num_responses=2).failure
      'out_of_range'
    """
    if num_responses < 1:
        raise ValueError(f"parse_scores: num_responses must be >= 1, got {num_responses}")
    low, high = score_range
    if not low <= high:
        raise ValueError(f"parse_scores: score_range must be (low, high) with low <= high, "
                         f"got {score_range}")
    payload, rationale, failure = formats.final_line(text, SCORES_PREFIX, noun="scores",
                                                     plural="scores")
    if failure is not None:
        return Scores(None, rationale, failure)
    items = [s.strip() for s in payload.split(",")]
    if len(items) != num_responses:
        return Scores(None, rationale, "wrong_count")
    if not all(_INTEGER.fullmatch(s) for s in items):
        return Scores(None, rationale, "not_an_integer")
    values = tuple(int(s) for s in items)
    if not all(low <= v <= high for v in values):
        return Scores(None, rationale, "out_of_range")
    return Scores(values, rationale, None)


def scores_line(scores: Sequence[int]) -> str:
    return f"{SCORES_PREFIX} {', '.join(str(s) for s in scores)}"


def grm_trace(problem: arithmetic.Problem, responses: Sequence[str], *, right_score: int = 9,
              wrong_score: int = 2, principle: str = PRINCIPLE,
              conditioning: formats.Conditioning = formats.NONE) -> Trace:
    """The teacher's judgment of `responses` to an arithmetic problem, in DeepSeek-GRM's
    principle -> critique -> scores shape (arXiv:2504.02495): a principle, each final
    answer noted, the problem solved, each noted answer checked against the solution's,
    then `right_score` for a right answer and `wrong_score` for a wrong one.

        Principle: the final answer must equal the solved answer.
        1: 8
        6 - 1 = 5
        ...
        Answer: 9
        1: 8 wrong
        Scores: 2

    The answers are noted before the solution and checked next to its answer for the
    reason `traces.pairwise_trace` gives (each deciding token read at a fixed distance).
    The label is the scores line.
    """
    low, high = SCORE_RANGE
    if not (low <= wrong_score <= high and low <= right_score <= high):
        raise ValueError(f"grm_trace: right_score={right_score} and wrong_score={wrong_score} "
                         f"must lie in {SCORE_RANGE}")
    if not responses:
        raise ValueError("grm_trace needs at least one response")
    answers = [arithmetic.extract_answer(r) for r in responses]
    noted = tuple(f"{i}: {'none' if a is None else a}" for i, a in enumerate(answers, 1))
    right = [a == problem.answer for a in answers]
    checks = tuple(f"{n} {'right' if ok else 'wrong'}" for n, ok in zip(noted, right))
    line = scores_line([right_score if ok else wrong_score for ok in right])
    critique = "\n".join((principle.strip(),) + noted + arithmetic.solve(problem).steps + checks)
    return Trace(grm_prompt(problem.question, responses, conditioning=conditioning),
                 f"{critique}\n{line}", line)


# ----------------------------------------------------------------------------- sampling


class GRMSamples(NamedTuple):
    """k judgments per prompt: texts [N][k], scores [N, k, n] (NaN where the judgment
    failed to parse), failure counts by kind."""

    texts: list[list[str]]
    scores: np.ndarray
    failures: collections.Counter

    @property
    def valid(self) -> np.ndarray:
        """[N, k] True where the judgment parsed."""
        return ~np.isnan(self.scores[..., 0])


def score_texts(texts: Sequence[Sequence[str]], *, num_responses: int) -> GRMSamples:
    """`parse_scores` of every text of [N][k] judgments, as a [N, k, n] array."""
    if not texts:
        raise ValueError("score_texts: no judgments")
    k = len(texts[0])
    out = np.full((len(texts), k, num_responses), np.nan)
    failures: collections.Counter = collections.Counter()
    for i, row in enumerate(texts):
        if len(row) != k:
            raise ValueError(f"score_texts: prompt {i} has {len(row)} judgments, prompt 0 has "
                             f"{k}; expected the same k for every prompt")
        for j, t in enumerate(row):
            parsed = parse_scores(t, num_responses=num_responses)
            if parsed.ok:
                out[i, j] = parsed.scores
            else:
                failures[parsed.failure] += 1
    return GRMSamples([list(r) for r in texts], out, failures)


def sample_scores(judge: GenerativeJudge, prompts: Sequence[str], key: jax.Array | None, *,
                  num_responses: int) -> GRMSamples:
    """k sampled judgments per GRM prompt (k = the judge's `num_samples`) and their scores."""
    return score_texts(judge.generate(prompts, key), num_responses=num_responses)


# ----------------------------------------------------------------------------- voting


def vote_scores(scores_nkr: np.ndarray, *, meta: np.ndarray | None = None,
                keep: int | None = None) -> np.ndarray:
    """[N, n] voted scores of n responses from k judgments each (DeepSeek-GRM,
    arXiv:2504.02495):

        S*_i = sum_{j valid} S_ij                            (meta None)
        S*_i = sum_{j in top `keep` valid by meta} S_ij      (meta-RM-guided)

    Args:
      scores_nkr: [N, k, n] scores, NaN where a judgment failed to parse (it votes
        nothing; a response without any valid judgment sums to 0).
      meta: meta-RM scores, [N, k] when judgment j scored all n responses together
        (the paper's format: one ranking per row), or [N, k, n] when each response
        was judged on its own (each response's judgments ranked separately). A failed
        judgment is never kept ahead of a valid one (`generative.meta_guided_vote`).
      keep: k_meta, the judgments per response that vote when `meta` is given.

    Example (one row, k = 3 judgments of 2 responses; the meta RM keeps 2):
      >>> s = np.array([[[9, 2], [2, 9], [8, 3]]], float)
      >>> vote_scores(s)
      array([[19., 14.]])
      >>> vote_scores(s, meta=np.array([[0.9, 0.1, 0.8]]), keep=2)
      array([[17.,  5.]])
    """
    s = np.asarray(scores_nkr, np.float64)
    if s.ndim != 3:
        raise ValueError(f"scores must be [N, k, n], got shape {s.shape}")
    if meta is None:
        if keep is not None:
            raise ValueError("vote_scores: keep needs meta (the meta-RM scores to rank by)")
        return np.nansum(s, axis=1)
    if keep is None:
        raise ValueError("vote_scores: meta given without keep (k_meta)")
    m = np.asarray(meta, np.float64)
    if m.shape == s.shape[:2]:
        m = np.broadcast_to(m[..., None], s.shape)
    elif m.shape != s.shape:
        raise ValueError(f"vote_scores: meta shape {m.shape}; expected [N, k] = {s.shape[:2]} "
                         f"or [N, k, n] = {s.shape}")
    out = np.empty(s.shape[::2])
    for i in range(s.shape[2]):
        # meta_guided_vote averages the kept valid judgments; the vote is their sum, and
        # the kept ones hold min(keep, valid) valid judgments because failures rank last.
        count = np.minimum(keep, (~np.isnan(s[..., i])).sum(axis=1))
        mean = meta_guided_vote(s[..., i], m[..., i], keep=keep)
        out[:, i] = np.rint(mean * count)  # integer scores: undo the mean's float error
    return out


def best_credit(voted_nr: np.ndarray, best_n: Sequence[int], *,
                tie_break: np.ndarray | None = None) -> np.ndarray:
    """[N] credit of picking the response with the highest voted score: 1 if it is
    response `best_n[i]` alone, 1/m when m responses tie at the top and it is one of
    them (a fair coin among the tied), else 0. With `tie_break` ([N, n] secondary
    scores), responses tied at the top are first narrowed to those with the highest
    secondary score; the coin decides only what is still tied."""
    v = np.asarray(voted_nr, np.float64)
    best = np.asarray(best_n, np.int64)
    if v.ndim != 2 or best.shape != (v.shape[0],):
        raise ValueError(f"best_credit: voted scores {v.shape} and best indices {best.shape}; "
                         "expected [N, n] and [N]")
    if np.any((best < 0) | (best >= v.shape[1])):
        raise ValueError(f"best_credit: best indices must be in [0, {v.shape[1]}), got {best}")
    top = v == v.max(axis=1, keepdims=True)
    if tie_break is not None:
        t = np.asarray(tie_break, np.float64)
        if t.shape != v.shape:
            raise ValueError(f"best_credit: tie_break shape {t.shape}; expected {v.shape}")
        t = np.where(top, t, -np.inf)
        top &= t == t.max(axis=1, keepdims=True)
    return top[np.arange(v.shape[0]), best] / top.sum(axis=1)


def scaling_curve(scores_nkr: np.ndarray, best_n: Sequence[int], ks: Sequence[int], *,
                  meta: np.ndarray | None = None, keep_fraction: float = 0.5,
                  tie_break: str | None = None, draws: int = 16,
                  seed: int = 0) -> dict[int, float]:
    """Accuracy against k: mean `best_credit` of voting over k of the K sampled
    judgments, averaged over `draws` random subsets per row (every subset is all K at
    k = K). With `meta` ([N, K] or [N, K, n], as `vote_scores` takes it), each subset
    keeps its top max(1, round(k·keep_fraction)) by the meta RM before voting;
    `tie_break="plain"` then settles a tie of the kept votes by the plain vote of all k
    (ours: the judgments the meta RM set aside are the next evidence; None: a coin)."""
    s = np.asarray(scores_nkr, np.float64)
    n, big_k = s.shape[:2]
    if not 0 < keep_fraction <= 1:
        raise ValueError(f"keep_fraction must be in (0, 1], got {keep_fraction}")
    if tie_break not in (None, "plain"):
        raise ValueError(f"scaling_curve: tie_break must be None or 'plain', got {tie_break!r}")
    rng = np.random.default_rng(seed)
    out = {}
    for k in ks:
        if not 1 <= k <= big_k:
            raise ValueError(f"scaling_curve: k={k} outside [1, {big_k}] sampled judgments")
        reps = 1 if k == big_k else draws
        credit = 0.0
        for _ in range(reps):
            pick = np.argsort(rng.random((n, big_k)), axis=1)[:, :k]
            sub = np.take_along_axis(s, pick[..., None], axis=1)
            if meta is None:
                voted = vote_scores(sub)
            else:
                m = np.asarray(meta, np.float64)
                idx = pick if m.ndim == 2 else pick[..., None]
                voted = vote_scores(sub, meta=np.take_along_axis(m, idx, axis=1),
                                    keep=max(1, round(k * keep_fraction)))
            second = vote_scores(sub) if meta is not None and tie_break == "plain" else None
            credit += best_credit(voted, best_n, tie_break=second).mean()
        out[k] = float(credit / reps)
    return out


# ----------------------------------------------------------------------------- meta RM


def agrees(scores: Sequence[float], truth: Sequence[float]) -> bool:
    """Whether a judgment's scores agree with the ground truth: DeepSeek-GRM's rule for
    rejective sampling, which also labels the meta RM (arXiv:2504.02495). For n >= 2
    responses, the truly best one scores strictly above every other; for one response,
    its score equals the true rating. A failed judgment (NaN) never agrees."""
    s = np.asarray(scores, np.float64)
    t = np.asarray(truth, np.float64)
    if s.shape != t.shape or s.ndim != 1 or s.size == 0:
        raise ValueError(f"agrees: scores {s.shape} and truth {t.shape}; expected equal [n]")
    if np.any(np.isnan(s)):
        return False
    if s.size == 1:
        return bool(s[0] == t[0])
    best = int(np.argmax(t))
    if np.sum(t == t[best]) > 1:
        raise ValueError(f"agrees: the truth {t.tolist()} has no single best response")
    return bool(np.all(np.delete(s, best) < s[best]))


def meta_rm_records(prompts: Sequence[str], texts: Sequence[str],
                    labels: Sequence[float]) -> list[StepSolution]:
    """One record per judgment: the GRM prompt, the judgment as a single step, its label."""
    if not len(prompts) == len(texts) == len(labels):
        raise ValueError(f"meta_rm_records: {len(prompts)} prompts, {len(texts)} judgments, "
                         f"{len(labels)} labels; expected equal counts")
    return [StepSolution(prompt=p, steps=(t.strip(),), labels=(float(y),))
            for p, t, y in zip(prompts, texts, labels)]


@dataclasses.dataclass(frozen=True, kw_only=True)
class MetaRMConfig:
    """The meta RM's training: `steps` of BCE at batch `batch_size`, sequences padded to
    `bucket` tokens (prompt + judgment; longer ones raise)."""

    steps: int = 300
    batch_size: int = 32
    bucket: int = 256
    optimizer: OptimizerConfig = OptimizerConfig(lr=1e-3, warmup_steps=20, total_steps=300)

    def __post_init__(self):
        if self.steps < 1 or self.batch_size < 1 or self.bucket < 1:
            raise ValueError(f"MetaRMConfig: steps ({self.steps}), batch_size "
                             f"({self.batch_size}) and bucket ({self.bucket}) must be >= 1")
        object.__setattr__(self, "optimizer", sync_schedule(self.optimizer, self.steps))


def train_meta_rm(backbone: Backbone, records: Sequence[StepSolution], *, config: MetaRMConfig,
                  key: jax.Array, out_dir, seed: int = 0, name: str = "meta_rm",
                  log: LogConfig | None = None) -> dict:
    """The meta RM (arXiv:2504.02495: a pointwise scalar RM trained with BCE to tell
    whether a sampled judgment agrees with the ground truth): `backbone` plus a new
    head read at the judgment's last token, trained on `meta_rm_records`."""
    if not records:
        raise ValueError("train_meta_rm: no records")
    pipe = pl.step_pipeline(records, backbone.tokenizer, pl.PipelineConfig(
        batch_size=config.batch_size, buckets=(config.bucket,), seed=seed, num_epochs=None,
        drop_remainder=True, max_steps=1))
    params = rm.init_reward_model(backbone.params, key, config=backbone.config, head="step")
    loss_fn = functools.partial(prm.step_loss, config=backbone.config, last_step_only=True,
                                **backbone.spec.apply_kwargs)
    state, _ = run_stage(params, loss_fn, make_batch_fn(pipe), optimizer=config.optimizer,
                         num_steps=config.steps, out_dir=out_dir, name=name,
                         placement=backbone.placement, log=log)
    return state.params


def meta_rm_scores(params: dict, backbone: Backbone, prompts: Sequence[str],
                   texts: Sequence[str], *, config: MetaRMConfig) -> np.ndarray:
    """[M] P(agrees) of each (prompt, judgment) by the meta RM."""
    records = meta_rm_records(prompts, texts, [0.0] * len(texts))
    pipe = pl.step_pipeline(records, backbone.tokenizer, pl.PipelineConfig(
        batch_size=config.batch_size, buckets=(config.bucket,), shuffle=False, max_steps=1))
    out = prm.score_steps(params, pipe, config=backbone.config)
    probs = np.empty(len(texts))
    probs[out["index"]] = [s[-1] for s in out["scores"]]
    return probs
