"""GRPO on multi-step arithmetic: SFT warm start, then RL with a verifiable answer reward.

Paper: "DeepSeekMath: Pushing the Limits of Mathematical Reasoning in Open Language
Models" (Shao et al., arXiv:2402.03300) — Group Relative Policy Optimization: G samples
per prompt, group-normalised advantages (r − mean) / std, PPO's clipped ratio, a k3 KL
term to the reference, in the outcome-reward setting of "DeepSeek-R1" (arXiv:2501.12948).

What it reproduces: RL with a verifiable 0/1 answer reward (math-verify) raises greedy
pass@1 on held-out problems above the SFT starting point.

Deviations of the `tiny` preset: a ~1M-parameter Qwen2-style model trained from scratch
by a short SFT warm start on the synthetic arithmetic task (`rewardjax.data.synthetic`,
two or three single-digit additions/subtractions) instead of a pretrained 7B on
GSM8K/MATH. Half of the SFT examples give the bare answer line without the worked steps,
so the SFT policy has two habits, and the worked one is right more often: RL on the
answer reward learns to show its work (responses get longer), the effect R1-style RL
reports at scale. No KL term (β = 0, as DAPO and Dr. GRPO); token-mean reduction;
30 steps of 16 prompts x 8 samples, one on-policy update each, lr 5e-5 (Adam's first
steps move every weight by about lr, so larger rates knock a 1M model off its SFT
solution).
`paper` is DeepSeekMath's GRPO setting (lr 1e-6, β = 0.04, G = 64, 1,024 samples per
step, max length 1,024, one update per rollout) on a local checkpoint directory.

    python experiments/grpo_arith.py --preset tiny        # the README's main job
    python experiments/grpo_arith.py --preset smoke       # every stage in well under a minute
"""

import dataclasses

from rewardjax import experiment
from rewardjax.train import OptimizerConfig
from rewardjax.recipes import BackboneConfig, SFTConfig
from rewardjax.recipes.rl_arith import TINY_GRPO, RLRecipe, run_rl_recipe
from rewardjax.train.rl import RLConfig

PRESETS = {
    "tiny": RLRecipe(
        rl=TINY_GRPO,
        rl_optimizer=OptimizerConfig(lr=5e-5, warmup_steps=5, total_steps=30, min_lr_ratio=1.0),
    ),
    "paper": RLRecipe(
        model=BackboneConfig(hf_path="checkpoints/deepseek-math-7b-instruct",
                             compute_dtype="bfloat16", remat="full"),
        sft=SFTConfig(steps=0),
        rl=RLConfig(steps=1000, prompts_per_step=16, group_size=64, max_new_tokens=1024,
                    prompt_length=1024, epochs=1, minibatches=1, micro_batches=64,
                    advantage="grpo", reduction="seq_mean_token_mean", kl_coef=0.04,
                    kl_estimator="k3"),
        rl_optimizer=OptimizerConfig(lr=1e-6, total_steps=1000, min_lr_ratio=1.0),
        eval_problems=1319, checkpoint_every=50),
}
# The tiny recipe cut to seconds: every stage runs (SFT, pass@1, RL, curves, RESULT), so
# .ci/run uses it to check a clean install; its figures measure nothing. One layer: compiling
# dominates its time, and compile time grows with the layers.
PRESETS["smoke"] = dataclasses.replace(
    PRESETS["tiny"], model=dataclasses.replace(PRESETS["tiny"].model, num_layers=1),
    sft=dataclasses.replace(PRESETS["tiny"].sft, steps=10), eval_problems=8,
    rl=dataclasses.replace(PRESETS["tiny"].rl, steps=2, prompts_per_step=4, group_size=4))


def run(config, out):
    return run_rl_recipe(config, out, title="GRPO (DeepSeekMath) on synthetic arithmetic")


if __name__ == "__main__":
    experiment.main(PRESETS, run, description=__doc__)
