"""Judges that write: sample a rationale and a verdict, parse it strictly, vote.

    texts    = sample(judge, render(prompts), key)          [N, k] judgments
    verdicts = parse_verdict(text)                          choice or a counted failure
    pairwise : both orders, each judgment a vote for y1 (1), y2 (0) or none (failure)
    k-vote   : mean of the valid votes; meta-RM-guided: of the k' best-rated judgments

A judgment whose verdict does not parse casts no vote and is counted in `failures` by
kind; a pair left without any valid vote is a tie (half right), never a guessed winner.
Inference-time scaling follows DeepSeek-GRM ("Inference-Time Scaling for Generalist
Reward Modeling", arXiv:2504.02495); the two-turn rollout follows BR-RM ("Think Twice:
Branch-and-Rethink Reasoning Reward Model", arXiv:2510.23596).
"""

from __future__ import annotations

import collections
from typing import NamedTuple, Sequence

import jax
import numpy as np

from rewardjax.data.encoding import encode_prompt
from rewardjax.data.records import Message, TextOrMessages
from rewardjax.data.tokenizer import eos_ids
from rewardjax.judges import formats
from rewardjax.models import ModelConfig
from rewardjax.sampling import SamplerConfig, sample
from rewardjax.train import placement as placement_lib


class Judgments(NamedTuple):
    """k judgments per prompt: texts [N][k], parsed verdicts [N][k], failure counts."""

    texts: list[list[str]]
    verdicts: list[list[formats.Verdict]]
    failures: collections.Counter


class GenerativeJudge:
    """Samples judgments with the rollout sampler in fixed-size batches.

    Args:
      params, config, tokenizer: the judge model.
      prompt_length: prompts are left-padded to this many tokens (longer ones raise).
      max_new_tokens: the longest judgment (rationale + verdict).
      num_samples: k judgments per prompt.
      temperature: 0 is greedy.
      batch_size: prompts per sampler call (the last chunk is padded with repeats, so
        the sampler compiles once).
      placement: sample on this mesh.
    """

    def __init__(self, params, *, config: ModelConfig, tokenizer, prompt_length: int,
                 max_new_tokens: int, num_samples: int = 1, temperature: float = 0.0,
                 batch_size: int = 64, placement: placement_lib.Placement | None = None):
        if batch_size <= 0:
            raise ValueError(f"GenerativeJudge batch_size must be > 0, got {batch_size}")
        self.params, self.config, self.tokenizer = params, config, tokenizer
        self.batch_size, self.placement, self.prompt_length = batch_size, placement, prompt_length
        self.sampling = SamplerConfig(max_new_tokens=max_new_tokens, num_samples=num_samples,
                                      temperature=temperature, eos_ids=eos_ids(tokenizer),
                                      pad_id=tokenizer.pad_token_id,
                                      prompt_buckets=(prompt_length,))

    def generate(self, prompts: Sequence[TextOrMessages], key: jax.Array | None) -> list[list[str]]:
        """k sampled judgment texts per prompt (chunk i samples with fold_in(key, i))."""
        k = self.sampling.num_samples
        out: list[list[str]] = []
        for i, start in enumerate(range(0, len(prompts), self.batch_size)):
            chunk = list(prompts[start:start + self.batch_size])
            n = len(chunk)
            chunk += [chunk[-1]] * (self.batch_size - n)
            ids = []
            for j, p in enumerate(chunk):
                row = encode_prompt(self.tokenizer, p)
                if len(row) > self.prompt_length:
                    raise ValueError(f"judge prompt {start + j} has {len(row)} tokens; the "
                                     f"judge's prompt_length is {self.prompt_length}")
                ids.append(row)
            chunk_key = None if key is None else jax.random.fold_in(key, i)
            with placement_lib.context(self.placement):
                s = sample(self.params, ids, chunk_key, config=self.config, sampling=self.sampling)
            tokens, lengths = jax.device_get((s.tokens, s.lengths))
            for b in range(n):
                out.append([self.tokenizer.decode(tokens[b, g, :lengths[b, g]],
                                                  skip_special_tokens=True) for g in range(k)])
        return out

    def judge(self, prompts: Sequence[TextOrMessages], key: jax.Array | None, *,
              choices: Sequence[str] | Sequence[Sequence[str]]) -> Judgments:
        """Judgments with strictly parsed verdicts. `choices`: one tuple for every prompt,
        or one tuple per prompt (e.g. a first-error judge's step numbers)."""
        per_prompt = _per_prompt_choices(choices, len(prompts))
        texts = self.generate(prompts, key)
        verdicts = [[formats.parse_verdict(t, choices=c) for t in row]
                    for row, c in zip(texts, per_prompt)]
        failures = collections.Counter(v.failure for row in verdicts for v in row if not v.ok)
        return Judgments(texts, verdicts, failures)


def _per_prompt_choices(choices, n: int) -> list[tuple[str, ...]]:
    if not choices:
        raise ValueError("choices is empty; expected the allowed verdicts")
    if isinstance(choices[0], str):
        return [tuple(choices)] * n
    if len(choices) != n:
        raise ValueError(f"choices has {len(choices)} entries for {n} prompts; expected one "
                         "tuple for all prompts or one per prompt")
    return [tuple(c) for c in choices]


# ----------------------------------------------------------------------------- pairwise


class PairwiseVotes(NamedTuple):
    """Votes for the first response of each pair from both orders.

    votes: [N, 2k] 1.0 (first better), 0.0 (second better), NaN (verdict failed to
      parse); columns [:k] show the first response as A, [k:] as B.
    failures: parse failures by kind.
    position_bias: share of valid votes for position A − 1/2.
    texts: [N][2k] the judgments, in the same column order.
    """

    votes: np.ndarray
    failures: collections.Counter
    position_bias: float
    texts: list[list[str]]


def pairwise_votes(judge: GenerativeJudge, questions: Sequence[str], first: Sequence[str],
                   second: Sequence[str], key: jax.Array | None, *,
                   conditioning: formats.Conditioning = formats.NONE) -> PairwiseVotes:
    """k judgments per order for each (question, first, second); see `PairwiseVotes`."""
    if not len(questions) == len(first) == len(second):
        raise ValueError(f"pairwise_votes: {len(questions)} questions, {len(first)} first and "
                         f"{len(second)} second responses; expected equal counts")
    n = len(questions)
    prompts = ([formats.pairwise_prompt(q, a, b, conditioning=conditioning)
                for q, a, b in zip(questions, first, second)]
               + [formats.pairwise_prompt(q, b, a, conditioning=conditioning)
                  for q, a, b in zip(questions, first, second)])
    out = judge.judge(prompts, key, choices=formats.PAIRWISE_CHOICES)
    picks_a = np.array([[np.nan if v.choice is None else float(v.choice == "A") for v in row]
                        for row in out.verdicts], np.float64).reshape(2 * n, -1)
    votes = np.concatenate([picks_a[:n], 1.0 - picks_a[n:]], axis=1)
    valid_a = picks_a[~np.isnan(picks_a)]
    bias = float(valid_a.mean() - 0.5) if valid_a.size else 0.0
    texts = [out.texts[i] + out.texts[n + i] for i in range(n)]
    return PairwiseVotes(votes, out.failures, bias, texts)


def vote(votes_nk: np.ndarray) -> np.ndarray:
    """[N] preference for the first response: mean of the valid (non-NaN) votes, 0.5 for
    a row without any (a tie, not a guess).

      v_n = mean_{j : vote_nj valid} vote_nj   (DeepSeek-GRM's voting over k samples)
    """
    votes_nk = np.asarray(votes_nk, np.float64)
    if votes_nk.ndim != 2:
        raise ValueError(f"votes must be [N, k], got shape {votes_nk.shape}")
    valid = ~np.isnan(votes_nk)
    total = np.where(valid, votes_nk, 0.0).sum(axis=1)
    count = valid.sum(axis=1)
    return np.where(count > 0, total / np.maximum(count, 1), 0.5)


def meta_guided_vote(votes_nk: np.ndarray, meta_scores_nk: np.ndarray, *, keep: int) -> np.ndarray:
    """Vote over the `keep` judgments per row the meta-RM rates highest.

    DeepSeek-GRM ("Inference-Time Scaling for Generalist Reward Modeling",
    arXiv:2504.02495): a meta reward model scores each of the k sampled judgments and
    only the top k_meta vote. Invalid judgments (NaN votes) are never kept ahead of a
    valid one.
    """
    votes_nk = np.asarray(votes_nk, np.float64)
    meta = np.asarray(meta_scores_nk, np.float64)
    if meta.shape != votes_nk.shape:
        raise ValueError(f"meta_scores shape {meta.shape} != votes shape {votes_nk.shape}")
    if not 1 <= keep <= votes_nk.shape[1]:
        raise ValueError(f"keep must be in [1, k={votes_nk.shape[1]}], got {keep}")
    ranked = np.where(np.isnan(votes_nk), -np.inf, meta)
    top = np.argsort(-ranked, axis=1, kind="stable")[:, :keep]
    return vote(np.take_along_axis(votes_nk, top, axis=1))


def pairwise_accuracy(preference_n: np.ndarray) -> float:
    """Accuracy when the first response is the right one: 1 above 0.5, 1/2 at a tie."""
    p = np.asarray(preference_n, np.float64)
    return float(np.mean(np.where(p > 0.5, 1.0, np.where(p < 0.5, 0.0, 0.5)))) if p.size else 0.0


# ----------------------------------------------------------------------------- two turns


RETHINK = "Rethink your judgment step by step. " + formats._instruction(formats.PAIRWISE_CHOICES)


class TwoTurn(NamedTuple):
    """The first turn's texts, the second turn's conversations and texts, its verdicts."""

    first: list[str]
    conversations: list[tuple[Message, ...]]
    second: list[str]
    verdicts: list[formats.Verdict]
    failures: collections.Counter


def two_turn_judgments(judge: GenerativeJudge, prompts: Sequence[str], key: jax.Array | None, *,
                       choices: Sequence[str], rethink: str = RETHINK) -> TwoTurn:
    """BR-RM's branch-then-rethink rollout ("Think Twice: Branch-and-Rethink Reasoning
    Reward Model", arXiv:2510.23596): the judge answers once, then sees its own first
    turn and a rethink instruction and answers again; the second turn's verdict counts.

    Turn 2's input is the chat [user: prompt, assistant: turn-1 text, user: rethink].
    `judge` should sample one judgment per prompt (the first sample is used).
    """
    k1, k2 = (None, None) if key is None else jax.random.split(key)
    first = [row[0] for row in judge.generate(prompts, k1)]
    conversations = [(Message(role="user", content=p), Message(role="assistant", content=t),
                      Message(role="user", content=rethink)) for p, t in zip(prompts, first)]
    second = [row[0] for row in judge.generate(conversations, k2)]
    parsed = formats.parse_verdicts(second, choices=choices)
    return TwoTurn(first, conversations, second, parsed.verdicts, parsed.failures)
