"""ThinkPRM: a generative process reward model that verifies step by step in text.

Paper: "Process Reward Models That Think" (ThinkPRM, Khalifa et al., arXiv:2504.16828);
also GenPRM ("GenPRM: Scaling Test-Time Compute of Process Reward Models via Generative
Reasoning", arXiv:2504.00891). Instead of a classifier head per step, the PRM is an LM
fine-tuned on synthetic verification chains: it writes a check of each step and ends by
naming the first wrong step, or none.

What it reproduces: a generative verifier trained only on (filtered) synthetic
verification chains identifies the first wrong step of held-out solutions, scored with
ProcessBench's first-error F1 (`rewardjax.eval.processbench`, arXiv:2412.06559; the
harmonic mean of exact-index accuracy on erroneous solutions and "no error" accuracy
on correct ones). A judgment whose verdict does not parse counts as wrong and is
counted (`parse_failures`), never read as "no error".

How `tiny` deviates: the chains are written by a program that knows each step
(`judges.first_error_trace(worked=True)`: "Step 2: 7 - 1 = 6 vs 5 wrong", the
verifier's own step, the step's claimed value, and the check of the two, cut at the
first error, as ThinkPRM keeps only chains whose step labels match ProcessBench-style
gold labels) instead of QwQ-32B samples filtered against PRM800K; the task is
`recipes.TINY_RM_TASK`; the verifier is a 2-layer width-64 model, first trained on
correct solutions (the stand-in for the reasoning LM ThinkPRM starts from), then on the
chains with each step's "ok"/"wrong" and the verdict weighted 20x in the SFT loss
for 600 steps (ThinkPRM fine-tunes R1-Distill-Qwen-1.5B/14B on 1k chains, unweighted).
`paper` points at a local R1-Distill-Qwen-1.5B directory with ThinkPRM's 1k-chain budget.
Findings: docs/experiments/think_prm.md.

    python experiments/think_prm.py --preset tiny
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import jax
import numpy as np

from rewardjax import eval as rm_eval
from rewardjax import experiment, judges, recipes
from rewardjax.data.synthetic import arithmetic
from rewardjax.sharding import MeshConfig
from rewardjax.train.metrics import LogConfig, plot_curves, write_result
from rewardjax.train.prm import baseline_first_errors
from rewardjax.train.state import OptimizerConfig


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    """Attributes:
      num_train: verification chains; `train_error_rate` of the solutions corrupted.
      num_test: held-out solutions (half corrupted) for first-error F1.
      solver: SFT on correct solutions first (the stand-in for ThinkPRM's reasoning
        LM; `judges.solver_warm_start`); steps 0: the verifier starts from scratch.
      sft: the verifier's training on the chains.
      worked: each chain line is the verifier's own step, "vs" the claimed value, then
        "ok"/"wrong" (`judges.first_error_trace(worked=True)`); False: the step copied
        and judged ("Step 2: 7 - 1 = 5 wrong").
      deciding_weight: SFT loss weight of each step's "ok"/"wrong" and of the verdict
        (`judges.training.deciding_token_weights`); 1: the plain token mean.
      prompt_length, max_new_tokens: verifier prompt bucket and longest chain.
    """

    backbone: recipes.BackboneConfig = recipes.BackboneConfig()
    mesh: MeshConfig = MeshConfig()
    task: arithmetic.ArithmeticConfig = recipes.TINY_RM_TASK
    num_train: int = 8192
    train_error_rate: float = 0.5
    num_test: int = 512
    solver: recipes.SFTConfig = recipes.SFTConfig(steps=300, response_window=48)
    sft: recipes.SFTConfig = recipes.SFTConfig(
        steps=600, batch_size=32, response_window=128,
        optimizer=OptimizerConfig(lr=3e-3, warmup_steps=20, total_steps=600, weight_decay=0.01))
    worked: bool = True
    deciding_weight: float = 20.0
    prompt_length: int = 176
    max_new_tokens: int = 120
    eval_batch: int = 128
    log: LogConfig = LogConfig()
    seed: int = 0

    def __post_init__(self):
        if not 0.0 < self.train_error_rate < 1.0:
            raise ValueError(f"train_error_rate must be in (0, 1) so the chains hold both "
                             f"verdict kinds, got {self.train_error_rate}")
        if not self.deciding_weight >= 1.0:
            raise ValueError(f"deciding_weight must be >= 1 (1: the plain token mean), got "
                             f"{self.deciding_weight}")


HEADLINE = ("f1", "error_accuracy", "correct_accuracy", "parse_failures")

PRESETS = {
    "tiny": Config(),
    "paper": Config(
        backbone=recipes.BackboneConfig(hf_path="checkpoints/DeepSeek-R1-Distill-Qwen-1.5B",
                                        compute_dtype="bfloat16", remat="full"),
        task=arithmetic.ArithmeticConfig(), num_train=1_000, num_test=3_400,
        deciding_weight=1.0,  # the papers distil with the plain token mean
        solver=recipes.SFTConfig(steps=0),  # R1-Distill already reasons
        sft=recipes.SFTConfig(steps=300, batch_size=16, response_window=None,
                              optimizer=OptimizerConfig(lr=6e-5, warmup_steps=10,
                                                        total_steps=300)),
        prompt_length=2048, max_new_tokens=4096, eval_batch=32),
}
PRESETS["smoke"] = dataclasses.replace(
    PRESETS["tiny"], backbone=recipes.BackboneConfig(num_layers=1), num_train=64, num_test=8,
    solver=dataclasses.replace(PRESETS["tiny"].solver, steps=4),
    sft=dataclasses.replace(PRESETS["tiny"].sft, steps=4), eval_batch=8)


def chains(n: int, *, seed: int, config: Config, split: str) -> list[judges.Trace]:
    return [judges.first_error_trace(s.problem, s.steps, worked=config.worked)
            for s in arithmetic.solutions(n, seed=seed, config=config.task, split=split,
                                          error_rate=config.train_error_rate)]


def predicted_first_errors(verdicts: list[judges.Verdict], num_steps: list[int]) -> np.ndarray:
    """0-based first-error indices (-1: none); an unparsed verdict becomes `num_steps`,
    an index no label has, so it is scored wrong on either kind of solution."""
    return np.array([n if v.choice is None else
                     (-1 if v.choice == judges.NO_ERROR_CHOICE else int(v.choice) - 1)
                     for v, n in zip(verdicts, num_steps)], np.int64)


def run(config: Config, out: Path) -> dict:
    start = time.time()
    out = Path(out)
    backbone = recipes.load_backbone(config.backbone, jax.random.key(config.seed), config.mesh)
    train = chains(config.num_train, seed=config.seed, config=config, split="train")
    solver = judges.solver_warm_start(backbone, config.task, sft=config.solver, out_dir=out,
                                      seed=config.seed, log=config.log)
    params = recipes.sft_warm_start(backbone._replace(params=solver),
                                    [t.sft_example() for t in train], sft=config.sft,
                                    buckets=(config.prompt_length + config.max_new_tokens,),
                                    out_dir=out, seed=config.seed, log=config.log,
                                    token_weights=judges.training.deciding_token_weights(
                                        backbone.tokenizer, judges.traces.FIRST_ERROR_DECIDING,
                                        weight=config.deciding_weight))

    test = arithmetic.solutions(config.num_test, seed=config.seed + 1, config=config.task,
                                split="test")
    verifier = judges.GenerativeJudge(params, config=backbone.config, tokenizer=backbone.tokenizer,
                                      prompt_length=config.prompt_length,
                                      max_new_tokens=config.max_new_tokens,
                                      batch_size=config.eval_batch, placement=backbone.placement)
    out_j = verifier.judge([judges.first_error_prompt(s.problem.question, s.steps) for s in test],
                           None, choices=[judges.first_error_choices(len(s.steps)) for s in test])
    verdicts = [row[0] for row in out_j.verdicts]
    pred = predicted_first_errors(verdicts, [len(s.steps) for s in test])
    gold = np.array([s.first_error for s in test], np.int64)
    with open(out / "judgments.jsonl", "w") as f:
        for s, text, g, q in zip(test, out_j.texts, gold, pred):
            f.write(json.dumps({"solution": s.text, "first_error": int(g),
                                "predicted": int(q), "judgment": text[0]}) + "\n")
    scores = rm_eval.processbench_scores(pred, gold)
    base = {k: rm_eval.processbench_scores(v, gold).f1 for k, v in
            baseline_first_errors([len(s.steps) for s in test], seed=config.seed).items()}
    plot_curves(out / "sft.jsonl", ["loss"], out / "sft_curve.png",
                title="ThinkPRM: SFT on verification chains")
    result = {"f1": round(scores.f1, 4), "error_accuracy": round(scores.error_accuracy, 4),
              "correct_accuracy": round(scores.correct_accuracy, 4),
              "parse_failures": out_j.failures.total(),
              "f1_random_or_none": round(base["random_or_none"], 4),
              "test_solutions": config.num_test, "minutes": round((time.time() - start) / 60, 2)}
    write_result(out, result)
    return result


if __name__ == "__main__":
    experiment.main(PRESETS, run, description=__doc__)
