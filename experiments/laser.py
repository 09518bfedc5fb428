"""LaSeR: the policy's last-token self-reward, trained with an MSE to the verifier, vs GRPO.

Paper: "LaSeR: Reinforcement Learning with Last-Token Self-Rewarding" (Yang et al.,
arXiv:2510.14943). The self-reward of a solution is r_s = β_v (log π_θ(z_c | x, y) −
c_ref), z_c a pre-specified unused token read right after the solution's last token;
LaSeR adds α·MSE(r_s, r_v) (balanced over correct and wrong solutions) to the GRPO loss,
and uses r_s at test time to verify and to weight votes (`rewards.self_reward`, trained
through the RL loop's `RLExtensions.aux_loss`).

What it reproduces: the trained self-reward separates correct from wrong held-out
solutions of the policy's own samples with AUROC >= 0.8, with pass@1 kept. Baseline
(same invocation, same warm start, same prompts): GRPO alone, whose untrained
log π(z_c | x, y) is scored the same way.

Deviations of `tiny`: grpo_arith's ~1M-parameter model and SFT warm start, 40 steps of
16 x 8; z_c = `<|step|>`; c_ref is measured (the mean log π(z_c | x, y) of the SFT
policy's held-out samples) instead of LaSeR's −23 for Qwen; α = 1 (LaSeR: 0.1 over
hundreds of steps, after a 200-step warm-up) so the score moves within 40 steps.
AUROC over 4 samples (temperature 1) of each of 256 held-out problems. `paper`: a local
Qwen2.5-7B with LaSeR's α = β_v = 0.1, c_ref = −23.

    python experiments/laser.py --preset tiny
    python experiments/laser.py --preset smoke
"""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path

import jax
import numpy as np

from rewardjax import experiment
from rewardjax.data.encoding import encode_prompt
from rewardjax.recipes import BackboneConfig, SFTConfig
from rewardjax.recipes.rl_arith import (TINY_GRPO, GreedyEval, RLRecipe, answer_reward,
                                        arith_trainer, plot_arms, rl_prompt_records,
                                        smoke_recipe, train_arm, warm_started_policy)
from rewardjax.rewards import MathAnswerReward, extract_answer, normalize_answer
from rewardjax.rewards.self_reward import (SelfRewardConfig, auroc, laser_auxiliary_loss,
                                          last_token_logprob, self_reward_score, token_id,
                                          weighted_vote)
from rewardjax.sampling import SamplerConfig, sample
from rewardjax.sharding import MeshConfig
from rewardjax.train import OptimizerConfig, placement as placement_lib, write_result
from rewardjax.train.rl import RLConfig
from rewardjax.train.rl_extensions import RLExtensions

ARMS = ("grpo", "laser")


@dataclasses.dataclass(frozen=True, kw_only=True)
class LaSeRConfig:
    """Attributes:
      recipe: warm start, RL settings and held-out problems shared by both arms.
      self_reward: z_c, β_v, c_ref, α and balancing.
      measure_c_ref: replace `self_reward.c_ref` by the SFT policy's mean
        log π(z_c | x, y) over its held-out samples.
      eval_samples: samples per held-out problem for AUROC and voting.
      eval_every: held-out evaluation every this many RL steps.
      arms: which arms to run (a variant of the LaSeR arm alone: `arms=[laser]`).
      mesh, seed: where everything runs; the run's seed.
    """

    recipe: RLRecipe
    self_reward: SelfRewardConfig = SelfRewardConfig()
    measure_c_ref: bool = True
    eval_samples: int = 4
    eval_every: int = 10
    arms: tuple[str, ...] = ARMS
    mesh: MeshConfig = MeshConfig()
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "arms", tuple(self.arms))
        if not self.arms or set(self.arms) - set(ARMS):
            raise ValueError(f"LaSeRConfig.arms must be a non-empty subset of {ARMS}, "
                             f"got {self.arms}")
        if self.eval_samples < 2 or self.eval_every <= 0:
            raise ValueError(f"LaSeRConfig needs eval_samples >= 2 and eval_every > 0, got "
                             f"{self.eval_samples} and {self.eval_every}")


TINY_RL = dataclasses.replace(TINY_GRPO, steps=40)
TINY = LaSeRConfig(
    recipe=RLRecipe(rl=TINY_RL, rl_optimizer=OptimizerConfig(
        lr=5e-5, warmup_steps=5, total_steps=40, min_lr_ratio=1.0)),
    self_reward=SelfRewardConfig(coef=1.0))
HEADLINE = ("grpo_auroc", "laser_auroc", "grpo_pass1", "laser_pass1")  # the figures `python -m rewardjax results` shows

PRESETS = {
    "tiny": TINY,
    "paper": LaSeRConfig(recipe=RLRecipe(
        model=BackboneConfig(hf_path="checkpoints/Qwen2.5-7B", compute_dtype="bfloat16",
                             remat="full"),
        sft=SFTConfig(steps=0),
        rl=RLConfig(steps=400, prompts_per_step=128, group_size=8, max_new_tokens=8192,
                    prompt_length=2048, micro_batches=64),
        rl_optimizer=OptimizerConfig(lr=1e-6, total_steps=400, min_lr_ratio=1.0),
        eval_problems=500), measure_c_ref=False, eval_every=50),
}
PRESETS["smoke"] = dataclasses.replace(TINY, eval_every=1, recipe=smoke_recipe(TINY.recipe))


class SelfRewardEval:
    """The policy's own samples of the held-out problems: correctness, log π(z_c | x, y)
    and the answers, `k` per problem (temperature 1, fixed key)."""

    def __init__(self, recipe: RLRecipe, policy, eos_ids, z: int, *, k: int, seed: int):
        self.recipe, self.policy, self.z, self.k, self.seed = recipe, policy, z, k, seed
        rl = recipe.rl
        self.records = rl_prompt_records(recipe, recipe.eval_problems, seed=recipe.seed + 2,
                                         split="test")
        self.sampling = SamplerConfig(max_new_tokens=rl.max_new_tokens, num_samples=k,
                                      temperature=1.0, eos_ids=tuple(eos_ids),
                                      pad_id=policy.tokenizer.pad_token_id,
                                      prompt_buckets=(rl.prompt_length,))
        self._logp = jax.jit(functools.partial(last_token_logprob, z=z, config=policy.config))
        self._verify = MathAnswerReward()

    def __call__(self, params, batch_size: int = 64) -> dict:
        tok, k, T = self.policy.tokenizer, self.k, self.recipe.rl.max_new_tokens
        correct, logp, answers = [], [], []
        for start in range(0, len(self.records), batch_size):
            chunk = self.records[start:start + batch_size]
            padded = list(chunk) + [chunk[-1]] * (batch_size - len(chunk))
            prompts = [encode_prompt(tok, r.prompt) for r in padded]
            key = jax.random.fold_in(jax.random.key(self.seed), start)
            with placement_lib.context(self.policy.placement):
                s = sample(params, prompts, key, config=self.policy.config, sampling=self.sampling)
                P = self.recipe.rl.prompt_length
                p_tok = np.zeros((batch_size, P), np.int32)
                p_mask = np.zeros((batch_size, P), bool)
                for i, ids in enumerate(prompts):
                    p_tok[i, P - len(ids):], p_mask[i, P - len(ids):] = ids, True
                s_tok, s_mask, s_len = jax.device_get((s.tokens, s.mask, s.lengths))
                R = batch_size * k
                tokens = np.concatenate([np.repeat(p_tok, k, 0), s_tok.reshape(R, T)], 1)
                mask = np.concatenate([np.repeat(p_mask, k, 0), s_mask.reshape(R, T)], 1)
                lp = np.asarray(self._logp(params, tokens, mask, s_mask.reshape(R, T)))
            n = len(chunk) * k
            texts = [tok.decode(t[:m], skip_special_tokens=True)
                     for t, m in zip(s_tok.reshape(R, T)[:n], s_len.reshape(R)[:n])]
            refs = [r.answer for r in chunk for _ in range(k)]
            correct.append(self._verify([""] * n, texts, answer=refs) > 0.5)
            logp.append(lp[:n])
            answers.extend(_answer_key(t) for t in texts)
        return {"correct": np.concatenate(correct).reshape(-1, k),
                "logp": np.concatenate(logp).reshape(-1, k),
                "answers": np.array(answers, object).reshape(-1, k)}


def _answer_key(text: str) -> str | None:
    found = extract_answer(text)
    return None if found is None else normalize_answer(found)


def verifier_figures(ev: dict, cfg: SelfRewardConfig) -> dict:
    """AUROC of r_s against correctness over all samples; majority and r_s-weighted
    voting accuracy over each problem's samples; mean r_s of right and wrong samples."""
    score = np.asarray(self_reward_score(ev["logp"], beta=cfg.beta, c_ref=cfg.c_ref))
    c = ev["correct"]

    def vote_acc(weights):
        # a picked answer is as right as the samples that gave it (the verifier's call)
        hits = []
        for i, answers in enumerate(ev["answers"]):
            pick = weighted_vote(list(answers), None if weights is None else list(weights[i]))
            hits.append(pick is not None and bool(c[i][list(answers).index(pick)]))
        return float(np.mean(hits))

    return {"auroc": auroc(score.reshape(-1), c.reshape(-1)),
            "sample_accuracy": float(c.mean()),
            "score_correct": float(score[c].mean()) if c.any() else float("nan"),
            "score_wrong": float(score[~c].mean()) if (~c).any() else float("nan"),
            "majority_vote": vote_acc(None),
            "weighted_vote": vote_acc(np.maximum(score, 1e-6))}


def run(config: LaSeRConfig, out) -> dict:
    start = time.time()
    out = Path(out)
    recipe = dataclasses.replace(config.recipe, mesh=config.mesh, seed=config.seed)
    policy = warm_started_policy(recipe, out)
    params = policy.params
    z = token_id(policy.tokenizer, config.self_reward.token)
    result: dict = {}
    held = samples = None
    sr = config.self_reward
    curves: dict[str, list] = {}
    for arm in config.arms:
        base = arith_trainer(recipe, policy, answer_reward(recipe))
        if held is None:
            held = GreedyEval(recipe, policy, base.sampling.eos_ids)
            samples = SelfRewardEval(recipe, policy, base.sampling.eos_ids, z,
                                     k=config.eval_samples, seed=config.seed)
            before = samples(params)
            if config.measure_c_ref:
                sr = dataclasses.replace(sr, c_ref=round(float(before["logp"].mean()), 3))
            fig = verifier_figures(before, sr)
            result.update(pass1_before=round(held(params)["pass1"], 4), c_ref=sr.c_ref,
                          auroc_before=round(fig["auroc"], 4))
            print(f"before RL: pass@1 {result['pass1_before']:.3f}, c_ref {sr.c_ref}, "
                  f"AUROC {fig['auroc']:.3f}", flush=True)
        trainer = base
        if arm == "laser":
            ext = RLExtensions(aux_loss=laser_auxiliary_loss(sr, policy.tokenizer))
            trainer = arith_trainer(recipe, policy, base.reward_fn, extensions=ext)
        state, curves[arm] = train_arm(
            trainer, params, name=arm, out=out, cfg=recipe, eval_every=config.eval_every,
            evaluate=lambda p: verifier_figures(samples(p), sr))
        fig = curves[arm][-1][1]
        result[f"{arm}_pass1"] = round(held(trainer.policy(state))["pass1"], 4)
        for key in ("auroc", "sample_accuracy", "score_correct", "score_wrong", "majority_vote",
                    "weighted_vote"):
            result[f"{arm}_{key}"] = round(fig[key], 4)
        result[f"{arm}_auroc_curve"] = ",".join(f"{f['auroc']:.3f}" for _, f in curves[arm])
        print(f"[{arm}] pass@1 {result[f'{arm}_pass1']:.3f}, self-reward AUROC "
              f"{fig['auroc']:.3f}", flush=True)
    if "laser" in config.arms:
        result["laser_auroc_at_least_0.8"] = result["laser_auroc"] >= 0.8
    result["minutes"] = round((time.time() - start) / 60, 2)
    plot_arms(out, list(config.arms), ["accuracy", "loss/aux", "eval/auroc", "eval/weighted_vote"],
              out / "rl_curves.png", title="LaSeR self-reward vs GRPO")
    write_result(out, result)
    return result


if __name__ == "__main__":
    experiment.main(PRESETS, run, description=__doc__)
