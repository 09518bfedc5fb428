"""Multi-turn rollouts in the RL trainer (`RLExtensions(rollouts=EnvRollouts(...))`):
observations are attended to but not trained on, and the behaviour log-probs equal the
trainer's teacher-forced ones (first-epoch ratio 1)."""

import jax
import numpy as np
import pytest

from rewardjax import models
from rewardjax.data import synthetic
from rewardjax.data.encoding import render_prompt
from rewardjax.data.tokenizer import default_tokenizer
from rewardjax.envs.base import Environment, Transition
from rewardjax.envs.rollout import RolloutConfig
from rewardjax.envs.training import EnvRollouts, env_greedy, env_pass_at_1
from rewardjax.sampling.stepwise import StepConfig
from rewardjax.train import OptimizerConfig
from rewardjax.train.rl import RLConfig, RLTrainer
from rewardjax.train.rl_extensions import RLExtensions


class TwoTurns(Environment):
    """Turn 0 gets an observation; turn 1 ends with a reward that varies by rollout."""

    def __init__(self, render):
        self.render = render

    def reset(self, record):
        return self.render(record["prompt"])

    def step(self, turns):
        return [Transition(observation="<out>7</out>\n", reward=0.0, done=False)
                if t.turn == 0 else
                Transition(observation="", reward=float(len(t.text) % 3) / 2, done=True,
                           info={"env/correct": float(t.rollout % 2)})
                for t in turns]


@pytest.fixture(scope="module")
def setup():
    tok = default_tokenizer()
    config = models.ModelConfig(model_type="qwen2", vocab_size=len(tok), hidden_size=32,
                                intermediate_size=64, num_layers=2, num_heads=4, num_kv_heads=2,
                                head_dim=8, qkv_bias=True, tie_word_embeddings=True)
    params = models.init_params(config, jax.random.key(0))
    rl = RLConfig(steps=2, prompts_per_step=2, group_size=4, max_new_tokens=24, prompt_length=64,
                  minibatches=1, seed=0)
    # No eos: every rollout takes both turns, whatever the random model writes.
    steps = StepConfig(delimiters=((202,),), eos_ids=(), step_tokens=6,
                       max_tokens=24, temperature=1.0, pad_id=tok.pad_token_id,
                       prompt_buckets=(64,), row_buckets=(8,))
    rollout = RolloutConfig(steps=steps, max_turns=2, observation_tokens=10)
    env = TwoTurns(lambda q: render_prompt(tok, q))
    pool = synthetic.rl_prompts(8, seed=0, config=synthetic.ArithmeticConfig(), split="train")
    trainer = RLTrainer(model_config=config, rl=rl, optimizer=OptimizerConfig(lr=1e-3),
                        tokenizer=tok, prompts_fn=lambda step, rnd: pool[2 * step:2 * step + 2],
                        reward_fn=None,
                        extensions=RLExtensions(rollouts=EnvRollouts(env=env, rollout=rollout)))
    return trainer, params, env, rollout


def test_observations_are_attended_to_not_trained_on_and_the_ratio_starts_at_one(setup):
    trainer, params, _, _ = setup
    state = trainer.init_state(params)
    rollout, metrics = trainer.rollout(state, 0)
    T = trainer.rl.max_new_tokens
    attended, trained = rollout.mask[:, -T:].astype(bool), rollout.completion_mask.astype(bool)
    assert np.all(attended | ~trained)  # trained tokens are attended to
    observed = attended & ~trained
    assert observed.any(axis=1).all()  # every rollout saw its observation
    assert np.all(rollout.advantages[observed] == 0) and np.all(rollout.old_logp[observed] == 0)
    assert metrics["turns/mean"] == 2.0 and 0 < metrics["accuracy"] < 1
    _, m = trainer.step(trainer.init_state(params), 0)
    assert abs(m["ratio/mean"] - 1.0) < 1e-4 and m["clip/frac"] == 0.0


def test_greedy_pass_at_1_and_mismatched_settings(setup):
    trainer, params, env, rollout = setup
    pool = synthetic.rl_prompts(4, seed=1, config=synthetic.ArithmeticConfig(), split="train")
    out = env_pass_at_1(params, pool, model_config=trainer.config, tokenizer=trainer.tokenizer,
                        env=env, rollout=rollout, batch_size=2)
    assert out["pass1"] == 0.5 and out["turns/mean"] == 2.0  # rollouts 0, 1 of each batch
    samples, metrics = env_greedy(params, pool, model_config=trainer.config,
                                  tokenizer=trainer.tokenizer, env=env, rollout=rollout,
                                  batch_size=2)
    assert [s["correct"] for s in samples] == [False, True, False, True]
    assert [s["prompt"] for s in samples] == [r.prompt for r in pool]
    assert all(s["turns"] == 2 and s["transcript"][1] == "<out>7</out>\n" for s in samples)
    assert metrics["turns/mean"] == 2.0
    bad = EnvRollouts(env=env, rollout=RolloutConfig(
        steps=StepConfig(delimiters=((202,),), eos_ids=(0,), step_tokens=6, max_tokens=32,
                         prompt_buckets=(64,)), max_turns=2, observation_tokens=10))
    with pytest.raises(ValueError, match="steps.max_tokens is 32; the trainer's RLConfig needs 24"):
        bad(trainer, params, pool[:2], jax.random.key(0))
