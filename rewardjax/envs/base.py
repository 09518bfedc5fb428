"""The environment interface of multi-turn rollouts.

An environment turns a prompt record into the text the policy starts from (`reset`)
and answers a batch of the policy's turns (`step`): for each rollout that is waiting,
the text the model wrote this turn goes in, and an observation to append, a reward and
whether the rollout is over come back. The rollout driver
(`rewardjax.envs.rollout.rollout`) batches the turns of every waiting rollout into one
`step` call, so an environment that runs code can run the whole batch concurrently.

Environments keep no per-rollout state between calls: each `Turn` carries the record,
the turn index and the transcript so far, so one environment object serves any number
of rollouts, in any order, from any thread.
"""

from __future__ import annotations

import abc
from typing import Any, Mapping, NamedTuple, Sequence


class Turn(NamedTuple):
    """One rollout waiting for the environment.

    rollout: the rollout's row in the batch.
    record: the record the rollout was reset from.
    turn: 0 for the model's first turn.
    text: what the model wrote this turn (decoded, the tool-call delimiter included).
    transcript: the earlier turns' texts and observations, alternating (model text,
      observation, model text, ...), without the prompt and without `text`.
    """

    rollout: int
    record: Mapping[str, Any]
    turn: int
    text: str
    transcript: tuple[str, ...]


class Transition(NamedTuple):
    """The environment's answer to one `Turn`.

    observation: text appended after the model's turn ("" for none); ignored when done.
    reward: this turn's reward (a rollout's return is the sum over its turns).
    done: the rollout is over (a final answer, or a failure the environment ends on).
    info: named outcomes (e.g. {"env/call_errors": 1.0}); values are numbers, summed
      per rollout (`Rollouts.infos`) and averaged over rollouts in the metrics.
    """

    observation: str
    reward: float
    done: bool
    info: Mapping[str, float] = {}


class Environment(abc.ABC):
    """What the multi-turn driver runs; see the module docstring."""

    @abc.abstractmethod
    def reset(self, record: Mapping[str, Any]) -> str:
        """The prompt text the model continues (chat template applied if wanted)."""

    @abc.abstractmethod
    def step(self, turns: Sequence[Turn]) -> Sequence[Transition]:
        """One `Transition` per `Turn`, in order. Called with every waiting rollout."""


def require_fields(record: Mapping[str, Any], fields: Sequence[str], owner: str) -> None:
    """Raises naming `owner` and the record's fields when `record` lacks one of `fields`."""
    for field in fields:
        if field not in record:
            raise KeyError(f"{owner}: record has no {field!r} field (fields: {sorted(record)})")
