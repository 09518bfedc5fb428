"""The RL-on-arithmetic recipe shared by the policy-optimization experiments.

SFT warm start on the synthetic arithmetic task, greedy pass@1 on held-out problems,
RL with the verifiable answer reward (`RLConfig` decides the algorithm), pass@1 again,
curves and a RESULT line. Experiment files (`experiments/grpo_arith.py`, `dr_grpo.py`,
`dapo.py`, `ppo_arith.py`) only choose presets.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import jax.numpy as jnp

from rewardjax import heads, models
from rewardjax.data import synthetic
from rewardjax.data.pipeline import PipelineConfig, sft_pipeline
from rewardjax.data.tokenizer import default_tokenizer, load_tokenizer
from rewardjax.rewards import CombinedReward, MathAnswerReward, OverlongPenalty, RewardSpec
from rewardjax.train.checkpoint import Checkpointer
from rewardjax.train.evaluate import greedy_accuracy
from rewardjax.train.metrics import MetricsLogger, plot_curves, write_result
from rewardjax.train.rl import RLConfig, RLTrainer
from rewardjax.train.sft import make_sft_step
from rewardjax.train.state import OptimizerConfig, init_state


# Two or three additions/subtractions of single digits with values up to 19: the worked
# solution is within reach of a ~1M-parameter model after a few hundred SFT steps, the
# bare answer much less often.
TINY_RL_TASK = synthetic.ArithmeticConfig(min_steps=2, max_steps=3, ops=("+", "-"), max_start=9,
                                          max_operand=5, max_value=19)


@dataclasses.dataclass(frozen=True, kw_only=True)
class ModelSpec:
    """A fresh Qwen2-style model (tiny), or a local Hugging Face checkpoint (`path`)."""

    path: str | None = None
    hidden_size: int = 128
    num_layers: int = 4
    num_heads: int = 4
    num_kv_heads: int = 2
    intermediate_size: int = 384


@dataclasses.dataclass(frozen=True, kw_only=True)
class RLRecipe:
    """SFT warm start + RL on the synthetic arithmetic task.

    Attributes:
      sft_direct_fraction: share of SFT examples that give the bare answer line without
        the worked steps (`synthetic.sft_examples`); RL can then learn to show its work.
      sft_buckets: SFT sequence lengths (prompt + completion; the longest `task`
        example must fit, or the pipeline raises naming the record).
      overlong_buffer: > 0 adds DAPO's soft overlong penalty over the last this-many
        tokens before `rl.max_new_tokens` (0: off).
      checkpoint_every: orbax checkpoints of the RL state every N steps (0: off);
        a rerun with the same output directory resumes.
    """

    model: ModelSpec = ModelSpec()
    task: synthetic.ArithmeticConfig = TINY_RL_TASK
    sft_steps: int = 500
    sft_batch: int = 32
    sft_direct_fraction: float = 0.5
    sft_buckets: tuple[int, ...] = (80,)
    sft_optimizer: OptimizerConfig = OptimizerConfig(lr=3e-3, warmup_steps=20, total_steps=500,
                                                     weight_decay=0.01)
    rl: RLConfig = RLConfig()
    rl_optimizer: OptimizerConfig = OptimizerConfig(lr=5e-4, total_steps=1000, min_lr_ratio=1.0)
    overlong_buffer: int = 0
    eval_problems: int = 256
    prompt_pool: int = 20000
    checkpoint_every: int = 0
    seed: int = 0


def build_model(spec: ModelSpec, tokenizer, seed: int):
    if spec.path is not None:
        return models.hf.load(spec.path)
    config = models.ModelConfig(
        model_type="qwen2", vocab_size=len(tokenizer), hidden_size=spec.hidden_size,
        intermediate_size=spec.intermediate_size, num_layers=spec.num_layers,
        num_heads=spec.num_heads, num_kv_heads=spec.num_kv_heads,
        head_dim=spec.hidden_size // spec.num_heads, qkv_bias=True, tie_word_embeddings=True,
        pad_token_id=tokenizer.pad_token_id, eos_token_id=tokenizer.eos_token_id)
    return config, models.init_params(config, jax.random.key(seed))


def sft_warm_start(params, config, tokenizer, cfg: RLRecipe, out: Path, *, log_every: int = 20):
    """`cfg.sft_steps` steps of SFT on correct synthetic solutions (train split)."""
    if cfg.sft_steps == 0:
        return params
    examples = synthetic.sft_examples(cfg.sft_steps * cfg.sft_batch, seed=cfg.seed + 1,
                                      config=cfg.task, split="train",
                                      direct_fraction=cfg.sft_direct_fraction)
    pipe = sft_pipeline(examples, tokenizer, PipelineConfig(
        batch_size=cfg.sft_batch, buckets=cfg.sft_buckets, seed=cfg.seed, num_epochs=1, prefetch=0))
    optimizer, step = make_sft_step(config, cfg.sft_optimizer)
    state = init_state(params, optimizer)
    logger = MetricsLogger(out, name="sft", total_steps=cfg.sft_steps, tensorboard=False)
    for i in range(cfg.sft_steps):
        state, metrics = step(state, pipe.dataset[i])
        done = i + 1
        if done % log_every == 0 or done == cfg.sft_steps:
            logger.log(done, metrics, advance=log_every if done % log_every == 0 else done % log_every)
    logger.close()
    return state.params


def answer_reward(cfg: RLRecipe) -> CombinedReward:
    specs = [RewardSpec(name="answer", fn=MathAnswerReward(), weight=1.0, fallback=0.0,
                        isolation="thread", timeout_s=10.0)]
    if cfg.overlong_buffer:
        penalty = OverlongPenalty(max_length=cfg.rl.max_new_tokens, cache_length=cfg.overlong_buffer)
        specs.append(RewardSpec(name="overlong", fn=penalty, weight=1.0, fallback=0.0,
                                timeout_s=None, isolation="inline", per_sample=False))
    return CombinedReward(specs)


def run_rl_recipe(cfg: RLRecipe, out: Path, *, title: str) -> dict:
    """Runs the recipe; prints and returns `pass1_before`, `pass1_after`, `minutes`."""
    start = time.time()
    out = Path(out)
    tokenizer = load_tokenizer(cfg.model.path) if cfg.model.path else default_tokenizer()
    config, params = build_model(cfg.model, tokenizer, cfg.seed)
    params = sft_warm_start(params, config, tokenizer, cfg, out)

    rl = cfg.rl
    held_out = synthetic.rl_prompts(cfg.eval_problems, seed=cfg.seed + 2, config=cfg.task,
                                    split="test")
    pool = synthetic.rl_prompts(cfg.prompt_pool, seed=cfg.seed + 3, config=cfg.task, split="train")

    def prompts_fn(step: int, rnd: int):
        first = (step * rl.max_sampling_rounds + rnd) * rl.prompts_per_step
        return [pool[(first + i) % len(pool)] for i in range(rl.prompts_per_step)]

    reward = answer_reward(cfg)
    trainer = RLTrainer(model_config=config, rl=rl, optimizer=cfg.rl_optimizer,
                        tokenizer=tokenizer, prompts_fn=prompts_fn, reward_fn=reward)

    def pass1(policy):
        return greedy_accuracy(policy, held_out, config=config, tokenizer=tokenizer,
                               prompt_length=rl.prompt_length, max_new_tokens=rl.max_new_tokens,
                               eos_ids=trainer.sampling.eos_ids)

    pass1_before = pass1(params)
    print(f"held-out greedy pass@1 before RL: {pass1_before:.3f}", flush=True)
    critic = None
    if rl.uses_critic:  # PPO: the critic starts from the SFT backbone with a zero value head
        critic = {"backbone": jax.tree.map(jnp.array, params),
                  "head": heads.init_value_head(jax.random.key(cfg.seed), config.hidden_size)}
    state = trainer.init_state(params, critic)
    logger = MetricsLogger(out, name="rl", total_steps=rl.steps)
    checkpointer = (Checkpointer(out / "checkpoints", every=cfg.checkpoint_every)
                    if cfg.checkpoint_every else None)
    state = trainer.run(state, ref_params=params if rl.kl_coef else None,
                        checkpointer=checkpointer, logger=logger)
    logger.close()
    reward.close()
    pass1_after = pass1(trainer.policy(state))
    print(f"held-out greedy pass@1 after RL: {pass1_after:.3f}", flush=True)
    plot_curves(out / "rl.jsonl", ["reward/mean", "accuracy", "entropy", "response/length"],
                out / "rl_curves.png", title=title)
    result = {"pass1_before": round(pass1_before, 4), "pass1_after": round(pass1_after, 4),
              "minutes": round((time.time() - start) / 60, 2)}
    write_result(out, result)
    return result
