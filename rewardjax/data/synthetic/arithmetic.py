"""Multi-step arithmetic: a seeded reasoning task small models learn in minutes on CPU.

A problem is a start value and a chain of operations:

    Start with 12. Add 7. Multiply by 3. Subtract 5. What is the result?

Its solution has one step per line, each `<value> <op> <operand> = <result>` with op
`+`, `-` or `*`, and a final answer line (also a step, for step labels):

    12 + 7 = 19
    19 * 3 = 57
    57 - 5 = 52
    Answer: 52

Every intermediate result stays in [0, max_value]. A corrupted solution has a first
wrong step `first_error`: either its result is off by 1..max_error ("result") or it
applies a different operand or operation than the problem states, computed correctly
("misread"); later steps compute
correctly from the wrong value, so the error propagates to a wrong final answer and
every step before `first_error` is right. Hard step labels are 1 before the first
error and 0 from it on (ProcessBench, arXiv:2412.06559).

Determinism: item i of any generator with seed s is drawn from
`np.random.default_rng([s, i, ...])`, so it does not depend on how many items are
asked for. `split="train"` / `"test"` keeps problems whose question hashes (CRC32) to
the train / test side (`test_fraction`), so the two splits never share a problem.
"""

from __future__ import annotations

import dataclasses
import operator
import re
import zlib

import numpy as np

from rewardjax.data.records import PreferencePair, PromptWithAnswer, SFTExample, StepSolution

OPS = {"+": operator.add, "-": operator.sub, "*": operator.mul}
_PHRASES = {"+": "Add {}.", "-": "Subtract {}.", "*": "Multiply by {}."}
CORRUPTIONS = ("result", "misread")
SPLITS = ("all", "train", "test")
ANSWER_PREFIX = "Answer: "
_ANSWER = re.compile(r"Answer:\s*(-?\d+)(?!\d)")


@dataclasses.dataclass(frozen=True, kw_only=True)
class ArithmeticConfig:
    """Difficulty knobs.

    Attributes:
      min_steps, max_steps: operations per problem (uniform in the range).
      min_operand, max_operand: operand range (>= 1, so every step changes or keeps the
        value injectively and an error always reaches the final answer).
      max_start: start values are in [0, max_start].
      max_value: every intermediate result of a correct or corrupted solution is in
        [0, max_value].
      ops: operations drawn from "+", "-", "*".
      max_error: a "result" corruption is off by 1..max_error.
      corruptions: kinds of first errors to draw from: "result" (wrong arithmetic) and/or
        "misread" (another operand or operation than the problem's, computed correctly).
      test_fraction: share of the problem space in the "test" split.
    """

    min_steps: int = 2
    max_steps: int = 4
    min_operand: int = 1
    max_operand: int = 9
    max_start: int = 20
    max_value: int = 99
    ops: tuple[str, ...] = ("+", "-", "*")
    max_error: int = 9
    corruptions: tuple[str, ...] = ("result",)
    test_fraction: float = 0.1

    def __post_init__(self):
        if not 1 <= self.min_steps <= self.max_steps:
            raise ValueError("ArithmeticConfig needs 1 <= min_steps <= max_steps, got "
                             f"{self.min_steps}, {self.max_steps}")
        if not 1 <= self.min_operand <= self.max_operand:
            raise ValueError("ArithmeticConfig needs 1 <= min_operand <= max_operand, got "
                             f"{self.min_operand}, {self.max_operand}")
        if not 0 <= self.max_start <= self.max_value:
            raise ValueError("ArithmeticConfig needs 0 <= max_start <= max_value, got "
                             f"{self.max_start}, {self.max_value}")
        if self.max_value < self.max_operand:
            raise ValueError(f"ArithmeticConfig.max_value ({self.max_value}) must be >= "
                             f"max_operand ({self.max_operand}) so some step always fits")
        object.__setattr__(self, "ops", tuple(self.ops))
        if not self.ops or any(op not in OPS for op in self.ops):
            raise ValueError(f"ArithmeticConfig.ops must be a non-empty subset of {tuple(OPS)}, "
                             f"got {self.ops}")
        if "+" not in self.ops and "-" not in self.ops:
            raise ValueError("ArithmeticConfig.ops needs '+' or '-' (with only '*' a chain can "
                             "leave no valid step)")
        if self.max_error < 1:
            raise ValueError(f"ArithmeticConfig.max_error must be >= 1, got {self.max_error}")
        object.__setattr__(self, "corruptions", tuple(self.corruptions))
        if not self.corruptions or any(c not in CORRUPTIONS for c in self.corruptions):
            raise ValueError(f"ArithmeticConfig.corruptions must be a non-empty subset of "
                             f"{CORRUPTIONS}, got {self.corruptions}")
        if not 0 < self.test_fraction < 1:
            raise ValueError(f"ArithmeticConfig.test_fraction must be in (0, 1), got "
                             f"{self.test_fraction}")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Problem:
    """A start value and operations applied in order."""

    start: int
    ops: tuple[str, ...]
    operands: tuple[int, ...]

    def __post_init__(self):
        if len(self.ops) != len(self.operands) or not self.ops:
            raise ValueError(f"Problem needs as many ops as operands (>= 1), got {self.ops}, "
                             f"{self.operands}")
        if any(op not in OPS for op in self.ops):
            raise ValueError(f"Problem ops must be in {tuple(OPS)}, got {self.ops}")

    @property
    def question(self) -> str:
        ops = " ".join(_PHRASES[op].format(b) for op, b in zip(self.ops, self.operands))
        return f"Start with {self.start}. {ops} What is the result?"

    @property
    def values(self) -> tuple[int, ...]:
        """The start value and the result after each operation."""
        values = [self.start]
        for op, b in zip(self.ops, self.operands):
            values.append(OPS[op](values[-1], b))
        return tuple(values)

    @property
    def answer(self) -> int:
        return self.values[-1]


@dataclasses.dataclass(frozen=True, kw_only=True)
class Solution:
    """Solution lines (the last is `Answer: N`) and the first wrong line (-1: none)."""

    problem: Problem
    steps: tuple[str, ...]
    first_error: int

    @property
    def text(self) -> str:
        return "\n".join(self.steps)

    @property
    def is_correct(self) -> bool:
        return self.first_error == -1

    @property
    def labels(self) -> tuple[float, ...]:
        """Hard step labels: 1 before the first error, 0 from it on."""
        n = len(self.steps)
        first = n if self.first_error == -1 else self.first_error
        return tuple(1.0 if i < first else 0.0 for i in range(n))


def extract_answer(text: str) -> int | None:
    """The integer after the last `Answer:` in `text`, or None.

    >>> extract_answer("12 + 7 = 19\\nAnswer: 19")
    19
    """
    matches = _ANSWER.findall(text)
    return int(matches[-1]) if matches else None


def is_correct(text: str, answer: int | str) -> bool:
    """Whether `text`'s extracted answer equals the reference `answer`."""
    got = extract_answer(text)
    return got is not None and got == int(answer)


def check_steps(problem: Problem, text: str) -> int:
    """Index of the first line of `text` that is not the correct next step, -1 if none.

    Lines are the steps of `problem` followed by the answer line; a missing or extra
    line is an error at its index.
    """
    expected = solve(problem).steps
    lines = text.split("\n")
    for i in range(max(len(lines), len(expected))):
        if i >= len(lines) or i >= len(expected) or lines[i].strip() != expected[i]:
            return i
    return -1


def _step_line(a: int, op: str, b: int, result: int) -> str:
    return f"{a} {op} {b} = {result}"


def _lines(start: int, ops, operands, *, override: dict | None = None) -> tuple[str, ...]:
    """Solution lines; `override` = {step: (op, operand, result)} injects the first error."""
    value, lines = start, []
    for j, (op, b) in enumerate(zip(ops, operands)):
        result = OPS[op](value, b)
        if override and j in override:
            op, b, result = override[j]
        lines.append(_step_line(value, op, b, result))
        value = result
    lines.append(f"{ANSWER_PREFIX}{value}")
    return tuple(lines)


def solve(problem: Problem) -> Solution:
    """The correct step-by-step solution."""
    return Solution(problem=problem, steps=_lines(problem.start, problem.ops, problem.operands),
                    first_error=-1)


def _in_range(value: int, config: ArithmeticConfig) -> bool:
    return 0 <= value <= config.max_value


def _draw_problem(rng: np.random.Generator, config: ArithmeticConfig) -> Problem:
    n = int(rng.integers(config.min_steps, config.max_steps + 1))
    value = int(rng.integers(0, config.max_start + 1))
    start, ops, operands = value, [], []
    operand_range = range(config.min_operand, config.max_operand + 1)
    for _ in range(n):
        choices = {op: [b for b in operand_range if _in_range(OPS[op](value, b), config)]
                   for op in config.ops}
        valid = [op for op in config.ops if choices[op]]
        op = valid[int(rng.integers(len(valid)))]
        b = choices[op][int(rng.integers(len(choices[op])))]
        ops.append(op)
        operands.append(b)
        value = OPS[op](value, b)
    return Problem(start=start, ops=tuple(ops), operands=tuple(operands))


def _in_split(problem: Problem, split: str, config: ArithmeticConfig) -> bool:
    if split == "all":
        return True
    is_test = zlib.crc32(problem.question.encode()) % 10_000 < config.test_fraction * 10_000
    return is_test == (split == "test")


def problem(index: int, *, seed: int, config: ArithmeticConfig = ArithmeticConfig(),
            split: str = "all") -> Problem:
    """Problem `index` of the stream with `seed` (rejection-sampled into `split`)."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    for attempt in range(10_000):
        p = _draw_problem(np.random.default_rng([seed, index, attempt]), config)
        if _in_split(p, split, config):
            return p
    raise RuntimeError(f"no problem in split {split!r} after 10000 draws; the problem space "
                       f"of {config} is too small")


def problems(n: int, *, seed: int, config: ArithmeticConfig = ArithmeticConfig(),
             split: str = "all") -> list[Problem]:
    """The first `n` problems of the stream with `seed`."""
    return [problem(i, seed=seed, config=config, split=split) for i in range(n)]


def corrupt(prob: Problem, rng: np.random.Generator,
            config: ArithmeticConfig = ArithmeticConfig()) -> Solution:
    """A solution whose first wrong step is drawn uniformly among those that admit an
    error keeping every later value in [0, max_value]."""
    values = prob.values
    candidates = []  # (step, op, operand, wrong result) for every admissible first error
    for j, (op, b) in enumerate(zip(prob.ops, prob.operands)):
        wrong = []
        if "result" in config.corruptions:
            right = values[j + 1]
            wrong += [(op, b, right + d) for d in range(-config.max_error, config.max_error + 1)
                      if d != 0]
        if "misread" in config.corruptions:
            wrong += [(other, c, OPS[other](values[j], c)) for other in config.ops
                      for c in range(config.min_operand, config.max_operand + 1)
                      if (other, c) != (op, b)]
        for step_op, operand, result in wrong:
            if result != values[j + 1] and _chain_in_range(prob, j, result, config):
                candidates.append((j, step_op, operand, result))
    if not candidates:
        raise ValueError(f"no admissible corruption of {prob} under {config}")
    # Uniform over the step first, then over that step's errors, so short-range steps
    # are not under-represented.
    steps = sorted({c[0] for c in candidates})
    j = steps[int(rng.integers(len(steps)))]
    at_j = [c for c in candidates if c[0] == j]
    _, step_op, operand, result = at_j[int(rng.integers(len(at_j)))]
    lines = _lines(prob.start, prob.ops, prob.operands, override={j: (step_op, operand, result)})
    return Solution(problem=prob, steps=lines, first_error=j)


def _chain_in_range(prob: Problem, j: int, result: int, config: ArithmeticConfig) -> bool:
    value = result
    if not _in_range(value, config):
        return False
    for op, b in zip(prob.ops[j + 1:], prob.operands[j + 1:]):
        value = OPS[op](value, b)
        if not _in_range(value, config):
            return False
    return True


def corrupted(index: int, *, seed: int, config: ArithmeticConfig = ArithmeticConfig(),
              split: str = "all") -> Solution:
    """A corrupted solution of problem `index` (deterministic in seed and index)."""
    prob = problem(index, seed=seed, config=config, split=split)
    return corrupt(prob, np.random.default_rng([seed, index, 1 << 20]), config)


def solutions(n: int, *, seed: int, config: ArithmeticConfig = ArithmeticConfig(),
              split: str = "all", error_rate: float = 0.5) -> list[Solution]:
    """Solutions of the first `n` problems; each is corrupted with prob. `error_rate`."""
    if not 0 <= error_rate <= 1:
        raise ValueError(f"error_rate must be in [0, 1], got {error_rate}")
    out = []
    for i in range(n):
        coin = np.random.default_rng([seed, i, 2 << 20]).random()
        if coin < error_rate:
            out.append(corrupted(i, seed=seed, config=config, split=split))
        else:
            out.append(solve(problem(i, seed=seed, config=config, split=split)))
    return out


def _subset(prob: Problem) -> str:
    return f"steps_{len(prob.ops)}"


def preference_pairs(n: int, *, seed: int, config: ArithmeticConfig = ArithmeticConfig(),
                     split: str = "all", step_fraction: float = 0.0) -> list[PreferencePair]:
    """Correct (chosen) vs corrupted (rejected) solutions; subset `steps_<k>`.

    `step_fraction`: the share of pairs that are step-level instead (subset `step`): both
    sides are the solution up to the corrupted step, right on the chosen side and wrong
    on the rejected one, after the same correct prefix, as in Step-DPO ("Step-DPO:
    Step-wise Preference Optimization for Long-chain Reasoning", arXiv:2406.18629).
    Item i is step-level when `default_rng([seed, i, 3 << 20])` draws below it.
    """
    if not 0.0 <= step_fraction <= 1.0:
        raise ValueError(f"step_fraction must be in [0, 1], got {step_fraction}")
    out = []
    for i in range(n):
        bad = corrupted(i, seed=seed, config=config, split=split)
        good = solve(bad.problem)
        if step_fraction and np.random.default_rng([seed, i, 3 << 20]).random() < step_fraction:
            end = bad.first_error + 1
            out.append(PreferencePair(prompt=bad.problem.question,
                                      chosen="\n".join(good.steps[:end]),
                                      rejected="\n".join(bad.steps[:end]), subset="step"))
        else:
            out.append(PreferencePair(prompt=bad.problem.question, chosen=good.text,
                                      rejected=bad.text, subset=_subset(bad.problem)))
    return out


def step_solutions(n: int, *, seed: int, config: ArithmeticConfig = ArithmeticConfig(),
                   split: str = "all", error_rate: float = 0.5) -> list[StepSolution]:
    """Solutions with hard step labels (the answer line is the last step)."""
    return [StepSolution(prompt=s.problem.question, steps=s.steps, labels=s.labels,
                         subset=_subset(s.problem))
            for s in solutions(n, seed=seed, config=config, split=split, error_rate=error_rate)]


def sft_examples(n: int, *, seed: int, config: ArithmeticConfig = ArithmeticConfig(),
                 split: str = "all", direct_fraction: float = 0.0) -> list[SFTExample]:
    """(question, correct solution text) pairs.

    `direct_fraction`: the share of examples whose completion is the answer line alone,
    without the worked steps (item i is direct when `default_rng([seed, i, 1])` draws
    below it). SFT data that mixes worked and bare answers gives a policy both habits;
    the worked one is more often right, which is what RL on the answer reward finds.
    """
    if not 0.0 <= direct_fraction <= 1.0:
        raise ValueError(f"direct_fraction must be in [0, 1], got {direct_fraction}")
    out = []
    for i, p in enumerate(problems(n, seed=seed, config=config, split=split)):
        steps = solve(p).steps
        direct = direct_fraction and np.random.default_rng([seed, i, 1]).random() < direct_fraction
        out.append(SFTExample(prompt=p.question, completion=steps[-1] if direct else "\n".join(steps)))
    return out


def rl_prompts(n: int, *, seed: int, config: ArithmeticConfig = ArithmeticConfig(),
               split: str = "all") -> list[PromptWithAnswer]:
    """Questions with their reference answers (as strings) for verifiable rewards."""
    return [PromptWithAnswer(prompt=p.question, answer=str(p.answer))
            for p in problems(n, seed=seed, config=config, split=split)]
