"""Judges read in one forward pass: the verdict token's probability after `Verdict:`.

The judge's prompt is rendered through the chat template with the generation prompt,
the assistant turn is forced to begin with `Verdict:`, and the LM head's distribution
at that last position is read at the choices' tokens (`heads.verdict_score`):

    pointwise   r = p(Yes | q, y, "Verdict:")          (full-vocabulary softmax)
    pairwise    p_AB = σ(log p(A) − log p(B))          with y1 as A, y2 as B
                p_BA = σ(log p(B) − log p(A))          with y2 as A, y1 as B
                P(y1 ≻ y2) = (p_AB + p_BA) / 2

Both orders are scored and averaged, so swapping y1 and y2 gives exactly
1 − P(y1 ≻ y2): the combined preference is order-independent, and the judge's
position bias, mean over pairs of (p(A | order 1) + p(A | order 2)) / 2 − 1/2, is
measured rather than left in the scores. The pointwise form is RewardDance's
("RewardDance: Reward Scaling in Visual Generation", arXiv:2509.08826).

Batches have one fixed shape (`batch_size` rows of `length` tokens, the last chunk
padded with repeats), so a judge compiles once however many responses it scores: what
an RL loop calling it every step needs.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import jax
import numpy as np

from rewardjax import heads
from rewardjax.data.encoding import encode_prompt, tokenize
from rewardjax.judges import formats
from rewardjax.models import ModelConfig
from rewardjax.train import placement as placement_lib


def verdict_token_ids(tokenizer, choices: Sequence[str]) -> tuple[int, ...]:
    """The token each choice starts with when written after `Verdict:`.

    The verdict is read from the first token after the forced prefix; later tokens of
    a multi-token choice ("Yes" may be " Y" + "es") follow deterministically in the
    strict format. Raises if the prefix does not tokenize the same on its own and
    followed by a choice, or if two choices share their first token.
    """
    prefix = tokenize(tokenizer, formats.VERDICT_PREFIX).tolist()
    ids = []
    for choice in choices:
        full = tokenize(tokenizer, f"{formats.VERDICT_PREFIX} {choice}").tolist()
        if full[:len(prefix)] != prefix or len(full) == len(prefix):
            raise ValueError(f"verdict choice {choice!r}: '{formats.VERDICT_PREFIX} {choice}' "
                             f"tokenizes to {full}, which does not extend the prefix's {prefix}")
        ids.append(full[len(prefix)])
    if len(set(ids)) != len(ids):
        raise ValueError(f"verdict choices {tuple(choices)} share a first token ({ids}); a "
                         "one-pass judge needs choices whose first tokens differ")
    return tuple(ids)


def encode_forced(tokenizer, prompts: Sequence[str], *, length: int, start: int = 0
                  ) -> tuple[np.ndarray, np.ndarray]:
    """[B, length] ids (left-padded) and mask of each chat-rendered prompt followed by
    the forced assistant prefix `Verdict:`; raises naming a prompt that does not fit
    (numbered from `start`)."""
    prefix = tokenize(tokenizer, formats.VERDICT_PREFIX)
    tokens = np.full((len(prompts), length), tokenizer.pad_token_id, np.int32)
    mask = np.zeros((len(prompts), length), bool)
    for i, prompt in enumerate(prompts):
        ids = np.concatenate([encode_prompt(tokenizer, prompt), prefix])
        if len(ids) > length:
            raise ValueError(f"judge prompt {start + i} has {len(ids)} tokens with the verdict prefix; "
                             f"the judge's length is {length}: {prompt[:80]!r}...")
        tokens[i, length - len(ids):] = ids
        mask[i, length - len(ids):] = True
    return tokens, mask


def _verdict(params, tokens, mask, *, config, yes_id, no_id, mode):
    hidden = heads.backbone_hidden(params, tokens, mask, config=config)
    last = np.full((tokens.shape[0],), tokens.shape[1] - 1, np.int32)
    return heads.verdict_score(params, hidden, last, config=config, yes_id=yes_id, no_id=no_id,
                               mode=mode)


class _Scorer:
    """A jitted verdict read over fixed-size chunks on a placement's mesh."""

    def __init__(self, params, *, config: ModelConfig, tokenizer, choices: Sequence[str],
                 mode: str, length: int, batch_size: int,
                 placement: placement_lib.Placement | None):
        if batch_size <= 0 or length <= 0:
            raise ValueError(f"judge batch_size and length must be > 0, got {batch_size}, {length}")
        if placement is not None and batch_size % placement.rows:
            raise ValueError(f"judge batch_size {batch_size} must divide over the mesh's "
                             f"{placement.rows} (data x fsdp) rows")
        self.params, self.tokenizer = params, tokenizer
        self.length, self.batch_size, self.placement = length, batch_size, placement
        yes_id, no_id = verdict_token_ids(tokenizer, choices)
        self._fn = jax.jit(functools.partial(_verdict, config=config, yes_id=yes_id,
                                             no_id=no_id, mode=mode))

    def __call__(self, prompts: Sequence[str]) -> np.ndarray:
        out = []
        for start in range(0, len(prompts), self.batch_size):
            chunk = list(prompts[start:start + self.batch_size])
            n = len(chunk)
            chunk += [chunk[-1]] * (self.batch_size - n)
            tokens, mask = encode_forced(self.tokenizer, chunk, length=self.length, start=start)
            with placement_lib.context(self.placement):
                if self.placement is not None:
                    tokens, mask = self.placement.batch((tokens, mask), micro=False)
                out.append(np.asarray(jax.device_get(self._fn(self.params, tokens, mask)))[:n])
        return np.concatenate(out) if out else np.zeros((0,), np.float32)


class PointwiseJudge:
    """r(q, y) = p(Yes | judge prompt, "Verdict:") in one batched forward pass.

    RewardDance ("RewardDance: Reward Scaling in Visual Generation", arXiv:2509.08826).
    Call it as a reward score function: `judge(questions, responses) -> [N]` in [0, 1]
    (wrap it in `rewards.RewardModelReward(judge, batch_size=judge.batch_size)` to use
    it as the RL loop's `reward_fn`).
    """

    def __init__(self, params, *, config: ModelConfig, tokenizer, length: int,
                 batch_size: int = 64, conditioning: formats.Conditioning = formats.NONE,
                 placement: placement_lib.Placement | None = None):
        self.conditioning, self.batch_size = conditioning, batch_size
        self._scorer = _Scorer(params, config=config, tokenizer=tokenizer,
                               choices=formats.POINTWISE_CHOICES, mode="prob", length=length,
                               batch_size=batch_size, placement=placement)

    def prompts(self, questions: Sequence[str], responses: Sequence[str]) -> list[str]:
        if len(questions) != len(responses):
            raise ValueError(f"PointwiseJudge: {len(questions)} questions for {len(responses)} "
                             "responses; expected one per response")
        return [formats.pointwise_prompt(q, r, conditioning=self.conditioning)
                for q, r in zip(questions, responses)]

    def __call__(self, questions: Sequence[str], responses: Sequence[str]) -> np.ndarray:
        return self._scorer(self.prompts(questions, responses))


class PairwiseScores(NamedTuple):
    """P(y1 ≻ y2) per pair from each order and combined, and the position bias."""

    first_better: np.ndarray  # [N] (p_ab + p_ba) / 2
    p_ab: np.ndarray  # [N] P(A) with y1 shown as A
    p_ba: np.ndarray  # [N] P(B) with y1 shown as B
    position_bias: float  # mean P(A) over both orders − 1/2


class PairwiseJudge:
    """P(y1 ≻ y2) from the A/B verdict token, both orders averaged (module docstring)."""

    def __init__(self, params, *, config: ModelConfig, tokenizer, length: int,
                 batch_size: int = 64, conditioning: formats.Conditioning = formats.NONE,
                 placement: placement_lib.Placement | None = None):
        self.conditioning, self.batch_size = conditioning, batch_size
        self._scorer = _Scorer(params, config=config, tokenizer=tokenizer,
                               choices=formats.PAIRWISE_CHOICES, mode="log_odds", length=length,
                               batch_size=batch_size, placement=placement)

    def __call__(self, questions: Sequence[str], first: Sequence[str],
                 second: Sequence[str]) -> PairwiseScores:
        if not len(questions) == len(first) == len(second):
            raise ValueError(f"PairwiseJudge: {len(questions)} questions, {len(first)} first and "
                             f"{len(second)} second responses; expected equal counts")
        c = self.conditioning
        ab = [formats.pairwise_prompt(q, a, b, conditioning=c) for q, a, b in zip(questions, first, second)]
        ba = [formats.pairwise_prompt(q, b, a, conditioning=c) for q, a, b in zip(questions, first, second)]
        log_odds = self._scorer(ab + ba)  # log p(A) − log p(B)
        n = len(questions)
        p_a_ab = 1.0 / (1.0 + np.exp(-log_odds[:n]))
        p_a_ba = 1.0 / (1.0 + np.exp(-log_odds[n:]))
        p_ab, p_ba = p_a_ab, 1.0 - p_a_ba
        bias = float(np.mean((p_a_ab + p_a_ba) / 2) - 0.5) if n else 0.0
        return PairwiseScores((p_ab + p_ba) / 2, p_ab, p_ba, bias)
