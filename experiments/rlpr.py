"""RLPR: RL with no verifier, rewarded by the policy's own probability of the reference.

Papers: "RLPR: Extrapolating RLVR to General Domains without Verifiers" (Yu et al.,
arXiv:2506.18254) — reward = the policy's mean token probability of the reference answer
placed after its own reasoning, minus the same probability with no reasoning, clipped
at 0; groups whose reward std falls below β·EMA(mean std) are dropped — and the
log-likelihood variant of "Likelihood-Based Reward Designs for General LLM Reasoning"
(arXiv:2602.03979), reward = log π(y* | x, z). Both are read by the RL loop's probes: one
jitted teacher-forced pass over every (prompt, reasoning, reference) sequence.

What it reproduces: without any verifier, RLPR raises held-out greedy pass@1 by at least
10 points over the SFT start; the baseline in the same invocation is GRPO on the
verifiable answer reward (the upper reference the paper compares with), and the
log-likelihood arm runs beside them. The verifier still scores every rollout, for the
logged training `accuracy` only.

Deviations of `tiny`: grpo_arith's ~1M model, task and 30 steps of 16 x 8; no format
reward (RLPR mixes 0.1 of one; the SFT policy keeps the answer format); β = 1.0.
`paper`: Qwen2.5-7B from a local directory with the paper's GRPO setting.

    python experiments/rlpr.py --preset tiny
    python experiments/rlpr.py --preset smoke
"""

import dataclasses

from rewardjax import experiment
from rewardjax.recipes import BackboneConfig, SFTConfig
from rewardjax.recipes.rl_arith import TINY_RECIPE, Arm, RLRecipe, run_arms, smoke_recipe
from rewardjax.rewards.probability import rlpr_extensions
from rewardjax.sharding import MeshConfig
from rewardjax.train import OptimizerConfig, write_result
from rewardjax.train.rl import RLConfig


@dataclasses.dataclass(frozen=True, kw_only=True)
class RlprConfig:
    """Attributes: recipe (its mesh and seed replaced by `mesh`, `seed`); beta, ema (the
    std filter: keep groups with std ≥ beta·EMA of mean std); probe_tokens (room for
    reasoning + reference answer in the probe batch); log_likelihood_arm (also run the
    log-likelihood reward); baseline_arm (run GRPO on the verifier; off to run the
    verifier-free arms on another machine from the same warm start)."""

    recipe: RLRecipe
    beta: float = 1.0
    ema: float = 0.99
    probe_tokens: int = 80
    log_likelihood_arm: bool = True
    baseline_arm: bool = True
    mesh: MeshConfig = MeshConfig()
    seed: int = 0

    def __post_init__(self):
        if self.probe_tokens <= self.recipe.rl.max_new_tokens:
            raise ValueError(f"RlprConfig.probe_tokens ({self.probe_tokens}) must exceed "
                             f"rl.max_new_tokens ({self.recipe.rl.max_new_tokens}): the "
                             f"reasoning and the reference answer both fit in it")


TINY = RlprConfig(recipe=TINY_RECIPE)
PRESETS = {
    "tiny": TINY,
    "paper": RlprConfig(recipe=RLRecipe(
        model=BackboneConfig(hf_path="checkpoints/Qwen2.5-7B", compute_dtype="bfloat16",
                             remat="full"),
        sft=SFTConfig(steps=0),
        rl=RLConfig(steps=400, prompts_per_step=128, group_size=8, max_new_tokens=3072,
                    prompt_length=1024, micro_batches=64, eps_high=0.27),
        rl_optimizer=OptimizerConfig(lr=1e-6, total_steps=400, min_lr_ratio=1.0),
        eval_problems=500), probe_tokens=6200),
    "smoke": dataclasses.replace(TINY, recipe=smoke_recipe(TINY.recipe)),
}


def run(config: RlprConfig, out):
    recipe = dataclasses.replace(config.recipe, mesh=config.mesh, seed=config.seed)
    kw = dict(max_tokens=config.probe_tokens, beta=config.beta, ema=config.ema)
    arms = [Arm(name="grpo")] if config.baseline_arm else []
    arms.append(Arm(name="rlpr", extensions=lambda cfg: rlpr_extensions(mode="probability",
                                                                       **kw)))
    if config.log_likelihood_arm:
        arms.append(Arm(name="loglik", extensions=lambda cfg: rlpr_extensions(
            mode="log_likelihood", filter_groups=False, **kw)))
    r = run_arms(recipe, out, arms, title="RLPR (no verifier) vs GRPO on the verifier",
                 curves=("reward/mean", "accuracy", "groups/filtered", "response/length"))
    final = {"pass1_before": r["pass1_before"],
             **{f"{a.name}_pass1": r[f"{a.name}_pass1"] for a in arms},
             "rlpr_gain": round(r["rlpr_pass1"] - r["pass1_before"], 4), "minutes": r["minutes"]}
    write_result(out, final)
    return final


if __name__ == "__main__":
    experiment.main(PRESETS, run, description=__doc__)
