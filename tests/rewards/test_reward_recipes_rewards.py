"""Verifier-free probability rewards (RLPR and the log-likelihood variant), the std
filter and flipped rewards, on hand-computed values."""

import math

import numpy as np
import pytest

from rewardjax.rewards.noise import NoisyRewards, flip_rewards
from rewardjax.rewards.probability import (ProbabilityReward, answer_swap_probes,
                                           debiased_probability_reward, mean_token_probability,
                                           sequence_log_likelihood, std_filter)
from rewardjax.train.rl_extensions import ProbeLogProbs


def test_mean_probability_and_log_likelihood_by_hand():
    logp = np.log(np.array([[0.5, 0.25, 0.9], [0.8, 0.1, 0.1]]))
    mask = np.array([[True, True, False], [True, False, False]])
    np.testing.assert_allclose(mean_token_probability(logp, mask), [0.375, 0.8], rtol=1e-6)
    np.testing.assert_allclose(sequence_log_likelihood(logp, mask),
                               [math.log(0.125), math.log(0.8)], rtol=1e-6)
    np.testing.assert_allclose(debiased_probability_reward([0.9, 0.2], [0.5, 0.5]), [0.4, 0.0])


def test_probability_reward_reads_probe_0_against_probe_1():
    # 2 probes x 2 rows x 2 tokens; row 0: p = (.8 + .6)/2 = .7 vs .2 -> .5; row 1: .3 vs .4 -> 0
    p = np.array([[[0.8, 0.6], [0.3, 0.3]], [[0.2, 0.2], [0.4, 0.4]]])
    probes = ProbeLogProbs(policy=np.log(p), reference=None, target_mask=np.ones_like(p, bool))

    class Batch:
        rewards = np.zeros((1, 2))

    np.testing.assert_allclose(ProbabilityReward()(Batch, probes), [[0.5, 0.0]], rtol=1e-6)
    np.testing.assert_allclose(ProbabilityReward(mode="log_likelihood")(Batch, probes),
                               [[math.log(0.48), math.log(0.09)]], rtol=1e-5)
    with pytest.raises(ValueError, match="ProbabilityReward.mode"):
        ProbabilityReward(mode="prob")


def test_answer_swap_probes_cut_the_answer_and_append_the_reference():
    texts = answer_swap_probes()
    out = texts({"answer": "7"}, "3 + 4 = 7\nAnswer: 8")
    assert out == [("3 + 4 = 7\n", "Answer: 7"), ("", "Answer: 7")]
    assert texts({"answer": "7"}, "no marker")[0] == ("no marker", "Answer: 7")


def test_std_filter_threshold_follows_the_ema_of_mean_std():
    flt = std_filter(beta=1.0, ema=0.5)
    state = flt.init()
    r1 = np.array([[0.0, 1.0], [0.5, 0.5]])  # stds .5 and 0 -> mean .25 (starts the EMA)
    state, keep = flt.keep(state, r1)
    assert float(state["ema"]) == pytest.approx(0.25) and keep.tolist() == [True, False]
    r2 = np.array([[0.0, 0.2], [0.0, 1.0]])  # stds .1, .5 -> mean .3; EMA .5·.25 + .5·.3
    state, keep = flt.keep(state, r2)
    assert float(state["ema"]) == pytest.approx(0.275) and keep.tolist() == [False, True]


def test_flip_rewards():
    rng = np.random.default_rng(0)
    np.testing.assert_array_equal(flip_rewards(np.array([1.0, 0.0]), 1.0, rng), [0.0, 1.0])
    np.testing.assert_array_equal(flip_rewards(np.array([1.0, 0.0]), 0.0, rng), [1.0, 0.0])
    flips = flip_rewards(np.zeros(20_000), 0.3, rng).mean()
    assert abs(flips - 0.3) < 0.02
    with pytest.raises(ValueError, match="0/1 rewards"):
        flip_rewards(np.array([0.5]), 0.1, rng)

    class Batch:
        rewards = np.ones((4, 8))
        step = 3

    a, b = NoisyRewards(p=0.5, seed=1)(Batch), NoisyRewards(p=0.5, seed=1)(Batch)
    np.testing.assert_array_equal(a, b)  # a pure function of (seed, step): resumes see the same
    with pytest.raises(ValueError, match="NoisyRewards.p"):
        NoisyRewards(p=1.5)


@pytest.mark.parametrize("name", ["rewardjax.rewards.noise", "rewardjax.rewards.probability"])
def test_docstring_examples(name):
    import doctest  # noqa: PLC0415
    import importlib  # noqa: PLC0415

    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0 and result.attempted > 0
