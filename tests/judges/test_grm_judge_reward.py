"""GRMJudgeReward: one GRM judgment per completion, its score rescaled to [0, 1], parse
failures counted by kind and given the failure reward."""

import types

import jax
import numpy as np
import pytest

from rewardjax import judges


class FakeJudge:
    """Stands in for a GenerativeJudge: returns canned judgments, records its prompts."""

    def __init__(self, texts, *, num_samples=1, temperature=0.0):
        self.texts, self.seen, self.keys = list(texts), [], []
        self.sampling = types.SimpleNamespace(num_samples=num_samples, temperature=temperature)

    def generate(self, prompts, key):
        self.seen.append(list(prompts))
        self.keys.append(key)
        return [[self.texts.pop(0)] for _ in prompts]


def test_scores_rescale_and_failures_are_counted():
    fake = FakeJudge(["1: 5\n2 + 3 = 5\n1: 5 right\nScores: 10", "1: 4 wrong\nScores: 1",
                      "1: 4 wrong\nScores: 2", "no scores here", "Scores: 11"])
    reward = judges.GRMJudgeReward(fake)
    got = reward(["q1", "q2", "q3", "q4", "q5"], ["a1", "a2", "a3", "a4", "a5"])
    np.testing.assert_allclose(got, [1.0, 0.0, 1 / 9, 0.0, 0.0], rtol=1e-6)
    assert fake.seen[0] == [judges.grm_prompt(f"q{i}", [f"a{i}"]) for i in range(1, 6)]
    assert fake.keys == [None]  # greedy: no key
    assert reward.judged == 5
    assert dict(reward.failures) == {"missing_scores": 1, "out_of_range": 1}


def test_failure_reward_and_keys_when_sampling():
    fake = FakeJudge(["garbage", "garbage"], temperature=1.0)
    reward = judges.GRMJudgeReward(fake, failure_reward=0.25)
    assert reward(["q"], ["a"]).tolist() == [0.25]
    reward(["q"], ["a"])
    assert fake.keys[0] is not None and fake.keys[1] is not None
    k0, k1 = (np.asarray(jax.random.key_data(k)) for k in fake.keys)
    assert not np.array_equal(k0, k1)  # a fresh key per call
    assert reward.judged == 2 and sum(reward.failures.values()) == 2


def test_rejects_several_samples_and_mismatched_batches():
    with pytest.raises(ValueError, match="num_samples"):
        judges.GRMJudgeReward(FakeJudge([], num_samples=2))
    with pytest.raises(ValueError):
        judges.GRMJudgeReward(FakeJudge(["Scores: 9"]))(["q", "q2"], ["a"])
