"""RLCR: a verbalised confidence rewarded by correctness plus a Brier term, against GRPO.

Paper: "Beyond Binary Rewards: Training LMs to Reason About Their Uncertainty" (RLCR,
Damani et al., arXiv:2507.16806). The policy states a confidence q after its answer and
is rewarded 1[correct] − (q − 1[correct])² (`rewards.confidence.rlcr_reward`); a
completion without a parseable confidence counts as q = 0 and is counted.

What it reproduces: RLCR lowers the calibration error of the stated confidence (ECE,
10 equal bins, `eval.confidence_ece`) against plain GRPO on the answer
reward, with held-out greedy pass@1 within 2 points. Baseline (same invocation, same
warm start, same prompts): GRPO on correctness alone (the paper's RLVR arm), whose
completions carry the confidence line too but are not rewarded for it.

Deviations of `tiny`: grpo_arith's ~1M-parameter model and SFT warm start on the
synthetic arithmetic task, each SFT completion followed by `Confidence: q` with q drawn
uniformly from {0.0, 0.1, ..., 1.0} (the paper starts from Qwen2.5-7B and a short SFT
on confidence analyses); the answer and confidence lines replace the paper's
`<answer>` / `<confidence>` tags; 60 steps of 16 prompts x 8 samples. `paper`: the
paper's base model, Qwen2.5-7B, from a local directory; its lr, batch and lengths are
assumed (marked below), not taken from the paper.

    python experiments/rlcr.py --preset tiny
    python experiments/rlcr.py --preset smoke
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import numpy as np

from rewardjax import experiment
from rewardjax.data import synthetic
from rewardjax.data.records import SFTExample
from rewardjax.eval import confidence_ece
from rewardjax.recipes import BackboneConfig, SFTConfig, load_backbone, sft_warm_start
from rewardjax.recipes.rl_arith import (TINY_GRPO, RLRecipe, answer_reward, arith_trainer,
                                        rl_prompt_records, train_arm)
from rewardjax.rewards import MathAnswerReward
from rewardjax.rewards.confidence import (CONFIDENCE_PREFIX, parse_confidence,
                                          rlcr_combined_reward)
from rewardjax.sharding import MeshConfig
from rewardjax.train import OptimizerConfig, placement as placement_lib, write_result
from rewardjax.train.evaluate import greedy_accuracy
from rewardjax.train.metrics import is_writer
from rewardjax.train.rl import RLConfig

ARMS = ("grpo", "rlcr")


@dataclasses.dataclass(frozen=True, kw_only=True)
class RLCRConfig:
    """Attributes:
      recipe: warm start, RL settings and held-out problems shared by both arms.
      confidence_grid: the SFT completions' confidences, drawn uniformly per example
        (the warm-started policy states a confidence that says nothing yet).
      num_bins: ECE bins.
      eval_every: held-out greedy pass@1 and ECE every this many RL steps.
      mesh, seed: where everything runs; the run's seed.
    """

    recipe: RLRecipe
    confidence_grid: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(11))
    num_bins: int = 10
    eval_every: int = 10
    mesh: MeshConfig = MeshConfig()
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "confidence_grid", tuple(self.confidence_grid))
        if not self.confidence_grid or any(not 0 <= q <= 1 for q in self.confidence_grid):
            raise ValueError(f"RLCRConfig.confidence_grid must be non-empty values in [0, 1], "
                             f"got {self.confidence_grid}")
        if self.eval_every <= 0 or self.num_bins <= 0:
            raise ValueError(f"RLCRConfig.eval_every = {self.eval_every} and num_bins = "
                             f"{self.num_bins} must be > 0")


# 48 new tokens: the longest worked solution plus its confidence line is 47.
TINY_RL = dataclasses.replace(TINY_GRPO, steps=60, max_new_tokens=48)
TINY = RLCRConfig(recipe=RLRecipe(
    rl=TINY_RL, sft_buckets=(96,),
    rl_optimizer=OptimizerConfig(lr=5e-5, warmup_steps=5, total_steps=60, min_lr_ratio=1.0)))

HEADLINE = ("grpo_pass1", "rlcr_pass1", "grpo_ece", "rlcr_ece")  # the figures `python -m rewardjax results` shows

PRESETS = {
    "tiny": TINY,
    "paper": RLCRConfig(recipe=RLRecipe(
        model=BackboneConfig(hf_path="checkpoints/Qwen2.5-7B", compute_dtype="bfloat16",
                             remat="full"),
        sft=SFTConfig(steps=0),
        rl=RLConfig(steps=1000, prompts_per_step=32, group_size=32, max_new_tokens=2048,
                    prompt_length=1024, micro_batches=64, kl_coef=0.0),  # assumed
        rl_optimizer=OptimizerConfig(lr=1e-6, total_steps=1000, min_lr_ratio=1.0),  # assumed
        eval_problems=500), eval_every=100),
}
PRESETS["smoke"] = dataclasses.replace(TINY, eval_every=1, recipe=dataclasses.replace(
    TINY.recipe, model=dataclasses.replace(TINY.recipe.model, num_layers=1), eval_problems=8,
    sft=dataclasses.replace(TINY.recipe.sft, steps=10),
    rl=dataclasses.replace(TINY.recipe.rl, steps=2, prompts_per_step=4, group_size=4)))


def confidence_sft_examples(cfg: RLCRConfig, recipe: RLRecipe) -> list[SFTExample]:
    """The recipe's SFT examples, each completion followed by `Confidence: q`."""
    examples = synthetic.sft_examples(recipe.sft.num_examples, seed=recipe.seed + 1,
                                      config=recipe.task, split="train",
                                      direct_fraction=recipe.sft_direct_fraction)
    grid = cfg.confidence_grid
    draws = [int(np.random.default_rng([recipe.seed, i, 5]).integers(len(grid)))
             for i in range(len(examples))]
    return [SFTExample(prompt=e.prompt, completion=f"{e.completion}\n{CONFIDENCE_PREFIX}{grid[k]}")
            for e, k in zip(examples, draws)]


class CalibrationEval:
    """Held-out greedy pass@1 and the calibration of the stated confidence."""

    def __init__(self, recipe: RLRecipe, policy, eos_ids, *, num_bins: int):
        self.recipe, self.policy, self.eos_ids, self.num_bins = recipe, policy, eos_ids, num_bins
        self.records = rl_prompt_records(recipe, recipe.eval_problems, seed=recipe.seed + 2,
                                         split="test")
        self._verify = MathAnswerReward()

    def __call__(self, params) -> dict:
        seen: list[tuple[bool, float | None]] = []

        def recording(prompts, completions, **fields):
            scores = np.asarray(self._verify(prompts, completions, **fields))
            seen.extend((s > 0.5, parse_confidence(c)) for s, c in zip(scores, completions))
            return scores

        with placement_lib.context(self.policy.placement):
            pass1 = greedy_accuracy(params, self.records, config=self.policy.config,
                                    tokenizer=self.policy.tokenizer,
                                    prompt_length=self.recipe.rl.prompt_length,
                                    max_new_tokens=self.recipe.rl.max_new_tokens,
                                    eos_ids=self.eos_ids, reward_fn=recording)
        correct = np.array([c for c, _ in seen], np.float64)
        q = np.array([0.0 if v is None else v for _, v in seen])
        return {"pass1": pass1, "ece": confidence_ece(q, correct, num_bins=self.num_bins),
                "brier": float(np.mean((q - correct) ** 2)), "confidence": float(q.mean()),
                "parse_failures": float(np.mean([v is None for _, v in seen])),
                "q": q, "correct": correct}


def run(config: RLCRConfig, out) -> dict:
    start = time.time()
    out = Path(out)
    recipe = dataclasses.replace(config.recipe, mesh=config.mesh, seed=config.seed)
    backbone = load_backbone(recipe.model, jax.random.key(recipe.seed), recipe.mesh)
    params = sft_warm_start(backbone, confidence_sft_examples(config, recipe), sft=recipe.sft,
                            buckets=recipe.sft_buckets, out_dir=out, seed=recipe.seed,
                            log=recipe.log)
    policy = backbone._replace(params=params)
    rewards = {"grpo": answer_reward(recipe), "rlcr": rlcr_combined_reward()}
    result: dict = {}
    curves: dict[str, list] = {}
    finals: dict[str, dict] = {}
    held = None
    for arm in ARMS:
        trainer = arith_trainer(recipe, policy, rewards[arm])
        if held is None:
            held = CalibrationEval(recipe, policy, trainer.sampling.eos_ids,
                                   num_bins=config.num_bins)
            before = held(params)
            result.update(pass1_before=before["pass1"], ece_before=before["ece"])
            print(f"held-out before RL: pass@1 {before['pass1']:.3f} ECE {before['ece']:.3f}",
                  flush=True)
        _, evals = train_arm(trainer, params, name=arm, out=out, cfg=recipe,
                             eval_every=config.eval_every, evaluate=held)
        curves[arm] = [(0, before), *evals]
        finals[arm] = curves[arm][-1][1]
        for key in ("pass1", "ece", "brier", "confidence", "parse_failures"):
            result[f"{arm}_{key}"] = round(finals[arm][key], 4)
        print(f"[{arm}] held-out after RL: pass@1 {finals[arm]['pass1']:.3f} "
              f"ECE {finals[arm]['ece']:.3f}", flush=True)
    result["ece_lower"] = result["rlcr_ece"] < result["grpo_ece"]
    result["pass1_within_2pt"] = abs(result["rlcr_pass1"] - result["grpo_pass1"]) <= 0.02
    result["minutes"] = round((time.time() - start) / 60, 2)
    _plot(out, curves, finals, before, num_bins=config.num_bins)
    write_result(out, result)
    return result


def _plot(out: Path, curves: dict, finals: dict, before: dict, *, num_bins: int) -> None:
    """pass@1 and ECE against step per arm, and reliability diagrams after RL."""
    if not is_writer():
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
    for arm, points in curves.items():
        steps = [s for s, _ in points]
        axes[0].plot(steps, [e["pass1"] for _, e in points], marker=".", label=arm)
        axes[1].plot(steps, [e["ece"] for _, e in points], marker=".", label=arm)
    for ax, name in zip(axes[:2], ("held-out greedy pass@1", "ECE of stated confidence")):
        ax.set_title(name)
        ax.set_xlabel("RL step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    edges = np.linspace(0, 1, num_bins + 1)
    for name, ev in (("sft", before), *finals.items()):
        bins = np.clip(np.ceil(ev["q"] * num_bins).astype(int) - 1, 0, num_bins - 1)
        filled = [b for b in range(num_bins) if (bins == b).any()]
        axes[2].plot([ev["q"][bins == b].mean() for b in filled],
                     [ev["correct"][bins == b].mean() for b in filled], marker="o", label=name)
    axes[2].plot(edges, edges, color="gray", linestyle="--", linewidth=0.8)
    axes[2].set_title("reliability (held-out, after RL)")
    axes[2].set_xlabel("stated confidence")
    axes[2].set_ylabel("accuracy")
    axes[2].legend(fontsize=7)
    fig.suptitle("RLCR (correctness + Brier) vs GRPO on correctness")
    fig.tight_layout()
    fig.savefig(out / "rlcr_curves.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    experiment.main(PRESETS, run, description=__doc__)
