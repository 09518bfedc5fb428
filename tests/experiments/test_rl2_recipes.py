"""RLCR and reward over-optimization: their reward pieces on hand-computed values, and
each experiment end to end at a reduced size (one on a (2,2,2) mesh against one device)."""

import itertools
import json

import numpy as np
import pytest

from rewardjax.eval import confidence_ece
from rewardjax.rewards.confidence import (BrierConfidenceReward, confidence_parsed,
                                          parse_confidence, rlcr_combined_reward, rlcr_reward)
from tests.experiments.conftest import load_experiment
from tests.experiments.test_rl_experiments import _run

# ----------------------------------------------------------------------------- RLCR reward


@pytest.mark.parametrize("text, expected", [
    ("3 + 4 = 7\nAnswer: 7\nConfidence: 0.8", 0.8),
    ("Answer: 7\nConfidence: 1.0", 1.0),
    ("Confidence: 0.2\nConfidence: 0.6", 0.6),  # the last one counts
    ("Confidence: 85", 0.85),  # a percentage
    ("Confidence: 40%", 0.4),
    ("confidence:0.3", 0.3),
    ("Answer: 7", None),
    ("Confidence: high", None),
    ("Confidence: 150", None),
    ("Confidence: -0.2", None),
])
def test_parse_confidence(text, expected):
    got = parse_confidence(text)
    assert got == pytest.approx(expected) if expected is not None else got is None


def test_rlcr_reward_hand_computed():
    # correct, q=0.7: 1 - 0.09; wrong, q=0.3: 0 - 0.09; correct, q=1: 1; wrong, q=0: 0;
    # wrong, q=1: -1 (the worst); correct, q=0 (a parse failure): 1 - 1 = 0.
    got = rlcr_reward([1, 0, 1, 0, 0, 1], [0.7, 0.3, 1.0, 0.0, 1.0, 0.0])
    np.testing.assert_allclose(got, [0.91, -0.09, 1.0, 0.0, -1.0, 0.0], atol=1e-6)
    with pytest.raises(ValueError, match="confidence must be in"):
        rlcr_reward([1], [1.2])
    with pytest.raises(ValueError, match="one confidence per answer"):
        rlcr_reward([1, 0], [0.5])


def test_expected_reward_is_maximised_at_the_true_accuracy():
    # The Brier term is proper: E[R] = p - (p(1-q)^2 + (1-p)q^2) peaks at q = p.
    q = np.linspace(0, 1, 101)
    for p in (0.2, 0.5, 0.9):
        expected = p * rlcr_reward(np.ones(101), q) + (1 - p) * rlcr_reward(np.zeros(101), q)
        assert q[np.argmax(expected)] == pytest.approx(p)


def test_rlcr_combined_reward_terms_and_parse_failures():
    completions = ["1 + 2 = 3\nAnswer: 3\nConfidence: 0.9",  # right, q .9: 1 - .01
                   "Answer: 4\nConfidence: 0.9",             # wrong, q .9: 0 - .81
                   "Answer: 3",                               # right, no q (0): 1 - 1
                   "Answer: 5\nConfidence: 0.0"]              # wrong, q 0: 0
    fields = {"answer": ["3"] * 4}
    brier = BrierConfidenceReward()(["q"] * 4, completions, **fields)
    np.testing.assert_allclose(brier, [-0.01, -0.81, -1.0, 0.0], atol=1e-6)
    np.testing.assert_array_equal(confidence_parsed(["q"] * 4, completions), [1, 1, 0, 1])
    with rlcr_combined_reward() as reward:
        out = reward(["q"] * 4, completions, **fields)
    np.testing.assert_allclose(out.total, [0.99, -0.81, 0.0, 0.0], atol=1e-6)
    np.testing.assert_array_equal(out.values["answer"], [1, 0, 1, 0])
    assert out.metrics()["reward/parsed/mean"] == 0.75


def test_confidence_ece_hand_computed():
    # bin (0.8, 0.9]: q .9 .9 .9 .8 -> conf .875, acc 2/4 -> .375 * 4/6;
    # bin (0.2, 0.3]: q .3 .3, acc 1/2 -> .2 * 2/6. ECE = (1.5 + .4) / 6.
    q = [0.9, 0.9, 0.9, 0.8, 0.3, 0.3]
    y = [1, 1, 0, 0, 1, 0]
    assert confidence_ece(q, y) == pytest.approx((1.5 + 0.4) / 6)
    assert confidence_ece([0.0, 1.0], [0, 1]) == 0.0  # q = 0 falls in the first bin
    assert confidence_ece(q, y, num_bins=1) == pytest.approx(abs(np.mean(y) - np.mean(q)))
    with pytest.raises(ValueError, match="same non-zero number"):
        confidence_ece([0.5], [1, 0])


# ----------------------------------------------------------------------------- experiments

MODEL = ["recipe.model.hidden_size=32", "recipe.model.intermediate_size=64",
         "recipe.model.num_layers=1", "recipe.model.num_heads=2", "recipe.model.num_kv_heads=1"]
RL = ["recipe.sft.steps=2", "recipe.eval_problems=8", "recipe.rl.steps=2",
      "recipe.rl.prompts_per_step=2", "recipe.rl.group_size=2", "recipe.rl.max_new_tokens=8"]


@pytest.mark.parametrize("name", ["rlcr", "overoptimization"])
def test_presets_load_and_name_their_paper(name):
    module = load_experiment(name)
    assert {"tiny", "smoke", "paper"} <= set(module.PRESETS)
    assert "arXiv:" in module.__doc__ and "tiny" in module.__doc__


def test_rlcr_smoke(tmp_path, capsys):
    result, line = _run("rlcr", MODEL + RL + ["eval_every=1"], tmp_path, capsys)
    assert line.startswith("RESULT pass1_before=")
    for arm in ("grpo", "rlcr"):
        assert 0 <= result[f"{arm}_pass1"] <= 1 and 0 <= result[f"{arm}_ece"] <= 1
        assert 0 <= result[f"{arm}_parse_failures"] <= 1
        rows = [json.loads(l) for l in (tmp_path / f"rl_{arm}.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == [1, 2] and "eval/ece" in rows[-1]
    rlcr_rows = (tmp_path / "rl_rlcr.jsonl").read_text()
    assert "reward/brier/mean" in rlcr_rows and "reward/parsed/mean" in rlcr_rows
    assert (tmp_path / "rlcr_curves.png").is_file()


# ----------------------------------------------------------------------------- over-optimization


def test_bon_kl_hand_computed():
    overopt = load_experiment("overoptimization")
    assert overopt.bon_kl(1) == 0.0
    assert overopt.bon_kl(2) == pytest.approx(np.log(2) - 0.5)
    assert overopt.bon_kl(64) == pytest.approx(np.log(64) - 63 / 64)


def test_best_of_n_curve_hand_computed():
    overopt = load_experiment("overoptimization")
    # prompt 1, proxy order: s0 (.1, gold 1) < s2 (.5, gold 1) < s1 (.9, gold 0);
    # best of 2 = the higher of a random pair: {0,1}->s1, {0,2}->s2, {1,2}->s1.
    # prompt 2, proxy order s1 < s2 < s0, gold of s0 is 1: best of 2 is s0 in 2 of 3 pairs.
    proxy = [[0.1, 0.9, 0.5], [3.0, 1.0, 2.0]]
    gold = [[1.0, 0.0, 1.0], [1.0, 0.0, 0.0]]
    p, g = overopt.best_of_n_curve(proxy, gold, [1, 2, 3])
    np.testing.assert_allclose(g, [(2 / 3 + 1 / 3) / 2, (1 / 3 + 2 / 3) / 2, (0 + 1) / 2])
    best_of_2 = ((0.9 + 0.5 + 0.9) / 3 + (3 + 3 + 2) / 3) / 2
    np.testing.assert_allclose(p, [(1.5 / 3 + 6 / 3) / 2, best_of_2, (0.9 + 3.0) / 2])
    # the estimator equals the mean over all subsets, enumerated
    rng = np.random.default_rng(0)
    proxy, gold = rng.normal(size=(2, 6)), rng.integers(0, 2, size=(2, 6)).astype(float)
    for n in (1, 2, 4, 6):
        subsets = list(itertools.combinations(range(6), n))
        best = [[gold[b, max(c, key=lambda i: proxy[b, i])] for c in subsets] for b in range(2)]
        assert overopt.best_of_n_curve(proxy, gold, [n])[1][0] == pytest.approx(np.mean(best))
    with pytest.raises(ValueError, match="n = 4 must be in"):
        overopt.best_of_n_curve([[0.0, 1.0, 2.0]], [[0.0, 1.0, 0.0]], [4])


OVEROPT_SMALL = MODEL + RL + ["proxy_pairs=16", "proxy_test_pairs=16", "proxy_steps=2",
                              "bon_prompts=4", "bon_samples=4", "eval_prompts=4",
                              "eval_samples=2", "eval_every=1"]


def test_overoptimization_smoke(tmp_path, capsys):
    result, line = _run("overoptimization", OVEROPT_SMALL, tmp_path, capsys)
    assert line.startswith("RESULT proxy_accuracy=")
    assert result["bon_maxn"] == 4 and 0 <= result["bon_gold_maxn"] <= 1
    for arm in ("proxy", "gold"):
        assert result[f"{arm}_kl_final"] >= 0
        rows = [json.loads(l) for l in (tmp_path / f"rl_{arm}.jsonl").read_text().splitlines()]
        assert [r["step"] for r in rows] == [1, 2] and "eval/kl" in rows[-1]
    assert "reward/proxy/mean" in (tmp_path / "rl_proxy.jsonl").read_text()
    assert (tmp_path / "overoptimization.png").is_file()
    curves = json.loads((tmp_path / "curves.json").read_text())
    assert [p["kl"] for p in curves["bon"]][:2] == [0.0, pytest.approx(np.log(2) - 0.5)]
    assert [p["step"] for p in curves["proxy"]] == [0, 1, 2]


def test_scalar_rm_scorer_on_a_mesh_matches_one_device():
    import jax

    from rewardjax.data.encoding import encode_responses
    from rewardjax.recipes import BackboneConfig, load_backbone
    from rewardjax.rewards import RewardModelReward
    from rewardjax.rewards.scalar_rm import ScalarRMScorer
    from rewardjax.sharding import MeshConfig
    from rewardjax.train import reward_model as rm

    spec = BackboneConfig(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2,
                          num_kv_heads=1, head_dim=16)
    prompts = ["Start with 3. Add 2. What is the result?"] * 5
    texts = ["3 + 2 = 5\nAnswer: 5", "Answer: 6", "3 + 2 = 6\nAnswer: 6", "", "Answer: 5"]
    scores = {}
    for name, mesh in (("one", MeshConfig()), ("mesh", MeshConfig(data=2, fsdp=2, tensor=2))):
        backbone = load_backbone(spec, jax.random.key(0), mesh)
        params = backbone.placement.params(rm.init_reward_model(
            backbone.params, jax.random.key(1), config=backbone.config, head="scalar"))
        scorer = ScalarRMScorer(params, config=backbone.config, tokenizer=backbone.tokenizer,
                                length=64, batch_size=8, placement=backbone.placement)
        scores[name] = RewardModelReward(scorer, batch_size=8)(prompts, texts)
        # a row scores as it would alone, unpadded
        p_ids, (r_ids,) = encode_responses(backbone.tokenizer, prompts[0], [texts[0]])
        ids = np.concatenate([p_ids, r_ids])[None]
        seq = {"tokens": ids, "attention_mask": np.ones_like(ids, bool)}
        alone = rm.sequence_rewards(params, seq, config=backbone.config)
        assert scores[name][0] == pytest.approx(float(alone[0]), abs=1e-5)
        with pytest.raises(ValueError, match="length is 64"):
            scorer(prompts[:1], ["1 + 1 = 2\n" * 20])
    np.testing.assert_allclose(scores["mesh"], scores["one"], atol=1e-5)
    assert len(set(np.round(scores["one"], 6))) > 1
