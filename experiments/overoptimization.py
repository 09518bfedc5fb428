"""Reward model over-optimization: gold reward against KL for best-of-n and RL on a proxy RM.

Paper: "Scaling Laws for Reward Model Overoptimization" (Gao, Schulman, Hilton,
arXiv:2210.10760). A proxy reward model trained on limited preference data is optimised
against, by best-of-n sampling (KL = log n − (n−1)/n from the initial policy) and by
RL (KL measured); a gold reward scores the same outputs. Plotted against √KL, the
proxy reward keeps rising while the gold reward rises, peaks and falls.

What it reproduces: the same curves at tiny scale. The proxy is a Bradley–Terry RM
(`train.reward_model`, initialised from the SFT policy) trained on a few hundred
synthetic pairs (correct vs corrupted worked solution); the gold reward is the verifier
(answer correctness, the paper's gold RM). Best-of-n for n = 1..N uses the unbiased
estimator over N samples per prompt (`best_of_n_curve`); RL is GRPO with the proxy as
its reward (`rewards.scalar_rm.ScalarRMScorer`, one jitted call per batch), and every
`eval_every` steps the policy's KL to the SFT start (Monte Carlo, Σ_t log π/π_sft over
sampled completions), gold and proxy reward are measured on held-out prompts. Baseline
in the same run: the same RL against the gold reward.

Deviations of `tiny`: grpo_arith's ~1M-parameter policy and warm start; the proxy shares
its size (the paper sweeps 3M-3B proxies against a 6B gold RM); no KL penalty (the
curves are read against the measured KL); 60 RL steps at lr 1e-4; GRPO instead of the
paper's PPO. `paper`: a local 1.2B policy checkpoint (the paper's policy size); the
other sizes are assumed (marked below).

    python experiments/overoptimization.py --preset tiny
    python experiments/overoptimization.py --preset smoke
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import time
from pathlib import Path

import jax
import numpy as np

from rewardjax import experiment
from rewardjax.data import pipeline as pl, synthetic
from rewardjax.recipes import BackboneConfig, SFTConfig, sync_schedule
from rewardjax.recipes.rl_arith import (TINY_GRPO, RLRecipe, answer_reward, arith_trainer,
                                        rl_prompt_records, warm_started_policy)
from rewardjax.rewards import CombinedReward, MathAnswerReward, RewardModelReward, RewardSpec
from rewardjax.rewards.scalar_rm import ScalarRMScorer
from rewardjax.sampling import completion_logprobs, sample
from rewardjax.sharding import MeshConfig
from rewardjax.train import OptimizerConfig, make_batch_fn, placement as placement_lib
from rewardjax.train import reward_model as rm, run_stage, write_result
from rewardjax.train.metrics import MetricsLogger, is_writer
from rewardjax.train.rl import RLConfig

ARMS = ("proxy", "gold")
BON_ROUND = 16


@dataclasses.dataclass(frozen=True, kw_only=True)
class OveroptConfig:
    """Attributes:
      recipe: the policy's warm start and RL settings (both RL arms).
      proxy_pairs: training pairs of the proxy RM ("few": the proxy must be exploitable).
      proxy_test_pairs: held-out pairs for the proxy's pairwise accuracy.
      proxy_steps, proxy_batch_size, proxy_optimizer: the proxy's Bradley–Terry training.
      rm_length: padded length of an RM input (prompt + completion + end of turn).
      bon_prompts, bon_samples: best-of-n over `bon_samples` = N samples of the SFT
        policy for each of `bon_prompts` held-out prompts; n runs over powers of two <= N.
      eval_prompts, eval_samples: held-out prompts x samples at temperature 1 for the
        RL arms' KL, gold and proxy reward.
      eval_every: RL steps between those measurements.
      mesh, seed: where everything runs; the run's seed.
    """

    recipe: RLRecipe
    proxy_pairs: int = 256
    proxy_test_pairs: int = 256
    proxy_steps: int = 150
    proxy_batch_size: int = 16
    proxy_optimizer: OptimizerConfig = OptimizerConfig(lr=1e-3, warmup_steps=10,
                                                       total_steps=150, weight_decay=0.0)
    rm_length: int = 96
    bon_prompts: int = 64
    bon_samples: int = 64
    eval_prompts: int = 32
    eval_samples: int = 4
    eval_every: int = 3
    mesh: MeshConfig = MeshConfig()
    seed: int = 0

    def __post_init__(self):
        for name in ("proxy_pairs", "proxy_test_pairs", "proxy_steps", "proxy_batch_size",
                     "rm_length", "bon_prompts", "bon_samples", "eval_prompts", "eval_samples",
                     "eval_every"):
            if getattr(self, name) <= 0:
                raise ValueError(f"OveroptConfig.{name} must be > 0, got {getattr(self, name)}")
        object.__setattr__(self, "proxy_optimizer",
                           sync_schedule(self.proxy_optimizer, self.proxy_steps))


TINY_RL = dataclasses.replace(TINY_GRPO, steps=60)
TINY = OveroptConfig(recipe=RLRecipe(rl=TINY_RL, rl_optimizer=OptimizerConfig(
    lr=1e-4, warmup_steps=5, total_steps=60, min_lr_ratio=1.0)))

HEADLINE = ("bon_gold_peak", "bon_gold_maxn", "proxy_gold_peak", "proxy_gold_final", "proxy_proxy_final")  # the figures `python -m rewardjax results` shows

PRESETS = {
    "tiny": TINY,
    "paper": OveroptConfig(
        recipe=RLRecipe(
            model=BackboneConfig(hf_path="checkpoints/policy-1.2b", compute_dtype="bfloat16",
                                 remat="full"),
            sft=SFTConfig(steps=0),
            rl=RLConfig(steps=2000, prompts_per_step=64, group_size=8, max_new_tokens=256,
                        prompt_length=512, micro_batches=16),  # assumed
            rl_optimizer=OptimizerConfig(lr=1e-6, total_steps=2000, min_lr_ratio=1.0),
            eval_problems=500),
        proxy_pairs=90_000, proxy_steps=5_000, proxy_batch_size=64,  # assumed
        proxy_optimizer=OptimizerConfig(lr=1e-5, warmup_steps=100, total_steps=5_000),
        rm_length=768, bon_prompts=200, bon_samples=16_384, eval_prompts=200,  # assumed
        eval_every=100),
}
PRESETS["smoke"] = dataclasses.replace(
    TINY, proxy_pairs=16, proxy_test_pairs=16, proxy_steps=2, bon_prompts=4, bon_samples=4,
    eval_prompts=4, eval_samples=2, eval_every=1,
    recipe=dataclasses.replace(
        TINY.recipe, model=dataclasses.replace(TINY.recipe.model, num_layers=1),
        sft=dataclasses.replace(TINY.recipe.sft, steps=10),
        rl=dataclasses.replace(TINY.recipe.rl, steps=2, prompts_per_step=4, group_size=4)))


def bon_kl(n: int) -> float:
    """KL(best-of-n ‖ initial policy) = log n − (n−1)/n (arXiv:2210.10760)."""
    return math.log(n) - (n - 1) / n


def best_of_n_curve(proxy_bn, gold_bn, ns) -> tuple[np.ndarray, np.ndarray]:
    """Expected proxy and gold reward of the proxy's best of n, from N >= n samples.

    Unbiased over the C(N, n) subsets (as in arXiv:2210.10760): with a prompt's
    samples sorted by proxy reward ascending, sample i (0-based) is the best of a
    uniformly drawn n-subset with probability C(i, n−1) / C(N, n). Ties in the proxy
    are broken by sample order.

    Args:
      proxy_bn: `[B, N]` proxy rewards of N samples for each of B prompts.
      gold_bn: `[B, N]` gold rewards of the same samples.
      ns: the n to evaluate, each in [1, N].

    Returns:
      (proxy [len(ns)], gold [len(ns)]) means over prompts.

    Example:
      >>> best_of_n_curve([[0.1, 0.9, 0.5]], [[1.0, 0.0, 1.0]], [1, 2, 3])[1].round(4)
      array([0.6667, 0.3333, 0.    ])
    """
    proxy_bn, gold_bn = np.asarray(proxy_bn, np.float64), np.asarray(gold_bn, np.float64)
    if proxy_bn.ndim != 2 or proxy_bn.shape != gold_bn.shape:
        raise ValueError(f"best_of_n_curve: proxy {proxy_bn.shape} and gold {gold_bn.shape} "
                         f"must be the same [B, N]")
    N = proxy_bn.shape[1]
    order = np.argsort(proxy_bn, axis=1, kind="stable")
    proxy_sorted = np.take_along_axis(proxy_bn, order, 1)
    gold_sorted = np.take_along_axis(gold_bn, order, 1)
    proxy_out, gold_out = [], []
    for n in ns:
        if not 1 <= n <= N:
            raise ValueError(f"best_of_n_curve: n = {n} must be in [1, N = {N}]")
        weights = np.array([math.comb(i, n - 1) for i in range(N)], np.float64) / math.comb(N, n)
        proxy_out.append(float((proxy_sorted @ weights).mean()))
        gold_out.append(float((gold_sorted @ weights).mean()))
    return np.array(proxy_out), np.array(gold_out)


def train_proxy(cfg: OveroptConfig, recipe: RLRecipe, policy, out: Path):
    """(proxy RM params, held-out pairwise accuracy): Bradley–Terry on `proxy_pairs`."""
    train = synthetic.preference_pairs(cfg.proxy_pairs, seed=recipe.seed + 10,
                                       config=recipe.task, split="train")
    test = synthetic.preference_pairs(cfg.proxy_test_pairs, seed=recipe.seed + 11,
                                      config=recipe.task, split="test")
    buckets = (cfg.rm_length,)
    train_pipe = pl.preference_pipeline(train, policy.tokenizer, pl.PipelineConfig(
        batch_size=cfg.proxy_batch_size, buckets=buckets, seed=recipe.seed, num_epochs=None,
        drop_remainder=True))
    test_pipe = pl.preference_pipeline(test, policy.tokenizer, pl.PipelineConfig(
        batch_size=16, buckets=buckets, shuffle=False))
    params = rm.init_reward_model(policy.params, jax.random.fold_in(jax.random.key(recipe.seed), 7),
                                  config=policy.config, head="scalar")
    loss_fn = functools.partial(rm.pairwise_loss, config=policy.config,
                                **recipe.model.apply_kwargs)
    eval_fn = functools.partial(rm.evaluate_pairs, pipeline=test_pipe, config=policy.config)
    state, final = run_stage(params, loss_fn, make_batch_fn(train_pipe),
                             optimizer=cfg.proxy_optimizer, num_steps=cfg.proxy_steps,
                             out_dir=out, name="proxy_rm", eval_fn=eval_fn,
                             placement=policy.placement, log=recipe.log)
    return state.params, final["accuracy"]


class Probe:
    """Samples of a policy on fixed prompts: their gold and proxy reward and KL to the
    SFT policy, Σ_t log π(y_t) − log π_sft(y_t) averaged over samples (nats)."""

    def __init__(self, trainer, policy, records, proxy: RewardModelReward, *, samples: int,
                 seed: int):
        self.trainer, self.policy, self.records, self.proxy = trainer, policy, records, proxy
        self.sft_params, self.seed = policy.params, seed
        self.sampling = dataclasses.replace(trainer.sampling, num_samples=samples)
        self.p_tok, self.p_mask = trainer.encode_prompts(records)
        self._gold = MathAnswerReward()
        self._ref = jax.jit(functools.partial(completion_logprobs, config=policy.config))

    def draw(self, params, key):
        """(texts [B*G], prompts, answers, samples) of `params` at the RL temperature."""
        with placement_lib.context(self.policy.placement):
            s = sample(params, self.p_tok, key, config=self.policy.config,
                       sampling=self.sampling, prompt_mask=self.p_mask)
        tokens, lengths = jax.device_get((s.tokens, s.lengths))
        B, G, T = tokens.shape
        texts = self.trainer.decode(tokens.reshape(B * G, T), lengths.reshape(-1))
        prompts = [r.prompt for r in self.records for _ in range(G)]
        answers = [r.answer for r in self.records for _ in range(G)]
        return texts, prompts, answers, s

    def scores(self, texts, prompts, answers) -> tuple[np.ndarray, np.ndarray]:
        """(gold, proxy) per sample."""
        gold = self._gold(prompts, texts, answer=answers)
        return np.asarray(gold, np.float64), np.asarray(self.proxy(prompts, texts), np.float64)

    def __call__(self, params, step: int) -> dict:
        key = jax.random.fold_in(jax.random.key(self.seed), 2**30 + step)
        texts, prompts, answers, s = self.draw(params, key)
        gold, proxy = self.scores(texts, prompts, answers)
        with placement_lib.context(self.policy.placement):
            ref = self._ref(self.sft_params, self.p_tok, self.p_mask, s.tokens, s.mask)
        logp, ref, mask = jax.device_get((s.logprobs, ref, s.mask))
        kl = float(np.mean(np.sum((logp - ref) * mask, -1)))
        return {"gold": float(gold.mean()), "proxy": float(proxy.mean()), "kl": max(kl, 0.0),
                "kl_raw": kl}


def run(config: OveroptConfig, out) -> dict:
    start = time.time()
    out = Path(out)
    recipe = dataclasses.replace(config.recipe, mesh=config.mesh, seed=config.seed)
    policy = warm_started_policy(recipe, out)
    proxy_params, proxy_acc = train_proxy(config, recipe, policy, out)
    print(f"proxy RM held-out pairwise accuracy: {proxy_acc:.3f}", flush=True)
    batch = 64 * (policy.placement.rows if policy.placement is not None else 1)
    scorer = ScalarRMScorer(proxy_params, config=policy.config, tokenizer=policy.tokenizer,
                            length=config.rm_length, batch_size=batch,
                            placement=policy.placement, **recipe.model.apply_kwargs)
    proxy = RewardModelReward(scorer, batch_size=batch)
    held = rl_prompt_records(recipe, max(config.bon_prompts, config.eval_prompts),
                             seed=recipe.seed + 2, split="test")
    result: dict = {"proxy_accuracy": round(proxy_acc, 4)}

    # best-of-n from the SFT policy
    gold_trainer = arith_trainer(recipe, policy, answer_reward(recipe))
    per_round = min(config.bon_samples, BON_ROUND)  # bounds the sampler's KV cache
    bon = Probe(gold_trainer, policy, held[:config.bon_prompts], proxy, samples=per_round,
                seed=recipe.seed + 1)
    gold, prox = [], []
    for k in range(-(-config.bon_samples // per_round)):
        drawn = bon.draw(policy.params, jax.random.fold_in(jax.random.key(recipe.seed + 5), k))
        g, p = bon.scores(*drawn[:3])
        gold.append(g.reshape(config.bon_prompts, per_round))
        prox.append(p.reshape(config.bon_prompts, per_round))
    gold = np.concatenate(gold, 1)[:, :config.bon_samples]
    prox = np.concatenate(prox, 1)[:, :config.bon_samples]
    ns = [2 ** k for k in range(int(math.log2(config.bon_samples)) + 1)]
    bon_proxy, bon_gold = best_of_n_curve(prox, gold, ns)
    peak = int(np.argmax(bon_gold))
    result.update(bon_gold_n1=bon_gold[0], bon_gold_peak=bon_gold[peak], bon_peak_n=ns[peak],
                  bon_gold_maxn=bon_gold[-1], bon_proxy_n1=bon_proxy[0],
                  bon_proxy_maxn=bon_proxy[-1], bon_maxn=ns[-1])
    curves = {"bon": [{"kl": bon_kl(n), "gold": g, "proxy": p}
                      for n, g, p in zip(ns, bon_gold, bon_proxy)]}

    # RL against the proxy, and against the gold reward (the baseline)
    for arm in ARMS:
        reward = answer_reward(recipe) if arm == "gold" else CombinedReward([
            RewardSpec(name="proxy", fn=proxy, weight=1.0, isolation="inline", timeout_s=None,
                       per_sample=False),
            # weight 0: the trainer's `accuracy` is then the gold reward of the rollouts
            RewardSpec(name="answer", fn=MathAnswerReward(), weight=0.0, timeout_s=10.0)])
        trainer = arith_trainer(recipe, policy, reward)
        probe = Probe(trainer, policy, held[:config.eval_prompts], proxy,
                      samples=config.eval_samples, seed=recipe.seed + 3)
        state = trainer.init_state(policy.params)
        logger = MetricsLogger(out, name=f"rl_{arm}", total_steps=recipe.rl.steps, log=recipe.log)
        points = [{"step": 0, **probe(policy.params, 0)}]
        for step in range(recipe.rl.steps):
            state, metrics = trainer.step(state, step)
            done = step + 1
            if done % config.eval_every == 0 or done == recipe.rl.steps:
                points.append({"step": done, **probe(trainer.policy(state), done)})
                metrics.update({f"eval/{k}": v for k, v in points[-1].items() if k != "step"})
            logger.log(done, metrics, advance=1)
        logger.close()
        reward.close()
        curves[arm] = points
        result.update(_arm_summary(arm, points))
    p = result
    # the paper's effect: gold peaks and falls while the proxy keeps rising
    result["rl_overoptimized"] = bool(p["proxy_gold_final"] < p["proxy_gold_peak"] - 0.02
                                      and p["proxy_proxy_final"] > p["proxy_proxy_at_peak"])
    result["bon_overoptimized"] = bool(p["bon_gold_maxn"] < p["bon_gold_peak"] - 0.02
                                       and p["bon_proxy_maxn"] > p["bon_proxy_n1"])
    result["minutes"] = round((time.time() - start) / 60, 2)
    result = {k: round(float(v), 4) if isinstance(v, (float, np.floating)) else v
              for k, v in result.items()}
    _plot(out, curves)
    if is_writer():
        (out / "curves.json").write_text(json.dumps(curves, indent=1))
    write_result(out, result)
    return result


def _arm_summary(arm: str, points: list[dict]) -> dict:
    peak = max(range(len(points)), key=lambda i: points[i]["gold"])
    return {f"{arm}_gold_start": points[0]["gold"], f"{arm}_gold_peak": points[peak]["gold"],
            f"{arm}_peak_kl": points[peak]["kl"], f"{arm}_proxy_at_peak": points[peak]["proxy"],
            f"{arm}_gold_final": points[-1]["gold"], f"{arm}_proxy_start": points[0]["proxy"],
            f"{arm}_proxy_final": points[-1]["proxy"], f"{arm}_kl_final": points[-1]["kl"]}


def _plot(out: Path, curves: dict) -> None:
    """Gold and proxy reward against √KL: best-of-n and the two RL arms."""
    if not is_writer():
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8))
    labels = {"bon": "best-of-n (proxy)", "proxy": "RL on proxy", "gold": "RL on gold"}
    for name, points in curves.items():
        x = [math.sqrt(p["kl"]) for p in points]
        for ax, key in zip(axes, ("gold", "proxy")):
            ax.plot(x, [p[key] for p in points], marker=".", label=labels[name])
    for ax, key in zip(axes, ("gold reward (verifier)", "proxy RM reward")):
        ax.set_title(key)
        ax.set_xlabel("√KL(π ‖ π_sft)  (nats^½)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    fig.suptitle("Reward model over-optimization (Gao et al.)")
    fig.tight_layout()
    fig.savefig(out / "overoptimization.png", dpi=100)
    plt.close(fig)


if __name__ == "__main__":
    experiment.main(PRESETS, run, description=__doc__)
