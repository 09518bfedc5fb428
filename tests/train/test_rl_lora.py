"""RL with LoRA: only the adapters train and carry optimizer state; the base (which is
also the reference policy) never changes."""

import jax
import numpy as np

from rewardjax.models.lora import LoraConfig
from rewardjax.train.rl import RLTrainer
from tests.train.rl_setup import tiny_trainer


def test_lora_rl_step_trains_only_the_adapters():
    plain, params = tiny_trainer(steps=2, minibatches=1, kl_coef=0.1)
    lora = LoraConfig(rank=4, alpha=8.0, targets=("q", "v", "up"))
    trainer = RLTrainer(model_config=plain.config, rl=plain.rl,
                        optimizer=plain.optimizer_config, tokenizer=plain.tokenizer,
                        prompts_fn=plain.prompts_fn, reward_fn=plain.reward_fn, lora=lora)
    base = jax.tree.map(np.array, params)
    state = trainer.init_state(params)
    assert set(state.params) == {"q", "v", "up"}
    adam = state.opt_state[1][0]
    assert jax.tree.structure(adam.mu) == jax.tree.structure(state.params)  # adapters only
    before = jax.tree.map(np.array, state.params)
    for step in range(2):
        state, metrics = trainer.step(state, step)
    # after the first update the merged policy differs from the base: a nonzero KL to it
    assert np.isfinite(metrics["loss"]) and metrics["kl/ref"] > 0
    # the frozen base (the KL reference) is untouched, the adapters moved
    jax.tree.map(np.testing.assert_array_equal, jax.tree.map(np.asarray, trainer.base), base)
    moved = jax.tree.map(lambda a, b: float(np.abs(np.asarray(a) - b).max()), state.params, before)
    assert all(v > 0 for v in jax.tree.leaves({k: moved[k]["b"] for k in moved}))
    # the policy used for sampling is the base with the adapters merged in
    merged = trainer.policy(state)
    assert not np.allclose(np.asarray(merged["layers"]["wq"]), base["layers"]["wq"])
    np.testing.assert_array_equal(np.asarray(merged["layers"]["wk"]), base["layers"]["wk"])
