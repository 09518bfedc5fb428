"""Rule-based step rewards for the synthetic arithmetic task's worked solutions.

A worked solution is lines `a op b = c` then `Answer: x`. These rewards stand in for a
learned process / thinking reward model in the tiny reward-design experiments: they
score the reasoning without looking at the final answer, and some of them can be
gamed, which is what Posterior-GRPO and PURE are about.
"""

from __future__ import annotations

import re

import numpy as np

STEP = re.compile(r"^\s*(-?\d+)\s*([+\-])\s*(\d+)\s*=\s*(-?\d+)\s*$")


def step_lines(completion: str) -> list[str]:
    """The completion's lines before its `Answer:` line (all lines without one)."""
    lines = completion.split("\n")
    for i, line in enumerate(lines):
        if line.strip().startswith("Answer:"):
            return lines[:i]
    return lines


def step_correct(line: str) -> bool | None:
    """True/False for a well-formed `a op b = c` line by its arithmetic; None otherwise."""
    m = STEP.match(line)
    if m is None:
        return None
    a, op, b, c = int(m[1]), m[2], int(m[3]), int(m[4])
    return (a + b if op == "+" else a - b) == c


def worked_steps_reward(completions, *, cap: int = 3) -> np.ndarray:
    """A thinking reward that looks only at the form of the reasoning: the number of
    well-formed `a op b = c` lines, right or wrong, up to `cap`, over `cap`; in [0, 1].

    Example:
      >>> worked_steps_reward(["1 + 2 = 3\\n3 + 1 = 9\\nAnswer: 9", "Answer: 4"], cap=2)
      array([1., 0.], dtype=float32)
    """
    return np.array([min(sum(step_correct(l) is not None for l in step_lines(c)), cap) / cap
                     for c in completions], np.float32)


def step_end_rewards(tokenizer, tokens_rt, mask_rt, *, right: float = 1.0,
                     wrong: float = -1.0) -> np.ndarray:
    """[R, T] rewards of each completion's worked steps, placed at the token that ends
    each step line (where the decoded prefix first contains the line's newline):
    `right` for a correct `a op b = c` line, `wrong` for a wrong or malformed one; 0
    elsewhere and on the `Answer:` line (the outcome reward judges that)."""
    R, T = tokens_rt.shape
    out = np.zeros((R, T), np.float32)
    for r in range(R):
        n = int(mask_rt[r].sum())
        ids = [int(t) for t in tokens_rt[r, :n]]
        text = tokenizer.decode(ids, skip_special_tokens=True)
        steps = step_lines(text)
        if not steps or (len(steps) == 1 and not steps[0].strip()):
            continue
        seen = 0
        for t in range(n):
            lines = tokenizer.decode(ids[:t + 1], skip_special_tokens=True).count("\n")
            if lines > seen and seen < len(steps):
                ok = step_correct(steps[seen])
                out[r, t] = right if ok else wrong
                seen = lines
    return out


class StepRuleReward:
    """(b) A rule-based PRM as the RL loop's dense reward (`RLExtensions.dense`): each
    worked step's arithmetic checked exactly, its reward on the step's last token
    (`step_end_rewards`), read with the trainer's tokenizer. Stateless."""

    def __init__(self, *, right: float = 1.0, wrong: float = -1.0):
        self.tokenizer, self.right, self.wrong = None, right, wrong

    def init(self, trainer, policy_params):
        self.tokenizer = trainer.tokenizer
        return None

    def step(self, state, batch):
        P = batch.tokens.shape[1] - batch.completion_mask.shape[1]
        r = step_end_rewards(self.tokenizer, batch.tokens[:, P:], batch.completion_mask,
                             right=self.right, wrong=self.wrong)
        steps = r != 0
        return state, r, {"process/reward_sum": float(r.sum(-1).mean()),
                          "process/steps": float(steps.sum(-1).mean())}
