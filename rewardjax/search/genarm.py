"""GenARM: token-level reward-guided decoding with an autoregressive reward model.

Paper: "GenARM: Reward Guided Generation with Autoregressive Reward Model for Test-time
Alignment" (Xu et al., arXiv:2410.08193).

An autoregressive RM (ARM) is a language model π_r whose summed token log-probs are the
reward, trained with Bradley–Terry on preference pairs (y^w preferred to y^l):

    r(x, y) = β_r Σ_t log π_r(y_t | x, y_<t)
    L       = −log σ(r(x, y^w) − r(x, y^l))                       (`arm_loss`)

A frozen base policy is then decoded token by token from

    π_decode(y_t | x, y_<t) ∝ π_base(y_t | x, y_<t) · π_r(y_t | x, y_<t)^(1/β)

Parameterisation: the exponent is 1/β on the ARM's *probabilities*, the paper's
decoding equation and its released code (`M_base + alpha * M_arm`, alpha = 1/β). In
terms of the trained reward r = β_r Σ log π_r this is the KL-regularised optimum
π_base·exp(r/β_KL) at β_KL = β·β_r. β → ∞ is the base policy (the guided logits are
then the base logits plus exactly 0, so greedy tokens match `sampling.sample`); β = 1
is π_base·π_r.

Decoding (`genarm_sample`) reuses the sampler's pieces: each model is prefilled by
`sampling.prefill` into its own KV cache, and both advance together in one
`lax.while_loop` (in the sampler's `decode_phases`): the guided logits are sampled by the
sampler's step (temperature / top-k / top-p on π_decode, eos and stop flags), and the
drawn token is fed to both models. The guidance weight 1/β is a traced scalar, so a β
sweep compiles once.
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rewardjax.losses import preference
from rewardjax.losses._common import as_float, mean_where
from rewardjax.models import transformer
from rewardjax.models.config import ModelConfig
from rewardjax.sampling.config import SamplerConfig
from rewardjax.sampling.controls import token_logprobs
from rewardjax.sampling.logprobs import sequence_logprobs
from rewardjax.sampling.sampler import (Samples, SamplingState, advance, constrain_state,
                                        decode_params, decode_phases, finalize, prefill,
                                        prompt_batch, resize_cache)

# ----------------------------------------------------------------------------- training


def arm_rewards(logp_bt, mask_bt, *, beta_r: float = 0.05) -> jax.Array:
    """The autoregressive RM's sequence reward (GenARM, arXiv:2410.08193):

        r_b = β_r Σ_t mask_bt · log π_r(y_t | x, y_<t)

    Args:
      logp_bt: `[B, T]` per-token log-probs of the response under π_r.
      mask_bt: `[B, T]` 1 for response tokens.
      beta_r: the reward scale (the paper trains with 0.05).

    Returns:
      `[B]` float32 rewards.
    """
    m = jnp.asarray(mask_bt) != 0
    return beta_r * jnp.sum(jnp.where(m, as_float(logp_bt), 0.0), axis=-1)


def arm_loss(chosen_logp_bt, chosen_mask_bt, rejected_logp_bt, rejected_mask_bt, *,
             beta_r: float = 0.05, label_smoothing: float = 0.0, where=None):
    """Bradley–Terry loss of an autoregressive RM (GenARM, arXiv:2410.08193, eq. 4-5):

        L_b = −log σ(β_r Σ_t log π_r(y^w_t | x, y^w_<t) − β_r Σ_t log π_r(y^l_t | x, y^l_<t))

    (with label smoothing ε: −(1−ε) log σ(d) − ε log σ(−d)). No reference model: the
    reward is the ARM's own log-likelihood, unlike DPO's log-ratio.

    Args:
      chosen_logp_bt, rejected_logp_bt: `[B, T]` per-token log-probs of each side's
        response under π_r (the two sides may have different T).
      chosen_mask_bt, rejected_mask_bt: `[B, T]` 1 for response tokens.
      beta_r: reward scale, > 0.
      label_smoothing: ε in [0, 0.5).
      where: optional `[B]` pair mask.

    Returns:
      (`[B]` losses, 0 where `where` is 0; metrics `loss/bt`, `reward/accuracy`,
      `reward/margin`, `reward/chosen`, `reward/rejected`, `reward/center` of
      `losses.bradley_terry_loss`, plus `arm/chosen_logp` and `arm/rejected_logp`, the
      mean summed log-probs).

    Example:
      >>> arm_loss(jnp.array([[-1.0, -2.0]]), jnp.ones((1, 2)),
      ...          jnp.array([[-3.0, -4.0]]), jnp.ones((1, 2)), beta_r=0.5)[0]
      Array([0.126928], dtype=float32)           # −log σ(0.5·(−3) − 0.5·(−7)) = −log σ(2)
    """
    if not beta_r > 0:
        raise ValueError(f"arm_loss beta_r must be > 0, got {beta_r}")
    rc = arm_rewards(chosen_logp_bt, chosen_mask_bt, beta_r=beta_r)
    rr = arm_rewards(rejected_logp_bt, rejected_mask_bt, beta_r=beta_r)
    loss_b, metrics = preference.bradley_terry_loss(rc, rr, label_smoothing=label_smoothing,
                                                    where=where)
    metrics["arm/chosen_logp"] = mean_where(jax.lax.stop_gradient(rc) / beta_r, where)
    metrics["arm/rejected_logp"] = mean_where(jax.lax.stop_gradient(rr) / beta_r, where)
    return loss_b, metrics


def arm_pair_loss(params, batch, *, config: ModelConfig, beta_r: float = 0.05,
                  label_smoothing: float = 0.0, **apply_kwargs):
    """`arm_loss` on a preference-pipeline batch (`PairBatch`: `chosen` / `rejected` with
    `tokens`, `attention_mask`, `loss_mask` [B, T]) for `train.make_train_step`: one
    teacher-forced pass over both sides stacked; `params` is the ARM language model."""
    sides = {k: jnp.concatenate([batch["chosen"][k], batch["rejected"][k]], axis=0)
             for k in ("tokens", "attention_mask", "loss_mask")}
    logp = sequence_logprobs(params, sides["tokens"], sides["attention_mask"], config=config,
                             **apply_kwargs)
    B = batch["chosen"]["tokens"].shape[0]
    m = sides["loss_mask"]
    loss_b, metrics = arm_loss(logp[:B], m[:B], logp[B:], m[B:], beta_r=beta_r,
                               label_smoothing=label_smoothing)
    metrics["accuracy"] = metrics["reward/accuracy"]
    return jnp.mean(loss_b), metrics


# ----------------------------------------------------------------------------- decoding


def guidance_weight(beta: float) -> float:
    """1/β, the exponent on π_r; 0 for β = inf (the base policy). Raises unless β > 0."""
    beta = float(beta)
    if not beta > 0:
        raise ValueError(f"GenARM beta must be > 0 (inf: the base policy), got {beta}")
    return 0.0 if math.isinf(beta) else 1.0 / beta


def guided_logits(base_logits_bv: jax.Array, rm_logits_bv: jax.Array, weight) -> jax.Array:
    """log π_decode up to a per-row constant (GenARM, arXiv:2410.08193):

        base_logits + weight · log softmax(rm_logits),      weight = 1/β

    in float32. The base logits are left unnormalised (softmax is shift-invariant), so
    weight = 0 returns them bit for bit and greedy decoding equals the base policy's.
    """
    rm_logp_bv = jax.nn.log_softmax(rm_logits_bv.astype(jnp.float32), axis=-1)
    return base_logits_bv.astype(jnp.float32) + weight * rm_logp_bv


class GuidedState(NamedTuple):
    """Decode state of the two models over the same R rows.

    policy: the base policy's `SamplingState`; its `logits` are the base logits, its
      tokens / logprobs / flags are those of the guided completion (logprobs under
      π_decode at the sampling temperature).
    reward: the ARM's `SamplingState`; only `cache`, `logits` (the ARM's next-token
      logits) and `logprobs` (log π_r of each drawn token, 0 after the end) are used.
    """

    policy: SamplingState
    reward: SamplingState


class GuidedSamples(NamedTuple):
    """`samples`: the guided completions (`Samples`, [B, G, ...]); `reward_logprobs`:
    [B, G, T] log π_r of each completion token (its sum times β_r is the ARM reward)."""

    samples: Samples
    reward_logprobs: jax.Array


def _check_pair(base_config: ModelConfig, rm_config: ModelConfig) -> None:
    if base_config.vocab_size != rm_config.vocab_size:
        raise ValueError(f"GenARM needs the base policy and the autoregressive RM on one "
                         f"vocabulary: base vocab_size={base_config.vocab_size}, RM "
                         f"vocab_size={rm_config.vocab_size}")


@functools.partial(jax.jit, static_argnames=("base_config", "rm_config", "sampling"),
                   donate_argnames=("state",))
def guided_decode(base_params, rm_params, state: GuidedState, weight: jax.Array, *,
                  base_config: ModelConfig, rm_config: ModelConfig,
                  sampling: SamplerConfig) -> GuidedState:
    """Samples from π_base · π_r^weight until every row is done (`state` is donated).

    Both caches advance by one token per step inside one `lax.while_loop` per decode
    phase (`sampling.sampler.decode_phases`), as `sampling.decode` does for one model.
    """
    base_params, rm_params = decode_params(base_params), decode_params(rm_params)
    T = sampling.max_new_tokens
    prompt_len = state.policy.cache.mask.shape[1] - T

    def forward(params, config, token_r, cache):
        hidden_r1d, cache = transformer.apply(params, token_r[:, None], config=config,
                                              cache=cache, output="hidden")
        return transformer.project(params, hidden_r1d, config=config)[:, 0], cache

    def body(st: GuidedState) -> GuidedState:
        pol, rew = st.policy, st.reward
        active_r = ~pol.done
        guided_rv = guided_logits(pol.logits, rew.logits, weight)
        pol, token_r = advance(pol._replace(logits=guided_rv), sampling)
        rm_logp_r = jnp.where(active_r, token_logprobs(rew.logits, token_r), 0.0)
        rm_logprobs = jax.lax.dynamic_update_slice(rew.logprobs, rm_logp_r[:, None],
                                                   (0, rew.step))
        logits_rv, cache = forward(base_params, base_config, token_r, pol.cache)
        rm_logits_rv, rm_cache = forward(rm_params, rm_config, token_r, rew.cache)
        return GuidedState(
            policy=constrain_state(pol._replace(cache=cache, logits=logits_rv)),
            reward=constrain_state(rew._replace(cache=rm_cache, logits=rm_logits_rv,
                                                 logprobs=rm_logprobs, step=rew.step + 1)))

    for end in decode_phases(T):
        def cond(st: GuidedState, end=end):
            return (st.policy.step < end) & ~jnp.all(st.policy.done)

        state = GuidedState(*(constrain_state(s._replace(
            cache=resize_cache(s.cache, prompt_len + end))) for s in state))
        state = jax.lax.while_loop(cond, body, state)
    return state


def genarm_sample(base_params, rm_params, prompts, key: jax.Array | None = None, *,
                  beta: float, base_config: ModelConfig, rm_config: ModelConfig,
                  sampling: SamplerConfig, prompt_mask=None) -> GuidedSamples:
    """Decodes a frozen base policy guided by an autoregressive RM (GenARM,
    arXiv:2410.08193): tokens ~ π_base · π_r^(1/β), renormalised, then the sampling
    controls of `sampling` (temperature 0: argmax of the guided logits).

    Args:
      base_params, rm_params: the base policy and the ARM (any sizes, one vocabulary);
        inside `sharding.use_mesh` rows split over the data axes as in `sampling.sample`.
      prompts: B token-id sequences, or a [B, P] array with `prompt_mask`; both models
        read the same prompt tokens.
      key: one PRNG key (required unless greedy); per-row draws as in `sampling.sample`.
      beta: the decoding β > 0; `math.inf` is the base policy.
      base_config, rm_config, sampling: static.

    Returns:
      `GuidedSamples`.
    """
    _check_pair(base_config, rm_config)
    weight = guidance_weight(beta)
    tokens_bp, mask_bp = prompt_batch(prompts, prompt_mask, config=base_config,
                                       sampling=sampling)
    if key is None:
        if not sampling.greedy:
            raise ValueError(f"sampling at temperature {sampling.temperature} needs a PRNG key")
        key = jax.random.key(0)
    if sampling.top_k > base_config.vocab_size:
        raise ValueError(f"SamplerConfig.top_k={sampling.top_k} exceeds vocab_size="
                         f"{base_config.vocab_size}")
    state = GuidedState(
        policy=prefill(base_params, tokens_bp, mask_bp, key, config=base_config,
                       sampling=sampling),
        reward=prefill(rm_params, tokens_bp, mask_bp, key, config=rm_config, sampling=sampling))
    state = guided_decode(base_params, rm_params, state, jnp.float32(weight),
                          base_config=base_config, rm_config=rm_config, sampling=sampling)
    samples = finalize(state.policy, num_samples=sampling.num_samples)
    B, G, T = samples.tokens.shape
    return GuidedSamples(samples=samples,
                         reward_logprobs=state.reward.logprobs.reshape(B, G, T))

