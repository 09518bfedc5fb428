"""PAV's progress reward (arXiv:2410.08146): Best-of-K values, step boundaries and the
per-step progress by hand; the dense reward's prefixes and layout on a built rollout."""

import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax.rewards.progress import (ProgressAdvantage, ProgressConfig, ProverProgressReward,
                                        best_of_k_value, progress_token_rewards, step_ends)
from rewardjax.train.rl_extensions import AdvantageInputs, RolloutBatch
from tests.train.rl_setup import tiny_trainer


def test_best_of_k_value_by_hand():
    np.testing.assert_allclose(best_of_k_value([0.0, 0.25, 0.5, 1.0], 3),
                               [0.0, 1 - 0.75 ** 3, 0.875, 1.0], rtol=1e-6)
    np.testing.assert_allclose(best_of_k_value([0.3], 1), [0.3], rtol=1e-6)
    with pytest.raises(ValueError, match="k >= 1, got 0"):
        best_of_k_value([0.5], 0)


def test_step_ends_by_hand():
    assert step_ends([1, 9, 2, 2, 9, 3], separator_id=9) == [1, 4, 5]
    assert step_ends([1, 9, 2, 9], separator_id=9) == [1, 3]  # a final separator ends the last step
    assert step_ends([4, 4], separator_id=9) == [1]
    assert step_ends([], separator_id=9) == []


def test_progress_token_rewards_by_hand():
    # V_0 = 0.5 (prompt), 0.25 after step 1, 1.0 after step 2 (the outcome)
    got = progress_token_rewards([0.5, 0.25, 1.0], [1, 4], length=5, T=7)
    np.testing.assert_allclose(got, [-0.25, -0.25, 0.75, 0.75, 0.75, 0, 0])
    with pytest.raises(ValueError, match="one value per step boundary"):
        progress_token_rewards([0.5], [1, 4], length=5, T=7)


def test_config_checks_name_the_field():
    with pytest.raises(ValueError, match="ProgressConfig.rollouts must be >= 1, got 0"):
        ProgressConfig(rollouts=0)


class _Fixed(ProverProgressReward):
    """Values by prefix length (0.5 for the prompt, 0.25 after one line, 0.75 after two)."""

    def prefix_values(self, contexts, prompt_lengths, answers, step):
        self.seen = [tuple(c[p:]) for c, p in zip(contexts, prompt_lengths)]
        table = {0: 0.5, 1: 0.25, 2: 0.75}
        return np.array([table[sum(t == self._separator for t in s)] for s in self.seen],
                        np.float32)


def _batch(trainer, completions, correct):
    tok = trainer.tokenizer
    P, T = 6, 16
    ids = [tok.encode(c, add_special_tokens=False) for c in completions]
    R = len(ids)
    tokens = np.zeros((R, P + T), np.int32)
    mask = np.zeros((R, P + T), bool)
    tokens[:, 3:P], mask[:, 3:P] = [7, 8, 9], True  # one prompt, left-padded
    for r, c in enumerate(ids):
        tokens[r, P:P + len(c)], mask[r, P:P + len(c)] = c, True
    return RolloutBatch(step=0, records=[{"prompt": "p", "answer": 4}], completions=completions,
                        tokens=tokens, mask=mask, completion_mask=mask[:, P:],
                        lengths=mask[:, P:].sum(-1).reshape(1, R),
                        rewards=np.asarray(correct, np.float32).reshape(1, R),
                        correct=np.asarray(correct).reshape(1, R)), ids


def test_dense_reward_puts_each_steps_progress_on_its_tokens():
    trainer, params = tiny_trainer(group_size=2)
    dense = _Fixed(ProgressConfig(best_of=1))
    dense.init(trainer, params)
    batch, ids = _batch(trainer, ["1 + 3 = 4\nAnswer: 4", "1 + 3 = 5\nAnswer: 5"], [True, False])
    _, rewards, metrics = dense.step(None, batch)
    # distinct prefixes: the prompt (shared by the group) and each row's first line
    assert metrics["pav/prefixes"] == 3.0 and len(set(dense.seen)) == 3
    for r, (outcome, c) in enumerate(zip((1.0, 0.0), ids)):
        nl = c.index(dense._separator)
        want = np.zeros(16, np.float32)
        want[:nl + 1] = 0.25 - 0.5  # step 1: V after one line − V of the prompt
        want[nl + 1:len(c)] = outcome - 0.25  # the answer line: outcome − V after one line
        np.testing.assert_allclose(rewards[r], want, atol=1e-6)
    # the progress telescopes to outcome − V(prompt) over the steps
    ends = [step_ends(c, dense._separator) for c in ids]
    assert [float(sum(rewards[r, e] for e in ends[r])) for r in range(2)] == [0.5, -0.5]


def test_prover_values_are_monte_carlo_fractions_and_reproducible():
    trainer, params = tiny_trainer()
    dense = ProverProgressReward(ProgressConfig(rollouts=2, best_of=1, chunk=4))
    dense.init(trainer, params)
    prompt = trainer.tokenizer.encode("Start with 1. Add 3. What is the result?")
    contexts = [prompt, prompt + trainer.tokenizer.encode("1 + 3 = 4\n")]
    v1 = dense.prefix_values(contexts, [len(prompt)] * 2, [4, 4], step=3)
    v2 = dense.prefix_values(contexts, [len(prompt)] * 2, [4, 4], step=3)
    np.testing.assert_array_equal(v1, v2)
    assert set(np.round(v1 * 2, 6).tolist()) <= {0.0, 1.0, 2.0}


def test_progress_advantage_adds_alpha_times_progress():
    adv = jnp.array([[1.0, 1.0, 0.0]])
    progress = jnp.array([[0.5, -0.25, 0.0]])
    x = AdvantageInputs(advantages=adv, rewards=jnp.ones((1, 1)), correct=jnp.ones((1, 1), bool),
                        lengths=jnp.array([[2]]), mask=jnp.ones((1, 1, 3), bool),
                        token_rewards=progress)
    np.testing.assert_allclose(ProgressAdvantage(alpha=2.0)(x), [[2.0, 0.5, 0.0]])


def test_docstring_examples():
    import doctest  # noqa: PLC0415
    from rewardjax.rewards import progress  # noqa: PLC0415
    assert doctest.testmod(progress, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0


def test_prover_progress_on_a_mesh_equals_one_device():
    from tests.train.test_mesh import _backbone  # noqa: PLC0415
    from rewardjax import recipes  # noqa: PLC0415
    from rewardjax.data import synthetic  # noqa: PLC0415
    from rewardjax.train import OptimizerConfig  # noqa: PLC0415
    from rewardjax.train.rl import RLConfig, RLTrainer  # noqa: PLC0415
    from rewardjax.train.rl_extensions import RLExtensions  # noqa: PLC0415

    def run(backbone):
        pool = synthetic.rl_prompts(8, seed=0, config=recipes.TINY_RL_TASK, split="train")
        rl = RLConfig(steps=1, prompts_per_step=2, group_size=4, max_new_tokens=8,
                      prompt_length=48, seed=0)
        dense = ProverProgressReward(ProgressConfig(rollouts=2, chunk=8))
        trainer = RLTrainer(
            model_config=backbone.config, rl=rl, optimizer=OptimizerConfig(lr=1e-2, total_steps=10),
            tokenizer=backbone.tokenizer, prompts_fn=lambda step, rnd: pool[:2],
            reward_fn=lambda p, c, **f: np.array([(len(x) % 5) / 4.0 for x in c], np.float32),
            placement=backbone.placement,
            extensions=RLExtensions(dense=dense, advantage=ProgressAdvantage()))
        rollout, metrics = trainer.rollout(trainer.init_state(backbone.params), 0)
        prompt = backbone.tokenizer.encode("Start with 1. Add 3. What is the result?")
        values = dense.prefix_values([prompt] * 3, [len(prompt)] * 3, [4] * 3, step=0)
        return rollout, metrics, values

    want_rollout, want_m, want_v = run(_backbone())
    got_rollout, got_m, got_v = run(_backbone((2, 2, 2)))
    np.testing.assert_array_equal(got_rollout.tokens, want_rollout.tokens)
    np.testing.assert_array_equal(got_v, want_v)
    assert got_m["pav/prefixes"] == want_m["pav/prefixes"]
    np.testing.assert_allclose(got_rollout.advantages, want_rollout.advantages, atol=1e-5)
