"""Process reward model: hard step labels vs Monte Carlo soft labels.

Papers: "Math-Shepherd: Verify and Reinforce LLMs Step-by-step without Human
Annotations" (arXiv:2312.08935), which labels step j by the fraction of k policy
completions from the prefix that reach the right answer (soft estimation), and "The
Lessons of Developing Process Reward Models in Mathematical Reasoning"
(arXiv:2501.07301), which trains PRMs with step-level BCE and evaluates them by
first-error identification on ProcessBench ("ProcessBench: Identifying Process Errors
in Mathematical Reasoning", arXiv:2412.06559).

What it reproduces: two PRMs with the same backbone, data and budget, one trained on
hard labels (1 before the first wrong step, 0 from it on) and one on Monte Carlo soft
labels from rollouts of a policy; both are evaluated by ProcessBench-style first-error
F1 (harmonic mean of the exact-index accuracy on erroneous solutions and of the "no
error" accuracy on correct ones; the predicted first error is the first step with
P(correct) < 0.5) on held-out solutions, half correct and half with one corrupted step,
next to trivial baselines (always "no error"; a random step; a coin flip between them).

How `tiny` deviates: the policy is a 2-layer width-64 model SFT-trained for a few
hundred steps on the synthetic arithmetic task (Math-Shepherd uses 7B-70B policies on
GSM8K/MATH), it labels 2,048 solutions with k = 4 rollouts each (paper: N = 8 on 170k+
solutions), the solutions it labels are the task's own correct/corrupted solutions
rather than policy samples, and the arithmetic uses single-digit values and operands
1..2 (`recipes.TINY_RM_TASK`) so a 2-layer PRM learns to check a step within minutes on
a CPU. Both PRMs train on each solution up to its first step labelled wrong, as PRM800K
("Let's Verify Step by Step", arXiv:2305.20050) labels solutions; trained on every
step, the tiny PRM must also learn to carry an earlier error forward and plateaus for
hundreds of steps (`--set up_to_first_error=false`). The
`paper` preset points at a local Qwen2.5-Math-7B-Instruct directory with the published
k and learning rate.

    python experiments/process_rm.py --preset tiny
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import jax
import numpy as np

from rewardjax import eval as rm_eval
from rewardjax import experiment, recipes
from rewardjax.data import pipeline as pl
from rewardjax.data.monte_carlo import chat_context, monte_carlo_step_labels
from rewardjax.data.synthetic import arithmetic
from rewardjax.data.tokenizer import eos_ids
from rewardjax.sampling import SamplerConfig
from rewardjax.sharding import MeshConfig
from rewardjax.train import make_batch_fn, plot_curves, prm, run_stage, write_result
from rewardjax.train import reward_model as rm
from rewardjax.train.evaluate import greedy_accuracy
from rewardjax.train.state import OptimizerConfig

@dataclasses.dataclass(frozen=True, kw_only=True)
class MonteCarloConfig:
    """Rollouts per prefix (`k`), their sampling temperature and length, and the label
    estimate ("soft": fraction correct; "hard": any correct)."""

    k: int = 4
    temperature: float = 1.0
    max_new_tokens: int = 48
    estimate: str = "soft"
    batch_size: int = 256


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    """Attributes:
      num_train: solutions both PRMs train on (each labelled both ways).
      num_test: held-out solutions (half corrupted) for first-error F1.
      num_policy_eval: held-out prompts the policy's greedy accuracy is measured on.
      steps, batch_size: PRM optimizer steps and solutions per step (each PRM).
      last_step_only: train on the answer step only (an ORM on the same data).
      up_to_first_error: train on each solution only up to its first step labelled
        wrong (< 0.5, by hard or Monte Carlo labels), as PRM800K labels solutions
        (`StepSolution.up_to_first_error`); False trains on every step.
    """

    backbone: recipes.BackboneConfig = recipes.BackboneConfig()
    mesh: MeshConfig = MeshConfig()
    task: arithmetic.ArithmeticConfig = recipes.TINY_RM_TASK
    num_train: int = 2048
    num_test: int = 512
    num_policy_eval: int = 256
    buckets: tuple[int, ...] = (64, 80, 96)
    max_steps: int = 8
    sft: recipes.SFTConfig = recipes.SFTConfig()
    mc: MonteCarloConfig = MonteCarloConfig()
    steps: int = 800
    batch_size: int = 32
    num_micro: int = 1
    optimizer: OptimizerConfig = OptimizerConfig(lr=2e-3, warmup_steps=20, total_steps=800)
    last_step_only: bool = False
    up_to_first_error: bool = True
    threshold: float = 0.5
    eval_every: int = 400
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "optimizer", recipes.sync_schedule(self.optimizer, self.steps))


# The figures `python -m rewardjax results` shows for this experiment.
HEADLINE = ("f1", "f1_mc", "step_acc", "f1_random_or_none")

PRESETS = {
    "tiny": Config(),
    "paper": Config(
        backbone=recipes.BackboneConfig(hf_path="checkpoints/Qwen2.5-Math-7B-Instruct",
                                        compute_dtype="bfloat16", remat="full", scan_layers=True),
        task=arithmetic.ArithmeticConfig(),
        num_train=445_000, num_test=3_400, buckets=(512, 1024, 2048), max_steps=64,
        sft=recipes.SFTConfig(steps=0),  # the instruct checkpoint is the policy
        mc=MonteCarloConfig(k=8, temperature=0.7, max_new_tokens=1024),  # Math-Shepherd: N = 8
        steps=14_000, batch_size=64, num_micro=16,
        optimizer=OptimizerConfig(lr=2e-6, warmup_steps=200, total_steps=14_000,
                                  min_lr_ratio=0.0),  # Math-Shepherd: 2e-6 (7B)
        eval_every=1_000),
}


def monte_carlo_records(policy, records, tokenizer, *, model, config: Config, key):
    """The training solutions relabelled by policy rollouts (Math-Shepherd)."""
    sampling = SamplerConfig(max_new_tokens=config.mc.max_new_tokens,
                             temperature=config.mc.temperature,
                             eos_ids=eos_ids(tokenizer), pad_id=tokenizer.pad_token_id,
                             prompt_buckets=config.buckets)
    rollout = prm.sampler_rollout_fn(policy, tokenizer, config=model, sampling=sampling, key=key,
                                     batch_size=config.mc.batch_size)
    problems = [arithmetic.problem(i, seed=config.seed, config=config.task, split="train")
                for i in range(len(records))]
    answers = [p.answer for p in problems]
    labelled = monte_carlo_step_labels(
        [r.prompt for r in records], [r.steps for r in records], answers, rollout,
        k=config.mc.k, verify=arithmetic.is_correct, estimate=config.mc.estimate,
        context_fn=chat_context(tokenizer), batch_size=config.mc.batch_size * 4)
    return [dataclasses.replace(m, subset=r.subset) for m, r in zip(labelled, records)]


def train_prm(name, backbone, records, test_pipe, tokenizer, *, model, config: Config, key, out,
              placement):
    pipe = pl.step_pipeline(records, tokenizer, pl.PipelineConfig(
        batch_size=config.batch_size, buckets=config.buckets, seed=config.seed, num_epochs=None,
        drop_remainder=True, max_steps=config.max_steps))
    params = rm.init_reward_model(backbone, key, config=model, head="step")
    loss_fn = functools.partial(prm.step_loss, config=model, last_step_only=config.last_step_only,
                                **config.backbone.apply_kwargs)
    eval_fn = functools.partial(prm.evaluate_steps, pipeline=test_pipe, config=model,
                                threshold=config.threshold)
    _, final = run_stage(params, loss_fn, make_batch_fn(pipe, num_micro=config.num_micro),
                         optimizer=config.optimizer, num_steps=config.steps, out_dir=out,
                         name=name, eval_fn=eval_fn, eval_every=config.eval_every,
                         checkpoint_every=config.eval_every, placement=placement)
    return final


def run(config: Config, out: Path) -> dict:
    key = jax.random.key(config.seed)
    backbone = recipes.load_backbone(config.backbone, jax.random.fold_in(key, 0), config.mesh)
    model, tokenizer = backbone.config, backbone.tokenizer
    sft_records = arithmetic.sft_examples(config.sft.num_examples, seed=config.seed + 2,
                                          config=config.task, split="train")
    policy = recipes.sft_warm_start(backbone, sft_records, sft=config.sft,
                                    buckets=config.buckets, out_dir=out, seed=config.seed)
    test_prompts = arithmetic.rl_prompts(config.num_policy_eval, seed=config.seed + 1,
                                         config=config.task, split="test")
    policy_accuracy = greedy_accuracy(
        policy, test_prompts, config=model, tokenizer=tokenizer, prompt_length=config.buckets[-1],
        max_new_tokens=config.mc.max_new_tokens, eos_ids=eos_ids(tokenizer), batch_size=128,
        reward_fn=lambda prompts, texts, answer: [arithmetic.is_correct(t, a)
                                                  for t, a in zip(texts, answer)])

    hard = arithmetic.step_solutions(config.num_train, seed=config.seed, config=config.task,
                                     split="train")
    soft = monte_carlo_records(policy, hard, tokenizer, model=model, config=config,
                               key=jax.random.fold_in(key, 2))
    hard_y = np.concatenate([r.labels for r in hard])
    soft_y = np.concatenate([r.labels for r in soft])

    test = arithmetic.step_solutions(config.num_test, seed=config.seed + 1, config=config.task,
                                     split="test")
    test_pipe = pl.step_pipeline(test, tokenizer, pl.PipelineConfig(
        batch_size=128, buckets=config.buckets, shuffle=False, max_steps=config.max_steps))
    results = {}
    for name, records in (("hard", hard), ("mc", soft)):
        if config.up_to_first_error:
            records = [r.up_to_first_error() for r in records]
        results[name] = train_prm(name, policy, records, test_pipe, tokenizer, model=model,
                                  config=config, key=jax.random.fold_in(key, 3), out=out,
                                  placement=backbone.placement)

    gold = np.asarray([r.first_error for r in test], np.int64)
    baselines = prm.baseline_first_errors([len(r.steps) for r in test], seed=config.seed)
    base_f1 = {k: rm_eval.processbench_scores(v, gold).f1 for k, v in baselines.items()}

    rm.merge_metrics(out, ["hard", "mc"])
    plot_curves(out / "metrics.jsonl",
                [f"{n}/{k}" for k in ("loss", "accuracy", "eval/f1") for n in ("hard", "mc")],
                out / "curves.png", title="PRM: hard vs Monte Carlo step labels")
    result = {
        "f1": results["hard"]["f1"], "f1_mc": results["mc"]["f1"],
        "error_acc": results["hard"]["error_accuracy"],
        "correct_acc": results["hard"]["correct_accuracy"],
        "error_acc_mc": results["mc"]["error_accuracy"],
        "correct_acc_mc": results["mc"]["correct_accuracy"],
        "step_acc": results["hard"]["step_accuracy"], "step_acc_mc": results["mc"]["step_accuracy"],
        "f1_always_no_error": base_f1["no_error"], "f1_random_step": base_f1["random_step"],
        "f1_random_or_none": base_f1["random_or_none"],
        "policy_accuracy": policy_accuracy,
        "mc_label_agreement": float(np.mean((soft_y >= 0.5) == (hard_y >= 0.5))),
        "mc_label_mean": float(soft_y.mean()),
        "train_solutions": config.num_train, "test_solutions": config.num_test,
        "mc_rollouts": int(sum(len(r.steps) - 1 for r in hard) * config.mc.k),
    }
    write_result(out, result)
    return result


if __name__ == "__main__":
    experiment.main(PRESETS, run, description=__doc__)
