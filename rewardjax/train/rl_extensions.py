"""Named extension points of the RL loop (`RLTrainer(extensions=RLExtensions(...))`).

Where each acts in one step (R = B*G rows, T completion tokens):

    sample [B,G,T] ─ reward_fn ─► rewards [B,G], correct [B,G]
        │ (e) rewrite: groups that all fail are resampled from a rewritten prompt
        │     (a hint); trained as samples of the original prompt, ratio against the
        │     hinted behaviour policy (Guide's importance correction)
        │ (a) probes: teacher-forced log-probs of texts after the prompt under the
        │     policy and reference, one jitted call for all rows ─► reward transform
        │ (f) group filter: keep[B] (refilled from more prompts like dynamic sampling)
        ▼
    kept rollout ─ (b, d) dense: token rewards [R,T] from a model, which may train
        │               on the same rollout (its state is checkpointed with the policy)
        ▼
    configured estimator [R,T] ─ (c) advantage transform ─► advantages [R,T] ─► update

Each point is a small object; a recipe fills some of them and leaves the rest None.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, NamedTuple, Protocol, Sequence

import jax
import numpy as np

from rewardjax.losses import advantages as adv_lib


class RolloutBatch(NamedTuple):
    """What the extensions see of a step's rollout (row r = b*G + g)."""

    step: int
    records: list  # B dicts of record fields (the original, un-rewritten prompts)
    completions: list  # R decoded completions
    tokens: np.ndarray  # [R, P + T] prompt (left-padded) then completion
    mask: np.ndarray  # [R, P + T]
    completion_mask: np.ndarray  # [R, T]
    lengths: np.ndarray  # [B, G] completion tokens
    rewards: np.ndarray  # [B, G] rewards (after the reward transform, once applied)
    correct: np.ndarray  # [B, G] bool, the accuracy reward > 0.5


class ProbeLogProbs(NamedTuple):
    """Teacher-forced log-probs of the probe texts: [N probes, R rows, K tokens]."""

    policy: np.ndarray
    reference: np.ndarray | None
    target_mask: np.ndarray  # True on the target's tokens (not the context's)
    truncated: int = 0  # contexts cut from the left to fit `Probes.max_tokens`


@dataclasses.dataclass(frozen=True, kw_only=True)
class Probes:
    """(a) Texts whose log-probs a reward needs (a reference answer after the policy's
    own reasoning; the same answer with no reasoning; a fixed token).

    Attributes:
      texts: `(fields, completion) -> N (context, target)` pairs for one row: the
        sequence prompt + context + target is teacher-forced and the target's tokens
        are scored.
      num_probes: N (every row gives the same number, so shapes stay fixed).
      max_tokens: K, the context + target tokens the batch holds; a longer context
        keeps its last tokens (counted as `probes/truncated`), a longer target raises.
      reference: also score under the frozen reference (the run's `ref_params`).
    """

    texts: Callable[[Mapping[str, Any], str], Sequence[tuple[str, str]]]
    num_probes: int = 1
    max_tokens: int = 48
    reference: bool = False

    def __post_init__(self):
        if self.num_probes <= 0 or self.max_tokens <= 0:
            raise ValueError(f"Probes.num_probes and max_tokens must be > 0, got "
                             f"{self.num_probes} and {self.max_tokens}")


class DenseReward(Protocol):
    """(b, d) Token rewards from a model next to the outcome reward.

    `init(trainer, policy_params)` returns the model's state (placed on the trainer's
    mesh; None for a stateless rule); `step(state, batch)` returns (new state, token
    rewards [R, T] (0 off the completion), metrics). A model updated online (PRIME's
    implicit PRM) trains inside `step` on the same rollout; its state is saved in the
    RL checkpoint beside the policy's and restored on resume.
    """

    def init(self, trainer, policy_params) -> Any: ...

    def step(self, state, batch: RolloutBatch) -> tuple[Any, np.ndarray, dict]: ...


class AdvantageInputs(NamedTuple):
    """Everything an advantage transform may combine (jax arrays)."""

    advantages: jax.Array  # [R, T] the configured estimator's
    rewards: jax.Array  # [B, G]
    correct: jax.Array  # [B, G] bool
    lengths: jax.Array  # [B, G]
    mask: jax.Array  # [B, G, T]
    token_rewards: jax.Array  # [R, T] (zeros without a dense reward)


@dataclasses.dataclass(frozen=True, kw_only=True)
class GroupFilter:
    """(f) Which groups train, by the reliability of their rewards.

    `keep(state, rewards [B, G]) -> (state, keep [B] bool)`; `init()` gives the filter's
    state (e.g. an adaptive threshold; a dict of arrays, checkpointed). Dropped groups
    are refilled from further prompt rounds as DAPO's dynamic sampling does.
    """

    keep: Callable[[Any, np.ndarray], tuple[Any, np.ndarray]]
    init: Callable[[], Any] = dict


@dataclasses.dataclass(frozen=True, kw_only=True)
class PromptRewrite:
    """(e) A rewritten prompt for groups whose every sample fails (e.g. with a hint);
    "fails" is the trainer's accuracy rule (`RLConfig.accuracy_reward` > 0.5).

    `rewrite(fields) -> prompt` (text or messages). The group is resampled from the
    rewritten prompt and `replace` of its G samples are swapped in; they train as
    samples of the original prompt, with the hinted sampling log-probs as the
    behaviour policy, so the clipped ratio is π_θ(y|x)/π_old(y|x,h): Guide's
    importance correction ("Adaptive Guidance Accelerates Reinforcement Learning of
    Reasoning Models", arXiv:2506.13923).
    """

    rewrite: Callable[[Mapping[str, Any]], Any]
    replace: int | None = None  # None: every sample of the group


class SampledRollouts(NamedTuple):
    """(g) A step's rollouts from a custom sampler (B prompts x G rollouts, T slots),
    e.g. multi-turn rollouts with tool observations (`rewardjax.envs.training`).

    `mask` is what the policy attends to (prompt-side context included, such as tool
    observations); `loss_mask` the tokens trained on and carrying `logprobs` (the
    model's own): the loss, advantages and KL read `loss_mask` only.
    """

    prompt_tokens: np.ndarray  # [B, P] left-padded; P fixed across steps
    prompt_mask: np.ndarray  # [B, P]
    tokens: np.ndarray  # [B, G, T]
    mask: np.ndarray  # [B, G, T]
    loss_mask: np.ndarray  # [B, G, T]
    lengths: np.ndarray  # [B, G] real tokens
    logprobs: np.ndarray  # [B, G, T] behaviour log-probs, 0 off loss_mask
    texts: list  # B*G decoded responses
    rewards: np.ndarray  # [B, G]
    correct: np.ndarray  # [B, G] bool
    metrics: dict


@dataclasses.dataclass(frozen=True, kw_only=True)
class RLExtensions:
    """The loop's extension points; None leaves a point out.

    Attributes:
      probes: (a) teacher-forced log-probs for `reward_transform`.
      reward_transform: `(batch, probes | None) -> [B, G]` rewards replacing the
        reward function's (verifier-free rewards, length shaping, noise, gating).
      group_filter: (f) drop groups by reward reliability.
      rewrite: (e) prompts rewritten for all-fail groups.
      dense: (b, d) token rewards from a (possibly online) model.
      advantage: (c) `AdvantageInputs -> [R, T]` advantages, jitted once.
      rollouts: (g) `(trainer, policy_params, records, key) -> SampledRollouts`
        replacing the sampler and the reward function (multi-turn environments).
      aux_loss: (h) `AuxiliaryLoss`: a loss term on per-row targets computed from the
        kept rows at rollout time, added to the update's objective (LaSeR).
    """

    probes: Probes | None = None
    reward_transform: Callable[[RolloutBatch, ProbeLogProbs | None], np.ndarray] | None = None
    group_filter: GroupFilter | None = None
    rewrite: PromptRewrite | None = None
    dense: DenseReward | None = None
    advantage: Callable[[AdvantageInputs], jax.Array] | None = None
    rollouts: Callable[[Any, Any, list, jax.Array], SampledRollouts] | None = None
    aux_loss: AuxiliaryLoss | None = None

    def __post_init__(self):
        if self.probes is not None and self.reward_transform is None:
            raise ValueError("RLExtensions.probes needs a reward_transform that reads them")
        if self.rollouts is not None and self.rewrite is not None:
            raise ValueError("RLExtensions.rewrite resamples with the trainer's own sampler; "
                             "it cannot be combined with custom rollouts")


@dataclasses.dataclass(frozen=True, kw_only=True)
class AuxiliaryLoss:
    """(h) A loss beside the RL objective that reads values known only at rollout time
    (a verifier's label per completion, a class weight), as LaSeR's ("LaSeR:
    Reinforcement Learning with Last-Token Self-Rewarding", arXiv:2510.14943) MSE between
    the policy's last-token score and each rollout's verifier reward:

        rollout ─► kept rows (RolloutBatch) ─ targets ─► Rollout.aux_targets [R, K]
        update:  loss = loss_fn(mb) + coef · loss(policy params, mb)   (mb["aux_targets"])

    Attributes:
      targets: `RolloutBatch -> [R, K]` float32 values per kept row.
      loss: `(policy_params, mb, *, config, rows, **apply_kwargs) -> (loss, metrics)`:
        the micro-batch's summed per-row loss divided by `rows`, the minibatch's row
        count, so micro-batches add up.
      coef: its weight next to the RL objective.
    """

    targets: Callable[[RolloutBatch], np.ndarray]
    loss: Callable[..., Any]
    coef: float = 1.0

    def __post_init__(self):
        if self.coef < 0:
            raise ValueError(f"AuxiliaryLoss.coef must be >= 0, got {self.coef}")


# ----------------------------------------------------------------------------- transforms


@dataclasses.dataclass(frozen=True, kw_only=True)
class PrimeAdvantage:
    """(c) PRIME's combination (`advantages.prime_advantages`, arXiv:2502.01456):
    leave-one-out baselines on the dense rewards and on the outcome reward, one γ = 1
    return, whitened. `process_coef=0` is the outcome-only RLOO the paper compares with."""

    outcome_coef: float = 5.0
    process_coef: float = 5.0

    def __call__(self, x: AdvantageInputs) -> jax.Array:
        B, G, T = x.mask.shape
        adv, _ = adv_lib.prime_advantages(x.rewards, x.token_rewards.reshape(B, G, T), x.mask,
                                          outcome_coef=self.outcome_coef,
                                          process_coef=self.process_coef)
        return adv.reshape(B * G, T)


@dataclasses.dataclass(frozen=True, kw_only=True)
class DecoupledLengthAdvantage:
    """(c) DRPO's length signal normalised among correct rollouts only
    (`advantages.decoupled_length_advantages`, arXiv:2510.04474)."""

    lam: float = 1.0
    scale_by_std: bool = True

    def __call__(self, x: AdvantageInputs) -> jax.Array:
        B, G, T = x.mask.shape
        a = adv_lib.decoupled_length_advantages(x.correct, x.lengths, lam=self.lam,
                                                scale_by_std=self.scale_by_std)
        return adv_lib.expand_to_tokens(a.reshape(B * G), x.mask.reshape(B * G, T))


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProcessReturnAdvantage:
    """(c) Returns of step rewards (the dense reward's nonzero entries), in sum form or
    PURE's min form ("Stop Summation: Min-Form Credit Assignment Is All Process Reward
    Model Needs for Reasoning", arXiv:2504.15275; `returns.process_returns`), with the
    verifiable reward added on the last token of every `verifiable_every`-th prompt (PURE
    mixes verifiable rewards into 10% of its data), minus a leave-one-out baseline:

        A_igt = G_igt − mean_{j ≠ g} G_ij0        (G_ij0: sample j's return at its first token)

    Step rewards must be nonzero at step ends (0 marks a non-step token).
    """

    form: str = "min"
    temperature: float | None = 0.1
    verifiable_every: int = 0  # 0: process rewards only

    def __call__(self, x: AdvantageInputs) -> jax.Array:
        import jax.numpy as jnp  # noqa: PLC0415

        from rewardjax.losses import returns as returns_lib  # noqa: PLC0415

        B, G, T = x.mask.shape
        m = x.mask.reshape(B * G, T)
        step_r = x.token_rewards
        steps = step_r != 0
        if self.verifiable_every:
            mixed = (jnp.arange(B) % self.verifiable_every == 0)[:, None]
            vr = jnp.where(mixed, x.correct.astype(jnp.float32), 0.0).reshape(B * G)
            last = adv_lib.place_at_last_token(vr, m)
            step_r = step_r + last
            steps = steps | ((last != 0) & mixed.repeat(G, 0).reshape(B * G, 1))
        ret = returns_lib.process_returns(step_r, steps, m, form=self.form,
                                          temperature=self.temperature)
        first = ret.reshape(B, G, T)[..., 0]
        baseline = (first.sum(-1, keepdims=True) - first) / max(G - 1, 1)
        return jnp.where(m, ret - baseline.reshape(B * G, 1), 0.0)
