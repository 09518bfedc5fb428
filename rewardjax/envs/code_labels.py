"""Line-level process labels for code from mutation and execution (PRLCoder).

"Process-Supervised Reinforcement Learning for Code Generation" (Ye et al.,
arXiv:2502.01715) builds PRM data without human annotation by a "statement
mutation/refactoring - compile and execution verification" loop: each line of a
correct solution is rewritten (mutated, or refactored into an equivalent form), the
rewritten program is compiled and run against the problem's tests, and the execution
outcome labels the line. Here:

* the rewrites come from fixed single-line operators instead of a teacher LLM
  (`line_mutants`): operator and comparison swaps, integer constants off by one,
  `and`/`or` and `True`/`False` swaps, statement deletion, and two refactorings
  (`x op= e` to `x = x op (e)`, `range(n)` to `range(0, n)`). The operator does not
  decide the label; execution does, so a "mutation" the tests cannot tell apart from
  the original (an equivalent mutant) is labelled correct, and a "refactoring" that
  breaks a test is labelled wrong;
* the rewritten program plus the tests (`assert` lines) runs in the sandbox
  (`rewardjax.envs.sandbox`), never in the trainer's process; a syntax error is a
  compile failure, a failed assert a wrong answer, any other exception a runtime
  error, and a time or memory limit a timeout;
* the labels of one rewritten program (`line_labels`), with i the rewritten line:
  lines before i are 1 (unchanged lines of a program that passes); line i is 1 if
  the program passes every test and 0 otherwise; lines after i take line i's label,
  the `StepSolution` convention (Math-Shepherd, arXiv:2312.08935) that a step after
  the first error is not correct. `StepSolution.up_to_first_error` cuts a record at
  the rewritten line, as PRM800K labels solutions.

`prm_records` returns `StepSolution` records (prompt = the task, steps = the code's
lines with their indentation, the separator "\\n" restoring the program), the format
`rewardjax.train.prm.step_loss` trains on through `data.pipeline.step_pipeline`.
`code_problems()` ships twelve small Python functions with tests.
"""

from __future__ import annotations

import dataclasses
import io
import re
import tokenize
from typing import Sequence

import numpy as np

from rewardjax.data.records import StepSolution
from rewardjax.envs import sandbox

OUTCOMES = ("pass", "compile_error", "runtime_error", "wrong_answer", "timeout")
_OP_SWAPS = {"+": "-", "-": "+", "*": "+", "//": "%", "%": "//", "<": "<=", "<=": "<",
             ">": ">=", ">=": ">", "==": "!=", "!=": "==", "+=": "-=", "-=": "+="}
_NAME_SWAPS = {"and": "or", "or": "and", "True": "False", "False": "True"}
_AUG_ASSIGN = re.compile(r"^(\s*)([A-Za-z_]\w*) (\+|-|\*|//|%)= (.+)$")
_RANGE_ONE_ARG = re.compile(r"\brange\(([^,()]+)\)")
_TIMEOUT_REASONS = (sandbox.Reason.TIMEOUT, sandbox.Reason.CPU_TIME, sandbox.Reason.MEMORY)


class CodeLabelError(ValueError):
    """A problem, mutant or config that cannot be labelled as given."""


@dataclasses.dataclass(frozen=True, kw_only=True)
class CodeProblem:
    """A task, a reference solution that passes it, and its tests (one `assert` each).

    The solution has no blank lines: each line becomes one PRM step.
    """

    name: str
    prompt: str
    solution: str
    tests: tuple[str, ...]

    def __post_init__(self):
        for field in ("name", "prompt", "solution"):
            value = getattr(self, field)
            if not isinstance(value, str) or not value.strip():
                raise CodeLabelError(f"CodeProblem.{field} = {value!r}: expected a non-empty string")
        lines = self.solution.rstrip("\n").split("\n")
        blank = [i for i, line in enumerate(lines) if not line.strip()]
        if blank:
            raise CodeLabelError(f"CodeProblem {self.name!r}: solution line {blank[0]} is blank; "
                                 "expected one statement per line (each line is a PRM step)")
        if isinstance(self.tests, str) or not self.tests:
            raise CodeLabelError(f"CodeProblem {self.name!r}: tests = {self.tests!r}: expected a "
                                 "non-empty sequence of assert statements")
        tests = tuple(self.tests)
        for i, test in enumerate(tests):
            if not isinstance(test, str) or not test.startswith("assert "):
                raise CodeLabelError(f"CodeProblem {self.name!r}: tests[{i}] = {test!r}: expected "
                                     "a one-line 'assert ...' statement")
        object.__setattr__(self, "solution", self.solution.rstrip("\n"))
        object.__setattr__(self, "tests", tests)

    @property
    def lines(self) -> tuple[str, ...]:
        return tuple(self.solution.split("\n"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class Mutant:
    """Line `line` (0-based) of a solution replaced by `text`; `kind` is the operator."""

    line: int
    text: str
    kind: str


@dataclasses.dataclass(frozen=True, kw_only=True)
class LabelConfig:
    """Attributes:
      max_mutants_per_line: at most this many rewrites of each line, drawn without
        replacement with `seed` (None: every rewrite `line_mutants` proposes).
      include_reference: also emit the unmodified solution (every line 1).
      limits: sandbox limits per execution; a mutant that loops ends as a timeout.
      max_workers: sandboxes run at once.
    """

    max_mutants_per_line: int | None = None
    include_reference: bool = True
    limits: sandbox.Limits = sandbox.Limits(wall_s=3.0, cpu_s=1.0, memory_mb=256,
                                            max_processes=4)
    max_workers: int = 4
    seed: int = 0

    def __post_init__(self):
        k = self.max_mutants_per_line
        if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k < 1):
            raise CodeLabelError(f"LabelConfig.max_mutants_per_line = {k!r}: expected None or an int >= 1")
        if not isinstance(self.limits, sandbox.Limits):
            raise CodeLabelError(f"LabelConfig.limits: expected a sandbox.Limits, got "
                                 f"{type(self.limits).__name__}")
        w = self.max_workers
        if isinstance(w, bool) or not isinstance(w, int) or w < 1:
            raise CodeLabelError(f"LabelConfig.max_workers = {w!r}: expected an int >= 1")


def _tokens(line: str) -> list[tokenize.TokenInfo]:
    # A compound header ("if x < 0:") is a complete logical line only with a body.
    text = line.strip()
    src = text + "\n    pass\n" if text.endswith(":") else text + "\n"
    try:
        return list(tokenize.generate_tokens(io.StringIO(src).readline))
    except (tokenize.TokenError, IndentationError, SyntaxError):
        return []


def line_mutants(source: str, *, line: int) -> list[Mutant]:
    """Every single-line rewrite of line `line` (0-based) of `source`, in a fixed order.

    Token swaps (`_OP_SWAPS`, `_NAME_SWAPS`), integer literals +-1, deleting the
    statement (`pass` in its place; not for compound headers, whose body would be
    orphaned), and the refactorings `x op= e` -> `x = x op (e)` and `range(n)` ->
    `range(0, n)` (PRLCoder, arXiv:2502.01715, rewrites with a teacher model).
    """
    lines = source.rstrip("\n").split("\n")
    if isinstance(line, bool) or not isinstance(line, int) or not 0 <= line < len(lines):
        raise CodeLabelError(f"line = {line!r}: expected a line index in [0, {len(lines)})")
    original = lines[line]
    indent = original[:len(original) - len(original.lstrip())]
    body = original.strip()
    out: list[Mutant] = []
    seen = {original}

    def add(text: str, kind: str) -> None:
        if text not in seen:
            seen.add(text)
            out.append(Mutant(line=line, text=text, kind=kind))

    for tok in _tokens(original):
        if tok.start[0] != 1:
            continue
        a, b = tok.start[1], tok.end[1]
        if tok.type == tokenize.OP and tok.string in _OP_SWAPS:
            add(indent + body[:a] + _OP_SWAPS[tok.string] + body[b:], "operator")
        elif tok.type == tokenize.NAME and tok.string in _NAME_SWAPS:
            add(indent + body[:a] + _NAME_SWAPS[tok.string] + body[b:], "operator")
        elif tok.type == tokenize.NUMBER and tok.string.isdigit():
            value = int(tok.string)
            for new in (value + 1, value - 1):
                add(indent + body[:a] + str(new) + body[b:], "constant")
    if not body.endswith(":") and body != "pass":
        add(indent + "pass", "delete")
    m = _AUG_ASSIGN.match(original)
    if m:
        add(f"{m.group(1)}{m.group(2)} = {m.group(2)} {m.group(3)} ({m.group(4)})", "refactor")
    if _RANGE_ONE_ARG.search(body):
        add(indent + _RANGE_ONE_ARG.sub(r"range(0, \1)", body), "refactor")
    return out


def program_with_tests(problem: CodeProblem, lines: Sequence[str]) -> sandbox.PythonProgram:
    """The solution's lines followed by the problem's asserts, as one sandbox program."""
    return sandbox.PythonProgram(source="\n".join(list(lines) + list(problem.tests)) + "\n")


def execution_outcome(result: sandbox.Result) -> str:
    """One of `OUTCOMES` for a sandbox result of `test_program`."""
    if result.ok:
        return "pass"
    if result.reason in _TIMEOUT_REASONS:
        return "timeout"
    if result.exception in ("SyntaxError", "IndentationError", "TabError"):
        return "compile_error"
    if result.exception == "AssertionError":
        return "wrong_answer"
    return "runtime_error"


def line_labels(num_lines: int, line: int, passed: bool) -> tuple[float, ...]:
    """Labels of a program whose line `line` was rewritten (PRLCoder, arXiv:2502.01715).

        y_j = 1 for j < line;  y_j = 1[program passes every test] for j >= line

    e.g. `line_labels(4, 1, False) == (1.0, 0.0, 0.0, 0.0)`.
    """
    if not 0 <= line < num_lines:
        raise CodeLabelError(f"line = {line}: expected a line index in [0, {num_lines})")
    after = 1.0 if passed else 0.0
    return tuple(1.0 if j < line else after for j in range(num_lines))


def _chosen_mutants(problem: CodeProblem, config: LabelConfig) -> list[Mutant]:
    chosen = []
    for i in range(len(problem.lines)):
        cands = line_mutants(problem.solution, line=i)
        k = config.max_mutants_per_line
        if k is not None and len(cands) > k:
            rng = np.random.default_rng([config.seed, i, *problem.name.encode()])
            cands = [cands[j] for j in sorted(rng.choice(len(cands), size=k, replace=False))]
        chosen.extend(cands)
    return chosen


def label_mutants(problem: CodeProblem, mutants: Sequence[Mutant], *,
                  config: LabelConfig = LabelConfig()) -> list[tuple[StepSolution, str]]:
    """Runs each mutant's program in the sandbox: (labelled record, outcome) per mutant,
    labelled by `line_labels` (PRLCoder, arXiv:2502.01715: compile and execution
    verification of a rewritten line).

    The record's `subset` is "<outcome>:<kind>" (e.g. "wrong_answer:operator").
    """
    programs = []
    for n, m in enumerate(mutants):
        if not 0 <= m.line < len(problem.lines):
            raise CodeLabelError(f"mutants[{n}].line = {m.line}: problem {problem.name!r} has "
                                 f"{len(problem.lines)} lines")
        if not m.text.strip():
            raise CodeLabelError(f"mutants[{n}].text = {m.text!r}: expected a non-empty line "
                                 "(each line is a PRM step)")
        lines = list(problem.lines)
        lines[m.line] = m.text
        programs.append(lines)
    results = sandbox.run_many([program_with_tests(problem, p) for p in programs], config.limits,
                               max_workers=config.max_workers)
    out = []
    for m, lines, result in zip(mutants, programs, results):
        if result.reason is sandbox.Reason.SANDBOX_ERROR:
            raise RuntimeError(f"problem {problem.name!r}, mutant of line {m.line}: the sandbox "
                               f"could not run ({result.error})")
        outcome = execution_outcome(result)
        record = StepSolution(prompt=problem.prompt, steps=tuple(lines),
                              labels=line_labels(len(lines), m.line, outcome == "pass"),
                              subset=f"{outcome}:{m.kind}")
        out.append((record, outcome))
    return out


def label_problem(problem: CodeProblem, *, config: LabelConfig = LabelConfig()
                  ) -> list[StepSolution]:
    """The problem's PRM records (PRLCoder, arXiv:2502.01715): the reference (if asked)
    and one per chosen mutant.

    Raises if the reference solution itself fails its tests (a broken problem would
    label every line of every mutant wrong).
    """
    reference = sandbox.run(program_with_tests(problem, problem.lines), config.limits)
    if not reference.ok:
        raise CodeLabelError(f"CodeProblem {problem.name!r}: the reference solution fails its "
                             f"tests ({execution_outcome(reference)}: {reference.error})")
    records = [record for record, _ in label_mutants(problem, _chosen_mutants(problem, config),
                                                     config=config)]
    if config.include_reference:
        n = len(problem.lines)
        records.insert(0, StepSolution(prompt=problem.prompt, steps=problem.lines,
                                       labels=(1.0,) * n, subset="pass:reference"))
    return records


def prm_records(problems: Sequence[CodeProblem] | None = None, *,
                config: LabelConfig = LabelConfig()) -> list[StepSolution]:
    """PRLCoder (arXiv:2502.01715) PRM records for `problems` (default:
    `code_problems()`), problem by problem."""
    problems = code_problems() if problems is None else problems
    return [r for p in problems for r in label_problem(p, config=config)]


def _problem(name: str, prompt: str, solution: str, *tests: str) -> CodeProblem:
    return CodeProblem(name=name, prompt=prompt, solution=solution.strip("\n"), tests=tests)


def code_problems() -> tuple[CodeProblem, ...]:
    """Twelve small Python functions, each with a reference solution and asserts."""
    return (
        _problem("absolute", "Write a Python function absolute(x) returning |x| for an integer x.", """
def absolute(x):
    if x < 0:
        return -x
    return x
""", "assert absolute(-3) == 3", "assert absolute(-1) == 1", "assert absolute(0) == 0",
            "assert absolute(2) == 2"),
        _problem("sum_to", "Write sum_to(n): the sum 1 + 2 + ... + n (0 for n = 0).", """
def sum_to(n):
    total = 0
    for i in range(n + 1):
        total += i
    return total
""", "assert sum_to(0) == 0", "assert sum_to(1) == 1", "assert sum_to(4) == 10"),
        _problem("count_even", "Write count_even(xs): how many integers in the list xs are even.", """
def count_even(xs):
    count = 0
    for x in xs:
        if x % 2 == 0:
            count += 1
    return count
""", "assert count_even([]) == 0", "assert count_even([1, 2, 3, 4]) == 2",
            "assert count_even([0, 7, 8]) == 2"),
        _problem("max_of", "Write max_of(xs): the largest element of a non-empty list.", """
def max_of(xs):
    best = xs[0]
    for x in xs[1:]:
        if x > best:
            best = x
    return best
""", "assert max_of([3]) == 3", "assert max_of([1, 5, 2]) == 5", "assert max_of([-4, -2, -9]) == -2"),
        _problem("factorial", "Write factorial(n) for n >= 0.", """
def factorial(n):
    result = 1
    for k in range(2, n + 1):
        result *= k
    return result
""", "assert factorial(0) == 1", "assert factorial(1) == 1", "assert factorial(5) == 120"),
        _problem("reverse_string", "Write reverse_string(s): s with its characters in reverse order.", """
def reverse_string(s):
    out = ''
    for ch in s:
        out = ch + out
    return out
""", "assert reverse_string('') == ''", "assert reverse_string('abc') == 'cba'",
            "assert reverse_string('ab') == 'ba'"),
        _problem("is_prime", "Write is_prime(n): True if the integer n is a prime.", """
def is_prime(n):
    if n < 2:
        return False
    d = 2
    while d * d <= n:
        if n % d == 0:
            return False
        d += 1
    return True
""", "assert is_prime(1) is False", "assert is_prime(2) is True", "assert is_prime(9) is False",
            "assert is_prime(13) is True", "assert is_prime(25) is False"),
        _problem("digit_sum", "Write digit_sum(n): the sum of the decimal digits of n >= 0.", """
def digit_sum(n):
    total = 0
    while n > 0:
        total += n % 10
        n //= 10
    return total
""", "assert digit_sum(0) == 0", "assert digit_sum(7) == 7", "assert digit_sum(1234) == 10"),
        _problem("fib", "Write fib(n): the n-th Fibonacci number with fib(0) = 0, fib(1) = 1.", """
def fib(n):
    a, b = 0, 1
    for _ in range(n):
        a, b = b, a + b
    return a
""", "assert fib(0) == 0", "assert fib(1) == 1", "assert fib(2) == 1", "assert fib(7) == 13"),
        _problem("clamp", "Write clamp(x, lo, hi): x limited to the interval [lo, hi].", """
def clamp(x, lo, hi):
    if x < lo:
        return lo
    if x > hi:
        return hi
    return x
""", "assert clamp(5, 0, 3) == 3", "assert clamp(-2, 0, 3) == 0", "assert clamp(2, 0, 3) == 2",
            "assert clamp(0, 0, 3) == 0", "assert clamp(3, 0, 3) == 3"),
        _problem("all_positive", "Write all_positive(xs): True if every number in xs is > 0.", """
def all_positive(xs):
    for x in xs:
        if x <= 0:
            return False
    return True
""", "assert all_positive([]) is True", "assert all_positive([1, 2]) is True",
            "assert all_positive([1, 0]) is False", "assert all_positive([-1]) is False"),
        _problem("count_vowels", "Write count_vowels(s): the number of letters of s in 'aeiou'.", """
def count_vowels(s):
    n = 0
    for ch in s:
        if ch in 'aeiou':
            n += 1
    return n
""", "assert count_vowels('') == 0", "assert count_vowels('banana') == 3",
            "assert count_vowels('xyz') == 0"),
    )
