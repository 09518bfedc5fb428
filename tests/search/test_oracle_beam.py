"""With an oracle PRM (the arithmetic task's first-error check), beam search solves
problems the sampling policy gets right at most half the time (pass@1 of the policy at
the search's temperature, 1.3, where a briefly trained 1-layer policy errs often but
not always the same way)."""

import dataclasses

import jax
import numpy as np

from rewardjax import recipes
from rewardjax.data.synthetic import arithmetic
from rewardjax.data.tokenizer import eos_ids
from rewardjax.search import StepConfig, StepGenerator, VerifierScorer, beam_search, delimiter_ids
from rewardjax.search import sample_n

TASK = dataclasses.replace(recipes.TINY_RM_TASK, min_steps=3, max_steps=3)


def test_oracle_prm_beam_search_beats_a_weak_policy(tmp_path):
    backbone = recipes.load_backbone(recipes.BackboneConfig(num_layers=1), jax.random.key(0))
    records = arithmetic.sft_examples(2048, seed=2, config=TASK, split="train")
    sft = recipes.SFTConfig(steps=250, batch_size=32)
    params = recipes.sft_warm_start(backbone, records, sft=sft, buckets=(80,), out_dir=tmp_path)
    tok = backbone.tokenizer
    problems = arithmetic.problems(16, seed=5, config=TASK, split="test")
    questions = [p.question for p in problems]
    steps = StepConfig(delimiters=(delimiter_ids(tok, "\n"),), eos_ids=eos_ids(tok),
                       step_tokens=10, max_tokens=64, max_steps=6, temperature=1.3,
                       pad_id=tok.pad_token_id, prompt_buckets=(64,), row_buckets=(128,))
    gen = StepGenerator(params, config=backbone.config, steps=steps)

    samples = sample_n(gen, questions, jax.random.key(1), n=8, tokenizer=tok,
                       answer_fn=arithmetic.extract_answer)
    pass1 = np.mean([[a == p.answer for a in ans] for ans, p in zip(samples.answers, problems)])
    assert pass1 <= 0.5, pass1

    oracle = VerifierScorer(
        tokenizer=tok, verify=lambda q, text: float(arithmetic.is_correct(text, problems[q].answer)),
        first_error=lambda q, text: arithmetic.check_steps(problems[q], text))
    res = beam_search(gen, questions, jax.random.key(2), n=8, expansions=2, tokenizer=tok,
                      answer_fn=arithmetic.extract_answer, scorer=oracle, final_aggregate="min")
    accuracy = np.mean([a == p.answer for a, p in zip(res.chosen_answers(), problems)])
    assert accuracy >= 0.95, (accuracy, pass1)
