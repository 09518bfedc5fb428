"""Multi-objective reward model with a prompt-conditioned gate (ArmoRM).

Paper: "Interpretable Preferences via Multi-Objective Reward Modeling and
Mixture-of-Experts" (Wang et al., arXiv:2406.12845). Stage 1 regresses absolute ratings
of several named objectives from the backbone's last-token state; stage 2 freezes the
backbone and the regression layer and trains a gating MLP on the prompt's state with a
Bradley–Terry loss on preference pairs, the score being the gate-weighted sum of the
objective ratings (softmax weights with a learned temperature).

What it reproduces: both stages on deterministic synthetic data built from the
arithmetic task (`rewardjax.data.synthetic.attributes`): ratings for correctness,
conciseness (no filler lines) and format (`Answer: N`), and preferences whose judge
weighs the three differently for "plain" and "Be brief." prompts. Reported: held-out
per-attribute MSE (stage 1), gated pairwise accuracy (stage 2, overall and per prompt
style) next to the accuracy of the un-gated mean of the ratings, and the mean gate
weights.

How `tiny` deviates: a 2-layer width-128 model SFT-warm-started on correct solutions
(paper: Llama-3-8B initialised from a Bradley–Terry RM), 3 synthetic objectives
instead of 19 from 8 rating datasets, and stage 1 fine-tunes the backbone together with
the regression layer (the paper fits a linear probe on a frozen backbone:
`--set freeze_backbone=true`), because a tiny backbone's frozen features do not yet
encode step correctness. No verbosity-decorrelation transform: all three synthetic
objectives are "higher is better", conciseness included. The `paper` preset loads a
local Llama-3-8B reward-model directory with the paper's gate (3 hidden layers of 1024
in the paper; one here, the head's only form) and settings.

    python experiments/multi_objective_rm.py --preset tiny
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import jax

from rewardjax import experiment
from rewardjax.data import pipeline as pl
from rewardjax.data.synthetic import arithmetic, attributes
from rewardjax.train import plot_curves, write_result
from rewardjax.train import multi_objective as mo
from rewardjax import recipes
from rewardjax.sharding import MeshConfig
from rewardjax.train import make_batch_fn, run_stage
from rewardjax.train import reward_model as rm
from rewardjax.train.state import OptimizerConfig

@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    """Attributes:
      num_rated, per_problem: problems with rated responses for stage 1, and responses each.
      num_pairs, num_test_pairs: preference pairs for stage 2 / held-out evaluation.
      freeze_backbone: stage 1 as a linear probe on the frozen backbone (paper).
      gating_hidden: width of the gating MLP.
      stage1_steps, stage2_steps: optimizer steps of each stage.
    """

    backbone: recipes.BackboneConfig = recipes.BackboneConfig()
    mesh: MeshConfig = MeshConfig()
    task: arithmetic.ArithmeticConfig = recipes.TINY_TASK
    num_rated: int = 2048
    per_problem: int = 2
    num_test_rated: int = 256
    num_pairs: int = 2048
    num_test_pairs: int = 512
    buckets: tuple[int, ...] = (64, 96, 128)
    sft: recipes.SFTConfig = recipes.SFTConfig()
    freeze_backbone: bool = False
    stage1_steps: int = 300
    stage1_batch_size: int = 32
    stage1_optimizer: OptimizerConfig = OptimizerConfig(lr=2e-3, warmup_steps=20, total_steps=300)
    gating_hidden: int = 64
    stage2_steps: int = 300
    stage2_batch_size: int = 64
    stage2_optimizer: OptimizerConfig = OptimizerConfig(lr=3e-3, warmup_steps=10, total_steps=300)
    eval_every: int = 100
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "stage1_optimizer",
                           recipes.sync_schedule(self.stage1_optimizer, self.stage1_steps))
        object.__setattr__(self, "stage2_optimizer",
                           recipes.sync_schedule(self.stage2_optimizer, self.stage2_steps))


# The figures `python -m rewardjax results` shows for this experiment.
HEADLINE = ("gated_accuracy", "uniform_accuracy", "gated_accuracy_before", "ece")

PRESETS = {
    "tiny": Config(),
    "paper": Config(
        backbone=recipes.BackboneConfig(hf_path="checkpoints/FsfairX-LLaMA3-RM-v0.1",
                                        compute_dtype="bfloat16", remat="full", scan_layers=True),
        task=arithmetic.ArithmeticConfig(), num_rated=585_000, per_problem=1,
        num_test_rated=5_000, num_pairs=1_000_000, num_test_pairs=10_000,
        buckets=(1024, 2048, 4096), sft=recipes.SFTConfig(steps=0),
        freeze_backbone=True, stage1_steps=20_000, stage1_batch_size=256,
        stage1_optimizer=OptimizerConfig(lr=1e-3, warmup_steps=0, total_steps=20_000),
        gating_hidden=1024, stage2_steps=10_000, stage2_batch_size=1024,
        stage2_optimizer=OptimizerConfig(lr=1e-3, warmup_steps=0, total_steps=10_000),
        eval_every=1_000),
}


def run(config: Config, out: Path) -> dict:
    key = jax.random.key(config.seed)
    backbone = recipes.load_backbone(config.backbone, jax.random.fold_in(key, 0), config.mesh)
    model, tokenizer = backbone.config, backbone.tokenizer
    sft_records = arithmetic.sft_examples(config.sft.num_examples, seed=config.seed + 2,
                                          config=config.task, split="train")
    policy = recipes.sft_warm_start(backbone, sft_records, sft=config.sft,
                                    buckets=config.buckets, out_dir=out, seed=config.seed)
    names = attributes.ATTRIBUTES
    params = rm.init_reward_model(policy, jax.random.fold_in(key, 1), config=model,
                                  head="multi_objective", num_objectives=len(names),
                                  gating_hidden=config.gating_hidden)

    # Stage 1: rating regression.
    rated = attributes.rating_records(config.num_rated, seed=config.seed, config=config.task,
                                      split="train", per_problem=config.per_problem)
    rated_test = attributes.rating_records(config.num_test_rated, seed=config.seed + 1,
                                           config=config.task, split="test", per_problem=1)
    rating_pipe = pl.rating_pipeline(rated, tokenizer, pl.PipelineConfig(
        batch_size=config.stage1_batch_size, buckets=config.buckets, seed=config.seed,
        num_epochs=None, drop_remainder=True), attributes=names)
    rating_test_pipe = pl.rating_pipeline(rated_test, tokenizer, pl.PipelineConfig(
        batch_size=128, buckets=config.buckets, shuffle=False), attributes=names)
    tx1 = config.stage1_optimizer.make()
    if config.freeze_backbone:
        tx1 = mo.freeze_except(tx1, params, ["head"])
    loss1 = functools.partial(rm.rating_loss, config=model, freeze_backbone=config.freeze_backbone,
                              **config.backbone.apply_kwargs)
    eval1 = functools.partial(mo.evaluate_ratings, pipeline=rating_test_pipe, config=model)
    state, mse = run_stage(params, loss1, make_batch_fn(rating_pipe), tx=tx1,
                         optimizer=config.stage1_optimizer, num_steps=config.stage1_steps,
                         out_dir=out, name="stage1", eval_fn=eval1, eval_every=config.eval_every,
                         checkpoint_every=config.eval_every, placement=backbone.placement)
    params = state.params

    # Stage 2: the gate, on features of the frozen backbone.
    pairs = attributes.preference_pairs(config.num_pairs, seed=config.seed + 3,
                                        config=config.task, split="train")
    test_pairs = attributes.preference_pairs(config.num_test_pairs, seed=config.seed + 4,
                                             config=config.task, split="test")
    feature_pipe = functools.partial(pl.preference_pipeline, tokenizer=tokenizer,
                                     config=pl.PipelineConfig(batch_size=128,
                                                              buckets=config.buckets,
                                                              shuffle=False))
    test_pipe = feature_pipe(test_pairs)
    train_features = mo.pair_features(params["backbone"], feature_pipe(pairs), config=model)
    test_features = mo.pair_features(params["backbone"], test_pipe, config=model)
    head = params["head"]
    eval2 = functools.partial(mo.evaluate_gating, features=test_features,
                              subset_names=test_pipe.subset_names)
    tx2 = mo.freeze_except(config.stage2_optimizer.make(), head, ["gate"])
    before = eval2(head)
    state, gated = run_stage(head, mo.gating_loss,
                         mo.feature_batch_fn(train_features, batch_size=config.stage2_batch_size,
                                             seed=config.seed),
                         tx=tx2, optimizer=config.stage2_optimizer, num_steps=config.stage2_steps,
                         out_dir=out, name="metrics", eval_fn=eval2, eval_every=config.eval_every,
                         checkpoint_every=config.eval_every)

    plot_curves(out / "stage1.jsonl", ["loss", "regression/mae", "eval/mse"]
                + [f"eval/mse/{a}" for a in names], out / "stage1.png",
                title="ArmoRM stage 1: rating regression")
    plot_curves(out / "metrics.jsonl", ["loss", "accuracy", "gate/entropy", "eval/accuracy",
                                        "eval/uniform/accuracy"], out / "curves.png",
                title="ArmoRM stage 2: gating")
    result = {"gated_accuracy": gated["accuracy"], "uniform_accuracy": gated["uniform/accuracy"],
              "gated_accuracy_before": before["accuracy"],
              **{f"acc_{s}": gated[f"accuracy/{s}"] for s in test_pipe.subset_names},
              "mse": mse["mse"], **{f"mse_{a}": mse[f"mse/{a}"] for a in names},
              **{f"gate_{a}": gated[f"gate/weight_{k}"] for k, a in enumerate(names)},
              "ece": gated["ece"]}
    write_result(out, result)
    return result


if __name__ == "__main__":
    experiment.main(PRESETS, run, description=__doc__)
