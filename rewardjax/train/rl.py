"""The RL loop: sample G completions per prompt, score, estimate advantages, update.

One step (all shapes fixed, so nothing recompiles after the first step):

    records  = prompts_fn(step, round)                       B prompts (+ reward fields)
    samples  = sample(policy, prompts, key)                  [B, G, T] tokens, log-probs
    rewards  = reward_fn(prompts, completions, **fields)     [B, G]
    (dynamic sampling: drop groups whose rewards are all equal, sample more rounds)
    adv      = estimator(rewards | token rewards + critic values)
    for epoch in range(μ): for minibatch: jitted update(policy loss + KL + entropy
                                                        [+ value loss])

Every algorithmic choice is a field of `RLConfig` and lands in one place below:
`_advantages` (the estimator) and `rl_loss` (the objective and its reduction). What the
policy is rewarded for beyond `reward_fn` (probe log-probs, dense and online reward
models, advantage transforms, prompt rewriting, group filters) plugs in through
`RLExtensions` (`rewardjax.train.rl_extensions`, where a diagram shows where each acts).
References: GRPO ("DeepSeekMath", arXiv:2402.03300), PPO (arXiv:1707.06347), DAPO
(arXiv:2503.14476), Dr. GRPO (arXiv:2503.20783), GSPO (arXiv:2507.18071), RLOO
(arXiv:2402.14740), REINFORCE++ (arXiv:2501.03262).
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable, Mapping, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rewardjax import heads
from rewardjax.data import tokenizer as tokenizer_lib
from rewardjax.data.encoding import encode_prompt
from rewardjax.losses import advantages as adv_lib
from rewardjax.losses import kl as kl_lib
from rewardjax.losses import policy as policy_lib
from rewardjax.losses import reductions, returns as returns_lib
from rewardjax.losses.sft import token_logprobs
from rewardjax.models import ModelConfig, apply, lora as lora_lib, project
from rewardjax.sampling import SamplerConfig, sample
from rewardjax.train import placement as placement_lib
from rewardjax.train.checkpoint import Checkpointer
from rewardjax.train.metrics import MetricsLogger
from rewardjax.train.rl_extensions import (AdvantageInputs, ProbeLogProbs, RLExtensions,
                                           RolloutBatch)
from rewardjax.train.state import (NonFiniteGuard, OptimizerConfig, TrainState, init_state,
                                   make_train_step, split_micro)

ESTIMATORS = ("grpo", "rloo", "reinforce_pp", "reinforce_pp_baseline", "gae")


@dataclasses.dataclass(frozen=True, kw_only=True)
class RLConfig:
    """Every choice of the RL objective, in one place.

    Attributes:
      steps: RL steps (one rollout + `epochs` passes of updates each).
      prompts_per_step, group_size: B prompts, G completions per prompt.
      max_new_tokens, temperature, top_k, top_p: rollout sampling.
      prompt_length: prompts are left-padded to this many tokens (longer ones fail).
      epochs, minibatches, micro_batches: μ passes over the rollout, each split into
        `minibatches` optimizer steps, each accumulated over `micro_batches`.
      advantage: "grpo" (group mean, /std if `scale_by_std`), "rloo", "reinforce_pp",
        "reinforce_pp_baseline" (REINFORCE++ with a group-mean baseline) or "gae"
        (PPO with a critic).
      scale_by_std, std_scope: GRPO's std division (off: Dr. GRPO) over "group"/"batch".
      reduction: "token_mean", "seq_mean_token_mean", "seq_mean_token_sum" or
        "seq_mean_token_sum_norm" (divides by `max_len_norm`, default max_new_tokens).
      eps_low, eps_high, dual_clip_c, ratio_level: the clipped surrogate.
      kl_coef, kl_estimator, kl_in_reward: KL to the frozen reference, as a loss term
        (GRPO) or subtracted from per-token rewards (PPO/REINFORCE++; k1 usually).
      entropy_coef: entropy bonus coefficient (entropy is logged either way).
      dynamic_sampling, max_sampling_rounds: DAPO's filter of groups with equal
        rewards, refilled from up to `max_sampling_rounds` rollouts of new prompts.
      value_coef, value_clip, gamma, lam: the PPO critic and GAE.
      accuracy_reward: name of the reward (in a `CombinedReward`) whose value > 0.5
        counts as a correct answer for the `accuracy` metric; None: total reward > 0.5.
      seed: the run's key; step s uses fold_in(key, s).
    """

    steps: int = 100
    prompts_per_step: int = 8
    group_size: int = 8
    max_new_tokens: int = 64
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    prompt_length: int = 64
    epochs: int = 1
    minibatches: int = 1
    micro_batches: int = 1
    advantage: str = "grpo"
    scale_by_std: bool = True
    std_scope: str = "group"
    reduction: str = "token_mean"
    max_len_norm: int | None = None
    eps_low: float = 0.2
    eps_high: float = 0.2
    dual_clip_c: float | None = None
    ratio_level: str = "token"
    kl_coef: float = 0.0
    kl_estimator: str = "k3"
    kl_in_reward: bool = False
    entropy_coef: float = 0.0
    dynamic_sampling: bool = False
    max_sampling_rounds: int = 3
    value_coef: float = 0.5
    value_clip: float | None = 0.2
    gamma: float = 1.0
    lam: float = 0.95
    accuracy_reward: str | None = "answer"
    seed: int = 0

    def __post_init__(self):
        if self.advantage not in ESTIMATORS:
            raise ValueError(f"RLConfig.advantage must be one of {ESTIMATORS}, got {self.advantage!r}")
        reductions.check_reduction(self.reduction, self.max_len)
        for name in ("steps", "prompts_per_step", "group_size", "max_new_tokens", "epochs",
                     "minibatches", "micro_batches", "prompt_length", "max_sampling_rounds"):
            if getattr(self, name) <= 0:
                raise ValueError(f"RLConfig.{name} must be > 0, got {getattr(self, name)}")
        rows = self.prompts_per_step * self.group_size
        if rows % (self.minibatches * self.micro_batches):
            raise ValueError(
                f"B*G = {rows} rows must split evenly into minibatches ({self.minibatches}) "
                f"x micro_batches ({self.micro_batches})")
        if self.kl_in_reward and self.advantage in ("grpo", "rloo"):
            raise ValueError("kl_in_reward needs per-token rewards: use advantage "
                             "'reinforce_pp', 'reinforce_pp_baseline' or 'gae'")
        if self.temperature <= 0:
            raise ValueError("RLConfig.temperature must be > 0 (RL samples; greedy has no ratio)")

    @property
    def max_len(self) -> int | None:
        if self.reduction != reductions.SEQ_MEAN_TOKEN_SUM_NORM:
            return None
        return self.max_len_norm or self.max_new_tokens

    @property
    def uses_critic(self) -> bool:
        return self.advantage == "gae"


class Rollout(NamedTuple):
    """One step's training data, R = B*G rows (row b*G + g)."""

    tokens: np.ndarray  # [R, P + T] prompt (left-padded) then completion
    mask: np.ndarray  # [R, P + T]
    completion_mask: np.ndarray  # [R, T]
    old_logp: np.ndarray  # [R, T] behaviour log-probs at the sampling temperature
    advantages: np.ndarray  # [R, T]
    ref_logp: np.ndarray  # [R, T] (zeros without KL)
    old_values: np.ndarray  # [R, T] (zeros without a critic)
    returns: np.ndarray  # [R, T] (zeros without a critic)
    # [R, K] for RLExtensions.aux_loss; the trainer's rollouts carry [R, 0] without one.
    aux_targets: np.ndarray | None = None


# ----------------------------------------------------------------------------- the loss


def _completion_logits(params, tokens, mask, *, config: ModelConfig, T: int, temperature: float,
                       **apply_kwargs):
    hidden, _ = apply(params, tokens, config=config, mask_bt=mask, output="hidden", **apply_kwargs)
    P = tokens.shape[1] - T
    # Only completion positions reach the vocabulary projection.
    logits = project(params, hidden[:, P - 1:P + T - 1], config=config) / temperature
    return logits, hidden[:, P - 1:P + T - 1]


def teacher_forced_logprobs(params, tokens, mask, *, config: ModelConfig, T: int,
                         temperature: float = 1.0):
    """[R, T] log-probs of the last T tokens of each row given everything before them."""
    logits, _ = _completion_logits(params, tokens, mask, config=config, T=T,
                                   temperature=temperature)
    return token_logprobs(logits, tokens[:, -T:])


def _critic_values(critic, tokens, mask, *, config: ModelConfig, T: int, **apply_kwargs):
    hidden = heads.backbone_hidden(critic["backbone"], tokens, mask, config=config, **apply_kwargs)
    P = tokens.shape[1] - T
    return heads.token_values(critic["head"], hidden[:, P - 1:P + T - 1])


def rl_loss(params, mb: Mapping[str, jax.Array], *, config: ModelConfig, rl: RLConfig,
            **apply_kwargs):
    """Policy loss (+ β·KL − c·entropy [+ value loss]) for one micro-batch.

    Each term divides by the minibatch's global denominator (`mb["denominator"]`), so
    micro-batch losses add up to the minibatch loss exactly. `apply_kwargs` (remat,
    scan_layers) go to the backbone.
    """
    policy = params["policy"] if rl.uses_critic else params
    T = mb["completion_mask"].shape[1]
    cmask = mb["completion_mask"]
    den = mb["denominator"][0]
    logits, _ = _completion_logits(policy, mb["tokens"], mb["mask"], config=config, T=T,
                                   temperature=rl.temperature, **apply_kwargs)
    completion = mb["tokens"][:, -T:]
    logp = token_logprobs(logits, completion)
    common = dict(reduction=rl.reduction, max_len=rl.max_len, denominator=den)
    loss, metrics = policy_lib.policy_loss(
        logp, mb["old_logp"], mb["advantages"], cmask, eps_low=rl.eps_low,
        eps_high=rl.eps_high, dual_clip_c=rl.dual_clip_c, ratio_level=rl.ratio_level, **common)
    entropy = policy_lib.entropy_from_logits(logits, where=cmask)
    metrics["entropy"] = reductions.masked_mean(jax.lax.stop_gradient(entropy), cmask)
    if rl.entropy_coef:
        loss = loss - rl.entropy_coef * reductions.masked_reduce(entropy, cmask, mode=rl.reduction,
                                                                 max_len=rl.max_len, denominator=den)
    if rl.kl_coef and not rl.kl_in_reward:
        kl, kl_metrics = kl_lib.kl_loss(logp, mb["ref_logp"], cmask, estimator=rl.kl_estimator,
                                        **common)
        loss = loss + rl.kl_coef * kl
        metrics.update(kl_metrics)
    if rl.uses_critic:
        values = _critic_values(params["critic"], mb["tokens"], mb["mask"], config=config, T=T,
                                **apply_kwargs)
        vloss, v_metrics = policy_lib.value_loss(values, mb["old_values"], mb["returns"], cmask,
                                                 clip_eps=rl.value_clip, **common)
        loss = loss + rl.value_coef * vloss
        metrics.update(v_metrics)
    return loss, metrics


def _with_aux_loss(loss_fn, aux, params, mb, *, config, uses_critic, rows, apply_kwargs,
                   **kwargs):
    """`loss_fn` plus `RLExtensions.aux_loss` (extension point (h)) on the policy's params."""
    loss, metrics = loss_fn(params, mb, **kwargs)
    policy = params["policy"] if uses_critic else params
    extra, aux_metrics = aux.loss(policy, mb, config=config, rows=rows,
                                  **{**apply_kwargs, **kwargs})
    return loss + aux.coef * extra, {**metrics, **aux_metrics, "loss/aux": extra}


# ----------------------------------------------------------------------------- the loop


def _record_fields(record) -> dict:
    """A prompt record's fields: a dataclass, a NamedTuple or a mapping."""
    if dataclasses.is_dataclass(record):
        return {f.name: getattr(record, f.name) for f in dataclasses.fields(record)}
    if isinstance(record, tuple) and hasattr(record, "_asdict"):
        return record._asdict()
    if isinstance(record, Mapping):
        return dict(record)
    raise TypeError(f"RL prompt record {record!r:.80}: expected a dataclass, a NamedTuple or a "
                    f"mapping with a 'prompt' field, got {type(record).__name__}")


def _batch(step, fields, texts, p_tok, p_mask, s_tok, s_mask, s_len, rewards, correct):
    B, G, T = s_tok.shape
    R = B * G
    return RolloutBatch(
        step=step, records=list(fields), completions=list(texts),
        tokens=np.concatenate([np.repeat(p_tok, G, 0), s_tok.reshape(R, T)], 1),
        mask=np.concatenate([np.repeat(p_mask, G, 0), s_mask.reshape(R, T)], 1),
        completion_mask=s_mask.reshape(R, T), lengths=s_len, rewards=rewards, correct=correct)


class RLTrainer:
    """Runs `RLConfig` on a policy (and optional frozen reference and critic).

    Args:
      model_config: the policy's architecture.
      rl: the RL config.
      optimizer: optimizer settings (the critic, if any, shares them).
      tokenizer: renders prompts through its chat template and decodes completions.
      prompts_fn: `(step, round) -> B records` with a `prompt` field and any fields the
        reward functions take (e.g. `answer`); must be a pure function of its
        arguments so resumed runs see the same prompts.
      reward_fn: `(prompts, completions, **fields) -> [B*G]` floats, or a
        `CombinedReward` (per-reward values and failure counts are then logged).
      eos_ids: ids that end a completion (default: the tokenizer's eos and end of turn).
      placement: run on a mesh (`train.placement.Placement`): the policy, critic and
        optimizer state placed by the rules, rollouts sampled on the mesh, update
        minibatches split over (data, fsdp). Pass the reference params placed too.
      lora: train LoRA adapters on the frozen policy given to `init_state` ("LoRA",
        arXiv:2106.09685; "Tina", arXiv:2504.15777): only the adapters carry gradients
        and optimizer state, and the reference policy is that frozen base (adapters
        off), so no second copy of the weights exists.
      remat, scan_layers: the backbone's rematerialisation and layer scan in the update
        (`BackboneConfig.apply_kwargs`).
      loss_fn: the objective the update differentiates, `(params, mb, *, config, rl,
        **apply_kwargs) -> (loss, metrics)` like `rl_loss` (the default), so a variant
        written outside the package runs in this loop unchanged. `mb` holds the
        `Rollout` fields of one micro-batch plus `denominator`, the whole minibatch's
        denominator for `rl.reduction`: dividing by it makes micro-batch losses add up
        exactly, so a loss that reduces another way should name its mode in
        `rl.reduction` (or run with `micro_batches=1`).
      extensions: `RLExtensions`, the named extension points (probe log-probs, reward
        transform, group filter, prompt rewriting, dense/online reward models,
        advantage transform). Their state (an online model's, a filter's) lives in
        `extension_state` and is checkpointed with the policy by `run`.
    """

    def __init__(self, *, model_config: ModelConfig, rl: RLConfig, optimizer: OptimizerConfig,
                 tokenizer, prompts_fn: Callable[[int, int], Sequence[Any]],
                 reward_fn: Callable, eos_ids: Sequence[int] | None = None,
                 stop_sequences: Sequence[Sequence[int]] = (),
                 placement: placement_lib.Placement | None = None,
                 lora: lora_lib.LoraConfig | None = None, remat: str = "none",
                 scan_layers: bool = False, loss_fn: Callable = rl_loss,
                 extensions: RLExtensions | None = None):
        if lora is not None:
            if rl.uses_critic:
                raise ValueError("RLTrainer(lora=...) trains the policy's adapters only; "
                                 "RLConfig.advantage='gae' (a critic) is not supported with it")
            lora.check(model_config)
        self.config, self.rl, self.tokenizer = model_config, rl, tokenizer
        self.prompts_fn, self.reward_fn = prompts_fn, reward_fn
        self.placement, self.lora, self.base = placement, lora, None
        eos = tuple(eos_ids) if eos_ids is not None else tokenizer_lib.eos_ids(tokenizer)
        self.sampling = SamplerConfig(
            max_new_tokens=rl.max_new_tokens, num_samples=rl.group_size,
            temperature=rl.temperature, top_k=rl.top_k, top_p=rl.top_p, eos_ids=eos,
            stop_sequences=tuple(tuple(s) for s in stop_sequences),
            pad_id=tokenizer.pad_token_id, prompt_buckets=(rl.prompt_length,))
        self.optimizer_config = optimizer
        self.optimizer = optimizer.make()
        self._loss_fn = functools.partial(loss_fn, config=model_config, rl=rl, remat=remat,
                                          scan_layers=scan_layers)
        self._update = None  # built by init_state, which knows the state's shardings
        self.guard = NonFiniteGuard(optimizer.max_nonfinite_steps)
        self._merge = jax.jit(functools.partial(lora_lib.merge, lora=lora)) if lora else None
        T = rl.max_new_tokens
        self._ref_logp = jax.jit(lambda p, tok, m: token_logprobs(
            _completion_logits(p, tok, m, config=model_config, T=T, temperature=rl.temperature)[0],
            tok[:, -T:]))
        self._values = jax.jit(functools.partial(_critic_values, config=model_config, T=T))
        self._advantage_fn = jax.jit(functools.partial(_advantages, rl=rl))
        self.extensions = extensions or RLExtensions()
        self.extension_state: dict[str, Any] = {}
        ext = self.extensions
        self._ext_advantage = jax.jit(ext.advantage) if ext.advantage is not None else None
        if ext.aux_loss is not None:
            self._loss_fn = functools.partial(
                _with_aux_loss, self._loss_fn, ext.aux_loss, config=model_config,
                uses_critic=rl.uses_critic, rows=rl.prompts_per_step * rl.group_size // rl.minibatches,
                apply_kwargs=dict(remat=remat, scan_layers=scan_layers))
        if ext.probes is not None:
            self._probe_logp = jax.jit(functools.partial(
                teacher_forced_logprobs, config=model_config, T=ext.probes.max_tokens))

    # -- state

    def init_state(self, policy_params, critic_params=None, adapters=None) -> TrainState:
        """The state to train: the policy (and critic), or with `lora` the adapters
        (`adapters`, default: fresh ones from the run's seed) on the frozen
        `policy_params`. Builds the update step for the state's shardings."""
        if self.lora is not None:
            self.base = policy_params
            if adapters is None:
                # Rollout step s folds in s >= 0; the largest uint32 never meets one
                # (fold_in takes uint32 data: -1 raises OverflowError).
                key = jax.random.fold_in(jax.random.key(self.rl.seed), 2**32 - 1)
                adapters = lora_lib.init_lora(key, self.config, self.lora)
            params = adapters
        elif self.rl.uses_critic:
            if critic_params is None:
                raise ValueError("advantage='gae' needs critic_params ({'backbone', 'head'})")
            params = {"policy": policy_params, "critic": critic_params}
        else:
            params = policy_params
        # The update donates the state; copy so the caller's arrays (often also the
        # frozen reference) stay alive.
        state = init_state(jax.tree.map(jnp.array, params), self.optimizer)
        shardings = None
        if self.placement is not None:
            extra = lora_lib.lora_axes(self.config, self.lora) if self.lora else None
            placement = dataclasses.replace(self.placement, extra_axes=extra)
            state, shardings = placement.state(state, self.optimizer)
        assemble = None
        if self.lora is not None:
            assemble = lambda adapters, base: lora_lib.merge(base, adapters, self.lora)  # noqa: E731
        self._update = make_train_step(self._loss_fn, self.optimizer, config=self.optimizer_config,
                                       accumulate="sum", assemble=assemble,
                                       placement=self.placement, state_sharding=shardings)
        ext = self.extensions
        self.extension_state = {}
        if ext.dense is not None:
            self.extension_state["dense"] = ext.dense.init(self, policy_params)
        if ext.group_filter is not None:
            self.extension_state["filter"] = ext.group_filter.init()
        return state

    def policy(self, state: TrainState):
        """The policy's params (with `lora`: the base with the adapters merged in)."""
        if self.lora is not None:
            with placement_lib.context(self.placement):
                return self._merge(self.base, state.params)
        return state.params["policy"] if self.rl.uses_critic else state.params

    # -- rollout

    def encode_prompts(self, records) -> tuple[np.ndarray, np.ndarray]:
        P = self.rl.prompt_length
        tokens = np.full((len(records), P), self.tokenizer.pad_token_id, np.int32)
        mask = np.zeros((len(records), P), bool)
        for i, r in enumerate(records):
            ids = encode_prompt(self.tokenizer, _record_fields(r)["prompt"])
            if len(ids) > P:
                raise ValueError(f"prompt {i} of this step has {len(ids)} tokens; "
                                 f"RLConfig.prompt_length is {P}")
            tokens[i, P - len(ids):] = ids
            mask[i, P - len(ids):] = True
        return tokens, mask

    def decode(self, tokens_rt: np.ndarray, lengths_r: np.ndarray) -> list[str]:
        return [self.tokenizer.decode(t[:n], skip_special_tokens=True)
                for t, n in zip(tokens_rt, lengths_r)]

    def score(self, records, completions: list[str], lengths: np.ndarray) -> tuple[np.ndarray, dict]:
        """Rewards [B, G]; reward functions get every record field repeated G times plus
        `completion_length` (completion tokens, for length shaping such as DAPO's)."""
        total, _, metrics = self._score(records, completions, lengths)
        return total, metrics

    def _score(self, records, completions, lengths):
        G = self.rl.group_size
        fields = [_record_fields(r) for r in records]
        prompts = [f["prompt"] for f in fields for _ in range(G)]
        extra = {k: [f[k] for f in fields for _ in range(G)] for k in fields[0] if k != "prompt"}
        extra["completion_length"] = [int(n) for n in np.asarray(lengths).reshape(-1)]
        out = self.reward_fn(prompts, completions, **extra)
        metrics = {}
        if hasattr(out, "total"):
            total = np.asarray(out.total, np.float32)
            metrics.update({k: float(v) for k, v in out.metrics().items()})
            acc_values = out.values.get(self.rl.accuracy_reward) if self.rl.accuracy_reward else None
        else:
            total, acc_values = np.asarray(out, np.float32), None
        correct = (np.asarray(acc_values) if acc_values is not None else total) > 0.5
        return (total.reshape(-1, G), correct.reshape(-1, G),
                {**metrics, "accuracy": float(correct.mean())})

    def _sample(self, policy, records, key):
        """(prompt tokens, prompt mask, [B, G, T] tokens, mask, lengths, log-probs, texts)."""
        B, G, T = self.rl.prompts_per_step, self.rl.group_size, self.rl.max_new_tokens
        p_tok, p_mask = self.encode_prompts(records)
        with placement_lib.context(self.placement):
            samples = sample(policy, p_tok, key, config=self.config, sampling=self.sampling,
                             prompt_mask=p_mask)
        s_tok, s_mask, s_len, s_logp = jax.device_get(
            (samples.tokens, samples.mask, samples.lengths, samples.logprobs))
        return p_tok, p_mask, s_tok, s_mask, s_len, s_logp, self.decode(
            s_tok.reshape(B * G, T), s_len.reshape(-1))

    def _guide(self, policy, fields, key, group):
        """(e) Resamples every all-fail group from its rewritten prompt; the swapped-in
        samples keep the original prompt tokens and the hinted behaviour log-probs."""
        rw = self.extensions.rewrite
        p_tok, p_mask, s_tok, s_mask, s_len, s_logp, texts, rewards, correct = group
        failing = ~correct.any(-1)
        if not failing.any():
            return group, {"guide/groups": 0.0}
        G = self.rl.group_size
        hinted = [{**f, "prompt": rw.rewrite(f)} for f in fields]
        _, _, h_tok, h_mask, h_len, h_logp, h_texts = self._sample(policy, hinted, key)
        h_rewards, h_correct, _ = self._score(fields, h_texts, h_len)
        k = G if rw.replace is None else rw.replace
        s_tok, s_mask, s_len, s_logp = (x.copy() for x in (s_tok, s_mask, s_len, s_logp))
        rewards, correct, texts = rewards.copy(), correct.copy(), list(texts)
        for b in np.flatnonzero(failing):
            for dst, src in ((s_tok, h_tok), (s_mask, h_mask), (s_len, h_len), (s_logp, h_logp),
                             (rewards, h_rewards), (correct, h_correct)):
                dst[b, :k] = src[b, :k]
            texts[b * G:b * G + k] = h_texts[b * G:b * G + k]
        metrics = {"guide/groups": float(failing.sum()),
                   "guide/hinted_accuracy": float(h_correct[failing].mean())}
        return (p_tok, p_mask, s_tok, s_mask, s_len, s_logp, texts, rewards, correct), metrics

    def probe_logprobs(self, policy, fields: list[dict], completions: list[str], p_tok, p_mask,
                       ref_params=None) -> ProbeLogProbs:
        """(a) Teacher-forced log-probs of every row's probe texts, one jitted call per
        model over all N·R sequences (split over the mesh's batch axes when placed)."""
        probes = self.extensions.probes
        G, N, K = self.rl.group_size, probes.num_probes, probes.max_tokens
        R, P = len(completions), p_tok.shape[1]
        tokens = np.full((N, R, P + K), self.tokenizer.pad_token_id, np.int32)
        mask = np.zeros((N, R, P + K), bool)
        target = np.zeros((N, R, K), bool)
        truncated = 0
        encode = lambda text: self.tokenizer.encode(text, add_special_tokens=False) if text else []  # noqa: E731
        for r, completion in enumerate(completions):
            pairs = list(probes.texts(fields[r // G], completion))
            if len(pairs) != N:
                raise ValueError(f"Probes.texts returned {len(pairs)} (context, target) pairs "
                                 f"for row {r}; Probes.num_probes is {N}")
            for n, (context, text) in enumerate(pairs):
                c, t = encode(context), encode(text)
                if len(t) > K or not t:
                    raise ValueError(f"probe {n} of row {r} has a target of {len(t)} tokens; "
                                     f"it must be non-empty and fit Probes.max_tokens ({K})")
                if len(c) + len(t) > K:
                    # A sampled completion need not re-tokenize to its own length; its
                    # tail (next to the target) is kept rather than failing the step.
                    c = c[len(c) + len(t) - K:]
                    truncated += 1
                tokens[n, r, :P], mask[n, r, :P] = p_tok[r // G], p_mask[r // G]
                tokens[n, r, P:P + len(c) + len(t)] = c + t
                mask[n, r, P:P + len(c) + len(t)] = True
                target[n, r, len(c):len(c) + len(t)] = True
        flat = {"tokens": tokens.reshape(N * R, -1), "mask": mask.reshape(N * R, -1)}
        if self.placement is not None:
            flat = self.placement.batch(flat, micro=False)

        def run(params):
            with placement_lib.context(self.placement):
                logp = self._probe_logp(params, flat["tokens"], flat["mask"])
            return np.where(target, np.asarray(logp).reshape(N, R, K), 0.0)

        reference = None
        if probes.reference:
            if ref_params is None:
                raise ValueError("Probes(reference=True) needs ref_params")
            reference = run(ref_params)
        return ProbeLogProbs(policy=run(policy), reference=reference, target_mask=target,
                             truncated=truncated)

    def rollout(self, state: TrainState, step: int, ref_params=None) -> tuple[Rollout, dict]:
        rl, ext = self.rl, self.extensions
        B, G, T = rl.prompts_per_step, rl.group_size, rl.max_new_tokens
        key = jax.random.fold_in(jax.random.key(rl.seed), step)
        policy = self.policy(state)
        if self.lora is not None:
            ref_params = self.base  # the reference is the policy with its adapters off
        kept: list[tuple] = []
        spare: list[tuple] = []
        filtered = 0
        sampled_tokens = 0
        first_metrics = None
        refill = rl.dynamic_sampling or ext.group_filter is not None
        rounds = rl.max_sampling_rounds if refill else 1
        for rnd in range(rounds):
            records = list(self.prompts_fn(step, rnd))
            if len(records) != B:
                raise ValueError(f"prompts_fn({step}, {rnd}) returned {len(records)} records; "
                                 f"RLConfig.prompts_per_step is {B}")
            fields = [_record_fields(r) for r in records]
            round_key = jax.random.fold_in(key, rnd)
            if ext.rollouts is not None:
                custom = ext.rollouts(self, policy, records, round_key)
                sampled = (custom.prompt_tokens, custom.prompt_mask, custom.tokens,
                           custom.loss_mask, custom.lengths, custom.logprobs)
                texts, rewards, correct = custom.texts, custom.rewards, custom.correct
                metrics = {**custom.metrics, "accuracy": float(np.mean(correct))}
            else:
                *sampled, texts = self._sample(policy, records, round_key)
                rewards, correct, metrics = self._score(records, texts, sampled[4])
            group = (*sampled, texts, rewards, correct)
            if ext.rewrite is not None:
                # fold_in data is uint32: 2**31 + rnd never meets a round's own key
                group, g_metrics = self._guide(policy, fields, jax.random.fold_in(key, 2**31 + rnd),
                                               group)
                metrics.update(g_metrics)
            p_tok, p_mask, s_tok, s_mask, s_len, s_logp, texts, rewards, correct = group
            # The trainer's own samples attend to exactly the tokens they train on.
            attend = custom.mask if ext.rollouts is not None else s_mask
            sampled_tokens += int(s_len.sum())
            if ext.reward_transform is not None:
                probes = None
                if ext.probes is not None:
                    probes = self.probe_logprobs(policy, fields, texts, p_tok, p_mask, ref_params)
                    metrics["probes/truncated"] = float(probes.truncated)
                view = _batch(step, fields, texts, p_tok, p_mask, s_tok, s_mask, s_len, rewards,
                              correct)
                rewards = np.asarray(ext.reward_transform(view, probes), np.float32).reshape(B, G)
            keep = np.ones(B, bool)
            if rl.dynamic_sampling:
                keep &= rewards.max(-1) > rewards.min(-1)
            if ext.group_filter is not None:
                self.extension_state["filter"], k = ext.group_filter.keep(
                    self.extension_state["filter"], rewards)
                keep &= np.asarray(k, bool)
            if first_metrics is None:
                first_metrics = {**metrics, "reward/mean": float(rewards.mean()),
                                 "reward/std": float(rewards.std()),
                                 "response/length": float(s_len.mean())}
            for b in range(B):
                row = (fields[b], texts[b * G:(b + 1) * G], p_tok[b], p_mask[b], s_tok[b],
                       s_mask[b], s_len[b], s_logp[b], rewards[b], correct[b], attend[b])
                if not keep[b]:
                    filtered += 1
                    spare.append(row)
                elif len(kept) < B:
                    kept.append(row)
            if len(kept) >= B:
                break
        short = B - len(kept)
        kept += spare[:short]  # still short after every round: dropped groups train as they are
        fields = [k[0] for k in kept]
        texts = [t for k in kept for t in k[1]]
        p_tok, p_mask, c_tok, c_mask, c_len, c_logp, rewards, correct, c_attend = (
            np.stack(x) for x in list(zip(*kept))[2:])
        R = B * G
        tokens = np.concatenate([np.repeat(p_tok, G, 0), c_tok.reshape(R, T)], 1)
        mask = np.concatenate([np.repeat(p_mask, G, 0), c_attend.reshape(R, T)], 1)
        c_mask = c_mask.reshape(R, T)
        zeros = np.zeros((R, T), np.float32)
        ref_logp = old_values = zeros
        with placement_lib.context(self.placement):
            if rl.kl_coef:
                if ref_params is None:
                    raise ValueError("RLConfig.kl_coef > 0 needs ref_params")
                ref_logp = np.asarray(self._ref_logp(ref_params, tokens, mask)) * c_mask
            if rl.uses_critic:
                old_values = np.asarray(self._values(state.params["critic"], tokens, mask)) * c_mask
        adv, ret = self._advantage_fn(rewards, c_mask.reshape(B, G, T), c_logp.reshape(R, T),
                                      ref_logp, old_values)
        metrics = {**first_metrics, "groups/filtered": filtered, "groups/short": short,
                   "rollout/tokens": sampled_tokens}
        token_rewards, aux_targets = zeros, np.zeros((R, 0), np.float32)
        if ext.dense is not None or ext.aux_loss is not None:
            view = _batch(step, fields, texts, p_tok, p_mask, c_tok, c_mask.reshape(B, G, T), c_len,
                          rewards, correct)
        if ext.dense is not None:
            self.extension_state["dense"], token_rewards, d_metrics = ext.dense.step(
                self.extension_state["dense"], view)
            token_rewards = np.asarray(token_rewards, np.float32) * c_mask
            metrics.update(d_metrics)
        if ext.aux_loss is not None:
            aux_targets = np.asarray(ext.aux_loss.targets(view), np.float32)
            if aux_targets.ndim != 2 or aux_targets.shape[0] != R:
                raise ValueError(f"AuxiliaryLoss.targets returned shape {aux_targets.shape}; "
                                 f"expected [{R} rows, K]")
        if self._ext_advantage is not None:
            adv = self._ext_advantage(AdvantageInputs(
                advantages=adv, rewards=rewards, correct=correct, lengths=c_len,
                mask=c_mask.reshape(B, G, T), token_rewards=token_rewards))
        rollout = Rollout(tokens=tokens, mask=mask, completion_mask=c_mask,
                          old_logp=c_logp.reshape(R, T), advantages=np.asarray(adv, np.float32),
                          ref_logp=ref_logp, old_values=old_values, returns=np.asarray(ret),
                          aux_targets=aux_targets)
        return rollout, metrics

    # -- update

    def update(self, state: TrainState, rollout: Rollout, step: int) -> tuple[TrainState, dict]:
        rl = self.rl
        R = rollout.tokens.shape[0]
        size = R // rl.minibatches
        data = {k: v for k, v in rollout._asdict().items() if v is not None}
        rng = np.random.default_rng([rl.seed, step])
        metrics = []
        for _ in range(rl.epochs):
            order = rng.permutation(R) if rl.minibatches > 1 else np.arange(R)
            for k in range(rl.minibatches):
                idx = order[k * size:(k + 1) * size]
                mb = {name: v[idx] for name, v in data.items()}
                den = reductions.reduction_denominator(
                    jnp.asarray(mb["completion_mask"]), mode=rl.reduction, max_len=rl.max_len)
                mb["denominator"] = np.full((size,), float(den), np.float32)
                state, m = self._update(state, split_micro(mb, rl.micro_batches), self.base)
                metrics.append(m)
        metrics = jax.device_get(metrics)
        for m in metrics:
            self.guard.check(step + 1, m)
        return state, {k: float(np.mean([m[k] for m in metrics])) for k in metrics[0]}

    # -- driver

    def step(self, state: TrainState, step: int, ref_params=None) -> tuple[TrainState, dict]:
        start = time.perf_counter()
        rollout, r_metrics = self.rollout(state, step, ref_params)
        mid = time.perf_counter()
        state, u_metrics = self.update(state, rollout, step)
        end = time.perf_counter()
        metrics = {**r_metrics, **u_metrics, "nonfinite/skipped": self.guard.skipped,
                   "perf/rollout_s": mid - start, "perf/update_s": end - mid,
                   "perf/tokens_per_s": r_metrics["rollout/tokens"] / max(end - start, 1e-9)}
        return state, metrics

    def run(self, state: TrainState, *, ref_params=None, checkpointer: Checkpointer | None = None,
            logger: MetricsLogger | None = None, stop_after: int | None = None,
            on_step: Callable[[int, dict], None] | None = None) -> TrainState:
        """Steps from `state.step` (or the latest checkpoint) to `rl.steps`."""
        if self.rl.kl_coef and ref_params is None and self.lora is None:
            raise ValueError(f"RLConfig.kl_coef={self.rl.kl_coef} needs ref_params (the "
                             f"reference policy) in RLTrainer.run; got None")
        if checkpointer is not None:
            restored = checkpointer.restore(self._checkpoint_tree(state))
            if restored is not None:
                state = self._from_checkpoint_tree(restored[0])
        for step in range(_rl_step(state, self.rl), self.rl.steps):
            state, metrics = self.step(state, step, ref_params)
            done = step + 1
            if logger is not None:
                logger.log(done, metrics, advance=1)
            if on_step is not None:
                on_step(done, metrics)
            if checkpointer is not None:
                checkpointer.maybe_save(done, self._checkpoint_tree(state), {"rl_step": done},
                                        force=done == self.rl.steps)
            if stop_after is not None and done >= stop_after:
                break
        return state


    def _checkpoint_tree(self, state: TrainState):
        """The policy state alone, or with stateful extensions {"policy", "extensions"}."""
        ext = {k: v for k, v in self.extension_state.items() if jax.tree.leaves(v)}
        return {"policy": state, "extensions": ext} if ext else state

    def _from_checkpoint_tree(self, tree) -> TrainState:
        if isinstance(tree, dict) and "extensions" in tree:
            self.extension_state.update(tree["extensions"])
            return tree["policy"]
        return tree


def _rl_step(state: TrainState, rl: RLConfig) -> int:
    """RL steps done so far: optimizer steps / (epochs x minibatches)."""
    return int(state.step) // (rl.epochs * rl.minibatches)


def _advantages(rewards_bg, mask_bgt, logp_rt, ref_logp_rt, values_rt, *, rl: RLConfig):
    """[R, T] advantages (and returns for the critic) for the configured estimator."""
    B, G, T = mask_bgt.shape
    R = B * G
    penalty = None
    if rl.kl_in_reward and rl.kl_coef:
        penalty = rl.kl_coef * kl_lib.kl_estimate(logp_rt, ref_logp_rt,
                                                  estimator=rl.kl_estimator).reshape(B, G, T)
    zeros = jnp.zeros((R, T), jnp.float32)
    if rl.advantage == "grpo":
        a = adv_lib.grpo_advantages(rewards_bg, scale_by_std=rl.scale_by_std, std_scope=rl.std_scope)
        return adv_lib.expand_to_tokens(a.reshape(R), mask_bgt.reshape(R, T)), zeros
    if rl.advantage == "rloo":
        a = adv_lib.rloo_advantages(rewards_bg)
        return adv_lib.expand_to_tokens(a.reshape(R), mask_bgt.reshape(R, T)), zeros
    if rl.advantage in ("reinforce_pp", "reinforce_pp_baseline"):
        a, _ = adv_lib.reinforce_pp_advantages(
            rewards_bg, mask_bgt, group_baseline=rl.advantage == "reinforce_pp_baseline",
            token_penalty_bgt=penalty, gamma=rl.gamma)
        return a.reshape(R, T), zeros
    # gae: outcome reward on the last token, minus the per-token KL penalty
    mask_rt = mask_bgt.reshape(R, T)
    token_r = adv_lib.place_at_last_token(rewards_bg.reshape(R), mask_rt)
    if penalty is not None:
        token_r = token_r - penalty.reshape(R, T)
    out = returns_lib.gae(token_r, values_rt, mask_rt, gamma=rl.gamma, lam=rl.lam)
    return adv_lib.masked_whiten(out.advantages, mask_rt), out.returns
