"""DeepSeek-GRM: a pointwise generative RM scaled at inference time by (meta-RM-guided) voting.

Paper: "Inference-Time Scaling for Generalist Reward Modeling" (Liu et al.,
arXiv:2504.02495). A GRM writes principles and a critique, then a 1-10 score per
response; k judgments are sampled in parallel and their scores summed per response
(voting), or only the k_meta = k/2 judgments a scalar meta RM rates best are summed
(meta-RM-guided voting). The meta RM is trained with BCE on the GRM's own samples,
labelled by whether their scores agree with the ground truth.

What it reproduces: held-out pairwise accuracy rises with k (k = 8 above k = 1), and
meta-RM-guided voting is at least as accurate as plain voting (a tie of the kept votes is
settled by the plain vote, ours; `accuracy_meta_voting_coin` settles it by a coin as
the paper's rule leaves it); `scaling.png` plots
accuracy against k for both, `result.json` holds the figures, `judgments.jsonl` every
held-out judgment with its scores and meta-RM score.

How `tiny` deviates: the GRM is a 2-layer width-64 model, started from SFT on correct
solutions (`judges.solver_warm_start`, the stand-in for the paper's instruct LM), then
fine-tuned on judgments written by a program (`judges.grm.grm_trace`: one fixed
principle, each answer noted, the problem solved, each answer checked, scores 9/2)
instead of SPCT's rejective fine-tuning and rule-based GRPO; each response of a
correct-vs-corrupted arithmetic pair is judged alone (`responses_per_prompt=1`, the
paper's single-response mode) so no position shortcut exists; the meta RM shares the
GRM's backbone. `paper` is the Gemma-2-27B setting (local directory) with both
responses in one prompt and k up to 32.

    python experiments/deepseek_grm.py --preset tiny
    python experiments/deepseek_grm.py --preset smoke
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path

import jax
import numpy as np

from rewardjax import experiment, judges, recipes
from rewardjax.data.synthetic import arithmetic
from rewardjax.judges import grm
from rewardjax.rewards.self_reward import auroc
from rewardjax.sharding import MeshConfig
from rewardjax.train.metrics import LogConfig, is_writer, write_result
from rewardjax.train.state import OptimizerConfig


@dataclasses.dataclass(frozen=True, kw_only=True)
class Config:
    """Attributes:
      responses_per_prompt: 1 (each response of a pair judged alone) or 2 (the pair in
        one prompt, its order by a seeded coin).
      num_train: pairs (train split) whose teacher judgments the GRM is fine-tuned on.
      num_meta: the next this-many train pairs; the GRM's k samples on them train the
        meta RM.
      num_test: held-out pairs (test split).
      solver, sft: SFT on correct solutions, then on the teacher's judgments.
      deciding_weight: SFT loss weight of each judgment's "right"/"wrong" (the token its
        score follows from; `judges.training.deciding_token_weights`); 1: the plain
        token mean.
      meta: the meta RM's training.
      k, ks: judgments sampled per prompt; the k values of the curve (k among them).
      meta_keep_fraction: k_meta = max(1, round(k · this)).
      meta_tie_break: "plain": a tie of the meta-guided votes is settled by the plain
        vote of all k (ours; the paper does not say); None: a coin (half credit).
      temperature: sampling temperature of the judgments.
      prompt_length, max_new_tokens: GRM prompts are left-padded to this length;
        judgments are at most this long.
      eval_batch: prompts per sampler call.
      draws: random k-subsets of the K judgments averaged per point of the curve.
    """

    backbone: recipes.BackboneConfig = recipes.BackboneConfig()
    mesh: MeshConfig = MeshConfig()
    task: arithmetic.ArithmeticConfig = recipes.TINY_RM_TASK
    responses_per_prompt: int = 1
    num_train: int = 4096
    num_meta: int = 512
    num_test: int = 256
    solver: recipes.SFTConfig = recipes.SFTConfig(steps=300, response_window=48)
    sft: recipes.SFTConfig = recipes.SFTConfig(
        steps=400, batch_size=32, response_window=80,
        optimizer=OptimizerConfig(lr=3e-3, warmup_steps=20, total_steps=400, weight_decay=0.01))
    deciding_weight: float = 5.0
    meta: grm.MetaRMConfig = grm.MetaRMConfig(steps=450, bucket=240)
    k: int = 8
    ks: tuple[int, ...] = (1, 2, 4, 8)
    meta_keep_fraction: float = 0.5
    meta_tie_break: str | None = "plain"
    temperature: float = 1.0
    prompt_length: int = 160
    max_new_tokens: int = 80
    eval_batch: int = 64
    draws: int = 32
    log: LogConfig = LogConfig()
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "ks", tuple(self.ks))
        if self.responses_per_prompt not in (1, 2):
            raise ValueError(f"responses_per_prompt must be 1 or 2, got {self.responses_per_prompt}")
        if self.k not in self.ks or not all(1 <= k <= self.k for k in self.ks):
            raise ValueError(f"ks must lie in [1, k={self.k}] and include k, got {self.ks}")
        if not self.deciding_weight >= 1.0:
            raise ValueError(f"deciding_weight must be >= 1 (1: the plain token mean), got "
                             f"{self.deciding_weight}")
        if self.meta_tie_break not in (None, "plain"):
            raise ValueError(f"meta_tie_break must be None or 'plain', got {self.meta_tie_break!r}")
        if not 0 < self.meta_keep_fraction <= 1:
            raise ValueError(f"meta_keep_fraction must be in (0, 1], got {self.meta_keep_fraction}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0 (voting needs distinct samples), got "
                             f"{self.temperature}")
        if min(self.num_train, self.num_meta, self.num_test, self.draws) < 1:
            raise ValueError("num_train, num_meta, num_test and draws must be >= 1")
        if self.meta.bucket < self.prompt_length + self.max_new_tokens:
            raise ValueError(f"meta.bucket ({self.meta.bucket}) must hold a prompt and a "
                             f"judgment: >= prompt_length + max_new_tokens = "
                             f"{self.prompt_length + self.max_new_tokens}")

    @property
    def keep(self) -> int:
        return max(1, round(self.k * self.meta_keep_fraction))


HEADLINE = ("accuracy_k1", "accuracy_voting", "accuracy_meta_voting", "meta_auroc")

PRESETS = {
    "tiny": Config(),
    "paper": Config(
        backbone=recipes.BackboneConfig(hf_path="checkpoints/gemma-2-27b-it",
                                        compute_dtype="bfloat16", remat="full"),
        task=arithmetic.ArithmeticConfig(), responses_per_prompt=2, num_train=64_000,
        deciding_weight=1.0,  # the paper fine-tunes with the plain token mean
        num_meta=8_000, num_test=2_000, solver=recipes.SFTConfig(steps=0),
        sft=recipes.SFTConfig(steps=2_000, batch_size=128, response_window=None,
                              optimizer=OptimizerConfig(lr=5e-6, warmup_steps=100,
                                                        total_steps=2_000)),
        meta=grm.MetaRMConfig(steps=2_000, batch_size=128, bucket=2_048,
                              optimizer=OptimizerConfig(lr=5e-6, total_steps=2_000)),
        k=32, ks=(1, 2, 4, 8, 16, 32), temperature=0.5,  # temperature assumed
        prompt_length=1_024, max_new_tokens=1_024, eval_batch=16),
}
# Every stage at a size that runs in seconds; its figures measure nothing.
PRESETS["smoke"] = dataclasses.replace(
    PRESETS["tiny"], backbone=recipes.BackboneConfig(num_layers=1),
    num_train=32, num_meta=8, num_test=8, k=4, ks=(1, 4), draws=2, eval_batch=16,
    solver=dataclasses.replace(PRESETS["tiny"].solver, steps=0),
    sft=dataclasses.replace(PRESETS["tiny"].sft, steps=2),
    meta=grm.MetaRMConfig(steps=2, batch_size=8, bucket=240))


class Pairs:
    """Correct-vs-corrupted pairs as GRM prompts: `prompts` [M], their teacher `traces`,
    and how judgments map back to pairs (`stack`, `best`)."""

    def __init__(self, start: int, n: int, *, seed: int, split: str, config: Config):
        self.n, self.per = n, config.responses_per_prompt
        self.traces: list[judges.Trace] = []
        best = []
        for i in range(start, start + n):
            bad = arithmetic.corrupted(i, seed=seed, config=config.task, split=split)
            good = arithmetic.solve(bad.problem).text
            if self.per == 1:
                self.traces += [grm.grm_trace(bad.problem, [good]),
                                grm.grm_trace(bad.problem, [bad.text])]
                best.append(0)
            else:
                flip = np.random.default_rng([seed, i, 6 << 20]).random() < 0.5
                pair = [bad.text, good] if flip else [good, bad.text]
                self.traces.append(grm.grm_trace(bad.problem, pair))
                best.append(int(flip))
        self.best = np.asarray(best)
        self.prompts = [t.prompt for t in self.traces]
        self.truth = [grm.parse_scores(t.label, num_responses=self.per).scores
                      for t in self.traces]

    def stack(self, per_prompt: np.ndarray) -> np.ndarray:
        """[M, k, ...] per prompt -> [N, k, 2]: a pair's two responses side by side."""
        if self.per == 2:
            return per_prompt
        x = per_prompt.reshape(self.n, 2, *per_prompt.shape[1:])
        return np.moveaxis(x[..., 0] if x.ndim == 4 else x, 1, -1)


def sample(judge, pairs: Pairs, key) -> tuple[grm.GRMSamples, np.ndarray]:
    """k judgments per prompt and whether each agrees with the truth ([M, k] bool)."""
    got = grm.sample_scores(judge, pairs.prompts, key, num_responses=pairs.per)
    agree = np.array([[grm.agrees(s, t) for s in row] for row, t in zip(got.scores, pairs.truth)])
    return got, agree


def meta_scores(params, backbone, pairs: Pairs, got: grm.GRMSamples, config: Config) -> np.ndarray:
    """[M, k] meta-RM P(agrees) of every non-empty judgment (0 for empty ones; a failed
    judgment is never kept ahead of a parsed one whatever its score)."""
    idx = _non_empty(got)
    out = np.zeros(got.valid.shape)
    if idx:
        probs = grm.meta_rm_scores(params, backbone, [pairs.prompts[i] for i, _ in idx],
                                   [got.texts[i][j] for i, j in idx], config=config.meta)
        out[tuple(np.array(idx).T)] = probs
    return out


def _non_empty(got: grm.GRMSamples) -> list[tuple[int, int]]:
    return [(i, j) for i, row in enumerate(got.texts) for j, t in enumerate(row) if t.strip()]


def within_prompt_auroc(meta: np.ndarray, agree: np.ndarray, valid: np.ndarray) -> float:
    """Mean AUROC of the meta RM among the valid judgments of one prompt, over prompts
    whose judgments hold both classes (NaN if none do). Meta-RM-guided voting only
    ranks judgments of one prompt against each other, so this, not the pooled AUROC
    (which also rewards telling easy prompts from hard ones), is what it can use."""
    per = [auroc(m[v], a[v]) for m, a, v in zip(meta, agree, valid) if 0 < a[v].sum() < v.sum()]
    return float(np.mean(per)) if per else float("nan")


def _finite(x: float) -> float | None:
    """None for NaN (an AUROC with one class empty), which JSON cannot round-trip."""
    return None if np.isnan(x) else round(x, 4)


def _plot(out: Path, plain: dict, meta: dict, keep_fraction: float) -> None:
    if not is_writer():
        return
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.5))
    ks = sorted(plain)
    ax.plot(ks, [plain[k] for k in ks], marker="o", label="voting")
    ax.plot(ks, [meta[k] for k in ks], marker="s",
            label=f"meta-RM-guided voting (k_meta = {keep_fraction:g}k)")
    ax.set_xscale("log", base=2)
    ax.set_xticks(ks, [str(k) for k in ks])
    ax.set_xlabel("k sampled judgments")
    ax.set_ylabel("held-out pairwise accuracy")
    ax.set_title("DeepSeek-GRM inference-time scaling\n(synthetic arithmetic)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "scaling.png", dpi=100)
    plt.close(fig)


def run(config: Config, out: Path) -> dict:
    start = time.time()
    out = Path(out)
    key = jax.random.key(config.seed)
    backbone = recipes.load_backbone(config.backbone, jax.random.fold_in(key, 0), config.mesh)
    train = Pairs(0, config.num_train, seed=config.seed, split="train", config=config)
    meta_pairs = Pairs(config.num_train, config.num_meta, seed=config.seed, split="train",
                       config=config)
    test = Pairs(0, config.num_test, seed=config.seed + 1, split="test", config=config)

    solver = judges.solver_warm_start(backbone, config.task, sft=config.solver, out_dir=out,
                                      seed=config.seed, log=config.log)
    params = recipes.sft_warm_start(backbone._replace(params=solver),
                                    [t.sft_example() for t in train.traces], sft=config.sft,
                                    buckets=(config.prompt_length + config.max_new_tokens,),
                                    out_dir=out, seed=config.seed, log=config.log,
                                    token_weights=judges.training.deciding_token_weights(
                                        backbone.tokenizer, judges.traces.PAIRWISE_DECIDING,
                                        weight=config.deciding_weight))
    judge = judges.GenerativeJudge(params, config=backbone.config, tokenizer=backbone.tokenizer,
                                   prompt_length=config.prompt_length,
                                   max_new_tokens=config.max_new_tokens, num_samples=config.k,
                                   temperature=config.temperature, batch_size=config.eval_batch,
                                   placement=backbone.placement)

    got_m, agree_m = sample(judge, meta_pairs, jax.random.fold_in(key, 1))
    # Unparsed judgments are kept as disagreeing (the paper's label: their scores do
    # not match the truth); only empty ones, which no record can hold, are left out.
    rows = [(meta_pairs.prompts[i], got_m.texts[i][j], float(agree_m[i, j]))
            for i, j in _non_empty(got_m)]
    if not rows:
        raise RuntimeError("every GRM judgment on the meta RM's training pairs is empty; "
                           "the meta RM has nothing to learn from (raise sft.steps)")
    print(f"meta RM data: {len(rows)} judgments ({int(got_m.valid.sum())} parsed), "
          f"{np.mean([r[2] for r in rows]):.3f} agree with the truth", flush=True)
    meta_params = grm.train_meta_rm(backbone._replace(params=params),
                                    grm.meta_rm_records(*zip(*rows)), config=config.meta,
                                    key=jax.random.fold_in(key, 2), out_dir=out,
                                    seed=config.seed, log=config.log)

    got, agree = sample(judge, test, jax.random.fold_in(key, 3))
    meta = meta_scores(meta_params, backbone, test, got, config)
    scores, meta_pair = test.stack(got.scores), test.stack(meta)
    common = dict(draws=config.draws, seed=config.seed)
    plain = grm.scaling_curve(scores, test.best, config.ks, **common)
    guided = grm.scaling_curve(scores, test.best, config.ks, meta=meta_pair,
                               keep_fraction=config.meta_keep_fraction,
                               tie_break=config.meta_tie_break, **common)
    guided_coin = grm.scaling_curve(scores, test.best, config.ks, meta=meta_pair,
                                    keep_fraction=config.meta_keep_fraction, **common)
    _plot(out, plain, guided, config.meta_keep_fraction)
    with open(out / "judgments.jsonl", "w") as f:
        for i, p in enumerate(test.prompts):
            f.write(json.dumps({"prompt": p, "truth": test.truth[i], "judgments": got.texts[i],
                                "agrees": agree[i].tolist(), "meta": meta[i].round(4).tolist()})
                    + "\n")
    (out / "curve.json").write_text(json.dumps({"k": list(config.ks),
                                                "voting": [plain[k] for k in config.ks],
                                                "meta_voting": [guided[k] for k in config.ks]}))
    valid = got.valid
    # Ties at k = K (voted scores equal), plain and meta-guided (before the tie-break).
    voted = grm.vote_scores(scores)
    voted_meta = grm.vote_scores(scores, meta=meta_pair, keep=config.keep)
    result = {"accuracy_k1": round(plain[1], 4), "accuracy_voting": round(plain[config.k], 4),
              "accuracy_meta_voting": round(guided[config.k], 4),
              "accuracy_meta_voting_coin": round(guided_coin[config.k], 4),
              "gain_voting": round(plain[config.k] - plain[1], 4),
              "gain_meta": round(guided[config.k] - plain[config.k], 4),
              "k": config.k, "k_meta": config.keep,
              "sample_agreement": round(float(agree[valid].mean()) if valid.any() else 0.0, 4),
              "meta_auroc": _finite(auroc(meta[valid], agree[valid])),
              "meta_auroc_within": _finite(within_prompt_auroc(meta, agree, valid)),
              "ties_voting": round(float(np.mean(voted[:, 0] == voted[:, 1])), 4),
              "ties_meta_voting": round(float(np.mean(voted_meta[:, 0] == voted_meta[:, 1])), 4),
              "meta_train_agreement": round(float(np.mean([r[2] for r in rows])), 4),
              "parse_failures": got.failures.total(),
              "judgments": int(valid.size), "test_pairs": config.num_test,
              "minutes": round((time.time() - start) / 60, 2)}
    write_result(out, result)
    return result


if __name__ == "__main__":
    experiment.main(PRESETS, run, description=__doc__)
