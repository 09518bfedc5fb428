"""GenARM: a frozen policy decoded under the guidance of an autoregressive reward model.

Paper: "GenARM: Reward Guided Generation with Autoregressive Reward Model for Test-time
Alignment" (Xu et al., arXiv:2410.08193). An autoregressive RM π_r (a language model
whose reward is β_r Σ_t log π_r(y_t | x, y_<t)) is trained with Bradley–Terry on
preference pairs; the frozen base policy then decodes token by token from
π_base · π_r^(1/β), renormalised (`rewardjax.search.genarm`).

What it reproduces: test-time guidance by the autoregressive RM lifts the frozen base
policy above its own decoding without touching its weights; β sweeps from the base
(β = inf) to the RM-dominated end.

Deviations of the `tiny` preset: the base is a ~1M-parameter model from a short SFT warm
start on the synthetic arithmetic task (so it is weak and there is room to improve),
instead of a 7B SFT model; the ARM is that model fine-tuned on synthetic pairs (correct
vs one-wrong-step solutions, `data.synthetic.arithmetic.preference_pairs`), all weights
instead of LoRA; pass@1 of greedy decoding on held-out problems against the answer
instead of GPT-4 win rates on HH-RLHF. `paper`: the HH-RLHF ARM setting (β_r = 0.05,
lr 5e-4, batch 32, one epoch, cosine, 100 warmup steps) on local checkpoint
directories; decoding β = 1 as the README's example.

    python experiments/genarm.py --preset tiny
    python experiments/genarm.py --preset smoke
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rewardjax import experiment, recipes
from rewardjax.data import pipeline as pl
from rewardjax.data.encoding import encode_prompt
from rewardjax.data.synthetic import arithmetic
from rewardjax.data.tokenizer import eos_ids
from rewardjax.recipes.rl_arith import TINY_RL_MODEL
from rewardjax.rewards import MathAnswerReward
from rewardjax.sampling import SamplerConfig
from rewardjax.search import genarm
from rewardjax.sharding import MeshConfig
from rewardjax.train import make_batch_fn, plot_curves, run_stage, write_result
from rewardjax.train.evaluate import greedy_accuracy
from rewardjax.train.metrics import LogConfig, is_writer
from rewardjax.train.placement import context
from rewardjax.train.state import OptimizerConfig


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    """Attributes:
      model, mesh: the base policy's backbone and the mesh everything runs on (the ARM
        has the base's architecture and starts from its weights).
      task: the arithmetic task of the SFT data, the pairs and the held-out problems.
      sft, sft_direct_fraction: the base policy's warm start (share of bare-answer
        completions, `arithmetic.sft_examples`).
      num_pairs, step_fraction: ARM training pairs (share of step-level pairs).
      beta_r, arm_steps, batch_size, optimizer: the ARM's Bradley–Terry training.
      betas: decoding β values swept (inf is the base policy through the guided decoder).
      eval_problems, eval_pairs: held-out problems (pass@1) and pairs (ARM accuracy).
      prompt_length, max_new_tokens, buckets: decoding and training lengths.
    """

    model: recipes.BackboneConfig = TINY_RL_MODEL
    mesh: MeshConfig = MeshConfig()
    task: arithmetic.ArithmeticConfig = recipes.TINY_RL_TASK
    sft: recipes.SFTConfig = recipes.SFTConfig(steps=150, batch_size=32, num_examples=4800,
                                               response_window=None,
                                               optimizer=OptimizerConfig(lr=3e-3, warmup_steps=20,
                                                                         total_steps=150,
                                                                         weight_decay=0.01))
    sft_direct_fraction: float = 0.0
    num_pairs: int = 16_000
    step_fraction: float = 0.3
    beta_r: float = 0.05
    arm_steps: int = 300
    batch_size: int = 32
    optimizer: OptimizerConfig = OptimizerConfig(lr=5e-4, warmup_steps=20, total_steps=300,
                                                 min_lr_ratio=0.0)
    betas: tuple[float, ...] = (math.inf, 16.0, 8.0, 4.0, 2.0, 1.0)
    eval_problems: int = 256
    eval_pairs: int = 256
    prompt_length: int = 56
    max_new_tokens: int = 40
    buckets: tuple[int, ...] = (80, 96)
    log: LogConfig = LogConfig()
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "betas", tuple(float(b) for b in self.betas))
        if not self.betas:
            raise ValueError("Config.betas must hold at least one decoding beta")
        for b in self.betas:
            genarm.guidance_weight(b)  # raises naming the bad beta
        if not self.beta_r > 0:
            raise ValueError(f"Config.beta_r must be > 0, got {self.beta_r}")
        object.__setattr__(self, "optimizer", recipes.sync_schedule(self.optimizer,
                                                                    self.arm_steps))


# The figures `python -m rewardjax results` shows for this experiment.
HEADLINE = ("pass1_base", "pass1_guided", "best_beta", "arm_pair_accuracy")

PRESETS = {
    "tiny": Config(),
    "paper": Config(
        model=recipes.BackboneConfig(hf_path="checkpoints/llama-7b-sft", compute_dtype="bfloat16",
                                     remat="full"),
        task=arithmetic.ArithmeticConfig(), sft=recipes.SFTConfig(steps=0), num_pairs=160_000,
        step_fraction=0.0, beta_r=0.05, arm_steps=5000, batch_size=32,
        optimizer=OptimizerConfig(lr=5e-4, warmup_steps=100, total_steps=5000,
                                  min_lr_ratio=0.0, weight_decay=0.05),
        betas=(math.inf, 1.0), eval_problems=1024, prompt_length=512, max_new_tokens=256,
        buckets=(1024,)),
}
# Every stage in seconds (CI): one layer, a few steps, 16 problems; figures measure nothing.
PRESETS["smoke"] = dataclasses.replace(
    PRESETS["tiny"], model=dataclasses.replace(TINY_RL_MODEL, num_layers=1),
    sft=dataclasses.replace(PRESETS["tiny"].sft, steps=4), num_pairs=64, arm_steps=4,
    batch_size=8, betas=(math.inf, 1.0), eval_problems=16, eval_pairs=16, max_new_tokens=16)


def guided_accuracy(base_params, arm_params, records, *, beta: float, config, tokenizer,
                    sampling: SamplerConfig, batch_size: int = 64) -> float:
    """Greedy pass@1 of GenARM decoding on `records` (`prompt`, `answer`), scored like
    `train.evaluate.greedy_accuracy` (fixed-size batches: one compiled decoder)."""
    reward_fn = MathAnswerReward()
    correct = []
    for start in range(0, len(records), batch_size):
        chunk = records[start:start + batch_size]
        padded = chunk + [chunk[-1]] * (batch_size - len(chunk))
        prompts = [encode_prompt(tokenizer, r.prompt) for r in padded]
        out = genarm.genarm_sample(base_params, arm_params, prompts, beta=beta,
                                   base_config=config, rm_config=config,
                                   sampling=sampling).samples
        tokens, lengths = jax.device_get((out.tokens[:, 0], out.lengths[:, 0]))
        texts = [tokenizer.decode(t[:k], skip_special_tokens=True)
                 for t, k in zip(tokens[:len(chunk)], lengths[:len(chunk)])]
        scores = reward_fn([r.prompt for r in chunk], texts, answer=[r.answer for r in chunk])
        correct.extend((np.asarray(scores) > 0.5).tolist())
    return float(np.mean(correct))


def _pair_accuracy(params, pipeline, *, config, beta_r):
    """Held-out share of pairs whose ARM reward ranks the correct solution first."""
    fn = jax.jit(functools.partial(genarm.arm_pair_loss, config=config, beta_r=beta_r))
    accs = [float(fn(params, batch)[1]["accuracy"]) * batch["chosen"]["tokens"].shape[0]
            for batch in pipeline]
    return {"accuracy": sum(accs) / pipeline.stats.examples}


def _plot_sweep(out: Path, betas, pass1, base: float) -> None:
    if not is_writer():
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    weights = [genarm.guidance_weight(b) for b in betas]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(weights, pass1, marker="o", label="GenARM greedy")
    ax.axhline(base, color="gray", linestyle="--", label="base policy greedy")
    ax.set_xlabel("guidance weight 1/β")
    ax.set_ylabel("held-out pass@1")
    ax.set_title("GenARM β sweep (synthetic arithmetic)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "beta_sweep.png", dpi=100)
    plt.close(fig)


def run(cfg: Config, out: Path) -> dict:
    start = time.time()
    out = Path(out)
    key = jax.random.key(cfg.seed)
    backbone = recipes.load_backbone(cfg.model, jax.random.fold_in(key, 0), cfg.mesh)
    config, tokenizer, placement = backbone.config, backbone.tokenizer, backbone.placement
    sft_records = arithmetic.sft_examples(cfg.sft.num_examples, seed=cfg.seed + 1,
                                          config=cfg.task, split="train",
                                          direct_fraction=cfg.sft_direct_fraction)
    base = recipes.sft_warm_start(backbone, sft_records, sft=cfg.sft, buckets=cfg.buckets,
                                  out_dir=out, seed=cfg.seed, log=cfg.log)

    train_pairs = arithmetic.preference_pairs(cfg.num_pairs, seed=cfg.seed + 5, config=cfg.task,
                                              split="train", step_fraction=cfg.step_fraction)
    test_pairs = arithmetic.preference_pairs(cfg.eval_pairs, seed=cfg.seed + 6, config=cfg.task,
                                             split="test")
    train_pipe = pl.preference_pipeline(train_pairs, tokenizer, pl.PipelineConfig(
        batch_size=cfg.batch_size, buckets=cfg.buckets, seed=cfg.seed, num_epochs=None,
        drop_remainder=True))
    test_pipe = pl.preference_pipeline(test_pairs, tokenizer, pl.PipelineConfig(
        batch_size=cfg.batch_size, buckets=cfg.buckets, shuffle=False))
    loss_fn = functools.partial(genarm.arm_pair_loss, config=config, beta_r=cfg.beta_r,
                                **cfg.model.apply_kwargs)
    eval_fn = functools.partial(_pair_accuracy, pipeline=test_pipe, config=config,
                                beta_r=cfg.beta_r)
    # The ARM starts from the base policy's weights (a copy: the base stays frozen).
    state, final = run_stage(base, loss_fn, make_batch_fn(train_pipe), optimizer=cfg.optimizer,
                             num_steps=cfg.arm_steps, out_dir=out, name="metrics",
                             eval_fn=eval_fn, eval_every=cfg.arm_steps, placement=placement,
                             log=cfg.log)
    arm = state.params

    held_out = arithmetic.rl_prompts(cfg.eval_problems, seed=cfg.seed + 2, config=cfg.task,
                                     split="test")
    sampling = SamplerConfig(max_new_tokens=cfg.max_new_tokens, temperature=0.0,
                             eos_ids=eos_ids(tokenizer), pad_id=tokenizer.pad_token_id,
                             prompt_buckets=(cfg.prompt_length,))
    with context(placement):
        pass1_base = greedy_accuracy(base, held_out, config=config, tokenizer=tokenizer,
                                     prompt_length=cfg.prompt_length,
                                     max_new_tokens=cfg.max_new_tokens,
                                     eos_ids=eos_ids(tokenizer))
        print(f"base policy greedy pass@1: {pass1_base:.3f}", flush=True)
        sweep = []
        for beta in cfg.betas:
            sweep.append(guided_accuracy(base, arm, held_out, beta=beta, config=config,
                                         tokenizer=tokenizer, sampling=sampling))
            print(f"GenARM beta={beta:g}: pass@1 {sweep[-1]:.3f}", flush=True)

    best = int(np.argmax(sweep))
    _plot_sweep(out, cfg.betas, sweep, pass1_base)
    plot_curves(out / "metrics.jsonl", ["loss", "accuracy", "reward/margin", "eval/accuracy"],
                out / "arm_curves.png", title="Autoregressive RM (Bradley–Terry)")
    result = {"pass1_base": round(pass1_base, 4), "pass1_guided": round(sweep[best], 4),
              "best_beta": cfg.betas[best], "arm_pair_accuracy": round(final["accuracy"], 4),
              **{f"pass1_beta_{b:g}": round(p, 4) for b, p in zip(cfg.betas, sweep)},
              "minutes": round((time.time() - start) / 60, 2)}
    write_result(out, result)
    return result


if __name__ == "__main__":
    experiment.main(PRESETS, run, description=__doc__)
