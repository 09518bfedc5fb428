"""The KV-cache sampler: parity with transformers, log-probs, controls, compilation."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax import sharding
from rewardjax.models import hf, transformer
from rewardjax.sampling import (FinishReason, SamplerConfig, completion_logprobs, sequence_logprobs)
from rewardjax.sampling import sample as _sample
from tests.sampling.conftest import left_pad, ragged_prompts

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

LENGTHS = (11, 7, 4, 9)  # a left-padded batch with different prompt lengths
# Tests share sampler configs (and batch shapes) where they can: every new pair compiles
# the sampler again, which dominates this module's run time.
GREEDY = SamplerConfig(max_new_tokens=10, temperature=0.0, prompt_buckets=(16,))


@functools.partial(jax.jit, static_argnames=("config",))
def _completion_logprobs(params, p_tok, p_mask, c_tok, c_mask, temperature, *, config):
    return completion_logprobs(params, p_tok, p_mask, c_tok, c_mask, config=config,
                               temperature=temperature)


@functools.partial(jax.jit, static_argnames=("config",))
def _sequence_logprobs(params, tokens, mask, temperature, *, config):
    return sequence_logprobs(params, tokens, mask, config=config, temperature=temperature)


def sample(*args, **kwargs):
    """The sampler, with outputs fetched to numpy once (indexing device arrays eagerly
    compiles a gather per index pattern)."""
    return jax.device_get(_sample(*args, **kwargs))


def _hf_model(family: str):
    common = dict(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
                  pad_token_id=0, bos_token_id=None, eos_token_id=None,
                  # Larger than the default 0.02, so greedy choices are not near-ties.
                  initializer_range=0.2)
    if family == "llama":
        cfg = transformers.LlamaConfig(**common)
    elif family == "qwen2":
        cfg = transformers.Qwen2Config(**common, tie_word_embeddings=True)
    else:
        cfg = transformers.Qwen3Config(**common, head_dim=24)
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(cfg).eval()
    with torch.no_grad():  # random norm scales and biases, so a misplaced tensor shows
        for name, p in model.named_parameters():
            if "norm" in name:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
    return model


@pytest.mark.parametrize("family", ["llama", "qwen2", "qwen3"])
def test_greedy_matches_transformers_generate(tmp_path, family):
    model = _hf_model(family)
    model.save_pretrained(tmp_path)
    config, params = hf.load(tmp_path)
    prompts = ragged_prompts(LENGTHS, vocab=config.vocab_size)
    tokens, mask = left_pad(prompts)
    with torch.no_grad():
        ref = model.generate(torch.tensor(tokens, dtype=torch.long),
                             attention_mask=torch.tensor(mask, dtype=torch.long),
                             max_new_tokens=GREEDY.max_new_tokens, do_sample=False,
                             pad_token_id=0, eos_token_id=None)
    out = sample(params, prompts, config=config, sampling=GREEDY)
    assert out.tokens.shape == (4, 1, GREEDY.max_new_tokens)
    np.testing.assert_array_equal(np.asarray(out.tokens[:, 0]), ref[:, tokens.shape[1]:].numpy())
    assert (np.asarray(out.finish_reason) == FinishReason.LENGTH).all()


SAMPLED = {t: SamplerConfig(max_new_tokens=10, num_samples=2, temperature=t, top_k=40,
                            top_p=0.9, eos_ids=(3,), prompt_buckets=(16,)) for t in (1.0, 0.7)}


@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_sampled_logprobs_equal_teacher_forced(tiny, temperature):
    config, params = tiny
    sampling = SAMPLED[temperature]
    prompts = ragged_prompts(LENGTHS, vocab=config.vocab_size, seed=1)
    out = sample(params, prompts, jax.random.key(1), config=config, sampling=sampling)
    mask = np.asarray(out.mask)
    assert mask[:, :, 0].all() and (np.asarray(out.logprobs)[~mask] == 0).all()
    p_tok, p_mask = left_pad(prompts, 16)
    teacher = np.asarray(_completion_logprobs(params, p_tok, p_mask, out.tokens, out.mask,
                                              temperature, config=config))
    assert np.abs(teacher - np.asarray(out.logprobs)).max() < 1e-4
    # The same numbers from the plain scorer on prompt + completion rows.
    full = np.concatenate([np.repeat(p_tok, 2, 0), np.asarray(out.tokens).reshape(8, -1)], 1)
    full_mask = np.concatenate([np.repeat(p_mask, 2, 0), mask.reshape(8, -1)], 1)
    seq = _sequence_logprobs(params, full, full_mask, temperature, config=config)
    assert np.abs(np.asarray(seq)[:, 16:] - np.asarray(out.logprobs).reshape(8, -1)).max() < 1e-4


def test_fixed_key_is_deterministic(tiny):
    config, params = tiny
    prompts = ragged_prompts(LENGTHS, vocab=config.vocab_size, seed=1)
    run = functools.partial(sample, params, prompts, config=config, sampling=SAMPLED[1.0])
    a, b, c = run(jax.random.key(5)), run(jax.random.key(5)), run(jax.random.key(6))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert not np.array_equal(np.asarray(a.tokens), np.asarray(c.tokens))
    # The two samples of a prompt differ (each row has its own key).
    assert not np.array_equal(np.asarray(a.tokens[:, 0]), np.asarray(a.tokens[:, 1]))


def test_zero_temperature_limit_and_top_k_1_equal_greedy(tiny):
    config, params = tiny
    prompts = ragged_prompts(LENGTHS, vocab=config.vocab_size, seed=2)
    greedy = sample(params, prompts, config=config, sampling=GREEDY)
    key = jax.random.key(3)
    cold = sample(params, prompts, key, config=config,
                  sampling=SamplerConfig(max_new_tokens=10, temperature=1e-4, prompt_buckets=(16,)))
    top1 = sample(params, prompts, key, config=config,
                  sampling=SamplerConfig(max_new_tokens=10, top_k=1, prompt_buckets=(16,)))
    np.testing.assert_array_equal(np.asarray(cold.tokens), np.asarray(greedy.tokens))
    np.testing.assert_array_equal(np.asarray(top1.tokens), np.asarray(greedy.tokens))
    # Both report log-probs at temperature 1 before truncation, as greedy does.
    np.testing.assert_allclose(np.asarray(top1.logprobs), np.asarray(greedy.logprobs), atol=1e-6)


def _expected_end(row, eos_ids, stops, max_new):
    for t, token in enumerate(row):
        if token in eos_ids:
            return t + 1, FinishReason.EOS
        if any(t + 1 >= len(s) and tuple(row[t + 1 - len(s):t + 1]) == s for s in stops):
            return t + 1, FinishReason.STOP
    return max_new, FinishReason.LENGTH


def test_eos_ids_stop_sequences_and_max_new_tokens(tiny):
    config, params = tiny
    prompts = ragged_prompts(LENGTHS, vocab=config.vocab_size, seed=2)
    greedy = np.asarray(sample(params, prompts, config=config, sampling=GREEDY).tokens[:, 0])
    # Two eos ids and two stop sequences taken from the greedy rows, so each fires.
    eos_ids = (int(greedy[0, 3]), int(greedy[2, 6]))
    stops = ((int(greedy[1, 4]), int(greedy[1, 5])), (62, 61, 60, 59, 58, 57))
    sampling = SamplerConfig(max_new_tokens=10, temperature=0.0, eos_ids=eos_ids,
                             stop_sequences=stops, pad_id=63, prompt_buckets=(16,))
    out = sample(params, prompts, config=config, sampling=sampling)
    reasons = set()
    for b, row in enumerate(greedy.tolist()):
        length, reason = _expected_end(row, eos_ids, stops, 10)
        reasons.add(reason)
        assert int(out.lengths[b, 0]) == length and int(out.finish_reason[b, 0]) == reason, b
        np.testing.assert_array_equal(np.asarray(out.tokens[b, 0, :length]), greedy[b, :length])
        assert (np.asarray(out.tokens[b, 0, length:]) == 63).all()
        np.testing.assert_array_equal(np.asarray(out.mask[b, 0]), np.arange(10) < length)
    assert FinishReason.EOS in reasons and FinishReason.STOP in reasons



def test_phased_decode_matches_transformers_generate(tmp_path):
    """A completion long enough for several decode phases (the cache grows between
    them) still matches transformers' greedy tokens, with exact log-probs."""
    from rewardjax.sampling.sampler import decode_phases

    assert decode_phases(10) == (10,) and decode_phases(128) == (32, 64, 96, 128)
    sampling = SamplerConfig(max_new_tokens=70, temperature=0.0, prompt_buckets=(16,))
    assert len(decode_phases(sampling.max_new_tokens)) == 2
    model = _hf_model("qwen2")
    model.save_pretrained(tmp_path)
    config, params = hf.load(tmp_path)
    prompts = ragged_prompts(LENGTHS, vocab=config.vocab_size)
    tokens, mask = left_pad(prompts)
    with torch.no_grad():
        ref = model.generate(torch.tensor(tokens, dtype=torch.long),
                             attention_mask=torch.tensor(mask, dtype=torch.long),
                             max_new_tokens=sampling.max_new_tokens, do_sample=False,
                             pad_token_id=0, eos_token_id=None)
    out = sample(params, prompts, config=config, sampling=sampling)
    np.testing.assert_array_equal(np.asarray(out.tokens[:, 0]), ref[:, tokens.shape[1]:].numpy())
    c_mask = np.ones(out.tokens[:, 0].shape, np.int32)
    want = _completion_logprobs(params, jnp.asarray(tokens), jnp.asarray(mask),
                                jnp.asarray(out.tokens[:, 0]), jnp.asarray(c_mask), 1.0,
                                config=config)
    np.testing.assert_allclose(np.asarray(out.logprobs[:, 0]), np.asarray(want), atol=1e-4)

class _ApplySpy:
    """Records the (tokens, cache k) shapes of every traced `transformer.apply` call."""

    def __init__(self, monkeypatch):
        self.calls = []
        real = transformer.apply

        def spy(params, tokens_bt, *args, cache=None, **kwargs):
            k = None if cache is None else jax.tree.leaves(cache.k)[0].shape
            self.calls.append((tokens_bt.shape, k))
            return real(params, tokens_bt, *args, cache=cache, **kwargs)

        monkeypatch.setattr(transformer, "apply", spy)

    def prefills(self):
        return [c for c in self.calls if c[0][1] > 1]

    def decodes(self):
        return [c for c in self.calls if c[0][1] == 1]


def test_group_samples_share_one_prefill(tiny, monkeypatch):
    config, params = tiny
    spy = _ApplySpy(monkeypatch)
    G = 4
    prompts = ragged_prompts(LENGTHS, vocab=config.vocab_size, seed=2)
    grouped = SamplerConfig(max_new_tokens=10, num_samples=G, temperature=0.0,
                            prompt_buckets=(16,))
    out = sample(params, prompts, config=config, sampling=grouped)
    # One prefill over the B prompts (a [B, K, P, H] cache), decode over B * G rows.
    K, H = config.num_kv_heads, config.head_dim
    assert spy.prefills() == [((4, 16), (4, K, 16, H))]
    assert spy.decodes() and all(c == ((4 * G, 1), (4 * G, K, 16 + 10, H)) for c in spy.decodes())
    # Greedy copies are identical to each other and to a single sample.
    single = sample(params, prompts, config=config, sampling=GREEDY)
    for g in range(G):
        np.testing.assert_array_equal(np.asarray(out.tokens[:, g]), np.asarray(single.tokens[:, 0]))
        np.testing.assert_allclose(np.asarray(out.logprobs[:, g]), np.asarray(single.logprobs[:, 0]),
                                   atol=1e-6)


def test_no_recompilation_within_a_bucket(tiny, monkeypatch):
    config, params = tiny
    spy = _ApplySpy(monkeypatch)
    sampling = SamplerConfig(max_new_tokens=6, temperature=0.0, prompt_buckets=(8, 16))
    run = functools.partial(sample, params, config=config, sampling=sampling)
    run(ragged_prompts((5, 3), vocab=config.vocab_size))
    assert spy.prefills() == [((2, 8), (2, 2, 8, 8))] and len(spy.decodes()) == 1
    run(ragged_prompts((7, 2), vocab=config.vocab_size))  # longer, same bucket (8)
    run(np.ones((2, 6), np.int32))  # an array of another width, same bucket
    assert len(spy.prefills()) == 1 and len(spy.decodes()) == 1


def test_prompt_formats_agree(tiny):
    config, params = tiny
    prompts = ragged_prompts(LENGTHS, vocab=config.vocab_size, seed=2)
    ref = np.asarray(sample(params, prompts, config=config, sampling=GREEDY).tokens)
    left, left_mask = left_pad(prompts)
    right, right_mask = np.zeros_like(left), np.zeros_like(left_mask)
    for b, p in enumerate(prompts):
        right[b, :len(p)], right_mask[b, :len(p)] = p, 1
    for tokens, mask in ((left, left_mask), (right, right_mask),
                         (jnp.asarray(right), jnp.asarray(right_mask))):
        out = sample(params, tokens, config=config, sampling=GREEDY, prompt_mask=mask)
        np.testing.assert_array_equal(np.asarray(out.tokens), ref)


def test_bad_prompts_are_rejected(tiny):
    config, params = tiny
    with pytest.raises(ValueError, match="no tokens"):
        sample(params, [[1, 2], []], config=config, sampling=GREEDY)
    with pytest.raises(ValueError, match="token ids"):
        sample(params, [[1, config.vocab_size]], config=config, sampling=GREEDY)
    with pytest.raises(ValueError, match="largest prompt bucket"):
        sample(params, [list(range(1, 20))], config=config, sampling=GREEDY)
    with pytest.raises(ValueError, match="PRNG key"):
        sample(params, [[1, 2]], config=config, sampling=SAMPLED[1.0])


def test_sharded_sampling_equals_single_device(tiny):
    config, params = tiny
    assert jax.device_count() == 8
    sampling = SAMPLED[1.0]  # batch over data x fsdp = 4 prompts, then 8 rows
    prompts = ragged_prompts(LENGTHS, vocab=config.vocab_size, seed=1)
    key = jax.random.key(9)
    single = sample(params, prompts, key, config=config, sampling=sampling)
    mesh = sharding.make_mesh(data=2, fsdp=2, tensor=2)
    rules = sharding.logical_rules()
    with sharding.use_mesh(mesh, rules):
        placed = sharding.place(params, transformer.param_axes(config), mesh, rules)
        assert len(placed["layers"]["w_up"].addressable_shards) == 8
        assert placed["layers"]["w_up"].sharding.spec != jax.sharding.PartitionSpec()
        sharded = _sample(placed, prompts, key, config=config, sampling=sampling)
    assert len(sharded.tokens.sharding.device_set) == 8
    sharded = jax.device_get(sharded)
    np.testing.assert_array_equal(np.asarray(sharded.tokens), np.asarray(single.tokens))
    np.testing.assert_array_equal(np.asarray(sharded.lengths), np.asarray(single.lengths))
    np.testing.assert_allclose(np.asarray(sharded.logprobs), np.asarray(single.logprobs), atol=1e-5)


# ----------------------------------------------------------------------------- distribution


def _intended(logits, *, temperature, top_k=0, top_p=1.0):
    """Reference next-token distribution in float64: temperature, top-k, then top-p."""
    logits = np.asarray(logits, np.float64) / temperature
    probs = np.exp(logits - logits.max())
    order = np.argsort(-probs)
    keep = np.zeros(probs.shape, bool)
    keep[order[:top_k] if top_k else order] = True
    probs = np.where(keep, probs, 0.0)
    probs /= probs.sum()
    if top_p < 1.0:
        mass_above = np.cumsum(probs[order]) - probs[order]
        nucleus = order[mass_above < top_p]
        keep = np.zeros(probs.shape, bool)
        keep[nucleus] = True
        probs = np.where(keep, probs, 0.0)
        probs /= probs.sum()
    return probs


@pytest.mark.parametrize("controls", [dict(temperature=0.7), dict(temperature=1.0, top_k=5),
                                      dict(temperature=1.0, top_p=0.5)],
                         ids=["temperature", "top_k", "top_p"])
def test_token_frequencies_match_the_intended_distribution(tiny, controls):
    config, params = tiny
    N, prompt = 20_000, [5, 9, 13]
    sampling = SamplerConfig(max_new_tokens=1, num_samples=N, prompt_buckets=(4,), **controls)
    out = sample(params, [prompt], jax.random.key(11), config=config, sampling=sampling)
    counts = np.bincount(np.asarray(out.tokens[0, :, 0]), minlength=config.vocab_size)
    logits, _ = jax.jit(functools.partial(transformer.apply, config=config))(
        params, jnp.asarray([prompt]))
    probs = _intended(np.asarray(logits)[0, -1], **controls)
    support = probs > 0
    assert 3 <= support.sum() and (counts[~support] == 0).all()
    # Pearson chi-square over the support, bins with expected count < 5 pooled.
    expected, observed = N * probs[support], counts[support].astype(np.float64)
    small = expected < 5
    if small.any():
        expected = np.append(expected[~small], expected[small].sum())
        observed = np.append(observed[~small], observed[small].sum())
    stat = float(np.sum((observed - expected) ** 2 / expected))
    dof = len(expected) - 1
    p_value = float(jax.scipy.special.gammaincc(dof / 2, stat / 2))
    assert p_value > 1e-3, (stat, dof, p_value)
