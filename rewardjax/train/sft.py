"""Supervised fine-tuning: next-token cross-entropy on completion tokens only.

The batch is a dict of `[B, T]` arrays (`tokens`, `attention_mask`, `loss_mask`, and
optionally `positions` and `loss_weights`) as produced by
`rewardjax.data.pipeline.sft_pipeline`; `loss_mask` marks completion tokens. The loss is
the token mean over the whole (accumulated) batch: each micro-batch divides its token
sum by the global token count, so micro-batch losses add up exactly
(`make_train_step(..., accumulate="sum")`).

With `loss_weights` w (0 outside `loss_mask`) the mean is weighted,

    L = Σ_bt w_bt ℓ_bt / Σ_bt w_bt,

and `denominator` is the global Σ w. Why: a judge's trace is decided by one verdict
token in ~60; in the plain token mean that token is ~2% of the loss and a small judge
learns every copied token of the trace but not the verdict (docs/experiments/rm_r1.md).
"""

from __future__ import annotations

from rewardjax.losses import reductions, sft
from rewardjax.models import ModelConfig, apply


def sft_loss(params, batch, *, config: ModelConfig, remat: str = "none",
             scan_layers: bool = False):
    """(loss, metrics) for one micro-batch; `batch["denominator"]` is the global count
    (the global weight sum when `batch["loss_weights"]` is given). The metric `loss/sft`
    stays the unweighted token mean, comparable across weightings."""
    tokens, mask = batch["tokens"], batch["attention_mask"]
    logits, _ = apply(params, tokens, batch.get("positions"), config=config, mask_bt=mask,
                      remat=remat, scan_layers=scan_layers)
    target_mask = batch["loss_mask"][:, 1:]
    weights = batch["loss_weights"][:, 1:] if "loss_weights" in batch else target_mask
    loss_bt, metrics = sft.token_cross_entropy(logits[:, :-1], tokens[:, 1:], where=target_mask)
    loss = reductions.masked_reduce(loss_bt, weights, mode=reductions.TOKEN_MEAN,
                                    denominator=batch["denominator"][0])
    return loss, metrics
