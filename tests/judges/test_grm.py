"""DeepSeek-GRM pieces against hand-computed values: score parsing (well-formed, every
failure kind counted), voting as the sum of pointwise scores over k judgments, the
meta-RM-guided vote (top k_meta by meta score, failures never kept), tie credit, the
agreement label; the meta RM learns a toy label and trains the same on a mesh of 8
simulated devices as on one device."""

import json

import jax
import numpy as np
import pytest

from rewardjax import recipes
from rewardjax.data.synthetic import arithmetic
from rewardjax.judges import grm
from rewardjax.sharding import MeshConfig
from rewardjax.train import OptimizerConfig

NAN = np.nan


# ----------------------------------------------------------------------------- parsing


def test_parse_scores_well_formed():
    assert grm.parse_scores("Principle: p\n1: 8 wrong\nScores: 2", num_responses=1) == \
        grm.Scores((2,), "Principle: p\n1: 8 wrong", None)
    assert grm.parse_scores("crit\nScores: 9,  2 \n\n", num_responses=2).scores == (9, 2)
    assert grm.parse_scores("Scores: 1, 10, 5", num_responses=3).scores == (1, 10, 5)


@pytest.mark.parametrize("text, n, failure", [
    ("", 1, "empty"),
    ("  \n ", 1, "empty"),
    ("1: 8 wrong\nVerdict: A", 1, "missing_scores"),
    ("Scores: 2\nScores: 9", 1, "multiple_scores"),
    ("Scores: 9\nthen more text", 1, "scores_not_last"),
    ("so the Scores: 9", 1, "scores_not_at_line_start"),
    ("Scores: 9", 2, "wrong_count"),
    ("Scores: 9, 2, 3", 2, "wrong_count"),
    ("Scores:", 1, "not_an_integer"),
    ("Scores: 9.5", 1, "not_an_integer"),
    ("Scores: -3", 1, "not_an_integer"),
    ("Scores: 9 2", 2, "wrong_count"),
    ("Scores: nine", 1, "not_an_integer"),
    ("Scores: 0", 1, "out_of_range"),
    ("Scores: 9, 11", 2, "out_of_range"),
])
def test_parse_scores_failures_are_named(text, n, failure):
    parsed = grm.parse_scores(text, num_responses=n)
    assert parsed.failure == failure and parsed.scores is None and not parsed.ok
    assert failure in grm.SCORE_FAILURES


def test_parse_scores_rejects_bad_settings():
    with pytest.raises(ValueError, match="num_responses"):
        grm.parse_scores("Scores: 1", num_responses=0)
    with pytest.raises(ValueError, match="score_range"):
        grm.parse_scores("Scores: 1", num_responses=1, score_range=(5, 1))


def test_score_texts_counts_failures_and_leaves_nan():
    got = grm.score_texts([["Scores: 9, 2", "Scores: 9"], ["", "x\nScores: 3, 4"]],
                          num_responses=2)
    np.testing.assert_array_equal(got.scores, [[[9, 2], [NAN, NAN]], [[NAN, NAN], [3, 4]]])
    np.testing.assert_array_equal(got.valid, [[True, False], [False, True]])
    assert got.failures == {"wrong_count": 1, "empty": 1}
    with pytest.raises(ValueError, match="prompt 1 has 1 judgments"):
        grm.score_texts([["a", "b"], ["c"]], num_responses=1)


def test_teacher_trace_parses_to_its_label():
    bad = arithmetic.corrupted(3, seed=0, config=recipes.TINY_RM_TASK, split="train")
    good = arithmetic.solve(bad.problem).text
    pair = grm.grm_trace(bad.problem, [bad.text, good])
    assert pair.label == "Scores: 2, 9"
    assert grm.parse_scores(pair.judgment, num_responses=2).scores == (2, 9)
    assert "Response 1:\n" + bad.text in pair.prompt and "Response 2:\n" + good in pair.prompt
    lines = pair.judgment.split("\n")
    assert lines[0] == grm.PRINCIPLE and lines[-1] == pair.label
    assert f"Answer: {bad.problem.answer}" in lines and f"2: {bad.problem.answer} right" in lines
    single = grm.grm_trace(bad.problem, [good], right_score=10)
    assert single.label == "Scores: 10" and "s1" in single.prompt
    with pytest.raises(ValueError, match="wrong_score=0"):
        grm.grm_trace(bad.problem, [good], wrong_score=0)


# ----------------------------------------------------------------------------- voting


# Two rows, k = 4 judgments of n = 2 responses; row 1's third judgment failed to parse.
SCORES = np.array([[[9, 2], [2, 9], [8, 3], [2, 8]],
                   [[5, 5], [6, 4], [NAN, NAN], [3, 9]]])
META = np.array([[0.9, 0.2, 0.7, 0.1],
                 [0.3, 0.8, 0.99, 0.1]])


def test_vote_is_the_sum_of_scores_over_valid_judgments():
    # row 0: 9+2+8+2 = 21, 2+9+3+8 = 22; row 1: 5+6+3 = 14, 5+4+9 = 18 (failure skipped)
    np.testing.assert_array_equal(grm.vote_scores(SCORES), [[21, 22], [14, 18]])
    np.testing.assert_array_equal(grm.vote_scores(np.full((1, 3, 2), NAN)), [[0, 0]])


def test_meta_guided_vote_keeps_the_top_k_meta_then_sums():
    # row 0 keeps judgments 0 (0.9) and 2 (0.7): 9+8 = 17, 2+3 = 5. Row 1: the failed
    # judgment (meta 0.99) is never kept; judgments 1 (0.8) and 0 (0.3): 11, 9.
    np.testing.assert_array_equal(grm.vote_scores(SCORES, meta=META, keep=2), [[17, 5], [11, 9]])
    np.testing.assert_array_equal(grm.vote_scores(SCORES, meta=META, keep=1), [[9, 2], [6, 4]])
    # keep = k: every valid judgment votes, as plain voting.
    np.testing.assert_array_equal(grm.vote_scores(SCORES, meta=META, keep=4),
                                  grm.vote_scores(SCORES))
    # Row 1 has 3 valid judgments: keeping 3 or 4 sums the same three.
    np.testing.assert_array_equal(grm.vote_scores(SCORES, meta=META, keep=3)[1], [14, 18])


def test_meta_guided_vote_per_response_rankings():
    # Each response judged alone: response 0's judgments ranked by meta[..., 0], response
    # 1's by meta[..., 1]. Keep 1: response 0 takes judgment 1 (0.8) -> 2, response 1
    # judgment 3 (0.7) -> 8.
    meta = np.stack([[0.1, 0.8, 0.3, 0.2], [0.5, 0.1, 0.2, 0.7]], axis=-1)[None]  # [1, 4, 2]
    np.testing.assert_array_equal(grm.vote_scores(SCORES[:1], meta=meta, keep=1), [[2, 8]])


def test_vote_rejects_bad_input():
    with pytest.raises(ValueError, match=r"\[N, k, n\]"):
        grm.vote_scores(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="meta shape"):
        grm.vote_scores(SCORES, meta=META[:, :3], keep=1)
    with pytest.raises(ValueError, match="keep"):
        grm.vote_scores(SCORES, meta=META, keep=5)
    with pytest.raises(ValueError, match="without keep"):
        grm.vote_scores(SCORES, meta=META)
    with pytest.raises(ValueError, match="keep needs meta"):
        grm.vote_scores(SCORES, keep=2)


def test_best_credit_and_ties():
    credit = grm.best_credit(np.array([[21, 22], [14, 14], [3, 1], [5, 5]], float),
                             [1, 0, 1, 1])
    np.testing.assert_array_equal(credit, [1.0, 0.5, 0.0, 0.5])
    np.testing.assert_allclose(grm.best_credit(np.array([[4, 4, 4]], float), [2]), [1 / 3])
    with pytest.raises(ValueError, match="best indices"):
        grm.best_credit(np.zeros((1, 2)), [2])


def test_best_credit_tie_break_settles_only_ties():
    voted = np.array([[14, 14], [14, 14], [9, 3]], float)
    second = np.array([[20, 30], [25, 25], [0, 99]], float)
    # Row 0: tied, the secondary score picks response 1; row 1: still tied, a coin;
    # row 2: not tied, the secondary score is never read.
    np.testing.assert_array_equal(grm.best_credit(voted, [1, 0, 0], tie_break=second),
                                  [1.0, 0.5, 1.0])
    # Secondary scores of responses outside the top tie do not count.
    np.testing.assert_array_equal(
        grm.best_credit(np.array([[5, 5, 1]], float), [0],
                        tie_break=np.array([[3, 2, 9]], float)), [1.0])
    with pytest.raises(ValueError, match="tie_break shape"):
        grm.best_credit(voted, [1, 0, 0], tie_break=second[:, :1])


def test_scaling_curve_hand_values():
    # Row 0 with response 1 best: k = 4 votes 21 vs 22 (right); meta keep 2 votes 17 vs
    # 5 (wrong). At k = 1 every single judgment is right iff it scores response 1
    # higher: judgments 1 and 3 of 4, so the mean over draws tends to 0.5.
    curve = grm.scaling_curve(SCORES[:1], [1], (1, 4), draws=400, seed=0)
    assert curve[4] == 1.0 and abs(curve[1] - 0.5) < 0.08
    meta = grm.scaling_curve(SCORES[:1], [1], (1, 4), meta=META[:1], draws=400, seed=0)
    assert meta[4] == 0.0 and abs(meta[1] - curve[1]) < 1e-12  # keep 1 of 1 at k = 1
    with pytest.raises(ValueError, match="k=5"):
        grm.scaling_curve(SCORES, [1, 1], (5,))
    with pytest.raises(ValueError, match="tie_break"):
        grm.scaling_curve(SCORES, [1, 1], (4,), meta=META, tie_break="coin")


def test_scaling_curve_meta_tie_broken_by_plain_vote():
    # One row, k = 4, keep 2: the meta RM keeps judgments 0 and 1, whose sums tie
    # (9+2 = 11 vs 2+9 = 11); all four give 9+2+3+1 = 15 vs 2+9+8+8 = 27, so the plain
    # tie-break picks response 1.
    s = np.array([[[9, 2], [2, 9], [3, 8], [1, 8]]], float)
    meta = np.array([[0.9, 0.8, 0.1, 0.2]])
    coin = grm.scaling_curve(s, [1], (4,), meta=meta)
    plain = grm.scaling_curve(s, [1], (4,), meta=meta, tie_break="plain")
    assert coin == {4: 0.5} and plain == {4: 1.0}


def test_agrees_is_the_rejective_sampling_rule():
    assert grm.agrees([9, 2], [9, 2]) and grm.agrees([3, 1], [9, 2])
    assert not grm.agrees([5, 5], [9, 2]) and not grm.agrees([2, 9], [9, 2])
    assert grm.agrees([2], [2]) and not grm.agrees([3], [2])
    assert not grm.agrees([NAN, NAN], [9, 2])
    with pytest.raises(ValueError, match="no single best"):
        grm.agrees([9, 2], [9, 9])


# ----------------------------------------------------------------------------- meta RM


SPEC = recipes.BackboneConfig(hidden_size=32, intermediate_size=64, num_layers=1, num_heads=2,
                              num_kv_heads=1, head_dim=16)


def _toy_records(n):
    """Judgments whose verdict word decides the label: "right" agrees, "wrong" not."""
    rng = np.random.default_rng(0)
    prompts, texts, labels = [], [], []
    for i in range(n):
        ok = bool(rng.random() < 0.5)
        prompts.append(f"Question: {i % 7}")
        texts.append(f"1: {i % 5} {'right' if ok else 'wrong'}\nScores: {9 if ok else 2}")
        labels.append(float(ok))
    return prompts, texts, labels


def test_meta_rm_learns_a_toy_label_and_scores_in_order(tmp_path):
    backbone = recipes.load_backbone(SPEC, jax.random.key(0))
    prompts, texts, labels = _toy_records(64)
    config = grm.MetaRMConfig(steps=40, batch_size=16, bucket=48,
                              optimizer=OptimizerConfig(lr=1e-2, warmup_steps=2))
    params = grm.train_meta_rm(backbone, grm.meta_rm_records(prompts, texts, labels),
                               config=config, key=jax.random.key(1), out_dir=tmp_path)
    probs = grm.meta_rm_scores(params, backbone, prompts, texts, config=config)
    assert probs.shape == (64,) and np.all((probs > 0) & (probs < 1))
    y = np.array(labels, bool)
    assert probs[y].min() > probs[~y].max(), (probs[y].min(), probs[~y].max())


def _meta_run(tmp_path, mesh: MeshConfig):
    backbone = recipes.load_backbone(SPEC, jax.random.key(0), mesh)
    config = grm.MetaRMConfig(steps=3, batch_size=8, bucket=48,
                              optimizer=OptimizerConfig(lr=1e-2, eps=1e-3, warmup_steps=1))
    params = grm.train_meta_rm(backbone, grm.meta_rm_records(*_toy_records(16)), config=config,
                               key=jax.random.key(1), out_dir=tmp_path)
    rows = [json.loads(line) for line in (tmp_path / "meta_rm.jsonl").read_text().splitlines()]
    return [r["loss"] for r in rows if "loss" in r], jax.device_get(params)


def test_meta_rm_on_a_mesh_matches_one_device(tmp_path):
    one_loss, one = _meta_run(tmp_path / "one", MeshConfig())
    mesh_loss, sharded = _meta_run(tmp_path / "mesh", MeshConfig(data=2, fsdp=2, tensor=2))
    assert one_loss and len(mesh_loss) == len(one_loss)
    np.testing.assert_allclose(mesh_loss, one_loss, atol=1e-4)
    for a, b in zip(jax.tree.leaves(sharded), jax.tree.leaves(one)):
        np.testing.assert_allclose(a, b, atol=1e-4)
