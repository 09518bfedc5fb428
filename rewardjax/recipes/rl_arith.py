"""The RL-on-arithmetic recipe shared by the policy-optimization experiments.

SFT warm start on the synthetic arithmetic task, greedy pass@1 on held-out problems,
RL with the verifiable answer reward (`RLConfig` decides the algorithm), pass@1 again,
curves and a RESULT line. Experiment files (`experiments/grpo_arith.py`, `dr_grpo.py`,
`dapo.py`, `ppo_arith.py`, `tina_lora_grpo.py`) only choose presets. Everything runs on
the mesh of `mesh`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import time
from pathlib import Path
from typing import Callable

import numpy as np
import safetensors.numpy

import jax
import jax.numpy as jnp

from rewardjax import heads
from rewardjax.data import synthetic
from rewardjax.data.records import PromptWithAnswer
from rewardjax.data.tfds import DataSource
from rewardjax.recipes.backbone import Backbone, BackboneConfig, load_backbone
from rewardjax.recipes.tasks import TINY_RL_TASK
from rewardjax.recipes.warm_start import SFTConfig, sft_warm_start
from rewardjax.rewards import CombinedReward, MathAnswerReward, OverlongPenalty, RewardSpec
from rewardjax.sharding import MeshConfig
from rewardjax.train import metrics as metrics_lib, placement as placement_lib
from rewardjax.train.checkpoint import Checkpointer
from rewardjax.train.evaluate import greedy_accuracy
from rewardjax.train.metrics import LogConfig, MetricsLogger, plot_curves, write_result
from rewardjax.train.rl import RLConfig, RLTrainer
from rewardjax.train.rl_extensions import RLExtensions
from rewardjax.train.state import OptimizerConfig

# The tiny RL presets' model: a ~1M-parameter Qwen2-style model with GPT-2's init.
TINY_RL_MODEL = BackboneConfig(hidden_size=128, intermediate_size=384, num_layers=4,
                               num_heads=4, num_kv_heads=2, head_dim=32, init_std=0.02)

# 500 steps of 32 examples, every position projected, each example seen once.
TINY_RL_SFT = SFTConfig(steps=500, batch_size=32, num_examples=16_000, response_window=None,
                        optimizer=OptimizerConfig(lr=3e-3, warmup_steps=20, total_steps=500,
                                                  weight_decay=0.01))


# The tiny GRPO run of the main job: 30 on-policy steps of 16 prompts x 8 samples, no KL.
TINY_GRPO = RLConfig(steps=30, prompts_per_step=16, group_size=8, max_new_tokens=32,
                     prompt_length=56, temperature=1.0, epochs=1, minibatches=1,
                     advantage="grpo", scale_by_std=True, reduction="token_mean",
                     eps_low=0.2, eps_high=0.2, kl_coef=0.0)


@dataclasses.dataclass(frozen=True, kw_only=True)
class RLRecipe:
    """SFT warm start + RL on the synthetic arithmetic task.

    Attributes:
      model: the backbone (with `model.lora`, RL trains adapters only).
      mesh: where everything runs (`--set mesh.data=2 mesh.fsdp=2 mesh.tensor=2`).
      sft: the warm start (`sft.steps=0` for a checkpoint that is already a policy).
      sft_direct_fraction: share of SFT examples that give the bare answer line without
        the worked steps (`synthetic.sft_examples`); RL can then learn to show its work.
      sft_buckets: SFT sequence lengths (prompt + completion; the longest `task`
        example must fit, or the pipeline raises naming the record).
      overlong_buffer: > 0 adds DAPO's soft overlong penalty over the last this-many
        tokens before `rl.max_new_tokens` (0: off).
      checkpoint_every: orbax checkpoints of the RL state every N steps (0: off);
        a rerun with the same output directory resumes.
      log: the RL stage's experiment trackers (`--set log.wandb=true`).
      data: where the RL prompts come from: "synthetic" (the task's problems) or a
        prepared TFDS dataset read as `PromptWithAnswer`
        (`--set data.source=tfds:gsm8k_rewardjax data.data_dir=DIR`), training prompts
        from `data.split` (at most `prompt_pool`), held-out ones from `data.eval_split`
        (at most `eval_problems`). The SFT warm start stays on the synthetic task.
      sft_cache: a directory where the warm-started params are kept, keyed by
        everything they depend on, so a comparison of several experiments warms up
        once (None: always train; timings of a run that read the cache exclude SFT).
    """

    model: BackboneConfig = TINY_RL_MODEL
    mesh: MeshConfig = MeshConfig()
    task: synthetic.ArithmeticConfig = TINY_RL_TASK
    sft: SFTConfig = TINY_RL_SFT
    sft_direct_fraction: float = 0.5
    sft_buckets: tuple[int, ...] = (80,)
    rl: RLConfig = RLConfig()
    rl_optimizer: OptimizerConfig = OptimizerConfig(lr=5e-4, total_steps=1000, min_lr_ratio=1.0)
    overlong_buffer: int = 0
    eval_problems: int = 256
    prompt_pool: int = 20000
    checkpoint_every: int = 0
    log: LogConfig = LogConfig()
    data: DataSource = DataSource()
    sft_cache: str | None = None
    seed: int = 0


# grpo_arith's tiny recipe: the starting point and in-run baseline of the reward-design
# experiments (experiments/prime.py, drpo.py, noisy_rewards.py, ...).
TINY_RECIPE = RLRecipe(rl=TINY_GRPO, rl_optimizer=OptimizerConfig(
    lr=5e-5, warmup_steps=5, total_steps=30, min_lr_ratio=1.0))


def smoke_recipe(recipe: RLRecipe) -> RLRecipe:
    """`recipe` cut to seconds: one layer, 10 SFT steps, 2 RL steps of 4 x 4, 8 problems.
    Every stage runs; its figures measure nothing."""
    return dataclasses.replace(
        recipe, model=dataclasses.replace(recipe.model, num_layers=1), eval_problems=8,
        sft=dataclasses.replace(recipe.sft, steps=10),
        rl=dataclasses.replace(recipe.rl, steps=2, prompts_per_step=4, group_size=4))


def warm_started_policy(cfg: RLRecipe, out: Path) -> Backbone:
    """The backbone after the recipe's SFT warm start (its params are the policy); read
    from `cfg.sft_cache` when that directory holds this exact warm start."""
    backbone = load_backbone(cfg.model, jax.random.key(cfg.seed), cfg.mesh)
    cached = _sft_cache_path(cfg)
    if cached is not None and cached.is_file():
        leaves, treedef = jax.tree_util.tree_flatten_with_path(backbone.params)
        saved = safetensors.numpy.load_file(str(cached))
        params = jax.tree_util.tree_unflatten(
            treedef, [saved[jax.tree_util.keystr(k)] for k, _ in leaves])
        if backbone.placement is not None:
            params = backbone.placement.params(params)
        print(f"SFT warm start read from {cached}", flush=True)
        return backbone._replace(params=params)
    examples = synthetic.sft_examples(cfg.sft.num_examples, seed=cfg.seed + 1, config=cfg.task,
                                      split="train", direct_fraction=cfg.sft_direct_fraction)
    params = sft_warm_start(backbone, examples, sft=cfg.sft, buckets=cfg.sft_buckets,
                            out_dir=out, seed=cfg.seed, log=cfg.log)
    if cached is not None and metrics_lib.is_writer():
        cached.parent.mkdir(parents=True, exist_ok=True)
        flat = jax.tree_util.tree_flatten_with_path(jax.device_get(params))[0]
        safetensors.numpy.save_file({jax.tree_util.keystr(k): np.asarray(v) for k, v in flat},
                                    str(cached))
    return backbone._replace(params=params)


def _sft_cache_path(cfg: RLRecipe) -> Path | None:
    if cfg.sft_cache is None or cfg.sft.steps == 0:
        return None
    # Everything the warm start depends on, and nothing else: the mesh changes it only by
    # rounding (docs/experiments/grpo_arith.md), so runs on different meshes share it.
    key = repr((cfg.model, cfg.task, cfg.sft, cfg.sft_direct_fraction, cfg.sft_buckets, cfg.seed))
    return Path(cfg.sft_cache) / f"sft-{hashlib.sha256(key.encode()).hexdigest()[:16]}.safetensors"


def answer_reward(cfg: RLRecipe) -> CombinedReward:
    specs = [RewardSpec(name="answer", fn=MathAnswerReward(), weight=1.0, fallback=0.0,
                        isolation="thread", timeout_s=10.0)]
    if cfg.overlong_buffer:
        penalty = OverlongPenalty(max_length=cfg.rl.max_new_tokens, cache_length=cfg.overlong_buffer)
        specs.append(RewardSpec(name="overlong", fn=penalty, weight=1.0, fallback=0.0,
                                timeout_s=None, isolation="inline", per_sample=False))
    return CombinedReward(specs)


def rl_prompt_records(cfg: RLRecipe, count: int, *, seed: int, split: str):
    """At most `count` prompts with answers of `split` ("train" / "test") from `cfg.data`."""
    if not cfg.data.is_tfds:
        return synthetic.rl_prompts(count, seed=seed, config=cfg.task, split=split)
    records = cfg.data.records(PromptWithAnswer,
                               split=cfg.data.split if split == "train" else cfg.data.eval_split)
    # A whole split stays a random-access source on disk; only a cut is read into memory.
    return records if len(records) <= count else records[:count]


def arith_trainer(cfg: RLRecipe, policy: Backbone, reward,
                  extensions: RLExtensions | None = None) -> RLTrainer:
    """The RL trainer on the recipe's prompt pool (a pure function of the step)."""
    rl = cfg.rl
    pool = rl_prompt_records(cfg, cfg.prompt_pool, seed=cfg.seed + 3, split="train")

    def prompts_fn(step: int, rnd: int):
        first = (step * rl.max_sampling_rounds + rnd) * rl.prompts_per_step
        return [pool[(first + i) % len(pool)] for i in range(rl.prompts_per_step)]

    return RLTrainer(model_config=policy.config, rl=rl, optimizer=cfg.rl_optimizer,
                     tokenizer=policy.tokenizer, prompts_fn=prompts_fn, reward_fn=reward,
                     placement=policy.placement, lora=cfg.model.lora, extensions=extensions,
                     **cfg.model.apply_kwargs)


def run_rl_recipe(cfg: RLRecipe, out: Path, *, title: str) -> dict:
    """Runs the recipe; prints and returns `pass1_before`, `pass1_after`, `minutes`."""
    start = time.time()
    out = Path(out)
    policy = warm_started_policy(cfg, out)
    params, config, rl = policy.params, policy.config, cfg.rl
    held_out = rl_prompt_records(cfg, cfg.eval_problems, seed=cfg.seed + 2, split="test")
    reward = answer_reward(cfg)
    trainer = arith_trainer(cfg, policy, reward)

    def pass1(p):
        with placement_lib.context(policy.placement):
            return greedy_accuracy(p, held_out, config=config, tokenizer=policy.tokenizer,
                                   prompt_length=rl.prompt_length,
                                   max_new_tokens=rl.max_new_tokens,
                                   eos_ids=trainer.sampling.eos_ids)

    pass1_before = pass1(params)
    print(f"held-out greedy pass@1 before RL: {pass1_before:.3f}", flush=True)
    critic = None
    if rl.uses_critic:  # PPO: the critic starts from the SFT backbone with a zero value head
        critic = {"backbone": jax.tree.map(jnp.array, params),
                  "head": heads.init_value_head(jax.random.key(cfg.seed), config.hidden_size)}
    state = trainer.init_state(params, critic)
    logger = MetricsLogger(out, name="rl", total_steps=rl.steps, log=cfg.log)
    checkpointer = (Checkpointer(out / "checkpoints" / "rl", every=cfg.checkpoint_every)
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


# ----------------------------------------------------------------------------- arms


@dataclasses.dataclass(frozen=True, kw_only=True)
class Arm:
    """One RL run of a comparison, from the same warm start as the others.

    Attributes:
      name: its key in the RESULT line and its metrics file (`rl_<name>.jsonl`).
      rl: its RL settings (None: the recipe's `rl`).
      extensions: `cfg -> RLExtensions` (a factory: online reward models carry state).
      reward: `cfg -> reward_fn` (None: the recipe's verifiable answer reward).
    """

    name: str
    rl: RLConfig | None = None
    extensions: Callable[[RLRecipe], RLExtensions] | None = None
    reward: Callable[[RLRecipe], Callable] | None = None


class GreedyEval:
    """Held-out greedy pass@1, per-problem correctness and response lengths in tokens."""

    def __init__(self, cfg: RLRecipe, policy: Backbone, eos_ids):
        self.cfg, self.policy, self.eos_ids = cfg, policy, eos_ids
        self.records = rl_prompt_records(cfg, cfg.eval_problems, seed=cfg.seed + 2, split="test")
        self._verify = MathAnswerReward()

    def __call__(self, params) -> dict:
        seen = []

        def recording(prompts, completions, **fields):
            scores = np.asarray(self._verify(prompts, completions, **fields))
            tok = self.policy.tokenizer
            seen.extend((s > 0.5, len(tok.encode(c, add_special_tokens=False)))
                        for s, c in zip(scores, completions))
            return scores

        with placement_lib.context(self.policy.placement):
            acc = greedy_accuracy(params, self.records, config=self.policy.config,
                                  tokenizer=self.policy.tokenizer,
                                  prompt_length=self.cfg.rl.prompt_length,
                                  max_new_tokens=self.cfg.rl.max_new_tokens,
                                  eos_ids=self.eos_ids, reward_fn=recording)
        correct = np.array([c for c, _ in seen], bool)
        lengths = np.array([n for _, n in seen], np.float32)
        return {"pass1": acc, "correct": correct, "length": float(lengths.mean()),
                "correct_length": float(lengths[correct].mean()) if correct.any() else 0.0}


def train_arm(trainer: RLTrainer, params, *, name: str, out: Path, cfg: RLRecipe,
              evaluate: Callable[[object], dict], eval_every: int = 0,
              ref_params=None) -> tuple[object, list[tuple[int, dict]]]:
    """One arm's RL run from `params`, logged to `rl_<name>.jsonl`; closes its reward.

    `evaluate(policy params) -> dict` runs every `eval_every` steps (0: never before the
    last) and after the last step; its scalar figures are logged as `eval/<key>`.
    Returns the final state and the `(step, evaluation)` pairs, the last one final.
    """
    steps = trainer.rl.steps
    state = trainer.init_state(params)
    logger = MetricsLogger(out, name=f"rl_{name}", total_steps=steps, log=cfg.log)
    evals: list[tuple[int, dict]] = []
    for step in range(steps):
        state, metrics = trainer.step(state, step, ref_params)
        done = step + 1
        if done == steps or (eval_every and done % eval_every == 0):
            ev = evaluate(trainer.policy(state))
            evals.append((done, ev))
            metrics.update({f"eval/{k}": v for k, v in ev.items() if np.ndim(v) == 0})
        logger.log(done, metrics, advance=1)
    logger.close()
    close = getattr(trainer.reward_fn, "close", None)
    if close is not None:
        close()
    return state, evals


def run_arms(cfg: RLRecipe, out: Path, arms: list[Arm], *, title: str, eval_every: int = 0,
             curves: tuple[str, ...] = ("reward/mean", "accuracy", "response/length"),
             after_arm: Callable[[Arm, RLTrainer, object, dict], dict] | None = None,
             policy: Backbone | None = None) -> dict:
    """Warm start once (or start from `policy`, the caller's `warm_started_policy`, when
    the caller needs it before the arms, e.g. to train a reward model on its samples),
    then each arm's RL run from it; held-out greedy pass@1 before, every `eval_every`
    steps (0: only at the end) and after each arm.

    Returns `pass1_before`, `correct_length_before`, `<arm>_pass1`,
    `<arm>_correct_length` (mean tokens of the correct held-out responses),
    `<arm>_pass1_curve` (comma-joined, when `eval_every`), what `after_arm` adds, and
    `minutes`; the caller writes its RESULT line. Curves of all arms overlay in
    `rl_curves.png`.
    """
    start = time.time()
    out = Path(out)
    policy = policy if policy is not None else warm_started_policy(cfg, out)
    params = policy.params
    held = None
    result: dict = {}
    for arm in arms:
        rl = arm.rl or cfg.rl
        arm_cfg = dataclasses.replace(cfg, rl=rl)
        reward = (arm.reward or answer_reward)(arm_cfg)
        ext = arm.extensions(arm_cfg) if arm.extensions is not None else None
        trainer = arith_trainer(arm_cfg, policy, reward, extensions=ext)
        if held is None:
            held = GreedyEval(cfg, policy, trainer.sampling.eos_ids)
            before = held(params)
            result["pass1_before"] = round(before["pass1"], 4)
            result["correct_length_before"] = round(before["correct_length"], 2)
            print(f"held-out greedy pass@1 before RL: {before['pass1']:.3f}", flush=True)
        state, evals = train_arm(trainer, params, name=arm.name, out=out, cfg=arm_cfg,
                                 evaluate=held, eval_every=eval_every,
                                 ref_params=params if rl.kl_coef else None)
        after = evals[-1][1]
        curve = [round(ev["pass1"], 4) for _, ev in evals]
        result[f"{arm.name}_pass1"] = round(after["pass1"], 4)
        result[f"{arm.name}_correct_length"] = round(after["correct_length"], 2)
        if eval_every:
            result[f"{arm.name}_pass1_curve"] = ",".join(str(c) for c in curve)
        if after_arm is not None:
            result.update(after_arm(arm, trainer, state, after))
        print(f"[{arm.name}] held-out greedy pass@1 after RL: {after['pass1']:.3f}", flush=True)
    plot_arms(out, [a.name for a in arms], list(curves) + ["eval/pass1"], out / "rl_curves.png",
              title=title)
    result["minutes"] = round((time.time() - start) / 60, 2)
    return result


def plot_arms(out: Path, names: list[str], keys: list[str], path: Path, *, title: str) -> None:
    """One panel per metric, one line per arm (from `rl_<name>.jsonl`)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rewardjax.train.metrics import is_writer, read_jsonl

    if not is_writer():
        return
    rows = {n: read_jsonl(out / f"rl_{n}.jsonl") for n in names}
    fig, axes = plt.subplots(1, len(keys), figsize=(4 * len(keys), 3), squeeze=False)
    for ax, key in zip(axes[0], keys):
        for name in names:
            pts = [(r["step"], r[key]) for r in rows[name] if key in r]
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker=".", label=name)
        ax.set_title(key)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
