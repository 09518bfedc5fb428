"""RM-R1: a generative pairwise judge trained by rationale distillation, then GRPO.

Paper: "RM-R1: Reward Modeling as Reasoning" (Chen et al., arXiv:2505.02387). A judge
LM reads a question and two responses, writes a rationale and ends with a verdict
(A or B). Training: SFT on reasoning traces of a stronger teacher (distillation),
then RL (GRPO) whose reward is 1 when the verdict matches the preference label, here
plus a strict format reward ("Think-RM: Enabling Long-Horizon Reasoning in Generative
Reward Models").

What it reproduces: RL on verdict correctness lifts held-out pairwise accuracy above
the distilled (SFT-only) judge it starts from. Accuracy is scored in both orders
(the chosen response shown as A, then as B; a pair split between the orders counts
half), so position bias cannot help; unparsable verdicts are counted, never guessed.

How `tiny` deviates: the teacher is a program (`judges.traces`): on the synthetic
arithmetic task (`recipes.TINY_RM_TASK`) it notes both final answers, solves the problem,
and checks each answer against its own (RM-R1's rubric for reasoning tasks: solve, then
judge): "A: 6", "B: 5", "5 + 2 = 7", "7 - 1 = 6", "Answer: 6", "A: 6 vs 6 right", "B: 5
vs 6 wrong", "Verdict: A". A flawless teacher leaves RL nothing to correct (GRPO added
0 to +3 points on seeds 0-4), so this one has an LLM teacher's flaw: on 60% of the
2-step (easy-looking) pairs it skips the work and answers "A" ("A: 6", "B: 5",
"Verdict: A"; position bias). The judge is a 2-layer width-64 model, first trained on
correct solutions (the stand-in for the instruct LM RM-R1 starts from), then distilled
on the traces of 1,280 of the 4k training pairs (RM-R1 distils a subset, then runs RL
on all) for 600 steps with the deciding tokens weighted 20x; GRPO at lr 1e-4 on all 4k
pairs (seeded order); 256 held out. The distilled judge copies the flaw (it skips the
work on 74-85% of 2-step pairs); GRPO learns to work them all. Seeds 0-4: 0.80-0.86
-> 0.95-1.0 (+12.3 to +18.4), 6.2-8.0 min (docs/experiments/rm_r1.md).
`paper` is RM-R1's Qwen2.5-Instruct-7B setting (local directory; distillation then
GRPO with lr 1e-6, 7 samples per prompt, KL 1e-3) on the same program-written task and
teacher. `--set quick_share=0 num_sft=1024`: the flawless teacher's preset of those
0 to +3 points.

    python experiments/rm_r1.py --preset tiny
    python experiments/rm_r1.py --preset smoke
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import jax
import numpy as np

from rewardjax import experiment, judges, recipes
from rewardjax.data.synthetic import arithmetic
from rewardjax.sharding import MeshConfig
from rewardjax.train.metrics import LogConfig, MetricsLogger, plot_curves, write_result
from rewardjax.train.rl import RLConfig
from rewardjax.train.state import OptimizerConfig


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    """Attributes:
      num_train, num_test: training pairs (prompts + labels for GRPO) and held-out
        pairs (test split).
      num_sft: the first this-many training pairs' traces are distilled (SFT); None: all.
      quick_share, quick_max_steps: the teacher's flaw: this share of the pairs with at
        most quick_max_steps operations (drawn by a seeded coin per pair) get its quick
        judgment, verdict "A" without working (`judges.pairwise_trace(quick=True)`);
        0: the flawless program teacher.
      solver: SFT on correct solutions first (the stand-in for the instruct LM RM-R1
        starts from; `judges.solver_warm_start`); steps 0: the judge starts from scratch.
      sft: the distillation stage on the teacher's traces.
      deciding_weight: SFT loss weight of each "right"/"wrong" and of the verdict
        (`judges.training.deciding_token_weights`); 1: the plain token mean.
      rl: GRPO on the judge (`accuracy_reward` must be "verdict").
      both_orders: GRPO steps hold both orders of each pair and the verdict reward is 1
        only when both are right (`judges.BothOrdersVerdictMatch`, ours); False: RM-R1's
        verdict match per judgment.
      format_weight: weight of the strict-format reward next to the verdict reward.
      prompt_length, max_new_tokens: judge prompts are left-padded to this length;
        judgments (rationale + verdict) are at most this long.
      eval_batch: prompts per evaluation sampler call.
    """

    backbone: recipes.BackboneConfig = recipes.BackboneConfig()
    mesh: MeshConfig = MeshConfig()
    task: arithmetic.ArithmeticConfig = recipes.TINY_RM_TASK
    num_train: int = 4096
    num_test: int = 256
    num_sft: int | None = 1280
    quick_share: float = 0.6
    quick_max_steps: int = 2
    solver: recipes.SFTConfig = recipes.SFTConfig(steps=300, response_window=48)
    sft: recipes.SFTConfig = recipes.SFTConfig(
        steps=600, batch_size=32, response_window=88,
        optimizer=OptimizerConfig(lr=3e-3, warmup_steps=20, weight_decay=0.01))  # total_steps: steps
    deciding_weight: float = 20.0
    rl: RLConfig = RLConfig(steps=60, prompts_per_step=16, group_size=8, max_new_tokens=88,
                            prompt_length=192, temperature=1.0, advantage="grpo",
                            reduction="token_mean", kl_coef=0.0, accuracy_reward="verdict")
    rl_optimizer: OptimizerConfig = OptimizerConfig(lr=1e-4, warmup_steps=5, total_steps=60,
                                                    min_lr_ratio=1.0)
    both_orders: bool = False
    format_weight: float = 0.5
    prompt_length: int = 192
    max_new_tokens: int = 88
    eval_batch: int = 128
    log: LogConfig = LogConfig()
    seed: int = 0

    def __post_init__(self):
        if self.num_sft is not None and not 1 <= self.num_sft <= self.num_train:
            raise ValueError(f"num_sft must be in [1, num_train={self.num_train}] or None, "
                             f"got {self.num_sft}")
        if not 0.0 <= self.quick_share <= 1.0:
            raise ValueError(f"quick_share must be in [0, 1], got {self.quick_share}")
        if not self.deciding_weight >= 1.0:
            raise ValueError(f"deciding_weight must be >= 1 (1: the plain token mean), got "
                             f"{self.deciding_weight}")
        if self.rl.accuracy_reward != "verdict":
            raise ValueError(f"rl.accuracy_reward must be 'verdict', got {self.rl.accuracy_reward!r}")
        if self.rl.prompt_length < self.prompt_length:
            raise ValueError(f"rl.prompt_length ({self.rl.prompt_length}) must be >= "
                             f"prompt_length ({self.prompt_length})")
        object.__setattr__(self, "rl_optimizer",
                           recipes.sync_schedule(self.rl_optimizer, self.rl.steps))


HEADLINE = ("accuracy_grpo", "accuracy_sft", "gain", "parse_failures_grpo")

PRESETS = {
    "tiny": Config(),
    "paper": Config(
        backbone=recipes.BackboneConfig(hf_path="checkpoints/Qwen2.5-7B-Instruct",
                                        compute_dtype="bfloat16", remat="full"),
        task=arithmetic.ArithmeticConfig(), num_train=64_000, num_test=2_000,
        num_sft=None,  # distil every trace (set a subset if the teacher's are scarce)
        deciding_weight=1.0,  # the papers distil with the plain token mean
        both_orders=False,  # RM-R1's per-judgment verdict reward
        solver=recipes.SFTConfig(steps=0),  # the instruct model already solves
        sft=recipes.SFTConfig(steps=2_000, batch_size=128, response_window=None,
                              optimizer=OptimizerConfig(lr=5e-6, warmup_steps=100,
                                                        total_steps=2_000)),
        rl=RLConfig(steps=1_000, prompts_per_step=128, group_size=7, max_new_tokens=1024,
                    prompt_length=1024, micro_batches=28, kl_coef=1e-3,
                    accuracy_reward="verdict"),
        rl_optimizer=OptimizerConfig(lr=1e-6, total_steps=1_000, min_lr_ratio=1.0),
        prompt_length=1024, max_new_tokens=1024, eval_batch=64),
}
# Every stage at a size that runs in seconds; its figures measure nothing.
PRESETS["smoke"] = dataclasses.replace(
    PRESETS["tiny"], backbone=recipes.BackboneConfig(num_layers=1),
    num_train=64, num_test=8, num_sft=16, solver=dataclasses.replace(PRESETS["tiny"].solver, steps=4),
    sft=dataclasses.replace(PRESETS["tiny"].sft, steps=4),
    rl=dataclasses.replace(PRESETS["tiny"].rl, steps=2, prompts_per_step=2, group_size=2),
    eval_batch=8)


def pair_traces(n: int, *, seed: int, config: Config,
                split: str) -> tuple[list[judges.Trace], list[judges.Trace]]:
    """Teacher traces of `n` correct-vs-corrupted pairs (the correct one is A or B by a
    seeded coin per pair), and the same pairs in the other order; a pair of at most
    `config.quick_max_steps` operations gets the teacher's quick judgment in both
    orders with probability `config.quick_share`."""
    out, swapped = [], []
    for i in range(n):
        bad = arithmetic.corrupted(i, seed=seed, config=config.task, split=split)
        good = arithmetic.solve(bad.problem).text
        flip = np.random.default_rng([seed, i, 5 << 20]).random() < 0.5
        a, b = (bad.text, good) if flip else (good, bad.text)
        quick = (len(bad.problem.ops) <= config.quick_max_steps
                 and np.random.default_rng([seed, i, 7 << 20]).random() < config.quick_share)
        out.append(judges.pairwise_trace(bad.problem, a, b, quick=quick))
        swapped.append(judges.pairwise_trace(bad.problem, b, a, quick=quick))
    return out, swapped


def held_out_accuracy(params, backbone, pairs: list[tuple[str, str, str]], config: Config, *,
                      dump: Path | None = None) -> dict:
    """Greedy judgments in both orders: accuracy, parse failures, position bias, and the
    share of judgments without the work (no "Answer:" line, as the teacher's quick
    judgment); with `dump`, every judgment is written there (one JSON line per pair)."""
    judge = judges.GenerativeJudge(params, config=backbone.config, tokenizer=backbone.tokenizer,
                                   prompt_length=config.prompt_length,
                                   max_new_tokens=config.max_new_tokens,
                                   batch_size=config.eval_batch, placement=backbone.placement)
    q, chosen, rejected = (list(x) for x in zip(*pairs))
    votes = judges.pairwise_votes(judge, q, chosen, rejected, None)
    if dump is not None:
        with open(dump, "w") as f:
            for row, texts, pair in zip(votes.votes, votes.texts, pairs):
                f.write(json.dumps({"pair": pair, "votes_chosen_first": row.tolist(),
                                    "judgments": texts}) + "\n")
    texts = [t for row in votes.texts for t in row]
    return {"accuracy": judges.pairwise_accuracy(judges.vote(votes.votes)),
            "parse_failures": votes.failures.total(),
            "position_bias": votes.position_bias,
            "unworked": sum("Answer:" not in t for t in texts) / len(texts)}


def run(config: Config, out: Path) -> dict:
    start = time.time()
    out = Path(out)
    backbone = recipes.load_backbone(config.backbone, jax.random.key(config.seed), config.mesh)
    train, swapped = pair_traces(config.num_train, seed=config.seed, config=config, split="train")
    test_pairs = []
    for i in range(config.num_test):
        bad = arithmetic.corrupted(i, seed=config.seed + 1, config=config.task, split="test")
        test_pairs.append((bad.problem.question, arithmetic.solve(bad.problem).text, bad.text))

    distilled = train[:config.num_sft]
    solver = judges.solver_warm_start(backbone, config.task, sft=config.solver, out_dir=out,
                                      seed=config.seed, log=config.log)
    params = recipes.sft_warm_start(backbone._replace(params=solver),
                                    [t.sft_example() for t in distilled], sft=config.sft,
                                    buckets=(config.prompt_length + config.max_new_tokens,),
                                    out_dir=out, seed=config.seed, log=config.log,
                                    token_weights=judges.training.deciding_token_weights(
                                        backbone.tokenizer, judges.traces.PAIRWISE_DECIDING,
                                        weight=config.deciding_weight))
    sft = held_out_accuracy(params, backbone, test_pairs, config,
                            dump=out / "judgments_sft.jsonl")
    print(f"SFT-only judge: {sft}", flush=True)

    # GRPO draws from all training pairs in a seeded order (RM-R1 runs RL on the whole
    # set); in file order its 60 x 16 prompts would all be distilled ones.
    order = np.random.default_rng([config.seed, 6 << 20]).permutation(config.num_train)
    trainer, reward = judges.judge_grpo_trainer(
        backbone._replace(params=params), [train[i] for i in order], rl=config.rl,
        optimizer=config.rl_optimizer, choices=judges.PAIRWISE_CHOICES,
        format_weight=config.format_weight,
        swapped=[swapped[i] for i in order] if config.both_orders else None)
    logger = MetricsLogger(out, name="rl", total_steps=config.rl.steps, log=config.log)
    state = trainer.run(trainer.init_state(params), logger=logger,
                        ref_params=params if config.rl.kl_coef else None)
    logger.close()
    reward.close()
    grpo = held_out_accuracy(trainer.policy(state), backbone, test_pairs, config,
                             dump=out / "judgments_grpo.jsonl")
    print(f"GRPO judge: {grpo}", flush=True)
    plot_curves(out / "rl.jsonl", ["reward/verdict/mean", "reward/format/mean", "entropy",
                                   "response/length"], out / "rl_curves.png",
                title="RM-R1: GRPO on a generative pairwise judge")
    result = {"accuracy_sft": round(sft["accuracy"], 4), "accuracy_grpo": round(grpo["accuracy"], 4),
              "gain": round(grpo["accuracy"] - sft["accuracy"], 4),
              "parse_failures_sft": sft["parse_failures"],
              "parse_failures_grpo": grpo["parse_failures"],
              "position_bias_sft": round(sft["position_bias"], 4),
              "position_bias_grpo": round(grpo["position_bias"], 4),
              "unworked_sft": round(sft["unworked"], 4),
              "unworked_grpo": round(grpo["unworked"], 4),
              "test_pairs": config.num_test, "minutes": round((time.time() - start) / 60, 2)}
    write_result(out, result)
    return result


if __name__ == "__main__":
    experiment.main(PRESETS, run, description=__doc__)
