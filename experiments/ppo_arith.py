"""PPO with a learned critic and GAE on multi-step arithmetic.

Paper: "Proximal Policy Optimization Algorithms" (Schulman et al., arXiv:1707.06347)
with GAE ("High-Dimensional Continuous Control Using Generalized Advantage Estimation",
arXiv:1506.02438), in the reasoning setting of "Open-Reasoner-Zero" (Hu et al.,
arXiv:2503.24290): a value model initialised from the policy, GAE with γ = λ = 1, the
outcome reward on the last token, no KL penalty.

What it reproduces: an actor-critic baseline in place of GRPO's group baseline also
improves held-out pass@1 from the SFT model.

Deviations of the `tiny` preset: the synthetic arithmetic task and a ~1M-parameter
model warm-started by SFT (see grpo_arith.py); the critic shares the policy's optimizer
settings; λ = 0.95 with whitened advantages; G = 4 samples per prompt. `paper`: ORZ's
setting (128 prompts x 64 samples, γ = λ = 1, no KL, lr 1e-6) on a local checkpoint.

    python experiments/ppo_arith.py --preset tiny
"""

from rewardjax import experiment
from rewardjax.train import OptimizerConfig
from rewardjax.recipes import BackboneConfig, SFTConfig
from rewardjax.recipes.rl_arith import RLRecipe, run_rl_recipe
from rewardjax.train.rl import RLConfig

PRESETS = {
    "tiny": RLRecipe(
        rl=RLConfig(steps=60, prompts_per_step=32, group_size=4, max_new_tokens=40,
                    prompt_length=56, minibatches=2, advantage="gae", gamma=1.0, lam=0.95,
                    value_coef=0.5, value_clip=0.2, reduction="token_mean"),
        rl_optimizer=OptimizerConfig(lr=5e-5, warmup_steps=5, total_steps=60, min_lr_ratio=1.0),
    ),
    "paper": RLRecipe(
        model=BackboneConfig(hf_path="checkpoints/Qwen2.5-7B", compute_dtype="bfloat16",
                             remat="full"),
        sft=SFTConfig(steps=0),
        rl=RLConfig(steps=500, prompts_per_step=128, group_size=64, max_new_tokens=8192,
                    prompt_length=2048, minibatches=1, micro_batches=128, advantage="gae",
                    gamma=1.0, lam=1.0, kl_coef=0.0, reduction="token_mean"),
        rl_optimizer=OptimizerConfig(lr=1e-6, total_steps=500, min_lr_ratio=1.0),
        eval_problems=1319, checkpoint_every=50),
}


def run(config, out):
    return run_rl_recipe(config, out, title="PPO (critic + GAE) on synthetic arithmetic")


if __name__ == "__main__":
    experiment.main(PRESETS, run, description=__doc__)
