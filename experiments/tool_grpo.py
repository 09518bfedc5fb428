"""GRPO with a Python tool: a policy learns to call a sandboxed interpreter for arithmetic.

Papers: "ToolRL: Reward is All Tool Learning Needs" (arXiv:2504.13958) and
"ReTool: Reinforcement Learning for Strategic Tool Use in LLMs" (arXiv:2504.11536):
an SFT warm start on traces that call a code tool, then outcome-reward RL with
multi-turn rollouts in which the tool's output is appended to the context and masked
out of the loss, raises accuracy above the SFT start and above RL without the tool.

What it reproduces: held-out greedy pass@1 with the tool after GRPO is above the SFT
start with the tool, and above the same recipe run without the tool (calls answer
`error: no tool`), both from one warm start in the same run.

Deviations of the `tiny` preset: grpo_arith's ~1M-parameter model, task and 500-step
warm start; the tool is `rewardjax.envs.calculator` (Python run by
`rewardjax.envs.sandbox`); 30% of the SFT traces call the tool and the rest give the
bare answer, so greedy decoding after SFT answers directly and RL must learn to call
(ReTool's observation); the tool's output tokens are left out of the SFT loss as they
are out of the RL loss; the reward is the 0/1 answer (ToolRL's fine-grained reward is
`calculator.tool_weight`, off here); 3 turns; 30 GRPO steps at lr 1e-4.
Findings, including runs where the effect did not appear: docs/experiments/tool_grpo.md.
`paper` runs the same recipe on a local checkpoint directory (no SFT), with ToolRL's
reward added (`tool_weight=1`).

    python experiments/tool_grpo.py --preset tiny
    python experiments/tool_grpo.py --preset smoke
"""

import dataclasses
import time
from pathlib import Path

import numpy as np

from rewardjax import experiment
from rewardjax.data import synthetic
from rewardjax.data.encoding import render_prompt
from rewardjax.data.records import SFTExample
from rewardjax.data.synthetic import arithmetic
from rewardjax.envs.calculator import CalculatorConfig, CalculatorEnv, tool_trace
from rewardjax.envs.training import grpo_arm, warm_started_agent
from rewardjax.recipes import BackboneConfig, SFTConfig
from rewardjax.recipes.rl_arith import TINY_RL_MODEL, TINY_RL_SFT, plot_arms
from rewardjax.recipes.tasks import TINY_RL_TASK
from rewardjax.sharding import MeshConfig
from rewardjax.train.metrics import write_result
from rewardjax.train.rl import RLConfig
from rewardjax.train.state import OptimizerConfig

# grpo_arith's task and warm start: the 1M model learns to copy its operands in 500 steps
# (two-digit operands, or four and five operations, it still miscopies after 300-400 steps:
# docs/experiments/tool_grpo.md).
TOOL_TASK = TINY_RL_TASK
TOOL_SFT = TINY_RL_SFT


@dataclasses.dataclass(frozen=True, kw_only=True)
class ToolGRPOConfig:
    """Attributes:
      model, mesh, task, sft, sft_buckets: as `RLRecipe`'s.
      tool_fraction: share of SFT traces that call the tool (the rest answer directly).
      miscopied: share of the tool traces whose call has one operand wrong (`sft_traces`).
      observation_weight: SFT loss weight of the tool's output tokens in the traces
        (0 leaves them out, as the RL loss leaves out observations).
      rl: the GRPO settings; `rl.max_new_tokens` is the response slots of a rollout
        (turns, observations and the holes of waiting rows).
      max_turns, turn_tokens, observation_tokens: the rollout budgets.
      calculator: the tool environment (the no-tool arm sets `tool=False`).
      eval_problems: held-out problems for greedy pass@1.
      arms: which of "tool" and "no_tool" run (both for the comparison).
    """

    model: BackboneConfig = TINY_RL_MODEL
    mesh: MeshConfig = MeshConfig()
    task: synthetic.ArithmeticConfig = TOOL_TASK
    sft: SFTConfig = TOOL_SFT
    sft_buckets: tuple[int, ...] = (96,)
    tool_fraction: float = 0.3
    miscopied: float = 0.0
    observation_weight: float = 0.0
    rl: RLConfig = RLConfig(steps=30, prompts_per_step=8, group_size=8, max_new_tokens=132,
                            prompt_length=64, temperature=1.0, epochs=1, minibatches=1,
                            advantage="grpo", scale_by_std=True, reduction="token_mean",
                            kl_coef=0.0)
    rl_optimizer: OptimizerConfig = OptimizerConfig(lr=1e-4, warmup_steps=5, total_steps=30,
                                                    min_lr_ratio=1.0)
    max_turns: int = 3
    turn_tokens: int = 36
    observation_tokens: int = 12
    calculator: CalculatorConfig = CalculatorConfig()
    eval_problems: int = 128
    arms: tuple[str, ...] = ("tool", "no_tool")
    seed: int = 0

    def __post_init__(self):
        if not 0.0 <= self.tool_fraction <= 1.0:
            raise ValueError(f"tool_fraction must be in [0, 1], got {self.tool_fraction}")
        if not self.observation_weight >= 0:
            raise ValueError(f"observation_weight must be >= 0, got {self.observation_weight}")
        object.__setattr__(self, "arms", tuple(self.arms))
        if not self.arms or any(a not in ("tool", "no_tool") for a in self.arms):
            raise ValueError(f"arms must be a non-empty subset of ('tool', 'no_tool'), got "
                             f"{self.arms}")


def sft_traces(cfg: ToolGRPOConfig) -> list[SFTExample]:
    """Questions with a tool-calling trace (share `tool_fraction`) or the bare answer.

    A share `miscopied` of the tool traces call the tool with one operand off by 1..9 and
    answer with that call's output, so the answer line must copy the output even when
    the output tokens are trained on (`observation_weight > 0`, where the model could
    predict them from the question instead). Off in `tiny`, which leaves the output out
    of the loss."""
    out = []
    for i, p in enumerate(arithmetic.problems(cfg.sft.num_examples, seed=cfg.seed + 1,
                                              config=cfg.task, split="train")):
        rng = np.random.default_rng([cfg.seed, i, 7])
        if rng.random() >= cfg.tool_fraction:
            out.append(SFTExample(prompt=p.question,
                                  completion=f"{arithmetic.ANSWER_PREFIX}{p.answer}"))
            continue
        called = p
        if rng.random() < cfg.miscopied:
            j = int(rng.integers(len(p.operands)))
            operands = list(p.operands)
            operands[j] += int(rng.integers(1, 10))
            called = dataclasses.replace(p, operands=tuple(operands))
        trace = tool_trace(called)
        out.append(SFTExample(prompt=p.question, completion=trace))
    return out


def run(cfg: ToolGRPOConfig, out: Path) -> dict:
    start = time.time()
    out = Path(out)
    backbone, params, eos, rollout = warm_started_agent(cfg, sft_traces(cfg), out)
    tok = backbone.tokenizer
    held_out = synthetic.rl_prompts(cfg.eval_problems, seed=cfg.seed + 2, config=cfg.task,
                                    split="test")
    pool = synthetic.rl_prompts(4096, seed=cfg.seed + 3, config=cfg.task, split="train")
    render = lambda q: render_prompt(tok, q)  # noqa: E731
    result: dict = {}
    arms = {name: calc for name, calc in
            (("tool", cfg.calculator), ("no_tool", dataclasses.replace(cfg.calculator, tool=False)))
            if name in cfg.arms}
    for name, calc in arms.items():
        before, after = grpo_arm(params, backbone=backbone,
                                 env=CalculatorEnv(calc, render=render), rollout=rollout,
                                 rl=cfg.rl, optimizer=cfg.rl_optimizer, pool=pool,
                                 held_out=held_out, eos=eos, out_dir=out, name=name)
        for stage, m in (("sft_", before), ("", after)):
            result[f"pass1_{stage}{name}"] = round(m["pass1"], 4)
            result[f"calls_{stage}{name}"] = round(m.get("env/calls", 0.0), 3)
    if "tool" in arms:
        result["gain_tool"] = round(result["pass1_tool"] - result["pass1_sft_tool"], 4)
    if len(arms) == 2:
        result["tool_vs_no_tool"] = round(result["pass1_tool"] - result["pass1_no_tool"], 4)
    plot_arms(out, list(arms), ["reward/mean", "accuracy", "turns/mean", "env/calls"],
              out / "rl_curves.png", title="GRPO with a Python tool (ToolRL/ReTool-style)")
    result["minutes"] = round((time.time() - start) / 60, 2)
    write_result(out, result)
    return result


HEADLINE = ("pass1_sft_tool", "pass1_tool", "gain_tool", "pass1_no_tool",
            "tool_vs_no_tool")

PRESETS = {
    "tiny": ToolGRPOConfig(),
    "paper": ToolGRPOConfig(
        model=BackboneConfig(hf_path="checkpoints/qwen2.5-7b-instruct", compute_dtype="bfloat16",
                             remat="full"),
        sft=SFTConfig(steps=0), task=synthetic.ArithmeticConfig(),
        rl=RLConfig(steps=200, prompts_per_step=32, group_size=8, max_new_tokens=1024,
                    prompt_length=512, epochs=1, minibatches=1, micro_batches=32,
                    advantage="grpo", reduction="token_mean", kl_coef=0.0),
        rl_optimizer=OptimizerConfig(lr=1e-6, total_steps=200, min_lr_ratio=1.0),
        max_turns=8, turn_tokens=256, observation_tokens=64,
        calculator=CalculatorConfig(tool_weight=1.0), eval_problems=500),
}
# Every stage in seconds (SFT, evaluation with the tool, multi-turn GRPO for both arms,
# curves, RESULT); its figures measure nothing.
PRESETS["smoke"] = dataclasses.replace(
    PRESETS["tiny"], model=dataclasses.replace(TINY_RL_MODEL, num_layers=1),
    sft=dataclasses.replace(TOOL_SFT, steps=10), eval_problems=8,
    rl=dataclasses.replace(PRESETS["tiny"].rl, steps=2, prompts_per_step=2, group_size=4))


if __name__ == "__main__":
    experiment.main(PRESETS, run, description=__doc__)
