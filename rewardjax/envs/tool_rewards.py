"""Fine-grained tool-call rewards ("ToolRL: Reward is All Tool Learning Needs",
arXiv:2504.13958, Sec. 3.3).

A response's tool calls P are compared with the ground-truth calls G at three levels,
and its layout is checked once:

    r_name  = |names(G) ∩ names(P)| / |names(G) ∪ names(P)|               ∈ [0, 1]
    r_param = Σ_(g,p) matched |keys(g) ∩ keys(p)| / |keys(g) ∪ keys(p)|   ∈ [0, |G|]
    r_value = Σ_(g,p) matched Σ_(k ∈ keys(g)) 1[g[k] = p[k]]     ∈ [0, Σ_g |keys(g)|]
    S_max   = 1 + |G| + Σ_g |keys(g)|
    R_correct = 6 · (r_name + r_param + r_value) / S_max − 3               ∈ [−3, 3]
    R_format  = 1 if the response's tags are all present and in order, else 0
    R = R_format + R_correct                                               ∈ [−3, 4]

Calls are paired by the assignment that maximises the per-pair score (param Jaccard +
matching values), as the paper does; unpaired calls score nothing but still count in
the name sets. Name sets are sets of distinct names, as in the paper's Jaccard.
Argument values are compared after `normalize` (whitespace removed), the exact-match
test the paper uses on values.
"""

from __future__ import annotations

import re
from typing import Mapping, NamedTuple, Sequence

import numpy as np
from scipy.optimize import linear_sum_assignment


class ToolCall(NamedTuple):
    """One call: the tool's name and its arguments by name (values as text)."""

    name: str
    arguments: Mapping[str, str]


class ToolReward(NamedTuple):
    """The parts of the ToolRL reward for one response."""

    name: float
    param: float
    value: float
    max_score: float
    correct: float  # R_correct in [-3, 3]
    format: float  # R_format in {0, 1}

    @property
    def total(self) -> float:
        return self.format + self.correct


def normalize(value: str) -> str:
    """An argument value as compared: all whitespace removed."""
    return re.sub(r"\s+", "", str(value))


def _pair_score(g: ToolCall, p: ToolCall) -> tuple[float, float]:
    gk, pk = set(g.arguments), set(p.arguments)
    union = gk | pk
    param = len(gk & pk) / len(union) if union else 1.0
    value = float(sum(k in p.arguments and normalize(g.arguments[k]) == normalize(p.arguments[k])
                      for k in gk))
    return param, value


def correctness(predicted: Sequence[ToolCall], truth: Sequence[ToolCall]) -> ToolReward:
    """R_correct of `predicted` against `truth` (format left at 0); see the module
    docstring for the equation.

    >>> t = [ToolCall("python", {"code": "print(2+3)"})]
    >>> correctness([ToolCall("python", {"code": "print(2 + 3)"})], t).correct
    3.0
    >>> correctness([], t).correct
    -3.0
    """
    g_names, p_names = {c.name for c in truth}, {c.name for c in predicted}
    union = g_names | p_names
    r_name = len(g_names & p_names) / len(union) if union else 1.0
    r_param = r_value = 0.0
    if truth and predicted:
        score = np.zeros((len(truth), len(predicted)))
        parts = {}
        for i, g in enumerate(truth):
            for j, p in enumerate(predicted):
                parts[i, j] = _pair_score(g, p)
                score[i, j] = sum(parts[i, j])
        rows, cols = linear_sum_assignment(score, maximize=True)
        r_param = float(sum(parts[i, j][0] for i, j in zip(rows, cols)))
        r_value = float(sum(parts[i, j][1] for i, j in zip(rows, cols)))
    s_max = 1.0 + len(truth) + sum(len(g.arguments) for g in truth)
    correct = 6.0 * (r_name + r_param + r_value) / s_max - 3.0
    return ToolReward(name=r_name, param=r_param, value=r_value, max_score=s_max,
                      correct=correct, format=0.0)


def tags_in_order(text: str, tags: Sequence[str]) -> bool:
    """Whether every tag occurs in `text`, each after the previous one's first match."""
    pos = 0
    for tag in tags:
        i = text.find(tag, pos)
        if i < 0:
            return False
        pos = i + len(tag)
    return True


def tool_reward(predicted: Sequence[ToolCall], truth: Sequence[ToolCall], *,
                format_ok: bool) -> ToolReward:
    """R = R_format + R_correct (ToolRL, arXiv:2504.13958): `format_ok` is the layout
    check of the caller's format (e.g. `tags_in_order`)."""
    return correctness(predicted, truth)._replace(format=1.0 if format_ok else 0.0)
