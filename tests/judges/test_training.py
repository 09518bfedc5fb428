"""GRPO on a judge raises its verdict reward on a toy case; a judge GRPO step on a mesh
of 8 simulated devices equals the one-device step."""

import functools

import jax
import numpy as np
import pytest

from rewardjax import judges, recipes
from rewardjax.sharding import MeshConfig
from rewardjax.train import OptimizerConfig
from rewardjax.train.rl import RLConfig

SPEC = recipes.BackboneConfig(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2,
                              num_kv_heads=1, head_dim=16)
CHOICES = ("A", "B")


def _toy_traces(n, *, seed, teacher_accuracy=1.0):
    """"Pick A." -> A; the SFT teacher is right only `teacher_accuracy` of the time, so
    the SFT judge is a weak one that GRPO on the verdict reward has to improve."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        label = CHOICES[i % 2]
        said = label if rng.random() < teacher_accuracy else CHOICES[1 - i % 2]
        out.append(judges.Trace(prompt=f"Pick {label}.", judgment=f"Verdict: {said}", label=label))
    return out


@functools.lru_cache(maxsize=None)
def _warm(tmp):
    backbone = recipes.load_backbone(SPEC, jax.random.key(0))
    sft = recipes.SFTConfig(steps=40, batch_size=16, response_window=None,
                            optimizer=OptimizerConfig(lr=1e-2, warmup_steps=5, total_steps=40))
    examples = [t.sft_example() for t in _toy_traces(256, seed=0, teacher_accuracy=0.7)]
    return backbone._replace(params=recipes.sft_warm_start(backbone, examples, sft=sft,
                                                           buckets=(32,), out_dir=tmp))


RL = RLConfig(steps=24, prompts_per_step=4, group_size=8, max_new_tokens=8, prompt_length=24,
              temperature=1.0, accuracy_reward="verdict", seed=0)


def test_grpo_raises_the_judge_reward_on_a_toy_case(tmp_path_factory):
    backbone = _warm(str(tmp_path_factory.mktemp("sft")))
    traces = _toy_traces(64, seed=1)
    trainer, reward = judges.judge_grpo_trainer(
        backbone, traces, rl=RL, choices=CHOICES,
        optimizer=OptimizerConfig(lr=3e-3, warmup_steps=0, total_steps=24, min_lr_ratio=1.0))
    seen = []
    state = trainer.init_state(backbone.params)
    trainer.run(state, on_step=lambda step, m: seen.append(m))
    reward.close()
    verdict = [m["reward/verdict/mean"] for m in seen]
    assert 0.3 < np.mean(verdict[:3]) < 0.7, verdict  # the SFT judge guesses
    assert np.mean(verdict[-3:]) >= np.mean(verdict[:3]) + 0.25, verdict
    assert np.mean([m["reward/format/mean"] for m in seen]) > 0.8
    assert seen[-1]["accuracy"] == seen[-1]["reward/verdict/mean"]


def test_judge_grpo_step_on_a_mesh_equals_one_device(tmp_path_factory):
    warm = _warm(str(tmp_path_factory.mktemp("sft")))
    traces = _toy_traces(64, seed=1)
    rl = RLConfig(**{**RL.__dict__, "steps": 1})
    opt = OptimizerConfig(lr=1e-2, warmup_steps=0, total_steps=1, eps=1e-3)
    losses = {}
    for shape in (None, (2, 2, 2)):
        mesh = MeshConfig() if shape is None else MeshConfig(data=2, fsdp=2, tensor=2)
        backbone = recipes.load_backbone(SPEC, jax.random.key(0), mesh)
        backbone = backbone._replace(params=backbone.placement.params(
            jax.device_get(warm.params)))
        trainer, reward = judges.judge_grpo_trainer(backbone, traces, rl=rl, optimizer=opt,
                                                    choices=CHOICES)
        state, metrics = trainer.step(trainer.init_state(backbone.params), 0)
        reward.close()
        losses[shape] = (metrics, jax.device_get(state.params))
    (m1, p1), (m8, p8) = losses[None], losses[(2, 2, 2)]
    assert m1["reward/mean"] == m8["reward/mean"]  # the same rollouts and verdicts
    assert m8["loss"] == pytest.approx(m1["loss"], abs=1e-5)
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p8)):
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_deciding_token_weights_mark_the_checks_and_the_verdict():
    from rewardjax.data import pipeline as pl
    from rewardjax.data.synthetic import arithmetic

    tokenizer = recipes.load_backbone(SPEC, jax.random.key(0)).tokenizer
    prob = arithmetic.Problem(start=6, ops=("-", "+"), operands=(1, 1))
    bad = ("6 - 1 = 5", "5 + 1 = 5", "Answer: 5")
    traces = [judges.pairwise_trace(prob, arithmetic.solve(prob).text, "\n".join(bad)),
              judges.first_error_trace(prob, bad)]
    batch = next(iter(pl.sft_pipeline([t.sft_example() for t in traces], tokenizer,
                                      pl.PipelineConfig(batch_size=2, buckets=(160,), seed=0,
                                                        num_epochs=1, drop_remainder=False))))
    words = {0: judges.traces.PAIRWISE_DECIDING, 1: judges.traces.FIRST_ERROR_DECIDING}
    for row, index in enumerate(batch["index"]):
        fn = judges.training.deciding_token_weights(tokenizer, words[int(index)], weight=8.0)
        w = fn(batch["tokens"], batch["loss_mask"])[row]
        mask = batch["loss_mask"][row].astype(bool)
        heavy = [tokenizer.decode([t]) for t in batch["tokens"][row][mask & (w == 8.0)]]
        # the prompt's "wrong"/"ok"/"Verdict:" (outside the loss mask) stay at 1
        assert np.all(w[~mask] == 1.0)
        if int(index) == 0:  # A: 7 vs 7 right / B: 5 vs 7 wrong / Verdict: A
            assert heavy == [" r", " wr", " A"]
        else:  # Step 1 ... ok / Step 2 ... wrong / Verdict: 2
            assert heavy == [" o", " wr", " ", "2"]
    with pytest.raises(ValueError, match="weight must be > 0"):
        judges.training.deciding_token_weights(tokenizer, ("ok",), weight=0.0)
    with pytest.raises(ValueError, match="non-blank and unpadded"):
        judges.training.deciding_token_weights(tokenizer, (" ok",), weight=2.0)


def test_both_orders_reward_pays_only_pairs_judged_right_in_both_orders():
    reward = judges.judge_training_reward(judges.PAIRWISE_CHOICES, format_weight=0.0,
                                          both_orders_group=2)
    v = lambda c: f"Verdict: {c}"
    # pair 0: order AB (label A), order BA (label B); pair 1 likewise. G = 2 samples each.
    completions = [v("A"), v("A"),   # pair 0, order 1: both right
                   v("B"), v("A"),   # pair 0, order 2: sample 0 right, sample 1 by position
                   v("A"), "none",   # pair 1, order 1: sample 1 unparsable
                   v("B"), v("B")]
    labels = ["A"] * 2 + ["B"] * 2 + ["A"] * 2 + ["B"] * 2
    pair = [0] * 4 + [1] * 4
    out = reward(["q"] * 8, completions, label=labels, pair=pair)
    np.testing.assert_array_equal(out.total, [1, 0, 1, 0, 1, 0, 1, 0])
    match = judges.BothOrdersVerdictMatch(judges.PAIRWISE_CHOICES, group_size=2)
    assert match(["q"] * 8, completions, label=labels, pair=pair) == list(out.total)
    with pytest.raises(ValueError, match="pair"):
        match(["q"] * 8, completions, label=labels, pair=[0, 0, 1, 1, 2, 2, 3, 3])
    with pytest.raises(ValueError, match="multiple of 4"):
        match(["q"] * 6, completions[:6], label=labels[:6], pair=pair[:6])
