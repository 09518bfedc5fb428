"""A tool-augmented judge: recompute the claimed value with the calculator, then judge.

Paper: "Tool-Augmented Reward Modeling" (Themis; Li et al., arXiv:2310.01045): a reward
model that calls tools (calculator, code interpreter, search) before scoring beats the
same model without tools, most on arithmetic (their Table 2).

What it reproduces: one pointwise judge (`rewardjax.envs.tool_judge`) is SFT-trained on
traces that call the sandboxed Python calculator on the question, read its output,
compare it with the response's claimed answer and give `Verdict: Yes|No`; half of the
traces see the tool's output and half `error: no tool` (there the judge writes the
value itself). Held-out judge accuracy (balanced Yes/No) is measured with the tool
and without it (every call answers `error: no tool`) in the same run, before and
after GRPO of each arm with the judge-correct reward (`judges.judge_training_reward`).

How `tiny` deviates: the policy-sized 1M model and task of tool_grpo (2-3 operations,
operands <= 5; 500 SFT steps), no thought line before the call (Themis writes one),
the tool's output left out of the SFT loss, responses that are a claimed final answer
(`Answer: M`, from `arithmetic.solutions`, half wrong by a corrupted step), and 10
GRPO steps of 8 x 8 rollouts per arm. `paper` runs the recipe on a local checkpoint
directory (no SFT). Findings: docs/experiments/tool_judge.md.

    python experiments/tool_judge.py --preset tiny
    python experiments/tool_judge.py --preset smoke
"""

import dataclasses
import json
import time
from pathlib import Path

import numpy as np

from rewardjax import experiment
from rewardjax.data import synthetic
from rewardjax.data.encoding import render_prompt
from rewardjax.data.records import SFTExample
from rewardjax.data.synthetic import arithmetic
from rewardjax.envs.tool_judge import (ToolJudgeConfig, ToolJudgeEnv, judge_accuracy_by_label,
                                       judge_records, judge_trace)
from rewardjax.envs.training import grpo_arm, warm_started_agent
from rewardjax.judges import pointwise_prompt
from rewardjax.recipes import BackboneConfig, SFTConfig
from rewardjax.recipes.rl_arith import TINY_RL_MODEL, TINY_RL_SFT, plot_arms
from rewardjax.recipes.tasks import TINY_RL_TASK
from rewardjax.sharding import MeshConfig
from rewardjax.train.metrics import write_result
from rewardjax.train.rl import RLConfig
from rewardjax.train.state import OptimizerConfig

ARMS = ("tool", "no_tool")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ToolJudgeExperimentConfig:
    """Attributes:
      model, mesh, task: as tool_grpo's.
      sft, sft_buckets: the judge's SFT (`sft.response_window` must hold a trace).
      tool_fraction: share of SFT traces that see the tool's output (the rest see
        `error: no tool` and write the value themselves).
      observation_weight: SFT loss weight of the tool's output tokens (0: left out, as
        the RL loss leaves observations out, so the judge copies the output).
      judge: the environment (calculator limits, the reward's format weight).
      rl, rl_optimizer: GRPO of each arm (`rl.max_new_tokens`: the response slots of
        a rollout: turns, observation and holes).
      max_turns, turn_tokens, observation_tokens: the rollout budgets.
      eval_problems: held-out judge prompts (half labelled Yes) for accuracy.
      arms: which of "tool" and "no_tool" run.
    """

    model: BackboneConfig = TINY_RL_MODEL
    mesh: MeshConfig = MeshConfig()
    task: synthetic.ArithmeticConfig = TINY_RL_TASK
    sft: SFTConfig = dataclasses.replace(TINY_RL_SFT, response_window=64)
    sft_buckets: tuple[int, ...] = (160,)
    tool_fraction: float = 0.5
    observation_weight: float = 0.0
    judge: ToolJudgeConfig = ToolJudgeConfig()
    rl: RLConfig = RLConfig(steps=10, prompts_per_step=8, group_size=8, max_new_tokens=64,
                            prompt_length=104, temperature=1.0, epochs=1, minibatches=1,
                            advantage="grpo", scale_by_std=True, reduction="token_mean",
                            kl_coef=0.0)
    rl_optimizer: OptimizerConfig = OptimizerConfig(lr=5e-5, warmup_steps=2, total_steps=10,
                                                    min_lr_ratio=1.0)
    max_turns: int = 2
    turn_tokens: int = 32
    observation_tokens: int = 16
    eval_problems: int = 256
    arms: tuple[str, ...] = ARMS
    seed: int = 0

    def __post_init__(self):
        if not 0.0 <= self.tool_fraction <= 1.0:
            raise ValueError(f"tool_fraction = {self.tool_fraction!r}: expected a share in [0, 1]")
        if not self.observation_weight >= 0:
            raise ValueError(f"observation_weight = {self.observation_weight!r}: expected >= 0")
        object.__setattr__(self, "arms", tuple(self.arms))
        if not self.arms or any(a not in ARMS for a in self.arms):
            raise ValueError(f"arms = {self.arms!r}: expected a non-empty subset of {ARMS}")


def sft_traces(cfg: ToolJudgeExperimentConfig) -> list[SFTExample]:
    """Judge prompts on claimed answers with `judge_trace` completions; a share
    `tool_fraction` see the tool's output, the rest `error: no tool`."""
    out = []
    for i, s in enumerate(arithmetic.solutions(cfg.sft.num_examples, seed=cfg.seed + 1,
                                               config=cfg.task, split="train")):
        claimed = arithmetic.extract_answer(s.text)
        tool = np.random.default_rng([cfg.seed, i, 5]).random() < cfg.tool_fraction
        out.append(SFTExample(
            prompt=pointwise_prompt(s.problem.question, f"{arithmetic.ANSWER_PREFIX}{claimed}"),
            completion=judge_trace(s.problem, claimed, tool=tool)))
    return out


def _by_label(out: Path, stage: str, arm: str, held_out: list) -> dict[str, float]:
    samples = [json.loads(line) for line in
               (out / f"greedy_{stage}_{arm}.jsonl").read_text().splitlines()]
    return judge_accuracy_by_label(samples, held_out)


def run(cfg: ToolJudgeExperimentConfig, out: Path) -> dict:
    start = time.time()
    out = Path(out)
    backbone, params, eos, rollout = warm_started_agent(cfg, sft_traces(cfg), out)
    tok = backbone.tokenizer
    held_out = judge_records(cfg.eval_problems, seed=cfg.seed + 2, task=cfg.task, split="test")
    pool = judge_records(4096, seed=cfg.seed + 3, task=cfg.task, split="train")
    render = lambda q: render_prompt(tok, q)  # noqa: E731
    end_texts = [tok.decode([i]) for i in eos]
    result: dict = {}
    for arm in cfg.arms:
        judge = dataclasses.replace(cfg.judge, calculator=dataclasses.replace(
            cfg.judge.calculator, tool=arm == "tool"))
        env = ToolJudgeEnv(judge, render=render, end_texts=end_texts)
        before, after = grpo_arm(params, backbone=backbone, env=env, rollout=rollout, rl=cfg.rl,
                                 optimizer=cfg.rl_optimizer, pool=pool, held_out=held_out,
                                 eos=eos, out_dir=out, name=arm)
        for stage, prefix, m in (("sft", "sft_", before), ("rl", "", after)):
            result[f"acc_{prefix}{arm}"] = round(m["pass1"], 4)
            by_label = _by_label(out, stage, arm, held_out)
            for label, claims in (("Yes", "right"), ("No", "wrong")):
                if label in by_label:
                    result[f"acc_{claims}_claims_{prefix}{arm}"] = round(by_label[label], 4)
            result[f"calls_{prefix}{arm}"] = round(m.get("env/calls", 0.0), 3)
            result[f"parsed_{prefix}{arm}"] = round(m.get("env/verdict_parsed", 0.0), 3)
    if len(cfg.arms) == 2:
        result["tool_vs_no_tool_sft"] = round(result["acc_sft_tool"] - result["acc_sft_no_tool"], 4)
        result["tool_vs_no_tool"] = round(result["acc_tool"] - result["acc_no_tool"], 4)
    plot_arms(out, list(cfg.arms), ["reward/mean", "accuracy", "turns/mean", "env/calls"],
              out / "rl_curves.png", title="GRPO of a tool-augmented judge (Themis-style)")
    result["eval_problems"] = cfg.eval_problems
    result["minutes"] = round((time.time() - start) / 60, 2)
    write_result(out, result)
    return result


HEADLINE = ("acc_sft_tool", "acc_sft_no_tool", "acc_tool", "acc_no_tool", "tool_vs_no_tool")

PRESETS = {
    "tiny": ToolJudgeExperimentConfig(),
    "paper": ToolJudgeExperimentConfig(
        model=BackboneConfig(hf_path="checkpoints/qwen2.5-7b-instruct", compute_dtype="bfloat16",
                             remat="full"),
        sft=SFTConfig(steps=0), task=synthetic.ArithmeticConfig(), sft_buckets=(1024,),
        rl=RLConfig(steps=200, prompts_per_step=32, group_size=8, max_new_tokens=512,
                    prompt_length=512, epochs=1, minibatches=1, micro_batches=32,
                    advantage="grpo", reduction="token_mean", kl_coef=0.0),
        rl_optimizer=OptimizerConfig(lr=1e-6, total_steps=200, min_lr_ratio=1.0),
        max_turns=4, turn_tokens=256, observation_tokens=64, eval_problems=500),
}
# Every stage in seconds (SFT, both arms' evaluations and GRPO, curves, RESULT); its
# figures measure nothing.
PRESETS["smoke"] = dataclasses.replace(
    PRESETS["tiny"], model=dataclasses.replace(TINY_RL_MODEL, num_layers=1),
    sft=dataclasses.replace(PRESETS["tiny"].sft, steps=10), eval_problems=8,
    rl=dataclasses.replace(PRESETS["tiny"].rl, steps=2, prompts_per_step=2, group_size=4))


if __name__ == "__main__":
    experiment.main(PRESETS, run, description=__doc__)
