"""LaSeR's last-token self-reward: the policy scores its own solution with one token.

"LaSeR: Reinforcement Learning with Last-Token Self-Rewarding" (Yang et al.,
arXiv:2510.14943): the closed form of a KL-regularised self-verification objective
makes the verifier reward of a solution y equal to

    r_s(x, y) = β_v · (log π_θ(z_c | x, y) − c_ref)

where z_c is a pre-specified token that the task never uses, read at the position right
after the solution's last token, and c_ref ≈ log π_ref(z_c | x, y), nearly constant over
y, so pre-computed once. LaSeR adds to the RL loss the MSE that aligns r_s with the
verifier reward r_v ∈ {0, 1}:

    L_SR = α · mean_y w(y) · (r_s(x, y) − r_v(x, y))²

over completed (not truncated) solutions, w balancing correct against wrong ones (the
released code: `self_reward_loss_balanced`); α = β_v = 0.1 there. At test time r_s
ranks or weights the policy's own samples (weighted majority voting).

`laser_auxiliary_loss` plugs it into the RL loop as `RLExtensions(aux_loss=...)`.
"""

from __future__ import annotations

import dataclasses
import functools
from collections import defaultdict

import jax
import jax.numpy as jnp
import numpy as np

from rewardjax.models import ModelConfig, apply, project
from rewardjax.train.rl_extensions import AuxiliaryLoss, RolloutBatch


@dataclasses.dataclass(frozen=True, kw_only=True)
class SelfRewardConfig:
    """Attributes:
      token: z_c, the pre-specified token (one token of the tokenizer, unused by the task).
      beta: β_v (LaSeR: 0.1).
      c_ref: the pre-computed log π_ref(z_c | x, y) (LaSeR's Qwen runs: −23).
      coef: α, the MSE term's weight (LaSeR: 0.1).
      balanced: weight correct and wrong solutions equally (LaSeR's released setting).
    """

    token: str = "<|step|>"
    beta: float = 0.1
    c_ref: float = -23.0
    coef: float = 0.1
    balanced: bool = True

    def __post_init__(self):
        if self.beta <= 0 or self.coef < 0:
            raise ValueError(f"SelfRewardConfig needs beta > 0 and coef >= 0, got beta="
                             f"{self.beta}, coef={self.coef}")


def token_id(tokenizer, token: str) -> int:
    """The id of `token`, which must be a single token of `tokenizer`."""
    ids = tokenizer.encode(token, add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(f"SelfRewardConfig.token {token!r} must be one token; the tokenizer "
                         f"gives {ids}")
    return ids[0]


def last_token_logprob(params, tokens, mask, completion_mask, z: int, *, config: ModelConfig,
                       **apply_kwargs) -> jax.Array:
    """[R] log π(z | x, y): the next-token distribution at each row's last completion
    token (the last prompt token for an empty completion), read at token z.

    `tokens`/`mask` [R, P + T] hold the left-padded prompt then the completion,
    `completion_mask` [R, T]. Only that one position reaches the vocabulary projection.
    """
    R, T = completion_mask.shape
    P = tokens.shape[1] - T
    hidden, _ = apply(params, tokens, config=config, mask_bt=mask, output="hidden",
                      **apply_kwargs)
    last = P - 1 + jnp.sum(completion_mask, axis=1).astype(jnp.int32)  # [R]
    h = jnp.take_along_axis(hidden, last[:, None, None], axis=1)  # [R, 1, D]
    # log-softmax in float32: the logit of an unused token sits far below the rest
    logits = project(params, h, config=config)[:, 0].astype(jnp.float32)
    return jax.nn.log_softmax(logits, axis=-1)[:, z]


def self_reward_score(logp_z, *, beta: float, c_ref: float):
    """r_s = β_v (log π(z_c | x, y) − c_ref) (arXiv:2510.14943).

    Example:
      >>> float(self_reward_score(-13.0, beta=0.1, c_ref=-23.0))
      1.0
    """
    return beta * (logp_z - c_ref)


def laser_targets(batch: RolloutBatch) -> np.ndarray:
    """[R, 2] (r_v, w) per kept row: the 0/1 verifier reward and the MSE weight — 0 for
    a truncated completion (no last token to score), else with balancing 1/(2·share of
    its class among completed rows), so each class weighs half.

    Example (four completed rows, one correct: weights 2 and 2/3):
      >>> b = RolloutBatch(step=0, records=[{}], completions=[""] * 4, tokens=None, mask=None,
      ...                  completion_mask=np.ones((4, 4)), lengths=np.array([[2, 2, 2, 2]]),
      ...                  rewards=None, correct=np.array([[1, 0, 0, 0]], bool))
      >>> laser_targets(b).astype(float).round(3).tolist()
      [[1.0, 2.0], [0.0, 0.667], [0.0, 0.667], [0.0, 0.667]]
    """
    T = batch.completion_mask.shape[1]
    done = np.asarray(batch.lengths).reshape(-1) < T
    r = np.asarray(batch.correct, np.float32).reshape(-1)
    w = done.astype(np.float32)
    n = max(done.sum(), 1)
    for label in (0.0, 1.0):
        k = (done & (r == label)).sum()
        if k:
            w[done & (r == label)] = n / (2.0 * k)
    return np.stack([r, w], 1)


def _laser_loss(params, mb, *, config, rows, z, cfg: SelfRewardConfig, **apply_kwargs):
    logp = last_token_logprob(params, mb["tokens"], mb["mask"], mb["completion_mask"], z,
                              config=config, **apply_kwargs)
    score = self_reward_score(logp, beta=cfg.beta, c_ref=cfg.c_ref)
    r_v, w = mb["aux_targets"][:, 0], mb["aux_targets"][:, 1]
    if not cfg.balanced:
        w = (w > 0).astype(jnp.float32)
    loss = jnp.sum(w * (score - r_v) ** 2) / rows
    done = w > 0
    n = jnp.maximum(jnp.sum(done), 1)
    return loss, {"self_reward/score": jnp.sum(jnp.where(done, score, 0.0)) / n,
                  "self_reward/accuracy": jnp.sum(done & ((score > 0.5) == (r_v > 0.5))) / n}


def laser_auxiliary_loss(cfg: SelfRewardConfig, tokenizer) -> AuxiliaryLoss:
    """LaSeR's MSE term for `RLExtensions.aux_loss` (weight `cfg.coef`)."""
    loss = functools.partial(_laser_loss, z=token_id(tokenizer, cfg.token), cfg=cfg)
    return AuxiliaryLoss(targets=laser_targets, loss=loss, coef=cfg.coef)


def auroc(scores, labels) -> float:
    """Area under the ROC curve: P(score of a positive > score of a negative), ties ½
    (Mann–Whitney); nan when a class is empty.

    Example:
      >>> auroc([0.9, 0.4, 0.4, 0.1], [1, 1, 0, 0])
      0.875
    """
    s, y = np.asarray(scores, np.float64), np.asarray(labels, bool)
    pos, neg = s[y], s[~y]
    if not len(pos) or not len(neg):
        return float("nan")
    greater = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return float(greater / (len(pos) * len(neg)))


def weighted_vote(answers, weights=None):
    """The answer with the largest total weight (majority vote when `weights` is None);
    None answers do not vote; ties go to the answer seen first.

    Example:
      >>> weighted_vote(["3", "4", "4"], [0.9, 0.2, 0.3])
      '3'
    """
    totals: dict = defaultdict(float)
    for i, a in enumerate(answers):
        if a is not None:
            totals[a] += 1.0 if weights is None else float(weights[i])
    return max(totals, key=totals.get) if totals else None
