"""Search on a random model: beam N=M=1 is greedy step-wise decoding, costs are counted,
bad settings are refused before generation, the second call compiles nothing."""

import jax
import numpy as np
import pytest

from rewardjax.search import (OutcomeScorer, PRMScorer, Retokenize, SearchConfigError,
                              StepConfig, StepGenerator, TokenizerMismatchError, VerifierScorer,
                              beam_search, candidates, dvts, early_rejection, running, sample_n)
from rewardjax.search import scorers as scorers_lib
from tests.sampling.conftest import TINY, ragged_prompts, random_params

DELIMS = ((5,), (7,), (11,), (13,))


class _Tok:
    """A stand-in tokenizer over TINY's 64 ids: token i decodes to chr(65 + i)."""

    def __init__(self, size=64):
        self.size = size

    def __len__(self):
        return self.size

    def get_vocab(self):
        return {chr(65 + i): i for i in range(self.size)}

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(65 + int(i)) for i in ids)


def _steps(temperature, **kw):
    base = dict(delimiters=DELIMS, eos_ids=(3,), step_tokens=6, max_tokens=64, max_steps=6,
                temperature=temperature, prompt_buckets=(16,), row_buckets=(8, 16))
    return StepConfig(**{**base, **kw})


@pytest.fixture(scope="module")
def params():
    return random_params(TINY, std=0.3)


@pytest.fixture(scope="module")
def prm(params):
    head = {"w": jax.random.normal(jax.random.key(1), (TINY.hidden_size, 1)) * 0.5,
            "b": np.zeros((1,), np.float32)}
    return {"backbone": params, "head": head}


def _answer(text):
    return text[-2:] if text else None


def test_beam_with_one_beam_and_one_expansion_is_greedy_stepwise_decoding(params, prm):
    prompts = ragged_prompts((9, 5), vocab=TINY.vocab_size, seed=3)
    gen = StepGenerator(params, config=TINY, steps=_steps(0.0))
    scorer = PRMScorer(prm, config=TINY, tokenizer=_Tok())
    res = beam_search(gen, prompts, n=1, expansions=1, tokenizer=_Tok(), answer_fn=_answer,
                      scorer=scorer)
    greedy = StepGenerator(params, config=TINY, steps=_steps(0.0))
    state = greedy.start(prompts)
    for _ in range(6):
        if running(state).any():
            state = greedy.step(state)
    c = candidates(state)
    for b in range(2):
        assert len(res.candidates[b]) == 1
        want = _Tok().decode(c.response(b))
        assert res.candidates[b][0].text == want
    assert res.cost["generated"] == greedy.counter.generated
    assert res.cost["scored"] > 0 and res.cost["prefilled"] == 14


def test_searches_run_and_do_not_recompile_from_the_second_call(params, prm):
    gen = StepGenerator(params, config=TINY, steps=_steps(1.0))
    scorer = PRMScorer(prm, config=TINY, tokenizer=_Tok())
    kw = dict(tokenizer=_Tok(), answer_fn=_answer)

    def calls(seed):
        prompts = ragged_prompts((9, 5), vocab=TINY.vocab_size, seed=seed)
        key = jax.random.key(seed)
        out = [sample_n(gen, prompts, key, n=4, scorer=scorer, **kw),
               beam_search(gen, prompts, key, n=4, expansions=2, scorer=scorer, **kw),
               dvts(gen, prompts, key, n=4, expansions=2, scorer=scorer, **kw),
               early_rejection(gen, prompts, key, n=4, scorer=scorer, reject_below=0.6, **kw)]
        return out

    first = calls(0)
    n0 = gen.compiles() + sum(f._cache_size() for f in (scorers_lib.score_inputs,
                                                           scorers_lib._prm_probs))
    calls(1)
    n1 = gen.compiles() + sum(f._cache_size() for f in (scorers_lib.score_inputs,
                                                           scorers_lib._prm_probs))
    assert n1 == n0
    bon, beam, tree, er = first
    for res in first:
        assert len(res.candidates) == 2 and all(res.candidates)
        assert all(0 <= c < len(a) for c, a in zip(res.chosen, res.answers))
    assert len(bon.candidates[0]) == 4 and bon.cost["gathered"] == 0
    assert beam.cost["gathered"] > 0
    assert er.cost["generated"] <= bon.cost["generated"] * 2  # same order, pruned rows stop


def test_early_rejection_rejects_by_partial_score_and_saves_tokens(params):
    """A verifier that fails every step: all but `min_keep` rows stop after one step."""
    gen = StepGenerator(params, config=TINY, steps=_steps(1.0))
    tok = _Tok()
    never = VerifierScorer(tokenizer=tok, verify=lambda q, t: 0.0, first_error=lambda q, t: 0)
    prompts = ragged_prompts((9,), vocab=TINY.vocab_size, seed=4)
    full = sample_n(gen, prompts, jax.random.key(0), n=8, tokenizer=tok, answer_fn=_answer,
                    scorer=never)
    er = early_rejection(gen, prompts, jax.random.key(0), n=8, tokenizer=tok, answer_fn=_answer,
                         scorer=never, reject_steps=1, min_keep=2)
    assert len(full.candidates[0]) == 8
    assert len(er.candidates[0]) == 2  # rejected candidates are dropped, min_keep survive
    assert er.cost["generated"] < full.cost["generated"]


def test_bad_settings_raise_before_generation(params, prm):
    gen = StepGenerator(params, config=TINY, steps=_steps(1.0))
    scorer = PRMScorer(prm, config=TINY, tokenizer=_Tok())
    kw = dict(tokenizer=_Tok(), answer_fn=_answer, scorer=scorer)
    with pytest.raises(SearchConfigError, match="not divisible by expansions"):
        beam_search(gen, [[1, 2]], n=6, expansions=4, **kw)
    with pytest.raises(SearchConfigError, match="not divisible"):
        dvts(gen, [[1, 2]], n=4, expansions=3, **kw)
    other = PRMScorer(prm, config=TINY, tokenizer=_Tok(size=50))
    with pytest.raises(TokenizerMismatchError, match="differs from the policy"):
        beam_search(gen, [[1, 2]], n=4, expansions=2, tokenizer=_Tok(), answer_fn=_answer,
                    scorer=other)
    declared = PRMScorer(prm, config=TINY, tokenizer=_Tok(size=50),
                         retokenize=Retokenize(policy_tokenizer=_Tok()))
    scorers_lib.check_tokenizer(declared, _Tok())  # a declared re-tokenization is accepted
    assert gen.counter.generated == 0 and gen.counter.prefilled == 0


def test_outcome_scorer_scores_the_last_step_only(params, prm):
    gen = StepGenerator(params, config=TINY, steps=_steps(0.0))
    state = gen.step(gen.step(gen.start([[4, 5, 6, 1]])))
    c = candidates(state)
    s = OutcomeScorer(prm, config=TINY, tokenizer=_Tok(), counter=gen.counter).score(
        state, c, max_steps=6, eos_ids=(3,))
    n = s.num_steps[0]
    assert n == len(c.steps[0]) and n >= 1
    assert np.all(s.steps[0, :n - 1] == 0) and 0 < s.steps[0, n - 1] < 1
    assert gen.counter.scored == 4 + int(c.lengths[0])


def test_score_inputs_compact_holes_and_tag_the_final_eos(params):
    """The scorer sees prompt + real tokens contiguous, the eos replaced by the step tag."""
    gen = StepGenerator(params, config=TINY, steps=_steps(0.0, eos_ids=(3,)))
    state = gen.start([[4, 5, 6, 1], [2, 2]])
    for _ in range(3):
        state = gen.step(state)
    c = candidates(state)
    batch = jax.device_get(scorers_lib.score_inputs(state, max_steps=6, eos_ids=(3,), eos_tag=5))
    for r in range(2):
        want = np.concatenate([c.prompts[r], c.response(r)])
        want = np.where(want == 3, 5, want) if c.done[r] else want
        row = batch["tokens"][r][batch["attention_mask"][r]]
        assert row.tolist() == want.tolist()
        ends = batch["step_positions"][r][batch["step_mask"][r]]
        L = batch["tokens"].shape[1]
        lengths = np.cumsum([len(s) for s in c.steps[r]])
        assert (ends - (L - len(want)) - len(c.prompts[r]) + 1).tolist() == lengths.tolist()


def test_mcts_search_on_the_policy_runs_and_does_not_recompile(params, prm):
    from rewardjax.search import MCTSConfig, mcts_search
    gen = StepGenerator(params, config=TINY, steps=_steps(1.0, max_tokens=96))
    scorer = PRMScorer(prm, config=TINY, tokenizer=_Tok())
    cfg = MCTSConfig(simulations=3, expansions=2)

    def call(seed):
        prompts = ragged_prompts((9, 5), vocab=TINY.vocab_size, seed=seed)
        return mcts_search(gen, prompts, jax.random.key(seed), config=cfg, tokenizer=_Tok(),
                           answer_fn=_answer, scorer=scorer)

    res, roots = call(0)
    n0 = gen.compiles()
    call(1)
    assert gen.compiles() == n0
    for b, root in enumerate(roots):
        assert root.visits == 3 and len(root.children) == 2
        assert res.candidates[b] and 0 <= res.chosen[b] < len(res.candidates[b])
    assert res.cost["gathered"] > 0 and res.cost["prefilled"] == 14


def test_lookahead_scores_a_step_by_a_greedy_rollout_and_counts_its_tokens(params, prm):
    gen = StepGenerator(params, config=TINY, steps=_steps(1.0))
    ahead = StepGenerator(params, config=TINY, steps=_steps(0.0))
    scorer = PRMScorer(prm, config=TINY, tokenizer=_Tok())
    kw = dict(n=4, expansions=2, tokenizer=_Tok(), answer_fn=_answer, scorer=scorer)
    prompts = ragged_prompts((9, 5), vocab=TINY.vocab_size, seed=7)
    plain = beam_search(gen, prompts, jax.random.key(0), **kw)
    look = beam_search(gen, prompts, jax.random.key(0), lookahead=1, lookahead_gen=ahead, **kw)
    # The rollouts are the search's cost, counted on the search's generator.
    assert look.cost["generated"] > plain.cost["generated"]
    assert ahead.counter is gen.counter
    with pytest.raises(SearchConfigError, match="greedily"):
        beam_search(gen, prompts, lookahead=1, lookahead_gen=gen, **kw)
