"""Reward-model training: backbone + head + loss for each kind of reward model.

A reward model is the params pytree `{"backbone": ..., "head": ...}` (see
`rewardjax.heads`). Each loss below is a pure `(params, micro_batch) -> (loss, metrics)`
for `make_train_step`, composing

    backbone (models.apply, hidden)  ->  head (heads.*)  ->  loss (losses.*)

for one batch type of `rewardjax.data.pipeline`:

| loss | batch | head | objective |
|---|---|---|---|
| `pairwise_loss` | `PairBatch` | scalar | Bradley–Terry (+margin, centering, smoothing) |
| `ranking_loss` | `RankingBatch` | scalar | Plackett–Luce over the k ranked responses |
| `rating_loss` | `RatingBatch` | multi-objective | per-attribute regression (masked) |
| `pair_rating_loss` | `PairBatch` + ratings | scalar, 1 + A outputs | BT + regression (HelpSteer2-Preference) |

Process reward models live in `rewardjax.train.prm`, ArmoRM's gating stage in
`rewardjax.train.multi_objective`.

Every loss reports `loss`-side terms from `rewardjax.losses` plus the same summary keys:
`accuracy` (pairwise, ties wrong), `margin` (mean r_c − r_r), `reward/mean`,
`reward/std` (over the micro-batch's responses; `make_train_step` averages micro-batch
metrics); `grad_norm` and `lr` come from the train step.

`evaluate_pairs` is the held-out loop (pairwise accuracy, per-subset accuracy, ECE);
a stage is trained by `train.loop.run_stage` with a batch function from
`train.loop.make_batch_fn`.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path


import jax
import jax.numpy as jnp
import numpy as np

from rewardjax import eval as rm_eval
from rewardjax import heads, sharding
from rewardjax.data.pipeline import Pipeline
from rewardjax.losses import preference
from rewardjax.losses.reductions import masked_mean
from rewardjax.models import ModelConfig
from rewardjax.train.metrics import read_jsonl

HEADS = ("scalar", "multi_objective", "step")


# ----------------------------------------------------------------------------- params


def init_reward_model(backbone_params, key, *, config: ModelConfig, head: str = "scalar",
                      num_outputs: int = 1, num_objectives: int | None = None,
                      gating_hidden: int | None = None) -> dict:
    """`{"backbone": backbone_params, "head": new head params}`.

    Args:
      backbone_params: a (pretrained / SFT) backbone; its LM head is kept but unused.
      head: "scalar" (`num_outputs` linear outputs), "multi_objective" (`num_objectives`
        ratings + a gating MLP of width `gating_hidden`, none if None) or "step" (PRM).
    """
    D = config.hidden_size
    if head == "scalar":
        h = heads.init_scalar_head(key, D, num_outputs=num_outputs)
    elif head == "multi_objective":
        if not num_objectives:
            raise ValueError("head='multi_objective' needs num_objectives")
        h = heads.init_multi_objective_head(key, D, num_objectives, gating_hidden=gating_hidden)
    elif head == "step":
        h = heads.init_step_head(key, D)
    else:
        raise ValueError(f"head must be one of {HEADS}, got {head!r}")
    return {"backbone": backbone_params, "head": h}


# ----------------------------------------------------------------------------- scoring


def _hidden(params, seq, config, apply_kwargs):
    return heads.backbone_hidden(params["backbone"], seq["tokens"], seq["attention_mask"],
                                 config=config, **apply_kwargs)


def _both_sides(batch) -> dict:
    """Chosen and rejected stacked into one [2B, T] batch: one backbone pass per step."""
    return {k: jnp.concatenate([batch["chosen"][k], batch["rejected"][k]], axis=0)
            for k in ("tokens", "attention_mask")}


def sequence_rewards(params, seq, *, config: ModelConfig, **apply_kwargs) -> jax.Array:
    """Scalar-head rewards of a flat sequence batch: [B] (or [B, O] for O outputs)."""
    return heads.scalar_reward(params["head"], _hidden(params, seq, config, apply_kwargs),
                               seq["attention_mask"])


def pair_rewards(params, batch, *, config: ModelConfig, **apply_kwargs
                 ) -> tuple[jax.Array, jax.Array]:
    """(r_chosen [B], r_rejected [B]) of a `PairBatch` (or [B, O] each for O outputs)."""
    r = sequence_rewards(params, _both_sides(batch), config=config, **apply_kwargs)
    B = batch["chosen"]["tokens"].shape[0]
    return r[:B], r[B:]


def _summary(chosen_b, rejected_b) -> dict:
    c, r = jax.lax.stop_gradient(chosen_b), jax.lax.stop_gradient(rejected_b)
    both = jnp.concatenate([c, r])
    return {"accuracy": jnp.mean(c > r), "margin": jnp.mean(c - r),
            "reward/mean": jnp.mean(both), "reward/std": jnp.std(both)}


# ----------------------------------------------------------------------------- losses


def pairwise_loss(params, batch, *, config: ModelConfig, use_margin: bool = False,
                  center_coef: float = 0.0, label_smoothing: float = 0.0, **apply_kwargs):
    """Bradley–Terry reward-model loss on a `PairBatch` (InstructGPT, arXiv:2203.02155).

        L = mean_b −log σ(r_c − r_r − m_b) (+ smoothing, + center_coef (r_c + r_r)²)

    with m_b the record's margin when `use_margin` (Llama 2, arXiv:2307.09288). See
    `losses.bradley_terry_loss`. `apply_kwargs` (remat, scan_layers) go to the backbone.
    """
    rc, rr = pair_rewards(params, batch, config=config, **apply_kwargs)
    margin = batch["margin"] if use_margin else 0.0
    loss_b, metrics = preference.bradley_terry_loss(
        rc, rr, margin=margin, center_coef=center_coef, label_smoothing=label_smoothing)
    return jnp.mean(loss_b), {**metrics, **_summary(rc, rr)}


def ranking_loss(params, batch, *, config: ModelConfig, **apply_kwargs):
    """Plackett–Luce loss on a `RankingBatch` of k responses per prompt
    ("Principled RLHF from Pairwise or K-wise Comparisons", arXiv:2301.11270).

    All B·K responses go through the backbone in one [B·K, T] pass; scores are
    reordered best first by `order` (padding slots, order = −1, are masked).
    """
    resp = batch["responses"]
    B, K, T = resp["tokens"].shape
    flat = {k: resp[k].reshape(B * K, T) for k in ("tokens", "attention_mask")}
    scores_bk = sequence_rewards(params, flat, config=config, **apply_kwargs).reshape(B, K)
    order = batch["order"]
    present = order >= 0
    ranked = jnp.take_along_axis(scores_bk, jnp.maximum(order, 0), axis=1)
    loss_b, metrics = preference.plackett_luce_loss(ranked, where=present)
    valid = jax.lax.stop_gradient(scores_bk)
    m = batch["response_mask"]
    mean = masked_mean(valid, m)
    metrics.update({"accuracy": metrics["ranking/pairwise_accuracy"],
                    "reward/mean": mean,
                    "reward/std": jnp.sqrt(masked_mean(jnp.square(valid - mean), m))})
    return jnp.mean(loss_b), metrics


def rating_predictions(params, seq, *, config: ModelConfig, **apply_kwargs
                       ) -> tuple[jax.Array, jax.Array | None]:
    """(ratings [B, A], gated score [B] or None) of a multi-objective reward model."""
    hidden = _hidden(params, seq, config, apply_kwargs)
    prompt_mask = seq["attention_mask"] & ~seq["loss_mask"]
    ratings, score, _ = heads.multi_objective_reward(params["head"], hidden,
                                                     seq["attention_mask"],
                                                     prompt_mask_bt=prompt_mask)
    return ratings, score


def rating_loss(params, batch, *, config: ModelConfig, freeze_backbone: bool = False,
                **apply_kwargs):
    """Multi-attribute rating regression on a `RatingBatch` (SteerLM / HelpSteer2,
    arXiv:2406.08673; ArmoRM stage 1, arXiv:2406.12845):

        L = mean over present (b, a) of (ŷ_ba − y_ba)²     (missing ratings are masked)

    `freeze_backbone`: stop gradients at the backbone (ArmoRM's linear probe on a frozen
    backbone; pair it with `multi_objective.freeze_except(tx, params, ["head"])`).
    """
    if freeze_backbone:
        params = {**params, "backbone": jax.lax.stop_gradient(params["backbone"])}
    ratings, _ = rating_predictions(params, batch, config=config, **apply_kwargs)
    sq, metrics = preference.regression_loss(ratings, batch["ratings"],
                                             where=batch["ratings_mask"])
    pred = jax.lax.stop_gradient(ratings)
    metrics.update({"reward/mean": masked_mean(pred, batch["ratings_mask"]),
                    "reward/std": jnp.std(pred)})
    return masked_mean(sq, batch["ratings_mask"]), metrics


def pair_rating_loss(params, batch, *, config: ModelConfig, regression_coef: float = 1.0,
                     use_margin: bool = False, use_scale: bool = False,
                     center_coef: float = 0.0, label_smoothing: float = 0.0, **apply_kwargs):
    """Bradley–Terry plus rating regression on pairs (HelpSteer2-Preference,
    "Complementing Ratings with Preferences", arXiv:2410.01257), one-stage joint form.

    The head has 1 + A outputs: output 0 is the reward, outputs 1..A the ratings. The
    batch is a `PairBatch` plus `ratings` [B, 2, A] (chosen, rejected) and
    `ratings_mask` [B, 2, A]; with `use_scale` the record's margin (preference
    strength) scales the pair's BT term ("Scaled BT") instead of shifting it.
    """
    rc, rr = pair_rewards(params, batch, config=config, **apply_kwargs)
    pred = jnp.stack([rc[:, 1:], rr[:, 1:]], axis=1)  # [B, 2, A]
    loss_b, metrics = preference.bt_regression_loss(
        rc[:, 0], rr[:, 0], pred, batch["ratings"], regression_coef=regression_coef,
        rating_mask=batch["ratings_mask"], margin=batch["margin"] if use_margin else 0.0,
        scale=batch["margin"] if use_scale else 1.0, center_coef=center_coef,
        label_smoothing=label_smoothing)
    return jnp.mean(loss_b), {**metrics, **_summary(rc[:, 0], rr[:, 0])}


# ----------------------------------------------------------------------------- batches


def iterate_batches(pipeline: Pipeline):
    """Every batch of a finite (evaluation) pipeline once, in order."""
    dataset = pipeline.dataset
    for i in range(len(dataset)):
        yield dataset[i]


# ----------------------------------------------------------------------------- evaluation


@functools.partial(jax.jit, static_argnames=("config",))
def _pair_scores(params, chosen, rejected, *, config):
    return pair_rewards(params, {"chosen": chosen, "rejected": rejected}, config=config)


def score_pairs(params, pipeline: Pipeline, *, config: ModelConfig) -> dict[str, np.ndarray]:
    """Rewards of every held-out pair: `chosen`, `rejected` [N] and `subset_id`, `index`."""
    out: dict[str, list] = {"chosen": [], "rejected": [], "subset_id": [], "index": []}
    for batch in iterate_batches(pipeline):
        side = {k: batch[k] for k in ("chosen", "rejected")}
        seqs = [{k: s[k] for k in ("tokens", "attention_mask")} for s in side.values()]
        rc, rr = map(sharding.host_local_array, _pair_scores(params, *seqs, config=config))
        if np.ndim(rc) > 1:  # multi-output heads: the reward is output 0
            rc, rr = rc[:, 0], rr[:, 0]
        out["chosen"].append(rc)
        out["rejected"].append(rr)
        out["subset_id"].append(batch["subset_id"])
        out["index"].append(batch["index"])
    return {k: np.concatenate(v) for k, v in out.items()}


def pair_metrics(chosen: np.ndarray, rejected: np.ndarray, subset_id: np.ndarray | None = None,
                 subset_names: tuple[str, ...] = (), *, num_bins: int = 10) -> dict[str, float]:
    """`accuracy` (ties wrong), `ece` of σ(r_c − r_r), `margin`, and `accuracy/<subset>`."""
    metrics = {"accuracy": rm_eval.pairwise_accuracy(chosen, rejected),
               "ece": rm_eval.expected_calibration_error(chosen, rejected, num_bins=num_bins),
               "margin": float(np.mean(chosen - rejected))}
    if subset_id is not None and subset_names:
        labels = [subset_names[i] if i >= 0 else "none" for i in subset_id]
        for name, acc in sorted(rm_eval.subset_accuracy(chosen, rejected, labels).items()):
            metrics[f"accuracy/{name}"] = acc
    return metrics


def evaluate_pairs(params, pipeline: Pipeline, *, config: ModelConfig) -> dict[str, float]:
    """Held-out pairwise accuracy, per-subset accuracy and ECE of a scalar RM."""
    s = score_pairs(params, pipeline, config=config)
    return pair_metrics(s["chosen"], s["rejected"], s["subset_id"], pipeline.subset_names)


# ----------------------------------------------------------------------------- running


def merge_metrics(out_dir: str | os.PathLike, names: list[str], *,
                  out_name: str = "metrics.jsonl") -> Path:
    """Joins the metrics of several stages (`<name>.jsonl`) into one JSONL whose keys
    are prefixed `<name>/`, e.g. to plot two runs side by side."""
    out_dir = Path(out_dir)
    lines = []
    for name in names:
        for row in read_jsonl(out_dir / f"{name}.jsonl"):
            lines.append(json.dumps({"step": row["step"], **{
                f"{name}/{k}": v for k, v in row.items() if k != "step"}}))
    path = out_dir / out_name
    path.write_text("".join(line + "\n" for line in lines))
    return path
