"""Tina: GRPO that trains LoRA adapters only, on a frozen reasoning model.

Paper: "Tina: Tiny Reasoning Models via LoRA" (Wang et al., arXiv:2504.15777), with
"LoRA: Low-Rank Adaptation of Large Language Models" (arXiv:2106.09685). GRPO
("DeepSeekMath", arXiv:2402.03300) updates only rank-r adapters W + (α/r)·A·B on every
attention and MLP projection; the base weights stay frozen and serve as the KL
reference (adapters off, no second copy).

What it reproduces: a few LoRA-only RL steps raise greedy pass@1 on held-out problems
above the starting policy, as full fine-tuning does (compare experiments/grpo_arith.py).

Deviations of the `tiny` preset: grpo_arith's task, model and SFT warm start unchanged
(full SFT stands in for the pretrained checkpoint; RL then trains adapters only), rank
8 and α = 32 (Tina's α/r = 4) on all seven projections, lr 2e-4 (4x grpo_arith's; see
docs/experiments/tina_lora_grpo.md), β = 0. `paper` is Tina-Open-RS3's setting (r = 32,
α = 128, lr 1e-6 cosine to 0.1x with 10% warmup over 1,500 steps stopped at 850,
8 prompts x 6 samples per step, temperature 0.7, 3,584 new tokens, TRL's β = 0.04) on a
local DeepSeek-R1-Distill-Qwen-1.5B directory, with our answer reward in place of its
format + cosine-length rewards and without adapter dropout (0.05 in the paper; see
rewardjax.models.lora).

    python experiments/tina_lora_grpo.py --preset tiny
"""

import dataclasses

from rewardjax import experiment
from rewardjax.models.lora import LoraConfig
from rewardjax.recipes import BackboneConfig, SFTConfig
from rewardjax.recipes.rl_arith import TINY_GRPO, TINY_RL_MODEL, RLRecipe, run_rl_recipe
from rewardjax.train import OptimizerConfig
from rewardjax.train.rl import RLConfig

PRESETS = {
    "tiny": RLRecipe(
        model=dataclasses.replace(TINY_RL_MODEL, lora=LoraConfig(rank=8, alpha=32.0)),
        rl=TINY_GRPO,
        rl_optimizer=OptimizerConfig(lr=2e-4, warmup_steps=5, total_steps=30, min_lr_ratio=1.0),
    ),
    "paper": RLRecipe(
        model=BackboneConfig(hf_path="checkpoints/DeepSeek-R1-Distill-Qwen-1.5B",
                             compute_dtype="bfloat16", remat="full",
                             lora=LoraConfig(rank=32, alpha=128.0)),
        sft=SFTConfig(steps=0),
        rl=RLConfig(steps=850, prompts_per_step=8, group_size=6, max_new_tokens=3584,
                    prompt_length=512, temperature=0.7, epochs=1, minibatches=1,
                    micro_batches=8, advantage="grpo", reduction="seq_mean_token_mean",
                    kl_coef=0.04, kl_estimator="k3"),
        rl_optimizer=OptimizerConfig(lr=1e-6, warmup_steps=150, total_steps=1500,
                                     min_lr_ratio=0.1),
        eval_problems=1319, checkpoint_every=50),
}


def run(config, out):
    return run_rl_recipe(config, out, title="Tina (LoRA GRPO) on synthetic arithmetic")


if __name__ == "__main__":
    experiment.main(PRESETS, run, description=__doc__)
