"""Guide: hints in context for groups that all fail, trained back to the unhinted policy.

Paper: "Adaptive Guidance Accelerates Reinforcement Learning of Reasoning Models"
(Nath et al., arXiv:2506.13923). When every rollout of a prompt fails, Guide-GRPO
resamples the group with a hint in the prompt and trains on those samples as samples of
the unhinted prompt, with the importance ratio π_θ(y | x) / π_old(y | x, h) against the
hinted behaviour policy (`RLExtensions.rewrite`, `PromptRewrite`).

What it reproduces: Guide raises held-out greedy pass@1 on the hardest third of the
problems against plain GRPO (the paper: gains largest on hard benchmarks). The hardest
third: the held-out problems with the lowest sampled success rate of the warm-started
policy (8 samples each, temperature 1), fixed before RL. Baseline (same invocation, same
warm start, same prompts): GRPO without hints.

Deviations of `tiny`: grpo_arith's ~1M-parameter model on its task, 30 steps of 16 x 8;
the hint is the solution's first step (`Hint: 4 + 3 = 7`, the paper's hints are partial
solutions written by a stronger model); the SFT warm start shows a hint on
`hint_fraction` of its prompts (always with a worked solution) so that the model reads
hints, as the paper's instruction-tuned models do; prompts padded to 64 tokens to fit a
hint. `paper`: a local Qwen2.5-7B-Instruct; its hints need a `hint` field in the records.

    python experiments/guide.py --preset tiny
    python experiments/guide.py --preset smoke
"""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path

import jax
import numpy as np

from rewardjax import experiment
from rewardjax.data import synthetic
from rewardjax.data.records import SFTExample
from rewardjax.recipes import BackboneConfig, SFTConfig, load_backbone, sft_warm_start
from rewardjax.recipes.rl_arith import (TINY_GRPO, GreedyEval, RLRecipe, answer_reward,
                                        arith_trainer, plot_arms, rl_prompt_records,
                                        smoke_recipe, train_arm)
from rewardjax.rewards import MathAnswerReward
from rewardjax.sampling import SamplerConfig, sample
from rewardjax.data.encoding import encode_prompt
from rewardjax.sharding import MeshConfig
from rewardjax.train import OptimizerConfig, placement as placement_lib, write_result
from rewardjax.train.rl import RLConfig
from rewardjax.train.rl_extensions import PromptRewrite, RLExtensions

ARMS = ("grpo", "guide")
_QUESTION = re.compile(r"Start with (\d+)\. (Add|Subtract|Multiply by) (\d+)\.")
_OPS = {"Add": "+", "Subtract": "-", "Multiply by": "*"}


@dataclasses.dataclass(frozen=True, kw_only=True)
class GuideConfig:
    """Attributes:
      recipe: warm start, RL settings and held-out problems shared by both arms.
      hint_fraction: share of SFT prompts shown with their hint.
      difficulty_samples: samples per held-out problem that rank its difficulty.
      eval_every: held-out greedy pass@1 every this many RL steps.
      mesh, seed: where everything runs; the run's seed.
    """

    recipe: RLRecipe
    hint_fraction: float = 0.2
    difficulty_samples: int = 8
    eval_every: int = 10
    mesh: MeshConfig = MeshConfig()
    seed: int = 0

    def __post_init__(self):
        if not 0 <= self.hint_fraction <= 1:
            raise ValueError(f"GuideConfig.hint_fraction must be in [0, 1], got {self.hint_fraction}")
        if self.difficulty_samples < 1 or self.eval_every <= 0:
            raise ValueError(f"GuideConfig needs difficulty_samples >= 1 and eval_every > 0, got "
                             f"{self.difficulty_samples} and {self.eval_every}")


TINY_RL = dataclasses.replace(TINY_GRPO, prompt_length=64)  # a hinted prompt: <= 55 tokens
TINY = GuideConfig(recipe=RLRecipe(
    rl=TINY_RL, sft_buckets=(96,),
    rl_optimizer=OptimizerConfig(lr=5e-5, warmup_steps=5, total_steps=30, min_lr_ratio=1.0)))
HEADLINE = ("grpo_hard_pass1", "guide_hard_pass1", "grpo_pass1", "guide_pass1")  # the figures `python -m rewardjax results` shows

PRESETS = {
    "tiny": TINY,
    "paper": GuideConfig(recipe=RLRecipe(
        model=BackboneConfig(hf_path="checkpoints/Qwen2.5-7B-Instruct", compute_dtype="bfloat16",
                             remat="full"),
        sft=SFTConfig(steps=0),
        rl=RLConfig(steps=300, prompts_per_step=64, group_size=8, max_new_tokens=4096,
                    prompt_length=1024, micro_batches=64),
        rl_optimizer=OptimizerConfig(lr=1e-6, total_steps=300, min_lr_ratio=1.0),
        eval_problems=500), hint_fraction=0.0, eval_every=50),
}
PRESETS["smoke"] = dataclasses.replace(TINY, eval_every=1, difficulty_samples=2,
                                       recipe=smoke_recipe(TINY.recipe))


def first_step_hint(fields) -> str:
    """The prompt with a hint, Guide's rewrite (arXiv:2506.13923): the record's own
    `hint` field, or for a synthetic arithmetic question its first worked step.

    Example:
      >>> first_step_hint({"prompt": "Start with 4. Add 3. Subtract 2. What is the result?"})
      'Start with 4. Add 3. Subtract 2. What is the result?\\nHint: 4 + 3 = 7'
    """
    prompt = fields["prompt"]
    hint = fields.get("hint")
    if hint is None:
        m = _QUESTION.match(prompt)
        if m is None:
            raise ValueError(f"first_step_hint: the record has no `hint` field and its prompt "
                             f"is not an arithmetic question: {prompt[:80]!r}")
        op = _OPS[m[2]]
        a, b = int(m[1]), int(m[3])
        hint = f"{a} {op} {b} = {synthetic.arithmetic.OPS[op](a, b)}"
    return f"{prompt}\nHint: {hint}"


def hinted_sft_examples(cfg: GuideConfig, recipe: RLRecipe) -> list[SFTExample]:
    """The recipe's SFT examples, `hint_fraction` of them with the hint in the prompt
    and the worked solution as the completion."""
    worked = synthetic.sft_examples(recipe.sft.num_examples, seed=recipe.seed + 1,
                                    config=recipe.task, split="train")
    mixed = synthetic.sft_examples(recipe.sft.num_examples, seed=recipe.seed + 1,
                                   config=recipe.task, split="train",
                                   direct_fraction=recipe.sft_direct_fraction)
    out = []
    for i, (w, m) in enumerate(zip(worked, mixed)):
        hinted = np.random.default_rng([recipe.seed, i, 7]).random() < cfg.hint_fraction
        out.append(SFTExample(prompt=first_step_hint({"prompt": w.prompt}), completion=w.completion)
                   if hinted else m)
    return out


def sampled_success(recipe: RLRecipe, policy, params, eos_ids, *, k: int, seed: int,
                    batch_size: int = 64) -> np.ndarray:
    """[N] fraction of k samples (temperature 1) right, per held-out problem."""
    records = rl_prompt_records(recipe, recipe.eval_problems, seed=recipe.seed + 2, split="test")
    sampling = SamplerConfig(max_new_tokens=recipe.rl.max_new_tokens, num_samples=k,
                             temperature=1.0, eos_ids=tuple(eos_ids),
                             pad_id=policy.tokenizer.pad_token_id,
                             prompt_buckets=(recipe.rl.prompt_length,))
    verify, tok, rates = MathAnswerReward(), policy.tokenizer, []
    for start in range(0, len(records), batch_size):
        chunk = records[start:start + batch_size]
        padded = list(chunk) + [chunk[-1]] * (batch_size - len(chunk))
        with placement_lib.context(policy.placement):
            s = sample(params, [encode_prompt(tok, r.prompt) for r in padded],
                       jax.random.fold_in(jax.random.key(seed), start), config=policy.config,
                       sampling=sampling)
        toks, lens = jax.device_get((s.tokens, s.lengths))
        texts = [tok.decode(toks[i, g, :lens[i, g]], skip_special_tokens=True)
                 for i in range(len(chunk)) for g in range(k)]
        ok = verify([""] * len(texts), texts, answer=[r.answer for r in chunk for _ in range(k)])
        rates.extend((np.asarray(ok) > 0.5).reshape(len(chunk), k).mean(-1).tolist())
    return np.array(rates)


def run(config: GuideConfig, out) -> dict:
    start = time.time()
    out = Path(out)
    recipe = dataclasses.replace(config.recipe, mesh=config.mesh, seed=config.seed)
    backbone = load_backbone(recipe.model, jax.random.key(recipe.seed), recipe.mesh)
    params = sft_warm_start(backbone, hinted_sft_examples(config, recipe), sft=recipe.sft,
                            buckets=recipe.sft_buckets, out_dir=out, seed=recipe.seed,
                            log=recipe.log)
    policy = backbone._replace(params=params)
    result: dict = {}
    held = hard = None

    def held_and_hard(p):  # held-out pass@1, and on the hardest third
        ev = held(p)
        return {**ev, "hard_pass1": float(ev["correct"][hard].mean())}

    for arm in ARMS:
        ext = RLExtensions(rewrite=PromptRewrite(rewrite=first_step_hint)) if arm == "guide" else None
        trainer = arith_trainer(recipe, policy, answer_reward(recipe), extensions=ext)
        if held is None:
            held = GreedyEval(recipe, policy, trainer.sampling.eos_ids)
            rates = sampled_success(recipe, policy, params, trainer.sampling.eos_ids,
                                    k=config.difficulty_samples, seed=config.seed)
            # stable sort: ties keep their held-out order, so the split is reproducible
            hard = np.sort(np.argsort(rates, kind="stable")[:max(len(rates) // 3, 1)])
            before = held(params)
            result.update(pass1_before=round(before["pass1"], 4),
                          hard_pass1_before=round(float(before["correct"][hard].mean()), 4),
                          hard_sampled_rate_before=round(float(rates[hard].mean()), 4))
            print(f"before RL: pass@1 {before['pass1']:.3f}, hardest third "
                  f"{result['hard_pass1_before']:.3f} ({len(hard)} problems)", flush=True)
        _, evals = train_arm(trainer, params, name=arm, out=out, cfg=recipe,
                             eval_every=config.eval_every, evaluate=held_and_hard)
        curve = [round(ev["pass1"], 4) for _, ev in evals]
        hard_curve = [round(ev["hard_pass1"], 4) for _, ev in evals]
        result.update({f"{arm}_pass1": curve[-1], f"{arm}_hard_pass1": hard_curve[-1],
                       f"{arm}_pass1_curve": ",".join(map(str, curve)),
                       f"{arm}_hard_pass1_curve": ",".join(map(str, hard_curve))})
        print(f"[{arm}] pass@1 {curve[-1]:.3f}, hardest third {hard_curve[-1]:.3f}", flush=True)
    result["guide_raises_hard_pass1"] = result["guide_hard_pass1"] > result["grpo_hard_pass1"]
    result["minutes"] = round((time.time() - start) / 60, 2)
    plot_arms(out, list(ARMS), ["accuracy", "guide/groups", "eval/pass1", "eval/hard_pass1"],
              out / "rl_curves.png", title="Guide (hints for all-fail groups) vs GRPO")
    write_result(out, result)
    return result


if __name__ == "__main__":
    experiment.main(PRESETS, run, description=__doc__)
