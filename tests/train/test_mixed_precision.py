"""Mixed precision as one setting: `compute_dtype="bfloat16"` on float32 params runs the
forward/backward pass in bfloat16 while the master weights and Adam's state stay float32."""

import functools

import jax
import jax.numpy as jnp
import numpy as np

from rewardjax import recipes
from rewardjax.train import OptimizerConfig, init_state, make_train_step, split_micro
from rewardjax.train.sft import sft_loss

SPEC = dict(hidden_size=64, intermediate_size=128, num_layers=2, num_heads=4, num_kv_heads=2,
            head_dim=16)


def _step(compute_dtype):
    backbone = recipes.load_backbone(recipes.BackboneConfig(compute_dtype=compute_dtype, **SPEC),
                                     jax.random.key(0))
    seen = []

    def loss_fn(params, batch):
        seen.append(params["layers"]["wq"].dtype)  # at trace time
        return sft_loss(params, batch, config=backbone.config)

    rng = np.random.default_rng(0)
    tokens = rng.integers(3, 2000, (4, 16)).astype(np.int32)
    mask = np.ones((4, 16), bool)
    batch = {"tokens": tokens, "attention_mask": mask, "loss_mask": mask,
             "denominator": np.full((4,), 4 * 15, np.float32)}
    opt = OptimizerConfig(lr=1e-3, total_steps=10)
    tx = opt.make()
    state, shardings = backbone.placement.state(init_state(backbone.params, tx), tx)
    step = make_train_step(loss_fn, tx, config=opt, accumulate="sum",
                           placement=backbone.placement, state_sharding=shardings)
    new, metrics = step(state, split_micro(batch, 1))
    return seen, new, float(metrics["loss"])


def test_bfloat16_compute_keeps_float32_masters_and_optimizer_state():
    seen, state, loss = _step("bfloat16")
    assert seen == [jnp.bfloat16]
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(state.params))
    adam = state.opt_state[1][0]
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves((adam.mu, adam.nu)))
    seen32, state32, loss32 = _step(None)
    assert seen32 == [jnp.float32]
    # bfloat16 has 8 bits of mantissa: the loss agrees to ~1%, and the update moved the
    # float32 masters (norm scales at 1.0) by less than bfloat16's spacing there (2^-7):
    # bfloat16 masters would have rounded every one of these steps away.
    np.testing.assert_allclose(loss, loss32, rtol=2e-2)
    delta = np.abs(np.asarray(state.params["final_norm"]) - 1.0)
    assert (delta > 0).all() and delta.max() < 2 ** -7
