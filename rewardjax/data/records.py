"""Validated record types for reward-model and RL data.

Every record is a frozen, keyword-only dataclass validated in `__post_init__`; a bad
field raises `RecordError` naming the field, what was expected and what was found.
Readers (`rewardjax.data.readers`) add the file and line to the same error.

A *prompt* is either plain text (a single user turn) or a list of chat messages
(`{"role", "content"}` with role system/user/assistant/tool). A *response* is plain
text (one assistant turn) or a list of assistant-side messages (assistant/tool, the
first one from the assistant). Lists of dicts are converted to tuples of `Message`, so
a record never shares the caller's (mutable) lists.

JSON forms (one object per JSONL line; unknown keys are ignored unless a reader runs
with `strict=True`):

- `PreferencePair`: `{prompt, chosen, rejected, margin?, subset?}`
- `Ranking`: `{prompt, responses: [...], ranking?: [best index, ...], scores?: [...]}`
- `AttributeRating`: `{prompt, response, ratings: {name: value or null}}`
- `StepSolution`: `{prompt, steps: [...], labels: [...]}` with labels in [0, 1]
- `SFTExample`: `{prompt, completion}`
- `PromptWithAnswer`: `{prompt, answer}` (a reference answer for verifiable rewards)
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, ClassVar, Mapping, Sequence, Union

ROLES = ("system", "user", "assistant", "tool")
RESPONSE_ROLES = ("assistant", "tool")
_MISSING = object()
ABSENT = object()  # `got` for a required field that is not there


class RecordError(ValueError):
    """An invalid record: names the field, what was expected and (if known) the source.

    Attributes:
      field: dotted/indexed field name, e.g. `prompt[1].role`; None for a malformed line.
      path, line: the file and 1-based line, when the record came from a file.
    """

    def __init__(self, field: str | None, expected: str, got: Any = _MISSING, *,
                 path: str | None = None, line: int | None = None):
        self.field, self.expected, self.got = field, expected, got
        self.path, self.line = path, line
        super().__init__(self._message())

    def _message(self) -> str:
        where = ""
        if self.path is not None:
            where = f"{self.path}:{self.line}: " if self.line is not None else f"{self.path}: "
        what = f"field {self.field!r}: " if self.field is not None else ""
        if self.got is _MISSING:
            found = ""
        elif self.got is ABSENT:
            found = ", but the field is missing"
        else:
            found = f", got {_short_repr(self.got)}"
        return f"{where}{what}expected {self.expected}{found}"

    def at(self, path: str, line: int) -> "RecordError":
        """The same error located at `path`:`line`."""
        return RecordError(self.field, self.expected, self.got, path=path, line=line)


def _short_repr(value: Any, limit: int = 80) -> str:
    text = repr(value)
    kind = type(value).__name__
    if len(text) > limit:
        text = text[:limit] + "..."
    return f"{kind} {text}"


@dataclasses.dataclass(frozen=True, kw_only=True)
class Message:
    """One chat turn."""

    role: str
    content: str

    def __post_init__(self):
        if self.role not in ROLES:
            raise RecordError("role", f"one of {', '.join(ROLES)}", self.role)
        if not isinstance(self.content, str):
            raise RecordError("content", "a string", self.content)

    def to_json(self) -> dict:
        return {"role": self.role, "content": self.content}


Messages = tuple[Message, ...]
TextOrMessages = Union[str, Messages]


def as_chat(value: TextOrMessages, *, role: str) -> list[dict]:
    """Chat-template input: text becomes one `role` turn; messages become dicts."""
    if isinstance(value, str):
        return [{"role": role, "content": value}]
    return [m.to_json() for m in value]


def _messages(value: Any, field: str, roles: Sequence[str]) -> Messages:
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise RecordError(field, "a string or a list of {role, content} messages", value)
    if not value:
        raise RecordError(field, "a non-empty list of messages", value)
    out = []
    for i, item in enumerate(value):
        name = f"{field}[{i}]"
        if isinstance(item, Message):
            message = item
        elif isinstance(item, Mapping):
            for key in ("role", "content"):
                if key not in item:
                    raise RecordError(f"{name}.{key}", "a message with role and content", ABSENT)
            if item["role"] not in roles:
                raise RecordError(f"{name}.role", f"one of {', '.join(roles)}", item["role"])
            if not isinstance(item["content"], str):
                raise RecordError(f"{name}.content", "a string", item["content"])
            message = Message(role=item["role"], content=item["content"])
        else:
            raise RecordError(name, "a {role, content} message", item)
        if message.role not in roles:
            raise RecordError(f"{name}.role", f"one of {', '.join(roles)}", message.role)
        out.append(message)
    return tuple(out)


def _prompt(value: Any, field: str = "prompt") -> TextOrMessages:
    """Text, or messages as a tuple of `Message` (dicts are validated and converted)."""
    if isinstance(value, str):
        return value
    return _messages(value, field, ROLES)


as_prompt = _prompt


def _response(value: Any, field: str) -> TextOrMessages:
    if isinstance(value, str):
        return value
    messages = _messages(value, field, RESPONSE_ROLES)
    if messages[0].role != "assistant":
        raise RecordError(f"{field}[0].role",
                          "'assistant' (a response starts with an assistant turn)",
                          messages[0].role)
    return messages


def _number(value: Any, field: str, *, low: float | None = None, high: float | None = None
            ) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise RecordError(field, _range_text(low, high), value)
    if (low is not None and value < low) or (high is not None and value > high):
        raise RecordError(field, _range_text(low, high), value)
    return float(value)


def _range_text(low, high) -> str:
    if low is not None and high is not None:
        return f"a number in [{low:g}, {high:g}]"
    return "a finite number"


def _optional_str(value: Any, field: str) -> str | None:
    if value is not None and not isinstance(value, str):
        raise RecordError(field, "a string or null", value)
    return value


def _set(obj, name, value):
    object.__setattr__(obj, name, value)


def _json_value(value: TextOrMessages):
    return value if isinstance(value, str) else [m.to_json() for m in value]


class _Record:
    """JSON conversion shared by the record types."""

    required: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_json(cls, obj: Any, *, strict: bool = False):
        """Builds a record from a parsed JSON object; raises `RecordError` on bad input."""
        if not isinstance(obj, Mapping):
            raise RecordError(None, f"a JSON object with fields {', '.join(cls.required)}", obj)
        for key in cls.required:
            if key not in obj:
                raise RecordError(key, f"a value (required by {cls.__name__})", ABSENT)
        names = {f.name for f in dataclasses.fields(cls)}
        if strict:
            for key in obj:
                if key not in names:
                    raise RecordError(key, f"one of the {cls.__name__} fields "
                                           f"{', '.join(sorted(names))} (strict mode)", obj[key])
        return cls(**{k: v for k, v in obj.items() if k in names})

    def to_json(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                continue
            if isinstance(value, tuple) and value and isinstance(value[0], Message):
                value = _json_value(value)
            elif isinstance(value, tuple):
                value = [_json_value(v) if isinstance(v, tuple) else v for v in value]
            elif isinstance(value, Mapping):
                value = dict(value)
            out[f.name] = value
        return out


@dataclasses.dataclass(frozen=True, kw_only=True)
class PreferencePair(_Record):
    """A prompt with a preferred (`chosen`) and a dispreferred (`rejected`) response.

    `margin` (optional) is how much `chosen` is preferred, e.g. the Llama-2 preference
    strength used as the Bradley–Terry margin; `subset` names the source split for
    per-subset accuracy.
    """

    required: ClassVar[tuple[str, ...]] = ("prompt", "chosen", "rejected")

    prompt: TextOrMessages
    chosen: TextOrMessages
    rejected: TextOrMessages
    margin: float | None = None
    subset: str | None = None

    def __post_init__(self):
        _set(self, "prompt", _prompt(self.prompt))
        _set(self, "chosen", _response(self.chosen, "chosen"))
        _set(self, "rejected", _response(self.rejected, "rejected"))
        if self.margin is not None:
            _set(self, "margin", _number(self.margin, "margin"))
        _optional_str(self.subset, "subset")


@dataclasses.dataclass(frozen=True, kw_only=True)
class Ranking(_Record):
    """A prompt with k >= 2 responses ordered by `ranking` and/or scored by `scores`.

    `ranking` lists response indices best first (a permutation of 0..k-1). `scores` are
    per-response (higher is better). With both, the ranking must order the scores
    non-increasingly. `order` gives the best-first order either way (ties in scores keep
    the response order).
    """

    required: ClassVar[tuple[str, ...]] = ("prompt", "responses")

    prompt: TextOrMessages
    responses: tuple[TextOrMessages, ...]
    ranking: tuple[int, ...] | None = None
    scores: tuple[float, ...] | None = None
    subset: str | None = None

    def __post_init__(self):
        _set(self, "prompt", _prompt(self.prompt))
        if isinstance(self.responses, (str, bytes)) or not isinstance(self.responses, Sequence):
            raise RecordError("responses", "a list of at least 2 responses", self.responses)
        if len(self.responses) < 2:
            raise RecordError("responses", "a list of at least 2 responses", self.responses)
        k = len(self.responses)
        _set(self, "responses",
             tuple(_response(r, f"responses[{i}]") for i, r in enumerate(self.responses)))
        if self.ranking is None and self.scores is None:
            raise RecordError("ranking", "a ranking or scores (one of them is required)", ABSENT)
        if self.ranking is not None:
            ranking = self.ranking
            if (isinstance(ranking, (str, bytes)) or not isinstance(ranking, Sequence)
                    or sorted(ranking) != list(range(k))
                    or any(isinstance(i, bool) or not isinstance(i, int) for i in ranking)):
                raise RecordError("ranking", f"a permutation of the response indices 0..{k - 1}, "
                                             "best first", ranking)
            _set(self, "ranking", tuple(ranking))
        if self.scores is not None:
            if (isinstance(self.scores, (str, bytes)) or not isinstance(self.scores, Sequence)
                    or len(self.scores) != k):
                raise RecordError("scores", f"a list of {k} numbers (one per response)",
                                  self.scores)
            _set(self, "scores",
                 tuple(_number(s, f"scores[{i}]") for i, s in enumerate(self.scores)))
        if self.ranking is not None and self.scores is not None:
            ordered = [self.scores[i] for i in self.ranking]
            if any(a < b for a, b in zip(ordered, ordered[1:])):
                raise RecordError("ranking", "an order consistent with scores (non-increasing)",
                                  self.ranking)
        _optional_str(self.subset, "subset")

    @property
    def order(self) -> tuple[int, ...]:
        """Response indices, best first."""
        if self.ranking is not None:
            return self.ranking
        return tuple(sorted(range(len(self.scores)), key=lambda i: -self.scores[i]))


@dataclasses.dataclass(frozen=True, kw_only=True)
class AttributeRating(_Record):
    """A response rated on named attributes (HelpSteer2: helpfulness, correctness, ...).

    A rating of None marks a missing attribute (masked out of regression losses).
    """

    required: ClassVar[tuple[str, ...]] = ("prompt", "response", "ratings")

    prompt: TextOrMessages
    response: TextOrMessages
    ratings: Mapping[str, float | None]
    subset: str | None = None

    def __post_init__(self):
        _set(self, "prompt", _prompt(self.prompt))
        _set(self, "response", _response(self.response, "response"))
        if not isinstance(self.ratings, Mapping) or not self.ratings:
            raise RecordError("ratings", "a non-empty object {attribute: number or null}",
                              self.ratings)
        ratings = {}
        for name, value in self.ratings.items():
            if not isinstance(name, str) or not name:
                raise RecordError("ratings", "attribute names that are non-empty strings", name)
            ratings[name] = None if value is None else _number(value, f"ratings.{name}")
        _set(self, "ratings", ratings)  # a copy: the caller's dict is never shared
        _optional_str(self.subset, "subset")


@dataclasses.dataclass(frozen=True, kw_only=True)
class StepSolution(_Record):
    """A step-by-step solution with one label per step, for process reward models.

    Labels are hard (0/1) or soft (in [0, 1], e.g. Monte Carlo estimates). Conventions
    follow Math-Shepherd (arXiv:2312.08935) and ProcessBench (arXiv:2412.06559): a
    step is correct (1) if it is right and every step before it is; after the first
    error every label is 0 for hard labels.
    """

    required: ClassVar[tuple[str, ...]] = ("prompt", "steps", "labels")

    prompt: TextOrMessages
    steps: tuple[str, ...]
    labels: tuple[float, ...]
    subset: str | None = None

    def __post_init__(self):
        _set(self, "prompt", _prompt(self.prompt))
        if (isinstance(self.steps, (str, bytes)) or not isinstance(self.steps, Sequence)
                or not self.steps):
            raise RecordError("steps", "a non-empty list of step strings", self.steps)
        for i, step in enumerate(self.steps):
            if not isinstance(step, str) or not step.strip():
                raise RecordError(f"steps[{i}]", "a non-empty string", step)
        _set(self, "steps", tuple(self.steps))
        if (isinstance(self.labels, (str, bytes)) or not isinstance(self.labels, Sequence)
                or len(self.labels) != len(self.steps)):
            raise RecordError("labels", f"a list of {len(self.steps)} labels (one per step)",
                              self.labels)
        _set(self, "labels", tuple(_number(v, f"labels[{i}]", low=0.0, high=1.0)
                                   for i, v in enumerate(self.labels)))
        _optional_str(self.subset, "subset")

    @property
    def is_hard(self) -> bool:
        return all(v in (0.0, 1.0) for v in self.labels)

    @property
    def first_error(self) -> int:
        """Index of the first step labeled < 0.5, or -1 if none (ProcessBench convention)."""
        return next((i for i, v in enumerate(self.labels) if v < 0.5), -1)

    def up_to_first_error(self) -> "StepSolution":
        """This solution cut after its first step labelled wrong (itself if none is).

        PRM800K ("Let's Verify Step by Step", arXiv:2305.20050) labels a solution only
        up to its first wrong step; training a PRM on such prefixes teaches it the
        check of one step, which is all first-error identification reads (later steps
        of a causal model cannot change the scores before them).
        """
        end = self.first_error
        if end < 0:
            return self
        return dataclasses.replace(self, steps=self.steps[:end + 1],
                                   labels=self.labels[:end + 1])


@dataclasses.dataclass(frozen=True, kw_only=True)
class SFTExample(_Record):
    """A prompt and the completion to imitate."""

    required: ClassVar[tuple[str, ...]] = ("prompt", "completion")

    prompt: TextOrMessages
    completion: TextOrMessages

    def __post_init__(self):
        _set(self, "prompt", _prompt(self.prompt))
        _set(self, "completion", _response(self.completion, "completion"))


@dataclasses.dataclass(frozen=True, kw_only=True)
class PromptWithAnswer(_Record):
    """A prompt and its reference answer, for RL with verifiable rewards."""

    required: ClassVar[tuple[str, ...]] = ("prompt", "answer")

    prompt: TextOrMessages
    answer: str

    def __post_init__(self):
        _set(self, "prompt", _prompt(self.prompt))
        if not isinstance(self.answer, str):
            raise RecordError("answer", "a string", self.answer)


RECORD_TYPES = (PreferencePair, Ranking, AttributeRating, StepSolution, SFTExample,
                PromptWithAnswer)
