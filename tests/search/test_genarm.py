"""GenARM (arXiv:2410.08193): the autoregressive-RM loss by hand, guided decoding against
teacher-forced logits of both models, β → ∞ is the base policy's greedy decoding bit for
bit, a β sweep compiles once, and the ARM train step and the guided decoder on a mesh of
8 simulated devices equal one device."""

import dataclasses
import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from rewardjax import sharding
from rewardjax.models import transformer
from rewardjax.models.config import ModelConfig
from rewardjax.sampling import SamplerConfig, sample
from rewardjax.search import genarm
from rewardjax.sharding import MeshConfig
from rewardjax.train import OptimizerConfig, init_state, make_train_step, split_micro
from rewardjax.train.placement import Placement
from tests.sampling.conftest import TINY, left_pad, ragged_prompts, random_params

LENGTHS = (11, 7, 4, 9)
# A smaller RM than the policy (weak-to-strong guidance), on the same vocabulary.
RM = dataclasses.replace(TINY, hidden_size=16, num_layers=1, num_heads=2, num_kv_heads=1)
# 64 new tokens: two decode phases, so the phase hand-over of both caches is exercised.
GREEDY = SamplerConfig(max_new_tokens=64, temperature=0.0, prompt_buckets=(16,))


@functools.lru_cache(maxsize=None)
def _models():
    return random_params(TINY, std=0.3, seed=0), random_params(RM, std=0.3, seed=1)


def _prompts(seed=0):
    return ragged_prompts(LENGTHS, vocab=TINY.vocab_size, seed=seed)


# ----------------------------------------------------------------------------- loss


def test_arm_loss_hand_computed():
    logp_c = jnp.array([[-1.0, -2.0, -9.0], [-0.5, -0.5, -0.5]])
    mask_c = jnp.array([[1, 1, 0], [1, 1, 1]])
    logp_r = jnp.array([[-3.0, -4.0, -1.0], [-0.1, -0.2, -7.0]])
    mask_r = jnp.array([[1, 1, 1], [1, 1, 0]])
    loss, metrics = genarm.arm_loss(logp_c, mask_c, logp_r, mask_r, beta_r=0.5)
    # pair 0: r_c = 0.5·(−3) = −1.5, r_r = 0.5·(−8) = −4, d = 2.5
    # pair 1: r_c = 0.5·(−1.5) = −0.75, r_r = 0.5·(−0.3) = −0.15, d = −0.6
    want = [math.log1p(math.exp(-2.5)), math.log1p(math.exp(0.6))]
    np.testing.assert_allclose(loss, want, rtol=1e-6)
    assert float(metrics["reward/accuracy"]) == 0.5
    np.testing.assert_allclose(metrics["reward/margin"], (2.5 - 0.6) / 2, rtol=1e-6)
    np.testing.assert_allclose(metrics["arm/chosen_logp"], (-3.0 - 1.5) / 2, rtol=1e-6)
    np.testing.assert_allclose(genarm.arm_rewards(logp_c, mask_c, beta_r=2.0), [-6.0, -3.0])

    jitted = jax.jit(functools.partial(genarm.arm_loss, beta_r=0.5))(logp_c, mask_c, logp_r,
                                                                       mask_r)[0]
    np.testing.assert_allclose(jitted, loss, rtol=1e-6)
    where = jnp.array([0, 1])
    masked, m = genarm.arm_loss(logp_c, mask_c, logp_r, mask_r, beta_r=0.5, where=where)
    alone = genarm.arm_loss(logp_c[1:], mask_c[1:], logp_r[1:], mask_r[1:], beta_r=0.5)[0]
    np.testing.assert_allclose(masked, [0.0, float(alone[0])], rtol=1e-6)
    assert float(m["reward/accuracy"]) == 0.0
    check_grads(lambda c, r: jnp.sum(genarm.arm_loss(c, mask_c, r, mask_r, beta_r=0.5)[0]),
                (logp_c, logp_r), order=1, modes=["rev"])
    with pytest.raises(ValueError, match="beta_r"):
        genarm.arm_loss(logp_c, mask_c, logp_r, mask_r, beta_r=0.0)


def test_guidance_weight_and_bad_settings():
    assert genarm.guidance_weight(math.inf) == 0.0 and genarm.guidance_weight(4.0) == 0.25
    for bad in (0.0, -1.0, math.nan):
        with pytest.raises(ValueError, match="GenARM beta must be > 0"):
            genarm.guidance_weight(bad)
    base, rm = _models()
    other = dataclasses.replace(RM, vocab_size=TINY.vocab_size + 1)
    with pytest.raises(ValueError, match="one vocabulary: base vocab_size=64, RM vocab_size=65"):
        genarm.genarm_sample(base, rm, _prompts(), beta=1.0, base_config=TINY, rm_config=other,
                             sampling=GREEDY)


# ----------------------------------------------------------------------------- decoding


def test_infinite_beta_is_the_base_policys_greedy_decoding():
    base, rm = _models()
    prompts = _prompts()
    want = jax.device_get(sample(base, prompts, config=TINY, sampling=GREEDY))
    got = jax.device_get(genarm.genarm_sample(base, rm, prompts, beta=math.inf, base_config=TINY,
                                              rm_config=RM, sampling=GREEDY).samples)
    np.testing.assert_array_equal(got.tokens, want.tokens)
    np.testing.assert_array_equal(got.lengths, want.lengths)
    np.testing.assert_array_equal(got.finish_reason, want.finish_reason)


@functools.partial(jax.jit, static_argnames=("config",))
def _next_logits(params, tokens, mask, *, config):
    return transformer.apply(params, tokens, config=config, mask_bt=mask)[0]


def test_guided_tokens_are_the_argmax_of_the_teacher_forced_guided_logits():
    base, rm = _models()
    prompts = _prompts(seed=3)
    beta = 0.5
    out = jax.device_get(genarm.genarm_sample(base, rm, prompts, beta=beta, base_config=TINY,
                                              rm_config=RM, sampling=GREEDY))
    tokens_bt, mask_bt = left_pad(prompts)
    P, T = tokens_bt.shape[1], GREEDY.max_new_tokens
    full = np.concatenate([tokens_bt, out.samples.tokens[:, 0]], axis=1)
    mask = np.concatenate([mask_bt, np.ones((len(prompts), T), bool)], axis=1)
    base_logits = _next_logits(base, full, mask, config=TINY)[:, P - 1:P + T - 1]
    rm_logits = _next_logits(rm, full, mask, config=RM)[:, P - 1:P + T - 1]
    guided = genarm.guided_logits(base_logits, rm_logits, 1.0 / beta)
    np.testing.assert_array_equal(out.samples.tokens[:, 0], np.argmax(guided, axis=-1))
    rm_logp = jax.nn.log_softmax(rm_logits, axis=-1)
    want = np.take_along_axis(np.asarray(rm_logp), out.samples.tokens[:, 0, :, None], -1)[..., 0]
    np.testing.assert_allclose(out.reward_logprobs[:, 0], want, atol=2e-5)
    # Guidance changes the decoding: these random models disagree on most greedy tokens.
    plain = jax.device_get(sample(base, prompts, config=TINY, sampling=GREEDY))
    assert np.mean(plain.tokens == out.samples.tokens) < 0.9


def test_small_beta_follows_the_reward_model_and_a_sweep_compiles_once():
    base, rm = _models()
    prompts = _prompts(seed=4)
    run = functools.partial(genarm.genarm_sample, base, rm, prompts, base_config=TINY,
                            rm_config=RM, sampling=GREEDY)
    run(beta=2.0)
    compiled = genarm.guided_decode._cache_size()
    got = jax.device_get(run(beta=1e-4).samples)
    assert genarm.guided_decode._cache_size() == compiled
    rm_greedy = jax.device_get(sample(rm, prompts, config=RM, sampling=GREEDY))
    np.testing.assert_array_equal(got.tokens, rm_greedy.tokens)


def test_sampled_guided_decoding_on_a_mesh_equals_one_device():
    base, rm = _models()
    sampling = SamplerConfig(max_new_tokens=8, num_samples=2, temperature=1.0,
                             prompt_buckets=(16,))
    prompts, key = _prompts(seed=5), jax.random.key(3)
    run = functools.partial(genarm.genarm_sample, prompts=prompts, key=key, beta=1.0,
                            base_config=TINY, rm_config=RM, sampling=sampling)
    single = jax.device_get(run(base, rm))
    mesh, rules = sharding.make_mesh(data=2, fsdp=2, tensor=2), sharding.logical_rules()
    with sharding.use_mesh(mesh, rules):
        placed = [sharding.place(p, transformer.param_axes(c), mesh, rules)
                  for p, c in ((base, TINY), (rm, RM))]
        sharded = run(*placed)
    assert len(sharded.samples.tokens.sharding.device_set) == 8
    sharded = jax.device_get(sharded)
    np.testing.assert_array_equal(sharded.samples.tokens, single.samples.tokens)
    np.testing.assert_allclose(sharded.samples.logprobs, single.samples.logprobs, atol=1e-5)
    np.testing.assert_allclose(sharded.reward_logprobs, single.reward_logprobs, atol=1e-5)


# ----------------------------------------------------------------------------- training


def _pair_batch(rows=8, T=20, seed=0):
    rng = np.random.default_rng(seed)

    def side():
        tokens = rng.integers(1, TINY.vocab_size, (rows, T)).astype(np.int32)
        lengths = rng.integers(T // 2, T + 1, rows)
        mask = np.arange(T)[None, :] >= (T - lengths)[:, None]
        return {"tokens": np.where(mask, tokens, 0), "attention_mask": mask,
                "loss_mask": mask & (np.arange(T)[None, :] >= T - 6)}

    return {"chosen": side(), "rejected": side()}


def _arm_step(params, placement):
    opt = OptimizerConfig(lr=1e-2, total_steps=10, eps=1e-3)  # eps: see tests/train/test_mesh
    tx = opt.make()
    state, shardings = placement.state(init_state(jax.tree.map(np.asarray, params), tx), tx)
    loss_fn = functools.partial(genarm.arm_pair_loss, config=TINY, beta_r=0.1)
    step = make_train_step(loss_fn, tx, config=opt, placement=placement,
                           state_sharding=shardings)
    return step(state, split_micro(_pair_batch(), 1))


def test_arm_train_step_on_a_mesh_equals_one_device():
    base, _ = _models()
    one = Placement(mesh=MeshConfig().build(), rules=MeshConfig().rules, config=TINY)
    mesh_cfg = MeshConfig(data=2, fsdp=2, tensor=2)
    eight = Placement(mesh=mesh_cfg.build(), rules=mesh_cfg.rules, config=TINY)
    want, want_m = _arm_step(base, one)
    got, got_m = _arm_step(base, eight)
    assert len(got.params["embed"].sharding.device_set) == 8
    np.testing.assert_allclose(float(got_m["loss"]), float(want_m["loss"]), rtol=1e-5)
    np.testing.assert_allclose(float(got_m["accuracy"]), float(want_m["accuracy"]))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5),
                 jax.device_get(got.params), jax.device_get(want.params))
    # The loss is the ARM loss of the batch's summed response log-probs.
    assert float(want_m["loss"]) > 0 and np.isfinite(float(want_m["grad_norm"]))
