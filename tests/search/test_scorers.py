"""Scorers on hand-checkable cases: read-outs at the step tags, implicit PRM identities."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewardjax.models import apply
from rewardjax.search import (ImplicitPRMScorer, StepConfig, StepGenerator, StepTagLMScorer,
                              TokenClassPRMScorer, candidates, score_inputs)
from tests.sampling.conftest import TINY, random_params

STEPS = StepConfig(delimiters=((5,), (7,), (11,), (13,)), eos_ids=(3,), step_tokens=6,
                   max_tokens=32, max_steps=6, temperature=0.0, prompt_buckets=(16,),
                   row_buckets=(4,))


@pytest.fixture(scope="module")
def state_and_params():
    params = random_params(TINY, std=0.3)
    gen = StepGenerator(params, config=TINY, steps=STEPS)
    state = gen.start([[4, 5, 6, 1], [2, 9]])
    for _ in range(3):
        state = gen.step(state)
    return state, params, gen


def test_step_tag_lm_reads_good_over_good_plus_bad_at_each_step_tag(state_and_params):
    state, params, gen = state_and_params
    c = candidates(state)
    scorer = StepTagLMScorer(params, good_id=20, bad_id=21, config=TINY, tokenizer=None,
                             counter=gen.counter)
    s = scorer.score(state, c, max_steps=6, eos_ids=(3,))
    batch = jax.device_get(score_inputs(state, max_steps=6, eos_ids=(3,), eos_tag=None))
    logits, _ = apply(params, batch["tokens"], config=TINY, mask_bt=batch["attention_mask"])
    for r in range(2):
        for k in range(s.num_steps[r]):
            lg = np.asarray(logits[r, batch["step_positions"][r, k]])
            want = np.exp(lg[20]) / (np.exp(lg[20]) + np.exp(lg[21]))
            assert s.steps[r, k] == pytest.approx(want, rel=1e-4)


def test_token_class_prm_softmax_of_the_positive_label(state_and_params):
    state, params, gen = state_and_params
    cls = dataclasses.replace(TINY, num_labels=2)
    p = {k: v for k, v in params.items()}
    p["score"] = jnp.asarray(np.random.default_rng(0).normal(size=(TINY.hidden_size, 2)),
                             jnp.float32)
    s = TokenClassPRMScorer(p, config=cls, tokenizer=None).score(
        state, candidates(state), max_steps=6, eos_ids=(3,))
    batch = jax.device_get(score_inputs(state, max_steps=6, eos_ids=(3,), eos_tag=None))
    scores, _ = apply(p, batch["tokens"], config=cls, mask_bt=batch["attention_mask"])
    r, k = 0, 0
    at = np.asarray(scores[r, batch["step_positions"][r, k]])
    assert s.steps[r, k] == pytest.approx(np.exp(at[1]) / np.exp(at).sum(), rel=1e-4)
    with pytest.raises(ValueError, match="num_labels"):
        TokenClassPRMScorer(p, config=TINY, tokenizer=None)


def test_implicit_prm_of_the_reference_itself_is_one_half(state_and_params):
    state, params, gen = state_and_params
    s = ImplicitPRMScorer(params, params, beta=0.1, config=TINY, tokenizer=None).score(
        state, candidates(state), max_steps=6, eos_ids=(3,))
    for r in range(2):
        np.testing.assert_allclose(s.steps[r, :s.num_steps[r]], 0.5, atol=1e-6)
