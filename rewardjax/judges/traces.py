"""A program as the rationale teacher: judgments of arithmetic solutions written by
the task, which knows each problem's correct steps.

The papers distil rationales from a stronger LLM (RM-R1, arXiv:2505.02387: "reasoning
traces" from o3/Claude; ThinkPRM, arXiv:2504.16828: verification chains from
QwQ-32B filtered by ProcessBench labels). On the synthetic task
(`data.synthetic.arithmetic`) the check is exact, so a program writes the critique a
judge should learn: work out what decides, then the verdict.

    pairwise     "A: 6\\nB: 5\\n5 + 2 = 7\\n7 - 1 = 6\\nAnswer: 6\\nA: 6 vs 6 right\\n
                  B: 5 vs 6 wrong\\nVerdict: A"    note both answers, solve, check each
                 quick=True: "A: 6\\nB: 5\\nVerdict: A" (a flawed teacher: no work, position A)
    first error  "Step 1: 5 + 2 = 7 ok\\nStep 2: 7 - 1 = 5 wrong\\nVerdict: 2"
    pointwise    "Verdict: Yes"                      (no rationale: the one-pass judge)
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

from rewardjax.data.records import PreferencePair, SFTExample
from rewardjax.data.synthetic import arithmetic
from rewardjax.judges import formats

# The words of each trace that decide its verdict (`training.deciding_token_weights`).
PAIRWISE_DECIDING = ("right", "wrong")
FIRST_ERROR_DECIDING = ("ok", "wrong")


class Trace(NamedTuple):
    """A judge prompt, the teacher's judgment text, and the correct verdict (the label;
    the judgment's own verdict differs only for a quick judgment, `pairwise_trace`)."""

    prompt: str
    judgment: str
    label: str

    def sft_example(self) -> SFTExample:
        return SFTExample(prompt=self.prompt, completion=self.judgment)


def _expected(problem: arithmetic.Problem) -> tuple[str, ...]:
    return arithmetic.solve(problem).steps


def pairwise_trace(problem: arithmetic.Problem, response_a: str, response_b: str, *,
                   conditioning: formats.Conditioning = formats.NONE,
                   quick: bool = False) -> Trace:
    """The pairwise judgment of two responses of which exactly one is correct: note each
    response's final answer, solve the problem, check each noted answer against the
    solution's, pick the one that matches. RM-R1 ("RM-R1: Reward Modeling as
    Reasoning", arXiv:2505.02387) judges reasoning tasks this way: the judge writes its
    own solution and evaluates the responses against it.

        A: 9
        B: 8
        6 - 1 = 5
        ...
        Answer: 9
        A: 9 vs 9 right
        B: 8 vs 9 wrong
        Verdict: A

    Why this shape: every token that decides is read from a fixed distance. The answers
    are noted before the solution (noted after it, a judge can copy its own answer
    instead of reading the response's, right whenever that response is the correct
    one); each is repeated next to a copy of the solution's answer, so "right"
    compares the two numbers just before it; the verdict reads which line says
    "right". Without the repeat, a width-64 judge had to find which noted answer
    equals its own, and answered B for most pairs; with the repeat but not the copy
    ("A: 9 right", the solution's answer lines above) it wrote "right"/"wrong" by
    position more than by value (docs/experiments/rm_r1.md).

    quick=True: a flawed teacher's judgment of a pair it does not work through: the
    two noted answers, then "A", the first position, whichever response is right
    ("A: 9 / B: 8 / Verdict: A"), as LLM judges lean to one position when they do not
    reason (Zheng et al., "Judging LLM-as-a-Judge with MT-Bench and Chatbot Arena",
    arXiv:2306.05685; Wang et al., "Large Language Models are not Fair Evaluators",
    arXiv:2305.17926). The label stays the correct verdict.
    """
    err_a = arithmetic.check_steps(problem, response_a)
    err_b = arithmetic.check_steps(problem, response_b)
    if (err_a == -1) == (err_b == -1):
        raise ValueError(f"pairwise_trace needs exactly one correct response; first errors "
                         f"A={err_a}, B={err_b} for {problem.question!r}")
    answers = [arithmetic.extract_answer(r) for r in (response_a, response_b)]
    noted = tuple(f"{x}: {'none' if a is None else a}" for x, a in zip("AB", answers))
    checks = tuple(f"{n} vs {problem.answer} {'right' if a == problem.answer else 'wrong'}"
                   for n, a in zip(noted, answers))
    label = "A" if err_a == -1 else "B"
    rationale = noted if quick else noted + _expected(problem) + checks
    return Trace(formats.pairwise_prompt(problem.question, response_a, response_b,
                                         conditioning=conditioning),
                 formats.judgment_text("\n".join(rationale), "A" if quick else label),
                 label)


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
                      conditioning: formats.Conditioning = formats.NONE,
                      worked: bool = False) -> Trace:
    """Step-by-step verification up to the first wrong step (ThinkPRM, "Process Reward
    Models That Think", arXiv:2504.16828: a verification chain whose step verdicts match
    the gold labels, cut at the first error as PRM800K labels solutions); verdict = its
    1-based number or `none`.

    Each checked step is copied from the prompt and judged on its own line:

        Step 2: 5 + 1 = 5 wrong

    so the judgment reads a step written just before it, as a PRM's per-step head
    does. Why no worked value: wherever the chain writes one ("5 + 1 = 5 is 6", or
    "Step 2: 5 + 1 is 6" before the copy), the claim in the prompt is right for five
    steps in six and a width-64 verifier learns to copy it instead of computing; and a
    chain that never copies the claim ("Step 2: 5 + 1 = 6 ok") left the verdict to a
    comparison across the prompt (docs/experiments/think_prm.md).

    worked=True: the verifier writes its own step (the correct one, as a solver
    would), then the step's claimed value, then the check of those two adjacent
    numbers, as the pairwise trace's "A: 9 vs 9 right":

        Step 2: 5 + 1 = 6 vs 5 wrong

    The claim is the step's last word; a misread step whose value happens to be right
    is still "wrong" (not drawn by `recipes.TINY_RM_TASK`, which corrupts results only).
    """
    expected = _expected(problem)
    first = arithmetic.check_steps(problem, "\n".join(steps))
    if first >= len(steps):
        raise ValueError(f"first_error_trace: the {len(steps)} steps are a correct prefix of "
                         f"the {len(expected)}-step solution; no given step is wrong")
    last = first if first != -1 else len(steps) - 1
    def body(k: int) -> str:
        if not worked:
            return steps[k].strip()
        own = expected[k] if k < len(expected) else "none"
        return f"{own} vs {(steps[k].split() or ['none'])[-1]}"

    lines = [f"Step {k + 1}: {body(k)} {'wrong' if k == first else 'ok'}"
             for k in range(last + 1)]
    label = formats.NO_ERROR_CHOICE if first == -1 else str(first + 1)
    return Trace(formats.first_error_prompt(problem.question, steps, conditioning=conditioning),
                 formats.judgment_text("\n".join(lines), label), label)


def pointwise_trace(problem: arithmetic.Problem, response: str, *,
                    conditioning: formats.Conditioning = formats.NONE) -> Trace:
    """The one-pass judgment of one response: Yes iff every step is right."""
    label = "Yes" if arithmetic.check_steps(problem, response) == -1 else "No"
    return Trace(formats.pointwise_prompt(problem.question, response, conditioning=conditioning),
                 formats.judgment_text("", label), label)
