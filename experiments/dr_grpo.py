"""Dr. GRPO: GRPO without the length and std biases.

Paper: "Understanding R1-Zero-Like Training: A Critical Perspective" (Liu et al.,
arXiv:2503.20783). Dr. GRPO removes GRPO's division by the group reward std and its
per-response length normalisation: advantages are r − mean(r), and token losses are
summed per response and divided by a constant (the generation budget), not by |o_i|.

What it reproduces: the unbiased objective trains as well as GRPO on a verifiable reward
without inflating the length of wrong responses (compare `response/length` in the
curves with experiments/grpo_arith.py).

Deviations of the `tiny` preset: the synthetic arithmetic task and a ~1M-parameter model
warm-started by SFT (see grpo_arith.py), lr 5e-5. `paper` follows the
released oat-zero setting: 128 prompts x 8 samples per step, β = 0, lr 1e-6, a
3,000-token budget, on a local Qwen2.5-Math-7B directory.

    python experiments/dr_grpo.py --preset tiny
"""

from rewardjax import experiment
from rewardjax.train import OptimizerConfig
from rewardjax.recipes import BackboneConfig, SFTConfig
from rewardjax.recipes.rl_arith import RLRecipe, run_rl_recipe
from rewardjax.train.rl import RLConfig

PRESETS = {
    "tiny": RLRecipe(
        rl=RLConfig(steps=60, prompts_per_step=16, group_size=8, max_new_tokens=40,
                    prompt_length=56, minibatches=2, advantage="grpo", scale_by_std=False,
                    reduction="seq_mean_token_sum_norm", max_len_norm=40),
        rl_optimizer=OptimizerConfig(lr=5e-5, warmup_steps=5, total_steps=60, min_lr_ratio=1.0),
    ),
    "paper": RLRecipe(
        model=BackboneConfig(hf_path="checkpoints/Qwen2.5-Math-7B", compute_dtype="bfloat16",
                             remat="full"),
        sft=SFTConfig(steps=0),
        rl=RLConfig(steps=500, prompts_per_step=128, group_size=8, max_new_tokens=3000,
                    prompt_length=1024, minibatches=1, micro_batches=64, advantage="grpo",
                    scale_by_std=False, reduction="seq_mean_token_sum_norm",
                    max_len_norm=3000, kl_coef=0.0),
        rl_optimizer=OptimizerConfig(lr=1e-6, total_steps=500, min_lr_ratio=1.0),
        eval_problems=1319, checkpoint_every=50),
}


def run(config, out):
    return run_rl_recipe(config, out, title="Dr. GRPO on synthetic arithmetic")


if __name__ == "__main__":
    experiment.main(PRESETS, run, description=__doc__)
