"""Training a generative judge: SFT on rationale traces, then GRPO on verdict match.

RM-R1 ("RM-R1: Reward Modeling as Reasoning", arXiv:2505.02387) distils reasoning
traces into the judge, then runs RL with a reward for a verdict that matches the
preference label. Both stages are the project's own: SFT is `recipes.sft_warm_start`
on `Trace.sft_example()`s, GRPO is `train.rl.RLTrainer` whose prompts are judge
prompts and whose reward is `rewards.judge_training_reward` (the label rides along as
a record field). Both run on the backbone's mesh.

A trace is decided by a few tokens (each check's "right"/"wrong", the verdict) among
~60 copied or solved ones; `deciding_token_weights` gives those tokens more of the SFT
loss (`recipes.sft_warm_start(..., token_weights=...)`), since in the plain token mean
a small judge learned every other token of the trace and not the verdict
(docs/experiments/rm_r1.md).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from rewardjax.data.encoding import tokenize
from rewardjax.data.synthetic import arithmetic
from rewardjax.judges import formats
from rewardjax.judges.rewards import judge_training_reward
from rewardjax.judges.traces import Trace
from rewardjax.recipes.backbone import Backbone
from rewardjax.recipes.warm_start import SFTConfig, TokenWeights, sft_warm_start
from rewardjax.rewards import CombinedReward
from rewardjax.train.rl import RLConfig, RLTrainer
from rewardjax.train.metrics import LogConfig
from rewardjax.train.state import OptimizerConfig


def judge_grpo_trainer(backbone: Backbone, traces: Sequence[Trace], *, rl: RLConfig,
                       optimizer: OptimizerConfig, choices: Sequence[str],
                       format_weight: float = 0.5,
                       swapped: Sequence[Trace] | None = None) -> tuple[RLTrainer, CombinedReward]:
    """An `RLTrainer` that trains `backbone`'s LM as a judge on `traces` (their prompts
    and labels; the teacher's rationales are not used), and its reward (close it when
    done). Step s, round r reads traces [(s·rounds + r)·B, ... + B) cyclically, so a
    resumed run sees the same prompts.

    `swapped`: trace i with its two responses in the other order. Then each step reads
    B/2 pairs, both orders of each side by side, and the verdict reward is
    `rewards.BothOrdersVerdictMatch` (1 only when both orders' verdicts are right)."""
    if not traces:
        raise ValueError("judge_grpo_trainer needs at least one trace")
    if rl.accuracy_reward != "verdict":
        raise ValueError(f"RLConfig.accuracy_reward must be 'verdict' for a judge (the "
                         f"verdict-match reward), got {rl.accuracy_reward!r}")
    if swapped is None:
        records = [{"prompt": t.prompt, "label": t.label} for t in traces]
    else:
        if len(swapped) != len(traces):
            raise ValueError(f"judge_grpo_trainer: {len(swapped)} swapped traces for "
                             f"{len(traces)} traces; expected one per trace")
        if rl.prompts_per_step % 2:
            raise ValueError(f"RLConfig.prompts_per_step must be even with swapped traces "
                             f"(both orders of a pair in one step), got {rl.prompts_per_step}")
        records = [{"prompt": t.prompt, "label": t.label, "pair": i}
                   for i, pair in enumerate(zip(traces, swapped)) for t in pair]
    reward = judge_training_reward(choices, format_weight=format_weight,
                                   both_orders_group=None if swapped is None else rl.group_size)

    def prompts_fn(step: int, rnd: int):
        first = (step * rl.max_sampling_rounds + rnd) * rl.prompts_per_step
        return [records[(first + i) % len(records)] for i in range(rl.prompts_per_step)]

    trainer = RLTrainer(model_config=backbone.config, rl=rl, optimizer=optimizer,
                        tokenizer=backbone.tokenizer, prompts_fn=prompts_fn, reward_fn=reward,
                        placement=backbone.placement, lora=backbone.spec.lora,
                        **backbone.spec.apply_kwargs)
    return trainer, reward


def solver_warm_start(backbone: Backbone, task: arithmetic.ArithmeticConfig, *, sft: SFTConfig,
                      out_dir, seed: int, bucket: int = 128, log: LogConfig | None = None):
    """The judge's starting LM: `backbone` after SFT on correct worked solutions of
    `task` (`arithmetic.sft_examples`, train split), checkpointed as stage "solver".

    RM-R1 (arXiv:2505.02387) and ThinkPRM (arXiv:2504.16828) start from instruction-tuned
    LMs that can already do the task's arithmetic. A judge trained from scratch on
    judgments cannot learn it there: every value a judgment writes can be copied from
    the responses in its prompt, and the copy is right most of the time
    (docs/experiments/think_prm.md). On solutions nothing can be copied, so the
    arithmetic is learned. `sft.steps = 0` returns `backbone.params`."""
    records = arithmetic.sft_examples(sft.num_examples, seed=seed + 7, config=task,
                                      split="train")
    return sft_warm_start(backbone, records, sft=sft, buckets=(bucket,), out_dir=out_dir,
                          seed=seed, name="solver", log=log)


def deciding_token_weights(tokenizer, words: Sequence[str], *, weight: float) -> TokenWeights:
    """Per-token SFT weights for judge traces: `weight` on the first token of each of
    `words` written after a space (" right" -> " r") and on the verdict's tokens (those
    after the last `Verdict:` of the completion, up to the end-of-turn token), 1 on every
    other completion token. A `recipes.TokenWeights` for `sft_warm_start`.

    RM-R1 ("RM-R1: Reward Modeling as Reasoning", arXiv:2505.02387) distils whole traces
    with the plain token mean; at a width of 64 that left the verdict unlearned, so the
    tiny presets weight the tokens that decide (docs/experiments/rm_r1.md).
    """
    if not weight > 0:
        raise ValueError(f"deciding_token_weights: weight must be > 0, got {weight}")
    if any(not w.strip() or w != w.strip() for w in words):
        raise ValueError(f"deciding_token_weights: words must be non-blank and unpadded, "
                         f"got {tuple(words)}")
    firsts = np.array(sorted({int(tokenize(tokenizer, f" {w}")[0]) for w in words}), np.int64)
    prefix = np.asarray(tokenize(tokenizer, formats.VERDICT_PREFIX), np.int64)
    special = np.asarray(sorted(tokenizer.all_special_ids), np.int64)

    def weights(tokens_bt: np.ndarray, loss_mask_bt: np.ndarray) -> np.ndarray:
        mask = np.asarray(loss_mask_bt, bool)
        deciding = np.isin(tokens_bt, firsts) & mask
        L = len(prefix)
        windows = np.lib.stride_tricks.sliding_window_view(tokens_bt, L, axis=1)
        starts = np.all(windows == prefix, axis=-1) & mask[:, :windows.shape[1]]
        for b in np.flatnonzero(starts.any(axis=1)):
            after = np.flatnonzero(starts[b])[-1] + L
            ends = np.flatnonzero(np.isin(tokens_bt[b, after:], special))
            stop = after + (ends[0] if len(ends) else tokens_bt.shape[1] - after)
            deciding[b, after:stop] = mask[b, after:stop]
        return np.where(deciding, weight, 1.0).astype(np.float32)

    return weights
