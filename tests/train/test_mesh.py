"""Every trainer on a mesh equals one device: one SFT, Bradley–Terry, PRM, DPO and GRPO
step from the same state give the same loss and parameters on (data, fsdp, tensor) =
(8,1,1), (2,2,2) and (1,4,2) as on one device, and parameters and optimizer state are
split as the rules say (read from the per-device shards)."""

import functools

import jax
import numpy as np
import pytest

from rewardjax import recipes
from rewardjax.experiment import UserInputError, apply_overrides
from rewardjax.recipes.rl_arith import RLRecipe
from rewardjax.data import synthetic
from rewardjax.sharding import MeshConfig
from rewardjax.train import OptimizerConfig, init_state, make_train_step, split_micro
from rewardjax.train import dpo, prm, reward_model as rm
from rewardjax.train.placement import Placement
from rewardjax.train.rl import RLConfig, RLTrainer
from rewardjax.train.sft import sft_loss

MESHES = [(8, 1, 1), (2, 2, 2), (1, 4, 2)]
SPEC = recipes.BackboneConfig(hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4,
                              num_kv_heads=2, head_dim=16)
# Adam's first step moves every weight by about lr * g/|g|: a gradient near 0 turns its
# rounding differences (other reduction orders on a mesh) into a full-size sign flip.
# eps = 1e-3 keeps the update linear in such gradients, so 1e-5 is a fair tolerance.
OPT = OptimizerConfig(lr=1e-2, total_steps=10, eps=1e-3)
B, T = 8, 24

# Per-device shard shapes the rules table asks for (D=64, N=4, F=128, V=2048).
SHARDS = {
    (8, 1, 1): {"wq": (2, 64, 4, 16), "w_down": (2, 128, 64), "embed": (2048, 64)},
    (2, 2, 2): {"wq": (2, 32, 2, 16), "w_down": (2, 64, 32), "embed": (1024, 32)},
    (1, 4, 2): {"wq": (2, 16, 2, 16), "w_down": (2, 64, 16), "embed": (1024, 16)},
}


@functools.lru_cache(maxsize=None)
def _backbone(shape=None):
    mesh = MeshConfig() if shape is None else MeshConfig(data=shape[0], fsdp=shape[1],
                                                           tensor=shape[2])
    return recipes.load_backbone(SPEC, jax.random.key(0), mesh)


def _seqs(rng, rows=B):
    tokens = rng.integers(3, 2000, (rows, T)).astype(np.int32)
    lengths = rng.integers(T // 2, T + 1, rows)
    mask = np.arange(T)[None, :] >= (T - lengths)[:, None]  # left-padded
    tokens = np.where(mask, tokens, 0)
    loss_mask = mask & (np.arange(T)[None, :] >= T - 6)
    return {"tokens": tokens, "attention_mask": mask, "loss_mask": loss_mask}


def _batches():
    rng = np.random.default_rng(0)
    sft = _seqs(rng)
    sft["denominator"] = np.full((B,), sft["loss_mask"][:, 1:].sum(), np.float32)
    pair = {"chosen": _seqs(rng), "rejected": _seqs(rng), "margin": np.zeros((B,), np.float32)}
    step = {k: v for k, v in _seqs(rng).items() if k != "loss_mask"}
    step["step_positions"] = np.tile(np.array([[T - 9, T - 5, T - 1]], np.int32), (B, 1))
    step["step_mask"] = np.ones((B, 3), bool)
    step["step_labels"] = rng.integers(0, 2, (B, 3)).astype(np.float32)
    pref = {side: {**pair[side], "positions": None} for side in ("chosen", "rejected")}
    for side in pref:
        pref[side].pop("positions")
    pref["ref_chosen"] = rng.normal(size=(B,)).astype(np.float32) - 40
    pref["ref_rejected"] = rng.normal(size=(B,)).astype(np.float32) - 40
    return {"sft": sft, "bt": pair, "prm": step, "dpo": pref}


def _trainer_setups(backbone):
    """{name: (params, loss_fn, batch)} for the supervised trainers."""
    config, params = backbone.config, backbone.params
    batches = _batches()
    key = jax.random.key(1)
    return {
        "sft": (params, functools.partial(sft_loss, config=config), batches["sft"]),
        "bt": (rm.init_reward_model(params, key, config=config, head="scalar"),
               functools.partial(rm.pairwise_loss, config=config), batches["bt"]),
        "prm": (rm.init_reward_model(params, key, config=config, head="step"),
                functools.partial(prm.step_loss, config=config), batches["prm"]),
        "dpo": (params, functools.partial(dpo.dpo_batch_loss, config=config,
                                          dpo=dpo.DPOConfig(beta=0.1)), batches["dpo"]),
    }


def _one_step(params, loss_fn, batch, placement: Placement):
    tx = OPT.make()
    state, shardings = placement.state(init_state(jax.tree.map(np.asarray, params), tx), tx)
    step = make_train_step(loss_fn, tx, config=OPT, placement=placement, state_sharding=shardings)
    new, metrics = step(state, split_micro(batch, 1))
    return new, metrics


def _close(a, b, tol=1e-5):
    a, b = jax.device_get(a), jax.device_get(b)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=tol, atol=tol), a, b)


def _shard_shape(x):
    return x.addressable_shards[0].data.shape


@pytest.mark.parametrize("shape", MESHES)
def test_supervised_steps_match_one_device(shape):
    one, sharded = _backbone(), _backbone(shape)
    ref = _trainer_setups(one)
    got = _trainer_setups(sharded)
    for name in ref:
        want_state, want_m = _one_step(*ref[name], one.placement)
        state, m = _one_step(*got[name], sharded.placement)
        np.testing.assert_allclose(float(m["loss"]), float(want_m["loss"]), rtol=1e-5, atol=1e-6,
                                   err_msg=name)
        _close(state.params, want_state.params)
        backbone = state.params if name in ("sft", "dpo") else state.params["backbone"]
        mu = state.opt_state[1][0].mu  # clip_by_global_norm, then adamw's ScaleByAdamState
        mu = mu if name in ("sft", "dpo") else mu["backbone"]
        for leaf, want in SHARDS[shape].items():
            p = backbone[leaf] if leaf == "embed" else backbone["layers"][leaf]
            m_leaf = mu[leaf] if leaf == "embed" else mu["layers"][leaf]
            assert _shard_shape(p) == want, (name, leaf, _shard_shape(p))
            assert _shard_shape(m_leaf) == want, (name, "adam mu", leaf)


def _grpo(backbone):
    tok = backbone.tokenizer
    pool = synthetic.rl_prompts(8, seed=0, config=recipes.TINY_RL_TASK, split="train")
    rl = RLConfig(steps=1, prompts_per_step=2, group_size=4, max_new_tokens=8, prompt_length=48,
                  seed=0)

    def reward(prompts, completions, **fields):
        return np.array([(len(c) % 5) / 4.0 for c in completions], np.float32)

    trainer = RLTrainer(model_config=backbone.config, rl=rl, optimizer=OPT, tokenizer=tok,
                        prompts_fn=lambda step, rnd: pool[:2], reward_fn=reward,
                        placement=backbone.placement)
    state = trainer.init_state(backbone.params)
    rollout, _ = trainer.rollout(state, 0)
    state, metrics = trainer.update(state, rollout, 0)
    return rollout, state, metrics


@pytest.mark.parametrize("shape", MESHES)
def test_grpo_step_matches_one_device(shape):
    want_rollout, want_state, want_m = _grpo(_backbone())
    rollout, state, m = _grpo(_backbone(shape))
    np.testing.assert_array_equal(rollout.tokens, want_rollout.tokens)
    _close(rollout.old_logp, want_rollout.old_logp)
    np.testing.assert_allclose(m["loss"], want_m["loss"], rtol=1e-5, atol=1e-6)
    _close(state.params, want_state.params)
    assert _shard_shape(state.params["layers"]["wq"]) == SHARDS[shape]["wq"]


def test_batch_not_divisible_by_the_mesh_is_named():
    backbone = _backbone((8, 1, 1))
    params, loss_fn, batch = _trainer_setups(backbone)["sft"]
    small = {k: v[:4] for k, v in batch.items()}
    with pytest.raises(ValueError, match=r"batch leaf \['\w+'\] has shape \(1, 4, 24\).*divisible by data x fsdp = 8"):
        _one_step(params, loss_fn, small, backbone.placement)


def test_mesh_settings_are_checked():
    with pytest.raises(ValueError, match="product of mesh.data, mesh.fsdp and mesh.tensor"):
        MeshConfig(data=2, fsdp=2, tensor=1).build()
    with pytest.raises(ValueError, match="mesh.fsdp must be a positive integer"):
        MeshConfig(fsdp=0)
    with pytest.raises(UserInputError, match=r"MeshConfig has no field 'pipeline'.*'data', "
                                             r"'fsdp', 'tensor'"):
        apply_overrides(RLRecipe(), ["mesh.pipeline=2"])
    assert MeshConfig().build().devices.size == 1  # one device on CPU by default
    assert MeshConfig(fsdp=2, tensor=2).build().shape == {"data": 2, "fsdp": 2, "tensor": 2}
