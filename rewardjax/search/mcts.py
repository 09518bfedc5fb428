"""Monte Carlo tree search over reasoning steps, and ReST-MCTS*'s per-step value targets.

A node is a partial solution (a prompt plus k steps); its children are sampled next
steps. One simulation: descend from the root by UCT,

    child = argmax_c  Q(c) + c_uct · sqrt(ln N(parent) / N(c)),   Q = W / N,

until a node without children; a terminal node backs its value up again, any other
is expanded into `expansions` children, each evaluated once (value = the PRM's score of
its prefix, aggregated over its steps), and the mean of their values is backed up
along the path (N += 1, W += v at every ancestor). This is the search of RAP
("Reasoning with Language Model is Planning with World Model", arXiv:2305.14992) with
a PRM as the reward, as in ReST-MCTS* ("ReST-MCTS*: LLM Self-Training via Process
Reward Guided Tree Search", arXiv:2406.03816). The answer is the terminal node with
the highest value (more visits break ties); if no simulation reached one, the most
visited path is finished by sampling.

`mcts(expand, roots, ...)` is the algorithm on any tree (`expand` maps leaves to their
evaluated children); `mcts_search` runs it for a batch of prompts on a `StepGenerator`:
every node is one row of a store state, an expansion gathers the selected leaves' rows
M times (one row per child, no re-prefill), writes one step and puts the children back.
The store's rows share the write slot, so each expansion uses up to `step_tokens` slots
of the response budget: `StepConfig.max_tokens` must cover simulations × step length.

Value targets (ReST-MCTS*, eq. for the quality value): with r_k = 0 for a step from
which the tree reaches a correct answer and 1 otherwise, and m_k the reasoning distance
(steps still needed after step k; for a correct step the fewest to a correct answer),

    w_k = (1 − v_{k−1}) / (m_k + 1) · (1 − 2 r_k),   v_k = max(v_{k−1} + w_k, 0),  v_0 = 0,

so v rises to 1 along a correct solution and falls along a wrong one. Each finished
path becomes a `StepSolution` with labels v_k, records a PRM can be retrained on.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from typing import Any, Callable, Sequence

import numpy as np

from rewardjax.data.records import StepSolution
from rewardjax.search.search import (AnswerFn, SearchConfigError, SearchResult, _check_common,
                                     _encode, _questions, _Run)
from rewardjax.sampling.stepwise import StepGenerator, candidates, running


@dataclasses.dataclass(frozen=True, kw_only=True)
class MCTSConfig:
    """simulations: per prompt; expansions: children per expansion; c_uct: exploration
    weight; value: aggregation of a child's step scores into its value."""

    simulations: int = 16
    expansions: int = 2
    c_uct: float = 1.0
    value: str = "min"

    def __post_init__(self):
        for name in ("simulations", "expansions"):
            v = getattr(self, name)
            if not isinstance(v, int) or v < 1:
                raise SearchConfigError(f"MCTSConfig.{name} must be a positive int, got {v!r}")
        if not self.c_uct >= 0:
            raise SearchConfigError(f"MCTSConfig.c_uct must be >= 0, got {self.c_uct!r}")


_ids = itertools.count()


class Node:
    """A tree node: `data` is the caller's (a store row and candidate), `value` its
    evaluation, `visits`/`total` the backed-up statistics."""

    __slots__ = ("parent", "children", "visits", "total", "value", "terminal", "depth", "data",
                 "id")

    def __init__(self, data: Any = None, *, value: float = 0.0, terminal: bool = False,
                 parent: "Node | None" = None):
        self.parent, self.children = parent, []
        self.visits, self.total = 0, 0.0
        self.value, self.terminal, self.data = float(value), bool(terminal), data
        self.depth = 0 if parent is None else parent.depth + 1
        self.id = next(_ids)

    @property
    def q(self) -> float:
        return self.total / self.visits if self.visits else 0.0

    def path(self) -> list["Node"]:
        """Root first."""
        out, node = [], self
        while node is not None:
            out.append(node)
            node = node.parent
        return out[::-1]

    def descendants(self):
        stack = [self]
        while stack:
            node = stack.pop()
            yield node
            stack.extend(node.children)


Children = Sequence[tuple[Any, float, bool]]  # (data, value, terminal) of each child


def _select(root: Node, c_uct: float) -> Node:
    node = root
    while node.children:
        log_n = math.log(max(node.visits, 1))
        node = max(node.children,
                   key=lambda c: c.q + c_uct * math.sqrt(log_n / max(c.visits, 1)))
    return node


def _backup(node: Node, value: float) -> None:
    while node is not None:
        node.visits += 1
        node.total += value
        node = node.parent


def mcts(expand: Callable[[list[Node | None]], list[Children]], roots: Sequence[Node], *,
         simulations: int, c_uct: float = 1.0) -> None:
    """Grows each root's tree by `simulations` UCT simulations, all roots in lockstep
    (RAP arXiv:2305.14992 / ReST-MCTS* arXiv:2406.03816; see the module docstring).

    `expand(leaves)` gets one leaf per root (None where the selected leaf is terminal)
    and returns each leaf's children as (data, value, terminal).
    """
    for _ in range(simulations):
        leaves = [_select(root, c_uct) for root in roots]
        todo = [None if leaf.terminal else leaf for leaf in leaves]
        children = expand(todo) if any(t is not None for t in todo) else [[] for _ in todo]
        for leaf, kids in zip(leaves, children):
            if leaf.terminal or not kids:
                _backup(leaf, leaf.value)
                continue
            for data, value, terminal in kids:
                child = Node(data, value=value, terminal=terminal, parent=leaf)
                child.visits, child.total = 1, child.value
                leaf.children.append(child)
            _backup(leaf, float(np.mean([k[1] for k in kids])))


def best_terminal(root: Node) -> Node | None:
    """The terminal node of highest value (then most visits, then first created)."""
    ends = [n for n in root.descendants() if n.terminal]
    return max(ends, key=lambda n: (n.value, n.visits, -n.id)) if ends else None


def most_visited_leaf(root: Node) -> Node:
    node = root
    while node.children:
        node = max(node.children, key=lambda c: (c.visits, c.q, -c.id))
    return node


# ----------------------------------------------------------------------------- on the policy


class StepEnv:
    """Expansion on a `StepGenerator`: nodes are rows of a store state (see module doc)."""

    def __init__(self, run: _Run, store, *, expansions: int, capacity: int, value: str):
        self.run, self.store, self.M = run, store, expansions
        self.capacity, self.value = capacity, value
        self.used = [1] * len(run.prompts)  # row 0 of each prompt's block is its root

    def __call__(self, leaves: list[Node | None]) -> list[Children]:
        gen, M, B = self.run.gen, self.M, len(leaves)
        index = np.zeros((B * M,), np.int32)
        live = np.zeros((B * M,), bool)
        dest = np.full((B * M,), self.store.num_rows, np.int32)
        for b, leaf in enumerate(leaves):
            if leaf is None or self.used[b] + M > self.capacity:
                continue
            index[b * M:(b + 1) * M] = leaf.data["row"]
            live[b * M:(b + 1) * M] = True
            dest[b * M:(b + 1) * M] = b * self.capacity + self.used[b] + np.arange(M)
            self.used[b] += M
        work = gen.select(self.store, index, live=live)
        work = self.run.step(work)
        cands = candidates(work)
        scores = self.run.score(work, cands)
        values = scores.aggregate(self.value)
        self.store = gen.put(self.store, work, dest)
        out: list[Children] = []
        for b in range(B):
            kids = []
            for j in range(b * M, (b + 1) * M):
                if live[j]:
                    data = {"row": int(dest[j]), "candidate": self.run.candidate(cands, j, scores)}
                    kids.append((data, float(values[j]), bool(cands.done[j])))
            out.append(kids)
        return out


def mcts_search(gen: StepGenerator, prompts: Sequence, key=None, *, config: MCTSConfig,
                tokenizer, answer_fn: AnswerFn, scorer, questions: Sequence[str] | None = None
                ) -> tuple[SearchResult, list[Node]]:
    """MCTS over steps for each prompt with a PRM as the value (module docstring).

    Returns the `SearchResult` (candidates: the terminal nodes found, plus the most
    visited path finished by sampling when there is none; scores: their values) and
    the roots, for `value_target_records`.
    """
    _check_common(gen, prompts, n=config.simulations, scorer=scorer, aggregate=config.value,
                  policy_tokenizer=tokenizer)
    if scorer is None:
        raise SearchConfigError("mcts_search needs a scorer (the value of a node)")
    run = _Run(gen, prompts, key, scorer=scorer, tokenizer=tokenizer,
               questions=_questions(prompts, questions), answer_fn=answer_fn)
    capacity = 1 + config.simulations * config.expansions
    store = gen.start(_encode(prompts, tokenizer), copies=capacity)
    roots = [Node({"row": b * capacity, "candidate": None}) for b in range(len(prompts))]
    env = StepEnv(run, store, expansions=config.expansions, capacity=capacity, value=config.value)
    mcts(env, roots, simulations=config.simulations, c_uct=config.c_uct)

    unfinished = [b for b, root in enumerate(roots) if best_terminal(root) is None]
    if unfinished:
        rows = [most_visited_leaf(roots[b]).data["row"] for b in unfinished]
        state = gen.select(env.store, rows)
        for _ in range(gen.steps.max_steps):
            if not running(state).any():
                break
            state = run.step(state)
        cands = candidates(state)
        scores = run.score(state, cands)
        for j, b in enumerate(unfinished):
            run.pool[b].append(run.candidate(cands, j, scores))
    for b, root in enumerate(roots):
        ends = sorted((n for n in root.descendants() if n.terminal), key=lambda n: n.id)
        run.pool[b][:0] = [n.data["candidate"] for n in ends]
    # A terminal node's value is its candidate's aggregated score, so `result` ranks by it.
    return run.result(config.value), roots


# ----------------------------------------------------------------------------- value targets


def rest_mcts_value_targets(step_correct: Sequence[bool], distances: Sequence[int]) -> np.ndarray:
    """ReST-MCTS*'s quality values v_k of one path (arXiv:2406.03816):

        w_k = (1 − v_{k−1}) / (m_k + 1) · (1 − 2 r_k),  v_k = max(v_{k−1} + w_k, 0),  v_0 = 0,

    r_k = 0 for a correct step, 1 otherwise; m_k = `distances[k]` steps still needed.

    >>> rest_mcts_value_targets([True, True, True], [2, 1, 0]).round(3).tolist()
    [0.333, 0.667, 1.0]
    """
    if len(step_correct) != len(distances):
        raise ValueError(f"{len(step_correct)} step flags for {len(distances)} distances")
    v, out = 0.0, []
    for ok, m in zip(step_correct, distances):
        if m < 0:
            raise ValueError(f"reasoning distances must be >= 0, got {m}")
        w = (1.0 - v) / (m + 1) * (1.0 if ok else -1.0)
        v = max(v + w, 0.0)
        out.append(v)
    return np.asarray(out)


def value_target_records(roots: Sequence[Node], questions: Sequence[str],
                         is_correct: Callable[[int, Node], bool]) -> list[StepSolution]:
    """Per-step value targets of every finished path of the search trees, as PRM records.

    A step is correct (r = 0) when some terminal below it is correct (`is_correct(b,
    node)` for prompt b), with m = the fewest steps from it to such a terminal;
    otherwise r = 1 and m = the steps from it to the deepest terminal below it.
    """
    records = []
    for b, root in enumerate(roots):
        good: dict[int, int] = {}  # node id -> fewest steps to a correct terminal below
        height: dict[int, int] = {}
        for node in sorted(root.descendants(), key=lambda n: -n.depth):
            kids = node.children
            height[node.id] = max((height[c.id] + 1 for c in kids), default=0)
            dist = [good[c.id] + 1 for c in kids if c.id in good]
            if node.terminal and is_correct(b, node):
                dist.append(0)
            if dist:
                good[node.id] = min(dist)
        for end in (n for n in root.descendants() if n.terminal):
            path = end.path()[1:]
            ok = [n.id in good for n in path]
            m = [good[n.id] if n.id in good else height[n.id] for n in path]
            labels = rest_mcts_value_targets(ok, m)
            steps = [s.strip() for s in end.data["candidate"].steps]
            if any(not s for s in steps):
                continue
            records.append(StepSolution(prompt=questions[b], steps=tuple(steps),
                                        labels=tuple(float(x) for x in labels)))
    return records
