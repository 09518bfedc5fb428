"""Step-wise generation: continuation from selected rows, counts, compiles, bad settings."""

import jax
import numpy as np
import pytest

from rewardjax.sampling import SamplerConfig, sample
from rewardjax.search import (StepConfig, StepDelimiterError, StepGenerator, candidates,
                              delimiter_ids, running)
from rewardjax.sampling import stepwise
from tests.sampling.conftest import TINY, ragged_prompts, random_params

# Several one-token delimiters so a random model ends its steps often.
DELIMS = ((5,), (7,), (11,), (13,))
GREEDY = StepConfig(delimiters=DELIMS, eos_ids=(3,), step_tokens=6, max_tokens=40, max_steps=8,
                    temperature=0.0, prompt_buckets=(16,), row_buckets=(4, 8))


@pytest.fixture(scope="module")
def params():
    return random_params(TINY, std=0.3)


def _responses(state):
    c = candidates(state)
    return [c.response(r).tolist() for r in range(len(c.steps)) if c.live[r]]


def test_continuation_from_selected_rows_equals_generation_from_scratch(params):
    prompts = ragged_prompts((11, 7, 4, 9), vocab=TINY.vocab_size)
    gen = StepGenerator(params, config=TINY, steps=GREEDY)
    state = gen.step(gen.start(prompts))
    prefilled = gen.counter.prefilled
    assert prefilled == 11 + 7 + 4 + 9
    sub = gen.select(state, [2, 0, 2])
    sub = gen.step(gen.step(sub))
    # Continuing prefilled nothing: only newly sampled tokens were fed.
    assert gen.counter.prefilled == prefilled
    assert gen.counter.gathered == 3

    fresh = StepGenerator(params, config=TINY, steps=GREEDY)
    scratch = fresh.start([prompts[2], prompts[0], prompts[2]])
    for _ in range(3):
        scratch = fresh.step(scratch)
    got, want = _responses(sub), _responses(scratch)
    assert got == want
    assert got[0] == got[2]
    c = candidates(sub)
    assert c.num_steps[0] == 3 and len(c.steps[0]) == 3


def test_steps_to_the_end_equal_the_samplers_greedy_tokens(params):
    """Holes left by rows waiting for others do not change what a row computes."""
    prompts = ragged_prompts((11, 7, 4, 9), vocab=TINY.vocab_size, seed=1)
    gen = StepGenerator(params, config=TINY, steps=GREEDY)
    state = gen.start(prompts)
    while running(state).any():
        state = gen.step(state)
    ref = jax.device_get(sample(params, prompts, config=TINY, sampling=SamplerConfig(
        max_new_tokens=40, temperature=0.0, eos_ids=(3,), prompt_buckets=(16,))))
    for b, got in enumerate(_responses(state)):
        assert got == ref.tokens[b, 0, :ref.lengths[b, 0]].tolist()
    assert gen.counter.generated == int(ref.lengths.sum())


def test_a_step_that_never_ends_is_cut_and_counted(params):
    steps = StepConfig(delimiters=((63,),), eos_ids=(62,), step_tokens=4, max_tokens=12,
                       temperature=0.0, prompt_buckets=(16,), row_buckets=(4,))
    gen = StepGenerator(params, config=TINY, steps=steps)
    state = gen.step(gen.start([[1, 2, 3]]))
    c = candidates(state)
    if c.steps[0][-1][-1] in (62, 63):
        pytest.skip("the random model ended its step; the cut path is not reached")
    assert len(c.steps[0]) == 1 and len(c.steps[0][0]) == 4
    assert gen.counter.cut_steps == 1
    for _ in range(3):
        state = gen.step(state)
    assert bool(jax.device_get(state.done)[0])  # 12 slots filled: done (LENGTH)


def test_no_recompilation_from_the_second_call(params):
    steps = StepConfig(delimiters=DELIMS, eos_ids=(3,), step_tokens=6, max_tokens=40,
                       temperature=1.0, prompt_buckets=(16,), row_buckets=(8,))
    gen = StepGenerator(params, config=TINY, steps=steps)

    def call(seed):
        prompts = ragged_prompts((5, 9), vocab=TINY.vocab_size, seed=seed)
        state = gen.start(prompts, copies=2)
        state = gen.step(state, jax.random.key(seed))
        state = gen.select(state, [0, 0, 3, 3])
        state = gen.prune(state, np.arange(8) != 1)
        return gen.step(state, jax.random.key(seed + 1))

    call(0)
    first = gen.compiles()
    call(1)
    assert gen.compiles() == first


def test_sampled_copies_of_a_row_diverge(params):
    steps = StepConfig(delimiters=DELIMS, eos_ids=(3,), step_tokens=6, max_tokens=40,
                       temperature=1.0, prompt_buckets=(16,), row_buckets=(8,))
    gen = StepGenerator(params, config=TINY, steps=steps)
    state = gen.step(gen.start([[4, 9, 2]], copies=8), jax.random.key(0))
    got = _responses(state)
    assert len(got) == 8 and len({tuple(g) for g in got}) > 1


def test_bad_settings_are_named():
    with pytest.raises(StepDelimiterError, match="vocabulary"):
        StepGenerator(None, config=TINY, steps=StepConfig(delimiters=((999,),), eos_ids=(3,)))
    with pytest.raises(StepDelimiterError, match="non-empty"):
        StepConfig(delimiters=(), eos_ids=(3,))
    with pytest.raises(ValueError, match="step_tokens"):
        StepConfig(delimiters=DELIMS, eos_ids=(3,), step_tokens=64, max_tokens=32)


def test_delimiter_ids_refuses_a_string_that_is_not_one_token():
    from rewardjax.data.tokenizer import default_tokenizer
    tok = default_tokenizer()
    assert delimiter_ids(tok, "\n") == (tok("\n", add_special_tokens=False)["input_ids"][0],)
    assert delimiter_ids(tok, "<|step|>") == (tok.convert_tokens_to_ids("<|step|>"),)
    with pytest.raises(StepDelimiterError, match="not a token"):
        delimiter_ids(tok, "Step 1: and then")
    with pytest.raises(StepDelimiterError, match="vocabulary"):
        delimiter_ids(tok, [len(tok) + 3])


def test_select_checks_indices(params):
    gen = StepGenerator(params, config=TINY, steps=GREEDY)
    state = gen.start([[1, 2]])
    with pytest.raises(ValueError, match="row indices"):
        gen.select(state, [0, 9])
    assert stepwise.bucket(5, (4, 8), "rows") == 8
