"""SamplerConfig validation and the per-step sampling controls."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax.sampling import SamplerConfig, select_tokens, truncation_mask
from rewardjax.sampling.controls import kth_largest


@pytest.mark.parametrize("kwargs,field", [
    (dict(temperature=-0.1), "temperature"),
    (dict(top_p=0.0), "top_p"),
    (dict(top_p=1.5), "top_p"),
    (dict(top_k=-1), "top_k"),
    (dict(max_new_tokens=0), "max_new_tokens"),
    (dict(num_samples=0), "num_samples"),
    (dict(prompt_buckets=(64, 32)), "prompt_buckets"),
    (dict(stop_sequences=((),)), r"stop_sequences\[0\]"),
    (dict(stop_sequences="</s>"), "stop_sequences"),
    (dict(eos_ids=(-1,)), "eos_ids"),
    (dict(cache_dtype="int8"), "cache_dtype"),
])
def test_config_rejects_bad_values_naming_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        SamplerConfig(**kwargs)


def test_config_is_hashable_with_lists_as_tuples():
    c = SamplerConfig(eos_ids=[1, 2], stop_sequences=[[3, 4], [5]], prompt_buckets=[8, 16])
    assert c.eos_ids == (1, 2) and c.stop_sequences == ((3, 4), (5,))
    assert c.prompt_buckets == (8, 16)
    assert hash(c) == hash(SamplerConfig(eos_ids=(1, 2), stop_sequences=((3, 4), (5,)),
                                         prompt_buckets=(8, 16)))
    assert SamplerConfig(temperature=0.0).greedy and not c.greedy


def test_bucket_is_the_smallest_that_fits():
    c = SamplerConfig(prompt_buckets=(8, 16))
    assert [c.bucket(n) for n in (1, 8, 9, 16)] == [8, 8, 16, 16]
    with pytest.raises(ValueError, match="largest prompt bucket 16"):
        c.bucket(17)


PROBS = np.array([0.5, 0.2, 0.15, 0.1, 0.05])


@pytest.mark.parametrize("top_k,top_p,kept", [
    (2, 1.0, 2),
    (0, 0.5, 1),    # mass above token 2 is 0.5, not < 0.5
    (0, 0.6, 2),
    (0, 0.75, 3),   # 0.5 + 0.2 < 0.75 <= 0.85
    (3, 0.9, 3),    # top-p on the renormalized top 3: mass above the third is 0.82
    (3, 0.7, 2),    # ... and above the second 0.59
    (0, 1.0, 5),
])
def test_truncation_mask_hand_computed(top_k, top_p, kept):
    logits = jnp.log(jnp.asarray(PROBS[::-1], jnp.float32))[None]  # most likely last
    keep = np.asarray(truncation_mask(logits, top_k=top_k, top_p=top_p))[0]
    np.testing.assert_array_equal(keep, np.arange(5) >= 5 - kept)


@pytest.mark.parametrize("case", range(6))
def test_kth_largest_equals_lax_top_k(case):
    """Repeats, -inf, both signs, signed zeros, every k: the bisection over int codes
    must give exactly lax.top_k's k-th value."""
    rng = np.random.default_rng(case)
    V = int(rng.integers(2, 40))
    x = (rng.integers(-4, 5, (5, V)) * 0.37).astype(np.float32)  # many ties
    if case % 2:
        x[rng.random(x.shape) < 0.4] = -np.inf
    if case == 4:
        x = rng.standard_normal((5, V)).astype(np.float32) * 1e30
    if case == 5:
        x[:, : V // 2] = -0.0
    for k in range(1, V + 1):
        want = np.asarray(jax.lax.top_k(x, k)[0][:, -1])
        np.testing.assert_array_equal(np.asarray(kth_largest(jnp.asarray(x), k)), want)
        np.testing.assert_array_equal(np.asarray(truncation_mask(jnp.asarray(x), top_k=k)),
                                      x >= want[:, None])
    got = kth_largest(jnp.asarray(x, jnp.bfloat16), 1)
    np.testing.assert_array_equal(np.asarray(got), np.asarray(jnp.asarray(x, jnp.bfloat16)
                                                              .astype(jnp.float32).max(-1)))
    with pytest.raises(ValueError, match="1 <= k"):
        kth_largest(jnp.asarray(x), V + 1)


def _reference_mask(x, top_k, top_p):
    """The docstring's rule in numpy: top-k by value (ties at the k-th kept), then token i
    kept iff the renormalized mass strictly above it is < top_p."""
    keep = np.ones(x.shape, bool)
    if top_k:
        keep = x >= np.sort(x, axis=-1)[:, -top_k][:, None]
    z = np.where(keep, x, -np.inf).astype(np.float64)
    p = np.exp(z - z.max(-1, keepdims=True))
    p /= p.sum(-1, keepdims=True)
    above = np.array([[p[b][x[b] > x[b, i]].sum() for i in range(x.shape[1])]
                      for b in range(x.shape[0])])
    return keep & (above < top_p)


@pytest.mark.parametrize("top_k,top_p", [(0, 0.3), (0, 0.9), (5, 0.8), (12, 0.95), (3, 0.5)])
def test_truncation_mask_matches_the_rule_with_ties(top_k, top_p):
    rng = np.random.default_rng(top_k * 100 + int(top_p * 100))
    x = np.round(rng.standard_normal((6, 40)) * 2, 1).astype(np.float32)  # ties
    x[0, :10] = -np.inf
    got = np.asarray(truncation_mask(jnp.asarray(x), top_k=top_k, top_p=top_p))
    np.testing.assert_array_equal(got, _reference_mask(x, top_k, top_p))


def test_logprob_is_taken_before_truncation():
    logits = jnp.log(jnp.asarray([PROBS, PROBS[::-1]], jnp.float32)) * 2.0
    keys = jax.random.split(jax.random.key(0), 2)
    tokens, logp = select_tokens(logits, keys, temperature=0.5, top_k=1)
    np.testing.assert_array_equal(np.asarray(tokens), [0, 4])
    expected = jax.nn.log_softmax(logits / 0.5)[jnp.arange(2), tokens]
    np.testing.assert_allclose(np.asarray(logp), np.asarray(expected), rtol=1e-5)
    assert float(logp.max()) < -0.01  # not log(1) of the truncated distribution
    greedy, greedy_logp = select_tokens(logits, keys, temperature=0.0)
    np.testing.assert_array_equal(np.asarray(greedy), [0, 4])
    np.testing.assert_allclose(np.asarray(greedy_logp),
                               np.asarray(jax.nn.log_softmax(logits)[jnp.arange(2), greedy]),
                               rtol=1e-5)
