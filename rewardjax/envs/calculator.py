"""A Python tool for arithmetic: the model calls it, the sandbox runs the code.

A turn that ends with a call

    <call>python: print((12+7)*3-5)</call>

runs the code in `rewardjax.envs.sandbox` (a separate process with time, memory and
process limits; never in the trainer's process) and answers with its output

    <out>52</out>\\n

(or `<out>error: <reason></out>` for a failed run, an unknown tool or a call past
`max_calls`). A turn without a call is the final answer: the rollout ends with reward
1 when its `Answer: N` line is right (`synthetic.arithmetic.is_correct` on the whole
transcript; with `grader="math"`, `rewards.MathAnswerReward` on the model's own text
against the record's `answer`, e.g. a GSM8K solution ending "#### 18"), plus `tool_weight` times the ToolRL reward of its calls against the
problem's one ground-truth call (`tool_rewards`, "ToolRL: Reward is All Tool Learning
Needs", arXiv:2504.13958). All calls of one `step` run concurrently (`run_many`).

`tool=False` keeps the prompts, the format and the rewards but never runs anything
(every call answers `<out>error: no tool</out>`): the same recipe without the tool.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Any, Callable, Mapping, Sequence

from rewardjax.data.synthetic import arithmetic
from rewardjax.envs import sandbox
from rewardjax.envs.base import Environment, Transition, Turn, require_fields
from rewardjax.envs.tool_rewards import ToolCall, tags_in_order, tool_reward
from rewardjax.rewards.math_answer import MathAnswerReward

CALL_OPEN, CALL_CLOSE = "<call>", "</call>"
OUT_OPEN, OUT_CLOSE = "<out>", "</out>"
TOOL = "python"
_CALL = re.compile(re.escape(CALL_OPEN) + r"\s*([A-Za-z_]\w*)\s*:\s*(.*?)" + re.escape(CALL_CLOSE),
                   re.S)


def parse_calls(text: str) -> list[ToolCall]:
    """Every `<call>name: code</call>` in `text`, in order, as `ToolCall(name, {"code"})`."""
    return [ToolCall(m.group(1), {"code": m.group(2).strip()}) for m in _CALL.finditer(text)]


def expression(problem: arithmetic.Problem) -> str:
    """The problem's chain as one Python expression, brackets only where needed:
    "Start with 12. Add 7. Multiply by 3. Subtract 5." -> "(12+7)*3-5"."""
    expr, additive = str(problem.start), False
    for op, operand in zip(problem.ops, problem.operands):
        if op == "*" and additive:
            expr, additive = f"({expr})", False
        expr = f"{expr}{op}{operand}"
        additive = additive or op in "+-"
    return expr


def tool_call(problem: arithmetic.Problem) -> str:
    """The ground-truth call text for `problem`."""
    return f"{CALL_OPEN}{TOOL}: print({expression(problem)}){CALL_CLOSE}"


def tool_trace(problem: arithmetic.Problem) -> str:
    """A worked response that calls the tool once: call, its output, answer line."""
    return (f"{tool_call(problem)}{OUT_OPEN}{problem.answer}{OUT_CLOSE}\n"
            f"{arithmetic.ANSWER_PREFIX}{problem.answer}")


def parse_problem(question: str) -> arithmetic.Problem:
    """The `Problem` a synthetic question states (raises naming the question if none)."""
    m = re.fullmatch(r"Start with (\d+)\. (.*) What is the result\?", question.strip())
    if m is None:
        raise ValueError(f"not a synthetic arithmetic question: {question!r}")
    words = {"Add": "+", "Subtract": "-", "Multiply by": "*"}
    ops, operands = [], []
    for phrase in re.findall(r"(Add|Subtract|Multiply by) (\d+)\.", m.group(2)):
        ops.append(words[phrase[0]])
        operands.append(int(phrase[1]))
    return arithmetic.Problem(start=int(m.group(1)), ops=tuple(ops), operands=tuple(operands))


@dataclasses.dataclass(frozen=True, kw_only=True)
class CalculatorConfig:
    """Attributes:
      tool: run calls (False: every call answers an error, the no-tool baseline).
      limits: the sandbox limits of one call.
      max_workers: calls run at once.
      max_calls: calls a rollout may make; later ones answer an error.
      output_chars: characters of a call's stdout kept in the observation.
      tool_weight: weight of the ToolRL reward (R in [-3, 4]) added to the answer's.
      isolation: the sandbox's isolation mode ("auto", "namespaces", "rlimits").
      grader: "arithmetic" (the synthetic task's integer `Answer:` line) or "math"
        (math-verify against any reference, e.g. GSM8K's "#### 18").
    """

    tool: bool = True
    limits: sandbox.Limits = sandbox.Limits(wall_s=5.0, cpu_s=2.0, memory_mb=256,
                                            max_processes=4, output_bytes=4096, disk_mb=4)
    max_workers: int = 8
    max_calls: int = 2
    output_chars: int = 24
    tool_weight: float = 0.0
    isolation: str = "auto"
    grader: str = "arithmetic"

    def __post_init__(self):
        for name in ("max_workers", "max_calls", "output_chars"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v <= 0:
                raise ValueError(f"CalculatorConfig.{name} must be a positive int, got {v!r}")
        if not self.tool_weight >= 0:
            raise ValueError(f"CalculatorConfig.tool_weight must be >= 0, got {self.tool_weight!r}")
        if self.grader not in ("arithmetic", "math"):
            raise ValueError(f"CalculatorConfig.grader must be 'arithmetic' or 'math', got "
                             f"{self.grader!r}")
        if self.tool_weight and self.grader != "arithmetic":
            raise ValueError("CalculatorConfig.tool_weight needs the synthetic task's ground-"
                             "truth call (grader='arithmetic'); set tool_weight=0 for "
                             f"grader={self.grader!r}")
        if self.isolation not in ("auto", "namespaces", "rlimits"):
            raise ValueError(f"CalculatorConfig.isolation must be 'auto', 'namespaces' or "
                             f"'rlimits', got {self.isolation!r}")


class CalculatorEnv(Environment):
    """The arithmetic task with a sandboxed Python tool; see the module docstring.

    Records carry `prompt` (the question) and `answer`; `render` turns the question into
    the prompt text (e.g. the chat template; default: the question as is).
    """

    def __init__(self, config: CalculatorConfig = CalculatorConfig(), *,
                 render: Callable[[str], str] = lambda q: q):
        self.config, self.render = config, render
        self._math = MathAnswerReward() if config.grader == "math" else None

    def reset(self, record: Mapping[str, Any]) -> str:
        require_fields(record, ("prompt", "answer"), "CalculatorEnv")
        return self.render(record["prompt"])

    def step(self, turns: Sequence[Turn]) -> list[Transition]:
        cfg = self.config
        out: list[Transition | None] = [None] * len(turns)
        runs: list[tuple[int, str]] = []
        for i, t in enumerate(turns):
            calls = parse_calls(t.text)
            if not calls:
                out[i] = self._final(t)
                continue
            name, code = calls[-1].name, calls[-1].arguments["code"]
            previous = sum(len(parse_calls(x)) for x in t.transcript[::2])
            if name != TOOL:
                out[i] = _observe(f"error: unknown tool {name}", "env/unknown_tool")
            elif previous >= cfg.max_calls:
                out[i] = _observe("error: too many calls", "env/over_calls")
            elif not cfg.tool:
                out[i] = _observe("error: no tool", "env/calls")
            else:
                runs.append((i, code))
        results = sandbox.run_many([sandbox.PythonProgram(source=c) for _, c in runs],
                                   cfg.limits, max_workers=cfg.max_workers,
                                   isolation=cfg.isolation) if runs else []
        for (i, _), res in zip(runs, results):
            text = (res.stdout.strip()[:cfg.output_chars] if res.ok
                    else f"error: {res.reason.value}")
            out[i] = Transition(observation=f"{OUT_OPEN}{text}{OUT_CLOSE}\n", reward=0.0,
                                done=False,
                                info={"env/calls": 1.0, "env/call_errors": float(not res.ok)})
        return out

    def _final(self, t: Turn) -> Transition:
        model_text = "".join(t.transcript[::2]) + t.text
        if self._math is not None:
            correct = self._math([t.record["prompt"]], [model_text],
                                 answer=[str(t.record["answer"])])[0] > 0.5
        else:
            correct = arithmetic.is_correct("".join(t.transcript) + t.text, t.record["answer"])
        reward = float(correct)
        info = {"env/correct": reward}
        if self.config.tool_weight:
            truth = parse_calls(tool_call(parse_problem(t.record["prompt"])))
            r = tool_reward(parse_calls(model_text), truth,
                            format_ok=answer_format_ok(model_text))
            reward += self.config.tool_weight * r.total
            info["env/tool_reward"] = r.total
        return Transition(observation="", reward=reward, done=True, info=info)


def answer_format_ok(model_text: str) -> bool:
    """The layout the task asks for: every call closed, then one answer line last."""
    tags = [CALL_OPEN, CALL_CLOSE] * model_text.count(CALL_OPEN)
    tail = model_text.rsplit(CALL_CLOSE, 1)[-1]
    return (tags_in_order(model_text, tags) and model_text.count(CALL_CLOSE) == len(tags) // 2
            and arithmetic.extract_answer(tail) is not None)


def _observe(text: str, counter: str) -> Transition:
    return Transition(observation=f"{OUT_OPEN}{text}{OUT_CLOSE}\n", reward=0.0, done=False,
                      info={counter: 1.0})
