"""Multi-turn rollouts: the policy writes, calls a tool, reads the result, goes on.

    driver = MultiTurnDriver(model_config=cfg, tokenizer=tok, env=env,
                             config=RolloutConfig(steps=StepConfig(delimiters=..., ...),
                                                  max_turns=4, observation_tokens=48))
    rollouts = driver.run(params, records, key, copies=8)   # 8 rollouts per record

One turn for every rollout still running, all in step:

1. generate until a tool-call delimiter, an eos id or the turn budget
   (`StepGenerator.step`: the KV cache is kept, nothing is prefilled again);
2. decode each waiting rollout's new text and hand all of them to `env.step` in one
   call (run on a worker thread with a time limit: an environment that does not
   answer in `env_timeout_s` ends those rollouts, counted);
3. append each continuing rollout's observation tokens to its cached sequence
   (`append_tokens`: one forward pass over only the new tokens, K slots wide for
   every row, rows with fewer tokens leave holes);
4. mark rollouts that ended (the environment said done, eos, turn budget, no room left)
   as no longer live, so they generate nothing more.

Rollouts of one batch end at different turns; a row that has ended leaves holes in
the shared slots while the others continue (see `rewardjax.sampling.stepwise`: holes
are masked out of attention and rotary positions count real tokens only, so a row
computes what its contiguous sequence would).

The result (`Rollouts`) has each rollout's response made contiguous: the model's
tokens and the observations in order, with `loss_mask` True on the model's own tokens
only (observation and prompt tokens are context, never trained on) and `logprobs` the
behaviour policy's log-probs of those tokens as sampled, the `old_logp` of the RL
ratio; `completion_logprobs` on the final sequences recomputes them.

Token budget: the response has `steps.max_tokens` slots shared by the batch, holes
included, so a rollout holds at most that many tokens; a rollout that has no room for
another observation and a token ends (EndReason.TOKENS). Shapes are fixed by the
configs (row and prompt buckets, C response slots, K observation slots): from the
second batch of the same buckets nothing compiles (`compiles()`).

Randomness: turn t's tokens are drawn with fold_in(key, t) (and the generator's
per-row, per-token folds), so a rollout depends only on (key, its row, its own
tokens and observations).
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import enum
import functools
import time
from typing import Any, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rewardjax.data.encoding import tokenize
from rewardjax.envs.base import Environment, Transition, Turn
from rewardjax.models import transformer
from rewardjax.models.config import ModelConfig
from rewardjax.sampling.config import FinishReason
from rewardjax.sampling.stepwise import StepConfig, StepGenerator, StepState


class EndReason(enum.IntEnum):
    """Why a rollout ended."""

    RUNNING = 0
    DONE = 1  # the environment said done
    EOS = 2  # the model wrote an eos id (the environment still scored the turn)
    TURNS = 3  # `max_turns` turns taken
    TOKENS = 4  # no response slots left for another observation and a token
    TIMEOUT = 5  # the environment did not answer within `env_timeout_s`


@dataclasses.dataclass(frozen=True, kw_only=True)
class RolloutConfig:
    """How multi-turn rollouts run.

    Attributes:
      steps: the step-wise generator's config: `delimiters` end a turn (the tool-call
        closing tokens), `step_tokens` is the per-turn budget of model tokens (a turn
        still running is cut there and handed to the environment as it is),
        `max_tokens` the response slots (the token budget, holes included).
      max_turns: model turns per rollout at most.
      observation_tokens: K, tokens an observation may take; a longer one keeps its
        first K tokens (counted in the metrics as `env/truncated_observations`).
      env_timeout_s: wall time one batched `env.step` call may take.
    """

    steps: StepConfig
    max_turns: int = 4
    observation_tokens: int = 32
    env_timeout_s: float = 60.0

    def __post_init__(self):
        if not isinstance(self.steps, StepConfig):
            raise TypeError(f"RolloutConfig.steps must be a StepConfig, got "
                            f"{type(self.steps).__name__}")
        for name in ("max_turns", "observation_tokens"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"RolloutConfig.{name} must be a positive int, got {v!r}")
        if not self.env_timeout_s > 0:
            raise ValueError(f"RolloutConfig.env_timeout_s must be > 0, got "
                             f"{self.env_timeout_s!r}")
        if self.steps.max_tokens < self.steps.step_tokens + self.observation_tokens + 1:
            raise ValueError(
                f"RolloutConfig: steps.max_tokens={self.steps.max_tokens} leaves no room for "
                f"a second turn (step_tokens {self.steps.step_tokens} + observation_tokens "
                f"{self.observation_tokens} + 1)")


def as_mapping(record) -> dict[str, Any]:
    """A record as the mapping environments read: dataclass records (`PromptWithAnswer`)
    by field, mappings copied."""
    if dataclasses.is_dataclass(record):
        return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
    return dict(record)


class Rollouts(NamedTuple):
    """N = len(records) * copies rollouts (row b*copies + c answers record b).

    prompt_tokens, prompt_mask: [N, P] each prompt, left-padded.
    tokens: [N, C] the response (model turns and observations in order), right-padded.
    mask: [N, C] real response tokens.
    loss_mask: [N, C] the model's own tokens (False on observations and padding).
    logprobs: [N, C] float32 sampling log-probs of the model's tokens, 0 elsewhere.
    turns: [N] int32 model turns taken.
    rewards: [N] float32 sum of the turns' rewards.
    turn_rewards: [N, max_turns] float32 each turn's reward (0 after the end).
    end_reason: [N] int32 `EndReason`.
    source: [N] int32 the record each rollout answers.
    transcripts: N tuples (model text, observation, model text, ...), as decoded.
    infos: N dicts, each `Transition.info` key summed over the rollout's turns.
    """

    prompt_tokens: np.ndarray
    prompt_mask: np.ndarray
    tokens: np.ndarray
    mask: np.ndarray
    loss_mask: np.ndarray
    logprobs: np.ndarray
    turns: np.ndarray
    rewards: np.ndarray
    turn_rewards: np.ndarray
    end_reason: np.ndarray
    source: np.ndarray
    transcripts: list
    infos: list

    def sequences(self) -> tuple[np.ndarray, np.ndarray]:
        """[N, P + C] prompt then response tokens and their mask (the RL batch layout)."""
        return (np.concatenate([self.prompt_tokens, self.tokens], axis=1),
                np.concatenate([self.prompt_mask, self.mask], axis=1))


# ----------------------------------------------------------------------------- appending


@functools.partial(jax.jit, static_argnames=("config",), donate_argnames=("state",))
def _append(params, state: StepState, tokens_rk, mask_rk, *, config: ModelConfig) -> StepState:
    n_r = jnp.sum(mask_rk, axis=1, dtype=jnp.int32)
    hidden, cache = transformer.apply(params, tokens_rk, config=config, mask_bt=mask_rk,
                                      cache=state.cache, output="hidden")
    # Each row's new tokens are its first n_r of the K slots; its next token is
    # predicted after the last of them (rows with none keep their logits).
    last = jnp.maximum(n_r - 1, 0)
    hidden_r1d = jnp.take_along_axis(hidden, last[:, None, None], axis=1)
    logits = transformer.project(params, hidden_r1d, config=config)[:, 0]
    s = state.slot
    return state._replace(
        cache=cache, logits=jnp.where((n_r > 0)[:, None], logits, state.logits),
        tokens=jax.lax.dynamic_update_slice(state.tokens, tokens_rk, (0, s)),
        lengths=state.lengths + n_r, slot=s + tokens_rk.shape[1])


def append_tokens(gen: StepGenerator, state: StepState, new: Sequence[Sequence[int]], *,
                  width: int) -> StepState:
    """`state` with each row's `new[r]` tokens appended after its last real token.

    Only the new tokens run through the policy (one forward pass over `width` slots
    for every row, written into the KV cache at the shared slot); a row with fewer than
    `width` new tokens (or none) leaves holes, which attention and rotary positions
    skip. The next `gen.step` continues every row from its appended tokens. The new
    tokens are context: they get no sampling log-prob (0) and are counted as
    prefilled in `gen.counter`. `state` is donated.

    Args:
      gen: the generator that made `state`.
      state: R rows.
      new: R token-id sequences (rows past len(new) get none).
      width: K, the slots appended (fixed so the program compiles once).
    """
    R, C = state.tokens.shape
    if len(new) > R:
        raise ValueError(f"append_tokens: {len(new)} token lists for {R} rows")
    tokens = np.full((R, width), gen.steps.pad_id, np.int32)
    mask = np.zeros((R, width), bool)
    for r, ids in enumerate(new):
        ids = np.asarray(ids, np.int64).reshape(-1)
        if ids.size > width:
            raise ValueError(f"append_tokens: row {r} has {ids.size} tokens, width is {width}")
        if ids.size and (ids.min() < 0 or ids.max() >= gen.config.vocab_size):
            raise ValueError(f"append_tokens: row {r} has token ids outside [0, "
                             f"{gen.config.vocab_size})")
        tokens[r, :ids.size] = ids
        mask[r, :ids.size] = True
    slot = int(jax.device_get(state.slot))
    if slot + width > C:
        raise ValueError(f"append_tokens: {width} slots from slot {slot} exceed the "
                         f"{C} response slots (StepConfig.max_tokens)")
    t0 = time.perf_counter()
    state = _append(gen.params, state, tokens, mask, config=gen.config)
    jax.block_until_ready(state.logits)
    gen.counter.seconds_prefill += time.perf_counter() - t0
    gen.counter.prefilled += int(mask.sum())
    return state


def compiles() -> int:
    """Programs compiled so far by `append_tokens` (add `StepGenerator.compiles()`)."""
    return _append._cache_size()


# ----------------------------------------------------------------------------- the driver


class MultiTurnDriver:
    """Runs an `Environment` with a policy, all rollouts of a batch in step.

    Args:
      model_config: the policy's `ModelConfig`.
      tokenizer: a Hugging Face-style tokenizer (`tokenizer(text,
        add_special_tokens=False)`, `decode`); model text is decoded with special
        tokens kept, so the environment sees the delimiter and any eos as written.
      env: the environment.
      config: the `RolloutConfig`.
    """

    def __init__(self, *, model_config: ModelConfig, tokenizer, env: Environment,
                 config: RolloutConfig):
        if not isinstance(env, Environment):
            raise TypeError(f"env must be an Environment, got {type(env).__name__}")
        config.steps.check_vocab(model_config.vocab_size)
        self.model_config, self.tokenizer, self.env, self.config = (
            model_config, tokenizer, env, config)
        self.generator: StepGenerator | None = None

    def compiles(self) -> int:
        """Programs compiled so far by the generator's pieces and `append_tokens`."""
        gen = self.generator or StepGenerator({}, config=self.model_config,
                                              steps=self.config.steps)
        return gen.compiles() + compiles()

    def run(self, params, records: Sequence[Mapping[str, Any]], key: jax.Array | None = None,
            *, copies: int = 1) -> tuple[Rollouts, dict[str, float]]:
        """`copies` rollouts of each record; returns them and metrics (env/..., turns/...)."""
        cfg, steps = self.config, self.config.steps
        if key is None:
            if not steps.greedy:
                raise ValueError(f"sampling at temperature {steps.temperature} needs a key")
            key = jax.random.key(0)
        records = [as_mapping(r) for r in records]
        prompts = [tokenize(self.tokenizer, self.env.reset(r)) for r in records]
        gen = self.generator = StepGenerator(params, config=self.model_config, steps=steps)
        state = gen.start(prompts, copies=copies)
        N, R, C, K = len(records) * copies, state.num_rows, steps.max_tokens, cfg.observation_tokens
        source = np.repeat(np.arange(len(records)), copies)
        running = np.arange(R) < N
        observed = np.zeros((R, C), bool)
        turns = np.zeros((N,), np.int32)
        turn_rewards = np.zeros((N, cfg.max_turns), np.float32)
        end = np.zeros((N,), np.int32)
        transcripts: list[list[str]] = [[] for _ in range(N)]
        metrics = {"env/seconds": 0.0, "env/timeouts": 0.0, "env/truncated_observations": 0.0,
                   "env/observation_tokens": 0.0}
        infos: list[dict[str, float]] = [{} for _ in range(N)]
        slot = 0
        for t in range(cfg.max_turns):
            if not running.any():
                break
            state = gen.step(state, jax.random.fold_in(key, t))
            # Whole arrays to the host, sliced there: a device slice per turn would
            # compile one small program per slot offset.
            tokens, real, done, reason, new_slot = jax.device_get(
                (state.tokens, state.real, state.done, state.finish_reason, state.slot))
            waiting = np.flatnonzero(running)
            texts = [self.tokenizer.decode(tokens[r, slot:][real[r, slot:]].tolist(),
                                           skip_special_tokens=False) for r in waiting]
            batch = [Turn(rollout=int(r), record=records[source[r]], turn=t, text=text,
                          transcript=tuple(transcripts[r])) for r, text in zip(waiting, texts)]
            out, seconds = self._env_step(batch)
            metrics["env/seconds"] += seconds
            slot = int(new_slot)
            new: list[list[int]] = [[] for _ in range(R)]
            for r, text, tr in zip(waiting, texts, out or [None] * len(waiting)):
                turns[r] = t + 1
                transcripts[r].append(text)
                if tr is None:
                    end[r] = EndReason.TIMEOUT
                    metrics["env/timeouts"] += 1
                    continue
                turn_rewards[r, t] = tr.reward
                for k, v in tr.info.items():
                    infos[r][k] = infos[r].get(k, 0.0) + float(v)
                if tr.done:
                    end[r] = EndReason.DONE
                elif done[r]:
                    end[r] = (EndReason.EOS if reason[r] == int(FinishReason.EOS)
                              else EndReason.TOKENS)
                elif t + 1 == cfg.max_turns:
                    end[r] = EndReason.TURNS
                elif slot + K + 1 > C:
                    end[r] = EndReason.TOKENS
                else:
                    ids = tokenize(self.tokenizer, tr.observation).tolist()
                    if len(ids) > K:
                        metrics["env/truncated_observations"] += 1
                        ids = ids[:K]
                    new[r] = ids
                    transcripts[r].append(self.tokenizer.decode(ids, skip_special_tokens=False))
            running[:N] &= end == EndReason.RUNNING
            if running.any():
                for r in np.flatnonzero(running):
                    observed[r, slot:slot + len(new[r])] = True
                metrics["env/observation_tokens"] += float(sum(map(len, new)))
                state = append_tokens(gen, state, new, width=K)
                slot += K
            state = gen.prune(state, running)
        return self._collect(state, observed, N, turns, turn_rewards, end, source, transcripts,
                             metrics, infos)

    def _env_step(self, batch: list[Turn]) -> tuple[list[Transition] | None, float]:
        """The environment's transitions for `batch`, or None past the time limit."""
        t0 = time.perf_counter()
        # A worker thread so the driver can stop waiting; a call that overruns keeps its
        # thread until it returns (sandboxed programs have their own limits).
        pool = concurrent.futures.ThreadPoolExecutor(max_workers=1)
        try:
            out = pool.submit(self.env.step, batch).result(timeout=self.config.env_timeout_s)
        except concurrent.futures.TimeoutError:
            return None, time.perf_counter() - t0
        finally:
            pool.shutdown(wait=False)
        out = list(out)
        if len(out) != len(batch):
            raise ValueError(f"{type(self.env).__name__}.step returned {len(out)} transitions "
                             f"for {len(batch)} turns")
        for i, tr in enumerate(out):
            if not isinstance(tr, Transition):
                raise TypeError(f"{type(self.env).__name__}.step returned a "
                                f"{type(tr).__name__} at {i}; expected a Transition")
        return out, time.perf_counter() - t0

    def _collect(self, state, observed, N, turns, turn_rewards, end, source, transcripts,
                 metrics, infos) -> tuple[Rollouts, dict[str, float]]:
        tokens, real, logp, p_tok, p_mask = jax.device_get(
            (state.tokens, state.real, state.logprobs, state.prompt_tokens, state.prompt_mask))
        C = tokens.shape[1]
        out_tok = np.full((N, C), self.config.steps.pad_id, np.int32)
        out_mask = np.zeros((N, C), bool)
        loss_mask = np.zeros((N, C), bool)
        out_logp = np.zeros((N, C), np.float32)
        for r in range(N):
            idx = np.flatnonzero(real[r])
            n = idx.size
            out_tok[r, :n] = tokens[r, idx]
            out_mask[r, :n] = True
            loss_mask[r, :n] = ~observed[r, idx]
            out_logp[r, :n] = np.where(loss_mask[r, :n], logp[r, idx], 0.0)
        rollouts = Rollouts(
            prompt_tokens=np.asarray(p_tok[:N], np.int32), prompt_mask=np.asarray(p_mask[:N], bool),
            tokens=out_tok, mask=out_mask, loss_mask=loss_mask, logprobs=out_logp, turns=turns,
            rewards=turn_rewards.sum(axis=1), turn_rewards=turn_rewards, end_reason=end,
            source=source.astype(np.int32), transcripts=[tuple(t) for t in transcripts],
            infos=infos)
        for k in sorted({k for i in infos for k in i}):
            metrics[k] = sum(i.get(k, 0.0) for i in infos) / max(N, 1)
        metrics["turns/mean"] = float(turns.mean()) if N else 0.0
        for reason in EndReason:
            if reason is not EndReason.RUNNING:
                metrics[f"end/{reason.name.lower()}"] = float(np.mean(end == reason)) if N else 0.0
        return rollouts, metrics
