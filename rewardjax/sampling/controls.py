"""Sampling controls on one step of logits: temperature, top-k, top-p, greedy.

The log-prob returned with each token is log softmax(logits / temperature) at that
token, over the *whole* vocabulary, before any top-k/top-p truncation: it is the
policy's own probability, the quantity an RL importance ratio compares with the
training forward pass (`sequence_logprobs` computes the same number). Truncation only
decides which tokens can be drawn.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


_FLIP = 0x7FFFFFFF


def _codes(x_bv: jax.Array) -> jax.Array:
    """Order-preserving int32 codes of float32 values (a float's bits, the negative
    ones' magnitude bits flipped): x < y iff code(x) < code(y), -0.0 just below +0.0."""
    bits = jax.lax.bitcast_convert_type(x_bv.astype(jnp.float32), jnp.int32)
    return jnp.where(bits < 0, bits ^ jnp.int32(_FLIP), bits)


def _largest_code(code_bv: jax.Array, weight_bv: jax.Array, need) -> jax.Array:
    """Per row, the largest code c with sum(weight[code >= c]) >= need: int32 [B].

    Exact in 32 bisection passes over the row (the sum only shrinks as c grows); each
    pass is a compare and a weighted count, whatever k or p is. XLA:CPU sorts each row
    for TopK and for sort (4.4 s for 128 x 151,936 logits here, 0.3 s this way:
    `benchmarks/sampling_topk.py`)."""

    def halve(_, bounds):  # invariant: the answer is in [lo, hi]
        lo_b, hi_b = bounds
        mid_b = (lo_b >> 1) + (hi_b >> 1) + (((lo_b & 1) + (hi_b & 1) + 1) >> 1)  # ceil, no overflow
        ok_b = jnp.sum(jnp.where(code_bv >= mid_b[:, None], weight_bv, 0), axis=-1) >= need
        return jnp.where(ok_b, mid_b, lo_b), jnp.where(ok_b, hi_b, mid_b - 1)

    B = code_bv.shape[0]
    int32 = jnp.iinfo(jnp.int32)
    return jax.lax.fori_loop(0, 32, halve, (jnp.full((B,), int32.min, jnp.int32),
                                            jnp.full((B,), int32.max, jnp.int32)))[0]


def kth_largest(x_bv: jax.Array, k: int) -> jax.Array:
    """The k-th largest value of each row, repeats counted (= lax.top_k(x, k)[0][:, -1]):
    float32 [B]; the largest code with at least k values at or above it."""
    if not jnp.issubdtype(x_bv.dtype, jnp.floating) or jnp.finfo(x_bv.dtype).bits > 32:
        raise ValueError(f"kth_largest needs float rows of at most 32 bits, got {x_bv.dtype}")
    if not 1 <= k <= x_bv.shape[-1]:
        raise ValueError(f"kth_largest needs 1 <= k <= {x_bv.shape[-1]}, got {k}")
    code_b = _largest_code(_codes(x_bv), jnp.int32(1), k)
    return jax.lax.bitcast_convert_type(jnp.where(code_b < 0, code_b ^ jnp.int32(_FLIP), code_b),
                                        jnp.float32)


def truncation_mask(scaled_bv: jax.Array, *, top_k: int = 0, top_p: float = 1.0) -> jax.Array:
    """Tokens that top-k then top-p keep: bool [B, V].

    top-k keeps the k largest logits; top-p ("The Curious Case of Neural Text
    Degeneration", arXiv:1904.09751) then keeps the smallest prefix of the remaining
    tokens, most likely first, whose renormalized probability reaches `top_p`: token i
    is kept iff the probability of the tokens ranked above it is < top_p. Ties at the
    threshold are all kept.

    No sort: top-k keeps values >= the k-th largest (`kth_largest`); top-p keeps codes
    >= c*, the largest code whose tokens at or above it hold >= top_p of the mass (a
    token above c* has < top_p above it; one below has >= top_p).
    """
    V = scaled_bv.shape[-1]
    keep_bv = jnp.ones(scaled_bv.shape, bool)
    if top_k and top_k < V:
        keep_bv = scaled_bv >= kth_largest(scaled_bv, top_k)[:, None]
    if top_p < 1.0:
        code_bv = _codes(scaled_bv)
        probs_bv = jax.nn.softmax(jnp.where(keep_bv, scaled_bv.astype(jnp.float32), -jnp.inf), axis=-1)
        keep_bv &= code_bv >= _largest_code(code_bv, probs_bv, top_p)[:, None]
    return keep_bv


def select_tokens(logits_bv: jax.Array, keys_b: jax.Array, *, temperature: float,
                  top_k: int = 0, top_p: float = 1.0) -> tuple[jax.Array, jax.Array]:
    """Draws one token per row and returns (tokens [B] int32, logprobs [B] float32).

    tokens ~ softmax(truncate(logits / temperature)), greedy (argmax) when
    temperature == 0. logprobs = log softmax(logits / temperature)[token] before
    truncation; for greedy it is taken at temperature 1.

    Args:
      logits_bv: [B, V] float32 next-token logits.
      keys_b: [B] PRNG keys (or [B, 2] raw keys), one per row, so each row's draw
        depends only on its own key (the same on one device and on a mesh).
      temperature, top_k, top_p: see `SamplerConfig`.
    """
    # float32 whatever the model dtype: a bfloat16 log-softmax is off by ~1e-2 nats,
    # which the RL ratio exp(logp_new - logp_old) would read as a policy change.
    logits_bv = logits_bv.astype(jnp.float32)
    if temperature == 0:
        tokens_b = jnp.argmax(logits_bv, axis=-1).astype(jnp.int32)
        scaled_bv = logits_bv
    else:
        scaled_bv = logits_bv / temperature
        keep_bv = truncation_mask(scaled_bv, top_k=top_k, top_p=top_p)
        truncated_bv = jnp.where(keep_bv, scaled_bv, -jnp.inf)
        tokens_b = jax.vmap(jax.random.categorical)(keys_b, truncated_bv).astype(jnp.int32)
    return tokens_b, token_logprobs(scaled_bv, tokens_b)


def token_logprobs(scaled_bv: jax.Array, tokens_b: jax.Array) -> jax.Array:
    """log softmax(scaled)[token] = scaled[token] - logsumexp(scaled), in float32: [...]."""
    scaled_bv = scaled_bv.astype(jnp.float32)
    picked = jnp.take_along_axis(scaled_bv, tokens_b[..., None].astype(jnp.int32), axis=-1)[..., 0]
    return picked - jax.nn.logsumexp(scaled_bv, axis=-1)
