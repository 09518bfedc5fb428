"""A non-finite step never reaches a checkpoint: it is skipped and counted, or the run
stops naming the step and the metric (OptimizerConfig.max_nonfinite_steps)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax.train import Checkpointer, NonFiniteError, OptimizerConfig, read_jsonl, run_stage
from rewardjax.train.state import init_state
from tests.train.rl_setup import tiny_trainer

POISONED = 3  # the optimizer step (1-based) whose gradient is NaN


def _loss(params, batch):
    pred = batch["x"] @ params["w"]
    loss = jnp.mean((pred - batch["y"]) ** 2)
    return loss * jnp.where(batch["poison"][0], jnp.nan, 1.0), {}  # NaN loss and gradient


def _batch_fn(step):
    rng = np.random.default_rng(step)
    x = rng.normal(size=(1, 8, 4)).astype(np.float32)
    return {"x": x, "y": x.sum(-1), "poison": np.full((1, 8), step + 1 == POISONED)}


def _finite(tree):
    return all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(tree))


def test_reward_model_stage_skips_a_nan_step_and_checkpoints_finite_params(tmp_path):
    params = {"w": jnp.zeros((4,))}
    opt = OptimizerConfig(lr=0.1, total_steps=6)
    # The run ends at the poisoned step, so its one kept checkpoint is the one right after it.
    state, _ = run_stage(params, _loss, _batch_fn, optimizer=opt, num_steps=POISONED,
                         out_dir=tmp_path, name="rm", log_every=1, progress=False)
    assert _finite(state.params) and int(state.step) == POISONED
    rows = read_jsonl(tmp_path / "rm.jsonl")
    assert [r["nonfinite"] for r in rows] == [0, 0, 1]
    assert rows[-1]["nonfinite/skipped"] == 1
    assert np.isnan(rows[-1]["loss"])
    ckpt = Checkpointer(tmp_path / "checkpoints" / "rm", every=POISONED)
    template = init_state(params, opt.make())
    restored, meta = ckpt.restore(template, step=POISONED)
    ckpt.close()
    assert meta["step"] == POISONED and _finite(restored.params)


def test_stop_setting_names_the_step_and_keeps_the_last_good_checkpoint(tmp_path):
    opt = OptimizerConfig(lr=0.1, total_steps=6, max_nonfinite_steps=0)
    with pytest.raises(NonFiniteError, match=rf"train step {POISONED}: loss and grad_norm not "
                                             r"finite .*max_nonfinite_steps = 0"):
        run_stage({"w": jnp.zeros((4,))}, _loss, _batch_fn, optimizer=opt, num_steps=6,
                  out_dir=tmp_path, name="rm", checkpoint_every=1, progress=False)
    ckpt = Checkpointer(tmp_path / "checkpoints" / "rm")
    assert ckpt.latest_step() == POISONED - 1
    ckpt.close()


def _nan_on_second_call():
    calls = {"n": 0}

    def reward(prompts, completions, **fields):
        calls["n"] += 1
        values = np.array([(len(c) % 5) / 4.0 for c in completions], np.float32)
        return values * np.nan if calls["n"] == 2 else values

    return reward


def test_rl_run_skips_a_nan_step_and_checkpoints_finite_params(tmp_path):
    trainer, params = tiny_trainer(reward_fn=_nan_on_second_call(), steps=3, minibatches=1)
    state = trainer.init_state(params)
    ckpt = Checkpointer(tmp_path / "ckpt", every=1)
    state = trainer.run(state, checkpointer=ckpt)
    assert trainer.guard.skipped == 1 and _finite(state.params)
    restored, meta = ckpt.restore(trainer.init_state(params), step=2)
    ckpt.close()
    assert meta["rl_step"] == 2 and _finite(restored.params)


def test_rl_run_stops_on_a_nan_step_when_asked(tmp_path):
    trainer, params = tiny_trainer(reward_fn=_nan_on_second_call(), steps=3, minibatches=1,
                                   optimizer=OptimizerConfig(lr=1e-2, total_steps=100,
                                                             max_nonfinite_steps=0))
    state = trainer.init_state(params)
    ckpt = Checkpointer(tmp_path / "ckpt", every=1)
    with pytest.raises(NonFiniteError, match="train step 2: loss and grad_norm not finite"):
        trainer.run(state, checkpointer=ckpt)
    assert ckpt.latest_step() == 1
    ckpt.close()
