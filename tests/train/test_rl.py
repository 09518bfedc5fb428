"""The RL loop: a step runs, nothing recompiles after step 1, failures fall back, resume."""

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax.rewards import CombinedReward, RewardSpec
from rewardjax.train.rl import RLConfig, RLTrainer, rl_loss
from tests.train.rl_setup import tiny_trainer

ROOT = Path(__file__).resolve().parents[2]


class CompileCounter:
    """Counts XLA backend compilations (jax.monitoring duration events)."""

    def __init__(self):
        self.count = 0
        jax.monitoring.register_event_duration_secs_listener(self._listen)

    def _listen(self, event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            self.count += 1


def test_compilations_constant_from_step_2_to_5():
    counter = CompileCounter()
    trainer, params = tiny_trainer(dynamic_sampling=True)
    state = trainer.init_state(params)
    counts = []
    for step in range(5):
        state, metrics = trainer.step(state, step)
        counts.append(counter.count)
        for key in ("reward/mean", "reward/std", "accuracy", "entropy", "clip/frac_low",
                    "clip/frac_high", "response/length", "groups/filtered", "perf/tokens_per_s",
                    "loss/policy", "kl/approx"):
            assert key in metrics, key
    assert counts[1] == counts[2] == counts[3] == counts[4], counts
    # the counter does see compilations (a program no earlier test compiled)
    before = counter.count
    jax.jit(lambda x: x * 3.25 + 1.0)(np.arange(7 + counts[4] % 5, dtype=np.float32)).block_until_ready()
    assert counter.count > before


def test_first_epoch_ratio_is_one():
    trainer, params = tiny_trainer(minibatches=1)
    state, metrics = trainer.step(trainer.init_state(params), 0)
    # sampler log-probs equal the training forward's: the ratio starts at exactly 1
    assert abs(metrics["ratio/mean"] - 1.0) < 1e-4 and metrics["clip/frac"] == 0.0


def test_failing_and_slow_rewards_fall_back_and_count():
    calls = {"n": 0}

    def flaky(prompts, completions, **fields):
        calls["n"] += 1
        if calls["n"] % 3 == 0:
            raise RuntimeError("verifier crashed")
        if calls["n"] % 3 == 1:
            time.sleep(2.0)  # past the 0.5 s limit
        return [1.0]

    reward = CombinedReward([RewardSpec(name="flaky", fn=flaky, weight=1.0, fallback=-1.0,
                                        timeout_s=0.5, isolation="thread", per_sample=True)])
    trainer, params = tiny_trainer(reward_fn=reward, accuracy_reward="flaky")
    state = trainer.init_state(params)
    for step in range(2):
        state, metrics = trainer.step(state, step)
        assert metrics["reward/flaky/failures"] > 0
        assert np.isfinite(metrics["loss/policy"])
    assert int(state.step) == 2 * trainer.rl.minibatches
    reward.close()


def test_custom_loss_fn_is_the_one_the_update_differentiates():
    def frozen_loss(params, mb, *, config, rl, **apply_kwargs):
        loss, metrics = rl_loss(params, mb, config=config, rl=rl, **apply_kwargs)
        return loss * 0.0, {**metrics, "custom/called": jnp.ones(())}

    base, params = tiny_trainer(minibatches=1)
    custom = RLTrainer(model_config=base.config, rl=base.rl, optimizer=base.optimizer_config,
                       tokenizer=base.tokenizer, prompts_fn=base.prompts_fn,
                       reward_fn=base.reward_fn, loss_fn=frozen_loss)
    state, metrics = custom.step(custom.init_state(params), 0)
    assert metrics["custom/called"] == 1.0 and metrics["loss/policy"] != 0.0
    # zero gradients: Adam's first update is exactly zero (no weight decay)
    jax.tree.map(np.testing.assert_array_equal, state.params, params)
    moved, _ = base.step(base.init_state(params), 0)
    assert not all(jax.tree.leaves(jax.tree.map(np.array_equal, moved.params, params)))


def test_config_errors_are_named():
    with pytest.raises(ValueError, match="advantage must be one of"):
        RLConfig(advantage="ppo2")
    with pytest.raises(ValueError, match="split evenly"):
        RLConfig(prompts_per_step=3, group_size=3, minibatches=2)
    with pytest.raises(ValueError, match="kl_in_reward needs per-token rewards"):
        RLConfig(kl_in_reward=True, kl_coef=0.1, advantage="grpo")


def test_kl_without_a_reference_fails_before_any_step():
    trainer, params = tiny_trainer(kl_coef=0.1)
    seen = []
    with pytest.raises(ValueError, match=r"kl_coef=0.1 needs ref_params"):
        trainer.run(trainer.init_state(params), on_step=lambda step, m: seen.append(step))
    assert seen == []


def test_records_may_be_namedtuples_and_a_bad_record_is_named():
    from typing import NamedTuple

    class Prompt(NamedTuple):
        prompt: str
        answer: str

    trainer, params = tiny_trainer(minibatches=1)
    dict_records = [dataclasses.asdict(r) for r in trainer.prompts_fn(0, 0)]
    seen = []

    def recording_reward(prompts, completions, **fields):
        seen.append(fields["answer"])
        return np.zeros(len(completions), np.float32)

    for records in (dict_records, [Prompt(r["prompt"], r["answer"]) for r in dict_records]):
        trainer.prompts_fn, trainer.reward_fn = (lambda step, rnd, r=records: r), recording_reward
        trainer.step(trainer.init_state(params), 0)
    assert seen[0] == seen[1] and len(seen[0]) == len(dict_records) * trainer.rl.group_size
    trainer.prompts_fn = lambda step, rnd: [("a prompt", "1")] * len(dict_records)
    with pytest.raises(TypeError, match="RL prompt record .* expected a dataclass, a NamedTuple"):
        trainer.step(trainer.init_state(params), 0)


def _run_worker(out, *, kill_after_checkpoint=None, module="tests.train.rl_worker"):
    proc = subprocess.Popen([sys.executable, "-m", module, str(out)], cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines = []
    for line in proc.stdout:
        lines.append(line)
        if kill_after_checkpoint and f"latest checkpoint {kill_after_checkpoint}" in line:
            proc.send_signal(signal.SIGKILL)
            break
    proc.wait(timeout=600)
    return proc.returncode, "".join(lines)


def test_sigkill_after_checkpoint_then_restart_matches_uninterrupted(tmp_path):
    code, log = _run_worker(tmp_path / "straight")
    assert code == 0, log[-3000:]
    code, log = _run_worker(tmp_path / "killed", kill_after_checkpoint=4)
    assert code == -signal.SIGKILL, log[-3000:]
    assert not (tmp_path / "killed" / "final.npz").exists()
    code, log = _run_worker(tmp_path / "killed")  # restart: resumes from step 4
    assert code == 0, log[-3000:]
    assert "step 5 done" in log and "step 1 done" not in log
    a, b = np.load(tmp_path / "straight" / "final.npz"), np.load(tmp_path / "killed" / "final.npz")
    assert set(a.files) == set(b.files)
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
