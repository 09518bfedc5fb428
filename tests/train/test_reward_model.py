"""Reward-model wiring: losses on real pipeline batches, resume, evaluation helpers.

Every model call is jitted (eager op-by-op dispatch is far slower to trace), and
batches share one shape so each function compiles once.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax import heads
from rewardjax.data import pipeline as pl
from rewardjax.data.encoding import encode_prompt
from rewardjax.data.records import AttributeRating, Ranking
from rewardjax.data.synthetic import arithmetic
from rewardjax.data.tokenizer import default_tokenizer
from rewardjax.models import ModelConfig, init_params
from rewardjax.sampling import sequence_logprobs
from rewardjax.train import (OptimizerConfig, init_state, make_batch_fn, make_train_step,
                             read_jsonl, run_stage)
from rewardjax.train import multi_objective as mo
from rewardjax.train import prm
from rewardjax.train import reward_model as rm

TASK = arithmetic.ArithmeticConfig(min_steps=2, max_steps=3, max_start=9, max_value=9,
                                   max_operand=3, ops=("+", "-"), max_error=2)
T = 96


@pytest.fixture(scope="module")
def tok():
    return default_tokenizer()


@pytest.fixture(scope="module")
def model(tok):
    return ModelConfig(model_type="qwen2", vocab_size=len(tok), hidden_size=32,
                       intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1,
                       head_dim=16, qkv_bias=True, tie_word_embeddings=True)


@pytest.fixture(scope="module")
def backbone(model):
    return init_params(model, jax.random.key(0))


def _pairs_pipe(tok, n=32, batch=8, **kw):
    pairs = arithmetic.preference_pairs(n, seed=0, config=TASK)
    return pl.preference_pipeline(pairs, tok, pl.PipelineConfig(
        batch_size=batch, buckets=(T,), drop_remainder=True, **kw))


def _steps_batch(tok, n=8):
    sols = arithmetic.step_solutions(n, seed=0, config=TASK)
    return pl.step_pipeline(sols, tok, pl.PipelineConfig(batch_size=n, buckets=(T,), max_steps=4,
                                                         shuffle=False)).dataset[0]


def test_pairwise_loss_wiring(tok, model, backbone):
    params = rm.init_reward_model(backbone, jax.random.key(1), config=model)
    batch = _pairs_pipe(tok).dataset[0]
    loss_fn = jax.jit(functools.partial(rm.pairwise_loss, config=model, use_margin=True))
    # chosen == rejected: log 2, and the tie counts as wrong
    same = {**batch, "rejected": batch["chosen"]}
    loss, m = loss_fn(params, same)
    np.testing.assert_allclose(loss, math.log(2), rtol=1e-6)
    assert float(m["accuracy"]) == 0.0 and float(m["margin"]) == 0.0
    # a margin of 1 on equal scores: log(1 + e)
    loss, _ = loss_fn(params, {**same, "margin": np.ones(8, np.float32)})
    np.testing.assert_allclose(loss, math.log1p(math.e), rtol=1e-6)
    # real pairs: the mean of −log σ(r_c − r_r) over the scores the model gives
    rc, rr = jax.jit(functools.partial(rm.pair_rewards, config=model))(params, batch)
    loss, m = loss_fn(params, batch)
    expected = np.mean(np.logaddexp(0.0, -(np.asarray(rc) - np.asarray(rr))))
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    assert {"accuracy", "margin", "reward/mean", "reward/std", "loss/bt"} <= set(m)


def test_ranking_of_two_equals_bradley_terry(tok, model, backbone):
    params = rm.init_reward_model(backbone, jax.random.key(1), config=model)
    pairs = arithmetic.preference_pairs(8, seed=0, config=TASK)
    # response 1 is the better one: order = (1, 0)
    ranks = [Ranking(prompt=p.prompt, responses=(p.rejected, p.chosen), ranking=(1, 0))
             for p in pairs]
    cfg = pl.PipelineConfig(batch_size=8, buckets=(T,), shuffle=False)
    rb = pl.ranking_pipeline(ranks, tok, cfg).dataset[0]
    pb = pl.preference_pipeline(pairs, tok, cfg).dataset[0]
    pl_loss, _ = jax.jit(functools.partial(rm.ranking_loss, config=model))(params, rb)
    rc, rr = jax.jit(functools.partial(rm.pair_rewards, config=model))(params, pb)
    bt = np.mean(np.logaddexp(0.0, -(np.asarray(rc) - np.asarray(rr))))
    np.testing.assert_allclose(pl_loss, bt, rtol=1e-5)


def test_rating_loss_masks_missing_and_freezes_backbone(tok, model, backbone):
    params = rm.init_reward_model(backbone, jax.random.key(1), config=model,
                                  head="multi_objective", num_objectives=2, gating_hidden=8)
    recs = [AttributeRating(prompt="q", response="a b", ratings={"x": 0.5, "y": None}),
            AttributeRating(prompt="q2", response="c", ratings={"x": 1.0, "y": 0.0})]
    batch = pl.rating_pipeline(recs, tok, pl.PipelineConfig(batch_size=2, buckets=(32,),
                                                            shuffle=False)).dataset[0]
    loss_fn = jax.jit(functools.partial(rm.rating_loss, config=model))
    loss, _ = loss_fn(params, batch)
    changed = {**batch, "ratings": np.where(batch["ratings_mask"], batch["ratings"], 123.0)}
    np.testing.assert_allclose(loss_fn(params, changed)[0], loss)
    pred, _ = jax.jit(functools.partial(rm.rating_predictions, config=model))(params, batch)
    m = batch["ratings_mask"]
    expected = np.sum(np.where(m, (np.asarray(pred) - batch["ratings"]) ** 2, 0)) / m.sum()
    np.testing.assert_allclose(loss, expected, rtol=1e-5)
    grad = jax.jit(jax.grad(lambda p: rm.rating_loss(p, batch, config=model,
                                                     freeze_backbone=True)[0]))(params)
    assert all(float(jnp.abs(x).max()) == 0 for x in jax.tree.leaves(grad["backbone"]))
    assert float(jnp.abs(grad["head"]["regression"]["w"]).max()) > 0


def test_step_loss_is_bce_over_real_steps(tok, model, backbone):
    params = rm.init_reward_model(backbone, jax.random.key(1), config=model, head="step")
    batch = _steps_batch(tok)
    z = np.asarray(jax.jit(functools.partial(prm.step_logits, config=model))(params, batch))
    y, m = batch["step_labels"], batch["step_mask"]
    bce = np.logaddexp(0, z) - y * z
    loss, _ = jax.jit(functools.partial(prm.step_loss, config=model))(params, batch)
    np.testing.assert_allclose(loss, bce[m].mean(), rtol=1e-5)
    last, _ = jax.jit(functools.partial(prm.step_loss, config=model, last_step_only=True))(
        params, batch)
    idx = m.sum(1) - 1
    np.testing.assert_allclose(last, bce[np.arange(len(idx)), idx].mean(), rtol=1e-5)


def test_implicit_prm_wiring(tok, model, backbone):
    batch = prm.with_reference_logprobs(backbone, config=model)(_steps_batch(tok))
    np.testing.assert_array_equal(batch["outcome"],
                                  (batch["first_error"] == -1).astype(np.float32))
    loss_fn = jax.jit(functools.partial(prm.implicit_prm_loss, config=model, beta=0.5))
    np.testing.assert_allclose(loss_fn(backbone, batch)[0], math.log(2), rtol=1e-5)
    # a perturbed policy: the step rewards add up to the last prefix value, and q_k is
    # β times the log-ratio summed through the end of step k
    policy = jax.tree.map(lambda x: x * 1.1, backbone)

    @jax.jit
    def values(p):
        logp = sequence_logprobs(p, batch["tokens"], batch["attention_mask"], config=model)
        q, r = prm.implicit_step_values(logp, batch["ref_logp"], batch["loss_mask"],
                                        batch["step_positions"], batch["step_mask"], beta=0.5)
        windowed = prm.response_logprobs(p, batch["tokens"], batch["attention_mask"],
                                         config=model, window=40)
        return logp, q, r, windowed

    logp, q, r, windowed = (np.asarray(x) for x in values(policy))
    # projecting only the last 40 positions gives the same response log-probs
    m = batch["loss_mask"]
    assert not m[:, :-40].any()
    np.testing.assert_allclose(windowed[m], logp[m], rtol=1e-4, atol=1e-5)
    idx = batch["step_mask"].sum(1) - 1
    np.testing.assert_allclose(q[np.arange(len(idx)), idx], r.sum(1), rtol=1e-4, atol=1e-5)
    lr = (logp - batch["ref_logp"]) * batch["loss_mask"]
    end = batch["step_positions"][0, 1]
    np.testing.assert_allclose(q[0, 1], 0.5 * lr[0, :end + 1].sum(), rtol=1e-4, atol=1e-5)


def test_batch_fn_is_pure_and_wraps(tok):
    pipe = _pairs_pipe(tok, n=32, batch=8)
    fn = make_batch_fn(pipe, num_micro=2)
    jax.tree.map(np.testing.assert_array_equal, fn(3), fn(3))
    assert fn(3)["chosen"]["tokens"].shape == (2, 4, T)
    jax.tree.map(np.testing.assert_array_equal, fn(1), fn(1 + len(pipe.dataset)))


def test_stopped_and_resumed_run_equals_uninterrupted(tmp_path, tok, model, backbone):
    pipe = _pairs_pipe(tok, n=64, batch=8, seed=3, num_epochs=None)
    params = rm.init_reward_model(backbone, jax.random.key(1), config=model)
    run = functools.partial(
        run_stage, loss_fn=functools.partial(rm.pairwise_loss, config=model, center_coef=0.01),
        batch_fn=make_batch_fn(pipe, num_micro=2), name="rm", num_steps=6,
        optimizer=OptimizerConfig(lr=1e-2, warmup_steps=2, total_steps=6), checkpoint_every=2,
        log_every=1, progress=False)
    straight, _ = run(params, out_dir=tmp_path / "a")
    stopped, _ = run(params, out_dir=tmp_path / "b", stop_after=3)
    assert int(stopped.step) == 3
    resumed, _ = run(params, out_dir=tmp_path / "b")  # restores step 2, replays 3..6
    assert int(resumed.step) == 6
    jax.tree.map(lambda x, y: np.testing.assert_array_equal(np.asarray(x), np.asarray(y)),
                 straight.params, resumed.params)
    rows = read_jsonl(tmp_path / "b" / "rm.jsonl")
    assert rows[-1]["step"] == 6 and {"accuracy", "grad_norm", "reward/std"} <= set(rows[-1])


def test_evaluation_loops(tok, model, backbone):
    params = rm.init_reward_model(backbone, jax.random.key(1), config=model)
    pipe = pl.preference_pipeline(arithmetic.preference_pairs(10, seed=0, config=TASK), tok,
                                  pl.PipelineConfig(batch_size=8, buckets=(T,), shuffle=False))
    s = rm.score_pairs(params, pipe, config=model)
    assert sorted(s["index"].tolist()) == list(range(10))
    out = rm.evaluate_pairs(params, pipe, config=model)
    assert 0 <= out["accuracy"] <= 1 and 0 <= out["ece"] <= 1
    assert any(k.startswith("accuracy/steps_") for k in out)
    step_params = rm.init_reward_model(backbone, jax.random.key(1), config=model, head="step")
    sols = arithmetic.step_solutions(16, seed=0, config=TASK)
    spipe = pl.step_pipeline(sols, tok, pl.PipelineConfig(batch_size=8, buckets=(T,),
                                                          max_steps=4, shuffle=False))
    ev = prm.evaluate_steps(step_params, spipe, config=model)
    assert set(ev) == {"f1", "error_accuracy", "correct_accuracy", "step_accuracy"}


def test_first_error_metrics_and_baselines():
    scores = [np.array([0.9, 0.2, 0.1]), np.array([0.9, 0.8]), np.array([0.4, 0.9])]
    out = prm.first_error_metrics(scores, np.array([1, -1, 1]))
    assert out["correct_accuracy"] == 1.0 and out["error_accuracy"] == 0.5
    assert out["f1"] == pytest.approx(2 * 0.5 / 1.5)
    base = prm.baseline_first_errors([3, 4, 2, 5], seed=0)
    assert (base["no_error"] == -1).all()
    assert ((base["random_step"] >= 0) & (base["random_step"] < [3, 4, 2, 5])).all()


def test_tuned_threshold_picks_the_gap_between_correct_and_wrong_steps():
    # Prefix values off any fixed scale: correct steps at -0.1..-0.3, wrong ones below -2.
    scores = [np.array([-0.1, -2.5, -3.0]), np.array([-0.2, -0.3]), np.array([-2.2, -1.0]),
              np.array([-0.1, -0.2, -0.25])]
    first_error = np.array([1, -1, 0, -1])
    assert prm.first_error_metrics(scores, first_error, threshold=0.0)["f1"] == 0.0
    t = prm.tune_first_error_threshold(scores, first_error)
    assert -2.2 < t <= -0.3  # inside the band of perfect F1
    assert prm.first_error_metrics(scores, first_error, threshold=t)["f1"] == 1.0
    # With more distinct scores than candidates, quantiles still find a perfect cut.
    wrong = [np.array([-0.01 * i, -10.0 - 0.01 * i]) for i in range(300)]
    right = [np.array([-0.001 * i, -0.002 * i, -0.003 * i]) for i in range(300)]
    gold = np.array([1] * 300 + [-1] * 300)
    t = prm.tune_first_error_threshold(wrong + right, gold, max_candidates=16)
    assert -10.0 < t < -3.0
    assert prm.first_error_metrics(wrong + right, gold, threshold=t)["f1"] == 1.0


def test_gating_trains_only_the_gate_on_features(tok, model, backbone):
    params = rm.init_reward_model(backbone, jax.random.key(1), config=model,
                                  head="multi_objective", num_objectives=3, gating_hidden=8)
    pairs = arithmetic.preference_pairs(8, seed=0, config=TASK)
    pipe = pl.preference_pipeline(pairs, tok, pl.PipelineConfig(batch_size=8, buckets=(T,),
                                                                shuffle=False))
    feats = mo.pair_features(params["backbone"], pipe, config=model)
    # the prompt feature is the prompt-only run's last hidden state
    ids = encode_prompt(tok, pairs[0].prompt)[None]
    h = jax.jit(functools.partial(heads.backbone_hidden, config=model))(
        params["backbone"], ids, np.ones_like(ids, bool))
    i = int(np.flatnonzero(feats["index"] == 0)[0])
    np.testing.assert_allclose(feats["prompt"][i], np.asarray(h[0, -1]), rtol=1e-4, atol=1e-5)

    head = params["head"]
    tx = mo.freeze_except(OptimizerConfig(lr=1e-2, total_steps=4).make(), head, ["gate"])
    step = make_train_step(mo.gating_loss, tx, donate=False)
    state, _ = step(init_state(head, tx), mo.feature_batch_fn(feats, batch_size=4, seed=0)(0))
    np.testing.assert_array_equal(state.params["regression"]["w"], head["regression"]["w"])
    assert not np.array_equal(state.params["gate"]["out"]["w"], head["gate"]["out"]["w"])
    ev = mo.evaluate_gating(state.params, feats, subset_names=pipe.subset_names)
    assert {"accuracy", "uniform/accuracy", "gate/weight_0"} <= set(ev)
