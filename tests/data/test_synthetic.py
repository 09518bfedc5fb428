"""The synthetic arithmetic task."""

import re

import numpy as np
import pytest

from rewardjax.data import synthetic as S
from rewardjax.data.records import PreferencePair, PromptWithAnswer, SFTExample, StepSolution

STEP = re.compile(r"^(\d+) ([-+*]) (\d+) = (\d+)$")


def _values(solution):
    return [int(STEP.match(line).group(4)) for line in solution.steps[:-1]]


def test_format_of_a_known_problem():
    problem = S.Problem(start=12, ops=("+", "*", "-"), operands=(7, 3, 5))
    assert problem.question == ("Start with 12. Add 7. Multiply by 3. Subtract 5. "
                                "What is the result?")
    solution = S.solve(problem)
    assert solution.text == "12 + 7 = 19\n19 * 3 = 57\n57 - 5 = 52\nAnswer: 52"
    assert solution.is_correct and solution.labels == (1, 1, 1, 1)
    assert S.extract_answer(solution.text) == problem.answer == 52
    assert S.check_steps(problem, solution.text) == -1
    assert S.check_steps(problem, "12 + 7 = 19\n19 * 3 = 56\n56 - 5 = 51\nAnswer: 51") == 1
    assert S.check_steps(problem, "12 + 7 = 19\n19 * 3 = 57") == 2


@pytest.mark.parametrize("text, answer", [
    ("1 + 2 = 3\nAnswer: 3", 3),
    ("Answer: 12\nAnswer:  -4", -4),
    ("answer is 7", None),
    ("Answer: x", None),
    ("Answer: 42<|im_end|>", 42),
    ("", None),
])
def test_extract_answer(text, answer):
    assert S.extract_answer(text) == answer


def test_is_correct():
    assert S.is_correct("Answer: 5", "5") and S.is_correct("Answer: 5", 5)
    assert not S.is_correct("Answer: 6", "5") and not S.is_correct("no answer", "5")


def test_seeded_and_deterministic():
    a = S.problems(50, seed=7)
    assert a == S.problems(50, seed=7)
    assert a[:10] == S.problems(10, seed=7)  # item i does not depend on n
    assert a != S.problems(50, seed=8)
    assert S.solutions(30, seed=7) == S.solutions(30, seed=7)
    assert S.preference_pairs(20, seed=7) == S.preference_pairs(20, seed=7)


def test_difficulty_knobs_and_ranges():
    config = S.ArithmeticConfig(min_steps=3, max_steps=3, max_operand=5, max_value=50,
                                max_start=10, ops=("+", "-"))
    for p in S.problems(200, seed=0, config=config):
        assert len(p.ops) == 3 and set(p.ops) <= {"+", "-"}
        assert all(1 <= b <= 5 for b in p.operands) and 0 <= p.start <= 10
        assert all(0 <= v <= 50 for v in p.values)
    default = S.problems(500, seed=1)
    assert {len(p.ops) for p in default} == {2, 3, 4}
    assert {op for p in default for op in p.ops} == {"+", "-", "*"}
    assert all(0 <= v <= 99 for p in default for v in p.values)
    with pytest.raises(ValueError, match="min_steps"):
        S.ArithmeticConfig(min_steps=3, max_steps=2)
    with pytest.raises(ValueError, match="corruptions"):
        S.ArithmeticConfig(corruptions=("typo",))


@pytest.mark.parametrize("corruptions", [("result",), ("misread",), ("result", "misread")])
def test_corruption_first_error_is_exact(corruptions):
    config = S.ArithmeticConfig(corruptions=corruptions)
    first_errors = []
    for i in range(300):
        bad = S.corrupted(i, seed=3, config=config)
        good = S.solve(bad.problem)
        j = bad.first_error
        first_errors.append(j)
        assert 0 <= j < len(bad.problem.ops)
        assert bad.steps[:j] == good.steps[:j] and bad.steps[j] != good.steps[j]
        assert S.check_steps(bad.problem, bad.text) == j
        assert bad.labels == tuple([1.0] * j + [0.0] * (len(bad.steps) - j))
        # Every line is well-formed; lines after the error compute correctly from the
        # wrong value, so the wrong value propagates to a wrong final answer.
        for line in bad.steps[:-1]:
            a, op, b, c = STEP.match(line).groups()
            if line != bad.steps[j] or corruptions == ("misread",):
                assert S.arithmetic.OPS[op](int(a), int(b)) == int(c)
        values = _values(bad)
        assert all(0 <= v <= config.max_value for v in values)
        assert S.extract_answer(bad.text) == values[-1] != bad.problem.answer
        assert not S.is_correct(bad.text, bad.problem.answer)
    assert set(first_errors) == {0, 1, 2, 3}


def test_record_generators():
    pairs = S.preference_pairs(20, seed=0)
    assert all(isinstance(p, PreferencePair) for p in pairs)
    for p in pairs:
        assert S.is_correct(p.chosen, S.extract_answer(p.chosen))
        assert S.extract_answer(p.chosen) != S.extract_answer(p.rejected)
        assert p.subset in ("steps_2", "steps_3", "steps_4")
    mixed = S.preference_pairs(200, seed=0, step_fraction=0.5)
    step_pairs = [p for p in mixed if p.subset == "step"]
    assert 60 < len(step_pairs) < 140
    for whole, p in zip(S.preference_pairs(200, seed=0), mixed):
        if p.subset != "step":
            assert p == whole
            continue
        good, bad = p.chosen.split("\n"), p.rejected.split("\n")
        # the same correct prefix, then the right step against the first wrong one
        assert len(good) == len(bad) and good[:-1] == bad[:-1] and good[-1] != bad[-1]
        assert whole.chosen.startswith(p.chosen) and whole.rejected.startswith(p.rejected)
        assert not good[-1].startswith("Answer")
    with pytest.raises(ValueError, match="step_fraction"):
        S.preference_pairs(2, seed=0, step_fraction=1.5)
    steps = S.step_solutions(200, seed=0, error_rate=0.5)
    assert all(isinstance(s, StepSolution) and s.is_hard for s in steps)
    wrong = np.mean([s.first_error >= 0 for s in steps])
    assert 0.35 < wrong < 0.65
    assert all(s.steps[-1].startswith("Answer: ") for s in steps)
    assert all(s.first_error == -1 for s in S.step_solutions(20, seed=0, error_rate=0.0))
    sft = S.sft_examples(5, seed=0)
    assert all(isinstance(x, SFTExample) for x in sft)
    assert sft[0].completion == S.solve(S.problem(0, seed=0)).text
    rl = S.rl_prompts(5, seed=0)
    assert all(isinstance(x, PromptWithAnswer) for x in rl)
    assert rl[0].answer == str(S.problem(0, seed=0).answer) and rl[0].prompt == sft[0].prompt


def test_train_and_test_splits_are_disjoint():
    train = {p.question for p in S.problems(2000, seed=0, split="train")}
    test = {p.question for p in S.problems(300, seed=1, split="test")}
    assert len(test) > 250 and not train & test
    with pytest.raises(ValueError, match="split"):
        S.problem(0, seed=0, split="valid")


def test_sft_examples_direct_fraction():
    worked = S.sft_examples(400, seed=3)
    mixed = S.sft_examples(400, seed=3, direct_fraction=0.5)
    again = S.sft_examples(400, seed=3, direct_fraction=0.5)
    assert mixed == again  # seeded
    direct = [m for m in mixed if "\n" not in m.completion]
    assert 150 < len(direct) < 250
    for w, m in zip(worked, mixed):
        assert w.prompt == m.prompt
        # a direct example is exactly the worked solution's answer line
        assert m.completion in (w.completion, w.completion.split("\n")[-1])
        assert S.extract_answer(m.completion) == S.extract_answer(w.completion)
    assert all("\n" not in m.completion for m in S.sft_examples(20, seed=3, direct_fraction=1.0))
    with pytest.raises(ValueError, match="direct_fraction"):
        S.sft_examples(2, seed=3, direct_fraction=1.5)


def test_tiny_bt_task_held_out_pairs_span_many_questions():
    # The BT experiment's task: its held-out pairs come from many questions in even
    # shares of chain length (with 2-4 steps, 45% came from a dozen 2-step questions).
    from rewardjax.recipes import TINY_BT_TASK

    test = S.preference_pairs(512, seed=1, config=TINY_BT_TASK, split="test")
    assert len({p.prompt for p in test}) > 200
    shares = {k: sum(p.subset == k for p in test) / len(test) for k in {p.subset for p in test}}
    assert set(shares) == {"steps_3", "steps_4", "steps_5"} and max(shares.values()) < 0.45
    train = S.preference_pairs(2048, seed=0, config=TINY_BT_TASK, split="train")
    assert not {p.prompt for p in train} & {p.prompt for p in test}
