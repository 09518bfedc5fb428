"""A program as the rationale teacher: judgments of arithmetic solutions written by
the task, which knows each problem's correct steps.

The papers distil rationales from a stronger LLM (RM-R1, arXiv:2505.02387: "reasoning
traces" from o3/Claude; ThinkPRM, arXiv:2504.16828: verification chains from
QwQ-32B filtered by ProcessBench labels). On the synthetic task
(`data.synthetic.arithmetic`) the check is exact, so a program writes the critique a
judge should learn: work out what decides, then the verdict.

    pairwise     "5 + 2 = 7\\n7 - 1 = 6\\nA: 6 right\\nB: 5 wrong\\nVerdict: A"   solve,
                                                 then check each final answer
    first error  "Step 1: 5 + 2 = 7 ok\\nStep 2: 7 - 1 = 6 not 5\\nVerdict: 2"
    pointwise    "Verdict: Yes"                      (no rationale: the one-pass judge)
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

from rewardjax.data.records import PreferencePair, SFTExample
from rewardjax.data.synthetic import arithmetic
from rewardjax.judges import formats


class Trace(NamedTuple):
    """A judge prompt, the teacher's judgment text, and its verdict (the label)."""

    prompt: str
    judgment: str
    label: str

    def sft_example(self) -> SFTExample:
        return SFTExample(prompt=self.prompt, completion=self.judgment)


def _expected(problem: arithmetic.Problem) -> tuple[str, ...]:
    return arithmetic.solve(problem).steps


def pairwise_trace(problem: arithmetic.Problem, response_a: str, response_b: str, *,
                   conditioning: formats.Conditioning = formats.NONE) -> Trace:
    """The pairwise judgment of two responses of which exactly one is correct: solve
    the problem, compare each response's final answer with the solution's, pick the
    one that matches. RM-R1 (arXiv:2505.02387) judges reasoning tasks this way: the
    judge first writes its own solution, then evaluates the responses against it."""
    err_a = arithmetic.check_steps(problem, response_a)
    err_b = arithmetic.check_steps(problem, response_b)
    if (err_a == -1) == (err_b == -1):
        raise ValueError(f"pairwise_trace needs exactly one correct response; first errors "
                         f"A={err_a}, B={err_b} for {problem.question!r}")
    # One line per response, its final answer then the comparison with the solution's:
    # the verdict then only reads which line says "right".
    checks = tuple(f"{x}: {'none' if a is None else a} {'right' if a == problem.answer else 'wrong'}"
                   for x, a in zip("AB", (arithmetic.extract_answer(r)
                                          for r in (response_a, response_b))))
    rationale = "\n".join(_expected(problem)[:-1] + checks)
    label = "A" if err_a == -1 else "B"
    return Trace(formats.pairwise_prompt(problem.question, response_a, response_b,
                                         conditioning=conditioning),
                 formats.judgment_text(rationale, label), label)


def pairwise_traces(pairs: Sequence[PreferencePair], problems: Sequence[arithmetic.Problem], *,
                    flip: Sequence[bool],
                    conditioning: formats.Conditioning = formats.NONE) -> list[Trace]:
    """Traces of preference pairs; pair i shows the chosen response as B when flip[i]."""
    if not len(pairs) == len(problems) == len(flip):
        raise ValueError(f"pairwise_traces: {len(pairs)} pairs, {len(problems)} problems, "
                         f"{len(flip)} flips; expected equal counts")
    return [pairwise_trace(prob, *((p.rejected, p.chosen) if f else (p.chosen, p.rejected)),
                           conditioning=conditioning)
            for p, prob, f in zip(pairs, problems, flip)]


def first_error_trace(problem: arithmetic.Problem, steps: Sequence[str], *,
                      conditioning: formats.Conditioning = formats.NONE) -> Trace:
    """Step-by-step verification up to the first wrong step (ThinkPRM's chain, cut at
    the first error as PRM800K labels solutions); verdict = its 1-based number or
    `none`."""
    expected = _expected(problem)
    lines = []
    first = arithmetic.check_steps(problem, "\n".join(steps))
    if first >= len(steps):
        raise ValueError(f"first_error_trace: the {len(steps)} steps are a correct prefix of "
                         f"the {len(expected)}-step solution; no given step is wrong")
    last = first if first != -1 else len(steps) - 1
    for k in range(min(last, len(steps) - 1) + 1):
        want = expected[k] if k < len(expected) else "(no step)"
        got = steps[k].strip()
        lines.append(f"Step {k + 1}: {want} ok" if got == want else
                     f"Step {k + 1}: {want} not {_result(got)}")
    label = formats.NO_ERROR_CHOICE if first == -1 else str(first + 1)
    return Trace(formats.first_error_prompt(problem.question, steps, conditioning=conditioning),
                 formats.judgment_text("\n".join(lines), label), label)


def _result(line: str) -> str:
    # What the step claims: the text after "=" (or after "Answer:"), else the whole line.
    for sep in ("=", arithmetic.ANSWER_PREFIX.strip()):
        if sep in line:
            return line.rsplit(sep, 1)[1].strip() or line
    return line


def pointwise_trace(problem: arithmetic.Problem, response: str, *,
                    conditioning: formats.Conditioning = formats.NONE) -> Trace:
    """The one-pass judgment of one response: Yes iff every step is right."""
    label = "Yes" if arithmetic.check_steps(problem, response) == -1 else "No"
    return Trace(formats.pointwise_prompt(problem.question, response, conditioning=conditioning),
                 formats.judgment_text("", label), label)
