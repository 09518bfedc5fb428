"""Verifiable math-answer reward: extract the final answer, check it with math-verify.

Extraction order for a model completion (the first rule that finds something wins,
and within a rule the last occurrence in the text is used, since models restate
intermediate results before the final one):

  1. a GSM8K-style answer line `#### 42`;
  2. `\\boxed{...}` (or `\\fbox{...}`), with nested braces;
  3. a phrase "answer is X" / "answer: X" (case-insensitive), up to the end of line;
  4. the last number in the text (integers, decimals, fractions, thousands separators).

The reference answer (a record field, `answer` by default) is either a GSM8K solution
ending in `#### N`, a solution with `\\boxed{...}`, or a bare answer such as `42`,
`3/4` or `\\frac{3}{4}` — rules 1 and 2 are tried and otherwise the whole field is the
answer (never the last-number rule, which would turn `\\frac{3}{4}` into 4).

Both answers are normalized (currency and percent signs dropped — GSM8K writes
percentages and dollar amounts as bare numbers — `1,000` → `1000`, trailing
punctuation and unit words after a number removed) and compared with
`math_verify.parse` / `math_verify.verify`: numeric equality (to math-verify's float
rounding, 6 decimals), symbolic equivalence via sympy, fractions vs decimals
(`3/4` == `0.75`), negatives.

Timeouts: math-verify bounds each parse/verify with `signal.alarm`, which only works
in the main thread of the main interpreter (elsewhere it raises ValueError). This
reward passes `timeout_seconds` to math-verify when it runs on the main thread (e.g.
inline, or inside a `process`-isolated worker of `CombinedReward`) and disables
math-verify's own timeout on any other thread; there the caller's time limit applies
(`CombinedReward` per-sample timeouts). math-verify logs a warning the first time its
timeout is off ("you must provide the logic for timeout interruption yourself"); calls
made through this module with the timeout off drop that one message, since the caller
provides that logic, and leave every other math-verify message (and other callers'
calls) alone.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import threading
from typing import Any, Sequence

import numpy as np

from rewardjax.rewards._batch import check_batch

_GSM8K_LINE = re.compile(r"####[ \t]*([^\n]*)")
_BOXED = re.compile(r"\\(?:boxed|fbox)(\s*)")
_ANSWER_PHRASE = re.compile(r"answer\s*(?:is|:)\s*:?[ \t]*([^\n]*)", re.IGNORECASE)
_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?|-?\.\d+")
_SEPARATED_NUMBER = re.compile(r"-?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_LEADING_NUMBER_THEN_WORDS = re.compile(r"(-?[\d.,/]*\d)\s+[A-Za-z][A-Za-z\s.]*")


def _balanced_group(text: str, start: int) -> str | None:
    """Contents of the `{...}` group opening at `text[start]`, or None if unclosed."""
    depth = 0
    for i in range(start, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[start + 1 : i]
    return None


def last_boxed(text: str) -> str | None:
    """Contents of the last `\\boxed{...}` / `\\fbox{...}` (or `\\boxed 5`) in `text`."""
    for match in reversed(list(_BOXED.finditer(text))):
        end = match.end()
        if text.startswith("{", end):
            inner = _balanced_group(text, end)
            if inner is not None:
                return inner
        elif match.group(1):
            # `\boxed 5`: the argument is the next whitespace-delimited token.
            token = re.match(r"[^\s$]+", text[end:])
            if token:
                return token.group(0)
    return None


def _last_gsm8k_answer(text: str) -> str | None:
    matches = [m.group(1).strip() for m in _GSM8K_LINE.finditer(text)]
    matches = [m for m in matches if m]
    return matches[-1] if matches else None


def extract_answer(completion: str) -> str | None:
    """Final answer of a model completion (order in the module docstring), or None.

    Example:
      >>> extract_answer("so 3 + 4 = 7.\\n#### 7")
      '7'
      >>> extract_answer("Thus the answer is $\\\\boxed{\\\\frac{3}{4}}$.")
      '\\\\frac{3}{4}'
      >>> extract_answer("The answer is 1,000 apples.")
      '1,000 apples.'
      >>> extract_answer("I got 12 then 15")
      '15'
    """
    if not isinstance(completion, str):
        raise ValueError(f"completion: expected a string, got {type(completion).__name__}")
    found = _last_gsm8k_answer(completion)
    if found is not None:
        return found
    found = last_boxed(completion)
    if found is not None and found.strip():
        return found.strip()
    phrases = [m.group(1).strip() for m in _ANSWER_PHRASE.finditer(completion)]
    phrases = [p for p in phrases if p]
    if phrases:
        return phrases[-1]
    numbers = _NUMBER.findall(completion)
    return numbers[-1] if numbers else None


def extract_reference_answer(reference: Any) -> str:
    """Answer part of a reference: after `####`, inside `\\boxed{}`, or the whole value.

    Example:
      >>> extract_reference_answer("Janet sells 16 - 3 - 4 = 9 eggs.\\n#### 18")
      '18'
      >>> extract_reference_answer("\\\\frac{3}{4}")
      '\\\\frac{3}{4}'
    """
    if isinstance(reference, (int, float)) and not isinstance(reference, bool):
        return repr(reference)
    if not isinstance(reference, str):
        raise ValueError(f"reference answer: expected a string or number, got {type(reference).__name__}")
    found = _last_gsm8k_answer(reference)
    if found is None:
        found = last_boxed(reference)
    return (found if found is not None else reference).strip()


def normalize_answer(answer: str) -> str:
    """Strips formatting that GSM8K-style answers carry but math does not.

    Removes surrounding `$`/`\\(`/`\\)`/`**`, currency (`$`, `\\$`) and percent signs,
    trailing punctuation, unit words after a leading number ("18 dollars" → "18"),
    and thousands separators in a plain number ("1,000" → "1000").

    Example:
      >>> normalize_answer("$1,450,000.")
      '1450000'
      >>> normalize_answer("**-5 degrees**")
      '-5'
    """
    s = answer.strip()
    s = s.replace("**", "")
    if s.startswith("\\(") and s.endswith("\\)"):
        s = s[2:-2]
    s = s.replace("\\$", "").replace("$", "")
    s = s.replace("\\%", "").replace("%", "")
    s = s.strip().rstrip(".,;:!").strip()
    words = _LEADING_NUMBER_THEN_WORDS.fullmatch(s)
    if words and "\\" not in s:
        s = words.group(1).rstrip(".,")
    if _SEPARATED_NUMBER.fullmatch(s):
        s = s.replace(",", "")
    return s


# Set on a thread while it calls math-verify with the timeout off on purpose.
_CALLER_TIMES_OUT = threading.local()


class _DisabledTimeoutNotice(logging.Filter):
    """Drops math-verify's "Timeout is disabled" warning during this module's calls."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (getattr(_CALLER_TIMES_OUT, "active", False)
                    and record.getMessage().startswith("Timeout is disabled"))


# The logger objects exist before math_verify is imported, and it logs through these two.
for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_DisabledTimeoutNotice())


@contextlib.contextmanager
def _timeout_notice_dropped(timeout: int | None):
    previous = getattr(_CALLER_TIMES_OUT, "active", False)
    _CALLER_TIMES_OUT.active = timeout is None
    try:
        yield
    finally:
        _CALLER_TIMES_OUT.active = previous


def _parse(answer: str, timeout: int | None) -> list:
    # Imported here so that importing rewardjax.rewards stays cheap (sympy is slow to load).
    from math_verify import parse

    # Wrapping in \boxed{} makes math-verify take the whole answer as one expression.
    return parse("\\boxed{" + answer + "}", parsing_timeout=timeout)


def answers_match(predicted: str, reference: str, *, timeout_seconds: int | None = None) -> bool:
    """Whether two extracted answers are mathematically equivalent (math-verify).

    Both are normalized with `normalize_answer` first. `timeout_seconds` uses
    math-verify's signal-based timeout and so must be None off the main thread; None
    means the caller bounds the time (math-verify's warning about it is not logged).

    Example:
      >>> answers_match("0.75", "3/4")
      True
      >>> answers_match("1,000", "1000")
      True
      >>> answers_match("-3", "3")
      False
    """
    from math_verify import verify

    with _timeout_notice_dropped(timeout_seconds):
        gold = _parse(normalize_answer(reference), timeout_seconds)
        if not gold:
            raise ValueError(f"reference answer {reference!r} could not be parsed by math-verify")
        pred = _parse(normalize_answer(predicted), timeout_seconds)
        if not pred:
            return False
        return bool(verify(gold, pred, timeout_seconds=timeout_seconds))


@dataclasses.dataclass(frozen=True, kw_only=True)
class MathAnswerReward:
    """1 if the completion's final answer equals the reference answer, else 0.

    r = correct_reward   if verify(parse(ref), parse(extract(completion)))
        incorrect_reward otherwise (also when no answer can be extracted)

    Rule-based outcome rewards of this kind are used for RL of reasoning models, e.g.
    DeepSeek-AI, "DeepSeek-R1: Incentivizing Reasoning Capability in LLMs via
    Reinforcement Learning", arXiv:2501.12948. Extraction and comparison rules are in
    the module docstring. It parses model-written text with sympy, which can hang on
    pathological input: inside `CombinedReward`, prefer `isolation="process"`.

    Attributes:
      answer_field: record field holding the reference (GSM8K `answer` by default).
      correct_reward: value for a correct answer.
      incorrect_reward: value for a wrong or missing answer.
      timeout_seconds: math-verify's per-operation timeout, applied on the main
        thread only (see the module docstring); None disables it.

    Example:
      >>> reward = MathAnswerReward()
      >>> reward(["q", "q"], ["... #### 1,000", "The answer is 999"],
      ...        answer=["so 10*100=1000\\n#### 1000", "#### 1000"]).tolist()
      [1.0, 0.0]
    """

    answer_field: str = "answer"
    correct_reward: float = 1.0
    incorrect_reward: float = 0.0
    timeout_seconds: int | None = 5

    def __post_init__(self):
        if self.timeout_seconds is not None and (
            not isinstance(self.timeout_seconds, int) or self.timeout_seconds <= 0
        ):
            raise ValueError(
                f"timeout_seconds = {self.timeout_seconds!r}: expected a positive int (signal.alarm "
                "takes whole seconds) or None"
            )

    def score(self, completion: str, reference: Any) -> float:
        """Reward of one completion against one reference."""
        on_main = threading.current_thread() is threading.main_thread()
        timeout = self.timeout_seconds if on_main else None
        gold = extract_reference_answer(reference)
        if not gold:
            raise ValueError(f"{self.answer_field!r} = {reference!r}: reference answer is empty")
        pred = extract_answer(completion)
        if pred is None or not answers_match(pred, gold, timeout_seconds=timeout):
            return self.incorrect_reward
        return self.correct_reward

    def __call__(
        self, prompts: Sequence[Any], completions: Sequence[str], **fields: Sequence[Any]
    ) -> np.ndarray:
        check_batch(prompts, completions, fields, required=(self.answer_field,), source="MathAnswerReward")
        refs = fields[self.answer_field]
        return np.array([self.score(c, r) for c, r in zip(completions, refs)], dtype=np.float32)
