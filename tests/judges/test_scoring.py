"""One-pass judges (p(Yes) against a hand computation; both orders make pairwise
scores order-independent), pairwise judges as per-sample rewards, and the two-turn
rollout (the second turn sees the first)."""

import functools

import jax
import numpy as np
import pytest

from rewardjax import judges, models
from rewardjax.data.encoding import encode_prompt, encode_responses, render_prompt
from rewardjax.data.tokenizer import default_tokenizer
from rewardjax.judges.scoring import PairwiseScores

QUESTIONS = ["Start with 3. Add 2. What is the result?", "Start with 7. Subtract 1. What is the result?"]
GOOD = ["3 + 2 = 5\nAnswer: 5", "7 - 1 = 6\nAnswer: 6"]
BAD = ["3 + 2 = 6\nAnswer: 6", "7 - 1 = 5\nAnswer: 5"]


@functools.lru_cache(maxsize=None)
def _model():
    tok = default_tokenizer()
    config = models.ModelConfig(model_type="qwen2", vocab_size=len(tok), hidden_size=32,
                                intermediate_size=64, num_layers=1, num_heads=2, num_kv_heads=1,
                                head_dim=16, qkv_bias=True, tie_word_embeddings=True,
                                pad_token_id=tok.pad_token_id)
    # A larger init than the default, so verdict probabilities are far from uniform.
    return tok, config, models.init_params(config, jax.random.key(1), std=0.5)


def test_pointwise_yes_probability_is_the_softmax_at_the_verdict_position():
    tok, config, params = _model()
    judge = judges.PointwiseJudge(params, config=config, tokenizer=tok, length=128, batch_size=4)
    got = judge(QUESTIONS + QUESTIONS[:1], GOOD + BAD[:1])
    yes_id = tok(" Yes", add_special_tokens=False)["input_ids"][0]
    for i, (q, r) in enumerate(zip(QUESTIONS + QUESTIONS[:1], GOOD + BAD[:1])):
        ids = np.concatenate([encode_prompt(tok, judges.pointwise_prompt(q, r)),
                              tok("Verdict:", add_special_tokens=False)["input_ids"]])
        logits, _ = models.apply(params, ids[None].astype(np.int32), config=config)
        z = np.asarray(logits[0, -1], np.float64)
        hand = np.exp(z[yes_id] - z.max()) / np.exp(z - z.max()).sum()
        assert got[i] == pytest.approx(hand, rel=1e-4, abs=0)
    assert got.shape == (3,) and got[0] != got[2]


def test_forced_prefix_tokens_match_the_trained_response_tokens():
    tok, _, _ = _model()
    prompt = judges.pointwise_prompt(QUESTIONS[0], GOOD[0])
    p_ids, (r_ids,) = encode_responses(tok, prompt, ["Verdict: Yes"])
    forced, mask = judges.encode_forced(tok, [prompt], length=len(p_ids) + 8)
    n = int(mask.sum())
    yes = judges.verdict_token_ids(tok, judges.POINTWISE_CHOICES)[0]
    # The judge reads the token SFT trained at the same place: prompt + "Verdict:" | " Y".
    assert list(forced[0, -n:]) == list(p_ids) + list(r_ids[:n - len(p_ids)])
    assert r_ids[n - len(p_ids)] == yes
    with pytest.raises(ValueError, match="judge prompt 0 has"):
        judges.encode_forced(tok, [prompt], length=10)


def test_pairwise_scores_are_order_independent_and_bias_is_measured():
    tok, config, params = _model()
    judge = judges.PairwiseJudge(params, config=config, tokenizer=tok, length=160, batch_size=4)
    fwd = judge(QUESTIONS, GOOD, BAD)
    rev = judge(QUESTIONS, BAD, GOOD)
    np.testing.assert_allclose(fwd.first_better, 1.0 - rev.first_better, atol=1e-6)
    np.testing.assert_allclose(fwd.p_ab, 1.0 - rev.p_ba, atol=1e-6)
    assert fwd.position_bias == pytest.approx(rev.position_bias, abs=1e-6)
    # The bias is what the two orders disagree by: P(A) averaged over both orders − 1/2.
    np.testing.assert_allclose(fwd.position_bias, np.mean((fwd.p_ab + 1 - fwd.p_ba) / 2) - 0.5,
                               atol=1e-6)
    assert abs(fwd.position_bias) > 1e-3  # a random judge has one; the combination removes it


def test_generative_pairwise_votes_are_order_independent():
    tok, config, params = _model()
    judge = judges.GenerativeJudge(params, config=config, tokenizer=tok, prompt_length=160,
                                   max_new_tokens=6, batch_size=4)
    fwd = judges.pairwise_votes(judge, QUESTIONS, GOOD, BAD, None)
    rev = judges.pairwise_votes(judge, QUESTIONS, BAD, GOOD, None)
    # A random judge's texts do not parse: every one is a counted failure, no vote.
    assert fwd.failures.total() == 4 and np.isnan(fwd.votes).all()
    np.testing.assert_array_equal(judges.vote(fwd.votes), [0.5, 0.5])
    np.testing.assert_array_equal(fwd.texts[0], rev.texts[0][1:] + rev.texts[0][:1])


class _LengthJudge:
    """P(y1 ≻ y2) = σ(len y1 − len y2), order-independent by construction."""

    def __call__(self, questions, first, second):
        p = 1 / (1 + np.exp(-(np.array([len(a) - len(b) for a, b in zip(first, second)], float))))
        return PairwiseScores(p, p, p, 0.0)


def test_pairwise_judge_reward_group_win_rate_and_reference():
    sig = lambda x: 1 / (1 + np.exp(-x))  # noqa: E731
    group = judges.PairwiseJudgeReward(_LengthJudge(), mode="group", group_size=3)
    got = group(["q"] * 6, ["a", "aa", "aaa", "b", "b", "b"])
    want0 = [(sig(-1) + sig(-2)) / 2, (sig(1) + sig(-1)) / 2, (sig(2) + sig(1)) / 2]
    np.testing.assert_allclose(got, want0 + [0.5] * 3, rtol=1e-6)
    ref = judges.PairwiseJudgeReward(_LengthJudge(), mode="reference")
    np.testing.assert_allclose(ref(["q"] * 2, ["aa", "a"], reference=["a", "aa"]),
                               [sig(1), sig(-1)], rtol=1e-6)
    with pytest.raises(ValueError, match="'reference' is missing"):
        ref(["q"], ["a"])
    with pytest.raises(ValueError, match="not groups of 3"):
        group(["q"] * 4, ["a"] * 4)


def test_pointwise_judge_reward_is_batched_and_equals_the_judge():
    tok, config, params = _model()
    judge = judges.PointwiseJudge(params, config=config, tokenizer=tok, length=128, batch_size=2)
    calls = []
    original = judge._scorer._fn
    judge._scorer._fn = lambda *a: calls.append(a[1].shape) or original(*a)
    reward = judges.pointwise_judge_reward(judge)
    got = reward(QUESTIONS + QUESTIONS[:1], GOOD + BAD[:1])
    assert calls == [(2, 128), (2, 128)]  # two fixed-shape batched passes, not per sample
    np.testing.assert_allclose(got, judge(QUESTIONS + QUESTIONS[:1], GOOD + BAD[:1]), rtol=1e-6)


def test_two_turn_rollout_second_turn_sees_the_first():
    tok, config, params = _model()
    judge = judges.GenerativeJudge(params, config=config, tokenizer=tok, prompt_length=256,
                                   max_new_tokens=6, batch_size=2, temperature=1.0)
    seen = []
    generate = judge.generate
    judge.generate = lambda prompts, key: seen.append(list(prompts)) or generate(prompts, key)
    prompts = [judges.pairwise_prompt(q, a, b) for q, a, b in zip(QUESTIONS, GOOD, BAD)]
    out = judges.two_turn_judgments(judge, prompts, jax.random.key(0), choices=judges.PAIRWISE_CHOICES)
    assert seen[0] == prompts and len(seen) == 2
    for conv, first, prompt in zip(seen[1], out.first, prompts):
        assert [m.role for m in conv] == ["user", "assistant", "user"]
        assert conv[0].content == prompt and conv[1].content == first
        rendered = render_prompt(tok, conv)
        assert f"<|im_start|>assistant\n{first}<|im_end|>" in rendered
        assert rendered.endswith(f"{judges.generative.RETHINK}<|im_end|>\n<|im_start|>assistant\n")
    assert len(out.second) == 2 and out.failures.total() + sum(v.ok for v in out.verdicts) == 2
