"""Process reward models: step-BCE PRMs and implicit PRMs, their losses and evaluation.

Discriminative PRM (Math-Shepherd, arXiv:2312.08935; "The Lessons of Developing Process
Reward Models in Mathematical Reasoning", arXiv:2501.07301): a step head on a backbone,
read at the last token of each step's separator (`StepBatch.step_positions`), trained
with BCE on hard (0/1) or soft (Monte Carlo) labels:

    z_bs = step_head(h[b, pos_bs]),   L = mean over real steps of BCE(z_bs, y_bs)

Implicit PRM ("Free Process Rewards without Process Labels", arXiv:2412.01981): a
language model π (initialised like the frozen reference π_ref) whose outcome reward
r = β Σ_t log π(y_t)/π_ref(y_t) is trained on outcome labels only (CE, or DPO on
correct/incorrect pairs); step k is scored from the partial sums

    q_k = β Σ_{t ≤ end of step k} log π/π_ref      (σ(q_k): P(correct | prefix k))
    r_k = q_k − q_{k−1}                               (the step's process reward)

Evaluation is ProcessBench-style first-error identification (arXiv:2412.06559): the
predicted first error is the first step whose score falls below a threshold (σ(z) <
0.5 for a PRM); F1 is the harmonic mean of the accuracies on erroneous and on correct
solutions.

The Monte Carlo labels themselves come from `rewardjax.data.monte_carlo` with a policy
`rollout_fn`; `sampler_rollout_fn` builds one from the KV-cache sampler.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rewardjax import eval as rm_eval
from rewardjax import heads
from rewardjax.data.encoding import tokenize
from rewardjax.data.pipeline import Pipeline
from rewardjax.losses import prm as prm_losses
from rewardjax.losses.reductions import masked_mean
from rewardjax.models import ModelConfig
from rewardjax.sampling import SamplerConfig, completion_logprobs, sample, sequence_logprobs
from rewardjax.train.reward_model import iterate_batches

STEP_RULES = ("value", "delta")


# ----------------------------------------------------------------------------- PRM


def step_logits(params, batch, *, config: ModelConfig, **apply_kwargs) -> jax.Array:
    """PRM logits at each step's label token: [B, S] (0 where `step_mask` is 0)."""
    hidden = heads.backbone_hidden(params["backbone"], batch["tokens"], batch["attention_mask"],
                                   config=config, **apply_kwargs)
    return heads.step_rewards(params["head"], hidden, batch["step_positions"],
                              batch["step_mask"])


def step_loss(params, batch, *, config: ModelConfig, last_step_only: bool = False,
              **apply_kwargs):
    """Step BCE on a `StepBatch` with hard or soft labels (`losses.step_bce_loss`).

    Every step of the micro-batch weighs the same. `last_step_only` trains on the
    answer step alone: an outcome-supervised verifier (ORM) on the same data.
    """
    z = step_logits(params, batch, config=config, **apply_kwargs)
    loss_bs, metrics = prm_losses.step_bce_loss(z, batch["step_labels"],
                                                where=batch["step_mask"],
                                                last_step_only=last_step_only)
    mask = batch["step_mask"]
    if last_step_only:
        mask = _last_step_mask(batch["step_mask"])
    sz = jax.lax.stop_gradient(z)
    mean = masked_mean(sz, batch["step_mask"])
    metrics.update({"accuracy": metrics["prm/accuracy"], "reward/mean": mean,
                    "reward/std": jnp.sqrt(masked_mean(jnp.square(sz - mean),
                                                       batch["step_mask"]))})
    return masked_mean(loss_bs, mask), metrics


def _last_step_mask(step_mask_bs):
    m = step_mask_bs.astype(bool)
    idx = jnp.arange(m.shape[-1])
    last = jnp.max(jnp.where(m, idx, -1), axis=-1, keepdims=True)
    return m & (idx == last)


@functools.partial(jax.jit, static_argnames=("config",))
def _step_probs(params, batch, *, config):
    return jax.nn.sigmoid(step_logits(params, batch, config=config))


def _step_inputs(batch) -> dict:
    return {k: batch[k] for k in ("tokens", "attention_mask", "step_positions", "step_mask")}


def score_steps(params, pipeline: Pipeline, *, config: ModelConfig) -> dict[str, Any]:
    """P(step correct) of every held-out solution: `scores` (ragged list of [n_i]),
    `labels` (ragged), `first_error` [N] (from the labels) and `index` [N]."""
    out: dict[str, list] = {"scores": [], "labels": [], "first_error": [], "index": []}
    for batch in iterate_batches(pipeline):
        probs = np.asarray(_step_probs(params, _step_inputs(batch), config=config))
        _collect(out, batch, probs)
    return {k: (v if k in ("scores", "labels") else np.asarray(v)) for k, v in out.items()}


def _collect(out, batch, values_bs):
    for b in range(values_bs.shape[0]):
        n = int(batch["step_mask"][b].sum())
        out["scores"].append(values_bs[b, :n])
        out["labels"].append(batch["step_labels"][b, :n])
        out["first_error"].append(int(batch["first_error"][b]))
        out["index"].append(int(batch["index"][b]))


def first_error_metrics(step_scores: Sequence[np.ndarray], first_error: np.ndarray, *,
                        threshold: float = 0.5, prefix: str = "") -> dict[str, float]:
    """ProcessBench `f1`, `error_accuracy`, `correct_accuracy` of the rule "first step
    scoring below `threshold`" against the true first-error indices."""
    pred = rm_eval.first_error_indices(step_scores, threshold=threshold)
    s = rm_eval.processbench_scores(pred, np.asarray(first_error, np.int64))
    return {f"{prefix}f1": s.f1, f"{prefix}error_accuracy": s.error_accuracy,
            f"{prefix}correct_accuracy": s.correct_accuracy}


def tune_first_error_threshold(step_scores: Sequence[np.ndarray], first_error: np.ndarray,
                               *, max_candidates: int = 256) -> float:
    """The threshold of the rule "first step scoring below it" with the best ProcessBench
    F1 on these (calibration) solutions: for scores on no fixed scale, such as an
    implicit PRM's prefix values. Candidates: midpoints between quantiles of the scores
    (at most `max_candidates`); ties go to the lowest threshold."""
    values = np.unique(np.concatenate([np.asarray(s, np.float64) for s in step_scores]))
    if len(values) > max_candidates:
        values = np.unique(np.quantile(values, np.linspace(0.0, 1.0, max_candidates)))
    candidates = np.concatenate([[values[0] - 1.0], (values[1:] + values[:-1]) / 2,
                                 [values[-1] + 1.0]])
    f1 = [first_error_metrics(step_scores, first_error, threshold=float(t))["f1"]
          for t in candidates]
    return float(candidates[int(np.argmax(f1))])


def step_label_accuracy(step_scores: Sequence[np.ndarray], labels: Sequence[np.ndarray]
                        ) -> float:
    """Fraction of steps with (score ≥ 0.5) == (label ≥ 0.5)."""
    s, y = np.concatenate(step_scores), np.concatenate(labels)
    return float(np.mean((s >= 0.5) == (y >= 0.5)))


def evaluate_steps(params, pipeline: Pipeline, *, config: ModelConfig,
                   threshold: float = 0.5) -> dict[str, float]:
    """Held-out ProcessBench first-error F1 (+ both accuracies) and step accuracy."""
    s = score_steps(params, pipeline, config=config)
    return {**first_error_metrics(s["scores"], s["first_error"], threshold=threshold),
            "step_accuracy": step_label_accuracy(s["scores"], s["labels"])}


def baseline_first_errors(num_steps: Sequence[int], *, seed: int) -> dict[str, np.ndarray]:
    """Trivial first-error predictors for n_i-step solutions.

    `no_error`: always −1. `random_step`: a uniform step of each solution.
    `random_or_none`: −1 with probability 1/2, else a uniform step.
    """
    rng = np.random.default_rng(seed)
    n = np.asarray(num_steps, np.int64)
    step = np.floor(rng.random(n.shape) * n).astype(np.int64)
    none = rng.random(n.shape) < 0.5
    return {"no_error": np.full(n.shape, -1, np.int64), "random_step": step,
            "random_or_none": np.where(none, -1, step)}


# ----------------------------------------------------------------------------- implicit PRM


def with_outcome(batch: dict) -> dict:
    """Adds `outcome` [B]: the label of each solution's last step, i.e. whether its
    final answer is right. The implicit PRM is trained on this response-level label only.
    """
    mask = np.asarray(batch["step_mask"], bool)
    last = np.maximum(mask.sum(-1) - 1, 0)
    outcome = np.take_along_axis(np.asarray(batch["step_labels"]), last[:, None], axis=1)[:, 0]
    return {**batch, "outcome": (outcome >= 0.5).astype(np.float32)}


def response_logprobs(params, tokens_bt, mask_bt, *, config: ModelConfig,
                      window: int | None = None, **apply_kwargs) -> jax.Array:
    """`sampling.sequence_logprobs`, projecting only the last `window` positions to the
    vocabulary when given: [B, T], 0 before them.

    Rows are left-padded, so every response ends at column T−1; when each response (its
    `loss_mask`) fits in the last `window` tokens, the log-probs it needs are exactly
    those of `sampling.completion_logprobs` on the split at T − window, and the
    [B, T, V] logits of the prompt positions are never formed.
    """
    if window is None or window >= tokens_bt.shape[1] - 1:
        return sequence_logprobs(params, tokens_bt, mask_bt, config=config, **apply_kwargs)
    P = tokens_bt.shape[1] - window
    logp = completion_logprobs(params, tokens_bt[:, :P], mask_bt[:, :P], tokens_bt[:, P:],
                               mask_bt[:, P:], config=config, **apply_kwargs)
    return jnp.pad(logp, ((0, 0), (P, 0)))


def check_response_window(batch: dict, window: int | None) -> None:
    """Raises if a response (`loss_mask`) starts before the last `window` positions."""
    if window is not None and np.any(np.asarray(batch["loss_mask"])[:, :-window]):
        longest = int(np.asarray(batch["loss_mask"]).sum(-1).max())
        raise ValueError(f"a response of {longest} tokens does not fit response_window="
                         f"{window}; raise the window (or set it to None)")


@functools.partial(jax.jit, static_argnames=("config", "window"))
def _logprobs(params, tokens, mask, *, config, window):
    return response_logprobs(params, tokens, mask, config=config, window=window)


def with_reference_logprobs(ref_params, *, config: ModelConfig, response_window: int | None = None
                            ) -> Callable[[dict], dict]:
    """A batch transform adding `ref_logp` [B, T]: per-token log-probs under the frozen
    reference (computed once per batch, outside the differentiated step), and `outcome`.
    `response_window`: see `response_logprobs` (checked against `loss_mask`)."""
    def transform(batch: dict) -> dict:
        check_response_window(batch, response_window)
        ref = _logprobs(ref_params, batch["tokens"], batch["attention_mask"], config=config,
                        window=response_window)
        return with_outcome({**batch, "ref_logp": np.asarray(ref)})
    return transform


def implicit_prm_loss(params, batch, *, config: ModelConfig, beta: float = 0.05,
                      response_window: int | None = None, **apply_kwargs):
    """Implicit PRM with the cross-entropy objective on outcome labels (arXiv:2412.01981):

        r = β Σ_{response tokens} log π(y_t)/π_ref(y_t),   L = BCE(r, outcome)

    `params` is the language model π. The batch needs `tokens`, `attention_mask`,
    `loss_mask` (response tokens), `ref_logp` and `outcome` (`with_reference_logprobs`).
    Step labels, if present, are not read. `response_window`: see `response_logprobs`.
    """
    logp = response_logprobs(params, batch["tokens"], batch["attention_mask"], config=config,
                             window=response_window, **apply_kwargs)
    loss_b, metrics = prm_losses.implicit_prm_ce_loss(logp, batch["ref_logp"], batch["loss_mask"],
                                                      batch["outcome"], beta=beta)
    r = prm_losses.implicit_reward(jax.lax.stop_gradient(logp), batch["ref_logp"],
                                   batch["loss_mask"], beta=beta)
    metrics.update({"accuracy": metrics["prm/accuracy"], "reward/std": jnp.std(r)})
    return jnp.mean(loss_b), metrics


def implicit_prm_dpo_pair_loss(params, batch, *, config: ModelConfig, beta: float = 0.05,
                               **apply_kwargs):
    """Implicit PRM with the DPO objective on (correct, incorrect) pairs: a `PairBatch`
    whose sides carry `ref_logp` (`with_pair_reference_logprobs`)."""
    sides = {k: jnp.concatenate([batch["chosen"][k], batch["rejected"][k]], axis=0)
             for k in ("tokens", "attention_mask", "loss_mask", "ref_logp")}
    logp = sequence_logprobs(params, sides["tokens"], sides["attention_mask"], config=config,
                             **apply_kwargs)
    B = batch["chosen"]["tokens"].shape[0]
    m, ref = sides["loss_mask"], sides["ref_logp"]
    loss_b, metrics = prm_losses.implicit_prm_dpo_loss(
        logp[:B], ref[:B], m[:B], logp[B:], ref[B:], m[B:], beta=beta)
    metrics["accuracy"] = metrics["reward/accuracy"]
    return jnp.mean(loss_b), metrics


def with_pair_reference_logprobs(ref_params, *, config: ModelConfig) -> Callable[[dict], dict]:
    """A `PairBatch` transform adding `ref_logp` to both sides."""
    def transform(batch: dict) -> dict:
        out = dict(batch)
        for side in ("chosen", "rejected"):
            s = batch[side]
            ref = _logprobs(ref_params, s["tokens"], s["attention_mask"], config=config,
                            window=None)
            out[side] = {**s, "ref_logp": np.asarray(ref)}
        return out
    return transform


def implicit_step_values(logp_bt, ref_logp_bt, response_mask_bt, step_positions_bs,
                         step_mask_bs, *, beta: float = 0.05) -> tuple[jax.Array, jax.Array]:
    """(q [B, S], r [B, S]): prefix values q_k and step rewards r_k = q_k − q_{k−1} of
    an implicit PRM at the steps' last tokens (arXiv:2412.01981); 0 off-step."""
    B, T = logp_bt.shape
    ends = jnp.zeros((B, T), bool).at[jnp.arange(B)[:, None], step_positions_bs].max(
        step_mask_bs.astype(bool))
    r_bt = prm_losses.implicit_step_rewards(logp_bt, ref_logp_bt, response_mask_bt, ends,
                                            beta=beta)
    r_bs = jnp.where(step_mask_bs, jnp.take_along_axis(r_bt, step_positions_bs, axis=1), 0.0)
    return jnp.cumsum(r_bs, axis=-1) * step_mask_bs, r_bs


@functools.partial(jax.jit, static_argnames=("config", "beta", "window"))
def _implicit_scores(params, batch, *, config, beta, window):
    logp = response_logprobs(params, batch["tokens"], batch["attention_mask"], config=config,
                             window=window)
    q, r = implicit_step_values(logp, batch["ref_logp"], batch["loss_mask"],
                                batch["step_positions"], batch["step_mask"], beta=beta)
    outcome = prm_losses.implicit_reward(logp, batch["ref_logp"], batch["loss_mask"], beta=beta)
    return q, r, outcome


def score_implicit_steps(params, ref_params, pipeline: Pipeline, *, config: ModelConfig,
                         beta: float = 0.05, response_window: int | None = None
                         ) -> dict[str, Any]:
    """Implicit-PRM prefix values `q`, step rewards `r` (ragged), outcome rewards [N],
    true `first_error` [N] and `outcome` labels [N] of every held-out solution."""
    ref_fn = with_reference_logprobs(ref_params, config=config, response_window=response_window)
    out: dict[str, list] = {"scores": [], "labels": [], "first_error": [], "index": []}
    deltas, outcomes, rewards = [], [], []
    for batch in iterate_batches(pipeline):
        batch = ref_fn(batch)
        keys = ("tokens", "attention_mask", "loss_mask", "ref_logp", "step_positions",
                "step_mask")
        q, r, reward = jax.device_get(_implicit_scores(params, {k: batch[k] for k in keys},
                                                       config=config, beta=beta,
                                                       window=response_window))
        _collect(out, batch, q)
        deltas += [r[b, :int(batch["step_mask"][b].sum())] for b in range(r.shape[0])]
        outcomes.append(batch["outcome"])
        rewards.append(reward)
    return {"q": out["scores"], "r": deltas, "first_error": np.asarray(out["first_error"]),
            "outcome": np.concatenate(outcomes), "reward": np.concatenate(rewards)}


def evaluate_implicit(params, ref_params, pipeline: Pipeline, *, config: ModelConfig,
                      beta: float = 0.05, response_window: int | None = None,
                      calibration: Pipeline | None = None) -> dict[str, float]:
    """First-error F1 of an implicit PRM under three read-outs, and outcome accuracy.

    `value` rule: the first step whose prefix value σ(q_k) < 1/2, i.e. whose prefix is
    more likely wrong than right. `delta/` rule: the first step whose process reward
    r_k < 0, i.e. the first step that lowers the value. `tuned/` rule (with a
    `calibration` pipeline of other solutions): the first step with q_k below the
    threshold that maximises F1 on the calibration solutions
    (`tune_first_error_threshold`). Trained on outcomes only, q_k need not cross 0 where
    the prefix turns wrong: on the tiny arithmetic task correct steps drift slightly
    below 0 while a wrong step drops q by several units, so the fixed-threshold rules
    flag nearly every correct solution.
    """
    kwargs = dict(config=config, beta=beta, response_window=response_window)
    s = score_implicit_steps(params, ref_params, pipeline, **kwargs)
    value = first_error_metrics([jax.nn.sigmoid(q) for q in s["q"]], s["first_error"])
    delta = first_error_metrics(s["r"], s["first_error"], threshold=0.0, prefix="delta/")
    tuned = {}
    if calibration is not None:
        c = score_implicit_steps(params, ref_params, calibration, **kwargs)
        threshold = tune_first_error_threshold(c["q"], c["first_error"])
        tuned = {**first_error_metrics(s["q"], s["first_error"], threshold=threshold,
                                       prefix="tuned/"), "tuned/threshold": threshold}
    return {**value, **delta, **tuned,
            "outcome_accuracy": float(np.mean((s["reward"] > 0) == (s["outcome"] > 0.5)))}


# ----------------------------------------------------------------------------- rollouts


def sampler_rollout_fn(params, tokenizer, *, config: ModelConfig, sampling: SamplerConfig,
                       key: jax.Array, batch_size: int = 256) -> Callable[[list[str]], list[str]]:
    """A `rollout_fn(contexts) -> completions` for `monte_carlo_step_labels` that samples
    one completion per context with the KV-cache sampler.

    Contexts are already rendered text (e.g. `monte_carlo.chat_context`); each call folds
    a running call counter into `key`, so a fixed sequence of calls is deterministic.
    Batches are padded to `batch_size` rows so the sampler compiles once per prompt bucket.
    """
    if sampling.num_samples != 1:
        raise ValueError("sampler_rollout_fn samples one completion per context; ask "
                         "monte_carlo_step_labels for k contexts per prefix instead")
    calls = [0]

    def rollout(contexts: list[str]) -> list[str]:
        out: list[str] = []
        for lo in range(0, len(contexts), batch_size):
            chunk = [tokenize(tokenizer, c) for c in contexts[lo:lo + batch_size]]
            n = len(chunk)
            chunk += [chunk[-1]] * (batch_size - n)
            samples = sample(params, chunk, jax.random.fold_in(key, calls[0]), config=config,
                             sampling=sampling)
            calls[0] += 1
            tokens, lengths = jax.device_get((samples.tokens[:, 0], samples.lengths[:, 0]))
            out += [tokenizer.decode(t[:m], skip_special_tokens=True)
                    for t, m in zip(tokens[:n], lengths[:n])]
        return out

    return rollout
