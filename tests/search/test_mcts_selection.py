"""MCTS on a hand-made tree, ReST-MCTS* value targets, and choices on hand-computed cases."""

import numpy as np
import pytest

from rewardjax.eval import selection as eval_selection
from rewardjax.search import (Node, aggregate, best_of_n, expected_credit, majority_vote, mcts,
                              rest_mcts_value_targets, selection_accuracies,
                              value_target_records, weighted_vote)
from rewardjax.search.mcts import best_terminal

# A tree whose greedy path is a trap: "a" looks best after one step, but every answer
# under it is poor; the best answer (1.0) sits under "b" behind a mediocre step.
TREE = {
    "": [("a", 0.7), ("b", 0.4), ("c", 0.1)],
    "a": [("aa", 0.5), ("ab", 0.45)],
    "aa": [("aa.", 0.2)], "ab": [("ab.", 0.3)],
    "b": [("ba", 0.5), ("bb", 0.3)],
    "ba": [("ba.", 1.0)], "bb": [("bb.", 0.1)],
    "c": [("c.", 0.0)],
}


def _expand(leaves):
    out = []
    for leaf in leaves:
        if leaf is None:
            out.append([])
            continue
        out.append([(name, value, name.endswith(".")) for name, value in TREE[leaf.data]])
    return out


def test_mcts_finds_the_optimal_path_of_a_hand_made_tree():
    root = Node("")
    mcts(_expand, [root], simulations=30, c_uct=1.0)
    best = best_terminal(root)
    assert best.data == "ba."
    assert [n.data for n in best.path()] == ["", "b", "ba", "ba."]
    # Greedy one-step choice would have taken "a".
    assert max(TREE[""], key=lambda x: x[1])[0] == "a"


def test_mcts_runs_roots_in_lockstep_and_backs_up_terminal_values():
    roots = [Node(""), Node("b")]
    mcts(_expand, roots, simulations=12, c_uct=1.0)
    assert best_terminal(roots[1]).data == "ba."
    assert roots[0].visits == 12 and roots[1].visits == 12


def test_rest_mcts_value_targets():
    v = rest_mcts_value_targets([True, True, True], [2, 1, 0])
    np.testing.assert_allclose(v, [1 / 3, 2 / 3, 1.0])
    # A wrong step: w = -(1 - v)/(m + 1), floored at 0.
    v = rest_mcts_value_targets([True, False], [1, 0])
    np.testing.assert_allclose(v, [0.5, 0.0])
    v = rest_mcts_value_targets([True, False], [1, 3])
    np.testing.assert_allclose(v, [0.5, 0.375])


def test_value_target_records_label_paths_by_reachable_correct_answers():
    root = Node("")
    mcts(_expand, [root], simulations=30)

    class C:
        def __init__(self, steps):
            self.steps = steps

    nodes = [n for n in root.descendants() if n.parent is not None]
    steps = {n.id: tuple(p.data for p in n.path()[1:]) for n in nodes}
    for n in nodes:
        n.data = {"name": n.data, "candidate": C(steps[n.id])}
    recs = value_target_records([root], ["q"], lambda b, node: node.data["name"] == "ba.")
    by_steps = {r.steps: r.labels for r in recs}
    np.testing.assert_allclose(by_steps[("b", "ba", "ba.")], [1 / 3, 2 / 3, 1.0])
    assert by_steps[("a", "aa", "aa.")][-1] == 0.0
    assert all(0.0 <= x <= 1.0 for r in recs for x in r.labels)


def test_best_of_n_and_votes_on_hand_computed_cases():
    c = best_of_n(["4", "5", "6"], [0.2, 0.9, 0.9])
    assert (c.index, c.answer, c.tied) == (1, "5", (1, 2))
    assert expected_credit(c, ["4", "5", "6"], [False, True, False], by="index") == 0.5
    assert majority_vote(["4", "5", "5", "4", "7"]).tied == ("4", "5")
    assert majority_vote(["4", "5", "5", "4", "7"]).answer == "4"  # first vote comes first
    assert majority_vote([None, None, "3"]).answer == "3"  # unanswered never win
    assert majority_vote([None, None]).answer is None
    w = weighted_vote(["4", "4", "5"], [0.2, 0.3, 0.9])
    assert (w.answer, w.index) == ("5", 2)
    with pytest.raises(ValueError, match="non-negative"):
        weighted_vote(["4"], [-1.0])
    with pytest.raises(ValueError, match="2 scores for 3"):
        best_of_n(["4", "5", "6"], [0.1, 0.2])


def test_selection_accuracies_follow_eval_selection():
    answers = [["4", "4", "5"], ["1", "2", None]]
    correct = [[True, True, False], [False, True, False]]
    scores = {"prm": [[0.1, 0.2, 0.9], [0.5, 0.5, 0.9]]}
    acc = selection_accuracies(answers, correct, scores)
    assert acc["majority"] == pytest.approx((1.0 + 0.5) / 2)
    assert acc["best_of_n/prm"] == eval_selection.best_of_n_accuracy(scores["prm"], correct)
    assert acc["best_of_n/prm"] == 0.0
    assert acc["weighted/prm"] == pytest.approx((0.0 + 0.5) / 2)


def test_aggregations():
    s = np.array([[0.9, 0.5, 0.8, 0.0], [0.6, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]])
    n = np.array([3, 1, 0])
    np.testing.assert_allclose(aggregate(s, n, "last"), [0.8, 0.6, 0.0])
    np.testing.assert_allclose(aggregate(s, n, "min"), [0.5, 0.6, 0.0])
    np.testing.assert_allclose(aggregate(s, n, "prod"), [0.36, 0.6, 0.0])
    np.testing.assert_allclose(aggregate(s, n, "mean"), [2.2 / 3, 0.6, 0.0])
    with pytest.raises(ValueError, match="aggregation"):
        aggregate(s, n, "max")
