"""The RL loop's extension points, each on a toy case with values computed by hand or by
an independent path (a teacher-forced forward of the hand-built sequence)."""

import dataclasses
import functools
import math

import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax.data.encoding import encode_prompt
from rewardjax.losses import advantages as adv_lib
from rewardjax.rewards.dense import ImplicitPRMConfig, ImplicitPRMReward
from rewardjax.train import OptimizerConfig
from rewardjax.train.rl import RLTrainer, teacher_forced_logprobs
from rewardjax.train.rl_extensions import (AdvantageInputs, DecoupledLengthAdvantage, GroupFilter,
                                           PrimeAdvantage, Probes, PromptRewrite, RLExtensions)
from tests.train.rl_setup import tiny_trainer


def _with(extensions, reward_fn=None, **rl):
    base, params = tiny_trainer(reward_fn=reward_fn, **rl)
    trainer = RLTrainer(model_config=base.config, rl=base.rl, optimizer=base.optimizer_config,
                        tokenizer=base.tokenizer, prompts_fn=base.prompts_fn,
                        reward_fn=base.reward_fn, extensions=extensions)
    return trainer, params


# ----------------------------------------------------------------------------- (c) transforms


def test_rloo_token_rewards_by_hand():
    # G = 2; sample 0: tokens [1, 3] -> mean 2; sample 1: [0 (one token)] -> mean 0
    r = jnp.array([[[1.0, 3.0], [0.0, 9.0]]])
    m = jnp.array([[[1, 1], [1, 0]]])
    out = adv_lib.rloo_token_rewards(r, m)
    # r·G/(G−1) − (2 + 0)/(G−1) = 2r − 2
    np.testing.assert_allclose(out, [[[0.0, 4.0], [-2.0, 0.0]]])
    # on the last token only it is RLOO: r_g − mean of the others
    last = jnp.array([[[0, 1], [0, 1], [0, 1]]])
    rew = jnp.array([[[0, 1.0], [0, 0.0], [0, 0.0]]])
    np.testing.assert_allclose(adv_lib.rloo_token_rewards(rew, last)[..., 1],
                               adv_lib.rloo_advantages(jnp.array([[1.0, 0.0, 0.0]])), atol=1e-6)


def test_prime_advantages_by_hand():
    # B=1, G=2, T=2, all tokens active; process rewards 0 for sample 0, [1, 1] for sample 1
    outcome = jnp.array([[1.0, 0.0]])
    dense = jnp.array([[[0.0, 0.0], [1.0, 1.0]]])
    mask = jnp.ones((1, 2, 2), bool)
    adv, ret = adv_lib.prime_advantages(outcome, dense, mask, outcome_coef=1.0, process_coef=1.0)
    # dense RLOO: 2r − (0 + 1) -> [[-1, -1], [1, 1]]; outcome RLOO on last: [1, -1]
    # ρ = [[-1, 0], [1, 0]]; returns (γ=1): [[-1, 0], [1, 0]]
    np.testing.assert_allclose(ret, [[[-1.0, 0.0], [1.0, 0.0]]])
    # whitened over 4 entries: mean 0, var (ddof 1) = 2/3
    np.testing.assert_allclose(adv, ret / math.sqrt(2 / 3), rtol=1e-5)


def test_decoupled_length_advantages_by_hand():
    a = adv_lib.decoupled_length_advantages(jnp.array([[1, 1, 0, 0]]),
                                            jnp.array([[10, 20, 5, 5]]), lam=1.0)
    a_pos = 0.5 / math.sqrt(1 / 3)  # GRPO: (1 − .5) / std(ddof 1)
    # correct lengths 10, 20: standardised −1, +1 -> weights 2·softmax(1, −1)
    w = 2 * np.exp([1.0, -1.0]) / np.exp([1.0, -1.0]).sum()
    np.testing.assert_allclose(a[0, :2], w * a_pos, rtol=1e-4)
    np.testing.assert_allclose(a[0, 2:], [-a_pos, -a_pos], rtol=1e-4)
    assert (a[0, :2] > 0).all()  # a long correct answer never gets a negative advantage


def test_gate_by_outcome():
    out = adv_lib.gate_by_outcome(jnp.array([[0.7, 0.9]]), jnp.array([[True, False]]))
    np.testing.assert_allclose(out, [[0.7, 0.0]])


def test_advantage_transform_replaces_the_estimator():
    seen = {}

    def halve(x: AdvantageInputs):
        seen["shape"] = x.mask.shape
        return 0.5 * x.advantages

    plain, params = tiny_trainer(minibatches=1)
    ext, _ = _with(RLExtensions(advantage=halve), minibatches=1)
    want, _ = plain.rollout(plain.init_state(params), 0)
    got, _ = ext.rollout(ext.init_state(params), 0)
    np.testing.assert_allclose(got.advantages, 0.5 * want.advantages, rtol=1e-6)
    assert seen["shape"] == (2, 4, 8)


def test_transform_classes_match_their_functions():
    B, G, T = 1, 4, 3
    mask = jnp.ones((B, G, T), bool)
    x = AdvantageInputs(advantages=jnp.zeros((B * G, T)), rewards=jnp.array([[1.0, 0, 0, 1]]),
                        correct=jnp.array([[True, False, False, True]]),
                        lengths=jnp.array([[3, 2, 1, 1]]), mask=mask,
                        token_rewards=jnp.arange(B * G * T, dtype=jnp.float32).reshape(B * G, T))
    want, _ = adv_lib.prime_advantages(x.rewards, x.token_rewards.reshape(B, G, T), mask,
                                       outcome_coef=2.0, process_coef=3.0)
    np.testing.assert_allclose(PrimeAdvantage(outcome_coef=2.0, process_coef=3.0)(x),
                               want.reshape(B * G, T))
    d = DecoupledLengthAdvantage(lam=0.5)(x)
    want = adv_lib.decoupled_length_advantages(x.correct, x.lengths, lam=0.5)
    np.testing.assert_allclose(d, np.repeat(np.asarray(want).reshape(-1, 1), T, 1), rtol=1e-6)


# ----------------------------------------------------------------------------- (a) probes


def test_probe_logprobs_equal_a_teacher_forced_forward_of_the_sequence():
    captured = {}

    def transform(batch, probes):
        captured["probes"], captured["batch"] = probes, batch
        # RLPR-style: mean token probability of the target
        p = np.where(probes.target_mask, np.exp(probes.policy), 0).sum(-1) / probes.target_mask.sum(-1)
        return p[0].reshape(batch.rewards.shape)

    probes = Probes(texts=lambda fields, completion: [(completion[:5], "Answer: 7"), ("", "7")],
                    num_probes=2, max_tokens=16, reference=True)
    trainer, params = _with(RLExtensions(probes=probes, reward_transform=transform), minibatches=1)
    state = trainer.init_state(params)
    _, metrics = trainer.rollout(state, 0, ref_params=params)
    pr, batch = captured["probes"], captured["batch"]
    tok = trainer.tokenizer
    r = 5  # row 5 = prompt 1, sample 1
    prompt = encode_prompt(tok, batch.records[r // 4]["prompt"])
    ctx = tok.encode(batch.completions[r][:5], add_special_tokens=False)
    tgt = tok.encode("Answer: 7", add_special_tokens=False)
    seq = np.array([list(prompt) + ctx + tgt], np.int32)
    logp = teacher_forced_logprobs(params, seq, np.ones_like(seq, bool), config=trainer.config,
                                   T=len(tgt))
    got = pr.policy[0, r][pr.target_mask[0, r]]
    np.testing.assert_allclose(got, np.asarray(logp)[0], atol=2e-5)
    np.testing.assert_allclose(pr.reference, pr.policy)  # reference == policy before updates
    assert pr.target_mask[1].sum(-1).tolist() == [len(tok.encode("7", add_special_tokens=False))] * 8
    assert metrics["reward/mean"] == pytest.approx(float(transform(batch, pr).mean()), rel=1e-5)


def test_probe_errors_name_the_setting():
    probes = Probes(texts=lambda f, c: [("", "x" * 200)], max_tokens=4)
    trainer, params = _with(RLExtensions(probes=probes, reward_transform=lambda b, p: b.rewards))
    with pytest.raises(ValueError, match=r"target of \d+ tokens.*Probes.max_tokens \(4\)"):
        trainer.rollout(trainer.init_state(params), 0)
    with pytest.raises(ValueError, match="needs a reward_transform"):
        RLExtensions(probes=probes)
    seen = {}

    def keep(batch, probes):
        seen["probes"] = probes
        return batch.rewards

    long_context = Probes(texts=lambda f, c: [("1 + 1 = 2\n" * 20, "Answer: 2")], max_tokens=16)
    trainer, params = _with(RLExtensions(probes=long_context, reward_transform=keep))
    _, metrics = trainer.rollout(trainer.init_state(params), 0)
    pr = seen["probes"]
    assert pr.truncated == 8 and metrics["probes/truncated"] == 8.0  # every row, kept its tail
    n_target = len(trainer.tokenizer.encode("Answer: 2", add_special_tokens=False))
    assert pr.target_mask[0, :, -n_target:].all() and pr.target_mask[0].sum() == 8 * n_target


# ----------------------------------------------------------------------------- (f) filter


def test_group_filter_drops_groups_and_refills_from_the_next_round():
    calls = []

    def keep(state, rewards):
        calls.append(rewards.shape)
        # drop every group of the first round, keep all later ones; count calls in the state
        n = int(state["calls"])
        return {"calls": np.asarray(n + 1)}, np.full(rewards.shape[0], n > 0)

    flt = GroupFilter(keep=keep, init=lambda: {"calls": np.asarray(0)})
    trainer, params = _with(RLExtensions(group_filter=flt), minibatches=1)
    state = trainer.init_state(params)
    rollout, metrics = trainer.rollout(state, 0)
    assert metrics["groups/filtered"] == 2 and metrics["groups/short"] == 0
    assert calls == [(2, 4), (2, 4)] and int(trainer.extension_state["filter"]["calls"]) == 2
    # the kept prompts are round 1's
    round1 = [encode_prompt(trainer.tokenizer, r.prompt) for r in trainer.prompts_fn(0, 1)]
    P = trainer.rl.prompt_length
    for b, ids in enumerate(round1):
        np.testing.assert_array_equal(rollout.tokens[b * 4, P - len(ids):P], ids)


# ----------------------------------------------------------------------------- (e) rewrite


def test_rewritten_groups_train_on_the_original_prompt_with_hinted_behaviour_logprobs():
    def never(prompts, completions, **fields):
        return np.zeros(len(completions), np.float32)  # every group fails

    rewrite = PromptRewrite(rewrite=lambda f: f["prompt"] + " Hint: add step by step.", replace=2)
    trainer, params = _with(RLExtensions(rewrite=rewrite), reward_fn=never, minibatches=1)
    state = trainer.init_state(params)
    rollout, metrics = trainer.rollout(state, 0)
    assert metrics["guide/groups"] == 2.0
    rec = trainer.prompts_fn(0, 0)
    P = trainer.rl.prompt_length
    tok = trainer.tokenizer
    for r in (0, 1, 2):  # rows 0, 1 hinted (replace=2), row 2 not
        ids = encode_prompt(tok, rec[0].prompt)
        np.testing.assert_array_equal(rollout.tokens[r, P - len(ids):P], ids)  # original prompt
        hinted = encode_prompt(tok, rewrite.rewrite({"prompt": rec[0].prompt}))
        n = int(rollout.completion_mask[r].sum())
        completion = list(rollout.tokens[r, P:P + n])
        for prompt_ids, want_equal in ((hinted, r < 2), (ids, r >= 2)):
            seq = np.array([list(prompt_ids) + completion], np.int32)
            lp = np.asarray(teacher_forced_logprobs(params, seq, np.ones_like(seq, bool),
                                                    config=trainer.config, T=n,
                                                    temperature=trainer.rl.temperature))[0]
            close = np.allclose(rollout.old_logp[r, :n], lp, atol=1e-4)
            assert close == want_equal, (r, rollout.old_logp[r, :n], lp)


# ----------------------------------------------------------------------------- (b, d) dense


def test_dense_reward_reaches_the_advantage_transform():
    class FirstToken:
        def init(self, trainer, params):
            return {"calls": np.asarray(0)}

        def step(self, state, batch):
            r = np.zeros(batch.completion_mask.shape, np.float32)
            r[:, 0] = 1.0
            return {"calls": state["calls"] + 1}, r, {"dense/called": 1.0}

    def add_tokens(x):
        return x.advantages + 10.0 * x.token_rewards

    plain, params = tiny_trainer(minibatches=1)
    want, _ = plain.rollout(plain.init_state(params), 0)
    trainer, _ = _with(RLExtensions(dense=FirstToken(), advantage=add_tokens), minibatches=1)
    got, metrics = trainer.rollout(trainer.init_state(params), 0)
    first = np.zeros((8, 8), np.float32)
    first[:, 0] = 10.0 * want.completion_mask[:, 0]  # token rewards are cut to the completion
    np.testing.assert_allclose(got.advantages - want.advantages, first, atol=1e-6)
    assert metrics["dense/called"] == 1.0 and int(trainer.extension_state["dense"]["calls"]) == 1


def test_implicit_prm_starts_at_zero_reward_and_learns_online():
    prm = ImplicitPRMReward(ImplicitPRMConfig(beta=0.5, update="after", optimizer=OptimizerConfig(
        lr=1e-2, total_steps=10, min_lr_ratio=1.0)))
    trainer, params = _with(RLExtensions(dense=prm, advantage=PrimeAdvantage()), minibatches=1)
    state = trainer.init_state(params)
    first = np.asarray(trainer.extension_state["dense"].params["embed"])  # the update donates it
    rollout, m = trainer.rollout(state, 0)
    # π_φ = π_ref before its first update: every token reward is 0 and the CE loss is log 2
    assert m["prm/reward_mean"] == 0.0 and m["prm/loss"] == pytest.approx(math.log(2), abs=1e-5)
    moved = trainer.extension_state["dense"].params
    assert not np.allclose(moved["embed"], first)
    assert np.allclose(prm.reference["embed"], params["embed"])  # the reference stays frozen
    _, m2 = trainer.rollout(state, 1)
    assert m2["prm/reward_mean"] != 0.0


def test_prime_extensions_on_a_mesh_equal_one_device():
    from tests.train.test_mesh import _backbone, _close  # noqa: PLC0415
    from rewardjax import recipes  # noqa: PLC0415
    from rewardjax.data import synthetic  # noqa: PLC0415
    from rewardjax.train.rl import RLConfig  # noqa: PLC0415

    def run(backbone):
        pool = synthetic.rl_prompts(8, seed=0, config=recipes.TINY_RL_TASK, split="train")
        rl = RLConfig(steps=2, prompts_per_step=2, group_size=4, max_new_tokens=8,
                      prompt_length=48, seed=0)
        prm = ImplicitPRMReward(ImplicitPRMConfig(optimizer=OptimizerConfig(
            lr=1e-2, total_steps=10, eps=1e-3)))
        trainer = RLTrainer(
            model_config=backbone.config, rl=rl,
            optimizer=OptimizerConfig(lr=1e-2, total_steps=10, eps=1e-3),
            tokenizer=backbone.tokenizer, prompts_fn=lambda step, rnd: pool[:2],
            reward_fn=lambda p, c, **f: np.array([(len(x) % 5) / 4.0 for x in c], np.float32),
            placement=backbone.placement,
            extensions=RLExtensions(dense=prm, advantage=PrimeAdvantage()))
        state = trainer.init_state(backbone.params)
        out = []
        for step in range(2):
            state, m = trainer.step(state, step)
            out.append(m)
        return out, state, trainer.extension_state["dense"]

    want_m, want_state, want_prm = run(_backbone())
    got_m, got_state, got_prm = run(_backbone((2, 2, 2)))
    for a, b in zip(got_m, want_m):
        np.testing.assert_allclose([a["loss"], a["prm/loss"]], [b["loss"], b["prm/loss"]],
                                   rtol=1e-4, atol=1e-5)
    _close(got_prm.params, want_prm.params)
    _close(got_state.params, want_state.params)


# ----------------------------------------------------------------------------- guarantees


def test_compilations_constant_with_every_extension_in_use():
    from tests.train.rl_ext_worker import extended_trainer  # noqa: PLC0415
    from tests.train.test_rl import CompileCounter  # noqa: PLC0415

    counter = CompileCounter()
    base, params = extended_trainer(dynamic_sampling=True)
    probes = Probes(texts=lambda f, c: [(c[:8], " 7")], max_tokens=16, reference=True)
    ext = dataclasses.replace(
        base.extensions, probes=probes,
        reward_transform=lambda b, p: b.rewards + np.exp(p.policy).sum(-1)[0].reshape(b.rewards.shape),
        rewrite=PromptRewrite(rewrite=lambda f: f["prompt"] + " Hint."))
    trainer = RLTrainer(model_config=base.config, rl=base.rl, optimizer=base.optimizer_config,
                        tokenizer=base.tokenizer, prompts_fn=base.prompts_fn,
                        reward_fn=base.reward_fn, extensions=ext)
    state = trainer.init_state(params)
    counts = []
    for step in range(5):
        state, metrics = trainer.step(state, step, ref_params=params)
        counts.append(counter.count)
    assert "prm/loss" in metrics and "guide/groups" in metrics
    assert counts[1] == counts[2] == counts[3] == counts[4], counts


def test_reward_failures_fall_back_with_extensions_in_use():
    from rewardjax.rewards import CombinedReward, RewardSpec  # noqa: PLC0415
    from tests.train.rl_ext_worker import extended_trainer  # noqa: PLC0415

    calls = {"n": 0}

    def flaky(prompts, completions, **fields):
        calls["n"] += 1
        if calls["n"] % 3 == 0:
            raise RuntimeError("verifier crashed")
        return [float(len(completions[0]) % 2)]

    reward = CombinedReward([RewardSpec(name="flaky", fn=flaky, weight=1.0, fallback=-1.0,
                                        timeout_s=5.0, isolation="thread", per_sample=True)])
    base, params = extended_trainer(accuracy_reward="flaky")
    trainer = RLTrainer(model_config=base.config, rl=base.rl, optimizer=base.optimizer_config,
                        tokenizer=base.tokenizer, prompts_fn=base.prompts_fn, reward_fn=reward,
                        extensions=base.extensions)
    state = trainer.init_state(params)
    for step in range(2):
        state, metrics = trainer.step(state, step)
        assert metrics["reward/flaky/failures"] > 0
        assert np.isfinite(metrics["loss/policy"]) and np.isfinite(metrics["prm/loss"])
    reward.close()


def test_sigkill_then_restart_resumes_the_online_prm_and_filter_state(tmp_path):
    import signal  # noqa: PLC0415
    from tests.train.test_rl import _run_worker  # noqa: PLC0415

    run = functools.partial(_run_worker, module="tests.train.rl_ext_worker")
    code, log = run(tmp_path / "straight")
    assert code == 0, log[-3000:]
    code, log = run(tmp_path / "killed", kill_after_checkpoint=4)
    assert code == -signal.SIGKILL, log[-3000:]
    code, log = run(tmp_path / "killed")
    assert code == 0, log[-3000:]
    assert "step 5 done" in log and "step 1 done" not in log
    a, b = np.load(tmp_path / "straight" / "final.npz"), np.load(tmp_path / "killed" / "final.npz")
    assert set(a.files) == set(b.files) and any("prm" in k for k in a.files)
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)


def test_process_return_advantage_sum_min_and_verifiable_mix_by_hand():
    from rewardjax.train.rl_extensions import ProcessReturnAdvantage  # noqa: PLC0415

    # B=1, G=2, T=3; sample 0: steps +1 (t0), −1 (t1); sample 1: step +1 (t0)
    x = AdvantageInputs(advantages=jnp.zeros((2, 3)), rewards=jnp.zeros((1, 2)),
                        correct=jnp.array([[True, False]]), lengths=jnp.array([[3, 3]]),
                        mask=jnp.ones((1, 2, 3), bool),
                        token_rewards=jnp.array([[1.0, -1.0, 0.0], [1.0, 0.0, 0.0]]))
    # sum: returns [0, −1, 0] and [1, 0, 0]; first-token returns 0 and 1 are each other's baseline
    np.testing.assert_allclose(ProcessReturnAdvantage(form="sum", temperature=None)(x),
                               [[-1, -2, -1], [1, 0, 0]])
    # min: returns [−1, −1, 0] and [1, 0, 0]; baselines 1 and −1
    np.testing.assert_allclose(ProcessReturnAdvantage(form="min", temperature=None)(x),
                               [[-2, -2, -1], [2, 1, 1]])
    # + the verifiable reward (sample 0 correct: +1 on its last token, a step of its own)
    np.testing.assert_allclose(
        ProcessReturnAdvantage(form="min", temperature=None, verifiable_every=1)(x),
        [[-2, -2, 0], [2, 1, 1]])


def test_step_rule_rewards_sit_on_step_ends():
    from rewardjax.data.tokenizer import default_tokenizer  # noqa: PLC0415
    from rewardjax.rewards.steps import step_end_rewards  # noqa: PLC0415

    tok = default_tokenizer()
    ids = tok.encode("3 + 4 = 7\n7 - 2 = 4\nAnswer: 4", add_special_tokens=False)
    r = step_end_rewards(tok, np.array([ids]), np.ones((1, len(ids)), bool))[0]
    newlines = [i for i, t in enumerate(ids) if "\n" in tok.decode([t])]
    assert r[newlines[0]] == 1.0 and r[newlines[1]] == -1.0  # 7 − 2 ≠ 4
    assert np.count_nonzero(r) == 2  # nothing on the Answer line
