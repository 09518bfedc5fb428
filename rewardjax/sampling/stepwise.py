"""Step-wise generation: decode a batch of partial solutions one reasoning step at a time.

    gen = StepGenerator(params, config=model_config, steps=StepConfig(delimiters=((nl,),), ...))
    state = gen.start(prompt_ids, copies=8, key=key)    # prefill each prompt once, 8 rows each
    state = gen.step(state, key)                         # every live row writes one step
    state = gen.select(state, parents)                   # beams: rows gathered (and copied)
    state = gen.step(state, key)                         # continues from the cached prefixes

Search over reasoning steps (beam search, DVTS, MCTS; "Scaling LLM Test-Time Compute
Optimally can be More Effective than Scaling Model Parameters", arXiv:2408.03314) needs
to stop every candidate at the end of its step, score it, keep some candidates, copy
others, and go on from where each stopped. Three choices make that cheap under jit:

1. One shared write slot. The KV cache holds R rows of P prompt slots plus C response
   slots, and every decode iteration writes slot `slot` of every row, like the sampler.
   A row whose step has ended (or whose solution is done) feeds its token with mask 0:
   its slot stays invisible to attention and rotary positions count real tokens only,
   so a row with holes computes exactly what its contiguous sequence would. The price is
   holes: a step costs every row as many slots as the batch's longest step.
2. Selection is a gather of cache rows (`select`): a beam copied M times is M rows
   holding the parent's keys and values. Nothing is prefilled again, and the next step
   starts from logits already computed after the parent's last token, so continuing
   appends only newly sampled tokens.
3. Fixed shapes. Rows are padded to a bucket (`row_buckets`, padding rows are not
   live), prompts to `prompt_buckets`, the response to `max_tokens` slots, a step to at
   most `step_tokens` iterations; from the second call with the same bucket nothing
   compiles (`compiles()` counts the jitted programs).

A step ends at a delimiter (a token sequence, kept in the step), at an eos id (the
solution is done) or after `step_tokens` tokens (cut, counted in `Counter.cut_steps`);
a row whose response reaches `max_tokens` is done (FinishReason.LENGTH).

Randomness: `step(state, key)` draws row r's n-th response token from
fold_in(fold_in(key, r), n), so copies of one parent diverge, a call depends only on
(key, state), and a row samples the same tokens whatever the other rows do (pruned,
finished or waiting).

Costs are counted on the host in a `Counter` per generator: tokens generated (live rows'
real tokens), tokens prefilled, rows gathered, scorer tokens (scorers add theirs), and
wall time per phase.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rewardjax.models import transformer
from rewardjax.models.config import ModelConfig
from rewardjax.models.transformer import KVCache
from rewardjax.sampling.config import DEFAULT_PROMPT_BUCKETS, FinishReason
from rewardjax.sampling.controls import select_tokens
from rewardjax.sampling.logprobs import left_align
from rewardjax.sampling.sampler import stop_table

# Powers of two and the halfway points above 1024: padding wastes at most a third of
# the rows of a large batch.
DEFAULT_ROW_BUCKETS = tuple(sorted({2 ** k for k in range(3, 17)}
                                   | {3 * 2 ** k for k in range(9, 15)}))


class StepDelimiterError(ValueError):
    """A step delimiter the tokenizer cannot produce as given."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class StepConfig:
    """How steps are generated.

    Attributes:
      delimiters: token-id sequences that end a step (kept as its last tokens); see
        `delimiter_ids` to build them from strings.
      eos_ids: ids that end the whole solution (kept as its last token).
      step_tokens: per-step token budget; a step still running after it is cut there.
      max_tokens: response slots per row (C); a row that fills them is done.
      max_steps: steps a search runs at most (rows still running afterwards are cut off).
      temperature, top_k, top_p: sampling controls (`SamplerConfig`'s meaning).
      pad_id: token written in slots that hold no real token.
      prompt_buckets, row_buckets: prompts and row counts are padded up to these.
      cache_dtype: KV cache dtype name; None: the params' dtype.
    """

    delimiters: tuple[tuple[int, ...], ...]
    eos_ids: tuple[int, ...]
    step_tokens: int = 32
    max_tokens: int = 256
    max_steps: int = 16
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    pad_id: int = 0
    prompt_buckets: tuple[int, ...] = DEFAULT_PROMPT_BUCKETS
    row_buckets: tuple[int, ...] = DEFAULT_ROW_BUCKETS
    cache_dtype: str | None = None

    def __post_init__(self):
        if isinstance(self.delimiters, (str, bytes)) or not self.delimiters:
            raise StepDelimiterError(
                f"StepConfig.delimiters must be a non-empty sequence of token-id sequences, "
                f"got {self.delimiters!r}; build them with delimiter_ids(tokenizer, ...)")
        try:
            delims = tuple(tuple(int(t) for t in d) for d in self.delimiters)
        except TypeError:
            raise StepDelimiterError(f"StepConfig.delimiters must hold token-id sequences, got "
                                     f"{self.delimiters!r}") from None
        if any(not d or min(d) < 0 for d in delims):
            raise StepDelimiterError(f"StepConfig.delimiters: every delimiter needs at least one "
                                     f"token id >= 0, got {delims}")
        object.__setattr__(self, "delimiters", delims)
        object.__setattr__(self, "eos_ids", tuple(int(t) for t in self.eos_ids))
        for name in ("prompt_buckets", "row_buckets"):
            b = tuple(int(x) for x in getattr(self, name))
            if not b or b[0] <= 0 or any(x >= y for x, y in zip(b, b[1:])):
                raise ValueError(f"StepConfig.{name} must be positive and increasing, got {b}")
            object.__setattr__(self, name, b)
        for name in ("step_tokens", "max_tokens", "max_steps"):
            v = getattr(self, name)
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"StepConfig.{name} must be a positive int, got {v!r}")
        if self.step_tokens > self.max_tokens:
            raise ValueError(f"StepConfig.step_tokens ({self.step_tokens}) exceeds max_tokens "
                             f"({self.max_tokens})")
        if not self.temperature >= 0:
            raise ValueError(f"StepConfig.temperature must be >= 0, got {self.temperature!r}")
        if not 0.0 < self.top_p <= 1.0 or self.top_k < 0:
            raise ValueError(f"StepConfig: top_k must be >= 0 and top_p in (0, 1], got "
                             f"{self.top_k}, {self.top_p}")

    @property
    def greedy(self) -> bool:
        return self.temperature == 0

    def check_vocab(self, vocab_size: int) -> None:
        """Raises `StepDelimiterError` for a delimiter or eos id outside the vocabulary."""
        for d in self.delimiters:
            if max(d) >= vocab_size:
                raise StepDelimiterError(f"step delimiter {d} has ids outside the policy's "
                                         f"vocabulary [0, {vocab_size})")
        if any(t >= vocab_size for t in self.eos_ids):
            raise StepDelimiterError(f"StepConfig.eos_ids {self.eos_ids} are outside the "
                                     f"vocabulary [0, {vocab_size})")


def delimiter_ids(tokenizer, delimiter: str | Sequence[int]) -> tuple[int, ...]:
    """A step delimiter as token ids, checked against the tokenizer's vocabulary.

    A string must be one token of the vocabulary as given (what the tokenizer's own
    encoding of the string yields, e.g. "\\n" for byte-level BPEs, or a special token
    such as "<|step|>"): a string that encodes to several tokens, or to a token that
    decodes to something else, is split differently inside text than alone, so the
    sampler could never match it reliably. Ids are checked to be in the vocabulary.
    """
    vocab = len(tokenizer)
    if isinstance(delimiter, str):
        ids = tokenizer(delimiter, add_special_tokens=False)["input_ids"]
        if len(ids) != 1 or tokenizer.decode(ids) != delimiter:
            raise StepDelimiterError(
                f"step delimiter {delimiter!r} is not a token of the tokenizer's vocabulary "
                f"(it encodes to {list(ids)}); use a delimiter that is one token, or give "
                f"its token ids")
        return (int(ids[0]),)
    ids = tuple(int(t) for t in delimiter)
    if not ids or min(ids) < 0 or max(ids) >= vocab:
        raise StepDelimiterError(f"step delimiter ids {ids} are not in the tokenizer's "
                                 f"vocabulary [0, {vocab})")
    return ids


def bucket(n: int, buckets: Sequence[int], what: str) -> int:
    for b in buckets:
        if n <= b:
            return b
    raise ValueError(f"{n} {what} exceed the largest bucket {buckets[-1]}")


class StepState(NamedTuple):
    """R partial solutions (rows) with their caches.

    cache: per-layer KVCache over S = P + C slots; cache.mask[:, P:] marks real response
      tokens (a row has holes where it was waiting for others).
    logits: [R, V] float32 next-token logits after each row's last real token.
    prompt_tokens, prompt_mask: [R, P] each row's prompt, left-aligned.
    tokens: [R, C] response slot tokens (pad where the slot is a hole).
    logprobs: [R, C] float32 log-prob of each sampled token (`select_tokens`'s: at the
      sampling temperature, before truncation); 0 where no token was sampled.
    step_end: [R, C] the slot holds the last token of a step.
    num_steps: [R] int32 steps completed.
    done: [R] the solution ended (eos or out of slots); a done row generates nothing.
    finish_reason: [R] int32 `FinishReason` (0 while running).
    lengths: [R] int32 real response tokens.
    live: [R] the row is a real candidate (False: bucket padding or pruned).
    source: [R] int32 the prompt each row answers (index into `start`'s prompts).
    slot: [] int32 the next response slot every row writes.
    """

    cache: KVCache
    logits: jax.Array
    prompt_tokens: jax.Array
    prompt_mask: jax.Array
    tokens: jax.Array
    logprobs: jax.Array
    step_end: jax.Array
    num_steps: jax.Array
    done: jax.Array
    finish_reason: jax.Array
    lengths: jax.Array
    live: jax.Array
    source: jax.Array
    slot: jax.Array

    @property
    def num_rows(self) -> int:
        return self.logits.shape[0]

    @property
    def real(self) -> jax.Array:
        """[R, C] slots holding real response tokens."""
        P = self.prompt_tokens.shape[1]
        return self.cache.mask[:, P:]


@dataclasses.dataclass
class Counter:
    """What a generator (and the scorers reading its states) has spent, cumulatively.

    generated: response tokens sampled for live rows. prefilled: prompt tokens run
    through the policy. scored: tokens run through scorers. gathered: rows copied by
    `select`. cut_steps: steps cut at `step_tokens`. seconds_*: wall time of decoding,
    scoring and gathering (each call synchronised, so the split is honest).
    """

    generated: int = 0
    prefilled: int = 0
    scored: int = 0
    gathered: int = 0
    cut_steps: int = 0
    decode_iterations: int = 0
    seconds_decode: float = 0.0
    seconds_score: float = 0.0
    seconds_gather: float = 0.0
    seconds_prefill: float = 0.0

    def snapshot(self) -> "Counter":
        return dataclasses.replace(self)

    def since(self, before: "Counter") -> dict[str, float]:
        """Each field's increase since `before`."""
        return {f.name: getattr(self, f.name) - getattr(before, f.name)
                for f in dataclasses.fields(self)}


# ----------------------------------------------------------------------------- jitted pieces


@functools.partial(jax.jit, static_argnames=("config", "steps"))
def _start(params, tokens_bp, mask_bp, source_r, live_r, *, config: ModelConfig,
           steps: StepConfig) -> StepState:
    tokens_bp, mask_bp = left_align(tokens_bp.astype(jnp.int32), mask_bp)
    B, P = tokens_bp.shape
    C = steps.max_tokens
    dtype = jnp.dtype(steps.cache_dtype) if steps.cache_dtype else params["embed"].dtype
    cache = KVCache.init(config, B, P, dtype, per_layer=True)
    hidden_bpd, cache = transformer.apply(params, tokens_bp, config=config, mask_bt=mask_bp,
                                          cache=cache, output="hidden")
    # Only the last position predicts the first response token.
    logits_bv = transformer.project(params, hidden_bpd[:, -1:], config=config)[:, 0]

    def rows(x, length_axis=None):
        x = jnp.take(x, source_r, axis=0)
        if length_axis is None:
            return x
        pad = [(0, 0)] * x.ndim
        pad[length_axis] = (0, C)
        return jnp.pad(x, pad)

    cache = KVCache(k=tuple(rows(k, 2) for k in cache.k), v=tuple(rows(v, 2) for v in cache.v),
                    mask=rows(cache.mask, 1), index=cache.index)
    R = source_r.shape[0]
    return StepState(
        cache=cache, logits=rows(logits_bv), prompt_tokens=rows(tokens_bp),
        prompt_mask=rows(mask_bp), tokens=jnp.full((R, C), steps.pad_id, jnp.int32),
        logprobs=jnp.zeros((R, C), jnp.float32),
        step_end=jnp.zeros((R, C), bool), num_steps=jnp.zeros((R,), jnp.int32),
        done=~live_r, finish_reason=jnp.zeros((R,), jnp.int32),
        lengths=jnp.zeros((R,), jnp.int32), live=live_r, source=source_r.astype(jnp.int32),
        slot=jnp.zeros((), jnp.int32))


class _Loop(NamedTuple):
    state: StepState
    active: jax.Array  # [R] still inside this step
    recent: jax.Array  # [R, M] this step's last M tokens (-1 before any)
    n: jax.Array  # [] iterations this call


@functools.partial(jax.jit, static_argnames=("config", "steps"), donate_argnames=("state",))
def _step(params, state: StepState, key, *, config: ModelConfig, steps: StepConfig
          ) -> tuple[StepState, jax.Array]:
    R, C = state.tokens.shape
    table_qm, valid_qm = stop_table(steps.delimiters)
    M = table_qm.shape[1]
    row_keys = jax.vmap(jax.random.fold_in, in_axes=(None, 0))(key, jnp.arange(R))

    def cond(lp: _Loop):
        return jnp.any(lp.active) & (lp.n < steps.step_tokens) & (lp.state.slot < C)

    def body(lp: _Loop):
        st, active = lp.state, lp.active
        s = st.slot
        # A row's draw depends on (key, row, its own token count), not on the shared
        # slot: pruning other rows does not change what a surviving row samples.
        keys_r = jax.vmap(jax.random.fold_in)(row_keys, st.lengths)
        token_r, logp_r = select_tokens(st.logits, keys_r, temperature=steps.temperature,
                                        top_k=steps.top_k, top_p=steps.top_p)
        token_r = jnp.where(active, token_r, steps.pad_id)
        recent = jnp.where(active[:, None],
                           jnp.concatenate([lp.recent[:, 1:], token_r[:, None]], axis=1),
                           lp.recent)
        match_rqm = (recent[:, None, :] == table_qm[None]) | ~valid_qm[None]
        is_delim = jnp.any(jnp.all(match_rqm, axis=-1), axis=-1) & active
        is_eos = jnp.zeros_like(active)
        for eos in steps.eos_ids:
            is_eos |= token_r == eos
        is_eos &= active
        # Inactive rows feed their pad with mask 0: the slot stays a hole for them.
        hidden, cache = transformer.apply(params, token_r[:, None], config=config,
                                          mask_bt=active[:, None], cache=st.cache,
                                          output="hidden")
        logits = transformer.project(params, hidden, config=config)[:, 0]
        ended = is_delim | is_eos
        st = st._replace(
            cache=cache, logits=jnp.where(active[:, None], logits, st.logits),
            tokens=jax.lax.dynamic_update_slice(st.tokens, token_r[:, None], (0, s)),
            logprobs=jax.lax.dynamic_update_slice(
                st.logprobs, jnp.where(active, logp_r, 0.0)[:, None], (0, s)),
            step_end=jax.lax.dynamic_update_slice(st.step_end, ended[:, None], (0, s)),
            num_steps=st.num_steps + ended.astype(jnp.int32),
            done=st.done | is_eos,
            finish_reason=jnp.where(is_eos, int(FinishReason.EOS), st.finish_reason),
            lengths=st.lengths + active.astype(jnp.int32), slot=s + 1)
        return _Loop(state=st, active=active & ~ended, recent=recent, n=lp.n + 1)

    active = state.live & ~state.done
    lp = jax.lax.while_loop(cond, body, _Loop(state=state, active=active,
                                               recent=jnp.full((R, M), -1, jnp.int32),
                                               n=jnp.zeros((), jnp.int32)))
    st, still = lp.state, lp.active
    # A step still running was cut: at the step budget (it ends at its last token) or
    # because the response ran out of slots (the row is done).
    last = jnp.clip(st.slot - 1, 0, C - 1)
    cut_end = st.step_end.at[:, last].max(still & (lp.n > 0))
    full = still & (st.slot >= C)
    st = st._replace(step_end=cut_end, num_steps=st.num_steps + still.astype(jnp.int32),
                     done=st.done | full,
                     finish_reason=jnp.where(full, int(FinishReason.LENGTH), st.finish_reason))
    return st, jnp.stack([jnp.sum(still & ~full), lp.n])


@jax.jit
def _gather(state: StepState, index_r, live_r) -> StepState:
    take = lambda x: jnp.take(x, index_r, axis=0)  # noqa: E731
    c = state.cache
    cache = KVCache(k=tuple(map(take, c.k)), v=tuple(map(take, c.v)), mask=take(c.mask),
                    index=c.index)
    fields = {f: take(getattr(state, f)) for f in
              ("logits", "prompt_tokens", "prompt_mask", "tokens", "logprobs", "step_end",
               "num_steps", "done", "finish_reason", "lengths", "source")}
    live = take(state.live) & live_r
    return state._replace(cache=cache, live=live, **fields)


@functools.partial(jax.jit, donate_argnames=("store",))
def _put(store: StepState, rows: StepState, dest_r) -> StepState:
    # Rows whose destination is out of range (bucket padding) are dropped.
    put = lambda s, x: s.at[dest_r].set(x, mode="drop")  # noqa: E731
    c, d = store.cache, rows.cache
    cache = KVCache(k=tuple(map(put, c.k, d.k)), v=tuple(map(put, c.v, d.v)),
                    mask=put(c.mask, d.mask), index=d.index)
    fields = {f: put(getattr(store, f), getattr(rows, f)) for f in
              ("logits", "prompt_tokens", "prompt_mask", "tokens", "logprobs", "step_end",
               "num_steps", "done", "finish_reason", "lengths", "live", "source")}
    # The rows were stepped past the store's slot; the store's other rows get holes there.
    return store._replace(cache=cache, slot=rows.slot, **fields)


@jax.jit
def _with_live(state: StepState, live_r) -> StepState:
    return state._replace(live=state.live & live_r)


# ----------------------------------------------------------------------------- host view


@dataclasses.dataclass(frozen=True)
class Candidates:
    """A host copy of a state's rows: each row's steps as token-id arrays.

    steps[r]: list of [n_j] int arrays (each step's tokens, delimiter or eos included).
    done, live, finish_reason, source, num_steps, lengths: [R] as in `StepState`.
    """

    steps: list[list[np.ndarray]]
    done: np.ndarray
    live: np.ndarray
    finish_reason: np.ndarray
    source: np.ndarray
    num_steps: np.ndarray
    lengths: np.ndarray
    prompts: list[np.ndarray]

    def response(self, r: int) -> np.ndarray:
        return np.concatenate(self.steps[r]) if self.steps[r] else np.zeros((0,), np.int32)


def candidates(state: StepState) -> Candidates:
    """The state's rows on the host (one transfer)."""
    P = state.prompt_tokens.shape[1]
    tokens, mask, ends, pt, pm, rest = jax.device_get(
        (state.tokens, state.cache.mask[:, P:], state.step_end, state.prompt_tokens,
         state.prompt_mask, (state.done, state.live, state.finish_reason, state.source,
                             state.num_steps, state.lengths)))
    steps = []
    for r in range(tokens.shape[0]):
        real = np.flatnonzero(mask[r])
        toks, cuts = tokens[r, real], np.flatnonzero(ends[r, real]) + 1
        pieces = np.split(toks, cuts)
        steps.append([p for p in pieces if p.size])
    prompts = [pt[r][pm[r].astype(bool)] for r in range(pt.shape[0])]
    done, live, reason, source, num_steps, lengths = rest
    return Candidates(steps=steps, done=done, live=live, finish_reason=reason, source=source,
                      num_steps=num_steps, lengths=lengths, prompts=prompts)


# ----------------------------------------------------------------------------- generator


class StepGenerator:
    """Step-wise generation for one policy; see the module docstring.

    Args:
      params: the policy's parameters (placed as the caller wants; the jitted pieces
        follow the params' shardings).
      config: its `ModelConfig`.
      steps: the `StepConfig` (checked against the vocabulary here).
    """

    def __init__(self, params, *, config: ModelConfig, steps: StepConfig):
        steps.check_vocab(config.vocab_size)
        if steps.top_k > config.vocab_size:
            raise ValueError(f"StepConfig.top_k={steps.top_k} exceeds vocab_size="
                             f"{config.vocab_size}")
        self.params, self.config, self.steps = params, config, steps
        self.counter = Counter()

    # -- the three operations

    def start(self, prompts: Sequence[Sequence[int]], *, copies: int = 1) -> StepState:
        """Prefills each prompt once and gives it `copies` rows (row b*copies + c)."""
        if not prompts:
            raise ValueError("StepGenerator.start: no prompts given")
        if copies < 1:
            raise ValueError(f"copies must be >= 1, got {copies}")
        rows = [np.asarray(p, np.int64).reshape(-1) for p in prompts]
        if any(r.size == 0 for r in rows):
            raise ValueError(f"prompts {[i for i, r in enumerate(rows) if not r.size]} are empty")
        if max(int(r.max()) for r in rows) >= self.config.vocab_size:
            raise ValueError(f"prompt token ids must be < vocab_size={self.config.vocab_size}")
        P = bucket(max(len(r) for r in rows), self.steps.prompt_buckets, "prompt tokens")
        B = bucket(len(rows), self.steps.row_buckets, "prompts")
        tokens = np.zeros((B, P), np.int32)
        mask = np.zeros((B, P), bool)
        for b, r in enumerate(rows):
            tokens[b, P - len(r):] = r
            mask[b, P - len(r):] = True
        mask[len(rows):, -1] = True  # padding prompts hold one token so attention is defined
        n = len(rows) * copies
        R = bucket(n, self.steps.row_buckets, "rows")
        source = np.zeros((R,), np.int32)
        source[:n] = np.repeat(np.arange(len(rows)), copies)
        live = np.arange(R) < n
        t0 = time.perf_counter()
        state = _start(self.params, tokens, mask, source, live, config=self.config,
                       steps=self.steps)
        jax.block_until_ready(state.logits)
        self.counter.seconds_prefill += time.perf_counter() - t0
        self.counter.prefilled += int(sum(len(r) for r in rows))
        return state

    def step(self, state: StepState, key: jax.Array | None = None) -> StepState:
        """Every live, unfinished row generates one step. `state` is donated."""
        if key is None:
            if not self.steps.greedy:
                raise ValueError(f"sampling at temperature {self.steps.temperature} needs a key")
            key = jax.random.key(0)
        before = np.asarray(jax.device_get(state.lengths))  # `state` is donated below
        t0 = time.perf_counter()
        state, stats = _step(self.params, state, key, config=self.config, steps=self.steps)
        after, stats, live = jax.device_get((state.lengths, stats, state.live))
        self.counter.seconds_decode += time.perf_counter() - t0
        self.counter.generated += int(np.sum((after - before)[live]))
        self.counter.cut_steps += int(stats[0])
        self.counter.decode_iterations += int(stats[1])
        return state

    def select(self, state: StepState, index: Sequence[int], *,
               live: Sequence[bool] | None = None) -> StepState:
        """The rows `index` (repeats copy a row), padded to a row bucket with dead rows.

        `live` (same length as `index`) marks rows to keep generating; False rows are
        carried but never extended (pruned candidates).
        """
        index = np.asarray(index, np.int32).reshape(-1)
        if index.size == 0:
            raise ValueError("select: no rows given")
        if index.min() < 0 or index.max() >= state.num_rows:
            raise ValueError(f"select: row indices must be in [0, {state.num_rows}), got "
                             f"[{index.min()}, {index.max()}]")
        keep = np.ones(index.shape, bool) if live is None else np.asarray(live, bool)
        if keep.shape != index.shape:
            raise ValueError(f"select: live has shape {keep.shape}, index {index.shape}")
        R = bucket(index.size, self.steps.row_buckets, "rows")
        full = np.zeros((R,), np.int32)
        full[:index.size] = index
        mask = np.zeros((R,), bool)
        mask[:index.size] = keep
        t0 = time.perf_counter()
        out = _gather(state, full, mask)
        jax.block_until_ready(out.logits)
        self.counter.seconds_gather += time.perf_counter() - t0
        self.counter.gathered += int(index.size)
        return out

    def put(self, store: StepState, rows: StepState, dest: Sequence[int]) -> StepState:
        """`store` with its rows `dest` replaced by the first len(dest) rows of `rows`
        (both states must share the slot: `rows` was gathered from `store` and stepped
        together with it, or stepped as long). `store` is donated."""
        dest = np.asarray(dest, np.int32).reshape(-1)
        if dest.size > rows.num_rows:
            raise ValueError(f"put: {dest.size} destinations for {rows.num_rows} rows")
        full = np.full((rows.num_rows,), store.num_rows, np.int32)  # out of range: dropped
        full[:dest.size] = dest
        t0 = time.perf_counter()
        out = _put(store, rows, full)
        jax.block_until_ready(out.logits)
        self.counter.seconds_gather += time.perf_counter() - t0
        self.counter.gathered += int(dest.size)
        return out

    def prune(self, state: StepState, keep: Sequence[bool]) -> StepState:
        """Marks rows not kept as dead (no gather; they stop generating)."""
        keep = np.asarray(keep, bool)
        if keep.shape != (state.num_rows,):
            raise ValueError(f"prune: keep has shape {keep.shape}, expected ({state.num_rows},)")
        return _with_live(state, keep)

    def compiles(self) -> int:
        """Programs compiled so far by the jitted pieces (all generators share them)."""
        return sum(f._cache_size() for f in (_start, _step, _gather, _put, _with_live))


def running(state: StepState) -> np.ndarray:
    """[R] host bool: live rows not yet done."""
    live, done = jax.device_get((state.live, state.done))
    return live & ~done
