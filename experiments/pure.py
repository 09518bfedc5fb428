"""PURE: min-form against sum-form credit assignment of process rewards.

Paper: "Stop Summation: Min-Form Credit Assignment Is All Process Reward Model Needs for
Reasoning" (Cheng et al., arXiv:2504.15275). With the usual summed returns, a policy
trained on PRM step rewards learns to collect them (more, or more padded, steps) and its
accuracy collapses; PURE's min-form values a state by the worst step still ahead
(softmax-weighted, temperature 0.1: `returns.process_returns(form="min")`), which
removes that incentive; mixing the verifiable reward into 10% of the prompts helps more.

What it reproduces (or reports): min-form keeps held-out pass@1 at or above plain GRPO
on the verifiable reward (the baseline), while sum-form's training process reward rises
as its pass@1 falls. Four arms from one warm start: `grpo`, `sum`, `min`, `min_vr`
(min-form + the 0/1 verifiable reward on every 10th prompt).

Deviations of `tiny`: grpo_arith's ~1M model, task and 30 steps of 16 x 8; the PRM is a
rule that checks each worked step's arithmetic exactly (+1 right, −1 wrong, on the
step's last token: `rewards.steps.StepRuleReward`), so the only way to game it is to
add steps, not to fool it; leave-one-out baseline on the first-token return, no
whitening. `paper`: Qwen2.5-Math-7B with a local PURE-PRM-7B is not wired (a learned
PRM as a dense reward is the `DenseReward` point); the preset runs the same arms at the
paper's sizes.

    python experiments/pure.py --preset tiny
    python experiments/pure.py --preset smoke
"""

import dataclasses

from rewardjax import experiment
from rewardjax.recipes import BackboneConfig, SFTConfig
from rewardjax.recipes.rl_arith import TINY_RECIPE, Arm, RLRecipe, run_arms, smoke_recipe
from rewardjax.rewards.steps import StepRuleReward
from rewardjax.sharding import MeshConfig
from rewardjax.train import OptimizerConfig, read_jsonl, write_result
from rewardjax.train.rl import RLConfig
from rewardjax.train.rl_extensions import ProcessReturnAdvantage, RLExtensions


ARMS = ("grpo", "sum", "min", "min_vr")


@dataclasses.dataclass(frozen=True, kw_only=True)
class PureConfig:
    """Attributes: recipe (its mesh and seed replaced by `mesh`, `seed`); temperature
    (the min-form soft-min, 0.1 in the paper); verifiable_every (the `min_vr` arm adds
    the verifiable reward on every k-th prompt: 10 ≈ the paper's 10%); arms (which to
    run: a subset runs on another machine with the same warm start and seeds)."""

    recipe: RLRecipe
    temperature: float = 0.1
    verifiable_every: int = 10
    arms: tuple[str, ...] = ARMS
    mesh: MeshConfig = MeshConfig()
    seed: int = 0

    def __post_init__(self):
        if self.temperature <= 0 or self.verifiable_every <= 0:
            raise ValueError(f"PureConfig.temperature and verifiable_every must be > 0, got "
                             f"{self.temperature} and {self.verifiable_every}")
        if not self.arms or set(self.arms) - set(ARMS):
            raise ValueError(f"PureConfig.arms must be a non-empty subset of {ARMS}, "
                             f"got {self.arms}")


TINY = PureConfig(recipe=TINY_RECIPE)
PRESETS = {
    "tiny": TINY,
    "paper": PureConfig(recipe=RLRecipe(
        model=BackboneConfig(hf_path="checkpoints/Qwen2.5-Math-7B", compute_dtype="bfloat16",
                             remat="full"),
        sft=SFTConfig(steps=0),
        rl=RLConfig(steps=500, prompts_per_step=64, group_size=4, max_new_tokens=3000,
                    prompt_length=1024, micro_batches=64),
        rl_optimizer=OptimizerConfig(lr=1e-6, total_steps=500, min_lr_ratio=1.0),
        eval_problems=500)),
    "smoke": dataclasses.replace(TINY, recipe=smoke_recipe(TINY.recipe)),
}


def run(config: PureConfig, out):
    recipe = dataclasses.replace(config.recipe, mesh=config.mesh, seed=config.seed)

    def process(form, every=0):
        def make(cfg):
            return RLExtensions(dense=StepRuleReward(),
                                advantage=ProcessReturnAdvantage(
                                    form=form, temperature=config.temperature,
                                    verifiable_every=every))
        return make

    arms = [Arm(name="grpo"), Arm(name="sum", extensions=process("sum")),
            Arm(name="min", extensions=process("min")),
            Arm(name="min_vr", extensions=process("min", config.verifiable_every))]
    arms = [a for a in arms if a.name in config.arms]
    r = run_arms(recipe, out, arms, title="PURE: min-form vs sum-form process returns",
                 curves=("process/reward_sum", "process/steps", "accuracy", "response/length"))
    final = {"pass1_before": r["pass1_before"],
             **{f"{a.name}_pass1": r[f"{a.name}_pass1"] for a in arms}}
    for name in [a.name for a in arms if a.name != "grpo"]:
        rows = [row for row in read_jsonl(out / f"rl_{name}.jsonl") if "process/reward_sum" in row]
        final[f"{name}_process_reward_first"] = round(rows[0]["process/reward_sum"], 3)
        final[f"{name}_process_reward_last"] = round(rows[-1]["process/reward_sum"], 3)
    final["minutes"] = r["minutes"]
    write_result(out, final)
    return final


if __name__ == "__main__":
    experiment.main(PRESETS, run, description=__doc__)
