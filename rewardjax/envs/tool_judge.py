"""A judge that may call the calculator before its verdict (Themis-style).

"Tool-Augmented Reward Modeling" (Li et al., arXiv:2310.01045) lets a reward model
act before it scores: a thought, a tool call, the tool's observation, a rationale, then
the reward. Here the judge is the pointwise generative judge of `rewardjax.judges`
(prompt `judges.pointwise_prompt`, verdict `Verdict: Yes|No` parsed strictly), the
tool is the sandboxed Python calculator of `rewardjax.envs.calculator`, and the
multi-turn driver (`rewardjax.envs.rollout`) runs the judge:

    <call>python: print(6-2+1+1)</call>          the judge recomputes the question
    <out>6</out>                                  the sandbox's answer (not trained on)
    12 vs 6 wrong                                 claimed value vs recomputed value
    Verdict: No

The response judged is a claimed final answer (`Answer: M`, the last line of a
synthetic arithmetic solution, half of them wrong). With `tool=False` every call is
answered `<out>error: no tool</out>` and the judge must write the recomputed value
itself: the same recipe without the tool (`judge_trace(..., tool=False)`).

The final turn's reward is `judges.judge_training_reward` (verdict matches the
record's `label`, plus `format_weight` when it parses), the judge-correct reward of
RM-R1-style GRPO; `info["env/correct"]` is the verdict match, so the driver's pass@1
is the judge's accuracy.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from rewardjax.data.synthetic import arithmetic
from rewardjax.envs.base import Environment, Transition, Turn, require_fields
from rewardjax.envs.calculator import (OUT_CLOSE, OUT_OPEN, CalculatorConfig, CalculatorEnv,
                                      parse_calls, tool_call)
from rewardjax.judges import formats
from rewardjax.judges.rewards import judge_training_reward

NO_TOOL = "error: no tool"


def claimed_answer(solution_text: str) -> int:
    """The value a solution's `Answer:` line claims (raises naming the text if none)."""
    value = arithmetic.extract_answer(solution_text)
    if value is None:
        raise ValueError(f"claimed_answer: no 'Answer: N' line in {solution_text!r}")
    return value


def judge_records(n: int, *, seed: int, task: arithmetic.ArithmeticConfig, split: str,
                  error_rate: float = 0.5) -> list[dict[str, Any]]:
    """Judge prompts on claimed answers of `arithmetic.solutions` (a share `error_rate`
    of them wrong), the arithmetic part of Themis's evaluation (arXiv:2310.01045) made
    synthetic: records with `prompt` (a pointwise judge prompt), `label`
    ("Yes"/"No"), `question` and `claimed`."""
    out = []
    for s in arithmetic.solutions(n, seed=seed, config=task, split=split, error_rate=error_rate):
        claimed = claimed_answer(s.text)
        out.append({"prompt": formats.pointwise_prompt(s.problem.question,
                                                       f"{arithmetic.ANSWER_PREFIX}{claimed}"),
                    "label": "Yes" if claimed == s.problem.answer else "No",
                    "question": s.problem.question, "claimed": claimed})
    return out


def judge_trace(problem: arithmetic.Problem, claimed: int, *, tool: bool) -> str:
    """The judgment to imitate: call the calculator on the question's expression, read
    its output (or `error: no tool`), write "<claimed> vs <value> right|wrong", then the
    verdict (Themis, arXiv:2310.01045: action, observation, rationale, reward).

    The comparison line puts both numbers just before the word that compares them,
    as `judges.traces.pairwise_trace` does for the same reason: a small model reads
    what decides from a fixed distance.
    """
    value = problem.answer
    observation = str(value) if tool else NO_TOOL
    right = claimed == value
    return (f"{tool_call(problem)}{OUT_OPEN}{observation}{OUT_CLOSE}\n"
            + formats.judgment_text(f"{claimed} vs {value} {'right' if right else 'wrong'}",
                                    "Yes" if right else "No"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class ToolJudgeConfig:
    """Attributes:
      calculator: the tool (its `tool=False` is the judge without the tool).
      format_weight: weight of the parse reward in `judges.judge_training_reward`.
    """

    calculator: CalculatorConfig = CalculatorConfig(max_calls=1)
    format_weight: float = 0.5

    def __post_init__(self):
        if not isinstance(self.calculator, CalculatorConfig):
            raise ValueError(f"ToolJudgeConfig.calculator: expected a CalculatorConfig, got "
                             f"{type(self.calculator).__name__}")
        if not self.format_weight >= 0:
            raise ValueError(f"ToolJudgeConfig.format_weight = {self.format_weight!r}: "
                             "expected >= 0")


class ToolJudgeEnv(Environment):
    """A pointwise judge with the calculator (Themis, "Tool-Augmented Reward Modeling",
    arXiv:2310.01045); see the module docstring.

    Records carry `prompt` (a judge prompt) and `label` ("Yes"/"No"); `render` turns
    the prompt into the text the judge continues (e.g. the chat template). `end_texts`
    are the decoded eos tokens: the driver keeps special tokens in the text, and the
    strict verdict parse would read "Yes<|im_end|>" as an invalid choice.
    """

    def __init__(self, config: ToolJudgeConfig = ToolJudgeConfig(), *,
                 render: Callable[[str], str] = lambda q: q, end_texts: Sequence[str] = ()):
        self.config, self.render = config, render
        self.end_texts = tuple(t for t in end_texts if t)
        self.tool = CalculatorEnv(config.calculator, render=render)
        self.reward = judge_training_reward(formats.POINTWISE_CHOICES,
                                            format_weight=config.format_weight)

    def reset(self, record: Mapping[str, Any]) -> str:
        require_fields(record, ("prompt", "label"), "ToolJudgeEnv")
        if record["label"] not in formats.POINTWISE_CHOICES:
            raise ValueError(f"ToolJudgeEnv: record label {record['label']!r}: expected one of "
                             f"{formats.POINTWISE_CHOICES}")
        return self.render(record["prompt"])

    def step(self, turns: Sequence[Turn]) -> list[Transition]:
        calls = [i for i, t in enumerate(turns) if parse_calls(t.text)]
        out: list[Transition | None] = [None] * len(turns)
        # The calculator answers every call turn (in one concurrent batch); it never
        # sees a final turn, whose reward is the judge's, not the calculator's.
        for i, tr in zip(calls, self.tool.step([turns[i] for i in calls])):
            out[i] = tr
        finals = [i for i in range(len(turns)) if out[i] is None]
        if finals:
            texts = [self._strip(turns[i].text) for i in finals]
            r = self.reward([turns[i].record["prompt"] for i in finals], texts,
                            label=[turns[i].record["label"] for i in finals])
            for j, i in enumerate(finals):
                out[i] = Transition(observation="", reward=float(r.total[j]), done=True,
                                    info={"env/correct": float(r.values["verdict"][j]),
                                          "env/verdict_parsed": float(r.values["format"][j])
                                          if "format" in r.values else float(
                                              formats.parse_verdict(
                                                  texts[j], choices=formats.POINTWISE_CHOICES).ok)})
        return out

    def _strip(self, text: str) -> str:
        for end in self.end_texts:
            text = text.replace(end, "")
        return text


def judge_accuracy_by_label(samples: Sequence[Mapping[str, Any]],
                            records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Accuracy on the records labelled Yes (right claims) and on those labelled No
    (wrong claims), from `env_greedy` samples in the order of `records`: a judge that
    always gives one verdict scores 0.5 overall on balanced data, and 1 and 0 here. A
    label no record has is left out."""
    if len(samples) != len(records):
        raise ValueError(f"judge_accuracy_by_label: {len(samples)} samples for "
                         f"{len(records)} records")
    correct = np.array([s["correct"] for s in samples], bool)
    labels = np.array([r["label"] for r in records])
    return {lab: float(correct[labels == lab].mean()) for lab in formats.POINTWISE_CHOICES
            if (labels == lab).any()}
