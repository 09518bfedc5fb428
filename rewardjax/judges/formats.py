"""Judge prompts and strict verdict parsing.

A judge is the language model itself: its input is a prompt written here (rendered
through the tokenizer's chat template by `data.encoding`), its output an assistant turn
whose last line is the verdict:

    [rationale lines ...]
    Verdict: <choice>

Four formats share that contract:

- pointwise (`pointwise_prompt`, choices Yes/No): is this response correct? Its reward
  is p("Yes") read in one forward pass after the forced prefix `Verdict:`
  ("RewardDance: Reward Scaling in Visual Generation", arXiv:2509.08826);
- pairwise (`pairwise_prompt`, choices A/B): which of two responses is better;
- first error (`first_error_prompt`, choices none/1..S): a generative PRM names the
  first wrong step (ThinkPRM, arXiv:2504.16828);
- any of them conditioned on a natural-language principle or rubric items
  (`Conditioning`; "RewardAnything: Generalizable Principle-Following Reward Models",
  arXiv:2506.03637; "OpenRubrics"; "RLBFF: Binary Flexible Feedback").

Parsing is strict (`parse_verdict`): exactly one `Verdict:` in the text, at the start
of the last non-empty line, followed by exactly one allowed choice. Anything else is a
named failure that callers count; no failure is turned into a default verdict.
"""

from __future__ import annotations

import collections
import dataclasses
from typing import NamedTuple, Sequence

VERDICT_PREFIX = "Verdict:"
POINTWISE_CHOICES = ("Yes", "No")
PAIRWISE_CHOICES = ("A", "B")
NO_ERROR_CHOICE = "none"

# Why a text did not parse; every failure is one of these.
FAILURES = ("empty", "missing_verdict", "multiple_verdicts", "verdict_not_last",
            "verdict_not_at_line_start", "invalid_choice")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Conditioning:
    """What the judge is told to judge by: a principle and/or rubric items.

    RewardAnything (arXiv:2506.03637) puts one natural-language principle in the
    judge's input; "OpenRubrics" and "RLBFF: Binary Flexible Feedback" a list of
    checkable items. Empty: an unconditioned judge.
    """

    principle: str | None = None
    rubric: tuple[str, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "rubric", tuple(self.rubric))
        if self.principle is not None and not self.principle.strip():
            raise ValueError("Conditioning.principle is blank; pass None for no principle")
        for i, item in enumerate(self.rubric):
            if not isinstance(item, str) or not item.strip():
                raise ValueError(f"Conditioning.rubric[{i}] must be a non-blank string, got {item!r}")

    def render(self) -> str:
        lines = []
        if self.principle is not None:
            lines.append(f"Principle: {self.principle.strip()}")
        if self.rubric:
            lines.append("Rubric:")
            lines += [f"{i + 1}. {item.strip()}" for i, item in enumerate(self.rubric)]
        return "".join(line + "\n" for line in lines)


NONE = Conditioning()


def _instruction(choices: Sequence[str]) -> str:
    options = " or ".join(f"'{VERDICT_PREFIX} {c}'" for c in choices)
    return f"End with {options}."


def pointwise_prompt(question: str, response: str, *, conditioning: Conditioning = NONE) -> str:
    """Is `response` a correct answer to `question`? Choices Yes / No."""
    return (f"{conditioning.render()}Question: {question}\nResponse:\n{response}\n"
            f"Is the response correct? {_instruction(POINTWISE_CHOICES)}")


def pairwise_prompt(question: str, response_a: str, response_b: str, *,
                    conditioning: Conditioning = NONE) -> str:
    """Which of two responses to `question` is better? Choices A / B."""
    return (f"{conditioning.render()}Question: {question}\nResponse A:\n{response_a}\n"
            f"Response B:\n{response_b}\nWhich response is better? "
            f"{_instruction(PAIRWISE_CHOICES)}")


def first_error_choices(num_steps: int) -> tuple[str, ...]:
    """`none` and the 1-based step numbers of a solution with `num_steps` steps."""
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    return (NO_ERROR_CHOICE,) + tuple(str(k) for k in range(1, num_steps + 1))


def first_error_prompt(question: str, steps: Sequence[str], *,
                       conditioning: Conditioning = NONE) -> str:
    """Check a numbered step-by-step solution; the verdict is the 1-based number of the
    first wrong step or `none` (ThinkPRM, arXiv:2504.16828)."""
    if not steps:
        raise ValueError("first_error_prompt needs at least one step")
    numbered = "".join(f"Step {k}: {s}\n" for k, s in enumerate(steps, 1))
    return (f"{conditioning.render()}Question: {question}\nSolution:\n{numbered}"
            f"Which step is the first wrong one? End with '{VERDICT_PREFIX} N' or "
            f"'{VERDICT_PREFIX} {NO_ERROR_CHOICE}'.")


def judgment_text(rationale: str, choice: str) -> str:
    """The assistant turn a judge should write: the rationale, then the verdict line."""
    verdict = f"{VERDICT_PREFIX} {choice}"
    rationale = rationale.strip()
    return f"{rationale}\n{verdict}" if rationale else verdict


class Verdict(NamedTuple):
    """A parsed judgment: the choice (None on failure), the rationale before the verdict
    line, and the failure kind (one of `FAILURES`, None when parsed)."""

    choice: str | None
    rationale: str
    failure: str | None

    @property
    def ok(self) -> bool:
        return self.failure is None


def parse_verdict(text: str, *, choices: Sequence[str]) -> Verdict:
    """The verdict of a judge's output, strictly.

    Accepted: `VERDICT_PREFIX` occurs exactly once, at the start of the last non-empty
    line, followed (after whitespace) by exactly one of `choices` (case-sensitive) and
    nothing else. Failures, in the order they are checked: "empty", "missing_verdict",
    "multiple_verdicts", "verdict_not_last" (text follows the verdict line),
    "verdict_not_at_line_start", "invalid_choice".

    Example:
      >>> parse_verdict("Step 2: 7 - 1 = 6\\nVerdict: A", choices=("A", "B"))
      Verdict(choice='A', rationale='Step 2: 7 - 1 = 6', failure=None)
      >>> parse_verdict("Verdict: A or B", choices=("A", "B")).failure
      'invalid_choice'
    """
    if not choices:
        raise ValueError("parse_verdict needs at least one choice")
    payload, rationale, failure = final_line(text, VERDICT_PREFIX, noun="verdict",
                                             plural="verdicts")
    if failure is not None:
        return Verdict(None, rationale, failure)
    if payload.strip() not in choices:
        return Verdict(None, rationale, "invalid_choice")
    return Verdict(payload.strip(), rationale, None)


def final_line(text: str, prefix: str, *, noun: str, plural: str
               ) -> tuple[str | None, str, str | None]:
    """`(payload, rationale, failure)` of a judgment that must end in one `prefix` line.

    `prefix` must occur exactly once, at the start of the last non-empty line; the payload
    is what follows it on that line, the rationale everything before. Failures, in the
    order they are checked: "empty", "missing_<noun>", "multiple_<plural>",
    "<noun>_not_last", "<noun>_not_at_line_start" (payload None). Shared by verdicts and
    DeepSeek-GRM's score lines, so both fail the same way.
    """
    if not text.strip():
        return None, "", "empty"
    count = text.count(prefix)
    if count == 0:
        return None, text.strip(), f"missing_{noun}"
    if count > 1:
        return None, text.strip(), f"multiple_{plural}"
    lines = text.rstrip().split("\n")
    last = lines[-1].strip()
    rationale = "\n".join(lines[:-1]).strip()
    if prefix not in last:
        return None, text[:text.index(prefix)].strip(), f"{noun}_not_last"
    if not last.startswith(prefix):
        return None, rationale, f"{noun}_not_at_line_start"
    return last[len(prefix):], rationale, None


class ParsedBatch(NamedTuple):
    """Verdicts of a batch of outputs and how many failed, by failure kind."""

    verdicts: list[Verdict]
    failures: collections.Counter

    @property
    def choices(self) -> list[str | None]:
        return [v.choice for v in self.verdicts]

    @property
    def failure_count(self) -> int:
        return sum(self.failures.values())


def parse_verdicts(texts: Sequence[str], *, choices: Sequence[str]) -> ParsedBatch:
    """`parse_verdict` of each text, with failures counted by kind."""
    verdicts = [parse_verdict(t, choices=choices) for t in texts]
    return ParsedBatch(verdicts, collections.Counter(v.failure for v in verdicts if not v.ok))
