"""GRPO against a generative judge: the policy's only reward is a judge's p(Yes).

Papers: "RewardDance: Reward Scaling in Visual Generation" (arXiv:2509.08826) makes the
reward of RL the probability a generative judge gives to "yes" after reading the
prompt and the response, in one forward pass; RM-R1 ("Reward Modeling as Reasoning",
arXiv:2505.02387) and the judge RL papers of issue 15 use such judges as RL rewards.

What it reproduces: a judge trained on the SFT policy's own samples (labelled by the
answer checker, as reward models are trained on samples of the policy they will score)
is a usable RL reward: GRPO with the judge as the only reward raises held-out pass@1
above the SFT start. In the same run, GRPO on the exact answer checker (the upper
reference) and the judge's held-out accuracy on fresh policy samples.

Deviations of the `tiny` preset: grpo_arith's ~1M-parameter policy, task, warm start
and GRPO settings (30 steps of 16 x 8); the judge starts from the SFT policy's weights
(it can already compute the task) and learns the one-token verdict `Verdict: Yes|No`
on 8,192 policy samples at temperature 1 for 300 steps; the reward is read by
`judges.PointwiseJudge` (no rationale), batched on the run's mesh. The answer checker
runs alongside with weight 0 only to log the true accuracy during RL; it never enters
the reward. Findings: docs/experiments/judge_reward_grpo.md. `paper` points at local
checkpoints (policy and judge start from one instruct model).

    python experiments/judge_reward_grpo.py --preset tiny
    python experiments/judge_reward_grpo.py --preset smoke
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import jax
import numpy as np

from rewardjax import experiment, judges
from rewardjax.recipes import BackboneConfig, SFTConfig
from rewardjax.recipes.rl_arith import (TINY_RECIPE, Arm, RLRecipe, arith_trainer, answer_reward,
                                        rl_prompt_records, run_arms, smoke_recipe,
                                        warm_started_policy)
from rewardjax.recipes.warm_start import sft_warm_start
from rewardjax.rewards import CombinedReward, MathAnswerReward, RewardSpec
from rewardjax.sampling.sampler import sample
from rewardjax.sharding import MeshConfig
from rewardjax.train import placement as placement_lib
from rewardjax.train.metrics import write_result
from rewardjax.train.rl import RLConfig
from rewardjax.train.state import OptimizerConfig

ARMS = ("judge", "answer")


@dataclasses.dataclass(frozen=True, kw_only=True)
class JudgeRewardConfig:
    """Attributes:
      recipe: the policy's warm start and GRPO (`RLRecipe`).
      judge_prompts, judge_samples: training data of the judge: this many train-split
        prompts (disjoint from the RL pool's seed) times samples each, at each of
        `judge_temperatures`, labelled by the answer checker.
      judge_temperatures: the sampling temperatures of the judge's data (above the RL
        temperature: the responses RL will explore, not only the SFT policy's).
      judge_test_prompts: held-out prompts (x `judge_samples`) for the judge's accuracy.
      judge_sft: the judge's training on `Verdict: Yes|No` (from the SFT policy).
      judge_length: the judge's input length (prompt + response + "Verdict:").
      arms: "judge" (the judge's p(Yes) is the reward) and / or "answer" (the checker).
    """

    recipe: RLRecipe = TINY_RECIPE
    mesh: MeshConfig = MeshConfig()
    judge_prompts: int = 1024
    judge_samples: int = 8
    judge_temperatures: tuple[float, ...] = (1.0,)
    judge_test_prompts: int = 128
    judge_sft: SFTConfig = SFTConfig(
        steps=300, batch_size=32, response_window=12,
        optimizer=OptimizerConfig(lr=1e-3, warmup_steps=20, total_steps=300, weight_decay=0.01))
    judge_length: int = 160
    judge_batch_size: int = 64
    arms: tuple[str, ...] = ARMS
    seed: int = 0

    def __post_init__(self):
        for name in ("judge_prompts", "judge_samples", "judge_test_prompts", "judge_length",
                     "judge_batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} = {getattr(self, name)!r}: expected >= 1")
        object.__setattr__(self, "arms", tuple(self.arms))
        if not self.arms or any(a not in ARMS for a in self.arms):
            raise ValueError(f"arms = {self.arms!r}: expected a non-empty subset of {ARMS}")
        object.__setattr__(self, "judge_temperatures", tuple(self.judge_temperatures))
        if not self.judge_temperatures or any(not t > 0 for t in self.judge_temperatures):
            raise ValueError(f"judge_temperatures = {self.judge_temperatures!r}: expected "
                             "temperatures > 0")


def policy_samples(recipe: RLRecipe, policy, *, prompts: int, samples: int, seed: int,
                   split: str, temperature: float) -> tuple[list[str], list[str], np.ndarray]:
    """(questions, responses, correct) of `samples` responses per prompt of the warm-started
    policy at `temperature`, labelled by the answer checker."""
    records = list(rl_prompt_records(recipe, prompts, seed=seed, split=split))
    trainer = arith_trainer(recipe, policy, answer_reward(recipe))
    sampling = dataclasses.replace(trainer.sampling, num_samples=samples,
                                   temperature=temperature)
    checker = MathAnswerReward()
    questions, responses, correct = [], [], []
    chunk = 128
    for i in range(0, len(records), chunk):
        part = records[i:i + chunk]
        part = part + [part[-1]] * (chunk - len(part))  # one compiled sampler
        p_tok, p_mask = trainer.encode_prompts(part)
        with placement_lib.context(policy.placement):
            s = sample(policy.params, p_tok, jax.random.key(seed * 7919 + i), config=policy.config,
                       sampling=sampling, prompt_mask=p_mask)
        tokens, lengths = jax.device_get((s.tokens, s.lengths))
        B, G, T = tokens.shape
        texts = trainer.decode(tokens.reshape(B * G, T), lengths.reshape(-1))
        n = min(chunk, len(records) - i)
        qs = [r.prompt for r in part[:n] for _ in range(G)]
        answers = [r.answer for r in part[:n] for _ in range(G)]
        ok = np.asarray(checker(qs, texts[:n * G], answer=answers)) > 0.5
        questions += qs
        responses += texts[:n * G]
        correct.append(ok)
    trainer.reward_fn.close()
    return questions, responses, np.concatenate(correct)


def train_judge(config: JudgeRewardConfig, recipe: RLRecipe, policy, out: Path):
    """(judge params, judge metrics): the SFT policy fine-tuned to say `Verdict: Yes` on
    its own correct samples and `Verdict: No` on its wrong ones; accuracy on held-out
    samples (p(Yes) > 0.5 against the checker)."""
    q, r, ok = [], [], []
    for i, t in enumerate(config.judge_temperatures):
        qi, ri, oki = policy_samples(recipe, policy, prompts=config.judge_prompts,
                                     samples=config.judge_samples, seed=recipe.seed + 20 + 100 * i,
                                     split="train", temperature=t)
        q, r, ok = q + qi, r + ri, ok + [oki]
    ok = np.concatenate(ok)
    examples = [judges.Trace(judges.pointwise_prompt(qi, ri),
                             judges.judgment_text("", "Yes" if c else "No"),
                             "Yes" if c else "No").sft_example() for qi, ri, c in zip(q, r, ok)]
    order = np.random.default_rng([recipe.seed, 21]).permutation(len(examples))
    params = sft_warm_start(policy, [examples[i] for i in order], sft=config.judge_sft,
                            buckets=(config.judge_length,), out_dir=out, seed=recipe.seed,
                            name="judge", log=recipe.log)
    judge = judges.PointwiseJudge(params, config=policy.config, tokenizer=policy.tokenizer,
                                  length=config.judge_length, batch_size=config.judge_batch_size,
                                  placement=policy.placement)
    tq, tr, tok = policy_samples(recipe, policy, prompts=config.judge_test_prompts,
                                 samples=config.judge_samples, seed=recipe.seed + 22,
                                 split="test", temperature=recipe.rl.temperature)
    p_yes = judge(tq, tr)
    metrics = {"judge_accuracy": float(np.mean((p_yes > 0.5) == tok)),
               "judge_accuracy_correct": float(np.mean(p_yes[tok] > 0.5)) if tok.any() else 0.0,
               "judge_accuracy_wrong": float(np.mean(p_yes[~tok] <= 0.5)) if (~tok).any() else 0.0,
               "judge_train_positive": float(ok.mean()), "judge_test_positive": float(tok.mean())}
    return judge, metrics


def judge_reward(judge) -> CombinedReward:
    """The judge's p(Yes) as the whole reward; the checker rides along with weight 0 so
    the logged `accuracy` is the true one (`RLConfig.accuracy_reward = "answer"`)."""
    return CombinedReward([
        RewardSpec(name="judge", fn=judges.pointwise_judge_reward(judge), weight=1.0,
                   isolation="inline", timeout_s=None, per_sample=False),
        RewardSpec(name="answer", fn=MathAnswerReward(), weight=0.0, fallback=0.0,
                   isolation="thread", timeout_s=10.0)])


def run(config: JudgeRewardConfig, out: Path) -> dict:
    start = time.time()
    out = Path(out)
    recipe = dataclasses.replace(config.recipe, mesh=config.mesh, seed=config.seed)
    policy = warm_started_policy(recipe, out)
    judge, judge_metrics = train_judge(config, recipe, policy, out)
    print(f"judge on held-out policy samples: {judge_metrics}", flush=True)
    arms = [Arm(name="judge", reward=lambda cfg: judge_reward(judge)) if a == "judge"
            else Arm(name="answer") for a in config.arms]
    r = run_arms(recipe, out, arms, policy=policy,
                 title="GRPO with a generative judge's p(Yes) as the only reward")
    result = {"pass1_sft": r["pass1_before"],
              **{f"pass1_{a}": r[f"{a}_pass1"] for a in config.arms}}
    if "judge" in config.arms:
        result["gain_judge"] = round(result["pass1_judge"] - result["pass1_sft"], 4)
    result.update({k: round(v, 4) for k, v in judge_metrics.items()})
    result["minutes"] = round((time.time() - start) / 60, 2)
    write_result(out, result)
    return result


HEADLINE = ("pass1_sft", "pass1_judge", "gain_judge", "pass1_answer", "judge_accuracy")

TINY = JudgeRewardConfig()
PRESETS = {
    "tiny": TINY,
    "paper": JudgeRewardConfig(
        recipe=RLRecipe(
            model=BackboneConfig(hf_path="checkpoints/qwen2.5-7b-instruct",
                                 compute_dtype="bfloat16", remat="full"),
            sft=SFTConfig(steps=0),
            rl=RLConfig(steps=200, prompts_per_step=64, group_size=8, max_new_tokens=1024,
                        prompt_length=512, micro_batches=32),
            rl_optimizer=OptimizerConfig(lr=1e-6, total_steps=200, min_lr_ratio=1.0),
            eval_problems=500),
        judge_prompts=8192, judge_sft=SFTConfig(
            steps=2000, batch_size=64, response_window=12,
            optimizer=OptimizerConfig(lr=5e-6, warmup_steps=100, total_steps=2000)),
        judge_length=1600, judge_batch_size=32),
}
PRESETS["smoke"] = dataclasses.replace(
    TINY, recipe=smoke_recipe(TINY.recipe), judge_prompts=16, judge_samples=2,
    judge_test_prompts=8, judge_sft=dataclasses.replace(TINY.judge_sft, steps=4))


if __name__ == "__main__":
    experiment.main(PRESETS, run, description=__doc__)
