"""The rollout engine: a jit-compiled KV-cache sampler with exact log-probs.

    samples = sample(params, prompts, key, config=model_config,
                     sampling=SamplerConfig(max_new_tokens=256, num_samples=8,
                                            temperature=1.0, eos_ids=(eos,)))

Three jitted pieces, in the style of gemma's sampler:

1. `prefill` runs the B prompts once (left-padded to a bucket length P), projects only
   the last position to the vocabulary, then replicates each prompt's KV cache and
   next-token logits G times (row b*G + g is sample g of prompt b) into a cache of
   fixed length S = P + max_new_tokens.
2. `decode` is a pure step inside `lax.while_loop`: sample a token from the current
   logits, update the finished flags, feed the token to the model (its keys and values
   are written into the cache in place; the state is donated) for the next logits. The
   loop stops as soon as every row is done. Sampling lives only in the loop body, so
   it is compiled once per phase; the price is one forward pass after the last token.
   The loop runs in a few phases (`decode_phases`), each over a cache only as long
   as the slots it can fill, so attention does not read the empty tail of the cache.
3. `sample` is the host-side entry point: it pads prompts to a bucket (so a new prompt
   length inside a bucket reuses the compiled programs), runs 1 and 2 and reshapes the
   result into `Samples` [B, G, ...].

A decoder that steps several models together (GenARM's guided decoding,
`search.genarm`) builds its own loop from the same public pieces: `prompt_batch` (pad
to a bucket), `decode_params` (the weights' decode layout), `prefill`, `decode_phases`
with `resize_cache` between phases, `advance` (sample from the state's logits),
`constrain_state` (the state's mesh layout) and `finalize` (into `Samples`).

Randomness: one key per call, split into one key per row at prefill and folded with
the step index at each step, so each row's draws depend only on (key, row, step): the
result is the same on one device and on a mesh.
"""

from __future__ import annotations

import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rewardjax import sharding
from rewardjax.models import transformer
from rewardjax.models.config import ModelConfig
from rewardjax.models.transformer import KVCache
from rewardjax.sampling.config import FinishReason, SamplerConfig
from rewardjax.sampling.controls import select_tokens
from rewardjax.sampling.logprobs import left_align

_RUNNING = 0
_CACHE_AXES = ("batch", "act_kv_heads", "cache_length", "head_dim")


class SamplingState(NamedTuple):
    """Decode state for R = B*G rows; row b*G + g is sample g of prompt b.

    cache: per-layer KV cache, k/v: L arrays [R, K, S, H]; index is the next slot.
    logits: [R, V] float32 logits for completion token `step`.
    tokens: [R, T] int32 sampled completion tokens, `pad_id` after each row's end.
    logprobs: [R, T] float32 log-prob of each sampled token (0 after the end).
    recent: [R, M] the last M sampled tokens (-1 before any), M = longest stop sequence.
    done: [R] bool, the row has finished.
    finish_reason: [R] int32 `FinishReason` value, 0 while running.
    lengths: [R] int32 completion tokens so far (including a final eos/stop token).
    keys: [R] per-row PRNG keys.
    step: [] int32 tokens sampled so far (the next completion slot).
    """

    cache: KVCache
    logits: jax.Array
    tokens: jax.Array
    logprobs: jax.Array
    recent: jax.Array
    done: jax.Array
    finish_reason: jax.Array
    lengths: jax.Array
    keys: jax.Array
    step: jax.Array


class Samples(NamedTuple):
    """G completions for each of B prompts.

    tokens: [B, G, T] int32 completion ids; T = max_new_tokens; `pad_id` after the end.
    mask: [B, G, T] bool, True for the `lengths` real completion tokens (a final eos or
      stop-sequence token is included: it was sampled and carries a log-prob).
    lengths: [B, G] int32 number of completion tokens.
    finish_reason: [B, G] int32 `FinishReason` (EOS, STOP or LENGTH).
    logprobs: [B, G, T] float32 log softmax(logits / temperature)[token] of each sampled
      token, over the full vocabulary *before* top-k/top-p truncation (at temperature 1
      for greedy), 0 where mask is False. This is the behaviour policy's log-prob that
      the RL ratio needs; `completion_logprobs` recomputes it teacher-forced.
    """

    tokens: jax.Array
    mask: jax.Array
    lengths: jax.Array
    finish_reason: jax.Array
    logprobs: jax.Array


# ----------------------------------------------------------------------------- steps


def stop_table(sequences: Sequence[Sequence[int]]) -> tuple[np.ndarray, np.ndarray]:
    """Token sequences (stop sequences, step delimiters) right-aligned in a [Q, M] table,
    with a validity mask: row q matches when the last M tokens equal it where valid."""
    M = max((len(s) for s in sequences), default=0)
    table = np.full((len(sequences), M), -1, np.int32)
    valid = np.zeros(table.shape, bool)
    for q, seq in enumerate(sequences):
        table[q, M - len(seq):] = seq
        valid[q, M - len(seq):] = True
    return table, valid


def advance(state: SamplingState, sampling: SamplerConfig) -> tuple[SamplingState, jax.Array]:
    """Samples completion token `state.step` for every running row and updates the flags.

    Returns the new state and the sampled tokens [R] (pad for finished rows).
    """
    s = state.step
    keys_r = jax.vmap(jax.random.fold_in, in_axes=(0, None))(state.keys, s)
    token_r, logp_r = select_tokens(state.logits, keys_r, temperature=sampling.temperature,
                                    top_k=sampling.top_k, top_p=sampling.top_p)
    active_r = ~state.done
    token_r = jnp.where(active_r, token_r, sampling.pad_id)
    logp_r = jnp.where(active_r, logp_r, 0.0)
    tokens = jax.lax.dynamic_update_slice(state.tokens, token_r[:, None], (0, s))
    logprobs = jax.lax.dynamic_update_slice(state.logprobs, logp_r[:, None], (0, s))

    is_eos_r = jnp.zeros_like(active_r)
    for eos in sampling.eos_ids:
        is_eos_r |= token_r == eos
    is_eos_r &= active_r
    recent = state.recent
    is_stop_r = jnp.zeros_like(active_r)
    if sampling.stop_sequences:
        recent = jnp.concatenate([recent[:, 1:], token_r[:, None]], axis=1)
        table_qm, valid_qm = stop_table(sampling.stop_sequences)
        match_rqm = (recent[:, None, :] == table_qm[None]) | ~valid_qm[None]
        is_stop_r = jnp.any(jnp.all(match_rqm, axis=-1), axis=-1) & active_r & ~is_eos_r
    is_last = s + 1 >= sampling.max_new_tokens
    reason_r = jnp.where(is_eos_r, int(FinishReason.EOS),
                         jnp.where(is_stop_r, int(FinishReason.STOP),
                                   jnp.where(active_r & is_last, int(FinishReason.LENGTH),
                                             state.finish_reason)))
    state = state._replace(
        tokens=tokens, logprobs=logprobs, recent=recent,
        done=state.done | is_eos_r | is_stop_r | is_last,
        finish_reason=reason_r.astype(jnp.int32),
        lengths=jnp.where(active_r, s + 1, state.lengths),
        step=s + 1)
    return state, token_r


def constrain_state(state: SamplingState) -> SamplingState:
    c = state.cache
    rows = lambda x: sharding.constrain(x, ("batch",) + (None,) * (x.ndim - 1))  # noqa: E731
    per_layer = lambda xs: tuple(sharding.constrain(x, _CACHE_AXES) for x in xs)  # noqa: E731
    cache = KVCache(k=per_layer(c.k), v=per_layer(c.v),
                    mask=sharding.constrain(c.mask, ("batch", "cache_length")), index=c.index)
    return state._replace(cache=cache, logits=rows(state.logits), tokens=rows(state.tokens),
                          logprobs=rows(state.logprobs),
                          recent=rows(state.recent), done=rows(state.done),
                          finish_reason=rows(state.finish_reason), lengths=rows(state.lengths))


@functools.partial(jax.jit, static_argnames=("config", "sampling"))
def prefill(params: transformer.Params, prompt_tokens: jax.Array, prompt_mask: jax.Array,
            key: jax.Array, *, config: ModelConfig, sampling: SamplerConfig) -> SamplingState:
    """Runs the prompts once and replicates their cache and logits G times.

    Args:
      params: model parameters.
      prompt_tokens: [B, P] ids, left- or right-padded; P is compiled in (`sample`
        pads P to a bucket).
      prompt_mask: [B, P] 1 for real tokens (contiguous per row, at least one).
      key: one PRNG key for the whole call.
      config, sampling: static.

    Returns:
      The state for B*G rows, ready to sample completion token 0.
    """
    B, P = prompt_tokens.shape
    G, T = sampling.num_samples, sampling.max_new_tokens
    tokens_bp, mask_bp = left_align(prompt_tokens.astype(jnp.int32), prompt_mask)
    dtype = jnp.dtype(sampling.cache_dtype) if sampling.cache_dtype else params["embed"].dtype
    cache = KVCache.init(config, B, P, dtype, per_layer=True)
    hidden_bpd, cache = transformer.apply(params, tokens_bp, config=config, mask_bt=mask_bp,
                                          cache=cache, output="hidden")
    # Only the last position predicts the first completion token; projecting all P
    # positions to the vocabulary would cost as much as the prefill itself.
    logits_bv = transformer.project(params, hidden_bpd[:, -1:], config=config)[:, 0]

    # G samples share the prefill: each prompt's cache and logits are copied G times
    # into a cache with room for the completion.
    S = P + T

    def grow(x, length_axis):
        x = jnp.repeat(x, G, axis=0)
        pad = [(0, 0)] * x.ndim
        pad[length_axis] = (0, S - P)
        return jnp.pad(x, pad)

    cache = KVCache(k=tuple(grow(k, 2) for k in cache.k), v=tuple(grow(v, 2) for v in cache.v),
                    mask=grow(cache.mask, 1), index=cache.index)
    R = B * G
    M = max((len(s) for s in sampling.stop_sequences), default=0)
    state = SamplingState(
        cache=cache,
        logits=jnp.repeat(logits_bv, G, axis=0),
        tokens=jnp.full((R, T), sampling.pad_id, jnp.int32),
        logprobs=jnp.zeros((R, T), jnp.float32),
        recent=jnp.full((R, M), -1, jnp.int32),
        done=jnp.zeros((R,), bool),
        finish_reason=jnp.full((R,), _RUNNING, jnp.int32),
        lengths=jnp.zeros((R,), jnp.int32),
        keys=jax.random.split(key, R),
        step=jnp.zeros((), jnp.int32),
    )
    return constrain_state(state)


def decode_params(params: transformer.Params) -> transformer.Params:
    """The weights in the layout the decode loop reads fastest on this backend.

    On CPU, XLA copies a layer's weights out of the stacked arrays at every step, and
    repacks input-major weights for every matmul; re-laying the weights out once per
    call (per-layer, output-major, q/k/v and gate/up fused) costs one copy of the
    weights and saves both. Accelerators slice stacked weights inside the matmul, so
    they keep the params as they are (and their memory).
    """
    if jax.default_backend() != "cpu":
        return params
    return transformer.unstack_layers(params, out_major=True)


# Decode runs in at most this many phases, each at least this many tokens long.
_MAX_PHASES, _MIN_PHASE_TOKENS = 4, 32


def decode_phases(max_new_tokens: int) -> tuple[int, ...]:
    """The completion steps at which decode phases end (the last is `max_new_tokens`).

    Attention reads the whole cache at every step, filled or not. Decoding in a few
    phases, each with a cache just long enough for the tokens written so far (grown
    between phases), makes the average step read the prompt plus about half the
    completion (plus half a phase) instead of the full length. More phases read less
    but compile one more loop body each, so there are at most `_MAX_PHASES`.
    """
    n = max(1, min(_MAX_PHASES, max_new_tokens // _MIN_PHASE_TOKENS))
    return tuple(max_new_tokens * (i + 1) // n for i in range(n))


def resize_cache(cache: KVCache, length: int) -> KVCache:
    """The cache cut or zero-padded to `length` slots (its filled slots must fit)."""
    def fit(x, axis):
        if x.shape[axis] >= length:
            return jax.lax.slice_in_dim(x, 0, length, axis=axis)
        pad = [(0, 0)] * x.ndim
        pad[axis] = (0, length - x.shape[axis])
        return jnp.pad(x, pad)

    return KVCache(k=tuple(fit(k, 2) for k in cache.k), v=tuple(fit(v, 2) for v in cache.v),
                   mask=fit(cache.mask, 1), index=cache.index)


@functools.partial(jax.jit, static_argnames=("config", "sampling"), donate_argnames=("state",))
def decode(params: transformer.Params, state: SamplingState, *, config: ModelConfig,
           sampling: SamplerConfig) -> SamplingState:
    """Samples until every row is done or `max_new_tokens` are drawn.

    `state` is donated: its cache and token buffers are updated in place. The loop runs
    in `decode_phases` (a phase whose rows are all done exits at once); the returned
    cache has the length it came in with.
    """
    params = decode_params(params)
    prompt_len = state.cache.mask.shape[1] - sampling.max_new_tokens

    def body(st: SamplingState):
        st, token_r = advance(st, sampling)
        hidden_r1d, cache = transformer.apply(params, token_r[:, None], config=config,
                                              cache=st.cache, output="hidden")
        logits_rv = transformer.project(params, hidden_r1d, config=config)[:, 0]
        return constrain_state(st._replace(cache=cache, logits=logits_rv))

    for end in decode_phases(sampling.max_new_tokens):
        def cond(st: SamplingState, end=end):
            return (st.step < end) & ~jnp.all(st.done)

        state = constrain_state(state._replace(cache=resize_cache(state.cache, prompt_len + end)))
        state = jax.lax.while_loop(cond, body, state)
    return state  # the last phase ends at `max_new_tokens`: the cache is full length again


@functools.partial(jax.jit, static_argnames=("num_samples",))
def finalize(state: SamplingState, *, num_samples: int) -> Samples:
    R, T = state.tokens.shape
    shape = (R // num_samples, num_samples)
    mask = jnp.arange(T)[None, :] < state.lengths[:, None]
    return Samples(tokens=state.tokens.reshape(*shape, T), mask=mask.reshape(*shape, T),
                   lengths=state.lengths.reshape(shape),
                   finish_reason=state.finish_reason.reshape(shape),
                   logprobs=state.logprobs.reshape(*shape, T))


# ----------------------------------------------------------------------------- entry point


def sample(params: transformer.Params, prompts, key: jax.Array | None = None, *,
           config: ModelConfig, sampling: SamplerConfig,
           prompt_mask: jax.Array | np.ndarray | None = None) -> Samples:
    """Samples G = `sampling.num_samples` completions for each prompt.

    Args:
      params: model parameters (sharded or not; inside `sharding.use_mesh` the batch is
        split over the data axes and the cache follows the logical rules).
      prompts: a list of B token-id sequences of any lengths, or a [B, P] array
        (left- or right-padded) with `prompt_mask`.
      key: one PRNG key for the call (required unless greedy); same key, same samples.
      config: the model config.
      sampling: the sampler config (static: changing it compiles a new sampler).
      prompt_mask: [B, P] 1 for real tokens when `prompts` is an array (default: all).

    Returns:
      `Samples` with tokens/mask/logprobs [B, G, T] and lengths/finish_reason [B, G].
    """
    tokens_bp, mask_bp = prompt_batch(prompts, prompt_mask, config=config, sampling=sampling)
    if key is None:
        if not sampling.greedy:
            raise ValueError(f"sampling at temperature {sampling.temperature} needs a PRNG key")
        key = jax.random.key(0)
    if sampling.top_k > config.vocab_size:
        raise ValueError(f"SamplerConfig.top_k={sampling.top_k} exceeds vocab_size={config.vocab_size}")
    state = prefill(params, tokens_bp, mask_bp, key, config=config, sampling=sampling)
    state = decode(params, state, config=config, sampling=sampling)
    return finalize(state, num_samples=sampling.num_samples)


def prompt_batch(prompts, prompt_mask, *, config: ModelConfig, sampling: SamplerConfig):
    """[B, P_bucket] tokens and mask, left-padded with zeros up to the bucket length."""
    if isinstance(prompts, (list, tuple)):
        if prompt_mask is not None:
            raise ValueError("prompt_mask is only accepted with an array of prompts, not a list")
        rows = [np.asarray(p, np.int64).reshape(-1) for p in prompts]
        if not rows:
            raise ValueError("no prompts given")
        P = sampling.bucket(max(len(r) for r in rows))
        tokens = np.zeros((len(rows), P), np.int32)
        mask = np.zeros((len(rows), P), bool)
        for b, r in enumerate(rows):
            if len(r):
                tokens[b, P - len(r):] = r
                mask[b, P - len(r):] = True
    else:
        if prompts.ndim != 2:
            raise ValueError(f"prompts must be a list of sequences or a [B, P] array, got shape "
                             f"{prompts.shape}")
        B, P = prompts.shape
        mask = np.ones((B, P), bool) if prompt_mask is None else prompt_mask
        if mask.shape != prompts.shape:
            raise ValueError(f"prompt_mask shape {mask.shape} != prompts shape {prompts.shape}")
        pad = ((0, 0), (sampling.bucket(P) - P, 0))
        xp = jnp if isinstance(prompts, jax.Array) or isinstance(mask, jax.Array) else np
        tokens, mask = xp.pad(prompts, pad), xp.pad(mask.astype(bool), pad)
    if isinstance(tokens, np.ndarray):
        # Host arrays are checked here; device arrays would need a sync to check.
        empty = np.flatnonzero(~mask.any(axis=1))
        if empty.size:
            raise ValueError(f"prompts {empty.tolist()} have no tokens")
        ids = tokens[mask]
        if ids.size and (ids.min() < 0 or ids.max() >= config.vocab_size):
            raise ValueError(f"prompt token ids must be in [0, {config.vocab_size}), got "
                             f"range [{ids.min()}, {ids.max()}]")
    return tokens, mask
