"""DPO on offline preference pairs of the synthetic arithmetic task.

Paper: "Direct Preference Optimization: Your Language Model is Secretly a Reward Model"
(Rafailov et al., arXiv:2305.18290): L = −log σ(β[(log π − log π_ref)(y_w) −
(log π − log π_ref)(y_l)]), with the SFT model as π_ref. Variants by `--set dpo.loss=`:
IPO (arXiv:2310.12036), SimPO (arXiv:2405.14734); cDPO via `dpo.label_smoothing`.

What it reproduces: preference pairs (a correct solution vs the same problem with a
wrong step) raise the implicit-reward accuracy on held-out pairs and the policy's greedy
pass@1 above the SFT starting point.

Deviations of the `tiny` preset: synthetic pairs and a ~1M-parameter model
warm-started by SFT; a larger learning rate than the paper's 5e-7 and fewer steps.
`paper`: β = 0.1, lr 5e-7, batch 64, 150 warmup steps (RMSprop in the paper; AdamW here).

    python experiments/dpo_arith.py --preset tiny
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rewardjax import experiment
from rewardjax.data import synthetic
from rewardjax.data.pipeline import PipelineConfig, preference_pipeline
from rewardjax.data.tokenizer import eos_ids
from rewardjax.recipes import BackboneConfig, SFTConfig
from rewardjax.recipes.rl_arith import RLRecipe, warm_started_policy
from rewardjax.train import (MetricsLogger, OptimizerConfig, init_state, make_train_step,
                             plot_curves, split_micro, write_result)
from rewardjax.train.dpo import DPOConfig, dpo_batch_loss, pair_batch, reference_logprobs
from rewardjax.train.evaluate import greedy_accuracy
from rewardjax.train.placement import context
from rewardjax.train.state import NonFiniteGuard


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    base: RLRecipe = RLRecipe()  # model, task, SFT warm start, eval size
    dpo: DPOConfig = DPOConfig(loss="sigmoid", beta=0.1)
    steps: int = 150
    batch_size: int = 32
    optimizer: OptimizerConfig = OptimizerConfig(lr=2e-4, warmup_steps=10, total_steps=150,
                                                 min_lr_ratio=1.0)
    eval_pairs: int = 256
    max_new_tokens: int = 40
    prompt_length: int = 56

    def __post_init__(self):
        if self.eval_pairs % self.batch_size:
            raise ValueError(f"eval_pairs ({self.eval_pairs}) must be a multiple of batch_size "
                             f"({self.batch_size})")


PRESETS = {
    "tiny": Config(),
    "paper": Config(base=RLRecipe(model=BackboneConfig(hf_path="checkpoints/sft-model",
                                                       compute_dtype="bfloat16", remat="full"),
                                  sft=SFTConfig(steps=0), eval_problems=1319),
                    dpo=DPOConfig(loss="sigmoid", beta=0.1), steps=2000, batch_size=64,
                    optimizer=OptimizerConfig(lr=5e-7, warmup_steps=150, total_steps=2000,
                                              min_lr_ratio=1.0)),
}


def run(cfg: Config, out: Path) -> dict:
    start = time.time()
    base = cfg.base
    policy = warm_started_policy(base, out)
    config, params, tokenizer, placement = (policy.config, policy.params, policy.tokenizer,
                                            policy.placement)
    reference = params

    pipe_cfg = PipelineConfig(batch_size=cfg.batch_size, buckets=(96,), seed=base.seed,
                              num_epochs=1, prefetch=0)
    train_pairs = synthetic.preference_pairs(cfg.steps * cfg.batch_size, seed=base.seed + 5,
                                             config=base.task, split="train")
    test_pairs = synthetic.preference_pairs(cfg.eval_pairs, seed=base.seed + 6,
                                            config=base.task, split="test")
    train = preference_pipeline(train_pairs, tokenizer, pipe_cfg)
    test = preference_pipeline(test_pairs, tokenizer, dataclasses.replace(pipe_cfg, shuffle=False))
    train_batches = reference_logprobs(reference, [pair_batch(train.dataset[i])
                                                   for i in range(cfg.steps)], config=config)
    test_batches = reference_logprobs(reference, [pair_batch(test.dataset[i])
                                                  for i in range(len(test.dataset))], config=config)

    held_out = synthetic.rl_prompts(base.eval_problems, seed=base.seed + 2, config=base.task,
                                    split="test")
    loss_fn = functools.partial(dpo_batch_loss, config=config, dpo=cfg.dpo)
    eval_fn = jax.jit(loss_fn)

    def pass1(p):
        with context(placement):
            return greedy_accuracy(p, held_out, config=config, tokenizer=tokenizer,
                                   prompt_length=cfg.prompt_length,
                                   max_new_tokens=cfg.max_new_tokens, eos_ids=eos_ids(tokenizer))

    def pair_accuracy(p):
        with context(placement):
            margins = [jax.device_get(eval_fn(p, b)[1]) for b in test_batches]
        # equal-size batches (eval_pairs is a multiple of batch_size): mean of means is exact
        return float(np.mean([m["reward/accuracy"] for m in margins]))

    pass1_before = pass1(params)
    acc_before = pair_accuracy(params)
    print(f"SFT model: pass@1 {pass1_before:.3f}, held-out pair accuracy {acc_before:.3f}", flush=True)

    optimizer = cfg.optimizer.make()
    state, shardings = placement.state(init_state(jax.tree.map(jnp.copy, params), optimizer),
                                       optimizer)
    step = make_train_step(loss_fn, optimizer, config=cfg.optimizer, placement=placement,
                           state_sharding=shardings)
    guard = NonFiniteGuard(cfg.optimizer.max_nonfinite_steps)
    logger = MetricsLogger(out, name="dpo", total_steps=cfg.steps)
    for i, batch in enumerate(train_batches):
        state, metrics = step(state, split_micro(batch, 1))
        guard.check(i + 1, metrics)
        if (i + 1) % 10 == 0 or i + 1 == cfg.steps:
            logger.log(i + 1, metrics, advance=10 if (i + 1) % 10 == 0 else (i + 1) % 10)
    logger.close()
    pass1_after = pass1(state.params)
    acc_after = pair_accuracy(state.params)
    plot_curves(out / "dpo.jsonl", ["loss", "reward/accuracy", "reward/margin"], out / "dpo_curves.png", title="DPO on synthetic arithmetic")
    result = {"pass1_before": round(pass1_before, 4), "pass1_after": round(pass1_after, 4),
              "pair_accuracy_before": round(acc_before, 4), "pair_accuracy_after": round(acc_after, 4),
              "minutes": round((time.time() - start) / 60, 2)}
    write_result(out, result)
    return result


if __name__ == "__main__":
    experiment.main(PRESETS, run, description=__doc__)
