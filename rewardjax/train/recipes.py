"""Pieces the reward-model experiments share: where the backbone comes from, and a short
supervised warm start of a small language model on the synthetic task.

A backbone is either a local Hugging Face directory (weights + tokenizer, the `paper`
presets) or a small random model on the default tokenizer (the `tiny` presets). The
tiny presets warm-start it with SFT on correct solutions, the stand-in for the
instruction-tuned checkpoints reward models are initialised from.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rewardjax.data import pipeline as pl
from rewardjax.data.encoding import encode_prompt
from rewardjax.data.records import SFTExample
from rewardjax.data.synthetic.arithmetic import ArithmeticConfig
from rewardjax.data.tokenizer import default_tokenizer, load_tokenizer
from rewardjax.models import ModelConfig, hf, init_params
from rewardjax.sampling import SamplerConfig, sample
from rewardjax.losses.reductions import TOKEN_MEAN, masked_mean, masked_reduce
from rewardjax.train.prm import check_response_window, response_logprobs
from rewardjax.train.reward_model import make_batch_fn, run_stage
from rewardjax.train.sft import sft_loss
from rewardjax.train.state import OptimizerConfig


# The tiny presets' task: single-digit values, + and − with operands 1..3, 2-4 operations.
# A 2-layer model learns to check such a step within a few hundred CPU steps; the
# default task (values up to 99, ×, operands up to 9) needs far longer.
TINY_TASK = ArithmeticConfig(min_steps=2, max_steps=4, max_start=9, max_value=9, max_operand=3,
                             ops=("+", "-"), max_error=2)

# The reward-model experiments' tiny task: TINY_TASK with operands 1..2. A 2-layer width-64
# PRM trained on every step's label learns to check a step ("a op b = c") only after a
# plateau of ~500 optimizer steps (first-error F1 0.52 after 800); trained on solutions
# cut after their first wrong step (`StepSolution.up_to_first_error`) it reaches F1 0.9
# after 300 steps and 1.0 after 600.
TINY_RM_TASK = dataclasses.replace(TINY_TASK, max_operand=2)

# The Bradley–Terry experiment's tiny task: TINY_RM_TASK with 3-5 operations. With 2-4,
# the train split holds only ~100 distinct 2-step questions (seen ~13 times each in 4k
# pairs) and 45% of 512 held-out pairs come from a dozen 2-step test questions; a pairwise
# RM memorises the training questions' answers, and since neighbouring questions'
# answers differ by 1-2 (the size of a corruption) it scores those test pairs below
# chance. 3-5 operations give ~3,400 train and ~250 held-out questions in even shares.
TINY_BT_TASK = dataclasses.replace(TINY_RM_TASK, min_steps=3, max_steps=5)


@dataclasses.dataclass(frozen=True, kw_only=True)
class BackboneConfig:
    """A local Hugging Face checkpoint (`hf_path`) or a small random model.

    Attributes:
      hf_path: directory with config.json, safetensors and the tokenizer; when set the
        size fields below are ignored.
      dtype: parameter dtype name.
      model_type ... rope_theta: the random model's architecture (vocabulary: the default
        tokenizer's).
      init_std: std of the random weights; None: 1/sqrt(hidden_size). GPT-2's 0.02 is
        too small for narrow models: at width 64 every residual branch starts ~40x below
        the embeddings, and a 2-layer model then needs hundreds of steps to learn even to
        copy the previous token (at 1/sqrt(D) it does so within 100 SFT steps).
      remat, scan_layers: passed to the backbone in training losses.
    """

    hf_path: str | None = None
    dtype: str = "float32"
    model_type: str = "qwen2"
    hidden_size: int = 64
    intermediate_size: int = 256
    num_layers: int = 2
    num_heads: int = 4
    num_kv_heads: int = 2
    head_dim: int = 16
    rope_theta: float = 10000.0
    init_std: float | None = None
    remat: str = "none"
    scan_layers: bool = False

    @property
    def apply_kwargs(self) -> dict:
        return {"remat": self.remat, "scan_layers": self.scan_layers}


def load_backbone(spec: BackboneConfig, key: jax.Array):
    """(model config, params, tokenizer) for `spec`."""
    if spec.hf_path is not None:
        if not os.path.isdir(spec.hf_path):
            raise FileNotFoundError(f"BackboneConfig.hf_path {spec.hf_path!r} is not a directory")
        config, params = hf.load(spec.hf_path, dtype=jnp.dtype(spec.dtype))
        return config, params, load_tokenizer(spec.hf_path)
    tokenizer = default_tokenizer()
    config = ModelConfig(
        model_type=spec.model_type, vocab_size=len(tokenizer), hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size, num_layers=spec.num_layers,
        num_heads=spec.num_heads, num_kv_heads=spec.num_kv_heads, head_dim=spec.head_dim,
        rope_theta=spec.rope_theta, qkv_bias=spec.model_type == "qwen2", tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    std = spec.init_std if spec.init_std is not None else spec.hidden_size ** -0.5
    return config, init_params(config, key, dtype=jnp.dtype(spec.dtype), std=std), tokenizer


@dataclasses.dataclass(frozen=True, kw_only=True)
class SFTConfig:
    """A supervised warm start; `steps=0` skips it. `response_window`: project only the
    last this-many positions to the vocabulary (`windowed_sft_loss`); None: all."""

    steps: int = 300
    batch_size: int = 32
    num_examples: int = 8192
    response_window: int | None = 48
    optimizer: OptimizerConfig = OptimizerConfig(lr=3e-3, warmup_steps=20, total_steps=300)

    def __post_init__(self):
        object.__setattr__(self, "optimizer", sync_schedule(self.optimizer, self.steps))


def sync_schedule(optimizer: OptimizerConfig, steps: int) -> OptimizerConfig:
    """`optimizer` with its cosine schedule spanning `steps` (a `--set steps=N` override
    then needs no matching `optimizer.total_steps=N`)."""
    steps = max(steps, 1)
    if optimizer.total_steps == steps:
        return optimizer
    return dataclasses.replace(optimizer, total_steps=steps,
                               warmup_steps=min(optimizer.warmup_steps, steps))


def windowed_sft_loss(params, batch, *, config: ModelConfig, window: int | None,
                      **apply_kwargs):
    """Token-mean cross-entropy of the completion tokens (`loss_mask`), the SFT loss of
    `train.sft.sft_loss`, with only the last `window` positions projected to the
    vocabulary (`prm.response_logprobs`; every completion must fit in the window)."""
    logp = response_logprobs(params, batch["tokens"], batch["attention_mask"], config=config,
                             window=window, **apply_kwargs)
    mask = batch["loss_mask"]
    loss = masked_reduce(-logp, mask, mode=TOKEN_MEAN, denominator=batch["denominator"][0])
    return loss, {"loss/sft": masked_mean(-logp, mask)}


def add_sft_denominator(batch: dict) -> dict:
    """SFT batches with the global completion-token count `sft_loss` divides by."""
    den = float(np.sum(batch["loss_mask"][:, 1:]))
    keys = ("tokens", "attention_mask", "loss_mask", "positions")
    out = {k: batch[k] for k in keys}
    out["denominator"] = np.full((batch["tokens"].shape[0],), den, np.float32)
    return out


def sft_warm_start(params, records: Sequence[SFTExample], tokenizer, *, config: ModelConfig,
                   sft: SFTConfig, buckets: tuple[int, ...], out_dir, seed: int = 0,
                   name: str = "sft", on_overflow: str = "raise", remat: str = "none",
                   scan_layers: bool = False):
    """Token-mean cross-entropy on the completions of `records` for `sft.steps` steps
    (checkpointed and resumable under `<out_dir>/checkpoints/<name>`); returns params."""
    if sft.steps == 0:
        return params
    pipe = pl.sft_pipeline(records, tokenizer, pl.PipelineConfig(
        batch_size=sft.batch_size, buckets=buckets, seed=seed, num_epochs=None,
        drop_remainder=True, on_overflow=on_overflow))
    if sft.response_window is None:
        loss_fn = functools.partial(sft_loss, config=config, remat=remat, scan_layers=scan_layers)
    else:
        loss_fn = functools.partial(windowed_sft_loss, config=config, window=sft.response_window,
                                    remat=remat, scan_layers=scan_layers)
    def transform(batch):
        if sft.response_window is not None:
            check_response_window(batch, sft.response_window)
        return add_sft_denominator(batch)

    state, _ = run_stage(params, loss_fn, make_batch_fn(pipe, transform=transform),
                      optimizer=sft.optimizer, num_steps=sft.steps, out_dir=out_dir, name=name,
                      accumulate="sum")
    return state.params


def greedy_accuracy(params, prompts: Sequence, answers: Sequence, tokenizer, *,
                    config: ModelConfig, verify, max_new_tokens: int = 64,
                    prompt_buckets: tuple[int, ...] = (64, 128, 256), batch_size: int = 128
                    ) -> float:
    """Fraction of prompts whose greedy completion `verify(text, answer)` accepts."""
    sampling = SamplerConfig(max_new_tokens=max_new_tokens, temperature=0.0,
                             eos_ids=eos_ids(tokenizer), pad_id=tokenizer.pad_token_id,
                             prompt_buckets=prompt_buckets)
    correct = 0
    for lo in range(0, len(prompts), batch_size):
        chunk = [encode_prompt(tokenizer, p) for p in prompts[lo:lo + batch_size]]
        n = len(chunk)
        chunk += [chunk[-1]] * (batch_size - n)
        s = sample(params, chunk, None, config=config, sampling=sampling)
        tokens, lengths = jax.device_get((s.tokens[:, 0], s.lengths[:, 0]))
        for t, m, a in zip(tokens[:n], lengths[:n], answers[lo:lo + n]):
            correct += bool(verify(tokenizer.decode(t[:m], skip_special_tokens=True), a))
    return correct / max(len(prompts), 1)


def eos_ids(tokenizer) -> tuple[int, ...]:
    """The tokenizer's eos plus the chat template's end-of-turn token, if it has one."""
    ids = [tokenizer.eos_token_id]
    end = tokenizer.convert_tokens_to_ids("<|im_end|>")
    if isinstance(end, int) and end != tokenizer.unk_token_id:
        ids.append(end)
    return tuple(dict.fromkeys(i for i in ids if i is not None))
