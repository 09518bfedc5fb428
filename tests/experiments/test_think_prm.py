"""The worked-value verification chain of experiments/think_prm.py
(`judges.first_error_trace(worked=True)`)."""

from rewardjax import judges, recipes
from rewardjax.data.synthetic import arithmetic


def test_worked_chain_writes_own_step_then_claim_then_check():
    prob = arithmetic.Problem(start=6, ops=("-", "+", "+"), operands=(1, 1, 2))
    wrong_result = ("6 - 1 = 5", "5 + 1 = 5", "5 + 2 = 7", "Answer: 7")
    t = judges.first_error_trace(prob, wrong_result, worked=True)
    assert t.judgment == "Step 1: 6 - 1 = 5 vs 5 ok\nStep 2: 5 + 1 = 6 vs 5 wrong\nVerdict: 2"
    assert t.label == "2"
    # a misread step: the verifier writes the problem's step, the claim is the step's value
    misread = ("6 - 1 = 5", "5 + 2 = 7", "7 + 2 = 9", "Answer: 9")
    assert judges.first_error_trace(prob, misread, worked=True).judgment.split("\n")[1] == (
        "Step 2: 5 + 1 = 6 vs 7 wrong")
    right = arithmetic.solve(prob).steps
    t = judges.first_error_trace(prob, right, worked=True)
    assert t.judgment.split("\n")[-2:] == ["Step 4: Answer: 8 vs 8 ok", "Verdict: none"]
    assert t.label == "none"
    # the default chain is unchanged: each step copied, then judged
    assert judges.first_error_trace(prob, wrong_result).judgment.split("\n")[1] == (
        "Step 2: 5 + 1 = 5 wrong")


def test_worked_chain_check_is_equality_of_the_two_numbers_before_it():
    cfg = recipes.TINY_RM_TASK
    for s in arithmetic.solutions(64, seed=3, config=cfg, split="train", error_rate=0.5):
        for line in judges.first_error_trace(s.problem, s.steps, worked=True).judgment.split(
                "\n")[:-1]:
            words = line.split()
            assert words[-3] == "vs"
            assert (words[-4] == words[-2]) == (words[-1] == "ok"), line
