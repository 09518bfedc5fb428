"""The one supervised warm start: SFT on correct solutions before RM or RL training.

The tiny presets start from a small random model; a few hundred SFT steps on correct
synthetic solutions stand in for the instruction-tuned checkpoints the papers start
from. The stage is a `train.loop.run_stage` (checkpointed under
`<out>/checkpoints/<name>`, so a re-run resumes) on the backbone's mesh.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Callable, Sequence

import numpy as np

from rewardjax.data import pipeline as pl
from rewardjax.data.records import SFTExample
from rewardjax.losses.reductions import TOKEN_MEAN, masked_mean, masked_reduce
from rewardjax.models import ModelConfig
from rewardjax.recipes.backbone import Backbone
from rewardjax.train.loop import make_batch_fn, run_stage
from rewardjax.train.metrics import LogConfig
from rewardjax.train.prm import check_response_window, response_logprobs
from rewardjax.train.sft import sft_loss
from rewardjax.train.state import OptimizerConfig


# tokens [B, T], loss_mask [B, T] -> per-token loss weights [B, T] (>= 0; read only
# where loss_mask is set). See `train.sft` for why a trace's deciding tokens get more.
TokenWeights = Callable[[np.ndarray, np.ndarray], np.ndarray]


def span_token_weights(tokenizer, open_text: str, close_text: str, *,
                       weight: float) -> TokenWeights:
    """Per-token SFT weights: `weight` on each completion span from the tokens of
    `open_text` through the next tokens of `close_text` (both included), 1 elsewhere.

    With `weight=0` a tool's output inside an SFT trace (`<out>52</out>\\n`) is left out
    of the loss as the multi-turn RL loss leaves out observations, so the model learns
    to call and to copy the output, not to predict it from the question. Spans are
    matched on token ids, so `open_text`/`close_text` must tokenize the same inside a
    completion as alone (true of tags that start with a character no merge crosses).
    """
    if not weight >= 0:
        raise ValueError(f"span_token_weights: weight must be >= 0, got {weight}")
    marks = {}
    for name, text in (("open_text", open_text), ("close_text", close_text)):
        ids = tokenizer(text, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"span_token_weights: {name}={text!r} tokenizes to no tokens")
        marks[name] = np.asarray(ids, np.int64)
    open_ids, close_ids = marks["open_text"], marks["close_text"]

    def starts(row: np.ndarray, ids: np.ndarray) -> np.ndarray:
        if len(row) < len(ids):
            return np.zeros((0,), np.int64)
        windows = np.lib.stride_tricks.sliding_window_view(row, len(ids))
        return np.flatnonzero(np.all(windows == ids, axis=-1))

    def weights(tokens_bt: np.ndarray, loss_mask_bt: np.ndarray) -> np.ndarray:
        out = np.ones(tokens_bt.shape, np.float32)
        mask = np.asarray(loss_mask_bt, bool)
        for b in range(tokens_bt.shape[0]):
            closes = starts(tokens_bt[b], close_ids)
            for s in starts(tokens_bt[b], open_ids):
                if not mask[b, s]:
                    continue
                after = closes[closes >= s + len(open_ids)]
                stop = after[0] + len(close_ids) if len(after) else tokens_bt.shape[1]
                out[b, s:stop] = weight
        return out

    return weights


def sync_schedule(optimizer: OptimizerConfig, steps: int) -> OptimizerConfig:
    """`optimizer` with its cosine schedule spanning `steps` (a `--set steps=N` override
    then needs no matching `optimizer.total_steps=N`)."""
    steps = max(steps, 1)
    if optimizer.total_steps == steps:
        return optimizer
    return dataclasses.replace(optimizer, total_steps=steps,
                               warmup_steps=min(optimizer.warmup_steps, steps))


@dataclasses.dataclass(frozen=True, kw_only=True)
class SFTConfig:
    """A supervised warm start; `steps=0` skips it.

    Attributes:
      steps, batch_size: optimizer steps and examples per step.
      num_examples: SFT examples the caller draws (the pipeline repeats them as needed).
      response_window: project only the last this-many positions to the vocabulary
        (`windowed_sft_loss`; every completion must fit); None: every position.
      optimizer: its schedule is stretched to span `steps`.
    """

    steps: int = 300
    batch_size: int = 32
    num_examples: int = 8192
    response_window: int | None = 48
    optimizer: OptimizerConfig = OptimizerConfig(lr=3e-3, warmup_steps=20, total_steps=300)

    def __post_init__(self):
        object.__setattr__(self, "optimizer", sync_schedule(self.optimizer, self.steps))


def windowed_sft_loss(params, batch, *, config: ModelConfig, window: int | None,
                      **apply_kwargs):
    """Token-mean cross-entropy of the completion tokens (`loss_mask`), the SFT loss of
    `train.sft.sft_loss`, with only the last `window` positions projected to the
    vocabulary (`prm.response_logprobs`; every completion must fit in the window);
    weighted by `batch["loss_weights"]` when present, as `sft_loss` is."""
    logp = response_logprobs(params, batch["tokens"], batch["attention_mask"], config=config,
                             window=window, **apply_kwargs)
    mask = batch["loss_mask"]
    weights = batch["loss_weights"] if "loss_weights" in batch else mask
    loss = masked_reduce(-logp, weights, mode=TOKEN_MEAN, denominator=batch["denominator"][0])
    return loss, {"loss/sft": masked_mean(-logp, mask)}


def add_sft_denominator(batch: dict, token_weights: TokenWeights | None = None) -> dict:
    """SFT batches with the global denominator `sft_loss` divides by: the completion-token
    count, or with `token_weights` the sum of the weights it gives (added as
    `loss_weights`, zero outside `loss_mask`)."""
    keys = ("tokens", "attention_mask", "loss_mask", "positions")
    out = {k: batch[k] for k in keys}
    mask = np.asarray(batch["loss_mask"], np.float32)
    if token_weights is not None:
        w = np.asarray(token_weights(np.asarray(batch["tokens"]), np.asarray(batch["loss_mask"])))
        if w.shape != mask.shape:
            raise ValueError(f"token_weights returned shape {w.shape}; expected the batch's "
                             f"[B, T] = {mask.shape}")
        if not np.all(np.isfinite(w)) or np.any(w < 0):
            raise ValueError(f"token_weights must be finite and >= 0; got values in "
                             f"[{np.min(w)}, {np.max(w)}]")
        mask = (mask * w).astype(np.float32)
        out["loss_weights"] = mask
    out["denominator"] = np.full((mask.shape[0],), float(np.sum(mask[:, 1:])), np.float32)
    return out


def sft_warm_start(backbone: Backbone, records: Sequence[SFTExample], *, sft: SFTConfig,
                   buckets: tuple[int, ...], out_dir, seed: int = 0, name: str = "sft",
                   on_overflow: str = "raise", log: LogConfig | None = None,
                   token_weights: TokenWeights | None = None):
    """Token-mean cross-entropy on the completions of `records` for `sft.steps` steps on
    the backbone's mesh (logged as `log` asks); returns the trained params
    (`backbone.params` if steps = 0). `token_weights`: a weighted token mean instead
    (`train.sft`), e.g. `judges.deciding_token_weights`."""
    if sft.steps == 0:
        return backbone.params
    config = backbone.config
    pipe = pl.sft_pipeline(records, backbone.tokenizer, pl.PipelineConfig(
        batch_size=sft.batch_size, buckets=buckets, seed=seed, num_epochs=None,
        drop_remainder=True, on_overflow=on_overflow))
    apply_kwargs = backbone.spec.apply_kwargs
    if sft.response_window is None:
        loss_fn = functools.partial(sft_loss, config=config, **apply_kwargs)
    else:
        loss_fn = functools.partial(windowed_sft_loss, config=config,
                                    window=sft.response_window, **apply_kwargs)

    def transform(batch):
        if sft.response_window is not None:
            check_response_window(batch, sft.response_window)
        return add_sft_denominator(batch, token_weights)

    state, _ = run_stage(backbone.params, loss_fn, make_batch_fn(pipe, transform=transform),
                         optimizer=sft.optimizer, num_steps=sft.steps, out_dir=out_dir,
                         name=name, accumulate="sum", placement=backbone.placement, log=log)
    return state.params
