"""Process advantages under a prover policy (PAV) as the RL loop's dense reward.

"Rewarding Progress: Scaling Automated Process Verifiers for LLM Reasoning" (Setlur et
al., arXiv:2410.08146): the process reward of step h is its *progress*, the change in a
prover policy μ's chance of reaching a correct answer across the step,

    A^μ(s_h, a_h) = V^μ(s_{h+1}) − V^μ(s_h),       V^μ(s) = P_μ[correct | prefix s]

and the policy is trained on the "effective reward" Q^π(s_h, a_h) + α·A^μ(s_h, a_h):
every token of step h gets the outcome advantage plus α·A^μ_h. The paper's good provers
are Best-of-K policies of the base policy, whose value follows from the base's,

    V^{BoK(μ)}(s) = 1 − (1 − V^μ(s))^K.

Here V^μ is a Monte Carlo estimate (as in Math-Shepherd's labels, `data.monte_carlo`):
`rollouts` continuations of each distinct prefix sampled from the frozen prover (the
SFT policy), batched on the trainer's mesh; the state after the last step is the
solution's own outcome (no rollouts). The paper trains a PAV model to predict A^μ;
the estimate is what that model is trained on, used directly.

Steps are the completion's lines: a step ends at a `step_separator` token (one token in
the tokenizer, checked) and the last step at the completion's end.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np

from rewardjax.rewards.math_answer import MathAnswerReward
from rewardjax.sampling import SamplerConfig, sample
from rewardjax.train import placement as placement_lib
from rewardjax.train.rl_extensions import AdvantageInputs, RolloutBatch


def best_of_k_value(value, k: int) -> np.ndarray:
    """V^{BoK(μ)} = 1 − (1 − V^μ)^K (arXiv:2410.08146): the chance that one of K
    independent prover completions is correct.

    Example:
      >>> best_of_k_value(np.array([0.0, 0.5, 1.0]), 2)
      array([0.  , 0.75, 1.  ], dtype=float32)
    """
    if k < 1:
        raise ValueError(f"best_of_k_value needs k >= 1, got {k}")
    return (1.0 - (1.0 - np.asarray(value, np.float64)) ** k).astype(np.float32)


def step_ends(completion_ids, separator_id: int) -> list[int]:
    """Indices of the tokens that end each step: every separator but a final one, then
    the completion's last token.

    Example:
      >>> step_ends([5, 9, 5, 9, 7], separator_id=9)
      [1, 3, 4]
    """
    n = len(completion_ids)
    if n == 0:
        return []
    ends = [i for i, t in enumerate(completion_ids[:-1]) if int(t) == separator_id]
    return ends + [n - 1]


def progress_token_rewards(values, ends, length: int, T: int) -> np.ndarray:
    """[T] progress of each step on every token of that step, 0 after `length`.

    `values` are V_0 (the prompt) ... V_H (after the last step), H = len(ends); step h
    covers tokens ends[h−1]+1 .. ends[h] and gets V_{h+1} − V_h (h from 0).

    Example:
      >>> progress_token_rewards([0.5, 0.75, 1.0], [1, 3], 4, 5)
      array([0.25, 0.25, 0.25, 0.25, 0.  ], dtype=float32)
    """
    if len(values) != len(ends) + 1:
        raise ValueError(f"progress_token_rewards needs one value per step boundary "
                         f"({len(ends) + 1}), got {len(values)}")
    out = np.zeros(T, np.float32)
    start = 0
    for h, end in enumerate(ends):
        out[start:end + 1] = values[h + 1] - values[h]
        start = end + 1
    out[length:] = 0.0
    return out


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProgressConfig:
    """Attributes:
      rollouts: prover continuations per distinct prefix (the Monte Carlo estimate).
      best_of: K of the Best-of-K prover (1: the prover itself).
      temperature: the prover's sampling temperature.
      chunk: prefixes per sampler call (a fixed shape: compiled once).
      step_separator: the text that ends a step (one token).
      seed: the prover's key; RL step s uses fold_in(key, s).
    """

    rollouts: int = 4
    best_of: int = 4
    temperature: float = 1.0
    chunk: int = 64
    step_separator: str = "\n"
    seed: int = 0

    def __post_init__(self):
        for name in ("rollouts", "best_of", "chunk"):
            if getattr(self, name) < 1:
                raise ValueError(f"ProgressConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.temperature <= 0:
            raise ValueError(f"ProgressConfig.temperature must be > 0, got {self.temperature}")


class ProverProgressReward:
    """(b) PAV's progress under a frozen prover as the RL loop's dense reward: every
    token of step h carries A^μ_h (`progress_token_rewards`); `ProgressAdvantage` adds
    α times it to the outcome advantage. The prover is the params given to `init` (the
    warm-started policy, before any RL update). Stateless (the prover is frozen)."""

    def __init__(self, config: ProgressConfig = ProgressConfig()):
        self.config = config
        self._trainer = None
        self._prover = None
        self._verify = MathAnswerReward()
        self._sampling = None
        self._separator = None

    def init(self, trainer, policy_params):
        cfg = self.config
        ids = trainer.tokenizer.encode(cfg.step_separator, add_special_tokens=False)
        if len(ids) != 1:
            raise ValueError(f"ProgressConfig.step_separator {cfg.step_separator!r} must be one "
                             f"token, the tokenizer gives {ids}")
        self._separator = ids[0]
        self._trainer, self._prover = trainer, policy_params
        rl = trainer.rl
        self._sampling = SamplerConfig(
            max_new_tokens=rl.max_new_tokens, num_samples=cfg.rollouts,
            temperature=cfg.temperature, eos_ids=trainer.sampling.eos_ids,
            pad_id=trainer.tokenizer.pad_token_id,
            prompt_buckets=(rl.prompt_length + rl.max_new_tokens,))
        return None

    def prefix_values(self, contexts: list[list[int]], prompt_lengths: list[int], answers: list,
                      step: int) -> np.ndarray:
        """V^{BoK(μ)} of each context (prompt ids, then `prompt_lengths[i]` onwards the
        partial completion) from `rollouts` prover continuations checked against its
        answer."""
        cfg, tr = self.config, self._trainer
        key = jax.random.fold_in(jax.random.key(cfg.seed), step)
        n, k = len(contexts), cfg.rollouts
        wins = np.zeros(n, np.float64)
        for start in range(0, n, cfg.chunk):
            part = contexts[start:start + cfg.chunk]
            padded = part + [part[0]] * (cfg.chunk - len(part))  # one shape, one compile
            with placement_lib.context(tr.placement):
                s = sample(self._prover, padded, jax.random.fold_in(key, start),
                           config=tr.config, sampling=self._sampling)
            tok, lens = jax.device_get((s.tokens, s.lengths))
            texts, refs = [], []
            for i, ctx in enumerate(part):
                prefix = ctx[prompt_lengths[start + i]:]
                for g in range(k):
                    ids = list(prefix) + [int(t) for t in tok[i, g, :lens[i, g]]]
                    texts.append(tr.tokenizer.decode(ids, skip_special_tokens=True))
                    refs.append(answers[start + i])
            ok = self._verify([""] * len(texts), texts, answer=refs) > 0.5
            wins[start:start + len(part)] = ok.reshape(len(part), k).mean(-1)
        return best_of_k_value(wins, cfg.best_of)

    def step(self, state, batch: RolloutBatch):
        R, T = batch.completion_mask.shape
        G = R // len(batch.records)
        P = batch.tokens.shape[1] - T
        cmask = np.asarray(batch.completion_mask, bool)
        index: dict[tuple, int] = {}
        contexts, answers, prompt_lengths = [], [], []
        rows = []
        for r in range(R):
            b = r // G
            prompt = [int(t) for t, m in zip(batch.tokens[r, :P], batch.mask[r, :P]) if m]
            length = int(cmask[r].sum())
            comp = [int(t) for t in batch.tokens[r, P:P + length]]
            ends = step_ends(comp, self._separator)
            keys = []
            for cut in [0] + [e + 1 for e in ends[:-1]]:  # the prompt, then each step's end
                key = (b, tuple(comp[:cut]))
                if key not in index:
                    index[key] = len(contexts)
                    contexts.append(prompt + comp[:cut])
                    answers.append(batch.records[b]["answer"])
                    prompt_lengths.append(len(prompt))
                keys.append(index[key])
            rows.append((keys, ends, length))
        values = self.prefix_values(contexts, prompt_lengths, answers, batch.step)
        out = np.zeros((R, T), np.float32)
        first_steps = []
        for r, (keys, ends, length) in enumerate(rows):
            if not ends:
                continue
            outcome = float(batch.correct.reshape(-1)[r])
            v = [float(values[k]) for k in keys] + [outcome]
            out[r] = progress_token_rewards(v, ends, length, T)
            first_steps.append(v[1] - v[0])
        step_rewards = [out[r, e] for r, (_, ends, _) in enumerate(rows) for e in ends]
        return state, out, {
            "pav/prefixes": float(len(contexts)),
            "pav/value_prompt": float(np.mean([values[k[0]] for k, _, _ in rows if k])),
            "pav/progress_mean": float(np.mean(step_rewards)) if step_rewards else 0.0,
            "pav/progress_abs": float(np.mean(np.abs(step_rewards))) if step_rewards else 0.0,
            "pav/first_step_progress": float(np.mean(first_steps)) if first_steps else 0.0}


@dataclasses.dataclass(frozen=True, kw_only=True)
class ProgressAdvantage:
    """(c) PAV's effective advantage: the configured estimator's outcome advantage plus
    α times the step's progress on each of its tokens (arXiv:2410.08146, Eq. for the
    policy gradient with Q^π + α·A^μ). `alpha=0` is the outcome-only baseline."""

    alpha: float = 1.0

    def __call__(self, x: AdvantageInputs) -> jax.Array:
        return x.advantages + self.alpha * x.token_rewards
