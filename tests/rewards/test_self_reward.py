"""LaSeR's last-token self-reward (arXiv:2510.14943): the score, targets, AUROC and votes
by hand; the last-token log-prob against a teacher-forced forward of the sequence with
z_c appended; the MSE term inside the RL update through `RLExtensions.aux_loss`."""

import jax
import numpy as np
import pytest

from rewardjax.rewards.self_reward import (SelfRewardConfig, auroc, laser_auxiliary_loss,
                                          laser_targets, last_token_logprob, self_reward_score,
                                          token_id, weighted_vote)
from rewardjax.train.rl import teacher_forced_logprobs
from rewardjax.train.rl import RLTrainer
from rewardjax.train.rl_extensions import AuxiliaryLoss, RLExtensions, RolloutBatch
from tests.train.rl_setup import tiny_trainer


def test_score_auroc_and_vote_by_hand():
    np.testing.assert_allclose(self_reward_score(np.array([-23.0, -18.0]), beta=0.1, c_ref=-23.0),
                               [0.0, 0.5])
    # positives 0.9, 0.4; negatives 0.4, 0.1: pairs (>, >, =, >) -> 3.5 / 4
    assert auroc([0.9, 0.4, 0.4, 0.1], [1, 1, 0, 0]) == 0.875
    assert auroc([0.1, 0.9], [1, 0]) == 0.0
    assert np.isnan(auroc([0.1, 0.9], [1, 1]))
    assert weighted_vote(["3", "4", "4"]) == "4"
    assert weighted_vote(["3", "4", "4"], [0.9, 0.2, 0.3]) == "3"
    assert weighted_vote([None, None]) is None


def test_targets_balance_classes_and_skip_truncated_rows():
    batch = RolloutBatch(step=0, records=[{}, {}], completions=[""] * 4, tokens=None, mask=None,
                         completion_mask=np.ones((4, 5)), lengths=np.array([[2, 5], [3, 4]]),
                         rewards=None, correct=np.array([[True, True], [False, True]]))
    # row 1 is truncated (5 = T tokens); completed: rows 0, 3 right, row 2 wrong
    np.testing.assert_allclose(laser_targets(batch), [[1, 0.75], [1, 0], [0, 1.5], [1, 0.75]])


def test_config_and_token_errors_name_the_setting():
    with pytest.raises(ValueError, match="beta > 0"):
        SelfRewardConfig(beta=0.0)
    trainer, _ = tiny_trainer()
    with pytest.raises(ValueError, match="SelfRewardConfig.token 'Answer' must be one token"):
        token_id(trainer.tokenizer, "Answer")


def test_last_token_logprob_equals_a_forward_with_z_appended():
    trainer, params = tiny_trainer()
    z = token_id(trainer.tokenizer, "<|step|>")
    rollout, _ = trainer.rollout(trainer.init_state(params), 0)
    T = rollout.completion_mask.shape[1]
    got = np.asarray(last_token_logprob(params, rollout.tokens, rollout.mask,
                                        rollout.completion_mask, z, config=trainer.config))
    P = rollout.tokens.shape[1] - T
    for r in range(rollout.tokens.shape[0]):
        n = int(rollout.completion_mask[r].sum())
        seq = np.concatenate([rollout.tokens[r, :P + n], [z]])[None].astype(np.int32)
        m = np.concatenate([rollout.mask[r, :P + n], [True]])[None]
        want = np.asarray(teacher_forced_logprobs(params, seq, m, config=trainer.config, T=1))
        np.testing.assert_allclose(got[r], want[0, 0], rtol=1e-5, atol=1e-5)


def _aux_trainer(coef, **rl):
    base, params = tiny_trainer(**rl)
    cfg = SelfRewardConfig(beta=0.1, c_ref=-8.0, coef=coef)
    trainer = RLTrainer(extensions=RLExtensions(aux_loss=laser_auxiliary_loss(cfg, base.tokenizer)),
                        model_config=base.config, rl=base.rl, optimizer=base.optimizer_config,
                        tokenizer=base.tokenizer, prompts_fn=base.prompts_fn,
                        reward_fn=base.reward_fn)
    return base, trainer, params, cfg


def test_aux_loss_is_the_weighted_mse_of_the_rollouts_scores():
    base, trainer, params, cfg = _aux_trainer(coef=1.0, minibatches=1)
    state = trainer.init_state(params)
    rollout, _ = trainer.rollout(state, 0)
    plain, _ = base.rollout(base.init_state(params), 0)
    np.testing.assert_array_equal(rollout.tokens, plain.tokens)  # the same rows, same order
    # the length reward of `tiny_trainer` > 0.5 is "correct"
    r_v, w = rollout.aux_targets[:, 0], rollout.aux_targets[:, 1]
    z = token_id(trainer.tokenizer, cfg.token)
    logp = np.asarray(last_token_logprob(params, rollout.tokens, rollout.mask,
                                         rollout.completion_mask, z, config=trainer.config))
    want = float(np.sum(w * (0.1 * (logp + 8.0) - r_v) ** 2) / len(r_v))
    _, metrics = trainer.update(state, rollout, 0)
    assert metrics["loss/aux"] == pytest.approx(want, rel=1e-5)


def test_coef_zero_updates_exactly_like_the_plain_trainer():
    base, trainer, params, _ = _aux_trainer(coef=0.0)
    s_plain, m_plain = base.step(base.init_state(params), 0)
    s_aux, m_aux = trainer.step(trainer.init_state(params), 0)
    assert m_aux["loss"] == pytest.approx(m_plain["loss"], rel=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7),
                 s_aux.params, s_plain.params)


def test_targets_of_the_wrong_shape_are_named():
    base, params = tiny_trainer()
    trainer = RLTrainer(
        extensions=RLExtensions(aux_loss=AuxiliaryLoss(
            targets=lambda b: np.zeros(3), loss=lambda *a, **k: (0.0, {}))),
        model_config=base.config, rl=base.rl, optimizer=base.optimizer_config,
        tokenizer=base.tokenizer, prompts_fn=base.prompts_fn, reward_fn=base.reward_fn)
    with pytest.raises(ValueError, match=r"AuxiliaryLoss.targets returned shape \(3,\)"):
        trainer.rollout(trainer.init_state(params), 0)


def test_laser_trainer_on_a_mesh_equals_one_device():
    from tests.train.test_mesh import _backbone, _close  # noqa: PLC0415
    from rewardjax import recipes  # noqa: PLC0415
    from rewardjax.data import synthetic  # noqa: PLC0415
    from rewardjax.train import OptimizerConfig  # noqa: PLC0415
    from rewardjax.train.rl import RLConfig  # noqa: PLC0415

    def run(backbone):
        pool = synthetic.rl_prompts(8, seed=0, config=recipes.TINY_RL_TASK, split="train")
        rl = RLConfig(steps=2, prompts_per_step=2, group_size=4, max_new_tokens=8,
                      prompt_length=48, seed=0)
        trainer = RLTrainer(
            extensions=RLExtensions(aux_loss=laser_auxiliary_loss(
                SelfRewardConfig(c_ref=-8.0, coef=1.0), backbone.tokenizer)),
            model_config=backbone.config, rl=rl,
            optimizer=OptimizerConfig(lr=1e-2, total_steps=10, eps=1e-3),
            tokenizer=backbone.tokenizer, prompts_fn=lambda step, rnd: pool[:2],
            reward_fn=lambda p, c, **f: np.array([(len(x) % 5) / 4.0 for x in c], np.float32),
            placement=backbone.placement)
        state = trainer.init_state(backbone.params)
        out = []
        for step in range(2):
            state, m = trainer.step(state, step)
            out.append(m)
        return out, state

    want_m, want_state = run(_backbone())
    got_m, got_state = run(_backbone((2, 2, 2)))
    for a, b in zip(got_m, want_m):
        np.testing.assert_allclose([a["loss"], a["loss/aux"]], [b["loss"], b["loss/aux"]],
                                   rtol=1e-4, atol=1e-5)
    _close(got_state.params, want_state.params)



def test_docstring_examples():
    import doctest  # noqa: PLC0415
    from rewardjax.rewards import self_reward  # noqa: PLC0415
    assert doctest.testmod(self_reward, optionflags=doctest.NORMALIZE_WHITESPACE).failed == 0
