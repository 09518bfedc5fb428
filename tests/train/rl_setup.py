"""A tiny RL setup shared by the RL tests and the kill/resume worker."""

import jax
import numpy as np

from rewardjax import models
from rewardjax.data import synthetic
from rewardjax.data.tokenizer import default_tokenizer
from rewardjax.train import OptimizerConfig
from rewardjax.train.rl import RLConfig, RLTrainer

TASK = synthetic.ArithmeticConfig(min_steps=1, max_steps=2)


def tiny_trainer(reward_fn=None, optimizer=None, **rl_overrides):
    tok = default_tokenizer()
    config = models.ModelConfig(model_type="qwen2", vocab_size=len(tok), hidden_size=32,
                                intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                                head_dim=8, qkv_bias=True, tie_word_embeddings=True)
    params = models.init_params(config, jax.random.key(0))
    pool = synthetic.rl_prompts(64, seed=0, config=TASK, split="train")
    rl = RLConfig(**{**dict(steps=5, prompts_per_step=2, group_size=4, max_new_tokens=8,
                            prompt_length=64, minibatches=2, seed=0), **rl_overrides})

    def prompts_fn(step, rnd):
        i = (step * rl.max_sampling_rounds + rnd) * rl.prompts_per_step
        return [pool[(i + k) % len(pool)] for k in range(rl.prompts_per_step)]

    def length_reward(prompts, completions, **fields):
        # a dense, deterministic reward so groups have varied rewards
        return np.array([(len(c) % 5) / 4.0 for c in completions], np.float32)

    optimizer = optimizer or OptimizerConfig(lr=1e-2, total_steps=100)
    trainer = RLTrainer(model_config=config, rl=rl, optimizer=optimizer,
                        tokenizer=tok, prompts_fn=prompts_fn, reward_fn=reward_fn or length_reward)
    return trainer, params
