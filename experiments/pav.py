"""PAV: step progress under a prover policy added to the outcome advantage, against outcome-only.

Paper: "Rewarding Progress: Scaling Automated Process Verifiers for LLM Reasoning"
(Setlur et al., arXiv:2410.08146). The process reward of a step is its progress, the
change in a prover policy's chance of success across the step, A^μ = V^μ(after) −
V^μ(before); the policy trains on Q^π + α·A^μ. Good provers are Best-of-K policies of
the base policy: V^{BoK} = 1 − (1 − V)^K (`rewards.progress`).

What it reproduces: PAV beats outcome-only RL at equal steps (held-out greedy pass@1
every `eval_every` steps; the paper: 5-6x sample efficiency, +6% accuracy). Baseline
(same invocation, same warm start, same prompts): GRPO on the verifiable reward, the
paper's ORM-only comparison.

Deviations of `tiny`: grpo_arith's ~1M-parameter model, SFT warm start and 30 steps of
16 x 8; progress is a Monte Carlo estimate (4 prover continuations of each distinct
prefix, steps = lines), not a trained PAV; the prover is the frozen SFT policy as
Best-of-4; α = 1 on GRPO's normalised outcome advantage (our choice). `paper`: Gemma
2B/9B are not wired; the preset runs the same arms on a local Qwen2.5-Math-1.5B.

    python experiments/pav.py --preset tiny
    python experiments/pav.py --preset smoke
"""

import dataclasses

from rewardjax import experiment
from rewardjax.recipes import BackboneConfig, SFTConfig
from rewardjax.recipes.rl_arith import TINY_RECIPE, Arm, RLRecipe, run_arms, smoke_recipe
from rewardjax.rewards.progress import ProgressAdvantage, ProgressConfig, ProverProgressReward
from rewardjax.sharding import MeshConfig
from rewardjax.train import OptimizerConfig, read_jsonl, write_result
from rewardjax.train.rl import RLConfig
from rewardjax.train.rl_extensions import RLExtensions


@dataclasses.dataclass(frozen=True, kw_only=True)
class PAVConfig:
    """Attributes: recipe (its mesh and seed replaced by `mesh`, `seed`); progress (the
    prover's Monte Carlo estimate and K); alpha (α, the progress weight); eval_every
    (held-out pass@1 every this many steps: the curves the effect is read on)."""

    recipe: RLRecipe
    progress: ProgressConfig = ProgressConfig()
    alpha: float = 1.0
    eval_every: int = 5
    mesh: MeshConfig = MeshConfig()
    seed: int = 0

    def __post_init__(self):
        if self.alpha <= 0:
            raise ValueError(f"PAVConfig.alpha must be > 0 (0 is the baseline arm), got {self.alpha}")
        if self.eval_every <= 0:
            raise ValueError(f"PAVConfig.eval_every must be > 0, got {self.eval_every}")


TINY = PAVConfig(recipe=TINY_RECIPE)
HEADLINE = ("grpo_pass1", "pav_pass1", "grpo_pass1_mean", "pav_pass1_mean")  # the figures `python -m rewardjax results` shows

PRESETS = {
    "tiny": TINY,
    "paper": PAVConfig(recipe=RLRecipe(
        model=BackboneConfig(hf_path="checkpoints/Qwen2.5-Math-1.5B", compute_dtype="bfloat16",
                             remat="full"),
        sft=SFTConfig(steps=0),
        rl=RLConfig(steps=200, prompts_per_step=64, group_size=4, max_new_tokens=1024,
                    prompt_length=512, micro_batches=32),
        rl_optimizer=OptimizerConfig(lr=1e-6, total_steps=200, min_lr_ratio=1.0),
        eval_problems=500), progress=ProgressConfig(rollouts=8, chunk=16), eval_every=20),
}
PRESETS["smoke"] = dataclasses.replace(TINY, eval_every=1, recipe=smoke_recipe(TINY.recipe),
                                       progress=ProgressConfig(rollouts=2, chunk=16))


def run(config: PAVConfig, out):
    recipe = dataclasses.replace(config.recipe, mesh=config.mesh, seed=config.seed)
    progress = dataclasses.replace(config.progress, seed=config.seed)
    arms = [
        Arm(name="grpo"),
        Arm(name="pav", extensions=lambda cfg: RLExtensions(
            dense=ProverProgressReward(progress), advantage=ProgressAdvantage(alpha=config.alpha))),
    ]
    r = run_arms(recipe, out, arms, title="PAV (outcome + prover progress) vs outcome-only GRPO",
                 eval_every=config.eval_every,
                 curves=("reward/mean", "accuracy", "pav/progress_abs", "response/length"))
    final = {"pass1_before": r["pass1_before"]}
    for name in ("grpo", "pav"):
        curve = [float(v) for v in r[f"{name}_pass1_curve"].split(",")]
        final[f"{name}_pass1"] = r[f"{name}_pass1"]
        # the area under the pass@1 curve: "better at equal steps" over the whole run
        final[f"{name}_pass1_mean"] = round(sum(curve) / len(curve), 4)
        final[f"{name}_pass1_curve"] = r[f"{name}_pass1_curve"]
    rows = read_jsonl(out / "rl_pav.jsonl")
    final["pav_rollout_s"] = round(sum(row.get("perf/rollout_s", 0.0) for row in rows), 1)
    final["pav_beats_grpo"] = final["pav_pass1_mean"] > final["grpo_pass1_mean"]
    final["minutes"] = r["minutes"]
    write_result(out, final)
    return final


if __name__ == "__main__":
    experiment.main(PRESETS, run, description=__doc__)
