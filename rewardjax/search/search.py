"""Reward-guided search over reasoning steps on a `StepGenerator`.

    result = beam_search(gen, prompts, key, scorer=prm, n=16, expansions=4, answer_fn=...)
    result.chosen_answers()                  # one answer per prompt

Methods (search-and-learn's names; "Scaling LLM Test-Time Compute Optimally can be More
Effective than Scaling Model Parameters", arXiv:2408.03314):

- `sample_n`: N full solutions per prompt (best-of-N, majority and weighted votes all
  read them; `rewardjax.search.selection`).
- `beam_search`: N beams; each iteration every running beam writes one step, the PRM
  scores the prefixes (aggregated by `aggregate`, default "last" as search-and-learn),
  the best N/M running beams are kept and each is copied M times (rows gathered, no
  re-prefill). Finished beams leave the beam and join the candidate pool; the answer is
  the pool's best by `final_aggregate`. `lookahead=k` scores a step by rolling k more
  steps greedily from it and reading the last one (the rollout is discarded, its tokens
  are counted).
- `dvts`: diverse verifier tree search: the N rows form N/M independent subtrees, each a
  beam of width 1 with M expansions (search-and-learn's DVTS).
- `early_rejection`: N samples, scored after each of the first `reject_steps` steps;
  a candidate whose partial score (default min over its steps) falls below
  `reject_below` stops generating, keeping at least the `min_keep` best per prompt
  ("Accelerating LLM Reasoning via Early Rejection with Partial Reward Modeling",
  arXiv:2508.01969). With the min aggregation a partial score bounds the final one from
  above, so a rejected candidate could not have outscored a survivor that ends above the
  threshold.

`N % M != 0` raises `SearchConfigError` before anything is generated, as do other bad
settings. Every function returns a `SearchResult` with its cost: the generator's
`Counter` increase over the call (tokens generated / prefilled / scored, rows gathered).
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Hashable, NamedTuple, Sequence

import jax
import numpy as np

from rewardjax.search import selection
from rewardjax.search.scorers import AGGREGATIONS, Scores, check_tokenizer
from rewardjax.sampling.stepwise import Candidates, StepGenerator, StepState, candidates, running

AnswerFn = Callable[[str], Hashable]


class SearchConfigError(ValueError):
    """Search settings that cannot run (checked before any generation)."""


class Candidate(NamedTuple):
    """One candidate solution: its text, whether it finished, its step scores, its
    steps' texts and its number of response tokens."""

    text: str
    finished: bool
    step_scores: np.ndarray
    steps: tuple[str, ...]
    tokens: int


@dataclasses.dataclass
class SearchResult:
    """Per prompt: the candidates found and the chosen one.

    candidates[b]: list of `Candidate`; scores[b]: [n_b] final scores (empty without a
    scorer); answers[b]: the candidates' answers; chosen[b]: index of the chosen one;
    cost: the generator's `Counter` increase over the call.
    """

    candidates: list[list[Candidate]]
    scores: list[np.ndarray]
    answers: list[list[Hashable]]
    chosen: list[int]
    cost: dict[str, float]
    extra_scores: dict[str, list[np.ndarray]] = dataclasses.field(default_factory=dict)

    def chosen_answers(self) -> list[Hashable]:
        return [a[c] for a, c in zip(self.answers, self.chosen)]


def _check_common(gen: StepGenerator, prompts, *, n: int, scorer, aggregate: str,
                  policy_tokenizer) -> None:
    if not prompts:
        raise SearchConfigError("no prompts given")
    if not isinstance(n, int) or n < 1:
        raise SearchConfigError(f"n (candidates per prompt) must be a positive int, got {n!r}")
    if aggregate not in AGGREGATIONS:
        raise SearchConfigError(f"aggregate {aggregate!r} is not one of {AGGREGATIONS}")
    if scorer is not None:
        check_tokenizer(scorer, policy_tokenizer)
        scorer.bind(gen.counter)


def _check_expansions(n: int, expansions: int) -> None:
    if not isinstance(expansions, int) or expansions < 1:
        raise SearchConfigError(f"expansions (M) must be a positive int, got {expansions!r}")
    if n % expansions:
        raise SearchConfigError(f"n={n} beams are not divisible by expansions M={expansions}: "
                                f"each kept beam is copied M times, so N must be a multiple of M")


class _Run:
    """What one search call carries: generator, scorer, prompts, text decoding."""

    def __init__(self, gen: StepGenerator, prompts, key, *, scorer, tokenizer, questions,
                 answer_fn: AnswerFn):
        self.gen, self.scorer, self.tokenizer = gen, scorer, tokenizer
        self.prompts, self.questions, self.answer_fn = prompts, questions, answer_fn
        self.key = key if key is not None else jax.random.key(0)
        self.before = gen.counter.snapshot()
        self.calls = 0
        self.pool: list[list[Candidate]] = [[] for _ in prompts]

    def step(self, state: StepState) -> StepState:
        self.calls += 1
        return self.gen.step(state, jax.random.fold_in(self.key, self.calls))

    def score(self, state: StepState, cands: Candidates) -> Scores:
        return self.scorer.score(state, cands, self.questions, max_steps=self.gen.steps.max_steps,
                                 eos_ids=self.gen.steps.eos_ids)

    def candidate(self, cands: Candidates, r: int, scores: Scores | None) -> Candidate:
        steps = tuple(self.tokenizer.decode(s, skip_special_tokens=True) for s in cands.steps[r])
        s = (np.zeros((0,)) if scores is None
             else scores.steps[r, :scores.num_steps[r]].copy())
        return Candidate(text="".join(steps), finished=bool(cands.done[r]), step_scores=s,
                         steps=steps, tokens=int(cands.lengths[r]))

    def result(self, final_aggregate: str, choose: str = "best") -> SearchResult:
        scores, answers, chosen = [], [], []
        for pool in self.pool:
            ans = [self.answer_fn(c.text) for c in pool]
            answers.append(ans)
            if self.scorer is None or choose == "vote":
                scores.append(np.zeros((len(pool),)))
                chosen.append(selection.majority_vote(ans).index)
                continue
            s = np.asarray([_agg(c.step_scores, final_aggregate) for c in pool])
            scores.append(s)
            chosen.append(selection.best_of_n(ans, s).index)
        return SearchResult(candidates=self.pool, scores=scores, answers=answers, chosen=chosen,
                            cost=self.gen.counter.since(self.before))


def _agg(step_scores: np.ndarray, how: str) -> float:
    from rewardjax.search.scorers import aggregate
    n = len(step_scores)
    row = np.zeros((1, max(n, 1)))
    row[0, :n] = step_scores
    return float(aggregate(row, np.asarray([n]), how)[0])


def _encode(prompts, tokenizer):
    from rewardjax.data.encoding import encode_prompt
    return [encode_prompt(tokenizer, p) if isinstance(p, str) else np.asarray(p) for p in prompts]


def sample_n(gen: StepGenerator, prompts: Sequence, key=None, *, n: int, tokenizer,
             answer_fn: AnswerFn, scorer=None, final_aggregate: str = "min",
             also: dict[str, tuple] | None = None,
             questions: Sequence[str] | None = None) -> SearchResult:
    """N complete solutions per prompt, step by step; scored at the end if `scorer`.

    `prompts`: questions (rendered with the tokenizer's chat template) or token ids.
    The chosen candidate is the best by `final_aggregate` with a scorer, else the
    majority vote. `also` = {name: (scorer, aggregate)} scores the same candidates with
    more scorers (`SearchResult.extra_scores[name]`), e.g. an ORM beside the PRM.
    """
    _check_common(gen, prompts, n=n, scorer=scorer, aggregate=final_aggregate,
                  policy_tokenizer=tokenizer)
    for other, how in (also or {}).values():
        _check_common(gen, prompts, n=n, scorer=other, aggregate=how,
                      policy_tokenizer=tokenizer)
    run = _Run(gen, prompts, key, scorer=scorer, tokenizer=tokenizer,
               questions=_questions(prompts, questions), answer_fn=answer_fn)
    state = _run_to_end(run, gen.start(_encode(prompts, tokenizer), copies=n))
    cands = _collect_all(run, state)
    result = run.result(final_aggregate)
    for name, (other, how) in (also or {}).items():
        s = other.score(state, cands, run.questions, max_steps=gen.steps.max_steps,
                        eos_ids=gen.steps.eos_ids).aggregate(how)
        result.extra_scores[name] = [s[(cands.source == b) & cands.live]
                                     for b in range(len(prompts))]
    return result


def _run_to_end(run: _Run, state: StepState) -> StepState:
    for _ in range(run.gen.steps.max_steps):
        if not running(state).any():
            break
        state = run.step(state)
    return state


def early_rejection(gen: StepGenerator, prompts: Sequence, key=None, *, n: int, tokenizer,
                    answer_fn: AnswerFn, scorer, reject_steps: int = 2, reject_below: float = 0.5,
                    min_keep: int = 1, aggregate: str = "min", final_aggregate: str = "min",
                    questions: Sequence[str] | None = None) -> SearchResult:
    """Best-of-N with partial candidates rejected early by their partial PRM score
    ("Accelerating LLM Reasoning via Early Rejection with Partial Reward Modeling",
    arXiv:2508.01969); see the module docstring. `cost["generated"]` against
    `sample_n`'s at the same N is the saving."""
    _check_common(gen, prompts, n=n, scorer=scorer, aggregate=aggregate,
                  policy_tokenizer=tokenizer)
    if scorer is None:
        raise SearchConfigError("early_rejection needs a scorer")
    if not 1 <= min_keep <= n:
        raise SearchConfigError(f"min_keep must be in [1, n={n}], got {min_keep}")
    run = _Run(gen, prompts, key, scorer=scorer, tokenizer=tokenizer,
               questions=_questions(prompts, questions), answer_fn=answer_fn)
    state = gen.start(_encode(prompts, tokenizer), copies=n)
    for it in range(gen.steps.max_steps):
        if not running(state).any():
            break
        state = run.step(state)
        if it < reject_steps:
            cands = candidates(state)
            partial = run.score(state, cands).aggregate(aggregate)
            keep = np.ones((state.num_rows,), bool)
            for b in range(len(prompts)):
                rows = np.arange(b * n, (b + 1) * n)
                rows = rows[cands.live[rows]]
                best = rows[np.argsort(-partial[rows], kind="stable")[:min_keep]]
                low = rows[partial[rows] < reject_below]
                keep[np.setdiff1d(low, best)] = False
            state = gen.prune(state, keep)
    _collect_all(run, state)
    return run.result(final_aggregate)


def _questions(prompts, questions):
    if questions is not None:
        return list(questions)
    return [p for p in prompts] if all(isinstance(p, str) for p in prompts) else []


def _collect_all(run: _Run, state: StepState) -> Candidates:
    """Every live row (finished or cut off) joins its prompt's pool, scored if asked."""
    cands = candidates(state)
    scores = run.score(state, cands) if run.scorer is not None else None
    for r in np.flatnonzero(cands.live):
        run.pool[int(cands.source[r])].append(run.candidate(cands, r, scores))
    return cands


def beam_search(gen: StepGenerator, prompts: Sequence, key=None, *, n: int, expansions: int,
                tokenizer, answer_fn: AnswerFn, scorer, aggregate: str = "last",
                final_aggregate: str = "last", lookahead: int = 0,
                lookahead_gen: StepGenerator | None = None, subtrees: int = 1,
                questions: Sequence[str] | None = None) -> SearchResult:
    """PRM-guided step-level beam search (search-and-learn's `beam_search`, arXiv:2408.03314).

    Args:
      gen: the policy's step generator (sampling at its temperature).
      prompts: questions (strings, rendered with the chat template) or prompt ids.
      key: PRNG key of the call.
      n: beams per prompt (N); expansions: copies of each kept beam (M); N % M == 0.
      scorer: scores prefixes; `aggregate` reduces step scores to rank running beams,
        `final_aggregate` ranks finished ones.
      lookahead: steps rolled greedily by `lookahead_gen` (temperature 0) to score a step.
      subtrees: independent groups per prompt (DVTS: N/M subtrees of one beam each).
    """
    _check_common(gen, prompts, n=n, scorer=scorer, aggregate=aggregate,
                  policy_tokenizer=tokenizer)
    _check_expansions(n, expansions)
    if scorer is None:
        raise SearchConfigError("beam_search needs a scorer")
    if lookahead < 0 or (lookahead and lookahead_gen is None):
        raise SearchConfigError(f"lookahead={lookahead} needs lookahead >= 0 and a greedy "
                                "lookahead_gen")
    if lookahead and not lookahead_gen.steps.greedy:
        raise SearchConfigError("lookahead_gen must decode greedily (temperature 0)")
    groups = subtrees
    if not isinstance(groups, int) or groups < 1 or (n // expansions) % groups:
        raise SearchConfigError(f"subtrees={groups} must divide n/M = {n // expansions}")
    if lookahead:
        lookahead_gen.counter = gen.counter  # the rollouts are this search's cost
    keep = n // expansions // groups  # running beams kept per group
    width = n // groups  # rows per group
    run = _Run(gen, prompts, key, scorer=scorer, tokenizer=tokenizer,
               questions=_questions(prompts, questions), answer_fn=answer_fn)
    state = gen.start(_encode(prompts, tokenizer), copies=n)
    B = len(prompts)
    for it in range(gen.steps.max_steps):
        state = run.step(state)
        cands = candidates(state)
        if lookahead:
            ahead = lookahead_gen.select(state, np.arange(state.num_rows))
            for _ in range(lookahead):
                ahead = lookahead_gen.step(ahead)
            rank = run.score(ahead, candidates(ahead)).aggregate(aggregate)
            scores = run.score(state, cands)
        else:
            scores = run.score(state, cands)
            rank = scores.aggregate(aggregate)
        index = np.zeros((B * n,), np.int32)
        live = np.zeros((B * n,), bool)
        for b in range(B):
            for g in range(groups):
                rows = np.arange(b * n + g * width, b * n + (g + 1) * width)
                rows = rows[cands.live[rows]]
                for r in rows[cands.done[rows]]:
                    run.pool[b].append(run.candidate(cands, r, scores))
                alive = rows[~cands.done[rows]]
                best = alive[np.argsort(-rank[alive], kind="stable")[:keep]]
                chosen = np.repeat(best, expansions)
                lo = b * n + g * width
                index[lo:lo + len(chosen)] = chosen
                live[lo:lo + len(chosen)] = True
        if not live.any():
            break
        if it == gen.steps.max_steps - 1:
            for b in range(B):  # out of steps: the running beams join the pool unfinished
                rows = index[b * n:(b + 1) * n][live[b * n:(b + 1) * n]]
                for r in np.unique(rows):
                    run.pool[b].append(run.candidate(cands, r, scores))
            break
        state = gen.select(state, index, live=live)
    for b in range(B):
        if not run.pool[b]:
            raise RuntimeError(f"beam_search: prompt {b} ended with no candidate")
    return run.result(final_aggregate)


def dvts(gen: StepGenerator, prompts: Sequence, key=None, *, n: int, expansions: int,
         tokenizer, answer_fn: AnswerFn, scorer, aggregate: str = "last",
         final_aggregate: str = "last", questions: Sequence[str] | None = None) -> SearchResult:
    """Diverse verifier tree search (search-and-learn, arXiv:2408.03314): N/M independent
    subtrees per prompt, each keeping its best beam and expanding it M times."""
    _check_expansions(n, expansions)
    return beam_search(gen, prompts, key, n=n, expansions=expansions, tokenizer=tokenizer,
                       answer_fn=answer_fn, scorer=scorer, aggregate=aggregate,
                       final_aggregate=final_aggregate, subtrees=n // expansions,
                       questions=questions)
