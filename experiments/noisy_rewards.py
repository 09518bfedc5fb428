"""Noisy rewards: pass@1 after GRPO when each verifier reward is flipped with probability p.

Paper: "The Climb Carves Wisdom Deeper Than the Summit: On the Noisy Rewards in Learning
to Reason" (Lv et al., arXiv:2505.22653): RL on math is robust to a large share of
flipped rewards (Qwen-2.5-7B with 40% of its rewards flipped reaches 72% on MATH against
75% without noise); at p = 0.5 the reward carries no signal.

What it reproduces: the held-out pass@1 against p ∈ {0, 0.1, 0.2, 0.3, 0.4, 0.5}, all arms
from one SFT warm start; p = 0 is the baseline (plain GRPO on the verifiable reward).
The logged training `accuracy` is always the true verifier's.

Deviations of `tiny`: grpo_arith's ~1M model and task, 20 GRPO steps of 16 x 8 per arm
(the paper: Qwen-2.5-7B, MATH, hundreds of steps). `paper`: Qwen2.5-7B from a local
directory, the paper's GRPO setting on its prompts.

    python experiments/noisy_rewards.py --preset tiny
    python experiments/noisy_rewards.py --preset smoke
"""

import dataclasses

from rewardjax import experiment
from rewardjax.recipes import BackboneConfig, SFTConfig
from rewardjax.recipes.rl_arith import TINY_RECIPE, Arm, RLRecipe, run_arms, smoke_recipe
from rewardjax.rewards.noise import NoisyRewards
from rewardjax.sharding import MeshConfig
from rewardjax.train import OptimizerConfig, write_result
from rewardjax.train.rl import RLConfig
from rewardjax.train.rl_extensions import RLExtensions


@dataclasses.dataclass(frozen=True, kw_only=True)
class NoisyConfig:
    """Attributes: recipe (warm start + GRPO, its mesh and seed replaced by `mesh`,
    `seed`), flip_probabilities (one arm each; 0 is the baseline)."""

    recipe: RLRecipe
    flip_probabilities: tuple[float, ...] = (0.0, 0.1, 0.2, 0.3, 0.4, 0.5)
    mesh: MeshConfig = MeshConfig()
    seed: int = 0

    def __post_init__(self):
        if not self.flip_probabilities or any(not 0 <= p <= 1 for p in self.flip_probabilities):
            raise ValueError(f"NoisyConfig.flip_probabilities must be a non-empty tuple of "
                             f"values in [0, 1], got {self.flip_probabilities}")


# 20 steps per arm (grpo_arith: 30) keep six arms under 10 minutes on a quiet machine.
TINY = NoisyConfig(recipe=dataclasses.replace(
    TINY_RECIPE, rl=dataclasses.replace(TINY_RECIPE.rl, steps=20),
    rl_optimizer=dataclasses.replace(TINY_RECIPE.rl_optimizer, total_steps=20)))
PRESETS = {
    "tiny": TINY,
    "paper": NoisyConfig(recipe=RLRecipe(
        model=BackboneConfig(hf_path="checkpoints/Qwen2.5-7B", compute_dtype="bfloat16",
                             remat="full"),
        sft=SFTConfig(steps=0),
        rl=RLConfig(steps=200, prompts_per_step=128, group_size=8, max_new_tokens=3072,
                    prompt_length=1024, micro_batches=64, kl_coef=0.0),
        rl_optimizer=OptimizerConfig(lr=1e-6, total_steps=200, min_lr_ratio=1.0),
        eval_problems=500)),
    "smoke": dataclasses.replace(TINY, recipe=smoke_recipe(TINY.recipe),
                                 flip_probabilities=(0.0, 0.5)),
}


def _name(p: float) -> str:
    return f"p{int(round(p * 100)):02d}"


def run(config: NoisyConfig, out):
    recipe = dataclasses.replace(config.recipe, mesh=config.mesh, seed=config.seed)
    arms = [Arm(name=_name(p), extensions=lambda cfg, p=p: RLExtensions(
        reward_transform=NoisyRewards(p=p, seed=config.seed))) for p in config.flip_probabilities]
    result = run_arms(recipe, out, arms, title="GRPO with rewards flipped with probability p",
                      curves=("reward/mean", "accuracy", "response/length"))
    final = {"pass1_before": result["pass1_before"],
             **{f"pass1_{_name(p)}": result[f"{_name(p)}_pass1"] for p in config.flip_probabilities},
             "minutes": result["minutes"]}
    write_result(out, final)
    return final


if __name__ == "__main__":
    experiment.main(PRESETS, run, description=__doc__)
