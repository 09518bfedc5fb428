"""DAPO: clip-higher, dynamic sampling, token-level loss, soft overlong punishment.

Paper: "DAPO: An Open-Source LLM Reinforcement Learning System at Scale" (Yu et al.,
arXiv:2503.14476). Four changes to GRPO: decoupled clip range (ε_low = 0.2,
ε_high = 0.28), dynamic sampling (groups whose rewards are all equal are dropped and
the batch refilled), the token-mean loss over the whole batch, and a soft length
penalty over the last L_cache tokens of the budget; no KL term.

Deviations of the `tiny` preset: the synthetic arithmetic task and a ~1M-parameter model
warm-started by SFT (see grpo_arith.py); 3 sampling rounds at most to refill a batch; a
12-token overlong buffer. `paper`: 512 prompts x 16 samples, 16 minibatch updates per
rollout, lr 1e-6 with 20 warmup steps, 20,480-token budget with a 4,096-token buffer,
on a local Qwen2.5-32B directory.

    python experiments/dapo.py --preset tiny
"""

from rewardjax import experiment
from rewardjax.train import OptimizerConfig
from rewardjax.recipes import BackboneConfig, SFTConfig
from rewardjax.recipes.rl_arith import RLRecipe, run_rl_recipe
from rewardjax.train.rl import RLConfig

PRESETS = {
    "tiny": RLRecipe(
        rl=RLConfig(steps=60, prompts_per_step=16, group_size=8, max_new_tokens=40,
                    prompt_length=56, minibatches=2, advantage="grpo", reduction="token_mean",
                    eps_low=0.2, eps_high=0.28, dynamic_sampling=True, max_sampling_rounds=3),
        rl_optimizer=OptimizerConfig(lr=5e-5, warmup_steps=5, total_steps=60, min_lr_ratio=1.0),
        overlong_buffer=12,
    ),
    "paper": RLRecipe(
        model=BackboneConfig(hf_path="checkpoints/Qwen2.5-32B", compute_dtype="bfloat16",
                             remat="full"),
        sft=SFTConfig(steps=0),
        rl=RLConfig(steps=500, prompts_per_step=512, group_size=16, max_new_tokens=20480,
                    prompt_length=2048, minibatches=16, micro_batches=32, advantage="grpo",
                    reduction="token_mean", eps_low=0.2, eps_high=0.28,
                    dynamic_sampling=True, max_sampling_rounds=8, kl_coef=0.0),
        rl_optimizer=OptimizerConfig(lr=1e-6, warmup_steps=20, total_steps=500, min_lr_ratio=1.0,
                                     weight_decay=0.1),
        overlong_buffer=4096, eval_problems=1319, checkpoint_every=20),
}


def run(config, out):
    return run_rl_recipe(config, out, title="DAPO on synthetic arithmetic")


if __name__ == "__main__":
    experiment.main(PRESETS, run, description=__doc__)
