"""PRIME: dense rewards from an implicit PRM trained online, against outcome-only RLOO.

Paper: "Process Reinforcement through Implicit Rewards" (Cui et al., arXiv:2502.01456).
An implicit PRM π_φ (initialised from the SFT policy, like the reference) gives token
rewards β·log π_φ(y_t|y_<t)/π_ref(y_t|y_<t); it is trained on each step's rollouts with
the cross-entropy of its summed reward against the verifier's label. The policy's
advantage is leave-one-out on the dense rewards and on the outcome reward separately,
one γ = 1 return, whitened (the paper's Eq. 5 and its verl recipe).

What it reproduces: PRIME reaches the outcome-only baseline's final held-out pass@1 in
fewer steps, or ends higher. Baseline (same invocation, same warm start): the paper's
comparison, RLOO on the verifiable reward alone (`process_coef=0`), same return and
whitening.

Deviations of `tiny`: grpo_arith's ~1M-parameter model and SFT warm start, 30 steps of
16 prompts x 8 samples; the PRM is a full copy of that model at lr 1e-4 (PRIME: 1e-6 on
7B) so that it learns within 30 steps; no accuracy filter (PRIME keeps prompts with
accuracy in [0.2, 0.8]), so both arms see the same prompts. `paper`: PRIME's setting
(256 prompts x 4 samples, policy lr 5e-7, PRM lr 1e-6, β 0.05) on a local Eurus-2-7B-SFT.

    python experiments/prime.py --preset tiny
    python experiments/prime.py --preset smoke
"""

import dataclasses

from rewardjax import experiment
from rewardjax.recipes import BackboneConfig, SFTConfig
from rewardjax.recipes.rl_arith import TINY_RECIPE, Arm, RLRecipe, run_arms, smoke_recipe
from rewardjax.rewards.dense import ImplicitPRMConfig, ImplicitPRMReward
from rewardjax.sharding import MeshConfig
from rewardjax.train import OptimizerConfig, write_result
from rewardjax.train.rl import RLConfig
from rewardjax.train.rl_extensions import PrimeAdvantage, RLExtensions


@dataclasses.dataclass(frozen=True, kw_only=True)
class PrimeConfig:
    """The recipe, the implicit PRM and the advantage's coefficients.

    Attributes:
      recipe: warm start, RL settings and mesh shared by both arms.
      prm: the online implicit PRM (β, its optimizer, update order).
      outcome_coef, process_coef: weights of the two RLOO terms (PRIME: 5 and 5).
      eval_every: held-out pass@1 every this many steps (the curves the effect is read on).
    """

    recipe: RLRecipe
    prm: ImplicitPRMConfig = ImplicitPRMConfig()
    outcome_coef: float = 5.0
    process_coef: float = 5.0
    eval_every: int = 5
    mesh: MeshConfig = MeshConfig()
    seed: int = 0

    def __post_init__(self):
        if self.process_coef <= 0:
            raise ValueError(f"PrimeConfig.process_coef must be > 0 (0 is the baseline arm), "
                             f"got {self.process_coef}")


TINY = PrimeConfig(
    recipe=TINY_RECIPE,
    prm=ImplicitPRMConfig(beta=0.05, optimizer=OptimizerConfig(
        lr=1e-4, warmup_steps=0, total_steps=30, min_lr_ratio=1.0), update="after"))

HEADLINE = ("rloo_pass1", "prime_pass1", "rloo_steps_to_final", "prime_steps_to_final")  # the figures `python -m rewardjax results` shows

PRESETS = {
    "tiny": TINY,
    "paper": PrimeConfig(
        recipe=RLRecipe(
            model=BackboneConfig(hf_path="checkpoints/Eurus-2-7B-SFT", compute_dtype="bfloat16",
                                 remat="full"),
            sft=SFTConfig(steps=0),
            rl=RLConfig(steps=300, prompts_per_step=256, group_size=4, max_new_tokens=3072,
                        prompt_length=1024, minibatches=8, micro_batches=32,
                        eps_low=0.2, eps_high=0.2, temperature=1.0),
            rl_optimizer=OptimizerConfig(lr=5e-7, total_steps=300, min_lr_ratio=1.0),
            eval_problems=500),
        prm=ImplicitPRMConfig(beta=0.05, micro_batches=32, optimizer=OptimizerConfig(
            lr=1e-6, total_steps=300, min_lr_ratio=1.0)),
        eval_every=20),
}
PRESETS["smoke"] = dataclasses.replace(TINY, eval_every=1, recipe=smoke_recipe(TINY.recipe))


def steps_to_reach(curve: str, target: float, every: int) -> int | None:
    """The first evaluated step whose pass@1 is at least `target` (None: never)."""
    for k, value in enumerate(float(v) for v in curve.split(",")):
        if value >= target:
            return (k + 1) * every
    return None


def run(config: PrimeConfig, out):
    recipe = dataclasses.replace(config.recipe, mesh=config.mesh, seed=config.seed)
    baseline = PrimeAdvantage(outcome_coef=config.outcome_coef, process_coef=0.0)
    prime = PrimeAdvantage(outcome_coef=config.outcome_coef, process_coef=config.process_coef)
    arms = [
        Arm(name="rloo", extensions=lambda cfg: RLExtensions(advantage=baseline)),
        Arm(name="prime", extensions=lambda cfg: RLExtensions(
            dense=ImplicitPRMReward(config.prm), advantage=prime)),
    ]
    result = run_arms(recipe, out, arms, title="PRIME vs outcome-only RLOO",
                      eval_every=config.eval_every,
                      curves=("reward/mean", "accuracy", "prm/accuracy", "prm/loss"))
    target = result["rloo_pass1"]
    every = config.eval_every
    # the last curve point is the final step, which need not be a multiple of eval_every
    steps = recipe.rl.steps
    reach = {name: steps_to_reach(result[f"{name}_pass1_curve"], target, every)
             for name in ("rloo", "prime")}
    reach = {k: (min(v, steps) if v is not None else -1) for k, v in reach.items()}
    final = {"rloo_pass1": result["rloo_pass1"], "prime_pass1": result["prime_pass1"],
             "pass1_before": result["pass1_before"], "rloo_steps_to_final": reach["rloo"],
             "prime_steps_to_final": reach["prime"],
             **{k: v for k, v in result.items() if k.endswith("_curve") or k == "minutes"}}
    write_result(out, final)
    return final


if __name__ == "__main__":
    experiment.main(PRESETS, run, description=__doc__)
