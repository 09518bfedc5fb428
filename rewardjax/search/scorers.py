"""Scorers of partial and finished solutions, behind one interface.

    scores = scorer.score(state, cands, questions)   # Scores: steps [R, S], num_steps [R]
    final = scores.aggregate("min")                   # [R] one score per candidate

Every scorer returns one score per step (P(step is right) in [0, 1], or a value on the
same footing) and the search reduces them with `aggregate` ("last", "min", "prod",
"mean": the reductions "Let's Verify Step by Step" (arXiv:2305.20050) compares and
search-and-learn offers):

- `PRMScorer`: a discriminative PRM (`train.prm.step_logits`: step head at each step's
  last token), σ(logit). Math-Shepherd (arXiv:2312.08935).
- `StepTagLMScorer`: a causal LM read at each step tag as p("+") / (p("+") + p("−"))
  (`heads.verdict_score`), the read-out of Math-Shepherd-style public PRMs.
- `TokenClassPRMScorer`: a classifier backbone (`score` head on every token, e.g. a
  two-class `*ForProcessRewardModel`), softmax(scores)[positive] at each step tag.
- `OutcomeScorer`: an ORM, a scalar head at the last token (`heads.scalar_reward`),
  σ(r) as the score of the last step only ("Training Verifiers to Solve Math Word
  Problems", arXiv:2110.14168).
- `ImplicitPRMScorer`: σ(q_k) with q_k = β Σ_{t ≤ end of step k} log π/π_ref
  (`train.prm.implicit_step_values`; "Free Process Rewards without Process Labels",
  arXiv:2412.01981).
- `VerifierScorer`: a plain verifier on the decoded text (the answer reward, or the
  synthetic task's first-error check for an oracle PRM).

What a model scorer reads: the prompt and the real response tokens, compacted (the
state's holes removed), with every step closed by the step tag: a step's last token
is the tag position, and a final eos is replaced by `eos_tag` (so "Answer: 7<eos>"
reads as the PRM's training text "Answer: 7\\n"). Token ids are the policy's, so a
scorer whose tokenizer has another vocabulary raises `TokenizerMismatchError` unless
it declares a re-tokenization (`Retokenize`: steps decoded to text and encoded again
with the scorer's tokenizer and chat template, `data.encoding.encode_steps`).
Scorer tokens are added to the generator's `Counter.scored`.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rewardjax import heads
from rewardjax.data.encoding import encode_steps
from rewardjax.models import ModelConfig
from rewardjax.sampling import sequence_logprobs
from rewardjax.sampling.stepwise import Candidates, Counter, StepState, bucket
from rewardjax.train import prm as prm_lib

AGGREGATIONS = ("last", "min", "prod", "mean")


class TokenizerMismatchError(ValueError):
    """A scorer that reads token ids from another vocabulary than the policy's."""


class Scores(NamedTuple):
    """Per-step scores of R rows: steps [R, S] (0 beyond num_steps), num_steps [R]."""

    steps: np.ndarray
    num_steps: np.ndarray

    def aggregate(self, how: str) -> np.ndarray:
        return aggregate(self.steps, self.num_steps, how)


def aggregate(step_scores: np.ndarray, num_steps: np.ndarray, how: str) -> np.ndarray:
    """One score per row from its step scores: [R].

    last: s_n; min: min_k s_k; prod: Π_k s_k; mean: (1/n) Σ_k s_k, over the row's n
    steps (the reductions of "Let's Verify Step by Step", arXiv:2305.20050, and
    search-and-learn). A row without steps scores 0.

    >>> aggregate(np.array([[0.9, 0.5, 0.8]]), np.array([3]), "min")
    array([0.5])
    """
    if how not in AGGREGATIONS:
        raise ValueError(f"aggregation {how!r} is not one of {AGGREGATIONS}")
    s = np.asarray(step_scores, np.float64)
    n = np.asarray(num_steps, np.int64)
    S = s.shape[1]
    if np.any(n > S):
        raise ValueError(f"num_steps up to {n.max()} exceed the {S} step scores given")
    valid = np.arange(S)[None, :] < n[:, None]
    empty = n == 0
    if how == "last":
        out = s[np.arange(len(n)), np.maximum(n - 1, 0)]
    elif how == "min":
        out = np.where(valid, s, np.inf).min(axis=1)
    elif how == "prod":
        out = np.where(valid, s, 1.0).prod(axis=1)
    else:
        out = np.where(valid, s, 0.0).sum(axis=1) / np.maximum(n, 1)
    return np.where(empty, 0.0, out)


@dataclasses.dataclass(frozen=True, kw_only=True)
class Retokenize:
    """Declares that a scorer reads text: steps are decoded with the policy's tokenizer
    and encoded again with the scorer's (`encode_steps`, `step_separator` after each
    step). `delimiter` is stripped from each decoded step first."""

    policy_tokenizer: Any
    step_separator: str = "\n"
    delimiter: str = "\n"
    buckets: tuple[int, ...] = (128, 256, 512, 1024, 2048, 4096)


def same_vocabulary(a, b) -> bool:
    """Whether two tokenizers map every token to the same id."""
    return a is b or a.get_vocab() == b.get_vocab()


def check_tokenizer(scorer, policy_tokenizer) -> None:
    """Raises `TokenizerMismatchError` if `scorer` reads token ids of another vocabulary
    than the policy's and declares no re-tokenization."""
    tok = getattr(scorer, "tokenizer", None)
    if tok is None or getattr(scorer, "retokenize", None) is not None:
        return
    if policy_tokenizer is None:
        raise TokenizerMismatchError(f"scorer {scorer.name!r} reads token ids; pass the "
                                     "policy's tokenizer so the vocabularies can be compared")
    if not same_vocabulary(tok, policy_tokenizer):
        raise TokenizerMismatchError(
            f"scorer {scorer.name!r} has a tokenizer of {len(tok)} tokens that differs from "
            f"the policy's ({len(policy_tokenizer)} tokens); its ids would be read as other "
            f"tokens. Declare retokenize=Retokenize(policy_tokenizer=...) to score text")


# ----------------------------------------------------------------------------- model inputs


@functools.partial(jax.jit, static_argnames=("max_steps", "eos_ids", "eos_tag"))
def score_inputs(state: StepState, *, max_steps: int, eos_ids: tuple[int, ...],
                 eos_tag: int | None) -> dict[str, jax.Array]:
    """A scorer batch from a state: `tokens`, `attention_mask` [R, P + C] (left-padded,
    holes removed), `response_mask`, `step_positions` and `step_mask` [R, max_steps]."""
    R, C = state.tokens.shape
    P = state.prompt_tokens.shape[1]
    tokens = jnp.concatenate([state.prompt_tokens, state.tokens], axis=1)
    mask = jnp.concatenate([state.prompt_mask, state.real], axis=1)
    ends = jnp.concatenate([jnp.zeros((R, P), bool), state.step_end & state.real], axis=1)
    resp = jnp.concatenate([jnp.zeros((R, P), bool), state.real], axis=1)
    # A stable sort on the mask moves the holes to the front and keeps token order.
    order = jnp.argsort(mask.astype(jnp.int32), axis=1, stable=True)
    take = lambda x: jnp.take_along_axis(x, order, axis=1)  # noqa: E731
    tokens, mask, ends, resp = take(tokens), take(mask), take(ends), take(resp)
    if eos_tag is not None:
        is_eos = jnp.zeros_like(ends)
        for e in eos_ids:
            is_eos |= tokens == e
        tokens = jnp.where(ends & is_eos, eos_tag, tokens)
    positions = jnp.argsort(~ends, axis=1, stable=True)[:, :max_steps].astype(jnp.int32)
    count = jnp.sum(ends, axis=1)
    step_mask = jnp.arange(max_steps)[None, :] < count[:, None]
    return {"tokens": tokens, "attention_mask": mask, "response_mask": resp,
            "step_positions": jnp.where(step_mask, positions, 0), "step_mask": step_mask}


@functools.partial(jax.jit, static_argnames=("config",))
def _prm_probs(params, batch, *, config):
    return jax.nn.sigmoid(prm_lib.step_logits(params, batch, config=config))


@functools.partial(jax.jit, static_argnames=("config",))
def _orm_probs(params, batch, *, config):
    hidden = heads.backbone_hidden(params["backbone"], batch["tokens"], batch["attention_mask"],
                                   config=config)
    return jax.nn.sigmoid(heads.scalar_reward(params["head"], hidden, batch["attention_mask"]))


@functools.partial(jax.jit, static_argnames=("config", "good_id", "bad_id"))
def _step_tag_probs(params, batch, *, config, good_id, bad_id):
    hidden = heads.backbone_hidden(params, batch["tokens"], batch["attention_mask"], config=config)
    at = jnp.take_along_axis(hidden, batch["step_positions"][..., None], axis=1)  # [R, S, D]
    R, S, D = at.shape
    log_odds = heads.verdict_score(params, at.reshape(R * S, 1, D), jnp.zeros((R * S,), jnp.int32),
                                   config=config, yes_id=good_id, no_id=bad_id, mode="log_odds")
    return jnp.where(batch["step_mask"], jax.nn.sigmoid(log_odds.reshape(R, S)), 0.0)


@functools.partial(jax.jit, static_argnames=("config", "positive"))
def _token_class_probs(params, batch, *, config, positive):
    from rewardjax.models import apply
    scores_btl, _ = apply(params, batch["tokens"], config=config, mask_bt=batch["attention_mask"])
    at = jnp.take_along_axis(scores_btl, batch["step_positions"][..., None], axis=1)
    return jnp.where(batch["step_mask"], jax.nn.softmax(at, axis=-1)[..., positive], 0.0)


@functools.partial(jax.jit, static_argnames=("config", "beta"))
def _implicit_probs(params, ref_params, batch, *, config, beta):
    logp = sequence_logprobs(params, batch["tokens"], batch["attention_mask"], config=config)
    ref = sequence_logprobs(ref_params, batch["tokens"], batch["attention_mask"], config=config)
    q, _ = prm_lib.implicit_step_values(logp, ref, batch["response_mask"],
                                        batch["step_positions"], batch["step_mask"], beta=beta)
    return jnp.where(batch["step_mask"], jax.nn.sigmoid(q), 0.0)


def _text_batch(cands: Candidates, questions: Sequence[str], tokenizer, rt: Retokenize,
                max_steps: int, eos_tag: str | None):
    """The scorer batch of a re-tokenizing scorer, built on the host."""
    rows = []
    for r in range(len(cands.steps)):
        steps = []
        for piece in cands.steps[r][:max_steps]:
            text = rt.policy_tokenizer.decode(piece, skip_special_tokens=True)
            steps.append(text[:-len(rt.delimiter)] if text.endswith(rt.delimiter) else text)
        if not steps:
            steps = [""]
        p, resp, ends = encode_steps(tokenizer, questions[int(cands.source[r])], steps,
                                     step_separator=rt.step_separator)
        ids = np.concatenate([p, resp[:ends[-1] + 1]])
        rows.append((ids, len(p) + ends, len(cands.steps[r][:max_steps])))
    L = bucket(max(len(i) for i, _, _ in rows), rt.buckets, "scorer tokens")
    R = len(rows)
    tokens = np.zeros((R, L), np.int32)
    mask = np.zeros((R, L), bool)
    positions = np.zeros((R, max_steps), np.int32)
    step_mask = np.zeros((R, max_steps), bool)
    for r, (ids, ends, n) in enumerate(rows):
        tokens[r, L - len(ids):] = ids
        mask[r, L - len(ids):] = True
        positions[r, :n] = ends[:n] + (L - len(ids))
        step_mask[r, :n] = True
    return {"tokens": tokens, "attention_mask": mask, "response_mask": mask,
            "step_positions": positions, "step_mask": step_mask}


class ModelScorer:
    """Shared plumbing of the model scorers: builds the batch, counts, times.

    Subclasses set `name`, `tokenizer`, `retokenize`, `num_params` and implement
    `_probs(batch) -> [R, S]` step scores.
    """

    name = "model"
    passes = 1  # forward passes per scored token (an implicit PRM runs two models)

    def __init__(self, *, config: ModelConfig, tokenizer, counter: Counter | None = None,
                 eos_tag: int | None = None, retokenize: Retokenize | None = None,
                 num_params: int = 0):
        self.config, self.tokenizer, self.retokenize = config, tokenizer, retokenize
        self.eos_tag, self.num_params = eos_tag, num_params
        self.counter = counter if counter is not None else Counter()

    def bind(self, counter: Counter) -> "ModelScorer":
        """Counts this scorer's tokens into `counter` (a generator's)."""
        self.counter = counter
        return self

    def score(self, state: StepState, cands: Candidates, questions: Sequence[str] = (), *,
              max_steps: int, eos_ids: tuple[int, ...]) -> Scores:
        t0 = time.perf_counter()
        if self.retokenize is not None:
            if not questions:
                raise ValueError(f"scorer {self.name!r} re-tokenizes: pass the questions")
            tag = None if self.eos_tag is None else self.tokenizer.decode([self.eos_tag])
            batch = _text_batch(cands, questions, self.tokenizer, self.retokenize, max_steps, tag)
        else:
            batch = score_inputs(state, max_steps=max_steps, eos_ids=eos_ids, eos_tag=self.eos_tag)
        probs, mask, step_mask = jax.device_get(
            (self._probs(batch), batch["attention_mask"], batch["step_mask"]))
        self.counter.seconds_score += time.perf_counter() - t0
        self.counter.scored += self.passes * int(np.sum(np.asarray(mask)[cands.live]))
        return Scores(steps=np.asarray(probs, np.float64),
                      num_steps=np.asarray(step_mask).sum(axis=1))

    def _probs(self, batch):
        raise NotImplementedError


class PRMScorer(ModelScorer):
    """A discriminative PRM: `{"backbone", "head"}` params of `train.prm`'s step head."""

    name = "prm"

    def __init__(self, params, **kwargs):
        super().__init__(**kwargs)
        self.params = params

    def _probs(self, batch):
        return _prm_probs(self.params, batch, config=self.config)


class OutcomeScorer(ModelScorer):
    """An ORM: `{"backbone", "head"}` with a scalar head read at the last token; σ(r) is
    the score of the candidate's last step (earlier steps score 0: only the last is read)."""

    name = "orm"

    def __init__(self, params, **kwargs):
        super().__init__(**kwargs)
        self.params = params

    def _probs(self, batch):
        r = _orm_probs(self.params, batch, config=self.config)
        S = batch["step_mask"].shape[1]
        last = jnp.sum(batch["step_mask"], axis=1) - 1
        return jnp.where(jnp.arange(S)[None] == last[:, None], r[:, None], 0.0)


class StepTagLMScorer(ModelScorer):
    """A causal-LM PRM read at each step tag: p(good) / (p(good) + p(bad)) of the next
    token, e.g. "+" / "-" after Math-Shepherd's step tag (arXiv:2312.08935)."""

    name = "prm_step_tag"

    def __init__(self, params, *, good_id: int, bad_id: int, **kwargs):
        super().__init__(**kwargs)
        V = kwargs["config"].vocab_size
        for n, i in (("good_id", good_id), ("bad_id", bad_id)):
            if not 0 <= i < V:
                raise ValueError(f"StepTagLMScorer.{n}={i} is outside the vocabulary [0, {V})")
        self.params, self.good_id, self.bad_id = params, good_id, bad_id

    def _probs(self, batch):
        return _step_tag_probs(self.params, batch, config=self.config, good_id=self.good_id,
                               bad_id=self.bad_id)


class TokenClassPRMScorer(ModelScorer):
    """A classifier backbone scored at every token (a two-class token head, as
    `*ForProcessRewardModel` / `*ForTokenClassification` PRMs), softmax(scores)[positive]."""

    name = "prm_token_class"

    def __init__(self, params, *, positive: int = 1, **kwargs):
        super().__init__(**kwargs)
        labels = kwargs["config"].num_labels
        if not 0 <= positive < labels:
            raise ValueError(f"TokenClassPRMScorer.positive={positive} needs a classifier config "
                             f"with more labels; config has num_labels={labels}")
        self.params, self.positive = params, positive

    def _probs(self, batch):
        return _token_class_probs(self.params, batch, config=self.config, positive=self.positive)


class ImplicitPRMScorer(ModelScorer):
    """An implicit PRM: the trained LM π and the frozen reference π_ref; σ(q_k)."""

    name = "implicit_prm"
    passes = 2

    def __init__(self, params, ref_params, *, beta: float = 0.05, **kwargs):
        super().__init__(**kwargs)
        if not beta > 0:
            raise ValueError(f"ImplicitPRMScorer.beta must be > 0, got {beta}")
        self.params, self.ref_params, self.beta = params, ref_params, beta

    def _probs(self, batch):
        return _implicit_probs(self.params, self.ref_params, batch, config=self.config,
                               beta=self.beta)


class VerifierScorer:
    """A plain verifier on decoded text (oracle runs).

    Args:
      tokenizer: the policy's tokenizer, to decode steps.
      verify: `verify(question_index, text) -> float` outcome score of a finished
        solution (e.g. the answer reward against the reference).
      first_error: optional `first_error(question_index, text) -> int`, the index of the
        first wrong step (-1: none), e.g. `arithmetic.check_steps`: steps before it
        score 1, the rest 0 (an oracle PRM). Without it, every step scores the
        outcome of the text so far.
    """

    name = "verifier"
    num_params = 0
    passes = 0
    retokenize = None

    def __init__(self, *, tokenizer, verify: Callable[[int, str], float],
                 first_error: Callable[[int, str], int] | None = None,
                 counter: Counter | None = None):
        self.decode_tokenizer = tokenizer
        self.tokenizer = None  # reads text, whatever the vocabulary
        self.verify, self.first_error = verify, first_error
        self.counter = counter if counter is not None else Counter()

    def bind(self, counter: Counter) -> "VerifierScorer":
        self.counter = counter
        return self

    def score(self, state: StepState, cands: Candidates, questions: Sequence[str] = (), *,
              max_steps: int, eos_ids: tuple[int, ...]) -> Scores:
        t0 = time.perf_counter()
        R = len(cands.steps)
        out = np.zeros((R, max_steps))
        n = np.minimum(np.asarray([len(s) for s in cands.steps]), max_steps)
        for r in range(R):
            if not cands.live[r] or n[r] == 0:
                continue
            text = self.decode_tokenizer.decode(cands.response(r), skip_special_tokens=True)
            q = int(cands.source[r])
            if self.first_error is not None:
                first = self.first_error(q, text)
                # A partial solution's "error" at its unwritten next line is not one.
                first = n[r] if first < 0 or first >= n[r] else first
                out[r, :n[r]] = (np.arange(n[r]) < first).astype(float)
            else:
                out[r, :n[r]] = float(self.verify(q, text))
        self.counter.seconds_score += time.perf_counter() - t0
        return Scores(steps=out, num_steps=n)
