"""Outcome-reward advantage estimators: GRPO, RLOO, REINFORCE++, and token helpers.

Rewards come as `[B, G]`: B prompts, G sampled completions per prompt (a "group").
An optional `where=` `[B, G]` mask drops samples (failed generations, filtered groups);
dropped samples get advantage 0 and do not enter any statistic. Advantages are
constants of the policy update: every estimator here is wrapped in `stop_gradient`.

Time-recursive estimators (GAE, reward-to-go, PURE min-form process returns) live in
`rewardjax.losses.returns`.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rewardjax.losses._common import (active, as_float, check_choice, last_true, safe_div,
                                      zero_where_inactive)
from rewardjax.losses.returns import reward_to_go

GROUP, BATCH = "group", "batch"


def _group_stats(rewards_bg, m, *, ddof: int):
    n = jnp.sum(m, axis=-1, keepdims=True)
    mean = safe_div(jnp.sum(jnp.where(m, rewards_bg, 0), axis=-1, keepdims=True), n)
    sq = jnp.sum(jnp.where(m, jnp.square(rewards_bg - mean), 0), axis=-1, keepdims=True)
    std = jnp.sqrt(safe_div(sq, jnp.maximum(n - ddof, 0)))
    return mean, std


def _equal_within_group(rewards_bg, m):
    big = jnp.finfo(rewards_bg.dtype).max
    hi = jnp.max(jnp.where(m, rewards_bg, -big), axis=-1, keepdims=True)
    lo = jnp.min(jnp.where(m, rewards_bg, big), axis=-1, keepdims=True)
    return hi <= lo


def grpo_advantages(rewards_bg, *, where=None, scale_by_std: bool = True,
                    std_scope: str = GROUP, epsilon: float = 1e-6,
                    ddof: int = 1) -> jax.Array:
    """Group-normalised advantages (GRPO, "DeepSeekMath", arXiv:2402.03300).

        A_ig = (r_ig − mean_g r_i) / (std + ε)      (scale_by_std=True)
        A_ig =  r_ig − mean_g r_i                   (scale_by_std=False: Dr. GRPO,
                                                     arXiv:2503.20783)

    `std_scope="group"` uses the std of each prompt's group; `"batch"` the std of all
    valid rewards in the batch (TRL's ``scale_rewards="batch"``; group mean, batch std).
    `ddof=1` (Bessel) matches ``torch.std`` as used by TRL, verl and OpenRLHF.

    Degenerate groups give exactly 0: a group of one sample, and a group whose valid
    rewards are all equal (floating-point rounding in the mean would otherwise leave a
    residue of order 1e-8 that the division by std + ε can amplify to O(1e-2)).
    Note verl instead passes a single-sample group's raw score through; here it is 0.

    Args:
      rewards_bg: `[B, G]` scalar rewards.
      where: optional `[B, G]` validity mask.
      scale_by_std: divide by the std (GRPO) or not (Dr. GRPO).
      std_scope: "group" or "batch".
      epsilon: added to the std (verl: 1e-6; TRL: 1e-4).
      ddof: delta degrees of freedom of the std.

    Returns:
      `[B, G]` advantages, 0 where `where` is 0.

    Example:
      >>> grpo_advantages(jnp.array([[1., 0., 0., 1.]]))   # mean .5, std .57735
      Array([[ 0.866, -0.866, -0.866,  0.866]], dtype=float32)
    """
    check_choice("std_scope", std_scope, (GROUP, BATCH))
    r = jax.lax.stop_gradient(as_float(rewards_bg))
    m = jnp.ones(r.shape, bool) if where is None else jnp.broadcast_to(active(where), r.shape)
    mean, std = _group_stats(r, m, ddof=ddof)
    adv = r - mean
    if scale_by_std:
        if std_scope == BATCH:
            flat_r, flat_m = r.reshape(1, -1), m.reshape(1, -1)
            _, std = _group_stats(flat_r, flat_m, ddof=ddof)
        adv = adv / (std + epsilon)
    adv = jnp.where(_equal_within_group(r, m), 0, adv)
    return zero_where_inactive(adv, m)


def rloo_advantages(rewards_bg, *, where=None) -> jax.Array:
    """REINFORCE Leave-One-Out advantages ("Back to Basics: Revisiting REINFORCE Style
    Optimization for Learning from Human Feedback in LLMs", arXiv:2402.14740).

        A_ig = r_ig − (1/(n_i − 1)) Σ_{j≠g} r_ij  =  n_i/(n_i − 1) · (r_ig − mean_i)

    with n_i the number of valid samples of prompt i; groups with n_i ≤ 1 get 0.

    Args:
      rewards_bg: `[B, G]` rewards.
      where: optional `[B, G]` validity mask.

    Returns:
      `[B, G]` advantages.
    """
    r = jax.lax.stop_gradient(as_float(rewards_bg))
    m = jnp.ones(r.shape, bool) if where is None else jnp.broadcast_to(active(where), r.shape)
    n = jnp.sum(m, axis=-1, keepdims=True)
    total = jnp.sum(jnp.where(m, r, 0), axis=-1, keepdims=True)
    baseline = safe_div(total - r, n - 1)
    adv = jnp.where(n > 1, r - baseline, 0)
    adv = jnp.where(_equal_within_group(r, m), 0, adv)
    return zero_where_inactive(adv, m)


def masked_whiten(values, mask, *, epsilon: float = 1e-8, ddof: int = 1,
                  shift_mean: bool = True) -> jax.Array:
    """Whiten over all active entries: (x − mean) / sqrt(var + ε), 0 outside the mask.

    Mean and (Bessel-corrected, `ddof=1`) variance are taken over every active entry
    of the whole array, as verl's ``masked_whiten``. With `shift_mean=False` the mean
    is added back (scale only).
    """
    x = as_float(values)
    m = jnp.broadcast_to(active(mask), x.shape)
    n = jnp.sum(m)
    mean = safe_div(jnp.sum(jnp.where(m, x, 0)), n)
    var = safe_div(jnp.sum(jnp.where(m, jnp.square(x - mean), 0)), jnp.maximum(n - ddof, 0))
    out = (x - mean) * jax.lax.rsqrt(var + epsilon)
    if not shift_mean:
        out = out + mean
    return zero_where_inactive(out, m)


def place_at_last_token(values_b, mask_bt) -> jax.Array:
    """Put a per-sequence value on the last active token: `[...]` -> `[..., T]`.

    The usual way to turn an outcome reward into token-level rewards.
    """
    v = as_float(values_b)[..., None]
    return jnp.where(last_true(mask_bt), v, 0)


def expand_to_tokens(values_b, mask_bt) -> jax.Array:
    """Broadcast a per-sequence value over its active tokens: `[...]` -> `[..., T]`."""
    v = as_float(values_b)[..., None]
    return jnp.where(active(mask_bt), v, 0)


def reinforce_pp_advantages(rewards_bg, mask_bgt, *, group_baseline: bool = False,
                            token_penalty_bgt=None, gamma: float = 1.0,
                            epsilon: float = 1e-8):
    """REINFORCE++ advantages ("REINFORCE++: An Efficient RLHF Algorithm with Robustness
    to Both Prompt and Reward Models", arXiv:2501.03262).

        r'_i   = r_i − mean_group(r)            (group_baseline=True: REINFORCE++-baseline)
        ρ_it   = r'_i·[t = last token] − p_it   (p: optional per-token penalty, e.g. β·KL)
        G_it   = Σ_{k ≥ t} γ^{k−t} ρ_ik         (reward-to-go over active tokens)
        A_it   = (G_it − mean) / sqrt(var + ε)  (mean/var over ALL active tokens of the batch)

    The global (batch-level, token-weighted) normalisation is what distinguishes it
    from GRPO's per-group normalisation; without a penalty and with γ = 1 this is
    verl's ``reinforce_plus_plus(_baseline)`` estimator, with a penalty OpenRLHF's.

    Args:
      rewards_bg: `[B, G]` outcome rewards (or `[B]` with `mask_bgt` `[B, T]` when
        `group_baseline=False`).
      mask_bgt: `[B, G, T]` response mask.
      group_baseline: subtract each prompt's mean reward first.
      token_penalty_bgt: optional `[B, G, T]` per-token penalty subtracted from the
        rewards (e.g. `kl_coef * kl_estimate(...)`, k1).
      gamma: discount.
      epsilon: variance floor of the whitening.

    Returns:
      (advantages `[B, G, T]`, returns `[B, G, T]` before whitening).
    """
    r = jax.lax.stop_gradient(as_float(rewards_bg))
    if group_baseline:
        r = r - jnp.mean(r, axis=-1, keepdims=True)
        r = jnp.where(_equal_within_group(as_float(rewards_bg), jnp.ones(r.shape, bool)),
                      0, r)
    token_r = place_at_last_token(r, mask_bgt)
    if token_penalty_bgt is not None:
        token_r = token_r - jax.lax.stop_gradient(as_float(token_penalty_bgt))
    returns = reward_to_go(token_r, mask_bgt, gamma=gamma)
    return masked_whiten(returns, mask_bgt, epsilon=epsilon), returns


def combine_advantages(outcome_adv_b, process_adv_bt, mask_bt, *,
                       outcome_coef: float = 1.0, process_coef: float = 1.0) -> jax.Array:
    """Token advantages from an outcome advantage plus a process (step) advantage.

        A_t = outcome_coef · A_outcome + process_coef · A_process,t      (active tokens)

    PRIME ("Process Reinforcement through Implicit Rewards", arXiv:2502.01456) and
    PURE (arXiv:2504.15275) add a verifiable-reward advantage (e.g. RLOO) to the
    returns of process rewards; adding the outcome advantage at the last token before
    a γ = 1 reward-to-go is the same thing as broadcasting it here.

    Args:
      outcome_adv_b: `[B]` (or `[B, G]`) per-sequence advantages.
      process_adv_bt: `[B, T]` (or `[B, G, T]`) per-token process advantages, e.g.
        from `returns.process_returns`.
      mask_bt: `[B, T]` response mask.

    Returns:
      `[B, T]` advantages, 0 outside the mask.
    """
    out = outcome_coef * expand_to_tokens(outcome_adv_b, mask_bt)
    out = out + process_coef * as_float(process_adv_bt)
    return jax.lax.stop_gradient(zero_where_inactive(out, mask_bt))


def rloo_token_rewards(token_rewards_bgt, mask_bgt) -> jax.Array:
    """Leave-one-out baseline for dense (token) rewards, as PRIME ("Process Reinforcement
    through Implicit Rewards", arXiv:2502.01456) applies it to implicit process rewards.

        m_ig    = mean over the active tokens of sample g of r_igt
        r'_igt  = r_igt · G/(G − 1) − Σ_j m_ij / (G − 1)          (active tokens)

    With the reward on the last token only (an outcome reward placed by
    `place_at_last_token`) this is exactly `rloo_advantages`: r_ig − mean_{j≠g} r_ij.
    Groups of one sample get 0.

    Args:
      token_rewards_bgt: `[B, G, T]` token rewards.
      mask_bgt: `[B, G, T]` where they count (response tokens, or only the last one).

    Returns:
      `[B, G, T]` baselined token rewards, 0 outside the mask.

    Example:
      >>> rloo_token_rewards(jnp.array([[[1., 0.], [0., 0.]]]),
      ...                    jnp.array([[[1, 0], [1, 0]]]))   # = rloo [[1, 0]] -> [[1, -1]]
      Array([[[ 1.,  0.], [-1.,  0.]]], dtype=float32)
    """
    r = jax.lax.stop_gradient(as_float(token_rewards_bgt))
    m = jnp.broadcast_to(active(mask_bgt), r.shape)
    G = r.shape[-2]
    if G < 2:
        return jnp.zeros_like(r)
    seq_mean = safe_div(jnp.sum(jnp.where(m, r, 0), -1), jnp.sum(m, -1))  # [B, G]
    baseline = jnp.sum(seq_mean, -1)[..., None, None] / (G - 1)
    return zero_where_inactive(r * G / (G - 1) - baseline, m)


def prime_advantages(outcome_bg, token_rewards_bgt, mask_bgt, *, outcome_coef: float = 5.0,
                     process_coef: float = 5.0) -> tuple[jax.Array, jax.Array]:
    """PRIME's advantages ("Process Reinforcement through Implicit Rewards",
    arXiv:2502.01456, Eq. 5 and its verl recipe): leave-one-out baselines on each reward
    source separately, then one γ = 1 return, then whitening over the batch.

        ρ_igt = process_coef · RLOO_dense(r^φ)_igt + outcome_coef · RLOO(r^o)_ig·[t = last]
        G_igt = Σ_{s ≥ t} ρ_igs,        A = masked_whiten(G)

    `r^φ_t = β log π_φ(y_t|y_<t)/π_ref(y_t|y_<t)` are the implicit PRM's token rewards.
    The coefficients' common scale is removed by the whitening; only their ratio
    matters (the recipe's defaults are 5 and 5).

    Args:
      outcome_bg: `[B, G]` verifiable outcome rewards.
      token_rewards_bgt: `[B, G, T]` dense process rewards.
      mask_bgt: `[B, G, T]` response mask.

    Returns:
      (advantages `[B, G, T]`, returns `[B, G, T]` before whitening).
    """
    m = active(mask_bgt)
    process = rloo_token_rewards(token_rewards_bgt, m)
    last = last_true(m)
    outcome = rloo_token_rewards(place_at_last_token(outcome_bg, m), last)
    returns = reward_to_go(process_coef * process + outcome_coef * outcome, m)
    return masked_whiten(returns, m), returns


def gate_by_outcome(process_bg, correct_bg) -> jax.Array:
    """Posterior-GRPO's gate ("Posterior-GRPO: Rewarding Reasoning Processes in Code
    Generation", arXiv:2508.05170): a process reward counts only for rollouts whose
    outcome is correct, so the policy cannot earn it with a wrong answer.

        r^gated_ig = r^process_ig · [correct_ig]
    """
    return jnp.where(active(correct_bg), as_float(process_bg), 0.0)


def decoupled_length_advantages(correct_bg, lengths_bg, *, lam: float = 1.0,
                                scale_by_std: bool = True, epsilon: float = 1e-6
                                ) -> jax.Array:
    """DRPO's decoupled length signal ("DRPO: Efficient Reasoning via Decoupled Reward
    Policy Optimization", arXiv:2510.04474) on group-relative advantages.

    The 0/1 correctness advantage A_ig = grpo(correct) is kept for wrong rollouts. The
    correct rollouts of a group share their positive advantage A⁺ by the closed-form
    optimal positive distribution of a length reward under a KL constraint, normalised
    among the correct rollouts only:

        ℓ̃_ig  = (ℓ_ig − mean_{pos} ℓ) / (std_{pos} ℓ + ε)       (pos: correct rollouts of i)
        w_ig  = n⁺_i · softmax_{g ∈ pos}(−ℓ̃_ig / λ)
        A_ig  = w_ig · A⁺_i       (correct),        A_ig = A_ig (wrong)

    so a long correct rollout gets a smaller but never a negative advantage, unlike a
    length penalty added to the reward before GRPO's normalisation. A group with one
    correct rollout (or all of equal length) gets the plain advantages.

    Args:
      correct_bg: `[B, G]` 0/1 correctness.
      lengths_bg: `[B, G]` response lengths (tokens).
      lam: λ, the KL strength; smaller concentrates the weight on the shortest.

    Returns:
      `[B, G]` advantages.
    """
    c = active(correct_bg)
    base = grpo_advantages(c.astype(jnp.float32), scale_by_std=scale_by_std, epsilon=epsilon)
    length = as_float(lengths_bg)
    mean, std = _group_stats(length, c, ddof=0)
    z = jnp.where(c, -(length - mean) / (std + epsilon) / lam, -jnp.inf)
    z = z - jnp.max(jnp.where(c, z, -jnp.inf), -1, keepdims=True)
    e = jnp.where(c, jnp.exp(jnp.where(c, z, 0)), 0)
    n_pos = jnp.sum(c, -1, keepdims=True)
    w = safe_div(e * n_pos, jnp.sum(e, -1, keepdims=True))
    return jax.lax.stop_gradient(jnp.where(c, w * base, base))
