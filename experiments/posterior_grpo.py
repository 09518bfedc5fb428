"""Posterior-GRPO: a thinking reward that counts only when the outcome is correct.

Paper: "Posterior-GRPO: Rewarding Reasoning Processes in Code Generation" (Fan et al.,
arXiv:2508.05170). A reward on the reasoning process is easy to game: the policy can
earn it without solving the task. P-GRPO gives the process (thinking) reward only to
rollouts whose outcome is correct (`advantages.gate_by_outcome`), then normalises the
total reward with GRPO:

    r = correct + w · r_think · [correct]        (ungated: r = correct + w · r_think)

What it reproduces: the gated process reward ends with a higher held-out pass@1 than the
same process reward ungated; plain GRPO on the outcome runs beside them as the baseline.

Deviations of `tiny`: grpo_arith's ~1M model, task and 30 steps of 16 x 8; the thinking
reward is a rule, not the paper's learned reasoning-quality model: the number of
well-formed worked steps `a op b = c` (right or wrong), capped at 3
(`rewards.steps.worked_steps_reward`) — a process reward that a wrong solution can
collect. `paper`: Qwen2.5-Coder-7B-Instruct from a local directory.

    python experiments/posterior_grpo.py --preset tiny
    python experiments/posterior_grpo.py --preset smoke
"""

import dataclasses

import numpy as np

from rewardjax import experiment
from rewardjax.losses.advantages import gate_by_outcome
from rewardjax.recipes import BackboneConfig, SFTConfig
from rewardjax.recipes.rl_arith import TINY_RECIPE, Arm, RLRecipe, run_arms, smoke_recipe
from rewardjax.rewards.steps import worked_steps_reward
from rewardjax.sharding import MeshConfig
from rewardjax.train import OptimizerConfig, write_result
from rewardjax.train.rl import RLConfig
from rewardjax.train.rl_extensions import RLExtensions


@dataclasses.dataclass(frozen=True, kw_only=True)
class PosteriorConfig:
    """Attributes: recipe (its mesh and seed replaced by `mesh`, `seed`); think_weight
    (w, the thinking reward's weight next to the 0/1 outcome)."""

    recipe: RLRecipe
    think_weight: float = 0.5
    mesh: MeshConfig = MeshConfig()
    seed: int = 0

    def __post_init__(self):
        if self.think_weight <= 0:
            raise ValueError(f"PosteriorConfig.think_weight must be > 0, got {self.think_weight}")


TINY = PosteriorConfig(recipe=TINY_RECIPE)
HEADLINE = ("grpo_pass1", "gated_pass1", "ungated_pass1")  # the figures `python -m rewardjax results` shows

PRESETS = {
    "tiny": TINY,
    "paper": PosteriorConfig(recipe=RLRecipe(
        model=BackboneConfig(hf_path="checkpoints/Qwen2.5-Coder-7B-Instruct",
                             compute_dtype="bfloat16", remat="full"),
        sft=SFTConfig(steps=0),
        rl=RLConfig(steps=300, prompts_per_step=64, group_size=8, max_new_tokens=4096,
                    prompt_length=1024, micro_batches=64),
        rl_optimizer=OptimizerConfig(lr=1e-6, total_steps=300, min_lr_ratio=1.0),
        eval_problems=500)),
    "smoke": dataclasses.replace(TINY, recipe=smoke_recipe(TINY.recipe)),
}


def thinking_reward(weight: float, *, gated: bool):
    """r = correct + w·r_think, with r_think zeroed on wrong rollouts when `gated`."""
    def transform(batch, probes=None):
        think = worked_steps_reward(batch.completions).reshape(batch.rewards.shape)
        if gated:
            think = np.asarray(gate_by_outcome(think, batch.correct))
        return batch.correct.astype(np.float32) + weight * think
    return transform


def run(config: PosteriorConfig, out):
    recipe = dataclasses.replace(config.recipe, mesh=config.mesh, seed=config.seed)
    w = config.think_weight
    arms = [
        Arm(name="grpo"),
        Arm(name="ungated", extensions=lambda cfg: RLExtensions(
            reward_transform=thinking_reward(w, gated=False))),
        Arm(name="gated", extensions=lambda cfg: RLExtensions(
            reward_transform=thinking_reward(w, gated=True))),
    ]
    r = run_arms(recipe, out, arms, title="Posterior-GRPO: gated vs ungated thinking reward",
                 curves=("reward/mean", "accuracy", "response/length"))
    final = {"pass1_before": r["pass1_before"],
             **{f"{a.name}_pass1": r[f"{a.name}_pass1"] for a in arms},
             "minutes": r["minutes"]}
    write_result(out, final)
    return final


if __name__ == "__main__":
    experiment.main(PRESETS, run, description=__doc__)
