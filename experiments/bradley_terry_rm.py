"""Bradley–Terry reward model: a scalar head on a language-model backbone.

Paper: "Skywork-Reward-V2: Scaling Preference Data Curation via Human-AI Synergy"
(arXiv:2507.01352), whose reward models are Bradley–Terry models on instruction-tuned
backbones (Llama-3.1-8B-Instruct for the 8B model) scored at the last token; the loss is
the one of "Training language models to follow instructions with human feedback"
(InstructGPT, arXiv:2203.02155): −log σ(r_chosen − r_rejected).

What it reproduces: the recipe (SFT-initialised backbone + linear head on the last
token + BT loss, AdamW with warmup and cosine decay) and its standard read-outs on
held-out pairs: pairwise accuracy (ties wrong), per-subset accuracy and the expected
calibration error of σ(r_c − r_r).

Data: by default synthetic arithmetic pairs (correct solution vs the same solution with
one wrong step, `rewardjax.data.synthetic.arithmetic`); `data=hh_rlhf` (preset
`tiny_hh`) trains and evaluates on the shipped Anthropic HH-RLHF harmless-base test
pairs (2,312, split into train / held-out by a seeded permutation); `data=tfds:NAME`
reads every split of a prepared TFDS dataset as preference pairs and holds out the same
share (`data=tfds:hh_rlhf_harmless_base data_dir=DIR`: the shipped pairs through TFDS).

How `tiny` deviates: a 2-layer Qwen2-style model of width 64 on a byte-level BPE
vocabulary of 2,048, initialised by a few hundred SFT steps on correct solutions (the
paper starts from an 8B instruction-tuned model), 41k synthetic pairs (each seen once;
the wrong step is off by one, `recipes.TINY_BT_TASK`) instead of 26M curated human/AI
pairs, and 2,500 optimizer steps. 30% of the training pairs are step-level
(`step_fraction`, Step-DPO, arXiv:2406.18629): both sides end at the corrupted step,
so the wrong line is the last one before the read-out token. Those pairs teach the
small model to check a step; on whole-solution pairs alone it learns the check slowly
(0.83 held-out after 3,000 steps against 0.96 with the step pairs, errors of 1-2).
Held-out pairs are always whole solutions of test-split questions.

The `paper` preset loads a local Llama-3.1-8B-Instruct directory and uses whole
solutions only; the tech report does not state every optimizer setting, so lr / batch /
length there are the usual 8B BT settings (marked "assumed" below), not the report's.

Seed sensitivity, the variants tried and why the task has 3-5 operations:
`docs/experiments/bradley_terry_rm.md`.

    python experiments/bradley_terry_rm.py --preset tiny
    python experiments/bradley_terry_rm.py --preset tiny --seeds 0,1,2   # the seed spread
    python experiments/bradley_terry_rm.py --preset tiny_hh   # the HH-RLHF pairs, 300 steps
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import jax
import numpy as np

from rewardjax import experiment
from rewardjax.data import pipeline as pl
from rewardjax.data.hh_rlhf import read_hh_rlhf
from rewardjax.data.records import PreferencePair, SFTExample
from rewardjax.data.synthetic import arithmetic
from rewardjax.data.tfds import TFDS_PREFIX, DataSource
from rewardjax import recipes
from rewardjax.sharding import MeshConfig
from rewardjax.train import make_batch_fn, plot_curves, run_stage, write_result
from rewardjax.train import reward_model as rm
from rewardjax.train.metrics import LogConfig
from rewardjax.train.state import OptimizerConfig

DATASETS = ("synthetic", "hh_rlhf")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    """Attributes:
      data: "synthetic" (arithmetic pairs), "hh_rlhf" (the shipped harmless-base pairs)
        or "tfds:NAME" (a TFDS dataset in `data_dir`, its features mapped to
        `PreferencePair` by `data_features` items `field=feature`, default the
        builder's own mapping).
      backbone, mesh: the model and the mesh it trains on.
      num_train, num_test: synthetic pairs drawn from the train / test problem splits.
      step_fraction: share of the synthetic training pairs that are step-level (the
        solution up to its corrupted step on both sides, `arithmetic.preference_pairs`);
        held-out pairs are always whole solutions.
      hh_test_fraction: held-out share of the HH-RLHF (or TFDS) pairs.
      buckets: padded lengths; longer HH-RLHF pairs are skipped (counted), prompts keep
        their end when truncated.
      steps, batch_size, num_micro: optimizer steps, pairs per step, micro-batches per step.
      use_margin, center_coef, label_smoothing: Bradley–Terry options.
      log: the reward model stage's experiment trackers (`--set log.wandb=true`).
    """

    data: str = "synthetic"
    data_dir: str | None = None
    data_features: tuple[str, ...] = ()
    backbone: recipes.BackboneConfig = recipes.BackboneConfig()
    mesh: MeshConfig = MeshConfig()
    task: arithmetic.ArithmeticConfig = recipes.TINY_BT_TASK
    num_train: int = 40_960
    num_test: int = 512
    step_fraction: float = 0.3
    hh_test_fraction: float = 0.1
    buckets: tuple[int, ...] = (64, 96, 128)
    sft: recipes.SFTConfig = recipes.SFTConfig()
    steps: int = 2500
    batch_size: int = 16
    num_micro: int = 1
    optimizer: OptimizerConfig = OptimizerConfig(lr=1e-3, warmup_steps=20, total_steps=2500,
                                                 weight_decay=0.0)
    use_margin: bool = False
    center_coef: float = 0.0
    label_smoothing: float = 0.0
    eval_every: int = 500
    log: LogConfig = LogConfig()
    seed: int = 0

    def __post_init__(self):
        if self.data not in DATASETS and not self.data.startswith(TFDS_PREFIX):
            raise ValueError(f"Config.data must be one of {DATASETS} or "
                             f"'{TFDS_PREFIX}NAME', got {self.data!r}")
        object.__setattr__(self, "optimizer", recipes.sync_schedule(self.optimizer, self.steps))


# The figures `python -m rewardjax results` shows for this experiment.
HEADLINE = ("accuracy", "ece", "margin")

PRESETS = {
    "tiny": Config(),
    # ~1,550 training pairs fit the buckets: 300 steps are ~3 epochs.
    "tiny_hh": Config(data="hh_rlhf", steps=300, eval_every=100),
    "paper": Config(
        backbone=recipes.BackboneConfig(hf_path="checkpoints/Llama-3.1-8B-Instruct",
                                        compute_dtype="bfloat16", remat="full",
                                        scan_layers=True),
        task=arithmetic.ArithmeticConfig(), num_train=26_000_000, num_test=10_000,
        step_fraction=0.0,
        buckets=(1024, 2048, 4096, 8192, 16384),  # assumed maximum length
        sft=recipes.SFTConfig(steps=0),  # the instruct checkpoint is the initialisation
        steps=100_000, batch_size=256, num_micro=32,  # assumed: 1 epoch at batch 256
        optimizer=OptimizerConfig(lr=3e-6, warmup_steps=500, total_steps=100_000,
                                  min_lr_ratio=0.0, weight_decay=0.0),  # assumed
        eval_every=5_000),
}


def _data(config: Config):
    """(train pairs, held-out pairs, SFT examples for the warm start)."""
    if config.data == "synthetic":
        train = arithmetic.preference_pairs(config.num_train, seed=config.seed,
                                            config=config.task, split="train",
                                            step_fraction=config.step_fraction)
        test = arithmetic.preference_pairs(config.num_test, seed=config.seed + 1,
                                           config=config.task, split="test")
        sft = arithmetic.sft_examples(config.sft.num_examples, seed=config.seed + 2,
                                      config=config.task, split="train")
        return train, test, sft
    if config.data == "hh_rlhf":
        pairs = read_hh_rlhf().records
    else:
        pairs = list(DataSource(source=config.data, data_dir=config.data_dir, split="all",
                                features=config.data_features).records(PreferencePair))
    order = np.random.default_rng(config.seed).permutation(len(pairs))
    n_test = int(round(config.hh_test_fraction * len(pairs)))
    test = [pairs[i] for i in order[:n_test]]
    train = [pairs[i] for i in order[n_test:]]
    # The warm start imitates the preferred replies of the training split.
    sft = [SFTExample(prompt=p.prompt, completion=p.chosen) for p in train if p.chosen]
    return train, test, sft


def run(config: Config, out: Path) -> dict:
    key = jax.random.key(config.seed)
    backbone = recipes.load_backbone(config.backbone, jax.random.fold_in(key, 0), config.mesh)
    model, tokenizer = backbone.config, backbone.tokenizer
    train, test, sft_records = _data(config)
    # HH-RLHF (or TFDS) transcripts longer than the largest bucket are skipped (and counted).
    overflow = "raise" if config.data == "synthetic" else "skip"
    # HH-RLHF replies are long: the SFT loss then projects every position.
    sft = config.sft if overflow == "raise" else dataclasses.replace(config.sft,
                                                                     response_window=None)
    policy = recipes.sft_warm_start(backbone, sft_records, sft=sft, buckets=config.buckets,
                                    out_dir=out, seed=config.seed, on_overflow=overflow,
                                    log=config.log)
    params = rm.init_reward_model(policy, jax.random.fold_in(key, 1), config=model, head="scalar")

    train_pipe = pl.preference_pipeline(train, tokenizer, pl.PipelineConfig(
        batch_size=config.batch_size, buckets=config.buckets, seed=config.seed, num_epochs=None,
        drop_remainder=True, on_overflow=overflow))
    test_pipe = pl.preference_pipeline(test, tokenizer, pl.PipelineConfig(
        batch_size=64, buckets=config.buckets, shuffle=False, on_overflow=overflow))
    loss_fn = functools.partial(rm.pairwise_loss, config=model, use_margin=config.use_margin,
                                center_coef=config.center_coef,
                                label_smoothing=config.label_smoothing,
                                **config.backbone.apply_kwargs)
    eval_fn = functools.partial(rm.evaluate_pairs, pipeline=test_pipe, config=model)
    state, final = run_stage(params, loss_fn, make_batch_fn(train_pipe, num_micro=config.num_micro),
                             optimizer=config.optimizer, num_steps=config.steps, out_dir=out,
                             name="metrics", eval_fn=eval_fn, eval_every=config.eval_every,
                             checkpoint_every=config.eval_every, placement=backbone.placement,
                             log=config.log)

    plot_curves(out / "metrics.jsonl", ["loss", "accuracy", "margin", "grad_norm",
                                        "eval/accuracy", "eval/ece"],
                out / "curves.png", title=f"Bradley–Terry RM ({config.data})")
    result = {"data": config.data, "accuracy": final["accuracy"], "ece": final["ece"],
              "margin": final["margin"],
              **{k.replace("accuracy/", "acc_"): v for k, v in final.items()
                 if k.startswith("accuracy/")},
              "train_pairs": train_pipe.stats.examples, "test_pairs": test_pipe.stats.examples,
              "skipped": train_pipe.stats.skipped_overflow + test_pipe.stats.skipped_overflow,
              "steps": config.steps}
    write_result(out, result)
    return result


if __name__ == "__main__":
    experiment.main(PRESETS, run, description=__doc__)
